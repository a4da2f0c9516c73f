"""Process tests of overload (docs/config.md "Limits and overload"): a client that streams
writes without reading its replies is held back by TCP backpressure (bounded memory), other
clients keep their latency meanwhile, and beyond the node-wide bound on writes in flight a
write is refused at once with busy on every door.
"""

import json
import socket
import threading
import time

import harness

FLOOD_COMMANDS = 300_000


def rss_anon_kb(pid):
    """Anonymous resident memory of a process (heap, stacks): what buffering would grow.
    File-backed pages (the LMDB map) are left out."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc status")


class Flood(harness.TestCase):
    def test_flood_without_reading_is_bounded_and_others_keep_latency(self):
        with harness.Cluster(nodes=1, raft={"fsync": False}) as c:
            c.wait_ready()
            node = c.nodes[0]
            pid = node.proc.pid
            harness.mc(node.memcached, b"set probe 0 0 5\r\nhello\r\n")
            base_kb = rss_anon_kb(pid)

            # 100 keys rewritten over and over: the store does not grow, so any growth is
            # buffered requests or replies.
            value = b"v" * 100
            chunk = b"".join(b"set flood%d 0 0 100 noreply\r\n%s\r\n" % (i % 100, value)
                             for i in range(1000))
            sent = [0]
            failure = []

            def flood():
                try:
                    with socket.create_connection(node.memcached, timeout=120) as s:
                        # Never read: the replies (none: noreply) and the socket buffers are
                        # all the server may keep.
                        for _ in range(FLOOD_COMMANDS // 1000):
                            s.sendall(chunk)
                            sent[0] += 1000
                        s.sendall(b"get flood1\r\n")
                        s.settimeout(120)
                        harness.recv_until(s, b"END\r\n", timeout=120)
                except Exception as e:  # reported by the main thread
                    failure.append(e)

            t = threading.Thread(target=flood, daemon=True)
            t.start()
            peak_kb = base_kb
            latencies = []
            with harness.McClient(node.memcached) as probe:
                deadline = time.monotonic() + 180
                while t.is_alive() and time.monotonic() < deadline:
                    started = time.monotonic()
                    self.assertEqual(probe.get("probe"), b"hello")
                    latencies.append(time.monotonic() - started)
                    peak_kb = max(peak_kb, rss_anon_kb(pid))
                    time.sleep(0.02)
            t.join(timeout=5)
            self.assertFalse(t.is_alive(), f"flood not done in time ({sent[0]} sent)")
            self.assertEqual(failure, [])
            self.assertEqual(sent[0], FLOOD_COMMANDS)
            growth_mb = (peak_kb - base_kb) / 1024
            latencies.sort()
            median = latencies[len(latencies) // 2]
            worst = latencies[-1]
            print(f"flood: {len(latencies)} probes, median {median * 1000:.1f} ms, "
                  f"max {worst * 1000:.1f} ms, anon RSS growth {growth_mb:.1f} MB")
            self.assertLess(growth_mb, 48, "memory grew with the flood")
            self.assertGreater(len(latencies), 5)
            self.assertLess(median, 0.25)
            self.assertLess(worst, 3.0)


class Busy(harness.TestCase):
    """max_writes_in_flight = 4: a pipelined stream of writes exceeds it at once."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=1, limits={"max_writes_in_flight": 4})
        cls.cluster.start_ready()
        cls.node = cls.cluster.nodes[0]

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def test_memcached_pipelined_writes_get_busy(self):
        # Nothing else in flight (an earlier test's flood has drained).
        harness.wait_until(lambda: harness.mc(self.node.memcached, b"set idle 0 0 1\r\nx\r\n")
                           == b"STORED\r\n", 30, what="no writes in flight")
        n = 2000
        request = b"".join(b"set busy%d 0 0 1\r\nx\r\n" % i for i in range(n))
        with socket.create_connection(self.node.memcached, timeout=30) as s:
            s.sendall(request)
            data = b""
            while data.count(b"\r\n") < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = data.split(b"\r\n")[:-1]
        self.assertEqual(len(lines), n)
        self.assertEqual(set(lines) - {b"STORED", b"SERVER_ERROR busy, try again"}, set())
        self.assertIn(b"SERVER_ERROR busy, try again", lines)
        self.assertIn(b"STORED", lines)
        # The bound is on what is in flight: once the stream has drained, writes succeed.
        self.assertEqual(harness.mc(self.node.memcached, b"set after 0 0 1\r\ny\r\n"),
                         b"STORED\r\n")

    def _while_flooding(self, attempt, timeout=30.0):
        """Runs attempt() repeatedly while another connection keeps the node at its bound;
        returns the first truthy result."""
        stop = threading.Event()
        s = socket.create_connection(self.node.memcached, timeout=30)

        def flood():
            request = b"".join(b"set f%d 0 0 1\r\nx\r\n" % i for i in range(500))
            try:
                while not stop.is_set():
                    s.sendall(request)
                    s.settimeout(0.01)
                    try:
                        while s.recv(1 << 20):
                            pass
                    except (socket.timeout, BlockingIOError):
                        pass
                    s.settimeout(30)
            except OSError:
                pass  # closed by the main thread

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            return harness.wait_until(attempt, timeout, interval=0.001, what="a busy answer")
        finally:
            # Closing the socket here ends a sendall blocked by backpressure.
            stop.set()
            s.shutdown(socket.SHUT_RDWR)
            s.close()
            t.join(timeout=10)
            self.assertFalse(t.is_alive())

    def test_http_put_gets_503_busy_with_retry_after(self):
        def attempt():
            status, headers, body = harness.http_request(self.node.http, "PUT", "/v1/kv/h",
                                                         body=b"v")
            if status == 503:
                return status, headers, body
            self.assertEqual(status, 200)
            return None

        status, headers, body = self._while_flooding(attempt)
        self.assertEqual(json.loads(body)["error"], "busy")
        self.assertEqual(headers.get("retry-after"), "1")

    def test_cs733_set_gets_err_internal(self):
        def attempt():
            with socket.create_connection(self.node.cs733, timeout=10) as s:
                s.sendall(b"set c 0 1\r\nv\r\n")
                reply = harness.recv_until(s, b"\r\n")
            if reply == b"ERR_INTERNAL\r\n":
                return reply
            self.assertTrue(reply.startswith(b"OK "), reply)
            return None

        self.assertEqual(self._while_flooding(attempt), b"ERR_INTERNAL\r\n")


if __name__ == "__main__":
    harness.main()
