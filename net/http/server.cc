// Beast sessions for the HTTP door. One coroutine per connection on the node's io_context:
// wait for the first byte (idle timeout), read one request under a deadline that covers its
// header and body (so a slow client cannot hold the session), route it through
// net/http/api.h, submit through the kv_service, write the answer (write deadline), repeat.
// Requests on one connection are handled one at a time, so pipelined requests are answered
// in order: Beast keeps the bytes of the next request in the buffer.
#include "net/http/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <set>

#include "kv/store.h"
#include "net/http/api.h"
#include "base/log.h"
#include "net/metrics.h"
#include "net/service.h"
#include "net/http/status_page.h"

namespace net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct http_server::state {
  state(asio::io_context& io_, kv_service& service_, http_options options_)
      : io(io_), service(service_), options(std::move(options_)), acceptor(io_) {}

  asio::io_context& io;
  kv_service& service;
  http_options options;
  tcp::acceptor acceptor;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::set<beast::tcp_stream*> sessions;  // open sessions, closed by stop()
  bool stopped = false;
  // False once the http_server is destroyed: the service may be gone too, while session
  // frames can still be destroyed later (with the io_context).
  bool alive = true;
};

namespace {

std::uint64_t open_connections(const metrics& m) {
  std::uint64_t total = 0;
  for (std::size_t d = 0; d < door_count; ++d) total += m.current_connections(static_cast<door>(d));
  return total;
}

http::response<http::string_body> to_beast(http_response&& r, unsigned version, bool keep_alive,
                                           bool head) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "raftkv");
  if (!r.content_type.empty()) res.set(http::field::content_type, r.content_type);
  for (auto& [name, value] : r.headers) res.insert(name, value);
  res.body() = std::move(r.body);
  res.keep_alive(keep_alive && !r.close);
  res.prepare_payload();
  // A 304 has no body by definition; a Content-Length there would have to be the 200's.
  if (r.status == 304) res.erase(http::field::content_length);
  // HEAD: the same headers (Content-Length included) and no body.
  if (head) res.body().clear();
  return res;
}

// The peer went away or timed out (nothing to answer), as opposed to a malformed request.
bool connection_gone(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == beast::error::timeout ||
         ec == http::error::partial_message ||
         ec.category() == asio::error::get_system_category() ||
         ec.category() == asio::error::get_misc_category();
}

bool counts_as_ok(unsigned status) {
  // 404 and 412 are ordinary answers of a KV API (a miss, a lost CAS), not failures.
  return status < 400 || status == 404 || status == 412;
}

asio::awaitable<http_response> execute(http_server::state& st, route& r) {
  kv_service& svc = st.service;
  if (auto* resp = std::get_if<http_response>(&r)) co_return std::move(*resp);

  if (auto* get = std::get_if<route_kv_get>(&r)) {
    const service_error e = co_await svc.read_barrier();
    if (e != service_error::none) co_return error_response(map_error(e));
    auto& reads = svc.metrics().reads();
    ++reads.cmd_get;
    const auto item = svc.store().find(get->key, svc.now_ms());
    if (!item) {
      ++reads.get_misses;
      co_return error_response(map_error(kv::status::not_found));
    }
    ++reads.get_hits;
    if (get->not_modified(item->version)) co_return not_modified_response(item->version);
    co_return item_response(get->key, *item, get->meta);
  }

  if (auto* put = std::get_if<route_kv_put>(&r)) {
    const write_reply reply = co_await svc.write(to_command(*put));
    if (reply.error != service_error::none) co_return error_response(map_error(reply.error));
    if (reply.result.code == kv::status::stored) co_return stored_response(reply.result.version);
    co_return error_response(map_error(reply.result.code));
  }

  if (auto* del = std::get_if<route_kv_delete>(&r)) {
    const write_reply reply = co_await svc.write(to_command(*del));
    if (reply.error != service_error::none) co_return error_response(map_error(reply.error));
    if (reply.result.code == kv::status::deleted) co_return deleted_response();
    co_return error_response(map_error(reply.result.code));
  }

  if (auto* list = std::get_if<route_kv_list>(&r)) {
    const service_error e = co_await svc.read_barrier();
    if (e != service_error::none) co_return error_response(map_error(e));
    // One more than asked for tells whether there is a next page.
    co_return list_response(
        svc.store().list(list->prefix, list->after, list->limit + 1, svc.now_ms()), list->limit);
  }

  if (std::holds_alternative<route_status>(r)) {
    const auto& stats = svc.store().stats();
    status_extra extra;
    extra.items = stats.curr_items;
    extra.bytes = stats.bytes;
    extra.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::steady_clock::now() - st.started)
                         .count();
    extra.version = st.options.version;
    extra.now_ms = svc.now_ms();
    co_return status_response(svc.status(), extra);
  }

  if (std::holds_alternative<route_page>(r)) {
    http_response resp;
    resp.content_type = "text/html; charset=utf-8";
    resp.body = std::string(status_page_html());
    resp.headers.emplace_back("Cache-Control", "no-store");
    co_return resp;
  }

  if (std::holds_alternative<route_metrics>(r)) {
    http_response resp;
    resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp.body = svc.metrics().render_prometheus(svc.status(), svc.store().stats());
    co_return resp;
  }

  if (std::holds_alternative<route_healthz>(r)) {
    http_response resp;
    resp.body = "{\"status\":\"ok\"}\n";
    co_return resp;
  }

  if (std::holds_alternative<route_readyz>(r)) {
    // Ready = knows a leader, has applied everything it knows committed, storage healthy.
    const node_status s = svc.status();
    if (s.leader_id == 0) {
      auto resp = error_response(503, "not_ready", "no leader known");
      resp.headers.emplace_back("Retry-After", "1");
      co_return resp;
    }
    if (s.applied_index < s.commit_index) {
      auto resp = error_response(503, "not_ready", "applying committed entries");
      resp.headers.emplace_back("Retry-After", "1");
      co_return resp;
    }
    if (!s.storage_error.empty()) {
      auto resp = error_response(503, "not_ready", "storage error: " + s.storage_error);
      co_return resp;
    }
    json::object o;
    o["status"] = "ready";
    o["leader_id"] = s.leader_id;
    o["applied_index"] = s.applied_index;
    http_response resp;
    resp.body = json_text(o);
    co_return resp;
  }

  if (auto* transfer = std::get_if<route_transfer_leadership>(&r)) {
    const node_status s = svc.status();
    bool known = false;
    for (const auto& m : s.members) known = known || m.address.id == transfer->to;
    if (!known) co_return error_response(400, "bad_request", "to is not a member of the cluster");
    const service_error e = co_await svc.transfer_leadership(transfer->to);
    if (e != service_error::none) co_return error_response(map_error(e));
    json::object o;
    o["ok"] = true;
    o["to"] = transfer->to.value;
    const auto leader = svc.leader();
    o["leader_id"] = leader ? leader->id.value : 0;
    http_response resp;
    resp.body = json_text(o);
    co_return resp;
  }

  if (std::holds_alternative<route_snapshot>(r)) {
    const service_error e = co_await svc.take_snapshot();
    if (e != service_error::none) co_return error_response(map_error(e));
    json::object o;
    o["ok"] = true;
    o["snapshot_index"] = svc.status().snapshot_index;
    http_response resp;
    resp.body = json_text(o);
    co_return resp;
  }

  static_assert(std::variant_size_v<route> == 12, "execute() must handle every route");
  co_return error_response(500, "internal", "unhandled route");
}

// What is read and thrown away after an answer that ends a connection whose request was not
// read completely (a header too large, a malformed message).
constexpr std::uint64_t max_discard_bytes = 1 << 20;

// Writes a response that ends the connection, then drains (bounded) what the client is
// still sending, so that closing does not reset the connection before it reads the answer.
asio::awaitable<void> answer_and_close(http_server::state& st, beast::tcp_stream& stream,
                                       http_response resp, std::uint64_t drain_bytes) {
  resp.close = true;
  auto res = to_beast(std::move(resp), 11, false, false);
  stream.expires_after(st.options.write_timeout);
  auto [ec, n] = co_await http::async_write(stream, res, use_tuple);
  (void)n;
  if (ec) co_return;
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  constexpr std::uint64_t max_drain_bytes = 64ull << 20;
  drain_bytes = std::min(drain_bytes, max_drain_bytes);
  std::array<char, 16384> sink;
  stream.expires_after(st.options.read_timeout);
  while (drain_bytes > 0) {
    auto [rec, got] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
    if (rec) break;
    drain_bytes -= std::min<std::uint64_t>(drain_bytes, got);
  }
}

asio::awaitable<void> run_session(std::shared_ptr<http_server::state> st, tcp::socket socket) {
  metrics& m = st->service.metrics();
  beast::tcp_stream stream(std::move(socket));
  m.connection_opened(door::http);
  st->sessions.insert(&stream);
  struct on_exit {
    http_server::state& st;
    beast::tcp_stream& stream;
    ~on_exit() {
      st.sessions.erase(&stream);
      if (st.alive) st.service.metrics().connection_closed(door::http);
    }
  } guard{*st, stream};

  const limits& lim = st->service.request_limits();
  beast::flat_buffer buffer;
  try {
    while (!st->stopped) {
      // Idle between requests: wait for the first byte of the next one.
      if (buffer.size() == 0) {
        stream.expires_after(st->options.idle_timeout);
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_tuple);
        if (ec) break;
        buffer.commit(n);
      }
      // From here the whole request must arrive within read_timeout.
      stream.expires_after(st->options.read_timeout);
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(st->options.max_header_bytes));
      // The body limit is applied after the header, so that a Content-Length over it gets
      // a 413 (and its body drained) rather than a parse error.
      parser.body_limit(boost::none);
      {
        auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
        (void)n;
        if (ec == http::error::header_limit) {
          co_await answer_and_close(*st, stream,
                                    error_response(431, "header_too_large",
                                                   "request header fields too large"),
                                    max_discard_bytes);
          break;
        }
        if (ec && connection_gone(ec)) break;
        if (ec) {
          co_await answer_and_close(*st, stream, error_response(400, "bad_request", ec.message()),
                                    max_discard_bytes);
          break;
        }
      }
      auto& header = parser.get();
      const auto content_length = parser.content_length();
      if (content_length && *content_length > lim.max_value_bytes) {
        co_await answer_and_close(
            *st, stream, error_response(413, "too_large", "value larger than max_value_bytes"),
            *content_length);
        break;
      }
      parser.body_limit(lim.max_value_bytes);
      if (!parser.is_done()) {
        if (beast::iequals(header[http::field::expect], "100-continue")) {
          http::response<http::empty_body> cont{http::status::continue_, header.version()};
          stream.expires_after(st->options.write_timeout);
          auto [ec, n] = co_await http::async_write(stream, cont, use_tuple);
          (void)n;
          if (ec) break;
          stream.expires_after(st->options.read_timeout);
        }
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        (void)n;
        if (ec == http::error::body_limit) {
          co_await answer_and_close(
              *st, stream, error_response(413, "too_large", "value larger than max_value_bytes"),
              max_discard_bytes);
          break;
        }
        if (ec && connection_gone(ec)) break;
        if (ec) {
          co_await answer_and_close(*st, stream, error_response(400, "bad_request", ec.message()),
                                    max_discard_bytes);
          break;
        }
      }

      const auto started = std::chrono::steady_clock::now();
      auto req = parser.release();
      const bool keep_alive = req.keep_alive();
      const unsigned version = req.version();
      const bool head = req.method() == http::verb::head;
      http_request request;
      request.method = std::string(req.method_string());
      if (head) request.method = "HEAD";
      request.target = std::string(req.target());
      if (auto it = req.find(http::field::if_match); it != req.end())
        request.if_match = std::string(it->value());
      if (auto it = req.find(http::field::if_none_match); it != req.end())
        request.if_none_match = std::string(it->value());
      request.has_body = req.has_content_length() || req.chunked();
      request.body = std::move(req.body());

      route r = parse_route(std::move(request), lim);
      const std::string_view name = metrics_name(r, req.method_string());
      http_response resp;
      try {
        resp = co_await execute(*st, r);
      } catch (const std::exception& e) {
        base::log(base::log_level::error, "http: request failed: ", e.what());
        resp = error_response(500, "internal", "internal error");
      }
      m.observe_request(door::http, name, counts_as_ok(resp.status),
                        std::chrono::steady_clock::now() - started);

      auto res = to_beast(std::move(resp), version, keep_alive && !st->stopped, head);
      const bool close = res.need_eof();
      stream.expires_after(st->options.write_timeout);
      auto [ec, n] = co_await http::async_write(stream, res, use_tuple);
      (void)n;
      if (ec || close) break;
    }
  } catch (const std::exception& e) {
    base::log(base::log_level::warn, "http: session ended: ", e.what());
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
}

// Beyond max_connections: accept, answer 503 and close at once (SPEC §7).
asio::awaitable<void> refuse(std::shared_ptr<http_server::state> st, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  auto resp = error_response(503, "too_many_connections", "too many open connections");
  resp.headers.emplace_back("Retry-After", "1");
  co_await answer_and_close(*st, stream, std::move(resp), 0);
  stream.close();
}

asio::awaitable<void> accept_loop(std::shared_ptr<http_server::state> st) {
  while (!st->stopped) {
    auto [ec, socket] = co_await st->acceptor.async_accept(use_tuple);
    if (st->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of file descriptors and the like: back off briefly instead of spinning.
      base::log(base::log_level::warn, "http: accept failed: ", ec.message());
      asio::steady_timer backoff(st->io, std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const auto max = st->service.request_limits().max_connections;
    if (open_connections(st->service.metrics()) >= max) {
      asio::co_spawn(st->io, refuse(st, std::move(socket)), asio::detached);
      continue;
    }
    asio::co_spawn(st->io, run_session(st, std::move(socket)), asio::detached);
  }
}

}  // namespace

http_server::http_server(asio::io_context& io, kv_service& service, http_options options)
    : state_(std::make_shared<state>(io, service, std::move(options))) {}

http_server::~http_server() {
  stop();
  state_->alive = false;
}

void http_server::listen(const std::string& host, std::uint16_t port) {
  const tcp::endpoint endpoint(asio::ip::make_address(host), port);
  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(asio::socket_base::max_listen_connections);
}

std::uint16_t http_server::port() const {
  beast::error_code ec;
  const auto ep = state_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void http_server::start() { asio::co_spawn(state_->io, accept_loop(state_), asio::detached); }

void http_server::stop() {
  if (!state_ || state_->stopped) return;
  state_->stopped = true;
  beast::error_code ignored;
  state_->acceptor.close(ignored);
  // Closing cancels each session's pending read or write; the coroutines then end.
  const auto sessions = state_->sessions;
  for (auto* s : sessions) s->socket().close(ignored);
}

}  // namespace net
