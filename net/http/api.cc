// The HTTP API as pure functions: request -> route (parsing, validation, every error status)
// and results -> responses (JSON, headers). Longer than ~600 lines on purpose: it is the one
// table of docs/http-api.md in code — every route, parameter and error mapping side by side,
// so that the document and the code can be checked against each other in one place.
#include "net/http/api.h"

#include "base/host_port.h"
#include "net/text_words.h"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <limits>

namespace net {

namespace json = boost::json;

std::optional<std::string> http_response::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < k.size() && same; ++i) {
      const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
      same = lower(k[i]) == lower(name[i]);
    }
    if (same) return v;
  }
  return std::nullopt;
}

// --- helpers --------------------------------------------------------------------------------

std::string json_text(const json::value& v) {
  std::string out = json::serialize(v);
  out += '\n';
  return out;
}

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex(s[i + 1]);
      const int lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
    static constexpr std::uint32_t min_for_length[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t(std::uint8_t(bytes[i])) << 16) |
                            (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8) |
                            std::uint32_t(std::uint8_t(bytes[i + 2]));
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t(std::uint8_t(bytes[i])) << 16) |
                            (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::int64_t expires_unix_s(std::int64_t expires_at_ms) {
  if (expires_at_ms <= 0) return 0;
  return (expires_at_ms + 999) / 1000;
}

namespace {

template <typename T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// An entity tag as sent in If-Match: "5", W/"5" or a bare 5. nullopt if not a version.
std::optional<std::uint64_t> parse_etag(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.starts_with("W/")) v.remove_prefix(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return parse_number<std::uint64_t>(v);
}

bool is_star(const std::optional<std::string>& v) {
  if (!v) return false;
  std::string_view s = *v;
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s == "*";
}

struct query_param {
  std::string name;
  std::string value;
};

std::optional<std::vector<query_param>> parse_query(std::string_view q) {
  std::vector<query_param> out;
  while (!q.empty()) {
    const auto amp = q.find('&');
    const std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    auto name = percent_decode(part.substr(0, eq), true);
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1), true);
    if (!name || !value) return std::nullopt;
    out.push_back({std::move(*name), std::move(*value)});
  }
  return out;
}

const std::string* find_param(const std::vector<query_param>& params, std::string_view name) {
  const std::string* found = nullptr;
  for (const auto& p : params)
    if (p.name == name) found = &p.value;  // the last one wins
  return found;
}

http_response bad_request(std::string_view message) {
  return error_response(400, "bad_request", message);
}

http_response method_not_allowed(std::string_view allow) {
  http_response r = error_response(405, "method_not_allowed", "method not allowed on this path");
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

route parse_kv_item(http_request&& req, std::string_view raw_key,
                    const std::vector<query_param>& params, const limits& lim) {
  if (req.method != "GET" && req.method != "HEAD" && req.method != "PUT" &&
      req.method != "DELETE")
    return method_not_allowed("GET, HEAD, PUT, DELETE");
  auto key = percent_decode(raw_key, false);
  if (!key) return bad_request("bad percent-encoding in key");
  if (!valid_key(*key, lim.max_key_bytes))
    return bad_request("key must be 1.." + std::to_string(lim.max_key_bytes) +
                       " bytes without space, CR, LF or NUL");

  if (req.method == "GET" || req.method == "HEAD") {
    route_kv_get r;
    r.key = std::move(*key);
    if (const auto* meta = find_param(params, "meta")) {
      if (*meta == "1" || *meta == "true") {
        r.meta = true;
      } else if (*meta != "0" && *meta != "false") {
        return bad_request("meta must be 1 or 0");
      }
    }
    if (req.if_none_match) {
      // A list of entity tags (RFC 9110 §13.1.2) or "*".
      std::string_view tags = *req.if_none_match;
      while (!tags.empty()) {
        const auto comma = tags.find(',');
        const auto tag = tags.substr(0, comma);
        tags = comma == std::string_view::npos ? std::string_view{} : tags.substr(comma + 1);
        if (is_star(std::string(tag))) {
          r.not_modified_any = true;
        } else if (const auto v = parse_etag(tag)) {
          r.not_modified_versions.push_back(*v);
        } else {
          return bad_request("If-None-Match must be \"*\" or versions: \"<n>\"");
        }
      }
    }
    return r;
  }

  if (req.if_match && req.if_none_match)
    return bad_request("If-Match and If-None-Match cannot be combined");
  if (req.if_none_match && !is_star(req.if_none_match))
    return bad_request("only If-None-Match: * is supported");

  if (req.method == "DELETE") {
    if (req.if_none_match) return bad_request("If-None-Match is not supported on DELETE");
    route_kv_delete r{std::move(*key), 0};
    if (req.if_match && !is_star(req.if_match)) {
      const auto v = parse_etag(*req.if_match);
      if (!v) return bad_request("If-Match must be a version: \"<n>\"");
      // Version 0 is no item's version; the command uses 0 to mean "any", so refuse here.
      if (*v == 0) return error_response(412, "exists", "version does not match");
      r.version = *v;
    }
    return r;
  }

  // PUT
  if (!req.has_body) return error_response(411, "length_required", "PUT needs a body (Content-Length)");
  if (req.body.size() > lim.max_value_bytes)
    return error_response(413, "too_large", "value larger than max_value_bytes");
  route_kv_put r;
  r.key = std::move(*key);
  if (const auto* ttl = find_param(params, "ttl")) {
    const auto v = parse_number<std::int64_t>(*ttl);
    if (!v || *v < 0) return bad_request("ttl must be a non-negative number of seconds");
    r.ttl_s = *v;
  }
  if (const auto* flags = find_param(params, "flags")) {
    const auto v = parse_number<std::uint32_t>(*flags);
    if (!v) return bad_request("flags must be an unsigned 32-bit number");
    r.flags = *v;
  }
  if (req.if_match) {
    if (is_star(req.if_match)) {
      r.when = route_kv_put::precondition::exists;
    } else {
      const auto v = parse_etag(*req.if_match);
      if (!v) return bad_request("If-Match must be a version: \"<n>\" or *");
      r.when = route_kv_put::precondition::version_matches;
      r.version = *v;
    }
  } else if (req.if_none_match) {
    r.when = route_kv_put::precondition::absent;
  }
  r.value = std::move(req.body);
  return r;
}

// A member id in a path: decimal 1..max_member_id, nothing else (a typo must not name
// another member).
std::optional<raft::node_id> parse_member_id(std::string_view s) {
  if (s.empty() || s.size() > 10 || s.front() == '0') return std::nullopt;
  const auto v = parse_number<std::uint64_t>(s);
  if (!v || *v == 0 || *v > max_member_id) return std::nullopt;
  return raft::node_id(*v);
}

const std::string& bad_member_id_message() {
  static const std::string m = "member id must be 1.." + std::to_string(max_member_id);
  return m;
}

// The body of POST /v1/members: {"id":4,"peer":"h:p","memcached":"h:p","cs733":"h:p",
// "http":"h:p"}. Strict on purpose: a misspelt field ("htpp") would otherwise add a member
// whose HTTP door nobody can find, and a membership change is not easily undone.
route parse_member_add(const http_request& req) {
  static constexpr std::string_view shape =
      R"({"id":N,"peer":"host:port","memcached":"host:port","cs733":"host:port","http":"host:port"})";
  if (!req.has_body || req.body.empty())
    return bad_request("the body must be a JSON object: " + std::string(shape));
  json::stream_parser parser;
  boost::system::error_code ec;
  const std::size_t used = parser.write(req.body, ec);
  if (!ec) parser.finish(ec);
  if (ec) {
    return bad_request("invalid JSON at byte " + std::to_string(used) + ": " + ec.message());
  }
  const json::value body = parser.release();
  if (!body.is_object())
    return bad_request("the body must be a JSON object: " + std::string(shape));
  route_member_add r;
  bool has_id = false;
  bool has_peer = false;
  for (const auto& [name, value] : body.as_object()) {
    if (name == "id") {
      // Integers only: 4.0 or "4" are refused rather than guessed at.
      std::optional<std::uint64_t> id;
      if (value.is_uint64()) id = value.get_uint64();
      if (value.is_int64() && value.get_int64() > 0) id = std::uint64_t(value.get_int64());
      if (!id || *id == 0 || *id > max_member_id)
        return bad_request("id must be an integer 1.." + std::to_string(max_member_id));
      r.member.id = raft::node_id(*id);
      has_id = true;
      continue;
    }
    std::string* field = name == "peer"        ? &r.member.peer
                         : name == "memcached" ? &r.member.memcached
                         : name == "cs733"     ? &r.member.cs733
                         : name == "http"      ? &r.member.http
                                               : nullptr;
    if (!field) {
      std::string key(name.data(), name.size());
      if (!valid_utf8(key) || key.size() > 64) key = "?";  // never echo much of a bad body
      return bad_request("unknown field \"" + key +
                         "\" (expected id, peer, memcached, cs733, http)");
    }
    const std::string field_name(name.data(), name.size());
    if (!value.is_string()) return bad_request(field_name + " must be a \"host:port\" string");
    const std::string_view text(value.get_string().data(), value.get_string().size());
    // An optional door given as "" is not given (GET /v1/members shows missing ones so).
    if (text.empty() && name != "peer") continue;
    if (!base::split_host_port(text))
      return bad_request(field_name + " must be host:port with a port 1..65535");
    *field = std::string(text);
    if (name == "peer") has_peer = true;
  }
  if (!has_id) return bad_request("id is required: " + std::string(shape));
  if (!has_peer) return bad_request("peer is required: the address its peer port is reached at");
  return r;
}

// /v1/members and /v1/members/...: `rest` is what follows "/v1/members".
route parse_members(const http_request& req, std::string_view rest,
                    const std::vector<query_param>& params) {
  if (rest.empty() || rest == "/") {
    if (req.method == "GET" || req.method == "HEAD") {
      const auto* local = find_param(params, "local");
      if (local && *local != "1" && *local != "0") return bad_request("local must be 0 or 1");
      return route_members_list{local && *local == "1"};
    }
    if (req.method == "POST") return parse_member_add(req);
    return method_not_allowed("GET, HEAD, POST");
  }
  rest.remove_prefix(1);  // the '/'
  const auto slash = rest.find('/');
  const std::string_view id_text = rest.substr(0, slash);
  if (slash == std::string_view::npos) {
    if (req.method != "DELETE") return method_not_allowed("DELETE");
    const auto id = parse_member_id(id_text);
    if (!id) return bad_request(bad_member_id_message());
    return route_member_remove{*id};
  }
  if (rest.substr(slash) == "/promote") {
    if (req.method != "POST") return method_not_allowed("POST");
    const auto id = parse_member_id(id_text);
    if (!id) return bad_request(bad_member_id_message());
    return route_member_promote{*id};
  }
  return error_response(404, "not_found", "no such path");
}

}  // namespace

route parse_route(http_request&& req, const limits& lim) {
  std::string_view target = req.target;
  const auto qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  const std::string_view query =
      qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);
  auto params = parse_query(query);
  if (!params) return bad_request("bad percent-encoding in query");

  const auto get_only = [&](auto r) -> route {
    if (req.method != "GET" && req.method != "HEAD") return method_not_allowed("GET, HEAD");
    return r;
  };

  if (path.starts_with("/v1/kv/")) return parse_kv_item(std::move(req), path.substr(7), *params, lim);
  if (path == "/v1/kv") {
    if (req.method != "GET") return method_not_allowed("GET");
    route_kv_list r;
    if (const auto* p = find_param(*params, "prefix")) r.prefix = *p;
    if (const auto* a = find_param(*params, "after")) r.after = *a;
    if (const auto* l = find_param(*params, "limit")) {
      const auto v = parse_number<std::size_t>(*l);
      if (!v || *v == 0 || *v > max_list_limit)
        return bad_request("limit must be 1.." + std::to_string(max_list_limit));
      r.limit = *v;
    }
    return r;
  }
  if (path == "/v1/status") return get_only(route_status{});
  if (path == "/" || path == "/index.html") return get_only(route_page{});
  if (path == "/metrics") return get_only(route_metrics{});
  if (path == "/healthz") return get_only(route_healthz{});
  if (path == "/readyz") return get_only(route_readyz{});
  if (path == "/v1/admin/transfer-leadership") {
    if (req.method != "POST") return method_not_allowed("POST");
    const auto* to = find_param(*params, "to");
    const auto id = to ? parse_number<std::uint64_t>(*to) : std::nullopt;
    if (!id || *id == 0) return bad_request("to must be the id of a member");
    return route_transfer_leadership{raft::node_id(*id)};
  }
  if (path == "/v1/admin/snapshot") {
    if (req.method != "POST") return method_not_allowed("POST");
    return route_snapshot{};
  }
  if (path == "/v1/members" || path.starts_with("/v1/members/"))
    return parse_members(req, path.substr(11), *params);
  return error_response(404, "not_found", "no such path");
}

kv::command to_command(const route_kv_put& r) {
  kv::command c;
  switch (r.when) {
    case route_kv_put::precondition::none:
      c.kind = kv::op::set;
      break;
    case route_kv_put::precondition::version_matches:
      c.kind = kv::op::cas;
      c.cas_unique = r.version;
      break;
    case route_kv_put::precondition::exists:
      c.kind = kv::op::replace;
      break;
    case route_kv_put::precondition::absent:
      c.kind = kv::op::add;
      break;
  }
  c.key = r.key;
  c.value = r.value;
  c.flags = r.flags;
  c.exptime = r.ttl_s;
  c.kind_of_expiry = kv::expiry_kind::relative;
  return c;
}

kv::command to_command(const route_kv_delete& r) {
  kv::command c;
  c.kind = kv::op::remove;
  c.key = r.key;
  c.cas_unique = r.version;
  return c;
}

std::string_view metrics_name(const route& r, std::string_view method) {
  switch (r.index()) {
    case 0:
      return "error";
    case 1:
      return "GET /v1/kv/{key}";
    case 2:
      return "PUT /v1/kv/{key}";
    case 3:
      return "DELETE /v1/kv/{key}";
    case 4:
      return "GET /v1/kv";
    case 5:
      return "GET /v1/status";
    case 6:
      return "GET /";
    case 7:
      return "GET /metrics";
    case 8:
      return "GET /healthz";
    case 9:
      return "GET /readyz";
    case 10:
      return "POST /v1/admin/transfer-leadership";
    case 11:
      return "POST /v1/admin/snapshot";
    case 12:
      return "GET /v1/members";
    case 13:
      return "POST /v1/members";
    case 14:
      return "POST /v1/members/{id}/promote";
    case 15:
      return "DELETE /v1/members/{id}";
  }
  static_assert(std::variant_size_v<route> == 16, "name every route for /metrics");
  (void)method;
  return "other";
}

// --- the admin token --------------------------------------------------------------------------

bool needs_admin_token(std::string_view method, std::string_view target) {
  if (method == "GET" || method == "HEAD") return false;
  const std::string_view path = target.substr(0, target.find('?'));
  return path.starts_with("/v1/admin/") || path == "/v1/members" ||
         path.starts_with("/v1/members/");
}

bool bearer_token_matches(std::string_view authorization, std::string_view token) {
  // RFC 6750: the scheme is case-insensitive, then one or more spaces, then the token.
  constexpr std::string_view scheme = "bearer";
  if (token.empty() || authorization.size() <= scheme.size()) return false;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != scheme[i]) return false;
  }
  std::string_view rest = authorization.substr(scheme.size());
  if (rest.front() != ' ') return false;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
  return constant_time_equal(rest, token);
}

http_response unauthorized_response(bool token_sent) {
  auto r = error_response(
      401, "unauthorized",
      token_sent ? "wrong admin token" : "this request needs Authorization: Bearer <admin token>");
  r.headers.emplace_back("WWW-Authenticate",
                         token_sent ? "Bearer error=\"invalid_token\"" : "Bearer");
  return r;
}

// --- errors ---------------------------------------------------------------------------------

http_error map_error(service_error e) {
  switch (e) {
    case service_error::none:
      return {500, "internal", "no error", false};
    case service_error::not_leader:
      // Doors submit through write(), which forwards; seeing this means forwarding failed.
      return {503, "not_leader", "this node is not the leader", true};
    case service_error::no_leader:
      return {503, "no_leader", "no leader known: retry later", true};
    case service_error::timeout:
      return {504, "timeout", "not committed in time: outcome unknown", false};
    case service_error::stopped:
      return {503, "stopped", "the node is shutting down", true};
    case service_error::unavailable:
      return {503, "unavailable", "storage unavailable: writes refused", true};
    case service_error::busy:
      return {503, "busy", "too many writes in flight on this node: retry shortly", true};
  }
  return {500, "internal", "unknown service error", false};
}

http_error map_error(kv::status s) {
  switch (s) {
    case kv::status::not_found:
      return {404, "not_found", "no such key", false};
    case kv::status::exists:
      return {412, "exists", "version does not match", false};
    case kv::status::not_stored:
      return {412, "not_stored", "precondition failed: not stored", false};
    case kv::status::too_large:
      return {413, "too_large", "value larger than max_value_bytes", false};
    case kv::status::out_of_memory:
      return {507, "out_of_memory", "out of memory storing object", false};
    case kv::status::bad_command:
      return {400, "bad_request", "invalid command", false};
    case kv::status::outcome_unknown:
      return {504, "timeout", "a retry too old to deduplicate: outcome unknown", false};
    case kv::status::non_numeric:
      return {400, "non_numeric", "value is not a decimal number", false};
    default:
      return {500, "internal", "unexpected store result", false};
  }
}

http_error map_error(member_refusal r) {
  const std::string_view text = to_string(r);
  switch (r) {
    case member_refusal::none:
      return {500, "internal", "no refusal", false};
    case member_refusal::member_exists:
      return {409, "member_exists", text, false};
    case member_refusal::address_in_use:
      return {409, "address_in_use", text, false};
    case member_refusal::change_in_progress:
      return {409, "change_in_progress", text, false};
    case member_refusal::not_learner:
      return {409, "not_learner", text, false};
    case member_refusal::last_voter:
      return {409, "last_voter", text, false};
    case member_refusal::unknown_member:
      return {404, "unknown_member", text, false};
    // "Not now": the same request can succeed once the learner caught up or the new leader
    // committed its first entry, so the client is told to retry.
    case member_refusal::not_caught_up:
      return {503, "not_caught_up", text, true};
    case member_refusal::not_ready:
      return {503, "not_ready", text, true};
    case member_refusal::malformed:
      return {400, "bad_request", text, false};
  }
  return {500, "internal", "unknown membership refusal", false};
}

http_response member_change_error(const member_change_reply& reply) {
  if (reply.error != service_error::none) return error_response(map_error(reply.error));
  http_error e = map_error(reply.refusal);
  if (!reply.message.empty()) e.message = reply.message;
  return error_response(e);
}

http_response error_response(unsigned status, std::string_view code, std::string_view message) {
  http_response r;
  r.status = status;
  json::object o;
  o["error"] = code;
  o["message"] = message;
  r.body = json_text(o);
  return r;
}

http_response error_response(const http_error& e) {
  http_response r = error_response(e.status, e.code, e.message);
  if (e.retry_after) r.headers.emplace_back("Retry-After", "1");
  return r;
}

// --- answers --------------------------------------------------------------------------------

namespace {
std::string etag(std::uint64_t version) { return "\"" + std::to_string(version) + "\""; }
}  // namespace

http_response item_response(std::string_view key, const kv::item_view& item, bool meta) {
  http_response r;
  r.headers.emplace_back("ETag", etag(item.version));
  r.headers.emplace_back("X-Raftkv-Flags", std::to_string(item.flags));
  r.headers.emplace_back("X-Raftkv-Expires", std::to_string(expires_unix_s(item.expires_at_ms)));
  if (!meta) {
    r.content_type = "application/octet-stream";
    r.body = item.value;
    return r;
  }
  json::object o;
  // A key that is not UTF-8 cannot be JSON text: base64 with "key_encoding" (as listings).
  if (valid_utf8(key)) {
    o["key"] = key;
  } else {
    o["key"] = base64_encode(key);
    o["key_encoding"] = "base64";
  }
  if (valid_utf8(item.value)) {
    o["value"] = item.value;
  } else {
    o["value"] = base64_encode(item.value);
    o["encoding"] = "base64";
  }
  o["version"] = item.version;
  o["flags"] = item.flags;
  o["expires"] = expires_unix_s(item.expires_at_ms);
  r.body = json_text(o);
  return r;
}

http_response stored_response(std::uint64_t version) {
  http_response r;
  r.headers.emplace_back("ETag", etag(version));
  // Every PUT answers this: formatted directly, as json_text() would (a Boost.JSON object and
  // its serializer were 1.4% of the leader's event loop under 32 connections of PUT).
  r.body = "{\"version\":" + std::to_string(version) + "}\n";
  return r;
}

bool route_kv_get::not_modified(std::uint64_t version) const {
  return not_modified_any ||
         std::find(not_modified_versions.begin(), not_modified_versions.end(), version) !=
             not_modified_versions.end();
}

http_response not_modified_response(std::uint64_t version) {
  http_response r;
  r.status = 304;
  r.content_type.clear();
  r.headers.emplace_back("ETag", etag(version));
  return r;
}

http_response deleted_response() {
  http_response r;
  json::object o;
  o["deleted"] = true;
  r.body = json_text(o);
  return r;
}

http_response list_response(std::vector<kv::key_info> keys, std::size_t limit) {
  http_response r;
  json::array arr;
  const bool more = keys.size() > limit;
  if (more) keys.resize(limit);
  for (const auto& k : keys) {
    json::object o;
    // Keys are bytes (docs/memcached.md): one that is UTF-8 is text (Boost.JSON escapes its control
    // characters); any other is given in base64 and flagged, as in ?meta=1.
    if (valid_utf8(k.key)) {
      o["key"] = k.key;
    } else {
      o["key"] = base64_encode(k.key);
      o["key_encoding"] = "base64";
    }
    o["version"] = k.version;
    o["bytes"] = k.bytes;
    o["expires"] = expires_unix_s(k.expires_at_ms);
    arr.push_back(std::move(o));
  }
  json::object body;
  body["keys"] = std::move(arr);
  // `next` is the `after` of the next page. A key that is not UTF-8 cannot travel in JSON
  // as text, so the cursor is then given base64 with next_encoding.
  if (more && !keys.empty()) {
    const std::string& last = keys.back().key;
    if (valid_utf8(last)) {
      body["next"] = last;
    } else {
      body["next"] = base64_encode(last);
      body["next_encoding"] = "base64";
    }
  } else {
    body["next"] = nullptr;
  }
  r.body = json_text(body);
  return r;
}

http_response status_response(const node_status& s, const status_extra& extra) {
  http_response r;
  json::object o;
  o["id"] = s.id;
  o["role"] = s.role;
  o["term"] = s.term;
  o["leader_id"] = s.leader_id;
  o["commit_index"] = s.commit_index;
  o["applied_index"] = s.applied_index;
  o["last_log_index"] = s.last_log_index;
  o["snapshot_index"] = s.snapshot_index;
  o["leader_changes"] = s.leader_changes;
  o["lease_reads"] = s.lease_reads;
  o["proposals_ok"] = s.proposals_ok;
  o["proposals_failed"] = s.proposals_failed;
  o["storage_error"] = s.storage_error.empty() ? json::value(nullptr) : json::value(s.storage_error);
  o["memory"] = json::object{{"rss_bytes", s.rss_anon_bytes + s.rss_file_bytes + s.rss_shmem_bytes},
                             {"rss_anon_bytes", s.rss_anon_bytes},
                             {"rss_file_bytes", s.rss_file_bytes},
                             {"rss_shmem_bytes", s.rss_shmem_bytes}};
  json::array members;
  for (const auto& m : s.members) {
    json::object mo;
    mo["id"] = m.address.id.value;
    mo["peer"] = m.address.peer;
    mo["http"] = m.address.http;
    mo["memcached"] = m.address.memcached;
    mo["cs733"] = m.address.cs733;
    mo["voter"] = m.voter;
    mo["caught_up"] = m.caught_up;
    mo["match_index"] = m.match_index;
    mo["next_index"] = m.next_index;
    mo["last_contact_ms"] = m.last_contact_ms;
    mo["read_lease_ms"] = m.read_lease_ms;
    if (!m.snapshot_state.empty()) {
      mo["snapshot_transfer"] = json::object{
          {"state", m.snapshot_state},         {"index", m.snapshot_index},
          {"bytes_acked", m.snapshot_bytes_acked}, {"bytes_total", m.snapshot_bytes_total},
          {"resends", m.snapshot_resends},     {"elapsed_ms", m.snapshot_elapsed_ms},
          {"last_error", m.snapshot_error.empty() ? json::value(nullptr)
                                                  : json::value(m.snapshot_error)}};
    }
    members.push_back(std::move(mo));
  }
  o["members"] = std::move(members);
  o["config_index"] = s.config_index;
  o["change_in_progress"] = s.change_in_progress;
  o["snapshot_transfers"] = json::object{{"done", s.snapshot_transfers_done},
                                         {"failed", s.snapshot_transfers_failed},
                                         {"aborted", s.snapshot_transfers_aborted}};
  if (s.receiving_snapshot_index != 0) {
    o["receiving_snapshot"] = json::object{{"index", s.receiving_snapshot_index},
                                           {"bytes", s.receiving_snapshot_bytes},
                                           {"total", s.receiving_snapshot_total}};
  }
  json::object kvo;
  kvo["items"] = extra.items;
  kvo["bytes"] = extra.bytes;
  kvo["limits"] = json::object{{"max_key_bytes", extra.limits.max_key_bytes},
                               {"max_value_bytes", extra.limits.max_value_bytes},
                               {"max_memory_bytes", extra.limits.max_memory_bytes}};
  o["kv"] = std::move(kvo);
  o["uptime_s"] = extra.uptime_s;
  o["version"] = extra.version;
  o["now_ms"] = extra.now_ms;
  r.body = json_text(o);
  // The status page of one member polls the others' /v1/status (cross-origin).
  r.headers.emplace_back("Access-Control-Allow-Origin", "*");
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

namespace {

// One member as GET /v1/members and POST /v1/members show it.
json::object member_object(const member_status& m) {
  json::object o;
  o["id"] = m.address.id.value;
  o["peer"] = m.address.peer;
  o["memcached"] = m.address.memcached;
  o["cs733"] = m.address.cs733;
  o["http"] = m.address.http;
  o["voter"] = m.voter;
  o["match_index"] = m.match_index;
  o["caught_up"] = m.caught_up;
  return o;
}

}  // namespace

http_response members_response(const node_status& s) {
  http_response r;
  json::array members;
  for (const auto& m : s.members) members.push_back(member_object(m));
  json::object o;
  o["members"] = std::move(members);
  o["config_index"] = s.config_index;
  o["change_in_progress"] = s.change_in_progress;
  o["leader_id"] = s.leader_id;
  r.body = json_text(o);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

http_response member_added_response(const node_status& s, const member_address& asked) {
  member_status shown;
  shown.address = asked;
  shown.voter = false;  // an added member is a learner until promoted
  for (const auto& m : s.members)
    if (m.address.id == asked.id) shown = m;
  http_response r;
  r.status = 201;
  r.body = json_text(member_object(shown));
  r.headers.emplace_back("Location", "/v1/members/" + std::to_string(asked.id.value));
  return r;
}

}  // namespace net
