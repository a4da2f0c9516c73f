"""A clean stop (SIGTERM) with a long log since the last snapshot takes a snapshot first, so
that the next start loads it instead of replaying the log (restart time is mostly replay:
bench/README-scale.md). A short log is not worth a snapshot: the stop then takes none.

Expected: after 30,000 writes with automatic snapshots out of the way, SIGTERM logs "taking a
snapshot before stopping", exits 0 within SPEC §1.1's 5 s, and the next start replays (almost)
nothing and still has every write; after a few more writes, the next SIGTERM takes none."""

import re
import time
import unittest

import harness

WRITES = 30000


def recovery(node):
    """(snapshot index, entries replayed) from the node's latest "recovered in" line."""
    found = re.findall(r"recovered in \d+ ms: term \d+, snapshot at (\d+), replayed (\d+) entries",
                       node.log())
    assert found, "no recovery line in the log"
    snapshot_at, replayed = found[-1]
    return int(snapshot_at), int(replayed)


class CleanStop(unittest.TestCase):
    def setUp(self):
        # Automatic snapshots only far beyond this test's writes (entries and bytes).
        self.cluster = harness.Cluster(nodes=1, raft={"snapshot_entries": 10_000_000})
        self.cluster.start_ready()

    def tearDown(self):
        harness.close_after(self, self.cluster)

    def test_a_long_log_is_snapshotted_before_stopping(self):
        node = self.cluster.nodes[0]
        with harness.McClient(node.memcached, timeout=30) as c:
            c.set_noreply(((b"k%d" % i, b"v%d" % (i % 10)) for i in range(WRITES)), batch=500)
        before = node.status()["applied_index"]
        self.assertGreaterEqual(before, WRITES)
        self.assertEqual(node.status()["snapshot_index"], 0, "an automatic snapshot got in the way")

        started = time.monotonic()
        self.assertEqual(node.stop(), 0)
        self.assertLess(time.monotonic() - started, 5.0)
        self.assertIn("taking a snapshot before stopping", node.log())

        node.restart()
        self.cluster.wait_ready()
        snapshot_at, replayed = recovery(node)
        self.assertGreaterEqual(snapshot_at, before)
        self.assertLess(replayed, 10)
        with harness.McClient(node.memcached) as c:
            for i in (0, WRITES // 2, WRITES - 1):
                self.assertEqual(c.get(f"k{i}"), f"v{i % 10}".encode())

        # A short log since that snapshot: no snapshot on the next stop.
        with harness.McClient(node.memcached) as c:
            for i in range(20):
                self.assertEqual(c.set(f"late{i}", "x"), "STORED")
        self.assertEqual(node.stop(), 0)
        self.assertEqual(node.log().count("taking a snapshot before stopping"), 1)


if __name__ == "__main__":
    harness.main()
