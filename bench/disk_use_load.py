#!/usr/bin/env python3
"""Load generator and disk sampler for bench/disk_use_bench.sh.

  disk_use_load.py load PORT ITEMS VALUE_BYTES
      sets item:0 .. item:ITEMS-1 through the memcached door, pipelined in batches of 1,000
      with replies: every reply must be STORED.
  disk_use_load.py overwrite PORT ITEMS VALUE_BYTES RATE SECONDS
      for SECONDS, overwrites random keys of that set at RATE sets/s (20 pipelined batches a
      second, each reply checked), so the state keeps its size while the log grows. Prints
      the writes done and the rate achieved; exits 1 at the first reply that is not STORED.
  disk_use_load.py sample CSV INTERVAL STOP_FILE NODE...
      every INTERVAL seconds until STOP_FILE exists, one CSV row per node, where NODE is
      id:pid:data_dir:http_port:memcached_port. See bench/README-disk.md for the columns.
  disk_use_load.py summarize CSV T0 LEADER
      the figures of the rows from T0 seconds on (the overwrites): per node, the most bytes on
      disk against the state's bytes, first half against second half (a growth trend shows
      there), and the leader's snapshots (how often, how many entries apart).

Only the standard library: the bench needs nothing installed beyond python3.
"""
import json
import os
import random
import socket
import sys
import time
import urllib.request


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class replies:
    """Reads CRLF-terminated reply lines off a socket."""

    def __init__(self, s):
        self.s = s
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise SystemExit("connection closed by the server")
            self.buf += chunk
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def until(self, marker):
        while marker not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise SystemExit("connection closed by the server")
            self.buf += chunk
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out


def send_sets(s, r, keys, value_bytes, tag):
    # The value changes with every write (tag), so no two log entries are alike.
    parts = []
    for k in keys:
        v = (b"%d:%d:" % (tag, k)).ljust(value_bytes, b"v")[:value_bytes]
        parts.append(b"set item:%d 0 0 %d\r\n%s\r\n" % (k, value_bytes, v))
    s.sendall(b"".join(parts))
    for k in keys:
        line = r.line()
        if line != b"STORED":
            raise SystemExit("set item:%d: unexpected reply %r" % (k, line))


def load(port, items, value_bytes):
    s = connect(port)
    r = replies(s)
    start = time.time()
    for first in range(0, items, 1000):
        send_sets(s, r, range(first, min(items, first + 1000)), value_bytes, 0)
    secs = time.time() - start
    print("load_items=%d load_secs=%.1f items_per_s=%.0f" % (items, secs, items / secs))


def overwrite(port, items, value_bytes, rate, seconds):
    s = connect(port)
    r = replies(s)
    ticks_per_s = 20
    per_tick = max(1, rate // ticks_per_s)
    start = time.time()
    next_tick = start
    done = 0
    batches = 0
    late = 0  # batches that started behind schedule: the server did not keep up
    worst = 0.0
    while time.time() - start < seconds:
        now = time.time()
        if now < next_tick:
            time.sleep(next_tick - now)
        elif now - next_tick > 1.0 / ticks_per_s:
            late += 1
        t = time.perf_counter()
        batches += 1
        send_sets(s, r, [random.randrange(items) for _ in range(per_tick)], value_bytes,
                  batches)
        worst = max(worst, time.perf_counter() - t)
        done += per_tick
        next_tick += 1.0 / ticks_per_s
    secs = time.time() - start
    print("overwrites=%d secs=%.1f writes_per_s=%.0f target_per_s=%d batch=%d "
          "late_batches=%d/%d max_batch_ms=%.0f failed=0"
          % (done, secs, done / secs, per_tick * ticks_per_s, per_tick, late, batches,
             worst * 1000))


def stats_bytes(port):
    """`bytes` of memcached `stats`: the state's accounted bytes on that node."""
    try:
        s = connect(port)
        s.settimeout(2)
        s.sendall(b"stats\r\n")
        out = replies(s).until(b"END\r\n")
        s.close()
        for line in out.split(b"\r\n"):
            f = line.split()
            if len(f) == 3 and f[1] == b"bytes":
                return int(f[2])
    except (OSError, SystemExit):
        pass
    return -1


def status(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/status" % port, timeout=2) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def rss_kb(pid):
    anon = file = -1
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("RssFile:"):
                    file = int(line.split()[1])
    except OSError:
        pass
    return anon, file


def file_sizes(path):
    """(apparent bytes, allocated bytes as du counts them) of one file; zeros if absent."""
    try:
        st = os.stat(path)
        return st.st_size, st.st_blocks * 512
    except OSError:
        return 0, 0


COLUMNS = ("t_s,node,role,snap_files,snap_bytes,snap_alloc_bytes,mdb_bytes,mdb_alloc_bytes,"
           "tmp_snap_bytes,state_bytes,snapshot_index,last_log_index,commit_index,"
           "applied_index,rss_anon_kb,rss_file_kb,dir_alloc_bytes")


def sample(csv_path, interval, stop_file, nodes):
    parsed = []
    for n in nodes:
        nid, pid, data_dir, http, mc = n.split(":")
        parsed.append((int(nid), int(pid), data_dir, int(http), int(mc)))
    start = time.time()
    next_t = start
    with open(csv_path, "w") as out:
        out.write(COLUMNS + "\n")
        while True:
            t = time.time() - start
            for nid, pid, data_dir, http, mc in parsed:
                snaps = tmp = 0
                snap_alloc = 0
                count = 0
                snap_dir = os.path.join(data_dir, "snapshots")
                try:
                    names = os.listdir(snap_dir)
                except OSError:
                    names = []
                for name in names:
                    size, alloc = file_sizes(os.path.join(snap_dir, name))
                    if name.endswith(".snap") and name.startswith("snapshot-"):
                        count += 1
                        snaps += size
                        snap_alloc += alloc
                    else:
                        tmp += size  # a snapshot being written (or received)
                mdb, mdb_alloc = file_sizes(os.path.join(data_dir, "data.mdb"))
                everything = 0  # du of the whole data dir: the number that must stay bounded
                for root, _, files in os.walk(data_dir):
                    for name in files:
                        everything += file_sizes(os.path.join(root, name))[1]
                st = status(http)
                anon, file = rss_kb(pid)
                out.write("%.1f,%d,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d\n" % (
                    t, nid, st.get("role", "down"), count, snaps, snap_alloc, mdb, mdb_alloc,
                    tmp, stats_bytes(mc), st.get("snapshot_index", -1),
                    st.get("last_log_index", -1), st.get("commit_index", -1),
                    st.get("applied_index", -1), anon, file, everything))
            out.flush()
            if os.path.exists(stop_file):
                return
            next_t += interval
            while time.time() < next_t:
                if os.path.exists(stop_file):
                    break
                time.sleep(0.2)


def summarize(csv_path, t0, leader):
    import csv
    with open(csv_path) as f:
        rows = [r for r in csv.DictReader(f)]
    for r in rows:
        for k in r:
            if k != "role":
                r[k] = float(r[k])
    run = [r for r in rows if r["t_s"] >= t0]
    if not run:
        raise SystemExit("summarize: no samples after t=%.1f" % t0)
    end = max(r["t_s"] for r in run)
    half = t0 + (end - t0) / 2
    mib = 1 << 20
    states = sorted(r["state_bytes"] for r in run if r["node"] == leader and r["state_bytes"] > 0)
    state = states[len(states) // 2] if states else 0
    print("state_bytes_median=%d (%.1f MiB), %d samples of the overwrite phase (%.0f s)"
          % (state, state / mib, len(run) // 3, end - t0))
    for n in (1, 2, 3):
        mine = [r for r in run if r["node"] == n]
        disk = lambda r: r["dir_alloc_bytes"]
        first = max(disk(r) for r in mine if r["t_s"] < half)
        second = max(disk(r) for r in mine if r["t_s"] >= half)
        top = max(mine, key=disk)
        print("node%d%s: max_disk=%.1f MiB (du of the data dir, %.2f x state; then: snapshots "
              "%.1f MiB in %d file(s), tmp %.1f MiB, data.mdb %.1f MiB allocated / %.1f MiB apparent) max_first_half=%.1f MiB "
              "max_second_half=%.1f MiB data.mdb_allocated start=%.1f end=%.1f MiB "
              "max_snapshot_files=%d rss_anon_max=%.0f MiB"
              % (n, " (leader)" if n == leader else "", disk(top) / mib,
                 disk(top) / state if state else 0, top["snap_alloc_bytes"] / mib,
                 top["snap_files"], top["tmp_snap_bytes"] / mib, top["mdb_alloc_bytes"] / mib, top["mdb_bytes"] / mib,
                 first / mib, second / mib, mine[0]["mdb_alloc_bytes"] / mib,
                 mine[-1]["mdb_alloc_bytes"] / mib, max(r["snap_files"] for r in mine),
                 max(r["rss_anon_kb"] for r in mine) / 1024))
    # The leader's snapshots: when its snapshot_index moved (to the sampling interval).
    mine = [r for r in rows if r["node"] == leader and r["snapshot_index"] >= 0]
    taken = []
    for a, b in zip(mine, mine[1:]):
        if b["snapshot_index"] > a["snapshot_index"] and b["t_s"] >= t0:
            taken.append((b["t_s"], b["snapshot_index"]))
    if len(taken) >= 2:
        gaps = [b[0] - a[0] for a, b in zip(taken, taken[1:])]
        apart = [b[1] - a[1] for a, b in zip(taken, taken[1:])]
        print("leader snapshots during the overwrites: %d; every %.0f s on average (min %.0f, "
              "max %.0f), %.0f entries apart on average (min %.0f, max %.0f); "
              "threshold max(4 MiB, 0.5 x state) = %.1f MiB, / entries apart = %.0f bytes per entry"
              % (len(taken), sum(gaps) / len(gaps), min(gaps), max(gaps),
                 sum(apart) / len(apart), min(apart), max(apart),
                 max(4 * mib, 0.5 * state) / mib,
                 max(4 * mib, 0.5 * state) / (sum(apart) / len(apart))))
    else:
        print("leader snapshots during the overwrites: %d" % len(taken))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "load":
        load(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "overwrite":
        overwrite(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                  float(sys.argv[6]))
    elif cmd == "sample":
        sample(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5:])
    elif cmd == "summarize":
        summarize(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit("usage: see the top of %s" % sys.argv[0])
