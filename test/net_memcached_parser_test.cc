// The memcached text-protocol parser: every command, every error text of docs/memcached.md, the
// odd-input replies of memcached 1.6.18 it reproduces, the line and value bounds, and that
// a pipelined stream parses the same however it is split into reads.
#define BOOST_TEST_MODULE net_memcached_parser
#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "net/memcached/parser.h"

namespace mc = net::memcached;

namespace net::memcached {
// For Boost.Test messages.
std::ostream& operator<<(std::ostream& o, command_kind k) { return o << to_string(k); }
std::ostream& operator<<(std::ostream& o, outcome w) { return o << static_cast<int>(w); }
}  // namespace net::memcached

namespace {

const mc::parser_limits limits{};

mc::parse_result parse(std::string_view s) { return mc::parse(s, limits); }

// Parses a complete single request and checks that it consumed everything.
mc::request parse_request(std::string_view s) {
  auto r = parse(s);
  BOOST_TEST_REQUIRE(static_cast<int>(r.what) == static_cast<int>(mc::outcome::request),
                     "not a request: " << s);
  BOOST_TEST(r.consumed == s.size());
  return r.req;
}

// The reply text to a request that the parser answers itself.
std::string parse_reply(std::string_view s) {
  auto r = parse(s);
  BOOST_TEST_REQUIRE(static_cast<int>(r.what) == static_cast<int>(mc::outcome::reply),
                     "not a reply: " << s);
  BOOST_TEST(r.consumed == s.size());
  return r.reply;
}

bool closes(std::string_view s) { return parse(s).what == mc::outcome::close; }
bool needs_more(std::string_view s) { return parse(s).what == mc::outcome::need_more; }

const std::string bad_format = "CLIENT_ERROR bad command line format\r\n";

// What a session would see: requests and replies in order, with discards applied.
struct event {
  mc::outcome what;
  mc::command_kind kind = mc::command_kind::get;
  std::vector<std::string> keys;
  std::string value;
  std::uint32_t flags = 0;
  std::int64_t exptime = 0;
  std::uint64_t cas = 0;
  std::uint64_t delta = 0;
  std::int64_t delay = 0;
  bool noreply = false;
  std::string reply;

  bool operator==(const event&) const = default;
};


// Feeds `chunks` one after the other like successive reads, parsing all it can after each.
std::vector<event> drive(const std::vector<std::string_view>& chunks) {
  std::vector<event> events;
  std::string buffer;
  std::size_t discard = 0;
  bool closed = false;
  for (auto chunk : chunks) {
    if (closed) break;
    buffer.append(chunk);
    for (;;) {
      if (discard > 0) {
        const auto n = std::min(discard, buffer.size());
        buffer.erase(0, n);
        discard -= n;
        if (discard > 0) break;
      }
      auto r = mc::parse(buffer, limits);
      if (r.what == mc::outcome::need_more) break;
      BOOST_TEST_REQUIRE(r.consumed <= buffer.size());
      buffer.erase(0, r.consumed);
      discard = r.discard;
      event e;
      e.what = r.what;
      e.reply = r.reply;
      if (r.what == mc::outcome::request) {
        e.kind = r.req.kind;
        e.keys = r.req.keys;
        e.value = r.req.value;
        e.flags = r.req.flags;
        e.exptime = r.req.exptime;
        e.cas = r.req.cas_unique;
        e.delta = r.req.delta;
        e.delay = r.req.delay_s;
        e.noreply = r.req.noreply;
      }
      events.push_back(std::move(e));
      if (r.what == mc::outcome::close) {
        closed = true;
        break;
      }
    }
  }
  return events;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(commands)

BOOST_AUTO_TEST_CASE(get_and_gets_take_every_key_in_order) {
  auto r = parse_request("get a b a\r\n");
  BOOST_TEST(r.kind == mc::command_kind::get);
  BOOST_TEST(r.keys == (std::vector<std::string>{"a", "b", "a"}), boost::test_tools::per_element());
  r = parse_request("gets k\r\n");
  BOOST_TEST(r.kind == mc::command_kind::gets);
  BOOST_TEST(r.keys.size() == 1u);
  // A bare '\n' ends a line too, and runs of spaces separate words.
  r = parse_request("  get   x  y \n");
  BOOST_TEST(r.keys == (std::vector<std::string>{"x", "y"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(gat_and_gats_take_exptime_then_keys) {
  auto r = parse_request("gat 100 a b\r\n");
  BOOST_TEST(r.kind == mc::command_kind::gat);
  BOOST_TEST(r.exptime == 100);
  BOOST_TEST(r.keys == (std::vector<std::string>{"a", "b"}), boost::test_tools::per_element());
  r = parse_request("gats -1 a\r\n");
  BOOST_TEST(r.kind == mc::command_kind::gats);
  BOOST_TEST(r.exptime == -1);
  // memcached answers a gat without keys with a bare END.
  r = parse_request("gat 10\r\n");
  BOOST_TEST(r.keys.empty());
  BOOST_TEST(parse_reply("gat x a\r\n") == "CLIENT_ERROR invalid exptime argument\r\n");
}

BOOST_AUTO_TEST_CASE(storage_commands_carry_their_data_block) {
  const std::pair<std::string_view, mc::command_kind> names[] = {
      {"set", mc::command_kind::set},         {"add", mc::command_kind::add},
      {"replace", mc::command_kind::replace}, {"append", mc::command_kind::append},
      {"prepend", mc::command_kind::prepend}};
  for (auto [name, kind] : names) {
    auto r = parse_request(std::string(name) + " key 42 3600 5\r\nhe\r\no\r\n");
    BOOST_TEST(r.kind == kind);
    BOOST_TEST(r.keys.front() == "key");
    BOOST_TEST(r.flags == 42u);
    BOOST_TEST(r.exptime == 3600);
    BOOST_TEST(r.value == "he\r\no");
    BOOST_TEST(!r.noreply);
  }
  auto r = parse_request("set k 0 0 0 noreply\r\n\r\n");
  BOOST_TEST(r.value.empty());
  BOOST_TEST(r.noreply);
}

BOOST_AUTO_TEST_CASE(cas_carries_the_unique) {
  auto r = parse_request("cas k 1 2 3 18446744073709551615\r\nabc\r\n");
  BOOST_TEST(r.kind == mc::command_kind::cas);
  BOOST_TEST(r.cas_unique == 18446744073709551615ull);
  BOOST_TEST(r.value == "abc");
  r = parse_request("cas k 1 2 3 7 noreply\r\nabc\r\n");
  BOOST_TEST(r.noreply);
  BOOST_TEST(r.cas_unique == 7u);
  BOOST_TEST(parse_reply("cas k 0 0 1 x\r\n") == bad_format);
  BOOST_TEST(parse_reply("cas k 0 0 1 -1\r\n") == bad_format);
  BOOST_TEST(parse_reply("cas k 0 0 1\r\n") == "ERROR\r\n");
}

BOOST_AUTO_TEST_CASE(delete_incr_decr_touch) {
  auto r = parse_request("delete k\r\n");
  BOOST_TEST(r.kind == mc::command_kind::remove);
  BOOST_TEST(r.keys.front() == "k");
  BOOST_TEST(parse_request("delete k noreply\r\n").noreply);
  BOOST_TEST(!parse_request("delete k 0\r\n").noreply);
  BOOST_TEST(parse_request("delete k 0 noreply\r\n").noreply);

  r = parse_request("incr n 18446744073709551615\r\n");
  BOOST_TEST(r.kind == mc::command_kind::incr);
  BOOST_TEST(r.delta == 18446744073709551615ull);
  r = parse_request("decr n +3 noreply\r\n");
  BOOST_TEST(r.kind == mc::command_kind::decr);
  BOOST_TEST(r.delta == 3u);
  BOOST_TEST(r.noreply);

  r = parse_request("touch k 10\r\n");
  BOOST_TEST(r.kind == mc::command_kind::touch);
  BOOST_TEST(r.exptime == 10);
  BOOST_TEST(parse_request("touch k -5 noreply\r\n").noreply);
}

BOOST_AUTO_TEST_CASE(flush_all_version_verbosity_stats_quit) {
  auto r = parse_request("flush_all\r\n");
  BOOST_TEST(r.kind == mc::command_kind::flush_all);
  BOOST_TEST(r.delay_s == 0);
  BOOST_TEST(parse_request("flush_all 30\r\n").delay_s == 30);
  BOOST_TEST(parse_request("flush_all -1\r\n").delay_s == 0);
  r = parse_request("flush_all 5 noreply\r\n");
  BOOST_TEST(r.delay_s == 5);
  BOOST_TEST(r.noreply);
  BOOST_TEST(parse_request("flush_all noreply\r\n").noreply);

  BOOST_TEST(parse_request("version\r\n").kind == mc::command_kind::version);
  BOOST_TEST(parse_request("verbosity 1\r\n").kind == mc::command_kind::verbosity);
  BOOST_TEST(parse_request("verbosity 1 noreply\r\n").noreply);
  BOOST_TEST(parse_request("stats\r\n").kind == mc::command_kind::stats);
  BOOST_TEST(parse_request("stats reset\r\n").kind == mc::command_kind::stats_reset);
  BOOST_TEST(parse_request("mn\r\n").kind == mc::command_kind::meta_noop);
  BOOST_TEST(closes("quit\r\n"));
  BOOST_TEST(parse("quit\r\n").reply.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(unknown_empty_and_wrong_token_counts_are_ERROR) {
  for (std::string_view s :
       {"\r\n", "\n", "x\r\n", "SET a 0 0 1\r\n", "bogus\r\n", "get\r\n", "get \r\n",
        "set a 0 0\r\n", "set a 0 0 1 noreply x\r\n", "incr n\r\n", "touch a\r\n", "delete\r\n",
        "delete a b c d\r\n", "gat\r\n", "verbosity\r\n", "verbosity 1 2 3\r\n",
        "flush_all 1 2 3\r\n", "stats foo\r\n", "mg\r\n", "ms\r\n", "md\r\n", "ma\r\n",
        "mz a\r\n", "GET /\r\n", "cache_memlimit\r\n", "cache_memlimit x\r\n",
        "cache_memlimit 1 2 3\r\n"}) {
    BOOST_TEST(parse_reply(s) == "ERROR\r\n", "input: " << s);
  }
}

BOOST_AUTO_TEST_CASE(keys_are_any_bytes_but_space_cr_lf_and_nul) {
  // As memcached 1.6.18 stores them: control bytes, tab, DEL and bytes >= 0x80, which need
  // not be UTF-8 (memcaslap's keys begin with such bytes).
  std::vector<std::string> keys = {"a\tb", "\x01", "\x7f", "\xff\xfe", "\x1b[0m", "\x0b\x0c",
                                   "\xc3\xa9"};
  std::string all;  // every allowed byte value, in one 250-byte key
  for (int b = 1; b < 256; ++b) {
    if (b != ' ' && b != '\r' && b != '\n') all.push_back(static_cast<char>(b));
  }
  all.resize(250, '\x80');
  keys.push_back(all);
  for (const auto& key : keys) {
    BOOST_TEST(parse_request("get " + key + "\r\n").keys.front() == key);
    auto set = parse_request("set " + key + " 1 0 2\r\nxy\r\n");
    BOOST_TEST((set.kind == mc::command_kind::set));
    BOOST_TEST(set.keys.front() == key);
    BOOST_TEST(set.value == "xy");
    BOOST_TEST(parse_request("cas " + key + " 0 0 1 7\r\nx\r\n").keys.front() == key);
    BOOST_TEST(parse_request("delete " + key + "\r\n").keys.front() == key);
    BOOST_TEST(parse_request("incr " + key + " 1\r\n").keys.front() == key);
    BOOST_TEST(parse_request("touch " + key + " 1\r\n").keys.front() == key);
    BOOST_TEST(parse_request("gat 1 " + key + " b\r\n").keys.front() == key);
  }
  // A key whose last byte is a CR is still the CR of the line end (one is stripped).
  BOOST_TEST(parse_request("get \x01\r\n").keys.front() == "\x01");
  BOOST_TEST(parse_request("get \x01\n").keys.front() == "\x01");
}

BOOST_AUTO_TEST_CASE(bad_keys_are_client_errors) {
  const std::string key250(250, 'k');
  const std::string key251(251, 'k');
  BOOST_TEST(parse_request("get " + key250 + "\r\n").keys.front() == key250);
  BOOST_TEST(parse_reply("set " + key251 + " 0 0 1\r\n") == bad_format);
  // One bad key spoils the whole multi-get (memcached sends no VALUE then either).
  BOOST_TEST(parse_reply("get a " + key251 + " b\r\n") == bad_format);
  BOOST_TEST(parse_reply("delete " + key251 + "\r\n") == bad_format);
  BOOST_TEST(parse_reply("incr " + key251 + " 1\r\n") == bad_format);
  BOOST_TEST(parse_reply("touch " + key251 + " 1\r\n") == bad_format);
  // A CR inside a key and a NUL are refused (docs/memcached.md; memcached keeps such a CR, and its
  // line ends at a NUL).
  BOOST_TEST(parse_reply("get q\r\r\n") == bad_format);  // only one '\r' is a line end
  BOOST_TEST(parse_reply("set a\rb 0 0 1\r\n") == bad_format);
  BOOST_TEST(parse_reply(std::string("get a\0b\r\n", 9)) == bad_format);
  BOOST_TEST(parse_reply(std::string("delete \0\r\n", 10)) == bad_format);
  // An over-long key with noreply: no reply at all.
  BOOST_TEST(parse_reply("set " + key251 + " 0 0 1 noreply\r\n").empty());
}

BOOST_AUTO_TEST_CASE(bad_numbers_follow_memcached) {
  BOOST_TEST(parse_reply("set a -1 0 1\r\n") == bad_format);
  BOOST_TEST(parse_reply("set a 0x 0 1\r\n") == bad_format);
  BOOST_TEST(parse_reply("set a 0 0 1x\r\n") == bad_format);
  BOOST_TEST(parse_reply("set a 0 0 -1\r\n") == bad_format);
  BOOST_TEST(parse_reply("set a 0 0 2147483647\r\n") == bad_format);   // > INT_MAX - 2
  BOOST_TEST(parse_reply("set a 0 9223372036854775808 1\r\n") == bad_format);  // ERANGE
  BOOST_TEST(parse_reply("set a 18446744073709551616 0 1\r\n") == bad_format);
  // What memcached accepts: flags wrap to 32 bits, exptime and bytes truncate to 32.
  BOOST_TEST(parse_request("set a 4294967296 0 1\r\nx\r\n").flags == 0u);
  BOOST_TEST(parse_request("set a 18446744073709551615 0 1\r\nx\r\n").flags == 4294967295u);
  BOOST_TEST(parse_request("set a -0 0 1\r\nx\r\n").flags == 0u);
  BOOST_TEST(parse_request("set a -9223372036854775809 0 1\r\nx\r\n").flags == 4294967295u);
  BOOST_TEST(parse_request("set a +5 0 1\r\nx\r\n").flags == 5u);
  BOOST_TEST(parse_request("set a 0 2147483648 1\r\nx\r\n").exptime == -2147483648ll);
  BOOST_TEST(parse_request("set a 0 4294967297 1\r\nx\r\n").exptime == 1);
  BOOST_TEST(parse_request("set a 0 0 4294967297\r\nx\r\n").value == "x");
  // A number may be followed by a blank character inside its word.
  BOOST_TEST(parse_request("incr q 1\r\r\n").delta == 1u);

  const std::string bad_delta = "CLIENT_ERROR invalid numeric delta argument\r\n";
  BOOST_TEST(parse_reply("incr n -1\r\n") == bad_delta);
  BOOST_TEST(parse_reply("incr n x\r\n") == bad_delta);
  BOOST_TEST(parse_reply("decr n 18446744073709551616\r\n") == bad_delta);
  BOOST_TEST(parse_reply("incr n x noreply\r\n").empty());

  const std::string bad_exptime = "CLIENT_ERROR invalid exptime argument\r\n";
  BOOST_TEST(parse_reply("touch a x\r\n") == bad_exptime);
  BOOST_TEST(parse_reply("flush_all x\r\n") == bad_exptime);
  BOOST_TEST(parse_reply("flush_all HTTP/1.0\r\n") == bad_exptime);
  BOOST_TEST(parse_reply("flush_all x noreply\r\n").empty());

  BOOST_TEST(parse_reply("verbosity x\r\n") == bad_format);
  BOOST_TEST(parse_reply("verbosity -1\r\n") == bad_format);
  BOOST_TEST(parse_reply("verbosity noreply\r\n").empty());
}

BOOST_AUTO_TEST_CASE(delete_usage_error) {
  const std::string usage =
      "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
  BOOST_TEST(parse_reply("delete k 1\r\n") == usage);
  BOOST_TEST(parse_reply("delete k 0 x\r\n") == usage);
  BOOST_TEST(parse_reply("delete k 1 noreply\r\n").empty());
}

BOOST_AUTO_TEST_CASE(bad_data_chunk_consumes_bytes_plus_two) {
  // memcached reads exactly <bytes>+2 and checks the last two are "\r\n".
  auto r = parse("set a 0 0 3\r\nabcd\r\nget a\r\n");
  BOOST_TEST(static_cast<int>(r.what) == static_cast<int>(mc::outcome::reply));
  BOOST_TEST(r.reply == "CLIENT_ERROR bad data chunk\r\n");
  BOOST_TEST(r.consumed == std::string_view("set a 0 0 3\r\nabcd\r").size());
  BOOST_TEST(parse_reply("set q 0 0 1\nx\ng") == "CLIENT_ERROR bad data chunk\r\n");
  BOOST_TEST(parse_reply("set a 0 0 1 noreply\r\nxyz").empty());
  BOOST_TEST(needs_more("set a 0 0 3\r\nabc\r"));
}

BOOST_AUTO_TEST_CASE(oversize_value_is_refused_and_its_block_discarded) {
  // max_value_bytes is memcached's item_size_max: value + 2 + key + 57 bytes of item
  // header (+ 4 with non-zero flags) must fit. With 100, a 1-byte key holds 40 bytes.
  mc::parser_limits small = limits;
  small.max_value_bytes = 100;
  auto r = mc::parse("set k 0 0 41\r\n", small);
  BOOST_TEST(static_cast<int>(r.what) == static_cast<int>(mc::outcome::reply));
  BOOST_TEST(r.reply == "SERVER_ERROR object too large for cache\r\n");
  BOOST_TEST(r.consumed == 14u);
  BOOST_TEST(r.discard == 43u);
  // The session needs the command and key: a too-large set deletes the old value.
  BOOST_TEST(r.req.kind == mc::command_kind::set);
  BOOST_TEST(r.req.keys == (std::vector<std::string>{"k"}), boost::test_tools::per_element());
  BOOST_TEST(mc::parse("append k 0 0 41\r\n", small).req.kind == mc::command_kind::append);
  r = mc::parse("set k 0 0 2000000 noreply\r\n", small);
  BOOST_TEST(r.reply.empty());
  BOOST_TEST(r.discard == 2000002u);
  BOOST_TEST(static_cast<int>(mc::parse("set k 0 0 40\r\n", small).what) ==
             static_cast<int>(mc::outcome::need_more));
  // Non-zero flags take 4 bytes of the item; a longer key takes its length.
  BOOST_TEST(mc::parse("set k 5 0 37\r\n", small).discard == 39u);
  BOOST_TEST(mc::parse("set k 5 0 36\r\n", small).what == mc::outcome::need_more);
  BOOST_TEST(mc::parse("set kk 0 0 40\r\n", small).discard == 42u);
  // The default 1 MiB: memcached 1.6.18's boundary exactly (measured against it).
  BOOST_TEST(parse("set k 0 0 1048517\r\n").discard == 1048519u);
  BOOST_TEST(needs_more("set k 0 0 1048516\r\n"));
  BOOST_TEST(parse("set k 1 0 1048513\r\n").discard == 1048515u);
  BOOST_TEST(needs_more("set k 1 0 1048512\r\n"));
  BOOST_TEST(parse("set " + std::string(250, 'k') + " 0 0 1048268\r\n").discard == 1048270u);
  BOOST_TEST(needs_more("set " + std::string(250, 'k') + " 0 0 1048267\r\n"));
}

BOOST_AUTO_TEST_CASE(line_bounds) {
  // A command line of 2048 bytes is fine; one more byte without '\n' closes.
  const std::string line2048 = "bogus " + std::string(2042, 'x');
  BOOST_TEST(needs_more(line2048));
  BOOST_TEST(parse_reply(line2048 + "\n") == "ERROR\r\n");
  BOOST_TEST(closes(line2048 + "x"));
  BOOST_TEST(closes(line2048 + "x\r\n"));
  BOOST_TEST(closes(std::string(1 << 20, 'x')));
  // get/gets lines may carry many keys, up to 1 MiB; a longer one is answered with
  // memcached's out-of-memory error and the rest of the line is dropped.
  std::string keys;
  while (keys.size() < 1000000) keys += " key" + std::to_string(keys.size());
  BOOST_TEST(needs_more("get" + keys));
  BOOST_TEST(parse_request("gets" + keys + "\r\n").keys.size() > 50000u);
  const std::string too_long = "get" + keys + std::string(60000, 'k');
  auto r = parse(too_long);
  BOOST_TEST(static_cast<int>(r.what) == static_cast<int>(mc::outcome::reply));
  BOOST_TEST(r.reply == "SERVER_ERROR out of memory reading request\r\n");
  BOOST_TEST(r.consumed == too_long.size());
  BOOST_TEST(r.skip_line);
  r = parse(too_long + "\r\nget a\r\n");
  BOOST_TEST(r.reply == "SERVER_ERROR out of memory reading request\r\n");
  BOOST_TEST(r.consumed == too_long.size() + 2);
  BOOST_TEST(!r.skip_line);
  BOOST_TEST(closes("gat 0" + keys + "\r\n"));  // only get/gets may be long
  BOOST_TEST(parse("gat 0" + keys + "\r\n").reply.empty());
}

BOOST_AUTO_TEST_CASE(http_on_the_memcached_port_closes) {
  BOOST_TEST(closes("GET / HTTP/1.1\r\n"));
  BOOST_TEST(closes("zz HTTP/1.1\r\n"));
  // memcached routes these by first letter before looking for HTTP.
  BOOST_TEST(parse_reply("sxx HTTP/1.1\r\n") == "ERROR\r\n");
  BOOST_TEST(parse_request("get a HTTP/1.1\r\n").keys.size() == 2u);
}

BOOST_AUTO_TEST_CASE(garbage_bytes_never_crash_and_always_progress) {
  std::string junk;
  std::uint32_t x = 12345;
  for (int i = 0; i < 200000; ++i) {
    x = x * 1103515245 + 12345;
    const char alphabet[] = "sgetadc 0123456789\r\n\x01\xff-+xnoreply";
    junk += alphabet[(x >> 16) % (sizeof(alphabet) - 1)];
  }
  std::size_t pos = 0;
  int steps = 0;
  while (pos < junk.size()) {
    auto r = parse(std::string_view(junk).substr(pos));
    if (r.what == mc::outcome::need_more) break;
    BOOST_TEST_REQUIRE(r.consumed > 0u);
    pos += r.consumed + r.discard;
    if (r.what == mc::outcome::close) break;
    ++steps;
  }
  BOOST_TEST(steps > 100);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(streams)

const std::string pipeline =
    "set a 0 0 1\r\nx\r\n"
    "get a b\r\n"
    "gets a\r\n"
    "set big 0 0 2000000 noreply\r\n" +  // swallowed
    std::string(2000000, 'z') + "\r\n" +
    "add b 7 -1 3 noreply\r\nabc\r\n"
    "cas a 0 0 2 99\r\nyy\r\n"
    "set c 0 0 3\r\nabcd\r\n"  // bad data chunk, then "\n" is an empty line
    "incr n 5\r\ndecr n 1 noreply\r\ntouch a 10\r\ngat 5 a b\r\n"
    "delete a\r\nflush_all 0\r\nverbosity 1\r\nversion\r\nstats\r\nbogus\r\n"
    "set d 0 0 0\r\n\r\n"
    "quit\r\n"
    "get never\r\n";

BOOST_AUTO_TEST_CASE(whole_stream_parses_as_expected) {
  auto events = drive({pipeline});
  BOOST_TEST_REQUIRE(events.size() == 20u);
  BOOST_TEST(events[0].kind == mc::command_kind::set);
  BOOST_TEST(events[3].reply == "");  // oversize with noreply: nothing
  BOOST_TEST(events[4].kind == mc::command_kind::add);
  BOOST_TEST(events[4].exptime == -1);
  BOOST_TEST(events[6].reply == "CLIENT_ERROR bad data chunk\r\n");
  BOOST_TEST(events[7].reply == "ERROR\r\n");
  BOOST_TEST(events[9].noreply);
  BOOST_TEST(events[17].reply == "ERROR\r\n");
  BOOST_TEST(events[18].value.empty());
  BOOST_TEST(static_cast<int>(events[19].what) == static_cast<int>(mc::outcome::close));
}

BOOST_AUTO_TEST_CASE(partial_reads_split_at_every_byte) {
  // Without the 2 MB block, so every split point of the stream can be tried.
  std::string stream = pipeline;
  const auto big = stream.find("set big");
  stream.erase(big, std::string_view("set big 0 0 2000000 noreply\r\n").size() + 2000002);
  stream.insert(big, "set big 0 0 2000 noreply\r\n" + std::string(2000, 'z') + "\r\n");
  const auto whole = drive({stream});
  BOOST_TEST_REQUIRE(whole.size() == 20u);
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    std::string_view s(stream);
    const auto parts = drive({s.substr(0, split), s.substr(split)});
    BOOST_TEST_REQUIRE((parts == whole), "split at " << split);
  }
  // And one byte at a time.
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < stream.size(); ++i) bytes.push_back(std::string_view(stream).substr(i, 1));
  BOOST_TEST((drive(bytes) == whole));
}

BOOST_AUTO_TEST_CASE(oversize_block_is_discarded_across_reads) {
  const auto whole = drive({pipeline});
  std::string_view s(pipeline);
  for (std::size_t split : {std::size_t{40}, std::size_t{100}, std::size_t{1000000},
                            pipeline.size() - 300}) {
    BOOST_TEST((drive({s.substr(0, split), s.substr(split)}) == whole), "split at " << split);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Meta commands, cache_memlimit and stats groups (memcached 1.6.18's texts).

BOOST_AUTO_TEST_SUITE(meta)

std::string flag_names(const mc::request& r) {
  std::string out;
  for (const auto& f : r.meta.flags) out += f.name;
  return out;
}

BOOST_AUTO_TEST_CASE(mg_reads_every_flag_in_order) {
  auto r = parse_request("mg key v t c f s k O123 q h l u\r\n");
  BOOST_TEST(r.kind == mc::command_kind::meta_get);
  BOOST_TEST(r.keys == (std::vector<std::string>{"key"}), boost::test_tools::per_element());
  BOOST_TEST(flag_names(r) == "vtcfskOqhlu");
  BOOST_TEST(r.meta.flags[6].word == "O123");
  BOOST_TEST(r.meta.value);
  BOOST_TEST(r.meta.quiet);
  BOOST_TEST(r.noreply);
  BOOST_TEST(r.meta.no_update);
  BOOST_TEST(r.meta.has('h'));
  BOOST_TEST(!r.meta.has('N'));
  r = parse_request("mg key T30 N-1 R+5\r\n");
  BOOST_TEST(r.meta.has_ttl);
  BOOST_TEST(r.meta.ttl == 30);
  BOOST_TEST(r.meta.vivify);
  BOOST_TEST(r.meta.vivify_ttl == -1);
  BOOST_TEST(r.meta.recache);
  BOOST_TEST(r.meta.recache_ttl == 5);
  BOOST_TEST(!r.noreply);
  // Flags that other meta commands use are accepted (and ignored) by mg.
  r = parse_request("mg key P L I\r\n");
  BOOST_TEST(flag_names(r) == "PLI");
  BOOST_TEST(parse_request("mg key\r\n").meta.flags.empty());
  BOOST_TEST(parse_request("mg  key   v \r\n").meta.value);
}

BOOST_AUTO_TEST_CASE(ms_md_ma_read_their_arguments) {
  auto r = parse_request("ms key 2 T10 F5 MA C7 I q k c Oxy\r\nhi\r\n");
  BOOST_TEST(r.kind == mc::command_kind::meta_set);
  BOOST_TEST(r.value == "hi");
  BOOST_TEST(r.meta.ttl == 10);
  BOOST_TEST(r.meta.client_flags == 5u);
  BOOST_TEST(r.meta.mode == 'A');
  BOOST_TEST(r.meta.has_cas);
  BOOST_TEST(r.meta.cas == 7u);
  BOOST_TEST(r.meta.invalidate);
  BOOST_TEST(r.noreply);
  BOOST_TEST(parse_request("ms key 0\r\n\r\n").value.empty());
  r = parse_request("md key C0 I T-1 q\r\n");
  BOOST_TEST(r.kind == mc::command_kind::meta_delete);
  BOOST_TEST(r.meta.has_cas);
  BOOST_TEST(r.meta.cas == 0u);
  BOOST_TEST(r.meta.ttl == -1);
  r = parse_request("ma key MD D18446744073709551615 J7 N0 v\r\n");
  BOOST_TEST(r.kind == mc::command_kind::meta_arithmetic);
  BOOST_TEST(r.meta.mode == 'D');
  BOOST_TEST(r.meta.delta == 18446744073709551615ull);
  BOOST_TEST(r.meta.initial == 7u);
  BOOST_TEST(r.meta.vivify);
  BOOST_TEST(parse_request("ma key\r\n").meta.delta == 1u);
  for (std::string_view mode : {"MI", "M+", "MD", "M-"}) {
    BOOST_TEST(parse_request("ma k " + std::string(mode) + "\r\n").meta.mode == mode[1]);
  }
  for (std::string_view mode : {"ME", "MA", "MP", "MR", "MS"}) {
    BOOST_TEST(parse_request("ms k 1 " + std::string(mode) + "\r\nx\r\n").meta.mode == mode[1]);
  }
}

BOOST_AUTO_TEST_CASE(mn_me_and_unknown_meta_commands) {
  BOOST_TEST(parse_request("mn\r\n").kind == mc::command_kind::meta_noop);
  BOOST_TEST(parse_request("mn anything here\r\n").kind == mc::command_kind::meta_noop);
  auto r = parse_request("me key\r\n");
  BOOST_TEST(r.kind == mc::command_kind::meta_debug);
  BOOST_TEST(r.keys.front() == "key");
  BOOST_TEST(parse_request("me YWJj b\r\n").keys.front() == "abc");
  BOOST_TEST(parse_reply("me\r\n") == bad_format);
  BOOST_TEST(parse_reply("me Y b\r\n") == bad_format);
  BOOST_TEST(parse_reply("mz key\r\n") == "ERROR\r\n");
  BOOST_TEST(parse_reply("mg\r\n") == "ERROR\r\n");
}

BOOST_AUTO_TEST_CASE(every_flag_error_has_memcached_text) {
  const std::string dup = "CLIENT_ERROR duplicate flag\r\n";
  const std::string invalid = "CLIENT_ERROR invalid flag\r\n";
  const std::string bad_token = "CLIENT_ERROR bad token in command line format\r\n";
  BOOST_TEST(parse_reply("mg k v v\r\n") == dup);
  BOOST_TEST(parse_reply("mg k Oa Ob\r\n") == dup);
  BOOST_TEST(parse_reply("mg k \x80\r\n") == dup);  // bytes >= 127 count as duplicates
  BOOST_TEST(parse_reply("mg k \x7f\r\n") == dup);
  BOOST_TEST(parse_reply("mg k Z\r\n") == invalid);
  BOOST_TEST(parse_reply("mg k v zz\r\n") == invalid);
  BOOST_TEST(parse_reply("mg k Tx\r\n") == bad_token);
  BOOST_TEST(parse_reply("mg k T\r\n") == bad_token);
  BOOST_TEST(parse_reply("mg k N1x\r\n") == bad_token);
  BOOST_TEST(parse_reply("mg k R\r\n") == bad_token);
  BOOST_TEST(parse_reply("mg k C-1\r\n") == bad_token);
  BOOST_TEST(parse_reply("mg k Fx\r\n") == bad_format);
  BOOST_TEST(parse_reply("mg k MXY\r\n") == "CLIENT_ERROR incorrect length for M token\r\n");
  BOOST_TEST(parse_reply("mg k J-1\r\n") == "CLIENT_ERROR invalid numeric initial value\r\n");
  BOOST_TEST(parse_reply("mg k Dx\r\n") == "CLIENT_ERROR invalid numeric delta value\r\n");
  // The last error found wins, but an unknown or duplicate flag stops at once.
  BOOST_TEST(parse_reply("mg k Tx Dx\r\n") == "CLIENT_ERROR invalid numeric delta value\r\n");
  BOOST_TEST(parse_reply("mg k Tx Z\r\n") == invalid);
  BOOST_TEST(parse_reply("mg k O" + std::string(32, 'o') + "\r\n") ==
             "CLIENT_ERROR opaque token too long\r\n");
  BOOST_TEST(parse_request("mg k O" + std::string(31, 'o') + "\r\n").meta.flags.size() == 1u);
  // Errors are always answered, quiet or not.
  BOOST_TEST(parse_reply("mg k q Tx\r\n") == bad_token);
  // md and ma answer one text for every flag error.
  const std::string md_error = "CLIENT_ERROR invalid or duplicate flag\r\n";
  BOOST_TEST(parse_reply("md k Tx\r\n") == md_error);
  BOOST_TEST(parse_reply("md k q q\r\n") == md_error);
  BOOST_TEST(parse_reply("ma k Z\r\n") == md_error);
  BOOST_TEST(parse_reply("ma k MII\r\n") == md_error);
  BOOST_TEST(parse_reply("ma k Mx\r\n") == "CLIENT_ERROR invalid mode for ma M token\r\n");
  // Key and token-count errors.
  BOOST_TEST(parse_reply("mg " + std::string(251, 'k') + " v\r\n") == bad_format);
  BOOST_TEST(parse_reply("md " + std::string(251, 'k') + "\r\n") == bad_format);
  const std::string flags18 = " v t c f s k h l u q O1 P L I T1 N1 R1 E";
  BOOST_TEST(parse_reply("mg k" + flags18 + "\r\n") == "CLIENT_ERROR options flags are too long\r\n");
  BOOST_TEST(parse_reply("md k" + flags18 + "\r\n") == "CLIENT_ERROR options flags too long\r\n");
  BOOST_TEST(parse_request("mg k v t c f s k h l u q O1 P L I T1 N1 R1\r\n").meta.flags.size() ==
             17u);
}

BOOST_AUTO_TEST_CASE(ms_errors_swallow_the_data_block_once_its_length_is_known) {
  // Before the length is read: only the line is consumed.
  BOOST_TEST(parse_reply("ms k\r\n") == bad_format);
  auto r = parse("ms k x\r\nhi\r\n");
  BOOST_TEST(r.reply == bad_format);
  BOOST_TEST(r.consumed == 8u);
  BOOST_TEST(r.discard == 0u);
  BOOST_TEST(parse("ms k -1\r\n").reply == bad_format);
  BOOST_TEST(parse_reply("ms " + std::string(251, 'k') + " 1\r\n") == bad_format);
  BOOST_TEST(parse_reply("ms k 1 v t c f s k h l u q O1 P L I T1 N1 R1\r\n") ==
             "CLIENT_ERROR options flags too long\r\n");
  // After: the data block (length + 2) is dropped with the error.
  for (auto [line, text] : std::vector<std::pair<std::string, std::string>>{
           {"ms k 2 Z\r\n", "CLIENT_ERROR invalid flag\r\n"},
           {"ms k 2 v v\r\n", "CLIENT_ERROR duplicate flag\r\n"},
           {"ms k 2 Tx\r\n", "CLIENT_ERROR bad token in command line format\r\n"},
           {"ms k 2 Fx\r\n", bad_format},
           {"ms k 2 MX\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n"},
           {"ms k 2 q O" + std::string(33, 'o') + "\r\n", "CLIENT_ERROR opaque token too long\r\n"},
           {"ms Y 2 b\r\n", "CLIENT_ERROR error decoding key\r\n"}}) {
    r = parse(line);
    BOOST_TEST(r.reply == text, line);
    BOOST_TEST(r.consumed == line.size());
    BOOST_TEST(r.discard == 4u);
  }
  // A bad chunk is answered even in quiet mode.
  BOOST_TEST(parse_reply("ms k 1 q\r\nxyz") == "CLIENT_ERROR bad data chunk\r\n");
  // Too large: refused (quiet or not) with the block dropped and the key for the delete.
  mc::parser_limits small = limits;
  small.max_value_bytes = 100;
  r = mc::parse("ms k 41 q\r\n", small);
  BOOST_TEST(r.reply == "SERVER_ERROR object too large for cache\r\n");
  BOOST_TEST(r.discard == 43u);
  BOOST_TEST(r.req.kind == mc::command_kind::meta_set);
  BOOST_TEST(r.req.keys.front() == "k");
  BOOST_TEST(mc::parse("ms k 37 F1\r\n", small).discard == 39u);
  BOOST_TEST(mc::parse("ms k 40\r\n", small).what == mc::outcome::need_more);
}

BOOST_AUTO_TEST_CASE(base64_keys) {
  BOOST_TEST(parse_request("mg YWJj b\r\n").keys.front() == "abc");
  BOOST_TEST(parse_request("mg YWJj b\r\n").meta.base64);
  // memcached's decoder skips bytes outside the alphabet.
  BOOST_TEST(parse_request("mg YW!Jj b\r\n").keys.front() == "abc");
  BOOST_TEST(parse_request("mg YQ== b\r\n").keys.front() == "a");
  BOOST_TEST(parse_request("mg YWI= b\r\n").keys.front() == "ab");
  // Binary bytes (space, NUL, CR, LF) are keys too once decoded.
  BOOST_TEST(parse_request("mg AA0KIA== b\r\n").keys.front() == std::string("\0\r\n ", 4));
  const std::string decoding = "CLIENT_ERROR error decoding key\r\n";
  BOOST_TEST(parse_reply("mg YWJ b\r\n") == decoding);
  BOOST_TEST(parse_reply("mg Y=== b\r\n") == decoding);
  BOOST_TEST(parse_reply("mg ==== b\r\n") == decoding);
  BOOST_TEST(parse_reply("mg !!!! b\r\n") == decoding);
  BOOST_TEST(parse_reply("md YWJ b\r\n") == "CLIENT_ERROR invalid or duplicate flag\r\n");
  for (std::string s : {std::string(""), std::string("a"), std::string("ab"),
                        std::string("abc"), std::string("\0\xff\x80 \r\n", 6)}) {
    const auto encoded = mc::base64_encode(s);
    BOOST_TEST(encoded.size() % 4 == 0u);
    if (!s.empty()) BOOST_TEST(mc::base64_decode(encoded).value_or("?") == s);
  }
  BOOST_TEST(mc::base64_encode("abc") == "YWJj");
  BOOST_TEST(mc::base64_encode("a") == "YQ==");
}

BOOST_AUTO_TEST_CASE(cache_memlimit_and_stats_groups) {
  auto r = parse_request("cache_memlimit 100\r\n");
  BOOST_TEST(r.kind == mc::command_kind::cache_memlimit);
  BOOST_TEST(r.memlimit_mb == 100u);
  BOOST_TEST(parse_request("cache_memlimit 100 noreply\r\n").noreply);
  BOOST_TEST(!parse_request("cache_memlimit 100 200\r\n").noreply);
  BOOST_TEST(parse_reply("cache_memlimit 7\r\n") ==
             "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n");
  BOOST_TEST(parse_reply("cache_memlimit 0 noreply\r\n").empty());
  BOOST_TEST(parse_reply("cache_memlimit 1000000001\r\n") ==
             "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n");
  BOOST_TEST(parse_request("stats settings\r\n").kind == mc::command_kind::stats_settings);
  BOOST_TEST(parse_request("stats items\r\n").kind == mc::command_kind::stats_items);
  BOOST_TEST(parse_request("stats slabs\r\n").kind == mc::command_kind::stats_slabs);
  BOOST_TEST(parse_request("stats reset x\r\n").kind == mc::command_kind::stats_reset);
  BOOST_TEST(parse_reply("stats sizes\r\n") == "ERROR\r\n");
}

BOOST_AUTO_TEST_CASE(meta_stream_splits_anywhere) {
  const std::string stream =
      "ms a 2 T0 q\r\nhi\r\nmg a v q\r\nmd a q\r\nma n N0 J5 q\r\nmn\r\nms b 1 Z\r\nx\r\nmn\r\n";
  std::vector<mc::command_kind> whole;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    auto r = parse(std::string_view(stream).substr(pos));
    BOOST_TEST_REQUIRE(r.consumed > 0u);
    whole.push_back(r.req.kind);
    pos += r.consumed + r.discard;
  }
  BOOST_TEST(whole.size() == 7u);
  for (std::size_t cut = 0; cut < stream.size(); ++cut) {
    auto r = parse(std::string_view(stream).substr(0, cut));
    auto full = parse(stream);
    if (r.what != mc::outcome::need_more) {
      BOOST_TEST(r.consumed == full.consumed);
      BOOST_TEST(r.reply == full.reply);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
