// Parser of the CS733 key-value protocol (docs/cs733.md): bytes in, one request or one precise
// error out. Pure, like the memcached parser, so it can be fed a stream split at any byte.
//
//   set <key> <exptime> <numbytes> [noreply]\r\n<value>\r\n
//   cas <key> <exptime> <version> <numbytes> [noreply]\r\n<value>\r\n
//   get <key>  |  getm <key>  |  delete <key>
//
// Choices where the protocol is silent:
//  - words are separated by runs of spaces; a line ends at '\n' and one '\r' before it is
//    dropped; an empty line is ignored;
//  - keys follow the memcached rules (net::valid_key): 1..250 bytes of anything but space,
//    CR, LF and NUL;
//  - numbers are plain decimal digits (no sign); exptime is relative seconds (0 = never)
//    and at most 2^31-1;
//  - any malformed line answers ERR_CMD_ERR. When the line of a set/cas is bad but its
//    <numbytes> can be read, the data block is dropped too so the next command is read in
//    step; a value over max_value_bytes is ERR_CMD_ERR and its block is dropped the same
//    way; a data block that does not end in "\r\n" is ERR_CMD_ERR;
//  - a line longer than max_line_bytes (1024) answers ERR_CMD_ERR and closes the
//    connection (no valid line is anywhere near that long: keys are at most 250 bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace net::cs733 {

enum class command_kind : std::uint8_t { set, get, getm, cas, remove };

// The command's name on the wire ("delete" for remove), for metrics.
std::string_view to_string(command_kind k);

struct request {
  command_kind kind = command_kind::get;
  std::string key;
  std::string value;          // set/cas
  std::int64_t exptime = 0;   // set/cas: relative seconds, 0 = never
  std::uint64_t version = 0;  // cas: the version the item must have
  bool noreply = false;       // set/cas: no success reply
};

struct parser_limits {
  std::size_t max_key_bytes = 250;
  std::size_t max_value_bytes = 1048576;
  std::size_t max_line_bytes = 1024;  // bytes before '\n'
};

enum class outcome : std::uint8_t {
  need_more,  // read more bytes and call again
  request,    // `req` holds a request to execute
  reply,      // send `reply` (empty for an ignored empty line) and go on
  close,      // send `reply`, then close the connection
};

struct parse_result {
  outcome what = outcome::need_more;
  std::size_t consumed = 0;  // bytes to drop from the front of the buffer
  std::size_t discard = 0;   // then this many more stream bytes to read and drop
  request req;
  std::string reply;  // full text incl. "\r\n"
};

parse_result parse(std::string_view buffer, const parser_limits& limits);

}  // namespace net::cs733
