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
