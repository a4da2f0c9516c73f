"""Failures of a 3-node cluster of the real binary under a load of concurrent memcached
clients on every node: kill -9 of the leader (catch-up by log, and by snapshot with a small
raft.snapshot_entries), kill -9 of every node at once (with and without snapshots), a follower
frozen with SIGSTOP past several snapshots, a leader frozen past an election timeout that
comes back, and a seeded mix of kills and pauses. After each: nothing acknowledged is lost,
every node serves reads and holds the same versions, and the recorded history is
linearizable. These tests need the replicated cluster: they fail (never skip) without it."""

import random
import sys
import time

import harness

NEW_LEADER_DEADLINE_S = 2.0


class FailoverCase(harness.TestCase):
    def start_cluster(self, **kwargs):
        c = self.cluster = harness.Cluster(nodes=3, **kwargs)
        self.addCleanup(self.close_cluster, c)
        c.start()
        return c.wait_ready(timeout=20)

    def close_cluster(self, c):
        # Node logs help whoever reads a failure; print them before the temp dir goes.
        harness.dump_logs_if_failed(self, c)
        c.close()

    def finish(self, w):
        """Stops the load, waits for the replicas to agree, reads everything back through
        every node and checks the history."""
        w.stop()
        self.cluster.wait_converged(timeout=30)
        missing = w.read_back()
        self.assertEqual(missing[:10], [], f"acknowledged writes lost: {w.summary()}")
        self.assertEqual(w.check_counter(), [])
        self.assertGreater(len(w.acked), 0, w.summary())
        # Every replica holds the same items with the same versions.
        replicas = {n.id: w.versions(n) for n in self.cluster.nodes}
        first = replicas[self.cluster.nodes[0].id]
        for node_id, items in replicas.items():
            diff = sorted(k for k in set(first) | set(items) if first.get(k) != items.get(k))
            self.assertEqual(diff[:10], [], f"node {node_id} differs from node 1")
        result = w.check()
        self.assertTrue(result.ok, result.explain())
        return result

    def kill_leader_and_time_the_election(self, w):
        c = self.cluster
        old = c.wait_leader(timeout=10)
        old.kill()
        killed_at = time.monotonic()
        new = c.wait_new_leader(old, timeout=15)
        elapsed = time.monotonic() - killed_at
        sys.stderr.write(f"node {new.id} leads {elapsed:.3f}s after kill -9 of node {old.id}\n")
        self.assertLess(elapsed, NEW_LEADER_DEADLINE_S,
                        f"new leader {new.id} agreed {elapsed:.2f}s after kill -9 of node {old.id}")
        return old, new

    def wait_caught_up(self, node, leader, timeout=30):
        """Waits until `node` has applied what the leader had committed when we asked."""
        target = leader.status()["commit_index"]
        harness.wait_until(lambda: node.status()["applied_index"] >= target, timeout,
                           interval=0.05, what=f"node {node.id} to apply index {target}")
        return target


class KillLeader(FailoverCase):
    def test_kill_leader_under_load_then_restart_catches_up_by_log(self):
        self.start_cluster()
        w = harness.Workload(self.cluster, clients=6,
                             ack_writers=2, counter_clients=2, seed=21, prefix="kl")
        w.start()
        try:
            w.wait_progress(100, timeout=30)
            old, new = self.kill_leader_and_time_the_election(w)
            # The survivors keep taking writes and reads.
            w.wait_progress(150, timeout=30)
            acked_while_down = dict(w.acked)
            old.restart()
            self.wait_caught_up(old, new)
            status = old.status()
            self.assertEqual(status["role"], "follower")
            self.assertEqual(status["leader_id"], new.id)
            # It serves reads, including of writes made while it was dead.
            with harness.McClient(old.memcached) as c:
                for key, value in list(acked_while_down.items())[-20:]:
                    self.assertEqual(c.get(key), value.encode(), key)
            w.wait_progress(100, timeout=30)
        finally:
            w.stop()
        self.assertNotIn("installed snapshot from the leader", old.log())
        self.finish(w)

    def test_restarted_node_catches_up_by_snapshot(self):
        # A small snapshot interval: the survivors compact their logs past what the dead node
        # has, so the leader has to send it a snapshot (InstallSnapshot).
        self.start_cluster(raft={"snapshot_entries": 50})
        w = harness.Workload(self.cluster, clients=6,
                             ack_writers=2, counter_clients=2, seed=22, prefix="ks")
        w.start()
        try:
            w.wait_progress(100, timeout=30)
            leader = self.cluster.wait_leader(timeout=10)
            last_known = leader.status()["last_log_index"]
            old, new = self.kill_leader_and_time_the_election(w)
            # Run until the new leader's snapshot is well past anything the dead node held.
            harness.wait_until(lambda: new.status()["snapshot_index"] > last_known + 120, 60,
                               interval=0.1, what="the new leader to compact its log")
            old.restart()
            self.wait_caught_up(old, new)
            harness.wait_until(lambda: "installed snapshot from the leader" in old.log(), 10,
                               what=f"node {old.id} to log the snapshot install")
            self.assertGreater(old.status()["snapshot_index"], last_known)
            with harness.McClient(old.memcached) as c:
                for key, value in list(w.acked.items())[-20:]:
                    self.assertEqual(c.get(key), value.encode(), key)
            w.wait_progress(100, timeout=30)
        finally:
            w.stop()
        self.finish(w)
        # Every replica holds the same versions after the snapshot path.
        keys = list(w.acked)[-30:]
        versions = []
        for n in self.cluster.nodes:
            with harness.McClient(n.memcached) as c:
                versions.append({k: cas for k, (_, _, cas) in
                                 c.get_multi(keys, cmd="gets").items()})
        self.assertEqual(versions[0], versions[1])
        self.assertEqual(versions[0], versions[2])

    def test_kill_all_three_and_restart_loses_nothing_acknowledged(self):
        self.start_cluster()
        w = harness.Workload(self.cluster, clients=6,
                             ack_writers=2, counter_clients=2, seed=23, prefix="ka")
        w.start()
        try:
            w.wait_progress(200, timeout=30)
            for n in self.cluster.nodes:  # as close to "at once" as signals get
                n.proc.kill()
            for n in self.cluster.nodes:
                n.kill()  # reap
        finally:
            w.stop()
        acked = len(w.acked)
        self.assertGreater(acked, 0)
        for n in self.cluster.nodes:
            n.restart()
        self.cluster.wait_ready(timeout=20)
        self.finish(w)
        self.assertEqual(len(w.acked), acked)
        # And the cluster works again.
        leader = self.cluster.wait_leader(timeout=10)
        with harness.McClient(leader.memcached) as mc:
            self.assertEqual(mc.set("after-restart", "yes"), "STORED")


    def test_kill_all_three_with_snapshots_and_restart(self):
        # The same with a small snapshot interval: every node restarts from its latest
        # snapshot plus the log after it.
        self.start_cluster(raft={"snapshot_entries": 50})
        w = harness.Workload(self.cluster, clients=6,
                             ack_writers=2, counter_clients=2, seed=25, prefix="kb")
        w.start()
        try:
            w.wait_progress(300, timeout=40)
            harness.wait_until(
                lambda: all(n.status()["snapshot_index"] > 0 for n in self.cluster.nodes), 30,
                what="every node to take a snapshot")
            for n in self.cluster.nodes:
                n.proc.kill()
            for n in self.cluster.nodes:
                n.kill()
        finally:
            w.stop()
        for n in self.cluster.nodes:
            n.restart()
        self.cluster.wait_ready(timeout=20)
        for n in self.cluster.nodes:
            self.assertRegex(n.log(), r"recovered in \d+ ms: term \d+, snapshot at [1-9]")
        self.finish(w)


class Nemesis(FailoverCase):
    def test_random_kills_and_pauses_under_load(self):
        # A seeded sequence of faults (kill -9 or SIGSTOP of the leader or of a follower,
        # at most one node down at a time, each healed after a moment of load), then a
        # check of everything the clients saw.
        rng = random.Random(5)
        self.start_cluster(raft={"snapshot_entries": 100}, limits={"request_timeout_ms": 2000})
        c = self.cluster
        w = harness.Workload(c, clients=6, ack_writers=2, counter_clients=2, seed=26, prefix="nm")
        w.start()
        faults = []
        try:
            w.wait_progress(50, timeout=30)
            for _ in range(10):
                leader = c.wait_leader(timeout=15)
                victim = leader if rng.random() < 0.6 else rng.choice(
                    [n for n in c.nodes if n is not leader])
                pause = rng.random() < 0.5
                faults.append(f"{'pause' if pause else 'kill'} {victim.id}"
                              f"{' (leader)' if victim is leader else ''}")
                if pause:
                    victim.pause()
                else:
                    victim.kill()
                if victim is leader:
                    c.wait_new_leader(victim, timeout=15)
                w.wait_progress(30, timeout=30)
                time.sleep(rng.uniform(0.1, 0.8))  # let the load run against the fault
                if pause:
                    victim.resume()
                else:
                    victim.restart()
                c.wait_ready(timeout=20)
                w.wait_progress(30, timeout=30)
        finally:
            w.stop()
            sys.stderr.write(f"faults: {faults}\n")
        self.finish(w)


class PausedFollower(FailoverCase):
    def test_follower_stopped_past_snapshots_catches_up_after_sigcont(self):
        # The follower keeps its in-memory state while stopped; the leader compacts past it
        # and has to replace that state with a snapshot when it wakes up.
        self.start_cluster(raft={"snapshot_entries": 50})
        leader = self.cluster.wait_leader(timeout=10)
        f = next(n for n in self.cluster.nodes if n is not leader)
        w = harness.Workload(self.cluster, clients=6, ack_writers=2, counter_clients=2,
                             seed=27, prefix="pf")
        w.start()
        try:
            w.wait_progress(50, timeout=30)
            behind = f.status()["applied_index"]
            f.pause()
            harness.wait_until(lambda: leader.status()["snapshot_index"] > behind + 120, 60,
                               interval=0.1, what="the leader to compact past the follower")
            f.resume()
            self.wait_caught_up(f, leader)
            harness.wait_until(lambda: "installed snapshot from the leader" in f.log(), 10,
                               what=f"node {f.id} to log the snapshot install")
            with harness.McClient(f.memcached) as mc:
                for key, value in list(w.acked.items())[-20:]:
                    self.assertEqual(mc.get(key), value.encode(), key)
            w.wait_progress(100, timeout=30)
        finally:
            w.stop()
        self.finish(w)


class PausedLeader(FailoverCase):
    def test_stopped_leader_acknowledges_nothing_and_serves_no_stale_read(self):
        self.start_cluster()
        c = self.cluster
        old = c.wait_leader(timeout=10)
        with harness.McClient(old.memcached) as mc:
            self.assertEqual(mc.set("reg", "old"), "STORED")
        w = harness.Workload(c, clients=6, ack_writers=1, counter_clients=2, seed=24, prefix="pl")
        w.start()
        probes = []
        try:
            w.wait_progress(60, timeout=30)
            # Connections to the old leader made before it freezes; the kernel keeps
            # accepting and buffering on them while it is stopped.
            # Many of them, so that some are likely handled in the same wake-up as the first
            # peer frames, before the old leader learns of the new term.
            readers = [harness.McClient(old.memcached, timeout=20).connect() for _ in range(16)]
            writers = [harness.McClient(old.memcached, timeout=20).connect() for _ in range(4)]
            probes = readers + writers
            old.pause()
            paused_at = time.monotonic()
            new = c.wait_new_leader(old, timeout=15)
            self.assertLess(time.monotonic() - paused_at, NEW_LEADER_DEADLINE_S + 1.0)
            with harness.McClient(new.memcached) as mc:
                self.assertEqual(mc.set("reg", "new"), "STORED")
            w.wait_progress(100, timeout=30)
            # Requests queued at the frozen node: served only once it runs again, when it
            # still believes it leads.
            for r in readers:
                r.send(b"get reg\r\n")
            for i, writer in enumerate(writers):
                writer.send(f"set from-old{i} 0 0 5\r\nstale\r\n".encode())
            old.resume()
            stale = []
            for r in readers:
                try:
                    got = r.read_values().get("reg")
                except harness.McServerError:
                    continue  # refusing is fine; answering the old value is not
                if got is None or got[0] != b"new":
                    stale.append(got)
            self.assertEqual(stale, [], "the old leader answered a stale read")
            write_replies = [writer.read_line() for writer in writers]
            # More reads at it right after it woke up, on fresh connections.
            deadline = time.monotonic() + 1.0
            answers = 0
            while time.monotonic() < deadline:
                with harness.McClient(old.memcached, timeout=20) as mc:
                    try:
                        got = mc.get("reg")
                    except harness.McServerError:
                        continue
                    self.assertEqual(got, b"new", "stale read from the old leader")
                    answers += 1
            self.assertGreater(answers, 0, "the old leader never served a read again")
            harness.wait_until(lambda: old.status()["role"] == "follower", 10,
                               what="the old leader to step down")
            self.assertEqual(old.status()["leader_id"], new.id)
            w.wait_progress(100, timeout=30)
        finally:
            for p in probes:
                p.close()
            w.stop()
        self.finish(w)
        # A write the old leader acknowledged must be a real, durable one.
        for i, reply in enumerate(write_replies):
            if reply == "STORED":
                for n in c.nodes:
                    with harness.McClient(n.memcached) as mc:
                        self.assertEqual(mc.get(f"from-old{i}"), b"stale", f"node {n.id}")
            else:
                self.assertTrue(reply.startswith("SERVER_ERROR"), reply)


class ForwardedWrite(FailoverCase):
    def test_write_forwarded_to_a_frozen_leader_is_retried_with_the_new_one(self):
        # A follower that forwarded a write to a leader that then stops answering must not
        # wait out the whole request timeout: when a new leader is elected it re-sends the
        # write (same request id, so it still applies at most once).
        self.start_cluster(limits={"request_timeout_ms": 4000})
        c = self.cluster
        old = c.wait_leader(timeout=10)
        follower = next(n for n in c.nodes if n is not old)
        with harness.McClient(follower.memcached, timeout=10) as mc:
            self.assertEqual(mc.set("fw", "1"), "STORED")
            old.pause()
            started = time.monotonic()
            self.assertEqual(mc.set("fw", "2"), "STORED")
            took = time.monotonic() - started
            self.assertLess(took, 3.0, "the forwarded write waited for the request timeout")
            old.resume()
            self.assertEqual(mc.get("fw"), b"2")


if __name__ == "__main__":
    harness.main()
