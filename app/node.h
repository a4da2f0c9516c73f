// The node runtime: one raftkv cluster member on one io_context.
//
// It owns the Raft core, the LMDB storage, the peer transport and the kv state machine, and
// implements net::kv_service for the doors. Everything runs on the io_context thread except
// the storage writer (raft/storage) and snapshot file writes, whose completions are posted
// back here.
//
// The drive loop (raft/README.md): every event (peer frame, tick, proposal, read, persisted
// notice, snapshot done) calls the core and then schedule_ready(), which processes the core's
// output batches in the one fixed order of raft::ready:
//   1. persist (received snapshot, truncation, entries, hard state) as storage batches;
//   2. send `messages` now;
//   3. send `messages_after_persist` from the storage callback of that batch;
//   4. apply `committed` to the kv store and complete the proposals waiting on them;
//   5. hand read indexes to the reads waiting on them.
//
// Writes on a follower are forwarded to the leader over the peer transport (frame kind
// forward_request) and relayed back; each carries a request id so that a retry after a
// leader change applies at most once (kv::store deduplicates).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "app/config.h"
#include "kv/store.h"
#include "net/metrics.h"
#include "net/peer/frame.h"
#include "net/service.h"
#include "raft/core.h"

namespace raft::storage {
class lmdb_store;
}
namespace net {
class peer_transport;
}

namespace app {

class node final : public net::kv_service {
 public:
  // Opens and locks data_dir, loads the log and the latest snapshot, rebuilds the store and
  // builds the core. Binds nothing. Returns a one-line reason on failure.
  static std::variant<std::unique_ptr<node>, std::string> open(boost::asio::io_context& io,
                                                                const config& c);
  ~node() override;

  // Starts ticking and, for a multi-node cluster, the peer transport on `peer_acceptor`
  // (already bound, so "port in use" was reported by the caller).
  void start(std::optional<boost::asio::ip::tcp::acceptor> peer_acceptor);
  // Fails every waiting request with `stopped`, stops ticks and the transport, drains and
  // closes storage. Idempotent.
  void stop();

  // net::kv_service
  boost::asio::awaitable<net::write_reply> write(kv::command cmd) override;
  boost::asio::awaitable<net::service_error> read_barrier() override;
  boost::asio::awaitable<std::optional<net::member_address>> wait_for_leader(
      std::chrono::milliseconds wait) override;
  std::optional<net::member_address> leader() const override;
  bool is_leader() const override;
  const kv::store& store() const override { return store_; }
  std::int64_t now_ms() const override;
  const net::limits& request_limits() const override { return limits_; }
  net::node_status status() const override;
  net::metrics& metrics() override { return metrics_; }
  boost::asio::awaitable<net::service_error> transfer_leadership(raft::node_id to) override;
  boost::asio::awaitable<net::service_error> take_snapshot() override;

 private:
  using clock = std::chrono::steady_clock;

  // A request waiting for something the drive loop will deliver: the timer doubles as the
  // deadline and as the wake-up (cancelled when the answer arrives).
  struct write_waiter {
    explicit write_waiter(boost::asio::io_context& io) : timer(io) {}
    raft::term_t term;      // proposals: the term the entry was appended in
    raft::node_id target;   // forwards: the leader the request was sent to
    std::optional<net::write_reply> reply;
    boost::asio::steady_timer timer;
  };
  struct read_waiter {
    explicit read_waiter(boost::asio::io_context& io) : timer(io) {}
    std::optional<raft::index_t> read_index;  // set when its round is confirmed
    bool dropped = false;                     // its round failed: retry or give up
    bool done = false;                        // applied >= read_index (or stopped)
    bool stopped = false;
    boost::asio::steady_timer timer;
  };
  // One ReadIndex quorum round; every read queued while the previous round was in flight
  // shares the next one (thesis §6.4 batching).
  struct read_round {
    std::uint64_t context = 0;
    clock::time_point started;
    std::vector<std::shared_ptr<read_waiter>> waiters;
  };

  node(boost::asio::io_context& io, const config& c);

  // The drive loop.
  void schedule_ready();
  void process_ready();
  void persist(raft::ready& rd);
  void send(const std::vector<raft::message>& messages);
  void apply(const std::vector<raft::entry>& committed);
  void on_persisted(bool had_log_write, raft::index_t index, raft::term_t term,
                    std::vector<raft::message> after_persist);
  void on_storage_error(const std::string& why);
  void note_role_changes();
  void on_tick();
  void wake_leader_waiters();

  // Frames from peers.
  void on_frame(raft::node_id from, net::frame_kind kind, std::string payload);
  boost::asio::awaitable<void> serve_forwarded(raft::node_id from, net::forward_request req);

  // Writes.
  boost::asio::awaitable<net::write_reply> propose_here(kv::command cmd,
                                                        clock::time_point deadline);
  boost::asio::awaitable<net::write_reply> forward_to(raft::node_id leader,
                                                      const net::forward_request& req,
                                                      clock::time_point deadline);
  boost::asio::awaitable<bool> wait_leader_change(clock::time_point deadline);

  // Reads.
  void start_read_round();
  void finish_read_round(std::uint64_t context, std::optional<raft::index_t> index);
  void wake_applied_reads();

  // Snapshots and housekeeping.
  void maybe_snapshot(bool forced);
  void on_snapshot_written(raft::snapshot_meta meta, std::shared_ptr<const std::string> data,
                           std::string error);
  void maybe_purge_expired();

  std::optional<net::member_address> address_of(raft::node_id id) const;

  boost::asio::io_context& io_;
  config config_;
  net::limits limits_;
  std::vector<net::member_address> members_;
  raft::node_id self_;
  std::unique_ptr<raft::storage::lmdb_store> storage_;
  std::unique_ptr<raft::core> core_;
  std::unique_ptr<net::peer_transport> transport_;
  kv::store store_;
  net::metrics metrics_;
  boost::asio::steady_timer tick_timer_;
  clock::time_point started_at_ = clock::now();
  bool stopped_ = false;
  bool ready_scheduled_ = false;

  // Storage bookkeeping.
  std::string storage_error_;             // empty while healthy
  raft::index_t stored_snapshot_index_;   // snapshot index recorded in LMDB (as submitted)
  std::size_t storage_batches_in_flight_ = 0;

  // Role tracking for logs, leader waiters and metrics.
  raft::role last_role_ = raft::role::follower;
  raft::term_t last_term_;
  raft::node_id last_leader_;
  std::uint64_t leader_changes_ = 0;
  std::uint64_t proposals_ok_ = 0;
  std::uint64_t proposals_failed_ = 0;
  std::vector<std::shared_ptr<boost::asio::steady_timer>> leader_waiters_;

  // Writes proposed here, by log index.
  std::map<raft::index_t, std::shared_ptr<write_waiter>> proposals_;
  // Writes forwarded to the leader, by call id.
  std::uint64_t next_call_id_ = 1;
  std::map<std::uint64_t, std::shared_ptr<write_waiter>> forwards_;
  // At-most-once identity of writes that enter through this node.
  std::uint64_t client_id_ = 0;
  std::uint64_t next_seq_ = 1;

  // ReadIndex rounds.
  std::uint64_t next_read_context_ = 1;
  std::optional<read_round> read_round_;                    // in flight
  std::vector<std::shared_ptr<read_waiter>> next_round_;   // queued for the next round
  std::multimap<raft::index_t, std::shared_ptr<read_waiter>> reads_waiting_apply_;

  // Snapshots.
  bool snapshot_in_progress_ = false;
  std::thread snapshot_thread_;  // writes one snapshot file at a time
  std::uint64_t last_snapshot_index_ = 0;
  std::vector<std::shared_ptr<boost::asio::steady_timer>> snapshot_waiters_;
  clock::time_point last_purge_check_ = clock::now();
};

}  // namespace app
