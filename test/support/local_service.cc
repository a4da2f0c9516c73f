#include "test/support/local_service.h"

#include <algorithm>
#include <chrono>

#include "base/host_port.h"

namespace test_support {

local_service::local_service(net::member_address self, net::limits limits,
                             kv::store_options store_options)
    : self_(std::move(self)), limits_(limits), store_(store_options) {}

std::int64_t local_service::now_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

void local_service::start_write(kv::command cmd, write_done done) {
  cmd.timestamp_ms = now_ms();
  net::write_reply reply;
  reply.result = store_.apply(next_index_++, cmd);
  done(std::move(reply));  // before returning: allowed, and what a refusal does
}

void local_service::start_read_barrier(std::function<void(read_point)> done) {
  done(read_point{net::service_error::none, now_ms()});  // alone: every write is applied
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
  s.config_index = config_index_;
  net::member_status me;
  me.address = self_;
  me.caught_up = true;  // the leader is its own log
  me.match_index = me.next_index = store_.applied_index();
  me.last_contact_ms = 0;
  s.members.push_back(me);
  for (const auto& l : learners_) {
    net::member_status m;
    m.address = l;
    m.voter = false;
    m.next_index = store_.applied_index() + 1;
    s.members.push_back(m);
  }
  return s;
}

net::member_change_reply local_service::check(const net::member_change& c) const {
  using net::member_refusal;
  net::member_change_reply reply;
  const raft::node_id id = c.member.id;
  const auto learner = std::find_if(learners_.begin(), learners_.end(),
                                    [&](const net::member_address& a) { return a.id == id; });
  const bool is_self = id == self_.id;
  const bool known = is_self || learner != learners_.end();
  switch (c.kind) {
    case net::member_change_kind::add: {
      if (id.value == 0 || !base::split_host_port(c.member.peer)) {
        reply.refusal = member_refusal::malformed;
      } else if (known) {
        reply.refusal = member_refusal::member_exists;
      } else {
        // Any address of the new member that an existing member already uses.
        const auto clashes = [&](const net::member_address& a) {
          for (const std::string* mine :
               {&c.member.peer, &c.member.memcached, &c.member.cs733, &c.member.http})
            for (const std::string* theirs : {&a.peer, &a.memcached, &a.cs733, &a.http})
              if (!mine->empty() && *mine == *theirs) return true;
          return false;
        };
        if (clashes(self_) || std::any_of(learners_.begin(), learners_.end(), clashes))
          reply.refusal = member_refusal::address_in_use;
      }
      break;
    }
    case net::member_change_kind::promote:
      if (!known)
        reply.refusal = member_refusal::unknown_member;
      else if (is_self)
        reply.refusal = member_refusal::not_learner;
      else
        reply.refusal = member_refusal::not_caught_up;
      break;
    case net::member_change_kind::remove:
      if (!known)
        reply.refusal = member_refusal::unknown_member;
      else if (is_self)
        reply.refusal = member_refusal::last_voter;
      break;
  }
  return reply;
}

boost::asio::awaitable<net::member_change_reply> local_service::change_membership(
    net::member_change c) {
  net::member_change_reply reply = check(c);
  if (reply.refusal != net::member_refusal::none) co_return reply;
  // Committed at once: the change is the next log entry, which carries nothing for the store.
  config_index_ = next_index_++;
  store_.skip(config_index_);
  reply.config_index = config_index_;
  if (c.kind == net::member_change_kind::add) {
    learners_.push_back(std::move(c.member));
  } else {
    std::erase_if(learners_, [&](const net::member_address& a) { return a.id == c.member.id; });
  }
  co_return reply;
}

boost::asio::awaitable<net::service_error> local_service::transfer_leadership(raft::node_id) {
  co_return net::service_error::not_leader;
}

boost::asio::awaitable<net::service_error> local_service::take_snapshot() {
  co_return net::service_error::none;
}

}  // namespace test_support
