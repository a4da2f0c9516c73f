#!/usr/bin/env bash
# Disk use over a steady write load on a 3-node raftkv cluster (loopback, fsync on):
#   1. load ITEMS items of VALUE_BYTES through the leader's memcached door (every reply
#      checked), so the state is large enough that the size rule of snapshot_due() (log
#      applied since the last snapshot > max(4 MiB, 0.5 x state bytes)), not
#      [raft] snapshot_entries, decides when to snapshot;
#   2. for DURATION seconds, overwrite random keys of that set at RATE sets/s through the
#      leader: the state keeps its size while the log grows;
#   3. all along, every INTERVAL seconds and for every node: bytes of the snapshot files, the
#      LMDB file's apparent and allocated size, /v1/status indices, the state's bytes
#      (memcached `stats`) and RSS, to a CSV; then a summary and a plot.
#
#   bench/disk_use_bench.sh [build dir]        (default build/release)
#
# Writes bench/results/disk-use-<stamp>.csv and .txt, and the plot to $PLOT. Exits non-zero
# if any write fails. Needs <build dir>/app/raftkv, python3, curl, gnuplot (plot skipped if
# missing). Environment:
#   ITEMS (300000)   VALUE_BYTES (100)   RATE (5000 sets/s)   DURATION (600 s)
#   INTERVAL (5 s)   FSYNC (true)        SCRATCH (/var/tmp, where the data dirs go)
#   PLOT (docs/disk-use.png)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
RAFTKV=$BUILD/app/raftkv
ITEMS=${ITEMS:-300000}
VALUE_BYTES=${VALUE_BYTES:-100}
RATE=${RATE:-5000}
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-5}
FSYNC=${FSYNC:-true}
SCRATCH=${SCRATCH:-/var/tmp}
PLOT=${PLOT:-docs/disk-use.png}
TOOL=bench/disk_use_load.py
[ -x "$RAFTKV" ] || { echo "disk_use_bench: no $RAFTKV" >&2; exit 2; }
command -v curl >/dev/null || { echo "disk_use_bench: curl is required" >&2; exit 2; }

STAMP=$(date -u +%Y%m%d-%H%M)
mkdir -p bench/results
CSV=bench/results/disk-use-$STAMP.csv
TXT=bench/results/disk-use-$STAMP.txt

DIR=$(mktemp -d "$SCRATCH/raftkv-disk-bench.XXXXXX")
declare -A node_pid=()
sampler_pid=""
cleanup() {
  # Only the processes this script started, by pid.
  for p in "${node_pid[@]}" $sampler_pid; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${node_pid[@]}" $sampler_pid; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Twelve distinct free ports, held open together while the kernel picks them.
read -r -a PORTS <<<"$(python3 -c '
import socket
ss = [socket.socket() for _ in range(12)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()')"
mc_port() { echo "${PORTS[$(($1 - 1))]}"; }
cs_port() { echo "${PORTS[$(($1 + 2))]}"; }
http_port() { echo "${PORTS[$(($1 + 5))]}"; }
peer_port() { echo "${PORTS[$(($1 + 8))]}"; }
BENCH=disk_use_bench
# shellcheck source=bench/cluster_lib.sh
source bench/cluster_lib.sh


{
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM, uptime: $(uptime)"
  echo "# items=$ITEMS value_bytes=$VALUE_BYTES rate=$RATE duration=$DURATION interval=$INTERVAL fsync=$FSYNC data dirs on $(df -T "$SCRATCH" | awk 'NR==2 {print $2}')"
} | tee "$TXT"

for i in 1 2 3; do
  write_node_config "$DIR" "$i" "$FSYNC" 4096
  "$RAFTKV" serve --config "$DIR/node$i/raftkv.toml" 2>>"$DIR/node$i/raftkv.log" &
  node_pid[$i]=$!
done
L=$(wait_leader)
echo "# leader: node$L" | tee -a "$TXT"

nodes=()
for i in 1 2 3; do nodes+=("$i:${node_pid[$i]}:$DIR/node$i/data:$(http_port "$i"):$(mc_port "$i")"); done
python3 "$TOOL" sample "$CSV" "$INTERVAL" "$DIR/stop" "${nodes[@]}" &
sampler_pid=$!
t0=$(date +%s.%N)

# ---------------------------------------------------------------- 1. the state
python3 "$TOOL" load "$(mc_port "$L")" "$ITEMS" "$VALUE_BYTES" | tee -a "$TXT"

# ---------------------------------------------------------------- 2. steady overwrites
t1=$(date +%s.%N)
load_ok=0
python3 "$TOOL" overwrite "$(mc_port "$L")" "$ITEMS" "$VALUE_BYTES" "$RATE" "$DURATION" \
  >"$DIR/overwrite.out" || load_ok=$?
tee -a "$TXT" <"$DIR/overwrite.out"
echo "# uptime at the end: $(uptime)" | tee -a "$TXT"
sleep "$INTERVAL"  # one more sample after the load
touch "$DIR/stop"
wait "$sampler_pid" || true
sampler_pid=""
if [ "$load_ok" -ne 0 ]; then
  echo "disk_use_bench: a write failed (exit $load_ok)" | tee -a "$TXT" >&2
  exit 1
fi
L_end=$(leader)
[ "$L_end" = "$L" ] || echo "# note: the leader changed during the run (node$L -> node${L_end:-none})" | tee -a "$TXT"
grep -h "log compacted\|written by a child" "$DIR/node$L/raftkv.log" | sed 's/^/# leader log: /' >>"$TXT" || true
for i in 1 2 3; do
  grep -h "WARN\|ERROR" "$DIR/node$i/raftkv.log" | head -5 | sed "s/^/# node$i: /" | tee -a "$TXT" || true
done

# ---------------------------------------------------------------- 3. summary and plot
offset=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "# overwrites started at t_s=$offset of the CSV; leader node$L" | tee -a "$TXT"
python3 "$TOOL" summarize "$CSV" "$offset" "$L" | tee -a "$TXT"
if command -v gnuplot >/dev/null; then
  title="raftkv disk use, 3 nodes, fsync on, $(nproc) cores: $ITEMS items of $VALUE_BYTES bytes, then ${DURATION} s of random overwrites at $RATE sets/s (one run)"
  # One file per node: gnuplot draws a line only through consecutive rows.
  for i in 1 2 3; do awk -F, -v n="$i" 'NR > 1 && $2 == n' "$CSV" >"$DIR/node$i.csv"; done
  cat >"$DIR/disk_use.gp" <<'GP'
set terminal pngcairo size 1400,900 font "Liberation Sans,10" noenhanced
set output outfile
set datafile separator ","
set multiplot layout 2,2 title page_title
set grid
set key bottom right opaque
set yrange [0:*]
set autoscale xfix
set xlabel "minutes since the overwrites started (before 0: loading the state)"
mb(x) = x / 1048576.0
x(t) = (t - t0) / 60.0
do for [n=1:3] {
  set title sprintf("node%d%s", n, n == leader ? " (leader)" : "")
  set ylabel "MiB on disk"
  f = sprintf("%s/node%d.csv", dir, n)
  plot f using (x($1)):(mb($17)) with lines lw 2 title "whole data dir (du: snapshots, data.mdb, tmp files)", \
       ''  using (x($1)):(mb($6)) with lines lw 1.5 title "snapshot files (snapshots/*.snap)", \
       ''  using (x($1)):(mb($8)) with lines lw 1.5 title "data.mdb (allocated, du)", \
       ''  using (x($1)):(mb($7)) with lines lw 1 dt 2 title "data.mdb (apparent size)", \
       ''  using ($10 >= 0 ? x($1) : 1/0):(mb($10)) with lines lw 1.5 dt 3 lc rgb "black" title "state bytes (memcached stats)"
}
# Headroom above the curves for the key.
set key top left horizontal opaque
set yrange [0:*]
set offsets 0, 0, graph 0.3, 0
set title sprintf("node%d (leader): log entries kept after its snapshot, and RSS", leader)
set ylabel "entries (last_log_index - snapshot_index)"
set y2label "RSS MiB"
set y2tics
set ytics nomirror
f = sprintf("%s/node%d.csv", dir, leader)
plot f using (x($1)):($12 - $11) with lines lw 2 title "log entries kept", \
     ''  using (x($1)):($15 / 1024.0) axes x1y2 with lines lw 1.5 title "RSS anon (MiB)", \
     ''  using (x($1)):($16 / 1024.0) axes x1y2 with lines lw 1.5 title "RSS file (MiB)"
unset multiplot
GP
  gnuplot -e "dir='$DIR'; outfile='$PLOT'; t0=$offset; leader=$L; page_title='$title'" "$DIR/disk_use.gp"
  echo "plot: $PLOT" | tee -a "$TXT"
else
  echo "gnuplot: not installed; plot skipped" | tee -a "$TXT"
fi
echo "csv: $CSV  summary: $TXT"
