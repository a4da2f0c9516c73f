#include "app/server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <csignal>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string_view>
#include <utility>
#include <variant>

#include "app/node.h"
#include "base/log.h"
#include "base/memory.h"
#include "net/cs733/session.h"
#include "net/http/server.h"
#include "net/memcached/session.h"

namespace app {

namespace asio = boost::asio;
using base::log_level;

namespace {

constexpr int exit_fatal = 1;
// A clean stop snapshots first when at least this many entries would otherwise be replayed
// at the next start (replay runs at roughly 150k entries/s; bench/README-scale.md).
constexpr std::uint64_t snapshot_before_stop_entries = 20000;
constexpr int exit_bad_config = 2;

bool is_loopback(const endpoint& e) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(e.host, ec);
  return !ec && address.is_loopback();
}

void log_config(const config& c) {
  base::log(log_level::info, "raftkv ", RAFTKV_VERSION, " starting: config ", c.source.string(),
            ", data_dir ", c.data_dir.string(), ", ", c.members.size(), " member(s), tick ",
            c.raft.tick_ms, " ms, heartbeat ", c.raft.heartbeat_ticks, " ticks, election ",
            c.raft.election_ticks, " ticks, allocator ", base::allocator_name(),
            base::huge_page_heap() ? ", snapshot loads on 2 MiB pages" : "");
  auto door = [](const char* name, const std::optional<endpoint>& e) {
    base::log(log_level::info, "  ", name, ": ", e ? e->text : std::string("disabled"));
  };
  door("memcached", c.listen_memcached);
  door("cs733", c.listen_cs733);
  door("http", c.listen_http);
  door("peer", c.listen_peer);
  if (c.listen_peer) {
    if (c.tls.enabled()) {
      base::log(log_level::info, "  peer: mutual TLS (ca ", c.tls.ca.string(), ", cert ",
                c.tls.cert.string(), ", plain_peers ", net::to_string(c.tls.plain_peers), ")");
    } else {
      base::log(log_level::info, "  peer: plain TCP (no [tls])");
    }
  }
  if (c.listen_http) {
    base::log(log_level::info, "  http: ", c.http.tls() ? "HTTPS only" : "plain HTTP",
              c.http.admin_token.empty() ? ", admin endpoints open"
                                         : ", admin endpoints need the admin token");
  }
  if (c.listen_memcached && !c.memcached.users.empty()) {
    base::log(log_level::info, "  memcached: authentication required (", c.memcached.users.size(),
              " user(s) from ", c.memcached.auth_file.string(), ")");
  }
  // Anything that reaches a door bound beyond loopback without TLS reads and writes in
  // clear text, and a peer port without [tls] trusts any client that knows the cluster id.
  for (const auto& [name, e] : {std::pair{"memcached", &c.listen_memcached},
                                {"cs733", &c.listen_cs733},
                                {"http", &c.listen_http},
                                {"peer", &c.listen_peer}}) {
    if (!*e || is_loopback(**e)) continue;
    if (std::string_view(name) == "http" && c.http.tls()) continue;
    if (std::string_view(name) == "peer" && c.tls.enabled()) continue;
    base::log(log_level::warn, name, " is bound to non-loopback address ", (*e)->text,
              " without [tls]: its traffic is not encrypted and peers are not authenticated");
  }
  if (!c.raft.fsync) {
    base::log(log_level::warn,
              "raft.fsync = false: acknowledged writes can be LOST on power failure or kernel "
              "crash. Use this for throwaway benchmarks only.");
  }
}

// Binds "host:port" for the peer transport here, so that "port in use" is a start-up error.
asio::ip::tcp::acceptor bind_acceptor(asio::io_context& io, const endpoint& e) {
  asio::ip::tcp::endpoint ep(asio::ip::make_address(e.host), e.port);
  asio::ip::tcp::acceptor acceptor(io);
  acceptor.open(ep.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(ep);
  acceptor.listen();
  return acceptor;
}

// The TLS contexts a config's certificate files make: for the HTTP door ([http] tls_cert)
// and for the peers ([tls]), each unset when not configured.
struct tls_contexts {
  std::shared_ptr<asio::ssl::context> https;
  std::optional<net::peer_tls> peer;
};

// Loads them, or says which key's files did not load. `self`: the id this node's peer
// certificate must name.
std::variant<tls_contexts, std::string> load_tls(const config& c, raft::node_id self) {
  tls_contexts out;
  if (c.http.tls()) {
    auto made = net::make_https_context(c.http.tls_cert.string(), c.http.tls_key.string());
    if (auto* why = std::get_if<std::string>(&made)) {
      return c.source.string() + ": key 'http.tls_cert'/'http.tls_key': " + *why;
    }
    out.https = std::get<std::shared_ptr<asio::ssl::context>>(std::move(made));
  }
  if (c.tls.enabled()) {
    auto made =
        net::make_peer_tls(c.tls.ca.string(), c.tls.cert.string(), c.tls.key.string(), self);
    if (auto* why = std::get_if<std::string>(&made)) {
      return c.source.string() + ": key 'tls.ca'/'tls.cert'/'tls.key': " + *why;
    }
    out.peer = std::get<net::peer_tls>(std::move(made));
    out.peer->plain = c.tls.plain_peers;
  }
  return out;
}

// plain_peers other than "refuse" lets any process that reaches the peer port claim a
// member id; said at every start and reload that sets it.
void warn_plain_peers(const config& c) {
  if (!c.tls.enabled() || c.tls.plain_peers == net::plain_peers::refuse) return;
  base::log(log_level::warn, "[tls] plain_peers = \"", net::to_string(c.tls.plain_peers),
            "\": the peer port also takes plain TCP, unauthenticated; set it back to "
            "\"refuse\" once every member has moved to TLS (docs/config.md)");
}

// A certificate that expires within this is worth a warning at every start and reload.
constexpr std::chrono::hours expiry_warning{14 * 24};

// When each certificate the node presents expires (Unix seconds), by use ("http", "peer");
// logs one that has expired (peers or clients refuse it) or soon will.
std::map<std::string, std::int64_t> check_expiry(const config& c, const tls_contexts& t) {
  std::map<std::string, std::int64_t> out;
  const auto check = [&out](const std::string& use, const std::string& key,
                            const std::filesystem::path& file, asio::ssl::context& ctx) {
    const auto at = net::certificate_expiry(ctx);
    if (!at) return;
    out[use] = *at;
    const auto left =
        std::chrono::seconds(*at) - std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::system_clock::now().time_since_epoch());
    const auto days = std::chrono::duration_cast<std::chrono::hours>(left).count() / 24;
    if (left <= std::chrono::seconds(0)) {
      base::log(log_level::error, "certificate ", key, " (", file.string(), ") expired ", -days,
                " day(s) ago: ", use == "peer" ? "the other members refuse" : "clients refuse",
                " it; install a new one and reload (SIGHUP)");
    } else if (left < expiry_warning) {
      base::log(log_level::warn, "certificate ", key, " (", file.string(), ") expires in ", days,
                " day(s); install a new one and reload (SIGHUP)");
    }
  };
  if (t.https) check("http", "[http] tls_cert", c.http.tls_cert, *t.https);
  if (t.peer) check("peer", "[tls] cert", c.tls.cert, *t.peer->server);
  return out;
}

// check_expiry(), and the result in /metrics.
void record_expiry(net::metrics& m, const config& c, const tls_contexts& t) {
  const auto expiry = check_expiry(c, t);
  for (const char* use : {"http", "peer"}) {
    if (auto it = expiry.find(use); it != expiry.end()) {
      m.set_certificate_expiry(use, it->second);
    } else {
      m.clear_certificate_expiry(use);  // TLS turned off by a reload
    }
  }
}

// SIGHUP: reads the config file again and takes from it what can change while running —
// the certificates and keys ([tls], [http] tls_cert/tls_key), the admin token and the
// memcached users, and [tls] plain_peers — for the connections and requests that come next
// (docs/config.md, "Reloading"). All or nothing: a file that does not parse or load, or a
// change that turns TLS on or off, is logged and changes nothing. The one exception is peer
// TLS on or off where every link stays plain TCP (plain_peers = "dial" on the side with
// TLS), the first and last step of a move to or from TLS. Every other setting needs a restart.
// peer_tls_now: the peer TLS setting in force (nullopt: none), updated by a reload.
void reload(const config& running, std::optional<net::plain_peers>& peer_tls_now,
            net::http_server* http, net::memcached_server* memcached, node& n) {
  const auto refuse = [&n](const std::string& why) {
    base::log(log_level::error, "reload refused, nothing changed: ", why);
    n.metrics().observe_reload(false);
  };
  auto loaded = load_config(running.source);
  if (auto* error = std::get_if<config_error>(&loaded)) return refuse(error->message);
  const config& fresh = std::get<config>(loaded);
  if (fresh.http.tls() != running.http.tls()) {
    return refuse(running.source.string() +
                  " turns HTTPS on or off ([http] tls_cert), which needs a restart");
  }
  if (fresh.tls.enabled() != peer_tls_now.has_value()) {
    const auto with_tls = peer_tls_now ? *peer_tls_now : fresh.tls.plain_peers;
    if (with_tls != net::plain_peers::dial) {
      return refuse(running.source.string() + " turns peer TLS ([tls]) " +
                    (peer_tls_now ? "off" : "on") +
                    ": a reload does that only with [tls] plain_peers = \"dial\" " +
                    (peer_tls_now ? "in force" : "in the new file") +
                    " (docs/config.md, \"Moving a running cluster to TLS\"); otherwise restart");
    }
  }
  // The running node's id, whatever the file says now: the id takes a restart.
  auto made = load_tls(fresh, raft::node_id(running.node_id));
  if (auto* why = std::get_if<std::string>(&made)) return refuse(*why);
  auto& contexts = std::get<tls_contexts>(made);
  // First, so that a refusal changes nothing (the check above makes one unexpected).
  if (!n.reload_peer_tls(contexts.peer)) {
    return refuse("the peer transport refused the new [tls] settings");
  }
  record_expiry(n.metrics(), fresh, contexts);
  n.metrics().observe_reload(true);
  if (http) http->reload(contexts.https, fresh.http.admin_token);
  if (memcached) memcached->set_auth_users(fresh.memcached.users);
  if (fresh.tls.enabled()) {
    peer_tls_now = fresh.tls.plain_peers;
  } else {
    peer_tls_now.reset();
  }
  warn_plain_peers(fresh);
  base::log(log_level::info, "reloaded ", running.source.string(), ": ",
            fresh.tls.enabled()
                ? "peer certificates (ca " + fresh.tls.ca.string() + ", plain_peers " +
                      std::string(net::to_string(fresh.tls.plain_peers)) + "), "
                : "no peer TLS, ",
            fresh.http.tls() ? "http certificate, " : "", "admin token ",
            fresh.http.admin_token.empty() ? "none" : "set", ", ", fresh.memcached.users.size(),
            " memcached user(s); other settings take effect at the next start");
}

}  // namespace

std::optional<std::string> check_tls(const config& c) {
  auto made = load_tls(c, raft::node_id(c.node_id));
  if (auto* why = std::get_if<std::string>(&made)) return *why;
  check_expiry(c, std::get<tls_contexts>(made));
  return std::nullopt;
}

int run_server(const config& c) {
  base::set_log_node_id(c.node_id);
  // SIGHUP asks for a reload (below); until its handler is in place, one must not end the
  // process, which is the signal's default.
  std::signal(SIGHUP, SIG_IGN);
  log_config(c);

  // Certificates and keys are read before anything else (the data dir included) is
  // touched: one that does not load is a config error.
  auto made = load_tls(c, raft::node_id(c.node_id));
  if (auto* why = std::get_if<std::string>(&made)) {
    base::log(log_level::error, *why);
    return exit_bad_config;
  }
  std::shared_ptr<asio::ssl::context> https = std::get<tls_contexts>(made).https;
  std::optional<net::peer_tls> peer_tls = std::get<tls_contexts>(made).peer;
  std::optional<net::plain_peers> peer_tls_now;  // what a reload may change
  if (peer_tls) peer_tls_now = peer_tls->plain;
  warn_plain_peers(c);

  asio::io_context io;
  auto opened = node::open(io, c);
  if (auto* why = std::get_if<std::string>(&opened)) {
    base::log(log_level::error, "fatal: ", *why);
    return exit_fatal;
  }
  std::unique_ptr<node> n = std::move(std::get<std::unique_ptr<node>>(opened));
  record_expiry(n->metrics(), c, std::get<tls_contexts>(made));

  net::memcached_options mc_options;
  mc_options.version = RAFTKV_VERSION;
  net::cs733_options cs_options;
  net::http_options http_options;
  http_options.version = RAFTKV_VERSION;
  http_options.read_timeout = std::chrono::milliseconds(c.limits.http_read_timeout_ms);
  http_options.idle_timeout = std::chrono::milliseconds(c.limits.http_idle_timeout_ms);
  http_options.tls = https;
  http_options.admin_token = c.http.admin_token;
  mc_options.auth_users = c.memcached.users;
  std::unique_ptr<net::memcached_server> memcached;
  std::unique_ptr<net::cs733_server> cs733;
  std::unique_ptr<net::http_server> http;
  std::optional<asio::ip::tcp::acceptor> peer_acceptor;

  const char* binding = "";
  const endpoint* binding_at = nullptr;
  try {
    if (c.listen_peer) {
      binding = "peer";
      binding_at = &*c.listen_peer;
      peer_acceptor = bind_acceptor(io, *c.listen_peer);
    }
    if (c.listen_memcached) {
      binding = "memcached";
      binding_at = &*c.listen_memcached;
      memcached = std::make_unique<net::memcached_server>(io, *n, mc_options);
      memcached->listen(c.listen_memcached->host, c.listen_memcached->port);
    }
    if (c.listen_cs733) {
      binding = "cs733";
      binding_at = &*c.listen_cs733;
      cs733 = std::make_unique<net::cs733_server>(io, *n, cs_options);
      cs733->listen(c.listen_cs733->host, c.listen_cs733->port);
    }
    if (c.listen_http) {
      binding = "http";
      binding_at = &*c.listen_http;
      http = std::make_unique<net::http_server>(io, *n, http_options);
      http->listen(c.listen_http->host, c.listen_http->port);
    }
  } catch (const boost::system::system_error& e) {
    base::log(log_level::error, "fatal: cannot listen on ", binding, " address ",
              binding_at ? binding_at->text : std::string("?"), ": ", e.code().message());
    n->stop();
    return exit_fatal;
  }

  n->start(std::move(peer_acceptor), std::move(peer_tls));
  if (memcached) memcached->start();
  if (cs733) cs733->start();
  if (http) http->start();
  base::log(log_level::info, "serving");

  // SIGINT/SIGTERM: stop accepting, fail what is in flight with "stopped", flush and close
  // storage, then give sessions a moment to write their last replies.
  // A fatal refusal (node::on_fatal: this node lost its data dir) takes the same path,
  // with exit status 1.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::signal_set reloads(io, SIGHUP);
  asio::steady_timer grace(io);
  int exit_code = 0;
  bool shutting_down = false;
  auto shut_down = [&](int code) {
    if (shutting_down) return;
    shutting_down = true;
    exit_code = code;
    signals.cancel();
    reloads.cancel();
    if (memcached) memcached->stop();
    if (cs733) cs733->stop();
    if (http) http->stop();
    n->stop();
    grace.expires_after(std::chrono::milliseconds(200));
    grace.async_wait([&](boost::system::error_code) { io.stop(); });
  };
  signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    base::log(log_level::info, "signal ", signo, ": shutting down");
    // A leader hands over first (bounded by two election timeouts), so that the other
    // nodes' clients see no leaderless gap; the doors keep serving meanwhile.
    const auto limit =
        std::chrono::milliseconds(2 * std::int64_t{c.raft.election_ticks} * c.raft.tick_ms);
    // Then, when the log since the last snapshot is long, a snapshot, so that the next
    // start loads it instead of replaying the log (bounded: SIGTERM must end within 5 s;
    // a child writes a 1M-item state in about a second).
    n->hand_over_then(limit, [&] {
      n->snapshot_then(snapshot_before_stop_entries, std::chrono::milliseconds(3000),
                       [&] { shut_down(0); });
    });
  });
  std::function<void()> wait_for_reload = [&] {
    reloads.async_wait([&](boost::system::error_code ec, int) {
      if (ec) return;
      base::log(log_level::info, "SIGHUP: reloading certificates, admin token and users");
      reload(c, peer_tls_now, http.get(), memcached.get(), *n);
      wait_for_reload();
    });
  };
  wait_for_reload();
  n->on_fatal([&](const std::string&) {
    base::log(log_level::error, "fatal: refused by the cluster; shutting down");
    shut_down(exit_fatal);
  });

  try {
    io.run();
  } catch (const std::exception& e) {
    base::log(log_level::error, "fatal: ", e.what());
    n->stop();
    return exit_fatal;
  }
  n->stop();
  if (exit_code != 0) {
    base::log(log_level::error, "stopped: exit status ", exit_code);
    return exit_code;
  }
  base::log(log_level::info, "stopped cleanly");
  return 0;
}

}  // namespace app
