// The HTTP API (docs/http-api.md) as plain functions, independent of Beast and of any socket:
// a request is parsed into a route (or an error answer), routes become kv::commands, and
// results and errors become responses. The session code in http_server.cc only moves bytes
// and calls the kv_service; everything a client can observe is decided here.
#pragma once

#include <boost/json/fwd.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kv/command.h"
#include "kv/store.h"
#include "net/service.h"

namespace net {

// What the router needs of an HTTP/1.1 request.
struct http_request {
  std::string method;  // "GET", "PUT", ...
  std::string target;  // origin-form: "/v1/kv/a%20b?meta=1"
  std::optional<std::string> if_match;
  std::optional<std::string> if_none_match;
  bool has_body = false;  // Content-Length or Transfer-Encoding was sent
  std::string body;
};

struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
  bool close = false;  // close the connection after this response

  // The value of an extra header, or nullopt.
  std::optional<std::string> header(std::string_view name) const;
};

// --- routes -------------------------------------------------------------------------------

struct route_kv_get {
  std::string key;
  bool meta = false;  // ?meta=1: JSON with metadata instead of raw bytes
  // If-None-Match on a GET/HEAD: the versions the client already has ("*" = any); a match
  // answers 304 Not Modified.
  std::vector<std::uint64_t> not_modified_versions;
  bool not_modified_any = false;

  // True when the client's copy is current: answer 304.
  bool not_modified(std::uint64_t version) const;
};

struct route_kv_put {
  enum class precondition : std::uint8_t {
    none,             // plain set
    version_matches,  // If-Match: "<v>"  -> cas
    exists,           // If-Match: *      -> replace
    absent,           // If-None-Match: * -> add
  };
  std::string key;
  std::string value;
  std::int64_t ttl_s = 0;  // relative seconds, 0 = never
  std::uint32_t flags = 0;
  precondition when = precondition::none;
  std::uint64_t version = 0;  // for version_matches
};

struct route_kv_delete {
  std::string key;
  std::uint64_t version = 0;  // If-Match: "<v>"; 0 = unconditional
};

struct route_kv_list {
  std::string prefix;
  std::string after;
  std::size_t limit = 100;
};

struct route_status {};
struct route_page {};
struct route_metrics {};
struct route_healthz {};
struct route_readyz {};
struct route_transfer_leadership {
  raft::node_id to;
};
struct route_snapshot {};

// Membership (SPEC §8). The body of POST /v1/members is validated here, so the service only
// ever sees a positive id and host:port addresses (empty = not given, except peer).
struct route_members_list {
  // ?local=1: this node's own view. Else a follower relays the leader's answer (only the
  // leader knows each member's progress), falling back to its own view.
  bool local = false;
};
struct route_member_add {
  member_address member;
};
struct route_member_promote {
  raft::node_id id;
};
struct route_member_remove {
  raft::node_id id;
};

// Either a route to execute, or the answer itself (a 4xx for a malformed request).
using route =
    std::variant<http_response, route_kv_get, route_kv_put, route_kv_delete, route_kv_list,
                 route_status, route_page, route_metrics, route_healthz, route_readyz,
                 route_transfer_leadership, route_snapshot, route_members_list, route_member_add,
                 route_member_promote, route_member_remove>;

inline constexpr std::size_t max_list_limit = 1000;
inline constexpr std::size_t default_list_limit = 100;
// Member ids are 1..UINT32_MAX, as [node] id and [[cluster.member]] id (docs/config.md).
inline constexpr std::uint64_t max_member_id = 0xFFFFFFFFu;

// Parses method + target + preconditions. Moves the body into a PUT route.
route parse_route(http_request&& request, const limits& lim);

// The command a write route submits (timestamp and request id are the node's business).
kv::command to_command(const route_kv_put& r);
kv::command to_command(const route_kv_delete& r);

// A short stable name for metrics: "GET /v1/kv/{key}", "PUT /v1/kv/{key}", ...
std::string_view metrics_name(const route& r, std::string_view method);

// --- errors -------------------------------------------------------------------------------

struct http_error {
  unsigned status = 500;
  std::string_view code;     // "not_found", "no_leader", ...
  std::string_view message;  // human text
  bool retry_after = false;  // send Retry-After (the client should retry soon)
};

// The single mapping from service and store outcomes to HTTP statuses.
http_error map_error(service_error e);
// Only for failing statuses (not stored/deleted/touched/...).
http_error map_error(kv::status s);
// Why the leader refused a membership change: 409 for a change that conflicts with the
// configuration, 404 for an unknown id, 503 + Retry-After for "not now" (not caught up, a
// leader not ready), 400 for malformed. The message is to_string(r).
http_error map_error(member_refusal r);
// The error answer of a failed membership change: the service error if there is one, else
// the refusal, with the leader's message when it gave one.
http_response member_change_error(const member_change_reply& reply);

// {"error": code, "message": text} with the status (and Retry-After when asked for).
http_response error_response(unsigned status, std::string_view code, std::string_view message);
http_response error_response(const http_error& e);

// --- the admin token ([http] admin_token_file) ----------------------------------------------

// True for a request that changes how the cluster is run: any method but GET and HEAD on
// /v1/admin/... or /v1/members[/...] (the raw path, as parse_route matches it). When an
// admin token is configured such a request needs it, checked before the request is routed.
bool needs_admin_token(std::string_view method, std::string_view target);
// Whether an Authorization header value is `Bearer <token>`; the token is compared in
// constant time. An empty token never matches.
bool bearer_token_matches(std::string_view authorization, std::string_view token);
// 401 {"error": "unauthorized", ...} with `WWW-Authenticate: Bearer`. The message says
// whether a token was sent, never anything about the expected one.
http_response unauthorized_response(bool token_sent);

// --- successful answers ---------------------------------------------------------------------

// GET /v1/kv/{key}: raw bytes, or JSON with ?meta=1.
http_response item_response(std::string_view key, const kv::item_view& item, bool meta);
// PUT: {"version": N} + ETag.
http_response stored_response(std::uint64_t version);
// 304 for a conditional GET whose If-None-Match matches the item's version.
http_response not_modified_response(std::uint64_t version);
// DELETE: {"deleted": true}.
http_response deleted_response();
// GET /v1/kv: keys holds at most limit+1 entries; the extra one means there is a next page.
http_response list_response(std::vector<kv::key_info> keys, std::size_t limit);

struct status_extra {
  std::uint64_t items = 0;
  std::uint64_t bytes = 0;
  kv::store_options limits;  // the limits in force (replicated: kv/store.h, "Limits")
  std::int64_t uptime_s = 0;
  std::string_view version;
  std::int64_t now_ms = 0;
};
// GET /v1/status body (also carries Access-Control-Allow-Origin: *).
http_response status_response(const node_status& s, const status_extra& extra);

// GET /v1/members, and the answer to a promote or remove: the configuration in s
// {"members":[...],"config_index","change_in_progress","leader_id"}.
http_response members_response(const node_status& s);
// POST /v1/members: 201 with the member as s lists it (or as it was asked for, as a learner,
// when s does not list it yet) and Location: /v1/members/{id}.
http_response member_added_response(const node_status& s, const member_address& asked);

// --- helpers (exposed for tests) ------------------------------------------------------------

// A JSON body: the serialised value and a newline, so that `curl` output ends its line.
std::string json_text(const boost::json::value& v);

// %XX decoding; '+' means space only when plus_is_space (query strings). nullopt on a bad
// escape.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);
bool valid_utf8(std::string_view s);
std::string base64_encode(std::string_view bytes);
// Unix seconds from Unix ms, rounded up; 0 stays 0 (never).
std::int64_t expires_unix_s(std::int64_t expires_at_ms);

}  // namespace net
