"""Process-test harness: starts real raftkv nodes on free loopback ports, in a temp dir, and
always cleans up (processes and directories), even when a test fails or the runner is killed.

Usage in a test file:

    import harness
    class T(harness.TestCase):
        def test_x(self):
            with harness.Cluster(nodes=3) as c:
                c.wait_ready()
                reply = harness.mc(c.nodes[0].memcached, b"set k 0 0 1\\r\\nv\\r\\n")
    if __name__ == "__main__":
        harness.main()

Run: /usr/bin/python3 test_x.py --binary build/release/app/raftkv
"""

import argparse
import atexit
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

BINARY = None
_live_clusters = []
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # The server dies with the test process, even on SIGKILL of the test.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls predicate until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, http.client.HTTPException) as e:
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


def port_open(addr):
    try:
        with socket.create_connection(addr, timeout=0.5):
            return True
    except OSError:
        return False


def recv_until(sock, terminators, timeout=10.0, limit=64 << 20):
    """Reads from sock until the buffer ends with one of terminators (bytes or tuple)."""
    if isinstance(terminators, bytes):
        terminators = (terminators,)
    sock.settimeout(timeout)
    data = b""
    while not any(data.endswith(t) for t in terminators):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise AssertionError("reply too large")
    return data


MC_TERMINATORS = (b"END\r\n", b"STORED\r\n", b"NOT_STORED\r\n", b"EXISTS\r\n", b"NOT_FOUND\r\n",
                  b"DELETED\r\n", b"TOUCHED\r\n", b"OK\r\n", b"ERROR\r\n")


def mc(addr, request, terminators=None, timeout=10.0):
    """Sends one memcached request on a fresh connection and returns the raw reply."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(request)
        if terminators is None:
            return recv_line_reply(s, timeout)
        return recv_until(s, terminators, timeout)


def recv_line_reply(sock, timeout=10.0):
    """Reads a reply that is one line, or a VALUE...END block."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        if data.startswith(b"VALUE") or data.startswith(b"STAT"):
            if data.endswith(b"END\r\n"):
                return data
        elif data.endswith(b"\r\n"):
            return data


def http_request(addr, method, path, body=None, headers=None, timeout=10.0):
    """One HTTP request; returns (status, headers dict lower-cased, body bytes)."""
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Node:
    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.id = node_id
        self.memcached = ("127.0.0.1", free_port())
        self.cs733 = ("127.0.0.1", free_port())
        self.http = ("127.0.0.1", free_port())
        self.peer = ("127.0.0.1", free_port())
        self.dir = os.path.join(cluster.dir, f"node{node_id}")
        self.data_dir = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "raftkv.toml")
        self.log_path = os.path.join(self.dir, "raftkv.log")
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)

    @staticmethod
    def _addr(a):
        return f"{a[0]}:{a[1]}"

    def write_config(self):
        c = self.cluster
        lines = [
            "[node]", f"id = {self.id}", f'data_dir = "{self.data_dir}"', "",
            "[listen]",
            f'memcached = "{self._addr(self.memcached)}"',
            f'cs733 = "{self._addr(self.cs733)}"',
            f'http = "{self._addr(self.http)}"',
        ]
        if len(c.nodes) > 1:
            lines.append(f'peer = "{self._addr(self.peer)}"')
            for n in c.nodes:
                lines += ["", "[[cluster.member]]", f"id = {n.id}",
                          f'peer = "{self._addr(n.peer)}"',
                          f'memcached = "{self._addr(n.memcached)}"',
                          f'cs733 = "{self._addr(n.cs733)}"',
                          f'http = "{self._addr(n.http)}"']
        for section, values in (("raft", c.raft), ("limits", c.limits)):
            if values:
                lines += ["", f"[{section}]"]
                for k, v in values.items():
                    if isinstance(v, bool):
                        v = "true" if v else "false"
                    lines.append(f"{k} = {v}")
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        self.write_config()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.cluster.binary, "serve", "--config", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     preexec_fn=_die_with_parent)
        log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def kill(self):
        """kill -9 and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process must be able to die
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout=10.0):
        """SIGTERM, wait for a clean exit; returns the exit code (kills after timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                return "killed after timeout"
        return self.proc.returncode

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def status(self, timeout=2.0):
        status, _, body = http_request(self.http, "GET", "/v1/status", timeout=timeout)
        if status != 200:
            raise ValueError(f"status {status}")
        return json.loads(body)

    def stats(self, timeout=2.0):
        reply = mc(self.memcached, b"stats\r\n", terminators=b"END\r\n", timeout=timeout)
        out = {}
        for line in reply.decode().splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return out


class Cluster:
    """N raftkv processes on free loopback ports in a fresh temp dir."""

    def __init__(self, nodes=1, binary=None, raft=None, limits=None):
        self.binary = binary or BINARY
        assert self.binary, "pass --binary PATH to the test"
        self.dir = tempfile.mkdtemp(prefix="raftkv-test-")
        self.raft = dict(raft or {})
        self.limits = dict(limits or {})
        self.nodes = []
        self.nodes = [Node(self, i + 1) for i in range(nodes)]
        _live_clusters.append(self)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.dump_logs()
        self.close()
        return False

    def start(self):
        for n in self.nodes:
            n.start()

    def wait_ready(self, timeout=15.0):
        """Every running node accepts connections and, for a cluster, knows the same leader."""
        for n in self.nodes:
            if n.running():
                wait_until(lambda n=n: port_open(n.memcached), timeout, what=f"node {n.id} up")
        return self.wait_leader(timeout)

    def leader_view(self, node):
        stats = node.stats()
        return int(stats.get("raft_leader", "0"))

    def wait_leader(self, timeout=15.0, among=None):
        """Waits until every running node (or `among`) reports the same non-zero leader."""
        candidates = among or [n for n in self.nodes if n.running()]

        def agreed():
            views = {self.leader_view(n) for n in candidates}
            if len(views) == 1 and 0 not in views:
                leader_id = views.pop()
                leader = self.nodes[leader_id - 1]
                if self.leader_view(leader) == leader_id:
                    return leader
            return None

        return wait_until(agreed, timeout, interval=0.05, what="an agreed leader")

    def dump_logs(self):
        for n in self.nodes:
            sys.stderr.write(f"----- node {n.id} log ({n.log_path}) -----\n")
            log = n.log()
            sys.stderr.write(log[-20000:] + "\n")

    def close(self):
        for n in self.nodes:
            try:
                n.kill()
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in _live_clusters:
            _live_clusters.remove(self)


@atexit.register
def _cleanup_all():
    for c in list(_live_clusters):
        c.close()


def _on_signal(signum, frame):
    _cleanup_all()
    sys.exit(128 + signum)


TestCase = unittest.TestCase


def main():
    global BINARY
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    args, rest = parser.parse_known_args()
    BINARY = os.path.abspath(args.binary)
    signal.signal(signal.SIGTERM, _on_signal)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
