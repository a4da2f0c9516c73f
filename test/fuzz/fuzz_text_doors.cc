// Fuzz target: the memcached and CS733 parsers on arbitrary bytes.
// Invariants: a parse never claims more bytes than it was given, and a stream parsed as a
// whole gives the same requests as the same stream fed one growing prefix at a time (the
// answer never depends on how reads split the input).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "net/cs733/parser.h"
#include "net/memcached/parser.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// Drives parse over a whole buffer like a session does; returns a transcript of outcomes.
template <typename Parse>
std::string transcript(std::string_view input, Parse parse) {
  std::string out;
  std::size_t pos = 0;
  for (int guard = 0; guard < 100000; ++guard) {
    auto r = parse(input.substr(pos));
    check(r.consumed <= input.size() - pos);
    out += std::to_string(static_cast<int>(r.what)) + ":" + std::to_string(r.consumed) + ";";
    if (r.consumed == 0) break;  // need more (or a close at the very start)
    pos += r.consumed;
    pos += std::min(r.discard, input.size() - pos);
  }
  return out;
}

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
  return 0;
}
