#include "app/config.h"
#include "base/host_port.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace app {
namespace {

constexpr std::size_t max_cluster_token_bytes = 128;
constexpr std::size_t min_admin_token_bytes = 16;
constexpr std::size_t max_admin_token_bytes = 4096;

// Thrown inside the validator only; load_config turns it into a config_error.
struct invalid {
  std::string message;
};

class validator {
 public:
  explicit validator(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const toml::node* where, const std::string& key,
                         const std::string& what) const {
    std::ostringstream out;
    out << source_;
    if (where != nullptr && where->source().begin.line > 0) out << ':' << where->source().begin.line;
    out << ": key '" << key << "': " << what;
    throw invalid{out.str()};
  }

  // Every key of `table` must be in `allowed`; reports the first unknown one.
  void only_keys(const toml::table& table, const std::string& prefix,
                 std::initializer_list<std::string_view> allowed) const {
    for (auto&& [key, value] : table) {
      if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
        fail(&value, join(prefix, key.str()), "unknown key");
      }
    }
  }

  static std::string join(const std::string& prefix, std::string_view key) {
    return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
  }

  const toml::table* table_at(const toml::table& parent, std::string_view key,
                              const std::string& name) const {
    const toml::node* n = parent.get(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) fail(n, name, "must be a table");
    return n->as_table();
  }

  // An integer in [min, max]; nullopt when absent.
  std::optional<std::uint64_t> integer(const toml::table& t, std::string_view key,
                                       const std::string& name, std::uint64_t min,
                                       std::uint64_t max) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_integer()) fail(n, name, "must be an integer");
    const std::int64_t v = n->as_integer()->get();
    if (v < 0 || static_cast<std::uint64_t>(v) < min || static_cast<std::uint64_t>(v) > max) {
      fail(n, name,
           "must be between " + std::to_string(min) + " and " + std::to_string(max) +
               " (got " + std::to_string(v) + ")");
    }
    return static_cast<std::uint64_t>(v);
  }

  std::optional<bool> boolean(const toml::table& t, std::string_view key,
                              const std::string& name) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_boolean()) fail(n, name, "must be true or false");
    return n->as_boolean()->get();
  }

  std::optional<std::string> string(const toml::table& t, std::string_view key,
                                    const std::string& name) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    if (!n->is_string()) fail(n, name, "must be a string");
    return n->as_string()->get();
  }

  std::optional<endpoint> address(const toml::table& t, std::string_view key,
                                  const std::string& name) const {
    auto text = string(t, key, name);
    if (!text) return std::nullopt;
    endpoint e;
    e.text = *text;
    const auto colon = text->rfind(':');
    if (colon == std::string::npos || colon == 0) {
      fail(t.get(key), name, "must be \"host:port\" (got \"" + *text + "\")");
    }
    const auto parsed = base::split_host_port(*text);
    if (!parsed) fail(t.get(key), name, "port must be 1..65535 (got \"" + *text + "\")");
    e.host = parsed->host;
    e.port = parsed->number;
    return e;
  }

  // The whole of a file a key names; a missing or unreadable one fails on that key.
  std::string read_file(const toml::node* where, const std::string& name,
                        const std::string& path) const {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail(where, name, path + " is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      fail(where, name, "cannot read " + path + ": " + std::strerror(errno));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) fail(where, name, "cannot read " + path);
    return text.str();
  }

 private:
  std::string source_;
};

config build(const toml::table& root, const std::filesystem::path& source) {
  validator v(source.string());
  config c;
  c.source = source;
  v.only_keys(root, "",
              {"node", "listen", "cluster", "raft", "limits", "http", "memcached", "tls"});

  const toml::table* node = v.table_at(root, "node", "node");
  if (node == nullptr) v.fail(nullptr, "node", "missing table [node]");
  v.only_keys(*node, "node", {"id", "data_dir"});
  auto id = v.integer(*node, "id", "node.id", 1, UINT32_MAX);
  if (!id) v.fail(node, "node.id", "missing (a positive integer, unique in the cluster)");
  c.node_id = *id;
  auto dir = v.string(*node, "data_dir", "node.data_dir");
  if (!dir || dir->empty()) v.fail(node, "node.data_dir", "missing (a directory path)");
  c.data_dir = *dir;

  if (const toml::table* listen = v.table_at(root, "listen", "listen")) {
    v.only_keys(*listen, "listen", {"memcached", "cs733", "http", "peer"});
    c.listen_memcached = v.address(*listen, "memcached", "listen.memcached");
    c.listen_cs733 = v.address(*listen, "cs733", "listen.cs733");
    c.listen_http = v.address(*listen, "http", "listen.http");
    c.listen_peer = v.address(*listen, "peer", "listen.peer");
  }
  {
    std::set<std::string> seen;
    for (const auto* e : {&c.listen_memcached, &c.listen_cs733, &c.listen_http, &c.listen_peer}) {
      if (*e && !seen.insert((*e)->text).second) {
        v.fail(node, "listen", "address " + (*e)->text + " is used twice");
      }
    }
  }

  if (const toml::table* cluster = v.table_at(root, "cluster", "cluster")) {
    v.only_keys(*cluster, "cluster", {"member", "token", "state"});
    if (auto state = v.string(*cluster, "state", "cluster.state")) {
      if (*state == "join") {
        c.join = true;
      } else if (*state != "new") {
        v.fail(cluster->get("state"), "cluster.state", "must be \"new\" or \"join\"");
      }
    }
    if (auto token = v.string(*cluster, "token", "cluster.token")) {
      // Visible ASCII only: a token is copied between files and shells by hand, where a
      // trailing space or a look-alike character would split a cluster silently.
      const bool visible =
          std::all_of(token->begin(), token->end(), [](char ch) { return ch > ' ' && ch < 0x7f; });
      if (token->empty() || token->size() > max_cluster_token_bytes || !visible) {
        v.fail(cluster->get("token"), "cluster.token",
               "must be 1 to " + std::to_string(max_cluster_token_bytes) +
                   " visible ASCII characters (no spaces)");
      }
      c.cluster_token = *token;
    }
    const toml::node* members = cluster->get("member");
    if (members != nullptr) {
      if (!members->is_array_of_tables()) {
        v.fail(members, "cluster.member", "must be an array of tables ([[cluster.member]])");
      }
      std::set<std::uint64_t> ids;
      std::set<std::string> addresses;
      std::size_t i = 0;
      for (const toml::node& m : *members->as_array()) {
        const std::string name = "cluster.member[" + std::to_string(i++) + "]";
        const toml::table& t = *m.as_table();
        v.only_keys(t, name, {"id", "peer", "memcached", "cs733", "http"});
        member_config mc;
        auto mid = v.integer(t, "id", name + ".id", 1, UINT32_MAX);
        if (!mid) v.fail(&t, name + ".id", "missing");
        mc.id = *mid;
        if (!ids.insert(mc.id).second) {
          v.fail(t.get("id"), name + ".id", "duplicate member id " + std::to_string(mc.id));
        }
        auto peer = v.address(t, "peer", name + ".peer");
        if (!peer) v.fail(&t, name + ".peer", "missing");
        mc.peer = *peer;
        mc.memcached = v.address(t, "memcached", name + ".memcached");
        mc.cs733 = v.address(t, "cs733", name + ".cs733");
        mc.http = v.address(t, "http", name + ".http");
        for (const auto& [key, e] :
             {std::pair<const char*, const std::optional<endpoint>*>{"peer", &peer},
              {"memcached", &mc.memcached},
              {"cs733", &mc.cs733},
              {"http", &mc.http}}) {
          if (*e && !addresses.insert((*e)->text).second) {
            v.fail(t.get(key), name + "." + key, "duplicate address " + (*e)->text);
          }
        }
        c.members.push_back(std::move(mc));
      }
      std::sort(c.members.begin(), c.members.end(),
                [](const member_config& a, const member_config& b) { return a.id < b.id; });
      if (std::none_of(c.members.begin(), c.members.end(),
                       [&](const member_config& m) { return m.id == c.node_id; })) {
        v.fail(node->get("id"), "node.id",
               "node " + std::to_string(c.node_id) + " is not in the [[cluster.member]] list");
      }
      if (c.members.size() > 1 && !c.listen_peer) {
        v.fail(nullptr, "listen.peer", "required when the cluster has more than one member");
      }
    }
  }
  if (c.join && !c.listen_peer) {
    v.fail(nullptr, "listen.peer", "required with cluster.state = \"join\"");
  }
  if (c.members.empty()) {
    member_config self;
    self.id = c.node_id;
    if (c.listen_peer) self.peer = *c.listen_peer;
    self.memcached = c.listen_memcached;
    self.cs733 = c.listen_cs733;
    self.http = c.listen_http;
    c.members.push_back(self);
  }

  if (const toml::table* raft = v.table_at(root, "raft", "raft")) {
    v.only_keys(*raft, "raft",
                {"tick_ms", "heartbeat_ticks", "election_ticks", "fsync", "snapshot_entries",
                 "max_disk_mb", "lease_reads"});
    if (auto x = v.integer(*raft, "tick_ms", "raft.tick_ms", 1, 10000)) c.raft.tick_ms = *x;
    if (auto x = v.integer(*raft, "heartbeat_ticks", "raft.heartbeat_ticks", 1, 100000))
      c.raft.heartbeat_ticks = *x;
    if (auto x = v.integer(*raft, "election_ticks", "raft.election_ticks", 2, 1000000))
      c.raft.election_ticks = *x;
    if (auto x = v.boolean(*raft, "fsync", "raft.fsync")) c.raft.fsync = *x;
    if (auto x = v.boolean(*raft, "lease_reads", "raft.lease_reads")) c.raft.lease_reads = *x;
    if (auto x = v.integer(*raft, "snapshot_entries", "raft.snapshot_entries", 2, 1ull << 40))
      c.raft.snapshot_entries = *x;
    if (auto x = v.integer(*raft, "max_disk_mb", "raft.max_disk_mb", 16, 1ull << 30))
      c.raft.max_disk_mb = *x;
    if (c.raft.heartbeat_ticks >= c.raft.election_ticks) {
      v.fail(raft->get("heartbeat_ticks"), "raft.heartbeat_ticks",
             "must be smaller than raft.election_ticks");
    }
  }

  if (const toml::table* limits = v.table_at(root, "limits", "limits")) {
    v.only_keys(*limits, "limits",
                {"max_connections", "max_key_bytes", "max_value_bytes", "max_memory_mb",
                 "request_timeout_ms", "http_read_timeout_ms", "http_idle_timeout_ms",
                 "max_writes_in_flight", "max_write_bytes_in_flight"});
    if (auto x = v.integer(*limits, "max_connections", "limits.max_connections", 1, 1000000))
      c.limits.max_connections = *x;
    if (auto x = v.integer(*limits, "max_key_bytes", "limits.max_key_bytes", 1, 250))
      c.limits.max_key_bytes = *x;
    if (auto x = v.integer(*limits, "max_value_bytes", "limits.max_value_bytes", 1, 64ull << 20))
      c.limits.max_value_bytes = *x;
    if (auto x = v.integer(*limits, "max_memory_mb", "limits.max_memory_mb", 1, 1ull << 20))
      c.limits.max_memory_mb = *x;
    if (auto x = v.integer(*limits, "request_timeout_ms", "limits.request_timeout_ms", 10,
                           3600000))
      c.limits.request_timeout_ms = *x;
    if (auto x = v.integer(*limits, "http_read_timeout_ms", "limits.http_read_timeout_ms", 100,
                           3600000))
      c.limits.http_read_timeout_ms = *x;
    if (auto x = v.integer(*limits, "http_idle_timeout_ms", "limits.http_idle_timeout_ms", 100,
                           86400000))
      c.limits.http_idle_timeout_ms = *x;
    if (auto x =
            v.integer(*limits, "max_writes_in_flight", "limits.max_writes_in_flight", 1, 10000000))
      c.limits.max_writes_in_flight = *x;
    if (auto x = v.integer(*limits, "max_write_bytes_in_flight", "limits.max_write_bytes_in_flight",
                           1024, 1ull << 40))
      c.limits.max_write_bytes_in_flight = *x;
  }

  if (const toml::table* http = v.table_at(root, "http", "http")) {
    v.only_keys(*http, "http", {"tls_cert", "tls_key", "admin_token_file"});
    auto cert = v.string(*http, "tls_cert", "http.tls_cert");
    auto key = v.string(*http, "tls_key", "http.tls_key");
    if (cert.has_value() != key.has_value()) {
      v.fail(http, cert ? "http.tls_key" : "http.tls_cert",
             "missing: http.tls_cert and http.tls_key go together");
    }
    if (cert) {
      // Read here so that a missing or unreadable file is a config error; the PEM contents
      // are checked when the TLS context is built (app/server.cc), also with exit 2.
      v.read_file(http->get("tls_cert"), "http.tls_cert", *cert);
      v.read_file(http->get("tls_key"), "http.tls_key", *key);
      c.http.tls_cert = *cert;
      c.http.tls_key = *key;
    }
    if (auto file = v.string(*http, "admin_token_file", "http.admin_token_file")) {
      const std::string text =
          v.read_file(http->get("admin_token_file"), "http.admin_token_file", *file);
      // The first line, without its line end: `echo secret > file` is the usual way to
      // write one. A token is sent in a header, so it must be visible ASCII.
      std::string token = text.substr(0, text.find('\n'));
      if (!token.empty() && token.back() == '\r') token.pop_back();
      const bool visible =
          std::all_of(token.begin(), token.end(), [](char ch) { return ch > ' ' && ch < 0x7f; });
      if (token.size() < min_admin_token_bytes || token.size() > max_admin_token_bytes ||
          !visible) {
        // The message never quotes the file's contents.
        v.fail(http->get("admin_token_file"), "http.admin_token_file",
               "the first line of " + *file + " must be a token of " +
                   std::to_string(min_admin_token_bytes) + " to " +
                   std::to_string(max_admin_token_bytes) + " visible ASCII characters (no spaces)");
      }
      c.http.admin_token_file = *file;
      c.http.admin_token = std::move(token);
    }
  }

  if (const toml::table* tls = v.table_at(root, "tls", "tls")) {
    v.only_keys(*tls, "tls", {"ca", "cert", "key", "plain_peers"});
    auto ca = v.string(*tls, "ca", "tls.ca");
    auto cert = v.string(*tls, "cert", "tls.cert");
    auto key = v.string(*tls, "key", "tls.key");
    // All three or none: a peer port that is half TLS would either refuse every peer or
    // silently trust any of them.
    for (const auto& [name, value] :
         {std::pair{"tls.ca", &ca}, {"tls.cert", &cert}, {"tls.key", &key}}) {
      if (!*value || (*value)->empty()) {
        v.fail((*value) ? tls->get(std::string_view(name).substr(4)) : tls, name,
               "missing: tls.ca, tls.cert and tls.key go together (a file path each)");
      }
    }
    // Read here so that a missing or unreadable file is a config error; the PEM contents
    // are checked when the TLS contexts are built (app/server.cc), also with exit 2.
    v.read_file(tls->get("ca"), "tls.ca", *ca);
    v.read_file(tls->get("cert"), "tls.cert", *cert);
    v.read_file(tls->get("key"), "tls.key", *key);
    c.tls.ca = *ca;
    c.tls.cert = *cert;
    c.tls.key = *key;
    if (auto plain = v.string(*tls, "plain_peers", "tls.plain_peers")) {
      if (*plain == "accept") {
        c.tls.plain_peers = net::plain_peers::accept;
      } else if (*plain == "dial") {
        c.tls.plain_peers = net::plain_peers::dial;
      } else if (*plain != "refuse") {
        v.fail(tls->get("plain_peers"), "tls.plain_peers",
               "must be \"refuse\" (the default), \"accept\" or \"dial\"");
      }
    }
  }

  if (const toml::table* mc = v.table_at(root, "memcached", "memcached")) {
    v.only_keys(*mc, "memcached", {"auth_file"});
    if (auto file = v.string(*mc, "auth_file", "memcached.auth_file")) {
      const std::string text = v.read_file(mc->get("auth_file"), "memcached.auth_file", *file);
      std::istringstream lines(text);
      std::string line;
      std::size_t number = 0;
      while (std::getline(lines, line)) {
        ++number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        // memcached's format: `user:password`, split at the first colon. Spaces cannot be
        // sent (the credential is `<user> <password>` on the wire), so a line with one
        // could never match: refused rather than silently useless.
        const auto colon = line.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == line.size() ||
            line.find(' ') != std::string::npos) {
          v.fail(mc->get("auth_file"), "memcached.auth_file",
                 *file + " line " + std::to_string(number) +
                     ": must be user:password (non-empty, no spaces)");
        }
        c.memcached.users.emplace_back(line.substr(0, colon), line.substr(colon + 1));
      }
      if (c.memcached.users.empty()) {
        v.fail(mc->get("auth_file"), "memcached.auth_file",
               *file + " holds no user:password line (nobody could authenticate)");
      }
      c.memcached.auth_file = *file;
    }
  }
  return c;
}

}  // namespace

std::variant<config, config_error> parse_config(std::string_view toml_text,
                                                const std::filesystem::path& source_name) {
  try {
    toml::table root = toml::parse(toml_text, source_name.string());
    return build(root, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << source_name.string() << ':' << e.source().begin.line << ": " << e.description();
    return config_error{out.str()};
  } catch (const invalid& e) {
    return config_error{e.message};
  }
}

std::variant<config, config_error> load_config(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return config_error{file.string() + ": cannot open the config file"};
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), file);
}

net::limits config::door_limits() const {
  net::limits l;
  l.max_connections = limits.max_connections;
  l.max_key_bytes = limits.max_key_bytes;
  l.max_value_bytes = limits.max_value_bytes;
  l.request_timeout = std::chrono::milliseconds(limits.request_timeout_ms);
  l.max_writes_in_flight = limits.max_writes_in_flight;
  l.max_write_bytes_in_flight = limits.max_write_bytes_in_flight;
  return l;
}

std::vector<net::member_address> config::member_addresses() const {
  std::vector<net::member_address> out;
  for (const auto& m : members) {
    net::member_address a;
    a.id = raft::node_id(m.id);
    a.peer = m.peer.text;
    if (m.memcached) a.memcached = m.memcached->text;
    if (m.cs733) a.cs733 = m.cs733->text;
    if (m.http) a.http = m.http->text;
    out.push_back(std::move(a));
  }
  return out;
}

std::string render_config(const config& c) {
  std::ostringstream out;
  auto quoted = [](const std::string& s) {
    std::string q = "\"";
    for (char ch : s) {
      if (ch == '"' || ch == '\\') q.push_back('\\');
      q.push_back(ch);
    }
    return q + "\"";
  };
  out << "[node]\nid = " << c.node_id << "\ndata_dir = " << quoted(c.data_dir.string()) << "\n\n";
  out << "[listen]\n";
  if (c.listen_memcached) out << "memcached = " << quoted(c.listen_memcached->text) << "\n";
  if (c.listen_cs733) out << "cs733 = " << quoted(c.listen_cs733->text) << "\n";
  if (c.listen_http) out << "http = " << quoted(c.listen_http->text) << "\n";
  if (c.listen_peer) out << "peer = " << quoted(c.listen_peer->text) << "\n";
  out << "\n[cluster]\nstate = " << quoted(c.join ? "join" : "new") << "\n";
  if (!c.cluster_token.empty()) out << "token = " << quoted(c.cluster_token) << "\n";
  for (const auto& m : c.members) {
    out << "\n[[cluster.member]]\nid = " << m.id << "\n";
    if (!m.peer.text.empty()) out << "peer = " << quoted(m.peer.text) << "\n";
    if (m.memcached) out << "memcached = " << quoted(m.memcached->text) << "\n";
    if (m.cs733) out << "cs733 = " << quoted(m.cs733->text) << "\n";
    if (m.http) out << "http = " << quoted(m.http->text) << "\n";
  }
  out << "\n[raft]\ntick_ms = " << c.raft.tick_ms << "\nheartbeat_ticks = " << c.raft.heartbeat_ticks
      << "\nelection_ticks = " << c.raft.election_ticks
      << "\nfsync = " << (c.raft.fsync ? "true" : "false")
      << "\nsnapshot_entries = " << c.raft.snapshot_entries
      << "\nmax_disk_mb = " << c.raft.max_disk_mb
      << "\nlease_reads = " << (c.raft.lease_reads ? "true" : "false") << "\n";
  out << "\n[limits]\nmax_connections = " << c.limits.max_connections
      << "\nmax_key_bytes = " << c.limits.max_key_bytes
      << "\nmax_value_bytes = " << c.limits.max_value_bytes
      << "\nmax_memory_mb = " << c.limits.max_memory_mb
      << "\nrequest_timeout_ms = " << c.limits.request_timeout_ms
      << "\nhttp_read_timeout_ms = " << c.limits.http_read_timeout_ms
      << "\nhttp_idle_timeout_ms = " << c.limits.http_idle_timeout_ms
      << "\nmax_writes_in_flight = " << c.limits.max_writes_in_flight
      << "\nmax_write_bytes_in_flight = " << c.limits.max_write_bytes_in_flight << "\n";
  // File names only: the token and the passwords are never printed.
  if (c.http.tls() || !c.http.admin_token_file.empty()) {
    out << "\n[http]\n";
    if (c.http.tls()) {
      out << "tls_cert = " << quoted(c.http.tls_cert.string())
          << "\ntls_key = " << quoted(c.http.tls_key.string()) << "\n";
    }
    if (!c.http.admin_token_file.empty())
      out << "admin_token_file = " << quoted(c.http.admin_token_file.string()) << "\n";
  }
  if (!c.memcached.auth_file.empty())
    out << "\n[memcached]\nauth_file = " << quoted(c.memcached.auth_file.string()) << "\n";
  if (c.tls.enabled()) {
    out << "\n[tls]\nca = " << quoted(c.tls.ca.string())
        << "\ncert = " << quoted(c.tls.cert.string()) << "\nkey = " << quoted(c.tls.key.string())
        << "\nplain_peers = " << quoted(std::string(net::to_string(c.tls.plain_peers))) << "\n";
  }
  return out.str();
}

}  // namespace app
