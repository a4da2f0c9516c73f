#include "net/cs733/session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>
#include <string_view>

#include "base/host_port.h"
#include "base/log.h"
#include "kv/store.h"
#include "net/cs733/parser.h"
#include "net/metrics.h"
#include "net/service.h"
#include "net/text_session.h"

namespace net {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace cs = net::cs733;

namespace {

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

// The CS733 side of a text connection (see net/text_session.h).
class protocol final : public text_protocol {
 public:
  protocol(kv_service& service, const cs733_options& options, asio::any_io_executor executor)
      : service_(service), options_(options), executor_(std::move(executor)) {
    const auto& l = service.request_limits();
    limits_.max_key_bytes = l.max_key_bytes;
    limits_.max_value_bytes = l.max_value_bytes;
    limits_.max_line_bytes = options.max_line_bytes;
  }

  text_step parse(std::string_view input) override {
    auto r = cs::parse(input, limits_);
    text_step step;
    step.consumed = r.consumed;
    step.discard = r.discard;
    switch (r.what) {
      case cs::outcome::need_more:
        step.what = text_step::kind::need_more;
        break;
      case cs::outcome::reply:
        step.what = text_step::kind::reply;
        step.reply = std::move(r.reply);
        break;
      case cs::outcome::close:
        step.what = text_step::kind::close;
        step.reply = std::move(r.reply);
        break;
      case cs::outcome::request: {
        step.what = text_step::kind::start;
        step.order = is_read(r.req) ? access::read : access::write;
        step.start = [this, req = std::move(r.req), started = std::chrono::steady_clock::now()](
                         reply_handle h) mutable { start(std::move(req), std::move(h), started); };
        break;
      }
    }
    return step;
  }

  std::string internal_error_reply() const override { return std::string(err_internal); }

 private:
  // Appends the redirect to the known leader, or ERR_INTERNAL when there is none or it
  // has no CS733 address.
  static void redirect(const std::optional<member_address>& leader, std::string& out) {
    const auto address = leader ? base::split_host_port(leader->cs733) : std::nullopt;
    if (!address) {
      out += err_internal;
      return;
    }
    out += "ERR_REDIRECT ";
    out += address->host;
    out += ' ';
    out += address->port;
    out += "\r\n";
  }

  // docs/cs733.md: only the leader answers. Returns true if this node may serve the request;
  // otherwise the reply (redirect or ERR_INTERNAL) has been appended.
  asio::awaitable<bool> ensure_leader(std::string& out) {
    if (service_.is_leader()) co_return true;
    auto leader = service_.leader();
    if (!leader) {
      leader = co_await service_.wait_for_leader(options_.leader_wait);
      if (service_.is_leader()) co_return true;
    }
    redirect(leader, out);
    co_return false;
  }

  // Appends the reply for a failed service call.
  void service_failure(service_error e, std::string& out) {
    if (e == service_error::not_leader) {
      redirect(service_.leader(), out);
    } else {
      out += err_internal;
    }
  }

  // Runs a request once the connection's ordering rules allow; `started` is when it was
  // parsed. On the leader (the common case) the request completes through the service's
  // callback, with no coroutine. Elsewhere it takes the coroutine path, which may wait for a
  // leader to be known before it redirects.
  void start(cs::request req, reply_handle h, std::chrono::steady_clock::time_point started) {
    if (!service_.is_leader()) {
      asio::co_spawn(executor_, execute_elsewhere(std::move(req), std::move(h), started),
                     asio::detached);
      return;
    }
    if (is_read(req)) {
      service_.start_linearizable_read(
          [this, req = std::move(req), h = std::move(h), started](const read_view& view) mutable {
            std::string out;
            const bool ok = answer_read(req, view, out);
            observe(req, ok, started);
            h.finish(std::move(out));
          });
      return;
    }
    // The command first: the callback below takes the request over.
    kv::command cmd = to_command(req);
    service_.start_write(std::move(cmd), [this, req = std::move(req), h = std::move(h),
                                          started](const write_reply& reply) mutable {
      std::string out;
      const bool ok = answer_write(req, reply, out);
      observe(req, ok, started);
      h.finish(std::move(out));
    });
  }

  // The coroutine path: redirect (after waiting for a leader when none is known), or serve
  // if this node has become the leader meanwhile.
  asio::awaitable<void> execute_elsewhere(cs::request req, reply_handle h,
                                          std::chrono::steady_clock::time_point started) {
    std::string out;
    try {
      bool ok = false;
      if (co_await ensure_leader(out)) {
        if (is_read(req)) {
          const read_view view = co_await service_.linearizable_read();
          ok = answer_read(req, view, out);
        } else {
          const write_reply reply = co_await service_.write(to_command(req));
          ok = answer_write(req, reply, out);
        }
      }
      observe(req, ok, started);
    } catch (const std::exception& e) {
      base::log(base::log_level::error, "request failed: ", e.what());
      out = err_internal;
    }
    h.finish(std::move(out));
  }

  static bool is_read(const cs::request& req) {
    return req.kind == cs::command_kind::get || req.kind == cs::command_kind::getm;
  }

  void observe(const cs::request& req, bool ok, std::chrono::steady_clock::time_point started) {
    service_.metrics().observe_request(door::cs733, cs::to_string(req.kind), ok,
                                       std::chrono::steady_clock::now() - started);
  }

  // Appends the reply of a get/getm made through `view`; false when it failed.
  bool answer_read(const cs::request& req, const read_view& view, std::string& out) {
    if (!view.ok()) {
      service_failure(view.error(), out);
      return false;
    }
    auto item = view.find(req.key);
    if (!item) {
      out += err_not_found;
      return true;
    }
    out += "VALUE ";
    if (req.kind == cs::command_kind::getm) {
      out += std::to_string(item->version);
      out += ' ';
      out += std::to_string(seconds_left(item->expires_at_ms, view.now_ms()));
      out += ' ';
    }
    out += std::to_string(item->value.size());
    out += "\r\n";
    out += item->value;
    out += "\r\n";
    return true;
  }

  static kv::command to_command(const cs::request& req) {
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
    return cmd;
  }

  // Appends the reply of a set/cas/delete; false when it failed.
  bool answer_write(const cs::request& req, const write_reply& reply, std::string& out) {
    if (reply.error != service_error::none) {
      service_failure(reply.error, out);
      return false;
    }
    switch (reply.result.code) {
      case kv::status::stored:
        if (!req.noreply) out += "OK " + std::to_string(reply.result.version) + "\r\n";
        return true;
      case kv::status::deleted:
        out += "DELETED\r\n";
        return true;
      case kv::status::not_found:
        out += err_not_found;
        return true;
      case kv::status::exists:
        out += err_version;
        return true;
      case kv::status::too_large:
      case kv::status::bad_command:
        out += err_cmd;
        return false;
      default:
        out += err_internal;  // out_of_memory and anything unexpected
        return false;
    }
  }

  kv_service& service_;
  const cs733_options& options_;
  asio::any_io_executor executor_;
  cs::parser_limits limits_;
};

}  // namespace

asio::awaitable<void> run_cs733_session(tcp::socket& socket, kv_service& service,
                                        const cs733_options& options) {
  protocol p(service, options, socket.get_executor());
  co_await run_text_session(socket, p, options.pipeline);
}

cs733_server::cs733_server(asio::io_context& io, kv_service& service, cs733_options options)
    : options_(std::make_shared<const cs733_options>(std::move(options))),
      listener_(io,
                listener_options{.which = door::cs733,
                                 .max_connections = service.request_limits().max_connections,
                                 .refusal = "ERR_INTERNAL\r\n"},
                &service.metrics(), [&service, opts = options_](tcp::socket& socket) {
                  return run_cs733_session(socket, service, *opts);
                }) {}

}  // namespace net
