// The boundary between the doors (memcached, CS733, HTTP) and the node that owns the
// replicated store. Doors parse requests, call this interface, and format replies; they
// never touch Raft directly. The single-node runtime and the replicated cluster runtime
// both implement it, so the doors do not change when replication arrives.
//
// Everything here runs on the one io_context thread; no method is thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kv/command.h"
#include "raft/types.h"

namespace kv {
class store;
}

namespace net {

class metrics;

// Why a request could not be served. Tells the client what to do next.
enum class service_error : std::uint8_t {
  none = 0,
  not_leader,    // this node is not the leader (CS733: redirect)
  no_leader,     // no leader known: retry later (HTTP 503, memcached SERVER_ERROR)
  timeout,       // not committed within request_timeout_ms: outcome unknown (HTTP 504)
  stopped,       // the node is shutting down
  unavailable,   // storage failed (disk full, fsync error): writes refused
};

// Short stable text for logs and error bodies, e.g. "no leader".
std::string_view to_string(service_error e);

// Advertised addresses of one cluster member (config [[cluster.member]]).
struct member_address {
  raft::node_id id;
  std::string peer;       // "host:port", may be empty if not configured
  std::string memcached;
  std::string cs733;
  std::string http;
};

// Size and time bounds every door enforces (config [limits]).
struct limits {
  std::size_t max_connections = 4096;
  std::size_t max_key_bytes = 250;
  std::size_t max_value_bytes = 1048576;
  std::chrono::milliseconds request_timeout{5000};
};

struct write_reply {
  service_error error = service_error::none;  // when not none, result is meaningless
  kv::result result;
};

// One member as this node sees it (leader's view of match/next; 0 when unknown).
struct member_status {
  member_address address;
  bool voter = true;
  std::uint64_t match_index = 0;
  std::uint64_t next_index = 0;
  std::int64_t last_contact_ms = -1;  // ms since last message from it; -1 unknown
};

// A snapshot of this node's state for /v1/status, /metrics, memcached `stats`.
struct node_status {
  std::uint64_t id = 0;
  std::string role;  // "leader", "follower", "candidate", "pre-candidate"
  std::uint64_t term = 0;
  std::uint64_t leader_id = 0;  // 0 = none known
  std::uint64_t commit_index = 0;
  std::uint64_t applied_index = 0;
  std::uint64_t last_log_index = 0;
  std::uint64_t snapshot_index = 0;
  std::uint64_t leader_changes = 0;
  std::uint64_t proposals_ok = 0;
  std::uint64_t proposals_failed = 0;
  std::string storage_error;  // empty when storage is healthy
  std::vector<member_status> members;
};

class kv_service {
 public:
  virtual ~kv_service() = default;

  // Replicates cmd (forwarding it to the leader when this node is a follower) and returns
  // its result once it is committed and applied. Fails with timeout after
  // request_timeout_ms (outcome unknown), no_leader, stopped or unavailable.
  virtual boost::asio::awaitable<write_reply> write(kv::command cmd) = 0;

  // Completes with none once the local store reflects every write acknowledged anywhere
  // before the call (ReadIndex). Reads done right after it are linearizable.
  virtual boost::asio::awaitable<service_error> read_barrier() = 0;

  // Waits up to `wait` for a leader to be known; returns it (possibly this node).
  virtual boost::asio::awaitable<std::optional<member_address>> wait_for_leader(
      std::chrono::milliseconds wait) = 0;

  // The leader as currently known, without waiting.
  virtual std::optional<member_address> leader() const = 0;
  virtual bool is_leader() const = 0;

  // The local replica of the store; read it only right after read_barrier() for
  // linearizable reads.
  virtual const kv::store& store() const = 0;

  // Wall clock in Unix ms used for read-time expiry checks.
  virtual std::int64_t now_ms() const = 0;

  virtual const net::limits& request_limits() const = 0;
  virtual node_status status() const = 0;

  // Per-node request/connection counters and histograms, shared by every door.
  virtual net::metrics& metrics() = 0;

  // Admin actions (HTTP POST /v1/admin/...). Both run on the leader's behalf where needed.
  virtual boost::asio::awaitable<service_error> transfer_leadership(raft::node_id to) = 0;
  virtual boost::asio::awaitable<service_error> take_snapshot() = 0;
};

}  // namespace net
