// The node's configuration: a TOML file (docs/config.md) read with tomlplusplus, validated
// completely before anything starts, so a bad file exits with code 2 and a message that names
// the file, the key and the line.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "net/peer/tls.h"
#include "net/service.h"

namespace app {

// "host:port" split and checked; text keeps the original spelling.
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string text;
};

struct member_config {
  std::uint64_t id = 0;
  endpoint peer;                     // required when the cluster has more than one member
  std::optional<endpoint> memcached; // advertised client addresses
  std::optional<endpoint> cs733;
  std::optional<endpoint> http;
};

struct raft_config {
  std::uint32_t tick_ms = 10;
  std::uint32_t heartbeat_ticks = 5;
  std::uint32_t election_ticks = 30;
  bool fsync = true;
  std::uint64_t snapshot_entries = 500000;  // upper bound on entries between snapshots
  std::uint64_t max_disk_mb = 8192;        // upper bound for the LMDB map (grows up to it)
  bool lease_reads = true;  // linearizable reads on the leader's lease (raft/core.h)
};

struct limits_config {
  std::uint64_t max_connections = 4096;
  std::uint64_t max_key_bytes = 250;
  std::uint64_t max_value_bytes = 1048576;
  std::uint64_t max_memory_mb = 1024;
  std::uint64_t request_timeout_ms = 5000;
  // HTTP sessions (raftkv's own keys): a whole request must arrive within the read timeout
  // (slow clients), a keep-alive connection may idle this long between requests.
  std::uint64_t http_read_timeout_ms = 10000;
  std::uint64_t http_idle_timeout_ms = 30000;
  // Node-wide bound on the client writes this node has submitted and not yet answered
  // (count, and bytes of their encoded commands): beyond either, a write is refused at once
  // with "busy" instead of queueing without limit (docs/config.md, "Limits and overload").
  std::uint64_t max_writes_in_flight = 10000;
  std::uint64_t max_write_bytes_in_flight = 64ull << 20;
};

// [http] (docs/config.md): HTTPS and the admin token. Files are read while the config is
// validated, so a missing or unreadable one is a config error (exit 2) naming its key.
struct http_config {
  std::filesystem::path tls_cert;  // both set: the HTTP door serves HTTPS only
  std::filesystem::path tls_key;
  std::filesystem::path admin_token_file;
  // The token itself (the file's first line). Never printed or logged.
  std::string admin_token;

  bool tls() const { return !tls_cert.empty(); }
};

// [tls] (docs/config.md): mutual TLS on the peer port. All three files or none; each is read
// while the config is validated (a missing or unreadable one is a config error naming its
// key); the PEM contents are checked when the contexts are built at start-up (exit 2 too).
struct tls_config {
  std::filesystem::path ca;    // the cluster CA: a peer's certificate must chain to it
  std::filesystem::path cert;  // this node's certificate, subject CN "raftkv-node-<id>"
  std::filesystem::path key;   // its private key
  // Plain TCP beside TLS on the peer links, only while moving a cluster to or from TLS.
  net::plain_peers plain_peers = net::plain_peers::refuse;

  bool enabled() const { return !ca.empty(); }
};

// [memcached] (docs/config.md): memcached 1.6's ASCII authentication.
struct memcached_config {
  std::filesystem::path auth_file;
  // The `user:password` lines of auth_file. Never printed or logged.
  std::vector<std::pair<std::string, std::string>> users;
};

struct config {
  std::filesystem::path source;  // the file it was read from
  std::uint64_t node_id = 0;
  std::filesystem::path data_dir;  // relative paths are relative to the working directory
  std::optional<endpoint> listen_memcached;
  std::optional<endpoint> listen_cs733;
  std::optional<endpoint> listen_http;
  std::optional<endpoint> listen_peer;
  // Initial voting members, sorted by id. A config without [[cluster.member]] is a cluster of
  // one: this node alone, advertising its listen addresses. Only bootstraps a new cluster:
  // once a node has state, the replicated configuration rules (SPEC §8); for a joining node
  // it names the members that may contact it (and its own addresses).
  std::vector<member_config> members;
  // [cluster] state = "join": this node was added with POST /v1/members; it starts with no
  // configuration, never campaigns, and waits for the leader to send it the log.
  bool join = false;
  // [cluster] token: mixed into the cluster id with the member list (app/cluster_id.h), so
  // that a cluster rebuilt at the same addresses with a new token refuses the nodes of the
  // old one. Empty: not set (the id then depends on the member list alone).
  std::string cluster_token;
  raft_config raft;
  limits_config limits;
  http_config http;
  memcached_config memcached;
  tls_config tls;

  net::limits door_limits() const;
  std::vector<net::member_address> member_addresses() const;
};

struct config_error {
  std::string message;  // "FILE:LINE: key 'a.b': what is wrong"
};

std::variant<config, config_error> load_config(const std::filesystem::path& file);
std::variant<config, config_error> parse_config(std::string_view toml_text,
                                                const std::filesystem::path& source_name);

// The effective configuration (defaults filled in) as TOML, for `check-config`.
std::string render_config(const config& c);

}  // namespace app
