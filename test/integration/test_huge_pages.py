"""Process test of snapshot loads on transparent huge pages (app/huge_page_heap.h): the raftkv
binary loads a snapshot into 2 MiB pages where the kernel's THP mode allows it, says so in its
startup line, and RAFTKV_HUGE_PAGES=0 turns it off. Restart time at a million items depends on
it (bench/README-scale.md); this checks that the mechanism is in place.
"""

import os
import unittest

import harness

THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode():
    """The kernel's THP mode: "always", "madvise" or "never" (None if unknown)."""
    try:
        with open(THP_MODE_FILE) as f:
            text = f.read()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return None


def anon_huge_kb(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    raise AssertionError("no AnonHugePages in smaps_rollup")


class HugePageHeap(harness.TestCase):
    def restart_and_measure(self, env_value):
        """A one-node cluster stores ~40 MB and snapshots it, then restarts (with
        RAFTKV_HUGE_PAGES=env_value, or unset) and loads that snapshot. Returns the startup
        line of the second start and the node's anonymous huge-page kB after the load."""
        c = harness.Cluster(nodes=1, raft={"fsync": False, "snapshot_entries": 1000})
        self.addCleanup(harness.close_after, self, c)  # node logs if it fails
        c.start()
        c.wait_ready()
        node = c.nodes[0]
        value = b"h" * 10_000
        with harness.McClient(node.memcached) as mc:
            mc.set_noreply((b"huge%d" % i, value) for i in range(4_000))
        # Snapshots every 1,000 entries: the last one holds at least 3,000 of the items.
        harness.wait_until(lambda: node.status()["snapshot_index"] >= 3_000, 30,
                           interval=0.05, what="a snapshot of 3,000 items or more")
        self.assertEqual(node.stop(), 0)
        saved = os.environ.pop("RAFTKV_HUGE_PAGES", None)
        if env_value is not None:
            os.environ["RAFTKV_HUGE_PAGES"] = env_value
        try:
            node.restart()
        finally:
            os.environ.pop("RAFTKV_HUGE_PAGES", None)
            if saved is not None:
                os.environ["RAFTKV_HUGE_PAGES"] = saved
        c.wait_ready()
        with harness.McClient(node.memcached) as mc:
            self.assertEqual(mc.get("huge3999"), value)
        starts = [line for line in node.log().splitlines() if " starting: " in line]
        self.assertEqual(len(starts), 2)
        return starts[1], anon_huge_kb(node.proc.pid)

    def test_snapshot_load_uses_huge_pages_unless_turned_off(self):
        mode = thp_mode()
        if mode not in ("always", "madvise"):
            raise unittest.SkipTest(f"transparent huge pages are {mode or 'unknown'} "
                                    f"({THP_MODE_FILE}): nothing to check")
        line, huge_kb = self.restart_and_measure(None)
        if "allocator tcmalloc" not in line:
            raise unittest.SkipTest(f"this binary runs on glibc's malloc: {line}")
        self.assertIn("snapshot loads on 2 MiB pages", line)
        # Most of the 40 MB lands on huge pages here; a machine short of free 2 MiB blocks
        # may fall back to small pages for some, so ask for a few only.
        self.assertGreaterEqual(huge_kb, 4 * 1024,
                                "a 40 MB snapshot should be loaded onto huge pages")

        line, huge_kb = self.restart_and_measure("0")
        self.assertNotIn("2 MiB pages", line)
        if mode == "madvise":  # in "always" mode the kernel uses them without being asked
            self.assertLess(huge_kb, 4 * 1024)


if __name__ == "__main__":
    harness.main()
