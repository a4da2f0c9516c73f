// The memcached door's protocol handler for the shared text session loop
// (net/text_session.h): executes parsed commands against kv_service and formats memcached's
// replies. Longer than ~600 lines on purpose: classic and meta commands, stats and
// authentication share the reply formatting and the read/write paths; each section is
// headed by a comment.
#include "net/memcached/session.h"

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <string_view>
#include <vector>

#include "kv/store.h"
#include "net/memcached/auth.h"
#include "net/memcached/parser.h"
#include "net/metrics.h"
#include "net/service.h"
#include "net/text_session.h"

namespace net {

namespace asio = boost::asio;
using asio::ip::tcp;
namespace mc = net::memcached;

// See session.h. Everything here is this node's own, never replicated.
struct memcached_node_state {
  // Per-key access history for mg h/l and me: memcached keeps it in the item (ITEM_FETCHED,
  // ITEM_ACTIVE, it->time); here it is this node's, for an item version (a new version is a
  // new item, as memcached's set makes a new item). A fixed table of `slots` entries, slot
  // chosen by a hash of the key, allocated at the first read: every get records a fetch,
  // and a hash table of keys cost 3-4% of the leader's event loop under a load of gets
  // (bench/README-profile.md, "Lookups"); this costs one hash and one load. A key whose
  // slot another key took since reads as never fetched, accessed now.
  struct access {
    std::uint64_t key_hash = 0;  // of the key this slot describes (never 0 once used)
    std::uint64_t version = 0;
    std::int64_t last_s = 0;  // node-local seconds of the last access that moved it
    bool fetched = false;
    bool active = false;
  };
  static constexpr std::size_t slots = 65536;
  std::vector<access> accesses;

  // Counters of this node (stats), reset by `stats reset`.
  std::uint64_t cmd_meta = 0;
  std::uint64_t store_too_large = 0;
  std::uint64_t store_no_memory = 0;
  std::uint64_t auth_cmds = 0;    // credentials checked ([memcached] auth_file)
  std::uint64_t auth_errors = 0;  // of which did not match
  // The replicated counters as they were at this node's last `stats reset`: stats shows
  // the difference, so a reset on one node changes only that node's view.
  kv::store_stats baseline;

  static std::int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  // The entry for the item (created, or reset when the item changed since).
  access& entry(std::string_view key, std::uint64_t version) {
    if (accesses.empty()) accesses.resize(slots);
    const std::uint64_t h = std::hash<std::string_view>{}(key);
    access& a = accesses[h & (slots - 1)];
    const std::uint64_t tag = h | 1;  // 0 marks a slot never used
    if (a.key_hash != tag || a.version != version) a = access{tag, version, now_s(), false, false};
    return a;
  }

  // memcached's do_item_bump: the first fetch marks the item fetched, the second makes
  // it active and moves its access time; later ones change nothing.
  void bump(std::string_view key, std::uint64_t version) {
    access& a = entry(key, version);
    if (a.active) return;
    if (!a.fetched) {
      a.fetched = true;
    } else {
      a.active = true;
      a.last_s = now_s();
    }
  }
};

namespace {

constexpr std::string_view memcached_compat_version = "1.6.18";
std::string_view server_error(service_error e) {
  switch (e) {
    case service_error::timeout:
      return "SERVER_ERROR timeout, outcome unknown\r\n";
    case service_error::no_leader:
      return "SERVER_ERROR no leader\r\n";
    case service_error::not_leader:
      return "SERVER_ERROR not leader\r\n";
    case service_error::stopped:
      return "SERVER_ERROR shutting down\r\n";
    case service_error::unavailable:
      return "SERVER_ERROR unavailable\r\n";
    case service_error::busy:
      return "SERVER_ERROR busy, try again\r\n";
    case service_error::none:
      break;
  }
  return "SERVER_ERROR internal error\r\n";
}

// The reply to a replicated write, by its kv status.
std::string_view status_reply(kv::status s) {
  switch (s) {
    case kv::status::stored:
      return "STORED\r\n";
    case kv::status::not_stored:
      return "NOT_STORED\r\n";
    case kv::status::exists:
      return "EXISTS\r\n";
    case kv::status::not_found:
      return "NOT_FOUND\r\n";
    case kv::status::deleted:
      return "DELETED\r\n";
    case kv::status::touched:
      return "TOUCHED\r\n";
    case kv::status::ok:
      return "OK\r\n";
    case kv::status::non_numeric:
      return "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
    case kv::status::too_large:
      return "SERVER_ERROR object too large for cache\r\n";
    case kv::status::out_of_memory:
      return "SERVER_ERROR out of memory storing object\r\n";
    case kv::status::bad_command:
      return "CLIENT_ERROR bad command line format\r\n";
    case kv::status::outcome_unknown:
      return "SERVER_ERROR timeout, outcome unknown\r\n";
    case kv::status::number:
    case kv::status::item:
      break;  // formatted by the caller
  }
  return "SERVER_ERROR internal error\r\n";
}

kv::op write_op(mc::command_kind k) {
  switch (k) {
    case mc::command_kind::set:
      return kv::op::set;
    case mc::command_kind::add:
      return kv::op::add;
    case mc::command_kind::replace:
      return kv::op::replace;
    case mc::command_kind::append:
      return kv::op::append;
    case mc::command_kind::prepend:
      return kv::op::prepend;
    case mc::command_kind::cas:
      return kv::op::cas;
    case mc::command_kind::remove:
      return kv::op::remove;
    case mc::command_kind::incr:
      return kv::op::incr;
    case mc::command_kind::decr:
      return kv::op::decr;
    case mc::command_kind::touch:
      return kv::op::touch;
    case mc::command_kind::flush_all:
      return kv::op::flush_all;
    default:
      break;
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

// memcached 1.6.18's default slab classes (chunk 48 + 48-byte header, factor 1.25, 8-byte
// alignment, the largest class is slab_chunk_max = item_size_max / 2): `me` reports the
// class an item of this size would live in.
unsigned slab_class(std::uint64_t item_bytes, std::uint64_t item_size_max) {
  const std::uint64_t chunk_max = item_size_max / 2;
  double size = 96;
  unsigned cls = 1;
  for (;; ++cls) {
    if (size >= static_cast<double>(chunk_max) / 1.25) break;
    auto aligned = static_cast<std::uint64_t>(size);
    if (aligned % 8 != 0) aligned += 8 - aligned % 8;
    if (item_bytes <= aligned) return cls;
    size = static_cast<double>(aligned) * 1.25;
  }
  return cls;
}

// memcached's ITEM_ntotal for an item with cas.
std::uint64_t item_total(std::size_t key_bytes, const kv::item_view& item) {
  return 48 + 8 + key_bytes + 1 + (item.flags != 0 ? 4 : 0) + item.value.size() + 2;
}

// Seconds left before the item expires, as memcached's t flag shows it (-1: never).
std::string ttl_text(std::int64_t expires_at_ms, std::int64_t now_ms) {
  if (expires_at_ms == 0) return "-1";
  const std::int64_t left = expires_at_ms - now_ms;
  return std::to_string(left <= 0 ? 0 : (left + 999) / 1000);
}

// The expiry a T/N token means at now_ms, for showing `t` between two TTL setters of one
// mg (the final expiry is the store's; this one was overwritten within the request).
std::int64_t approximate_expiry(std::string_view word, std::int64_t now_ms) {
  const std::int64_t ttl = std::strtoll(std::string(word.substr(1)).c_str(), nullptr, 10);
  if (ttl == 0) return 0;
  if (ttl < 0) return now_ms;
  if (ttl > 60 * 60 * 24 * 30) return ttl * 1000;
  return now_ms + ttl * 1000;
}

// The key as meta replies show it: base64 plus " b" for a binary key.
void append_meta_key(std::string& out, std::string_view key, bool binary) {
  out += " k";
  if (binary) {
    out += mc::base64_encode(key);
    out += " b";
  } else {
    out += key;
  }
}

// The O and k flags, which every meta reply echoes.
void append_opaque_and_key(std::string& out, const mc::request& req, bool binary_key) {
  for (const auto& f : req.meta.flags) {
    if (f.name == 'O') {
      out += ' ';
      out += f.word;
    } else if (f.name == 'k') {
      append_meta_key(out, req.keys.front(), binary_key);
    }
  }
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

// The memcached side of a text connection: turns parser results into steps of the shared
// loop (net/text_session.h) and runs requests through the kv_service.
class protocol final : public text_protocol {
 public:
  protocol(kv_service& service, const memcached_options& options,
           std::shared_ptr<memcached_node_state> state)
      : service_(service), options_(options), state_(std::move(state)) {
    const auto& l = service.request_limits();
    limits_.max_key_bytes = l.max_key_bytes;
    limits_.max_value_bytes = l.max_value_bytes;
    limits_.max_line_bytes = options.max_line_bytes;
    limits_.max_get_line_bytes = options.max_get_line_bytes;
  }

  text_step parse(std::string_view input) override {
    // [memcached] auth_file: nothing but the authentication `set` is served until it
    // succeeds (net/memcached/auth.h). Parsing is sequential, so a pipelined request after
    // the credential already sees the connection authenticated.
    if (!authenticated_) return authenticate(input);
    if (skipping_line_) {
      // The rest of a get line over the bound: dropped up to its '\n', answering nothing.
      text_step skip;
      skip.what = text_step::kind::reply;
      const auto newline = input.find('\n');
      skip.consumed = newline == std::string_view::npos ? input.size() : newline + 1;
      if (newline != std::string_view::npos) skipping_line_ = false;
      if (skip.consumed == 0) skip.what = text_step::kind::need_more;
      return skip;
    }
    auto r = mc::parse(input, limits_);
    skipping_line_ = r.skip_line;
    text_step step;
    step.consumed = r.consumed;
    step.discard = r.discard;
    switch (r.what) {
      case mc::outcome::need_more:
        step.what = text_step::kind::need_more;
        break;
      case mc::outcome::close:
        step.what = text_step::kind::close;
        step.reply = std::move(r.reply);
        break;
      case mc::outcome::reply:
        if (r.discard > 0 && !r.req.keys.empty()) ++state_->store_too_large;
        if (r.discard > 0 && !r.req.keys.empty() &&
            (r.req.kind == mc::command_kind::set || r.req.kind == mc::command_kind::meta_set)) {
          // A value refused as too large: its reply keeps its place, after the delete of
          // the old value (a write, ordered like one).
          step.what = text_step::kind::call;
          step.order = access::write;
          step.call = [this, key = std::move(r.req.keys.front()),
                       reply = std::move(r.reply)](reply_sink& out) -> asio::awaitable<void> {
            co_await drop_stale_value(key);
            out.text() += reply;
          };
        } else {
          step.what = text_step::kind::reply;
          step.reply = std::move(r.reply);
        }
        break;
      case mc::outcome::request:
        request_step(std::move(r.req), step);
        break;
    }
    return step;
  }

  std::string internal_error_reply() const override { return "SERVER_ERROR internal error\r\n"; }

  text_step authenticate(std::string_view input) {
    auto r = mc::parse_auth(input, options_.auth_users);
    text_step step;
    step.consumed = r.consumed;
    step.discard = r.discard;
    step.reply = std::move(r.reply);
    step.what = r.what == mc::auth_result::kind::need_more ? text_step::kind::need_more
                : r.what == mc::auth_result::kind::close   ? text_step::kind::close
                                                           : text_step::kind::reply;
    authenticated_ = r.authenticated;
    if (r.checked) {
      ++state_->auth_cmds;
      if (!r.authenticated) ++state_->auth_errors;
    }
    return step;
  }
  void count_bytes_read(std::size_t n) override { service_.metrics().reads().bytes_read += n; }
  void count_bytes_written(std::size_t n) override {
    service_.metrics().reads().bytes_written += n;
  }

 private:
  // Requests that need nothing from the service are answered at once; the others become
  // calls, ordered as reads (they look at the store or its counters) or writes.
  void request_step(mc::request req, text_step& step) {
    switch (req.kind) {
      case mc::command_kind::version:
        step.what = text_step::kind::reply;
        step.reply = "VERSION ";
        step.reply += memcached_compat_version;
        step.reply += "-raftkv-";
        step.reply += options_.version;
        step.reply += "\r\n";
        observe(req.kind, true, std::chrono::steady_clock::now());
        return;
      case mc::command_kind::verbosity:
        step.what = text_step::kind::reply;
        if (!req.noreply) step.reply = "OK\r\n";
        observe(req.kind, true, std::chrono::steady_clock::now());
        return;
      case mc::command_kind::meta_noop:
        ++state_->cmd_meta;
        step.what = text_step::kind::reply;
        step.reply = "MN\r\n";
        observe(req.kind, true, std::chrono::steady_clock::now());
        return;
      case mc::command_kind::meta_get:
      case mc::command_kind::meta_debug:
        // A read, unless mg asks for a change (T, N, R): then a write, so the connection's
        // later reads see it. A plain mg that wins a stale item's token writes from inside
        // its read (the connection's later writes still wait for it).
        ++state_->cmd_meta;
        step.order =
            req.meta.has_ttl || req.meta.vivify || req.meta.recache ? access::write : access::read;
        break;
      case mc::command_kind::meta_set:
      case mc::command_kind::meta_delete:
      case mc::command_kind::meta_arithmetic:
        ++state_->cmd_meta;
        step.order = access::write;
        break;
      case mc::command_kind::quit:
        step.what = text_step::kind::close;
        observe(req.kind, true, std::chrono::steady_clock::now());
        return;
      case mc::command_kind::get:
      case mc::command_kind::gets:
        // One key: the reply is bounded by one value and needs no spill, so it completes
        // through the service's callback (a client pipelining gets).
        if (req.keys.size() == 1) return callback_step(std::move(req), access::read, step);
        step.order = access::read;
        break;
      case mc::command_kind::stats:
      case mc::command_kind::stats_reset:
      case mc::command_kind::stats_settings:
      case mc::command_kind::stats_items:
      case mc::command_kind::stats_slabs:
        step.order = access::read;
        break;
      case mc::command_kind::gat:
      case mc::command_kind::gats:  // a replicated get_and_touch per key
      case mc::command_kind::cache_memlimit:
        step.order = access::write;
        break;
      default:
        // A plain write: one replicated command and a one-line reply, completed through the
        // service's callback (the path of a streaming client).
        return callback_step(std::move(req), access::write, step);
    }
    step.what = text_step::kind::call;
    // Not a coroutine itself: it hands back execute()'s, which refers to the request held
    // here (the loop keeps this callable alive until the call has finished). One coroutine
    // frame less per request.
    step.call = [this, req = std::move(req), started = std::chrono::steady_clock::now()](
                    reply_sink& out) mutable -> asio::awaitable<void> {
      return execute(req, out, started);
    };
  }

  // A request answered from a service callback (start_get, start_write): no coroutine
  // frame, no co_spawn (net/text_session.h, text_step::kind::start).
  void callback_step(mc::request req, access order, text_step& step) {
    step.what = text_step::kind::start;
    step.order = order;
    step.start = [this, req = std::move(req),
                  started = std::chrono::steady_clock::now()](reply_handle h) mutable {
      if (req.kind == mc::command_kind::get || req.kind == mc::command_kind::gets) {
        start_get(req, std::move(h), started);
      } else {
        start_write(req, std::move(h), started);
      }
    };
  }

  void observe(mc::command_kind kind, bool ok, std::chrono::steady_clock::time_point started) {
    service_.metrics().observe_request(door::memcached, mc::to_string(kind), ok,
                                       std::chrono::steady_clock::now() - started);
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

  static void emit(const mc::request& req, reply_sink& out, std::string_view text) {
    if (!req.noreply) out.text() += text;
  }

  // `started` is when the request was parsed: its latency includes waiting behind the
  // connection's earlier requests. Runs once per request, which it may consume (a write
  // moves its key and value into the command).
  asio::awaitable<void> execute(mc::request& req, reply_sink& out,
                                std::chrono::steady_clock::time_point started) {
    bool ok = true;
    switch (req.kind) {
      case mc::command_kind::get:
      case mc::command_kind::gets:
        ok = co_await get(req, out);
        break;
      case mc::command_kind::gat:
      case mc::command_kind::gats:
        ok = co_await get_and_touch(req, out);
        break;
      case mc::command_kind::stats:
        stats(out.text());
        break;
      case mc::command_kind::stats_reset:
        // This node's own counters are zeroed; the replicated ones cannot be, so this node
        // keeps a baseline and shows the counts since it (docs/memcached.md).
        service_.metrics().reads() = {};
        state_->cmd_meta = 0;
        state_->store_too_large = 0;
        state_->store_no_memory = 0;
        state_->auth_cmds = 0;
        state_->auth_errors = 0;
        state_->baseline = service_.store_stats();
        out.text() += "RESET\r\n";
        break;
      case mc::command_kind::stats_settings:
        stats_settings(out.text());
        break;
      case mc::command_kind::stats_items:
        stats_items(out.text());
        break;
      case mc::command_kind::stats_slabs:
        stats_slabs(out.text());
        break;
      case mc::command_kind::cache_memlimit:
        ok = co_await memlimit(req, out);
        break;
      case mc::command_kind::meta_get:
        ok = co_await meta_get(req, out);
        break;
      case mc::command_kind::meta_debug:
        ok = co_await meta_debug(req, out);
        break;
      case mc::command_kind::meta_set:
        ok = co_await meta_set(req, out);
        break;
      case mc::command_kind::meta_delete:
        ok = co_await meta_delete(req, out);
        break;
      case mc::command_kind::meta_arithmetic:
        ok = co_await meta_arithmetic(req, out);
        break;
      default:
        // Plain writes are started without a coroutine (request_step) and never come here.
        out.text() += internal_error_reply();
        ok = false;
        break;
    }
    observe(req.kind, ok, started);
  }

  // A plain write (set, add, replace, append, prepend, cas, delete, incr, decr, touch,
  // flush_all). Consumes the request's key and value (moved into the command, not copied).
  // `h` is answered from the service's callback, which may run before this returns or
  // inside the node's drive loop: it only formats the reply and counts.
  void start_write(mc::request& req, reply_handle h,
                   std::chrono::steady_clock::time_point started) {
    kv::command cmd;
    cmd.kind = write_op(req.kind);
    if (!req.keys.empty()) cmd.key = std::move(req.keys.front());
    cmd.value = std::move(req.value);
    cmd.flags = req.flags;
    cmd.exptime = req.exptime;
    cmd.kind_of_expiry = kv::expiry_kind::memcached;
    cmd.cas_unique = req.cas_unique;
    cmd.delta = req.delta;
    cmd.delay_s = req.delay_s;
    service_.start_write(
        std::move(cmd), [this, h = std::move(h), kind = req.kind, noreply = req.noreply,
                         started](net::write_reply reply) mutable {
          std::string text;
          bool ok = false;
          if (reply.error != service_error::none) {
            text = server_error(reply.error);
          } else {
            const auto code = reply.result.code;
            if (code == kv::status::out_of_memory) ++state_->store_no_memory;
            text = code == kv::status::number ? std::to_string(reply.result.number) + "\r\n"
                                              : std::string(status_reply(code));
            ok = code != kv::status::out_of_memory && code != kv::status::too_large &&
                 code != kv::status::bad_command && code != kv::status::outcome_unknown;
          }
          observe(kind, ok, started);
          h.finish(noreply ? std::string() : std::move(text));
        });
  }

  // Appends one VALUE block. A multi-get of many large values is sent as it is produced
  // (reply_sink::spill), so the reply stays bounded by one value plus the spill threshold.
  asio::awaitable<bool> add_hit(reply_sink& out, std::string_view key, const kv::item_view& item,
                                bool with_cas) {
    ++service_.metrics().reads().get_hits;
    append_value(out.text(), key, item, with_cas);
    const bool sent = co_await out.spill();
    co_return sent;
  }

  asio::awaitable<bool> get(const mc::request& req, reply_sink& out) {
    service_.metrics().reads().cmd_get += req.keys.size();
    const read_view view = co_await service_.linearizable_read();
    if (!view.ok()) {
      out.text() += server_error(view.error());
      co_return false;
    }
    const bool with_cas = req.kind == mc::command_kind::gets;
    for (const auto& key : req.keys) {
      // find() copies the item: the view may move on while add_hit waits to send.
      if (auto item = view.find(key)) {
        state_->bump(key, item->version);
        const bool sent = co_await add_hit(out, key, *item, with_cas);
        if (!sent) co_return false;
      } else {
        count_miss(view.why_missing(key));
      }
    }
    out.text() += "END\r\n";
    co_return true;
  }

  // A get or gets of one key (request_step). Consumes the request's key.
  void start_get(mc::request& req, reply_handle h, std::chrono::steady_clock::time_point started) {
    ++service_.metrics().reads().cmd_get;
    service_.start_linearizable_read([this, h = std::move(h), key = std::move(req.keys.front()),
                                      kind = req.kind, started](const read_view& view) mutable {
      std::string out;
      if (!view.ok()) {
        out = server_error(view.error());
      } else {
        if (auto item = view.find(key)) {
          state_->bump(key, item->version);
          ++service_.metrics().reads().get_hits;
          append_value(out, key, *item, kind == mc::command_kind::gets);
        } else {
          count_miss(view.why_missing(key));
        }
        out += "END\r\n";
      }
      observe(kind, view.ok(), started);
      h.finish(std::move(out));
    });
  }

  // A get miss: memcached also counts those of an item that expired or was flushed.
  void count_miss(kv::miss_kind why) {
    auto& reads = service_.metrics().reads();
    ++reads.get_misses;
    switch (why) {
      case kv::miss_kind::expired:
        ++reads.get_expired;
        break;
      case kv::miss_kind::flushed:
        ++reads.get_flushed;
        break;
      case kv::miss_kind::absent:
        break;
    }
  }

  asio::awaitable<bool> get_and_touch(const mc::request& req, reply_sink& out) {
    const bool with_cas = req.kind == mc::command_kind::gats;
    for (const auto& key : req.keys) {
      ++service_.metrics().reads().cmd_get;
      kv::command cmd;
      cmd.kind = kv::op::get_and_touch;
      cmd.key = key;
      cmd.exptime = req.exptime;
      cmd.kind_of_expiry = kv::expiry_kind::memcached;
      const auto reply = co_await service_.write(std::move(cmd));
      if (reply.error != service_error::none) {
        out.text() += server_error(reply.error);
        co_return false;
      }
      if (reply.result.code == kv::status::item && reply.result.item) {
        const bool sent = co_await add_hit(out, key, *reply.result.item, with_cas);
        if (!sent) co_return false;
      } else {
        ++service_.metrics().reads().get_misses;
      }
    }
    out.text() += "END\r\n";
    co_return true;
  }

  // The reply to a write that failed in the service, or nullopt when it succeeded.
  static std::optional<std::string_view> failure(const write_reply& reply) {
    if (reply.error != service_error::none) return server_error(reply.error);
    return std::nullopt;
  }

  asio::awaitable<bool> memlimit(const mc::request& req, reply_sink& out) {
    // A replicated memory quota: every replica adopts it at the same index. It lasts until
    // a leader's configured max_memory_mb changes (kv/store.h, "Limits"). Only the quota
    // counts; the other two limits ride along because the payload always carries three.
    kv::store_options limits = service_.store_options();
    limits.max_memory_bytes = req.memlimit_mb << 20;
    const auto reply =
        co_await service_.write(kv::set_limits_command(limits, kv::limits_memory_quota));
    if (auto e = failure(reply)) {
      out.text() += *e;
      co_return false;
    }
    emit(req, out, "OK\r\n");
    co_return true;
  }

  // mg: a read, or one replicated meta_get when the item must change.
  asio::awaitable<bool> meta_get(const mc::request& req, reply_sink& out) {
    const auto& m = req.meta;
    const std::string& key = req.keys.front();
    bool must_write = m.has_ttl || m.vivify || m.recache;
    std::optional<kv::item_view> item;
    bool won = false;
    bool created = false;
    std::int64_t expiry_before = 0;
    std::int64_t now_ms = 0;
    auto miss = kv::miss_kind::absent;  // why a read found nothing
    if (!must_write) {
      const read_view view = co_await service_.linearizable_read();
      if (!view.ok()) {
        out.text() += server_error(view.error());
        co_return false;
      }
      item = view.find(key);
      if (!item) miss = view.why_missing(key);
      now_ms = view.now_ms();
      // The first reader of a stale item wins its recache token: a change of the item.
      if (item && (item->meta & kv::item_stale) && !(item->meta & kv::item_token_sent)) {
        must_write = true;
      }
    }
    if (must_write) {
      kv::command cmd;
      cmd.kind = kv::op::meta_get;
      cmd.key = key;
      cmd.kind_of_expiry = kv::expiry_kind::memcached;
      if (m.has_ttl) {
        cmd.flags |= kv::meta_has_ttl;
        cmd.exptime = m.ttl;
      }
      if (m.vivify) {
        cmd.flags |= kv::meta_vivify;
        cmd.delay_s = m.vivify_ttl;
        // On a vivified item the later of T and N sets the TTL, as memcached's flag walk.
        bool ttl_seen = false;
        for (const auto& f : m.flags) {
          if (f.name == 'T') ttl_seen = true;
          if (f.name == 'N' && ttl_seen) cmd.flags |= kv::meta_vivify_after_ttl;
        }
      }
      if (m.recache) {
        cmd.flags |= kv::meta_recache;
        cmd.cas_unique = static_cast<std::uint64_t>(static_cast<std::int64_t>(m.recache_ttl));
        bool ttl_seen = false;
        for (const auto& f : m.flags) {
          if (f.name == 'T') ttl_seen = true;
          if (f.name == 'R' && ttl_seen) cmd.flags |= kv::meta_recache_after_ttl;
        }
      }
      const auto reply = co_await service_.write(std::move(cmd));
      if (auto e = failure(reply)) {
        out.text() += *e;
        co_return false;
      }
      item = reply.result.item;
      won = (reply.result.number & kv::meta_won) != 0;
      created = (reply.result.number & kv::meta_created) != 0;
      expiry_before = static_cast<std::int64_t>(reply.result.version);
      now_ms = service_.wall_ms();
    }
    if (!m.has_ttl) {
      ++service_.metrics().reads().cmd_get;
      if (item) {
        ++service_.metrics().reads().get_hits;
      } else {
        count_miss(miss);
      }
    }
    if (!item) {
      if (!req.noreply) {
        std::string line = "EN";
        append_opaque_and_key(line, req, m.base64);
        out.text() += line + "\r\n";
      }
      co_return true;
    }
    // Access history as of before this fetch (memcached bumps after building the reply).
    const auto before = state_->entry(key, item->version);
    if (!must_write) expiry_before = item->expires_at_ms;
    // memcached sets the TTL while it walks the flags, so `t` shows the TTL as of its place
    // in the request: before T (and before N on a vivified item) the old one.
    std::int64_t shown_expiry = expiry_before;
    char last_setter = 0;
    for (const auto& f : m.flags) {
      if (f.name == 'T' || (f.name == 'N' && created)) last_setter = f.name;
    }
    std::string& o = out.text();
    if (m.value) {
      o += "VA ";
      o += std::to_string(item->value.size());
    } else {
      o += "HD";
    }
    for (const auto& f : m.flags) {
      switch (f.name) {
        case 's':
          o += " s" + std::to_string(item->value.size());
          break;
        case 'T':
        case 'N':
          if (f.name == 'N' && !created) break;
          shown_expiry =
              f.name == last_setter ? item->expires_at_ms : approximate_expiry(f.word, now_ms);
          break;
        case 't':
          o += " t" + ttl_text(shown_expiry, now_ms);
          break;
        case 'c':
          o += " c" + std::to_string(item->version);
          break;
        case 'f':
          o += " f" + std::to_string(item->flags);
          break;
        case 'l':
          o += " l" + std::to_string(memcached_node_state::now_s() - before.last_s);
          break;
        case 'h':
          o += before.fetched ? " h1" : " h0";
          break;
        case 'O':
          o += ' ';
          o += f.word;
          break;
        case 'k':
          append_meta_key(o, key, (item->meta & kv::item_key_binary) != 0);
          break;
        default:
          break;
      }
    }
    if ((item->meta & kv::item_token_sent) && !won) o += " Z";
    if (item->meta & kv::item_stale) o += " X";
    if (won) o += " W";
    o += "\r\n";
    if (m.value) {
      o += item->value;
      o += "\r\n";
    }
    if (!m.no_update) state_->bump(key, item->version);
    co_return co_await out.spill();
  }

  // me: memcached's debug line for an item, or EN.
  asio::awaitable<bool> meta_debug(const mc::request& req, reply_sink& out) {
    const read_view view = co_await service_.linearizable_read();
    if (!view.ok()) {
      out.text() += server_error(view.error());
      co_return false;
    }
    const std::string& key = req.keys.front();
    auto item = view.find(key);
    if (!item) {
      out.text() += "EN\r\n";
      co_return true;
    }
    const auto a = state_->entry(key, item->version);
    const std::uint64_t total = item_total(key.size(), *item);
    std::string& o = out.text();
    o += "ME ";
    o += (item->meta & kv::item_key_binary) ? mc::base64_encode(key) : key;
    o += " exp=";
    if (item->expires_at_ms == 0) {
      o += "-1";
    } else {
      o += std::to_string(-((item->expires_at_ms - view.now_ms() + 999) / 1000));
    }
    o += " la=" + std::to_string(memcached_node_state::now_s() - a.last_s);
    o += " cas=" + std::to_string(item->version);
    o += a.fetched ? " fetch=yes" : " fetch=no";
    o += " cls=" + std::to_string(slab_class(total, service_.request_limits().max_value_bytes));
    o += " size=" + std::to_string(total) + "\r\n";
    co_return true;
  }

  asio::awaitable<bool> meta_set(const mc::request& req, reply_sink& out) {
    const auto& m = req.meta;
    kv::command cmd;
    switch (m.mode) {
      case 'E':
        cmd.kind = kv::op::add;
        break;
      case 'A':
        cmd.kind = kv::op::append;
        break;
      case 'P':
        cmd.kind = kv::op::prepend;
        break;
      case 'R':
        cmd.kind = kv::op::replace;
        break;
      default:
        cmd.kind = kv::op::set;
        break;
    }
    if (m.has_cas) {
      // Set and replace with a cas are a cas; append/prepend compare a non-zero cas;
      // add ignores it (as memcached does).
      if (cmd.kind == kv::op::set || cmd.kind == kv::op::replace) cmd.kind = kv::op::cas;
      if (cmd.kind != kv::op::add) cmd.cas_unique = m.cas;
    }
    cmd.key = req.keys.front();
    cmd.value = req.value;
    cmd.flags = m.client_flags;
    cmd.exptime = m.has_ttl ? m.ttl : 0;
    cmd.kind_of_expiry = kv::expiry_kind::memcached;
    if (m.base64) cmd.delta |= kv::meta_key_binary;
    if (m.invalidate) cmd.delta |= kv::meta_invalidate;
    const auto reply = co_await service_.write(std::move(cmd));
    if (auto e = failure(reply)) {
      out.text() += *e;
      co_return false;
    }
    std::string line;
    switch (reply.result.code) {
      case kv::status::stored:
        if (req.noreply) co_return true;
        line = "HD";
        break;
      case kv::status::exists:
        line = "EX";
        break;
      case kv::status::not_found:
        line = "NF";
        break;
      case kv::status::not_stored:
        line = "NS";
        break;
      case kv::status::out_of_memory:
        ++state_->store_no_memory;
        [[fallthrough]];
      default:
        out.text() += status_reply(reply.result.code);
        co_return false;
    }
    for (const auto& f : m.flags) {
      if (f.name == 'O') {
        line += ' ';
        line += f.word;
      } else if (f.name == 'k') {
        append_meta_key(line, req.keys.front(), m.base64);
      } else if (f.name == 'c') {
        line += " c" + std::to_string(reply.result.version);
      }
    }
    out.text() += line + "\r\n";
    co_return true;
  }

  asio::awaitable<bool> meta_delete(const mc::request& req, reply_sink& out) {
    const auto& m = req.meta;
    kv::command cmd;
    cmd.kind = kv::op::meta_delete;
    cmd.key = req.keys.front();
    cmd.kind_of_expiry = kv::expiry_kind::memcached;
    if (m.has_cas) {
      cmd.flags |= kv::meta_has_cas;
      cmd.cas_unique = m.cas;
    }
    if (m.invalidate) cmd.flags |= kv::meta_stale_flag;
    if (m.has_ttl) {
      cmd.flags |= kv::meta_has_ttl;
      cmd.exptime = m.ttl;
    }
    const auto reply = co_await service_.write(std::move(cmd));
    if (auto e = failure(reply)) {
      out.text() += *e;
      co_return false;
    }
    std::string line;
    switch (reply.result.code) {
      case kv::status::deleted:
        if (req.noreply) co_return true;
        line = "HD";
        break;
      case kv::status::not_found:
        line = "NF";
        break;
      case kv::status::exists:
        line = "EX";
        break;
      default:
        out.text() += status_reply(reply.result.code);
        co_return false;
    }
    append_opaque_and_key(line, req, m.base64);
    out.text() += line + "\r\n";
    co_return true;
  }

  asio::awaitable<bool> meta_arithmetic(const mc::request& req, reply_sink& out) {
    const auto& m = req.meta;
    kv::command cmd;
    cmd.kind = kv::op::meta_arith;
    cmd.key = req.keys.front();
    cmd.kind_of_expiry = kv::expiry_kind::memcached;
    cmd.delta = m.delta;
    if (m.mode == 'D' || m.mode == '-') cmd.flags |= kv::meta_decr;
    if (m.has_cas) {
      cmd.flags |= kv::meta_has_cas;
      cmd.cas_unique = m.cas;
    }
    if (m.has_ttl) {
      cmd.flags |= kv::meta_has_ttl;
      cmd.exptime = m.ttl;
    }
    if (m.vivify) {
      cmd.flags |= kv::meta_vivify;
      cmd.delay_s = m.vivify_ttl;
      cmd.value = std::to_string(m.initial);
    }
    const auto reply = co_await service_.write(std::move(cmd));
    if (auto e = failure(reply)) {
      out.text() += *e;
      co_return false;
    }
    const auto& r = reply.result;
    std::string line;
    switch (r.code) {
      case kv::status::number:
      case kv::status::stored: {
        // Quiet mode hides an update, not a value created by N (as memcached does).
        if (req.noreply && r.code == kv::status::number) co_return true;
        const std::string number = std::to_string(r.number);
        line = m.value ? "VA " + std::to_string(number.size()) : std::string("HD");
        for (const auto& f : m.flags) {
          if (f.name == 'c') {
            line += " c" + std::to_string(r.version);
          } else if (f.name == 't' && r.item) {
            line += " t" + ttl_text(r.item->expires_at_ms, service_.wall_ms());
          } else if (f.name == 'O') {
            line += ' ';
            line += f.word;
          } else if (f.name == 'k') {
            append_meta_key(line, req.keys.front(), m.base64);
          }
        }
        if (m.value) line += "\r\n" + number;
        out.text() += line + "\r\n";
        co_return true;
      }
      case kv::status::not_found:
        line = "NF";
        break;
      case kv::status::exists:
        line = "EX";
        break;
      case kv::status::out_of_memory:
        ++state_->store_no_memory;
        out.text() += "SERVER_ERROR out of memory\r\n";
        co_return false;
      default:
        out.text() += status_reply(r.code);
        co_return false;
    }
    append_opaque_and_key(line, req, m.base64);
    out.text() += line + "\r\n";
    co_return true;
  }

  void stats_settings(std::string& out) {
    const auto& limits = service_.request_limits();
    append_stat(out, "maxbytes", service_.store_options().max_memory_bytes);
    append_stat(out, "maxconns", limits.max_connections);
    append_stat(out, "udpport", 0);
    append_stat(out, "verbosity", 0);
    append_stat(out, "oldest", 0);
    append_stat(out, "evictions", "off");  // nothing is ever evicted (SPEC: memory quota)
    append_stat(out, "growth_factor", "1.25");
    append_stat(out, "chunk_size", 48);
    append_stat(out, "num_threads", 1);
    append_stat(out, "cas_enabled", "yes");
    append_stat(out, "auth_enabled_sasl", "no");
    append_stat(out, "auth_enabled_ascii", options_.auth_users.empty() ? "no" : "yes");
    append_stat(out, "item_size_max", limits.max_value_bytes);
    append_stat(out, "slab_chunk_max", limits.max_value_bytes / 2);
    append_stat(out, "flush_enabled", "yes");
    append_stat(out, "idle_timeout", 0);
    append_stat(out, "key_size_max", limits.max_key_bytes);
    out += "END\r\n";
  }

  // raftkv keeps no slabs: `stats items` and `stats slabs` show one class holding every
  // item, with memcached's field names, so tools that read them find what they expect.
  void stats_items(std::string& out) {
    const auto& s = service_.store_stats();
    if (s.curr_items > 0) {
      append_stat(out, "items:1:number", s.curr_items);
      append_stat(out, "items:1:number_hot", 0);
      append_stat(out, "items:1:number_warm", 0);
      append_stat(out, "items:1:number_cold", s.curr_items);
      append_stat(out, "items:1:age_hot", 0);
      append_stat(out, "items:1:age_warm", 0);
      append_stat(out, "items:1:age", 0);
      append_stat(out, "items:1:mem_requested", s.bytes);
      for (std::string_view zero :
           {"evicted",        "evicted_nonzero",   "evicted_time",          "outofmemory",
            "tailrepairs",    "reclaimed",         "expired_unfetched",     "evicted_unfetched",
            "evicted_active", "crawler_reclaimed", "crawler_items_checked", "lrutail_reflocked",
            "moves_to_cold",  "moves_to_warm",     "moves_within_lru",      "direct_reclaims",
            "hits_to_hot",    "hits_to_warm",      "hits_to_cold",          "hits_to_temp"}) {
        append_stat(out, "items:1:" + std::string(zero), 0);
      }
    }
    out += "END\r\n";
  }

  void stats_slabs(std::string& out) {
    const auto s = replicated_stats();
    const auto& all = service_.store_stats();
    const auto& reads = service_.metrics().reads();
    if (all.curr_items > 0) {
      append_stat(out, "1:chunk_size", service_.request_limits().max_value_bytes);
      append_stat(out, "1:chunks_per_page", 1);
      append_stat(out, "1:total_pages", all.curr_items);
      append_stat(out, "1:total_chunks", all.curr_items);
      append_stat(out, "1:used_chunks", all.curr_items);
      append_stat(out, "1:free_chunks", 0);
      append_stat(out, "1:free_chunks_end", 0);
      append_stat(out, "1:get_hits", reads.get_hits);
      append_stat(out, "1:cmd_set", s.cmd_set);
      append_stat(out, "1:delete_hits", s.delete_hits);
      append_stat(out, "1:incr_hits", s.incr_hits);
      append_stat(out, "1:decr_hits", s.decr_hits);
      append_stat(out, "1:cas_hits", s.cas_hits);
      append_stat(out, "1:cas_badval", s.cas_badval);
      append_stat(out, "1:touch_hits", s.touch_hits);
    }
    append_stat(out, "active_slabs", all.curr_items > 0 ? 1 : 0);
    append_stat(out, "total_malloced", all.bytes);
    out += "END\r\n";
  }

  // The replicated counters minus this node's `stats reset` baseline (curr_items and bytes
  // describe the data and are never reset, as in memcached).
  kv::store_stats replicated_stats() const {
    kv::store_stats s = service_.store_stats();
    const kv::store_stats& b = state_->baseline;
    auto since = [](std::uint64_t now, std::uint64_t then) {
      return now >= then ? now - then : now;
    };
    s.total_items = since(s.total_items, b.total_items);
    s.cmd_set = since(s.cmd_set, b.cmd_set);
    s.cmd_touch = since(s.cmd_touch, b.cmd_touch);
    s.cmd_flush = since(s.cmd_flush, b.cmd_flush);
    s.delete_hits = since(s.delete_hits, b.delete_hits);
    s.delete_misses = since(s.delete_misses, b.delete_misses);
    s.incr_hits = since(s.incr_hits, b.incr_hits);
    s.incr_misses = since(s.incr_misses, b.incr_misses);
    s.decr_hits = since(s.decr_hits, b.decr_hits);
    s.decr_misses = since(s.decr_misses, b.decr_misses);
    s.cas_hits = since(s.cas_hits, b.cas_hits);
    s.cas_misses = since(s.cas_misses, b.cas_misses);
    s.cas_badval = since(s.cas_badval, b.cas_badval);
    s.touch_hits = since(s.touch_hits, b.touch_hits);
    s.touch_misses = since(s.touch_misses, b.touch_misses);
    return s;
  }

  void stats(std::string& out) {
    const auto s = replicated_stats();
    const auto& reads = service_.metrics().reads();
    const auto& m = service_.metrics();
    const auto node = service_.status();
    const auto uptime_s = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now() - options_.started)
                              .count();
    const std::string version =
        std::string(memcached_compat_version) + "-raftkv-" + options_.version;
    append_stat(out, "pid", static_cast<std::int64_t>(::getpid()));
    append_stat(out, "uptime", static_cast<std::int64_t>(uptime_s));
    append_stat(out, "time", service_.wall_ms() / 1000);
    append_stat(out, "version", version);
    append_stat(out, "pointer_size", sizeof(void*) * 8);
    append_stat(out, "max_connections", service_.request_limits().max_connections);
    append_stat(out, "curr_connections", m.current_connections(door::memcached));
    append_stat(out, "total_connections", m.total_connections(door::memcached));
    append_stat(out, "cmd_get", reads.cmd_get);
    append_stat(out, "cmd_set", s.cmd_set);
    append_stat(out, "cmd_flush", s.cmd_flush);
    append_stat(out, "cmd_touch", s.cmd_touch);
    append_stat(out, "cmd_meta", state_->cmd_meta);
    append_stat(out, "get_hits", reads.get_hits);
    append_stat(out, "get_misses", reads.get_misses);
    // An expired or flushed item is a plain miss here (the read does not tell them apart).
    append_stat(out, "get_expired", reads.get_expired);
    append_stat(out, "get_flushed", reads.get_flushed);
    append_stat(out, "delete_misses", s.delete_misses);
    append_stat(out, "delete_hits", s.delete_hits);
    append_stat(out, "incr_misses", s.incr_misses);
    append_stat(out, "incr_hits", s.incr_hits);
    append_stat(out, "decr_misses", s.decr_misses);
    append_stat(out, "decr_hits", s.decr_hits);
    append_stat(out, "cas_misses", s.cas_misses);
    append_stat(out, "cas_hits", s.cas_hits);
    append_stat(out, "cas_badval", s.cas_badval);
    append_stat(out, "touch_hits", s.touch_hits);
    append_stat(out, "touch_misses", s.touch_misses);
    append_stat(out, "store_too_large", state_->store_too_large);
    append_stat(out, "store_no_memory", state_->store_no_memory);
    append_stat(out, "auth_cmds", state_->auth_cmds);
    append_stat(out, "auth_errors", state_->auth_errors);
    append_stat(out, "bytes_read", reads.bytes_read);
    append_stat(out, "bytes_written", reads.bytes_written);
    append_stat(out, "limit_maxbytes", service_.store_options().max_memory_bytes);
    append_stat(out, "accepting_conns", 1);
    append_stat(out, "threads", 1);
    append_stat(out, "bytes", s.bytes);
    append_stat(out, "curr_items", s.curr_items);
    append_stat(out, "total_items", s.total_items);
    append_stat(out, "expired_unfetched", 0);
    append_stat(out, "evicted_unfetched", 0);
    append_stat(out, "evicted_active", 0);
    append_stat(out, "evictions", 0);  // nothing is ever evicted
    append_stat(out, "reclaimed", 0);
    append_stat(out, "raft_role", node.role.empty() ? std::string("unknown") : node.role);
    append_stat(out, "raft_term", node.term);
    append_stat(out, "raft_leader", node.leader_id);
    append_stat(out, "raft_commit_index", node.commit_index);
    out += "END\r\n";
  }

  kv_service& service_;
  const memcached_options& options_;
  std::shared_ptr<memcached_node_state> state_;
  mc::parser_limits limits_;
  bool skipping_line_ = false;  // dropping the rest of a get line over the bound
  bool authenticated_ = options_.auth_users.empty();  // the auth gate (authenticate())
};

}  // namespace

asio::awaitable<void> run_memcached_session(tcp::socket& socket, kv_service& service,
                                            const memcached_options& options,
                                            std::shared_ptr<memcached_node_state> state) {
  if (!state) state = std::make_shared<memcached_node_state>();
  protocol p(service, options, std::move(state));
  co_await run_text_session(socket, p, options.pipeline);
}

namespace {

// One connection with the options it started with, kept alive for as long as it runs.
asio::awaitable<void> run_with(tcp::socket& socket, kv_service& service,
                               std::shared_ptr<const memcached_options> options,
                               std::shared_ptr<memcached_node_state> state) {
  co_await run_memcached_session(socket, service, *options, std::move(state));
}

}  // namespace

memcached_server::memcached_server(asio::io_context& io, kv_service& service,
                                   memcached_options options)
    : options_(std::make_shared<std::shared_ptr<const memcached_options>>(
          std::make_shared<const memcached_options>(std::move(options)))),
      state_(std::make_shared<memcached_node_state>()),
      listener_(io,
                listener_options{.which = door::memcached,
                                 .max_connections = service.request_limits().max_connections,
                                 .refusal = "SERVER_ERROR too many open connections\r\n"},
                &service.metrics(),
                [&service, current = options_, state = state_](tcp::socket& socket) {
                  return run_with(socket, service, *current, state);
                }) {}

void memcached_server::set_auth_users(std::vector<std::pair<std::string, std::string>> users) {
  auto next = std::make_shared<memcached_options>(**options_);
  next->auth_users = std::move(users);
  *options_ = std::move(next);
}

}  // namespace net
