// The CS733 parser: every command, ERR_CMD_ERR for each kind of malformed input, data
// blocks dropped in step, line bound, and that a pipelined stream parses the same however
// it is split into reads.
#define BOOST_TEST_MODULE net_cs733_parser
#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "net/cs733/parser.h"

namespace cs = net::cs733;

namespace net::cs733 {
std::ostream& operator<<(std::ostream& o, command_kind k) { return o << to_string(k); }
std::ostream& operator<<(std::ostream& o, outcome w) { return o << static_cast<int>(w); }
}  // namespace net::cs733

namespace {

const cs::parser_limits limits{};
const std::string cmd_err = "ERR_CMD_ERR\r\n";

cs::parse_result parse_one(std::string_view s, const cs::parser_limits& l = limits) {
  return cs::parse(s, l);
}

cs::request parse_request(std::string_view s) {
  auto r = parse_one(s);
  BOOST_TEST_REQUIRE(r.what == cs::outcome::request, "not a request: " << s);
  BOOST_TEST(r.consumed == s.size());
  return r.req;
}

// The reply to input the parser answers itself; checks it consumed `consumed` bytes
// (all of s when npos) and will drop `discard` more.
std::string parse_reply(std::string_view s, std::size_t consumed = std::string_view::npos,
                        std::size_t discard = 0, const cs::parser_limits& l = limits) {
  auto r = parse_one(s, l);
  BOOST_TEST_REQUIRE(r.what == cs::outcome::reply, "not a reply: " << s);
  BOOST_TEST(r.consumed == (consumed == std::string_view::npos ? s.size() : consumed));
  BOOST_TEST(r.discard == discard);
  return r.reply;
}

struct event {
  cs::outcome what = cs::outcome::need_more;
  cs::command_kind kind = cs::command_kind::get;
  std::string key;
  std::string value;
  std::int64_t exptime = 0;
  std::uint64_t version = 0;
  bool noreply = false;
  std::string reply;
  bool operator==(const event&) const = default;
};

std::vector<event> drive(const std::vector<std::string_view>& chunks,
                         const cs::parser_limits& l = limits) {
  std::vector<event> events;
  std::string buffer;
  std::size_t discard = 0;
  for (auto chunk : chunks) {
    buffer.append(chunk);
    for (;;) {
      if (discard > 0) {
        const auto n = std::min(discard, buffer.size());
        buffer.erase(0, n);
        discard -= n;
        if (discard > 0) break;
      }
      auto r = cs::parse(buffer, l);
      if (r.what == cs::outcome::need_more) break;
      BOOST_TEST_REQUIRE(r.consumed <= buffer.size());
      buffer.erase(0, r.consumed);
      discard = r.discard;
      event e;
      e.what = r.what;
      e.reply = r.reply;
      if (r.what == cs::outcome::request) {
        e.kind = r.req.kind;
        e.key = r.req.key;
        e.value = r.req.value;
        e.exptime = r.req.exptime;
        e.version = r.req.version;
        e.noreply = r.req.noreply;
      }
      events.push_back(std::move(e));
      if (r.what == cs::outcome::close) return events;
    }
  }
  return events;
}

}  // namespace

BOOST_AUTO_TEST_CASE(set_carries_exptime_value_and_noreply) {
  auto r = parse_request("set k 30 5\r\nhe\r\no\r\n");
  BOOST_TEST(r.kind == cs::command_kind::set);
  BOOST_TEST(r.key == "k");
  BOOST_TEST(r.exptime == 30);
  BOOST_TEST(r.value == "he\r\no");
  BOOST_TEST(!r.noreply);
  r = parse_request("set k 0 0 noreply\r\n\r\n");
  BOOST_TEST(r.noreply);
  BOOST_TEST(r.value.empty());
  // '\n' alone ends the command line.
  BOOST_TEST(parse_request("set k 0 1\nx\r\n").value == "x");
}

BOOST_AUTO_TEST_CASE(cas_carries_the_version) {
  auto r = parse_request("cas k 0 18446744073709551615 3\r\nabc\r\n");
  BOOST_TEST(r.kind == cs::command_kind::cas);
  BOOST_TEST(r.version == 18446744073709551615ull);
  BOOST_TEST(r.value == "abc");
  BOOST_TEST(parse_request("cas k 10 7 1 noreply\r\nx\r\n").noreply);
}

BOOST_AUTO_TEST_CASE(get_getm_delete_take_one_key) {
  BOOST_TEST(parse_request("get k\r\n").kind == cs::command_kind::get);
  BOOST_TEST(parse_request("getm k\r\n").kind == cs::command_kind::getm);
  auto r = parse_request("delete  k \r\n");
  BOOST_TEST(r.kind == cs::command_kind::remove);
  BOOST_TEST(r.key == "k");
}

BOOST_AUTO_TEST_CASE(empty_lines_are_ignored) {
  BOOST_TEST(parse_reply("\r\n").empty());
  BOOST_TEST(parse_reply("\n").empty());
  BOOST_TEST(parse_reply("   \r\n").empty());
}

BOOST_AUTO_TEST_CASE(malformed_lines_are_ERR_CMD_ERR) {
  const std::string key251(251, 'k');
  for (std::string_view s :
       {"bogus\r\n", "SET k 0 1\r\n", "get\r\n", "get a b\r\n", "getm\r\n", "delete\r\n",
        "delete a noreply\r\n", "set k 0\r\n", "set k 0 x\r\n", "set k 0 -1\r\n",
        "cas k 0 1\r\n", "cas k 0 1 2 noreply x\r\n", "get a\rb\r\n"}) {
    BOOST_TEST(parse_reply(s) == cmd_err, "input: " << s);
  }
  BOOST_TEST(parse_reply("get " + key251 + "\r\n") == cmd_err);
  BOOST_TEST(parse_reply(std::string("get a\0\r\n", 8)) == cmd_err);
}

BOOST_AUTO_TEST_CASE(keys_are_any_bytes_but_space_cr_lf_and_nul) {
  // The memcached key rules: control bytes, DEL and bytes >= 0x80 (not only UTF-8) are valid.
  for (std::string key : {"\x01\x02", "a\tb", "\x7f", "\xff\xfe", "\xc3\xa9", "\x1b"}) {
    BOOST_TEST(parse_request("get " + key + "\r\n").key == key);
    BOOST_TEST(parse_request("getm " + key + "\r\n").key == key);
    BOOST_TEST(parse_request("delete " + key + "\r\n").key == key);
    auto set = parse_request("set " + key + " 0 2\r\nxy\r\n");
    BOOST_TEST(set.key == key);
    BOOST_TEST(set.value == "xy");
    BOOST_TEST(parse_request("cas " + key + " 0 3 1\r\nx\r\n").key == key);
  }
}

BOOST_AUTO_TEST_CASE(a_bad_set_line_with_a_readable_length_drops_its_block) {
  const std::string key251(251, 'k');
  // The block is dropped once it has fully arrived, so the next command is in step.
  const std::string line = "set " + key251 + " 0 3\r\n";
  BOOST_TEST(parse_one(line).what == cs::outcome::need_more);
  BOOST_TEST(parse_reply(line + "abc\r\n") == cmd_err);
  BOOST_TEST(parse_reply("set k -1 3\r\nabc\r\n") == cmd_err);
  BOOST_TEST(parse_reply("set k x 3\r\nabc\r\n") == cmd_err);
  BOOST_TEST(parse_reply("set k 0 3 later\r\nabc\r\n") == cmd_err);
  BOOST_TEST(parse_reply("set k 2147483648 3\r\nabc\r\n") == cmd_err);
  BOOST_TEST(parse_reply("cas k 0 x 3\r\nabc\r\n") == cmd_err);
  BOOST_TEST(parse_reply("cas k 0 -5 3\r\nabc\r\n") == cmd_err);
}

BOOST_AUTO_TEST_CASE(bad_data_block_is_ERR_CMD_ERR) {
  BOOST_TEST(parse_reply("set k 0 3\r\nabcd\r\n", 16) == cmd_err);
  BOOST_TEST(parse_one("set k 0 3\r\nabc\r").what == cs::outcome::need_more);
}

BOOST_AUTO_TEST_CASE(oversize_value_is_ERR_CMD_ERR_and_dropped) {
  cs::parser_limits small = limits;
  small.max_value_bytes = 10;
  BOOST_TEST(parse_reply("set k 0 11\r\n", 12, 13, small) == cmd_err);
  BOOST_TEST(parse_reply("cas k 0 1 2000000 noreply\r\n", 27, 2000002, small) == cmd_err);
  BOOST_TEST(parse_one("set k 0 10\r\n", small).what == cs::outcome::need_more);
}

BOOST_AUTO_TEST_CASE(overlong_line_closes_with_ERR_CMD_ERR) {
  const std::string line(1024, 'x');
  BOOST_TEST(parse_one(line).what == cs::outcome::need_more);
  auto r = parse_one(line + "x");
  BOOST_TEST(r.what == cs::outcome::close);
  BOOST_TEST(r.reply == cmd_err);
  BOOST_TEST(parse_one(std::string(1 << 20, 'y') + "\n").what == cs::outcome::close);
}

BOOST_AUTO_TEST_CASE(partial_reads_split_at_every_byte) {
  cs::parser_limits small = limits;
  small.max_value_bytes = 100;
  const std::string stream =
      "set a 0 1\r\nx\r\n"
      "\r\n"
      "get a\r\n"
      "getm a\r\n"
      "cas a 60 1 2 noreply\r\nyy\r\n"
      "set big 0 150\r\n" + std::string(150, 'z') + "\r\n"  // over the limit: dropped
      "set b 0 3\r\nabcd\r\n"                                 // bad block ...
      "get b\r\n"
      "set " + std::string(300, 'k') + " 0 2\r\nxy\r\n"      // bad key: block dropped
      "delete a\r\n"
      "bogus\r\n"
      "set c 5 0\r\n\r\n"
      + std::string(1100, 'L');                               // over-long line: close
  const auto whole = drive({stream}, small);
  BOOST_TEST_REQUIRE(whole.size() == 14u);
  BOOST_TEST(whole[0].kind == cs::command_kind::set);
  BOOST_TEST(whole[1].reply.empty());
  BOOST_TEST(whole[4].version == 1u);
  BOOST_TEST(whole[5].reply == cmd_err);  // big
  BOOST_TEST(whole[6].reply == cmd_err);  // bad block "abcd\r": then "\n" is an empty line
  BOOST_TEST(whole[7].reply.empty());
  BOOST_TEST(whole[8].key == "b");
  BOOST_TEST(whole[9].reply == cmd_err);
  BOOST_TEST(whole[10].kind == cs::command_kind::remove);
  BOOST_TEST(whole[11].reply == cmd_err);
  BOOST_TEST(whole[12].what == cs::outcome::request);
  BOOST_TEST(whole[12].exptime == 5);
  BOOST_TEST(whole[13].what == cs::outcome::close);
  BOOST_TEST(whole[13].reply == cmd_err);
  std::string_view s(stream);
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    BOOST_TEST_REQUIRE((drive({s.substr(0, split), s.substr(split)}, small) == whole),
                       "split at " << split);
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < stream.size(); ++i) bytes.push_back(s.substr(i, 1));
  BOOST_TEST((drive(bytes, small) == whole));
}
