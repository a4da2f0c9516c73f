"""The memcached door's meta commands and its last classic gaps on the real binary
(docs/memcached.md): quiet pipelines ended by mn, stale-while-revalidate and vivify tokens
won exactly once across the nodes of a cluster, per-node h flags, cache_memlimit as a
replicated quota, stats groups and per-node stats reset, and long multi-gets through
pymemcache (get_many of thousands of keys) with the documented bound on a get line
(answered with memcached's error; the rest of the line is dropped)."""

import re
import socket
import threading

from pymemcache.client.base import Client

import harness


def client(addr):
    return Client(addr, connect_timeout=5, timeout=10, default_noreply=False)


def send(addr, data, until=b"MN\r\n", timeout=10.0):
    """Sends data, then waits for `until` (an mn's MN by default) and returns the reply."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(data)
        return harness.recv_until(s, until, timeout)


def stats(addr, group=b""):
    reply = send(addr, b"stats " + group + b"\r\n", until=b"END\r\n")
    return {m[0].decode(): m[1].decode() for m in re.findall(rb"STAT (\S+) (\S+)\r\n", reply)}


class Cluster3(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=3, raft={"fsync": False})
        cls.leader = cls.cluster.start_ready()
        cls.followers = [n for n in cls.cluster.nodes if n is not cls.leader]

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def tearDown(self):
        harness.dump_logs_if_failed(self, self.cluster)

    def test_quiet_pipeline_ends_with_mn(self):
        addr = self.followers[0].memcached
        reply = send(addr, b"ms q1 1 q\r\na\r\nms q2 1 q\r\nb\r\nms q1 1 ME q\r\nc\r\n"
                           b"mg q1 v q\r\nmg nope v q\r\nmd nope q\r\nmd q2 q\r\nmn\r\n")
        # Only what is not nominal: the refused add, the hit, the delete miss.
        self.assertEqual(reply, b"NS\r\nVA 1\r\na\r\nNF\r\nMN\r\n")

    def test_stale_token_is_won_once_across_nodes(self):
        a, b, c = (n.memcached for n in self.cluster.nodes)
        self.assertEqual(send(a, b"ms swr 3 T100\r\nold\r\nmd swr I T30\r\nmn\r\n"),
                         b"HD\r\nHD\r\nMN\r\n")
        first = send(b, b"mg swr v t\r\nmn\r\n")
        self.assertEqual(first, b"VA 3 t30 X W\r\nold\r\nMN\r\n")
        self.assertEqual(send(c, b"mg swr v\r\nmn\r\n"), b"VA 3 Z X\r\nold\r\nMN\r\n")
        # The winner refills it with the cas it saw: fresh again everywhere.
        cas = re.search(rb" c(\d+)", send(a, b"mg swr c\r\nmn\r\n")).group(1)
        self.assertEqual(send(b, b"ms swr 3 C" + cas + b" T0\r\nnew\r\nmn\r\n"), b"HD\r\nMN\r\n")
        for n in (a, b, c):
            self.assertEqual(send(n, b"mg swr v\r\nmn\r\n"), b"VA 3\r\nnew\r\nMN\r\n")

    def test_vivify_has_exactly_one_winner_among_concurrent_clients(self):
        results = []
        lock = threading.Lock()

        def worker(addr):
            r = send(addr, b"mg viv N30 v\r\nmn\r\n")
            with lock:
                results.append(r)

        threads = [threading.Thread(target=worker, args=(n.memcached,))
                   for n in self.cluster.nodes for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertEqual(len(results), 12)
        self.assertEqual(sum(r.startswith(b"VA 0 W\r\n") for r in results), 1, results)
        self.assertEqual(sum(r.startswith(b"VA 0 Z\r\n") for r in results), 11, results)

    def test_h_flag_is_per_node(self):
        a, b = self.followers[0].memcached, self.followers[1].memcached
        send(self.leader.memcached, b"ms hk 1\r\nx\r\nmn\r\n")
        self.assertEqual(send(a, b"mg hk h\r\nmg hk h\r\nmn\r\n"), b"HD h0\r\nHD h1\r\nMN\r\n")
        self.assertEqual(send(b, b"mg hk h u\r\nmg hk h\r\nmn\r\n"),
                         b"HD h0\r\nHD h0\r\nMN\r\n")
        # A new version is a new item: its history starts again.
        send(b, b"ms hk 1\r\ny\r\nmn\r\n")
        self.assertEqual(send(a, b"mg hk h\r\nmn\r\n"), b"HD h0\r\nMN\r\n")

    def test_cache_memlimit_is_replicated(self):
        follower = self.followers[0].memcached
        self.assertEqual(send(follower, b"cache_memlimit 8\r\nmn\r\n"), b"OK\r\nMN\r\n")
        for n in self.cluster.nodes:
            harness.wait_until(lambda n=n: stats(n.memcached, b"settings")["maxbytes"] ==
                               str(8 << 20), 10, what=f"node {n.id} adopts the quota")
            self.assertEqual(stats(n.memcached)["limit_maxbytes"], str(8 << 20))
        big = b"x" * 900000
        replies = [send(follower, b"set big%d 0 0 %d\r\n%s\r\nmn\r\n" % (i, len(big), big))
                   for i in range(10)]
        self.assertIn(b"SERVER_ERROR out of memory storing object\r\nMN\r\n", replies)
        self.assertGreater(int(stats(follower)["store_no_memory"]), 0)
        self.assertEqual(send(self.leader.memcached, b"cache_memlimit 1024\r\nmn\r\n"),
                         b"OK\r\nMN\r\n")
        self.assertEqual(send(follower, b"set big99 0 0 %d\r\n%s\r\nmn\r\n" % (len(big), big)),
                         b"STORED\r\nMN\r\n")
        for i in range(100):
            send(follower, b"delete big%d\r\nmn\r\n" % i)

    def test_stats_reset_is_per_node(self):
        a, b = self.followers[0].memcached, self.followers[1].memcached
        send(a, b"set sr 0 0 1\r\nx\r\nmn\r\n")
        harness.wait_until(lambda: int(stats(b)["cmd_set"]) > 0, 10, what="the set applied")
        self.assertEqual(send(a, b"stats reset\r\n", until=b"RESET\r\n"), b"RESET\r\n")
        after = stats(a)
        self.assertEqual(after["cmd_set"], "0")
        self.assertEqual(after["total_items"], "0")
        self.assertEqual(after["cmd_get"], "0")
        self.assertGreater(int(after["curr_items"]), 0)  # the data is not a counter
        self.assertGreater(int(stats(b)["cmd_set"]), 0)  # other nodes keep theirs
        send(b, b"set sr 0 0 1\r\ny\r\nmn\r\n")
        harness.wait_until(lambda: stats(a)["cmd_set"] == "1", 10, what="counting again")


class OneNode(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=1, raft={"fsync": False})
        cls.cluster.start_ready()
        cls.addr = cls.cluster.nodes[0].memcached

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def test_get_many_of_thousands_of_keys(self):
        c = client(self.addr)
        c.set_many({"gm%d" % i: b"v%d" % i for i in range(0, 6000, 7)})
        keys = ["gm%d" % i for i in range(6000)]
        got = c.get_many(keys)
        self.assertEqual(len(got), len(range(0, 6000, 7)))
        self.assertEqual(got["gm7"], b"v7")
        c.close()

    def test_a_get_line_over_the_bound_is_answered_and_skipped(self):
        line = b"get " + b" ".join(b"k%07d" % i for i in range(150000)) + b"\r\n"
        self.assertGreater(len(line), 1 << 20)
        reply = send(self.addr, line + b"mn\r\n")
        # The error, then the connection goes on after the rest of the line.
        self.assertEqual(reply, b"SERVER_ERROR out of memory reading request\r\nMN\r\n")

    def test_stats_groups(self):
        c = client(self.addr)
        c.set("sg", b"value")
        settings = {k.decode(): v for k, v in c.stats("settings").items()}
        self.assertEqual(settings["item_size_max"], 1048576)
        self.assertIn(settings["evictions"], (b"off", False))
        self.assertIn(settings["cas_enabled"], (b"yes", True))
        items = stats(self.addr, b"items")
        self.assertEqual(items["items:1:number"], stats(self.addr)["curr_items"])
        self.assertEqual(items["items:1:evicted"], "0")
        slabs = stats(self.addr, b"slabs")
        self.assertEqual(slabs["active_slabs"], "1")
        general = stats(self.addr)
        for name in ("evictions", "get_expired", "get_flushed", "store_too_large",
                     "store_no_memory", "cmd_meta", "reclaimed"):
            self.assertIn(name, general)
        before = int(general["store_too_large"])
        reply = send(self.addr, b"set sg 0 0 1048576\r\n" + b"x" * 1048576 + b"\r\nmn\r\n")
        self.assertEqual(reply, b"SERVER_ERROR object too large for cache\r\nMN\r\n")
        self.assertEqual(int(stats(self.addr)["store_too_large"]), before + 1)
        self.assertIsNone(c.get("sg"))  # the failed set dropped the old value
        c.close()

    def test_meta_with_base64_binary_keys(self):
        # A key with a space and a NUL: only reachable with b.
        reply = send(self.addr, b"ms YSBiAGM= 2 b k c\r\nhi\r\nmg YSBiAGM= b k v s\r\n"
                                b"md YSBiAGM= b q\r\nmg YSBiAGM= b v\r\nmn\r\n")
        self.assertRegex(reply, rb"^HD kYSBiAGM= b c\d+\r\nVA 2 kYSBiAGM= b s2\r\nhi\r\nEN\r\nMN\r\n$")

    def test_me(self):
        reply = send(self.addr, b"set dbg 5 0 3\r\nabc\r\nme dbg\r\nme none\r\nmn\r\n")
        self.assertRegex(reply, rb"^STORED\r\nME dbg exp=-1 la=0 cas=\d+ fetch=no cls=1 "
                                rb"size=69\r\nEN\r\nMN\r\n$")


if __name__ == "__main__":
    harness.main()
