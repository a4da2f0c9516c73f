"""The memcached door of the real binary through pymemcache and raw sockets (docs/memcached.md):
every storage and retrieval command, noreply, multi-get order, pipelining, stats and
version, max_connections refusal, and on a 3-node cluster the same commands through
followers (writes forwarded, reads linearizable)."""

import socket
import time

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError

import harness


def client(addr, **kw):
    # Acknowledged writes: a later read on another connection must see them.
    return Client(addr, connect_timeout=5, timeout=10, default_noreply=False, **kw)


def raw(addr, data, until=b"END\r\n", timeout=10.0):
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(data)
        return harness.recv_until(s, until, timeout)


class OneNode(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=1, raft={"fsync": False},
                                      limits={"max_connections": 20})
        cls.cluster.start_ready()
        cls.addr = cls.cluster.nodes[0].memcached

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def setUp(self):
        self.c = client(self.addr)

    def tearDown(self):
        self.c.close()

    def test_set_get_and_flags(self):
        c = self.c
        self.assertTrue(c.set("k1", b"hello", expire=0))
        self.assertEqual(c.get("k1"), b"hello")
        self.assertIsNone(c.get("missing"))
        self.assertTrue(c.set("bin", bytes(range(256))))
        self.assertEqual(c.get("bin"), bytes(range(256)))
        reply = raw(self.addr, b"set fl 4294967295 0 2\r\nab\r\nget fl\r\n")
        self.assertEqual(reply, b"STORED\r\nVALUE fl 4294967295 2\r\nab\r\nEND\r\n")
        self.assertTrue(c.set("empty", b""))
        self.assertEqual(c.get("empty"), b"")

    def test_add_replace_append_prepend(self):
        c = self.c
        self.assertTrue(c.add("a1", b"x", noreply=False))
        self.assertFalse(c.add("a1", b"y", noreply=False))
        self.assertEqual(c.get("a1"), b"x")
        self.assertFalse(c.replace("nope", b"y", noreply=False))
        self.assertTrue(c.replace("a1", b"z", noreply=False))
        self.assertTrue(c.append("a1", b"END", noreply=False))
        self.assertTrue(c.prepend("a1", b"BEGIN", noreply=False))
        self.assertEqual(c.get("a1"), b"BEGINzEND")
        self.assertFalse(c.append("nope", b"x", noreply=False))
        self.assertFalse(c.prepend("nope", b"x", noreply=False))

    def test_gets_and_cas(self):
        c = self.c
        c.set("cask", b"v1", noreply=False)
        value, cas = c.gets("cask")
        self.assertEqual(value, b"v1")
        self.assertTrue(cas.isdigit() if isinstance(cas, str) else int(cas) > 0)
        self.assertTrue(c.cas("cask", b"v2", cas, noreply=False))
        self.assertFalse(c.cas("cask", b"v3", cas, noreply=False))  # EXISTS: cas moved on
        self.assertEqual(c.get("cask"), b"v2")
        self.assertIsNone(c.cas("nocask", b"v", b"1", noreply=False))  # NOT_FOUND
        # cas unique 0 never matches.
        self.assertEqual(raw(self.addr, b"cas cask 0 0 1 0\r\nx\r\n", b"\r\n"), b"EXISTS\r\n")
        # Every write changes the cas; touch keeps it (docs/semantics.md).
        _, cas2 = c.gets("cask")
        self.assertNotEqual(cas, cas2)
        c.touch("cask", 100, noreply=False)
        self.assertEqual(c.gets("cask")[1], cas2)

    def test_incr_decr(self):
        c = self.c
        c.set("n", b"10")
        self.assertEqual(c.incr("n", 5), 15)
        self.assertEqual(c.decr("n", 100), 0)
        self.assertIsNone(c.incr("nonum", 1))
        c.set("max", b"18446744073709551615")
        self.assertEqual(c.incr("max", 2), 1)  # wraps at 2^64
        c.set("txt", b"abc")
        with self.assertRaises(MemcacheClientError):
            c.incr("txt", 1)
        self.assertEqual(raw(self.addr, b"incr n x\r\n", b"\r\n"),
                         b"CLIENT_ERROR invalid numeric delta argument\r\n")

    def test_touch_gat_and_expiry(self):
        c = self.c
        c.set("t", b"v", expire=0)
        self.assertTrue(c.touch("t", 1, noreply=False))
        self.assertFalse(c.touch("nothere", 1, noreply=False))
        # (pymemcache 3.5 has no gat/gats: raw protocol.)
        self.assertEqual(raw(self.addr, b"gat 100 t\r\n"), b"VALUE t 0 1\r\nv\r\nEND\r\n")
        self.assertEqual(raw(self.addr, b"gat 100 nothere\r\n"), b"END\r\n")
        _, cas = c.gets("t")
        self.assertEqual(raw(self.addr, b"gats 100 t\r\n"),
                         b"VALUE t 0 1 %s\r\nv\r\nEND\r\n" % cas)
        # gat with a negative exptime returns nothing more afterwards.
        raw(self.addr, b"gat -1 t\r\n")
        self.assertIsNone(c.get("t"))
        # Negative exptime: already expired.
        c.set("gone", b"v", noreply=False)
        self.assertTrue(c.touch("gone", -1, noreply=False))
        self.assertIsNone(c.get("gone"))
        # A relative expiry of 1 s hides the item once it has passed.
        c.set("short", b"v", expire=1, noreply=False)
        self.assertEqual(c.get("short"), b"v")
        harness.wait_until(lambda: c.get("short") is None, 5, what="expiry")
        # gat with several keys: hits in request order.
        c.set("g1", b"1")
        c.set("g2", b"2")
        self.assertEqual(raw(self.addr, b"gat 0 g2 zz g1\r\n"),
                         b"VALUE g2 0 1\r\n2\r\nVALUE g1 0 1\r\n1\r\nEND\r\n")

    def test_delete(self):
        c = self.c
        c.set("d", b"v")
        self.assertTrue(c.delete("d", noreply=False))
        self.assertFalse(c.delete("d", noreply=False))
        self.assertIsNone(c.get("d"))

    def test_multi_get_keeps_request_order_and_skips_misses(self):
        c = self.c
        for i in range(10):
            c.set(f"m{i}", str(i).encode())
        reply = raw(self.addr, b"get m3 nope m1 m3 m9\r\n")
        self.assertEqual(reply, b"VALUE m3 0 1\r\n3\r\nVALUE m1 0 1\r\n1\r\n"
                                b"VALUE m3 0 1\r\n3\r\nVALUE m9 0 1\r\n9\r\nEND\r\n")
        many = c.get_many([f"m{i}" for i in range(10)] + ["nope"])
        self.assertEqual(many, {f"m{i}": str(i).encode() for i in range(10)})

    def test_noreply_sends_nothing(self):
        data = (b"set nr 0 0 1 noreply\r\na\r\nadd nr 0 0 1 noreply\r\nb\r\n"
                b"append nr 0 0 1 noreply\r\nc\r\nincr nr 1 noreply\r\n"
                b"incr nr x noreply\r\ndelete nothere noreply\r\ntouch nr 0 noreply\r\n"
                b"flush_all 0 noreply\r\nset nr 0 0 1 noreply\r\nz\r\n"
                b"verbosity 1 noreply\r\nget nr\r\n")
        self.assertEqual(raw(self.addr, data), b"VALUE nr 0 1\r\nz\r\nEND\r\n")

    def test_flush_all(self):
        c = self.c
        c.set("f1", b"v")
        c.set("f2", b"v")
        self.assertTrue(c.flush_all(noreply=False))
        self.assertEqual(c.get_many(["f1", "f2"]), {})
        c.set("f3", b"after", noreply=False)
        self.assertEqual(c.get("f3"), b"after")
        # A delayed flush leaves items readable until it is due.
        self.assertEqual(raw(self.addr, b"flush_all 2\r\nget f3\r\n"),
                         b"OK\r\nVALUE f3 0 5\r\nafter\r\nEND\r\n")
        harness.wait_until(lambda: c.get("f3") is None, 6, what="delayed flush")

    def test_pipelining_replies_in_order(self):
        n = 500
        parts = []
        for i in range(n):
            parts.append(b"set p%d 0 0 %d\r\n%s\r\n" % (i, len(str(i)), str(i).encode()))
            parts.append(b"get p%d\r\n" % i)
        parts.append(b"version\r\n")
        data = b"".join(parts)
        with socket.create_connection(self.addr, timeout=30) as s:
            # Send in odd-sized pieces to split commands across reads.
            for off in range(0, len(data), 333):
                s.sendall(data[off:off + 333])
            reply = b""
            s.settimeout(30)
            while not reply.endswith(b"\r\n") or b"VERSION" not in reply:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        expected = b"".join(b"STORED\r\nVALUE p%d 0 %d\r\n%s\r\nEND\r\n"
                            % (i, len(str(i)), str(i).encode()) for i in range(n))
        self.assertTrue(reply.startswith(expected))
        self.assertTrue(reply[len(expected):].startswith(b"VERSION 1.6."))

    def test_version_and_stats(self):
        version = self.c.version()
        self.assertTrue(version.startswith(b"1.6.18-raftkv-"), version)
        self.c.set("s", b"v")
        self.c.get("s")
        self.c.get("nostat")
        stats = {k.decode() if isinstance(k, bytes) else k: v for k, v in self.c.stats().items()}
        for name in ("pid uptime time version curr_connections total_connections cmd_get cmd_set "
                     "cmd_flush cmd_touch get_hits get_misses delete_hits delete_misses incr_hits "
                     "incr_misses decr_hits decr_misses cas_hits cas_misses cas_badval touch_hits "
                     "touch_misses bytes_read bytes_written limit_maxbytes threads curr_items "
                     "total_items bytes raft_role raft_term raft_leader raft_commit_index").split():
            self.assertIn(name, stats)
        self.assertEqual(int(stats["threads"]), 1)
        self.assertEqual(int(stats["limit_maxbytes"]), 1024 << 20)
        self.assertGreaterEqual(int(stats["get_hits"]), 1)
        self.assertGreaterEqual(int(stats["get_misses"]), 1)
        self.assertGreaterEqual(int(stats["curr_connections"]), 1)
        self.assertEqual(stats["raft_role"], b"leader")
        self.assertEqual(int(stats["raft_leader"]), 1)
        self.assertGreater(int(stats["raft_commit_index"]), 0)
        self.assertEqual(int(stats["pid"]), self.cluster.nodes[0].proc.pid)
        self.assertEqual(raw(self.addr, b"stats reset\r\n", b"\r\n"), b"RESET\r\n")

    def test_quit_closes(self):
        with socket.create_connection(self.addr, timeout=5) as s:
            s.sendall(b"quit\r\nversion\r\n")
            s.settimeout(5)
            self.assertEqual(s.recv(100), b"")

    def test_max_connections_refuses_with_a_line_and_keeps_the_others(self):
        held = []
        try:
            # 20 allowed; this test's own client and other tests' may hold a few.
            refused = None
            for _ in range(40):
                s = socket.create_connection(self.addr, timeout=5)
                held.append(s)
                s.sendall(b"version\r\n")
                s.settimeout(5)
                line = harness.recv_until(s, b"\r\n", 5)
                if line.startswith(b"SERVER_ERROR"):
                    refused = line
                    self.assertEqual(s.recv(100), b"")  # and closed
                    break
                self.assertTrue(line.startswith(b"VERSION"))
            self.assertEqual(refused, b"SERVER_ERROR too many open connections\r\n")
            # Existing connections are unaffected.
            held[0].sendall(b"version\r\n")
            self.assertTrue(harness.recv_until(held[0], b"\r\n", 5).startswith(b"VERSION"))
        finally:
            for s in held:
                s.close()
        # Once connections close, new ones are served again.
        harness.wait_until(lambda: raw(self.addr, b"version\r\n", b"\r\n").startswith(b"VERSION"),
                           5, what="a connection accepted again")


class ThreeNodes(harness.TestCase):
    def test_followers_forward_writes_and_reads_are_linearizable(self):
        with harness.Cluster(nodes=3, raft={"fsync": False}) as cluster:
            leader = cluster.wait_ready()
            followers = [n for n in cluster.nodes if n is not leader]
            clients = [client(n.memcached) for n in cluster.nodes]
            try:
                for i in range(30):
                    writer = clients[i % 3]
                    self.assertTrue(writer.set(f"k{i}", str(i).encode(), noreply=False))
                    # Any node reads its own acknowledged write and every earlier one.
                    for c in clients:
                        self.assertEqual(c.get(f"k{i}"), str(i).encode())
                fc = client(followers[0].memcached)
                value, cas = fc.gets("k1")
                _, cas_leader = clients[leader.id - 1].gets("k1")
                self.assertEqual(cas, cas_leader)  # versions agree on every replica
                self.assertTrue(fc.cas("k1", b"new", cas, noreply=False))
                self.assertEqual(fc.incr("n", 1), None)
                fc.set("n", b"1")
                self.assertEqual(clients[0].incr("n", 41), 42)
                other = client(followers[1].memcached)
                self.assertEqual(other.get("n"), b"42")
                other.close()
                stats = followers[0].stats()
                self.assertEqual(stats["raft_role"], "follower")
                self.assertEqual(int(stats["raft_leader"]), leader.id)
                fc.close()
            finally:
                for c in clients:
                    c.close()


if __name__ == "__main__":
    harness.main()
