// The connection loop shared by the two text doors (memcached, CS733): read into a retained
// input buffer, parse every complete request with the door's pure parser, run them, and
// write the replies back in request order. What differs between the doors — how bytes
// become a request and what a request does — is a text_protocol.
//
// Pipelining (SPEC §3 "Pipelining", §7 "Overload"). Everything that has arrived is parsed
// at once, and every request that needs the service starts at once: a client that streams a
// thousand `set`s has a thousand writes in flight together, which the replica proposes as
// one batch, instead of one commit per command. A request runs either as its own coroutine
// on the connection's executor (`call`: anything that may suspend more than once, e.g. a
// multi-get that spills) or as a callback that the service answers (`start`: the plain
// writes a streaming client sends, one-key gets, CS733 requests on the leader), which
// costs one callback instead of a chain of coroutine frames. The loop keeps one slot per
// request in a FIFO; a slot is filled when its request completes, and a writer coroutine
// sends the filled slots at the head of the FIFO, in order, as one gathered write. So:
//
//  - Replies come back in request order, whatever order the requests complete in; errors
//    (CLIENT_ERROR, a bad data chunk, a refused oversize value) keep their place because
//    they are slots too. A request with no reply (`noreply`) holds a slot and writes
//    nothing.
//  - Ordering inside a connection: a request that observes the store (access::read) starts
//    only once every earlier write of the connection has completed, and a write only once
//    every earlier read has completed. A read therefore sees the connection's own earlier
//    writes (its barrier is taken after their indexes are applied), and a read is not
//    overtaken by a later write of the same connection — what a client of a sequential
//    server would see. Writes do not wait for one another: they are proposed in request
//    order and the log keeps that order.
//  - Bounds: at most max_requests slots and max_bytes (request bytes plus reply bytes not yet
//    written) per connection. When either is reached the loop stops parsing and reading, so
//    a client that streams requests without reading its replies is slowed by TCP
//    backpressure, not buffered without limit. A reply that grows large while it is being
//    produced (a multi-get of big values) is written out in pieces once its slot reaches the
//    head of the FIFO (reply_sink::spill), so one request cannot hold an unbounded reply.
//  - A close (quit, an over-long line) stops reading; the replies of everything before it
//    are still written, then the connection ends.
//  - The session returns only after every request it started has finished (its coroutines
//    reference the protocol and the service) and the writer has stopped. If the peer goes
//    away, requests still run to completion (a write cannot be taken back) and their
//    replies are dropped.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace net {

struct text_connection;

// Where a request writes its reply while it runs.
class reply_sink {
 public:
  // The reply so far; append to it.
  std::string& text();
  // When the reply has grown past spill_bytes, waits until this request is at the head of
  // the connection's FIFO and hands what it has so far to the writer. Returns false once the
  // connection is broken (the rest of the reply will not be sent either).
  boost::asio::awaitable<bool> spill();

  static constexpr std::size_t spill_bytes = 64 * 1024;

  reply_sink(text_connection& c, std::uint64_t seq) : c_(c), seq_(seq) {}

 private:
  text_connection& c_;
  std::uint64_t seq_;
};

// A request's place in the connection's FIFO, for a request that completes through a
// callback (text_step::kind::start) rather than as a coroutine. Copyable; the first
// finish() fills the slot with its reply and wakes the writer, later ones do nothing.
class reply_handle {
 public:
  void finish(std::string reply);

  reply_handle(std::shared_ptr<text_connection> c, std::uint64_t seq)
      : c_(std::move(c)), seq_(seq) {}

 private:
  std::shared_ptr<text_connection> c_;
  std::uint64_t seq_;
};

// How a request relates to the store, for the ordering rules above.
enum class access : std::uint8_t {
  write,  // changes the store (goes through the log)
  read,   // looks at the store or at counters that writes change
};

// What the protocol made of the bytes at the front of the input.
struct text_step {
  enum class kind : std::uint8_t {
    need_more,  // no complete request yet
    reply,      // answer `reply` at once (may be empty)
    call,       // run `call`; its reply is what it appends to the sink
    start,      // call `start` once the ordering rules allow; it (or a callback it arranges)
                // calls finish() on the handle exactly once. No coroutine frame: the
                // streamed writes of a pipelining client take this way
    close,      // answer `reply`, then end the connection
  };
  kind what = kind::need_more;
  std::size_t consumed = 0;  // bytes to drop from the front of the input
  std::size_t discard = 0;   // then this many more stream bytes to drop as they arrive
  std::string reply;
  access order = access::read;
  std::function<boost::asio::awaitable<void>(reply_sink&)> call;
  std::function<void(reply_handle)> start;
};

// The door-specific part of a text connection.
class text_protocol {
 public:
  virtual ~text_protocol() = default;
  // Parses the first request of `input` (a pure parse; running it is the step's call).
  virtual text_step parse(std::string_view input) = 0;
  // The reply for a call that failed with an exception (logged by the loop).
  virtual std::string internal_error_reply() const = 0;
  // Byte counters (memcached `stats`).
  virtual void count_bytes_read(std::size_t) {}
  virtual void count_bytes_written(std::size_t) {}
};

struct pipeline_limits {
  std::size_t max_requests = 1024;          // requests parsed and not yet answered
  std::size_t max_bytes = 4 * 1024 * 1024;  // their request bytes + unsent reply bytes
  // A client that streams can hand the parser a quarter of a megabyte at once: a thousand
  // sets, about 8 ms of the event loop. After this many requests the parser lets the loop
  // run whatever else is ready (other connections, peer messages, the replica's turn, which
  // proposes what was parsed so far) before it goes on. On a 1M-item bulk load this took the
  // load from 61,600 to 69,400 items/s (four runs each; bench/README-scale.md). A short tail
  // (less input left than the turn parsed) is parsed in the same turn, so a turn takes at
  // most twice this: a client's round of 100 is then proposed whole, one journal sync.
  int requests_per_turn = 64;
};

// Serves one connection until the client closes it, the protocol says close, or the socket
// fails (e.g. listener::stop()).
boost::asio::awaitable<void> run_text_session(boost::asio::ip::tcp::socket& socket,
                                              text_protocol& protocol, pipeline_limits limits = {});

}  // namespace net
