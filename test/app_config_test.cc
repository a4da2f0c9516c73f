#define BOOST_TEST_MODULE app_config
#include <boost/test/unit_test.hpp>

#include "app/config.h"

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
  BOOST_TEST(error_of(minimal + "[limits]\nhttp_read_timeout_ms = 5\n").find(
                 "limits.http_read_timeout_ms") != std::string::npos);
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

BOOST_AUTO_TEST_CASE(shipped_configs_are_valid) {
  for (const char* name : {"single.toml", "node1.toml", "node2.toml", "node3.toml"}) {
    auto r = app::load_config(std::string(RAFTKV_SOURCE_DIR) + "/etc/" + name);
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(std::holds_alternative<app::config>(r));
    }
  }
}
