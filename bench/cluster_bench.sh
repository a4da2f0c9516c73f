#!/usr/bin/env bash
# Benchmarks a 3-node raftkv cluster on loopback (fsync on, 100-byte values) and, for
# comparison, a 3-node etcd cluster on the same machine with the same client load shape.
#
#   bench/cluster_bench.sh [build dir]          (default build/bench)
#
# Needs: <build dir>/app/raftkv and <build dir>/bench/mc_load
#        (cmake --build <build dir> --target raftkv mc_load), curl; wrk for the HTTP runs;
#        etcd + etcdctl (Debian: etcd-server etcd-client) for the comparison.
# Environment:
#   RUN_SECONDS (10)   measured seconds per run (after 1 s of warm-up)
#   CONNS (32)         connections of the throughput runs (each one request outstanding)
#   VALUE_BYTES (100)  value size
#   FSYNC (true)       [raft] fsync of the raftkv nodes
#   BASE_PORT (31200)  first of the loopback ports used (raftkv BASE+1.., etcd BASE+41..)
#   SCRATCH (/var/tmp) where the data dirs go: must be the disk being measured, not tmpfs
#   WITH_HTTP (1)      also run bench/http_bench.sh against the raftkv leader
#   WITH_ETCD (1)      also run the etcd comparison (skipped when etcd is not installed)
#   PROFILE (0)        1: perf record the leader during the 32-connection set run
# Every run prints one line; the machine, date and load average are printed first.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/bench}
RAFTKV=$BUILD/app/raftkv
MC_LOAD=$BUILD/bench/mc_load
RUN_SECONDS=${RUN_SECONDS:-10}
CONNS=${CONNS:-32}
VALUE_BYTES=${VALUE_BYTES:-100}
FSYNC=${FSYNC:-true}
BASE_PORT=${BASE_PORT:-31200}
SCRATCH=${SCRATCH:-/var/tmp}
WITH_HTTP=${WITH_HTTP:-1}
WITH_ETCD=${WITH_ETCD:-1}
PROFILE=${PROFILE:-0}
KEYS=10000

for f in "$RAFTKV" "$MC_LOAD"; do
  [ -x "$f" ] || { echo "cluster_bench: no $f (cmake --build $BUILD --target raftkv mc_load)" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "cluster_bench: curl is required" >&2; exit 2; }

DIR=$(mktemp -d "$SCRATCH/raftkv-cluster-bench.XXXXXX")
pids=()
cleanup() {
  # Only the processes this script started, by pid.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mc_port() { echo $((BASE_PORT + $1)); }
cs_port() { echo $((BASE_PORT + 10 + $1)); }
http_port() { echo $((BASE_PORT + 20 + $1)); }
peer_port() { echo $((BASE_PORT + 30 + $1)); }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# data dirs on $(df -T "$SCRATCH" | awk 'NR==2 {print $2}') ($SCRATCH)"
probe="$DIR/fsync-probe"
secs=$(dd if=/dev/zero of="$probe" bs=4k count=200 oflag=dsync 2>&1 | tail -1 | awk -F', ' '{print $3}' | cut -d' ' -f1)
rm -f "$probe"
echo "# raw disk: 200 x (4 KiB write + fdatasync) in ${secs} s => $(awk -v s="$secs" 'BEGIN {printf "%.0f", 200 / s}') syncs/s"

# ---------------------------------------------------------------------------- raftkv
for i in 1 2 3; do
  mkdir -p "$DIR/node$i"
  {
    printf '[node]\nid = %d\ndata_dir = "%s"\n\n' "$i" "$DIR/node$i/data"
    printf '[listen]\nmemcached = "127.0.0.1:%d"\ncs733 = "127.0.0.1:%d"\nhttp = "127.0.0.1:%d"\npeer = "127.0.0.1:%d"\n' \
      "$(mc_port $i)" "$(cs_port $i)" "$(http_port $i)" "$(peer_port $i)"
    for j in 1 2 3; do
      printf '\n[[cluster.member]]\nid = %d\npeer = "127.0.0.1:%d"\nmemcached = "127.0.0.1:%d"\ncs733 = "127.0.0.1:%d"\nhttp = "127.0.0.1:%d"\n' \
        "$j" "$(peer_port $j)" "$(mc_port $j)" "$(cs_port $j)" "$(http_port $j)"
    done
    printf '\n[raft]\nfsync = %s\n' "$FSYNC"
  } >"$DIR/node$i/raftkv.toml"
  "$RAFTKV" serve --config "$DIR/node$i/raftkv.toml" 2>"$DIR/node$i/raftkv.log" &
  pids+=($!)
done

leader=0
for _ in $(seq 1 300); do
  leader=$(curl -s --max-time 1 "http://127.0.0.1:$(http_port 1)/v1/status" |
           grep -o '"leader_id":[0-9]*' | cut -d: -f2 || true)
  leader=${leader:-0}
  [ "$leader" != 0 ] && curl -sf --max-time 1 "http://127.0.0.1:$(http_port "$leader")/readyz" >/dev/null && break
  leader=0
  sleep 0.1
done
[ "$leader" != 0 ] || { echo "cluster_bench: no leader after 30 s" >&2; tail -n 20 "$DIR"/node*/raftkv.log >&2; exit 1; }
follower=$(( leader % 3 + 1 ))
echo "# raftkv 3 nodes, fsync=$FSYNC, leader is node $leader (memcached 127.0.0.1:$(mc_port "$leader"))"

metric() {  # metric <node> <name>: the value of an unlabelled sample
  curl -s --max-time 2 "http://127.0.0.1:$(http_port "$1")/metrics" | awk -v n="$2" '$1 == n {print $2}'
}
leader_mc="127.0.0.1:$(mc_port "$leader")"
all_mc="127.0.0.1:$(mc_port 1),127.0.0.1:$(mc_port 2),127.0.0.1:$(mc_port 3)"
run() {  # run <label> <mc_load args...>
  local label=$1; shift
  printf '%-34s ' "$label"
  "$MC_LOAD" --seconds "$RUN_SECONDS" --value-bytes "$VALUE_BYTES" --keys "$KEYS" "$@"
}

run "set, leader, 1 conn:" --servers "$leader_mc" --connections 1 --op set

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
fs0=$(metric "$leader" raftkv_fsync_duration_seconds_count); ix0=$(metric "$leader" raftkv_last_log_index)
fsum0=$(metric "$leader" raftkv_fsync_duration_seconds_sum)
ffs0=$(metric "$follower" raftkv_fsync_duration_seconds_count)
lcpu0=$(cpu_ticks "${pids[$((leader - 1))]}"); fcpu0=$(cpu_ticks "${pids[$((follower - 1))]}")
t0=$(date +%s.%N)
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
  perf record -F 499 -g -o "$SCRATCH/raftkv-leader.perf.data" -p "${pids[$((leader - 1))]}" -- sleep $((RUN_SECONDS + 1)) 2>/dev/null &
  perf_pid=$!
fi
run "set, leader, $CONNS conns:" --servers "$leader_mc" --connections "$CONNS" --op set
t1=$(date +%s.%N)
fs1=$(metric "$leader" raftkv_fsync_duration_seconds_count); ix1=$(metric "$leader" raftkv_last_log_index)
fsum1=$(metric "$leader" raftkv_fsync_duration_seconds_sum)
ffs1=$(metric "$follower" raftkv_fsync_duration_seconds_count)
lcpu1=$(cpu_ticks "${pids[$((leader - 1))]}"); fcpu1=$(cpu_ticks "${pids[$((follower - 1))]}")
# "fsyncs" are LMDB commits (raftkv_fsync_duration_seconds counts mdb_txn_commit calls).
awk -v a="$fs0" -v b="$fs1" -v c="$ix0" -v d="$ix1" -v e="$ffs0" -v f="$ffs1" -v t="$t0" -v u="$t1" \
    -v g="$fsum0" -v h="$fsum1" -v lc="$((lcpu1 - lcpu0))" -v fc="$((fcpu1 - fcpu0))" -v hz="$(getconf CLK_TCK)" 'BEGIN {
  s = u - t; n = d - c
  printf "#   during that run: %.0f log entries/s, leader %.0f commits/s (%.1f entries per commit, mean commit %.2f ms, writer busy %.0f%%), follower %.0f commits/s\n",
    n / s, (b - a) / s, (b > a) ? n / (b - a) : 0, (b > a) ? 1000 * (h - g) / (b - a) : 0, 100 * (h - g) / s, (f - e) / s
  printf "#   CPU: leader %.0f%% of a core (%.0f us per entry), follower %.0f%% (%.0f us per entry)\n",
    100 * lc / hz / s, n ? 1e6 * lc / hz / n : 0, 100 * fc / hz / s, n ? 1e6 * fc / hz / n : 0 }'
if [ -n "${perf_pid:-}" ]; then
  wait "$perf_pid" || true
  echo "#   perf profile of the leader: perf report -i $SCRATCH/raftkv-leader.perf.data"
fi

run "set, all 3 nodes, $CONNS conns:" --servers "$all_mc" --connections "$CONNS" --op set
run "get, leader, 1 conn:" --servers "$leader_mc" --connections 1 --op get --preload
run "get, leader, $CONNS conns:" --servers "$leader_mc" --connections "$CONNS" --op get
run "get, all 3 nodes, $CONNS conns:" --servers "$all_mc" --connections "$CONNS" --op get
run "90% get / 10% set, $CONNS conns:" --servers "$leader_mc" --connections "$CONNS" --op mixed --get-percent 90

if [ "$WITH_HTTP" = 1 ]; then
  if command -v wrk >/dev/null; then
    RUN_SECONDS=$RUN_SECONDS CONNS=$CONNS VALUE_BYTES=$VALUE_BYTES KEYS=$KEYS \
      bench/http_bench.sh raftkv "http://127.0.0.1:$(http_port "$leader")"
  else
    echo "# wrk not installed: HTTP runs skipped"
  fi
fi
cleanup
DIR=$(mktemp -d "$SCRATCH/raftkv-cluster-bench.XXXXXX")

# ---------------------------------------------------------------------------- etcd
if [ "$WITH_ETCD" = 1 ]; then
  if ! command -v etcd >/dev/null || ! command -v wrk >/dev/null; then
    echo "# etcd or wrk not installed: comparison skipped"
    exit 0
  fi
  ec_port() { echo $((BASE_PORT + 40 + $1)); }
  ep_port() { echo $((BASE_PORT + 50 + $1)); }
  initial=""
  for i in 1 2 3; do initial="${initial:+$initial,}e$i=http://127.0.0.1:$(ep_port $i)"; done
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$DIR/etcd$i" \
      --listen-client-urls "http://127.0.0.1:$(ec_port $i)" --advertise-client-urls "http://127.0.0.1:$(ec_port $i)" \
      --listen-peer-urls "http://127.0.0.1:$(ep_port $i)" --initial-advertise-peer-urls "http://127.0.0.1:$(ep_port $i)" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token raftkv-bench \
      --log-level error >"$DIR/etcd$i.log" 2>&1 &
    pids+=($!)
  done
  eps="127.0.0.1:$(ec_port 1),127.0.0.1:$(ec_port 2),127.0.0.1:$(ec_port 3)"
  ok=0
  for _ in $(seq 1 300); do
    if ETCDCTL_API=3 etcdctl --endpoints "$eps" endpoint status >/dev/null 2>&1 &&
       ETCDCTL_API=3 etcdctl --endpoints "$eps" put bench-probe x >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [ "$ok" = 1 ] || { echo "cluster_bench: etcd cluster did not come up" >&2; tail -n 20 "$DIR"/etcd*.log >&2; exit 1; }
  # The leader's client URL: etcdctl's table has IS LEADER in column 5 of its simple output.
  eleader=$(ETCDCTL_API=3 etcdctl --endpoints "$eps" endpoint status -w simple | awk -F', ' '$5 == "true" {print $1}')
  echo "# etcd $(etcd --version | awk 'NR==1 {print $3}') 3 nodes (fsync always), leader $eleader"
  RUN_SECONDS=$RUN_SECONDS CONNS=$CONNS VALUE_BYTES=$VALUE_BYTES KEYS=$KEYS \
    bench/http_bench.sh etcd "http://$eleader"
fi
