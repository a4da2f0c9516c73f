#include "app/node.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>
#include <thread>

#include "base/log.h"
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
asio::awaitable<void> wait_on(asio::steady_timer& timer) { co_await timer.async_wait(wait_token); }

std::int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

const char* role_name(raft::role r) { return raft::to_string(r); }

}  // namespace

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

node::~node() { stop(); }

std::variant<std::unique_ptr<node>, std::string> node::open(asio::io_context& io,
                                                             const config& c) {
  std::unique_ptr<node> n(new node(io, c));

  raft::storage::options opts;
  opts.data_dir = c.data_dir;
  opts.fsync = c.raft.fsync;
  opts.max_map_bytes = c.raft.max_disk_mb << 20;
  opts.log = [](raft::storage::log_level level, std::string_view text) {
    const auto l = level == raft::storage::log_level::info      ? log_level::info
                   : level == raft::storage::log_level::warning ? log_level::warn
                                                                : log_level::error;
    base::log(l, "storage: ", text);
  };
  node* self = n.get();
  opts.on_commit = [self, &io](std::chrono::nanoseconds took, std::size_t, std::size_t) {
    asio::post(io, [self, took] { self->metrics_.observe_fsync(took); });
  };
  auto opened = raft::storage::lmdb_store::open(std::move(opts));
  if (!opened.store) return opened.err.message;
  n->storage_ = std::move(opened.store);

  auto loaded = n->storage_->load();
  if (!loaded.ok()) return "cannot load " + c.data_dir.string() + ": " + loaded.err.message;
  auto& state = loaded.value;

  // Rebuild the store: the latest snapshot, then every committed entry after it.
  const auto recovery_started = clock::now();
  if (state.snapshot) {
    if (!n->store_.restore(state.snapshot_data)) {
      return "snapshot " + state.snapshot->path.string() + " does not restore (corrupt?)";
    }
    n->stored_snapshot_index_ = state.snapshot->meta.index;
    n->last_snapshot_index_ = state.snapshot->meta.index.value;
  }
  std::uint64_t replayed = 0;
  auto last_progress = clock::now();
  for (const raft::entry& e : state.entries) {
    if (e.index > state.hard.commit) break;  // not known committed: the core decides later
    if (e.index.value <= n->store_.applied_index()) continue;
    if (e.type == raft::entry_type::normal) {
      if (auto cmd = kv::decode_command(e.data)) {
        n->store_.apply(e.index.value, *cmd);
      } else {
        n->store_.skip(e.index.value);
      }
    } else {
      n->store_.skip(e.index.value);
    }
    ++replayed;
    if (clock::now() - last_progress > std::chrono::seconds(3)) {
      last_progress = clock::now();
      base::log(log_level::info, "recovery: replayed ", replayed, " entries, at index ",
               e.index.value, " of ", state.hard.commit.value);
    }
  }
  const auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           clock::now() - recovery_started + state.took)
                           .count();
  base::log(log_level::info, "recovered in ", took_ms, " ms: term ", state.hard.term.value,
           ", snapshot at ", n->last_snapshot_index_, ", replayed ", replayed,
           " entries, applied ", n->store_.applied_index(), ", log up to ",
           state.last_index.value);

  raft::config rc;
  rc.id = n->self_;
  for (const auto& m : c.members) rc.voters.push_back(raft::node_id(m.id));
  rc.election_ticks = c.raft.election_ticks;
  rc.heartbeat_ticks = c.raft.heartbeat_ticks;
  std::random_device entropy;
  rc.seed = (std::uint64_t{entropy()} << 32) | entropy();

  raft::restore_state rs;
  rs.hs = state.hard;
  if (state.snapshot) {
    rs.snapshot = state.snapshot->meta;
    rs.snapshot_data = std::make_shared<const std::string>(std::move(state.snapshot_data));
  }
  rs.entries = std::move(state.entries);
  n->core_ = std::make_unique<raft::core>(rc, std::move(rs));
  n->last_term_ = n->core_->term();
  return n;
}

void node::start(std::optional<asio::ip::tcp::acceptor> peer_acceptor) {
  if (members_.size() > 1 && peer_acceptor) {
    std::map<raft::node_id, std::string> peers;
    for (const auto& m : members_) peers[m.id] = m.peer;
    auto logger = [](net::peer_transport::log_level level, std::string text) {
      using pl = net::peer_transport::log_level;
      const auto l = level == pl::debug  ? log_level::debug
                     : level == pl::info ? log_level::info
                     : level == pl::warn ? log_level::warn
                                         : log_level::error;
      base::log(l, text);
    };
    transport_ = std::make_unique<net::peer_transport>(
        io_.get_executor(), self_, net::peer_transport::derive_cluster_id(peers), peers,
        std::move(*peer_acceptor),
        [this](raft::node_id from, net::frame_kind kind, std::string payload) {
          on_frame(from, kind, std::move(payload));
        },
        logger);
    transport_->start();
  }
  if (members_.size() == 1) core_->campaign();  // a cluster of one elects itself at once
  tick_timer_.expires_after(std::chrono::milliseconds(config_.raft.tick_ms));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) on_tick();
  });
  schedule_ready();
}

void node::stop() {
  if (stopped_) return;
  stopped_ = true;
  tick_timer_.cancel();
  const net::write_reply stopped{service_error::stopped, {}};
  for (auto& [index, w] : proposals_) {
    w->reply = stopped;
    w->timer.cancel();
  }
  proposals_.clear();
  for (auto& [id, w] : forwards_) {
    w->reply = stopped;
    w->timer.cancel();
  }
  forwards_.clear();
  auto stop_read = [](const std::shared_ptr<read_waiter>& w) {
    w->stopped = true;
    w->timer.cancel();
  };
  if (read_round_) {
    for (auto& w : read_round_->waiters) stop_read(w);
    read_round_.reset();
  }
  for (auto& w : next_round_) stop_read(w);
  next_round_.clear();
  for (auto& [index, w] : reads_waiting_apply_) stop_read(w);
  reads_waiting_apply_.clear();
  wake_leader_waiters();
  for (auto& t : snapshot_waiters_) t->cancel();
  snapshot_waiters_.clear();
  if (transport_) transport_->stop();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  if (storage_) storage_->close();
}

// ---------------------------------------------------------------------------------------
// The drive loop

void node::schedule_ready() {
  if (ready_scheduled_ || stopped_) return;
  ready_scheduled_ = true;
  asio::post(io_, [this] { process_ready(); });
}

void node::process_ready() {
  ready_scheduled_ = false;
  if (stopped_) return;
  while (core_->has_ready()) {
    raft::ready rd = core_->take_ready();
    persist(rd);                 // 1 (and 3, from the storage callback)
    send(rd.messages);           // 2
    apply(rd.committed);         // 4
    for (const auto& rs : rd.read_states) finish_read_round(rs.context, rs.index);  // 5
    for (auto context : rd.dropped_reads) finish_read_round(context, std::nullopt);
  }
  note_role_changes();
  wake_applied_reads();
  maybe_snapshot(false);
}

void node::persist(raft::ready& rd) {
  if (rd.snapshot) {
    // A snapshot from the leader replaces the store and the whole stored log (paper §7).
    const auto& meta = rd.snapshot->meta;
    if (!store_.restore(*rd.snapshot->data)) {
      on_storage_error("the snapshot received for index " + std::to_string(meta.index.value) +
                       " does not restore");
      return;
    }
    // Rare and bounded by the snapshot size: written on this thread so that the batch
    // below, which records it, can follow in order.
    if (auto err = storage_->write_snapshot(meta, *rd.snapshot->data)) {
      on_storage_error(err.message);
      return;
    }
    raft::storage::batch replace;
    replace.truncate_from = stored_snapshot_index_ + 1;
    replace.compaction = meta;
    stored_snapshot_index_ = meta.index;
    last_snapshot_index_ = meta.index.value;
    ++storage_batches_in_flight_;
    storage_->submit(std::move(replace), [this](const auto& r) {
      asio::post(io_, [this, error = r.err] {
        --storage_batches_in_flight_;
        if (error) on_storage_error(error.message);
      });
    });
    base::log(log_level::info, "installed snapshot from the leader at index ", meta.index.value,
             " (term ", meta.term.value, ", ", rd.snapshot->data->size(), " bytes)");
  }

  const bool log_write = rd.snapshot.has_value() || !rd.entries.empty();
  const bool any_write = log_write || rd.truncate_from || rd.hs;
  if (!any_write && rd.messages_after_persist.empty()) return;
  if (!storage_error_.empty()) return;  // never promise what could not be made durable

  raft::index_t index;
  raft::term_t term;
  if (!rd.entries.empty()) {
    index = rd.entries.back().index;
    term = rd.entries.back().term;
  } else if (rd.snapshot) {
    index = rd.snapshot->meta.index;
    term = rd.snapshot->meta.term;
  }
  raft::storage::batch b;  // an empty batch is a barrier: it orders after-persist messages
  b.truncate_from = rd.truncate_from;
  b.entries = std::move(rd.entries);
  b.hard = rd.hs;
  ++storage_batches_in_flight_;
  storage_->submit(std::move(b), [this, log_write, index, term,
                                  after = std::move(rd.messages_after_persist)](
                                     const raft::storage::result<raft::storage::persisted>& r) {
    asio::post(io_, [this, log_write, index, term, after = std::move(after), error = r.err] {
      --storage_batches_in_flight_;
      if (stopped_) return;
      if (error) {
        on_storage_error(error.message);
        return;
      }
      on_persisted(log_write, index, term, std::move(after));
    });
  });
}

void node::on_persisted(bool had_log_write, raft::index_t index, raft::term_t term,
                        std::vector<raft::message> after_persist) {
  if (had_log_write) core_->on_persisted(index, term);
  send(after_persist);
  schedule_ready();
}

void node::on_storage_error(const std::string& why) {
  if (!storage_error_.empty()) return;
  storage_error_ = why;
  base::log(log_level::error, "storage failed, no more writes are acknowledged: ", why);
}

void node::send(const std::vector<raft::message>& messages) {
  if (!transport_) return;
  for (const auto& m : messages) {
    transport_->send(m.to, net::frame_kind::raft_message, raft::encode(m));
  }
}

void node::apply(const std::vector<raft::entry>& committed) {
  for (const raft::entry& e : committed) {
    // After a restart the core hands out entries the store already has (from the snapshot
    // or the start-up replay): apply each index once.
    if (e.index.value <= store_.applied_index()) continue;
    std::optional<kv::result> result;
    if (e.type == raft::entry_type::normal) {
      if (auto cmd = kv::decode_command(e.data)) {
        result = store_.apply(e.index.value, *cmd);
      } else {
        base::log(log_level::warn, "entry ", e.index.value, " holds no valid command; skipped");
        store_.skip(e.index.value);
      }
    } else {
      store_.skip(e.index.value);
    }
    auto it = proposals_.find(e.index);
    if (it == proposals_.end()) continue;
    auto w = it->second;
    proposals_.erase(it);
    if (w->term == e.term && result) {
      w->reply = net::write_reply{service_error::none, *result};
      ++proposals_ok_;
    } else {
      // Another leader's entry took this index: our proposal was lost (paper §5.3).
      w->reply = net::write_reply{service_error::not_leader, {}};
    }
    w->timer.cancel();
  }
}

void node::note_role_changes() {
  const auto role = core_->role();
  const auto term = core_->term();
  const auto leader = core_->leader();
  if (term != last_term_) {
    base::log(log_level::info, "term ", last_term_.value, " -> ", term.value, " (",
             role_name(role), ")");
  }
  if (role != last_role_) {
    if (role == raft::role::leader) {
      base::log(log_level::info, "won the election: leader for term ", term.value);
    } else if (last_role_ == raft::role::leader) {
      base::log(log_level::info, "stepped down in term ", term.value, ", now ", role_name(role));
    } else if (role == raft::role::candidate) {
      base::log(log_level::info, "campaigning in term ", term.value);
    }
  }
  if (leader != last_leader_) {
    ++leader_changes_;
    if (leader == raft::no_node) {
      base::log(log_level::info, "leader ", last_leader_.value, " lost (term ", term.value, ")");
    } else {
      base::log(log_level::info, "leader is now node ", leader.value, " (term ", term.value, ")");
    }
    // Requests forwarded to the old leader may never be answered: retry them with the new
    // one now rather than at the deadline. Their request id keeps the retry at-most-once.
    for (auto it = forwards_.begin(); it != forwards_.end();) {
      if (it->second->target == leader) {
        ++it;
        continue;
      }
      it->second->reply = net::write_reply{service_error::not_leader, {}};
      it->second->timer.cancel();
      it = forwards_.erase(it);
    }
    wake_leader_waiters();
  }
  last_role_ = role;
  last_term_ = term;
  last_leader_ = leader;
}

void node::wake_leader_waiters() {
  for (auto& t : leader_waiters_) t->cancel();
  leader_waiters_.clear();
}

void node::on_tick() {
  if (stopped_) return;
  core_->tick();
  // A read round whose answer was lost in the network must not block later reads.
  if (read_round_ && clock::now() - read_round_->started >
                         std::chrono::milliseconds(2ull * config_.raft.election_ticks *
                                                   config_.raft.tick_ms)) {
    finish_read_round(read_round_->context, std::nullopt);
  }
  maybe_purge_expired();
  schedule_ready();
  // Steady ticks without drift; after a stall (a paused process, a long GC-like hiccup) do
  // not replay the missed ticks in a burst: Raft only needs time to move on, not to catch up.
  const auto tick = std::chrono::milliseconds(config_.raft.tick_ms);
  tick_timer_.expires_at(std::max(tick_timer_.expiry() + tick, clock::now()));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) on_tick();
  });
}

// ---------------------------------------------------------------------------------------
// Peers

void node::on_frame(raft::node_id from, net::frame_kind kind, std::string payload) {
  if (stopped_) return;
  switch (kind) {
    case net::frame_kind::raft_message: {
      auto m = raft::decode(payload);
      if (!m || m->from != from) {
        base::log(log_level::warn, "dropped an undecodable raft message from node ", from.value);
        return;
      }
      core_->step(*m);
      schedule_ready();
      return;
    }
    case net::frame_kind::forward_request: {
      auto req = net::decode_forward_request(payload);
      if (!req) {
        base::log(log_level::warn, "dropped an undecodable forward request from node ",
                 from.value);
        return;
      }
      asio::co_spawn(io_, serve_forwarded(from, std::move(*req)), asio::detached);
      return;
    }
    case net::frame_kind::forward_response: {
      auto resp = net::decode_forward_response(payload);
      if (!resp) return;
      auto it = forwards_.find(resp->call_id);
      if (it == forwards_.end()) return;  // timed out already
      auto w = it->second;
      forwards_.erase(it);
      net::write_reply reply{resp->error, {}};
      if (resp->error == service_error::none) {
        if (auto r = kv::decode_result(resp->body)) {
          reply.result = *r;
        } else {
          reply.error = service_error::timeout;  // the leader applied it; we cannot tell how
        }
      }
      w->reply = reply;
      w->timer.cancel();
      return;
    }
    case net::frame_kind::hello:
      return;
  }
}

asio::awaitable<void> node::serve_forwarded(raft::node_id from, net::forward_request req) {
  net::forward_response resp;
  resp.call_id = req.call_id;
  if (req.op != net::forward_op::write) {
    resp.error = service_error::unavailable;
  } else if (auto cmd = kv::decode_command(req.body); !cmd) {
    resp.error = service_error::none;
    resp.body = kv::encode(kv::result{kv::status::bad_command, 0, 0, std::nullopt});
  } else if (core_->role() != raft::role::leader) {
    resp.error = service_error::not_leader;
  } else if (!storage_error_.empty()) {
    resp.error = service_error::unavailable;
  } else {
    auto reply = co_await propose_here(std::move(*cmd), clock::now() + limits_.request_timeout);
    resp.error = reply.error;
    if (reply.error == service_error::none) resp.body = kv::encode(reply.result);
  }
  if (!stopped_ && transport_) {
    transport_->send(from, net::frame_kind::forward_response, net::encode(resp));
  }
}

// ---------------------------------------------------------------------------------------
// Writes

asio::awaitable<net::write_reply> node::write(kv::command cmd) {
  const auto deadline = clock::now() + limits_.request_timeout;
  if (cmd.id.client == 0) cmd.id = kv::request_id{client_id_, next_seq_++};
  for (;;) {
    if (stopped_) co_return net::write_reply{service_error::stopped, {}};
    if (!storage_error_.empty()) co_return net::write_reply{service_error::unavailable, {}};
    if (clock::now() >= deadline) {
      co_return net::write_reply{
          core_->leader() == raft::no_node ? service_error::no_leader : service_error::timeout,
          {}};
    }
    if (core_->role() == raft::role::leader) {
      auto reply = co_await propose_here(cmd, deadline);
      if (reply.error == service_error::not_leader) continue;  // deposed: retry via the new one
      co_return reply;
    }
    const raft::node_id leader = core_->leader();
    if (leader == raft::no_node || !transport_) {
      co_await wait_leader_change(deadline);
      continue;
    }
    net::forward_request req;
    req.op = net::forward_op::write;
    req.body = kv::encode(cmd);
    auto reply = co_await forward_to(leader, req, deadline);
    if (reply.error == service_error::not_leader || reply.error == service_error::no_leader) {
      // The leader changed under us. The same request id goes to the next one, so the
      // command is applied at most once whatever happened to this attempt.
      co_await wait_leader_change(
          std::min(deadline, clock::now() + std::chrono::milliseconds(config_.raft.tick_ms * 5)));
      continue;
    }
    co_return reply;
  }
}

asio::awaitable<net::write_reply> node::propose_here(kv::command cmd,
                                                     clock::time_point deadline) {
  // The leader stamps the entry with its clock: every replica uses this as "now" when it
  // applies it, so expiry decisions agree byte for byte (SPEC §2).
  cmd.timestamp_ms = wall_ms();
  const raft::propose_result r = core_->propose(kv::encode(cmd));
  if (!r.ok()) {
    if (r.error == raft::propose_error::transfer_in_progress) {
      asio::steady_timer pause(io_, std::chrono::milliseconds(config_.raft.tick_ms));
      co_await pause.async_wait(wait_token);
    }
    co_return net::write_reply{service_error::not_leader, {}};
  }
  auto w = std::make_shared<write_waiter>(io_);
  w->term = r.term;
  proposals_[r.index] = w;
  schedule_ready();
  w->timer.expires_at(deadline);
  if (!w->reply) co_await wait_on(w->timer);
  if (auto it = proposals_.find(r.index); it != proposals_.end() && it->second == w) {
    proposals_.erase(it);
  }
  if (w->reply) co_return *w->reply;
  ++proposals_failed_;
  co_return net::write_reply{service_error::timeout, {}};
}

asio::awaitable<net::write_reply> node::forward_to(raft::node_id leader,
                                                   const net::forward_request& request,
                                                   clock::time_point deadline) {
  net::forward_request req = request;
  req.call_id = next_call_id_++;
  auto w = std::make_shared<write_waiter>(io_);
  w->target = leader;
  if (!transport_->send(leader, net::frame_kind::forward_request, net::encode(req))) {
    co_return net::write_reply{service_error::not_leader, {}};
  }
  forwards_[req.call_id] = w;
  w->timer.expires_at(deadline);
  if (!w->reply) co_await wait_on(w->timer);
  forwards_.erase(req.call_id);
  if (w->reply) co_return *w->reply;
  co_return net::write_reply{service_error::timeout, {}};
}

asio::awaitable<bool> node::wait_leader_change(clock::time_point deadline) {
  auto timer = std::make_shared<asio::steady_timer>(io_, deadline);
  leader_waiters_.push_back(timer);
  auto [ec] = co_await timer->async_wait(wait_token);
  std::erase(leader_waiters_, timer);
  co_return ec == asio::error::operation_aborted;
}

asio::awaitable<std::optional<net::member_address>> node::wait_for_leader(
    std::chrono::milliseconds wait) {
  const auto deadline = clock::now() + wait;
  while (!stopped_ && core_->leader() == raft::no_node && clock::now() < deadline) {
    co_await wait_leader_change(deadline);
  }
  co_return leader();
}

// ---------------------------------------------------------------------------------------
// Reads (ReadIndex, thesis §6.4)

asio::awaitable<service_error> node::read_barrier() {
  const auto deadline = clock::now() + limits_.request_timeout;
  for (;;) {
    if (stopped_) co_return service_error::stopped;
    auto w = std::make_shared<read_waiter>(io_);
    next_round_.push_back(w);
    if (!read_round_) start_read_round();
    w->timer.expires_at(deadline);
    co_await wait_on(w->timer);
    if (w->stopped) co_return service_error::stopped;
    if (w->done) co_return service_error::none;
    if (w->dropped && clock::now() < deadline) {
      // No leader, or it lost leadership: wait for the next one (or a moment) and retry.
      co_await wait_leader_change(
          std::min(deadline, clock::now() + std::chrono::milliseconds(config_.raft.tick_ms * 5)));
      continue;
    }
    // Deadline: forget this reader wherever it waits.
    w->stopped = true;
    co_return core_->leader() == raft::no_node ? service_error::no_leader
                                               : service_error::timeout;
  }
}

void node::start_read_round() {
  read_round r;
  r.context = next_read_context_++;
  r.started = clock::now();
  r.waiters = std::move(next_round_);
  next_round_.clear();
  const auto context = r.context;
  read_round_ = std::move(r);
  core_->read_index(context);
  schedule_ready();
}

void node::finish_read_round(std::uint64_t context, std::optional<raft::index_t> index) {
  if (!read_round_ || read_round_->context != context) return;  // a round we gave up on
  auto waiters = std::move(read_round_->waiters);
  read_round_.reset();
  for (auto& w : waiters) {
    if (w->stopped) continue;  // its reader has gone
    if (!index) {
      w->dropped = true;
      w->timer.cancel();
    } else if (index->value <= store_.applied_index()) {
      w->done = true;
      w->timer.cancel();
    } else {
      w->read_index = index;
      reads_waiting_apply_.emplace(*index, w);
    }
  }
  if (!next_round_.empty()) start_read_round();
}

void node::wake_applied_reads() {
  const raft::index_t applied(store_.applied_index());
  while (!reads_waiting_apply_.empty() && reads_waiting_apply_.begin()->first <= applied) {
    auto w = reads_waiting_apply_.begin()->second;
    reads_waiting_apply_.erase(reads_waiting_apply_.begin());
    w->done = true;
    w->timer.cancel();
  }
}

// ---------------------------------------------------------------------------------------
// Snapshots and housekeeping

void node::maybe_snapshot(bool forced) {
  if (snapshot_in_progress_ || stopped_) return;
  const std::uint64_t applied = store_.applied_index();
  if (applied <= last_snapshot_index_) return;
  if (!forced && applied - last_snapshot_index_ < config_.raft.snapshot_entries) return;
  const auto term = core_->term_at(raft::index_t(applied));
  if (!term) return;
  raft::snapshot_meta meta;
  meta.index = raft::index_t(applied);
  meta.term = *term;
  for (const auto& m : members_) meta.voters.push_back(m.id);
  auto data = std::make_shared<const std::string>(store_.snapshot());
  snapshot_in_progress_ = true;
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  // The file write and its fsyncs happen off the io_context thread; the store keeps
  // serving meanwhile (the bytes were taken above, at one applied index).
  snapshot_thread_ = std::thread([this, meta, data] {
    auto err = storage_->write_snapshot(meta, *data);
    asio::post(io_, [this, meta, data, message = err ? err.message : std::string()] {
      on_snapshot_written(meta, data, message);
    });
  });
}

void node::on_snapshot_written(raft::snapshot_meta meta, std::shared_ptr<const std::string> data,
                               std::string error) {
  snapshot_in_progress_ = false;
  if (stopped_) return;
  if (!error.empty()) {
    base::log(log_level::warn, "snapshot at index ", meta.index.value, " failed: ", error);
  } else if (meta.index > stored_snapshot_index_) {
    last_snapshot_index_ = meta.index.value;
    core_->compact(meta.index, data);
    raft::storage::batch b;
    b.compaction = meta;
    stored_snapshot_index_ = meta.index;
    ++storage_batches_in_flight_;
    storage_->submit(std::move(b), [this](const auto& r) {
      asio::post(io_, [this, error = r.err] {
        --storage_batches_in_flight_;
        if (error) on_storage_error(error.message);
      });
    });
    base::log(log_level::info, "snapshot at index ", meta.index.value, " (", data->size(),
             " bytes); log compacted");
  }
  for (auto& t : snapshot_waiters_) t->cancel();
  snapshot_waiters_.clear();
  schedule_ready();
}

asio::awaitable<service_error> node::take_snapshot() {
  if (stopped_) co_return service_error::stopped;
  maybe_snapshot(true);
  if (!snapshot_in_progress_) co_return service_error::none;  // nothing new to snapshot
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::seconds(60));
  snapshot_waiters_.push_back(timer);
  co_await timer->async_wait(wait_token);
  co_return snapshot_in_progress_ ? service_error::timeout : service_error::none;
}

void node::maybe_purge_expired() {
  // Expired items are invisible at once; their memory is reclaimed by a replicated purge
  // that the leader proposes when it sees some (SPEC §2), at most once a second.
  if (core_->role() != raft::role::leader || !storage_error_.empty()) return;
  if (clock::now() - last_purge_check_ < std::chrono::seconds(1)) return;
  last_purge_check_ = clock::now();
  if (store_.expired_keys(wall_ms(), 1).empty()) return;
  kv::command purge;
  purge.kind = kv::op::purge_expired;
  purge.timestamp_ms = wall_ms();
  core_->propose(kv::encode(purge));
}

asio::awaitable<service_error> node::transfer_leadership(raft::node_id to) {
  if (stopped_) co_return service_error::stopped;
  if (core_->role() != raft::role::leader) co_return service_error::not_leader;
  if (to == self_) co_return service_error::none;
  core_->transfer_leadership(to);
  schedule_ready();
  const auto deadline =
      clock::now() +
      std::chrono::milliseconds(3ull * config_.raft.election_ticks * config_.raft.tick_ms);
  while (!stopped_ && core_->leader() != to && clock::now() < deadline) {
    co_await wait_leader_change(deadline);
  }
  co_return core_->leader() == to ? service_error::none : service_error::timeout;
}

// ---------------------------------------------------------------------------------------
// Status

std::optional<net::member_address> node::address_of(raft::node_id id) const {
  for (const auto& m : members_) {
    if (m.id == id) return m;
  }
  return std::nullopt;
}

std::optional<net::member_address> node::leader() const { return address_of(core_->leader()); }

bool node::is_leader() const { return core_->role() == raft::role::leader; }

std::int64_t node::now_ms() const { return wall_ms(); }

net::node_status node::status() const {
  const raft::status s = core_->status();
  net::node_status out;
  out.id = self_.value;
  out.role = role_name(s.role);
  out.term = s.term.value;
  out.leader_id = s.leader.value;
  out.commit_index = s.commit.value;
  out.applied_index = store_.applied_index();
  out.last_log_index = s.last_index.value;
  out.snapshot_index = s.snapshot_index.value;
  out.leader_changes = leader_changes_;
  out.proposals_ok = proposals_ok_;
  out.proposals_failed = proposals_failed_;
  out.storage_error = storage_error_;
  const auto now = clock::now();
  for (const auto& m : members_) {
    net::member_status ms;
    ms.address = m;
    if (m.id == self_) {
      ms.match_index = s.persisted_index.value;
      ms.next_index = s.last_index.value + 1;
      ms.last_contact_ms = 0;
    } else {
      for (const auto& p : s.peers) {
        if (p.id != m.id) continue;
        ms.match_index = p.match.value;
        ms.next_index = p.next.value;
      }
      if (transport_) {
        if (auto ps = transport_->status(m.id); ps && ps->last_received) {
          ms.last_contact_ms =
              std::chrono::duration_cast<std::chrono::milliseconds>(now - *ps->last_received)
                  .count();
        }
      }
    }
    out.members.push_back(std::move(ms));
  }
  return out;
}

}  // namespace app
