#include "net/service.h"

namespace net {

std::string_view to_string(service_error e) {
  switch (e) {
    case service_error::none: return "ok";
    case service_error::not_leader: return "not leader";
    case service_error::no_leader: return "no leader";
    case service_error::timeout: return "timeout, outcome unknown";
    case service_error::stopped: return "stopped";
    case service_error::unavailable: return "storage unavailable";
  }
  return "unknown";
}

}  // namespace net
