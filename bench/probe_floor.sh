#!/usr/bin/env bash
# The floor of the get goal during a bulk load: bench/scale_bench.sh's get probe
# (bench/scale_tool.py: one `get` round trip on the leader every millisecond) against an
# idle 3-node cluster (no writes), alone and beside 1, 2, 3 busy shell loops. What it prints is the
# round trip the scheduler alone gives when the cores are busy, whatever raftkv does.
#
#   bench/probe_floor.sh [build dir]      (default build/release)
#
# Environment: HOGS_LIST ("0 1 2 3"; the numbers of busy loops, one probe each),
# SECS (8; per probe), BASE_PORT (33400).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
RAFTKV=$BUILD/app/raftkv
[ -x "$RAFTKV" ] || { echo "probe_floor: no $RAFTKV" >&2; exit 2; }
BASE_PORT=${BASE_PORT:-33400}
DIR=$(mktemp -d /var/tmp/probe-floor.XXXXXX)
pids=(); hogs=()
cleanup() {
  for p in "${hogs[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
BENCH=probe_floor
# shellcheck source=bench/cluster_lib.sh
source bench/cluster_lib.sh
for i in 1 2 3; do
  write_node_config "$DIR" "$i" true 1024
  "$RAFTKV" serve --config "$DIR/node$i/raftkv.toml" 2>"$DIR/node$i/log" &
  pids+=($!)
done
L=$(wait_leader)
for h in ${HOGS_LIST:-0 1 2 3}; do
  hogs=()
  for ((k = 0; k < h; k++)); do (while :; do :; done) & hogs+=($!); done
  rm -f "$DIR/stop"
  (sleep "${SECS:-8}"; touch "$DIR/stop") &  # the probe's measuring time, not a synchronisation
  echo "hogs=$h $(python3 bench/scale_tool.py probe "$(mc_port "$L")" "$DIR/stop" | grep '^get_probes')"
  for p in "${hogs[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
done
