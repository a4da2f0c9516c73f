"""kill -9 of a node while its snapshot child runs, then an immediate restart.

A node writes its snapshots from a forked child (kv/README.md, "Snapshots"). The child shares
the node's lock on its data dir. If it outlived a killed node, the node could not be restarted
until the child finished: "data dir ... is locked by another process".

Expected: the child dies with the node, even when it is stopped (SIGSTOP here, so that it
cannot finish on its own first). The node restarts at once with every acknowledged write, and
with no snapshot and no leftover snapshot tmp file."""

import os
import signal
import threading
import unittest

import harness

ITEMS = 200_000


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().split(") ")[-1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except FileNotFoundError:
        return 0


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class KillDuringSnapshot(unittest.TestCase):
    def setUp(self):
        # No automatic snapshot: the only one is the one this test asks for.
        self.cluster = harness.Cluster(nodes=1, raft={"snapshot_entries": 10_000_000})
        self.cluster.start_ready()
        self.child = None

    def tearDown(self):
        if self.child is not None and alive(self.child):
            os.kill(self.child, signal.SIGKILL)
        harness.close_after(self, self.cluster)

    def test_the_snapshot_child_dies_with_the_node(self):
        node = self.cluster.nodes[0]
        with harness.McClient(node.memcached, timeout=60) as c:
            c.set_noreply((b"k%d" % i, b"v%07d" % i) for i in range(ITEMS))

        # Ask for a snapshot (the request returns when it is done, so from a thread) and
        # catch its child.
        pid = node.proc.pid
        asker = threading.Thread(
            target=lambda: self._ignore_errors(harness.http_request, node.http, "POST",
                                               "/v1/admin/snapshot", timeout=30),
            daemon=True)
        asker.start()
        found = harness.wait_until(lambda: children(pid), 20, interval=0.001,
                                   what="the snapshot child")
        self.child = found[0]
        # Once it has used CPU it is past its first step (asking to die with its parent);
        # stopped, it cannot finish by itself.
        harness.wait_until(lambda: cpu_ticks(self.child) > 0, 20, interval=0.001,
                           what="the snapshot child to run")
        os.kill(self.child, signal.SIGSTOP)

        node.kill()
        harness.wait_until(lambda: not alive(self.child), 5,
                           what="the snapshot child to die with the node")

        node.restart()
        self.cluster.wait_ready(timeout=30)
        self.assertNotIn("is locked by another process", node.log())
        self.assertEqual(node.status()["snapshot_index"], 0)
        leftovers = [f for f in os.listdir(os.path.join(node.data_dir, "snapshots"))
                     if f.startswith("tmp-")]
        self.assertEqual(leftovers, [])
        with harness.McClient(node.memcached) as c:
            for i in (0, ITEMS // 2, ITEMS - 1):
                self.assertEqual(c.get(f"k{i}"), b"v%07d" % i)

    @staticmethod
    def _ignore_errors(fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except Exception:  # the node is killed under it: no answer is expected
            pass


if __name__ == "__main__":
    harness.main()
