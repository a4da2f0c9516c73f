#!/usr/bin/env bash
# The side-by-side benchmark: in ONE run, minutes apart on the same machine and disk,
#   - memcached -t 1 (no replication, no disk): the reference for the memcached door;
#   - raftkv, 3 nodes on loopback, fsync on;
#   - raftkv, 1 node, fsync on;
#   - etcd 3.4, 3 members (Debian's etcd-server), through its v3 JSON gateway;
#   - the disk's floor: one 4 KiB pwrite + fdatasync, 200 times (median).
# then prints the ratios the write-path goals are stated in, writes every raw line and a
# data file under OUT_DIR, and renders docs/benchmark.png (gnuplot) unless PLOT=0.
#
#   bench/compare.sh [build dir]          (default build/bench; needs app/raftkv, bench/mc_load)
#
# Every load generator checks every reply: mc_load counts anything but the expected reply as
# an error and exits 1 (stream mode reads back each connection's last batch); wrk reports
# non-2xx answers, which the summary shows. A run with errors is marked "ERRORS" in the table.
# Environment: RUN_SECONDS (5), VALUE_BYTES (100), BASE_PORT (31200), SCRATCH (/var/tmp: the
# disk being measured, not tmpfs), OUT_DIR (bench/results), PLOT (1), WITH_ETCD (1),
# SWEEP ("1 4 16 32 64": connection counts of the throughput-vs-connections curve), PROFILE
# (0; 1: also perf record -g and strace -c the 3-node leader under 32 connections of set,
# into OUT_DIR/<stamp>.perf.txt and .strace.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/bench}
RAFTKV=$BUILD/app/raftkv
MC_LOAD=$BUILD/bench/mc_load
RUN_SECONDS=${RUN_SECONDS:-5}
VALUE_BYTES=${VALUE_BYTES:-100}
BASE_PORT=${BASE_PORT:-31200}
SCRATCH=${SCRATCH:-/var/tmp}
OUT_DIR=${OUT_DIR:-bench/results}
PLOT=${PLOT:-1}
WITH_ETCD=${WITH_ETCD:-1}
PROFILE=${PROFILE:-0}
SWEEP=${SWEEP:-1 4 16 32 64}
KEYS=10000

for f in "$RAFTKV" "$MC_LOAD"; do
  [ -x "$f" ] || { echo "compare: no $f (cmake --build $BUILD --target raftkv mc_load)" >&2; exit 2; }
done
for tool in curl memcached python3; do
  command -v "$tool" >/dev/null || { echo "compare: $tool is required" >&2; exit 2; }
done

mkdir -p "$OUT_DIR"
stamp=$(date -u '+%Y%m%d-%H%M')
RAW="$OUT_DIR/$stamp.txt"
DIR=$(mktemp -d "$SCRATCH/raftkv-compare.XXXXXX")
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$*" | tee -a "$RAW"; }
# run <key> <mc_load args...>: one mc_load run, its line recorded under <key>.
run() {
  local key=$1; shift
  local line
  if ! line=$("$MC_LOAD" --seconds "$RUN_SECONDS" --value-bytes "$VALUE_BYTES" --keys "$KEYS" "$@" 2>"$DIR/mc_load.err"); then
    line="$line ERRORS $(head -c 200 "$DIR/mc_load.err" | tr '\n' ' ')"
  fi
  say "$key $line"
}

: >"$RAW"
say "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
say "# data dirs on $(df -T "$SCRATCH" | awk 'NR==2 {print $2}') ($SCRATCH); ${RUN_SECONDS} s per run after 1 s of warm-up; ${VALUE_BYTES}-byte values"
say "# top CPU users before the run: $(ps -eo comm,pcpu --sort=-pcpu | sed -n '2,4p' | awk '{printf "%s %s%%; ", $1, $2}')"

# ------------------------------------------------------------------------- the disk's floor
floor_us=$(python3 - "$DIR" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "floor")
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
block = b"x" * 4096
os.pwrite(fd, block, 0); os.fdatasync(fd)          # allocate first: measure overwrites
samples = []
for i in range(200):
    t = time.perf_counter()
    os.pwrite(fd, block, 0)
    os.fdatasync(fd)
    samples.append((time.perf_counter() - t) * 1e6)
os.close(fd)
samples.sort()
print(int(samples[len(samples) // 2]))
PY
)
say "floor pwrite4k_fdatasync p50_us=$floor_us"

# ------------------------------------------------------------------------- memcached -t 1
mc_ref_port=$((BASE_PORT + 60))
memcached -t 1 -m 1024 -U 0 -l 127.0.0.1 -p "$mc_ref_port" -u nobody >"$DIR/memcached.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  printf 'version\r\n' | timeout 1 nc -q1 127.0.0.1 "$mc_ref_port" 2>/dev/null | grep -q VERSION && break
  sleep 0.05
done
mc_runs() {  # mc_runs <name> <servers>: the memcached-door runs, same for every target
  local name=$1 servers=$2
  for c in $SWEEP; do run "$name set c=$c" --servers "$servers" --connections "$c" --op set; done
  run "$name stream c=1" --servers "$servers" --connections 1 --op stream --depth 100
  run "$name stream c=16" --servers "$servers" --connections 16 --op stream --depth 100
  run "$name get c=32" --servers "$servers" --connections 32 --op get --preload
  run "$name mixed c=32" --servers "$servers" --connections 32 --op mixed --get-percent 90
}
mc_runs memcached "127.0.0.1:$mc_ref_port"
stop_all

# ------------------------------------------------------------------------- raftkv
mc_port() { echo $((BASE_PORT + $1)); }
cs_port() { echo $((BASE_PORT + 10 + $1)); }
http_port() { echo $((BASE_PORT + 20 + $1)); }
peer_port() { echo $((BASE_PORT + 30 + $1)); }
start_raftkv() {  # start_raftkv <nodes>: a fresh cluster of 1 or 3 nodes; sets $leader
  local n=$1 i j
  rm -rf "$DIR"/node*
  for i in $(seq 1 "$n"); do
    mkdir -p "$DIR/node$i"
    {
      printf '[node]\nid = %d\ndata_dir = "%s"\n\n' "$i" "$DIR/node$i/data"
      printf '[listen]\nmemcached = "127.0.0.1:%d"\ncs733 = "127.0.0.1:%d"\nhttp = "127.0.0.1:%d"\npeer = "127.0.0.1:%d"\n' \
        "$(mc_port "$i")" "$(cs_port "$i")" "$(http_port "$i")" "$(peer_port "$i")"
      if [ "$n" -gt 1 ]; then
        for j in $(seq 1 "$n"); do
          printf '\n[[cluster.member]]\nid = %d\npeer = "127.0.0.1:%d"\nmemcached = "127.0.0.1:%d"\ncs733 = "127.0.0.1:%d"\nhttp = "127.0.0.1:%d"\n' \
            "$j" "$(peer_port "$j")" "$(mc_port "$j")" "$(cs_port "$j")" "$(http_port "$j")"
        done
      fi
      printf '\n[raft]\nfsync = true\n'
    } >"$DIR/node$i/raftkv.toml"
    "$RAFTKV" serve --config "$DIR/node$i/raftkv.toml" 2>"$DIR/node$i/raftkv.log" &
    pids+=($!)
  done
  leader=0
  for _ in $(seq 1 300); do
    leader=$(curl -s --max-time 1 "http://127.0.0.1:$(http_port 1)/v1/status" |
             grep -o '"leader_id":[0-9]*' | cut -d: -f2 || true)
    leader=${leader:-0}
    [ "$leader" != 0 ] && curl -sf --max-time 1 "http://127.0.0.1:$(http_port "$leader")/readyz" >/dev/null && return 0
    leader=0
    sleep 0.1
  done
  echo "compare: no leader after 30 s" >&2
  tail -n 20 "$DIR"/node*/raftkv.log >&2
  exit 1
}
metric() {  # metric <node> <name>: the value of an unlabelled sample
  curl -s --max-time 2 "http://127.0.0.1:$(http_port "$1")/metrics" | awk -v n="$2" '$1 == n {print $2}'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks

start_raftkv 3
follower=$((leader % 3 + 1))
say "# raftkv 3 nodes, leader node $leader"
leader_mc="127.0.0.1:$(mc_port "$leader")"
ix0=$(metric "$leader" raftkv_last_log_index)
lcpu0=$(cpu_ticks "${pids[$((leader - 1))]}"); fcpu0=$(cpu_ticks "${pids[$((follower - 1))]}")
run "raftkv3 cpu c=32" --servers "$leader_mc" --connections 32 --op set
ix1=$(metric "$leader" raftkv_last_log_index)
lcpu1=$(cpu_ticks "${pids[$((leader - 1))]}"); fcpu1=$(cpu_ticks "${pids[$((follower - 1))]}")
if [ "$PROFILE" = 1 ]; then
  # Where the leader's CPU and syscalls go under the same load: perf's call graph (the top
  # of the flat and the caller views) and strace's syscall counts, written beside the numbers.
  lpid=${pids[$((leader - 1))]}
  if command -v perf >/dev/null; then
    perf record -q -g -p "$lpid" -o "$DIR/perf.data" -- sleep "$RUN_SECONDS" 2>/dev/null &
    prof=$!
    run "raftkv3 profiled c=32" --servers "$leader_mc" --connections 32 --op set
    wait "$prof" || true
    { echo "# perf record -g on the leader, 32 connections of set, $(date -u '+%F %H:%M UTC')"
      perf report -i "$DIR/perf.data" --stdio --no-children --percent-limit 0.7 --sort symbol -g none 2>/dev/null | grep -v '^$' | head -60
      echo; echo "# by DSO"
      perf report -i "$DIR/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
    } >"$OUT_DIR/$stamp.perf.txt"
    say "# leader profile: $OUT_DIR/$stamp.perf.txt"
  fi
  if command -v strace >/dev/null; then
    timeout -s INT "$RUN_SECONDS" strace -c -f -p "$lpid" -o "$DIR/strace.txt" 2>/dev/null &
    prof=$!
    ix_s0=$(metric "$leader" raftkv_last_log_index)
    run "raftkv3 straced c=32" --servers "$leader_mc" --connections 32 --op set
    wait "$prof" || true
    ix_s1=$(metric "$leader" raftkv_last_log_index)
    { echo "# strace -c -f on the leader for ${RUN_SECONDS} s, 32 connections of set; entries appended meanwhile: $((ix_s1 - ix_s0))"
      head -30 "$DIR/strace.txt"; } >"$OUT_DIR/$stamp.strace.txt"
    say "# leader syscalls: $OUT_DIR/$stamp.strace.txt"
  fi
fi
say "raftkv3 cpu_per_write $(awk -v n="$((ix1 - ix0))" -v l="$((lcpu1 - lcpu0))" -v f="$((fcpu1 - fcpu0))" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "entries=%d leader_us=%.1f follower_us=%.1f", n, n ? 1e6 * l / hz / n : 0, n ? 1e6 * f / hz / n : 0 }')"
mc_runs raftkv3 "$leader_mc"
if command -v wrk >/dev/null; then
  RUN_SECONDS=$RUN_SECONDS CONNS=32 VALUE_BYTES=$VALUE_BYTES KEYS=$KEYS \
    bench/http_bench.sh raftkv "http://127.0.0.1:$(http_port "$leader")" |
    sed -E -e 's/^raftkv http PUT, 1 conn, pipelined ([0-9]+): */raftkv3 http_PUT_pipelined\1 c=1 /' \
      -e 's/^raftkv http (PUT|GET), ([0-9]+) conns?: */raftkv3 http_\1 c=\2 /' | tee -a "$RAW"
fi
stop_all

start_raftkv 1
say "# raftkv 1 node"
run "raftkv1 set c=32" --servers "127.0.0.1:$(mc_port 1)" --connections 32 --op set
run "raftkv1 set c=1" --servers "127.0.0.1:$(mc_port 1)" --connections 1 --op set
stop_all

# ------------------------------------------------------------------------- etcd
if [ "$WITH_ETCD" = 1 ] && command -v etcd >/dev/null && command -v etcdctl >/dev/null && command -v wrk >/dev/null; then
  ec_port() { echo $((BASE_PORT + 40 + $1)); }
  ep_port() { echo $((BASE_PORT + 50 + $1)); }
  initial=""
  for i in 1 2 3; do initial="${initial:+$initial,}e$i=http://127.0.0.1:$(ep_port $i)"; done
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$DIR/etcd$i" \
      --listen-client-urls "http://127.0.0.1:$(ec_port $i)" --advertise-client-urls "http://127.0.0.1:$(ec_port $i)" \
      --listen-peer-urls "http://127.0.0.1:$(ep_port $i)" --initial-advertise-peer-urls "http://127.0.0.1:$(ep_port $i)" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token raftkv-compare \
      --log-level error >"$DIR/etcd$i.log" 2>&1 &
    pids+=($!)
  done
  eps="127.0.0.1:$(ec_port 1),127.0.0.1:$(ec_port 2),127.0.0.1:$(ec_port 3)"
  ok=0
  for _ in $(seq 1 300); do
    if ETCDCTL_API=3 etcdctl --endpoints "$eps" put compare-probe x >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [ "$ok" = 1 ] || { echo "compare: etcd cluster did not come up" >&2; tail -n 20 "$DIR"/etcd*.log >&2; exit 1; }
  eleader=$(ETCDCTL_API=3 etcdctl --endpoints "$eps" endpoint status -w simple | awk -F', ' '$5 == "true" {print $1}')
  say "# etcd $(etcd --version | awk 'NR==1 {print $3}') 3 members, leader $eleader"
  RUN_SECONDS=$RUN_SECONDS CONNS=32 VALUE_BYTES=$VALUE_BYTES KEYS=$KEYS bench/http_bench.sh etcd "http://$eleader" |
    sed -E -e 's/^etcd http PUT, 1 conn, pipelined ([0-9]+): */etcd http_PUT_pipelined\1 c=1 /' \
      -e 's/^etcd http (PUT|GET), ([0-9]+) conns?: */etcd http_\1 c=\2 /' | tee -a "$RAW"
  stop_all
else
  say "# etcd, etcdctl or wrk not installed: etcd runs skipped (apt-get install etcd-server etcd-client wrk)"
fi
say "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------------- the ratios
echo
python3 bench/summarize.py "$RAW" | tee "$OUT_DIR/$stamp.summary.txt"
if [ "$PLOT" = 1 ]; then
  python3 bench/summarize.py --plot-data "$RAW" >"$DIR/plot.dat"
  if command -v gnuplot >/dev/null; then
    gnuplot -e "datafile='$DIR/plot.dat'; outfile='docs/benchmark.png'" bench/plot.gp &&
      echo "plot: docs/benchmark.png"
  else
    echo "# gnuplot not installed (apt-get install gnuplot-nox): no plot"
  fi
fi
echo "raw lines: $RAW"
