// A test double: a kv_service for a node that is alone and keeps nothing on disk; each write
// is given the next index and applied at once. Tests of the doors use it so that they need
// only the net layer; `raftkv serve` uses the replicated node (app/node.h) for every cluster
// size, including one.
//
// Membership: the double is the one voter of its configuration and replicates to nobody. It
// checks a change as a leader would and commits it at once (the change takes the next log
// index, as a configuration entry would):
//   add      a new id with addresses no member has -> a learner (which never catches up);
//            a taken id -> member_exists; a taken address -> address_in_use;
//            id 0 or no peer -> malformed
//   promote  the node itself -> not_learner; a learner -> not_caught_up (nothing is ever
//            replicated to it); an unknown id -> unknown_member
//   remove   the node itself -> last_voter; a learner -> removed; unknown -> unknown_member
// So every refusal a door must map, but change_in_progress and not_ready, can be provoked.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/store.h"
#include "net/metrics.h"
#include "net/service.h"

namespace test_support {

class local_service final : public net::kv_service {
 public:
  local_service(net::member_address self, net::limits limits, kv::store_options store_options);

  void start_write(kv::command cmd, write_done done) override;
  void start_read_barrier(std::function<void(read_point)> done) override;
  boost::asio::awaitable<std::optional<net::member_address>> wait_for_leader(
      std::chrono::milliseconds wait) override;
  std::optional<net::member_address> leader() const override { return self_; }
  bool is_leader() const override { return true; }
  const kv::store& store() const override { return store_; }
  std::int64_t now_ms() const override;
  const net::limits& request_limits() const override { return limits_; }
  net::node_status status() const override;
  net::metrics& metrics() override { return metrics_; }
  boost::asio::awaitable<net::service_error> transfer_leadership(raft::node_id to) override;
  boost::asio::awaitable<net::service_error> take_snapshot() override;
  boost::asio::awaitable<net::member_change_reply> change_membership(net::member_change c) override;
  // The one node is the leader: its own view.
  boost::asio::awaitable<std::optional<net::node_status>> leader_members_view() override {
    co_return status();
  }

 private:
  net::member_change_reply check(const net::member_change& c) const;

  net::member_address self_;
  std::vector<net::member_address> learners_;  // added and not removed, in order of adding
  std::uint64_t config_index_ = 0;             // 0: the bootstrap configuration (self only)
  net::limits limits_;
  kv::store store_;
  net::metrics metrics_;
  std::uint64_t next_index_ = 1;
};

}  // namespace test_support
