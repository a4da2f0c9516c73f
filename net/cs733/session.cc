#include "net/cs733/session.h"
#include "base/host_port.h"

#include <boost/asio/io_context.hpp>
#include <optional>
#include <string_view>

#include "kv/store.h"
#include "net/cs733/parser.h"
#include "net/metrics.h"
#include "net/service.h"

namespace net {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace cs = net::cs733;

namespace {

constexpr std::size_t flush_threshold_bytes = 64 * 1024;
constexpr std::string_view err_internal = "ERR_INTERNAL\r\n";
constexpr std::string_view err_not_found = "ERR_NOT_FOUND\r\n";
constexpr std::string_view err_version = "ERR_VERSION\r\n";
constexpr std::string_view err_cmd = "ERR_CMD_ERR\r\n";

// Seconds until expiry, rounded up; 0 for an item that never expires.
std::int64_t seconds_left(std::int64_t expires_at_ms, std::int64_t now_ms) {
  if (expires_at_ms == 0) return 0;
  const std::int64_t left_ms = expires_at_ms - now_ms;
  if (left_ms <= 0) return 1;  // still visible at now_ms, so not expired yet
  return (left_ms + 999) / 1000;
}

class session {
 public:
  session(tcp::socket& socket, kv_service& service, const cs733_options& options)
      : socket_(socket), service_(service), options_(options) {
    const auto& l = service.request_limits();
    limits_.max_key_bytes = l.max_key_bytes;
    limits_.max_value_bytes = l.max_value_bytes;
    limits_.max_line_bytes = options.max_line_bytes;
  }

  asio::awaitable<void> run() {
    bool closing = false;
    for (;;) {
      while (!closing) {
        if (in_.skipping()) break;  // the rest of a refused data block is still coming
        auto r = cs::parse(in_.view(), limits_);
        if (r.what == cs::outcome::need_more) break;
        in_.consume(std::min(r.consumed, in_.size()));
        in_.skip(r.discard);
        switch (r.what) {
          case cs::outcome::request:
            co_await execute(r.req);
            break;
          case cs::outcome::reply:
            out_ += r.reply;
            break;
          case cs::outcome::close:
            out_ += r.reply;
            closing = true;
            break;
          case cs::outcome::need_more:
            break;
        }
        if (out_.size() >= flush_threshold_bytes) {
          const bool sent = co_await write_all(socket_, out_);
          if (!sent) co_return;
        }
      }
      const bool sent = co_await write_all(socket_, out_);
      if (!sent || closing) co_return;
      const std::size_t n = co_await in_.read_some(socket_);
      if (n == 0) co_return;
    }
  }

 private:
  // Appends the redirect to the known leader, or ERR_INTERNAL when there is none or it
  // has no CS733 address.
  void redirect(const std::optional<member_address>& leader) {
    const auto address = leader ? base::split_host_port(leader->cs733) : std::nullopt;
    if (!address) {
      out_ += err_internal;
      return;
    }
    out_ += "ERR_REDIRECT ";
    out_ += address->host;
    out_ += ' ';
    out_ += address->port;
    out_ += "\r\n";
  }

  // SPEC §4: only the leader answers. Returns true if this node may serve the request;
  // otherwise the reply (redirect or ERR_INTERNAL) has been appended.
  asio::awaitable<bool> ensure_leader() {
    if (service_.is_leader()) co_return true;
    auto leader = service_.leader();
    if (!leader) {
      leader = co_await service_.wait_for_leader(options_.leader_wait);
      if (service_.is_leader()) co_return true;
    }
    redirect(leader);
    co_return false;
  }

  // Appends the reply for a failed service call.
  void service_failure(service_error e) {
    if (e == service_error::not_leader) {
      redirect(service_.leader());
    } else {
      out_ += err_internal;
    }
  }

  asio::awaitable<void> execute(const cs::request& req) {
    const auto started = std::chrono::steady_clock::now();
    bool ok = false;
    const bool serve = co_await ensure_leader();
    if (serve) {
      switch (req.kind) {
        case cs::command_kind::get:
        case cs::command_kind::getm:
          ok = co_await read(req);
          break;
        default:
          ok = co_await write(req);
          break;
      }
    }
    service_.metrics().observe_request(door::cs733, cs::to_string(req.kind), ok,
                                       std::chrono::steady_clock::now() - started);
  }

  asio::awaitable<bool> read(const cs::request& req) {
    const auto barrier = co_await service_.read_barrier();
    if (barrier != service_error::none) {
      service_failure(barrier);
      co_return false;
    }
    const auto now_ms = service_.now_ms();
    auto item = service_.store().find(req.key, now_ms);
    if (!item) {
      out_ += err_not_found;
      co_return true;
    }
    out_ += "VALUE ";
    if (req.kind == cs::command_kind::getm) {
      out_ += std::to_string(item->version);
      out_ += ' ';
      out_ += std::to_string(seconds_left(item->expires_at_ms, now_ms));
      out_ += ' ';
    }
    out_ += std::to_string(item->value.size());
    out_ += "\r\n";
    out_ += item->value;
    out_ += "\r\n";
    co_return true;
  }

  asio::awaitable<bool> write(const cs::request& req) {
    kv::command cmd;
    cmd.key = req.key;
    cmd.kind_of_expiry = kv::expiry_kind::relative;
    switch (req.kind) {
      case cs::command_kind::set:
        cmd.kind = kv::op::set;
        break;
      case cs::command_kind::cas:
        cmd.kind = kv::op::cas;
        cmd.cas_unique = req.version;
        break;
      default:
        cmd.kind = kv::op::remove;
        break;
    }
    if (cmd.kind != kv::op::remove) {
      cmd.value = req.value;
      cmd.exptime = req.exptime;
    }
    const auto reply = co_await service_.write(std::move(cmd));
    if (reply.error != service_error::none) {
      service_failure(reply.error);
      co_return false;
    }
    switch (reply.result.code) {
      case kv::status::stored:
        if (!req.noreply) out_ += "OK " + std::to_string(reply.result.version) + "\r\n";
        co_return true;
      case kv::status::deleted:
        out_ += "DELETED\r\n";
        co_return true;
      case kv::status::not_found:
        out_ += err_not_found;
        co_return true;
      case kv::status::exists:
        out_ += err_version;
        co_return true;
      case kv::status::too_large:
      case kv::status::bad_command:
        out_ += err_cmd;
        co_return false;
      default:
        out_ += err_internal;  // out_of_memory and anything unexpected
        co_return false;
    }
  }

  tcp::socket& socket_;
  kv_service& service_;
  const cs733_options& options_;
  cs::parser_limits limits_;
  input_buffer in_;
  std::string out_;
};

}  // namespace

asio::awaitable<void> run_cs733_session(tcp::socket& socket, kv_service& service,
                                        const cs733_options& options) {
  session s(socket, service, options);
  co_await s.run();
}

cs733_server::cs733_server(asio::io_context& io, kv_service& service, cs733_options options)
    : options_(std::make_shared<const cs733_options>(std::move(options))),
      listener_(io,
                listener_options{.which = door::cs733,
                                 .max_connections = service.request_limits().max_connections,
                                 .refusal = "ERR_INTERNAL\r\n"},
                &service.metrics(),
                [&service, opts = options_](tcp::socket& socket) {
                  return run_cs733_session(socket, service, *opts);
                }) {}

}  // namespace net
