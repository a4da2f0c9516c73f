#!/usr/bin/env python3
"""The memcached-door clients of bench/scale_bench.sh and bench/probe_floor.sh.

  scale_tool.py probe PORT STOP_FILE   `get probe` round trips on PORT, one every millisecond,
                                       until STOP_FILE exists; then the ten slowest over 50 ms
                                       and "get_probes=N get_p50_ms get_p99_ms get_max_ms"
  scale_tool.py check PORT ITEMS KEYS  reads keys item:0..ITEMS-1 back ("sample": 1,000 random
                                       and the last; "all"); exit 0 when every one hits
"""
import os
import random
import socket
import sys
import time

def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def read_until(s, buf, marker):
    while marker not in buf:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise SystemExit("connection closed")
        buf += chunk
    i = buf.index(marker) + len(marker)
    return buf[:i], buf[i:]

def probe(port, stop_file):
    s = connect(port)
    s.sendall(b"set probe 0 0 1\r\nx\r\n")
    buf = b""
    _, buf = read_until(s, buf, b"\r\n")
    rtts = []
    slow = []  # (wall clock at the send, ms): the round trips over 50 ms, for the log's timeline
    while not os.path.exists(stop_file):
        t = time.perf_counter()
        wall = time.time()
        s.sendall(b"get probe\r\n")
        _, buf = read_until(s, buf, b"END\r\n")
        rtts.append((time.perf_counter() - t) * 1000)
        if rtts[-1] > 50:
            slow.append((wall, rtts[-1]))
        time.sleep(0.001)
    for wall, ms in sorted(slow, key=lambda x: -x[1])[:10]:
        print("# slow get sent at %s.%03dZ: %.1f ms" % (
            time.strftime("%H:%M:%S", time.gmtime(wall)), int(wall * 1000) % 1000, ms))
    rtts.sort()
    p99 = rtts[int(len(rtts) * 0.99)] if rtts else 0
    print("get_probes=%d get_p50_ms=%.3f get_p99_ms=%.3f get_max_ms=%.1f"
          % (len(rtts), rtts[len(rtts) // 2] if rtts else 0, p99, rtts[-1] if rtts else 0))

def check(port, items, keys):
    # keys: "sample" (1,000 random + the last) or "all"; exit 0 when every one hits.
    s = connect(port)
    s.settimeout(2)
    want = ([random.randrange(items) for _ in range(1000)] + [items - 1]
            if keys == "sample" else range(items))
    want = list(want)
    buf = b""
    hits = 0
    for first in range(0, len(want), 100):
        batch = want[first:first + 100]
        s.sendall(b"get " + b" ".join(b"item:%d" % i for i in batch) + b"\r\n")
        reply, buf = read_until(s, buf, b"END\r\n")
        hits += reply.count(b"VALUE ")
    print("checked=%d hits=%d" % (len(want), hits))
    sys.exit(0 if hits == len(want) else 1)

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "probe": probe(int(sys.argv[2]), sys.argv[3])
    elif cmd == "check": check(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
