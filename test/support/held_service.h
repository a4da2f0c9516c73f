// A test double for the doors' pipelining tests: a kv_service whose writes wait until they
// are released, so a test can see how many of a connection's requests are in flight at once.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kv/store.h"
#include "net/metrics.h"
#include "net/service.h"

namespace test_support {

namespace asio = boost::asio;

// A kv_service whose writes wait until they are released. In `automatic` mode every write
// proposed in one turn of the io_context is released together at the end of the turn (like
// a replica that batches what was proposed between two ready() calls); otherwise the test
// releases them. A released batch is applied in proposal order and its writers are woken
// in reverse order, so requests complete out of order.
class held_service final : public net::kv_service {
 public:
  explicit held_service(asio::io_context& io, bool automatic) : io_(io), automatic_(automatic) {
    self_.id = raft::node_id(1);
    self_.cs733 = "127.0.0.1:1";
  }

  void start_write(kv::command cmd, write_done done) override {
    cmd.timestamp_ms = now_ms();
    events_.push_back("write " + cmd.key);
    // Two keys misbehave, as a service may: one is refused before start_write returns, one
    // throws before its callback is kept anywhere.
    if (cmd.key == "refused") return done(net::write_reply{net::service_error::busy, {}});
    if (cmd.key == "throws") throw std::runtime_error("the service failed");
    held_.push_back(pending{std::move(cmd), std::move(done)});
    max_held_ = std::max(max_held_, held_.size());
    if (automatic_ && !release_posted_) {
      release_posted_ = true;
      asio::post(io_, [this] {
        release_posted_ = false;
        release();
      });
    }
  }

  // Applies every held write in order, then answers them last first.
  void release() {
    auto batch = std::move(held_);
    held_.clear();
    if (!batch.empty()) ++batches_;
    std::vector<net::write_reply> replies(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i)
      replies[i].result = store_.apply(next_index_++, batch[i].cmd);
    for (std::size_t i = batch.size(); i-- > 0;) {
      events_.push_back("done " + batch[i].cmd.key);
      batch[i].done(std::move(replies[i]));
    }
  }

  asio::awaitable<std::optional<net::member_address>> wait_for_leader(
      std::chrono::milliseconds) override {
    co_return self_;
  }
  std::optional<net::member_address> leader() const override { return self_; }
  bool is_leader() const override { return true; }
  const net::limits& request_limits() const override { return limits_; }
  net::node_status status() const override { return {}; }
  net::metrics& metrics() override { return metrics_; }
  asio::awaitable<net::service_error> transfer_leadership(raft::node_id) override {
    co_return net::service_error::not_leader;
  }
  asio::awaitable<net::service_error> take_snapshot() override {
    co_return net::service_error::none;
  }
  asio::awaitable<net::member_change_reply> change_membership(net::member_change) override {
    co_return net::member_change_reply{net::service_error::unavailable, {}, {}, 0};
  }
  asio::awaitable<std::optional<net::node_status>> leader_members_view() override {
    co_return status();
  }

  std::size_t held() const { return held_.size(); }
  std::size_t max_held() const { return max_held_; }
  std::size_t batches() const { return batches_; }
  const std::vector<std::string>& events() const { return events_; }

 protected:
  void start_read_barrier(std::function<void(read_point)> done) override {
    events_.push_back("barrier");
    done(read_point{barrier_error_, now_ms()});
  }

 public:
  void fail_barriers(net::service_error e) { barrier_error_ = e; }

 protected:
  const kv::store& store() const override { return store_; }
  std::int64_t now_ms() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }

 private:
  struct pending {
    kv::command cmd;
    write_done done;
  };

  asio::io_context& io_;
  bool automatic_;
  bool release_posted_ = false;
  net::service_error barrier_error_ = net::service_error::none;
  net::member_address self_;
  net::limits limits_;
  kv::store store_;
  net::metrics metrics_;
  std::uint64_t next_index_ = 1;
  std::vector<pending> held_;
  std::size_t max_held_ = 0;
  std::size_t batches_ = 0;
  std::vector<std::string> events_;
};

}  // namespace test_support
