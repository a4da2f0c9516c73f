// The plain types the doors and the node exchange: error codes, member addresses, limits,
// write replies and the node's status. Standard library and kv only (no Asio), so the pure
// protocol code (peer frames, forwarded requests) can use them; the service interface
// itself, which needs coroutines, is in net/service.h.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kv/command.h"
#include "raft/types.h"

namespace net {

// Why a request could not be served. Tells the client what to do next.
enum class service_error : std::uint8_t {
  none = 0,
  not_leader,   // this node is not the leader (CS733: redirect)
  no_leader,    // no leader known: retry later (HTTP 503, memcached SERVER_ERROR)
  timeout,      // not committed within request_timeout_ms: outcome unknown (HTTP 504)
  stopped,      // the node is shutting down
  unavailable,  // storage failed (disk full, fsync error): writes refused
  busy,         // this node has too many writes in flight: retry shortly (HTTP 503). Never
                // sent between peers: it is decided where a write enters (app/node.cc)
};

// Short stable text for logs and error bodies, e.g. "no leader".
std::string_view to_string(service_error e);

// --- Membership changes (SPEC §8) -----------------------------------------------------------

enum class member_change_kind : std::uint8_t { add, promote, remove };

// Why the leader refused a membership change (raft/membership.h change_error, minus the
// ones that are service errors).
enum class member_refusal : std::uint8_t {
  none = 0,
  member_exists,       // 409: the id is already a member
  address_in_use,      // 409: an address is another member's
  change_in_progress,  // 409: an earlier change is not committed yet
  unknown_member,      // 404
  not_learner,         // 409: promote of a voter
  last_voter,          // 409: remove would leave no voter
  not_caught_up,       // 503 + Retry-After: the learner did not catch up in time
  not_ready,           // 503 + Retry-After: a new leader has not committed its first entry,
                       // or leadership is being handed over
  malformed,           // 400
};
std::string_view to_string(member_refusal r);

// Advertised addresses of one cluster member (config [[cluster.member]]).
struct member_address {
  raft::node_id id;
  std::string peer;  // "host:port", may be empty if not configured
  std::string memcached;
  std::string cs733;
  std::string http;
};

// One membership change as a door asks for it.
struct member_change {
  member_change_kind kind = member_change_kind::add;
  member_address member;  // add: the whole new member (id and peer set); else only the id
};

// The outcome: error none and refusal none = committed (status() then shows the new
// configuration); error set = the service's (no_leader, timeout: outcome unknown, ...);
// refusal set = the leader refused it, with `message` saying why.
struct member_change_reply {
  service_error error = service_error::none;
  member_refusal refusal = member_refusal::none;
  std::string message;
  std::uint64_t config_index = 0;  // committed: the configuration entry's index
};

// Size and time bounds every door enforces (config [limits]).
struct limits {
  std::size_t max_connections = 4096;
  std::size_t max_key_bytes = 250;
  std::size_t max_value_bytes = 1048576;
  std::chrono::milliseconds request_timeout{5000};
  // Client writes submitted through this node and not yet answered, node-wide (count and
  // encoded bytes); beyond either a write fails at once with service_error::busy.
  std::size_t max_writes_in_flight = 10000;
  std::size_t max_write_bytes_in_flight = 64u << 20;
};

// Compares two secrets (a token, a password) in time that depends only on their lengths,
// never on where they first differ, so response timing does not reveal a matching prefix.
bool constant_time_equal(std::string_view a, std::string_view b);

struct write_reply {
  service_error error = service_error::none;  // when not none, result is meaningless
  kv::result result;
};

// One member as this node sees it (leader's view of match/next; 0 when unknown).
struct member_status {
  member_address address;
  bool voter = true;  // false: a learner (receives the log, does not vote)
  // Leader only: the member's log is within one append of the commit point (a learner may
  // be promoted). Followers do not know the others' progress and report false.
  bool caught_up = false;
  std::uint64_t match_index = 0;
  std::uint64_t next_index = 0;
  std::int64_t last_contact_ms = -1;  // ms since last message from it; -1 unknown
  // The read lease it announced (raft/core.h, "Read leases"); -1: not heard yet.
  std::int64_t read_lease_ms = -1;
  // Leader: the latest snapshot streamed to this member (state empty: none since start).
  std::string snapshot_state;  // "sending", "done", "failed", "aborted"
  std::uint64_t snapshot_index = 0;
  std::uint64_t snapshot_bytes_acked = 0;
  std::uint64_t snapshot_bytes_total = 0;
  std::uint64_t snapshot_resends = 0;
  std::int64_t snapshot_elapsed_ms = 0;  // since it started (to its end, once ended)
  std::string snapshot_error;            // why it last resent, failed or was aborted
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
  std::uint64_t lease_reads = 0;  // reads answered on this node's lease, as leader
  std::uint64_t proposals_ok = 0;
  std::uint64_t proposals_failed = 0;
  std::string storage_error;  // empty when storage is healthy
  // Snapshot streams this node ended as leader, by result; and one it is receiving.
  std::uint64_t snapshot_transfers_done = 0;
  std::uint64_t snapshot_transfers_failed = 0;
  std::uint64_t snapshot_transfers_aborted = 0;
  std::uint64_t receiving_snapshot_index = 0;  // 0: none
  std::uint64_t receiving_snapshot_bytes = 0;
  std::uint64_t receiving_snapshot_total = 0;
  // Resident memory of the process (/proc/self/status): anonymous (heap: the store), file
  // (mapped files: the LMDB map, binaries) and shared memory. 0 when unknown.
  std::uint64_t rss_anon_bytes = 0;
  std::uint64_t rss_file_bytes = 0;
  std::uint64_t rss_shmem_bytes = 0;
  // The configuration in use (raft/membership.h): the log index of the entry that set it
  // (0: the bootstrap list), and whether that entry is not committed yet (a change in
  // progress). members lists exactly its members.
  std::uint64_t config_index = 0;
  bool change_in_progress = false;
  std::vector<member_status> members;
  // Peer frames and connections refused or dropped, by reason (peer_transport::drops()).
  std::map<std::string, std::uint64_t> peer_drops;
  // Open peer connections by direction ("in", "out") and security ("tls", "plain"); empty
  // without a peer transport.
  std::map<std::pair<std::string, std::string>, std::uint64_t> peer_connections;
};

}  // namespace net
