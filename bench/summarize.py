#!/usr/bin/env python3
"""Turns the raw lines of bench/compare.sh into the ratio table of the write-path goals.

    summarize.py RAW            the table (markdown), one row per goal, with PASS/MISS
    summarize.py --plot-data RAW  whitespace-separated data for bench/plot.gp

A raw line is `<target> <run> [c=N] key=value ...` (mc_load's and wrk's summary lines with a
label in front). A run with errors carries `ERRORS` or errors=/non2xx= above 0; a ratio built
on such a run is marked so, never silently used.
"""
import sys


def parse(path):
    runs = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        tokens = line.split()
        key_len = 3 if len(tokens) > 2 and tokens[2].startswith("c=") else 2
        key = " ".join(tokens[:key_len])
        fields = {"_errors": "ERRORS" in tokens}
        for t in tokens[key_len:]:
            if "=" in t:
                k, _, v = t.partition("=")
                try:
                    fields[k] = float(v)
                except ValueError:
                    fields[k] = v
        if fields.get("errors", 0) or fields.get("non2xx", 0) or fields.get("socket_errors", 0):
            fields["_errors"] = True
        runs[key] = fields
    return runs


def rate(r):
    return r.get("ops_per_s", r.get("reqs_per_s"))


def table(runs):
    rows = []

    def ratio(label, num_key, den_key, field, goal, higher_is_better=True, den_value=None):
        num = runs.get(num_key)
        den = runs.get(den_key) if den_key else None
        if num is None or (den is None and den_value is None):
            rows.append((label, "n/a (run missing)", goal, "n/a"))
            return
        a = rate(num) if field == "rate" else num.get(field)
        b = den_value if den_value is not None else (rate(den) if field == "rate" else den.get(field))
        if not a or not b:
            rows.append((label, "n/a", goal, "n/a"))
            return
        x = a / b
        target = float(goal.split("x")[0].lstrip("≥≤ "))
        ok = x >= target if higher_is_better else x <= target
        bad = num.get("_errors") or (den is not None and den.get("_errors"))
        shown = f"{a:,.0f} / {b:,.0f} = {x:.2f}x"
        rows.append((label, shown + (" (ERRORS in a run)" if bad else ""), goal,
                     "ERRORS" if bad else ("PASS" if ok else "MISS")))

    ratio("replicated set, 32 conns / memcached", "raftkv3 set c=32", "memcached set c=32", "rate", "≥0.5x")
    ratio("single-client set p50 / etcd put p50 (µs)", "raftkv3 set c=1", "etcd http_PUT c=1", "p50_us", "≤0.6x", False)
    ratio("stream set noreply, 1 conn / memcached", "raftkv3 stream c=1", "memcached stream c=1", "rate", "≥0.15x")
    ratio("stream set noreply, 16 conns / memcached", "raftkv3 stream c=16", "memcached stream c=16", "rate", "≥0.25x")
    ratio("linearizable get, 32 conns / memcached", "raftkv3 get c=32", "memcached get c=32", "rate", "≥0.8x")
    ratio("90% get / 10% set, 32 conns / memcached", "raftkv3 mixed c=32", "memcached mixed c=32", "rate", "≥0.5x")
    ratio("HTTP PUT, 32 conns / etcd", "raftkv3 http_PUT c=32", "etcd http_PUT c=32", "rate", "≥10x")
    ratio("HTTP GET, 32 conns / etcd", "raftkv3 http_GET c=32", "etcd http_GET c=32", "rate", "≥10x")
    floor = runs.get("floor pwrite4k_fdatasync", {}).get("p50_us")
    if floor:
        ratio("single node set, 32 conns / serial fsync rate", "raftkv1 set c=32", None, "rate", "≥10x",
              den_value=1e6 / floor)
        ratio("single-client set p50 / one pwrite+fdatasync p50 (µs)", "raftkv3 set c=1", None, "p50_us", "≤3x",
              False, den_value=floor)
    cpu = runs.get("raftkv3 cpu_per_write")
    if cpu:
        for who, goal in (("leader_us", 10), ("follower_us", 5)):
            v = cpu.get(who)
            rows.append((f"CPU per replicated write, {who[:-3]} (µs)", f"{v:.1f}", f"≤{goal}",
                         "PASS" if v is not None and v <= goal else "MISS"))
    out = ["| goal | measured | target | |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def plot_data(runs):
    # Block 0: throughput vs connections (set): conns memcached raftkv3
    # Block 1: latency percentiles of a single client's set: name p50 p90 p99 (ms)
    lines = ["# conns memcached raftkv3"]
    sweep = sorted({int(k.split("c=")[1]) for k in runs if k.startswith("memcached set c=")})
    for c in sweep:
        m = runs.get(f"memcached set c={c}")
        r = runs.get(f"raftkv3 set c={c}")
        lines.append(f"{c} {rate(m) if m else 'NaN'} {rate(r) if r else 'NaN'}")
    lines += ["", "", "# name p50 p90 p99 (ms)"]
    for name, key in (("memcached", "memcached set c=1"), ("raftkv-3", "raftkv3 set c=1"),
                      ("raftkv-1", "raftkv1 set c=1"), ("etcd-3", "etcd http_PUT c=1")):
        r = runs.get(key)
        if r:
            lines.append(f"{name} {r['p50_us'] / 1000:.3f} {r['p90_us'] / 1000:.3f} {r['p99_us'] / 1000:.3f}")
    lines += ["", "", "# etcd put: conns rate"]
    for c in (1, 32):
        r = runs.get(f"etcd http_PUT c={c}")
        if r:
            lines.append(f"{c} {rate(r)}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--plot-data":
        print(plot_data(parse(sys.argv[2])))
    elif len(sys.argv) == 2:
        print(table(parse(sys.argv[1])))
    else:
        sys.exit("usage: summarize.py [--plot-data] RAW")
