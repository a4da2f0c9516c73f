// The HTTP door (docs/http-api.md): Beast sessions on the node's io_context, one coroutine per
// connection, routing through net/http/api.h, and every KV request submitted through the
// kv_service like the other doors (so a follower forwards writes to the leader).
//
// Usage from app/:
//   net::http_server http(io, service, {.version = RAFTKV_VERSION});
//   http.listen(host, port);   // throws boost::system::system_error (e.g. port in use)
//   http.start();              // accept loop spawned on io
//   ...
//   http.stop();               // stop accepting and close every session
//
// HTTPS: options.tls from make_https_context(); the same sessions then run over
// boost::asio::ssl::stream on the listener's socket.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>

namespace boost::asio {
class io_context;
namespace ssl {
class context;
}
}  // namespace boost::asio

namespace net {

class kv_service;

struct http_options {
  std::string version = "unknown";           // reported by /v1/status
  std::size_t max_header_bytes = 16 * 1024;  // request line + headers; beyond: 431
  // From the first byte of a request until it is complete (headers and body): a slow
  // client (slow-loris) cannot hold a session longer than this.
  std::chrono::milliseconds read_timeout{10000};
  // Between requests on a keep-alive connection.
  std::chrono::milliseconds idle_timeout{30000};
  // Writing one response: a client that does not read is dropped.
  std::chrono::milliseconds write_timeout{10000};
  // HTTPS ([http] tls_cert/tls_key): when set, the door speaks only TLS; the handshake must
  // complete within read_timeout. Made by make_https_context().
  std::shared_ptr<boost::asio::ssl::context> tls;
  // [http] admin_token_file: when not empty, requests for which needs_admin_token()
  // (net/http/api.h) holds must carry `Authorization: Bearer <admin_token>`, else 401.
  std::string admin_token;
};

// A server-side TLS context for the HTTP door: TLS 1.2 and later only, the certificate
// chain and private key from PEM files. Returns the context, or a one-line reason (naming
// the file) when a file cannot be read or does not hold what it should, or the key does
// not match the certificate.
std::variant<std::shared_ptr<boost::asio::ssl::context>, std::string> make_https_context(
    const std::string& cert_file, const std::string& key_file);

class http_server {
 public:
  http_server(boost::asio::io_context& io, kv_service& service, http_options options = {});
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // Binds and listens (SO_REUSEADDR). Throws boost::system::system_error on failure.
  void listen(const std::string& host, std::uint16_t port);
  // The bound port (useful with port 0).
  std::uint16_t port() const;
  // Spawns the accept loop on the io_context. Call after listen().
  void start();
  // Stops accepting and closes every open session. Idempotent.
  void stop();
  // A reload (SIGHUP): connections accepted from now on use `tls`; requests read from now
  // on are checked against `admin_token` (empty: none needed). Only for a server made with
  // options.tls: returns false (and changes nothing) when turning TLS on or off.
  bool reload(std::shared_ptr<boost::asio::ssl::context> tls, std::string admin_token);

  struct state;

 private:
  std::shared_ptr<state> state_;
};

}  // namespace net
