// The CS733 door (docs/cs733.md) on the shared text connection loop (net/text_session.h): every
// complete request that has arrived is parsed and started at once (pipelined writes commit
// together), replies go back in request order, batched into gathered writes.
//
// Only the leader serves CS733 requests. On another node each request is answered
// `ERR_REDIRECT <host> <port>` with the leader's advertised CS733 address; while no leader
// is known the session waits up to leader_wait (about two election timeouts) for one, then
// redirects or answers ERR_INTERNAL. Writes go through service.write(), reads through
// service.linearizable_read(), so both are linearizable; a read sees the connection's own
// earlier writes.
//
// Replies: set/cas → OK <version>; get → VALUE <numbytes>; getm → VALUE <version>
// <exptime> <numbytes> (seconds left, rounded up; 0 = never); delete → DELETED.
// ERR_VERSION (cas mismatch), ERR_NOT_FOUND, ERR_CMD_ERR (malformed, or value over the
// limit), ERR_INTERNAL (timeout, no leader, storage failure, memory quota). `noreply` on
// set/cas suppresses the OK only: errors and redirects are still sent, since the command
// did not take effect and the client has to know. Over max_connections a new connection
// gets ERR_INTERNAL and is closed.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "net/listener.h"
#include "net/text_session.h"

namespace boost::asio {
class io_context;
}

namespace net {

class kv_service;

struct cs733_options {
  // How long a request waits for a leader to be elected before ERR_INTERNAL.
  std::chrono::milliseconds leader_wait{1000};
  std::size_t max_line_bytes = 1024;
  // Requests in flight per connection (beyond: stop reading; TCP backpressure).
  pipeline_limits pipeline;
};

boost::asio::awaitable<void> run_cs733_session(boost::asio::ip::tcp::socket& socket,
                                               kv_service& service, const cs733_options& options);

// Usage like net::memcached_server / net::http_server.
class cs733_server {
 public:
  cs733_server(boost::asio::io_context& io, kv_service& service, cs733_options options = {});
  void listen(const std::string& host, std::uint16_t port) { listener_.listen(host, port); }
  std::uint16_t port() const { return listener_.port(); }
  void start() { listener_.start(); }
  void stop() { listener_.stop(); }

 private:
  std::shared_ptr<const cs733_options> options_;
  listener listener_;
};

}  // namespace net
