#include "net/cs733/parser.h"

#include "net/text_words.h"

#include <limits>
#include <optional>
#include <vector>

namespace net::cs733 {

namespace {

constexpr std::string_view cmd_err = "ERR_CMD_ERR\r\n";

std::optional<std::uint64_t> parse_digits(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

parse_result reply(std::size_t consumed, std::string_view text) {
  parse_result r;
  r.what = outcome::reply;
  r.consumed = consumed;
  r.reply = text;
  return r;
}

// set/cas: words are the whole line; `numbytes_at` is the index of <numbytes>.
parse_result parse_update(std::string_view buffer, std::size_t consumed,
                          const word_list& words, command_kind kind,
                          const parser_limits& limits) {
  const std::size_t numbytes_at = kind == command_kind::cas ? 4 : 3;
  if (words.size() != numbytes_at + 1 && words.size() != numbytes_at + 2) {
    return reply(consumed, cmd_err);
  }
  const auto numbytes = parse_digits(words[numbytes_at]);
  if (!numbytes) return reply(consumed, cmd_err);
  // From here on the block length is known: a bad command drops its block as well.
  auto reject_with_block = [&] {
    auto r = reply(consumed, cmd_err);
    r.discard = *numbytes > limits.max_value_bytes ? *numbytes + 2 : 0;
    if (r.discard == 0) {
      // A small block is dropped once it is fully here, so the rule does not depend on
      // how the stream was split.
      if (buffer.size() < consumed + *numbytes + 2) return parse_result{};
      r.consumed = consumed + *numbytes + 2;
    }
    return r;
  };
  request req;
  req.kind = kind;
  const bool has_option = words.size() == numbytes_at + 2;
  if (has_option && words.back() != "noreply") return reject_with_block();
  req.noreply = has_option;
  if (!valid_key(words[1], limits.max_key_bytes)) return reject_with_block();
  const auto exptime = parse_digits(words[2]);
  if (!exptime || *exptime > static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max())) {
    return reject_with_block();
  }
  if (kind == command_kind::cas) {
    const auto version = parse_digits(words[3]);
    if (!version) return reject_with_block();
    req.version = *version;
  }
  if (*numbytes > limits.max_value_bytes) return reject_with_block();
  const auto length = static_cast<std::size_t>(*numbytes);
  if (buffer.size() < consumed + length + 2) return parse_result{};
  const auto block = buffer.substr(consumed, length + 2);
  consumed += length + 2;
  if (!block.ends_with("\r\n")) return reply(consumed, cmd_err);
  req.key.assign(words[1]);
  req.exptime = static_cast<std::int64_t>(*exptime);
  req.value.assign(block.substr(0, length));
  parse_result r;
  r.what = outcome::request;
  r.consumed = consumed;
  r.req = std::move(req);
  return r;
}

}  // namespace

std::string_view to_string(command_kind k) {
  switch (k) {
    case command_kind::set: return "set";
    case command_kind::get: return "get";
    case command_kind::getm: return "getm";
    case command_kind::cas: return "cas";
    case command_kind::remove: return "delete";
  }
  return "unknown";
}

parse_result parse(std::string_view buffer, const parser_limits& limits) {
  const auto newline = buffer.find('\n');
  if ((newline == std::string_view::npos && buffer.size() > limits.max_line_bytes) ||
      (newline != std::string_view::npos && newline > limits.max_line_bytes)) {
    parse_result r;
    r.what = outcome::close;
    r.consumed = buffer.size();
    r.reply = cmd_err;
    return r;
  }
  if (newline == std::string_view::npos) return parse_result{};
  const std::size_t consumed = newline + 1;
  auto line = buffer.substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const auto words = split_words(line);
  if (words.empty()) return reply(consumed, "");

  const std::string_view name = words[0];
  if (name == "set") return parse_update(buffer, consumed, words, command_kind::set, limits);
  if (name == "cas") return parse_update(buffer, consumed, words, command_kind::cas, limits);
  command_kind kind;
  if (name == "get") {
    kind = command_kind::get;
  } else if (name == "getm") {
    kind = command_kind::getm;
  } else if (name == "delete") {
    kind = command_kind::remove;
  } else {
    return reply(consumed, cmd_err);
  }
  if (words.size() != 2 || !valid_key(words[1], limits.max_key_bytes)) {
    return reply(consumed, cmd_err);
  }
  parse_result r;
  r.what = outcome::request;
  r.consumed = consumed;
  r.req.kind = kind;
  r.req.key.assign(words[1]);
  return r;
}

}  // namespace net::cs733
