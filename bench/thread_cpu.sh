#!/usr/bin/env bash
# CPU per replicated entry, thread by thread, on the leader and one follower of a fresh
# 3-node cluster, during one bench/mc_load run (every reply checked). For each thread that
# used CPU: its name, microseconds of CPU (user + system, from /proc/PID/task/TID/stat) per
# log entry appended meanwhile, and its context switches per entry (voluntary: it slept,
# e.g. in epoll_wait or on a futex; involuntary: it was preempted); then journal records
# per entry and the mean journal write + fdatasync (raftkv_fsync_duration_seconds in
# /metrics) on both nodes.
#
#   bench/thread_cpu.sh [build dir] -- <mc_load options>
#   e.g. bench/thread_cpu.sh build/release -- --connections 1 --op stream --depth 1000
#
# The thread names: raftkv (the event loop; the first one listed is the main thread), and
# the storage's journal and checkpointer threads and the snapshot writer, in start order.
# Environment: SECONDS_RUN (5), FSYNC (true; false shows the cost without syncs), KEYS
# (100000), BASE_PORT (32600), PERF (0; 1: perf record -g the leader's event-loop thread for
# PERF_SECONDS (2) from PERF_DELAY (1) s into the run, into OUT_PERF, default
# /var/tmp/thread_cpu.perf.data), PERF_NODE (leader; follower
# profiles the follower's event loop instead), PERF_SCOPE (thread; process: all the node's
# threads, for perf report --sort pid, then --tid), PERF_ARGS (-g; e.g. "--call-graph dwarf"),
# ALLOCS (0; 1, as root: also count `operator new` calls per entry on each of the two nodes'
# threads, with a uprobe on TCMalloc's tc_new; the count is exact, unlike a profile).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
RAFTKV=$BUILD/app/raftkv
MC_LOAD=$BUILD/bench/mc_load
SECONDS_RUN=${SECONDS_RUN:-5}
BASE_PORT=${BASE_PORT:-32600}
DIR=$(mktemp -d /var/tmp/thread_cpu.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
BENCH=thread_cpu
source bench/cluster_lib.sh
for i in 1 2 3; do write_node_config "$DIR" "$i" "${FSYNC:-true}" 4096; done
for i in 1 2 3; do
  "$RAFTKV" serve --config "$DIR/node$i/raftkv.toml" 2>"$DIR/node$i/log" &
  pids+=($!)
done
l=$(wait_leader)
f=$((l % 3 + 1))
lp=${pids[$((l - 1))]}
fp=${pids[$((f - 1))]}

metric() { curl -fsS "http://127.0.0.1:$(http_port "$1")/metrics" | awk -v n="$2" '$1 == n {print $2}'; }
threads() {  # tid name cpu-ticks voluntary-switches involuntary-switches
  for t in /proc/"$1"/task/*; do
    echo "$(basename "$t") $(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")" \
      "$(awk '/^voluntary_ctxt_switches/ {v = $2} /^nonvoluntary_ctxt_switches/ {n = $2} END {print v, n}' "$t/status")"
  done
}
sample() {  # node pid -> file: journal records, their seconds, last log index, thread ticks
  {
    echo "records $(metric "$1" raftkv_fsync_duration_seconds_count)"
    echo "seconds $(metric "$1" raftkv_fsync_duration_seconds_sum)"
    echo "index $(metric "$1" raftkv_last_log_index)"
    echo "minflt $(awk '{print $10}' "/proc/$2/stat")"
    threads "$2"
  } >"$3"
}
sample "$l" "$lp" "$DIR/l0"
sample "$f" "$fp" "$DIR/f0"
alloc_stats=()
if [ "${ALLOCS:-0}" = 1 ]; then
  tcmalloc=$(ldd "$RAFTKV" | awk '/libtcmalloc/ {print $3}')
  [ -n "$tcmalloc" ] || { echo "thread_cpu: $RAFTKV is not linked to TCMalloc" >&2; exit 2; }
  perf probe -q -d 'probe_libtcmalloc*:raftkv_new' 2>/dev/null || true
  perf probe -q -x "$tcmalloc" -a 'raftkv_new=tc_new'
  for who in l f; do
    p=$([ "$who" = l ] && echo "$lp" || echo "$fp")
    perf stat -x, --per-thread -e 'probe_libtcmalloc_minimal:raftkv_new' -p "$p" -o "$DIR/allocs.$who" &
    alloc_stats+=($!)
  done
fi
if [ "${PERF:-0}" = 1 ]; then
  perf_tid=$lp
  [ "${PERF_NODE:-leader}" = follower ] && perf_tid=$fp
  perf_scope=-t  # the event-loop thread; PERF_SCOPE=process: every thread of the node
  [ "${PERF_SCOPE:-thread}" = process ] && perf_scope=-p
  (sleep "${PERF_DELAY:-1}"; perf record -q ${PERF_ARGS:--g} "$perf_scope" "$perf_tid" -o "${OUT_PERF:-/var/tmp/thread_cpu.perf.data}" -- sleep "${PERF_SECONDS:-2}" 2>/dev/null) &
fi
"$MC_LOAD" --servers "127.0.0.1:$(mc_port "$l")" --seconds "$SECONDS_RUN" --value-bytes 100 \
  --keys "${KEYS:-100000}" "$@"
sample "$l" "$lp" "$DIR/l1"
sample "$f" "$fp" "$DIR/f1"
for p in "${alloc_stats[@]}"; do kill -INT "$p"; wait "$p" || true; done
hz=$(getconf CLK_TCK)
for who in l f; do
  awk -v who="$([ "$who" = l ] && echo leader || echo follower)" -v hz="$hz" '
    FNR == NR { if ($1 == "index") i0 = $2; else if ($1 == "records") r0 = $2;
                else if ($1 == "seconds") s0 = $2; else if ($1 == "minflt") m0 = $2;
                else { t0[$1] = $3; v0[$1] = $4; n0[$1] = $5 }; next }
    $1 == "index" { n = $2 - i0; next }
    $1 == "records" { r = $2 - r0; next }
    $1 == "seconds" { s = $2 - s0; next }
    $1 == "minflt" { m = $2 - m0; next }
    $3 > t0[$1] { k++; tid[k] = $1; name[k] = $2; ticks[k] = $3 - t0[$1]; vol[k] = $4 - v0[$1]; inv[k] = $5 - n0[$1] }
    END {
      for (j = 1; j <= k; ++j)
        printf "%s thread %s %s: %.2f us/entry, context switches/entry: %.2f voluntary, %.2f involuntary\n", who, tid[j], name[j],
               (n > 0 ? 1e6 * ticks[j] / hz / n : 0), (n > 0 ? vol[j] / n : 0), (n > 0 ? inv[j] / n : 0)
      printf "%s: entries=%d journal_records=%d entries/record=%.1f mean_record_ms=%.2f page_faults/entry=%.2f\n",
             who, n, r, (r > 0 ? n / r : 0), (r > 0 ? 1000 * s / r : 0), (n > 0 ? m / n : 0)
    }' "$DIR/${who}0" "$DIR/${who}1"
done
if [ "${ALLOCS:-0}" = 1 ]; then
  perf probe -q -d 'probe_libtcmalloc*:raftkv_new' 2>/dev/null || true
  for who in l f; do
    n=$(awk '$1 == "index" {print $2}' "$DIR/${who}1")
    n0=$(awk '$1 == "index" {print $2}' "$DIR/${who}0")
    # perf stat -x, --per-thread: "comm-tid,count,,event,..."
    awk -F, -v who="$([ "$who" = l ] && echo leader || echo follower)" -v n=$((n - n0)) '
      $4 ~ /raftkv_new/ && $2 + 0 > 0 {
        printf "%s thread %s: %.2f operator new per entry\n", who, $1, (n > 0 ? $2 / n : 0) }' \
      "$DIR/allocs.$who"
  done
fi
for who in l f; do
  n=$([ "$who" = l ] && echo "$l" || echo "$f")
  grep -h "written by a child" "$DIR/node$n/log" | sed "s/^/$([ "$who" = l ] && echo leader || echo follower) snapshot: /" || true
done
