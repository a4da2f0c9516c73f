#!/usr/bin/env bash
# A/B of the HTTP door between two raftkv binaries: for each round and each binary, a fresh
# 3-node loopback cluster (fsync on) and bench/http_bench.sh against its leader (PUT at 32
# connections, PUT on 1 connection, PUT pipelined on 1 connection, GET at 32 and at 1).
# The two binaries alternate, so a machine that changes speed affects both alike.
#
#   bench/ab_http.sh A/raftkv B/raftkv        (ROUNDS (2), RUN_SECONDS (5), BASE_PORT (32800))
#
# Needs wrk and curl. Prints `== round N A|B` and http_bench.sh's lines.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?usage: ab_http.sh A/raftkv B/raftkv}
B=${2:?usage: ab_http.sh A/raftkv B/raftkv}
ROUNDS=${ROUNDS:-2}
BASE_PORT=${BASE_PORT:-32800}
BENCH=ab_http
source bench/cluster_lib.sh
DIR=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  [ -n "$DIR" ] && rm -rf "$DIR"
  DIR=""
}
trap cleanup EXIT
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# A = $A"
echo "# B = $B"
for r in $(seq 1 "$ROUNDS"); do
  for v in A B; do
    bin=$A
    [ "$v" = B ] && bin=$B
    DIR=$(mktemp -d /var/tmp/raftkv-ab-http.XXXXXX)
    for i in 1 2 3; do write_node_config "$DIR" "$i" true 4096; done
    for i in 1 2 3; do "$bin" serve --config "$DIR/node$i/raftkv.toml" 2>"$DIR/node$i/log" & pids+=($!); done
    leader=$(wait_leader)
    echo "== round $r $v"
    RUN_SECONDS=${RUN_SECONDS:-5} bench/http_bench.sh raftkv "http://127.0.0.1:$(http_port "$leader")"
    cleanup
  done
done
