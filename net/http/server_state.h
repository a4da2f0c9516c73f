// Inside the HTTP door (not for use outside net/http): the state its sessions share, and the
// execution of a routed request against the kv_service. server.cc holds the connection
// loop (deadlines, pipelining, writing answers); execute.cc turns one request into its
// answer.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <utility>

#include "net/http/api.h"
#include "net/http/server.h"

namespace net {

class listener;
class kv_service;

struct http_server::state {
  state(boost::asio::io_context& io_, kv_service& service_, http_options options_)
      : io(io_), service(service_), options(std::move(options_)) {}

  boost::asio::io_context& io;
  kv_service& service;
  http_options options;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::unique_ptr<listener> connections;  // set right after construction
  bool stopped = false;
};

// Runs a routed request (every route of net/http/api.h) and returns its answer. Never throws
// for a refusal of the service (those are answers); an exception is a bug the caller logs.
boost::asio::awaitable<http_response> execute(http_server::state& st, route& r);

}  // namespace net
