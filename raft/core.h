// The Raft consensus core: a deterministic state machine with no I/O, clock or threads.
//
// The environment (the node runtime, or the simulator in tests) drives it:
//   - step(m)            for every message received from a peer;
//   - tick()             every tick_ms of wall-clock time (logical time in tests);
//   - propose(data)      to replicate a client command (leader only);
//   - read_index(ctx)    to start a linearizable read (thesis §6.4);
//   - transfer_leadership(to), compact(index, bytes);
// and after any of these, when has_ready(), takes the output batch with ready() and acts on
// each field in the order documented on struct ready. Persistence is acknowledged with
// on_persisted(index, term). raft/README.md states the contract in full.
//
// Nothing here blocks or fails because of the environment: the network may drop, duplicate
// and reorder messages; the core copes with all three.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "raft/membership.h"
#include "raft/message.h"
#include "raft/types.h"

namespace raft {

enum class role : std::uint8_t { follower, pre_candidate, candidate, leader };
const char* to_string(role r);

// Deliberately broken rules, only for proving that the simulator catches them.
// Never set outside tests.
enum class unsafe_mutation : std::uint8_t {
  none,
  vote_ignores_log,           // grant votes without the §5.4.1 up-to-date check
  commit_any_term,            // count replicas of previous-term entries (violates §5.4.2)
  read_without_quorum,        // answer ReadIndex without confirming leadership (violates §6.4)
  lease_survives_transfer,    // keep serving reads on the lease after starting a leadership
                              // transfer (whose election skips the followers' vote lease)
  change_before_term_commit,  // allow a membership change before the leader's term commits
                              // (the bug thesis §4.1 fixes)
  lease_trusts_every_peer,    // count every peer's acknowledgements toward the read lease,
                              // whatever lease it announced (set_peer_read_lease())
};

struct config {
  node_id id;  // this node
  // The configuration to start from when storage holds none (no config entry in the log, no
  // configuration in the snapshot): a new cluster's member list. `bootstrap` when not empty
  // (with the members' endpoints), else `voters`, each a voter without endpoints. Both empty:
  // a node that joins an existing cluster; it never campaigns until its log makes it a voter.
  std::vector<node_id> voters;
  membership bootstrap;
  std::uint32_t election_ticks = 10;  // minimum election timeout; actual is [e, 2e)
  std::uint32_t heartbeat_ticks = 2;  // leader heartbeat period; must be < election_ticks
  std::uint32_t max_inflight = 64;    // AppendEntries in flight per peer (pipelining)
  std::uint32_t max_entries_per_append = 256;
  std::uint64_t max_bytes_per_append = 1 << 20;  // at least one entry is always sent
  std::uint64_t seed = 1;                        // seeds the election-timeout randomisation
  bool pre_vote = true;                          // thesis §9.6
  bool check_quorum = true;  // thesis §6.2 leader step-down + §4.2.3 vote lease
  // Leader lease for reads (thesis §6.4.1; see "Read leases" below), in the monotonic
  // milliseconds of set_clock(). 0 = off: every read confirms leadership with a heartbeat
  // round. Needs check_quorum, on every member. replica.h's leader_lease_ms() derives it.
  std::int64_t lease_ms = 0;
  // Memory: once a normal entry is applied and durable here, drop its payload and keep only
  // index, term and size (entry::released_bytes). The log since the last snapshot can be
  // half the state's size (the snapshot policy lets it grow that far); held whole it was
  // a third of a node's memory. An append that carries such an entry to a lagging peer
  // then has it read back from storage by the drive loop (raft/replica.h) before it goes.
  bool release_applied_payloads = false;
  // Compacted entries destroyed per compaction and per tick (see core's dead_front_): a
  // bound on what one step of the event loop spends on them.
  std::size_t compacted_entries_dropped_per_step = 8192;
  unsafe_mutation mutation = unsafe_mutation::none;
};

// What was loaded from stable storage at start-up.
struct restore_state {
  hard_state hs;                                     // term, vote, commit as persisted
  std::optional<snapshot_meta> snapshot;             // latest snapshot, if any
  std::shared_ptr<const std::string> snapshot_data;  // its bytes (the core does not keep them)
  std::vector<entry> entries;                        // log after the snapshot, contiguous
};

// A linearizable read point: once the state machine has applied `index`, a read for
// `context` may be served from it.
struct read_state {
  std::uint64_t context = 0;
  index_t index;
  // The leader's wall clock (Unix ms, from set_wall_clock_ms) when it confirmed the read;
  // 0 if unknown. A reader judges expiry by the later of this and its last applied stamp,
  // so a node whose own clock is skewed answers as the leader would.
  std::int64_t leader_time_ms = 0;

  bool operator==(const read_state&) const = default;
};

// A snapshot received from the leader, to install into the state machine: its bytes in
// memory (data) or held by the log store that assembled them (file, raft/interfaces.h).
struct received_snapshot {
  snapshot_meta meta;
  std::shared_ptr<const std::string> data;
  std::shared_ptr<snapshot_receiver> file;
};

// One batch of output. Act on the fields in this order:
struct ready {
  // 1. Persist, atomically and in order with earlier batches (one storage write):
  //    a. if snapshot: install it into the state machine, store it, and discard the whole
  //       stored log (the core's log now starts after snapshot->meta.index);
  //    b. if truncate_from: delete stored entries with index >= *truncate_from;
  //    c. append entries (contiguous; the first overwrites any stored entry at its index);
  //    d. if hs: store it (term, vote, commit). It comes when the term or vote changed, or
  //       with a write of the above; a commit-index change alone never makes one (the
  //       commit index need not be durable: a restart clamps it and the leader resends it).
  //    When that write is durable, call on_persisted(index, term) with the last entry of
  //    `entries` (or the snapshot's index/term if entries is empty and a snapshot came).
  std::optional<received_snapshot> snapshot;
  std::optional<index_t> truncate_from;
  std::vector<entry> entries;
  std::optional<hard_state> hs;

  // 2. Send now, before the write of step 1 is durable (leader replication: the leader's
  //    own disk write runs in parallel with its followers', thesis §10.2.1).
  std::vector<message> messages;
  // 3. Send only after the write of step 1 (and of every earlier batch) is durable:
  //    votes, acknowledgements and anything else that promises persisted state.
  std::vector<message> messages_after_persist;

  // 4. Apply to the state machine, in order (skip entry_type::noop). Entries are committed;
  //    they may be handed out before they are persisted locally, and may be handed out
  //    again after a restart (apply must tolerate re-application from the snapshot on).
  //    The node compares (index, term) with its proposals: same index, other term means
  //    its proposal was overwritten.
  std::vector<entry> committed;

  // 5. Reads: answer each once the state machine has applied read_states[k].index.
  std::vector<read_state> read_states;
  // Reads that will never get a read state (leadership lost, no leader, leader refused):
  // fail them (the client retries). A forwarded read can also vanish in the network, so
  // the node must time reads out as well.
  std::vector<std::uint64_t> dropped_reads;

  bool empty() const {
    return !snapshot && !truncate_from && entries.empty() && !hs && messages.empty() &&
           messages_after_persist.empty() && committed.empty() && read_states.empty() &&
           dropped_reads.empty();
  }
};

enum class propose_error : std::uint8_t {
  none,
  not_leader,            // redirect to leader_id() if known
  transfer_in_progress,  // leadership is being handed over: retry shortly
};

struct propose_result {
  propose_error error = propose_error::none;
  index_t index;  // where the entry was appended (valid when error == none)
  term_t term;    // the term it was appended in

  bool ok() const { return error == propose_error::none; }
};

// Replication progress of one peer, as the leader tracks it (etcd-style states).
enum class progress_state : std::uint8_t {
  probe,      // one AppendEntries at a time until the match point is found
  replicate,  // pipelined, up to max_inflight requests outstanding
  snapshot,   // a snapshot is on its way; nothing else is sent
};
const char* to_string(progress_state s);

struct peer_status {
  node_id id;
  bool voter = true;  // false: a learner
  index_t match;
  index_t next;
  progress_state state = progress_state::probe;
  std::uint64_t ticks_since_contact = 0;  // ticks since its last message to this leader
};

struct status {
  node_id id;
  raft::role role = role::follower;
  term_t term;
  node_id vote;
  node_id leader;
  index_t commit;
  index_t applied;      // last index handed out in ready::committed
  index_t first_index;  // first entry held in memory (snapshot_index + 1)
  index_t last_index;
  index_t snapshot_index;
  index_t persisted_index;
  std::vector<peer_status> peers;  // leader only; empty otherwise
  membership config;               // the configuration in use (latest in the log)
  index_t config_index;            // the entry that set it (0: bootstrap or snapshot)
  std::uint64_t lease_reads = 0;   // reads this node answered on its lease, as leader
};

// The outcome of core::propose_change.
struct change_result {
  change_error error = change_error::none;
  index_t index;  // where the configuration entry was appended (when error == none)
  term_t term;

  bool ok() const { return error == change_error::none; }
};

class core {
 public:
  // A fresh node (empty log) or one restored from storage.
  explicit core(config cfg, restore_state restored = {});

  // Feed a message from a peer. Messages for another node are ignored.
  void step(const message& m);
  // Advance logical time by one tick.
  void tick();
  // Append a client command to the leader's log.
  propose_result propose(payload data);
  // Append a configuration entry for one membership change (raft/membership.h): leader only,
  // one change at a time, only once an entry of this term is committed; a promotion only
  // once the learner has caught up. The new configuration is in use from this call on.
  // The removal of the leader itself is not appended: it starts a leadership transfer to
  // the most up-to-date voter and is refused with transfer_in_progress, to be asked again
  // of the next leader.
  change_result propose_change(const membership_change& c);
  // Start a linearizable read (thesis §6.4). The answer comes later in ready::read_states
  // or ready::dropped_reads. On a follower, forwards to the leader (or drops if none).
  void read_index(std::uint64_t context);
  // Hand leadership to `to` (thesis §3.10). Ignored unless leader and `to` is a peer.
  // While in progress (at most one election timeout), proposals are refused.
  void transfer_leadership(node_id to);
  // Start an election now (tests and operators); ignored on a leader or a node standing down.
  void campaign();
  // This node can no longer make anything durable (disk full, I/O error): it must not hold
  // on to leadership, or the whole cluster waits behind it. A leader hands over to its most
  // up-to-date voter (thesis §3.10) and steps down after an election timeout whatever
  // happened; from now on the node never campaigns (a vote it granted could not be
  // persisted either, and the environment sends none). Irreversible for this process.
  void stand_down();
  bool standing_down() const { return standing_down_; }
  // The clocks as the environment sees them; the core never reads a clock. Call it right
  // before step()/tick()/read_index(). wall_ms (Unix ms) is stamped on read answers this
  // node gives as leader; monotonic_ms times read leases (config::lease_ms) and must never
  // be ahead of the real clock (a late value only shortens a lease).
  void set_clock(std::int64_t wall_ms, std::int64_t monotonic_ms) {
    wall_ms_ = wall_ms;
    mono_ms_ = monotonic_ms;
  }
  // Peer `id` announced (in its transport hello) the read lease it would hold as leader:
  // 0 when it has leases off. Only the acknowledgements of peers whose lease is at least
  // this node's count toward this node's lease ("Read leases" below); a peer never heard
  // from counts for nothing. A peer whose lease drops below this node's ends the lease in
  // force (it may have restarted with a shorter vote lease since it acknowledged). Not
  // covered: a peer that restarts with a shorter lease and, cut off from this node, votes
  // before its hello arrives, all within this node's lease of its last answer (the settings
  // changed across a restart of a fraction of a second).
  void set_peer_read_lease(node_id id, std::int64_t lease_ms);

  // The state machine has a snapshot covering every entry up to `index`, durable in storage:
  // drop that log prefix. Peers that fall behind get a snapshot_request with its metadata,
  // which the drive loop streams from storage (the bytes are not kept here; `data` is
  // accepted and ignored). Returns false (and does nothing) unless
  // snapshot_index < index <= min(applied, persisted).
  bool compact(index_t index, std::shared_ptr<const std::string> data = {});
  // The drive loop's transfer of a snapshot to `to` ended: ok = the follower verified it
  // (its append_response follows), else it failed for good (no file, too many stalls) and
  // the peer goes back to probing, which asks for a new transfer.
  void report_snapshot(node_id to, bool ok);

  bool has_ready() const;
  // Take the pending output batch (see struct ready for what to do with it). Proposals and
  // reads made since the previous call are replicated / confirmed by this batch's messages.
  ready take_ready();
  // Storage has made every entry up to (index, term) durable (and the hard state and
  // snapshot of the same batches). Stale notices (the entry was since overwritten) are
  // ignored.
  void on_persisted(index_t index, term_t term);

  // Status accessors.
  node_id id() const { return cfg_.id; }
  raft::role role() const { return role_; }
  term_t term() const { return term_; }
  node_id vote() const { return vote_; }
  // The known leader; no_node also while this node is not a member of its configuration
  // (removed, or joining and not caught up): its doors must answer as without a leader.
  node_id leader() const { return removed() ? no_node : leader_; }
  // The leader this node follows, even while it is in no configuration it knows (joining,
  // or holding a snapshot from before its addition): the drive loop takes its chunks.
  node_id followed_leader() const { return leader_; }
  // The configuration in use (the latest in the log, committed or not) and its entry.
  const membership& configuration() const { return config_; }
  index_t config_index() const { return config_index_; }
  // Bumped whenever configuration() changes (appended, truncated away, installed by a snapshot).
  std::uint64_t config_seq() const { return config_seq_; }
  // The configuration as of log index i (snapshot_index() <= i <= last_index()), which a
  // snapshot taken at i must carry.
  membership config_at(index_t i) const;
  // A configuration is known and this node is not in it.
  bool removed() const { return !config_.empty() && !config_.find(cfg_.id); }
  bool is_voter() const { return config_.is_voter(cfg_.id); }
  // Leader: member `id` receives the log as it is written, within one append of the commit
  // point, so promoting it will not stall commits (false on a follower, or for itself).
  bool caught_up(node_id id) const;
  index_t commit_index() const { return commit_; }
  index_t applied_index() const { return applied_; }
  index_t first_index() const { return snapshot_index_ + 1; }
  index_t last_index() const { return snapshot_index_ + (entries_.size() - dead_front_); }
  index_t snapshot_index() const { return snapshot_index_; }
  index_t persisted_index() const { return persisted_; }
  bool transferring() const { return transferee_ != no_node; }
  node_id transferee() const { return transferee_; }
  // Term of the entry at i, if known (the snapshot's last entry counts); nullopt otherwise.
  std::optional<term_t> term_at(index_t i) const;
  // The entry at i, if held in memory.
  const entry* entry_at(index_t i) const;
  raft::status status() const;

  // Checks the core's internal invariants; returns a description of the first one broken.
  std::optional<std::string> check_invariants() const;

  // Read leases (thesis §6.4.1). Every heartbeat the leader broadcasts carries a sequence
  // number (read_seq) that followers echo. Once a quorum (counting the leader) echoed the
  // heartbeat sent at monotonic time t, each of those followers heard from this leader at
  // t or later, and refuses any vote that is not a leadership transfer for a minimum
  // election timeout after that (lease_active(), thesis §4.2.3), counted in its own ticks.
  // No other leader can be elected before t + (its election timeout), so until
  // t + lease_ms (a margin shorter, config::lease_ms) this node is the only leader and
  // its commit index covers every acknowledged write: a read may use it at once, without
  // a round. That holds only if each follower in the quorum refuses votes at least as long
  // as this node's election timeout, i.e. runs with the same timings and leases on. Members
  // are configured apart, so it is checked, not assumed: each peer announces the lease it
  // would hold (set_peer_read_lease(), from the transport's hello), and only peers whose
  // lease is at least this node's count toward the quorum; with a mismatched member a
  // quorum of the others still gives a lease, and without one reads take a ReadIndex round.
  // The lease is void:
  //   - once this leader started a leadership transfer (TimeoutNow skips the vote lease),
  //     for the rest of its leadership, and while it stands down;
  //   - when the configuration changes (a new member has no lease of its own to keep);
  //   - before an entry of its term commits (it does not know the commit index yet).
  // A node that starts treats its start as having heard from a leader (lease_active()), so
  // a follower that restarted within a lease cannot vote the lease away either.
  bool lease_valid() const;
  // A read answered on the lease, if it holds: the read point (the commit index, this
  // node's wall clock), as read_index() would hand it out in ready::read_states, now.
  std::optional<read_state> lease_read();

 private:
  struct progress {
    index_t match;
    index_t next{1};
    progress_state state = progress_state::probe;
    bool probe_sent = false;           // probe: one request outstanding, wait
    std::deque<index_t> inflight;      // replicate: last index of each request in flight
    index_t pending_snapshot;          // snapshot: index of the snapshot sent
    std::uint64_t ticks_in_state = 0;  // to retry a lost snapshot
    bool recent_active = false;        // heard from in the current check-quorum period
    std::uint64_t ticks_since_contact = 0;
    // Since a heartbeat answer last made the leader resend (handle_heartbeat_response): at
    // most one such resend per heartbeat period, however many read rounds are answered.
    std::uint64_t ticks_since_resend = 0;
    std::uint64_t read_ack_seq = 0;  // highest heartbeat read_seq it acknowledged
    // Removed from the configuration: kept only until it holds the entry that removes it
    // (so that it learns it and stops campaigning) or for two election timeouts.
    bool leaving = false;
    std::uint64_t leaving_ticks = 0;
  };

  struct pending_read {
    std::uint64_t context;
    index_t index;
    std::uint64_t seq;  // heartbeat round that must be acknowledged by a quorum
    node_id requester;  // self, or a follower that forwarded it
  };

  // Roles.
  void become_follower(term_t term, node_id leader);
  void become_pre_candidate();
  void become_candidate(bool transfer);
  void become_leader();
  void reset(term_t term);
  void start_campaign(bool pre_vote, bool transfer);
  bool may_campaign() const;
  void randomize_timeout();

  // Handlers.
  void handle_append(const message& m, const append_request& r);
  void handle_append_response(const message& m, const append_response& r);
  void handle_vote(const message& m, const vote_request& r);
  void handle_vote_response(const message& m, const vote_response& r);
  void handle_heartbeat(const message& m, const heartbeat_request& r);
  void handle_heartbeat_response(const message& m, const heartbeat_response& r);
  void handle_snapshot(const message& m, const snapshot_request& r);
  void handle_timeout_now(const message& m);
  void handle_read_index_request(const message& m, const read_index_request& r);
  void handle_read_index_response(const message& m, const read_index_response& r);
  void handle_snapshot_chunk(const message& m);
  void handle_snapshot_chunk_response(const message& m);

  // Leader replication.
  void send_append(node_id to, progress& pr, bool allow_empty);
  void broadcast_append();
  void broadcast_heartbeat();
  bool maybe_commit();
  void become_probe(progress& pr);
  void become_replicate(progress& pr);
  bool paused(const progress& pr) const;
  index_t self_match() const;

  // ReadIndex.
  void start_read(std::uint64_t context, node_id requester);
  void release_reads();
  void answer_read(const pending_read& r, bool ok);
  void drop_all_reads();
  bool read_round_due() const;
  // A heartbeat answer arrived: extend the lease to what a quorum has confirmed.
  void extend_lease();

  // Log.
  bool up_to_date(index_t last_index, term_t last_term) const;
  void truncate_and_append(index_t from, std::vector<entry> new_entries);
  void append_local(entry e);
  index_t quorum_size() const { return index_t(voters_.size() / 2 + 1); }
  std::size_t quorum() const { return voters_.size() / 2 + 1; }
  void commit_to(index_t i);
  // Drops the payloads of normal entries up to min(applied, persisted), when configured.
  void release_payloads();

  void send(node_id to, message_body body);
  bool lease_active() const;

  // Membership.
  void set_config(membership m, index_t at);
  void recompute_config();
  void sync_progress();
  void maybe_leave();
  std::pair<node_id, index_t> most_up_to_date_voter() const;
  bool counts(node_id id) const { return config_.is_voter(id); }

  raft::config cfg_;
  std::vector<node_id> voters_;  // config_.voters(), sorted
  membership bootstrap_;         // cfg_.bootstrap, or cfg_.voters as voters
  membership config_;            // in use: the latest in the log
  index_t config_index_;         // its entry (snapshot_index_ or 0 when from snapshot/bootstrap)
  membership snapshot_config_;   // as of snapshot_index_
  std::uint64_t config_seq_ = 0;
  index_t term_start_;        // leader: index of its no-op (thesis §4.1 fix)
  bool term_unsafe_ = false;  // leader: its term is not durable yet (become_leader)
  std::mt19937_64 rng_;

  // Persistent state (paper Figure 2), mirrored to storage through ready::hs.
  term_t term_;
  node_id vote_;
  index_t commit_;

  raft::role role_ = role::follower;
  node_id leader_;
  std::uint64_t election_elapsed_ = 0;
  std::uint64_t heartbeat_elapsed_ = 0;
  std::uint64_t randomized_timeout_ = 0;
  std::unordered_map<node_id, bool> votes_;  // candidate: who answered, and how

  // The log since the last snapshot: entries_[dead_front_ + k].index == snapshot_index_ +
  // 1 + k. The first dead_front_ entries are compacted away already and only wait to be
  // destroyed: a compaction of half a million entries destroyed them all at once, which
  // held the event loop for 150 ms; they now go config::compacted_entries_dropped_per_step
  // at a time, at the compaction and at every tick (drop_dead_entries).
  index_t snapshot_index_;
  term_t snapshot_term_;
  std::deque<entry> entries_;
  std::size_t dead_front_ = 0;
  std::size_t slot(index_t i) const { return dead_front_ + (i.value - snapshot_index_.value - 1); }
  void drop_dead_entries();
  // Entries up to here had their payloads released (config::release_applied_payloads).
  index_t released_to_;

  index_t applied_;           // last index handed out for apply
  index_t persisted_;         // highest index known durable with the term we hold
  index_t unstable_from_{1};  // first index not yet handed out in ready::entries

  // Leader state.
  std::unordered_map<node_id, progress> progress_;
  std::vector<index_t> match_scratch_;  // maybe_commit()'s, kept to spare an allocation
  node_id transferee_;
  std::uint64_t transfer_elapsed_ = 0;
  std::uint64_t read_seq_ = 0;
  bool append_due_ = false;         // proposals appended since the last batch: replicate them
  std::deque<pending_read> reads_;  // confirmed in order of seq
  std::deque<pending_read> reads_waiting_;  // until an entry of this term commits

  // Follower: reads forwarded to the leader and not yet answered.
  // Bounded and timed out: an answer lost in the network (or a leader that never answers)
  // must not keep an entry forever (dropped after two election timeouts, oldest first beyond
  // max_forwarded_reads).
  struct forwarded_read {
    std::uint64_t context;
    std::uint64_t sent_at_tick;
  };
  static constexpr std::size_t max_forwarded_reads = 4096;
  std::deque<forwarded_read> forwarded_reads_;
  std::uint64_t ticks_ = 0;  // ticks since start, for forwarded read time-outs

  // Storage failed: never campaign; a leader steps down (stand_down()).
  bool standing_down_ = false;
  std::uint64_t stand_down_elapsed_ = 0;
  std::int64_t wall_ms_ = 0;  // set_clock()
  std::int64_t mono_ms_ = 0;  // set_clock()

  // Leader: read lease (lease_valid()). The heartbeats sent within the last lease_ms, with
  // when; the lease runs until lease_until_ (monotonic ms).
  struct lease_probe {
    std::uint64_t seq;
    std::int64_t sent_ms;
  };
  std::deque<lease_probe> lease_probes_;
  std::int64_t lease_until_ = 0;
  // What each peer announced (set_peer_read_lease()); kept across roles and configurations.
  std::map<node_id, std::int64_t> peer_read_lease_;
  bool counts_for_lease(node_id id) const;
  bool lease_void_ = false;  // a transfer was started in this leadership
  std::uint64_t lease_reads_ = 0;

  // Pending output.
  ready out_;
  hard_state last_hs_;
};

}  // namespace raft
