// The HTTP door's requests, one at a time: what each route asks of the kv_service and how its
// outcome becomes an answer (net/http/api.h builds the bodies). The connection loop that calls
// execute() is in server.cc.
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <optional>

#include "kv/store.h"
#include "net/http/server_state.h"
#include "net/http/status_page.h"
#include "net/listener.h"
#include "net/metrics.h"
#include "net/service.h"

namespace net {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

bool committed(const member_change_reply& reply) {
  return reply.error == service_error::none && reply.refusal == member_refusal::none;
}

// A change is answered once the leader committed it; a follower that forwarded it may not
// have the configuration entry in its log yet, and its answer would then show the old
// configuration. The ReadIndex barrier brings it up to the leader's commit index, which
// covers the entry. Best effort: if the barrier fails, the answer is this node's view.
asio::awaitable<void> catch_up_with(kv_service& svc, const member_change_reply& reply) {
  if (svc.status().config_index >= reply.config_index) co_return;
  (void)co_await svc.linearizable_read();
}

}  // namespace

asio::awaitable<http_response> execute(http_server::state& st, route& r) {
  kv_service& svc = st.service;
  if (auto* resp = std::get_if<http_response>(&r)) co_return std::move(*resp);

  if (auto* get = std::get_if<route_kv_get>(&r)) {
    const read_view view = co_await svc.linearizable_read();
    if (!view.ok()) co_return error_response(map_error(view.error()));
    auto& reads = svc.metrics().reads();
    ++reads.cmd_get;
    const auto item = view.find(get->key);
    if (!item) {
      ++reads.get_misses;
      co_return error_response(map_error(kv::status::not_found));
    }
    ++reads.get_hits;
    if (get->not_modified(item->version)) co_return not_modified_response(item->version);
    co_return item_response(get->key, *item, get->meta);
  }

  if (auto* put = std::get_if<route_kv_put>(&r)) {
    const write_reply reply = co_await svc.write(to_command(*put));
    if (reply.error != service_error::none) co_return error_response(map_error(reply.error));
    if (reply.result.code == kv::status::stored) co_return stored_response(reply.result.version);
    co_return error_response(map_error(reply.result.code));
  }

  if (auto* del = std::get_if<route_kv_delete>(&r)) {
    const write_reply reply = co_await svc.write(to_command(*del));
    if (reply.error != service_error::none) co_return error_response(map_error(reply.error));
    if (reply.result.code == kv::status::deleted) co_return deleted_response();
    co_return error_response(map_error(reply.result.code));
  }

  if (auto* list = std::get_if<route_kv_list>(&r)) {
    const read_view view = co_await svc.linearizable_read();
    if (!view.ok()) co_return error_response(map_error(view.error()));
    // One more than asked for tells whether there is a next page.
    co_return list_response(view.list(list->prefix, list->after, list->limit + 1), list->limit);
  }

  if (std::holds_alternative<route_status>(r)) {
    const auto& stats = svc.store_stats();
    status_extra extra;
    extra.items = stats.curr_items;
    extra.bytes = stats.bytes;
    extra.limits = svc.store_options();
    extra.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::steady_clock::now() - st.started)
                         .count();
    extra.version = st.options.version;
    extra.now_ms = svc.wall_ms();
    co_return status_response(svc.status(), extra);
  }

  if (std::holds_alternative<route_page>(r)) {
    http_response resp;
    resp.content_type = "text/html; charset=utf-8";
    resp.body = std::string(status_page_html());
    resp.headers.emplace_back("Cache-Control", "no-store");
    co_return resp;
  }

  if (std::holds_alternative<route_metrics>(r)) {
    http_response resp;
    resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp.body = svc.metrics().render_prometheus(svc.status(), svc.store_stats());
    co_return resp;
  }

  if (std::holds_alternative<route_healthz>(r)) {
    http_response resp;
    resp.body = "{\"status\":\"ok\"}\n";
    co_return resp;
  }

  if (std::holds_alternative<route_readyz>(r)) {
    // Ready = knows a leader, has applied everything it knows committed, storage healthy.
    const node_status s = svc.status();
    if (s.leader_id == 0) {
      auto resp = error_response(503, "not_ready", "no leader known");
      resp.headers.emplace_back("Retry-After", "1");
      co_return resp;
    }
    if (s.applied_index < s.commit_index) {
      auto resp = error_response(503, "not_ready", "applying committed entries");
      resp.headers.emplace_back("Retry-After", "1");
      co_return resp;
    }
    if (!s.storage_error.empty()) {
      auto resp = error_response(503, "not_ready", "storage error: " + s.storage_error);
      co_return resp;
    }
    json::object o;
    o["status"] = "ready";
    o["leader_id"] = s.leader_id;
    o["applied_index"] = s.applied_index;
    http_response resp;
    resp.body = json_text(o);
    co_return resp;
  }

  if (auto* transfer = std::get_if<route_transfer_leadership>(&r)) {
    const node_status s = svc.status();
    bool known = false;
    for (const auto& m : s.members) known = known || m.address.id == transfer->to;
    if (!known) co_return error_response(400, "bad_request", "to is not a member of the cluster");
    const service_error e = co_await svc.transfer_leadership(transfer->to);
    if (e != service_error::none) co_return error_response(map_error(e));
    json::object o;
    o["ok"] = true;
    o["to"] = transfer->to.value;
    const auto leader = svc.leader();
    o["leader_id"] = leader ? leader->id.value : 0;
    http_response resp;
    resp.body = json_text(o);
    co_return resp;
  }

  if (std::holds_alternative<route_snapshot>(r)) {
    const service_error e = co_await svc.take_snapshot();
    if (e != service_error::none) co_return error_response(map_error(e));
    json::object o;
    o["ok"] = true;
    o["snapshot_index"] = svc.status().snapshot_index;
    http_response resp;
    resp.body = json_text(o);
    co_return resp;
  }

  if (auto* list = std::get_if<route_members_list>(&r)) {
    // Only the leader knows each member's progress: a follower relays its view (over the
    // peer link), or shows its own when it cannot, and always with ?local=1.
    if (!list->local) {
      if (auto view = co_await svc.leader_members_view()) co_return members_response(*view);
    }
    co_return members_response(svc.status());
  }

  if (auto* add = std::get_if<route_member_add>(&r)) {
    // A named argument, never a temporary in the co_await expression: g++ 12 destroys such a
    // temporary twice when it is a by-value coroutine parameter (a double free).
    member_change c{member_change_kind::add, add->member};
    const member_change_reply reply = co_await svc.change_membership(std::move(c));
    if (!committed(reply)) co_return member_change_error(reply);
    co_await catch_up_with(svc, reply);
    co_return member_added_response(svc.status(), add->member);
  }

  const auto* promote = std::get_if<route_member_promote>(&r);
  const auto* remove = std::get_if<route_member_remove>(&r);
  if (promote || remove) {
    member_change c{promote ? member_change_kind::promote : member_change_kind::remove, {}};
    c.member.id = promote ? promote->id : remove->id;
    const member_change_reply reply = co_await svc.change_membership(std::move(c));
    if (!committed(reply)) co_return member_change_error(reply);
    co_await catch_up_with(svc, reply);
    co_return members_response(svc.status());
  }

  static_assert(std::variant_size_v<route> == 16, "execute() must handle every route");
  co_return error_response(500, "internal", "unhandled route");
}

}  // namespace net
