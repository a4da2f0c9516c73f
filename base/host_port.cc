#include "base/host_port.h"

#include <charconv>

namespace base {

std::optional<host_port> split_host_port(std::string_view address) {
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == address.size()) {
    return std::nullopt;
  }
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return std::nullopt;
  const std::string_view port = address.substr(colon + 1);
  unsigned number = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (ec != std::errc{} || ptr != port.data() + port.size() || number == 0 || number > 65535) {
    return std::nullopt;
  }
  return host_port{std::string(host), std::string(port), static_cast<std::uint16_t>(number)};
}

}  // namespace base
