// `raftkv member` (see app/member_cli.h). Past ~600 lines in one file on purpose: its
// sections (the command line's checks, one HTTP or HTTPS exchange, the replies' formatting,
// the commands) serve this command alone, and keeping Beast's client side, OpenSSL's client
// context and JSON out of the rest of app/ is why it stands apart from main.cc.
#include "app/member_cli.h"

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "base/host_port.h"

namespace app {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr int exit_runtime_failure = 1;
constexpr int exit_bad_usage = 2;

// The whole exchange (name lookup, connect, request, reply) must end within this. It is
// generous on purpose: a promote waits on the server until the learner has caught up, for up
// to limits.request_timeout_ms (5 s by default, an operator may raise it).
constexpr std::chrono::seconds overall_timeout{30};

// A membership reply is a few hundred bytes per member; this only bounds a misbehaving
// server.
constexpr std::uint64_t max_reply_body_bytes = 16 << 20;

// What the server's error text is cut to when it is not the JSON of SPEC §5 (an HTML page
// from a proxy, say): enough to recognise it, not a screenful.
constexpr std::size_t max_quoted_body_bytes = 512;

// Node ids are 1..UINT32_MAX, as in [node] id and [[cluster.member]] id (docs/config.md).
constexpr std::uint64_t max_node_id = UINT32_MAX;

// --- the command line -------------------------------------------------------------------------

// The node to talk to, from --endpoint.
struct endpoint {
  std::string url;        // as the operator wrote it, for messages
  std::string authority;  // host[:port] as written, brackets kept: the Host header
  std::string host;       // for the resolver and the certificate check: no brackets
  std::string port;
  bool tls = false;  // https://
};

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// http://host[:port][/] or https://host[:port][/]. No path, query or user info: the command
// builds the path itself, so anything after the authority would be silently dropped — refuse
// it instead. No port means 80 or 443, as for any such URL. An IPv6 literal needs its
// brackets ([::1]:8081), as in a URL.
std::optional<endpoint> parse_endpoint(std::string_view url) {
  constexpr std::string_view http_scheme = "http://", https_scheme = "https://";
  const auto starts = [url](std::string_view scheme) {
    return url.size() > scheme.size() && iequals_ascii(url.substr(0, scheme.size()), scheme);
  };
  const bool tls = starts(https_scheme);
  if (!tls && !starts(http_scheme)) return std::nullopt;
  std::string_view authority = url.substr((tls ? https_scheme : http_scheme).size());
  if (authority.ends_with('/')) authority.remove_suffix(1);
  if (authority.empty() || authority.find_first_of("/?#@") != std::string_view::npos) {
    return std::nullopt;
  }
  for (char c : authority) {
    if (c <= ' ' || c >= 0x7f) return std::nullopt;
  }
  const bool bracketed = authority.front() == '[';
  const std::size_t after_host = bracketed ? authority.find(']') : 0;
  if (after_host == std::string_view::npos) return std::nullopt;
  const bool has_port = authority.find(':', after_host) != std::string_view::npos;
  const auto split = base::split_host_port(
      has_port ? std::string(authority) : std::string(authority) + (tls ? ":443" : ":80"));
  // A colon left in the host is an unbracketed IPv6 literal or a stray colon.
  if (!split || (!bracketed && split->host.find(':') != std::string::npos)) return std::nullopt;
  return endpoint{std::string(url), std::string(authority), split->host, split->port, tls};
}

// Decimal 1..max_node_id, nothing else: no sign, no hex, no spaces (a typo in an id must not
// remove the wrong member).
std::optional<std::uint64_t> parse_id(std::string_view text) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  std::uint64_t id = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    id = id * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (id == 0 || id > max_node_id) return std::nullopt;
  return id;
}

// CLI11 validators: an empty string accepts, any other text is the error message.
CLI::Validator endpoint_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        return parse_endpoint(s) ? std::string()
                                 : "not an http://host:port or https://host:port URL: " + s;
      },
      "");
}

CLI::Validator id_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        return parse_id(s) ? std::string()
                           : "not a member id (1.." + std::to_string(max_node_id) + "): " + s;
      },
      "");
}

CLI::Validator address_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        return base::split_host_port(s) ? std::string() : "not a host:port address: " + s;
      },
      "");
}

// The admin token: the first line of the file without trailing whitespace — the rule the
// server applies to [http] admin_token_file, so the same file works on both sides. Prints why
// and returns nullopt when the file cannot be read or holds no usable token.
std::optional<std::string> read_token(const std::string& path) {
  // POSIX rather than a stream: a directory or an I/O error must say so (errno), not read
  // as an empty file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::cerr << "raftkv: cannot read token file " << path << ": " << std::strerror(errno) << "\n";
    return std::nullopt;
  }
  std::string text;
  std::array<char, 4096> chunk;
  for (;;) {
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      std::cerr << "raftkv: cannot read token file " << path << ": " << std::strerror(error)
                << "\n";
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(chunk.data(), static_cast<std::size_t>(n));
    if (text.find('\n') != std::string::npos || text.size() > (1u << 20)) break;
  }
  ::close(fd);
  std::string token = text.substr(0, text.find('\n'));
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t' || token.back() == '\r')) {
    token.pop_back();
  }
  if (token.empty()) {
    std::cerr << "raftkv: token file " << path << ": no token on its first line\n";
    return std::nullopt;
  }
  for (char c : token) {
    // It goes into a header line; the server accepts only visible ASCII tokens anyway.
    if (c <= ' ' || c >= 0x7f) {
      std::cerr << "raftkv: token file " << path
                << ": the token must be visible ASCII without spaces\n";
      return std::nullopt;
    }
  }
  return token;
}

// The TLS client side of an https:// endpoint: TLS 1.2 or later, as the HTTP door serves
// (docs/config.md, [http]); the server's certificate must chain to `ca_file` (else to the
// system's trusted CAs) and name the endpoint's host (exchange()). Prints why and returns
// nullopt when the CA file cannot be used.
std::optional<ssl::context> client_context(const std::string& ca_file) {
  ssl::context ctx(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  ctx.set_verify_mode(ssl::verify_peer);
  beast::error_code ec;
  if (ca_file.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    ctx.load_verify_file(ca_file, ec);
  }
  if (ec) {
    std::cerr << "raftkv: "
              << (ca_file.empty() ? "cannot load the system's trusted CAs"
                                  : "cannot read CA file " + ca_file + " (PEM certificates)")
              << ": " << ec.message() << "\n";
    return std::nullopt;
  }
  return ctx;
}

// --- one HTTP exchange ------------------------------------------------------------------------

// A reply of any status.
struct reply {
  unsigned status = 0;
  std::string reason;
  std::string retry_after;  // the Retry-After header, empty if absent
  std::string body;
};

// A reply, or the message (without "raftkv: ") saying why there is none.
using outcome = std::variant<reply, std::string>;

std::string why(const beast::error_code& ec) {
  if (ec == beast::error::timeout) {
    return "no answer within " + std::to_string(overall_timeout.count()) + " s";
  }
  return ec.message();
}

// Sends `request` on a connected stream and reads the reply, both before `deadline`. The
// stream's timers cancel a write or read still pending at the deadline (Beast's timeouts
// apply to asynchronous operations only, hence coroutines for a one-shot client).
template <class Stream>
asio::awaitable<outcome> talk(Stream& stream, const endpoint& to,
                              const http::request<http::string_body>& request,
                              std::chrono::steady_clock::time_point deadline) {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  const std::string exchange_failed = std::string(request.method_string()) + " " +
                                      std::string(request.target()) + ": " + to.url + ": ";
  beast::get_lowest_layer(stream).expires_at(deadline);
  auto [write_error, written] = co_await http::async_write(stream, request, use_tuple);
  if (write_error) co_return exchange_failed + why(write_error);

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_reply_body_bytes);
  beast::get_lowest_layer(stream).expires_at(deadline);
  auto [read_error, read] = co_await http::async_read(stream, buffer, parser, use_tuple);
  if (read_error) co_return exchange_failed + why(read_error);

  http::response<http::string_body> response = parser.release();
  reply r;
  r.status = response.result_int();
  r.reason = std::string(response.reason());
  if (r.reason.empty()) r.reason = std::string(http::obsolete_reason(response.result()));
  if (auto it = response.find(http::field::retry_after); it != response.end()) {
    r.retry_after = std::string(it->value());
  }
  r.body = std::move(response.body());
  co_return r;
}

// Resolve, connect (and for https://, the TLS handshake), then talk(), all before
// `deadline`. `tls` is the client context for https:// endpoints, null for http://.
asio::awaitable<outcome> exchange(const endpoint& to,
                                  const http::request<http::string_body>& request,
                                  std::chrono::steady_clock::time_point deadline,
                                  ssl::context* tls) {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  const auto executor = co_await asio::this_coro::executor;
  const std::string cannot_connect = "cannot connect to " + to.url + ": ";

  tcp::resolver resolver(executor);
  auto [resolve_error, addresses] = co_await resolver.async_resolve(to.host, to.port, use_tuple);
  if (resolve_error) co_return cannot_connect + to.host + ": " + resolve_error.message();

  if (!tls) {
    beast::tcp_stream stream(executor);
    stream.expires_at(deadline);
    auto [connect_error, connected] = co_await stream.async_connect(addresses, use_tuple);
    if (connect_error) co_return cannot_connect + why(connect_error);
    outcome o = co_await talk(stream, to, request, deadline);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return o;
  }

  beast::ssl_stream<beast::tcp_stream> stream(executor, *tls);
  // The name the certificate must carry (its subject alternative names, RFC 6125); a host
  // name also goes out as SNI, which an IP address may not (RFC 6066).
  stream.set_verify_callback(ssl::host_name_verification(to.host));
  beast::error_code not_an_address;
  (void)asio::ip::make_address(to.host, not_an_address);
  if (not_an_address && !SSL_set_tlsext_host_name(stream.native_handle(), to.host.c_str())) {
    co_return cannot_connect + "cannot set the TLS server name " + to.host;
  }
  beast::get_lowest_layer(stream).expires_at(deadline);
  auto [connect_error, connected] =
      co_await beast::get_lowest_layer(stream).async_connect(addresses, use_tuple);
  if (connect_error) co_return cannot_connect + why(connect_error);
  beast::get_lowest_layer(stream).expires_at(deadline);
  auto [handshake_error] = co_await stream.async_handshake(ssl::stream_base::client, use_tuple);
  if (handshake_error) {
    std::string text = cannot_connect + "TLS handshake failed: " + why(handshake_error);
    const long verified = SSL_get_verify_result(stream.native_handle());
    if (verified != X509_V_OK) {
      text += " (" + std::string(X509_verify_cert_error_string(verified)) +
              "; --ca-file names the CA that signed the node's [http] tls_cert)";
    }
    co_return text;
  }
  // The request says Connection: close and the server closes after its reply, so there is
  // no TLS close_notify exchange to wait for.
  co_return co_await talk(stream, to, request, deadline);
}

outcome send(const endpoint& to, const http::request<http::string_body>& request,
             ssl::context* tls) {
  asio::io_context io;
  const auto deadline = std::chrono::steady_clock::now() + overall_timeout;
  std::optional<outcome> result;
  asio::co_spawn(io, exchange(to, request, deadline, tls), [&](std::exception_ptr e, outcome o) {
    if (!e) {
      result = std::move(o);
      return;
    }
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      result = std::string(request.method_string()) + " " + std::string(request.target()) + ": " +
               to.url + ": " + x.what();
    }
  });
  // The stream's timers bound connect, write and read; this bounds the name lookup too,
  // which has no timer of its own.
  io.run_until(deadline + std::chrono::seconds(1));
  if (!result) return "cannot connect to " + to.url + ": " + why(beast::error::timeout);
  return std::move(*result);
}

http::request<http::string_body> make_request(http::verb method, std::string target,
                                              const endpoint& to, const std::string& token,
                                              std::optional<std::string> body = std::nullopt) {
  http::request<http::string_body> r{method, target, 11};
  r.set(http::field::host, to.authority);
  r.set(http::field::user_agent, "raftkv/" RAFTKV_VERSION);
  r.set(http::field::accept, "application/json");
  if (!token.empty()) r.set(http::field::authorization, "Bearer " + token);
  if (body) {
    r.set(http::field::content_type, "application/json");
    r.body() = std::move(*body);
  }
  // Always a length for POST, even 0: a POST without one may be refused with 411.
  if (method == http::verb::post) r.content_length(r.body().size());
  r.keep_alive(false);
  return r;
}

// --- the replies ------------------------------------------------------------------------------

// The server's words for a failed request. SPEC §5: error bodies are
// {"error": "<code>", "message": "<human text>"}; anything else is quoted, shortened.
std::string error_text(const std::string& body) {
  boost::system::error_code ec;
  const json::value v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    const json::object& o = v.as_object();
    const json::value* code = o.if_contains("error");
    const json::value* message = o.if_contains("message");
    const bool has_code = code != nullptr && code->is_string();
    const bool has_message = message != nullptr && message->is_string();
    if (has_code && has_message) {
      return std::string(code->as_string()) + ": " + std::string(message->as_string());
    }
    if (has_code) return std::string(code->as_string());
    if (has_message) return std::string(message->as_string());
  }
  std::string text = body;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  if (text.size() > max_quoted_body_bytes) text = text.substr(0, max_quoted_body_bytes) + "...";
  return text;
}

// Prints "raftkv: <METHOD> <path>: <status> <reason>: <server's error>" and returns 1.
int report_failure(const http::request<http::string_body>& request, const reply& r) {
  std::cerr << "raftkv: " << request.method_string() << " " << request.target() << ": " << r.status
            << " " << r.reason;
  const std::string text = error_text(r.body);
  if (!text.empty()) std::cerr << ": " << text;
  if (!r.retry_after.empty()) std::cerr << " (retry after " << r.retry_after << " s)";
  std::cerr << "\n";
  return exit_runtime_failure;
}

// A non-negative JSON integer, or nullopt.
std::optional<std::uint64_t> as_u64(const json::value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
  return std::nullopt;
}

std::string text_or_dash(const json::value* v) {
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : "-";
}

std::string yes_no_or_dash(const json::value* v, std::string_view yes, std::string_view no) {
  if (v == nullptr || !v->is_bool()) return "-";
  return std::string(v->get_bool() ? yes : no);
}

// The table of `member list` from a GET /v1/members body; nullopt if the body is not the
// shape of SPEC §8.
std::optional<std::string> members_table(const std::string& body) {
  boost::system::error_code ec;
  const json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::value* members = v.as_object().if_contains("members");
  if (members == nullptr || !members->is_array()) return std::nullopt;

  using row = std::array<std::string, 5>;
  std::vector<row> rows{{"ID", "ROLE", "PEER", "MATCH", "CAUGHT UP"}};
  for (const json::value& m : members->as_array()) {
    if (!m.is_object()) return std::nullopt;
    const json::object& o = m.as_object();
    const auto id = as_u64(o.if_contains("id"));
    if (!id) return std::nullopt;
    const auto match = as_u64(o.if_contains("match_index"));
    rows.push_back({std::to_string(*id), yes_no_or_dash(o.if_contains("voter"), "voter", "learner"),
                    text_or_dash(o.if_contains("peer")), match ? std::to_string(*match) : "-",
                    yes_no_or_dash(o.if_contains("caught_up"), "yes", "no")});
  }
  std::array<std::size_t, 5> width{};
  for (const row& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const row& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  if (const auto index = as_u64(v.as_object().if_contains("config_index"))) {
    out += "config index: " + std::to_string(*index) + "\n";
  }
  return out;
}

}  // namespace

// --- member_cli ---------------------------------------------------------------------------

member_cli::member_cli(CLI::App& parent) {
  member_ =
      parent.add_subcommand("member", "list the cluster's members, add, promote or remove one");
  member_->require_subcommand(1);

  auto common = [this](CLI::App* command) {
    command
        ->add_option("--endpoint", endpoint_,
                     "a node's HTTP door: http://host:port, or https://host:port when it serves "
                     "HTTPS ([http] tls_cert)")
        ->type_name("URL")
        ->required()
        ->check(endpoint_validator());
    command
        ->add_option("--token-file", token_file_,
                     "file whose first line is the admin token ([http] admin_token_file)")
        ->type_name("FILE");
    command
        ->add_option("--ca-file", ca_file_,
                     "https:// only: PEM file of the CA that signed the node's certificate "
                     "(default: the system's trusted CAs)")
        ->type_name("FILE");
  };
  auto id_option = [this](CLI::App* command) {
    command->add_option("--id", id_, "the member's node id")
        ->type_name("N")
        ->required()
        ->check(id_validator());
  };

  list_ = member_->add_subcommand("list", "show the members, their roles and progress");
  common(list_);
  list_->add_flag("--json", json_, "print the server's JSON reply as is");

  add_ = member_->add_subcommand("add", "add a node as a learner (non-voting)");
  common(add_);
  id_option(add_);
  add_->add_option("--peer", peer_, "its peer address")
      ->type_name("HOST:PORT")
      ->required()
      ->check(address_validator());
  add_->add_option("--memcached", memcached_, "its memcached door")
      ->type_name("HOST:PORT")
      ->check(address_validator());
  add_->add_option("--cs733", cs733_, "its CS733 door")
      ->type_name("HOST:PORT")
      ->check(address_validator());
  add_->add_option("--http", http_, "its HTTP door")
      ->type_name("HOST:PORT")
      ->check(address_validator());

  promote_ = member_->add_subcommand("promote", "make a caught-up learner a voter");
  common(promote_);
  id_option(promote_);

  remove_ = member_->add_subcommand("remove", "remove a learner or a voter");
  common(remove_);
  id_option(remove_);
}

bool member_cli::chosen() const {
  return member_->parsed();
}

int member_cli::run() const {
  // Both were checked while parsing; parsed again here for their parts.
  const std::optional<endpoint> to = parse_endpoint(endpoint_);
  const std::optional<std::uint64_t> id = parse_id(id_);
  if (!to) return exit_bad_usage;
  std::string token;
  if (!token_file_.empty()) {
    auto read = read_token(token_file_);
    if (!read) return exit_bad_usage;
    token = std::move(*read);
  }
  std::optional<ssl::context> tls;
  if (to->tls) {
    tls = client_context(ca_file_);
    if (!tls) return exit_bad_usage;
  } else if (!ca_file_.empty()) {
    std::cerr << "raftkv: --ca-file is for https:// endpoints; " << to->url << " is plain HTTP\n";
    return exit_bad_usage;
  }

  // One exchange: the reply when it is a 2xx, else the exit code after saying why.
  const auto exchange = [&](const http::request<http::string_body>& request)
      -> std::variant<reply, int> {
    outcome o = send(*to, request, tls ? &*tls : nullptr);
    if (const auto* failure = std::get_if<std::string>(&o)) {
      std::cerr << "raftkv: " << *failure << "\n";
      return exit_runtime_failure;
    }
    reply& r = std::get<reply>(o);
    if (r.status / 100 != 2) return report_failure(request, r);
    return std::move(r);
  };

  if (list_->parsed()) {
    const auto request = make_request(http::verb::get, "/v1/members", *to, token);
    auto answered = exchange(request);
    if (const int* code = std::get_if<int>(&answered)) return *code;
    const reply& r = std::get<reply>(answered);
    if (json_) {
      std::cout << r.body;
      if (!r.body.ends_with('\n')) std::cout << "\n";
      return 0;
    }
    const auto table = members_table(r.body);
    if (!table) {
      std::cerr << "raftkv: GET /v1/members: " << to->url
                << ": not a member list: " << error_text(r.body) << "\n";
      return exit_runtime_failure;
    }
    std::cout << *table;
    return 0;
  }

  if (!id) return exit_bad_usage;  // add, promote and remove all require one
  const std::string member = "member " + std::to_string(*id);
  http::request<http::string_body> request;
  std::string done;
  if (add_->parsed()) {
    json::object body;
    body["id"] = *id;
    body["peer"] = peer_;
    if (!memcached_.empty()) body["memcached"] = memcached_;
    if (!cs733_.empty()) body["cs733"] = cs733_;
    if (!http_.empty()) body["http"] = http_;
    request = make_request(http::verb::post, "/v1/members", *to, token, json::serialize(body));
    done = member + " added as a learner (peer " + peer_ + "); promote it once it has caught up";
  } else if (promote_->parsed()) {
    request = make_request(http::verb::post, "/v1/members/" + std::to_string(*id) + "/promote", *to,
                           token);
    done = member + " promoted to voter";
  } else if (remove_->parsed()) {
    request = make_request(http::verb::delete_, "/v1/members/" + std::to_string(*id), *to, token);
    done = member + " removed";
  } else {
    return exit_bad_usage;  // require_subcommand(1) makes this unreachable
  }

  const auto answered = exchange(request);
  if (const int* code = std::get_if<int>(&answered)) return *code;
  std::cout << done << "\n";
  return 0;
}

}  // namespace app
