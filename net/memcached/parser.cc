// The memcached text protocol parser: bytes -> a command or memcached's exact error. Longer
// than ~600 lines on purpose: the classic commands and the meta commands (every flag of
// memcached 1.6.18 and its error texts) are one grammar sharing the tokenizer, the key rules
// and the data-block handling; split, the shared rules would be repeated.
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


// memcached's item_size_ok: the item header (48 bytes), the cas (8), the key and its NUL,
// the client flags when non-zero (4) and the value with its "\r\n" must fit in
// item_size_max, which is what max_value_bytes means for this door.
bool item_fits(std::size_t key_bytes, std::uint32_t flags, std::size_t value_bytes,
               const parser_limits& limits) {
  const std::size_t total = 48 + 8 + key_bytes + 1 + (flags != 0 ? 4 : 0) + value_bytes + 2;
  return total <= limits.max_value_bytes;
}

parse_result reply(std::size_t consumed, std::string_view text, bool noreply = false);

// Does the (possibly incomplete) line start a get/gets? memcached lets only those grow
// past the normal line bound, and only with at most 100 leading spaces.
bool starts_multiget(std::string_view buffer) {
  std::size_t i = 0;
  while (i < buffer.size() && buffer[i] == ' ') ++i;
  if (i > 100) return false;
  auto rest = buffer.substr(i);
  return rest.starts_with("get ") || rest.starts_with("gets ");
}

parse_result reply(std::size_t consumed, std::string_view text, bool noreply) {
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

// A multi-get line over max_get_line_bytes: memcached's answer when its read buffer cannot
// grow. Without its '\n' yet, what has arrived is dropped and so is the rest of the line
// (skip_line), so the keys that follow are never read as commands.
parse_result get_line_too_long(std::size_t consumed, bool line_complete) {
  parse_result r;
  r.what = outcome::reply;
  r.consumed = consumed;
  r.reply = "SERVER_ERROR out of memory reading request\r\n";
  r.skip_line = !line_complete;
  return r;
}

parse_result make_request(std::size_t consumed, request req) {
  parse_result r;
  r.what = outcome::request;
  r.consumed = consumed;
  r.req = std::move(req);
  return r;
}

bool ends_with_noreply(const word_list& words) {
  return words.size() > 1 && words.back() == "noreply";
}

// get/gets/gat/gats <[exptime]> <key>+
parse_result parse_retrieval(std::size_t consumed, const word_list& words,
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
                           const word_list& words, command_kind kind,
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
  if (!item_fits(words[1].size(), *flags, length, limits)) {
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
parse_result parse_arithmetic(std::size_t consumed, const word_list& words,
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
parse_result parse_delete(std::size_t consumed, const word_list& words,
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
parse_result parse_touch(std::size_t consumed, const word_list& words,
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
parse_result parse_flush_all(std::size_t consumed, const word_list& words) {
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
parse_result parse_verbosity(std::size_t consumed, const word_list& words) {
  if (words.size() != 2 && words.size() != 3) return reply(consumed, error_reply);
  const bool noreply = ends_with_noreply(words);
  if (noreply && words.size() == 2) return reply(consumed, error_reply, true);
  if (!parse_u32(words[1])) return reply(consumed, bad_format, noreply);
  request req;
  req.kind = command_kind::verbosity;
  req.noreply = noreply;
  return make_request(consumed, std::move(req));
}


// cache_memlimit <megabytes> [noreply]
parse_result parse_memlimit(std::size_t consumed, const word_list& words) {
  if (words.size() != 2 && words.size() != 3) return reply(consumed, error_reply);
  const bool noreply = ends_with_noreply(words);
  auto mb = parse_u32(words[1]);
  if (!mb) return reply(consumed, error_reply, noreply);
  if (*mb < 8) {
    return reply(consumed, "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n", noreply);
  }
  if (*mb > 1000000000) {
    return reply(consumed, "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n",
                 noreply);
  }
  request req;
  req.kind = command_kind::cache_memlimit;
  req.memlimit_mb = *mb;
  req.noreply = noreply;
  return make_request(consumed, std::move(req));
}

// memcached counts its tokens with a terminal one, and refuses a meta command whose count
// is above 20 (so at most 17 flags after the key of mg/md/ma, 16 after ms's datalen).
constexpr std::size_t meta_max_tokens = 20;
constexpr std::size_t meta_max_opaque = 32;

// memcached's _meta_flag_preparse over words[start..]: fills `args` and the decoded key;
// returns the error text, or empty when the flags are good. `fallback` is the text the
// command uses for errors that set none of their own (F).
std::string_view preparse_meta(const word_list& words, std::size_t start,
                               std::string& key, meta_args& args, std::string_view fallback) {
  bool seen[127] = {};
  std::string_view error;
  bool has_error = false;
  for (std::size_t i = start; i < words.size(); ++i) {
    const std::string_view w = words[i];
    const auto o = static_cast<unsigned char>(w[0]);
    if (o >= 127 || seen[o]) return "CLIENT_ERROR duplicate flag\r\n";
    seen[o] = true;
    const std::string_view token = w.substr(1);
    auto bad_token = [&] {
      error = "CLIENT_ERROR bad token in command line format\r\n";
      has_error = true;
    };
    switch (o) {
      case 'b':
        if (auto decoded = base64_decode(key)) {
          key = std::move(*decoded);
        } else {
          error = "CLIENT_ERROR error decoding key\r\n";
          has_error = true;
          key.clear();
        }
        args.base64 = true;
        break;
      case 'N':
        args.vivify = true;
        if (auto v = parse_i32(token)) args.vivify_ttl = *v; else bad_token();
        break;
      case 'T':
        if (auto v = parse_i32(token)) {
          args.ttl = *v;
          args.has_ttl = true;
        } else {
          bad_token();
        }
        break;
      case 'R':
        args.recache = true;
        if (auto v = parse_i32(token)) args.recache_ttl = *v; else bad_token();
        break;
      case 'l': case 'O': case 'P': case 'L': case 'k': case 's': case 't': case 'c':
      case 'f': case 'h':
        break;
      case 'v':
        args.value = true;
        break;
      case 'u':
        args.no_update = true;
        break;
      case 'q':
        args.quiet = true;
        break;
      case 'F':
        if (auto v = parse_u32(token)) {
          args.client_flags = *v;
        } else {
          if (error.empty()) error = fallback;
          has_error = true;
        }
        break;
      case 'C':
        if (auto v = parse_u64(token)) {
          args.cas = *v;
          args.has_cas = true;
        } else {
          bad_token();
        }
        break;
      case 'M':
        if (w.size() != 2) {
          error = "CLIENT_ERROR incorrect length for M token\r\n";
          has_error = true;
        } else {
          args.mode = w[1];
        }
        break;
      case 'J':
        if (auto v = parse_u64(token)) {
          args.initial = *v;
        } else {
          error = "CLIENT_ERROR invalid numeric initial value\r\n";
          has_error = true;
        }
        break;
      case 'D':
        if (auto v = parse_u64(token)) {
          args.delta = *v;
        } else {
          error = "CLIENT_ERROR invalid numeric delta value\r\n";
          has_error = true;
        }
        break;
      case 'I':
        args.invalidate = true;
        break;
      default:
        return "CLIENT_ERROR invalid flag\r\n";
    }
    args.flags.push_back(meta_flag{static_cast<char>(o), std::string(w)});
  }
  if (!has_error) return {};
  return error.empty() ? fallback : error;
}

bool opaque_too_long(const meta_args& args) {
  for (const auto& f : args.flags) {
    if (f.name == 'O' && f.word.size() > meta_max_opaque) return true;
  }
  return false;
}

constexpr std::string_view opaque_error = "CLIENT_ERROR opaque token too long\r\n";

// ms <key> <datalen> <flags>*\r\n<data>\r\n — errors after the datalen was read swallow
// the data block, as memcached does.
parse_result parse_meta_set(std::string_view buffer, std::size_t consumed,
                            const word_list& words,
                            const parser_limits& limits) {
  if (words.size() < 2) return reply(consumed, error_reply);
  if (words[1].size() > limits.max_key_bytes || !valid_key(words[1], limits.max_key_bytes)) {
    return reply(consumed, bad_format);
  }
  if (words.size() == 2) return reply(consumed, bad_format);
  if (words.size() + 1 > meta_max_tokens) {
    return reply(consumed, "CLIENT_ERROR options flags too long\r\n");
  }
  auto vlen = parse_i32(words[2]);
  if (!vlen || *vlen < 0 || *vlen > INT_MAX - 2) return reply(consumed, bad_format);
  const auto length = static_cast<std::size_t>(*vlen);
  request req;
  req.kind = command_kind::meta_set;
  std::string key(words[1]);
  auto swallow = [&](std::string_view text) {
    parse_result r = reply(consumed, text);
    r.discard = length + 2;
    return r;
  };
  auto error = preparse_meta(words, 3, key, req.meta, bad_format);
  if (!error.empty()) return swallow(error);
  if (opaque_too_long(req.meta)) return swallow(opaque_error);
  switch (req.meta.mode) {
    case 0: case 'E': case 'A': case 'P': case 'R': case 'S':
      break;
    default:
      return swallow("CLIENT_ERROR invalid mode for ms M token\r\n");
  }
  req.noreply = req.meta.quiet;
  if (!item_fits(key.size(), req.meta.client_flags, length, limits)) {
    // Refused before reading the data; memcached also drops the key's old value.
    parse_result r = swallow(too_large);
    r.req.kind = command_kind::meta_set;
    r.req.keys.push_back(std::move(key));
    return r;
  }
  if (buffer.size() < consumed + length + 2) return need_more();
  auto block = buffer.substr(consumed, length + 2);
  consumed += length + 2;
  // A bad chunk is always answered, quiet mode or not.
  if (!block.ends_with("\r\n")) return reply(consumed, bad_chunk);
  req.keys.push_back(std::move(key));
  req.value.assign(block.substr(0, length));
  return make_request(consumed, std::move(req));
}

// mg/md/ma <key> <flags>*, me <key> [b], mn.
parse_result parse_meta(std::string_view buffer, std::size_t consumed,
                        const word_list& words, char which,
                        const parser_limits& limits) {
  request req;
  switch (which) {
    case 'n':
      req.kind = command_kind::meta_noop;
      return make_request(consumed, std::move(req));
    case 's':
      return parse_meta_set(buffer, consumed, words, limits);
    case 'e': {
      if (words.size() < 2 || words[1].size() > limits.max_key_bytes ||
          !valid_key(words[1], limits.max_key_bytes)) {
        return reply(consumed, bad_format);
      }
      std::string key(words[1]);
      if (words.size() >= 3 && words[2] == "b") {
        auto decoded = base64_decode(key);
        if (!decoded) return reply(consumed, bad_format);
        key = std::move(*decoded);
        req.meta.base64 = true;
      }
      req.kind = command_kind::meta_debug;
      req.keys.push_back(std::move(key));
      return make_request(consumed, std::move(req));
    }
    case 'g':
      req.kind = command_kind::meta_get;
      break;
    case 'd':
      req.kind = command_kind::meta_delete;
      break;
    case 'a':
      req.kind = command_kind::meta_arithmetic;
      break;
    default:
      return reply(consumed, error_reply);
  }
  if (words.size() < 2) return reply(consumed, error_reply);
  if (!valid_key(words[1], limits.max_key_bytes)) return reply(consumed, bad_format);
  if (words.size() + 1 > meta_max_tokens) {
    return reply(consumed, req.kind == command_kind::meta_get
                               ? "CLIENT_ERROR options flags are too long\r\n"
                               : "CLIENT_ERROR options flags too long\r\n");
  }
  std::string key(words[1]);
  auto error = preparse_meta(words, 2, key, req.meta, bad_format);
  if (!error.empty()) {
    // md and ma answer one text for every flag error.
    if (req.kind != command_kind::meta_get) error = "CLIENT_ERROR invalid or duplicate flag\r\n";
    return reply(consumed, error);
  }
  if (opaque_too_long(req.meta)) return reply(consumed, opaque_error);
  if (req.kind == command_kind::meta_arithmetic) {
    switch (req.meta.mode) {
      case 0: case 'I': case '+': case 'D': case '-':
        break;
      default:
        return reply(consumed, "CLIENT_ERROR invalid mode for ma M token\r\n");
    }
  }
  req.noreply = req.meta.quiet;
  req.keys.push_back(std::move(key));
  return make_request(consumed, std::move(req));
}

}  // namespace

bool meta_args::has(char name) const {
  for (const auto& f : flags) {
    if (f.name == name) return true;
  }
  return false;
}

namespace {
constexpr std::string_view base64_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// memcached's decode table: the alphabet, and '=' as 0; everything else is skipped.
int base64_value(unsigned char c) {
  if (c == '=') return 0;
  const auto at = base64_alphabet.find(static_cast<char>(c));
  return at == std::string_view::npos ? -1 : static_cast<int>(at);
}
}  // namespace

std::optional<std::string> base64_decode(std::string_view in) {
  std::size_t count = 0;
  for (unsigned char c : in) count += base64_value(c) >= 0 ? 1 : 0;
  if (count == 0 || count % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(count / 4 * 3);
  unsigned char block[4];
  std::size_t n = 0;
  int pad = 0;
  for (unsigned char c : in) {
    const int v = base64_value(c);
    if (v < 0) continue;
    if (c == '=') ++pad;
    block[n++] = static_cast<unsigned char>(v);
    if (n == 4) {
      out.push_back(static_cast<char>((block[0] << 2) | (block[1] >> 4)));
      out.push_back(static_cast<char>((block[1] << 4) | (block[2] >> 2)));
      out.push_back(static_cast<char>((block[2] << 6) | block[3]));
      n = 0;
      if (pad > 0) {
        if (pad > 2) return std::nullopt;  // invalid padding
        out.resize(out.size() - static_cast<std::size_t>(pad));
        break;
      }
    }
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(in[k]); };
  for (; in.size() - i >= 3; i += 3) {
    out.push_back(base64_alphabet[byte(i) >> 2]);
    out.push_back(base64_alphabet[((byte(i) & 0x03) << 4) | (byte(i + 1) >> 4)]);
    out.push_back(base64_alphabet[((byte(i + 1) & 0x0f) << 2) | (byte(i + 2) >> 6)]);
    out.push_back(base64_alphabet[byte(i + 2) & 0x3f]);
  }
  if (i < in.size()) {
    out.push_back(base64_alphabet[byte(i) >> 2]);
    if (in.size() - i == 1) {
      out.push_back(base64_alphabet[(byte(i) & 0x03) << 4]);
      out.push_back('=');
    } else {
      out.push_back(base64_alphabet[((byte(i) & 0x03) << 4) | (byte(i + 1) >> 4)]);
      out.push_back(base64_alphabet[(byte(i + 1) & 0x0f) << 2]);
    }
    out.push_back('=');
  }
  return out;
}

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
    case command_kind::meta_get: return "mg";
    case command_kind::meta_set: return "ms";
    case command_kind::meta_delete: return "md";
    case command_kind::meta_arithmetic: return "ma";
    case command_kind::meta_debug: return "me";
    case command_kind::cache_memlimit: return "cache_memlimit";
    case command_kind::stats_settings: return "stats";
    case command_kind::stats_items: return "stats";
    case command_kind::stats_slabs: return "stats";
  }
  return "unknown";
}

parse_result parse(std::string_view buffer, const parser_limits& limits) {
  const auto newline = buffer.find('\n');
  if (newline == std::string_view::npos) {
    if (buffer.size() <= limits.max_line_bytes) return need_more();
    if (!starts_multiget(buffer)) return close_connection(buffer.size());
    if (buffer.size() <= limits.max_get_line_bytes) return need_more();
    return get_line_too_long(buffer.size(), false);
  }
  const std::size_t consumed = newline + 1;
  if (newline > limits.max_line_bytes) {
    if (!starts_multiget(buffer)) return close_connection(consumed);
    if (newline > limits.max_get_line_bytes) return get_line_too_long(consumed, true);
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
    // memcached looks only at the first word after `stats`.
    request req;
    if (words.size() == 1) {
      req.kind = command_kind::stats;
    } else if (words[1] == "reset") {
      req.kind = command_kind::stats_reset;
    } else if (words[1] == "settings") {
      req.kind = command_kind::stats_settings;
    } else if (words[1] == "items") {
      req.kind = command_kind::stats_items;
    } else if (words[1] == "slabs") {
      req.kind = command_kind::stats_slabs;
    } else {
      return reply(consumed, error_reply);
    }
    return make_request(consumed, std::move(req));
  }
  if (name.size() == 2 && name[0] == 'm') {
    return parse_meta(buffer, consumed, words, name[1], limits);
  }
  if (name == "cache_memlimit") return parse_memlimit(consumed, words);
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
