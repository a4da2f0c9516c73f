// The pure HTTP router: request -> route or error answer, routes -> commands, outcomes ->
// statuses (docs/http-api.md), and the JSON bodies.
#define BOOST_TEST_MODULE net_http_api
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <limits>

#include "net/http/api.h"

namespace json = boost::json;

namespace {

net::http_request req(std::string method, std::string target, std::string body = {},
                      bool has_body = false) {
  net::http_request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  r.has_body = has_body || !r.body.empty();
  return r;
}

net::route parse(net::http_request r, net::limits lim = {}) {
  return net::parse_route(std::move(r), lim);
}

unsigned error_status(const net::route& r) {
  const auto* resp = std::get_if<net::http_response>(&r);
  BOOST_REQUIRE_MESSAGE(resp != nullptr, "expected an error answer, got route #" << r.index());
  return resp->status;
}

std::string error_code(const net::route& r) {
  const auto& resp = std::get<net::http_response>(r);
  return std::string(json::parse(resp.body).at("error").as_string());
}

}  // namespace

BOOST_AUTO_TEST_CASE(get_key_is_percent_decoded) {
  // %20 decodes to a space, which the key rules refuse.
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv/a%20b"))), 400u);
  auto ok = parse(req("GET", "/v1/kv/a%2Fb?meta=1"));
  BOOST_REQUIRE(std::holds_alternative<net::route_kv_get>(ok));
  BOOST_CHECK_EQUAL(std::get<net::route_kv_get>(ok).key, "a/b");
  BOOST_CHECK(std::get<net::route_kv_get>(ok).meta);
}

BOOST_AUTO_TEST_CASE(bad_keys_and_escapes_are_400) {
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv/"))), 400u);
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv/%zz"))), 400u);
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv/a%0Ab"))), 400u);
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv/" + std::string(251, 'k')))), 400u);
  BOOST_CHECK(std::holds_alternative<net::route_kv_get>(parse(req("GET", "/v1/kv/" + std::string(250, 'k')))));
  BOOST_CHECK_EQUAL(error_code(parse(req("GET", "/v1/kv/%"))), "bad_request");
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv/a?meta=maybe"))), 400u);
}

BOOST_AUTO_TEST_CASE(keys_are_any_bytes_but_space_cr_lf_and_nul) {
  // The memcached key rules: control bytes, DEL and bytes that are not UTF-8 are key bytes.
  for (auto [raw, key] : std::vector<std::pair<std::string, std::string>>{
           {"%01%02", "\x01\x02"}, {"a%09b", "a\tb"}, {"%7F", "\x7f"},
           {"%FF%FE", "\xff\xfe"}, {"caf%C3%A9", "caf\xc3\xa9"}, {"%1B", "\x1b"}}) {
    auto r = parse(req("GET", "/v1/kv/" + raw));
    BOOST_REQUIRE(std::holds_alternative<net::route_kv_get>(r));
    BOOST_CHECK(std::get<net::route_kv_get>(r).key == key);
    auto put = parse(req("PUT", "/v1/kv/" + raw, "v"));
    BOOST_REQUIRE(std::holds_alternative<net::route_kv_put>(put));
    BOOST_CHECK(net::to_command(std::get<net::route_kv_put>(put)).key == key);
    BOOST_CHECK(std::holds_alternative<net::route_kv_delete>(parse(req("DELETE", "/v1/kv/" + raw))));
  }
  for (std::string bad : {"a%00b", "a%0Db", "%0D", "a%0A", "a%20b"})
    BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv/" + bad))), 400u);
  const auto list = parse(req("GET", "/v1/kv?prefix=%FF%01&after=%01"));
  BOOST_REQUIRE(std::holds_alternative<net::route_kv_list>(list));
  BOOST_CHECK(std::get<net::route_kv_list>(list).prefix == "\xff\x01");
}

BOOST_AUTO_TEST_CASE(keys_in_json_are_escaped_text_or_base64) {
  const kv::item_view item{"v", 0, 1, 0};
  // UTF-8 with control characters: a JSON string, control characters escaped.
  const std::string ctl = std::string("\x01") + "a\x7f\x1b";
  const auto text = net::item_response(ctl, item, true).body;
  BOOST_CHECK(text.find("\\u0001") != std::string::npos);
  BOOST_CHECK(text.find('\x01') == std::string::npos);
  const auto meta = json::parse(text).as_object();  // the parser checks UTF-8 too
  BOOST_CHECK(meta.at("key").as_string() == ctl);
  BOOST_CHECK(!meta.contains("key_encoding"));
  // Not UTF-8: base64 with key_encoding, and the body stays valid JSON (UTF-8).
  const std::string binary("\xff\xfe\x01", 3);
  const auto b = json::parse(net::item_response(binary, item, true).body).as_object();
  BOOST_CHECK_EQUAL(b.at("key").as_string(), "//4B");
  BOOST_CHECK_EQUAL(b.at("key_encoding").as_string(), "base64");
  BOOST_CHECK(!b.contains("encoding"));  // that one is about the value

  std::vector<kv::key_info> keys = {{ctl, 1, 1, 0}, {binary, 2, 1, 0}, {"z", 3, 1, 0}};
  const auto page = json::parse(net::list_response(keys, 2).body).as_object();
  const auto& arr = page.at("keys").as_array();
  BOOST_CHECK(arr.at(0).as_object().at("key").as_string() == ctl);
  BOOST_CHECK(!arr.at(0).as_object().contains("key_encoding"));
  BOOST_CHECK_EQUAL(arr.at(1).as_object().at("key").as_string(), "//4B");
  BOOST_CHECK_EQUAL(arr.at(1).as_object().at("key_encoding").as_string(), "base64");
  BOOST_CHECK_EQUAL(page.at("next").as_string(), "//4B");
  BOOST_CHECK_EQUAL(page.at("next_encoding").as_string(), "base64");
}

BOOST_AUTO_TEST_CASE(put_parses_ttl_flags_and_preconditions) {
  auto r = parse(req("PUT", "/v1/kv/k?ttl=30&flags=7", "value"));
  BOOST_REQUIRE(std::holds_alternative<net::route_kv_put>(r));
  const auto& put = std::get<net::route_kv_put>(r);
  BOOST_CHECK_EQUAL(put.value, "value");
  BOOST_CHECK_EQUAL(put.ttl_s, 30);
  BOOST_CHECK_EQUAL(put.flags, 7u);
  const kv::command c = net::to_command(put);
  BOOST_CHECK(c.kind == kv::op::set);
  BOOST_CHECK(c.kind_of_expiry == kv::expiry_kind::relative);
  BOOST_CHECK_EQUAL(c.exptime, 30);
  BOOST_CHECK_EQUAL(c.flags, 7u);
  BOOST_CHECK_EQUAL(c.key, "k");

  auto cas_req = req("PUT", "/v1/kv/k", "v");
  cas_req.if_match = "\"42\"";
  auto cas = parse(cas_req);
  BOOST_REQUIRE(std::holds_alternative<net::route_kv_put>(cas));
  BOOST_CHECK(net::to_command(std::get<net::route_kv_put>(cas)).kind == kv::op::cas);
  BOOST_CHECK_EQUAL(net::to_command(std::get<net::route_kv_put>(cas)).cas_unique, 42u);

  auto add_req = req("PUT", "/v1/kv/k", "v");
  add_req.if_none_match = "*";
  BOOST_CHECK(net::to_command(std::get<net::route_kv_put>(parse(add_req))).kind == kv::op::add);

  auto replace_req = req("PUT", "/v1/kv/k", "v");
  replace_req.if_match = "*";
  BOOST_CHECK(net::to_command(std::get<net::route_kv_put>(parse(replace_req))).kind ==
              kv::op::replace);

  auto both = req("PUT", "/v1/kv/k", "v");
  both.if_match = "\"1\"";
  both.if_none_match = "*";
  BOOST_CHECK_EQUAL(error_status(parse(both)), 400u);

  auto bad_etag = req("PUT", "/v1/kv/k", "v");
  bad_etag.if_match = "\"abc\"";
  BOOST_CHECK_EQUAL(error_status(parse(bad_etag)), 400u);

  BOOST_CHECK_EQUAL(error_status(parse(req("PUT", "/v1/kv/k?ttl=-1", "v"))), 400u);
  BOOST_CHECK_EQUAL(error_status(parse(req("PUT", "/v1/kv/k?flags=4294967296", "v"))), 400u);
  BOOST_CHECK_EQUAL(error_status(parse(req("PUT", "/v1/kv/k?flags=x", "v"))), 400u);
}

BOOST_AUTO_TEST_CASE(put_without_body_is_411_and_oversized_is_413) {
  BOOST_CHECK_EQUAL(error_status(parse(req("PUT", "/v1/kv/k"))), 411u);
  // An explicit empty body is a valid empty value.
  BOOST_CHECK(std::holds_alternative<net::route_kv_put>(parse(req("PUT", "/v1/kv/k", "", true))));
  net::limits lim;
  lim.max_value_bytes = 4;
  BOOST_CHECK_EQUAL(error_status(parse(req("PUT", "/v1/kv/k", "12345"), lim)), 413u);
  BOOST_CHECK(std::holds_alternative<net::route_kv_put>(parse(req("PUT", "/v1/kv/k", "1234"), lim)));
}

BOOST_AUTO_TEST_CASE(delete_honours_if_match) {
  auto plain = parse(req("DELETE", "/v1/kv/k"));
  BOOST_REQUIRE(std::holds_alternative<net::route_kv_delete>(plain));
  BOOST_CHECK_EQUAL(net::to_command(std::get<net::route_kv_delete>(plain)).cas_unique, 0u);
  BOOST_CHECK(net::to_command(std::get<net::route_kv_delete>(plain)).kind == kv::op::remove);
  auto cond = req("DELETE", "/v1/kv/k");
  cond.if_match = "W/\"9\"";
  BOOST_CHECK_EQUAL(net::to_command(std::get<net::route_kv_delete>(parse(cond))).cas_unique, 9u);
  // Version 0 belongs to no item: never matches (the command would read 0 as "any").
  auto zero = req("DELETE", "/v1/kv/k");
  zero.if_match = "\"0\"";
  BOOST_CHECK_EQUAL(error_status(parse(zero)), 412u);
}

BOOST_AUTO_TEST_CASE(list_parameters) {
  auto r = parse(req("GET", "/v1/kv?prefix=user%3A&limit=10&after=user%3A5"));
  BOOST_REQUIRE(std::holds_alternative<net::route_kv_list>(r));
  const auto& l = std::get<net::route_kv_list>(r);
  BOOST_CHECK_EQUAL(l.prefix, "user:");
  BOOST_CHECK_EQUAL(l.after, "user:5");
  BOOST_CHECK_EQUAL(l.limit, 10u);
  BOOST_CHECK_EQUAL(std::get<net::route_kv_list>(parse(req("GET", "/v1/kv"))).limit,
                    net::default_list_limit);
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv?limit=0"))), 400u);
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/kv?limit=1001"))), 400u);
}

BOOST_AUTO_TEST_CASE(unknown_paths_and_methods) {
  const auto r = parse(req("GET", "/nope"));
  BOOST_CHECK_EQUAL(error_status(r), 404u);
  BOOST_CHECK_EQUAL(error_code(r), "not_found");
  const auto post = parse(req("POST", "/v1/kv/k", "x"));
  BOOST_CHECK_EQUAL(error_status(post), 405u);
  BOOST_CHECK_EQUAL(std::get<net::http_response>(post).header("allow").value_or(""),
                    "GET, HEAD, PUT, DELETE");
  BOOST_CHECK_EQUAL(error_status(parse(req("DELETE", "/v1/status"))), 405u);
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/admin/snapshot"))), 405u);
  BOOST_CHECK(std::holds_alternative<net::route_snapshot>(parse(req("POST", "/v1/admin/snapshot"))));
  BOOST_CHECK_EQUAL(error_status(parse(req("POST", "/v1/admin/transfer-leadership"))), 400u);
  const auto t = parse(req("POST", "/v1/admin/transfer-leadership?to=3"));
  BOOST_REQUIRE(std::holds_alternative<net::route_transfer_leadership>(t));
  BOOST_CHECK(std::get<net::route_transfer_leadership>(t).to == raft::node_id(3));
  BOOST_CHECK(std::holds_alternative<net::route_page>(parse(req("GET", "/"))));
  BOOST_CHECK(std::holds_alternative<net::route_metrics>(parse(req("GET", "/metrics"))));
  BOOST_CHECK(std::holds_alternative<net::route_healthz>(parse(req("GET", "/healthz"))));
  BOOST_CHECK(std::holds_alternative<net::route_readyz>(parse(req("GET", "/readyz"))));
  BOOST_CHECK(std::holds_alternative<net::route_status>(parse(req("GET", "/v1/status"))));
}

BOOST_AUTO_TEST_CASE(error_mapping_follows_the_spec) {
  using net::map_error;
  BOOST_CHECK_EQUAL(map_error(kv::status::not_found).status, 404u);
  BOOST_CHECK_EQUAL(map_error(kv::status::exists).status, 412u);
  BOOST_CHECK_EQUAL(map_error(kv::status::not_stored).status, 412u);
  BOOST_CHECK_EQUAL(map_error(kv::status::too_large).status, 413u);
  BOOST_CHECK_EQUAL(map_error(kv::status::out_of_memory).status, 507u);
  // A retry too old to deduplicate may have been applied: outcome unknown, like a timeout.
  BOOST_CHECK_EQUAL(map_error(kv::status::outcome_unknown).status, 504u);
  BOOST_CHECK_EQUAL(map_error(kv::status::outcome_unknown).code, "timeout");
  BOOST_CHECK_EQUAL(map_error(net::service_error::no_leader).status, 503u);
  BOOST_CHECK(map_error(net::service_error::no_leader).retry_after);
  BOOST_CHECK_EQUAL(map_error(net::service_error::timeout).status, 504u);
  BOOST_CHECK_EQUAL(map_error(net::service_error::unavailable).status, 503u);
  BOOST_CHECK_EQUAL(map_error(net::service_error::stopped).status, 503u);

  const auto resp = net::error_response(map_error(net::service_error::no_leader));
  BOOST_CHECK_EQUAL(resp.status, 503u);
  BOOST_CHECK_EQUAL(resp.header("Retry-After").value_or(""), "1");
  const auto body = json::parse(resp.body).as_object();
  BOOST_CHECK_EQUAL(body.at("error").as_string(), "no_leader");
  BOOST_CHECK(!body.at("message").as_string().empty());
}

BOOST_AUTO_TEST_CASE(item_answers_raw_and_meta) {
  kv::item_view item{"hello", 5, 17, 1700000000500};
  const auto raw = net::item_response("k", item, false);
  BOOST_CHECK_EQUAL(raw.body, "hello");
  BOOST_CHECK_EQUAL(raw.content_type, "application/octet-stream");
  BOOST_CHECK_EQUAL(raw.header("ETag").value_or(""), "\"17\"");
  BOOST_CHECK_EQUAL(raw.header("X-Raftkv-Flags").value_or(""), "5");
  BOOST_CHECK_EQUAL(raw.header("X-Raftkv-Expires").value_or(""), "1700000001");  // rounded up

  const auto meta = json::parse(net::item_response("k", item, true).body).as_object();
  BOOST_CHECK_EQUAL(meta.at("key").as_string(), "k");
  BOOST_CHECK_EQUAL(meta.at("value").as_string(), "hello");
  BOOST_CHECK(!meta.contains("encoding"));
  BOOST_CHECK_EQUAL(meta.at("version").to_number<std::uint64_t>(), 17u);
  BOOST_CHECK_EQUAL(meta.at("flags").to_number<std::uint64_t>(), 5u);
  BOOST_CHECK_EQUAL(meta.at("expires").to_number<std::int64_t>(), 1700000001);

  kv::item_view binary{std::string("\x00\xff\xfe", 3), 0, 1, 0};
  const auto b = json::parse(net::item_response("k", binary, true).body).as_object();
  BOOST_CHECK_EQUAL(b.at("encoding").as_string(), "base64");
  BOOST_CHECK_EQUAL(b.at("value").as_string(), "AP/+");
  BOOST_CHECK_EQUAL(b.at("expires").to_number<std::int64_t>(), 0);
}

// A PUT's answer is formatted by hand (the hot path); it must be what Boost.JSON wrote.
BOOST_AUTO_TEST_CASE(stored_answer_is_the_json_it_was) {
  for (std::uint64_t version : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{4294967296},
                                std::numeric_limits<std::uint64_t>::max()}) {
    const auto r = net::stored_response(version);
    BOOST_CHECK_EQUAL(r.status, 200u);
    BOOST_CHECK_EQUAL(r.content_type, "application/json");
    BOOST_CHECK_EQUAL(r.header("ETag").value_or(""), "\"" + std::to_string(version) + "\"");
    BOOST_CHECK_EQUAL(r.body, json::serialize(json::object{{"version", version}}) + "\n");
  }
}

BOOST_AUTO_TEST_CASE(list_answer_pages) {
  std::vector<kv::key_info> keys = {{"a", 1, 1, 0}, {"b", 2, 2, 0}, {"c", 3, 3, 0}};
  const auto more = json::parse(net::list_response(keys, 2).body).as_object();
  BOOST_CHECK_EQUAL(more.at("keys").as_array().size(), 2u);
  BOOST_CHECK_EQUAL(more.at("next").as_string(), "b");
  const auto last = json::parse(net::list_response(keys, 3).body).as_object();
  BOOST_CHECK_EQUAL(last.at("keys").as_array().size(), 3u);
  BOOST_CHECK(last.at("next").is_null());
  const auto& first = last.at("keys").as_array().at(0).as_object();
  BOOST_CHECK_EQUAL(first.at("key").as_string(), "a");
  BOOST_CHECK_EQUAL(first.at("version").to_number<std::uint64_t>(), 1u);
  BOOST_CHECK_EQUAL(first.at("bytes").to_number<std::uint64_t>(), 1u);
  BOOST_CHECK(first.contains("expires"));
}

BOOST_AUTO_TEST_CASE(status_body_has_every_field) {
  net::node_status s;
  s.id = 1;
  s.role = "leader";
  s.term = 4;
  s.leader_id = 1;
  s.commit_index = 10;
  s.applied_index = 10;
  s.last_log_index = 11;
  net::member_status m;
  m.address.id = raft::node_id(2);
  m.address.http = "127.0.0.1:8082";
  m.match_index = 9;
  m.next_index = 10;
  m.last_contact_ms = 12;
  m.read_lease_ms = 210;
  s.members.push_back(m);
  net::status_extra extra;
  extra.items = 3;
  extra.bytes = 99;
  extra.limits = kv::store_options{100, 2000, 30000};
  extra.uptime_s = 5;
  extra.version = "0.1.0";
  const auto resp = net::status_response(s, extra);
  BOOST_CHECK_EQUAL(resp.header("Access-Control-Allow-Origin").value_or(""), "*");
  const auto o = json::parse(resp.body).as_object();
  for (const char* field : {"id", "role", "term", "leader_id", "commit_index", "applied_index",
                            "last_log_index", "snapshot_index", "members", "kv", "uptime_s",
                            "version", "config_index", "change_in_progress"})
    BOOST_CHECK_MESSAGE(o.contains(field), "missing " << field);
  const auto& mo = o.at("members").as_array().at(0).as_object();
  for (const char* field : {"id", "peer", "http", "memcached", "cs733", "voter", "caught_up",
                            "match_index", "next_index", "last_contact_ms", "read_lease_ms"})
    BOOST_CHECK_MESSAGE(mo.contains(field), "missing member " << field);
  BOOST_CHECK_EQUAL(mo.at("match_index").to_number<std::uint64_t>(), 9u);
  BOOST_CHECK_EQUAL(mo.at("last_contact_ms").to_number<std::int64_t>(), 12);
  BOOST_CHECK_EQUAL(mo.at("read_lease_ms").to_number<std::int64_t>(), 210);
  BOOST_CHECK_EQUAL(o.at("kv").at("items").to_number<std::uint64_t>(), 3u);
  const auto& limits = o.at("kv").at("limits").as_object();
  BOOST_CHECK_EQUAL(limits.at("max_key_bytes").to_number<std::uint64_t>(), 100u);
  BOOST_CHECK_EQUAL(limits.at("max_value_bytes").to_number<std::uint64_t>(), 2000u);
  BOOST_CHECK_EQUAL(limits.at("max_memory_bytes").to_number<std::uint64_t>(), 30000u);
}

BOOST_AUTO_TEST_CASE(helpers) {
  BOOST_CHECK_EQUAL(net::base64_encode(""), "");
  BOOST_CHECK_EQUAL(net::base64_encode("f"), "Zg==");
  BOOST_CHECK_EQUAL(net::base64_encode("fo"), "Zm8=");
  BOOST_CHECK_EQUAL(net::base64_encode("foo"), "Zm9v");
  BOOST_CHECK_EQUAL(net::base64_encode("foobar"), "Zm9vYmFy");
  BOOST_CHECK(net::valid_utf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  BOOST_CHECK(!net::valid_utf8("\xff"));
  BOOST_CHECK(!net::valid_utf8("\xc3"));          // truncated
  BOOST_CHECK(!net::valid_utf8("\xc0\xaf"));      // overlong '/'
  BOOST_CHECK(!net::valid_utf8("\xed\xa0\x80"));  // surrogate
  BOOST_CHECK_EQUAL(net::percent_decode("a+b%2B", true).value_or("?"), "a b+");
  BOOST_CHECK_EQUAL(net::percent_decode("a+b", false).value_or("?"), "a+b");
  BOOST_CHECK(!net::percent_decode("%4", false).has_value());
  BOOST_CHECK_EQUAL(net::expires_unix_s(0), 0);
  BOOST_CHECK_EQUAL(net::expires_unix_s(1000), 1);
  BOOST_CHECK_EQUAL(net::expires_unix_s(1001), 2);
}

// --- membership (SPEC §8) ---------------------------------------------------------------------

namespace {

net::route post_member(std::string body) {
  return parse(req("POST", "/v1/members", std::move(body)));
}

std::string error_message(const net::route& r) {
  const auto& resp = std::get<net::http_response>(r);
  return std::string(json::parse(resp.body).at("message").as_string());
}

}  // namespace

BOOST_AUTO_TEST_CASE(member_routes) {
  BOOST_CHECK(std::holds_alternative<net::route_members_list>(parse(req("GET", "/v1/members"))));
  BOOST_CHECK(std::holds_alternative<net::route_members_list>(parse(req("HEAD", "/v1/members"))));
  BOOST_CHECK(std::holds_alternative<net::route_members_list>(parse(req("GET", "/v1/members/"))));
  // ?local=1: this node's own view (a follower relays the leader's otherwise).
  BOOST_CHECK(!std::get<net::route_members_list>(parse(req("GET", "/v1/members"))).local);
  const auto local = parse(req("GET", "/v1/members?local=1"));
  BOOST_REQUIRE(std::holds_alternative<net::route_members_list>(local));
  BOOST_CHECK(std::get<net::route_members_list>(local).local);
  const auto bad_local = parse(req("GET", "/v1/members?local=yes"));
  BOOST_REQUIRE(std::holds_alternative<net::http_response>(bad_local));
  BOOST_CHECK_EQUAL(std::get<net::http_response>(bad_local).status, 400u);

  const auto promote = parse(req("POST", "/v1/members/4/promote"));
  BOOST_REQUIRE(std::holds_alternative<net::route_member_promote>(promote));
  BOOST_CHECK(std::get<net::route_member_promote>(promote).id == raft::node_id(4));

  const auto remove = parse(req("DELETE", "/v1/members/4294967295"));
  BOOST_REQUIRE(std::holds_alternative<net::route_member_remove>(remove));
  BOOST_CHECK(std::get<net::route_member_remove>(remove).id == raft::node_id(4294967295u));

  const auto add = post_member(
      R"({"id":4,"peer":"10.0.0.4:7000","memcached":"10.0.0.4:11211","cs733":"[::1]:9001","http":"h4:8081"})");
  BOOST_REQUIRE(std::holds_alternative<net::route_member_add>(add));
  const auto& m = std::get<net::route_member_add>(add).member;
  BOOST_CHECK(m.id == raft::node_id(4));
  BOOST_CHECK_EQUAL(m.peer, "10.0.0.4:7000");
  BOOST_CHECK_EQUAL(m.memcached, "10.0.0.4:11211");
  BOOST_CHECK_EQUAL(m.cs733, "[::1]:9001");
  BOOST_CHECK_EQUAL(m.http, "h4:8081");

  // Only id and peer are required; an optional door given as "" is not given.
  const auto minimal = post_member(R"({"peer":"h:1","id":7,"http":""})");
  BOOST_REQUIRE(std::holds_alternative<net::route_member_add>(minimal));
  BOOST_CHECK(std::get<net::route_member_add>(minimal).member.id == raft::node_id(7));
  BOOST_CHECK(std::get<net::route_member_add>(minimal).member.http.empty());
  BOOST_CHECK(std::get<net::route_member_add>(minimal).member.memcached.empty());

  // Every route has its own metrics name.
  BOOST_CHECK_EQUAL(net::metrics_name(parse(req("GET", "/v1/members")), "GET"), "GET /v1/members");
  BOOST_CHECK_EQUAL(net::metrics_name(add, "POST"), "POST /v1/members");
  BOOST_CHECK_EQUAL(net::metrics_name(promote, "POST"), "POST /v1/members/{id}/promote");
  BOOST_CHECK_EQUAL(net::metrics_name(remove, "DELETE"), "DELETE /v1/members/{id}");
}

BOOST_AUTO_TEST_CASE(member_add_body_errors_are_400_with_a_reason) {
  struct bad_case {
    std::string body;
    std::string says;  // a piece of the message
  };
  const std::vector<bad_case> cases = {
      {"", "JSON object"},
      {"{\"id\":4,\"peer\":", "invalid JSON"},
      {"{\"id\":4 \"peer\":\"h:1\"}", "invalid JSON at byte 8"},
      {"{\"id\":4,\"peer\":\"h:1\"} trailing", "invalid JSON"},
      {"[4,\"h:1\"]", "JSON object"},
      {"\"h:1\"", "JSON object"},
      {R"({"id":4})", "peer is required"},
      {R"({"peer":"h:1"})", "id is required"},
      {R"({"id":0,"peer":"h:1"})", "id must be"},
      {R"({"id":-3,"peer":"h:1"})", "id must be"},
      {R"({"id":4.0,"peer":"h:1"})", "id must be"},
      {R"({"id":"4","peer":"h:1"})", "id must be"},
      {R"({"id":4294967296,"peer":"h:1"})", "id must be"},
      {R"({"id":4,"peer":"h"})", "peer must be host:port"},
      {R"({"id":4,"peer":""})", "peer must be host:port"},
      {R"({"id":4,"peer":"h:0"})", "peer must be host:port"},
      {R"({"id":4,"peer":"h:65536"})", "peer must be host:port"},
      {R"({"id":4,"peer":"h:1","http":"nohost"})", "http must be host:port"},
      {R"({"id":4,"peer":"h:1","cs733":":9001"})", "cs733 must be host:port"},
      {R"({"id":4,"peer":"h:1","memcached":11211})", "memcached must be a \"host:port\" string"},
      {R"({"id":4,"peer":null})", "peer must be a \"host:port\" string"},
      {R"({"id":4,"peer":"h:1","htpp":"h:2"})", "unknown field \"htpp\""},
      {R"({"id":4,"peer":"h:1","voter":true})", "unknown field \"voter\""},
  };
  for (const auto& c : cases) {
    const auto r = post_member(c.body);
    BOOST_TEST_CONTEXT("body " << c.body) {
      BOOST_CHECK_EQUAL(error_status(r), 400u);
      BOOST_CHECK_EQUAL(error_code(r), "bad_request");
      BOOST_CHECK_MESSAGE(error_message(r).find(c.says) != std::string::npos,
                          "message: " << error_message(r));
    }
  }
  // A POST without any body at all.
  BOOST_CHECK_EQUAL(error_status(parse(req("POST", "/v1/members"))), 400u);
}

BOOST_AUTO_TEST_CASE(member_paths_ids_and_methods) {
  for (const char* bad :
       {"/v1/members/0", "/v1/members/x", "/v1/members/-1", "/v1/members/04",
        "/v1/members/4294967296", "/v1/members/99999999999999999999", "/v1/members/+4"}) {
    BOOST_TEST_CONTEXT(bad) {
      BOOST_CHECK_EQUAL(error_status(parse(req("DELETE", bad))), 400u);
      BOOST_CHECK_EQUAL(error_status(parse(req("POST", std::string(bad) + "/promote"))), 400u);
    }
  }
  BOOST_CHECK_EQUAL(error_status(parse(req("POST", "/v1/members//promote"))), 400u);
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/members/4/demote"))), 404u);
  BOOST_CHECK_EQUAL(error_status(parse(req("POST", "/v1/members/4/promote/now"))), 404u);
  BOOST_CHECK_EQUAL(error_status(parse(req("GET", "/v1/membersx"))), 404u);

  const auto allow = [](const net::route& r) {
    return std::get<net::http_response>(r).header("Allow").value_or("");
  };
  const auto put = parse(req("PUT", "/v1/members", "{}"));
  BOOST_CHECK_EQUAL(error_status(put), 405u);
  BOOST_CHECK_EQUAL(allow(put), "GET, HEAD, POST");
  BOOST_CHECK_EQUAL(error_status(parse(req("DELETE", "/v1/members"))), 405u);
  const auto get_one = parse(req("GET", "/v1/members/4"));
  BOOST_CHECK_EQUAL(error_status(get_one), 405u);
  BOOST_CHECK_EQUAL(allow(get_one), "DELETE");
  const auto get_promote = parse(req("GET", "/v1/members/4/promote"));
  BOOST_CHECK_EQUAL(error_status(get_promote), 405u);
  BOOST_CHECK_EQUAL(allow(get_promote), "POST");
  BOOST_CHECK_EQUAL(error_status(parse(req("DELETE", "/v1/members/4/promote"))), 405u);

  // Changes need the admin token when one is configured; reading the list does not.
  BOOST_CHECK(net::needs_admin_token("POST", "/v1/members"));
  BOOST_CHECK(net::needs_admin_token("POST", "/v1/members/4/promote"));
  BOOST_CHECK(net::needs_admin_token("DELETE", "/v1/members/4"));
  BOOST_CHECK(net::needs_admin_token("PUT", "/v1/members?x=1"));
  BOOST_CHECK(!net::needs_admin_token("GET", "/v1/members"));
  BOOST_CHECK(!net::needs_admin_token("HEAD", "/v1/members"));
}

BOOST_AUTO_TEST_CASE(every_membership_refusal_has_its_status_and_code) {
  using net::member_refusal;
  struct expected {
    member_refusal refusal;
    unsigned status;
    std::string code;
    bool retry_after;
  };
  const std::vector<expected> table = {
      {member_refusal::member_exists, 409, "member_exists", false},
      {member_refusal::address_in_use, 409, "address_in_use", false},
      {member_refusal::change_in_progress, 409, "change_in_progress", false},
      {member_refusal::not_learner, 409, "not_learner", false},
      {member_refusal::last_voter, 409, "last_voter", false},
      {member_refusal::unknown_member, 404, "unknown_member", false},
      {member_refusal::not_caught_up, 503, "not_caught_up", true},
      {member_refusal::not_ready, 503, "not_ready", true},
      {member_refusal::malformed, 400, "bad_request", false},
  };
  for (const auto& e : table) {
    BOOST_TEST_CONTEXT("refusal " << net::to_string(e.refusal)) {
      const net::http_error mapped = net::map_error(e.refusal);
      BOOST_CHECK_EQUAL(mapped.status, e.status);
      BOOST_CHECK_EQUAL(mapped.code, e.code);
      BOOST_CHECK_EQUAL(mapped.retry_after, e.retry_after);

      // Without a message from the leader, the refusal's own text.
      net::member_change_reply reply;
      reply.refusal = e.refusal;
      const auto plain = net::member_change_error(reply);
      BOOST_CHECK_EQUAL(plain.status, e.status);
      BOOST_CHECK_EQUAL(plain.header("Retry-After").has_value(), e.retry_after);
      const auto body = json::parse(plain.body).as_object();
      BOOST_CHECK_EQUAL(body.at("error").as_string(), e.code);
      BOOST_CHECK_EQUAL(body.at("message").as_string(), net::to_string(e.refusal));

      // With one, the leader's words.
      reply.message = "member 4 is 1200 entries behind";
      const auto told = json::parse(net::member_change_error(reply).body).as_object();
      BOOST_CHECK_EQUAL(told.at("message").as_string(), reply.message);
    }
  }
  // A service error wins over any refusal: the outcome is the service's (e.g. unknown).
  net::member_change_reply timed_out;
  timed_out.error = net::service_error::timeout;
  timed_out.refusal = member_refusal::member_exists;
  timed_out.message = "ignored";
  const auto t = net::member_change_error(timed_out);
  BOOST_CHECK_EQUAL(t.status, 504u);
  BOOST_CHECK_EQUAL(json::parse(t.body).at("error").as_string(), "timeout");
  net::member_change_reply no_leader;
  no_leader.error = net::service_error::no_leader;
  const auto n = net::member_change_error(no_leader);
  BOOST_CHECK_EQUAL(n.status, 503u);
  BOOST_CHECK_EQUAL(n.header("Retry-After").value_or(""), "1");
  BOOST_CHECK_EQUAL(json::parse(n.body).at("error").as_string(), "no_leader");
}

namespace {

net::node_status two_voters_and_a_learner() {
  net::node_status s;
  s.id = 1;
  s.role = "leader";
  s.leader_id = 1;
  s.commit_index = 50;
  s.config_index = 48;
  s.change_in_progress = true;
  for (std::uint64_t id : {1, 2, 4}) {
    net::member_status m;
    m.address.id = raft::node_id(id);
    m.address.peer = "10.0.0." + std::to_string(id) + ":7000";
    m.address.http = "10.0.0." + std::to_string(id) + ":8081";
    m.voter = id != 4;
    m.caught_up = id != 4;
    m.match_index = id == 4 ? 12 : 50;
    m.next_index = m.match_index + 1;
    s.members.push_back(m);
  }
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(members_body_shape) {
  const auto resp = net::members_response(two_voters_and_a_learner());
  BOOST_CHECK_EQUAL(resp.status, 200u);
  BOOST_CHECK_EQUAL(resp.content_type, "application/json");
  BOOST_CHECK_EQUAL(resp.body.back(), '\n');
  const auto o = json::parse(resp.body).as_object();
  BOOST_CHECK_EQUAL(o.size(), 4u);
  BOOST_CHECK_EQUAL(o.at("config_index").to_number<std::uint64_t>(), 48u);
  BOOST_CHECK_EQUAL(o.at("change_in_progress").as_bool(), true);
  BOOST_CHECK_EQUAL(o.at("leader_id").to_number<std::uint64_t>(), 1u);
  const auto& members = o.at("members").as_array();
  BOOST_REQUIRE_EQUAL(members.size(), 3u);
  for (const auto& v : members) {
    const auto& m = v.as_object();
    BOOST_CHECK_EQUAL(m.size(), 8u);
    for (const char* field :
         {"id", "peer", "memcached", "cs733", "http", "voter", "match_index", "caught_up"})
      BOOST_CHECK_MESSAGE(m.contains(field), "missing member " << field);
    BOOST_CHECK(m.at("voter").is_bool());
    BOOST_CHECK(m.at("caught_up").is_bool());
  }
  const auto& learner = members.at(2).as_object();
  BOOST_CHECK_EQUAL(learner.at("id").to_number<std::uint64_t>(), 4u);
  BOOST_CHECK_EQUAL(learner.at("voter").as_bool(), false);
  BOOST_CHECK_EQUAL(learner.at("caught_up").as_bool(), false);
  BOOST_CHECK_EQUAL(learner.at("match_index").to_number<std::uint64_t>(), 12u);
  BOOST_CHECK_EQUAL(learner.at("peer").as_string(), "10.0.0.4:7000");
  BOOST_CHECK_EQUAL(members.at(0).at("voter").as_bool(), true);
}

BOOST_AUTO_TEST_CASE(member_added_body_is_the_member) {
  net::member_address asked;
  asked.id = raft::node_id(4);
  asked.peer = "10.0.0.4:7000";
  // Listed: as the configuration has it.
  const auto listed = net::member_added_response(two_voters_and_a_learner(), asked);
  BOOST_CHECK_EQUAL(listed.status, 201u);
  BOOST_CHECK_EQUAL(listed.header("Location").value_or(""), "/v1/members/4");
  const auto l = json::parse(listed.body).as_object();
  BOOST_CHECK_EQUAL(l.at("id").to_number<std::uint64_t>(), 4u);
  BOOST_CHECK_EQUAL(l.at("http").as_string(), "10.0.0.4:8081");
  BOOST_CHECK_EQUAL(l.at("match_index").to_number<std::uint64_t>(), 12u);
  BOOST_CHECK_EQUAL(l.at("voter").as_bool(), false);
  // Not listed yet (this node's view lags): as asked, a learner.
  asked.id = raft::node_id(9);
  const auto unlisted =
      json::parse(net::member_added_response(two_voters_and_a_learner(), asked).body).as_object();
  BOOST_CHECK_EQUAL(unlisted.at("id").to_number<std::uint64_t>(), 9u);
  BOOST_CHECK_EQUAL(unlisted.at("peer").as_string(), "10.0.0.4:7000");
  BOOST_CHECK_EQUAL(unlisted.at("voter").as_bool(), false);
  BOOST_CHECK_EQUAL(unlisted.at("caught_up").as_bool(), false);
  BOOST_CHECK_EQUAL(unlisted.at("http").as_string(), "");
}

BOOST_AUTO_TEST_CASE(status_body_carries_the_configuration) {
  const auto o = json::parse(net::status_response(two_voters_and_a_learner(), {}).body).as_object();
  BOOST_CHECK_EQUAL(o.at("config_index").to_number<std::uint64_t>(), 48u);
  BOOST_CHECK_EQUAL(o.at("change_in_progress").as_bool(), true);
  const auto& learner = o.at("members").as_array().at(2).as_object();
  BOOST_CHECK_EQUAL(learner.at("voter").as_bool(), false);
  BOOST_CHECK_EQUAL(learner.at("caught_up").as_bool(), false);
  BOOST_CHECK_EQUAL(o.at("members").as_array().at(0).at("caught_up").as_bool(), true);
  // The fields the status page and older clients read are still there.
  BOOST_CHECK(learner.contains("next_index"));
  BOOST_CHECK(learner.contains("last_contact_ms"));
}

BOOST_AUTO_TEST_CASE(membership_errors_read_as_documented) {
  // The exact answers of the console examples in docs/http-api.md, "Membership".
  const auto body = [](const net::route& r) { return std::get<net::http_response>(r).body; };
  BOOST_CHECK_EQUAL(
      body(post_member(R"({"id":4,"peer":"127.0.0.1:7004","htpp":"127.0.0.1:8084"})")),
      "{\"error\":\"bad_request\",\"message\":\"unknown field \\\"htpp\\\" (expected id, peer, "
      "memcached, cs733, http)\"}\n");
  BOOST_CHECK_EQUAL(body(post_member(R"({"id":4,"peer":"127.0.0.1:7004",})")),
                    "{\"error\":\"bad_request\",\"message\":\"invalid JSON at byte 32: syntax "
                    "error\"}\n");
  BOOST_CHECK_EQUAL(
      body(parse(req("POST", "/v1/members/0/promote"))),
      "{\"error\":\"bad_request\",\"message\":\"member id must be 1..4294967295\"}\n");
}
