// A test double: a kv_service for a node that is alone and keeps nothing on disk; each write
// is given the next index and applied at once. Tests of the doors use it so that they need
// only the net layer; `raftkv serve` uses the replicated node (app/node.h) for every cluster
// size, including one.
#pragma once

#include <cstdint>

#include "kv/store.h"
#include "net/metrics.h"
#include "net/service.h"

namespace test_support {

class local_service final : public net::kv_service {
 public:
  local_service(net::member_address self, net::limits limits, kv::store_options store_options);

  boost::asio::awaitable<net::write_reply> write(kv::command cmd) override;
  boost::asio::awaitable<read_point> read_barrier() override;
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

 private:
  net::member_address self_;
  net::limits limits_;
  kv::store store_;
  net::metrics metrics_;
  std::uint64_t next_index_ = 1;
};

}  // namespace test_support
