"""A healthy 3-node cluster of the real binary through the memcached door: a leader is
elected within 2 s, a client on any node writes and reads, every replica applies the same
index and reports the same item versions, and a history of concurrent clients on different
nodes is linearizable. With both followers stopped, writes to the leader fail with "outcome
unknown" after limits.request_timeout_ms and succeed again once the followers are back. These
tests need the replicated cluster: they fail (never skip) without it."""

import json
import sys
import threading
import time

import harness
import linearizability as lin

ELECTION_DEADLINE_S = 2.0
# The leader's read lease with election_ticks = 200 and tick_ms = 10 (FollowersStopped):
# (200 - 2) x 10 ms x 3/4 (raft/replica.h, leader_lease_ms).
LEASE_S = 1.485


class HealthyCluster(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=3)
        try:
            launched = time.monotonic()
            cls.cluster.start()
            for n in cls.cluster.nodes:
                harness.wait_until(lambda n=n: harness.port_open(n.memcached), 15,
                                   what=f"node {n.id} up")
            up = time.monotonic()
            cls.leader = cls.cluster.wait_leader(timeout=15)
            # From the launch of the processes, and from the moment all of them accept
            # clients (what the cluster itself controls).
            cls.election_s = time.monotonic() - launched
            cls.election_after_up_s = time.monotonic() - up
            sys.stderr.write(f"leader agreed {cls.election_s:.3f}s after launch, "
                             f"{cls.election_after_up_s:.3f}s after every node was up\n")
        except Exception:
            cls.cluster.dump_logs()
            cls.cluster.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def run(self, result=None):
        # Node logs help whoever reads a failure.
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            self.cluster.dump_logs()
        return out

    def test_a_leader_within_2s(self):
        self.assertLess(self.election_s, ELECTION_DEADLINE_S,
                        f"leader agreed {self.election_s:.2f}s after launch")
        leader = self.cluster.wait_leader(timeout=10)
        roles = {n.id: n.status()["role"] for n in self.cluster.nodes}
        self.assertEqual(roles[leader.id], "leader")
        self.assertEqual(sorted(roles.values()), ["follower", "follower", "leader"], roles)
        terms = {n.stats()["raft_term"] for n in self.cluster.nodes}
        self.assertEqual(len(terms), 1, terms)

    def test_memcached_client_on_any_node_writes_and_reads(self):
        nodes = self.cluster.nodes
        for n in nodes:
            with harness.McClient(n.memcached) as c:
                self.assertEqual(c.set(f"any{n.id}", f"from node {n.id}", flags=n.id), "STORED")
                self.assertEqual(c.add(f"any{n.id}", "again"), "NOT_STORED")
                self.assertEqual(c.set(f"ctr{n.id}", "10"), "STORED")
                c.send(f"incr ctr{n.id} 5\r\n".encode())
                self.assertEqual(c.read_line(), "15")
        # Every node reads every write at once (linearizable reads, forwarded or not).
        for reader in nodes:
            with harness.McClient(reader.memcached) as c:
                got = c.get_multi([f"any{n.id}" for n in nodes] + ["nope"])
                self.assertEqual({k: (v, f) for k, (v, f, _) in got.items()},
                                 {f"any{n.id}": (f"from node {n.id}".encode(), n.id)
                                  for n in nodes}, f"read through node {reader.id}")
                self.assertEqual(c.get(f"ctr{nodes[-1].id}"), b"15")
        # cas through one follower with the unique read through another.
        leader = self.cluster.wait_leader(timeout=10)
        f1, f2 = [n for n in nodes if n is not leader]
        with harness.McClient(f1.memcached) as a, harness.McClient(f2.memcached) as b:
            value, unique = a.gets("any1")
            self.assertEqual(b.cas("any1", "swapped", unique), "STORED")
            self.assertEqual(a.cas("any1", "too late", unique), "EXISTS")
            self.assertEqual(a.get("any1"), b"swapped")
            self.assertEqual(b.delete("any1"), "DELETED")
            self.assertIsNone(a.get("any1"))
            self.assertEqual(a.delete("any1"), "NOT_FOUND")

    def test_replicas_apply_the_same_index_and_versions(self):
        nodes = self.cluster.nodes
        keys = [f"ver{i}" for i in range(20)]
        for i, key in enumerate(keys):
            with harness.McClient(nodes[i % 3].memcached) as c:
                self.assertEqual(c.set(key, f"v{i}"), "STORED")
        docs = self.cluster.wait_converged(timeout=20)
        applied = {d["applied_index"] for d in docs.values()}
        self.assertEqual(len(applied), 1, docs)
        # The item versions each replica holds (a gets on a follower reads its own replica
        # after the ReadIndex barrier) are the same log indexes everywhere.
        versions = {}
        for n in nodes:
            with harness.McClient(n.memcached) as c:
                got = c.get_multi(keys, cmd="gets")
                versions[n.id] = {k: cas for k, (_, _, cas) in got.items()}
        self.assertEqual(len(versions[1]), len(keys))
        self.assertEqual(versions[1], versions[2])
        self.assertEqual(versions[1], versions[3])
        self.assertEqual(len(set(versions[1].values())), len(keys), "versions are log indexes")
        self.assertLessEqual(max(versions[1].values()), applied.pop())
        # The HTTP ETag agrees with the memcached cas unique on every node.
        for n in nodes:
            status, headers, body = harness.http_request(n.http, "GET", "/v1/kv/ver7?meta=1")
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["version"], versions[1]["ver7"])
        # memcached stats carry the Raft view; the commit indexes agree once converged.
        stats = {n.id: n.stats() for n in nodes}
        leader = self.cluster.wait_leader(timeout=10)
        self.assertEqual({s["raft_leader"] for s in stats.values()}, {str(leader.id)})
        self.assertEqual(stats[leader.id]["raft_role"], "leader")
        commits = {int(s["raft_commit_index"]) for s in stats.values()}
        self.assertGreaterEqual(min(commits), max(versions[1].values()))

    def test_concurrent_clients_on_all_nodes_are_linearizable(self):
        w = harness.Workload(self.cluster, clients=6,
                             ack_writers=1, counter_clients=2, seed=11, prefix="ok")
        with w:
            w.wait_progress(300, timeout=40)
        self.cluster.wait_converged(timeout=20)
        missing = w.read_back()
        self.assertEqual(missing, [], w.summary())
        self.assertEqual(w.check_counter(), [])
        # A healthy cluster answers every request.
        self.assertEqual(w.unknown_ops, 0, w.summary())
        self.assertGreater(len(w.acked), 0)
        result = w.check()
        self.assertTrue(result.ok, result.explain())
        # The recorded history is strong enough to catch a bad read: one read that returns
        # a value nobody wrote, or an overwritten value long after, is rejected.
        ops = w.history.ops()
        reads = [op for op in ops if op.kind == "get" and op.output not in (None, lin.UNKNOWN)]
        self.assertGreater(len(reads), 0)
        victim = reads[len(reads) // 2]
        saved = victim.output
        victim.output = "never-written"
        self.assertEqual([r.key for r in lin.check(ops).violations], [victim.key])
        victim.output = saved
        final_reads = [op for op in ops if op.client < 0 and op.output not in (None, lin.UNKNOWN)]
        older = [op for op in ops if op.kind == "set" and op.output == "STORED"
                 and op.key == final_reads[0].key and op.input != final_reads[0].output]
        if older:  # a stale value in the read-back after the load is a violation
            final_reads[0].output = older[0].input
            self.assertEqual([r.key for r in lin.check(ops).violations], [final_reads[0].key])


class ReadLeases(harness.TestCase):
    """Reads on the leader are answered on its lease (raft.lease_reads, on by default):
    the status counter moves with them. With the option off every read takes a heartbeat
    round and the counter stays at zero; the answers are the same."""

    def run_reads(self, raft):
        with harness.Cluster(nodes=3, raft=raft) as c:
            leader = c.wait_ready(timeout=30)
            with harness.McClient(leader.memcached) as mc:
                self.assertEqual(mc.set("lease", "v1"), "STORED")
                before = leader.status()["lease_reads"]
                for _ in range(50):
                    self.assertEqual(mc.get("lease"), b"v1")
            return leader.status()["lease_reads"] - before

    def test_leader_reads_use_the_lease(self):
        self.assertGreaterEqual(self.run_reads({}), 40)

    def test_lease_reads_off_takes_a_round_per_read(self):
        self.assertEqual(self.run_reads({"lease_reads": False}), 0)

    def test_a_member_configured_apart_does_not_extend_the_lease(self):
        # Node 3 runs with lease_reads = false: it keeps no vote lease across its restarts,
        # so its answers must not extend another leader's lease (raft/core.h, "Read leases").
        # With the other follower stopped, the leader's reads take a heartbeat round
        # through node 3 instead, and give the same answers.
        c = harness.Cluster(nodes=3)
        odd = c.nodes[2]
        write_config = odd.write_config

        def write_odd_config():
            write_config()
            with open(odd.config_path, "a") as f:
                f.write("\n[raft]\nlease_reads = false\n")

        odd.write_config = write_odd_config
        try:
            for n in c.nodes[:2]:  # a leader other than node 3
                n.start()
            leader = c.wait_ready(timeout=30)
            odd.start()
            c.wait_ready(timeout=30)
            harness.wait_until(lambda: "node 3 announces a read lease of 0 ms" in leader.log(),
                               10, what="the leader's warning about node 3")
            leases = {m["id"]: m["read_lease_ms"] for m in leader.status()["members"]}
            self.assertEqual(leases, {1: 210, 2: 210, 3: 0})
            other = next(n for n in c.nodes[:2] if n is not leader)

            def reads_on_lease(count):
                before = leader.status()["lease_reads"]
                with harness.McClient(leader.memcached) as mc:
                    for _ in range(count):
                        self.assertEqual(mc.get("lease"), b"v1")
                return leader.status()["lease_reads"] - before

            with harness.McClient(leader.memcached) as mc:
                self.assertEqual(mc.set("lease", "v1"), "STORED")
            self.assertGreaterEqual(reads_on_lease(50), 40)  # the other follower counts
            other.pause()
            try:
                # The lease the other follower gave runs out (210 ms by default), and node 3's
                # answers do not renew it.
                harness.wait_until(lambda: reads_on_lease(1) == 0, 10,
                                   what="a read that is not answered on the lease")
                self.assertEqual(reads_on_lease(50), 0)
            finally:
                other.resume()
        except Exception:
            c.dump_logs()
            raise
        finally:
            c.close()


class FollowersStopped(harness.TestCase):
    def test_writes_time_out_without_a_quorum_then_succeed(self):
        # election_ticks is large so that the leader still believes it leads (check-quorum
        # has not yet made it step down) when its writes reach request_timeout_ms.
        with harness.Cluster(nodes=3, raft={"election_ticks": 200},
                             limits={"request_timeout_ms": 1000}) as c:
            try:
                self.run_scenario(c)
            except Exception:
                c.dump_logs()
                raise

    def run_scenario(self, c):
        leader = c.wait_ready(timeout=30)
        followers = [n for n in c.nodes if n is not leader]
        history = lin.History()

        def write(client, key, value):
            op = history.invoke(client, key, "set", value)
            with harness.McClient(leader.memcached, timeout=10) as mc:
                reply = mc.set(key, value)
            if reply == "STORED":
                history.complete(op, reply)
            else:
                history.unknown(op)
            return reply

        self.assertEqual(write(0, "q", "before"), "STORED")

        # A new leader holds a lease once a quorum answered one of its heartbeats.
        def lease_read():
            before = leader.status()["lease_reads"]
            with harness.McClient(leader.memcached, timeout=10) as mc:
                self.assertEqual(mc.get("q"), b"before")
            return leader.status()["lease_reads"] > before

        harness.wait_until(lease_read, 10, what="a read on the leader's lease")
        for f in followers:
            f.pause()
        paused_at = time.monotonic()
        try:
            # The leader's lease (raft.lease_reads) outlives the pause for a while:
            # (election_ticks - 2) x tick_ms x 3/4 = 1.485 s. No follower can vote for anyone
            # else within it, so reads are still answered, and see the last acknowledged write.
            with harness.McClient(leader.memcached, timeout=10) as mc:
                self.assertEqual(mc.get("q"), b"before")
            self.assertLess(time.monotonic() - paused_at, LEASE_S)
            replies = {}

            def lost(i):
                started = time.monotonic()
                reply = write(i, "q", f"lost{i}")
                replies[i] = (reply, time.monotonic() - started)

            threads = [threading.Thread(target=lost, args=(i,)) for i in range(1, 4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            for i, (reply, took) in sorted(replies.items()):
                self.assertEqual(reply, "SERVER_ERROR timeout, outcome unknown", f"write {i}")
                self.assertGreaterEqual(took, 0.9, f"write {i} failed before the timeout")
                self.assertLess(took, 5.0, f"write {i} took {took:.2f}s")
            self.assertEqual(len(replies), 3)
            # Once the lease has run out, a linearizable read cannot be served without a
            # quorum either. Time passing is the event here: the lease ends by the clock.
            time.sleep(max(0.0, LEASE_S + 0.05 - (time.monotonic() - paused_at)))
            with harness.McClient(leader.memcached, timeout=10) as mc:
                started = time.monotonic()
                with self.assertRaises(harness.McServerError) as e:
                    mc.get("q")
                self.assertTrue(str(e.exception).startswith("SERVER_ERROR"), str(e.exception))
                self.assertGreaterEqual(time.monotonic() - started, 0.9)
            # Whatever the leader's role by now, it never acknowledges a write.
            reply = write(9, "q", "lost9")
            self.assertTrue(reply.startswith("SERVER_ERROR"), reply)
        finally:
            for f in followers:
                f.resume()
        resumed_at = time.monotonic()
        seq = [0]

        def stored_again():
            seq[0] += 1
            return write(10 + seq[0], "q", f"after{seq[0]}") == "STORED"

        harness.wait_until(stored_again, 30, interval=0.05, what="a write to succeed again")
        self.assertLess(time.monotonic() - resumed_at, 15)
        c.wait_converged(timeout=20)
        finals = set()
        for n in c.nodes:
            with harness.McClient(n.memcached) as mc:
                op = history.invoke(-n.id, "q", "get")
                got = mc.get("q")
                history.complete(op, None if got is None else got.decode())
                finals.add(got)
        self.assertEqual(len(finals), 1, finals)
        # The final value is the acknowledged one, unless a write whose outcome was
        # unknown took effect after it: the checker decides whether that is allowed.
        result = lin.check(history.ops())
        self.assertTrue(result.ok, result.explain())


if __name__ == "__main__":
    harness.main()
