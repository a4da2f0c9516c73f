"""The CS733 door of the real binary (docs/cs733.md): every command and reply, each error,
noreply, pipelining, expiry reported by getm, malformed input with the connection kept in
step, and on a 3-node cluster ERR_REDIRECT from followers to the leader's CS733 address."""

import socket
import time

import harness


class Conn:
    """A CS733 client connection that reads whole replies."""

    def __init__(self, addr):
        self.s = socket.create_connection(addr, timeout=10)
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """One reply: a line, plus the value block after a VALUE line."""
        line = self.line()
        if line.startswith(b"VALUE"):
            n = int(line.split()[-1])
            while len(self.buf) < n + 2:
                self._fill()
            value, self.buf = self.buf[:n], self.buf[n + 2:]
            return line, value
        return line

    def ask(self, data):
        self.send(data)
        return self.reply()


class OneNode(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=1, raft={"fsync": False},
                                      limits={"max_value_bytes": 1000})
        cls.cluster.start_ready()
        cls.addr = cls.cluster.nodes[0].cs733

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def setUp(self):
        self.c = Conn(self.addr)

    def tearDown(self):
        self.c.close()

    def test_set_get_getm_delete(self):
        c = self.c
        ok = c.ask(b"set k1 0 5\r\nhello\r\n").split()
        self.assertEqual(ok[0], b"OK")
        version = int(ok[1])
        self.assertGreater(version, 0)
        self.assertEqual(c.ask(b"get k1\r\n"), (b"VALUE 5", b"hello"))
        self.assertEqual(c.ask(b"getm k1\r\n"), (b"VALUE %d 0 5" % version, b"hello"))
        # A binary value with CR LF inside.
        self.assertEqual(c.ask(b"set bin 0 4\r\n\r\n\x00\xff\r\n").split()[0], b"OK")
        self.assertEqual(c.ask(b"get bin\r\n"), (b"VALUE 4", b"\r\n\x00\xff"))
        self.assertEqual(c.ask(b"delete k1\r\n"), b"DELETED")
        self.assertEqual(c.ask(b"delete k1\r\n"), b"ERR_NOT_FOUND")
        self.assertEqual(c.ask(b"get k1\r\n"), b"ERR_NOT_FOUND")
        self.assertEqual(c.ask(b"getm k1\r\n"), b"ERR_NOT_FOUND")

    def test_versions_increase(self):
        c = self.c
        v1 = int(c.ask(b"set v 0 1\r\na\r\n").split()[1])
        v2 = int(c.ask(b"set v 0 1\r\nb\r\n").split()[1])
        self.assertGreater(v2, v1)

    def test_cas(self):
        c = self.c
        v1 = int(c.ask(b"set c 0 1\r\na\r\n").split()[1])
        ok = c.ask(b"cas c 0 %d 2\r\nbb\r\n" % v1).split()
        self.assertEqual(ok[0], b"OK")
        v2 = int(ok[1])
        self.assertGreater(v2, v1)
        self.assertEqual(c.ask(b"cas c 0 %d 1\r\nx\r\n" % v1), b"ERR_VERSION")
        self.assertEqual(c.ask(b"cas c 0 0 1\r\nx\r\n"), b"ERR_VERSION")
        self.assertEqual(c.ask(b"cas nokey 0 1 1\r\nx\r\n"), b"ERR_NOT_FOUND")
        self.assertEqual(c.ask(b"get c\r\n"), (b"VALUE 2", b"bb"))

    def test_expiry_and_getm_seconds_left(self):
        c = self.c
        c.ask(b"set e 100 1\r\nx\r\n")
        line, _ = c.ask(b"getm e\r\n")
        _, version, left, n = line.split()
        self.assertTrue(99 <= int(left) <= 100, left)
        c.ask(b"set short 1 1\r\nx\r\n")
        line, _ = c.ask(b"getm short\r\n")
        self.assertEqual(int(line.split()[2]), 1)  # rounded up
        harness.wait_until(lambda: c.ask(b"get short\r\n") == b"ERR_NOT_FOUND",
                           5, what="expiry")
        # cas sets a new expiry too.
        v = int(c.ask(b"set e2 0 1\r\nx\r\n").split()[1])
        c.ask(b"cas e2 50 %d 1\r\ny\r\n" % v)
        line, _ = c.ask(b"getm e2\r\n")
        self.assertTrue(49 <= int(line.split()[2]) <= 50)

    def test_noreply(self):
        c = self.c
        c.send(b"set nr 0 1 noreply\r\na\r\nset nr 0 1 noreply\r\nb\r\n")
        self.assertEqual(c.ask(b"get nr\r\n"), (b"VALUE 1", b"b"))
        # noreply suppresses only success: an error still answers.
        self.assertEqual(c.ask(b"cas nr 0 1 1 noreply\r\nz\r\n"), b"ERR_VERSION")

    def test_pipelining(self):
        c = self.c
        n = 300
        data = b"".join(b"set p%d 0 %d\r\n%d\r\nget p%d\r\n" % (i, len(str(i)), i, i)
                        for i in range(n))
        for off in range(0, len(data), 97):
            c.send(data[off:off + 97])
        for i in range(n):
            self.assertEqual(c.reply().split()[0], b"OK")
            self.assertEqual(c.reply(), (b"VALUE %d" % len(str(i)), str(i).encode()))

    def test_errors_keep_the_connection_in_step(self):
        c = self.c
        self.assertEqual(c.ask(b"bogus\r\n"), b"ERR_CMD_ERR")
        self.assertEqual(c.ask(b"get\r\n"), b"ERR_CMD_ERR")
        self.assertEqual(c.ask(b"get a b\r\n"), b"ERR_CMD_ERR")
        self.assertEqual(c.ask(b"set k x 1\r\na\r\n"), b"ERR_CMD_ERR")   # block dropped
        self.assertEqual(c.ask(b"set k 0 1 later\r\na\r\n"), b"ERR_CMD_ERR")
        self.assertEqual(c.ask(b"set k 0 3\r\nabcd\r\n"), b"ERR_CMD_ERR")  # bad block ...
        self.assertEqual(c.ask(b"set %s 0 1\r\na\r\n" % (b"k" * 251)), b"ERR_CMD_ERR")
        # Over max_value_bytes (1000 here): refused, the block is read and dropped.
        self.assertEqual(c.ask(b"set big 0 5000\r\n" + b"z" * 5000 + b"\r\n"), b"ERR_CMD_ERR")
        self.assertEqual(c.ask(b"get big\r\n"), b"ERR_NOT_FOUND")
        self.assertEqual(c.ask(b"\r\nset ok 0 1\r\n1\r\n").split()[0], b"OK")  # empty line ignored

    def test_overlong_line_closes_and_server_goes_on(self):
        c = self.c
        c.send(b"x" * 5000)
        self.assertEqual(c.line(), b"ERR_CMD_ERR")
        with self.assertRaises((EOFError, ConnectionResetError)):
            c.line()
        other = Conn(self.addr)
        self.assertEqual(other.ask(b"set alive 0 1\r\n1\r\n").split()[0], b"OK")
        other.close()


class ThreeNodes(harness.TestCase):
    def test_followers_redirect_to_the_leader(self):
        with harness.Cluster(nodes=3, raft={"fsync": False}) as cluster:
            leader = cluster.wait_ready()
            for follower in (n for n in cluster.nodes if n is not leader):
                c = Conn(follower.cs733)
                expected = b"ERR_REDIRECT %s %d" % (leader.cs733[0].encode(), leader.cs733[1])
                for request in (b"set k 0 1\r\nv\r\n", b"get k\r\n", b"getm k\r\n",
                                b"cas k 0 1 1\r\nv\r\n", b"delete k\r\n"):
                    self.assertEqual(c.ask(request), expected, request)
                c.close()
            c = Conn(leader.cs733)
            self.assertEqual(c.ask(b"set k 0 1\r\nv\r\n").split()[0], b"OK")
            self.assertEqual(c.ask(b"get k\r\n"), (b"VALUE 1", b"v"))
            c.close()

    def test_no_leader_answers_err_internal(self):
        with harness.Cluster(nodes=3, raft={"fsync": False}) as cluster:
            leader = cluster.wait_ready()
            survivor = next(n for n in cluster.nodes if n is not leader)
            for n in cluster.nodes:
                if n is not survivor:
                    n.kill()
            # The survivor soon stops believing in the dead leader (check-quorum / election
            # timeouts); from then on it has no leader to redirect to.
            c = Conn(survivor.cs733)
            deadline = time.monotonic() + 20
            reply = None
            while time.monotonic() < deadline:
                reply = c.ask(b"get k\r\n")
                if reply == b"ERR_INTERNAL":
                    break
                self.assertTrue(reply.startswith(b"ERR_REDIRECT"), reply)
            self.assertEqual(reply, b"ERR_INTERNAL")
            c.close()


if __name__ == "__main__":
    harness.main()
