// Parser of the memcached text protocol (SPEC §3): bytes in, one request or one precise
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
// Deliberate differences (SPEC wins): keys with control characters are refused with
// CLIENT_ERROR bad command line format (memcached stores them); meta commands other than
// `mn`, and `stats <group>` other than `stats reset`, answer ERROR.
//
// Line bounds: a command line may hold at most max_line_bytes (2048) before its '\n';
// a longer one closes the connection — except get/gets, whose line may carry many keys up
// to max_get_line_bytes (64 KiB). The rule depends only on the bytes, never on how they
// were split into reads, so the same stream always parses the same way.
#pragma once

#include <cstddef>
#include <cstdint>
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
};

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
  bool noreply = false;
};

struct parser_limits {
  std::size_t max_key_bytes = 250;
  std::size_t max_value_bytes = 1048576;
  std::size_t max_line_bytes = 2048;       // bytes before '\n' on a command line
  std::size_t max_get_line_bytes = 65536;  // the same for get/gets lines
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
};

// Parses the first request in `buffer`.
parse_result parse(std::string_view buffer, const parser_limits& limits);

}  // namespace net::memcached
