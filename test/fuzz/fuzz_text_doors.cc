// Fuzz target: the memcached and CS733 parsers on arbitrary bytes.
// Invariants: a parse never claims more bytes than it was given, and a stream parsed as a
// whole gives the same requests as the same stream fed one growing prefix at a time (the
// answer never depends on how reads split the input). Meta commands: every meta request
// names exactly one key (non-empty, also after base64 decoding), and the parser's flags
// are the words of the line. Each input is also tried behind one of the meta seeds below,
// so random tails meet the meta flag parser deep inside a valid command. The ASCII
// authentication parser (net/memcached/auth.h) gets the same prefix rules, and never
// authenticates a connection whose input does not carry a configured user and password.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "net/cs733/parser.h"
#include "net/memcached/auth.h"
#include "net/memcached/parser.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

template <typename Result>
void check_request(const Result& r) {
  if constexpr (requires { r.req.meta; }) {
    using net::memcached::command_kind;
    if (r.what != net::memcached::outcome::request) return;
    switch (r.req.kind) {
      case command_kind::meta_get:
      case command_kind::meta_set:
      case command_kind::meta_delete:
      case command_kind::meta_arithmetic:
      case command_kind::meta_debug:
        check(r.req.keys.size() == 1 && !r.req.keys.front().empty());
        for (const auto& f : r.req.meta.flags) check(!f.word.empty() && f.word[0] == f.name);
        break;
      default:
        break;
    }
  }
}

// Drives parse over a whole buffer like a session does; returns a transcript of outcomes.
template <typename Parse>
std::string transcript(std::string_view input, Parse parse) {
  std::string out;
  std::size_t pos = 0;
  for (int guard = 0; guard < 100000; ++guard) {
    auto r = parse(input.substr(pos));
    check(r.consumed <= input.size() - pos);
    check_request(r);
    out += std::to_string(static_cast<int>(r.what)) + ":" + std::to_string(r.consumed) + ";";
    if (r.consumed == 0) break;  // need more (or a close at the very start)
    pos += r.consumed;
    pos += std::min(r.discard, input.size() - pos);
  }
  return out;
}

// Meta commands with every flag, good and bad, as starting points.
constexpr std::string_view meta_seeds[] = {
    "mg key v t c f s k h l u q O123 T30 N10 R5\r\n",
    "ms key 2 T10 F5 MA C7 I q k c Oxy b\r\nhi\r\n",
    "md a2V5 b C0 I T-1 q k O1\r\n",
    "ma key MD D18446744073709551615 J7 N0 v t c k\r\n",
    "mn\r\nme key\r\nme a2V5 b\r\ncache_memlimit 100 noreply\r\nstats settings\r\n",
    "mg k v v\r\nmg k Tx\r\nms k 2 Z\r\nhi\r\nma k Mx\r\nmg YW!Jj b k\r\nmg Y=== b\r\n",
    "ms k 5000 q\r\n",
    "get a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  net::memcached::parser_limits mc_limits;
  mc_limits.max_value_bytes = 4096;  // small bounds reach the oversize paths
  mc_limits.max_line_bytes = 256;
  mc_limits.max_get_line_bytes = 1024;
  net::cs733::parser_limits cs_limits;
  cs_limits.max_value_bytes = 4096;
  cs_limits.max_line_bytes = 256;

  auto mc = [&](std::string_view b) { return net::memcached::parse(b, mc_limits); };
  auto cs = [&](std::string_view b) { return net::cs733::parse(b, cs_limits); };
  transcript(input, mc);
  transcript(input, cs);
  {
    std::string behind(meta_seeds[size % std::size(meta_seeds)]);
    behind.append(input);
    transcript(behind, mc);
  }

  // The first answer from the whole input is the one from the shortest prefix that gives
  // any (an over-long line closes the connection however much of it has arrived, so only the
  // decision is compared for a close).
  if (size > 512) return 0;  // the prefix scan is quadratic
  auto same_first_answer = [&](auto parse, auto need_more, auto close) {
    const auto whole = parse(input);
    for (std::size_t n = 0; n <= size; ++n) {
      const auto part = parse(input.substr(0, n));
      if (part.what == need_more) continue;
      check(part.what == whole.what);
      if (part.what != close) check(part.consumed == whole.consumed && part.reply == whole.reply);
      return;
    }
  };
  same_first_answer(mc, net::memcached::outcome::need_more, net::memcached::outcome::close);
  same_first_answer(cs, net::cs733::outcome::need_more, net::cs733::outcome::close);

  // ASCII authentication, as a connection sees it before it authenticated; the seeds'
  // `set` lines reach the credential path with random data behind them.
  const net::memcached::credentials users{{"alice", "s3cret"}, {"bob", "pw"}};
  auto auth = [&](std::string_view b) { return net::memcached::parse_auth(b, users); };
  for (const std::string_view prefix : {std::string_view{}, std::string_view{"set a 0 0 12\r\n"}}) {
    std::string in(prefix);
    in.append(input);
    const auto whole = auth(in);
    check(whole.consumed <= in.size());
    if (whole.authenticated) {
      check(whole.what == net::memcached::auth_result::kind::reply);
      check(in.find("alice s3cret") != std::string::npos || in.find("bob pw") != std::string::npos);
    }
    for (std::size_t n = 0; n <= in.size(); ++n) {
      const auto part = auth(std::string_view(in).substr(0, n));
      if (part.what == net::memcached::auth_result::kind::need_more) continue;
      check(part.what == whole.what);
      if (part.what == net::memcached::auth_result::kind::reply) {
        check(part.reply == whole.reply && part.authenticated == whole.authenticated);
      }
      break;
    }
  }
  return 0;
}
