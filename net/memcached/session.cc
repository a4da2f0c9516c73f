#include "net/memcached/session.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <string_view>

#include "kv/store.h"
#include "net/memcached/parser.h"
#include "net/metrics.h"
#include "net/service.h"

namespace net {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace mc = net::memcached;

namespace {

constexpr std::string_view memcached_compat_version = "1.6.18";
// Flush replies once this much is pending even if more requests are queued, so a long
// pipeline of gets does not build an unbounded reply.
constexpr std::size_t flush_threshold_bytes = 64 * 1024;

std::string_view server_error(service_error e) {
  switch (e) {
    case service_error::timeout: return "SERVER_ERROR timeout, outcome unknown\r\n";
    case service_error::no_leader: return "SERVER_ERROR no leader\r\n";
    case service_error::not_leader: return "SERVER_ERROR not leader\r\n";
    case service_error::stopped: return "SERVER_ERROR shutting down\r\n";
    case service_error::unavailable: return "SERVER_ERROR unavailable\r\n";
    case service_error::none: break;
  }
  return "SERVER_ERROR internal error\r\n";
}

// The reply to a replicated write, by its kv status.
std::string_view status_reply(kv::status s) {
  switch (s) {
    case kv::status::stored: return "STORED\r\n";
    case kv::status::not_stored: return "NOT_STORED\r\n";
    case kv::status::exists: return "EXISTS\r\n";
    case kv::status::not_found: return "NOT_FOUND\r\n";
    case kv::status::deleted: return "DELETED\r\n";
    case kv::status::touched: return "TOUCHED\r\n";
    case kv::status::ok: return "OK\r\n";
    case kv::status::non_numeric:
      return "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
    case kv::status::too_large: return "SERVER_ERROR object too large for cache\r\n";
    case kv::status::out_of_memory: return "SERVER_ERROR out of memory storing object\r\n";
    case kv::status::bad_command: return "CLIENT_ERROR bad command line format\r\n";
    case kv::status::number:
    case kv::status::item: break;  // formatted by the caller
  }
  return "SERVER_ERROR internal error\r\n";
}

kv::op write_op(mc::command_kind k) {
  switch (k) {
    case mc::command_kind::set: return kv::op::set;
    case mc::command_kind::add: return kv::op::add;
    case mc::command_kind::replace: return kv::op::replace;
    case mc::command_kind::append: return kv::op::append;
    case mc::command_kind::prepend: return kv::op::prepend;
    case mc::command_kind::cas: return kv::op::cas;
    case mc::command_kind::remove: return kv::op::remove;
    case mc::command_kind::incr: return kv::op::incr;
    case mc::command_kind::decr: return kv::op::decr;
    case mc::command_kind::touch: return kv::op::touch;
    case mc::command_kind::flush_all: return kv::op::flush_all;
    default: break;
  }
  return kv::op::set;
}

void append_value(std::string& out, std::string_view key, const kv::item_view& item,
                  bool with_cas) {
  out += "VALUE ";
  out += key;
  out += ' ';
  out += std::to_string(item.flags);
  out += ' ';
  out += std::to_string(item.value.size());
  if (with_cas) {
    out += ' ';
    out += std::to_string(item.version);
  }
  out += "\r\n";
  out += item.value;
  out += "\r\n";
}

void append_stat(std::string& out, std::string_view name, const auto& value) {
  out += "STAT ";
  out += name;
  out += ' ';
  if constexpr (std::is_convertible_v<decltype(value), std::string_view>) {
    out += std::string_view(value);
  } else {
    out += std::to_string(value);
  }
  out += "\r\n";
}

class session {
 public:
  session(tcp::socket& socket, kv_service& service, const memcached_options& options)
      : socket_(socket), service_(service), options_(options) {
    const auto& l = service.request_limits();
    limits_.max_key_bytes = l.max_key_bytes;
    limits_.max_value_bytes = l.max_value_bytes;
    limits_.max_line_bytes = options.max_line_bytes;
    limits_.max_get_line_bytes = options.max_get_line_bytes;
  }

  asio::awaitable<void> run() {
    bool closing = false;
    for (;;) {
      while (!closing) {
        if (in_.skipping()) break;  // the rest of a refused data block is still coming
        auto r = mc::parse(in_.view(), limits_);
        if (r.what == mc::outcome::need_more) break;
        in_.consume(std::min(r.consumed, in_.size()));
        in_.skip(r.discard);
        switch (r.what) {
          case mc::outcome::request:
            co_await execute(r.req, closing);
            break;
          case mc::outcome::reply:
            if (r.discard > 0 && r.req.kind == mc::command_kind::set && !r.req.keys.empty()) {
              co_await drop_stale_value(r.req.keys.front());
            }
            out_ += r.reply;
            break;
          case mc::outcome::close:
            out_ += r.reply;
            closing = true;
            break;
          case mc::outcome::need_more:
            break;
        }
        if (out_.size() >= flush_threshold_bytes) {
          const bool sent = co_await flush();
          if (!sent) co_return;
        }
        if (broken_) co_return;
      }
      const bool sent = co_await flush();
      if (!sent || closing) co_return;
      const std::size_t n = co_await in_.read_some(socket_);
      if (n == 0) co_return;
      service_.metrics().reads().bytes_read += n;
    }
  }

 private:
  // Sends the pending replies. Once a write has failed the connection is dead: later
  // calls fail at once and the session ends at its next check.
  asio::awaitable<bool> flush() {
    bool ok = false;
    if (broken_) {
      out_.clear();
    } else {
      service_.metrics().reads().bytes_written += out_.size();
      ok = co_await write_all(socket_, out_);
      broken_ = !ok;
    }
    co_return ok;
  }

  // A set refused as too large deletes the key's old value, as memcached does, so a
  // client whose update failed does not go on reading the value it meant to replace. The
  // client hears only "too large"; a failure of this delete is not reported.
  asio::awaitable<void> drop_stale_value(const std::string& key) {
    kv::command cmd;
    cmd.kind = kv::op::remove;
    cmd.key = key;
    co_await service_.write(std::move(cmd));
  }

  void emit(const mc::request& req, std::string_view text) {
    if (!req.noreply) out_ += text;
  }

  asio::awaitable<void> execute(const mc::request& req, bool& closing) {
    const auto started = std::chrono::steady_clock::now();
    bool ok = true;
    switch (req.kind) {
      case mc::command_kind::get:
      case mc::command_kind::gets:
        ok = co_await get(req);
        break;
      case mc::command_kind::gat:
      case mc::command_kind::gats:
        ok = co_await get_and_touch(req);
        break;
      case mc::command_kind::version:
        out_ += "VERSION ";
        out_ += memcached_compat_version;
        out_ += "-raftkv-";
        out_ += options_.version;
        out_ += "\r\n";
        break;
      case mc::command_kind::verbosity:
        emit(req, "OK\r\n");
        break;
      case mc::command_kind::stats:
        stats();
        break;
      case mc::command_kind::stats_reset:
        // Only this node's read counters can be reset; the write counters are part of
        // the replicated state.
        service_.metrics().reads() = {};
        out_ += "RESET\r\n";
        break;
      case mc::command_kind::meta_noop:
        out_ += "MN\r\n";
        break;
      case mc::command_kind::quit:
        closing = true;
        break;
      default:
        ok = co_await write(req);
        break;
    }
    service_.metrics().observe_request(door::memcached, mc::to_string(req.kind), ok,
                                       std::chrono::steady_clock::now() - started);
  }

  asio::awaitable<bool> write(const mc::request& req) {
    kv::command cmd;
    cmd.kind = write_op(req.kind);
    if (!req.keys.empty()) cmd.key = req.keys.front();
    cmd.value = req.value;
    cmd.flags = req.flags;
    cmd.exptime = req.exptime;
    cmd.kind_of_expiry = kv::expiry_kind::memcached;
    cmd.cas_unique = req.cas_unique;
    cmd.delta = req.delta;
    cmd.delay_s = req.delay_s;
    const auto reply = co_await service_.write(std::move(cmd));
    if (reply.error != service_error::none) {
      emit(req, server_error(reply.error));
      co_return false;
    }
    const auto code = reply.result.code;
    if (code == kv::status::number) {
      emit(req, std::to_string(reply.result.number) + "\r\n");
    } else {
      emit(req, status_reply(code));
    }
    co_return code != kv::status::out_of_memory && code != kv::status::too_large &&
        code != kv::status::bad_command;
  }

  // Appends one VALUE block. A multi-get of many large values is sent as it is produced, so
  // the reply buffer stays bounded by one value plus the flush threshold.
  asio::awaitable<bool> add_hit(std::string_view key, const kv::item_view& item, bool with_cas) {
    ++service_.metrics().reads().get_hits;
    append_value(out_, key, item, with_cas);
    if (out_.size() < flush_threshold_bytes) co_return true;
    const bool sent = co_await flush();
    co_return sent;
  }

  asio::awaitable<bool> get(const mc::request& req) {
    auto& reads = service_.metrics().reads();
    reads.cmd_get += req.keys.size();
    const auto barrier = co_await service_.read_barrier();
    if (barrier != service_error::none) {
      out_ += server_error(barrier);
      co_return false;
    }
    const bool with_cas = req.kind == mc::command_kind::gets;
    const auto now_ms = service_.now_ms();
    for (const auto& key : req.keys) {
      if (auto item = service_.store().find(key, now_ms)) {
        const bool sent = co_await add_hit(key, *item, with_cas);
        if (!sent) co_return false;
      } else {
        ++reads.get_misses;
      }
    }
    out_ += "END\r\n";
    co_return true;
  }

  asio::awaitable<bool> get_and_touch(const mc::request& req) {
    auto& reads = service_.metrics().reads();
    const bool with_cas = req.kind == mc::command_kind::gats;
    for (const auto& key : req.keys) {
      ++reads.cmd_get;
      kv::command cmd;
      cmd.kind = kv::op::get_and_touch;
      cmd.key = key;
      cmd.exptime = req.exptime;
      cmd.kind_of_expiry = kv::expiry_kind::memcached;
      const auto reply = co_await service_.write(std::move(cmd));
      if (reply.error != service_error::none) {
        out_ += server_error(reply.error);
        co_return false;
      }
      if (reply.result.code == kv::status::item && reply.result.item) {
        const bool sent = co_await add_hit(key, *reply.result.item, with_cas);
        if (!sent) co_return false;
      } else {
        ++reads.get_misses;
      }
    }
    out_ += "END\r\n";
    co_return true;
  }

  void stats() {
    const auto& store = service_.store();
    const auto& s = store.stats();
    const auto& reads = service_.metrics().reads();
    const auto& m = service_.metrics();
    const auto node = service_.status();
    const auto uptime_s = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now() - options_.started)
                              .count();
    const std::string version =
        std::string(memcached_compat_version) + "-raftkv-" + options_.version;
    append_stat(out_, "pid", static_cast<std::int64_t>(::getpid()));
    append_stat(out_, "uptime", static_cast<std::int64_t>(uptime_s));
    append_stat(out_, "time", service_.now_ms() / 1000);
    append_stat(out_, "version", version);
    append_stat(out_, "pointer_size", sizeof(void*) * 8);
    append_stat(out_, "curr_connections", m.current_connections(door::memcached));
    append_stat(out_, "total_connections", m.total_connections(door::memcached));
    append_stat(out_, "cmd_get", reads.cmd_get);
    append_stat(out_, "cmd_set", s.cmd_set);
    append_stat(out_, "cmd_flush", s.cmd_flush);
    append_stat(out_, "cmd_touch", s.cmd_touch);
    append_stat(out_, "get_hits", reads.get_hits);
    append_stat(out_, "get_misses", reads.get_misses);
    append_stat(out_, "delete_misses", s.delete_misses);
    append_stat(out_, "delete_hits", s.delete_hits);
    append_stat(out_, "incr_misses", s.incr_misses);
    append_stat(out_, "incr_hits", s.incr_hits);
    append_stat(out_, "decr_misses", s.decr_misses);
    append_stat(out_, "decr_hits", s.decr_hits);
    append_stat(out_, "cas_misses", s.cas_misses);
    append_stat(out_, "cas_hits", s.cas_hits);
    append_stat(out_, "cas_badval", s.cas_badval);
    append_stat(out_, "touch_hits", s.touch_hits);
    append_stat(out_, "touch_misses", s.touch_misses);
    append_stat(out_, "bytes_read", reads.bytes_read);
    append_stat(out_, "bytes_written", reads.bytes_written);
    append_stat(out_, "limit_maxbytes", store.options().max_memory_bytes);
    append_stat(out_, "threads", 1);
    append_stat(out_, "curr_items", s.curr_items);
    append_stat(out_, "total_items", s.total_items);
    append_stat(out_, "bytes", s.bytes);
    append_stat(out_, "raft_role", node.role.empty() ? std::string("unknown") : node.role);
    append_stat(out_, "raft_term", node.term);
    append_stat(out_, "raft_leader", node.leader_id);
    append_stat(out_, "raft_commit_index", node.commit_index);
    out_ += "END\r\n";
  }

  tcp::socket& socket_;
  kv_service& service_;
  const memcached_options& options_;
  mc::parser_limits limits_;
  input_buffer in_;
  std::string out_;
  bool broken_ = false;  // a write failed: the peer is gone
};

}  // namespace

asio::awaitable<void> run_memcached_session(tcp::socket& socket, kv_service& service,
                                            const memcached_options& options) {
  session s(socket, service, options);
  co_await s.run();
}

memcached_server::memcached_server(asio::io_context& io, kv_service& service,
                                   memcached_options options)
    : options_(std::make_shared<const memcached_options>(std::move(options))),
      listener_(io,
                listener_options{.which = door::memcached,
                                 .max_connections = service.request_limits().max_connections,
                                 .refusal = "SERVER_ERROR too many open connections\r\n"},
                &service.metrics(),
                [&service, opts = options_](tcp::socket& socket) {
                  return run_memcached_session(socket, service, *opts);
                }) {}

}  // namespace net
