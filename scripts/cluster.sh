#!/usr/bin/env bash
# Installs what is missing, builds raftkv and runs the local 3-node loopback cluster of etc/
# in the foreground (logs to var/nodeN.log). Ctrl-C stops all three cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
binary=build/release/app/raftkv
mkdir -p var
pids=()
stopped=0
stop() {
  trap - INT TERM
  ((stopped)) && return 0
  stopped=1
  echo "raftkv: stopping the cluster" >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM
for i in 1 2 3; do
  "$binary" serve --config "etc/node$i.toml" 2>>"var/node$i.log" &
  pids+=($!)
done
cat <<MSG
raftkv: 3-node cluster started (pids ${pids[*]}); logs in var/node1.log .. var/node3.log
  memcached: 127.0.0.1:11211 11212 11213    e.g. printf 'set k 0 0 5\r\nhello\r\nget k\r\n' | nc -q1 127.0.0.1 11211
  CS733:     127.0.0.1:9001  9002  9003
  HTTP:      http://127.0.0.1:8081/ (status page), curl -X PUT --data hello http://127.0.0.1:8081/v1/kv/k
Press Ctrl-C to stop.
MSG
status=0
wait -n "${pids[@]}" || status=$?
stop
exit $status
