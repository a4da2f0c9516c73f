// The node runtime: one raftkv cluster member on one io_context.
//
// The drive loop itself is raft::replica (raft/replica.h: persist, send, send-after-persist,
// apply, read rounds, forwarding, snapshots); this class is its Asio wiring:
//   - the tick timer and the peer transport (frames in: Raft messages, forwarded writes and
//     their replies; out: through the replica's peer_sender);
//   - the LMDB store behind the replica's log_store (app/lmdb_log_store.h; its writer and
//     snapshot threads post completions back to the io_context);
//   - kv::store behind the replica's state_machine (app/kv_state_machine.h);
//   - net::kv_service for the doors: each write or read barrier becomes a replica call
//     whose callback is the answer (start_write, start_read_barrier; net::kv_service adapts
//     them for coroutines); the replica ends the call at its deadline itself (tick), so no
//     per-request timer. The rarer calls
//     (snapshot, membership change) wait on a steady_timer that the callback cancels;
//   - kv specifics: request ids for at-most-once writes, the leader's expired-item purge;
//   - the data dir's generation and the peers' recorded ones (app/generation.h: a node whose
//     data dir was lost is refused and stops), and the hand-over of leadership before a
//     graceful stop (hand_over_then).
// Everything runs on the io_context thread except the storage writer and snapshot threads.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "app/config.h"
#include "app/generation.h"
#include "kv/store.h"
#include "net/metrics.h"
#include "net/peer/frame.h"
#include "net/peer/tls.h"
#include "net/service.h"
#include "raft/replica.h"

namespace raft::storage {
class lmdb_store;
}
namespace net {
class peer_transport;
}

namespace app {

class kv_state_machine;
class lmdb_log_store;

class node final : public net::kv_service {
 public:
  // Opens and locks data_dir, loads the log and the latest snapshot, restores the store,
  // builds the replica and applies the committed log (recovery). Binds nothing. Returns a
  // one-line reason on failure.
  static std::variant<std::unique_ptr<node>, std::string> open(boost::asio::io_context& io,
                                                               const config& c);
  ~node() override;

  // Starts ticking and, for a multi-node cluster, the peer transport on `peer_acceptor`
  // (already bound, so "port in use" was reported by the caller).
  // peer_tls: set when [tls] is configured; every peer connection is then mutual TLS.
  void start(std::optional<boost::asio::ip::tcp::acceptor> peer_acceptor,
             std::optional<net::peer_tls> peer_tls = std::nullopt);
  // Fails every waiting request with `stopped`, stops ticks and the transport, drains and
  // closes storage. Idempotent.
  void stop();
  // Before a graceful stop: a leader of a multi-node cluster hands leadership to its most
  // up-to-date voter (raft::replica::hand_over) and keeps serving until another node leads
  // or `limit` passed; then `then` runs (at once when there is nothing to hand over). From
  // the call on this node never campaigns.
  void hand_over_then(std::chrono::milliseconds limit, std::function<void()> then);
  // Before a graceful stop, after the hand-over: when at least `min_entries` entries were
  // applied since the last snapshot, takes one (waiting up to `limit`), so that the next
  // start loads it instead of replaying those entries (restart time is mostly replay).
  // Then `then` runs (at once when there is little to replay).
  void snapshot_then(std::uint64_t min_entries, std::chrono::milliseconds limit,
                     std::function<void()> then);
  // Called (posted on the io_context) when the node must not run on: a member refused it
  // because its data dir was lost (app/generation.h). The caller shuts down with exit 1.
  void on_fatal(std::function<void(const std::string& why)> handler) {
    on_fatal_ = std::move(handler);
  }
  // A reload (SIGHUP): peer connections made from now on use these TLS settings (nullopt:
  // none); open ones keep their certificates (net::peer_transport::set_tls). False when the
  // transport refused the change (nothing changed).
  bool reload_peer_tls(std::optional<net::peer_tls> tls);

  // net::kv_service
  void start_write(kv::command cmd, write_done done) override;
  void start_read_barrier(std::function<void(read_point)> done) override;
  boost::asio::awaitable<std::optional<net::member_address>> wait_for_leader(
      std::chrono::milliseconds wait) override;
  std::optional<net::member_address> leader() const override;
  bool is_leader() const override;
  const kv::store& store() const override { return store_; }
  std::int64_t now_ms() const override;
  const net::limits& request_limits() const override { return limits_; }
  net::node_status status() const override;  // app/node_status.cc
  net::metrics& metrics() override { return metrics_; }
  boost::asio::awaitable<net::service_error> transfer_leadership(raft::node_id to) override;
  boost::asio::awaitable<net::service_error> take_snapshot() override;
  boost::asio::awaitable<net::member_change_reply> change_membership(net::member_change c) override;
  boost::asio::awaitable<std::optional<net::node_status>> leader_members_view() override;

 private:
  using clock = std::chrono::steady_clock;
  class peer_link;

  node(boost::asio::io_context& io, const config& c);

  void on_tick();
  void on_frame(raft::node_id from, net::frame_kind kind, std::string payload);
  void on_refused(raft::node_id from, std::string_view payload);
  // A follower asked for this node's view of the members (forward_op::members_view).
  void answer_members_view(raft::node_id from, std::uint64_t call_id);
  void maybe_purge_expired();
  void maybe_propose_limits();
  boost::asio::awaitable<bool> wait_leader_change(clock::time_point deadline);
  void wake_leader_waiters();
  std::optional<net::member_address> address_of(raft::node_id id) const;
  // The replicated configuration changed: the member addresses the doors show and the
  // peers the transport talks to follow it.
  void on_config_change(const raft::membership& m);
  void update_transport_members();

  boost::asio::io_context& io_;
  config config_;
  net::limits limits_;
  // The configuration in use (raft::core::configuration()), as addresses; for a joining
  // node that has none yet, the config file's list.
  std::vector<net::member_address> members_;
  // Members removed from the configuration, kept in the transport until this time so the
  // leader can still tell them (the entry that removes them) and they stop campaigning.
  std::map<raft::node_id, std::pair<std::string, clock::time_point>> leaving_;
  raft::node_id self_;
  std::unique_ptr<raft::storage::lmdb_store> storage_;
  std::unique_ptr<lmdb_log_store> log_store_;
  std::unique_ptr<peer_link> peers_;
  std::unique_ptr<net::peer_transport> transport_;
  kv::store store_;
  std::unique_ptr<kv_state_machine> state_machine_;
  std::unique_ptr<raft::replica> replica_;
  net::metrics metrics_;
  boost::asio::steady_timer tick_timer_;
  clock::time_point started_at_ = clock::now();
  bool stopped_ = false;

  std::vector<std::shared_ptr<boost::asio::steady_timer>> leader_waiters_;
  // A follower's requests for the leader's view of the members (leader_members_view), by
  // call id: on the peer link beside the replica's forwarded writes, with ids it reserved.
  struct members_call;
  std::map<std::uint64_t, std::shared_ptr<members_call>> members_calls_;
  // At-most-once identity of writes that enter through this node.
  std::uint64_t client_id_ = 0;
  std::uint64_t next_seq_ = 1;
  clock::time_point last_purge_check_ = clock::now();
  // This node, as leader, proposed its configured limits and has no answer yet
  // (maybe_propose_limits).
  bool limits_proposal_in_flight_ = false;
  std::uint64_t cluster_id_ = 0;  // app/cluster_id.h
  // The amnesia guard (app/generation.h): this data dir's generation, whether it was made
  // in an empty data dir by this process, and the generations recorded for the others.
  generation::loaded generation_;
  generation::peer_record peer_generations_;
  std::function<void(const std::string&)> on_fatal_;
  bool refused_ = false;  // told by a member that this node lost its data dir
  clock::time_point last_refusal_log_{};
  // Client writes submitted through start_write() and not yet answered, and the bytes of
  // their encoded commands: bounded by limits_.max_writes_in_flight /
  // max_write_bytes_in_flight (beyond: service_error::busy at once, docs/config.md "Limits
  // and overload").
  struct write_load {
    std::size_t count = 0;
    std::size_t bytes = 0;
  };
  write_load write_load_;
};

}  // namespace app
