// The TCP accept loop shared by every client door (memcached, CS733, HTTP).
//
// It binds, accepts, and runs one coroutine per connection on the io_context. It enforces
// max_connections the way memcached does: a connection over the limit is still accepted,
// given the door's refusal text (if any) and closed, so the client learns why instead of
// hanging in the kernel's backlog; existing connections are unaffected. A failing accept
// (out of descriptors) backs off briefly instead of spinning.
// stop() closes the acceptor and every open connection, which makes each session's
// pending read or write fail so its coroutine ends.
//
// Usage:
//   net::listener l(io, {.which = net::door::memcached, .max_connections = 4096,
//                        .refusal = "SERVER_ERROR too many open connections\r\n"},
//                   &service.metrics(), [&](tcp::socket& s) { return run_session(s); });
//   l.listen("127.0.0.1", 11211);   // throws boost::system::system_error
//   l.start();
//   ...
//   l.stop();
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "net/metrics.h"

namespace boost::asio {
class io_context;
}

namespace net {

struct listener_options {
  door which = door::memcached;  // for connection metrics and log lines
  std::size_t max_connections = 4096;
  std::string refusal;  // sent to a connection over the limit; may be empty
                        // (HTTP: a whole 503 response)
};

class listener {
 public:
  // Runs one connection to its end. The socket stays owned by the listener (so stop() can
  // close it) and lives until the returned coroutine completes.
  using handler = std::function<boost::asio::awaitable<void>(boost::asio::ip::tcp::socket&)>;

  // metrics may be null (then nothing is counted).
  listener(boost::asio::io_context& io, listener_options options, net::metrics* metrics,
           handler on_connection);
  ~listener();
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  // Binds (SO_REUSEADDR) and listens. Throws boost::system::system_error on failure.
  void listen(const std::string& host, std::uint16_t port);
  // The bound port (useful after listening on port 0).
  std::uint16_t port() const;
  // Spawns the accept loop. Call after listen().
  void start();
  // Stops accepting and closes every open connection. Idempotent.
  void stop();
  // Connections currently open (refused ones are never counted).
  std::size_t connections() const;

  struct state;

 private:
  std::shared_ptr<state> state_;
};

// The input side of a text-protocol connection: bytes read and not yet parsed.
// Reads wait for readability before allocating, so a connection that never sent anything
// holds no buffer: thousands of idle clients cost only their socket and coroutine frame. A
// connection in use keeps a buffer of up to retained_bytes between requests (no allocation
// per request); anything larger is released as soon as it has been parsed.
class input_buffer {
 public:
  static constexpr std::size_t retained_bytes = 16 * 1024;

  // Unparsed bytes.
  std::string_view view() const { return std::string_view(data_).substr(pos_); }
  std::size_t size() const { return data_.size() - pos_; }
  // Drops n bytes (n <= size()) from the front.
  void consume(std::size_t n);
  // Drops the next n bytes, also those not read yet (the data block of a refused request:
  // memcached reads and discards it). While bytes remain to be dropped, skipping() is true
  // and view() holds nothing to parse.
  void skip(std::size_t n);
  bool skipping() const { return skip_ > 0; }
  // Waits until the socket is readable, then reads what is there (at most max_read
  // bytes). Returns the number of bytes added; 0 means end of stream or an error.
  boost::asio::awaitable<std::size_t> read_some(boost::asio::ip::tcp::socket& socket,
                                                std::size_t max_read = 256 * 1024);

 private:
  // Reads what else is waiting in the socket without blocking (at most max_read bytes),
  // after a read that filled the buffer's room. Returns the number of bytes added.
  std::size_t drain(boost::asio::ip::tcp::socket& socket, std::size_t max_read);

  std::string data_;
  std::size_t pos_ = 0;   // bytes of data_ already consumed
  std::size_t skip_ = 0;  // bytes still to drop as they arrive
};

// Writes all of `out` and clears it (releasing a large buffer). Returns false on error.
boost::asio::awaitable<bool> write_all(boost::asio::ip::tcp::socket& socket, std::string& out);

}  // namespace net
