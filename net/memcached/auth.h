// memcached 1.6's ASCII authentication (`memcached -Y <auth_file>`), as a pure parser: what
// a connection that has not authenticated yet may send, and what it is answered.
//
// Until it authenticates, a connection's only meaningful request is
//     set <any key> <any flags> <any exptime> <n>[ ...]\r\n<user> <password>\r\n
// answered `STORED` (and from then on the connection speaks the ordinary protocol) or
// `CLIENT_ERROR authentication failure`. Every other line — any command, `quit` and garbage
// included — is answered `CLIENT_ERROR unauthenticated`. The rules follow memcached 1.6.18
// (proto_text.c, try_read_command_asciiauth), checked byte for byte by
// test/integration/test_security.py against the real memcached:
//   - the command line must have at least five space-separated tokens, the first exactly
//     `set`, the fifth a decimal size; anything else: `CLIENT_ERROR unauthenticated`;
//   - the data block must end in \r\n (else `CLIENT_ERROR bad command line termination`);
//   - the data must hold two space-separated tokens (else `CLIENT_ERROR bad authentication
//     token format`); the first two are the user and the password (runs of spaces and
//     extra tokens are ignored, as memcached's tokenizer does);
//   - `noreply` is ignored: the answer is always sent;
//   - a line of more than 1024 bytes without a newline closes the connection.
// Deliberate differences: a credential block over max_auth_data_bytes is skipped unread and
// answered `CLIENT_ERROR bad authentication token format` (memcached would buffer it), and
// every request gets its answer when several are pipelined (memcached 1.6.18 loses all but
// the last answer of one read in this mode).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace net::memcached {

using credentials = std::vector<std::pair<std::string, std::string>>;  // user, password

inline constexpr std::size_t max_auth_line_bytes = 1024;
inline constexpr std::size_t max_auth_data_bytes = 4096;

struct auth_result {
  enum class kind : unsigned char {
    need_more,  // no complete request yet
    reply,      // answer `reply`; drop `consumed` bytes then `discard` more
    close,      // end the connection without an answer
  };
  kind what = kind::need_more;
  std::size_t consumed = 0;
  std::size_t discard = 0;
  std::string reply;
  bool authenticated = false;  // the credential matched: the connection is now trusted
  bool checked = false;        // a credential was compared (stats auth_cmds; auth_errors
                               // when it did not match), as memcached counts them
};

// Parses the first request of an unauthenticated connection's input against `users`
// (compared in constant time; never logged).
auth_result parse_auth(std::string_view input, const credentials& users);

}  // namespace net::memcached
