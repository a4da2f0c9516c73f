# shellcheck shell=bash
# Shared by the benchmark scripts that run a local 3-node cluster (sourced, not run).
# The caller sets BENCH (its name, for messages) and either BASE_PORT, from which node i's
# doors get the ports below, or its own mc_port, cs_port, http_port and peer_port
# (node id -> port), defined before this file is sourced.
declare -F mc_port >/dev/null || mc_port() { echo $((BASE_PORT + $1)); }
declare -F cs_port >/dev/null || cs_port() { echo $((BASE_PORT + 10 + $1)); }
declare -F http_port >/dev/null || http_port() { echo $((BASE_PORT + 20 + $1)); }
declare -F peer_port >/dev/null || peer_port() { echo $((BASE_PORT + 30 + $1)); }

# The id of the node that reports itself leader in /v1/status, or nothing.
leader() {
  for i in 1 2 3; do
    if curl -fsS "http://127.0.0.1:$(http_port "$i")/v1/status" 2>/dev/null | grep -q '"role":"leader"'; then
      echo "$i"; return
    fi
  done
}

# Prints the leader's id once there is one; exits 1 after 60 s without.
wait_leader() {
  local deadline=$((SECONDS + 60)) l=""
  while [ -z "$l" ]; do
    [ $SECONDS -lt $deadline ] || { echo "$BENCH: no leader" >&2; exit 1; }
    sleep 0.05
    l=$(leader)
  done
  echo "$l"
}

# write_node_config DIR ID FSYNC MAX_MEMORY_MB: DIR/nodeID/raftkv.toml of a 3-node loopback
# cluster (every door on, data in DIR/nodeID/data). RAFT_EXTRA (environment): more lines for
# the [raft] table, e.g. RAFT_EXTRA="snapshot_entries = 100000".
write_node_config() {
  local dir=$1 i=$2 fsync=$3 memory_mb=$4 j
  mkdir -p "$dir/node$i"
  {
    printf '[node]\nid = %d\ndata_dir = "%s"\n\n' "$i" "$dir/node$i/data"
    printf '[listen]\nmemcached = "127.0.0.1:%d"\ncs733 = "127.0.0.1:%d"\nhttp = "127.0.0.1:%d"\npeer = "127.0.0.1:%d"\n' \
      "$(mc_port "$i")" "$(cs_port "$i")" "$(http_port "$i")" "$(peer_port "$i")"
    for j in 1 2 3; do
      printf '\n[[cluster.member]]\nid = %d\npeer = "127.0.0.1:%d"\nmemcached = "127.0.0.1:%d"\ncs733 = "127.0.0.1:%d"\nhttp = "127.0.0.1:%d"\n' \
        "$j" "$(peer_port "$j")" "$(mc_port "$j")" "$(cs_port "$j")" "$(http_port "$j")"
    done
    printf '\n[raft]\nfsync = %s\n%s\n[limits]\nmax_memory_mb = %d\n' "$fsync" "${RAFT_EXTRA:-}" "$memory_mb"
  } >"$dir/node$i/raftkv.toml"
}
