#include "net/peer/tls.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ssl/context.hpp>
#include <charconv>
#include <cstdint>
#include <ctime>

namespace net {

namespace ssl = boost::asio::ssl;

namespace {

constexpr std::string_view cn_prefix = "raftkv-node-";

std::optional<std::string> common_name_of(X509* cert) {
  if (cert == nullptr) return std::nullopt;
  X509_NAME* subject = X509_get_subject_name(cert);
  if (subject == nullptr) return std::nullopt;
  const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  // Exactly one CN: with two, which one names the member would depend on who reads it.
  if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0) return std::nullopt;
  const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
  if (value == nullptr) return std::nullopt;
  const auto* bytes = reinterpret_cast<const char*>(ASN1_STRING_get0_data(value));
  return std::string(bytes, static_cast<std::size_t>(ASN1_STRING_length(value)));
}

// The options and checks both sides share.
std::optional<std::string> configure(ssl::context& ctx, const std::string& ca_file,
                                     const std::string& cert_file, const std::string& key_file) {
  // TLS 1.2 and 1.3 only; no compression (CRIME). OpenSSL 3's defaults pick the ciphers.
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::no_compression | ssl::context::single_dh_use);
  // Connections live for the life of a node; session resumption would only add state.
  SSL_CTX_set_session_cache_mode(ctx.native_handle(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx.native_handle(), SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx.native_handle(), 0);
  boost::system::error_code ec;
  ctx.load_verify_file(ca_file, ec);
  if (ec) return ca_file + ": not a usable PEM CA certificate (" + ec.message() + ")";
  ctx.use_certificate_chain_file(cert_file, ec);
  if (ec) return cert_file + ": not a usable PEM certificate chain (" + ec.message() + ")";
  // OpenSSL refuses a key that does not match the certificate loaded above.
  ctx.use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) {
    return key_file + ": not a usable PEM private key, or not the key of " + cert_file + " (" +
           ec.message() + ")";
  }
  // The peer must present a certificate that chains to the CA, on both sides.
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return "cannot require peer certificates (" + ec.message() + ")";
  return std::nullopt;
}

}  // namespace

std::optional<std::int64_t> certificate_expiry(ssl::context& ctx) {
  const X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  if (cert == nullptr) return std::nullopt;
  std::tm t{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &t) != 1) return std::nullopt;
  return static_cast<std::int64_t>(timegm(&t));
}

std::string_view to_string(plain_peers p) {
  switch (p) {
    case plain_peers::refuse:
      return "refuse";
    case plain_peers::accept:
      return "accept";
    case plain_peers::dial:
      return "dial";
  }
  return "refuse";
}

std::string peer_common_name(raft::node_id id) {
  return std::string(cn_prefix) + std::to_string(id.value);
}

std::optional<raft::node_id> node_id_of_common_name(std::string_view cn) {
  if (!cn.starts_with(cn_prefix)) return std::nullopt;
  const std::string_view digits = cn.substr(cn_prefix.size());
  if (digits.empty() || digits.front() == '0') return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (err != std::errc{} || end != digits.data() + digits.size() || v > UINT32_MAX) {
    return std::nullopt;
  }
  return raft::node_id(v);
}

std::optional<std::string> peer_certificate_common_name(ssl_st* ssl) {
  if (ssl == nullptr) return std::nullopt;
  X509* cert = SSL_get_peer_certificate(ssl);  // a new reference
  auto cn = common_name_of(cert);
  X509_free(cert);
  return cn;
}

std::variant<peer_tls, std::string> make_peer_tls(const std::string& ca_file,
                                                  const std::string& cert_file,
                                                  const std::string& key_file, raft::node_id self) {
  peer_tls out;
  out.ca_file = ca_file;
  out.server = std::make_shared<ssl::context>(ssl::context::tls_server);
  out.client = std::make_shared<ssl::context>(ssl::context::tls_client);
  for (auto* ctx : {out.server.get(), out.client.get()}) {
    if (auto why = configure(*ctx, ca_file, cert_file, key_file)) return *why;
  }
  if (self != raft::no_node) {
    const auto cn = common_name_of(SSL_CTX_get0_certificate(out.server->native_handle()));
    if (cn != peer_common_name(self)) {
      return cert_file + ": its subject CN is " + (cn ? "\"" + *cn + "\"" : "missing") +
             ", but peers accept node " + std::to_string(self.value) + " only as \"" +
             peer_common_name(self) + "\"";
    }
  }
  return out;
}

}  // namespace net
