"""A rolling restart of a 3-node cluster under a write load, as an operator does an upgrade:
take one node out of the clients' rotation, SIGTERM it, start it again, wait until it has
caught up, put it back, go on with the next; the leader among them. The clients are
memcached connections that move off a node before it is stopped (a load balancer draining
it) and write through whichever node they are on: followers forward to the leader.

Expected: every node exits 0 on SIGTERM; a leader that is stopped hands leadership to a
caught-up follower first, so the writes forwarded through the other nodes never fail; no
write fails or times out during the whole procedure, and every acknowledged write is on
every node afterwards."""

import sys
import threading
import time

import harness

WRITERS = 6
ROUNDS_PER_NODE = 1


class Writer(threading.Thread):
    """Sets distinct keys in a loop on its current node; moves when that node drains."""

    def __init__(self, index, cluster, drain):
        super().__init__(daemon=True)
        self.index, self.cluster, self.drain = index, cluster, drain
        self.stop_flag = threading.Event()
        self.node = cluster.nodes[index % len(cluster.nodes)]
        self.acked = {}
        self.failures = []
        self.slowest = 0.0
        self.count = 0

    def current(self):
        return self.node

    def run(self):
        client = None
        n = 0
        try:
            while not self.stop_flag.is_set():
                draining = self.drain.get("node")
                if self.node is draining or client is None:
                    if client is not None:
                        client.close()
                    candidates = [x for x in self.cluster.nodes if x is not draining]
                    self.node = candidates[(self.index + n) % len(candidates)]
                    client = harness.McClient(self.node.memcached, timeout=10.0)
                    client.connect()
                key = f"roll-{self.index}-{n}"
                value = f"v{n}-{self.index}"
                started = time.monotonic()
                try:
                    reply = client.set(key, value)
                except (OSError, harness.McServerError) as e:
                    self.failures.append(f"{key} on node {self.node.id}: {e!r}")
                    client.close()
                    client = None
                    continue
                took = time.monotonic() - started
                self.slowest = max(self.slowest, took)
                if reply == "STORED":
                    self.acked[key] = value
                else:
                    self.failures.append(f"{key} on node {self.node.id}: {reply}")
                n += 1
                self.count = n
        finally:
            if client is not None:
                client.close()


class RollingRestart(harness.TestCase):
    def close_cluster(self, c):
        harness.dump_logs_if_failed(self, c)
        c.close()

    def test_rolling_restart_under_load_fails_no_request(self):
        c = harness.Cluster(nodes=3)
        self.addCleanup(self.close_cluster, c)
        c.start()
        c.wait_ready(timeout=20)
        drain = {"node": None}
        writers = [Writer(i, c, drain) for i in range(WRITERS)]
        for w in writers:
            w.start()

        def progress(more):
            target = sum(w.count for w in writers) + more
            harness.wait_until(lambda: sum(w.count for w in writers) >= target, 30,
                               interval=0.02, what=f"{more} more acknowledged writes "
                                                   f"(failures: {[w.failures[-1:] for w in writers]})")

        try:
            progress(200)
            # Followers first, the leader last: the usual order of an upgrade, and the one
            # that exercises the hand-over at the end.
            leader = c.wait_leader(timeout=10)
            order = [n for n in c.nodes if n is not leader] + [leader]
            transfers = 0
            for node in order * ROUNDS_PER_NODE:
                was_leader = c.leader_view(node) == node.id
                drain["node"] = node
                harness.wait_until(lambda: all(w.current() is not node for w in writers), 10,
                                   interval=0.01, what=f"the writers to leave node {node.id}")
                progress(50)
                code = node.stop(timeout=20)
                self.assertEqual(code, 0, f"node {node.id} did not exit cleanly on SIGTERM")
                if was_leader:
                    log = node.log()
                    self.assertIn("handing leadership to node", log,
                                  "a leader stopped without handing over")
                    transfers += 1
                progress(100)  # the other two keep taking writes
                node.restart()
                c.wait_converged(timeout=60)
                drain["node"] = None
                progress(100)
            self.assertEqual(transfers, 1)
        finally:
            for w in writers:
                w.stop_flag.set()
            for w in writers:
                w.join(timeout=30)

        failures = [f for w in writers for f in w.failures]
        acked = {k: v for w in writers for k, v in w.acked.items()}
        slowest = max(w.slowest for w in writers)
        sys.stderr.write(f"{len(acked)} acknowledged writes, {len(failures)} failures, "
                         f"slowest write {slowest * 1000:.0f} ms\n")
        self.assertEqual(failures, [], "writes failed during the rolling restart")

        c.wait_converged(timeout=60)
        keys = sorted(acked)
        for n in c.nodes:
            with harness.McClient(n.memcached, timeout=30) as mc:
                for start in range(0, len(keys), 100):
                    got = mc.get_multi(keys[start:start + 100])
                    for k in keys[start:start + 100]:
                        self.assertEqual(got.get(k, (None,))[0], acked[k].encode(),
                                         f"{k} on node {n.id}")


if __name__ == "__main__":
    harness.main()
