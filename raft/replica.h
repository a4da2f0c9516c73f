// raft::replica: the drive loop around raft::core. It owns the core and moves its output
// batches to a log store, a peer sender and a state machine (raft/interfaces.h), and it keeps
// the bookkeeping of the calls made on it: proposals waiting for their index, writes
// forwarded to the leader, ReadIndex rounds, reads waiting for the apply point, snapshots.
// Production runs it on one io_context thread (app/node.cc); the simulator (test/sim/) runs
// the very same code over an in-memory store and a simulated network.
//
// ## One batch, one fixed order
//
// Every event (tick, peer message, proposal, read, storage completion, snapshot written)
// calls the core and then schedules process_ready() through the executor hook, so that
// everything that happened in one turn of the executor shares one batch (one AppendEntries
// per peer, one heartbeat round for all reads). process_ready() takes batches until the core
// has none and handles each in the order of raft::ready:
//   1. persist: one persist_batch {install received snapshot, truncate_from, entries, hs}
//      (a received snapshot is first restored into the state machine);
//   2. send `messages` at once: the leader replicates while its own write is in flight
//      (thesis §10.2.1: it counts itself towards a quorum only up to its persisted index);
//   3. send `messages_after_persist` from the completion of the batch of step 1;
//   4. apply `committed` in order and complete the proposals waiting on those indexes;
//   5. match read states to the read round in flight.
// Then it logs role and leader changes, wakes reads whose index is applied, retries calls
// that were waiting for a leader, and starts a snapshot if `snapshot_entries` more entries
// were applied since the last one.
//
// ## Why after-persist messages wait
//
// A vote, an append acknowledgement, a read-index answer promise state that must survive a
// crash: a vote sent before the vote is durable lets a restarted node vote twice in a term;
// an acknowledgement sent before the entries are durable lets a leader count a copy that a
// crash erases, and a "committed" entry can then vanish. So they are sent only from the
// completion of their batch, which runs after that batch and every earlier one is durable
// (batches complete in order). A batch with nothing to write but messages to send is an
// empty barrier batch; when no batch is in flight at all, nothing earlier can still be
// pending, so its messages go out at once. A heartbeat answer promises less: only that
// this node follows the sender in its term. It waits for a batch only while a change of
// term or vote is on its way to the disk; otherwise it goes out at once, so a ReadIndex
// round (every linearizable read) does not wait for a follower's fsync under a write load.
// `unsafe_ack_before_persist` breaks the rule for every message, so that the simulator can
// show that it catches the breakage.
//
// ## Matching answers to calls
//
// Calls get ids `boot << 32 | counter`, where boot is a random 32-bit number chosen per
// start (or given by the caller), so that an answer meant for an earlier life of this node
// (a leader replays queued replies when a peer reconnects) never matches a call of this one;
// answers whose id is unknown are dropped.
//  - Writes proposed here wait by log index; the entry applied at that index completes them
//    if its term is the one they were appended in, else they were overwritten by another
//    leader (§5.3): a local write is proposed again (its bytes carry the client's request id,
//    so the state machine applies it at most once), a forwarded one is answered not_leader.
//  - A follower forwards a write to the leader it knows with a fresh call id; the leader
//    proposes it and answers with the result. When the leader changes, forwards to the old
//    one are given up and retried with the new one; a write whose leader is unknown waits
//    for a leader change (or a few ticks) until its deadline.
//  - A membership change carries no request id, so the leader serves a forwarded one once
//    per (sender, call id) and drops copies the network delivers again; a follower never
//    resends one to another leader unless the first said it did not propose it
//    (not_leader), and gives it up as of unknown fate when another leader appears.
//  - Reads share ReadIndex rounds (thesis §6.4): one round in flight; every read queued
//    meanwhile waits for the next, so one heartbeat round serves many reads. The round's
//    context is a call id; a read state for another context is ignored. A confirmed read
//    waits until the state machine has applied the read index. A dropped round is retried
//    after a leader change; a round that got no answer in two election timeouts is dropped.
//  - Deadlines are in monotonic ms: tick() expires what is due; expire(id) ends one call now.
//
// ## Recovery and crashes
//
// The state machine starts from the latest snapshot; the core starts from the stored hard
// state and log and hands out every committed entry after the snapshot in its first batch,
// through the same apply as at run time (recover() runs that batch before the node serves).
// A crash loses whatever the store had not reported durable, and nothing more: every promise
// this node made was sent after its batch was durable. Calls in flight die with the process;
// their clients see a timeout (outcome unknown) and retry with the same request id.
//
// ## Released payloads
//
// The core drops the payload of each entry it has applied and holds durably
// (raft::config::release_applied_payloads, set by the node and the simulator), so the log
// since the last snapshot costs memory for index, term and size only. An append the core
// builds for a peer that lags can carry such entries; send() reads their payloads back from
// the log store (log_store::read_entries) before handing the message to the network. An
// append whose entries cannot be read back is dropped with a log line: the peer's progress
// then falls back to a probe, and a later append (or a snapshot) gets through.
//
// ## Snapshot transfer (paper §7, streamed)
//
// The core decides when a peer needs a snapshot (progress_state::snapshot) and emits a
// snapshot_request with the metadata only. send() turns it into a stream: it opens the
// snapshot in storage (log_store::open_snapshot, a file in production: no copy of the whole
// is held for sending) and sends snapshot_chunk messages of snapshot_chunk_bytes, at most
// snapshot_window of them unacknowledged. Each chunk is small enough to go out as one
// transport frame, so a heartbeat queued behind the stream waits for a few chunks at most.
// The follower answers every chunk with the offset it holds up to (snapshot_chunk_response):
//   - in order: it appends the bytes and answers the chunk's end; the leader sends the next;
//   - a gap (a chunk lost with a connection) or a chunk of a snapshot it does not hold from
//     the start: it answers what it holds (0 if nothing), and the leader resends from there.
//     So a dropped connection resumes from the acknowledged offset; a new leader or a newer
//     snapshot starts over at offset 0 and the follower drops the bytes of the old one.
//   - the last chunk: it checks size and CRC-32C of the whole, then hands its core the
//     snapshot_request with the bytes (the ordinary install path, persist step 1) and answers
//     done; the core's append_response moves the peer to replicate from the snapshot on.
// Every chunk resets the follower's election timer (core::handle_snapshot_chunk) and every
// answer the leader's retry timer for the peer, so no election starts and the core does not
// restart a transfer that progresses. A leader that hears nothing for two election timeouts
// resends from the acknowledged offset; after five such stalls it gives up, tells the core
// (core::report_snapshot), and a new transfer starts when the core asks again. A follower
// drops a partial snapshot it has not heard of for ten election timeouts.
// The follower hands each chunk to its log store as it arrives (log_store::
// open_snapshot_receiver: a temp file in production, written by a thread of its own, no
// sync), so no second copy of the state is held in memory; a store that offers no receiver
// (tests) gets the bytes reassembled in memory. Recording it (persist step 1) goes to
// storage like any batch: the store makes the file durable and renames it on its own
// thread, in order with the batches. The state machine rebuilds its state with
// state_machine::start_restore from a view of the bytes (a map of the file), off the
// executor in production, so the node keeps answering heartbeats and appends meanwhile.
// Until the restore is done the replica applies nothing: committed entries wait in order
// (apply_backlog_), reads wait for their index, and no local snapshot starts. A snapshot
// that does not restore is a storage failure.
//
// ## Storage failure
//
// A failed batch or snapshot record puts the replica in the storage-error state for good
// (a retry could report durable what the kernel already dropped): no more batches, no more
// after-persist messages (so this node acknowledges nothing), writes fail `unavailable`.
// Reads of already-applied state keep working.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/log.h"
#include "base/node_pool.h"
#include "raft/core.h"
#include "raft/interfaces.h"

namespace raft {

struct replica_options {
  config raft;                 // the core's configuration (id, voters, ticks, seed)
  std::uint32_t tick_ms = 10;  // how often the owner calls tick()
  // Serve linearizable reads on the leader's lease (core.h, "Read leases") instead of a
  // heartbeat round per read; raft.lease_ms is then set from leader_lease_ms(). Must be the
  // same on every member, as must tick_ms and election_ticks. Needs monotonic_ms.
  bool lease_reads = false;
  std::uint64_t snapshot_entries = 0;  // snapshot after this many applied entries; 0 = never
  // Also snapshot once the entries applied since the last snapshot hold more bytes than
  // max(snapshot_min_log_bytes, state_machine::state_bytes() x snapshot_log_ratio): the
  // log costs replay time and disk in proportion to its bytes, a snapshot rewrites the
  // whole state, so this keeps the rewrite cost per written byte bounded (a 1 GB state is
  // rewritten after ~0.5 GB of log, not every snapshot_entries entries, which is then only
  // an upper bound). 0 = size rule off.
  std::uint64_t snapshot_min_log_bytes = 0;
  double snapshot_log_ratio = 0.5;
  // Both thresholds above are multiplied by 1 + snapshot_stagger. Members that apply the
  // same entries would otherwise start their snapshots at the same index, within a few
  // milliseconds of each other: each fork() and the copy-on-write faults after it stall a
  // node's event loop, and all of them at once left the leader no follower to confirm a
  // read with, on cores they all share (bench/README-scale.md). Give each member its own.
  double snapshot_stagger = 0;
  std::int64_t serve_timeout_ms = 5000;  // a forwarded write served here gives up after this
  std::uint32_t boot_id = 0;             // high half of every call id; 0 = random per start
  // Deliberately broken drive-loop rule for the simulator's mutation test: send
  // messages_after_persist before their batch is durable. Never set outside tests.
  bool unsafe_ack_before_persist = false;

  // Runs `fn` later on the replica's executor (thread-safe in production).
  std::function<void(std::function<void()>)> post;
  std::function<std::int64_t()> now_ms;        // wall clock (Unix ms): leader stamps
  std::function<std::int64_t()> monotonic_ms;  // deadlines and round timeouts
  // Operator log lines (elections, leader changes, snapshots, storage errors); may be empty.
  std::function<void(base::log_level, const std::string&)> log;
  // Called after the known leader changed (to wake callers waiting for one).
  std::function<void()> on_leader_change;
  // Called after the configuration in use changed (core::configuration(): appended, truncated
  // away or installed by a snapshot; committed or not), e.g. to connect to added members.
  std::function<void(const membership&)> on_config_change;
  // Called with every batch as taken from the core, before it is handled (tests, traces).
  std::function<void(const ready&)> observe;
  // Snapshot streaming (see "Snapshot transfer"): bytes per chunk, chunks in flight per peer.
  std::size_t snapshot_chunk_bytes = std::size_t{512} << 10;
  std::size_t snapshot_window = 4;
  // Called when a transfer to a peer ends: "done", "failed" or "aborted" (metrics).
  std::function<void(const char* result)> on_snapshot_transfer;
};

// A snapshot stream to one peer, as the leader sees it (the latest one per peer).
struct snapshot_transfer_status {
  node_id peer;
  index_t index;
  term_t term;
  std::string state;            // sending, done, failed, aborted
  std::uint64_t total = 0;      // bytes of the snapshot
  std::uint64_t acked = 0;      // the follower holds [0, acked)
  std::uint64_t sent = 0;       // chunks sent up to here
  std::uint64_t resends = 0;    // times the stream went back to an earlier offset
  std::int64_t started_ms = 0;  // monotonic
  std::int64_t ended_ms = 0;    // 0 while sending
  std::string last_error;       // why it last resent, failed or was aborted
};

struct replica_status {
  raft::status core;
  index_t applied;         // the state machine's
  index_t snapshot_index;  // latest snapshot recorded in storage (or submitted)
  std::uint64_t leader_changes = 0;
  std::uint64_t proposals_ok = 0;
  std::uint64_t proposals_failed = 0;  // proposals that timed out
  std::uint64_t replies_dropped = 0;   // forward replies whose call id was unknown
  std::string storage_error;           // empty while healthy
  std::vector<snapshot_transfer_status> snapshot_transfers;  // leader: latest per peer
  std::uint64_t snapshot_transfers_done = 0;
  std::uint64_t snapshot_transfers_failed = 0;
  std::uint64_t snapshot_transfers_aborted = 0;
  // Follower: a snapshot being received (index 0: none).
  index_t receiving_snapshot_index;
  std::uint64_t receiving_snapshot_bytes = 0;
  std::uint64_t receiving_snapshot_total = 0;
  // Follower: a received snapshot the state machine is restoring (index 0: none).
  index_t restoring_snapshot_index;
};

// How long a leader may serve reads on a quorum's heartbeat answers (core.h, "Read
// leases"): a follower that heard from it refuses votes until election_ticks of its own
// ticks passed. The owner ticks at most once per tick_ms on average and at most twice in a
// row after a stall (app/node.cc re-arms a late tick timer from now, without replaying the
// missed ticks), so those ticks take at least (election_ticks - 2) x tick_ms of real time.
// A quarter of that is left as margin for clocks that run at different rates (NTP slews a
// monotonic clock by 0.05% at most; the simulator's tickers drift by up to 10%).
// 0 (no lease) when election_ticks < 4.
std::int64_t leader_lease_ms(std::uint32_t tick_ms, std::uint32_t election_ticks);

// The snapshot policy (replica_options::snapshot_entries and snapshot_min_log_bytes):
// is a snapshot due after `entries` entries holding `log_bytes` bytes were applied since
// the last one, with a state of `state_bytes`?
bool snapshot_due(const replica_options& o, std::uint64_t entries, std::uint64_t log_bytes,
                  std::uint64_t state_bytes);

// The replica's call deadlines, earliest first. Lazy: a call answered before its deadline
// leaves its entry here until then, and the replica's expire() finds no call (removing
// entries early would cost a lookup per call). Nearly every call gets the same timeout,
// so deadlines mostly arrive in order: an entry not less than the queue's last goes to the
// back of the queue (O(1) in and out), any other to a heap. The queue stays sorted by
// (deadline, id), and taking the smaller front of the two pops in exactly the order of
// one heap of everything. (With one heap, a bulk load kept 5 s of writes, ~375,000
// entries, in it and paid a sift through all its levels per write.)
class deadline_queue {
 public:
  using call_id = std::uint64_t;
  using value = std::pair<std::int64_t, call_id>;
  void push(std::int64_t deadline, call_id id) {
    const value v{deadline, id};
    if (in_order_.empty() || !(v < in_order_.back())) {
      in_order_.push_back(v);
    } else {
      others_.push(v);
    }
  }
  // The earliest entry if it is due at `now`: removed and returned.
  std::optional<value> pop_due(std::int64_t now) {
    const bool q = !in_order_.empty() && in_order_.front().first <= now;
    const bool h = !others_.empty() && others_.top().first <= now;
    if (!q && !h) return std::nullopt;
    value v;
    if (q && (!h || in_order_.front() < others_.top())) {
      v = in_order_.front();
      in_order_.pop_front();
    } else {
      v = others_.top();
      others_.pop();
    }
    return v;
  }

 private:
  std::deque<value> in_order_;
  std::priority_queue<value, std::vector<value>, std::greater<>> others_;
};

class replica {
 public:
  using call_id = std::uint64_t;
  using write_callback = std::function<void(replica_error, std::string result)>;
  using done_callback = std::function<void(replica_error)>;
  // A read's outcome and the leader's wall clock (Unix ms) when it confirmed the read (0 if
  // unknown): the reader judges expiry by it (docs/semantics.md, "Time and expiry").
  using read_callback = std::function<void(replica_error, std::int64_t leader_time_ms)>;

  // The state machine must already hold the restored snapshot (if any). Nothing is applied
  // or sent before recover().
  replica(replica_options opts, restore_state restored, log_store& store, peer_sender& peers,
          state_machine& sm);
  ~replica();
  replica(const replica&) = delete;
  replica& operator=(const replica&) = delete;

  // Applies every committed entry after the snapshot (the one apply path); returns how many.
  std::uint64_t recover();
  // Fails every call with `stopped`; later calls fail at once. Completions arriving later
  // are ignored. Idempotent.
  void stop();

  // Events.
  void tick();
  void step(const message& m);
  void campaign();
  void on_forward_request(node_id from, forward_request r);
  void on_forward_reply(node_id from, const forward_reply& r);

  // Replicates `command` (forwarded to the leader from a follower) and calls cb with the
  // state machine's result once applied, or with an error. cb runs on the executor, never
  // from inside this call.
  call_id propose(std::string command, std::int64_t deadline_ms, write_callback cb);
  // One membership change (raft/membership.h), made by the leader (forwarded from a
  // follower). cb gets replica_error::none and an encoded change_outcome: committed (the new
  // configuration and its index) or refused with a change_error. A transient refusal
  // (leader_not_ready, not_caught_up, transfer_in_progress) is retried every tick until the
  // deadline, which then answers with that refusal rather than a timeout. The removal of
  // the leader is such a refusal: the leader hands over first, and the change goes on to
  // the next leader like any write whose leader changed (core::propose_change).
  call_id change_membership(const membership_change& change, std::int64_t deadline_ms,
                            write_callback cb);
  // Linearizable read barrier: cb(none, leader time) once the state machine reflects every
  // write acknowledged anywhere before the call. On a leader holding its lease with the
  // commit index applied, cb runs before read() returns.
  call_id read(std::int64_t deadline_ms, read_callback cb);
  call_id read(std::int64_t deadline_ms, done_callback cb) {
    return read(deadline_ms,
                read_callback([cb = std::move(cb)](replica_error e, std::int64_t) { cb(e); }));
  }
  // The caller's deadline for `id` passed: end it now (timeout, or no_leader if none known).
  void expire(call_id id);
  // A call id that none of this replica's calls will ever use, for a call its owner makes
  // over the same forwarding channel (app/node.cc: a follower asks the leader for its view
  // of the members). The owner looks at each forward reply first and keeps its own.
  call_id reserve_call_id() { return next_id(); }

  // Starts a leadership transfer; the caller watches leader() for the outcome.
  replica_error transfer_leadership(node_id to);
  // For a graceful shutdown: from now on this node never campaigns, and a leader hands
  // leadership to its most up-to-date voter (core::stand_down), so that clients of the other
  // nodes see no leaderless gap. Returns the node it hands over to, or no_node when it is
  // not the leader (or has no voter to hand to). The caller watches is_leader().
  node_id hand_over();
  // Snapshot now (if anything was applied since the last); cb when recorded or failed.
  void take_snapshot(done_callback cb);
  // The read lease this node holds as leader, in ms (0: leases off): what the transport
  // announces to the peers in its hello.
  std::int64_t read_lease_ms() const { return opts_.raft.lease_ms; }
  // Peer `id` announced its read lease (core::set_peer_read_lease).
  void set_peer_read_lease(node_id id, std::int64_t lease_ms) {
    if (!stopped_) core_.set_peer_read_lease(id, lease_ms);
  }

  // State.
  bool is_leader() const { return core_.role() == role::leader; }
  node_id leader() const { return core_.leader(); }
  node_id id() const { return core_.id(); }
  const std::string& storage_error() const { return storage_error_; }
  bool stopped() const { return stopped_; }
  replica_status status() const;
  const raft::core& core() const { return core_; }
  // For tests that drive the core by hand: whatever it outputs is handled by the next
  // process_ready() (call poke()).
  raft::core& core_for_tests() { return core_; }
  void poke() { schedule_ready(); }
  std::uint32_t boot_id() const { return boot_; }

 private:
  enum class write_state : std::uint8_t { idle, proposed, forwarded };
  struct write_op {
    std::string command;
    std::int64_t deadline = 0;
    write_callback cb;
    write_state state = write_state::idle;
    index_t index;              // proposed: where
    term_t term;                //           in which term
    node_id target;             // forwarded: to whom
    call_id forward_id = 0;     //            with which call id
    std::int64_t retry_at = 0;  // idle: when to try again (or at a leader change)
    std::optional<std::pair<node_id, std::uint64_t>> serving;  // a peer's forwarded write
    bool config = false;                             // command is an encoded membership_change
    change_error last_refusal = change_error::none;  // config: the latest transient refusal
  };
  // Looked up by id several times per write (fresh, proposed, applied, answered), never
  // walked in order except by stop(), which sorts: a hash table. (As a std::map its finds
  // and rebalancing were a few percent of the leader's loop under streams.)
  using write_table = std::unordered_map<call_id, write_op>;
  enum class read_state_kind : std::uint8_t { queued, in_round, applying, idle };
  struct read_op {
    std::int64_t deadline = 0;
    read_callback cb;
    std::int64_t leader_time_ms = 0;  // from the read state that confirmed it
    read_state_kind state = read_state_kind::queued;
    std::int64_t retry_at = 0;
  };
  struct read_round {
    std::uint64_t context = 0;
    std::int64_t started = 0;
    std::vector<call_id> reads;
  };

  void schedule_ready();
  void process_ready();
  void persist(ready& rd);
  void send(std::vector<message>& messages);
  // Reads back the payloads the core released in req's entries; false if storage cannot.
  bool restore_payloads(node_id to, append_request& req);
  void apply(const std::vector<entry>& committed);
  void on_persisted(bool log_write, index_t index, term_t term, std::vector<message> after);
  void on_restored(const snapshot_meta& meta, bool ok, std::size_t bytes, std::int64_t started);
  void on_storage_error(const std::string& why);
  void note_role_changes();
  store_completion on_executor(std::function<void(std::string)> fn);

  call_id next_id();
  std::int64_t now() const { return opts_.monotonic_ms(); }
  void set_core_clock() { core_.set_clock(opts_.now_ms(), opts_.monotonic_ms()); }
  void log(base::log_level level, const std::string& text) const;

  // Writes.
  // Both clocks, read once for a run of attempts: a turn's fresh writes share one reading
  // (each reading costs ~40 ns on a paravirtualised guest, and a streamed write read them
  // twice here; its deadline check and timestamp need no finer time than the turn's).
  struct clock_reading {
    std::int64_t monotonic_ms;
    std::int64_t wall_ms;
  };
  void attempt_write(call_id id, const clock_reading* at = nullptr);
  void attempt_fresh_writes();
  void attempt_change(call_id id);
  call_id add_write(write_op w);
  void set_proposal(index_t index, call_id id);
  void finish_write(call_id id, replica_error e, std::string result = {});
  // The same for a write already found; `proposal_erased`: its entry of proposals_ is gone.
  void finish_write_at(write_table::iterator it, replica_error e, std::string result,
                       bool proposal_erased);
  void wait_for_leader(call_id id, std::int64_t until);
  replica_error deadline_error() const;
  void retry_due();

  // Reads.
  void start_read_round();
  void finish_read_round(std::uint64_t context, std::optional<index_t> index,
                         std::int64_t leader_time_ms = 0);
  void finish_read(call_id id, replica_error e);
  void wake_applied_reads();

  // Snapshot transfer (streamed; see the essay).
  struct outbound_transfer {
    snapshot_transfer_status st;
    snapshot_meta meta;
    std::unique_ptr<snapshot_source> src;
    std::uint32_t checksum = 0;
    bool final_sent = false;  // the last chunk is on its way (until a resend)
    std::uint64_t rewound_to = UINT64_MAX;
    std::int64_t last_answer = 0;
    std::uint32_t stalls = 0;
  };
  struct inbound_transfer {
    node_id from;
    term_t term;
    snapshot_meta meta;
    std::uint64_t total = 0;
    std::uint32_t checksum = 0;  // announced
    std::uint32_t crc = 0;       // of the bytes so far
    std::uint64_t held = 0;      // bytes so far
    // Where the bytes go: the log store's receiver (a temp file), or data when the store
    // offers none (log_store::open_snapshot_receiver).
    std::shared_ptr<snapshot_receiver> file;
    std::string data;
    std::int64_t last_chunk = 0;
  };
  void start_transfer(const message& m);
  void pump(outbound_transfer& t);
  void end_transfer(outbound_transfer& t, const char* result, std::string why);
  void on_chunk(const message& m, const snapshot_chunk& c);
  void on_chunk_response(const message& m, const snapshot_chunk_response& r);
  void answer_chunk(const message& m, const snapshot_chunk& c, std::uint64_t next, bool done,
                    bool failed);
  void tick_transfers();
  std::int64_t election_ms() const {
    return std::int64_t{opts_.raft.election_ticks} * opts_.tick_ms;
  }

  // Snapshots.
  void maybe_snapshot(bool forced);
  void on_snapshot_written(snapshot_meta meta, std::shared_ptr<const std::string> data,
                           std::uint64_t log_bytes_mark, const std::string& error);

  replica_options opts_;
  raft::core core_;
  log_store& store_;
  peer_sender& peers_;
  state_machine& sm_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // completions check it

  std::uint32_t boot_ = 0;
  std::uint32_t counter_ = 0;
  bool stopped_ = false;
  bool ready_scheduled_ = false;
  bool recovering_ = false;
  // A received snapshot being restored (state_machine::start_restore): nothing is applied
  // until it is done; committed entries wait here, in order.
  std::optional<snapshot_meta> restoring_;
  std::deque<entry> apply_backlog_;
  std::int64_t last_progress_log_ = 0;
  std::uint64_t recovered_ = 0;

  std::string storage_error_;
  index_t stored_snapshot_index_;  // snapshot index recorded in storage (as submitted)
  std::size_t batches_in_flight_ = 0;
  // Batches in flight that change the stored term or vote, and the term and vote last
  // handed to storage: while none is in flight, a heartbeat answer promises nothing that
  // is not durable and goes out at once (persist()).
  std::size_t term_vote_batches_in_flight_ = 0;
  term_t submitted_term_;
  node_id submitted_vote_;

  std::uint64_t config_seq_seen_ = 0;
  role last_role_ = role::follower;
  term_t last_term_;
  node_id last_leader_;
  std::uint64_t leader_changes_ = 0;
  std::uint64_t proposals_ok_ = 0;
  std::uint64_t proposals_failed_ = 0;
  std::uint64_t replies_dropped_ = 0;

  write_table writes_;
  std::map<index_t, call_id> proposals_;  // proposed here, by log index
  // Every write inserts into and erases from both maps: their nodes are reused.
  base::node_pool<write_table> write_nodes_;
  base::node_pool<std::map<index_t, call_id>> proposal_nodes_;
  std::map<call_id, call_id> forwards_;  // forward call id -> write
  std::set<call_id> idle_writes_;        // waiting for a leader or a retry time
  // Membership changes forwarded to this node, by (sender, its call id), with when each may
  // be forgotten: a copy of one (the network may duplicate) is dropped, not served again
  // (see on_forward_request).
  std::map<std::pair<node_id, std::uint64_t>, std::int64_t> changes_served_;
  std::deque<std::pair<std::int64_t, std::pair<node_id, std::uint64_t>>> changes_served_order_;
  // Writes added in this turn, attempted together by one posted function; not in
  // idle_writes_ (their first attempt is due anyway).
  std::vector<call_id> fresh_writes_;
  // Every call's deadline (raft::deadline_queue).
  deadline_queue deadlines_;

  std::map<call_id, read_op> reads_;
  std::optional<read_round> round_;  // in flight
  std::vector<call_id> next_round_;  // queued for the next round
  std::multimap<index_t, call_id> reads_applying_;
  std::set<call_id> idle_reads_;

  std::map<node_id, outbound_transfer> outbound_;
  std::map<node_id, std::int64_t> transfer_failed_at_;
  std::optional<inbound_transfer> inbound_;
  std::uint64_t transfers_done_ = 0;
  std::uint64_t transfers_failed_ = 0;
  std::uint64_t transfers_aborted_ = 0;

  bool snapshot_in_progress_ = false;
  index_t last_snapshot_index_;
  std::uint64_t applied_log_bytes_ = 0;        // entry bytes applied since start-up
  std::uint64_t snapshot_log_bytes_mark_ = 0;  // applied_log_bytes_ at the last snapshot
  std::vector<done_callback> snapshot_waiters_;
};

}  // namespace raft
