"""Pipelined connections on a 3-node cluster of the real binary (SPEC §3 "Pipelining"):
the writes a connection sends without waiting are in flight together, so a thousand
pipelined `set ... noreply` commit in far fewer than a thousand storage batches (counted by
the leader's fsync histogram in /metrics, one observation per durable log commit), and so
do pipelined HTTP PUTs; every value is readable afterwards; and the replies of a mixed pipeline, sent in one write to the
leader and to a follower, come back in request order."""

import re
import socket

import harness


def fsync_count(node):
    status, _, body = harness.http_request(node.http, "GET", "/metrics")
    assert status == 200, body
    m = re.search(rb"^raftkv_fsync_duration_seconds_count (\d+)$", body, re.M)
    assert m, "no fsync histogram in /metrics"
    return int(m.group(1))


def send_and_read(addr, payload, expected_len, timeout=30.0):
    """Sends payload in one write and reads exactly expected_len bytes of replies."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(payload)
        s.settimeout(timeout)
        data = b""
        while len(data) < expected_len:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


class PipeliningTest(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=3)
        cls.cluster.start_ready(timeout=20)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def leader_and_follower(self):
        leader = self.cluster.wait_leader(timeout=20)
        follower = next(n for n in self.cluster.nodes if n is not leader)
        return leader, follower

    def test_a_thousand_pipelined_sets_commit_in_few_batches(self):
        leader, _ = self.leader_and_follower()
        n = 1000
        before = fsync_count(leader)
        payload = b"".join(b"set pipe%d 0 0 6 noreply\r\nv%05d\r\n" % (i, i) for i in range(n))
        version = harness.mc(leader.memcached, b"version\r\n")
        reply = send_and_read(leader.memcached, payload + b"version\r\n", len(version))
        self.assertEqual(reply, version)
        batches = fsync_count(leader) - before
        # One commit per command would take at least n batches (twice that with the commit
        # index writes); pipelined, the writes share a handful.
        self.assertLess(batches, n // 10, f"{n} pipelined sets took {batches} storage commits")
        # Every value is there, read back in one pipelined multi-get per 100 keys.
        for start in range(0, n, 100):
            keys = b" ".join(b"pipe%d" % i for i in range(start, start + 100))
            got = harness.mc(leader.memcached, b"get " + keys + b"\r\n", terminators=b"END\r\n")
            expected = b"".join(b"VALUE pipe%d 0 6\r\nv%05d\r\n" % (i, i)
                                for i in range(start, start + 100)) + b"END\r\n"
            self.assertEqual(got, expected)

    def test_pipelined_http_puts_commit_in_few_batches(self):
        leader, _ = self.leader_and_follower()
        n = 256
        before = fsync_count(leader)
        payload = b"".join(b"PUT /v1/kv/hpipe%d HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n"
                           b"h%05d" % (i, i) for i in range(n))
        with socket.create_connection(leader.http, timeout=30) as s:
            s.sendall(payload)
            f = s.makefile("rb")
            statuses = [harness.read_raw_response(f)[0] for _ in range(n)]
        self.assertEqual(statuses, [200] * n)
        batches = fsync_count(leader) - before
        # Answered one at a time they would take n commits; pipelined, a connection has up to
        # 64 requests in flight together.
        self.assertLess(batches, n // 4, f"{n} pipelined PUTs took {batches} storage commits")
        for i in (0, n // 2, n - 1):
            status, _, body = harness.http_request(leader.http, "GET", "/v1/kv/hpipe%d" % i)
            self.assertEqual((status, body), (200, b"h%05d" % i))

    def mixed_pipeline(self, addr, prefix):
        k = prefix.encode()
        payload = (b"set %s:a 0 0 1\r\n1\r\n" % k
                   + b"get %s:a\r\n" % k
                   + b"incr %s:a 41\r\n" % k
                   + b"bogus\r\n"
                   + b"set %s:b 0 0 2 noreply\r\nbb\r\n" % k
                   + b"append %s:b 0 0 1\r\nc\r\n" % k
                   + b"set %s:c 0 0 1\r\nxyz\r\n" % k
                   + b"gets %s:missing\r\n" % k
                   + b"get %s:a %s:b\r\n" % (k, k)
                   + b"delete %s:a\r\n" % k
                   + b"get %s:a\r\n" % k
                   + b"version\r\n")
        version = harness.mc(addr, b"version\r\n")
        expected = (b"STORED\r\n"
                    + b"VALUE %s:a 0 1\r\n1\r\nEND\r\n" % k
                    + b"42\r\n"
                    + b"ERROR\r\n"
                    + b"STORED\r\n"
                    # "xyz\r" is the 1-byte block plus two bytes that are not "\r\n": the
                    # chunk is refused and the "\n" left over is an empty line.
                    + b"CLIENT_ERROR bad data chunk\r\nERROR\r\n"
                    + b"END\r\n"
                    + b"VALUE %s:a 0 2\r\n42\r\nVALUE %s:b 0 3\r\nbbc\r\nEND\r\n" % (k, k)
                    + b"DELETED\r\n"
                    + b"END\r\n"
                    + version)
        reply = send_and_read(addr, payload, len(expected))
        self.assertEqual(reply, expected)

    def test_mixed_pipeline_replies_in_order_on_the_leader(self):
        leader, _ = self.leader_and_follower()
        self.mixed_pipeline(leader.memcached, "lead")

    def test_mixed_pipeline_replies_in_order_on_a_follower(self):
        _, follower = self.leader_and_follower()
        self.mixed_pipeline(follower.memcached, "follow")

    def test_cs733_pipeline_on_the_leader(self):
        leader, _ = self.leader_and_follower()
        payload = (b"set cs:a 0 1\r\nx\r\n"
                   + b"get cs:a\r\n"
                   + b"set cs:a 0 1 noreply\r\ny\r\n"
                   + b"get cs:a\r\n"
                   + b"delete cs:a\r\n"
                   + b"get cs:a\r\n")
        with socket.create_connection(leader.cs733, timeout=10) as s:
            s.sendall(payload)
            data = harness.recv_until(s, b"ERR_NOT_FOUND\r\n", timeout=30)
        # Versions are log indexes: the first one determines the rest.
        m = re.match(rb"OK (\d+)\r\n", data)
        self.assertTrue(m, data)
        expected = (b"OK %s\r\n" % m.group(1) + b"VALUE 1\r\nx\r\n" + b"VALUE 1\r\ny\r\n"
                    + b"DELETED\r\n" + b"ERR_NOT_FOUND\r\n")
        self.assertEqual(data, expected)


if __name__ == "__main__":
    harness.main()
