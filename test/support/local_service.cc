#include "test/support/local_service.h"

#include <chrono>

namespace test_support {

local_service::local_service(net::member_address self, net::limits limits,
                             kv::store_options store_options)
    : self_(std::move(self)), limits_(limits), store_(store_options) {}

std::int64_t local_service::now_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

boost::asio::awaitable<net::write_reply> local_service::write(kv::command cmd) {
  cmd.timestamp_ms = now_ms();
  net::write_reply reply;
  reply.result = store_.apply(next_index_++, cmd);
  co_return reply;
}

boost::asio::awaitable<net::kv_service::read_point> local_service::read_barrier() {
  co_return read_point{net::service_error::none, now_ms()};
}

boost::asio::awaitable<std::optional<net::member_address>> local_service::wait_for_leader(
    std::chrono::milliseconds) {
  co_return self_;
}

net::node_status local_service::status() const {
  net::node_status s;
  s.id = self_.id.value;
  s.role = "leader";
  s.term = 1;
  s.leader_id = self_.id.value;
  s.commit_index = s.applied_index = s.last_log_index = store_.applied_index();
  net::member_status me;
  me.address = self_;
  me.match_index = me.next_index = store_.applied_index();
  me.last_contact_ms = 0;
  s.members.push_back(me);
  return s;
}

boost::asio::awaitable<net::service_error> local_service::transfer_leadership(raft::node_id) {
  co_return net::service_error::not_leader;
}

boost::asio::awaitable<net::service_error> local_service::take_snapshot() {
  co_return net::service_error::none;
}

}  // namespace test_support
