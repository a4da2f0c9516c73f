#!/usr/bin/env bash
# Installs what is missing, builds raftkv and runs the local 3-node loopback cluster of etc/
# in the foreground (logs to var/nodeN.log). Ctrl-C stops all three cleanly.
#
#   scripts/cluster.sh          plain TCP between peers (etc/node1..3.toml)
#   scripts/cluster.sh --tls    mutual TLS between peers (etc/tls/node1..3.toml): a fresh
#                               throwaway CA and node certificates are made in var/tls/certs
#                               (scripts/make-certs.sh) at every start; data in var/tls/nodeN
set -euo pipefail
cd "$(dirname "$0")/.."
configs=etc
logs=var
case "${1:-}" in
  "") ;;
  --tls) configs=etc/tls logs=var/tls ;;
  *) echo "usage: $0 [--tls]" >&2; exit 2 ;;
esac
scripts/install-deps.sh
scripts/build.sh release
binary=build/release/app/raftkv
mkdir -p "$logs"
if [[ $configs == etc/tls ]]; then
  # Private keys never leave var/ (git-ignored); a new CA each start is fine for a local
  # cluster, since every node reads its files at start-up.
  rm -rf var/tls/certs
  scripts/make-certs.sh var/tls/certs 3
fi
pids=()
stopped=0
stop() {
  trap - INT TERM HUP
  ((stopped)) && return 0
  stopped=1
  echo "raftkv: stopping the cluster" >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
# HUP too: a closed terminal stops the cluster (the nodes themselves take SIGHUP as a
# request to reload their certificates, and would run on).
trap stop INT TERM HUP
for i in 1 2 3; do
  "$binary" serve --config "$configs/node$i.toml" 2>>"$logs/node$i.log" &
  pids+=($!)
done
cat <<MSG
raftkv: 3-node cluster started (pids ${pids[*]}, peers over $([[ $configs == etc/tls ]] && echo "mutual TLS" || echo "plain TCP")); logs in $logs/node1.log .. $logs/node3.log
  memcached: 127.0.0.1:11211 11212 11213    e.g. printf 'set k 0 0 5\r\nhello\r\nget k\r\n' | nc -q1 127.0.0.1 11211
  CS733:     127.0.0.1:9001  9002  9003
  HTTP:      http://127.0.0.1:8081/ (status page), curl -X PUT --data hello http://127.0.0.1:8081/v1/kv/k
Press Ctrl-C to stop.
MSG
status=0
wait -n "${pids[@]}" || status=$?
stop
exit $status
