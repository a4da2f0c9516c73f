// app::node's wiring (see app/node.h). One file because every function here is a member
// of the one object that holds the io_context side of a node; its status building is
// already apart (node_status.cc), as are the state machine, the log store adapter, the
// cluster id, the data dir's generation files and the bootstrap member list with the member
// conversions (bootstrap_members.cc).
#include "app/node.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <random>
#include <utility>

#include "app/bootstrap_members.h"
#include "app/cluster_id.h"
#include "app/generation.h"
#include "app/kv_state_machine.h"
#include "app/lmdb_log_store.h"
#include "base/log.h"
#include "base/memory.h"
#include "net/peer/transport.h"
#include "raft/codec.h"
#include "raft/storage/lmdb_store.h"

namespace app {

namespace asio = boost::asio;
using base::log_level;
using net::service_error;

namespace {

constexpr auto wait_token = asio::as_tuple(asio::use_awaitable);

// Waits on a timer that is either cancelled (the answer arrived) or expires (deadline).
// Callers look at the state the timer guards, never at the error code: an answer can arrive
// after the timer fired but before this coroutine resumed.
asio::awaitable<void> wait_on(asio::steady_timer& timer) {
  co_await timer.async_wait(wait_token);
}

std::int64_t unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t monotonic_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

service_error to_service(raft::replica_error e) {
  switch (e) {
    case raft::replica_error::none:
      return service_error::none;
    case raft::replica_error::not_leader:
      return service_error::not_leader;
    case raft::replica_error::no_leader:
      return service_error::no_leader;
    case raft::replica_error::timeout:
      return service_error::timeout;
    case raft::replica_error::stopped:
      return service_error::stopped;
    case raft::replica_error::unavailable:
    case raft::replica_error::rejected:
      return service_error::unavailable;
  }
  return service_error::unavailable;
}

raft::replica_error to_replica(service_error e) {
  switch (e) {
    case service_error::none:
      return raft::replica_error::none;
    case service_error::not_leader:
      return raft::replica_error::not_leader;
    case service_error::no_leader:
      return raft::replica_error::no_leader;
    case service_error::timeout:
      return raft::replica_error::timeout;
    case service_error::stopped:
      return raft::replica_error::stopped;
    case service_error::unavailable:
    case service_error::busy:  // never on the wire (decided where a write enters)
      return raft::replica_error::unavailable;
  }
  return raft::replica_error::unavailable;
}

net::member_refusal to_refusal(raft::change_error e) {
  using ce = raft::change_error;
  using mr = net::member_refusal;
  switch (e) {
    case ce::none:
    case ce::not_leader:
      return mr::none;
    case ce::transfer_in_progress:
    case ce::leader_not_ready:
      return mr::not_ready;
    case ce::change_in_progress:
      return mr::change_in_progress;
    case ce::member_exists:
      return mr::member_exists;
    case ce::address_in_use:
      return mr::address_in_use;
    case ce::unknown_member:
      return mr::unknown_member;
    case ce::not_learner:
      return mr::not_learner;
    case ce::last_voter:
      return mr::last_voter;
    case ce::not_caught_up:
      return mr::not_caught_up;
    case ce::malformed:
      return mr::malformed;
  }
  return mr::malformed;
}

const kv::result bad_command{kv::status::bad_command, 0, 0, std::nullopt};

// What a write's caller gets from the replica's answer.
net::write_reply to_write_reply(raft::replica_error e, const std::string& result) {
  if (e == raft::replica_error::rejected) return net::write_reply{service_error::none, bad_command};
  if (e != raft::replica_error::none) return net::write_reply{to_service(e), {}};
  if (auto r = kv::decode_result(result)) return net::write_reply{service_error::none, *r};
  // The leader applied it; we cannot tell how.
  return net::write_reply{service_error::timeout, {}};
}

}  // namespace

// One leader_members_view() call waiting for the leader's answer.
struct node::members_call {
  explicit members_call(asio::io_context& io) : timer(io) {}
  raft::node_id asked;  // the leader it was sent to: only its answer counts
  std::optional<net::forward_response> answer;
  asio::steady_timer timer;  // cancelled by the answer or by stop()
};

// The replica's peer_sender over the peer transport: Raft messages and the forwarding
// protocol (net/peer/frame.h).
class node::peer_link final : public raft::peer_sender {
 public:
  explicit peer_link(node& n) : n_(n) {}

  void send(const raft::message& m) override {
    if (n_.transport_) n_.transport_->send(m.to, net::frame_kind::raft_message, raft::encode(m));
  }
  bool forward(raft::node_id to, const raft::forward_request& r) override {
    if (!n_.transport_) return false;
    net::forward_request req;
    req.call_id = r.call_id;
    req.op = r.config_change ? net::forward_op::config_change : net::forward_op::write;
    req.body = r.command;
    return n_.transport_->send(to, net::frame_kind::forward_request, net::encode(req));
  }
  void reply(raft::node_id to, const raft::forward_reply& r) override {
    if (!n_.transport_) return;
    net::forward_response resp;
    resp.call_id = r.call_id;
    if (r.error == raft::replica_error::rejected) {
      // The command did not decode: the client gets the store's answer to a bad command.
      resp.error = service_error::none;
      resp.body = kv::encode(bad_command);
    } else {
      resp.error = to_service(r.error);
      resp.body = r.result;
    }
    n_.transport_->send(to, net::frame_kind::forward_response, net::encode(resp));
  }

 private:
  node& n_;
};

node::node(asio::io_context& io, const config& c)
    : io_(io),
      config_(c),
      limits_(c.door_limits()),
      members_(c.member_addresses()),
      self_(c.node_id),
      store_(kv::store_options{c.limits.max_key_bytes, c.limits.max_value_bytes,
                               c.limits.max_memory_mb << 20}),
      tick_timer_(io) {
  // A fresh client id per boot: requests of an earlier life of this node never collide
  // with this one's in the store's at-most-once table.
  std::random_device entropy;
  client_id_ = (std::uint64_t{entropy()} << 32 | entropy()) | 1;
}

node::~node() {
  stop();
}

std::variant<std::unique_ptr<node>, std::string> node::open(asio::io_context& io, const config& c) {
  std::unique_ptr<node> n(new node(io, c));

  raft::storage::options opts = storage_options(c);
  node* self = n.get();
  opts.on_commit = [self, &io](std::chrono::nanoseconds took, std::size_t, std::size_t) {
    asio::post(io, [self, took] { self->metrics_.observe_fsync(took); });
  };
  auto opened = raft::storage::lmdb_store::open(std::move(opts));
  if (!opened.store) return opened.err.message;
  n->storage_ = std::move(opened.store);

  // The cluster id every peer frame carries: derived from the bootstrap member list and
  // [cluster] token at the first start, then read from data_dir/cluster_id, so a rebuilt
  // cluster at the same addresses (new token) refuses this node and vice versa.
  // A joining node cannot derive it (the bootstrap list is not its business): it adopts the
  // id of the first member that contacts it (net/peer/transport.h) and records it then.
  if (!c.join || cluster_id::exists(c.data_dir)) {
    auto cid = cluster_id::load_or_create(c.data_dir, cluster_id::derive(c));
    if (auto* err = std::get_if<std::string>(&cid)) return *err;
    n->cluster_id_ = std::get<cluster_id::loaded>(cid).id;
  }

  // A node refused for a lost data dir stays refused: a supervisor restarting it must not
  // bring it back as a node whose data dir merely no longer looks new (app/generation.h).
  if (auto mark = generation::refused_mark(c.data_dir)) {
    return "data dir " + c.data_dir.string() + " is marked refused (file " +
           generation::refused_file_name + "): " + *mark;
  }

  // Recovery (the store built from the mapped snapshot file, the log replayed) asks for its
  // memory on 2 MiB pages: app/huge_page_heap.h.
  std::optional<base::huge_page_window> recovery_pages{std::in_place};
  auto loaded = n->storage_->load();
  if (!loaded.ok()) return "cannot load " + c.data_dir.string() + ": " + loaded.err.message;
  auto& state = loaded.value;

  // The data dir's generation, written before the node sends any vote or acknowledgement
  // (the transport starts later, in start()), and the generations it recorded for others.
  const bool has_raft_state = state.snapshot.has_value() || !state.entries.empty() ||
                              state.last_index.value != 0 || state.hard.term.value != 0 ||
                              state.hard.vote != raft::no_node;
  auto gen = generation::load_or_create(c.data_dir, has_raft_state);
  if (auto* err = std::get_if<std::string>(&gen)) return *err;
  n->generation_ = std::get<generation::loaded>(gen);
  auto known = generation::load_peers(c.data_dir);
  if (auto* err = std::get_if<std::string>(&known)) return *err;
  n->peer_generations_ = std::get<generation::peer_record>(std::move(known));

  // Recovery: the store from the latest snapshot; the replica then applies every committed
  // entry after it through the same apply path as at run time.
  const auto recovery_started = clock::now();
  raft::index_t snapshot_index;
  if (state.snapshot) {
    if (!n->store_.restore(state.snapshot_data.view())) {
      return "snapshot " + state.snapshot->path.string() + " does not restore (corrupt?)";
    }
    snapshot_index = state.snapshot->meta.index;
  }

  // The configuration to fall back on while the snapshot and log hold none (SPEC §8): the
  // list this data dir was bootstrapped with, recorded at its first start.
  const raft::membership from_config = bootstrap_members::from_config(c);
  auto boot = bootstrap_members::load_or_create(c.data_dir, from_config);
  if (auto* err = std::get_if<std::string>(&boot)) return *err;
  const auto& bootstrap = std::get<bootstrap_members::loaded>(boot);
  if (!bootstrap.created && !c.join && bootstrap.members != from_config) {
    base::log(log_level::info, "the [[cluster.member]] list differs from the one this data dir ",
              "was bootstrapped with; the replicated configuration is used (SPEC §8)");
  }

  raft::replica_options ro;
  ro.raft.id = n->self_;
  ro.raft.bootstrap = bootstrap.members;
  ro.raft.election_ticks = c.raft.election_ticks;
  ro.raft.heartbeat_ticks = c.raft.heartbeat_ticks;
  ro.raft.release_applied_payloads = true;  // storage holds them (lmdb_log_store::read_entries)
  std::random_device entropy;
  ro.raft.seed = (std::uint64_t{entropy()} << 32) | entropy();
  ro.tick_ms = c.raft.tick_ms;
  ro.lease_reads = c.raft.lease_reads;
  ro.snapshot_entries = c.raft.snapshot_entries;
  // Snapshot when the log since the last one outweighs half the state, and 64 MiB at least
  // (kv/README.md, "Snapshots": each fork costs the event loop page-table copies and the
  // copy-on-write faults of the pages it writes meanwhile, whatever the state's size).
  ro.snapshot_min_log_bytes = 64ull << 20;
  ro.snapshot_log_ratio = 0.5;
  // Members 1, 2, 3, 4, 5 snapshot at 1.0, 1.1, 1.2, 1.3, 1.4 times the thresholds (ids 6-10
  // repeat them): their forks no longer all fall on the same index.
  ro.snapshot_stagger = 0.1 * static_cast<double>((n->self_.value - 1) % 5);
  ro.serve_timeout_ms = n->limits_.request_timeout.count();
  ro.post = [&io](std::function<void()> fn) { asio::post(io, std::move(fn)); };
  ro.now_ms = unix_ms;
  ro.monotonic_ms = monotonic_ms;
  ro.log = [](log_level level, const std::string& text) { base::log(level, text); };
  ro.on_leader_change = [self] { self->wake_leader_waiters(); };
  ro.on_config_change = [self](const raft::membership& m) { self->on_config_change(m); };
  // Snapshots stream in chunks below the transport's fragment size (1 MiB), so each is one
  // frame and a heartbeat waits behind at most the window (2 MiB) on the peer's connection.
  ro.snapshot_chunk_bytes = std::size_t{512} << 10;
  ro.snapshot_window = 4;

  raft::restore_state rs;
  rs.hs = state.hard;
  if (state.snapshot) {
    rs.snapshot = state.snapshot->meta;  // the bytes are in the store already (above)
  }
  rs.entries = std::move(state.entries);
  n->log_store_ = std::make_unique<lmdb_log_store>(*n->storage_, snapshot_index);
  n->peers_ = std::make_unique<peer_link>(*n);
  n->state_machine_ =
      std::make_unique<kv_state_machine>(n->store_, /*fork_snapshots=*/true, ro.post);
  n->replica_ = std::make_unique<raft::replica>(std::move(ro), std::move(rs), *n->log_store_,
                                                *n->peers_, *n->state_machine_);
  const std::uint64_t replayed = n->replica_->recover();
  recovery_pages.reset();
  n->on_config_change(n->replica_->core().configuration());
  const auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           clock::now() - recovery_started + state.took)
                           .count();
  base::log(log_level::info, "recovered in ", took_ms, " ms: term ", state.hard.term.value,
            ", snapshot at ", snapshot_index.value, ", replayed ", replayed, " entries, applied ",
            n->store_.applied_index(), ", log up to ", state.last_index.value);
  return n;
}

void node::start(std::optional<asio::ip::tcp::acceptor> peer_acceptor,
                 std::optional<net::peer_tls> peer_tls) {
  if (peer_acceptor) {
    // The members of the configuration in use; a joining node that has none yet accepts
    // the members its config file names (one of them is the leader that will contact it).
    std::map<raft::node_id, std::string> peers;
    for (const auto& m : members_) peers[m.id] = m.peer;
    for (const auto& [id, left] : leaving_) peers.emplace(id, left.first);
    auto logger = [](net::peer_transport::log_level level, std::string text) {
      using pl = net::peer_transport::log_level;
      const auto l = level == pl::debug  ? log_level::debug
                     : level == pl::info ? log_level::info
                     : level == pl::warn ? log_level::warn
                                         : log_level::error;
      base::log(l, text);
    };
    net::peer_transport_options transport_options;
    transport_options.tls = std::move(peer_tls);
    net::peer_transport_options::generation_guard guard;
    guard.own = generation_.value;
    for (const auto& [id, g] : peer_generations_) guard.known[raft::node_id(id)] = g;
    // One small synchronous write (with its fsyncs) on the io_context per newly heard
    // member, once per life of the cluster: simpler than a thread, and the transport
    // delivers nothing of that member until it is durable (net/peer/transport.h).
    guard.record = [this](raft::node_id id, std::uint64_t g) {
      auto next = peer_generations_;
      next[id.value] = g;
      auto err = generation::save_peers(config_.data_dir, next);
      if (err.empty()) peer_generations_ = std::move(next);
      return err;
    };
    transport_options.generations = std::move(guard);
    transport_options.read_lease_ms = replica_->read_lease_ms();
    transport_options.on_read_lease = [this](raft::node_id id, std::int64_t lease_ms) {
      replica_->set_peer_read_lease(id, lease_ms);
      const std::int64_t own = replica_->read_lease_ms();
      if (own > 0 && lease_ms < own) {
        base::log(log_level::warn, "node ", id.value, " announces a read lease of ", lease_ms,
                  " ms, shorter than this node's ", own,
                  " ms ([raft] tick_ms, election_ticks or lease_reads differ): as leader, "
                  "this node counts on the other members alone for its lease, and reads "
                  "take a heartbeat round when they are not a quorum. Give every member the "
                  "same three settings");
      }
    };
    if (cluster_id_ == 0) {
      transport_options.adopt_cluster_id = [this](std::uint64_t id) -> std::string {
        auto cid = cluster_id::load_or_create(config_.data_dir, id);
        if (auto* err = std::get_if<std::string>(&cid)) return *err;
        cluster_id_ = std::get<cluster_id::loaded>(cid).id;
        base::log(log_level::info, "joined cluster ", cluster_id::format(cluster_id_));
        return {};
      };
    }
    transport_ = std::make_unique<net::peer_transport>(
        io_.get_executor(), self_, cluster_id_, peers, std::move(*peer_acceptor),
        [this](raft::node_id from, net::frame_kind kind, std::string payload) {
          on_frame(from, kind, std::move(payload));
        },
        logger, std::move(transport_options));
    transport_->start();
  }
  // A cluster whose only voter is this node elects itself at once.
  const auto voters = replica_->core().configuration().voters();
  if (voters.size() == 1 && voters[0] == self_) replica_->campaign();
  tick_timer_.expires_after(std::chrono::milliseconds(config_.raft.tick_ms));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) on_tick();
  });
  replica_->poke();
}

void node::stop() {
  if (stopped_) return;
  stopped_ = true;
  tick_timer_.cancel();
  if (replica_) replica_->stop();  // every waiting call completes with `stopped`
  wake_leader_waiters();
  for (auto& [id, call] : members_calls_) call->timer.cancel();
  if (transport_) transport_->stop();
  if (state_machine_) state_machine_->wait_for_snapshot();  // its child writes to storage_
  if (log_store_) log_store_->close();
  if (storage_) storage_->close();
}

void node::hand_over_then(std::chrono::milliseconds limit, std::function<void()> then) {
  if (stopped_ || members_.size() < 2) return then();
  const raft::node_id to = replica_->hand_over();
  if (to == raft::no_node) return then();
  base::log(log_level::info, "handing leadership to node ", to.value, " before stopping");
  const auto started = clock::now();
  auto timer = std::make_shared<asio::steady_timer>(io_);
  // Polled every tick: the hand-over takes an election timeout at most.
  auto poll = std::make_shared<std::function<void()>>();
  *poll = [this, timer, started, limit, then = std::move(then), poll]() mutable {
    const bool handed = stopped_ || !replica_->is_leader();
    if (handed || clock::now() - started >= limit) {
      if (!handed) base::log(log_level::warn, "no other node took over; stopping as leader");
      auto done = std::move(then);
      *poll = nullptr;  // breaks the cycle through the captured pointer
      done();
      return;
    }
    timer->expires_after(std::chrono::milliseconds(config_.raft.tick_ms));
    timer->async_wait([poll](boost::system::error_code) {
      if (*poll) (*poll)();
    });
  };
  (*poll)();
}

void node::snapshot_then(std::uint64_t min_entries, std::chrono::milliseconds limit,
                         std::function<void()> then) {
  if (stopped_) return then();
  const auto st = replica_->status();
  const std::uint64_t since = st.applied.value - std::min(st.applied, st.snapshot_index).value;
  if (since < min_entries || !replica_->storage_error().empty()) return then();
  base::log(log_level::info, "taking a snapshot before stopping (", since,
            " entries since the last one)");
  auto timer = std::make_shared<asio::steady_timer>(io_);
  auto done = std::make_shared<std::function<void()>>(std::move(then));
  // Whichever comes first, the snapshot or the limit, runs `then`; the other finds it gone.
  auto finish = [done] {
    if (!*done) return;
    auto f = std::move(*done);
    *done = nullptr;
    f();
  };
  replica_->take_snapshot([timer, finish](raft::replica_error e) {
    if (e != raft::replica_error::none) {
      base::log(log_level::warn, "no snapshot before stopping: ", raft::to_string(e));
    }
    timer->cancel();
    finish();
  });
  timer->expires_after(limit);
  timer->async_wait([finish](boost::system::error_code ec) {
    if (ec) return;  // cancelled: the snapshot finished first
    base::log(log_level::warn, "the snapshot before stopping did not finish in time");
    finish();
  });
}

void node::on_config_change(const raft::membership& m) {
  std::vector<net::member_address> next;
  if (m.empty()) {
    // Joining, nothing heard yet: the config file's list.
    next = config_.member_addresses();
  } else {
    for (const auto& x : m.members) next.push_back(bootstrap_members::to_address(x));
  }
  // Removed members stay reachable for a while (see leaving_).
  const auto linger =
      std::chrono::milliseconds(4ull * config_.raft.election_ticks * config_.raft.tick_ms);
  for (const auto& old : members_) {
    const bool kept = std::any_of(next.begin(), next.end(),
                                  [&](const net::member_address& a) { return a.id == old.id; });
    if (!kept && old.id != self_) leaving_[old.id] = {old.peer, clock::now() + linger};
  }
  for (const auto& a : next) leaving_.erase(a.id);
  members_ = std::move(next);
  update_transport_members();
}

void node::update_transport_members() {
  if (!transport_) return;
  std::map<raft::node_id, std::string> peers;
  for (const auto& m : members_) peers[m.id] = m.peer;
  for (const auto& [id, left] : leaving_) peers.emplace(id, left.first);
  transport_->set_members(std::move(peers));
}

void node::on_tick() {
  if (stopped_) return;
  if (!leaving_.empty()) {
    const auto now = clock::now();
    const auto before = leaving_.size();
    std::erase_if(leaving_, [&](const auto& kv) { return kv.second.second <= now; });
    if (leaving_.size() != before) update_transport_members();
  }
  replica_->tick();
  maybe_propose_limits();
  maybe_purge_expired();
  // Steady ticks without drift; after a stall (a paused process, a long GC-like hiccup) do
  // not replay the missed ticks in a burst: Raft only needs time to move on, not to catch up.
  const auto tick = std::chrono::milliseconds(config_.raft.tick_ms);
  tick_timer_.expires_at(std::max(tick_timer_.expiry() + tick, clock::now()));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) on_tick();
  });
}

void node::on_frame(raft::node_id from, net::frame_kind kind, std::string payload) {
  if (stopped_) return;
  switch (kind) {
    case net::frame_kind::raft_message: {
      auto m = raft::decode(payload);
      if (!m || m->from != from) {
        base::log(log_level::warn, "dropped an undecodable raft message from node ", from.value);
        return;
      }
      replica_->step(*m);
      return;
    }
    case net::frame_kind::forward_request: {
      auto req = net::decode_forward_request(payload);
      if (!req) {
        base::log(log_level::warn, "dropped an undecodable forward request from node ", from.value);
        return;
      }
      if (req->op == net::forward_op::members_view) {
        answer_members_view(from, req->call_id);
        return;
      }
      if (req->op != net::forward_op::write && req->op != net::forward_op::config_change) {
        net::forward_response resp;
        resp.call_id = req->call_id;
        resp.error = service_error::unavailable;
        if (transport_) {
          transport_->send(from, net::frame_kind::forward_response, net::encode(resp));
        }
        return;
      }
      replica_->on_forward_request(
          from, raft::forward_request{req->call_id, std::move(req->body),
                                      req->op == net::forward_op::config_change});
      return;
    }
    case net::frame_kind::forward_response: {
      auto resp = net::decode_forward_response(payload);
      if (!resp) return;
      if (auto call = members_calls_.find(resp->call_id); call != members_calls_.end()) {
        if (call->second->asked == from) {
          call->second->answer = std::move(*resp);
          call->second->timer.cancel();
        }
        return;
      }
      replica_->on_forward_reply(
          from, raft::forward_reply{resp->call_id, to_replica(resp->error), std::move(resp->body)});
      return;
    }
    case net::frame_kind::refused:
      on_refused(from, payload);
      return;
    case net::frame_kind::hello:
      return;
  }
}

void node::on_refused(raft::node_id from, std::string_view payload) {
  const auto r = net::decode_refusal(payload);
  if (!r) {
    base::log(log_level::warn, "dropped an undecodable refusal from node ", from.value);
    return;
  }
  const std::string recorded = generation::format(r->recorded_generation).substr(0, 16);
  const std::string mine = generation::format(generation_.value).substr(0, 16);
  if (!generation_.fresh) {
    // This data dir was not made empty in this life, so this node is not the amnesiac; a
    // member recorded another data dir under this id (a copy, or a data dir swapped in).
    // Keep running (the members refuse it anyway) and say so, at most every 10 s.
    const auto now = clock::now();
    if (now - last_refusal_log_ < std::chrono::seconds(10)) return;
    last_refusal_log_ = now;
    base::log(log_level::error, "node ", from.value, " refuses this node (id ", self_.value,
              "): it recorded data-dir generation ", recorded, " for it, but this data dir (",
              config_.data_dir.string(), ") has generation ", mine,
              " and was not created empty by this process. Another data dir was used under id ",
              self_.value, "; find out which is the right one");
    return;
  }
  if (refused_) return;
  refused_ = true;
  const std::string id = std::to_string(self_.value);
  std::string why = "node " + id;
  why += ": the cluster already knows this node with another data dir (generation " + recorded;
  why += "; this data dir, created empty at this start, has " + mine;
  why += "; refused by node " + std::to_string(from.value) + ")";
  why += "; this node's Raft state was lost and it must not vote again under id " + id;
  why += ". Restore its data dir only from a copy taken after its last run (an older copy has";
  why += " forgotten the same votes and entries), or remove it from the cluster and add it back";
  why += " under a new id (membership changes: see the README's known gaps)";
  base::log(log_level::error, why);
  if (auto err = generation::mark_refused(config_.data_dir, why); !err.empty()) {
    base::log(log_level::error, "cannot mark the data dir refused: ", err);
  }
  // Posted: the transport is delivering this frame; it is stopped from a clean stack.
  asio::post(io_, [this, why] {
    if (on_fatal_) on_fatal_(why);
  });
}

// ---------------------------------------------------------------------------------------
// net::kv_service

namespace {

// One call on the replica, seen from a coroutine: the callback stores the answer and cancels
// the timer the coroutine waits on.
template <typename T>
struct waiter {
  explicit waiter(asio::io_context& io) : timer(io) {}
  std::optional<T> answer;
  asio::steady_timer timer;
};

}  // namespace

void node::start_write(kv::command cmd, write_done done) {
  if (stopped_) return done(net::write_reply{service_error::stopped, {}});
  // What the write holds while in flight: its key and value, and about as much again in
  // fixed fields and bookkeeping (the log entry, the replica's call, the door's request).
  const std::size_t bytes = cmd.key.size() + cmd.value.size() + 128;
  // Overload: the writes this node has in flight are bounded, so that clients that submit
  // faster than the cluster commits get "busy" at once instead of an ever longer queue
  // (memory, and latency for everyone). One write is always admitted, however large, so a
  // value up to max_value_bytes can be written even with a small byte bound. Forwarded
  // writes that reach a leader from its followers were bounded at the follower's door.
  if (write_load_.count > 0 && (write_load_.count >= limits_.max_writes_in_flight ||
                                write_load_.bytes + bytes > limits_.max_write_bytes_in_flight)) {
    return done(net::write_reply{service_error::busy, {}});
  }
  ++write_load_.count;
  write_load_.bytes += bytes;
  if (cmd.id.client == 0) cmd.id = kv::request_id{client_id_, next_seq_++};
  // The deadline is the replica's: at it, the call is answered with a timeout (or no_leader),
  // which to_write_reply maps like any other error. The replica answers every call exactly
  // once (stop() answers the ones left), so the load is always given back.
  replica_->propose(
      kv::encode(cmd), monotonic_ms() + limits_.request_timeout.count(),
      [this, bytes, done = std::move(done)](raft::replica_error e, std::string result) {
        --write_load_.count;
        write_load_.bytes -= bytes;
        done(to_write_reply(e, result));
      });
}

void node::start_read_barrier(std::function<void(read_point)> done) {
  if (stopped_) return done(read_point{service_error::stopped, 0});
  // The deadline is the replica's: at it, the read is answered with a timeout (or no_leader).
  // The replica answers every call exactly once (stop() answers the ones left).
  replica_->read(monotonic_ms() + limits_.request_timeout.count(),
                 raft::replica::read_callback(
                     [this, done = std::move(done)](raft::replica_error e, std::int64_t leader_ms) {
                       // Expiry is judged by the leader's clock, never before the last stamp
                       // applied here: this node's own clock may be hours off
                       // (docs/semantics.md, "Time and expiry"). A leader serving its own read
                       // uses its own clock, as its answer says.
                       const std::int64_t now = std::max(leader_ms != 0 ? leader_ms : unix_ms(),
                                                         state_machine_->last_applied_stamp_ms());
                       done(read_point{to_service(e), now});
                     }));
}

asio::awaitable<bool> node::wait_leader_change(clock::time_point deadline) {
  auto timer = std::make_shared<asio::steady_timer>(io_, deadline);
  leader_waiters_.push_back(timer);
  auto [ec] = co_await timer->async_wait(wait_token);
  std::erase(leader_waiters_, timer);
  co_return ec == asio::error::operation_aborted;
}

void node::wake_leader_waiters() {
  for (auto& t : leader_waiters_) t->cancel();
  leader_waiters_.clear();
}

asio::awaitable<std::optional<net::member_address>> node::wait_for_leader(
    std::chrono::milliseconds wait) {
  const auto deadline = clock::now() + wait;
  while (!stopped_ && replica_->leader() == raft::no_node && clock::now() < deadline) {
    co_await wait_leader_change(deadline);
  }
  co_return leader();
}

asio::awaitable<service_error> node::transfer_leadership(raft::node_id to) {
  if (stopped_) co_return service_error::stopped;
  const auto started = replica_->transfer_leadership(to);
  if (started != raft::replica_error::none) co_return to_service(started);
  if (to == self_) co_return service_error::none;
  const auto deadline =
      clock::now() +
      std::chrono::milliseconds(3ull * config_.raft.election_ticks * config_.raft.tick_ms);
  while (!stopped_ && replica_->leader() != to && clock::now() < deadline) {
    co_await wait_leader_change(deadline);
  }
  co_return replica_->leader() == to ? service_error::none : service_error::timeout;
}

asio::awaitable<service_error> node::take_snapshot() {
  if (stopped_) co_return service_error::stopped;
  auto w = std::make_shared<waiter<raft::replica_error>>(io_);
  replica_->take_snapshot([w](raft::replica_error e) {
    w->answer = e;
    w->timer.cancel();
  });
  w->timer.expires_after(std::chrono::seconds(60));
  if (!w->answer) co_await wait_on(w->timer);
  if (!w->answer) co_return service_error::timeout;
  co_return to_service(*w->answer);
}

void node::maybe_propose_limits() {
  // The limits that decide an apply outcome (too_large, out_of_memory) are replicated state
  // (kv/store.h, "Limits"): a leader whose configured [limits] differ from the cluster's
  // configured ones proposes its own, so replicas whose config files differ can never
  // diverge, and [limits] edited on every node take effect once the nodes restart. Checked
  // on every tick, not once per term: entries of an earlier leader applied after this one
  // was elected can change the cluster's limits. One proposal at a time; the check after it
  // sees the applied result.
  if (limits_proposal_in_flight_ || !replica_->is_leader() || !replica_->storage_error().empty())
    return;
  auto cmd = kv::limits_command_if_needed(store_, store_.local_options());
  if (!cmd) return;
  cmd->timestamp_ms = unix_ms();
  base::log(base::log_level::info, "proposing this node's [limits] as the cluster's");
  limits_proposal_in_flight_ = true;
  // Lost (e.g. leadership moved) or applied: either way the next tick checks again.
  replica_->propose(kv::encode(*cmd), monotonic_ms() + limits_.request_timeout.count(),
                    [this](raft::replica_error, std::string) { limits_proposal_in_flight_ = false; });
}

void node::maybe_purge_expired() {
  // Expired items are invisible at once; their memory is reclaimed by a replicated purge
  // that the leader proposes when it sees some (docs/semantics.md), at most once a second.
  if (!replica_->is_leader() || !replica_->storage_error().empty()) return;
  if (clock::now() - last_purge_check_ < std::chrono::seconds(1)) return;
  last_purge_check_ = clock::now();
  if (store_.expired_keys(unix_ms(), 1).empty()) return;
  kv::command purge;
  purge.kind = kv::op::purge_expired;
  purge.timestamp_ms = unix_ms();
  replica_->propose(kv::encode(purge), monotonic_ms() + limits_.request_timeout.count(),
                    [](raft::replica_error, std::string) {});
}

asio::awaitable<net::member_change_reply> node::change_membership(net::member_change c) {
  net::member_change_reply reply;
  if (stopped_) {
    reply.error = service_error::stopped;
    co_return reply;
  }
  raft::membership_change change;
  change.subject = bootstrap_members::to_member(c.member, false);
  change.kind = c.kind == net::member_change_kind::add       ? raft::change_kind::add_learner
                : c.kind == net::member_change_kind::promote ? raft::change_kind::promote
                                                             : raft::change_kind::remove;
  struct answer {
    raft::replica_error error;
    std::string result;
  };
  auto w = std::make_shared<waiter<answer>>(io_);
  const auto id =
      replica_->change_membership(change, monotonic_ms() + limits_.request_timeout.count(),
                                  [w](raft::replica_error e, std::string result) {
                                    w->answer = answer{e, std::move(result)};
                                    w->timer.cancel();
                                  });
  w->timer.expires_after(limits_.request_timeout);
  if (!w->answer) co_await wait_on(w->timer);
  if (!w->answer) replica_->expire(id);
  if (!w->answer) {
    reply.error = service_error::timeout;
    co_return reply;
  }
  if (w->answer->error != raft::replica_error::none) {
    reply.error = to_service(w->answer->error);
    co_return reply;
  }
  const auto outcome = raft::decode_outcome(w->answer->result);
  if (!outcome) {
    reply.error = service_error::unavailable;
    reply.message = "undecodable answer from the leader";
    co_return reply;
  }
  if (outcome->error == raft::change_error::not_leader) {
    reply.error = service_error::no_leader;
  } else if (outcome->error != raft::change_error::none) {
    reply.refusal = to_refusal(outcome->error);
    reply.message = raft::to_string(outcome->error);
  } else {
    reply.config_index = outcome->index.value;
    // Answer once this node's own view shows the new configuration, so that a GET right
    // after the reply (on this node) sees it.
    const auto deadline = clock::now() + limits_.request_timeout;
    while (!stopped_ && replica_->core().config_index() < outcome->index &&
           clock::now() < deadline) {
      auto t = std::make_shared<asio::steady_timer>(io_);
      t->expires_after(std::chrono::milliseconds(config_.raft.tick_ms));
      co_await t->async_wait(wait_token);
    }
  }
  co_return reply;
}

bool node::reload_peer_tls(std::optional<net::peer_tls> tls) {
  // Without a transport (a node without [listen] peer) there is no connection to secure.
  return !transport_ || transport_->set_tls(std::move(tls));
}

asio::awaitable<std::optional<net::node_status>> node::leader_members_view() {
  if (stopped_) co_return std::nullopt;
  if (replica_->is_leader()) co_return status();
  const raft::node_id leader = replica_->leader();
  if (leader == raft::no_node || !transport_) co_return std::nullopt;
  // Over the peer link, not the leader's HTTP door: that door may serve HTTPS only, under a
  // certificate this node has no reason to trust, or not be configured at all.
  net::forward_request req;
  req.call_id = replica_->reserve_call_id();
  req.op = net::forward_op::members_view;
  if (!transport_->send(leader, net::frame_kind::forward_request, net::encode(req))) {
    co_return std::nullopt;
  }
  auto call = std::make_shared<members_call>(io_);
  call->asked = leader;
  call->timer.expires_after(limits_.request_timeout);
  members_calls_.emplace(req.call_id, call);
  co_await wait_on(call->timer);
  members_calls_.erase(req.call_id);
  if (!call->answer || call->answer->error != service_error::none) co_return std::nullopt;
  co_return net::decode_members_view(call->answer->body);
}

void node::answer_members_view(raft::node_id from, std::uint64_t call_id) {
  if (!transport_) return;
  net::forward_response resp;
  resp.call_id = call_id;
  // Only the leader knows the others' progress; a node that no longer leads says so, and
  // the asking follower shows its own view.
  if (replica_->is_leader()) {
    resp.body = net::encode_members_view(status());
  } else {
    resp.error = service_error::not_leader;
  }
  transport_->send(from, net::frame_kind::forward_response, net::encode(resp));
}

std::optional<net::member_address> node::address_of(raft::node_id id) const {
  for (const auto& m : members_) {
    if (m.id == id) return m;
  }
  return std::nullopt;
}

std::optional<net::member_address> node::leader() const {
  return address_of(replica_->leader());
}

bool node::is_leader() const {
  return replica_->is_leader();
}

std::int64_t node::now_ms() const {
  return unix_ms();
}

}  // namespace app
