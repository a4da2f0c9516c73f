#define BOOST_TEST_MODULE app_config
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "app/cluster_id.h"
#include "app/config.h"
#include "test/support/temp_dir.h"

namespace {

std::variant<app::config, app::config_error> parse(const std::string& text) {
  return app::parse_config(text, "test.toml");
}

std::string error_of(const std::string& text) {
  auto r = parse(text);
  BOOST_REQUIRE_MESSAGE(std::holds_alternative<app::config_error>(r), "expected an error");
  return std::get<app::config_error>(r).message;
}

const std::string minimal = "[node]\nid = 1\ndata_dir = \"d\"\n";

const std::string three_nodes = R"([node]
id = 2
data_dir = "var/node2"
[listen]
memcached = "127.0.0.1:11212"
peer = "127.0.0.1:7002"
[[cluster.member]]
id = 1
peer = "127.0.0.1:7001"
[[cluster.member]]
id = 3
peer = "127.0.0.1:7003"
[[cluster.member]]
id = 2
peer = "127.0.0.1:7002"
memcached = "127.0.0.1:11212"
)";

}  // namespace

BOOST_AUTO_TEST_CASE(minimal_config_is_a_cluster_of_one_with_defaults) {
  auto r = parse(minimal);
  BOOST_REQUIRE(std::holds_alternative<app::config>(r));
  const auto& c = std::get<app::config>(r);
  BOOST_TEST(c.node_id == 1u);
  BOOST_TEST(c.data_dir == "d");
  BOOST_REQUIRE_EQUAL(c.members.size(), 1u);
  BOOST_TEST(c.members[0].id == 1u);
  BOOST_TEST(c.raft.tick_ms == 10u);
  BOOST_TEST(c.raft.heartbeat_ticks == 5u);
  BOOST_TEST(c.raft.election_ticks == 30u);
  BOOST_TEST(c.raft.fsync);
  BOOST_TEST(c.limits.max_connections == 4096u);
  BOOST_TEST(c.limits.max_value_bytes == 1048576u);
  BOOST_TEST(c.limits.request_timeout_ms == 5000u);
  BOOST_TEST(c.limits.http_read_timeout_ms == 10000u);
  BOOST_TEST(c.limits.http_idle_timeout_ms == 30000u);
}

BOOST_AUTO_TEST_CASE(http_timeouts_are_read_and_bounded) {
  auto r = parse(minimal + "[limits]\nhttp_read_timeout_ms = 500\nhttp_idle_timeout_ms = 700\n");
  BOOST_REQUIRE(std::holds_alternative<app::config>(r));
  BOOST_TEST(std::get<app::config>(r).limits.http_read_timeout_ms == 500u);
  BOOST_TEST(std::get<app::config>(r).limits.http_idle_timeout_ms == 700u);
  BOOST_TEST(error_of(minimal + "[limits]\nhttp_read_timeout_ms = 5\n")
                 .find("limits.http_read_timeout_ms") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(members_are_sorted_and_addresses_parsed) {
  auto r = parse(three_nodes);
  BOOST_REQUIRE(std::holds_alternative<app::config>(r));
  const auto& c = std::get<app::config>(r);
  BOOST_REQUIRE_EQUAL(c.members.size(), 3u);
  BOOST_TEST(c.members[0].id == 1u);
  BOOST_TEST(c.members[2].id == 3u);
  BOOST_TEST(c.members[1].peer.host == "127.0.0.1");
  BOOST_TEST(c.members[1].peer.port == 7002);
  BOOST_TEST(c.members[1].memcached->text == "127.0.0.1:11212");
}

BOOST_AUTO_TEST_CASE(unknown_key_is_named_with_its_line) {
  const auto msg = error_of(minimal + "[raft]\ntick_ms = 10\nspeed = 3\n");
  BOOST_TEST(msg.find("test.toml:6") != std::string::npos, msg);
  BOOST_TEST(msg.find("raft.speed") != std::string::npos, msg);
  BOOST_TEST(msg.find("unknown key") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(unknown_top_level_table_is_refused) {
  BOOST_TEST(error_of(minimal + "[nodes]\nx = 1\n").find("'nodes'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(wrong_type_is_named) {
  const auto msg = error_of("[node]\nid = \"one\"\ndata_dir = \"d\"\n");
  BOOST_TEST(msg.find("node.id") != std::string::npos, msg);
  BOOST_TEST(msg.find("integer") != std::string::npos, msg);
  BOOST_TEST(error_of(minimal + "[raft]\nfsync = 1\n").find("raft.fsync") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(node_id_must_be_positive) {
  BOOST_TEST(error_of("[node]\nid = 0\ndata_dir = \"d\"\n").find("node.id") != std::string::npos);
  BOOST_TEST(error_of("[node]\nid = -4\ndata_dir = \"d\"\n").find("node.id") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(missing_node_table_or_keys_are_named) {
  BOOST_TEST(error_of("").find("node") != std::string::npos);
  BOOST_TEST(error_of("[node]\nid = 1\n").find("node.data_dir") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(duplicate_member_id_is_refused) {
  std::string text = three_nodes;
  text.replace(text.find("id = 3"), 6, "id = 1");
  const auto msg = error_of(text);
  BOOST_TEST(msg.find("duplicate member id 1") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(duplicate_member_address_is_refused) {
  std::string text = three_nodes;
  text.replace(text.find("127.0.0.1:7003"), 14, "127.0.0.1:7001");
  const auto msg = error_of(text);
  BOOST_TEST(msg.find("duplicate address 127.0.0.1:7001") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(node_id_missing_from_member_list_is_refused) {
  std::string text = three_nodes;
  text.replace(text.find("id = 2\ndata_dir"), 6, "id = 9");
  const auto msg = error_of(text);
  BOOST_TEST(msg.find("node.id") != std::string::npos, msg);
  BOOST_TEST(msg.find("not in the [[cluster.member]] list") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(bad_addresses_are_refused) {
  BOOST_TEST(error_of(minimal + "[listen]\nhttp = \"localhost\"\n").find("listen.http") !=
             std::string::npos);
  BOOST_TEST(error_of(minimal + "[listen]\nhttp = \"127.0.0.1:70000\"\n").find("1..65535") !=
             std::string::npos);
  BOOST_TEST(error_of(minimal + "[listen]\nhttp = \"127.0.0.1:8080\"\ncs733 = \"127.0.0.1:8080\"\n")
                 .find("used twice") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(heartbeat_must_be_shorter_than_election_timeout) {
  const auto msg = error_of(minimal + "[raft]\nheartbeat_ticks = 30\nelection_ticks = 30\n");
  BOOST_TEST(msg.find("raft.heartbeat_ticks") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(toml_syntax_error_names_file_and_line) {
  const auto msg = error_of("[node]\nid = 1\ndata_dir = \n");
  BOOST_TEST(msg.find("test.toml:3") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(rendered_config_parses_back_to_the_same_values) {
  auto c = std::get<app::config>(parse(three_nodes));
  auto again = parse(app::render_config(c));
  BOOST_REQUIRE(std::holds_alternative<app::config>(again));
  const auto& d = std::get<app::config>(again);
  BOOST_TEST(app::render_config(d) == app::render_config(c));
}

BOOST_AUTO_TEST_CASE(cluster_token_is_optional_and_read) {
  BOOST_TEST(std::get<app::config>(parse(three_nodes)).cluster_token.empty());
  auto r = parse(three_nodes + "[cluster]\ntoken = \"shop-eu-2024.06\"\n");
  BOOST_REQUIRE(std::holds_alternative<app::config>(r));
  BOOST_TEST(std::get<app::config>(r).cluster_token == "shop-eu-2024.06");
  BOOST_TEST(std::get<app::config>(r).members.size() == 3u);
  // [cluster] before [[cluster.member]] is the same table.
  auto first =
      parse(minimal +
            "[cluster]\ntoken = \"t\"\n[[cluster.member]]\nid = 1\npeer = \"127.0.0.1:7001\"\n");
  BOOST_REQUIRE(std::holds_alternative<app::config>(first));
  BOOST_TEST(std::get<app::config>(first).cluster_token == "t");
}

BOOST_AUTO_TEST_CASE(bad_cluster_tokens_are_named) {
  for (const std::string& bad :
       std::vector<std::string>{"\"\"", "\"two words\"", "\"tab\\there\"", "\"caf\u00e9\"", "42",
                                "\"" + std::string(129, 'x') + "\""}) {
    const auto msg = error_of(minimal + "[cluster]\ntoken = " + bad + "\n");
    BOOST_TEST_CONTEXT(bad) {
      BOOST_TEST(msg.find("cluster.token") != std::string::npos, msg);
      BOOST_TEST(msg.find("test.toml:5") != std::string::npos, msg);
    }
  }
  BOOST_TEST(std::holds_alternative<app::config>(
      parse(minimal + "[cluster]\ntoken = \"" + std::string(128, 'x') + "\"\n")));
  BOOST_TEST(error_of(minimal + "[cluster]\nname = \"x\"\n").find("cluster.name") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(cluster_state_is_new_by_default_or_join) {
  BOOST_TEST(!std::get<app::config>(parse(three_nodes)).join);
  BOOST_TEST(!std::get<app::config>(parse(three_nodes + "[cluster]\nstate = \"new\"\n")).join);
  auto joining = parse(three_nodes + "[cluster]\nstate = \"join\"\n");
  BOOST_REQUIRE(std::holds_alternative<app::config>(joining));
  BOOST_TEST(std::get<app::config>(joining).join);
  // The rendered config keeps it.
  auto again = parse(app::render_config(std::get<app::config>(joining)));
  BOOST_REQUIRE(std::holds_alternative<app::config>(again));
  BOOST_TEST(std::get<app::config>(again).join);
}

BOOST_AUTO_TEST_CASE(bad_cluster_states_are_named) {
  const auto msg = error_of(three_nodes + "[cluster]\nstate = \"existing\"\n");
  BOOST_TEST(msg.find("cluster.state") != std::string::npos, msg);
  BOOST_TEST(msg.find("\"new\" or \"join\"") != std::string::npos, msg);
  // A joining node must have a peer port: the leader reaches it there.
  const auto no_peer = error_of(minimal + "[cluster]\nstate = \"join\"\n");
  BOOST_TEST(no_peer.find("listen.peer") != std::string::npos, no_peer);
}

BOOST_AUTO_TEST_CASE(rendered_config_keeps_the_token) {
  auto c = std::get<app::config>(parse(three_nodes + "[cluster]\ntoken = \"a\\\"b\"\n"));
  BOOST_TEST(c.cluster_token == "a\"b");
  auto again = parse(app::render_config(c));
  BOOST_REQUIRE(std::holds_alternative<app::config>(again));
  BOOST_TEST(std::get<app::config>(again).cluster_token == "a\"b");
  BOOST_TEST(app::render_config(std::get<app::config>(again)) == app::render_config(c));
}

BOOST_AUTO_TEST_CASE(cluster_id_depends_on_the_member_list_and_the_token) {
  const auto base = std::get<app::config>(parse(three_nodes));
  const auto id = app::cluster_id::derive(base);
  BOOST_TEST(id != 0u);
  // Every member derives the same id: the list is the same whichever node reads it.
  std::string node3 = three_nodes;
  node3.replace(node3.find("id = 2\ndata_dir"), 6, "id = 3");
  node3.replace(node3.find("127.0.0.1:7002\"\n[[cluster"), 14, "127.0.0.1:7003");
  node3.replace(node3.find("memcached = \"127.0.0.1:11212\"\npeer"), 29, "");
  auto other_member = parse(node3);
  BOOST_REQUIRE(std::holds_alternative<app::config>(other_member));
  BOOST_TEST(app::cluster_id::derive(std::get<app::config>(other_member)) == id);

  auto tokened = std::get<app::config>(parse(three_nodes + "[cluster]\ntoken = \"one\"\n"));
  auto retokened = std::get<app::config>(parse(three_nodes + "[cluster]\ntoken = \"two\"\n"));
  BOOST_TEST(app::cluster_id::derive(tokened) != id);
  BOOST_TEST(app::cluster_id::derive(retokened) != app::cluster_id::derive(tokened));
}

namespace {

struct temp_dir : test_support::temp_dir {
  temp_dir() : test_support::temp_dir("raftkv-cluster-id-") {}
};

using test_support::read_all;

app::cluster_id::loaded expect_loaded(const std::variant<app::cluster_id::loaded, std::string>& r) {
  // Boost.Test builds a message even when the check passes: only name the error if any.
  const auto* error = std::get_if<std::string>(&r);
  BOOST_REQUIRE_MESSAGE(error == nullptr, "expected an id, got: " << (error ? *error : ""));
  return std::get<app::cluster_id::loaded>(r);
}

}  // namespace

BOOST_AUTO_TEST_CASE(cluster_id_is_persisted_at_first_start_and_kept_after) {
  temp_dir t;
  const auto dir = t.path / "node1";  // created if missing
  const auto first = expect_loaded(app::cluster_id::load_or_create(dir, 0x0123456789abcdefull));
  BOOST_TEST(first.id == 0x0123456789abcdefull);
  BOOST_TEST(first.created);
  BOOST_TEST(!first.differs);
  BOOST_TEST(read_all(dir / "cluster_id") == "0123456789abcdef\n");
  BOOST_TEST(!std::filesystem::exists(dir / "cluster_id.tmp"));

  const auto again = expect_loaded(app::cluster_id::load_or_create(dir, 0x0123456789abcdefull));
  BOOST_TEST(again.id == first.id);
  BOOST_TEST(!again.created);
  BOOST_TEST(!again.differs);

  // The member list or the token changed in the config: the persisted id stays.
  const auto changed = expect_loaded(app::cluster_id::load_or_create(dir, 42));
  BOOST_TEST(changed.id == first.id);
  BOOST_TEST(!changed.created);
  BOOST_TEST(changed.differs);
  BOOST_TEST(read_all(dir / "cluster_id") == "0123456789abcdef\n");
}

BOOST_AUTO_TEST_CASE(a_data_dir_of_an_old_cluster_keeps_its_id_against_a_rebuilt_config) {
  // The old cluster bootstrapped with token "original"; the rebuilt one (same addresses)
  // uses "rebuilt". A node that kept its data dir keeps announcing the old id, which the
  // rebuilt cluster refuses; a node with an empty data dir joins the rebuilt cluster.
  temp_dir t;
  auto old_config = std::get<app::config>(parse(three_nodes + "[cluster]\ntoken = \"original\"\n"));
  auto new_config = std::get<app::config>(parse(three_nodes + "[cluster]\ntoken = \"rebuilt\"\n"));
  const auto old_id = app::cluster_id::derive(old_config);
  const auto new_id = app::cluster_id::derive(new_config);
  BOOST_TEST_REQUIRE(old_id != new_id);
  expect_loaded(app::cluster_id::load_or_create(t.path / "kept", old_id));
  const auto kept = expect_loaded(app::cluster_id::load_or_create(t.path / "kept", new_id));
  BOOST_TEST(kept.id == old_id);
  BOOST_TEST(kept.differs);
  const auto fresh = expect_loaded(app::cluster_id::load_or_create(t.path / "fresh", new_id));
  BOOST_TEST(fresh.id == new_id);
  BOOST_TEST(fresh.created);
}

BOOST_AUTO_TEST_CASE(a_malformed_cluster_id_file_is_an_error_naming_it) {
  temp_dir t;
  for (const std::string& bad :
       std::vector<std::string>{"", "0123456789abcde\n", "0123456789ABCDEF\n", "0000000000000000\n",
                                "0123456789abcdefg", "0123456789abcdef\n\n", "junk"}) {
    {
      std::ofstream out(t.path / "cluster_id", std::ios::binary | std::ios::trunc);
      out << bad;
    }
    const auto r = app::cluster_id::load_or_create(t.path, 1);
    BOOST_TEST_CONTEXT("content \"" << bad << "\"") {
      BOOST_TEST_REQUIRE(std::holds_alternative<std::string>(r));
      BOOST_TEST(std::get<std::string>(r).find((t.path / "cluster_id").string()) !=
                 std::string::npos);
      BOOST_TEST(std::get<std::string>(r).find("malformed") != std::string::npos);
    }
    // Never overwritten: the operator decides.
    BOOST_TEST(read_all(t.path / "cluster_id") == bad);
  }
  // A data dir that cannot hold the file.
  { std::ofstream out(t.path / "not-a-dir"); }
  BOOST_TEST(std::holds_alternative<std::string>(
      app::cluster_id::load_or_create(t.path / "not-a-dir", 1)));
}

BOOST_AUTO_TEST_CASE(cluster_id_file_format_round_trips) {
  for (std::uint64_t v :
       {std::uint64_t{1}, std::uint64_t{0xfedcba9876543210ull}, ~std::uint64_t{0}}) {
    BOOST_TEST(app::cluster_id::format(v).size() == 17u);
    BOOST_TEST(app::cluster_id::parse(app::cluster_id::format(v)) == v);
  }
  BOOST_TEST(app::cluster_id::parse("00000000000000ff") == 255u);  // without the newline
}

BOOST_AUTO_TEST_CASE(shipped_configs_are_valid) {
  for (const char* name : {"single.toml", "node1.toml", "node2.toml", "node3.toml"}) {
    auto r = app::load_config(std::string(RAFTKV_SOURCE_DIR) + "/etc/" + name);
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(std::holds_alternative<app::config>(r));
    }
  }
  // The three nodes of the loopback cluster derive one cluster id.
  std::set<std::uint64_t> ids;
  for (const char* name : {"node1.toml", "node2.toml", "node3.toml"}) {
    auto r = app::load_config(std::string(RAFTKV_SOURCE_DIR) + "/etc/" + name);
    BOOST_REQUIRE(std::holds_alternative<app::config>(r));
    BOOST_TEST(!std::get<app::config>(r).cluster_token.empty());
    ids.insert(app::cluster_id::derive(std::get<app::config>(r)));
  }
  BOOST_TEST(ids.size() == 1u);
}

namespace {

// A file in a fresh temp dir holding `text`.
std::string temp_file(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("raftkv-config-test-" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

}  // namespace

BOOST_AUTO_TEST_CASE(overload_bounds_have_defaults_and_ranges) {
  auto c = std::get<app::config>(parse(minimal));
  BOOST_TEST(c.limits.max_writes_in_flight == 10000u);
  BOOST_TEST(c.limits.max_write_bytes_in_flight == (64u << 20));
  BOOST_TEST(c.door_limits().max_writes_in_flight == 10000u);
  c = std::get<app::config>(
      parse(minimal + "[limits]\nmax_writes_in_flight = 5\nmax_write_bytes_in_flight = 4096\n"));
  BOOST_TEST(c.door_limits().max_writes_in_flight == 5u);
  BOOST_TEST(c.door_limits().max_write_bytes_in_flight == 4096u);
  BOOST_TEST(error_of(minimal + "[limits]\nmax_writes_in_flight = 0\n")
                 .find("limits.max_writes_in_flight") != std::string::npos);
  BOOST_TEST(error_of(minimal + "[limits]\nmax_write_bytes_in_flight = 10\n")
                 .find("limits.max_write_bytes_in_flight") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(http_tls_files_must_be_readable_and_come_in_pairs) {
  const std::string cert = temp_file("c.pem", "x");
  BOOST_TEST(error_of(minimal + "[http]\ntls_cert = \"" + cert + "\"\n").find("http.tls_key") !=
             std::string::npos);
  const std::string missing =
      error_of(minimal + "[http]\ntls_cert = \"" + cert + "\"\ntls_key = \"/nonexistent/k.pem\"\n");
  BOOST_TEST(missing.find("test.toml:") == 0u);
  BOOST_TEST(missing.find("http.tls_key") != std::string::npos);
  auto c = std::get<app::config>(
      parse(minimal + "[http]\ntls_cert = \"" + cert + "\"\ntls_key = \"" + cert + "\"\n"));
  BOOST_TEST(c.http.tls());
}

BOOST_AUTO_TEST_CASE(admin_token_is_the_first_line_and_never_rendered) {
  const std::string token = "0123456789abcdef-token";
  const std::string file = temp_file("t", token + "\r\nsecond line ignored\n");
  auto c = std::get<app::config>(parse(minimal + "[http]\nadmin_token_file = \"" + file + "\"\n"));
  BOOST_TEST(c.http.admin_token == token);
  const std::string rendered = app::render_config(c);
  BOOST_TEST(rendered.find(token) == std::string::npos);
  BOOST_TEST(rendered.find("admin_token_file") != std::string::npos);
  // Too short, or with a space: refused, and the message does not quote the file.
  const std::string short_file = temp_file("s", "short\n");
  const std::string e = error_of(minimal + "[http]\nadmin_token_file = \"" + short_file + "\"\n");
  BOOST_TEST(e.find("http.admin_token_file") != std::string::npos);
  BOOST_TEST(e.find("short\n") == std::string::npos);
  BOOST_TEST(error_of(minimal + "[http]\nadmin_token_file = \"" +
                      temp_file("sp", "0123456789 abcdefgh\n") + "\"\n")
                 .find("http.admin_token_file") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(memcached_auth_file_lines) {
  const std::string file = temp_file("a", "alice:s3cret\n\nbob:pa:ss\r\n");
  auto c = std::get<app::config>(parse(minimal + "[memcached]\nauth_file = \"" + file + "\"\n"));
  BOOST_REQUIRE(c.memcached.users.size() == 2u);
  BOOST_TEST(c.memcached.users[0].first == "alice");
  BOOST_TEST(c.memcached.users[0].second == "s3cret");
  BOOST_TEST(c.memcached.users[1].second == "pa:ss");  // split at the first colon
  BOOST_TEST(app::render_config(c).find("s3cret") == std::string::npos);
  for (const std::string bad : {"nocolon\n", ":nouser\n", "nopass:\n", "a b:c\n", "\n"}) {
    BOOST_TEST_CONTEXT(bad) {
      BOOST_TEST(error_of(minimal + "[memcached]\nauth_file = \"" + temp_file("b", bad) + "\"\n")
                     .find("memcached.auth_file") != std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(plain_peers_is_refuse_accept_or_dial_and_is_rendered) {
  const std::string ca = temp_file("ca.pem", "ca");
  const std::string cert = temp_file("n.pem", "cert");
  const std::string key = temp_file("n.key", "key");
  const std::string files =
      "[tls]\nca = \"" + ca + "\"\ncert = \"" + cert + "\"\nkey = \"" + key + "\"\n";
  BOOST_TEST(
      (std::get<app::config>(parse(minimal + files)).tls.plain_peers == net::plain_peers::refuse));
  for (auto [text, mode] : {std::pair{"refuse", net::plain_peers::refuse},
                            {"accept", net::plain_peers::accept},
                            {"dial", net::plain_peers::dial}}) {
    BOOST_TEST_CONTEXT(text) {
      const auto c = std::get<app::config>(
          parse(three_nodes + files + "plain_peers = \"" + std::string(text) + "\"\n"));
      BOOST_TEST((c.tls.plain_peers == mode));
      const std::string rendered = app::render_config(c);
      BOOST_TEST(rendered.find("plain_peers = \"" + std::string(text) + "\"") != std::string::npos);
      BOOST_TEST((std::get<app::config>(parse(rendered)).tls.plain_peers == mode));
    }
  }
  const std::string bad = error_of(minimal + files + "plain_peers = \"yes\"\n");
  BOOST_TEST(bad.find("key 'tls.plain_peers'") != std::string::npos, bad);
  BOOST_TEST(bad.find("\"refuse\" (the default), \"accept\" or \"dial\"") != std::string::npos,
             bad);
  BOOST_TEST(error_of(minimal + files + "plain_peers = true\n").find("'tls.plain_peers'") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(peer_tls_files_are_read_and_come_in_threes) {
  const std::string ca = temp_file("ca.pem", "ca");
  const std::string cert = temp_file("n.pem", "cert");
  const std::string key = temp_file("n.key", "key");
  auto table = [](const std::string& a, const std::string& b, const std::string& k) {
    std::string t = "[tls]\n";
    if (!a.empty()) t += "ca = \"" + a + "\"\n";
    if (!b.empty()) t += "cert = \"" + b + "\"\n";
    if (!k.empty()) t += "key = \"" + k + "\"\n";
    return t;
  };
  auto c = std::get<app::config>(parse(minimal + table(ca, cert, key)));
  BOOST_TEST(c.tls.enabled());
  BOOST_TEST(c.tls.ca.string() == ca);
  BOOST_TEST(c.tls.cert.string() == cert);
  BOOST_TEST(c.tls.key.string() == key);
  BOOST_TEST(!std::get<app::config>(parse(minimal)).tls.enabled());

  // Rendered (file names only) and read back alike.
  const std::string rendered =
      app::render_config(std::get<app::config>(parse(three_nodes + table(ca, cert, key))));
  BOOST_TEST(rendered.find("[tls]") != std::string::npos);
  auto back = std::get<app::config>(parse(rendered));
  BOOST_TEST(back.tls.key.string() == key);
  BOOST_TEST(app::render_config(back) == rendered);

  // Any one missing names that key; so does an empty path.
  BOOST_TEST(error_of(minimal + table("", cert, key)).find("'tls.ca'") != std::string::npos);
  BOOST_TEST(error_of(minimal + table(ca, "", key)).find("'tls.cert'") != std::string::npos);
  BOOST_TEST(error_of(minimal + table(ca, cert, "")).find("'tls.key'") != std::string::npos);
  BOOST_TEST(
      error_of(minimal + "[tls]\nca = \"\"\ncert = \"" + cert + "\"\nkey = \"" + key + "\"\n")
          .find("'tls.ca'") != std::string::npos);

  // A missing or unreadable file: the message names the file and the key (and the line).
  const std::string missing = error_of(minimal + table(ca, "/nonexistent/n.pem", key));
  BOOST_TEST(missing.find("test.toml:6: key 'tls.cert'") == 0u, missing);
  BOOST_TEST(missing.find("/nonexistent/n.pem") != std::string::npos);
  const std::string dir = std::filesystem::path(ca).parent_path().string();
  BOOST_TEST(error_of(minimal + table(ca, cert, dir)).find("'tls.key'") != std::string::npos);

  // Wrong types and unknown keys.
  BOOST_TEST(error_of(minimal + "[tls]\nca = 1\n").find("'tls.ca': must be a string") !=
             std::string::npos);
  BOOST_TEST(error_of(minimal + table(ca, cert, key) + "verify = false\n").find("'tls.verify'") !=
             std::string::npos);
  BOOST_TEST(error_of("tls = 1\n" + minimal).find("'tls': must be a table") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(shipped_tls_configs_are_the_plain_ones_plus_tls) {
  // etc/tls/node<i>.toml point at certificates scripts/cluster.sh --tls makes at start; only
  // those files may be missing, and they are named in the error.
  for (int i = 1; i <= 3; ++i) {
    const std::string name = "node" + std::to_string(i) + ".toml";
    auto r = app::load_config(std::string(RAFTKV_SOURCE_DIR) + "/etc/tls/" + name);
    auto plain = app::load_config(std::string(RAFTKV_SOURCE_DIR) + "/etc/" + name);
    BOOST_TEST_CONTEXT(name) {
      BOOST_REQUIRE(std::holds_alternative<app::config>(plain));
      if (auto* e = std::get_if<app::config_error>(&r)) {
        BOOST_TEST(e->message.find("key 'tls.") != std::string::npos, e->message);
        BOOST_TEST(e->message.find("cannot read") != std::string::npos, e->message);
      } else {
        const auto& c = std::get<app::config>(r);
        BOOST_TEST(c.tls.enabled());
        BOOST_TEST(c.tls.cert.filename().string() == "node" + std::to_string(i) + ".pem");
        BOOST_TEST(app::cluster_id::derive(c) ==
                   app::cluster_id::derive(std::get<app::config>(plain)));
      }
    }
  }
}
