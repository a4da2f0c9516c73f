// Parser of the memcached text protocol (docs/memcached.md): bytes in, one request or one precise
// error out. Pure: no I/O, no allocation beyond the request it returns, no state between
// calls, so it can be fed a stream split at any byte and fuzzed directly.
//
// The behavioural reference is memcached 1.6.18. Where its replies to odd input are not
// what one would guess, this parser follows memcached, e.g.:
//  - numbers are read like strtoul/strtol/strtoull: a leading '+' is fine, "-0" is 0, flags
//    above 2^32 wrap to 32 bits, exptime and <bytes> are read as 64-bit and truncated to
//    32 bits (exptime 4294967297 is 1 s), a word after the number that begins with a blank
//    character ("1\r") is accepted;
//  - a storage command with a bad command line consumes only the line: its data line is
//    then read as a command (usually answered ERROR);
//  - a data block is exactly <bytes>+2 bytes; if they do not end in "\r\n" the reply is
//    CLIENT_ERROR bad data chunk and those bytes are dropped;
//  - the last word "noreply" suppresses every reply of the command, errors included;
//  - "get k <251-byte key>" answers only CLIENT_ERROR bad command line format;
//  - a `set` whose value is over the limit answers SERVER_ERROR object too large for cache,
//    drops the data block, and deletes the key's old value.
// Keys are any bytes but space, CR, LF and NUL (net::valid_key): control bytes, DEL and
// bytes >= 0x80 are stored as memcached stores them.
// Deliberate differences (docs/memcached.md lists them): a key with a CR inside it
// (memcached keeps a CR that is not the one before the '\n') or a NUL (memcached's line ends
// at the NUL, so it answers ERROR) is refused with CLIENT_ERROR bad command line format;
// `stats <group>` other than reset, settings, items and slabs answers ERROR.
//
// Value size: max_value_bytes is memcached's item_size_max. As in memcached, what must fit
// is the whole item: value + 2 + key + 57 bytes of memcached's item header (+ 4 when the
// client flags are non-zero), so with the default 1 MiB a 1-byte key holds at most
// 1,048,516 value bytes, exactly where memcached 1.6.18 draws the line.
//
// Meta commands (mg, ms, md, ma, mn, me): the words after the key are flags, one letter
// each with an optional token ("T30", "Oabc"), checked as memcached's _meta_flag_preparse
// checks them (duplicate, unknown, bad token: each with its own CLIENT_ERROR text). The
// request keeps them in order (replies echo O/k/c/... in request order); `b` means the
// key was sent in base64, and req.keys holds the decoded bytes.
//
// Line bounds: a command line may hold at most max_line_bytes (2048) before its '\n';
// a longer one closes the connection — except get/gets, whose line may carry many keys up
// to max_get_line_bytes (1 MiB by default); a longer get line is answered
// `SERVER_ERROR out of memory reading request` (what memcached says when its read buffer
// cannot grow) and the rest of the line is dropped (skip_line), so the connection stays
// usable and holds no more than the bound. The rule depends only on the bytes, never on
// how they were split into reads, so the same stream always parses the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace net::memcached {

enum class command_kind : std::uint8_t {
  get,
  gets,
  gat,
  gats,
  set,
  add,
  replace,
  append,
  prepend,
  cas,
  remove,  // `delete`
  incr,
  decr,
  touch,
  flush_all,
  version,
  verbosity,
  stats,
  stats_reset,
  meta_noop,  // `mn`
  quit,
  meta_get,         // `mg`
  meta_set,         // `ms`
  meta_delete,      // `md`
  meta_arithmetic,  // `ma`
  meta_debug,       // `me`
  cache_memlimit,   // `cache_memlimit <MB> [noreply]`
  stats_settings,   // `stats settings`
  stats_items,      // `stats items`
  stats_slabs,      // `stats slabs`
};

// One flag of a meta command: its letter and the whole word ("T30": 'T', "T30").
struct meta_flag {
  char name = 0;
  std::string word;
};

// The flags of a meta command, checked and read.
struct meta_args {
  std::vector<meta_flag> flags;  // in request order
  bool base64 = false;           // b: the key was sent base64-encoded
  bool quiet = false;            // q
  bool value = false;            // v
  bool no_update = false;        // u
  bool invalidate = false;       // I
  bool has_ttl = false;          // T
  std::int32_t ttl = 0;
  bool vivify = false;           // N
  std::int32_t vivify_ttl = 0;
  bool recache = false;          // R
  std::int32_t recache_ttl = 0;
  std::uint32_t client_flags = 0;  // F
  bool has_cas = false;            // C
  std::uint64_t cas = 0;
  char mode = 0;                   // M
  std::uint64_t delta = 1;         // D
  std::uint64_t initial = 0;       // J

  bool has(char name) const;
};

// memcached's base64 (the RFC 1341 codec memcached uses for `b` keys): decode skips bytes
// outside the alphabet, needs a multiple of 4 alphabet bytes and stops after the first
// padded block; nullopt (memcached: length 0) when it cannot decode or decodes to nothing.
std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

// The command's name as written on the wire ("delete" for remove), for metrics.
std::string_view to_string(command_kind k);

struct request {
  command_kind kind = command_kind::get;
  std::vector<std::string> keys;  // get family: one or more; keyed commands: exactly one
  std::string value;              // storage commands: the data block without "\r\n"
  std::uint32_t flags = 0;
  std::int64_t exptime = 0;       // memcached rules (0 never, <=30 days relative, ...)
  std::uint64_t cas_unique = 0;   // cas
  std::uint64_t delta = 0;        // incr/decr
  std::int64_t delay_s = 0;       // flush_all; 0 = now
  std::uint64_t memlimit_mb = 0;  // cache_memlimit
  bool noreply = false;
  meta_args meta;                 // meta commands
};

struct parser_limits {
  std::size_t max_key_bytes = 250;
  std::size_t max_value_bytes = 1048576;
  std::size_t max_line_bytes = 2048;       // bytes before '\n' on a command line
  std::size_t max_get_line_bytes = 1 << 20;  // the same for get/gets lines
};

enum class outcome : std::uint8_t {
  need_more,  // no complete request yet: read more bytes and call again
  request,    // `req` holds a request to execute
  reply,      // answer `reply` (may be empty: noreply) without executing anything
  close,      // send `reply` if any, then close (quit, over-long line, HTTP probe)
};

struct parse_result {
  outcome what = outcome::need_more;
  std::size_t consumed = 0;  // bytes to drop from the front of the buffer
  std::size_t discard = 0;   // then this many more stream bytes to read and drop (the
                             // data block of an oversize value; may exceed the buffer)
  request req;               // when what == request; for a value over the limit (reply
                             // with discard > 0) its kind, key and noreply
  std::string reply;         // reply/close: the full text incl. "\r\n"; may be empty
  bool skip_line = false;    // reply: then drop stream bytes up to and including the
                             // next '\n' (the rest of a get line over the bound)
};

// Parses the first request in `buffer`.
parse_result parse(std::string_view buffer, const parser_limits& limits);

}  // namespace net::memcached
