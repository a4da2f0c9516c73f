// Mutual TLS for the peer transport ([tls] in docs/config.md): the two OpenSSL contexts a
// transport uses, and the rule that ties a certificate to a member id.
//
// Trust has two parts, and both are needed:
// - the chain: a peer's certificate must be signed by the cluster CA (`ca`). OpenSSL checks
//   it during the handshake, on both sides (verify_peer | verify_fail_if_no_peer_cert), so a
//   client without a certificate, or with one from another CA, never gets past the handshake.
// - the name: the certificate's subject CN must be exactly "raftkv-node-<id>" for the member
//   the connection speaks for. The CA signs every node's certificate, so the chain alone would
//   let node 2 claim to be node 3 in its hello. The transport checks the name itself (after
//   the handshake on the dialling side, against the hello on the accepting side), because the
//   accepting side learns the claimed id only from the first frame.
//
// Host names are not checked: members are named by id, not by address, and the CN carries it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "raft/types.h"

namespace boost::asio::ssl {
class context;
}
struct ssl_st;  // OpenSSL's SSL

namespace net {

// Plain TCP beside TLS on the peer port, for moving a running cluster to TLS or back one
// node at a time ([tls] plain_peers, docs/config.md "Moving a running cluster to TLS"):
// - refuse: TLS only, both ways (the default; the only setting outside a move);
// - accept: this node dials its peers over TLS, and its port takes TLS and plain TCP;
// - dial:   this node dials its peers over plain TCP, and its port takes TLS and plain TCP.
// A plain connection is told apart by its first byte: a TLS client's first record is a
// handshake (0x16), a peer frame starts with the magic "RKVP". It is believed as any plain
// peer is: whoever reaches the port can claim a member id, so `accept` and `dial` are for
// the minutes of a move, not for running.
enum class plain_peers { refuse, accept, dial };
std::string_view to_string(plain_peers p);

struct peer_tls {
  // Used for accepted connections and for dialled ones. Both verify the peer's chain against
  // the CA and present this node's certificate; TLS 1.2 or later only.
  std::shared_ptr<boost::asio::ssl::context> server;
  std::shared_ptr<boost::asio::ssl::context> client;
  std::string ca_file;  // for log lines
  plain_peers plain = plain_peers::refuse;
};

// Builds both contexts from PEM files. `self`: when not raft::no_node, this node's own
// certificate must name it (a node started with another node's files is a config error, not
// a cluster that refuses it forever). On failure: a one-line reason naming the file.
std::variant<peer_tls, std::string> make_peer_tls(const std::string& ca_file,
                                                  const std::string& cert_file,
                                                  const std::string& key_file,
                                                  raft::node_id self = raft::no_node);

// "raftkv-node-<id>".
std::string peer_common_name(raft::node_id id);

// When the certificate a context presents expires (its notAfter), in Unix seconds; nullopt
// when it has none. For any context, the HTTP door's too (/metrics).
std::optional<std::int64_t> certificate_expiry(boost::asio::ssl::context& ctx);

// The member id a subject CN names: "raftkv-node-" then a decimal id in 1..2^32-1 without
// leading zeros (so each id has exactly one spelling); nullopt for anything else.
std::optional<raft::node_id> node_id_of_common_name(std::string_view cn);

// The subject CN of the certificate the peer presented on a connection whose handshake has
// completed; nullopt when there is none, or the subject has no CN or more than one.
std::optional<std::string> peer_certificate_common_name(ssl_st* ssl);

}  // namespace net
