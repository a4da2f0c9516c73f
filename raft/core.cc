// The Raft core (raft/core.h has the contract, raft/README.md the environment). Longer than
// ~600 lines on purpose: one state machine whose handlers (elections, replication, ReadIndex,
// transfer, snapshots) all read and write the same term/vote/log/progress state; the paper
// and thesis sections are cited above the code that implements each rule.
#include "raft/core.h"

#include <algorithm>
#include <cassert>
#include <sstream>
#include <type_traits>

namespace raft {

namespace {

// Messages that only the leader sends to replicate; they can go before the leader's own
// disk write completes (thesis §10.2.1). Everything else promises persisted state.
bool send_before_persist(const message_body& b) {
  return std::holds_alternative<append_request>(b) ||
         std::holds_alternative<heartbeat_request>(b) ||
         std::holds_alternative<snapshot_request>(b) || std::holds_alternative<timeout_now>(b);
}
}  // namespace

const char* message_name(const message& m) {
  return std::visit(
      [](const auto& b) -> const char* {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, append_request>)
          return "append";
        else if constexpr (std::is_same_v<T, append_response>)
          return "append_resp";
        else if constexpr (std::is_same_v<T, vote_request>)
          return b.pre_vote ? "prevote" : "vote";
        else if constexpr (std::is_same_v<T, vote_response>)
          return b.pre_vote ? "prevote_resp" : "vote_resp";
        else if constexpr (std::is_same_v<T, heartbeat_request>)
          return "heartbeat";
        else if constexpr (std::is_same_v<T, heartbeat_response>)
          return "heartbeat_resp";
        else if constexpr (std::is_same_v<T, snapshot_request>)
          return "snapshot";
        else if constexpr (std::is_same_v<T, timeout_now>)
          return "timeout_now";
        else if constexpr (std::is_same_v<T, read_index_request>)
          return "read_index";
        else if constexpr (std::is_same_v<T, read_index_response>)
          return "read_index_resp";
        else if constexpr (std::is_same_v<T, snapshot_chunk>)
          return "snapshot_chunk";
        else if constexpr (std::is_same_v<T, snapshot_chunk_response>)
          return "snapshot_chunk_resp";
        else
          static_assert(always_false<T>, "unnamed message type");
      },
      m.body);
}

const char* to_string(role r) {
  switch (r) {
    case role::follower:
      return "follower";
    case role::pre_candidate:
      return "pre-candidate";
    case role::candidate:
      return "candidate";
    case role::leader:
      return "leader";
  }
  return "?";
}

const char* to_string(progress_state s) {
  switch (s) {
    case progress_state::probe:
      return "probe";
    case progress_state::replicate:
      return "replicate";
    case progress_state::snapshot:
      return "snapshot";
  }
  return "?";
}

core::core(config cfg, restore_state restored) : cfg_(std::move(cfg)), rng_(cfg_.seed) {
  bootstrap_ = cfg_.bootstrap.empty() ? voters_only(cfg_.voters) : cfg_.bootstrap;
  if (cfg_.heartbeat_ticks == 0) cfg_.heartbeat_ticks = 1;
  if (cfg_.election_ticks <= cfg_.heartbeat_ticks) cfg_.election_ticks = cfg_.heartbeat_ticks + 1;
  if (cfg_.max_inflight == 0) cfg_.max_inflight = 1;
  if (cfg_.max_entries_per_append == 0) cfg_.max_entries_per_append = 1;

  term_ = restored.hs.term;
  vote_ = restored.hs.vote;
  snapshot_config_ = bootstrap_;
  if (restored.snapshot) {
    snapshot_index_ = restored.snapshot->index;
    snapshot_term_ = restored.snapshot->term;
    // A snapshot record from before configurations were replicated has none: the
    // bootstrap list is all that ever existed then.
    if (!restored.snapshot->config.empty()) snapshot_config_ = restored.snapshot->config;
  }
  for (auto& e : restored.entries) {
    if (e.index <= snapshot_index_) continue;
    if (e.index != last_index() + 1) break;  // storage hands a contiguous log; stop at a gap
    entries_.push_back(std::move(e));
  }
  // The state machine restarts from the snapshot; committed entries after it are handed
  // out again.
  applied_ = snapshot_index_;
  commit_ = std::clamp(restored.hs.commit, snapshot_index_, last_index());
  persisted_ = last_index();
  unstable_from_ = last_index() + 1;
  last_hs_ = hard_state{term_, vote_, commit_};
  role_ = role::follower;
  recompute_config();
  randomize_timeout();
}

// ---------------------------------------------------------------------------------------
// Membership (raft/membership.h has the rules).

void core::set_config(membership m, index_t at) {
  if (m == config_ && at == config_index_) return;
  config_ = std::move(m);
  config_index_ = at;
  voters_ = config_.voters();
  ++config_seq_;
  // Quorums of the new configuration promised nothing yet (core.h, "Read leases").
  lease_probes_.clear();
  lease_until_ = 0;
  if (role_ == role::leader) sync_progress();
  if (transferee_ != no_node && !counts(transferee_)) transferee_ = no_node;
}

// The configuration in use is the latest in the log: after a truncation or an install,
// find it again from the snapshot's on.
void core::recompute_config() {
  membership m = snapshot_config_;
  index_t at = snapshot_index_;
  for (auto it = entries_.begin() + static_cast<std::ptrdiff_t>(dead_front_); it != entries_.end();
       ++it) {
    const entry& e = *it;
    if (e.type != entry_type::config) continue;
    if (auto decoded = decode_membership(e.data)) {
      m = std::move(*decoded);
      at = e.index;
    }
  }
  set_config(std::move(m), at);
}

membership core::config_at(index_t i) const {
  if (i >= config_index_) return config_;
  membership m = snapshot_config_;
  for (auto it = entries_.begin() + static_cast<std::ptrdiff_t>(dead_front_); it != entries_.end();
       ++it) {
    const entry& e = *it;
    if (e.index > i) break;
    if (e.type != entry_type::config) continue;
    if (auto decoded = decode_membership(e.data)) m = std::move(*decoded);
  }
  return m;
}

// Leader: one progress per member but itself. A removed member stays as `leaving` until
// it holds the entry that removed it (see progress::leaving).
void core::sync_progress() {
  for (const auto& m : config_.members) {
    if (m.id == cfg_.id) continue;
    auto [it, fresh] = progress_.try_emplace(m.id);
    if (fresh) {
      it->second.next = last_index() + 1;
      it->second.recent_active = true;
    }
    it->second.leaving = false;
  }
  for (auto& [id, pr] : progress_) {
    if (!config_.find(id) && !pr.leaving) {
      pr.leaving = true;
      pr.leaving_ticks = 0;
    }
  }
}

// A leader that is not in the configuration it committed hands over to its most
// up-to-date voter (thesis §3.10) and steps down; it never campaigns again. A leader never
// proposes its own removal (propose_change hands over first), so this is the node of
// may_campaign's exception, elected to finish a removal of itself that only it held.
void core::maybe_leave() {
  if (role_ != role::leader || counts(cfg_.id) || commit_ < config_index_) return;
  const auto [best, best_match] = most_up_to_date_voter();
  if (best != no_node && best_match == last_index()) {
    send(best, timeout_now{});
    become_follower(term_, no_node);
  } else if (best != no_node) {
    if (transferee_ != best) transfer_leadership(best);
  } else {
    become_follower(term_, no_node);
  }
}

bool core::caught_up(node_id id) const {
  if (role_ != role::leader) return false;
  auto it = progress_.find(id);
  return it != progress_.end() && it->second.state == progress_state::replicate &&
         it->second.match + cfg_.max_entries_per_append >= commit_;
}

change_result core::propose_change(const membership_change& c) {
  change_result res;
  if (role_ != role::leader) {
    res.error = change_error::not_leader;
    return res;
  }
  if (transferee_ != no_node) {
    res.error = change_error::transfer_in_progress;
    return res;
  }
  if (config_index_ > commit_) {
    res.error = change_error::change_in_progress;
    return res;
  }
  // Thesis §4.1 (the fix): until an entry of this term commits, an uncommitted change of
  // an earlier leader may still be in some logs; a change on top of it could leave two
  // disjoint majorities.
  if (cfg_.mutation != unsafe_mutation::change_before_term_commit && commit_ < term_start_) {
    res.error = change_error::leader_not_ready;
    return res;
  }
  auto next = apply_change(config_, c);
  if (auto* e = std::get_if<change_error>(&next)) {
    res.error = *e;
    return res;
  }
  if (c.kind == change_kind::promote && !caught_up(c.subject.id)) {
    res.error = change_error::not_caught_up;
    return res;
  }
  // A leader asked to remove itself hands over first (SPEC §8) and lets the next leader
  // propose the removal of a mere follower. Proposing it itself would leave the cluster led
  // by a node outside the configuration until the entry commits: its quorum would no longer
  // count itself, a crash then would leave the entry to be finished by a node that is no
  // member, and clients would be served by a leader on its way out. The refusal is
  // transient: the replica retries, and after the hand-over forwards the change to the new
  // leader. (apply_change above refused it already if no other voter would remain.)
  if (c.kind == change_kind::remove && c.subject.id == cfg_.id) {
    if (const node_id to = most_up_to_date_voter().first; to != no_node) {
      transfer_leadership(to);
      res.error = change_error::transfer_in_progress;
      return res;
    }
  }
  res.index = last_index() + 1;
  res.term = term_;
  append_local(
      entry{term_, res.index, entry_type::config, encode_membership(std::get<membership>(next))});
  append_due_ = true;
  maybe_commit();
  return res;
}

// ---------------------------------------------------------------------------------------
// Log helpers.

std::optional<term_t> core::term_at(index_t i) const {
  if (i == snapshot_index_) return snapshot_term_;
  if (i < snapshot_index_ || i > last_index()) return std::nullopt;
  return entries_[slot(i)].term;
}

const entry* core::entry_at(index_t i) const {
  if (i <= snapshot_index_ || i > last_index()) return nullptr;
  return &entries_[slot(i)];
}

// §5.4.1: a voter denies its vote if its own log is more up-to-date than the candidate's.
bool core::up_to_date(index_t last, term_t last_term) const {
  term_t my_last_term = *term_at(last_index());
  return last_term > my_last_term || (last_term == my_last_term && last >= last_index());
}

void core::append_local(entry e) {
  if (e.type == entry_type::config) {
    if (auto m = decode_membership(e.data)) {
      const index_t at = e.index;
      entries_.push_back(std::move(e));
      set_config(std::move(*m), at);
      return;
    }
  }
  entries_.push_back(std::move(e));
}

// Replace everything from `from` on with new_entries (which start at `from`).
void core::truncate_and_append(index_t from, std::vector<entry> new_entries) {
  bool config_changes = from <= config_index_;
  for (const auto& e : new_entries) config_changes = config_changes || e.type == entry_type::config;
  if (from <= last_index()) {
    entries_.resize(slot(from));
    if (from < unstable_from_) {
      // Stored entries conflict: storage must delete them before appending.
      out_.truncate_from = out_.truncate_from ? std::min(*out_.truncate_from, from) : from;
      unstable_from_ = from;
    }
    if (persisted_ >= from) persisted_ = from - 1;
  }
  for (auto& e : new_entries) entries_.push_back(std::move(e));
  if (config_changes) recompute_config();
}

void core::commit_to(index_t i) {
  if (i > commit_) commit_ = std::min(i, last_index());
}

// Only entries this node has applied (so committed: never truncated) and holds durably (so
// storage can give them back) lose their payloads. Config entries keep theirs: the
// configuration is recomputed from them after a truncation or an install.
void core::release_payloads() {
  if (!cfg_.release_applied_payloads) return;
  const index_t upto = std::min({applied_, persisted_, last_index()});
  for (index_t i = std::max(released_to_, snapshot_index_) + 1; i <= upto; ++i) {
    entry& e = entries_[slot(i)];
    if (e.type != entry_type::normal || e.data.empty()) continue;
    e.released_bytes = static_cast<std::uint32_t>(e.data.size());
    e.data.clear();
  }
  if (upto > released_to_) released_to_ = upto;
}

// ---------------------------------------------------------------------------------------
// Roles.

void core::randomize_timeout() {
  randomized_timeout_ = cfg_.election_ticks + rng_() % cfg_.election_ticks;
}

void core::reset(term_t term) {
  if (term != term_) {
    term_ = term;
    vote_ = no_node;
  }
  leader_ = no_node;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  randomize_timeout();
  votes_.clear();
  transferee_ = no_node;
  transfer_elapsed_ = 0;
  drop_all_reads();
  progress_.clear();
  append_due_ = false;
  term_unsafe_ = false;
  lease_probes_.clear();
  lease_until_ = 0;
  lease_void_ = false;
}

void core::become_follower(term_t term, node_id leader) {
  reset(term);
  role_ = role::follower;
  leader_ = leader;
}

// Thesis §9.6: a pre-candidate asks whether it could win before disturbing anyone; its
// term does not change.
void core::become_pre_candidate() {
  votes_.clear();
  drop_all_reads();
  progress_.clear();
  transferee_ = no_node;
  role_ = role::pre_candidate;
  leader_ = no_node;
  election_elapsed_ = 0;
  randomize_timeout();
}

void core::become_candidate(bool) {
  reset(term_ + 1);
  role_ = role::candidate;
  vote_ = cfg_.id;
}

void core::become_leader() {
  reset(term_);
  role_ = role::leader;
  leader_ = cfg_.id;
  sync_progress();  // every member (learners too) from last_index() + 1; all recently active
  // Thesis §6.4: a new leader commits a no-op entry of its own term, which also lets it
  // learn the commit index for ReadIndex (and allows membership changes, thesis §4.1).
  term_start_ = last_index() + 1;
  // Won without anyone's vote but its own (a single voter): the term it leads is not durable
  // yet. Until it is, replication waits for this node's own write too, or a crash could
  // bring it back in the old term to lead the same term again with other entries, while
  // a learner or a leaving member holds the lost ones (two entries at one index and term).
  term_unsafe_ = last_hs_.term != term_;
  append_local(entry{term_, last_index() + 1, entry_type::noop, {}});
  broadcast_append();
  maybe_commit();  // single-node cluster
}

// The vote lease of thesis §4.2.3, and what a leader's read lease relies on (lease_valid()).
// With read leases on (on every member, like the timings), the first election timeout after
// start counts as one: this node may have acknowledged a heartbeat just before it
// restarted, and the leader may be serving reads on that.
bool core::lease_active() const {
  if (!cfg_.check_quorum) return false;
  if (cfg_.lease_ms > 0 && ticks_ < cfg_.election_ticks) return true;
  return leader_ != no_node && election_elapsed_ < cfg_.election_ticks;
}

bool core::lease_valid() const {
  if (cfg_.lease_ms <= 0 || !cfg_.check_quorum || role_ != role::leader || lease_void_)
    return false;
  if (cfg_.mutation != unsafe_mutation::lease_survives_transfer &&
      (standing_down_ || transferee_ != no_node))
    return false;
  return mono_ms_ < lease_until_;
}

std::optional<read_state> core::lease_read() {
  if (!lease_valid() || *term_at(commit_) != term_) return std::nullopt;
  ++lease_reads_;
  return read_state{0, commit_, wall_ms_};
}

void core::set_peer_read_lease(node_id id, std::int64_t lease_ms) {
  if (id == cfg_.id) return;
  const bool counted = counts_for_lease(id);
  peer_read_lease_[id] = lease_ms;
  if (counted && !counts_for_lease(id)) {
    lease_until_ = 0;  // its earlier acknowledgements promised what it may no longer keep
  }
}

bool core::counts_for_lease(node_id id) const {
  if (cfg_.mutation == unsafe_mutation::lease_trusts_every_peer) return true;
  const auto it = peer_read_lease_.find(id);
  return it != peer_read_lease_.end() && it->second >= cfg_.lease_ms;
}

void core::extend_lease() {
  if (cfg_.lease_ms <= 0 || role_ != role::leader || lease_void_) return;
  // The highest heartbeat a quorum has echoed: this node counts for any, peers up to theirs
  // if their own lease is at least this node's (set_peer_read_lease()), else for nothing.
  const std::size_t self = counts(cfg_.id) ? 1 : 0;
  const std::size_t need = quorum() > self ? quorum() - self : 0;
  std::uint64_t confirmed = read_seq_;
  if (need > 0) {
    std::vector<std::uint64_t> acked;
    for (const auto& [id, pr] : progress_)
      if (counts(id) && counts_for_lease(id)) acked.push_back(pr.read_ack_seq);
    if (acked.size() < need) return;
    std::nth_element(acked.begin(), acked.begin() + (need - 1), acked.end(), std::greater<>());
    confirmed = acked[need - 1];
  }
  while (!lease_probes_.empty() && lease_probes_.front().seq <= confirmed) {
    lease_until_ = std::max(lease_until_, lease_probes_.front().sent_ms + cfg_.lease_ms);
    lease_probes_.pop_front();
  }
}

// Learners, joining nodes and removed nodes never campaign, with one exception: one of two
// voters whose own removal is the latest configuration entry in its log, not known
// committed. It may hold the only copy of that entry (it got the entry from the leader,
// which replicates before its own write is durable, and the leader crashed before that
// write was), and the other voter cannot win without its vote, which
// its longer log makes it refuse: nobody would ever lead again. Someone must commit the
// entry, and only it can: it campaigns among the new configuration's voters (counting
// itself for nothing), commits the entry and hands over (maybe_leave). With three voters or
// more the others elect a leader without it, so it keeps quiet.
bool core::may_campaign() const {
  if (counts(cfg_.id)) return true;
  if (config_index_ <= commit_ || config_index_ <= snapshot_index_) return false;
  const membership before = config_at(config_index_ - 1);
  return before.is_voter(cfg_.id) && before.voters().size() == 2;
}

void core::start_campaign(bool pre_vote, bool transfer) {
  if (!may_campaign()) return;
  if (pre_vote) {
    become_pre_candidate();
  } else {
    become_candidate(transfer);
  }
  term_t vote_term = pre_vote ? term_ + 1 : term_;
  if (counts(cfg_.id)) votes_[cfg_.id] = true;  // only voters of the configuration elect
  if (votes_.size() >= quorum()) {              // single-node cluster
    if (pre_vote) {
      start_campaign(false, transfer);
    } else {
      become_leader();
    }
    return;
  }
  index_t li = last_index();
  term_t lt = *term_at(li);
  for (auto v : voters_) {
    if (v == cfg_.id) continue;
    message m{cfg_.id, v, vote_term, vote_request{li, lt, pre_vote, transfer}};
    out_.messages_after_persist.push_back(std::move(m));
  }
}

void core::campaign() {
  if (role_ == role::leader || standing_down_) return;
  start_campaign(cfg_.pre_vote, false);
}

void core::stand_down() {
  if (standing_down_) return;
  standing_down_ = true;
  stand_down_elapsed_ = 0;
  if (role_ != role::leader) return;
  if (const node_id best = most_up_to_date_voter().first; best != no_node)
    transfer_leadership(best);
}

// Leader: the voter other than itself to hand leadership to, and how much of the log it
// holds; no_node if there is none. The one with the longest log needs the fewest entries to
// become eligible (a transfer sends them before TimeoutNow), but only if it answers: one
// that went silent may be down with a log as long as anyone's, and a transfer to it fails
// after an election timeout, to be retried at it again. So voters heard from within two
// heartbeat periods come first; the others only when none was.
std::pair<node_id, index_t> core::most_up_to_date_voter() const {
  node_id best;
  index_t best_match;
  bool best_answers = false;
  for (const auto& [id, pr] : progress_) {
    if (!counts(id)) continue;
    const bool answers = pr.ticks_since_contact <= 2ull * cfg_.heartbeat_ticks;
    if (best == no_node || (answers && !best_answers) ||
        (answers == best_answers && pr.match > best_match)) {
      best = id;
      best_match = pr.match;
      best_answers = answers;
    }
  }
  return {best, best_match};
}

// ---------------------------------------------------------------------------------------
// Time.

void core::tick() {
  ++ticks_;
  drop_dead_entries();
  while (!forwarded_reads_.empty() &&
         ticks_ - forwarded_reads_.front().sent_at_tick >= 2ull * cfg_.election_ticks) {
    out_.dropped_reads.push_back(forwarded_reads_.front().context);
    forwarded_reads_.pop_front();
  }
  if (role_ == role::leader) {
    ++heartbeat_elapsed_;
    ++election_elapsed_;
    for (auto it = progress_.begin(); it != progress_.end();) {
      if (it->second.leaving && (it->second.match >= config_index_ ||
                                 ++it->second.leaving_ticks >= 2ull * cfg_.election_ticks)) {
        it = progress_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [id, pr] : progress_) {
      ++pr.ticks_since_contact;
      ++pr.ticks_in_state;
      ++pr.ticks_since_resend;
      // A snapshot (or probe) lost in the network would stall the peer forever: retry.
      if (pr.state == progress_state::snapshot && pr.ticks_in_state >= cfg_.election_ticks) {
        become_probe(pr);
        send_append(id, pr, true);
      }
    }
    if (standing_down_ && ++stand_down_elapsed_ >= cfg_.election_ticks) {
      // The hand-over did not happen within an election timeout (no voter reachable or
      // caught up): step down anyway, so the others elect a leader once our lease expires.
      become_follower(term_, no_node);
      return;
    }
    if (transferee_ != no_node && ++transfer_elapsed_ >= cfg_.election_ticks) {
      // Thesis §3.10: abort a transfer that does not complete within an election timeout.
      transferee_ = no_node;
      transfer_elapsed_ = 0;
      if (!counts(cfg_.id) && commit_ >= config_index_) {
        // Removed itself and no voter took over in time: step down anyway.
        become_follower(term_, no_node);
        return;
      }
    }
    if (election_elapsed_ >= cfg_.election_ticks) {
      election_elapsed_ = 0;
      // Thesis §6.2: a leader that has not heard from a quorum within an election timeout
      // steps down, so clients can find the real leader.
      if (cfg_.check_quorum) {
        std::size_t active = counts(cfg_.id) ? 1 : 0;
        for (auto& [id, pr] : progress_) {
          if (pr.recent_active && counts(id)) ++active;
          pr.recent_active = false;
        }
        if (active < quorum()) {
          become_follower(term_, no_node);
          return;
        }
      }
    }
    if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
      heartbeat_elapsed_ = 0;
      broadcast_heartbeat();
    }
    return;
  }
  ++election_elapsed_;
  if (election_elapsed_ >= randomized_timeout_) {
    election_elapsed_ = 0;
    // Nothing heard from the leader for an election timeout: forget it, which ends the vote
    // lease (§4.2.3) too. A node that may not campaign (a learner) must still answer those
    // that may: a new configuration can need its vote (a promotion not yet committed).
    if (role_ == role::follower) leader_ = no_node;
    if (!standing_down_) start_campaign(cfg_.pre_vote, false);
  }
}

// ---------------------------------------------------------------------------------------
// Messages.

void core::send(node_id to, message_body body) {
  // Nothing of a term may leave before the term is durable here (see term_unsafe_).
  bool now = send_before_persist(body) && !term_unsafe_;
  message m{cfg_.id, to, term_, std::move(body)};
  if (now) {
    out_.messages.push_back(std::move(m));
  } else {
    out_.messages_after_persist.push_back(std::move(m));
  }
}

void core::step(const message& m) {
  if (m.to != cfg_.id || m.from == cfg_.id) return;
  const auto* vreq = std::get_if<vote_request>(&m.body);
  const auto* vresp = std::get_if<vote_response>(&m.body);

  if (m.term > term_) {
    if (vreq && !vreq->transfer && lease_active()) {
      // Thesis §4.2.3: we heard from a leader within the minimum election timeout, so a
      // vote request (probably from a node that was partitioned away) must not depose it.
      return;
    }
    if (vreq && vreq->pre_vote) {
      // A pre-vote never changes our term.
    } else if (vresp && vresp->pre_vote && vresp->granted) {
      // Granted pre-votes carry the proposed term; they are not a newer term.
    } else {
      bool from_leader = std::holds_alternative<append_request>(m.body) ||
                         std::holds_alternative<heartbeat_request>(m.body) ||
                         std::holds_alternative<snapshot_request>(m.body) ||
                         std::holds_alternative<snapshot_chunk>(m.body);
      // Paper Figure 2, all servers: a higher term converts us to follower.
      become_follower(m.term, from_leader ? m.from : no_node);
    }
  } else if (m.term < term_) {
    // Paper Figure 2: reject stale terms. Answer a stale leader with our term so it steps
    // down (with pre-vote it may otherwise never learn a newer term exists).
    if (std::holds_alternative<append_request>(m.body) ||
        std::holds_alternative<heartbeat_request>(m.body) ||
        std::holds_alternative<snapshot_request>(m.body) ||
        std::holds_alternative<snapshot_chunk>(m.body)) {
      send(m.from, append_response{true, index_t{}, index_t{}, term_t{}, index_t{}});
    } else if (vreq && vreq->pre_vote) {
      send(m.from, vote_response{false, true});
    }
    return;
  }

  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, append_request>)
          handle_append(m, b);
        else if constexpr (std::is_same_v<T, append_response>)
          handle_append_response(m, b);
        else if constexpr (std::is_same_v<T, vote_request>)
          handle_vote(m, b);
        else if constexpr (std::is_same_v<T, vote_response>)
          handle_vote_response(m, b);
        else if constexpr (std::is_same_v<T, heartbeat_request>)
          handle_heartbeat(m, b);
        else if constexpr (std::is_same_v<T, heartbeat_response>)
          handle_heartbeat_response(m, b);
        else if constexpr (std::is_same_v<T, snapshot_request>)
          handle_snapshot(m, b);
        else if constexpr (std::is_same_v<T, timeout_now>)
          handle_timeout_now(m);
        else if constexpr (std::is_same_v<T, read_index_request>)
          handle_read_index_request(m, b);
        else if constexpr (std::is_same_v<T, read_index_response>)
          handle_read_index_response(m, b);
        else if constexpr (std::is_same_v<T, snapshot_chunk>)
          handle_snapshot_chunk(m);
        else if constexpr (std::is_same_v<T, snapshot_chunk_response>)
          handle_snapshot_chunk_response(m);
        else
          static_assert(always_false<T>, "message type without a handler");
      },
      m.body);
}

// Same term, from the leader: follow it.
static bool is_follower_of(role r) {
  return r != role::leader;
}

void core::handle_append(const message& m, const append_request& r) {
  if (!is_follower_of(role_)) return;  // two leaders in one term cannot happen
  if (role_ != role::follower || leader_ != m.from) become_follower(term_, m.from);
  election_elapsed_ = 0;

  append_response resp;
  if (r.prev_index < commit_) {
    // Everything up to commit is known to match; tell the leader where we are.
    resp.match_index = commit_;
    send(m.from, resp);
    return;
  }
  auto prev_term = term_at(r.prev_index);
  if (!prev_term || *prev_term != r.prev_term) {
    // Paper Figure 2, AppendEntries step 2: reply false if the log does not contain an
    // entry at prev_index whose term matches; add hints for fast back-tracking.
    resp.reject = true;
    resp.rejected_index = r.prev_index;
    if (r.prev_index > last_index()) {
      resp.conflict_index = last_index() + 1;
    } else {
      resp.conflict_term = *prev_term;
      index_t first = r.prev_index;
      while (first - 1 > commit_ && first - 1 > snapshot_index_ &&
             *term_at(first - 1) == *prev_term)
        --first;
      resp.conflict_index = first;
    }
    send(m.from, resp);
    return;
  }
  // Step 3 and 4: delete a conflicting suffix (never a matching one: a delayed shorter
  // request must not truncate entries a newer request appended), append what is new.
  index_t last_new = r.prev_index + r.entries.size();
  std::size_t k = 0;
  for (; k < r.entries.size(); ++k) {
    auto t = term_at(r.entries[k].index);
    if (!t || *t != r.entries[k].term) break;
  }
  if (k < r.entries.size()) {
    // Entries at or below commit never conflict (Log Matching + Leader Completeness).
    index_t from = r.entries[k].index;
    if (from <= commit_) return;  // impossible for a correct leader; refuse silently
    truncate_and_append(from, std::vector<entry>(r.entries.begin() + k, r.entries.end()));
  }
  // Step 5: commit = min(leader commit, index of last new entry).
  commit_to(std::min(r.commit, last_new));
  resp.match_index = last_new;
  send(m.from, resp);
}

void core::become_probe(progress& pr) {
  if (pr.state == progress_state::snapshot) {
    pr.next = std::max(pr.match + 1, pr.pending_snapshot + 1);
  } else {
    pr.next = pr.match + 1;
  }
  pr.state = progress_state::probe;
  pr.probe_sent = false;
  pr.inflight.clear();
  pr.ticks_in_state = 0;
}

void core::become_replicate(progress& pr) {
  pr.state = progress_state::replicate;
  pr.next = pr.match + 1;
  pr.probe_sent = false;
  pr.inflight.clear();
  pr.ticks_in_state = 0;
}

void core::handle_append_response(const message& m, const append_response& r) {
  if (role_ != role::leader) return;
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  progress& pr = it->second;
  pr.recent_active = true;
  pr.ticks_since_contact = 0;

  if (r.reject) {
    if (r.rejected_index <= pr.match) return;                                          // stale
    if (pr.state == progress_state::probe && r.rejected_index != pr.next - 1) return;  // stale
    if (pr.state == progress_state::snapshot) return;
    // Fast back-tracking: skip whole terms instead of one entry per round trip.
    index_t next;
    if (r.conflict_term == term_t{}) {
      next = r.conflict_index;
    } else {
      next = r.conflict_index;
      for (index_t i = std::min(r.rejected_index, last_index()); i > snapshot_index_; --i) {
        term_t t = *term_at(i);
        if (t < r.conflict_term) break;
        if (t == r.conflict_term) {
          next = i + 1;
          break;
        }
      }
    }
    become_probe(pr);
    pr.next = std::clamp(next, pr.match + 1, r.rejected_index);
    send_append(m.from, pr, true);
    return;
  }

  bool updated = false;
  if (r.match_index > pr.match) {
    pr.match = r.match_index;
    updated = true;
  }
  if (pr.next < pr.match + 1) pr.next = pr.match + 1;
  while (!pr.inflight.empty() && pr.inflight.front() <= r.match_index) pr.inflight.pop_front();
  if (pr.state == progress_state::probe) {
    if (updated || r.match_index == pr.match) become_replicate(pr);
  } else if (pr.state == progress_state::snapshot && pr.match >= pr.pending_snapshot) {
    become_probe(pr);
    become_replicate(pr);
  }
  if (updated && maybe_commit()) {
    broadcast_append();
  } else {
    send_append(m.from, pr, false);
  }
  // Thesis §3.10: once the transferee is caught up, tell it to start an election.
  if (transferee_ == m.from && pr.match == last_index()) {
    send(m.from, timeout_now{});
    // A leader that removed itself is done once its successor has everything.
    if (!counts(cfg_.id) && commit_ >= config_index_) become_follower(term_, no_node);
  }
}

void core::handle_vote(const message& m, const vote_request& r) {
  bool log_ok =
      up_to_date(r.last_index, r.last_term) || cfg_.mutation == unsafe_mutation::vote_ignores_log;
  if (r.pre_vote) {
    // Thesis §9.6: grant a pre-vote if we would grant the real vote in the proposed term.
    bool grant = m.term > term_ && log_ok;
    message resp{cfg_.id, m.from, grant ? m.term : term_, vote_response{grant, true}};
    out_.messages_after_persist.push_back(std::move(resp));
    return;
  }
  // Paper Figure 2, RequestVote: grant if we have not voted for someone else this term
  // and the candidate's log is at least as up-to-date as ours (§5.4.1).
  bool can_vote = (vote_ == no_node || vote_ == m.from) && (leader_ == no_node || r.transfer);
  bool grant = can_vote && log_ok && role_ != role::leader;
  if (grant) {
    vote_ = m.from;
    election_elapsed_ = 0;
  }
  send(m.from, vote_response{grant, false});
}

void core::handle_vote_response(const message& m, const vote_response& r) {
  bool want_pre = role_ == role::pre_candidate;
  if (r.pre_vote != want_pre) return;
  if (role_ != role::pre_candidate && role_ != role::candidate) return;
  if (r.pre_vote && m.term != term_ + 1 && r.granted) return;  // answer to an older round
  if (r.pre_vote && !r.granted && m.term > term_) {
    become_follower(m.term, no_node);
    return;
  }
  if (!counts(m.from)) return;  // only voters of our configuration elect
  votes_.emplace(m.from, r.granted);
  std::size_t yes = 0, no = 0;
  for (auto& [id, g] : votes_) (g ? yes : no)++;
  if (yes >= quorum()) {
    if (role_ == role::pre_candidate) {
      start_campaign(false, false);
    } else {
      become_leader();
    }
  } else if (no >= quorum()) {
    become_follower(term_, no_node);
  }
}

void core::handle_heartbeat(const message& m, const heartbeat_request& r) {
  if (!is_follower_of(role_)) return;
  if (role_ != role::follower || leader_ != m.from) become_follower(term_, m.from);
  election_elapsed_ = 0;
  // The leader only sends a commit index we are known to hold (min(match, commit)).
  commit_to(std::min(r.commit, last_index()));
  send(m.from, heartbeat_response{r.read_seq});
}

void core::handle_heartbeat_response(const message& m, const heartbeat_response& r) {
  if (role_ != role::leader) return;
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  progress& pr = it->second;
  pr.recent_active = true;
  pr.ticks_since_contact = 0;
  if (r.read_seq > pr.read_ack_seq) {
    pr.read_ack_seq = r.read_seq;
    extend_lease();
  }
  release_reads();
  // A peer that answers heartbeats but lags may have lost requests: retry a probe, or free
  // one slot of the pipeline, so replication cannot stall for good. Once per heartbeat
  // period, not once per answer: every ReadIndex round is a heartbeat round, and a peer
  // catching up would otherwise be sent one more append (up to max_bytes_per_append) per
  // read the leader serves.
  if (pr.match < last_index() && pr.ticks_since_resend >= cfg_.heartbeat_ticks) {
    pr.ticks_since_resend = 0;
    pr.probe_sent = false;
    if (pr.state == progress_state::replicate && pr.inflight.size() >= cfg_.max_inflight)
      pr.inflight.pop_front();
    send_append(m.from, pr, true);
  }
}

// Paper §7: InstallSnapshot.
void core::handle_snapshot(const message& m, const snapshot_request& r) {
  if (!is_follower_of(role_)) return;
  if (role_ != role::follower || leader_ != m.from) become_follower(term_, m.from);
  election_elapsed_ = 0;
  append_response resp;
  if (r.meta.index <= commit_) {
    resp.match_index = commit_;
    send(m.from, resp);
    return;
  }
  auto t = term_at(r.meta.index);
  if (t && *t == r.meta.term) {
    // We already hold the entries it covers: just learn that they are committed.
    commit_to(r.meta.index);
    resp.match_index = r.meta.index;
    send(m.from, resp);
    return;
  }
  // Discard the whole log and restart from the snapshot.
  entries_.clear();
  dead_front_ = 0;
  snapshot_index_ = r.meta.index;
  snapshot_term_ = r.meta.term;
  if (!r.meta.config.empty()) snapshot_config_ = r.meta.config;
  recompute_config();
  commit_ = r.meta.index;
  applied_ = r.meta.index;
  if (persisted_ > snapshot_index_) persisted_ = snapshot_index_;
  unstable_from_ = snapshot_index_ + 1;
  out_.truncate_from.reset();
  out_.entries.clear();
  out_.committed.clear();
  out_.snapshot = received_snapshot{r.meta, r.data, r.file};
  resp.match_index = r.meta.index;
  send(m.from, resp);
}

// A piece of a streamed snapshot: the drive loop keeps the bytes (raft/replica.h); here it
// only proves the leader alive, so that a transfer longer than an election timeout starts
// no election.
void core::handle_snapshot_chunk(const message& m) {
  if (!is_follower_of(role_)) return;
  if (role_ != role::follower || leader_ != m.from) become_follower(term_, m.from);
  election_elapsed_ = 0;
}

// The follower is alive and receiving: keep check-quorum content and do not restart the
// transfer while it progresses (tick() retries a snapshot that went silent).
void core::handle_snapshot_chunk_response(const message& m) {
  if (role_ != role::leader) return;
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  progress& pr = it->second;
  pr.recent_active = true;
  pr.ticks_since_contact = 0;
  if (pr.state == progress_state::snapshot) pr.ticks_in_state = 0;
}

void core::report_snapshot(node_id to, bool ok) {
  if (role_ != role::leader) return;
  auto it = progress_.find(to);
  if (it == progress_.end() || it->second.state != progress_state::snapshot) return;
  // Failed: probe again (a later send_append starts a new transfer). Done: the follower's
  // append_response moves it to replicate; nothing to do until it arrives.
  if (!ok) become_probe(it->second);
}

void core::handle_timeout_now(const message& m) {
  if (role_ == role::leader || m.from != leader_ || standing_down_) return;
  // Thesis §3.10: the leader asked us to take over; skip pre-vote and the lease.
  start_campaign(false, true);
}

// ---------------------------------------------------------------------------------------
// Replication (leader).

bool core::paused(const progress& pr) const {
  switch (pr.state) {
    case progress_state::probe:
      return pr.probe_sent;
    case progress_state::replicate:
      return pr.inflight.size() >= cfg_.max_inflight;
    case progress_state::snapshot:
      return true;
  }
  return true;
}

void core::send_append(node_id to, progress& pr, bool allow_empty) {
  if (paused(pr)) return;
  index_t prev = pr.next - 1;
  auto prev_term = term_at(prev);
  if (!prev_term) {
    // Paper §7: the entries it needs are compacted away: send the snapshot instead. The
    // request carries the metadata only; the drive loop streams the bytes from storage.
    snapshot_meta meta{snapshot_index_, snapshot_term_, snapshot_config_};
    pr.state = progress_state::snapshot;
    pr.pending_snapshot = snapshot_index_;
    pr.ticks_in_state = 0;
    pr.inflight.clear();
    send(to, snapshot_request{std::move(meta), nullptr, nullptr});
    return;
  }
  append_request req;
  req.prev_index = prev;
  req.prev_term = *prev_term;
  std::uint64_t bytes = 0;
  if (pr.next <= last_index())
    req.entries.reserve(std::min<std::uint64_t>(last_index().value - pr.next.value + 1,
                                                cfg_.max_entries_per_append));
  for (index_t i = pr.next; i <= last_index(); ++i) {
    const entry& e = *entry_at(i);
    if (!req.entries.empty() && (req.entries.size() >= cfg_.max_entries_per_append ||
                                 bytes + payload_bytes(e) > cfg_.max_bytes_per_append))
      break;
    bytes += payload_bytes(e);
    req.entries.push_back(e);
  }
  if (req.entries.empty() && !allow_empty) return;
  // Followers may only adopt a commit index they are known to hold up to... the leader's
  // commit is safe once they pass the log-matching check, which this request carries.
  req.commit = commit_;
  if (!req.entries.empty()) {
    index_t last = req.entries.back().index;
    if (pr.state == progress_state::replicate) {
      // Pipelining: assume success and move on; a rejection falls back to probe.
      pr.next = last + 1;
      pr.inflight.push_back(last);
    } else {
      pr.probe_sent = true;
    }
  } else if (pr.state == progress_state::probe) {
    pr.probe_sent = true;
  }
  send(to, std::move(req));
}

void core::broadcast_append() {
  for (auto& [id, pr] : progress_) send_append(id, pr, true);
}

void core::broadcast_heartbeat() {
  ++read_seq_;
  if (cfg_.lease_ms > 0 && !lease_void_) {
    // Probes older than a lease could not extend it any more.
    while (!lease_probes_.empty() && lease_probes_.front().sent_ms + cfg_.lease_ms <= mono_ms_)
      lease_probes_.pop_front();
    if (lease_probes_.size() >= 4096) lease_probes_.pop_front();
    lease_probes_.push_back(lease_probe{read_seq_, mono_ms_});
  }
  for (auto& [id, pr] : progress_)
    send(id, heartbeat_request{std::min(pr.match, commit_), read_seq_});
  release_reads();  // single-node cluster
  extend_lease();   // the same: a leader that is a quorum alone confirms its probe at once
}

// The leader counts its own log only up to what it has persisted (thesis §10.2.1).
index_t core::self_match() const {
  return std::min(persisted_, last_index());
}

// Paper §5.3/§5.4.2: an entry is committed once stored on a majority, but only entries of
// the current term are committed by counting replicas; earlier ones commit indirectly.
bool core::maybe_commit() {
  if (role_ != role::leader) return false;
  // Only voters count: a learner's copy, or that of a member being removed, proves nothing
  // about the next election. A leader that removed itself does not count itself either.
  // A member buffer: this runs on every proposal and every acknowledgement.
  std::vector<index_t>& matches = match_scratch_;
  matches.clear();
  if (counts(cfg_.id)) matches.push_back(self_match());
  for (auto& [id, pr] : progress_)
    if (counts(id)) matches.push_back(pr.match);
  if (matches.size() < quorum()) return false;
  std::sort(matches.begin(), matches.end(), std::greater<>());
  index_t q = matches[quorum() - 1];
  if (q <= commit_) return false;
  if (cfg_.mutation != unsafe_mutation::commit_any_term && *term_at(q) != term_) return false;
  commit_ = q;
  // An entry of our term is now committed: reads waiting for it can start (thesis §6.4).
  if (*term_at(commit_) == term_) {
    auto waiting = std::move(reads_waiting_);
    reads_waiting_.clear();
    for (auto& r : waiting) start_read(r.context, r.requester);
  }
  maybe_leave();
  return true;
}

propose_result core::propose(payload data) {
  propose_result res;
  if (role_ != role::leader) {
    res.error = propose_error::not_leader;
    return res;
  }
  if (transferee_ != no_node) {
    res.error = propose_error::transfer_in_progress;
    return res;
  }
  res.index = last_index() + 1;
  res.term = term_;
  append_local(entry{term_, res.index, entry_type::normal, std::move(data)});
  // Replicate when the batch is taken: proposals made together share one AppendEntries
  // per peer.
  append_due_ = true;
  maybe_commit();
  return res;
}

void core::transfer_leadership(node_id to) {
  if (role_ != role::leader || !counts(to)) return;
  auto it = progress_.find(to);
  if (it == progress_.end()) return;
  transferee_ = to;
  transfer_elapsed_ = 0;
  // The TimeoutNow may arrive whenever; the transferee's votes ignore the vote lease.
  if (cfg_.mutation != unsafe_mutation::lease_survives_transfer) {
    lease_void_ = true;
    lease_until_ = 0;
  }
  if (it->second.match == last_index()) {
    send(to, timeout_now{});
  } else {
    send_append(to, it->second, true);
  }
}

// ---------------------------------------------------------------------------------------
// ReadIndex (thesis §6.4).

void core::read_index(std::uint64_t context) {
  if (role_ == role::leader) {
    start_read(context, cfg_.id);
    return;
  }
  if (leader() == no_node) {
    out_.dropped_reads.push_back(context);
    return;
  }
  if (forwarded_reads_.size() >= max_forwarded_reads) {
    out_.dropped_reads.push_back(forwarded_reads_.front().context);
    forwarded_reads_.pop_front();
  }
  forwarded_reads_.push_back(forwarded_read{context, ticks_});
  send(leader_, read_index_request{context});
}

void core::start_read(std::uint64_t context, node_id requester) {
  // Until an entry of this term commits, the leader does not know the commit index.
  if (*term_at(commit_) != term_) {
    reads_waiting_.push_back(pending_read{context, commit_, 0, requester});
    return;
  }
  if (cfg_.mutation == unsafe_mutation::read_without_quorum) {
    answer_read(pending_read{context, commit_, 0, requester}, true);
    return;
  }
  if (auto point = lease_read()) {
    // No other leader can exist yet (core.h, "Read leases"): the commit index is current.
    answer_read(pending_read{context, point->index, 0, requester}, true);
    return;
  }
  // Confirm leadership with a fresh heartbeat round acknowledged by a quorum. Reads started
  // together share the round, which is sent when the batch is taken (or by the next tick).
  reads_.push_back(pending_read{context, commit_, read_seq_ + 1, requester});
  if (voters_.size() == 1) broadcast_heartbeat();
}

bool core::read_round_due() const {
  return role_ == role::leader && !reads_.empty() && reads_.back().seq > read_seq_;
}

void core::release_reads() {
  while (!reads_.empty()) {
    const auto& r = reads_.front();
    std::size_t acks = counts(cfg_.id) ? 1 : 0;
    for (auto& [id, pr] : progress_)
      if (counts(id) && pr.read_ack_seq >= r.seq) ++acks;
    if (acks < quorum()) break;
    answer_read(r, true);
    reads_.pop_front();
  }
}

void core::answer_read(const pending_read& r, bool ok) {
  if (r.requester == cfg_.id) {
    if (ok) {
      out_.read_states.push_back(read_state{r.context, r.index, wall_ms_});
    } else {
      out_.dropped_reads.push_back(r.context);
    }
  } else {
    send(r.requester, read_index_response{r.context, r.index, ok, ok ? wall_ms_ : 0});
  }
}

void core::drop_all_reads() {
  for (auto& r : reads_waiting_) answer_read(r, false);
  for (auto& r : reads_) answer_read(r, false);
  reads_waiting_.clear();
  reads_.clear();
  for (const auto& r : forwarded_reads_) out_.dropped_reads.push_back(r.context);
  forwarded_reads_.clear();
}

void core::handle_read_index_request(const message& m, const read_index_request& r) {
  if (role_ != role::leader) {
    send(m.from, read_index_response{r.context, index_t{}, false});
    return;
  }
  start_read(r.context, m.from);
}

void core::handle_read_index_response(const message&, const read_index_response& r) {
  auto it = std::find_if(forwarded_reads_.begin(), forwarded_reads_.end(),
                         [&](const forwarded_read& f) { return f.context == r.context; });
  if (it == forwarded_reads_.end()) return;  // duplicate, timed out or already dropped
  forwarded_reads_.erase(it);
  if (r.ok) {
    out_.read_states.push_back(read_state{r.context, r.index, r.leader_time_ms});
  } else {
    out_.dropped_reads.push_back(r.context);
  }
}

// ---------------------------------------------------------------------------------------
// Snapshots and persistence.

bool core::compact(index_t index, std::shared_ptr<const std::string>) {
  if (index <= snapshot_index_ || index > applied_ || index > persisted_) return false;
  term_t t = *term_at(index);
  snapshot_config_ = config_at(index);
  dead_front_ += index.value - snapshot_index_.value;
  snapshot_index_ = index;
  snapshot_term_ = t;
  drop_dead_entries();
  return true;
}

void core::drop_dead_entries() {
  const std::size_t n =
      std::min(dead_front_, std::max<std::size_t>(cfg_.compacted_entries_dropped_per_step, 1));
  if (n == 0) return;
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(n));
  dead_front_ -= n;
}

void core::on_persisted(index_t index, term_t term) {
  auto t = term_at(index);
  if (!t || *t != term) return;  // overwritten since: a later notice will come
  // The no-op came in the same write as the term, or a later one.
  if (term_unsafe_ && term == term_ && index >= term_start_) term_unsafe_ = false;
  if (index > persisted_ && index < unstable_from_) {
    persisted_ = index;
    release_payloads();
    if (role_ == role::leader && maybe_commit()) broadcast_append();
  }
}

bool core::has_ready() const {
  return !out_.empty() || append_due_ || read_round_due() || unstable_from_ <= last_index() ||
         applied_ < commit_ || last_hs_.term != term_ || last_hs_.vote != vote_;
}

ready core::take_ready() {
  if (role_ == role::leader && append_due_) {
    for (auto& [id, pr] : progress_) send_append(id, pr, false);
  }
  append_due_ = false;
  if (read_round_due()) broadcast_heartbeat();
  ready r = std::move(out_);
  out_ = ready{};
  if (unstable_from_ <= last_index())
    r.entries.reserve(last_index().value - unstable_from_.value + 1);
  for (index_t i = unstable_from_; i <= last_index(); ++i) r.entries.push_back(*entry_at(i));
  unstable_from_ = last_index() + 1;
  // The hard state goes out when the term or the vote changed: those must be durable before
  // any message that depends on them. The commit index alone never forces a write (each
  // would be one more fsync on every node per commit): it need not be durable, since a
  // restarted node clamps what it reads back and learns the rest from the leader. It rides
  // along, current, with any write that happens anyway.
  hard_state hs{term_, vote_, commit_};
  const bool writing = r.snapshot || r.truncate_from || !r.entries.empty();
  if (hs.term != last_hs_.term || hs.vote != last_hs_.vote ||
      (writing && hs.commit != last_hs_.commit)) {
    r.hs = hs;
    last_hs_ = hs;
  }
  for (index_t i = applied_ + 1; i <= commit_; ++i) r.committed.push_back(*entry_at(i));
  applied_ = commit_;
  release_payloads();
  return r;
}

raft::status core::status() const {
  raft::status s;
  s.id = cfg_.id;
  s.role = role_;
  s.term = term_;
  s.vote = vote_;
  s.leader = leader_;
  s.commit = commit_;
  s.applied = applied_;
  s.first_index = first_index();
  s.last_index = last_index();
  s.snapshot_index = snapshot_index_;
  s.persisted_index = persisted_;
  for (const auto& [id, pr] : progress_) {
    if (pr.leaving) continue;
    s.peers.push_back(
        peer_status{id, counts(id), pr.match, pr.next, pr.state, pr.ticks_since_contact});
  }
  std::sort(s.peers.begin(), s.peers.end(),
            [](const peer_status& a, const peer_status& b) { return a.id < b.id; });
  s.config = config_;
  s.config_index = config_index_;
  s.lease_reads = lease_reads_;
  return s;
}

std::optional<std::string> core::check_invariants() const {
  // Called after every event by the simulator: a plain string, no stream, in the common case
  // of nothing to report.
  struct text {
    std::string s;
    text& operator<<(const char* v) {
      s += v;
      return *this;
    }
    text& operator<<(std::uint64_t v) {
      s += std::to_string(v);
      return *this;
    }
    std::string str() const { return s; }
  } err;
  for (std::size_t k = 0; k + dead_front_ < entries_.size(); ++k) {
    const entry& e = entries_[dead_front_ + k];
    if (e.index != snapshot_index_ + (k + 1)) err << "log index gap at " << e.index.value << "; ";
    term_t prev = k == 0 ? snapshot_term_ : entries_[dead_front_ + k - 1].term;
    if (e.term < prev) err << "log terms decrease at " << e.index.value << "; ";
    if (e.term > term_) err << "entry term above current term at " << e.index.value << "; ";
    if (e.released_bytes != 0 &&
        (e.index > applied_ || !e.data.empty() || e.type != entry_type::normal)) {
      err << "payload released before it was applied, or not cleanly, at " << e.index.value << "; ";
    }
  }
  if (commit_ > last_index()) err << "commit beyond last index; ";
  if (commit_ < snapshot_index_) err << "commit below snapshot; ";
  if (applied_ > commit_) err << "applied beyond commit; ";

  if (persisted_ > last_index()) err << "persisted beyond last index; ";
  if (unstable_from_ > last_index() + 1) err << "unstable_from beyond log end; ";
  if (role_ == role::leader) {
    if (leader_ != cfg_.id) err << "leader does not know itself; ";
    if (vote_ != cfg_.id) err << "leader did not vote for itself; ";
    for (auto& [id, pr] : progress_) {
      if (pr.match >= pr.next) err << "peer " << id.value << " match >= next; ";
      if (pr.match > last_index()) err << "peer " << id.value << " match beyond log; ";
      if (pr.inflight.size() > cfg_.max_inflight) err << "too many in flight; ";
    }
  } else if (!progress_.empty()) {
    err << "non-leader keeps progress; ";
  }
  if (role_ == role::candidate && vote_ != cfg_.id) err << "candidate did not vote for itself; ";
  if (!reads_.empty() && role_ != role::leader) err << "non-leader holds reads; ";
  auto s = err.str();
  if (s.empty()) return std::nullopt;
  return s;
}

}  // namespace raft
