// The memcached door (docs/memcached.md): the memcached protocol on the shared text connection loop
// (net/text_session.h): every complete request that has arrived is parsed and started at
// once (pipelined writes are in flight together and commit as a batch), and the replies
// go back in request order, batched into gathered writes.
//
// Writes go through service.write() (a follower forwards them: memcached clients never see
// a redirect); get/gets read through service.linearizable_read(), so reads are
// linearizable and see the connection's own earlier writes; gat/gats are one replicated
// get_and_touch per key. stats and stats reset are ordered like reads.
//
// Meta commands: ms, md, ma are one replicated write each (ms -> set/add/replace/append/
// prepend/cas, md -> meta_delete, ma -> meta_arith). mg is a linearizable read, unless it
// must change the item (T new TTL, N vivify, R recache, or the first read of a stale item
// that wins its recache token): then it is one replicated meta_get, so the token is won
// exactly once cluster-wide. h, l and `me`'s la/fetch describe this node's own access
// history (memcached_node_state). cache_memlimit proposes a set_limits entry.
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
#include <utility>
#include <vector>

#include "net/listener.h"
#include "net/text_session.h"

namespace boost::asio {
class io_context;
}

namespace net {

class kv_service;

// What the memcached door of one node remembers across its connections: the per-node
// access history that mg's h/l flags and `me` report, the counters that are this node's own
// (store_too_large, store_no_memory, cmd_meta), and the baseline that `stats reset` takes of
// the replicated counters. Defined in session.cc; one per memcached_server.
struct memcached_node_state;

struct memcached_options {
  // The project version; `version` answers "VERSION 1.6.18-raftkv-<version>" (clients
  // that sniff the version need the "1.6." prefix).
  std::string version = "unknown";
  // Process start, for `stats uptime`.
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // Command-line bounds (see net/memcached/parser.h); key/value bounds come from the
  // service's request_limits().
  std::size_t max_line_bytes = 2048;
  std::size_t max_get_line_bytes = 1 << 20;
  // Requests in flight per connection (beyond: stop reading; TCP backpressure).
  pipeline_limits pipeline;
  // [memcached] auth_file: (user, password) pairs. Not empty: every connection must
  // authenticate first (net/memcached/auth.h).
  std::vector<std::pair<std::string, std::string>> auth_users;
};

// Serves one connection until the client quits or disconnects, or the socket is closed.
// Without a node state (tests) the connection gets one of its own.
boost::asio::awaitable<void> run_memcached_session(
    boost::asio::ip::tcp::socket& socket, kv_service& service, const memcached_options& options,
    std::shared_ptr<memcached_node_state> state = nullptr);

class memcached_server {
 public:
  memcached_server(boost::asio::io_context& io, kv_service& service,
                   memcached_options options = {});
  void listen(const std::string& host, std::uint16_t port) { listener_.listen(host, port); }
  std::uint16_t port() const { return listener_.port(); }
  void start() { listener_.start(); }
  void stop() { listener_.stop(); }
  // A reload (SIGHUP): connections accepted from now on authenticate against `users`
  // (empty: no authentication); open ones keep the credentials they started with.
  void set_auth_users(std::vector<std::pair<std::string, std::string>> users);

 private:
  // The options new connections get; each connection holds the ones it started with.
  std::shared_ptr<std::shared_ptr<const memcached_options>> options_;
  std::shared_ptr<memcached_node_state> state_;
  listener listener_;
};

}  // namespace net
