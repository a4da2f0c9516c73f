// Beast sessions for the HTTP door; what each request does is in execute.cc. Connections
// come from the common accept loop (net/listener.h: connection limit with a 503 refusal,
// accept-error backoff, stop). One coroutine per connection on the node's io_context: wait
// for the first byte (idle timeout), read one request under a deadline that covers its
// header and body (so a slow client cannot hold the session), route it through
// net/http/api.h, run it (execute.cc), write the answer (write deadline; its bytes are made
// by net/http/wire.h, not by Beast's serializer), repeat.
//
// HTTP/1.1 pipelining. A client may send requests without waiting for answers; they are
// answered in request order (RFC 9112 §9.3.2). Every complete request already in the
// connection's buffer is started before any answer is written, so pipelined PUTs are in
// flight together and the replica commits them as one batch, as on the text doors
// (net/text_session.h). The rules:
//  - Ordering inside a connection, as on the text doors: a read (GET of a key, a listing)
//    starts only once every earlier write of the connection completed, so it sees them; a
//    write (PUT, DELETE) starts only once every earlier read completed. Reads next to each
//    other run together, as do writes (the log keeps their order). Any other request
//    (status, admin, membership) runs alone, after everything before it.
//  - When the buffer holds no complete request, the session waits for every started
//    request, writes their answers in order, and only then reads from the socket again. So
//    the socket is never read and written at once, the deadlines stay those of a serial
//    session, and a client that sends without reading is held back by TCP, not buffered.
//  - At most max_pipelined requests (and max_pipelined_bytes of bodies) wait for their
//    answers at once; beyond that the session answers what it has before it parses on.
//  - A request that ends the connection (an error answer, `Connection: close`) is answered
//    after every earlier one.
//  - A lone request (nothing buffered behind it, nothing in flight) runs inline, exactly
//    as a serial session would, without a coroutine of its own.
//
// Deadlines: the socket belongs to the listener (so that stop() can close it), so the
// session cannot use beast::tcp_stream's timer; socket_deadline cancels the socket's
// pending operation when it expires instead, which ends the session the same way.
#include "net/http/server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <memory>

#include "base/log.h"
#include "net/http/api.h"
#include "net/http/server_state.h"
#include "net/http/wire.h"
#include "net/listener.h"
#include "net/metrics.h"
#include "net/service.h"

namespace net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

// Cancels a socket's pending operation when the deadline passes (see the top of the file).
// Each expires_after() replaces the previous deadline; clear() removes it.
class socket_deadline {
 public:
  explicit socket_deadline(tcp::socket& socket) : state_(std::make_shared<shared>(socket)) {}
  ~socket_deadline() {
    state_->socket = nullptr;
    state_->timer.cancel();
  }
  socket_deadline(const socket_deadline&) = delete;
  socket_deadline& operator=(const socket_deadline&) = delete;

  void expires_after(std::chrono::steady_clock::duration d) {
    state_->timer.expires_after(d);  // cancels the wait for the previous deadline
    state_->timer.async_wait([st = state_](const beast::error_code& ec) {
      // A handler already queued when the deadline was moved sees the new, later expiry.
      if (ec || !st->socket || st->timer.expiry() > std::chrono::steady_clock::now()) return;
      beast::error_code ignored;
      st->socket->cancel(ignored);
    });
  }
  void clear() { state_->timer.cancel(); }

 private:
  struct shared {
    explicit shared(tcp::socket& s) : socket(&s), timer(s.get_executor()) {}
    tcp::socket* socket;  // null once the session is gone
    asio::steady_timer timer;
  };
  std::shared_ptr<shared> state_;
};

// The peer went away or timed out (nothing to answer), as opposed to a malformed request.
bool connection_gone(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == beast::error::timeout ||
         ec == http::error::partial_message ||
         ec.category() == asio::error::get_system_category() ||
         ec.category() == asio::error::get_misc_category() ||
         ec.category() == asio::error::get_ssl_category() ||
         ec.category() == ssl::error::get_stream_category();
}

bool counts_as_ok(unsigned status) {
  // 404 and 412 are ordinary answers of a KV API (a miss, a lost CAS), not failures.
  return status < 400 || status == 404 || status == 412;
}

// What is read and thrown away after an answer that ends a connection whose request was not
// read completely (a header too large, a malformed message).
constexpr std::uint64_t max_discard_bytes = 1 << 20;

// Writes a response that ends the connection, then drains (bounded) what the client is
// still sending, so that closing does not reset the connection before it reads the answer.
// The drain reads the TCP socket itself (under TLS: records nobody decrypts).
template <typename Stream>
asio::awaitable<void> answer_and_close(http_server::state& st, Stream& stream, tcp::socket& socket,
                                       socket_deadline& deadline, http_response resp,
                                       std::uint64_t drain_bytes) {
  resp.close = true;
  const std::string bytes = wire_bytes(resp, 11, false, false);
  deadline.expires_after(st.options.write_timeout);
  auto [ec, n] = co_await asio::async_write(stream, asio::buffer(bytes), use_tuple);
  (void)n;
  if (ec) co_return;
  beast::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  constexpr std::uint64_t max_drain_bytes = 64ull << 20;
  drain_bytes = std::min(drain_bytes, max_drain_bytes);
  std::array<char, 16384> sink;
  deadline.expires_after(st.options.read_timeout);
  while (drain_bytes > 0) {
    auto [rec, got] = co_await socket.async_read_some(asio::buffer(sink), use_tuple);
    if (rec) break;
    drain_bytes -= std::min<std::uint64_t>(drain_bytes, got);
  }
}

// A request parsed and routed, until its answer is written.
struct pipelined_request {
  route r;
  std::string_view name;  // for metrics (a static string)
  bool keep_alive = true;
  unsigned version = 11;
  bool head = false;
  std::chrono::steady_clock::time_point started;
  std::size_t body_bytes = 0;
  std::string answer;   // its bytes on the wire (net/http/wire.h)
  bool closes = false;  // the connection ends after it
};

// How a request may overlap the requests before it on its connection (top of the file).
enum class overlap : std::uint8_t { none, reads, writes };

overlap overlap_of(const route& r) {
  if (std::holds_alternative<route_kv_put>(r) || std::holds_alternative<route_kv_delete>(r))
    return overlap::writes;
  if (std::holds_alternative<route_kv_get>(r) || std::holds_alternative<route_kv_list>(r))
    return overlap::reads;
  return overlap::none;
}

// The requests of one connection that were read and not answered yet, in request order.
struct pipeline {
  explicit pipeline(const asio::any_io_executor& ex)
      : wake(ex, asio::steady_timer::time_point::max()) {}
  std::deque<std::shared_ptr<pipelined_request>> queue;
  std::size_t running = 0;               // started, not done
  overlap running_kind = overlap::none;  // what the running ones are (all alike)
  std::size_t body_bytes = 0;            // bodies of the queued requests
  asio::steady_timer wake;               // cancelled whenever a request completes
  std::vector<asio::const_buffer> out;   // flush(): the answers of one write
};

constexpr std::size_t max_pipelined = 64;
constexpr std::size_t max_pipelined_bytes = 4 << 20;

// Runs a request and turns its outcome into the answer (metrics counted).
asio::awaitable<void> answer(http_server::state& st, pipelined_request& q) {
  http_response resp;
  try {
    resp = co_await execute(st, q.r);
  } catch (const std::exception& e) {
    base::log(base::log_level::error, "http: request failed: ", e.what());
    resp = error_response(500, "internal", "internal error");
  }
  st.service.metrics().observe_request(door::http, q.name, counts_as_ok(resp.status),
                                       std::chrono::steady_clock::now() - q.started);
  const bool keep_alive = q.keep_alive && !st.stopped;
  q.answer = wire_bytes(resp, q.version, keep_alive, q.head);
  q.closes = wire_closes(resp, keep_alive);
}

// A pipelined request running on its own; the session's pipeline learns when it is done.
asio::awaitable<void> run_pipelined(std::shared_ptr<http_server::state> st,
                                    std::shared_ptr<pipeline> pl,
                                    std::shared_ptr<pipelined_request> q) {
  co_await answer(*st, *q);
  --pl->running;
  pl->wake.cancel();
}

// Waits until no request of the pipeline is running.
asio::awaitable<void> wait_idle(pipeline& pl) {
  while (pl.running > 0) {
    auto [ec] = co_await pl.wake.async_wait(use_tuple);
    (void)ec;  // cancelled: something completed
  }
}

// Waits for every queued request and writes their answers in order, in one gathered write
// (up to and including the first answer that ends the connection; the rest are dropped).
// False when the connection is to end: the write failed, or an answer closes it.
template <typename Stream>
asio::awaitable<bool> flush(http_server::state& st, Stream& stream, socket_deadline& deadline,
                            pipeline& pl) {
  co_await wait_idle(pl);
  bool open = true;
  pl.out.clear();
  for (const auto& q : pl.queue) {
    pl.out.push_back(asio::buffer(q->answer));
    if (q->closes) {
      open = false;
      break;
    }
  }
  if (!pl.out.empty()) {
    deadline.expires_after(st.options.write_timeout);
    auto [ec, n] = co_await asio::async_write(stream, pl.out, use_tuple);
    (void)n;
    if (ec) open = false;
  }
  deadline.clear();
  pl.out.clear();
  pl.queue.clear();
  pl.body_bytes = 0;
  co_return open;
}

// The answer to a request that cannot be read: too large a header or body, or malformed.
http_response refusal_for(const beast::error_code& ec) {
  if (ec == http::error::header_limit)
    return error_response(431, "header_too_large", "request header fields too large");
  if (ec == http::error::body_limit)
    return error_response(413, "too_large", "value larger than max_value_bytes");
  return error_response(400, "bad_request", ec.message());
}

// Answers every request before it, then `refusal`, which ends the connection.
template <typename Stream>
asio::awaitable<void> refuse_after_pipeline(http_server::state& st, Stream& stream,
                                            tcp::socket& socket, socket_deadline& deadline,
                                            pipeline& pl, http_response refusal,
                                            std::uint64_t drain_bytes) {
  // (Not `if (!co_await ...)`: under g++ 12 that compiled to an illegal instruction here.)
  const bool open = co_await flush(st, stream, deadline, pl);
  if (!open) co_return;
  co_await answer_and_close(st, stream, socket, deadline, std::move(refusal), drain_bytes);
}

// Feeds the parser from the bytes already buffered, without reading the socket. Returns
// true once the parser has what it needs (the header, or the whole message when `whole`),
// false when it needs more than the buffer holds or failed (ec).
bool feed(http::request_parser<http::string_body>& parser, beast::flat_buffer& buffer, bool whole,
          beast::error_code& ec) {
  auto enough = [&] { return whole ? parser.is_done() : parser.is_header_done(); };
  while (!enough() && buffer.size() > 0) {
    const std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more) {
      ec = {};
      return false;
    }
    if (ec) return false;
    if (used == 0) return false;
  }
  return enough();
}

// Serves requests on `stream` (the socket itself, or TLS over it) until the connection
// ends; `socket` is the TCP socket underneath, which the deadline cancels.
template <typename Stream>
asio::awaitable<void> serve(std::shared_ptr<http_server::state> st, Stream& stream,
                            tcp::socket& socket, socket_deadline& deadline) {
  const limits& lim = st->service.request_limits();
  beast::flat_buffer buffer;
  auto pl = std::make_shared<pipeline>(socket.get_executor());
  bool open = true;  // false: the connection ends; answer nothing more
  try {
    while (!st->stopped) {
      // Idle between requests: answer what was started, then wait for the first byte of
      // the next request.
      if (buffer.size() == 0) {
        if (!pl->queue.empty() && !(open = co_await flush(*st, stream, deadline, *pl))) break;
        deadline.expires_after(st->options.idle_timeout);
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_tuple);
        if (ec) break;
        buffer.commit(n);
      }
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(st->options.max_header_bytes));
      // The body limit is applied after the header, so that a Content-Length over it gets
      // a 413 (and its body drained) rather than a parse error.
      parser.body_limit(boost::none);
      beast::error_code ec;
      if (!feed(parser, buffer, false, ec) && !ec) {
        // The header is not all here: answer what was started before reading on. From
        // here the whole request must arrive within read_timeout.
        if (!pl->queue.empty() && !(open = co_await flush(*st, stream, deadline, *pl))) break;
        deadline.expires_after(st->options.read_timeout);
        auto [rec, n] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
        (void)n;
        ec = rec;
      }
      if (!ec) {
        const auto content_length = parser.content_length();
        if (content_length && *content_length > lim.max_value_bytes) {
          // A named argument, never a temporary in the co_await expression (g++ 12 destroys
          // such a temporary twice when it is a by-value coroutine parameter).
          http_response refusal = refusal_for(http::error::body_limit);
          co_await refuse_after_pipeline(*st, stream, socket, deadline, *pl, std::move(refusal),
                                         *content_length);
          open = false;
          break;
        }
        parser.body_limit(lim.max_value_bytes);
        parser.eager(true);
        if (!parser.is_done() && !feed(parser, buffer, true, ec) && !ec) {
          // The body is not all here: as for the header.
          if (!pl->queue.empty() && !(open = co_await flush(*st, stream, deadline, *pl))) break;
          auto& header = parser.get();
          if (beast::iequals(header[http::field::expect], "100-continue")) {
            http::response<http::empty_body> cont{http::status::continue_, header.version()};
            deadline.expires_after(st->options.write_timeout);
            auto [wec, n] = co_await http::async_write(stream, cont, use_tuple);
            (void)n;
            if (wec) break;
          }
          deadline.expires_after(st->options.read_timeout);
          auto [rec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
          (void)n;
          ec = rec;
        }
      }
      if (ec) {
        if (connection_gone(ec)) break;
        http_response refusal = refusal_for(ec);
        co_await refuse_after_pipeline(*st, stream, socket, deadline, *pl, std::move(refusal),
                                       max_discard_bytes);
        open = false;
        break;
      }

      deadline.clear();  // the request is complete; executing it has its own timeout
      auto q = std::make_shared<pipelined_request>();
      q->started = std::chrono::steady_clock::now();
      auto req = parser.release();
      q->keep_alive = req.keep_alive();
      q->version = req.version();
      q->head = req.method() == http::verb::head;
      http_request request;
      request.method = std::string(req.method_string());
      if (q->head) request.method = "HEAD";
      request.target = std::string(req.target());
      if (auto it = req.find(http::field::if_match); it != req.end())
        request.if_match = std::string(it->value());
      if (auto it = req.find(http::field::if_none_match); it != req.end())
        request.if_none_match = std::string(it->value());
      request.has_body = req.has_content_length() || req.chunked();
      request.body = std::move(req.body());
      q->body_bytes = request.body.size();

      // The admin token is checked before anything else looks at the request, so a caller
      // without it learns nothing (not even whether its parameters were valid).
      // (Plain statements: an immediately called by-reference lambda here crashed the
      // response write under GCC 12.)
      bool refused = false;
      bool token_sent = false;
      if (!st->options.admin_token.empty() && needs_admin_token(request.method, request.target)) {
        const auto it = req.find(http::field::authorization);
        if (it != req.end()) token_sent = true;
        refused = it == req.end() || !bearer_token_matches(it->value(), st->options.admin_token);
      }
      q->r =
          refused ? route(unauthorized_response(token_sent)) : parse_route(std::move(request), lim);
      q->name = metrics_name(q->r, req.method_string());

      pl->queue.push_back(q);
      pl->body_bytes += q->body_bytes;
      const overlap kind = overlap_of(q->r);
      if (std::holds_alternative<http_response>(q->r)) {
        co_await answer(*st, *q);  // answered by the router: nothing runs
      } else if (buffer.size() == 0 && pl->queue.size() == 1) {
        co_await answer(*st, *q);  // a lone request: inline, as a serial session
      } else {
        if (pl->running > 0 && (kind == overlap::none || kind != pl->running_kind))
          co_await wait_idle(*pl);
        ++pl->running;
        pl->running_kind = kind;
        asio::co_spawn(socket.get_executor(), run_pipelined(st, pl, q), asio::detached);
      }
      if (!q->keep_alive) break;  // answered below, after every earlier request
      if (pl->queue.size() >= max_pipelined || pl->body_bytes >= max_pipelined_bytes) {
        if (!(open = co_await flush(*st, stream, deadline, *pl))) break;
      }
    }
    if (open) (void)co_await flush(*st, stream, deadline, *pl);
  } catch (const std::exception& e) {
    base::log(base::log_level::warn, "http: session ended: ", e.what());
  }
  // Requests still running hold the pipeline and the state, not the stream: wait for them
  // anyway, so that a session never ends with work of its own outstanding.
  while (pl->running > 0) {
    auto [ec] = co_await pl->wake.async_wait(use_tuple);
    (void)ec;
  }
}

asio::awaitable<void> run_session(std::shared_ptr<http_server::state> st, tcp::socket& socket) {
  socket_deadline deadline(socket);
  if (st->options.tls) {
    // HTTPS: the handshake is part of the first request's read deadline. A client that
    // speaks plain HTTP or fails the handshake is dropped without an answer. The session
    // ends without close_notify (every response is delimited by its Content-Length).
    const std::shared_ptr<ssl::context> context = st->options.tls;  // reload() may replace it
    ssl::stream<tcp::socket&> tls(socket, *context);
    deadline.expires_after(st->options.read_timeout);
    auto [ec] = co_await tls.async_handshake(ssl::stream_base::server, use_tuple);
    if (!ec) co_await serve(st, tls, socket, deadline);
  } else {
    co_await serve(st, socket, socket, deadline);
  }
  deadline.clear();
  beast::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  // The listener closes the socket once this coroutine has returned.
}

// The answer to a connection beyond max_connections (docs/config.md), as bytes on the wire.
std::string refusal_text() {
  auto resp = error_response(503, "too_many_connections", "too many open connections");
  resp.headers.emplace_back("Retry-After", "1");
  resp.close = true;
  return wire_bytes(resp, 11, false, false);
}

}  // namespace

std::variant<std::shared_ptr<ssl::context>, std::string> make_https_context(
    const std::string& cert_file, const std::string& key_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  // TLS 1.2 and 1.3 only; no compression (CRIME). OpenSSL 3's defaults pick the ciphers.
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::no_compression | ssl::context::single_dh_use);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return cert_file + ": not a usable PEM certificate chain (" + ec.message() + ")";
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) {
    return key_file + ": not a usable PEM private key, or not the key of " + cert_file + " (" +
           ec.message() + ")";
  }
  return ctx;
}

http_server::http_server(asio::io_context& io, kv_service& service, http_options options)
    : state_(std::make_shared<state>(io, service, std::move(options))) {
  // The handler holds the state weakly: the state owns the listener. A session holds it
  // strongly for as long as it runs.
  std::weak_ptr<state> weak = state_;
  state_->connections = std::make_unique<listener>(
      io,
      listener_options{.which = door::http,
                       .max_connections = service.request_limits().max_connections,
                       // Under HTTPS a plain-text 503 would be garbage to the client's TLS
                       // stack: the connection is just closed.
                       .refusal = state_->options.tls ? std::string() : refusal_text()},
      &service.metrics(), [weak](tcp::socket& socket) -> asio::awaitable<void> {
        if (auto st = weak.lock()) co_await run_session(std::move(st), socket);
      });
}

http_server::~http_server() {
  stop();
}

void http_server::listen(const std::string& host, std::uint16_t port) {
  state_->connections->listen(host, port);
}

std::uint16_t http_server::port() const {
  return state_->connections->port();
}

void http_server::start() {
  state_->connections->start();
}

bool http_server::reload(std::shared_ptr<ssl::context> tls, std::string admin_token) {
  if (!state_ || (tls == nullptr) != (state_->options.tls == nullptr)) return false;
  state_->options.tls = std::move(tls);
  state_->options.admin_token = std::move(admin_token);
  return true;
}

void http_server::stop() {
  if (!state_ || state_->stopped) return;
  state_->stopped = true;
  state_->connections->stop();
}

}  // namespace net
