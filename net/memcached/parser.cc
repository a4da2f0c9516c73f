#include "net/memcached/parser.h"

#include "net/text_words.h"

#include <climits>
#include <limits>
#include <optional>

namespace net::memcached {

namespace {

constexpr std::string_view bad_format = "CLIENT_ERROR bad command line format\r\n";
constexpr std::string_view bad_exptime = "CLIENT_ERROR invalid exptime argument\r\n";
constexpr std::string_view bad_delta = "CLIENT_ERROR invalid numeric delta argument\r\n";
constexpr std::string_view bad_chunk = "CLIENT_ERROR bad data chunk\r\n";
constexpr std::string_view too_large = "SERVER_ERROR object too large for cache\r\n";
constexpr std::string_view bad_delete =
    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
constexpr std::string_view error_reply = "ERROR\r\n";

// isspace() in the C locale: what strtoul skips before a number and what memcached
// accepts right after one.
bool is_c_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

struct c_number {
  bool negative = false;
  std::uint64_t magnitude = 0;
};

// The shared front end of strtoul/strtol as memcached's safe_* wrappers use them:
// optional blanks and sign, at least one digit, no overflow of 64 bits, and then either
// the end of the token or a blank character.
std::optional<c_number> scan_c_number(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && is_c_space(s[i])) ++i;
  c_number n;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    n.negative = s[i] == '-';
    ++i;
  }
  const std::size_t first_digit = i;
  bool overflow = false;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    const auto d = static_cast<std::uint64_t>(s[i] - '0');
    if (n.magnitude > (std::numeric_limits<std::uint64_t>::max() - d) / 10) {
      overflow = true;
    } else {
      n.magnitude = n.magnitude * 10 + d;
    }
  }
  if (i == first_digit || overflow) return std::nullopt;
  if (i < s.size() && !is_c_space(s[i])) return std::nullopt;
  return n;
}

// memcached safe_strtoull: strtoull, refusing a '-' that produced a "negative" value.
std::optional<std::uint64_t> parse_u64(std::string_view s) {
  auto n = scan_c_number(s);
  if (!n) return std::nullopt;
  const std::uint64_t v = n->negative ? 0 - n->magnitude : n->magnitude;
  if (n->negative && static_cast<std::int64_t>(v) < 0) return std::nullopt;
  return v;
}

// memcached safe_strtoul into a uint32_t: the 64-bit value truncated to 32 bits.
std::optional<std::uint32_t> parse_u32(std::string_view s) {
  auto v = parse_u64(s);
  if (!v) return std::nullopt;
  return static_cast<std::uint32_t>(*v);
}

// memcached safe_strtol into an int32_t: strtol's 64-bit range, then truncated.
std::optional<std::int32_t> parse_i32(std::string_view s) {
  auto n = scan_c_number(s);
  if (!n) return std::nullopt;
  constexpr std::uint64_t max_positive = std::numeric_limits<std::int64_t>::max();
  if (n->negative ? n->magnitude > max_positive + 1 : n->magnitude > max_positive) {
    return std::nullopt;  // ERANGE
  }
  const std::uint64_t bits = n->negative ? 0 - n->magnitude : n->magnitude;
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(bits));
}

// Does the (possibly incomplete) line start a get/gets? memcached lets only those grow
// past the normal line bound, and only with at most 100 leading spaces.
bool starts_multiget(std::string_view buffer) {
  std::size_t i = 0;
  while (i < buffer.size() && buffer[i] == ' ') ++i;
  if (i > 100) return false;
  auto rest = buffer.substr(i);
  return rest.starts_with("get ") || rest.starts_with("gets ");
}

parse_result reply(std::size_t consumed, std::string_view text, bool noreply = false) {
  parse_result r;
  r.what = outcome::reply;
  r.consumed = consumed;
  if (!noreply) r.reply = text;
  return r;
}

parse_result close_connection(std::size_t consumed) {
  parse_result r;
  r.what = outcome::close;
  r.consumed = consumed;
  return r;
}

parse_result need_more() { return parse_result{}; }

parse_result make_request(std::size_t consumed, request req) {
  parse_result r;
  r.what = outcome::request;
  r.consumed = consumed;
  r.req = std::move(req);
  return r;
}

bool ends_with_noreply(const std::vector<std::string_view>& words) {
  return words.size() > 1 && words.back() == "noreply";
}

// get/gets/gat/gats <[exptime]> <key>+
parse_result parse_retrieval(std::size_t consumed, const std::vector<std::string_view>& words,
                             command_kind kind, const parser_limits& limits) {
  if (words.size() < 2) return reply(consumed, error_reply);
  request req;
  req.kind = kind;
  std::size_t first_key = 1;
  if (kind == command_kind::gat || kind == command_kind::gats) {
    auto exptime = parse_i32(words[1]);
    if (!exptime) return reply(consumed, bad_exptime);
    req.exptime = *exptime;
    first_key = 2;
  }
  for (std::size_t i = first_key; i < words.size(); ++i) {
    if (!valid_key(words[i], limits.max_key_bytes)) return reply(consumed, bad_format);
  }
  req.keys.assign(words.begin() + static_cast<std::ptrdiff_t>(first_key), words.end());
  return make_request(consumed, std::move(req));
}

// set/add/replace/append/prepend <key> <flags> <exptime> <bytes> [noreply]
// cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]
parse_result parse_storage(std::string_view buffer, std::size_t consumed,
                           const std::vector<std::string_view>& words, command_kind kind,
                           const parser_limits& limits) {
  const bool is_cas = kind == command_kind::cas;
  const std::size_t base = is_cas ? 6 : 5;
  if (words.size() != base && words.size() != base + 1) return reply(consumed, error_reply);
  request req;
  req.kind = kind;
  req.noreply = ends_with_noreply(words);
  if (!valid_key(words[1], limits.max_key_bytes)) {
    return reply(consumed, bad_format, req.noreply);
  }
  auto flags = parse_u32(words[2]);
  auto exptime = parse_i32(words[3]);
  auto bytes = parse_i32(words[4]);
  if (!flags || !exptime || !bytes) return reply(consumed, bad_format, req.noreply);
  if (is_cas) {
    auto cas = parse_u64(words[5]);
    if (!cas) return reply(consumed, bad_format, req.noreply);
    req.cas_unique = *cas;
  }
  if (*bytes < 0 || *bytes > INT_MAX - 2) return reply(consumed, bad_format, req.noreply);
  const auto length = static_cast<std::size_t>(*bytes);
  if (length > limits.max_value_bytes) {
    // memcached reads and drops the data block so the connection stays in step. The
    // request names its command and key: a too-large `set` also deletes the old value
    // (memcached does so that a failed update never leaves stale data readable).
    auto r = reply(consumed, too_large, req.noreply);
    r.discard = length + 2;
    r.req.kind = kind;
    r.req.keys.emplace_back(words[1]);
    r.req.noreply = req.noreply;
    return r;
  }
  if (buffer.size() < consumed + length + 2) return need_more();
  auto block = buffer.substr(consumed, length + 2);
  consumed += length + 2;
  if (!block.ends_with("\r\n")) return reply(consumed, bad_chunk, req.noreply);
  req.keys.emplace_back(words[1]);
  req.flags = *flags;
  req.exptime = *exptime;
  req.value.assign(block.substr(0, length));
  return make_request(consumed, std::move(req));
}

// incr/decr <key> <delta> [noreply]
parse_result parse_arithmetic(std::size_t consumed, const std::vector<std::string_view>& words,
                              command_kind kind, const parser_limits& limits) {
  if (words.size() != 3 && words.size() != 4) return reply(consumed, error_reply);
  request req;
  req.kind = kind;
  req.noreply = ends_with_noreply(words);
  if (!valid_key(words[1], limits.max_key_bytes)) {
    return reply(consumed, bad_format, req.noreply);
  }
  auto delta = parse_u64(words[2]);
  if (!delta) return reply(consumed, bad_delta, req.noreply);
  req.keys.emplace_back(words[1]);
  req.delta = *delta;
  return make_request(consumed, std::move(req));
}

// delete <key> [0] [noreply] — the "0" is a relic of delete's old hold time.
parse_result parse_delete(std::size_t consumed, const std::vector<std::string_view>& words,
                          const parser_limits& limits) {
  if (words.size() < 2 || words.size() > 4) return reply(consumed, error_reply);
  request req;
  req.kind = command_kind::remove;
  if (words.size() > 2) {
    const bool hold_is_zero = words[2] == "0";
    req.noreply = ends_with_noreply(words);
    const bool ok = (words.size() == 3 && (hold_is_zero || req.noreply)) ||
                    (words.size() == 4 && hold_is_zero && req.noreply);
    if (!ok) return reply(consumed, bad_delete, req.noreply);
  }
  if (!valid_key(words[1], limits.max_key_bytes)) {
    return reply(consumed, bad_format, req.noreply);
  }
  req.keys.emplace_back(words[1]);
  return make_request(consumed, std::move(req));
}

// touch <key> <exptime> [noreply]
parse_result parse_touch(std::size_t consumed, const std::vector<std::string_view>& words,
                         const parser_limits& limits) {
  if (words.size() != 3 && words.size() != 4) return reply(consumed, error_reply);
  request req;
  req.kind = command_kind::touch;
  req.noreply = ends_with_noreply(words);
  if (!valid_key(words[1], limits.max_key_bytes)) {
    return reply(consumed, bad_format, req.noreply);
  }
  auto exptime = parse_i32(words[2]);
  if (!exptime) return reply(consumed, bad_exptime, req.noreply);
  req.keys.emplace_back(words[1]);
  req.exptime = *exptime;
  return make_request(consumed, std::move(req));
}

// flush_all [delay] [noreply]
parse_result parse_flush_all(std::size_t consumed, const std::vector<std::string_view>& words) {
  if (words.size() > 3) return reply(consumed, error_reply);
  request req;
  req.kind = command_kind::flush_all;
  req.noreply = ends_with_noreply(words);
  if (words.size() != (req.noreply ? 2u : 1u)) {
    auto delay = parse_i32(words[1]);
    if (!delay) return reply(consumed, bad_exptime, req.noreply);
    req.delay_s = *delay < 0 ? 0 : *delay;
  }
  return make_request(consumed, std::move(req));
}

// verbosity <level> [noreply]: accepted and ignored (logging is configured elsewhere).
parse_result parse_verbosity(std::size_t consumed, const std::vector<std::string_view>& words) {
  if (words.size() != 2 && words.size() != 3) return reply(consumed, error_reply);
  const bool noreply = ends_with_noreply(words);
  if (noreply && words.size() == 2) return reply(consumed, error_reply, true);
  if (!parse_u32(words[1])) return reply(consumed, bad_format, noreply);
  request req;
  req.kind = command_kind::verbosity;
  req.noreply = noreply;
  return make_request(consumed, std::move(req));
}

}  // namespace

std::string_view to_string(command_kind k) {
  switch (k) {
    case command_kind::get: return "get";
    case command_kind::gets: return "gets";
    case command_kind::gat: return "gat";
    case command_kind::gats: return "gats";
    case command_kind::set: return "set";
    case command_kind::add: return "add";
    case command_kind::replace: return "replace";
    case command_kind::append: return "append";
    case command_kind::prepend: return "prepend";
    case command_kind::cas: return "cas";
    case command_kind::remove: return "delete";
    case command_kind::incr: return "incr";
    case command_kind::decr: return "decr";
    case command_kind::touch: return "touch";
    case command_kind::flush_all: return "flush_all";
    case command_kind::version: return "version";
    case command_kind::verbosity: return "verbosity";
    case command_kind::stats: return "stats";
    case command_kind::stats_reset: return "stats";
    case command_kind::meta_noop: return "mn";
    case command_kind::quit: return "quit";
  }
  return "unknown";
}

parse_result parse(std::string_view buffer, const parser_limits& limits) {
  const auto newline = buffer.find('\n');
  if (newline == std::string_view::npos) {
    if (buffer.size() <= limits.max_line_bytes) return need_more();
    if (starts_multiget(buffer) && buffer.size() <= limits.max_get_line_bytes) return need_more();
    return close_connection(buffer.size());
  }
  const std::size_t consumed = newline + 1;
  if (newline > limits.max_line_bytes &&
      (!starts_multiget(buffer) || newline > limits.max_get_line_bytes)) {
    return close_connection(consumed);
  }
  auto line = buffer.substr(0, newline);
  // memcached strips the '\r' only from a line longer than one byte.
  if (line.size() > 1 && line.back() == '\r') line.remove_suffix(1);

  const auto words = split_words(line);
  if (words.empty() || words[0].size() < 2) return reply(consumed, error_reply);
  const std::string_view name = words[0];

  if (name == "get") return parse_retrieval(consumed, words, command_kind::get, limits);
  if (name == "gets") return parse_retrieval(consumed, words, command_kind::gets, limits);
  if (name == "gat") return parse_retrieval(consumed, words, command_kind::gat, limits);
  if (name == "gats") return parse_retrieval(consumed, words, command_kind::gats, limits);
  if (name == "set") return parse_storage(buffer, consumed, words, command_kind::set, limits);
  if (name == "add") return parse_storage(buffer, consumed, words, command_kind::add, limits);
  if (name == "replace") {
    return parse_storage(buffer, consumed, words, command_kind::replace, limits);
  }
  if (name == "append") {
    return parse_storage(buffer, consumed, words, command_kind::append, limits);
  }
  if (name == "prepend") {
    return parse_storage(buffer, consumed, words, command_kind::prepend, limits);
  }
  if (name == "cas") return parse_storage(buffer, consumed, words, command_kind::cas, limits);
  if (name == "delete") return parse_delete(consumed, words, limits);
  if (name == "incr") return parse_arithmetic(consumed, words, command_kind::incr, limits);
  if (name == "decr") return parse_arithmetic(consumed, words, command_kind::decr, limits);
  if (name == "touch") return parse_touch(consumed, words, limits);
  if (name == "stats") {
    request req;
    if (words.size() == 1) {
      req.kind = command_kind::stats;
    } else if (words.size() == 2 && words[1] == "reset") {
      req.kind = command_kind::stats_reset;
    } else {
      return reply(consumed, error_reply);
    }
    return make_request(consumed, std::move(req));
  }
  if (name == "mn") {
    request req;
    req.kind = command_kind::meta_noop;
    return make_request(consumed, std::move(req));
  }
  if (name == "flush_all") return parse_flush_all(consumed, words);
  if (name == "version") {
    request req;
    req.kind = command_kind::version;
    return make_request(consumed, std::move(req));
  }
  if (name == "quit") return close_connection(consumed);
  if (name == "verbosity") return parse_verbosity(consumed, words);

  // memcached drops a connection that speaks HTTP to it, except when the command's first
  // letter already routed it to a family of text commands (or it looks like a meta one).
  const char first = name[0];
  const bool routed = std::string_view("gsacidt").find(first) != std::string_view::npos ||
                      (first == 'm' && name.size() == 2);
  if (!routed && words.back().starts_with("HTTP/")) return close_connection(consumed);
  return reply(consumed, error_reply);
}

}  // namespace net::memcached
