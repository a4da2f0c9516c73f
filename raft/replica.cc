// The drive loop (raft/replica.h has the essay). About 1,300 lines on purpose: one class whose
// sections (drive loop, writes and forwarding, read rounds, snapshots, snapshot transfer)
// share its state and its invariants; they are kept together so that a reader sees every
// path that touches them.
#include "raft/replica.h"

#include <algorithm>
#include <random>
#include <sstream>
#include <utility>

#include "base/crc32c.h"

namespace raft {

using base::log_level;

namespace {

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace

const char* to_string(replica_error e) {
  switch (e) {
    case replica_error::none:
      return "none";
    case replica_error::not_leader:
      return "not leader";
    case replica_error::no_leader:
      return "no leader";
    case replica_error::timeout:
      return "timeout";
    case replica_error::stopped:
      return "stopped";
    case replica_error::unavailable:
      return "unavailable";
    case replica_error::rejected:
      return "rejected";
  }
  return "?";
}

std::int64_t leader_lease_ms(std::uint32_t tick_ms, std::uint32_t election_ticks) {
  if (election_ticks < 4) return 0;
  return std::int64_t{election_ticks - 2} * tick_ms * 3 / 4;
}

namespace {

replica_options with_lease(replica_options o) {
  // Without a monotonic clock every lease would look fresh forever.
  o.raft.lease_ms = o.lease_reads && o.monotonic_ms && o.raft.check_quorum
                        ? leader_lease_ms(o.tick_ms, o.raft.election_ticks)
                        : 0;
  return o;
}

}  // namespace

replica::replica(replica_options opts, restore_state restored, log_store& store, peer_sender& peers,
                 state_machine& sm)
    : opts_(with_lease(std::move(opts))),
      core_(opts_.raft, std::move(restored)),
      store_(store),
      peers_(peers),
      sm_(sm) {
  boot_ = opts_.boot_id;
  if (boot_ == 0) {
    std::random_device entropy;
    while (boot_ == 0) boot_ = entropy();
  }
  stored_snapshot_index_ = core_.snapshot_index();
  last_snapshot_index_ = stored_snapshot_index_;
  last_term_ = core_.term();
  submitted_term_ = core_.term();  // as restored: durable
  submitted_vote_ = core_.vote();
  if (!opts_.monotonic_ms) opts_.monotonic_ms = [] { return std::int64_t{0}; };
  if (!opts_.now_ms) opts_.now_ms = opts_.monotonic_ms;
}

replica::~replica() {
  stop();
}

void replica::log(log_level level, const std::string& text) const {
  if (opts_.log) opts_.log(level, text);
}

replica::call_id replica::next_id() {
  ++counter_;
  if (counter_ == 0) ++counter_;
  return (call_id{boot_} << 32) | counter_;
}

// ---------------------------------------------------------------------------------------
// Lifecycle

std::uint64_t replica::recover() {
  recovering_ = true;
  last_progress_log_ = now();
  recovered_ = 0;
  process_ready();
  recovering_ = false;
  return recovered_;
}

void replica::stop() {
  if (stopped_) return;
  stopped_ = true;
  *alive_ = 1;
  alive_.reset();  // completions still queued find nobody
  auto writes = std::move(writes_);
  writes_.clear();
  // In call order, as they were made (the table has none).
  std::vector<std::pair<call_id, write_op*>> in_order;
  in_order.reserve(writes.size());
  for (auto& [id, w] : writes) in_order.emplace_back(id, &w);
  std::sort(in_order.begin(), in_order.end());
  for (auto& [id, w] : in_order) {
    if (!w->serving && w->cb) w->cb(replica_error::stopped, {});
  }
  auto reads = std::move(reads_);
  reads_.clear();
  for (auto& [id, r] : reads) {
    if (r.cb) r.cb(replica_error::stopped, 0);
  }
  auto waiters = std::move(snapshot_waiters_);
  snapshot_waiters_.clear();
  for (auto& cb : waiters) cb(replica_error::stopped);
  for (auto& [to, t] : outbound_) t.src.reset();  // close the files
  inbound_.reset();
}

store_completion replica::on_executor(std::function<void(std::string)> fn) {
  std::weak_ptr<int> alive = alive_;
  auto post = opts_.post;
  return [alive, post, fn = std::move(fn)](std::string error) mutable {
    post([alive, fn = std::move(fn), error = std::move(error)]() mutable {
      if (alive.expired()) return;
      fn(std::move(error));
    });
  };
}

// ---------------------------------------------------------------------------------------
// Events

void replica::tick() {
  if (stopped_) return;
  set_core_clock();
  core_.tick();
  const std::int64_t t = now();
  // A read round whose answer was lost in the network must not block later reads.
  if (round_ && t - round_->started > 2 * std::int64_t{opts_.raft.election_ticks} * opts_.tick_ms) {
    finish_read_round(round_->context, std::nullopt);
  }
  while (const auto due = deadlines_.pop_due(t)) {
    expire(due->second);  // nothing when the call was answered already
  }
  retry_due();
  tick_transfers();
  schedule_ready();
}

void replica::step(const message& m) {
  if (stopped_) return;
  set_core_clock();
  core_.step(m);
  // The core judged the term (and reset its timers); the bytes are the drive loop's.
  if (const auto* c = std::get_if<snapshot_chunk>(&m.body)) {
    on_chunk(m, *c);
  } else if (const auto* r = std::get_if<snapshot_chunk_response>(&m.body)) {
    on_chunk_response(m, *r);
  }
  schedule_ready();
}

void replica::campaign() {
  if (stopped_) return;
  core_.campaign();
  schedule_ready();
}

void replica::schedule_ready() {
  if (ready_scheduled_ || stopped_) return;
  ready_scheduled_ = true;
  std::weak_ptr<int> alive = alive_;
  opts_.post([this, alive] {
    if (alive.expired()) return;
    process_ready();
  });
}

// ---------------------------------------------------------------------------------------
// The drive loop

void replica::process_ready() {
  ready_scheduled_ = false;
  if (stopped_) return;
  if (!round_ && !next_round_.empty()) start_read_round();
  while (core_.has_ready()) {
    ready rd = core_.take_ready();
    if (opts_.observe) opts_.observe(rd);
    persist(rd);                             // 1 (and 3, from the completion)
    send(rd.messages);                       // 2
    apply(rd.committed);                     // 4
    for (const auto& rs : rd.read_states) {  // 5
      finish_read_round(rs.context, rs.index, rs.leader_time_ms);
    }
    for (auto context : rd.dropped_reads) finish_read_round(context, std::nullopt);
    if (stopped_) return;
  }
  note_role_changes();
  if (core_.config_seq() != config_seq_seen_) {
    config_seq_seen_ = core_.config_seq();
    log(log_level::info, cat("configuration at index ", core_.config_index().value, ": ",
                             describe(core_.configuration())));
    if (opts_.on_config_change) opts_.on_config_change(core_.configuration());
  }
  wake_applied_reads();
  retry_due();
  maybe_snapshot(false);
}

void replica::persist(ready& rd) {
  persist_batch b;
  if (rd.snapshot) {
    // A snapshot from the leader replaces the state machine and the whole stored log (§7).
    // The state machine may rebuild its state off the executor (the essay's "Snapshot
    // transfer"); until then nothing is applied.
    const auto meta = rd.snapshot->meta;
    // The bytes: in memory, or a view of the file the store assembled (on_chunk checked
    // that the view holds them all).
    std::string_view whole;
    std::shared_ptr<const void> owner;
    if (rd.snapshot->file) {
      if (auto err = rd.snapshot->file->view(whole); !err.empty()) {
        on_storage_error(cat("the received snapshot at index ", meta.index.value, ": ", err));
        return;
      }
      owner = rd.snapshot->file;
    } else {
      whole = *rd.snapshot->data;
      owner = rd.snapshot->data;
    }
    const std::size_t bytes = whole.size();
    restoring_ = meta;
    const std::int64_t started = now();
    std::weak_ptr<int> alive = alive_;
    // done may run inside the call (the default restores at once) or later.
    auto inside = std::make_shared<bool>(true);
    auto at_once = std::make_shared<std::optional<bool>>();
    sm_.start_restore(whole, std::move(owner),
                      [this, alive, meta, bytes, started, inside, at_once](bool ok) {
                        if (*inside) {
                          *at_once = ok;
                          return;
                        }
                        if (alive.expired()) return;
                        on_restored(meta, ok, bytes, started);
                      });
    *inside = false;
    if (*at_once) {
      const bool ok = **at_once;
      on_restored(meta, ok, bytes, started);
      if (!ok) return;  // never record a snapshot that did not restore
    } else {
      log(log_level::info, cat("restoring the snapshot from the leader at index ", meta.index.value,
                               " (", bytes, " bytes) off the event loop"));
    }
    stored_snapshot_index_ = meta.index;
    last_snapshot_index_ = meta.index;
    snapshot_log_bytes_mark_ = applied_log_bytes_;
    // Proposals at indexes the snapshot covers will never be applied here: their outcome
    // is unknown to this node.
    std::vector<call_id> covered;
    for (auto it = proposals_.begin(); it != proposals_.end() && it->first <= meta.index; ++it)
      covered.push_back(it->second);
    for (auto id : covered) finish_write(id, replica_error::timeout);
    b.install = std::move(rd.snapshot);
  }

  const bool log_write = b.install.has_value() || !rd.entries.empty();
  const bool any_write = log_write || rd.truncate_from || rd.hs;
  if (!any_write && rd.messages_after_persist.empty()) return;
  if (!storage_error_.empty()) return;  // never promise what could not be made durable

  index_t index;
  term_t term;
  if (!rd.entries.empty()) {
    index = rd.entries.back().index;
    term = rd.entries.back().term;
  } else if (b.install) {
    index = b.install->meta.index;
    term = b.install->meta.term;
  }
  std::vector<message> after = std::move(rd.messages_after_persist);
  if (opts_.unsafe_ack_before_persist) {
    send(after);
    after.clear();
  }
  // A heartbeat answer says only "I follow you in this term": it promises no log entry.
  // Once the term and vote it is sent in are durable (no batch changing them is in flight
  // or in this one), it need not queue behind the entries being written. Under a steady
  // write load that is what keeps a ReadIndex round (a linearizable read) from waiting for
  // a follower's fsync.
  const bool term_vote_change =
      rd.hs && (rd.hs->term != submitted_term_ || rd.hs->vote != submitted_vote_);
  if (term_vote_change) {
    submitted_term_ = rd.hs->term;
    submitted_vote_ = rd.hs->vote;
  } else if (term_vote_batches_in_flight_ == 0) {
    std::vector<message> now;
    std::erase_if(after, [&now](message& m) {
      if (!std::holds_alternative<heartbeat_response>(m.body)) return false;
      now.push_back(std::move(m));
      return true;
    });
    send(now);
  }
  if (!any_write && batches_in_flight_ == 0) {
    // Nothing written and nothing earlier still pending: everything these messages promise
    // is already durable.
    send(after);
    return;
  }
  b.truncate_from = rd.truncate_from;
  b.entries = std::move(rd.entries);
  b.hs = rd.hs;
  ++batches_in_flight_;
  if (term_vote_change) ++term_vote_batches_in_flight_;
  store_.submit(std::move(b), on_executor([this, log_write, term_vote_change, index, term,
                                           after = std::move(after)](std::string error) mutable {
                  --batches_in_flight_;
                  if (term_vote_change) --term_vote_batches_in_flight_;
                  if (stopped_) return;
                  if (!error.empty()) {
                    on_storage_error(error);
                    return;
                  }
                  on_persisted(log_write, index, term, std::move(after));
                }));
}

void replica::on_persisted(bool log_write, index_t index, term_t term, std::vector<message> after) {
  if (log_write) core_.on_persisted(index, term);
  send(after);
  schedule_ready();
}

void replica::on_restored(const snapshot_meta& meta, bool ok, std::size_t bytes,
                          std::int64_t started) {
  if (stopped_ || !restoring_ || *restoring_ != meta) return;
  restoring_.reset();
  if (!ok) {
    apply_backlog_.clear();
    on_storage_error(
        cat("the snapshot received for index ", meta.index.value, " does not restore"));
    return;
  }
  log(log_level::info,
      cat("installed snapshot from the leader at index ", meta.index.value, " (term ",
          meta.term.value, ", ", bytes, " bytes; restored in ", now() - started, " ms)"));
  if (!apply_backlog_.empty()) {
    std::vector<entry> waiting(std::make_move_iterator(apply_backlog_.begin()),
                               std::make_move_iterator(apply_backlog_.end()));
    apply_backlog_.clear();
    apply(waiting);
  }
  wake_applied_reads();
  schedule_ready();
}

void replica::on_storage_error(const std::string& why) {
  if (!storage_error_.empty()) return;
  storage_error_ = why;
  log(log_level::error, "storage failed, no more writes are acknowledged: " + why);
  // A node that cannot persist must not keep the cluster waiting behind it: hand
  // leadership to the most up-to-date voter and never campaign again (core::stand_down).
  if (is_leader()) log(log_level::warn, "handing leadership over after the storage failure");
  core_.stand_down();
  schedule_ready();
}

void replica::send(std::vector<message>& messages) {
  for (auto& m : messages) {
    const auto* snap = std::get_if<snapshot_request>(&m.body);
    if (snap && !snap->data) {
      start_transfer(m);  // metadata only: stream it (see "Snapshot transfer")
      continue;
    }
    if (auto* req = std::get_if<append_request>(&m.body); req && !restore_payloads(m.to, *req)) {
      continue;  // dropped: see "Released payloads"
    }
    peers_.send(m);
  }
}

bool replica::restore_payloads(node_id to, append_request& req) {
  auto released = [](const entry& e) { return e.released_bytes != 0; };
  auto first = std::find_if(req.entries.begin(), req.entries.end(), released);
  if (first == req.entries.end()) return true;
  // Released entries are applied ones, so they come before every entry not yet applied;
  // config and no-op entries (never released) may sit among them.
  const auto last = std::find_if(req.entries.rbegin(), req.entries.rend(), released);
  std::vector<entry> stored;
  std::string error = store_.read_entries(first->index, last->index, stored);
  if (error.empty() && stored.size() != last->index.value - first->index.value + 1) {
    error = "storage returned a different number of entries";
  }
  for (auto it = first; error.empty() && it != last.base(); ++it) {
    auto& from = stored[it->index.value - first->index.value];
    if (!released(*it)) continue;
    if (from.index != it->index || from.term != it->term ||
        from.data.size() != it->released_bytes) {
      error = cat("stored entry ", from.index.value, " differs from the log's");
      break;
    }
    it->data = std::move(from.data);
    it->released_bytes = 0;
  }
  if (!error.empty()) {
    log(log_level::warn, cat("append to node ", to.value, " dropped: reading entries ",
                             first->index.value, "..", last->index.value, " back failed: ", error));
    return false;
  }
  return true;
}

void replica::apply(const std::vector<entry>& committed) {
  if (restoring_) {
    // The state machine is rebuilding from a snapshot: these wait, in order.
    apply_backlog_.insert(apply_backlog_.end(), committed.begin(), committed.end());
    return;
  }
  for (std::size_t n = 0; n < committed.size(); ++n) {
    const entry& e = committed[n];
    if (n % state_machine::prefetch_entries == 0) {
      const std::size_t chunk = std::min(state_machine::prefetch_entries, committed.size() - n);
      sm_.prefetch(std::span<const entry>(committed).subspan(n, chunk));
    }
    // After a restart the core hands out entries from the snapshot on; the state machine
    // may already hold some (a snapshot it restored): apply each index once.
    if (e.index <= sm_.applied_index()) continue;
    std::string result = sm_.apply(e);
    applied_log_bytes_ += e.data.size();
    if (recovering_) {
      ++recovered_;
      if (now() - last_progress_log_ > 3000) {
        last_progress_log_ = now();
        log(log_level::info, cat("recovery: replayed ", recovered_, " entries, at index ",
                                 e.index.value, " of ", core_.commit_index().value));
      }
    }
    auto it = proposals_.find(e.index);
    if (it == proposals_.end()) continue;
    const call_id id = it->second;
    proposal_nodes_.erase(proposals_, it);
    auto w = writes_.find(id);
    if (w == writes_.end()) continue;
    if (w->second.term == e.term) {
      ++proposals_ok_;
      if (w->second.config) {
        // The state machine knows nothing of configurations: the outcome is the entry's.
        auto config = decode_membership(e.data);
        result = encode_outcome(change_outcome{change_error::none, e.index,
                                               config ? std::move(*config) : membership{}});
      }
      finish_write_at(w, replica_error::none, std::move(result), true);
    } else if (w->second.serving) {
      // Another leader's entry took this index: the proposal was lost (paper §5.3).
      finish_write_at(w, replica_error::not_leader, {}, true);
    } else {
      w->second.state = write_state::idle;
      w->second.retry_at = now();
      idle_writes_.insert(id);
    }
  }
}

void replica::note_role_changes() {
  const auto r = core_.role();
  const auto term = core_.term();
  const auto leader = core_.leader();
  if (term != last_term_) {
    log(log_level::info,
        cat("term ", last_term_.value, " -> ", term.value, " (", to_string(r), ")"));
  }
  if (r != last_role_) {
    if (r == role::leader) {
      log(log_level::info, cat("won the election: leader for term ", term.value));
    } else if (last_role_ == role::leader) {
      log(log_level::info, cat("stepped down in term ", term.value, ", now ", to_string(r)));
    } else if (r == role::candidate) {
      log(log_level::info, cat("campaigning in term ", term.value));
    }
  }
  const bool leader_changed = leader != last_leader_;
  if (leader_changed) {
    ++leader_changes_;
    if (leader == no_node) {
      log(log_level::info, cat("leader ", last_leader_.value, " lost (term ", term.value, ")"));
    } else {
      log(log_level::info, cat("leader is now node ", leader.value, " (term ", term.value, ")"));
    }
  }
  last_role_ = r;
  last_term_ = term;
  last_leader_ = leader;
  if (!leader_changed) return;
  // Whoever waited for a leader tries again now.
  for (auto id : idle_writes_) writes_.at(id).retry_at = now();
  for (auto id : idle_reads_) reads_.at(id).retry_at = now();
  // Writes forwarded to the old leader may never be answered: retry them with the new one
  // now rather than at the deadline. The command's request id keeps the retry at-most-once.
  std::vector<call_id> lost;
  for (auto& [fid, id] : forwards_) {
    const auto& w = writes_.at(id);
    // A change waits for the leader it went to until another leader is known: with none in
    // sight (an election, or this node's own removal just applied: a removed node knows no
    // leader) that leader may still answer, and nobody else could be asked anyway.
    if (w.config && leader == no_node) continue;
    if (w.target != leader) lost.push_back(id);
  }
  for (auto id : lost) {
    auto& w = writes_.at(id);
    forwards_.erase(w.forward_id);
    if (w.config) {
      // A membership change has no request id to make a resend harmless: "add 4" sent again
      // after the first one committed and 4 was removed would bring 4 back. Its fate at the
      // old leader is unknown: say so (the operator reads the member list), never resend.
      finish_write(id, replica_error::timeout);
      continue;
    }
    w.state = write_state::idle;
    w.retry_at = now();
    idle_writes_.insert(id);
  }
  if (opts_.on_leader_change) opts_.on_leader_change();
}

// ---------------------------------------------------------------------------------------
// Writes

replica::call_id replica::propose(std::string command, std::int64_t deadline_ms,
                                  write_callback cb) {
  write_op w;
  w.command = std::move(command);
  w.deadline = deadline_ms;
  w.cb = std::move(cb);
  return add_write(std::move(w));
}

replica::call_id replica::change_membership(const membership_change& change,
                                            std::int64_t deadline_ms, write_callback cb) {
  write_op w;
  w.command = encode_change(change);
  w.deadline = deadline_ms;
  w.cb = std::move(cb);
  w.config = true;
  return add_write(std::move(w));
}

replica::call_id replica::add_write(write_op w) {
  const call_id id = next_id();
  if (stopped_) {
    opts_.post([cb = std::move(w.cb)] { cb(replica_error::stopped, {}); });
    return id;
  }
  const std::int64_t deadline_ms = w.deadline;  // (retry_at matters only once it is idle)
  write_nodes_.insert(writes_, id, std::move(w));
  deadlines_.push(deadline_ms, id);
  // The first attempt runs on the executor: callbacks never run inside this call, and
  // proposals made in one turn share one batch. One posted function attempts every write
  // of the turn (a stream of writes would otherwise cost a post each).
  fresh_writes_.push_back(id);
  if (fresh_writes_.size() == 1) {
    std::weak_ptr<int> alive = alive_;
    opts_.post([this, alive] {
      if (alive.expired()) return;
      attempt_fresh_writes();
    });
  }
  return id;
}

void replica::attempt_fresh_writes() {
  auto fresh = std::move(fresh_writes_);
  fresh_writes_.clear();
  // A fresh write that is gone was answered meanwhile (stop, its deadline).
  const clock_reading at{now(), opts_.now_ms()};
  for (const call_id id : fresh) attempt_write(id, &at);  // returns at once if it is gone
  // Hand the buffer back for the next turn, unless attempts queued new writes meanwhile.
  if (fresh_writes_.empty()) {
    fresh.clear();
    fresh_writes_ = std::move(fresh);
  }
}

void replica::on_forward_request(node_id from, forward_request r) {
  if (stopped_) return;
  // A membership change has no request id to make a second copy harmless: served again, a
  // copy would be refused (another change in progress) and that answer could reach the
  // follower before the real one, or, arriving late, propose the change once more ("add 4"
  // after 4 was removed). Writes need no such care: the state machine applies a command
  // at most once per request id. Ids are kept for two serve timeouts, longer than the
  // follower waits; a follower's call ids never repeat (boot prefix).
  if (r.config_change) {
    const std::int64_t t = now();
    while (!changes_served_order_.empty() && changes_served_order_.front().first <= t) {
      changes_served_.erase(changes_served_order_.front().second);
      changes_served_order_.pop_front();
    }
    const auto key = std::make_pair(from, r.call_id);
    const std::int64_t forget_at = t + 2 * opts_.serve_timeout_ms;
    if (!changes_served_.emplace(key, forget_at).second) return;
    changes_served_order_.emplace_back(forget_at, key);
  }
  forward_reply out;
  out.call_id = r.call_id;
  if (!is_leader()) {
    out.error = replica_error::not_leader;
  } else if (!storage_error_.empty()) {
    out.error = replica_error::unavailable;
  } else {
    const call_id id = next_id();
    write_op w;
    w.command = std::move(r.command);
    w.config = r.config_change;
    // A change refused for a transient reason is retried here until this deadline and then
    // answered with that reason: it must reach the follower before the follower's own
    // deadline (the same length, started earlier) turns it into a bare timeout.
    w.deadline = now() + (w.config ? opts_.serve_timeout_ms * 3 / 4 : opts_.serve_timeout_ms);
    w.serving = std::make_pair(from, r.call_id);
    const std::int64_t deadline = w.deadline;
    write_nodes_.insert(writes_, id, std::move(w));
    deadlines_.push(deadline, id);
    attempt_write(id);
    return;
  }
  peers_.reply(from, out);
}

void replica::on_forward_reply(node_id from, const forward_reply& r) {
  if (stopped_) return;
  auto f = forwards_.find(r.call_id);
  if (f == forwards_.end() || writes_.at(f->second).target != from) {
    ++replies_dropped_;  // timed out already, retried elsewhere, or meant for an earlier life
    return;
  }
  const call_id id = f->second;
  forwards_.erase(f);
  if (r.error == replica_error::not_leader || r.error == replica_error::no_leader) {
    // The leader changed under us. The same command (same request id) goes to the next one,
    // so it is applied at most once whatever happened to this attempt.
    // A change answered so was not made there (never proposed, or its entry overwritten):
    // if no leader takes it before the deadline, say that nothing changed rather than
    // "outcome unknown", as the leader itself would (attempt_write).
    if (writes_.at(id).config) writes_.at(id).last_refusal = change_error::transfer_in_progress;
    wait_for_leader(id, now() + 5 * std::int64_t{opts_.tick_ms});
    return;
  }
  finish_write(id, r.error, r.result);
}

void replica::attempt_write(call_id id, const clock_reading* at) {
  auto it = writes_.find(id);
  if (it == writes_.end()) return;
  auto& w = it->second;
  if (!idle_writes_.empty()) idle_writes_.erase(id);
  if (stopped_) return finish_write(id, replica_error::stopped);
  if (!storage_error_.empty()) return finish_write(id, replica_error::unavailable);
  if ((at ? at->monotonic_ms : now()) >= w.deadline) {
    if (w.config && w.last_refusal != change_error::none) {
      return finish_write(id, replica_error::none,
                          encode_outcome(change_outcome{w.last_refusal, {}, {}}));
    }
    return finish_write(id, deadline_error());
  }
  if (is_leader() && w.config) return attempt_change(id);
  if (is_leader()) {
    auto bytes = sm_.prepare_proposal(w.command, at ? at->wall_ms : opts_.now_ms());
    if (!bytes) return finish_write(id, replica_error::rejected);
    const propose_result r = core_.propose(std::move(*bytes));
    if (!r.ok()) {
      if (w.serving) return finish_write(id, replica_error::not_leader);
      // Leadership is being handed over: try again in a tick (then through the new leader).
      w.state = write_state::idle;
      w.retry_at = now() + opts_.tick_ms;
      idle_writes_.insert(id);
      return;
    }
    w.state = write_state::proposed;
    w.index = r.index;
    w.term = r.term;
    set_proposal(r.index, id);
    schedule_ready();
    return;
  }
  if (w.serving) return finish_write(id, replica_error::not_leader);
  const node_id leader = core_.leader();
  if (leader == no_node) return wait_for_leader(id, w.deadline);
  w.forward_id = next_id();
  w.target = leader;
  if (!peers_.forward(leader, forward_request{w.forward_id, w.command, w.config})) {
    return wait_for_leader(id, now() + 5 * std::int64_t{opts_.tick_ms});
  }
  w.state = write_state::forwarded;
  forwards_[w.forward_id] = id;
}

// The leader's half of change_membership (and of a change forwarded to it).
void replica::attempt_change(call_id id) {
  auto& w = writes_.at(id);
  const auto change = decode_change(w.command);
  if (!change) {
    return finish_write(id, replica_error::none,
                        encode_outcome(change_outcome{change_error::malformed, {}, {}}));
  }
  const change_result r = core_.propose_change(*change);
  if (r.ok()) {
    w.state = write_state::proposed;
    w.index = r.index;
    w.term = r.term;
    set_proposal(r.index, id);
    log(log_level::info,
        cat("proposed a membership change at index ", r.index.value, ": ", describe(*change)));
    schedule_ready();
    return;
  }
  if (r.error == change_error::transfer_in_progress && w.serving) {
    // Leadership is being handed over (to remove this node, maybe): the change was not
    // proposed here and will not be. Say so now, so that the follower asks the next leader;
    // an answer that came after the hand-over would find the follower already given up on
    // this leader (note_role_changes: a change's fate at an old leader is unknown).
    return finish_write(id, replica_error::not_leader);
  }
  if (retryable(r.error)) {
    w.last_refusal = r.error;
    w.state = write_state::idle;
    w.retry_at = now() + opts_.tick_ms;
    idle_writes_.insert(id);
    return;
  }
  finish_write(id, replica_error::none, encode_outcome(change_outcome{r.error, {}, {}}));
}

void replica::wait_for_leader(call_id id, std::int64_t until) {
  auto& w = writes_.at(id);
  w.state = write_state::idle;
  w.retry_at = std::min(until, w.deadline);
  idle_writes_.insert(id);
}

replica_error replica::deadline_error() const {
  return core_.leader() == no_node ? replica_error::no_leader : replica_error::timeout;
}

// proposals_[index] = id, with a reused node.
void replica::set_proposal(index_t index, call_id id) {
  if (auto p = proposals_.find(index); p != proposals_.end()) {
    p->second = id;  // an earlier proposal lost this index to another leader's entry
  } else {
    proposal_nodes_.insert(proposals_, index, id);
  }
}

void replica::finish_write(call_id id, replica_error e, std::string result) {
  auto it = writes_.find(id);
  if (it == writes_.end()) return;
  finish_write_at(it, e, std::move(result), false);
}

void replica::finish_write_at(write_table::iterator it, replica_error e, std::string result,
                              bool proposal_erased) {
  const call_id id = it->first;
  write_op w = std::move(it->second);
  write_nodes_.erase(writes_, it);
  if (!idle_writes_.empty()) idle_writes_.erase(id);
  if (w.state == write_state::proposed && !proposal_erased) {
    if (auto p = proposals_.find(w.index); p != proposals_.end() && p->second == id)
      proposal_nodes_.erase(proposals_, p);
  }
  if (w.state == write_state::forwarded) forwards_.erase(w.forward_id);
  if (w.serving) {
    if (!stopped_) peers_.reply(w.serving->first, forward_reply{w.serving->second, e, result});
    return;
  }
  if (w.cb) w.cb(e, std::move(result));
}

void replica::expire(call_id id) {
  if (auto w = writes_.find(id); w != writes_.end()) {
    if (w->second.config && w->second.state == write_state::idle &&
        w->second.last_refusal != change_error::none) {
      finish_write(id, replica_error::none,
                   encode_outcome(change_outcome{w->second.last_refusal, {}, {}}));
      return;
    }
    replica_error e = replica_error::timeout;
    if (w->second.state == write_state::proposed) {
      ++proposals_failed_;
    } else if (w->second.state == write_state::idle) {
      e = deadline_error();
    }
    finish_write(id, e);
    return;
  }
  if (reads_.count(id)) finish_read(id, deadline_error());
}

void replica::retry_due() {
  if (stopped_) return;
  const std::int64_t t = now();
  std::vector<call_id> due;
  for (auto id : idle_writes_)
    if (writes_.at(id).retry_at <= t) due.push_back(id);
  for (auto id : due) attempt_write(id);
  std::vector<call_id> reads;
  for (auto id : idle_reads_)
    if (reads_.at(id).retry_at <= t) reads.push_back(id);
  for (auto id : reads) {
    idle_reads_.erase(id);
    auto& r = reads_.at(id);
    if (t >= r.deadline) {
      finish_read(id, deadline_error());
      continue;
    }
    r.state = read_state_kind::queued;
    next_round_.push_back(id);
  }
  if (!round_ && !next_round_.empty()) start_read_round();
}

// ---------------------------------------------------------------------------------------
// Reads (ReadIndex, thesis §6.4)

replica::call_id replica::read(std::int64_t deadline_ms, read_callback cb) {
  const call_id id = next_id();
  if (stopped_) {
    opts_.post([cb = std::move(cb)] { cb(replica_error::stopped, 0); });
    return id;
  }
  // A leader on its lease whose state machine has applied the commit index answers at
  // once: no round, no turn of the executor (core.h, "Read leases").
  set_core_clock();
  if (auto point = core_.lease_read(); point && point->index <= sm_.applied_index()) {
    cb(replica_error::none, point->leader_time_ms);
    return id;
  }
  read_op r;
  r.deadline = deadline_ms;
  r.cb = std::move(cb);
  reads_.emplace(id, std::move(r));
  deadlines_.push(deadline_ms, id);
  // The round starts on the executor: every read of this turn shares it.
  next_round_.push_back(id);
  schedule_ready();
  return id;
}

void replica::start_read_round() {
  read_round r;
  r.context = next_id();
  r.started = now();
  for (auto id : next_round_) {
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;  // expired while queued
    it->second.state = read_state_kind::in_round;
    r.reads.push_back(id);
  }
  next_round_.clear();
  if (r.reads.empty()) return;
  const auto context = r.context;
  round_ = std::move(r);
  set_core_clock();
  core_.read_index(context);
  schedule_ready();
}

void replica::finish_read_round(std::uint64_t context, std::optional<index_t> index,
                                std::int64_t leader_time_ms) {
  if (!round_ || round_->context != context) return;  // a round we gave up on
  auto ids = std::move(round_->reads);
  round_.reset();
  const std::int64_t t = now();
  for (auto id : ids) {
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;  // its caller has gone
    auto& r = it->second;
    if (!index) {
      if (t >= r.deadline) {
        finish_read(id, deadline_error());
        continue;
      }
      // No leader, or it lost leadership: wait for the next one (or a moment) and retry.
      r.state = read_state_kind::idle;
      r.retry_at = std::min(r.deadline, t + 5 * std::int64_t{opts_.tick_ms});
      idle_reads_.insert(id);
    } else if (*index <= sm_.applied_index()) {
      r.leader_time_ms = leader_time_ms;
      finish_read(id, replica_error::none);
    } else {
      r.leader_time_ms = leader_time_ms;
      r.state = read_state_kind::applying;
      reads_applying_.emplace(*index, id);
    }
  }
  if (!next_round_.empty()) start_read_round();
}

void replica::wake_applied_reads() {
  const index_t applied = sm_.applied_index();
  while (!reads_applying_.empty() && reads_applying_.begin()->first <= applied) {
    const call_id id = reads_applying_.begin()->second;
    reads_applying_.erase(reads_applying_.begin());
    finish_read(id, replica_error::none);
  }
}

void replica::finish_read(call_id id, replica_error e) {
  auto it = reads_.find(id);
  if (it == reads_.end()) return;
  read_callback cb = std::move(it->second.cb);
  const std::int64_t leader_time_ms = it->second.leader_time_ms;
  reads_.erase(it);
  idle_reads_.erase(id);
  // Ids left in round_, next_round_ or reads_applying_ are skipped when met.
  if (cb) cb(e, e == replica_error::none ? leader_time_ms : 0);
}

// ---------------------------------------------------------------------------------------
// Snapshot transfer (the essay's "Snapshot transfer")

void replica::start_transfer(const message& m) {
  const auto& meta = std::get<snapshot_request>(m.body).meta;
  const node_id to = m.to;
  auto it = outbound_.find(to);
  if (it != outbound_.end() && it->second.st.state == "sending") {
    auto& t = it->second;
    // The core asks again while the stream runs (its retry timer): keep streaming.
    if (t.meta.index == meta.index && t.meta.term == meta.term && t.st.term == m.term) return;
    end_transfer(t, "aborted", cat("a newer snapshot (index ", meta.index.value, ") replaces it"));
  }
  // After a failure, wait an election timeout before opening again (the core asks often).
  if (auto f = transfer_failed_at_.find(to);
      f != transfer_failed_at_.end() && now() - f->second < election_ms()) {
    return;
  }
  outbound_transfer t;
  t.meta = meta;
  t.st.peer = to;
  t.st.index = meta.index;
  t.st.term = m.term;  // the leader term the stream belongs to
  t.st.state = "sending";
  t.st.started_ms = now();
  t.last_answer = now();
  std::string error;
  t.src = store_.open_snapshot(meta, error);
  if (!t.src) {
    t.st.total = 0;
    auto& slot = outbound_[to] = std::move(t);
    end_transfer(slot, "failed", "cannot open the snapshot: " + error);
    return;
  }
  t.st.total = t.src->size();
  t.checksum = t.src->checksum();
  log(log_level::info, cat("sending snapshot at index ", meta.index.value, " (term ",
                           meta.term.value, ", ", t.st.total, " bytes) to node ", to.value,
                           " in chunks of ", opts_.snapshot_chunk_bytes, " bytes"));
  auto& slot = outbound_[to] = std::move(t);
  pump(slot);
}

void replica::pump(outbound_transfer& t) {
  const std::size_t chunk = std::max<std::size_t>(1, opts_.snapshot_chunk_bytes);
  const std::uint64_t window = chunk * std::max<std::size_t>(1, opts_.snapshot_window);
  while (t.st.state == "sending" && !t.final_sent &&
         t.st.sent - std::min(t.st.acked, t.st.sent) < window) {
    snapshot_chunk c;
    c.meta = t.meta;
    c.offset = t.st.sent;
    c.total = t.st.total;
    c.checksum = t.checksum;
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(chunk, t.st.total - t.st.sent));
    if (auto err = t.src->read(c.offset, n, c.data); !err.empty() || c.data.size() != n) {
      end_transfer(t, "failed", err.empty() ? "short read of the snapshot" : err);
      core_.report_snapshot(t.st.peer, false);
      return;
    }
    c.last = c.offset + n == c.total;
    t.st.sent += n;
    t.final_sent = c.last;
    peers_.send(message{id(), t.st.peer, t.st.term, std::move(c)});
  }
}

void replica::end_transfer(outbound_transfer& t, const char* result, std::string why) {
  if (t.st.state != "sending") return;
  t.st.state = result;
  t.st.ended_ms = now();
  t.src.reset();
  const std::string result_s = result;
  if (result_s == "done") {
    ++transfers_done_;
    transfer_failed_at_.erase(t.st.peer);
    log(log_level::info, cat("snapshot transfer to node ", t.st.peer.value, " done: index ",
                             t.st.index.value, ", ", t.st.total, " bytes in ",
                             t.st.ended_ms - t.st.started_ms, " ms (", t.st.resends, " resends)"));
  } else {
    t.st.last_error = why;
    if (result_s == "failed") {
      ++transfers_failed_;
      transfer_failed_at_[t.st.peer] = now();
    } else {
      ++transfers_aborted_;
    }
    log(result_s == "failed" ? log_level::warn : log_level::info,
        cat("snapshot transfer to node ", t.st.peer.value, " (index ", t.st.index.value, ") ",
            result, " at ", t.st.acked, " of ", t.st.total, " bytes: ", why));
  }
  if (opts_.on_snapshot_transfer) opts_.on_snapshot_transfer(result);
}

void replica::on_chunk_response(const message& m, const snapshot_chunk_response& r) {
  auto it = outbound_.find(m.from);
  if (it == outbound_.end()) return;
  auto& t = it->second;
  if (t.st.state != "sending" || r.index != t.meta.index || r.snapshot_term != t.meta.term ||
      m.term != t.st.term || !is_leader())
    return;  // an answer about another stream
  t.last_answer = now();
  t.stalls = 0;
  if (r.failed) {
    end_transfer(t, "failed",
                 "the follower could not store or verify the snapshot (its log says which)");
    core_.report_snapshot(m.from, false);
    return;
  }
  if (r.done) {
    t.st.acked = t.st.total;
    end_transfer(t, "done", {});
    core_.report_snapshot(m.from, true);
    return;
  }
  const std::uint64_t chunk = std::max<std::size_t>(1, opts_.snapshot_chunk_bytes);
  const std::uint64_t expected = std::min(r.offset + chunk, t.st.total);
  if (r.next == expected) {
    t.st.acked = std::max(t.st.acked, r.next);
  } else {
    // The follower holds [0, next): a chunk was lost (resume there) or it started over.
    t.st.acked = r.next;
    if (r.next < t.st.sent && r.next != t.rewound_to) {
      t.rewound_to = r.next;
      t.st.sent = r.next;
      t.final_sent = false;
      ++t.st.resends;
      t.st.last_error = cat("the follower holds ", r.next, " bytes; resending from there");
    } else if (r.next > t.st.sent) {
      t.st.sent = std::min(r.next, t.st.total);
    }
  }
  pump(t);
}

void replica::tick_transfers() {
  const std::int64_t t_now = now();
  for (auto& [to, t] : outbound_) {
    if (t.st.state != "sending") continue;
    if (!is_leader() || core_.term() != t.st.term) {
      end_transfer(t, "aborted", "this node is no longer the leader");
      continue;
    }
    if (t_now - t.last_answer < 2 * election_ms()) continue;
    t.last_answer = t_now;
    if (++t.stalls > 5) {
      end_transfer(t, "failed", "no answer from the follower for ten election timeouts");
      core_.report_snapshot(to, false);
      continue;
    }
    // Chunks or answers were lost (a dropped connection): resume from what it acknowledged.
    t.st.last_error =
        cat("no answer for ", 2 * election_ms(), " ms; resending from offset ", t.st.acked);
    log(log_level::warn, cat("snapshot transfer to node ", to.value, ": ", t.st.last_error));
    t.st.sent = std::min(t.st.acked, t.st.total);
    t.rewound_to = t.st.sent;
    t.final_sent = false;
    ++t.st.resends;
    pump(t);
  }
  if (inbound_ && t_now - inbound_->last_chunk > 10 * election_ms()) {
    log(log_level::warn, cat("dropped a partial snapshot from node ", inbound_->from.value,
                             " (index ", inbound_->meta.index.value, ", ", inbound_->held, " of ",
                             inbound_->total, " bytes): nothing heard for ten election timeouts"));
    inbound_.reset();
  }
}

void replica::answer_chunk(const message& m, const snapshot_chunk& c, std::uint64_t next, bool done,
                           bool failed) {
  snapshot_chunk_response r;
  r.index = c.meta.index;
  r.snapshot_term = c.meta.term;
  r.offset = c.offset;
  r.next = next;
  r.done = done;
  r.failed = failed;
  peers_.send(message{id(), m.from, core_.term(), r});
}

void replica::on_chunk(const message& m, const snapshot_chunk& c) {
  // Only from the leader of our term (the core answered anything stale already). The leader
  // the core follows, even while this node is in no configuration it knows (joining, or a
  // snapshot from before its addition), which core::leader() hides.
  if (core_.role() != role::follower || core_.followed_leader() != m.from || core_.term() != m.term)
    return;
  if (!storage_error_.empty()) return;  // installing would need storage: let it time out
  if (c.meta.index <= core_.commit_index()) {
    // Nothing to install: the core tells the leader where this log is.
    inbound_.reset();
    answer_chunk(m, c, c.total, true, false);
    core_.step(message{m.from, id(), m.term, snapshot_request{c.meta, nullptr, nullptr}});
    return;
  }
  // Still restoring the previous snapshot: one at a time. Unanswered, the leader resends
  // later (its stall timer), by when this one is in place.
  if (restoring_) return;
  auto& in = inbound_;
  if (!in || in->from != m.from || in->term != m.term || in->meta != c.meta ||
      in->total != c.total || in->checksum != c.checksum) {
    if (c.offset != 0) {
      answer_chunk(m, c, 0, false, false);  // start over
      return;
    }
    if (in) {
      log(log_level::info, cat("dropped a partial snapshot (index ", in->meta.index.value, ", ",
                               in->held, " bytes) for a new one"));
    }
    // Assigned, not emplace()d: clang 14 judges the nested struct not default-constructible
    // (its member initializers count only once the enclosing class is complete).
    in = inbound_transfer{};
    in->from = m.from;
    in->term = m.term;
    in->meta = c.meta;
    in->total = c.total;
    in->checksum = c.checksum;
    std::string error;
    in->file = store_.open_snapshot_receiver(c.meta, error);
    if (!in->file && !error.empty()) {
      log(log_level::error,
          cat("cannot receive the snapshot at index ", c.meta.index.value, ": ", error));
      inbound_.reset();
      answer_chunk(m, c, 0, false, true);
      return;
    }
    if (!in->file) in->data.reserve(c.total);
    log(log_level::info,
        cat("receiving snapshot at index ", c.meta.index.value, " (", c.total, " bytes) from node ",
            m.from.value, in->file ? " into a file" : " in memory"));
  }
  in->last_chunk = now();
  if (c.offset != in->held) {
    answer_chunk(m, c, in->held, false, false);  // a gap or a duplicate
    return;
  }
  if (in->file) {
    if (auto err = in->file->append(c.data); !err.empty()) {
      log(log_level::error, cat("receiving the snapshot at index ", c.meta.index.value, ": ", err));
      inbound_.reset();
      answer_chunk(m, c, 0, false, true);
      return;
    }
  } else {
    in->data.append(c.data);
  }
  in->held += c.data.size();
  in->crc = base::crc32c(c.data, in->crc);
  if (!c.last) {
    answer_chunk(m, c, in->held, false, false);
    return;
  }
  std::string_view whole;
  std::string view_error;
  if (in->file) view_error = in->file->view(whole);
  if (in->held != in->total || in->crc != in->checksum || !view_error.empty() ||
      (in->file && whole.size() != in->total)) {
    log(log_level::warn,
        cat("snapshot at index ", c.meta.index.value, " from node ", m.from.value,
            " does not verify (", in->held, " of ", in->total, " bytes, checksum ", in->crc, " vs ",
            in->checksum, view_error.empty() ? "" : ", ", view_error, "); dropped"));
    inbound_.reset();
    answer_chunk(m, c, 0, false, true);
    return;
  }
  std::shared_ptr<const std::string> data;
  if (!in->file) data = std::make_shared<const std::string>(std::move(in->data));
  auto file = std::move(in->file);
  const auto meta = in->meta;
  inbound_.reset();
  answer_chunk(m, c, c.total, true, false);
  // The ordinary install path: the core answers the leader once it is durable. The install
  // restores the whole state on this executor, seconds for a large one, and the answer
  // above is only queued: stepping the core here would hold it behind the restore, and the
  // leader, hearing nothing, would resend the last chunk and count the transfer as stalled
  // (and the heartbeat answers piling up meanwhile could push the answer out of the
  // transport's queue). Installing on the next turn of the executor lets the transport
  // write the answer first. The core still judges the message's term when it runs.
  std::weak_ptr<int> alive = alive_;
  opts_.post([this, alive, from = m.from, term = m.term, meta, data = std::move(data),
              file = std::move(file)]() mutable {
    if (alive.expired() || stopped_) return;
    // Another restore began meanwhile: drop this one (the leader, told done, finds this log
    // short at its next append and sends a snapshot again).
    if (restoring_) return;
    core_.step(message{from, id(), term, snapshot_request{meta, std::move(data), std::move(file)}});
    schedule_ready();
  });
}

// ---------------------------------------------------------------------------------------
// Snapshots

replica_error replica::transfer_leadership(node_id to) {
  if (stopped_) return replica_error::stopped;
  if (!is_leader()) return replica_error::not_leader;
  if (to == id()) return replica_error::none;
  core_.transfer_leadership(to);
  schedule_ready();
  return replica_error::none;
}

node_id replica::hand_over() {
  if (stopped_) return no_node;
  const bool was_leader = is_leader();
  core_.stand_down();
  schedule_ready();
  return was_leader ? core_.transferee() : no_node;
}

void replica::take_snapshot(done_callback cb) {
  if (stopped_) {
    opts_.post([cb = std::move(cb)] { cb(replica_error::stopped); });
    return;
  }
  maybe_snapshot(true);
  if (!snapshot_in_progress_) {
    opts_.post([cb = std::move(cb)] { cb(replica_error::none); });  // nothing new
    return;
  }
  snapshot_waiters_.push_back(std::move(cb));
}

bool snapshot_due(const replica_options& o, std::uint64_t entries, std::uint64_t log_bytes,
                  std::uint64_t state_bytes) {
  if (entries == 0) return false;
  const double scale = 1.0 + o.snapshot_stagger;
  if (o.snapshot_entries != 0 &&
      static_cast<double>(entries) >= static_cast<double>(o.snapshot_entries) * scale) {
    return true;
  }
  if (o.snapshot_min_log_bytes == 0) return false;
  const double share = static_cast<double>(state_bytes) * o.snapshot_log_ratio;
  const double threshold = std::max(static_cast<double>(o.snapshot_min_log_bytes), share) * scale;
  return static_cast<double>(log_bytes) > threshold;
}

void replica::maybe_snapshot(bool forced) {
  if (snapshot_in_progress_ || restoring_ || stopped_ || !storage_error_.empty()) return;
  const index_t applied = sm_.applied_index();
  if (applied <= last_snapshot_index_) return;
  if (!forced && !snapshot_due(opts_, applied.value - last_snapshot_index_.value,
                               applied_log_bytes_ - snapshot_log_bytes_mark_, sm_.state_bytes())) {
    return;
  }
  // The core can drop the log prefix only once it is durable here.
  if (applied > core_.persisted_index()) return;
  const auto term = core_.term_at(applied);
  if (!term) return;
  snapshot_meta meta;
  meta.index = applied;
  meta.term = *term;
  meta.config = core_.config_at(applied);
  // The state machine captures its state at `applied` now and writes it while it keeps
  // applying (app/kv_state_machine forks; the default takes the bytes here).
  snapshot_in_progress_ = true;
  const std::uint64_t mark = applied_log_bytes_;
  std::weak_ptr<int> alive = alive_;
  auto post = opts_.post;
  sm_.start_snapshot(
      meta, store_,
      [this, alive, post, meta, mark](std::string error, std::shared_ptr<const std::string> data) {
        post([this, alive, meta, mark, error = std::move(error), data = std::move(data)] {
          if (alive.expired()) return;
          on_snapshot_written(meta, data, mark, error);
        });
      });
}

void replica::on_snapshot_written(snapshot_meta meta, std::shared_ptr<const std::string> data,
                                  std::uint64_t log_bytes_mark, const std::string& error) {
  snapshot_in_progress_ = false;
  if (stopped_) return;
  if (!error.empty()) {
    log(log_level::warn, cat("snapshot at index ", meta.index.value, " failed: ", error));
  } else if (meta.index > stored_snapshot_index_ && storage_error_.empty() &&
             core_.compact(meta.index, data)) {
    last_snapshot_index_ = meta.index;
    stored_snapshot_index_ = meta.index;
    snapshot_log_bytes_mark_ = log_bytes_mark;
    persist_batch b;
    b.compact = meta;
    ++batches_in_flight_;
    store_.submit(std::move(b), on_executor([this](std::string error) {
                    --batches_in_flight_;
                    if (!error.empty()) on_storage_error(error);
                  }));
    log(log_level::info, data ? cat("snapshot at index ", meta.index.value, " (", data->size(),
                                    " bytes); log compacted")
                              : cat("snapshot at index ", meta.index.value, "; log compacted"));
  }
  auto waiters = std::move(snapshot_waiters_);
  snapshot_waiters_.clear();
  for (auto& cb : waiters) cb(replica_error::none);
  schedule_ready();
}

replica_status replica::status() const {
  replica_status s;
  s.core = core_.status();
  s.applied = sm_.applied_index();
  s.snapshot_index = stored_snapshot_index_;
  s.leader_changes = leader_changes_;
  s.proposals_ok = proposals_ok_;
  s.proposals_failed = proposals_failed_;
  s.replies_dropped = replies_dropped_;
  s.storage_error = storage_error_;
  for (const auto& [to, t] : outbound_) s.snapshot_transfers.push_back(t.st);
  s.snapshot_transfers_done = transfers_done_;
  s.snapshot_transfers_failed = transfers_failed_;
  s.snapshot_transfers_aborted = transfers_aborted_;
  if (restoring_) s.restoring_snapshot_index = restoring_->index;
  if (inbound_) {
    s.receiving_snapshot_index = inbound_->meta.index;
    s.receiving_snapshot_bytes = inbound_->held;
    s.receiving_snapshot_total = inbound_->total;
  }
  return s;
}

}  // namespace raft
