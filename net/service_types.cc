#include "net/service_types.h"

#include <algorithm>

namespace net {

std::string_view to_string(service_error e) {
  switch (e) {
    case service_error::none:
      return "ok";
    case service_error::not_leader:
      return "not leader";
    case service_error::no_leader:
      return "no leader";
    case service_error::timeout:
      return "timeout, outcome unknown";
    case service_error::stopped:
      return "stopped";
    case service_error::unavailable:
      return "storage unavailable";
    case service_error::busy:
      return "busy, try again";
  }
  return "unknown";
}

std::string_view to_string(member_refusal r) {
  switch (r) {
    case member_refusal::none:
      return "ok";
    case member_refusal::member_exists:
      return "id already in use";
    case member_refusal::address_in_use:
      return "address already in use by another member";
    case member_refusal::change_in_progress:
      return "another membership change is in progress";
    case member_refusal::unknown_member:
      return "no such member";
    case member_refusal::not_learner:
      return "not a learner";
    case member_refusal::last_voter:
      return "would leave no voter";
    case member_refusal::not_caught_up:
      return "the learner has not caught up with the leader's log";
    case member_refusal::not_ready:
      return "the leader is not ready for a membership change yet";
    case member_refusal::malformed:
      return "malformed membership change";
  }
  return "unknown";
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Every byte of the longer input is looked at; the difference is accumulated without a
  // branch, and volatile keeps the compiler from turning the loop into an early exit.
  const std::size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace net
