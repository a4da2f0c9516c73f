"""The amnesia guard (app/generation.h): a node whose data dir was lost must not come back
under its old id. Under a write load, a follower is killed, its data dir wiped and the node
restarted with the same config: it must exit with status 1 and say why, while the cluster
keeps serving and loses no acknowledged write. A node whose journal file is gone after a
kill exits 1 too (it may have held a vote and entries LMDB lacks), but not after a clean
stop. And a member that simply starts late, in a brand-new cluster, is learned at first
sight and replicates normally."""

import os
import sys
import time

import harness
from harness import McClient

LOST_DATA_DIR = 'raftkv_peer_drops_total{reason="lost_data_dir"}'
AMNESIAC_MESSAGE = "the cluster already knows this node with another data dir"
EXIT_DEADLINE_S = 20.0


class AmnesiaTest(harness.TestCase):
    def make_cluster(self, nodes=3):
        c = harness.Cluster(nodes=nodes)
        self.addCleanup(self.close_cluster, c)
        return c

    def close_cluster(self, c):
        harness.dump_logs_if_failed(self, c)
        c.close()

    def test_a_follower_with_a_wiped_data_dir_exits_1_and_the_cluster_loses_nothing(self):
        c = self.make_cluster()
        c.start()
        leader = c.wait_ready(timeout=20)
        w = harness.Workload(c, clients=4, ack_writers=1, seed=13)
        w.start()
        try:
            w.wait_progress(100)
            follower = next(n for n in c.nodes if n is not leader)
            others = [n for n in c.nodes if n is not follower]
            follower.kill()
            follower.wipe_data()
            follower.restart()
            restarted_at = time.monotonic()

            code = follower.wait_exit(EXIT_DEADLINE_S)
            took = time.monotonic() - restarted_at
            sys.stderr.write(f"node {follower.id} exited with {code} {took:.2f}s after its "
                             "restart with a wiped data dir\n")
            self.assertEqual(code, 1, follower.log()[-3000:])
            log = follower.log()
            self.assertIn(f"node {follower.id}: {AMNESIAC_MESSAGE}", log)
            self.assertIn(f"must not vote again under id {follower.id}", log)
            self.assertIn("Restore its data dir only from a copy taken after its last run", log)

            # The cluster kept accepting writes throughout, and still does.
            w.wait_progress(100, timeout=30)

            # The members that knew it name the refusal and count the dropped frames.
            for n in others:
                self.assertIn(f"node {follower.id} lost its data dir", n.log())
                drops = n.metrics().get(LOST_DATA_DIR, 0)
                self.assertGreater(drops, 0, f"node {n.id}: no {LOST_DATA_DIR} in /metrics")

            # Started again on the same (marked) data dir, it refuses at once.
            follower.restart()
            self.assertEqual(follower.wait_exit(EXIT_DEADLINE_S), 1)
            self.assertIn("is marked refused", follower.log())
            self.assertIn(AMNESIAC_MESSAGE, follower.log().split("is marked refused", 1)[1])
        finally:
            w.stop()
        c.wait_converged(timeout=30, nodes=others)
        missing = w.read_back(nodes=others)
        self.assertEqual(missing[:10], [], f"acknowledged writes lost: {w.summary()}")
        self.assertGreater(len(w.acked), 0, w.summary())
        result = w.check()
        self.assertTrue(result.ok, result.explain())

    def test_a_journal_file_lost_after_a_kill_stops_the_node_but_not_after_a_clean_stop(self):
        """raft/storage/journal.h, "Missing files": after kill -9 the journal may hold
        entries and a vote LMDB lacks, so a node whose journal file is gone exits 1 and says
        why; with the file back it rejoins. After a clean stop LMDB holds everything, and
        the node starts without it."""
        c = self.make_cluster()
        c.start()
        leader = c.wait_ready(timeout=20)
        follower = next(n for n in c.nodes if n is not leader)
        with McClient(leader.memcached) as mc:
            for k in range(50):
                self.assertEqual(mc.set(f"before-kill-{k}", "v"), "STORED")
        journal = os.path.join(follower.data_dir, "journal-0")
        follower.kill()
        os.rename(journal, journal + ".kept")
        follower.restart()
        self.assertEqual(follower.wait_exit(EXIT_DEADLINE_S), 1, follower.log()[-3000:])
        self.assertIn(f"journal file {journal} is missing and the node did not stop cleanly",
                      follower.log())
        self.assertFalse(os.path.exists(journal), "the refused start created the file")

        os.rename(journal + ".kept", journal)
        follower.restart()
        c.wait_converged(timeout=30)
        self.assertEqual(follower.stop(), 0)
        os.remove(journal)
        follower.restart()
        with McClient(leader.memcached) as mc:
            self.assertEqual(mc.set("after-clean-stop", "v"), "STORED")
        c.wait_converged(timeout=30)
        self.assertTrue(follower.running(), follower.log()[-3000:])
        self.assertTrue(os.path.exists(journal))

    def test_a_node_that_kept_its_raft_state_is_refused_but_not_stopped(self):
        # Only the generation file is gone: the node draws a new one, but its data dir is
        # not new, so it cannot be the amnesiac; the members refuse it all the same.
        c = self.make_cluster()
        c.start()
        leader = c.wait_ready(timeout=20)
        with McClient(leader.memcached) as client:
            self.assertEqual(client.set("k", "v"), "STORED")
        c.wait_converged(timeout=30)
        odd = next(n for n in c.nodes if n is not leader)
        others = [n for n in c.nodes if n is not odd]
        self.assertEqual(odd.stop(), 0)
        os.remove(os.path.join(odd.data_dir, "generation"))
        odd.restart()
        harness.wait_until(lambda: f"node {odd.id} lost its data dir" in leader.log(), 20,
                           what="the leader to refuse the node")
        harness.wait_until(lambda: "refuses this node" in odd.log(), 20,
                           what="the node to hear the refusal")
        self.assertIn("already held Raft state", odd.log())
        self.assertTrue(odd.running())
        self.assertNotIn(AMNESIAC_MESSAGE, odd.log())
        self.assertFalse(os.path.exists(os.path.join(odd.data_dir, "refused")))
        # The two others serve on without it.
        with McClient(leader.memcached) as client:
            self.assertEqual(client.set("k2", "v2"), "STORED")
        c.wait_converged(timeout=30, nodes=others)
        self.assertEqual(odd.stop(), 0)

    def test_a_member_that_starts_late_in_a_new_cluster_joins_normally(self):
        c = self.make_cluster()
        first, second, late = c.nodes
        first.start()
        second.start()
        for n in (first, second):
            harness.wait_until(lambda n=n: harness.port_open(n.memcached), 15,
                               what=f"node {n.id} up")
        leader = c.wait_leader(timeout=20, among=[first, second])
        # The two run a while without node 3: writes for a few seconds.
        written = {}
        with McClient(leader.memcached) as client:
            deadline = time.monotonic() + 3.0
            i = 0
            while time.monotonic() < deadline:
                key, value = f"early{i}", f"v{i}"
                self.assertEqual(client.set(key, value), "STORED")
                written[key] = value
                i += 1
        self.assertGreater(len(written), 0)
        self.assertFalse(os.path.exists(late.data_dir))

        late.start()
        c.wait_converged(timeout=30, nodes=c.nodes)
        self.assertTrue(late.running())
        with McClient(leader.memcached) as client:
            for i in range(20):
                key, value = f"late{i}", f"w{i}"
                self.assertEqual(client.set(key, value), "STORED")
                written[key] = value
        c.wait_converged(timeout=30, nodes=c.nodes)
        # Node 3's own replica holds everything (gets runs a barrier, then reads locally).
        with McClient(late.memcached) as client:
            keys = sorted(written)
            for start in range(0, len(keys), 50):
                chunk = keys[start:start + 50]
                got = client.get_multi(chunk)
                for k in chunk:
                    self.assertEqual(got.get(k, (None,))[0], written[k].encode(), k)
        # It was learned at first sight, and nobody refused anybody.
        for n in (first, second):
            self.assertIn(f"node {late.id}: data-dir generation", n.log())
            self.assertEqual(n.metrics().get(LOST_DATA_DIR, 0), 0)
            with open(os.path.join(n.data_dir, "peer_generations")) as f:
                self.assertIn(f"{late.id} ", f.read())
        for n in c.nodes:
            self.assertNotIn("lost its data dir", n.log())
            self.assertNotIn(AMNESIAC_MESSAGE, n.log())
        self.assertIn("new data dir: generation", late.log())


if __name__ == "__main__":
    harness.main()
