"""Network partitions of a 3-node cluster of the real binary. Each node runs in a network
namespace of its own on a private bridge (netns.py); the memcached clients of the load run in
the bridge's namespace, and a second client namespace stands on the minority side of a split.
Links are cut with iptables inside the nodes' namespaces and made flaky with netem (or its
userspace stand-in where the kernel has no netem):

  - the leader isolated from its peers and from the clients: the majority elects a new leader
    and keeps serving; after the heal the old leader rejoins as a follower and catches up;
  - a 2|1 split with the leader and a client in the minority: the minority client gets no
    answer (no write acknowledged, no read served) until the heal, the majority serves;
  - one-way loss: a leader that cannot hear its peers, and one whose messages are lost;
  - a flaky network, 20 ms ± 15 ms delay and 5% loss on every node's link, writes and reads
    keep succeeding;
  - a seeded sequence of such faults on the leader or a follower (RAFTKV_PARTITION_SEED picks
    another sequence); a follower's fault never changes the leader, not even on its return.

Under each, the load's history (writes that timed out count as unknown outcomes) must be
linearizable, every acknowledged write present on every node afterwards, and the replicas
identical. Where network namespaces cannot be created (not root, no iproute2, no netns
support) the file exits 77, which ctest reports as skipped, after saying why on stderr."""

import os
import random
import sys
import threading
import time

import harness
import netns
from test_failover import FailoverCase

REQUEST_TIMEOUT_MS = 2000  # a write that cannot commit becomes "outcome unknown" quickly
ELECTION_DEADLINE_S = 5.0  # from the cut to a leader agreed by the majority


class SideClient:
    """One more client on a few register keys of the workload's history, from a namespace of
    its choosing, always through one node: it shows what a client on one side of a split
    sees. Values are unique ("s<id>-<n>"), reads and writes alternate at random; every
    operation is recorded in `history` and its outcome kept in `done` as (call, ret, ok) in
    time.monotonic_ns()."""

    def __init__(self, history, node, keys, client_id, ns=None, op_timeout=5.0, seed=1):
        self.history, self.node, self.keys = history, node, keys
        self.client_id, self.ns, self.op_timeout = client_id, ns, op_timeout
        self.rng = random.Random(seed)
        self.done = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=self.op_timeout + 10)
        assert not self._thread.is_alive(), "a side client did not stop"

    def successes(self, since_ns=0):
        return sum(1 for call, _, ok in list(self.done) if ok and call >= since_ns)

    def _run(self):
        restore = netns.enter(self.ns) if self.ns else None
        client = harness.McClient(self.node.memcached, timeout=self.op_timeout,
                                  connect_timeout=1.0)
        try:
            self._loop(client)
        finally:
            client.close()
            if restore:
                restore()

    def _loop(self, client):
        h, seq = self.history, 0
        while not self._stop.is_set():
            try:
                client.connect()
            except OSError:
                self._stop.wait(0.05)
                continue
            key = self.rng.choice(self.keys)
            seq += 1
            if self.rng.random() < 0.5:
                op = h.invoke(self.client_id, key, "get")
                try:
                    got = client.get(key)
                    h.complete(op, None if got is None else got.decode())
                except (OSError, harness.McServerError):
                    h.unknown(op)
                    client.close()
            else:
                op = h.invoke(self.client_id, key, "set", f"s{self.client_id}-{seq}")
                try:
                    reply = client.set(key, op.input)
                except OSError:
                    reply = None
                    client.close()
                if reply == "STORED":
                    h.complete(op, reply)
                else:
                    h.unknown(op)
            self.done.append((op.call, op.ret, op.ret is not None))


class PartitionCase(FailoverCase):
    def setUp(self):
        self.net = netns.Network()
        self.addCleanup(self.net.close)
        # This thread (and the load's threads it starts) talk to the nodes from the bridge.
        self.addCleanup(self.net.enter_bridge())
        self.side_clients = []

    def start_cluster(self, **kwargs):
        c = self.cluster = netns.NsCluster(self.net, nodes=3,
                                          limits={"request_timeout_ms": REQUEST_TIMEOUT_MS},
                                          **kwargs)
        self.addCleanup(self.close_cluster, c)
        c.start()
        return c.wait_ready(timeout=20)

    def close_cluster(self, c):
        for s in self.side_clients:
            s.stop()
        if harness.failure_of(self) is not None:
            for h in self.net.hosts:
                sys.stderr.write(f"----- iptables in {h.ns} -----\n{h.rules()}")
        super().close_cluster(c)

    def workload(self, seed, prefix):
        return harness.Workload(self.cluster, clients=6, ack_writers=2, counter_clients=1,
                                seed=seed, prefix=prefix)

    def side_client(self, history, node, keys, client_id, ns=None):
        s = SideClient(history, node, keys, client_id, ns=ns, seed=client_id,
                       op_timeout=REQUEST_TIMEOUT_MS / 1000.0 + 3.0)
        self.side_clients.append(s)
        return s.start()

    def wait_new_leader_after_cut(self, old, what):
        cut_at = self.cut_at = time.monotonic()
        new = self.cluster.wait_new_leader(old, timeout=15)
        elapsed = time.monotonic() - cut_at
        sys.stderr.write(f"{what}: node {new.id} leads {elapsed:.3f}s after the cut\n")
        self.assertLess(elapsed, ELECTION_DEADLINE_S, f"{what}: election took {elapsed:.2f}s")
        return new

    def hold(self, w, unknown_at_cut, at_least_s=0.0):
        """Keeps the partition while the majority serves plenty of operations, until some
        request stuck on the cut-off side has run out of time (an unknown outcome), and for
        at least `at_least_s` since the cut, so that the heal has stale state to clean up:
        uncommitted entries on the old leader, TCP connections deep in retransmission
        backoff, clients that gave up on a request. The majority must keep serving all
        along."""
        w.wait_progress(300, timeout=40)
        harness.wait_until(lambda: w.unknown_ops > unknown_at_cut, 30,
                           what="a request on the cut-off side to run out of time")
        while time.monotonic() - self.cut_at < at_least_s:
            w.wait_progress(50, timeout=20)

    def heal_and_rejoin(self, old, what):
        """Removes every fault, waits until `old` follows the leader the cluster agrees on
        and has applied what that leader had committed."""
        healed_at = time.monotonic()
        self.net.heal()
        leader = self.cluster.wait_leader(timeout=30)
        self.assertIsNot(leader, old, f"{what}: the old leader took the leadership back")
        harness.wait_until(lambda: old.status()["role"] == "follower"
                           and old.status()["leader_id"] == leader.id, 30, interval=0.05,
                           what=f"node {old.id} to follow node {leader.id} after the heal")
        self.wait_caught_up(old, leader)
        sys.stderr.write(f"{what}: node {old.id} follows node {leader.id} and caught up "
                         f"{time.monotonic() - healed_at:.3f}s after the heal\n")
        return leader


class IsolatedLeader(PartitionCase):
    def test_isolated_leader_is_replaced_and_rejoins_without_losing_writes(self):
        old = self.start_cluster()
        c = self.cluster
        others = [n for n in c.nodes if n is not old]
        w = self.workload(seed=61, prefix="il")
        w.start()
        try:
            w.wait_progress(100, timeout=30)
            old.host.cut(*[n.host.ip for n in others], netns.BRIDGE_IP)
            unknown_at_cut = w.unknown_ops
            self.wait_new_leader_after_cut(old, "isolated leader")
            # Longer than the peer transport's write timeout (10 s) and than several
            # doublings of TCP's retransmission timeout.
            self.hold(w, unknown_at_cut, at_least_s=12.0)
            self.heal_and_rejoin(old, "isolated leader")
            w.wait_progress(100, timeout=30)
        finally:
            w.stop()
        self.finish(w)


class MinoritySplit(PartitionCase):
    def test_split_two_one_with_the_leader_and_a_client_in_the_minority(self):
        old = self.start_cluster()
        c = self.cluster
        f1, f2 = [n for n in c.nodes if n is not old]
        minority_host = self.net.add_host("c2", 2)
        w = self.workload(seed=62, prefix="sp")
        # Both sides' clients work on the same registers: a stale read or a lost write on
        # either side shows up in the history.
        regs = ["reg0", "reg1", "reg2"]
        minority = self.side_client(w.history, old, regs, 200, ns=minority_host.ns)
        majority = self.side_client(w.history, f1, regs, 201)
        w.start()
        try:
            w.wait_progress(100, timeout=30)
            harness.wait_until(lambda: minority.successes() >= 20, 30,
                               what="the minority-side client to get answers")
            # {old leader, client c2} | {f1, f2, the load's clients}
            unknown_at_cut = w.unknown_ops
            old.host.cut(f1.host.ip, f2.host.ip, netns.BRIDGE_IP)
            f1.host.cut(minority_host.ip)
            f2.host.cut(minority_host.ip)
            new = self.wait_new_leader_after_cut(old, "2|1 split")
            elected_ns = time.monotonic_ns()
            self.hold(w, unknown_at_cut)
            harness.wait_until(lambda: majority.successes(elected_ns) >= 20, 30,
                               what="the majority-side client to get answers")
            self.assertIn(new, (f1, f2))
            healed_ns = time.monotonic_ns()
            self.heal_and_rejoin(old, "2|1 split")
            harness.wait_until(lambda: minority.successes(healed_ns) >= 10, 30,
                               what="the minority-side client to get answers after the heal")
            w.wait_progress(100, timeout=30)
        finally:
            minority.stop()
            majority.stop()
            w.stop()
        # Nothing the minority client asked once the majority had moved on can have been
        # answered before the heal: a write needs a quorum to commit, a read a quorum's
        # heartbeat answers (ReadIndex). It did ask, and got errors or timeouts.
        during = [(call, ret, ok) for call, ret, ok in minority.done
                  if elected_ns <= call < healed_ns]
        answered = [(call, ret) for call, ret, ok in during if ok and ret <= healed_ns]
        self.assertEqual(answered, [], "the minority answered its client during the split")
        self.assertTrue(any(not ok for _, _, ok in during),
                        "the minority-side client was never cut off")
        self.finish(w)


class OneWayLoss(PartitionCase):
    def one_way(self, seed, prefix, cut, what):
        old = self.start_cluster()
        c = self.cluster
        others = [n for n in c.nodes if n is not old]
        w = self.workload(seed=seed, prefix=prefix)
        w.start()
        try:
            w.wait_progress(100, timeout=30)
            unknown_at_cut = w.unknown_ops
            cut(old.host, *[n.host.ip for n in others])
            self.wait_new_leader_after_cut(old, what)
            # The clients still reach the old leader: it must not go on calling itself the
            # leader (a leader that hears no quorum steps down; one that hears a higher
            # term follows it).
            harness.wait_until(lambda: old.status()["role"] != "leader", 10, interval=0.05,
                               what=f"node {old.id} to stop calling itself the leader")
            self.hold(w, unknown_at_cut)
            self.heal_and_rejoin(old, what)
            w.wait_progress(100, timeout=30)
        finally:
            w.stop()
        self.finish(w)

    def test_leader_that_hears_nothing_from_its_peers(self):
        self.one_way(63, "oi", netns.Host.drop_from, "leader cannot receive")

    def test_leader_whose_messages_to_its_peers_are_lost(self):
        self.one_way(64, "oo", netns.Host.drop_to, "leader cannot send")


class Nemesis(PartitionCase):
    FAULTS = {
        # name: how the victim's namespace treats the other nodes (and maybe the clients)
        "isolated": lambda host, peers: host.cut(*peers, netns.BRIDGE_IP),
        "cut from its peers": lambda host, peers: host.cut(*peers),
        "deaf to its peers": lambda host, peers: host.drop_from(*peers),
        "mute to its peers": lambda host, peers: host.drop_to(*peers),
    }

    def test_seeded_sequence_of_partitions(self):
        # Rounds of a random fault on the leader or a follower, each held under load past an
        # election timeout, then healed. A follower's fault must not change the leader, not
        # even when it comes back (pre-vote and check-quorum).
        seed = int(os.environ.get("RAFTKV_PARTITION_SEED", "7"))
        sys.stderr.write(f"nemesis seed {seed} (RAFTKV_PARTITION_SEED)\n")
        rng = random.Random(seed)
        self.start_cluster()
        c = self.cluster
        w = self.workload(seed=66, prefix="nm")
        w.start()
        faults = []
        try:
            w.wait_progress(50, timeout=30)
            for _ in range(8):
                leader = c.wait_leader(timeout=20)
                victim = leader if rng.random() < 0.5 else rng.choice(
                    [n for n in c.nodes if n is not leader])
                name = rng.choice(sorted(self.FAULTS))
                faults.append(f"node {victim.id}{' (leader)' if victim is leader else ''} "
                              f"{name}")
                self.FAULTS[name](victim.host,
                                  [n.host.ip for n in c.nodes if n is not victim])
                if victim is leader:
                    self.wait_new_leader_after_cut(victim, faults[-1])
                else:
                    self.cut_at = time.monotonic()
                until = self.cut_at + rng.uniform(0.8, 3.0)
                while True:  # the majority keeps serving for the whole fault
                    w.wait_progress(20, timeout=20)
                    if time.monotonic() >= until:
                        break
                now_leader = self.heal_and_rejoin(victim, faults[-1]) if victim is leader \
                    else self.heal_follower(victim)
                if victim is not leader:
                    self.assertIs(now_leader, leader,
                                  f"{faults[-1]}: the leader changed from node {leader.id} "
                                  f"to node {now_leader.id}")
                w.wait_progress(30, timeout=30)
        finally:
            sys.stderr.write(f"faults: {faults}\n")
            w.stop()
        self.finish(w)

    def heal_follower(self, f):
        self.net.heal()
        leader = self.cluster.wait_leader(timeout=30)
        self.wait_caught_up(f, leader)
        return leader


class FlakyNetwork(PartitionCase):
    def test_delay_and_loss_on_every_link(self):
        self.start_cluster()
        c = self.cluster
        w = self.workload(seed=65, prefix="fl")
        w.start()
        try:
            w.wait_progress(100, timeout=30)
            how = self.net.flaky([n.host for n in c.nodes], delay_ms=20, jitter_ms=15,
                                 loss=0.05)
            sys.stderr.write(f"flaky network: 20ms ± 15ms, 5% loss on every node's link "
                             f"({how})\n")
            # The links really are slow: a TCP handshake with each node waits for the
            # node's delayed SYN-ACK.
            for n in c.nodes:
                times = []
                for _ in range(7):
                    started = time.monotonic()
                    if harness.port_open(n.http):
                        times.append(time.monotonic() - started)
                self.assertTrue(times, f"node {n.id} unreachable")
                median = sorted(times)[len(times) // 2]
                sys.stderr.write(f"node {n.id}: median TCP handshake {median * 1000:.1f} ms\n")
                self.assertGreater(median, 0.004,
                                   f"node {n.id}: handshakes are not delayed: {times}")
            started_ns = time.monotonic_ns()
            for _ in range(4):  # each stretch of progress must come within the deadline
                w.wait_progress(100, timeout=30)
            ended_ns = time.monotonic_ns()
            leader_views = {n.id: c.leader_view(n) for n in c.nodes}
            if self.net.delayer is not None:
                sys.stderr.write(f"delayer: {self.net.delayer.stats}\n")
                self.assertIsNone(self.net.delayer.error)
                self.assertGreater(self.net.delayer.stats["dropped"], 0)
            self.net.heal()
        finally:
            w.stop()
        during = [op for op in w.history.ops()
                  if started_ns <= op.call and op.ret is not None and op.ret <= ended_ns]
        reads = sum(1 for op in during if op.kind == "get")
        writes = sum(1 for op in during if op.kind != "get")
        sys.stderr.write(f"flaky network: {reads} reads and {writes} writes answered in "
                         f"{(ended_ns - started_ns) / 1e9:.1f}s, leaders seen at the end "
                         f"{leader_views}\n")
        self.assertGreater(reads, 50)
        self.assertGreater(writes, 50)
        self.finish(w)


if __name__ == "__main__":
    netns.require_or_skip()
    harness.main()
