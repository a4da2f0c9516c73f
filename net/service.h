// The boundary between the doors (memcached, CS733, HTTP) and the node that owns the
// replicated store. Doors parse requests, call this interface, and format replies; they
// never touch Raft directly. The replicated node (app/node.h) implements it for every
// cluster size; tests use a single-process double (test/support/local_service.h).
//
// Reads are linearizable by construction: the only way a door can look at the store is
// linearizable_read(), which passes the ReadIndex barrier first and hands back a read_view
// (the store plus the "now" that judges expiry) only when the barrier held. The pieces it
// is built from — start_read_barrier(), store(), now_ms() — are what an implementation provides,
// and they are not public here, so no door can read the store without the barrier (or
// forget to judge expiry by the right clock). Counters and limits for status pages, which
// promise nothing about recency, have their own accessors.
//
// Everything here runs on the one io_context thread; no method is thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kv/command.h"
#include "net/service_types.h"
#include "raft/types.h"

namespace kv {
class store;
struct store_stats;
struct key_info;
}  // namespace kv

namespace net {

class metrics;

// The store as a linearizable read may see it. Obtained only from
// kv_service::linearizable_read(); valid until the caller next suspends (applies may change
// the store in between; a read that suspends and looks again sees a later state, which is
// still linearizable, but the view must not be kept across the node's shutdown).
class read_view {
 public:
  // none when the barrier held; otherwise why not (and the view holds nothing).
  service_error error() const { return error_; }
  bool ok() const { return error_ == service_error::none; }

  // The live item under key, judged by now_ms(); nullopt when absent or expired.
  // Only when ok().
  std::optional<kv::item_view> find(std::string_view key) const;
  // After find() found nothing: was the item expired, flushed or absent? Only when ok().
  kv::miss_kind why_missing(std::string_view key) const;
  // Live keys that start with prefix and sort after `after`, at most limit. Only when ok().
  std::vector<kv::key_info> list(std::string_view prefix, std::string_view after,
                                 std::size_t limit) const;
  // The wall clock (Unix ms) that decides what has expired for this read.
  std::int64_t now_ms() const { return now_ms_; }

 private:
  friend class kv_service;
  read_view(service_error e, const kv::store* s, std::int64_t now_ms)
      : error_(e), store_(s), now_ms_(now_ms) {}

  service_error error_;
  const kv::store* store_;  // null unless ok()
  std::int64_t now_ms_;
};

class kv_service {
 public:
  virtual ~kv_service() = default;

  // Replicates cmd (forwarding it to the leader when this node is a follower) and returns
  // its result once it is committed and applied. Fails with timeout after
  // request_timeout_ms (outcome unknown), no_leader, stopped, unavailable or busy.
  // A coroutine's view of start_write(); it resumes from a posted handler, never inside the
  // node's drive loop.
  boost::asio::awaitable<write_reply> write(kv::command cmd);

  // The same write for a caller that is not a coroutine: `done` is called exactly once with
  // the reply, on the io_context thread. It may be called before start_write returns (an
  // immediate refusal) or from inside the node's drive loop (as the write is applied), so it
  // must only record the reply and return, never call back into the service. A door that
  // streams writes uses this: one callback per write instead of a chain of coroutine frames
  // (bench/README-profile.md).
  using write_done = std::function<void(write_reply)>;
  virtual void start_write(kv::command cmd, write_done done) = 0;

  // Waits for the ReadIndex barrier (every write acknowledged anywhere before the call is
  // in the local store), then returns a view of the local store. Reads made through the
  // view are linearizable. Fails with the barrier's error (no_leader, timeout, stopped).
  boost::asio::awaitable<read_view> linearizable_read();

  // The same read for a caller that is not a coroutine: `done` is called exactly once with
  // the view, which is valid only during the call. The same rules as write_done: it may
  // run before this returns or inside the node's drive loop, and must not call back into
  // the service.
  using read_done = std::function<void(const read_view&)>;
  void start_linearizable_read(read_done done);

  // Waits up to `wait` for a leader to be known; returns it (possibly this node).
  virtual boost::asio::awaitable<std::optional<member_address>> wait_for_leader(
      std::chrono::milliseconds wait) = 0;

  // The leader as currently known, without waiting.
  virtual std::optional<member_address> leader() const = 0;
  virtual bool is_leader() const = 0;

  // Counters and limits of the local replica, for `stats`, /metrics and /v1/status. Not a
  // read of the data: they may lag the cluster.
  const kv::store_stats& store_stats() const;
  const kv::store_options& store_options() const;
  // This node's wall clock in Unix ms, for status output (`stats time`, /v1/status).
  std::int64_t wall_ms() const { return now_ms(); }

  virtual const net::limits& request_limits() const = 0;
  virtual node_status status() const = 0;

  // Per-node request/connection counters and histograms, shared by every door.
  virtual net::metrics& metrics() = 0;

  // Admin actions (HTTP POST /v1/admin/...). Both run on the leader's behalf where needed.
  virtual boost::asio::awaitable<service_error> transfer_leadership(raft::node_id to) = 0;
  virtual boost::asio::awaitable<service_error> take_snapshot() = 0;

  // Membership (SPEC §8): one change, made by the leader (forwarded from a follower), answered
  // once committed or refused. A promotion waits up to request_timeout_ms for the learner to
  // catch up (then refusal not_caught_up). The current configuration is in status().
  virtual boost::asio::awaitable<member_change_reply> change_membership(member_change c) = 0;
  // The configuration as the leader sees it, with each member's progress (GET /v1/members):
  // the leader's own status(); on a follower, asked of the leader over the peer link and
  // waited for up to request_timeout_ms. nullopt when no leader is known, this node has no
  // peer link, or the leader did not answer in time (the caller then shows status()).
  virtual boost::asio::awaitable<std::optional<node_status>> leader_members_view() = 0;

 protected:
  // What an implementation provides for linearizable_read(). Callers outside this class
  // go through linearizable_read(), so the barrier cannot be skipped.

  // What the barrier established: error none once the local store reflects every write
  // acknowledged anywhere before the call (ReadIndex), and the wall clock (Unix ms) that
  // judges expiry for the read: the leader's (the ReadIndex answer carries it), never
  // earlier than the last stamp applied here — so a node whose own clock is hours off
  // answers exactly as the leader would (docs/semantics.md, "Time and expiry").
  struct read_point {
    service_error error = service_error::none;
    std::int64_t now_ms = 0;
  };
  // Calls `done` once the barrier held or failed, with the rules of write_done.
  virtual void start_read_barrier(std::function<void(read_point)> done) = 0;
  // The local replica of the store.
  virtual const kv::store& store() const = 0;
  // Wall clock in Unix ms used for read-time expiry checks.
  virtual std::int64_t now_ms() const = 0;
};

}  // namespace net
