// An answer's bytes on the wire (HTTP/1.x status line, header fields, body), written by hand
// instead of through Beast's serializer.
//
// Why: every answer used to become a beast::http::response (one allocation per header field)
// and went out through http::async_write, a composed operation whose serializer walks a
// concatenation of buffer views and whose completion is posted once more. Under 32
// connections of PUT that machinery, not counting the send itself, was about a tenth of
// the leader's event loop (bench/README-profile.md, "HTTP answers as bytes"). The answers of
// one flush now go out in one gathered write.
//
// The bytes are exactly those Beast wrote for the same answer (test/net_http_server_test.cc
// compares them over every kind of answer the API gives): the status line with Beast's
// reason phrase, `Server`, `Content-Type` when set, the extra headers in order, then
// `Connection: close` (HTTP/1.1) or `Connection: keep-alive` (HTTP/1.0) as Beast's
// keep_alive() adds them, then `Content-Length` (not on a 304), a blank line and the body
// (none for HEAD, which keeps the Content-Length of the GET).
#pragma once

#include <string>

#include "net/http/api.h"

namespace net {

// The bytes of `r` for a request of HTTP version `version` (10 or 11). `keep_alive`: the
// connection stays open after it (ANDed with !r.close). `head`: the request was HEAD.
std::string wire_bytes(const http_response& r, unsigned version, bool keep_alive, bool head);

// Whether the connection ends after an answer made with these arguments.
inline bool wire_closes(const http_response& r, bool keep_alive) {
  return !keep_alive || r.close;
}

}  // namespace net
