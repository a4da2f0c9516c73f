#!/usr/bin/env bash
# State at scale on a 3-node raftkv cluster (loopback, fsync on, 100-byte values):
#   1. bulk load of N items through ONE memcached connection streaming `set ... noreply`
#      (bench/mc_load --op load: batches of 1,000 closed by `version`, LOAD_WINDOW of them
#      in flight; any reply but VERSION fails the run), while a
#      second connection does `get` round trips on the leader in a loop: items/s of the
#      load, max and p99 of the gets (a snapshot that blocked the event loop shows up here);
#      also the minor page faults of each node during the load (fresh pages and the
#      copy-on-write copies after a snapshot's fork), each node's CPU seconds (its snapshot
#      children included once they have exited) and the loader's own, and the leader's
#      journal syncs;
#   2. resident memory per item on every node (anonymous and file-backed, /proc/PID/status),
#      against memcached -t 1 loaded with the same items through the same loader;
#   3. restart of the whole cluster: seconds from launch until a leader answers a sample of
#      1,000 keys and the last key loaded, then a full check that every item is readable.
#
#   bench/scale_bench.sh [build dir]            (default build/release)
#
# Needs <build dir>/app/raftkv and <build dir>/bench/mc_load, python3 (the get probe and the
# checks), curl; memcached for the comparison (skipped if missing). Environment:
#   ITEMS (1000000)    items to load;    VALUE_BYTES (100)
#   FSYNC (true)       [raft] fsync;     BASE_PORT (31400)
#   LOAD_WINDOW (1)    batches sent before the oldest one's VERSION is awaited
#   SCRATCH (/var/tmp) where the data dirs go
#   RAFT_EXTRA         more [raft] settings (bench/cluster_lib.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
RAFTKV=$BUILD/app/raftkv
MC_LOAD=$BUILD/bench/mc_load
ITEMS=${ITEMS:-1000000}
VALUE_BYTES=${VALUE_BYTES:-100}
FSYNC=${FSYNC:-true}
LOAD_WINDOW=${LOAD_WINDOW:-1}
BASE_PORT=${BASE_PORT:-31400}
SCRATCH=${SCRATCH:-/var/tmp}
[ -x "$RAFTKV" ] || { echo "scale_bench: no $RAFTKV" >&2; exit 2; }
[ -x "$MC_LOAD" ] || { echo "scale_bench: no $MC_LOAD (ninja -C $BUILD mc_load)" >&2; exit 2; }
command -v curl >/dev/null || { echo "scale_bench: curl is required" >&2; exit 2; }

DIR=$(mktemp -d "$SCRATCH/raftkv-scale-bench.XXXXXX")
declare -A node_pid=()
mc_pid=""
cleanup() {
  # Only the processes this script started, by pid.
  for p in "${node_pid[@]}" $mc_pid; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${node_pid[@]}" $mc_pid; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BENCH=scale_bench
# shellcheck source=bench/cluster_lib.sh
source bench/cluster_lib.sh
MEMCACHED_PORT=$((BASE_PORT + 40))

TOOL=bench/scale_tool.py  # the get probe and the read-back checks

rss() {  # "anon_kB file_kB" of a pid
  awk '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} END {print a+0, f+0}' "/proc/$1/status"
}

start_node() {
  local i=$1
  "$RAFTKV" serve --config "$DIR/node$i/raftkv.toml" 2>>"$DIR/node$i/raftkv.log" &
  node_pid[$i]=$!
}


echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# items=$ITEMS value_bytes=$VALUE_BYTES fsync=$FSYNC data dirs on $(df -T "$SCRATCH" | awk 'NR==2 {print $2}')"

for i in 1 2 3; do
  write_node_config "$DIR" "$i" "$FSYNC" 8192
  start_node "$i"
done
L=$(wait_leader)
declare -A before=() faults_before=() cpu_before=()
minflt() { awk '{print $10}' "/proc/$1/stat"; }  # minor page faults, copy-on-write ones included
# CPU ticks of the node's threads and of its snapshot children that have exited (reaped).
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
for i in 1 2 3; do
  before[$i]=$(rss "${node_pid[$i]}")
  faults_before[$i]=$(minflt "${node_pid[$i]}")
  cpu_before[$i]=$(cpu_ticks "${node_pid[$i]}")
done

# ---------------------------------------------------------------- 1. load + gets on the leader
python3 "$TOOL" probe "$(mc_port "$L")" "$DIR/stop" >"$DIR/probe.out" &
probe_pid=$!
load() {  # port: the bulk load, one line of figures (bench/mc_load.cc, --op load)
  "$MC_LOAD" --servers "127.0.0.1:$1" --op load --items "$ITEMS" --key-prefix item: \
    --depth 1000 --window "$LOAD_WINDOW" --value-bytes "$VALUE_BYTES"
}
load "$(mc_port "$L")"
touch "$DIR/stop"
wait "$probe_pid"
cat "$DIR/probe.out"
hz=$(getconf CLK_TCK)
for i in 1 2 3; do
  echo "node$i minor_faults_during_load=$(($(minflt "${node_pid[$i]}") - faults_before[$i])) cpu_s_during_load=$(awk -v t=$(($(cpu_ticks "${node_pid[$i]}") - cpu_before[$i])) -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}')$([ "$i" = "$L" ] && echo ' (leader)')"
done
# The leader's journal syncs since start-up (nearly all of them during the load): a sync
# that waits behind a snapshot file's writeback shows up in the slow buckets.
curl -s "http://127.0.0.1:$(http_port "$L")/metrics" | awk '
  /^raftkv_fsync_duration_seconds_bucket\{le="0.01"\}/ {le10 = $2}
  /^raftkv_fsync_duration_seconds_bucket\{le="0.05"\}/ {le50 = $2}
  /^raftkv_fsync_duration_seconds_sum/ {sum = $2}
  /^raftkv_fsync_duration_seconds_count/ {n = $2}
  END { if (n > 0) printf "leader journal_syncs=%d mean_ms=%.2f over_10ms=%d over_50ms=%d\n",
                          n, sum * 1000 / n, n - le10, n - le50 }'
# The probe's gets as the leader saw them: from the parsed request to its reply
# (raftkv_request_duration_seconds). What the probe measured beyond this is time before the
# request was read (the event loop's queue, a core) and after the reply was sent.
curl -s "http://127.0.0.1:$(http_port "$L")/metrics" | awk '
  /^raftkv_request_duration_seconds_bucket\{door="memcached",command="get",/ {
    match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5); c[le] = $2 }
  END { if (c["+Inf"] > 0) printf "leader get_handled=%d within_0.1ms=%d within_1ms=%d within_2.5ms=%d within_5ms=%d within_10ms=%d\n",
                                  c["+Inf"], c["1e-04"], c["0.001"], c["0.0025"], c["0.005"], c["0.01"] }'
sleep 1  # let the followers apply the tail before measuring them
echo "snapshots_during_load=$(grep -c 'written by a child' "$DIR/node$L/raftkv.log" || true) (leader)"
grep -h 'written by a child\|log compacted' "$DIR/node$L/raftkv.log" |
  sed 's/^[0-9-]*T\([0-9:.]*Z\) INFO  /# leader at \1: /' || true
# The followers' snapshots too: a read on the leader needs a follower's answer once its
# lease lapses, and a follower in its own fork stall answers late.
for i in 1 2 3; do
  [ "$i" = "$L" ] && continue
  grep -h 'written by a child' "$DIR/node$i/raftkv.log" |
    sed 's/^[0-9-]*T\([0-9:.]*Z\) INFO  /# follower at \1: /' || true
done

# ---------------------------------------------------------------- 2. memory per item
for i in 1 2 3; do
  read -r a0 f0 <<<"${before[$i]}"
  read -r a1 f1 <<<"$(rss "${node_pid[$i]}")"
  awk -v i="$i" -v a0="$a0" -v a1="$a1" -v f0="$f0" -v f1="$f1" -v n="$ITEMS" 'BEGIN {
    printf "node%d anon_rss_mb=%.0f file_rss_mb=%.0f anon_bytes_per_item=%.0f file_bytes_per_item=%.0f",
      i, a1 / 1024, f1 / 1024, (a1 - a0) * 1024 / n, (f1 - f0) * 1024 / n }'
  # How much of the heap sits on 2 MiB pages (app/huge_page_heap.h).
  awk '/^AnonHugePages:/ {printf " anon_huge_mb=%.0f\n", $2 / 1024}' "/proc/${node_pid[$i]}/smaps_rollup"
done
if command -v memcached >/dev/null; then
  as_user=()
  [ "$(id -u)" -ne 0 ] || as_user=(-u nobody)
  memcached "${as_user[@]}" -t 1 -m 8192 -p "$MEMCACHED_PORT" -U 0 -l 127.0.0.1 &
  mc_pid=$!
  sleep 0.5
  read -r a0 f0 <<<"$(rss "$mc_pid")"
  load "$MEMCACHED_PORT" | sed 's/^/memcached /'
  read -r a1 f1 <<<"$(rss "$mc_pid")"
  awk -v a0="$a0" -v a1="$a1" -v n="$ITEMS" 'BEGIN {
    printf "memcached anon_rss_mb=%.0f anon_bytes_per_item=%.0f\n", a1 / 1024, (a1 - a0) * 1024 / n }'
  kill -TERM "$mc_pid"; wait "$mc_pid" 2>/dev/null || true; mc_pid=""
else
  echo "memcached: not installed; comparison skipped"
fi

# ---------------------------------------------------------------- 3. restart
for i in 1 2 3; do kill -TERM "${node_pid[$i]}"; done
for i in 1 2 3; do wait "${node_pid[$i]}" 2>/dev/null || true; done
start=$(date +%s.%N)
for i in 1 2 3; do start_node "$i"; done
deadline=$((SECONDS + 120))
while :; do
  [ $SECONDS -lt $deadline ] || { echo "scale_bench: not readable after restart" >&2; exit 1; }
  L=$(leader)
  if [ -n "$L" ] && python3 "$TOOL" check "$(mc_port "$L")" "$ITEMS" sample >/dev/null 2>&1; then break; fi
  sleep 0.05
done
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "restart_to_readable_secs=%.2f\n", e - s }'
python3 "$TOOL" check "$(mc_port "$L")" "$ITEMS" all | sed 's/^/full check after restart: /'
grep -h "recovered in" "$DIR"/node*/raftkv.log | tail -3 | sed 's/^/# /'
