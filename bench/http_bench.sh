#!/usr/bin/env bash
# HTTP PUT/GET benchmark with wrk (closed loop: each connection has one request outstanding).
#
#   bench/http_bench.sh raftkv http://127.0.0.1:8081     PUT /v1/kv/bench-N, GET /v1/kv/bench-N
#   bench/http_bench.sh etcd   http://127.0.0.1:2379     POST /v3/kv/put, POST /v3/kv/range
#                                                         (etcd's v3 JSON gateway, same shape)
# Point it at the leader (followers forward, which adds a hop). bench/compare.sh calls it
# with a cluster it started itself; it also works against scripts/cluster.sh.
# Environment: RUN_SECONDS (10), CONNS (32), VALUE_BYTES (100), KEYS (10000), THREADS (2),
# PIPELINE (16): the depth of the pipelined PUT run (each wrk connection sends that many PUTs
# back to back, then waits for their answers).
# The PUT run writes keys in sequence (per thread, wrapping at KEYS) so that the GET runs that
# follow find them; raftkv GET misses are reported as non2xx (etcd answers 200 to a miss).
# Each run prints one line: requests/s, latency percentiles in microseconds, errors.
set -euo pipefail
TARGET=${1:?usage: http_bench.sh raftkv|etcd URL}
URL=${2:?usage: http_bench.sh raftkv|etcd URL}
RUN_SECONDS=${RUN_SECONDS:-10}
CONNS=${CONNS:-32}
VALUE_BYTES=${VALUE_BYTES:-100}
KEYS=${KEYS:-10000}
THREADS=${THREADS:-2}
PIPELINE=${PIPELINE:-16}
command -v wrk >/dev/null || { echo "http_bench: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
case "$TARGET" in raftkv | etcd) ;; *) echo "http_bench: target must be raftkv or etcd" >&2; exit 2 ;; esac

LUA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/http-bench.XXXXXX")
trap 'rm -rf "$LUA_DIR"' EXIT

# Shared Lua: thread numbering, key sequence, base64 for etcd's JSON gateway, one-line summary.
cat >"$LUA_DIR/common.lua" <<'LUA'
local counter = 1
local threads = {}
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "reqs=%d secs=%.2f reqs_per_s=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d " ..
    "socket_errors=%d\n",
    summary.requests, secs, summary.requests / secs, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, e.status,
    e.connect + e.read + e.write + e.timeout))
end
LUA

cat >"$LUA_DIR/put.lua" <<LUA
dofile("$LUA_DIR/common.lua")
local keys, nthreads, target = $KEYS, $THREADS, "$TARGET"
local value = string.rep("x", $VALUE_BYTES)
local next_key
function init(args) next_key = id - 1 end
function request()
  local k = "bench-" .. next_key
  next_key = (next_key + nthreads) % keys
  if target == "etcd" then
    return wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" },
      '{"key":"' .. b64(k) .. '","value":"' .. b64(value) .. '"}')
  end
  return wrk.format("PUT", "/v1/kv/" .. k, nil, value)
end
LUA

# The same PUTs, PIPELINE of them per request() (wrk counts each answer).
cat >"$LUA_DIR/put_pipelined.lua" <<LUA
dofile("$LUA_DIR/put.lua")
local one = request
function request()
  local parts = {}
  for i = 1, $PIPELINE do parts[i] = one() end
  return table.concat(parts)
end
LUA

cat >"$LUA_DIR/get.lua" <<LUA
dofile("$LUA_DIR/common.lua")
local keys, target = $KEYS, "$TARGET"
function init(args) math.randomseed(id * 7919) end
function request()
  local k = "bench-" .. math.random(0, keys - 1)
  if target == "etcd" then
    -- A range request is linearizable by default in etcd (a quorum read), as raftkv's GET is.
    return wrk.format("POST", "/v3/kv/range", { ["Content-Type"] = "application/json" },
      '{"key":"' .. b64(k) .. '"}')
  end
  return wrk.format("GET", "/v1/kv/" .. k)
end
LUA

bench() {  # bench <label> <lua> <conns> <threads>
  printf '%-34s ' "$1"
  wrk -t "$4" -c "$3" -d "${RUN_SECONDS}s" --timeout 10s -s "$2" "$URL" | tail -n 1
}

# Run the PUT at full concurrency first: it writes every key that the GETs will ask for.
bench "$TARGET http PUT, $CONNS conns:" "$LUA_DIR/put.lua" "$CONNS" "$THREADS"
bench "$TARGET http PUT, 1 conn:" "$LUA_DIR/put.lua" 1 1
bench "$TARGET http PUT, 1 conn, pipelined $PIPELINE:" "$LUA_DIR/put_pipelined.lua" 1 1
bench "$TARGET http GET, $CONNS conns:" "$LUA_DIR/get.lua" "$CONNS" "$THREADS"
bench "$TARGET http GET, 1 conn:" "$LUA_DIR/get.lua" 1 1
