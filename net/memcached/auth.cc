#include "net/memcached/auth.h"

#include "net/service_types.h"

namespace net::memcached {

namespace {

// memcached's tokenize_command: space-separated, empty tokens skipped.
std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    const std::size_t start = i;
    while (i < s.size() && s[i] != ' ') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

// memcached's safe_strtoul into a uint32_t: decimal digits, then the end of the token or
// white space (the line's \r stays in the last token).
bool parse_size(std::string_view t, std::size_t& out) {
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
    v = v * 10 + static_cast<std::uint64_t>(t[i] - '0');
    if (v > 0xffffffffull) return false;
    ++i;
  }
  if (i == 0) return false;
  if (i < t.size() && t[i] != '\r' && t[i] != '\t' && t[i] != '\v' && t[i] != '\f') return false;
  out = static_cast<std::size_t>(v);
  return true;
}

auth_result answer(std::size_t consumed, std::string_view text) {
  auth_result r;
  r.what = auth_result::kind::reply;
  r.consumed = consumed;
  r.reply = std::string(text) + "\r\n";
  return r;
}

}  // namespace

auth_result parse_auth(std::string_view input, const credentials& users) {
  const auto newline = input.find('\n');
  if (newline == std::string_view::npos) {
    auth_result r;
    if (input.size() > max_auth_line_bytes) r.what = auth_result::kind::close;
    return r;
  }
  const std::size_t line_bytes = newline + 1;
  const auto words = tokens(input.substr(0, newline));
  std::size_t size = 0;
  if (words.size() < 5 || words[0] != "set" || !parse_size(words[4], size)) {
    return answer(line_bytes, "CLIENT_ERROR unauthenticated");
  }
  if (size > max_auth_data_bytes) {
    auth_result r = answer(line_bytes, "CLIENT_ERROR bad authentication token format");
    r.discard = size + 2;
    return r;
  }
  if (input.size() < line_bytes + size + 2) return auth_result{};
  const std::string_view block = input.substr(line_bytes, size + 2);
  const std::size_t consumed = line_bytes + size + 2;
  if (block.substr(size) != "\r\n") {
    return answer(consumed, "CLIENT_ERROR bad command line termination");
  }
  const auto parts = tokens(block.substr(0, size));
  if (parts.size() < 2) return answer(consumed, "CLIENT_ERROR bad authentication token format");
  // Every entry is compared, so the time taken does not tell which users exist.
  bool match = false;
  for (const auto& [user, password] : users) {
    const bool u = constant_time_equal(parts[0], user);
    const bool p = constant_time_equal(parts[1], password);
    match = match || (u && p);
  }
  auth_result r = answer(consumed, match ? "STORED" : "CLIENT_ERROR authentication failure");
  r.checked = true;
  r.authenticated = match;
  return r;
}

}  // namespace net::memcached
