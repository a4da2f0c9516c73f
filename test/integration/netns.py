"""Private networks of Linux network namespaces for process tests: every raftkv node in a
namespace of its own, links cut with iptables and made flaky with netem, all torn down again.

The topology, per Network (names carry the test's pid, so two runs never collide):

    <p>-br   a bridge namespace: bridge br0 with 10.77.0.1/24. The test's client threads live
             here (Network.enter_bridge() moves the calling thread in; threads it starts
             afterwards inherit the namespace).
    <p>-nI   one namespace per host (node or extra client): eth0 with 10.77.0.X/24, the other
             end of the veth pair (vX) enslaved to br0 in the bridge namespace.

Nothing is created in the root namespace: every veth is created inside a namespace of the
test with its peer end moved straight into another one, the subnet exists only there, and no
namespace has a default route, so no packet can leave the machine or reach the host's own
interfaces. Deleting a namespace destroys its interfaces, qdiscs and iptables rules with it,
so teardown is "kill the processes inside, delete the namespaces". A run killed with SIGKILL
leaves namespaces behind; the next run deletes those whose pid is gone (cleanup_stale()).

Faults are applied inside a node's namespace only, so a rule never outlives its namespace:
    iptables -A INPUT -s <peer> -j DROP        the node hears nothing from <peer>
    iptables -A OUTPUT -d <peer> -j DROP       the node sends nothing to <peer>
    tc qdisc add dev eth0 root netem delay 20ms 15ms loss 5%   a flaky link (egress)

Kernels built without sch_netem (tc answers "Specified qdisc kind is unknown") get the same
flaky link from PacketDelayer: an iptables NFQUEUE rule hands each packet leaving eth0 to
this process over nfnetlink_queue, which drops it with the given probability or accepts it
after a uniformly random delay in [delay - jitter, delay + jitter] (netem's default jitter
distribution). The rule has --queue-bypass, so packets flow undelayed if the queue is gone.
"""

import contextlib
import ctypes
import errno
import heapq
import os
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import harness

SUBNET = "10.77.0"
BRIDGE_IP = f"{SUBNET}.1"
NETNS_DIR = "/var/run/netns"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_live_networks = []


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def enter(ns):
    """Moves the calling thread into namespace `ns`; returns a function that moves it back.
    Sockets keep the namespace they were created in."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
    try:
        _setns(target)
    except OSError:
        os.close(back)
        raise
    finally:
        os.close(target)

    def restore():
        try:
            _setns(back)
        finally:
            os.close(back)
    return restore


@contextlib.contextmanager
def inside(ns):
    restore = enter(ns)
    try:
        yield
    finally:
        restore()


def run(*args, ns=None, check=True):
    """Runs a command (in namespace `ns` via `ip netns exec`); returns its CompletedProcess."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


# ---------------------------------------------------------------------------------------------
# What this machine can do

def unavailable_reason():
    """None when namespaces, veth pairs and a bridge can be created here, else why not."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "no `ip` command (Debian package iproute2)"
    probe = f"rkvt{os.getpid()}-probe"
    try:
        for args in (("ip", "netns", "add", probe),
                     ("ip", "-n", probe, "link", "add", "eth0", "type", "veth", "peer", "name",
                      "eth1"),
                     ("ip", "-n", probe, "link", "add", "br0", "type", "bridge")):
            p = run(*args, check=False)
            if p.returncode != 0:
                return f"`{' '.join(args)}` failed: {p.stderr.strip()}"
        return None
    finally:
        run("ip", "netns", "del", probe, check=False)


_netem = None


def netem_available():
    """Whether the kernel has sch_netem (probed once, in a scratch namespace)."""
    global _netem
    if _netem is None:
        probe = f"rkvt{os.getpid()}-netem"
        run("ip", "netns", "add", probe)
        try:
            run("ip", "-n", probe, "link", "set", "lo", "up")
            _netem = run("tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                         ns=probe, check=False).returncode == 0
        finally:
            run("ip", "netns", "del", probe, check=False)
    return _netem


def cleanup_stale():
    """Deletes namespaces left by earlier runs of these tests that were killed (pid gone)."""
    p = run("ip", "netns", "list", check=False)
    for line in p.stdout.splitlines():
        m = re.match(r"(rkvt(\d+)-\S+)", line)
        if m and int(m.group(2)) != os.getpid() and not os.path.exists(f"/proc/{m.group(2)}"):
            _kill_inside(m.group(1))
            run("ip", "netns", "del", m.group(1), check=False)


def _kill_inside(ns):
    # Only processes this test started can be in its namespaces (the nodes): make sure none
    # survives, so that deleting the name also frees the namespace.
    p = run("ip", "netns", "pids", ns, check=False)
    for pid in p.stdout.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


# ---------------------------------------------------------------------------------------------
# The network

class Host:
    def __init__(self, network, name, ip, index):
        self.network = network
        self.name = name
        self.ns = f"{network.prefix}-{name}"
        self.ip = ip
        self.bridge_port = f"v{index}"

    def iptables(self, *args):
        run("iptables", "-w", *args, ns=self.ns)

    def drop_from(self, *ips):
        """This host hears nothing from `ips` (its INPUT drops their packets)."""
        for ip in ips:
            self.iptables("-A", "INPUT", "-s", ip, "-j", "DROP")

    def drop_to(self, *ips):
        """This host sends nothing to `ips` (its OUTPUT drops packets for them)."""
        for ip in ips:
            self.iptables("-A", "OUTPUT", "-d", ip, "-j", "DROP")

    def cut(self, *ips):
        self.drop_from(*ips)
        self.drop_to(*ips)

    def heal(self):
        """Removes every iptables rule and qdisc this module put in the namespace."""
        self.iptables("-F", "INPUT")
        self.iptables("-F", "OUTPUT")
        run("tc", "qdisc", "del", "dev", "eth0", "root", ns=self.ns, check=False)

    def rules(self):
        return run("iptables", "-w", "-S", ns=self.ns).stdout


class Network:
    """A bridge namespace and hosts attached to it; close() (also at exit) removes it all."""

    def __init__(self):
        self.prefix = f"rkvt{os.getpid()}"
        self.bridge_ns = f"{self.prefix}-br"
        self.hosts = []
        self.namespaces = []
        self.delayer = None
        _live_networks.append(self)
        try:
            self._add_ns(self.bridge_ns)
            run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            run("ip", "-n", self.bridge_ns, "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0")
            run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        except Exception:
            self.close()
            raise

    def _add_ns(self, ns):
        # A namespace of this name can only be left over from a dead process that had the
        # same pid: the name is this process's now.
        if os.path.exists(os.path.join(NETNS_DIR, ns)):
            _kill_inside(ns)
            run("ip", "netns", "del", ns, check=False)
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")

    def add_host(self, name, last_octet):
        index = len(self.hosts) + 1
        host = Host(self, name, f"{SUBNET}.{last_octet}", index)
        self._add_ns(host.ns)
        # Created inside the host's namespace, the peer end moved at once into the bridge's:
        # the root namespace never sees either end.
        run("ip", "-n", host.ns, "link", "add", "eth0", "type", "veth", "peer", "name",
            host.bridge_port, "netns", self.bridge_ns)
        run("ip", "-n", self.bridge_ns, "link", "set", host.bridge_port, "master", "br0")
        run("ip", "-n", self.bridge_ns, "link", "set", host.bridge_port, "up")
        run("ip", "-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        run("ip", "-n", host.ns, "link", "set", "eth0", "up")
        self.hosts.append(host)
        return host

    def enter_bridge(self):
        """Moves the calling thread into the bridge namespace (clients at BRIDGE_IP); returns
        the function that moves it back."""
        return enter(self.bridge_ns)

    def flaky(self, hosts, delay_ms=20, jitter_ms=15, loss=0.05, seed=1):
        """Every packet leaving each host's eth0 is delayed delay±jitter ms and lost with
        probability `loss`: netem where the kernel has it, PacketDelayer otherwise. Returns
        which of the two is used."""
        if netem_available():
            for h in hosts:
                run("tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay",
                    f"{delay_ms}ms", f"{jitter_ms}ms", "loss", f"{loss * 100:g}%", ns=h.ns)
            return "netem"
        self.delayer = PacketDelayer(delay_ms / 1000.0, jitter_ms / 1000.0, loss, seed)
        for queue, h in enumerate(hosts):
            self.delayer.attach(h.ns, queue)
            h.iptables("-A", "OUTPUT", "-o", "eth0", "-j", "NFQUEUE", "--queue-num", queue,
                       "--queue-bypass")
        self.delayer.start()
        return "nfqueue"

    def heal(self):
        for h in self.hosts:
            h.heal()
        if self.delayer is not None:
            self.delayer.stop()
            self.delayer = None

    def close(self):
        if self.delayer is not None:
            self.delayer.stop()
            self.delayer = None
        for ns in reversed(self.namespaces):
            _kill_inside(ns)
            run("ip", "netns", "del", ns, check=False)
        self.namespaces = []
        if self in _live_networks:
            _live_networks.remove(self)


class NsNode(harness.Node):
    """A raftkv node that runs in a namespace of its own, on the standard ports of its
    address."""

    def __init__(self, cluster, node_id):
        super().__init__(cluster, node_id)
        self.host = cluster.network.add_host(f"n{node_id}", 10 + node_id)
        ip = self.host.ip
        self.memcached = (ip, 11211)
        self.cs733 = (ip, 9001)
        self.http = (ip, 8081)
        self.peer = (ip, 7001)

    def preexec(self):
        super().preexec()
        fd = os.open(os.path.join(NETNS_DIR, self.host.ns), os.O_RDONLY)
        _setns(fd)
        os.close(fd)


class NsCluster(harness.Cluster):
    node_class = NsNode

    def __init__(self, network, **kwargs):
        self.network = network
        super().__init__(**kwargs)


# ---------------------------------------------------------------------------------------------
# A userspace netem over nfnetlink_queue (for kernels without sch_netem)

_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_PACKET, _NFQNL_MSG_VERDICT, _NFQNL_MSG_CONFIG = 0, 1, 2
_NFQA_PACKET_HDR, _NFQA_VERDICT_HDR = 1, 2
_NFQA_CFG_CMD, _NFQA_CFG_PARAMS = 1, 2
_NFQNL_CFG_CMD_BIND = 1
_NFQNL_COPY_META = 1
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_NF_DROP, _NF_ACCEPT = 0, 1


def _nlattr(kind, payload):
    attr = struct.pack("=HH", 4 + len(payload), kind) + payload
    return attr + b"\0" * (-len(attr) % 4)


def _nfq_msg(msg_type, queue, attrs, flags=_NLM_F_REQUEST):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (_NFNL_SUBSYS_QUEUE << 8) | msg_type, flags,
                       0, 0) + body


class PacketDelayer:
    """Delays and drops the packets of NFQUEUE queues, one netlink socket per namespace, all
    served by one thread: a packet is read, given a release time (or dropped), and its
    verdict sent when that time comes; packets may overtake each other, as with netem."""

    def __init__(self, delay, jitter, loss, seed=1):
        self.delay, self.jitter, self.loss = delay, jitter, loss
        self.rng = random.Random(seed)
        self.socks = {}  # socket -> queue number
        self.stats = {"accepted": 0, "dropped": 0}
        self.error = None  # what stopped the thread early, if anything
        self._stop = threading.Event()
        self._thread = None

    def attach(self, ns, queue):
        with inside(ns):  # a netlink socket belongs to the namespace it is created in
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((0, 0))
        s.send(_nfq_msg(_NFQNL_MSG_CONFIG, queue,
                        [_nlattr(_NFQA_CFG_CMD, struct.pack("!BxH", _NFQNL_CFG_CMD_BIND, 0))],
                        _NLM_F_REQUEST | _NLM_F_ACK))
        self._expect_ack(s)
        s.send(_nfq_msg(_NFQNL_MSG_CONFIG, queue,
                        [_nlattr(_NFQA_CFG_PARAMS, struct.pack("!IB", 0, _NFQNL_COPY_META))],
                        _NLM_F_REQUEST | _NLM_F_ACK))
        self._expect_ack(s)
        s.setblocking(False)
        self.socks[s] = queue

    @staticmethod
    def _expect_ack(s):
        s.settimeout(2.0)
        data = s.recv(65536)
        length, kind = struct.unpack_from("=IH", data)
        if kind == _NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, 16)
            if code != 0:
                raise OSError(-code, f"nfnetlink_queue config: {os.strerror(-code)}")

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True, name="delayer")
        self._thread.start()

    def _run(self):
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 - reported by stop() and by the test
            self.error = e
            sys.stderr.write(f"packet delayer stopped: {e!r}\n")

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for s in self.socks:
            s.close()  # unbinds the queue; --queue-bypass lets packets through from now on
        self.socks = {}

    def _verdict(self, s, packet_id, verdict):
        try:
            s.send(_nfq_msg(_NFQNL_MSG_VERDICT, self.socks[s],
                            [_nlattr(_NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))]))
        except OSError:
            pass  # the packet is gone with its queue (teardown)

    def _packets(self, data):
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                return
            if kind == (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_PACKET:
                a = off + 20  # nlmsghdr + nfgenmsg
                while a + 4 <= off + length:
                    alen, akind = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if akind & 0x7fff == _NFQA_PACKET_HDR:
                        yield struct.unpack_from("!I", data, a + 4)[0]
                        break
                    a += (alen + 3) & ~3
            off += (length + 3) & ~3

    def _loop(self):
        due = []  # (release time, seq, socket, packet id)
        seq = 0
        socks = list(self.socks)
        while not self._stop.is_set():
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, _, s, packet_id = heapq.heappop(due)
                self._verdict(s, packet_id, _NF_ACCEPT)
                self.stats["accepted"] += 1
            wait = min(0.05, max(0.0, due[0][0] - now)) if due else 0.05
            ready, _, _ = select.select(socks, [], [], wait)
            for s in ready:
                while True:
                    try:
                        data = s.recv(1 << 16)
                    except BlockingIOError:
                        break
                    except OSError as e:
                        if e.errno == errno.ENOBUFS:  # the kernel dropped packets: loss
                            continue
                        raise
                    for packet_id in self._packets(data):
                        if self.rng.random() < self.loss:
                            self._verdict(s, packet_id, _NF_DROP)
                            self.stats["dropped"] += 1
                            continue
                        hold = self.delay + self.rng.uniform(-self.jitter, self.jitter)
                        seq += 1
                        heapq.heappush(due, (time.monotonic() + hold, seq, s, packet_id))
        for _, _, s, packet_id in due:  # release what is held before the sockets close
            self._verdict(s, packet_id, _NF_ACCEPT)


# ---------------------------------------------------------------------------------------------
# Cleanup, also when the test fails or is terminated

@__import__("atexit").register
def _close_all():
    harness._cleanup_all()  # the processes first, then the namespaces they ran in
    for n in list(_live_networks):
        n.close()


def require_or_skip(exit_code=77):
    """Exits with `exit_code` (ctest: SKIP_RETURN_CODE) and a loud reason when namespaces
    cannot be created here; fails (exit 1) when they can but iptables is missing."""
    reason = unavailable_reason()
    if reason is not None:
        sys.stderr.write("\n" + "!" * 78 + f"\nSKIP: the partition tests need network "
                         f"namespaces: {reason}.\nNOTHING WAS TESTED.\n" + "!" * 78 + "\n")
        sys.exit(exit_code)
    if shutil.which("iptables") is None:
        sys.stderr.write("FAIL: network namespaces work but `iptables` is missing "
                         "(scripts/install-deps.sh installs it)\n")
        sys.exit(1)
    cleanup_stale()
