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
import re
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import linearizability

BINARY = None
_live_clusters = []
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # The server dies with the test process, even on SIGKILL of the test.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


_handed_out_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago and that this process has not
    handed out before (the kernel may offer a just-closed port again)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port


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


def read_raw_response(f):
    """(status, body) of one Content-Length response read off a buffered socket file."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    length = 0
    while True:
        line = f.readline()
        assert line, "connection closed inside a response"
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return int(status_line.split()[1]), f.read(length)


def failure_of(testcase):
    """The traceback text if `testcase` has failed or errored so far, else None."""
    result = getattr(getattr(testcase, "_outcome", None), "result", None)
    if result is None:
        return None
    for t, text in result.failures + result.errors:
        if t is testcase:
            return text
    return None


def dump_logs_if_failed(testcase, cluster):
    """Cleanup for a failed test: prints why it failed, then the node logs. The reason comes
    first because unittest only prints it after the last test of the file, and a truncated CI
    view of a long log may keep neither the end nor the middle."""
    text = failure_of(testcase)
    if text is None:
        return False
    sys.stderr.write(f"----- {testcase.id()} failed: -----\n" + text[-3000:] + "\n")
    cluster.dump_logs()
    return True


def close_after(testcase, cluster):
    """tearDown for a test that owns `cluster`: prints the node logs first if the test
    failed (they help whoever reads the failure), then closes it."""
    dump_logs_if_failed(testcase, cluster)
    cluster.close()


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
        self.paused = False  # SIGSTOPped by pause(); wait_leader() leaves it out
        self.join = False  # [cluster] state = "join": added at run time (Cluster.add_node)
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
            if self.join:
                lines += ["", "[cluster]", 'state = "join"']
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
                                     preexec_fn=self.preexec)
        log.close()

    def preexec(self):
        """Runs in the child between fork and exec (a subclass may also enter a namespace)."""
        _die_with_parent()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def pause(self):
        """SIGSTOP: the process keeps its sockets (the kernel still accepts connections and
        buffers requests) but runs no code until resume()."""
        assert self.running(), f"node {self.id} is not running"
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        """SIGCONT after pause()."""
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self):
        """Starts the node again on the same ports and data dir (after kill() or stop())."""
        self.paused = False
        self.start()

    def kill(self):
        """kill -9 and reap."""
        self.paused = False
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

    def wait_exit(self, timeout):
        """Polls until the process exits on its own; returns its exit code."""
        assert self.proc is not None, f"node {self.id} was never started"
        wait_until(lambda: self.proc.poll() is not None, timeout, what=f"node {self.id} to exit")
        return self.proc.returncode

    def wipe_data(self):
        """Removes the data dir, as a lost disk would (the node must not be running)."""
        assert not self.running(), f"node {self.id} is running"
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def metrics(self, timeout=2.0):
        """/metrics as {'name{labels}': value} (samples only, comments left out)."""
        status, _, body = http_request(self.http, "GET", "/metrics", timeout=timeout)
        if status != 200:
            raise ValueError(f"status {status}")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

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

    node_class = Node  # a subclass may place its nodes elsewhere (netns.py)

    def __init__(self, nodes=1, binary=None, raft=None, limits=None):
        self.binary = binary or BINARY
        assert self.binary, "pass --binary PATH to the test"
        self.dir = tempfile.mkdtemp(prefix="raftkv-test-")
        self.raft = dict(raft or {})
        self.limits = dict(limits or {})
        self.nodes = []
        self.nodes = [self.node_class(self, i + 1) for i in range(nodes)]
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

    def start_ready(self, timeout=15.0):
        """start() and wait_ready(); on failure prints the node logs, closes the cluster and
        re-raises (for setUpClass, where no tearDown runs after a failure). Returns the
        leader."""
        self.start()
        try:
            return self.wait_ready(timeout=timeout)
        except Exception:
            self.dump_logs()
            self.close()
            raise

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
        candidates = among or [n for n in self.nodes if n.running() and not n.paused]

        def agreed():
            views = {self.leader_view(n) for n in candidates}
            if len(views) == 1 and 0 not in views:
                leader_id = views.pop()
                leader = self.nodes[leader_id - 1]
                if self.leader_view(leader) == leader_id:
                    return leader
            return None

        return wait_until(agreed, timeout, interval=0.05, what="an agreed leader")

    def add_node(self):
        """A new node (next id, fresh ports and data dir) configured to join: not started,
        not yet a member (POST /v1/members it first). Every node's config lists it from now
        on, as an operator's would; a running node's replicated configuration is what it
        uses, so that only matters for the joiner's own list."""
        n = self.node_class(self, len(self.nodes) + 1)
        n.join = True
        self.nodes.append(n)
        return n

    def live_nodes(self):
        """Nodes that are running and not paused."""
        return [n for n in self.nodes if n.running() and not n.paused]

    def wait_new_leader(self, old, timeout=15.0):
        """Waits until the live nodes other than `old` agree on a leader that is not `old`;
        never contacts `old` (it may be dead or stopped). Returns the new leader."""
        others = [n for n in self.live_nodes() if n is not old]

        def agreed():
            views = {self.leader_view(n) for n in others}
            if len(views) == 1 and 0 not in views and old.id not in views:
                return self.nodes[views.pop() - 1]
            return None

        return wait_until(agreed, timeout, interval=0.02, what=f"a leader other than node {old.id}")

    def wait_converged(self, timeout=30.0, nodes=None):
        """Waits until every live node (or `nodes`) has applied the same index and that index
        is the commit index they all know. Returns the statuses by node id."""
        nodes = nodes or self.live_nodes()

        def converged():
            docs = {n.id: n.status() for n in nodes}
            applied = {d["applied_index"] for d in docs.values()}
            commit = {d["commit_index"] for d in docs.values()}
            if len(applied) == 1 and applied == commit and 0 not in applied:
                return docs
            return None

        return wait_until(converged, timeout, interval=0.05, what="every node to apply the same index")

    def dump_logs(self):
        for n in self.nodes:
            state = ("not started" if n.proc is None else
                     "running" + (" (paused)" if n.paused else "") if n.proc.poll() is None else
                     f"exited with {n.proc.returncode}")
            sys.stderr.write(f"----- node {n.id} log ({n.log_path}), {state} -----\n")
            # Routine snapshot lines (two per snapshot, one every few thousand entries under
            # load) would push the lines that explain a failure out of a truncated CI view.
            routine = re.compile(r"snapshot at index \d+( written by a child|( \(\d+ bytes\))?; log compacted)")
            lines = n.log().splitlines()
            kept = [line for line in lines if not routine.search(line)]
            if len(kept) != len(lines):
                sys.stderr.write(f"({len(lines) - len(kept)} routine snapshot lines left out)\n")
            sys.stderr.write("\n".join(kept)[-12000:] + "\n")

    def close(self):
        for n in self.nodes:
            try:
                n.kill()
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in _live_clusters:
            _live_clusters.remove(self)


class McServerError(Exception):
    """The server answered an error line (ERROR, CLIENT_ERROR ..., SERVER_ERROR ...)."""


class McClient:
    """A small blocking memcached text-protocol client on one persistent connection.

    Socket errors (refused, reset, timed out, closed) propagate as OSError and close the
    connection; the next call reconnects. Storage commands return the reply line as text
    ("STORED", "EXISTS", "SERVER_ERROR timeout, outcome unknown", ...); reads raise
    McServerError on an error line."""

    def __init__(self, addr, timeout=10.0, connect_timeout=2.0):
        self.addr = addr
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.sock = None
        self.buf = b""

    def connect(self):
        if self.sock is None:
            s = socket.create_connection(self.addr, timeout=self.connect_timeout)
            s.settimeout(self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock, self.buf = s, b""
        return self

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock, self.buf = None, b""

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()
        return False

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def send(self, data):
        """Sends raw bytes (pipelining); read the replies with read_line()/read_values()."""
        try:
            self.connect()
            self.sock.sendall(data)
        except OSError:
            self.close()
            raise

    def set_noreply(self, items, batch=1000):
        """Streams `set KEY 0 0 LEN noreply` for every (key, value) of `items` (bytes), in
        pipelined batches, then waits for a `version` reply: it comes after every one of
        those writes was applied (a connection's replies and reads follow its writes)."""
        items = list(items)
        for start in range(0, len(items), batch):
            self.send(b"".join(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(v), v)
                               for k, v in items[start:start + batch]))
        self.send(b"version\r\n")
        line = self.read_line()
        if not line.startswith("VERSION"):
            raise AssertionError(f"after the writes: {line!r} instead of VERSION")

    def read_line(self):
        try:
            return self._line().decode()
        except OSError:
            self.close()
            raise

    def read_values(self):
        """Reads a VALUE ... END block: {key: (value bytes, flags, cas or None)}."""
        try:
            out = {}
            while True:
                line = self._line()
                if line == b"END":
                    return out
                parts = line.split(b" ")
                if parts[0] != b"VALUE":
                    raise McServerError(line.decode(errors="replace"))
                data = self._exact(int(parts[3]))
                cas = int(parts[4]) if len(parts) > 4 else None
                out[parts[1].decode()] = (data, int(parts[2]), cas)
        except OSError:
            self.close()
            raise

    def _storage(self, cmd, key, value, flags=0, exptime=0, cas=None):
        if isinstance(value, str):
            value = value.encode()
        head = f"{cmd} {key} {flags} {exptime} {len(value)}"
        if cas is not None:
            head += f" {cas}"
        self.send(head.encode() + b"\r\n" + value + b"\r\n")
        return self.read_line()

    def set(self, key, value, flags=0, exptime=0):
        return self._storage("set", key, value, flags, exptime)

    def add(self, key, value, flags=0, exptime=0):
        return self._storage("add", key, value, flags, exptime)

    def cas(self, key, value, unique, flags=0, exptime=0):
        return self._storage("cas", key, value, flags, exptime, cas=unique)

    def delete(self, key):
        self.send(f"delete {key}\r\n".encode())
        return self.read_line()

    def get_multi(self, keys, cmd="get"):
        self.send(f"{cmd} {' '.join(keys)}\r\n".encode())
        return self.read_values()

    def get(self, key):
        """The value (bytes) or None for a miss."""
        hit = self.get_multi([key]).get(key)
        return None if hit is None else hit[0]

    def gets(self, key):
        """(value bytes, cas unique) or None for a miss."""
        hit = self.get_multi([key], cmd="gets").get(key)
        return None if hit is None else (hit[0], hit[2])


class Workload:
    """Concurrent memcached clients, one thread and one connection each, spread over the
    cluster's nodes, running a register workload (set/get/gets+cas/add/delete on a rotating
    pool of keys, every written value unique) and recording a history for the
    linearizability checker. Separately, `ack_writers` threads write fresh keys once each and
    remember which writes were acknowledged, for a plain "nothing acknowledged is lost"
    check.

    A client whose node refuses connections moves on to the next node, as a client with a
    server list would. Any write that fails (error reply, timeout, closed connection) is
    recorded with an unknown outcome; a failed read is recorded as unknown (it constrains
    nothing)."""

    def __init__(self, cluster, clients=6, ack_writers=1, seed=1, live_keys=6,
                 max_ops_per_key=120, op_timeout=None, prefix="lin", counter_clients=0):
        self.cluster = cluster
        self.history = linearizability.History()
        self.clients = clients
        self.ack_writers = ack_writers
        self.seed = seed
        self.max_ops_per_key = max_ops_per_key
        request_timeout_s = int(cluster.limits.get("request_timeout_ms", 5000)) / 1000.0
        # Long enough to hear the server's own "outcome unknown" rather than give up first.
        self.op_timeout = op_timeout or request_timeout_s + 3.0
        self.prefix = prefix
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._next_key = 0
        self._live = []
        self._key_ops = {}
        for _ in range(live_keys):
            self._live.append(self._new_key())
        self.acked = {}          # key -> value, writes of the ack writers that got STORED
        self.ack_unknown = 0     # ack-writer writes with an unknown outcome
        self.ok_ops = 0          # operations with a definite outcome
        self.unknown_ops = 0
        self.errors = []         # a sample of error texts seen
        # `incr` on one shared counter: each acknowledged incr returns a distinct value, and
        # the final value lies between the acknowledged count and that plus the unknown
        # ones (a retried increment applied twice breaks this: at-most-once).
        self.counter_clients = counter_clients
        self.counter_key = f"{prefix}-counter"
        self.counter_acked = []  # values returned by acknowledged incrs
        self.counter_unknown = 0

    def _new_key(self):
        key = f"{self.prefix}{self._next_key}"
        self._next_key += 1
        self._key_ops[key] = 0
        return key

    def _pick_key(self, rng):
        with self._lock:
            key = rng.choice(self._live)
            self._key_ops[key] += 1
            if self._key_ops[key] >= self.max_ops_per_key:
                self._live[self._live.index(key)] = self._new_key()
            return key

    def _note(self, ok, error=None):
        with self._lock:
            if ok:
                self.ok_ops += 1
            else:
                self.unknown_ops += 1
                if error is not None and len(self.errors) < 50:
                    self.errors.append(error)

    def start(self):
        if self.counter_clients:
            leader = self.cluster.wait_leader(timeout=15)
            with McClient(leader.memcached, timeout=self.op_timeout) as c:
                assert c.set(self.counter_key, "0") == "STORED"
        for i in range(self.counter_clients):
            t = threading.Thread(target=self._counter, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        for i in range(self.ack_writers):
            t = threading.Thread(target=self._ack_writer, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.op_timeout + 10)
            assert not t.is_alive(), "a workload client did not stop"
        self._threads = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def wait_progress(self, ops, timeout=30.0):
        """Waits until `ops` more operations have completed with a definite outcome."""
        target = self.ok_ops + ops
        wait_until(lambda: self.ok_ops >= target, timeout, interval=0.02,
                   what=f"{ops} more successful operations (errors: {self.errors[-3:]})")

    def _connection(self, home, client):
        """The client's connection: its home node first, then the others in order."""
        nodes = self.cluster.nodes
        if client.sock is not None:
            return client
        for k in range(len(nodes)):
            node = nodes[(home + k) % len(nodes)]
            if not node.running():
                continue
            c = McClient(node.memcached, timeout=self.op_timeout, connect_timeout=1.0)
            try:
                c.connect()
            except OSError:
                continue
            client.addr, client.sock, client.buf = c.addr, c.sock, b""
            return client
        return None

    def _client(self, i):
        client = McClient(None, timeout=self.op_timeout)
        try:
            self._client_loop(i, client)
        finally:
            client.close()

    def _client_loop(self, i, client):
        rng = random.Random(self.seed * 1000 + i)
        seq = 0
        h = self.history
        while not self._stop.is_set():
            if self._connection(i, client) is None:
                self._stop.wait(0.05)  # every node is down: try again shortly
                continue
            key = self._pick_key(rng)
            seq += 1
            value = f"c{i}-{seq}"
            r = rng.random()
            if r < 0.35:
                op = h.invoke(i, key, "get")
                try:
                    got = client.get(key)
                except (OSError, McServerError) as e:
                    h.unknown(op)
                    client.close()
                    self._note(False, f"get: {e}")
                    continue
                h.complete(op, None if got is None else got.decode())
                self._note(True)
                continue
            if r < 0.50:
                # gets, then cas from what it saw (add when it saw nothing).
                op = h.invoke(i, key, "get")
                try:
                    got = client.gets(key)
                except (OSError, McServerError) as e:
                    h.unknown(op)
                    client.close()
                    self._note(False, f"gets: {e}")
                    continue
                seen = None if got is None else got[0].decode()
                h.complete(op, seen)
                self._note(True)
                if got is None:
                    kind, arg, call = "add", value, lambda: client.add(key, value)
                else:
                    kind, arg = "cas", (seen, value)
                    call = lambda: client.cas(key, value, got[1])  # noqa: E731
            elif r < 0.55:
                kind, arg, call = "add", value, lambda: client.add(key, value)
            elif r < 0.65:
                kind, arg, call = "delete", None, lambda: client.delete(key)
            else:
                kind, arg, call = "set", value, lambda: client.set(key, value)
            op = h.invoke(i, key, kind, arg)
            try:
                reply = call()
            except (OSError, McServerError) as e:
                h.unknown(op)
                client.close()
                self._note(False, f"{kind}: {e}")
                continue
            if reply in ("STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED"):
                h.complete(op, reply)
                self._note(True)
            else:
                h.unknown(op)  # e.g. SERVER_ERROR timeout, outcome unknown
                self._note(False, f"{kind}: {reply}")

    def _ack_writer(self, i):
        client = McClient(None, timeout=self.op_timeout)
        try:
            self._ack_writer_loop(i, client)
        finally:
            client.close()

    def _ack_writer_loop(self, i, client):
        home = i + 1
        n = 0
        while not self._stop.is_set():
            if self._connection(home, client) is None:
                self._stop.wait(0.05)
                continue
            n += 1
            key, value = f"ack{i}-{n}", f"acked-{i}-{n}"
            try:
                reply = client.set(key, value)
            except OSError:
                client.close()
                reply = None
            with self._lock:
                if reply == "STORED":
                    self.acked[key] = value
                else:
                    self.ack_unknown += 1

    def _counter(self, i):
        client = McClient(None, timeout=self.op_timeout)
        try:
            while not self._stop.is_set():
                if self._connection(i + 2, client) is None:
                    self._stop.wait(0.05)
                    continue
                try:
                    client.send(f"incr {self.counter_key} 1\r\n".encode())
                    reply = client.read_line()
                except OSError:
                    client.close()
                    reply = None
                with self._lock:
                    if reply is not None and reply.isdigit():
                        self.counter_acked.append(int(reply))
                    else:
                        self.counter_unknown += 1
                        if reply is not None and not reply.startswith("SERVER_ERROR"):
                            self.errors.append(f"incr: {reply}")
        finally:
            client.close()

    def check_counter(self, node=None):
        """Returns a list of problems with the counter (empty when it is consistent)."""
        if not self.counter_clients:
            return []
        node = node or self.cluster.wait_leader(timeout=15)
        with McClient(node.memcached, timeout=self.op_timeout) as c:
            got = c.get(self.counter_key)
        final = int(got) if got is not None else None
        acked, unknown = sorted(self.counter_acked), self.counter_unknown
        problems = []
        if final is None:
            problems.append("the counter is gone")
        elif not len(acked) <= final <= len(acked) + unknown:
            problems.append(f"counter is {final}, expected between {len(acked)} (acknowledged) "
                            f"and {len(acked) + unknown} (+ unknown outcomes)")
        dup = [v for a, v in zip(acked, acked[1:]) if a == v]
        if dup:
            problems.append(f"two acknowledged incrs returned the same value: {dup[:5]}")
        if final is not None and acked and acked[-1] > final:
            problems.append(f"an incr returned {acked[-1]} > the final value {final}")
        sys.stderr.write(f"counter: final {final}, {len(acked)} acknowledged incrs, "
                         f"{unknown} unknown\n")
        return problems

    def read_back(self, nodes=None):
        """After the load: reads every key of the history through every node (recorded in
        the history, so the checker sees them) and returns a list of acknowledged ack-writer
        writes that a node does not return: [(node id, key, expected, got)]."""
        nodes = nodes or self.cluster.live_nodes()
        missing = []
        keys = self.history.keys()
        for node in nodes:
            with McClient(node.memcached, timeout=self.op_timeout) as c:
                for key in keys:
                    op = self.history.invoke(-node.id, key, "get")
                    got = c.get(key)
                    self.history.complete(op, None if got is None else got.decode())
                acked = sorted(self.acked.items())
                for start in range(0, len(acked), 50):
                    chunk = acked[start:start + 50]
                    values = c.get_multi([k for k, _ in chunk])
                    for k, v in chunk:
                        got = values.get(k, (None,))[0]
                        if got != v.encode():
                            missing.append((node.id, k, v, got))
        return missing

    def versions(self, node):
        """{key: (value, flags, cas unique)} of every key the load touched, as `node`'s
        replica holds them (gets runs a ReadIndex barrier, then reads the local store)."""
        keys = self.history.keys() + sorted(self.acked)
        if self.counter_clients:
            keys.append(self.counter_key)
        out = {}
        with McClient(node.memcached, timeout=self.op_timeout) as c:
            for start in range(0, len(keys), 50):
                out.update(c.get_multi(keys[start:start + 50], cmd="gets"))
        return out

    def check(self, max_steps_per_key=2_000_000):
        result = linearizability.check(self.history.ops(), max_steps_per_key=max_steps_per_key)
        sys.stderr.write(f"workload: {self.summary()}\nchecker: {result.summary()}\n")
        return result

    def summary(self):
        return (f"{self.ok_ops} ops ok, {self.unknown_ops} unknown, {len(self.acked)} acked "
                f"ack-writes ({self.ack_unknown} unknown); errors seen: {self.errors[:5]}")


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
