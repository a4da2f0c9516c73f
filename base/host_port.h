// "host:port" and "[v6]:port" addresses: the one parser behind the config file, the peer
// transport and the CS733 redirects.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace base {

struct host_port {
  std::string host;    // without the brackets of an IPv6 literal
  std::string port;    // the text after the last colon
  std::uint16_t number = 0;  // the port as a number, 1..65535
};

// nullopt unless there is a non-empty host, a colon and a port 1..65535 in decimal.
std::optional<host_port> split_host_port(std::string_view address);

}  // namespace base
