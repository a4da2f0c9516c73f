"""A 5-node cluster of the real binary under a load of concurrent memcached clients: kill -9
of the leader, then of the next leader (a quorum of three survives both), a new leader within
2 s each time, writes and reads go on, both dead nodes restart and catch up; nothing
acknowledged is lost and the recorded history is linearizable. This test needs the
replicated cluster: it fails (never skips) without it."""

import sys
import time

import harness

NEW_LEADER_DEADLINE_S = 2.0


class FiveNodeFailover(harness.TestCase):
    def test_two_leaders_killed_in_turn_then_both_restart(self):
        with harness.Cluster(nodes=5) as c:
            try:
                self.run_scenario(c)
            except Exception:
                c.dump_logs()
                raise

    def run_scenario(self, c):
        c.wait_ready(timeout=30)
        w = harness.Workload(c, clients=6, ack_writers=2, counter_clients=2, seed=51, prefix="f5")
        w.start()
        dead = []
        try:
            w.wait_progress(100, timeout=30)
            for round_ in range(2):
                old = c.wait_leader(timeout=15)
                old.kill()
                killed_at = time.monotonic()
                new = c.wait_new_leader(old, timeout=15)
                elapsed = time.monotonic() - killed_at
                sys.stderr.write(f"node {new.id} leads {elapsed:.3f}s after kill -9 of "
                                 f"node {old.id}\n")
                self.assertLess(elapsed, NEW_LEADER_DEADLINE_S,
                                f"round {round_}: node {new.id} agreed {elapsed:.2f}s after "
                                f"kill -9 of node {old.id}")
                self.assertNotIn(new, dead)
                dead.append(old)
                w.wait_progress(100, timeout=30)
            status = new.status()
            self.assertEqual(status["role"], "leader")
            for n in dead:
                n.restart()
            target = new.status()["commit_index"]
            for n in dead:
                harness.wait_until(lambda n=n: n.status()["applied_index"] >= target, 30,
                                   interval=0.05, what=f"node {n.id} to catch up to {target}")
                self.assertEqual(n.status()["leader_id"], new.id)
                with harness.McClient(n.memcached) as mc:
                    for key, value in list(w.acked.items())[-20:]:
                        self.assertEqual(mc.get(key), value.encode(), f"node {n.id} {key}")
            w.wait_progress(100, timeout=30)
        finally:
            w.stop()
        c.wait_converged(timeout=30)
        missing = w.read_back()
        self.assertEqual(missing[:10], [], f"acknowledged writes lost: {w.summary()}")
        self.assertEqual(w.check_counter(), [])
        self.assertGreater(len(w.acked), 0)
        replicas = {n.id: w.versions(n) for n in c.nodes}
        for node_id, items in replicas.items():
            self.assertEqual(items, replicas[1], f"node {node_id} differs from node 1")
        result = w.check()
        self.assertTrue(result.ok, result.explain())


if __name__ == "__main__":
    harness.main()
