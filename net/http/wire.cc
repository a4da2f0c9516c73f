// See net/http/wire.h.
#include "net/http/wire.h"

#include <boost/beast/http/status.hpp>

namespace net {

std::string wire_bytes(const http_response& r, unsigned version, bool keep_alive, bool head) {
  namespace http = boost::beast::http;
  const auto reason = http::obsolete_reason(static_cast<http::status>(r.status));
  const bool open = keep_alive && !r.close;
  std::string out;
  std::size_t size = 64 + reason.size() + r.content_type.size() + (head ? 0 : r.body.size());
  for (const auto& [name, value] : r.headers) size += name.size() + value.size() + 4;
  out.reserve(size);
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10 % 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
  out += ' ';
  out += std::to_string(r.status);
  out += ' ';
  out.append(reason.data(), reason.size());
  out += "\r\nServer: raftkv\r\n";
  if (!r.content_type.empty()) {
    out += "Content-Type: ";
    out += r.content_type;
    out += "\r\n";
  }
  for (const auto& [name, value] : r.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  // Beast's keep_alive(): HTTP/1.1 is persistent unless told `close`, HTTP/1.0 the reverse.
  if (version == 10 && open) out += "Connection: keep-alive\r\n";
  if (version != 10 && !open) out += "Connection: close\r\n";
  // A 304 has no body by definition; a Content-Length there would have to be the 200's.
  if (r.status != 304) {
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n";
  }
  out += "\r\n";
  if (!head) out += r.body;
  return out;
}

}  // namespace net
