// The memcached door (SPEC §3): one coroutine per connection reads bytes, parses every
// complete request (clients may pipeline), executes them in order through the kv_service,
// and writes the replies back in order, batched into as few writes as possible.
//
// Writes go through service.write() (a follower forwards them: memcached clients never see
// a redirect); get/gets wait for service.read_barrier() and then read the local store, so
// reads are linearizable; gat/gats are one replicated get_and_touch per key.
//
// Service failures become one line each (the client should retry or check):
//   timeout     → SERVER_ERROR timeout, outcome unknown
//   no_leader   → SERVER_ERROR no leader
//   not_leader  → SERVER_ERROR not leader
//   stopped     → SERVER_ERROR shutting down
//   unavailable → SERVER_ERROR unavailable (storage failed; see the node's status)
// For get/gets/gat/gats that line replaces END (VALUE lines already produced by gat stay).
//
// Usage from app/ (same shape as net::http_server):
//   net::memcached_server mc(io, service, {.version = RAFTKV_VERSION});
//   mc.listen(host, port);  // throws boost::system::system_error
//   mc.start();
//   ...
//   mc.stop();
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "net/listener.h"

namespace boost::asio {
class io_context;
}

namespace net {

class kv_service;

struct memcached_options {
  // The project version; `version` answers "VERSION 1.6.18-raftkv-<version>" (clients
  // that sniff the version need the "1.6." prefix).
  std::string version = "unknown";
  // Process start, for `stats uptime`.
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // Command-line bounds (see net/memcached/parser.h); key/value bounds come from the
  // service's request_limits().
  std::size_t max_line_bytes = 2048;
  std::size_t max_get_line_bytes = 65536;
};

// Serves one connection until the client quits or disconnects, or the socket is closed.
boost::asio::awaitable<void> run_memcached_session(boost::asio::ip::tcp::socket& socket,
                                                   kv_service& service,
                                                   const memcached_options& options);

class memcached_server {
 public:
  memcached_server(boost::asio::io_context& io, kv_service& service,
                   memcached_options options = {});
  void listen(const std::string& host, std::uint16_t port) { listener_.listen(host, port); }
  std::uint16_t port() const { return listener_.port(); }
  void start() { listener_.start(); }
  void stop() { listener_.stop(); }

 private:
  std::shared_ptr<const memcached_options> options_;
  listener listener_;
};

}  // namespace net
