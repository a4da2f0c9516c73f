// A seeded, deterministic simulator of a whole Raft cluster running the production drive
// loop: every node is a raft::replica (raft/replica.h) over an in-memory log store
// (raft/storage/memory_store.h), a simulated network and a hash-chain state machine.
//
// One seed determines everything: the fault schedule, message delays, drops, duplicates and
// reordering, symmetric and one-way partitions, crashes (which lose every write storage had
// not yet reported durable) and restarts, storage latencies, client writes (through any node,
// so followers forward them to the leader) and linearizable reads. Time is a logical clock in
// milliseconds; each node ticks every tick_ms +- 1 ms (drifting clocks). The replica's
// executor is a per-node task queue that the simulator drains after every event.
//
// Safety is checked after every event: at most one leader per term; log matching (same
// index and term => same entry and same predecessor), checked on the entries each node
// submits to its store; a committed entry is never lost or changed (every new leader holds
// all of them); no two nodes apply different entries at an index and the state machines
// never diverge; applied indexes only grow; the core's own invariants; the store never sees
// a batch that breaks the log invariant; an acknowledged write is the committed entry at the
// index it reports; a read sees every write committed anywhere before it began. After the
// fault phase everything heals and liveness is checked: a leader within a bounded time, then
// ten writes (retried by their client after an error, as a client would) acknowledged and
// applied on every node.
//
// ## Membership (options::membership)
//
// The cluster starts with `nodes` voters; `spares` more ids exist, never started until an
// operation adds them, each then started as a joining node (empty bootstrap) and never
// reused: an id whose old data could come back is never added again. Mixed into the fault
// schedule: add a learner, promote a learner, remove a follower (voter or learner), remove
// the leader, replace a voter (remove it, then add a fresh id and promote it once that
// committed), each asked of a random node (followers forward). Removed nodes keep running,
// crashing and restarting like the others. Checked after every event, besides the above:
//   - configurations agree: at its committed index, every node uses the configuration the
//     committed log gives there (its latest configuration entry, or the bootstrap), so any
//     two nodes agree at the same committed index; an acknowledged change is the committed
//     configuration entry at the index it reports, and made the change asked for;
//   - a leader's log holds at most one configuration entry beyond the highest commit index
//     any node has held (one change at a time);
//   - only voters campaign (with the one exception of core::may_campaign);
//   - a leader never proposes its own removal (SPEC §8: it hands over first): no committed
//     configuration entry drops the leader of the entry's term from the configuration
//     before it;
//   - a refusal is true: every committed change was asked for by an ask not answered with
//     a refusal (each ask commits at most once), so a change answered "refused" never
//     takes effect on the strength of that ask;
//   - a removed id never comes back in a committed configuration, never becomes leader
//     after its removal committed, and no message it sent after that raises a member's term
//     beyond every term the cluster had (it does not disturb);
// and liveness at the end is judged on the members of the latest committed configuration.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "raft/replica.h"
#include "raft/storage/memory_store.h"

namespace sim {

struct options {
  std::uint64_t seed = 1;
  int nodes = 3;
  std::int64_t fault_ms = 4000;         // fault phase
  std::int64_t heal_ms = 6000;          // healed phase bound (leader + commit everything)
  std::int64_t leader_bound_ms = 3000;  // after healing, a leader within this
  int tick_ms = 10;
  bool faults = true;
  std::uint32_t election_ticks = 10;
  std::uint32_t heartbeat_ticks = 2;
  std::uint64_t compact_every = 16;  // entries applied beyond the snapshot before compacting
  // Snapshots stream in chunks of this many bytes (a few chunks per snapshot of hash_sm), at
  // most snapshot_window in flight, so that lost, duplicated and reordered chunks happen.
  std::size_t snapshot_chunk_bytes = 6;
  std::size_t snapshot_window = 2;
  bool check_quorum = true;
  bool lease_reads = false;  // leaders answer reads on their lease (raft/core.h, "Read leases")
  // Nonzero: the last of the first `nodes` members runs with this election timeout (ticks)
  // instead: a member configured apart, whose shorter vote lease must not extend the
  // others' read leases (raft/core.h, "Read leases").
  std::uint32_t odd_election_ticks = 0;
  raft::unsafe_mutation mutation = raft::unsafe_mutation::none;
  bool unsafe_ack_before_persist = false;  // drive-loop mutation (raft::replica_options)
  // Membership changes mixed into the fault schedule (see "Membership" above): `spares`
  // fresh ids beyond `nodes` may join, each at most once.
  bool membership = false;
  int spares = 3;
};

struct result {
  bool ok = true;
  std::string failure;  // first broken property, with the seed
  std::string trace;    // the last events before the failure
  std::uint64_t committed = 0;
  std::uint64_t writes_acked = 0;
  std::uint64_t forwarded = 0;  // writes a follower forwarded to its leader
  std::uint64_t reads_ok = 0;
  std::uint64_t reads_dropped = 0;
  std::uint64_t lease_reads = 0;  // reads a leader answered on its lease (at the end)
  std::uint64_t snapshots_installed = 0;
  std::uint64_t snapshot_chunks = 0;  // snapshot_chunk messages sent
  std::uint64_t crashes = 0;
  std::uint64_t leaders = 0;
  std::uint64_t retries = 0;             // healed-period writes that failed and were retried
  std::uint64_t changes_asked = 0;       // membership changes asked of some node
  std::uint64_t changes_committed = 0;   // acknowledged as committed
  std::uint64_t changes_refused = 0;     // answered with a change_error (or failed)
  std::uint64_t removals = 0;            // members whose removal committed
  std::uint64_t payload_reads = 0;       // appends whose released payloads storage gave back
  std::uint64_t snapshot_receivers = 0;  // snapshots a store began to assemble as they came
};

class cluster {
 public:
  explicit cluster(options o) : opt_(o), rng_(o.seed * 0x9E3779B97F4A7C15ull + 7) {
    for (int k = 1; k <= opt_.nodes; ++k) voters_.push_back(raft::node_id(k));
    bootstrap_ = raft::voters_only(voters_);
    latest_config_ = bootstrap_;
    // Spare ids exist only with membership: without it the random sequence (and so every
    // seed's schedule) is what it always was.
    nodes_.resize(opt_.nodes + (opt_.membership ? opt_.spares : 0));
    for (int k = 0; k < size(); ++k) {
      auto& n = nodes_[k];
      n.id = raft::node_id(k + 1);
      // Clocks drift: each node ticks every tick_ms +- 1 ms, with its own phase.
      n.period = opt_.tick_ms - 1 + static_cast<int>(rng_() % 3);
      n.phase = static_cast<int>(rng_() % n.period);
      n.store = std::make_unique<raft::storage::memory_store>(
          [this] { return now_; }, [this] { return 1 + static_cast<std::int64_t>(rng_() % 8); });
      // Half the nodes assemble received snapshots in their store (the production way,
      // raft::snapshot_receiver), half in the replica's memory: both paths run every seed.
      n.store->offer_receivers(k % 2 == 0);
      n.checked = std::make_unique<checked_store>(*this, k);
      n.net = std::make_unique<sender>(*this, n.id);
    }
    blocked_.assign(size(), std::vector<bool>(size(), false));
    for (int k = 0; k < opt_.nodes; ++k) start(k);
    if (opt_.faults) {
      drop_pct_ = rng_() % 15;
      dup_pct_ = rng_() % 8;
      max_delay_ms_ = 1 + rng_() % 30;
    } else {
      drop_pct_ = 0;
      dup_pct_ = 0;
      max_delay_ms_ = 3;
    }
  }

  ~cluster() {
    // Replicas fail their calls with `stopped` while being destroyed: nobody listens.
    stopping_ = true;
    for (auto& n : nodes_) n.rep.reset();
  }

  result run() {
    const std::int64_t end_faults = opt_.faults ? opt_.fault_ms : 0;
    const std::int64_t end = end_faults + opt_.heal_ms;
    std::optional<std::int64_t> leader_seen_at;
    std::size_t healed_writes = 0;
    for (now_ = 0; now_ < end && res_.ok; ++now_) {
      if (now_ == end_faults) heal_all();
      bool healed = now_ >= end_faults;
      if (!healed && now_ % opt_.tick_ms == 0) {
        // Follow-ups of a replacement (add after remove, promote after add) come first.
        auto due = std::move(followups_);
        followups_.clear();
        for (auto& f : due)
          if (res_.ok) f();
        nemesis();
      }
      deliver();
      complete_writes();
      for (int k = 0; k < size() && res_.ok; ++k) {
        auto& n = nodes_[k];
        if (n.up && now_ % n.period == n.phase) {
          n.rep->tick();
          settle(k);
        }
      }
      if (!res_.ok) break;
      if (!healed) {
        if (rng_() % 100 < 4) client_write();
        if (rng_() % 100 < 2) client_read();
        continue;
      }
      // Healed phase: liveness.
      if (!leader_seen_at) {
        if (current_leader()) {
          leader_seen_at = now_;
        } else if (now_ - end_faults > opt_.leader_bound_ms) {
          fail("liveness: no leader within " + std::to_string(opt_.leader_bound_ms) +
               " ms after healing");
          break;
        }
        continue;
      }
      // A write can still fail while leadership settles (an election that was already under
      // way when the faults stopped); its client retries it.
      if (now_ % 50 == 0) retry_failed();
      if (healed_writes < 10 && now_ % 37 == 0) {
        healed_.push_back(
            healed_write{"h" + std::to_string(opt_.seed) + "-" + std::to_string(healed_writes)});
        if (client_write(healed_.size() - 1))
          ++healed_writes;
        else
          healed_.pop_back();
      }
      if (now_ % 53 == 0) client_read();
      if (healed_writes >= 10 && all_healed_applied()) break;
    }
    if (res_.ok && leader_seen_at && !all_healed_applied()) {
      std::ostringstream s;
      s << "liveness: writes of the healed period not applied everywhere (" << healed_.size()
        << " written, " << count_healed_applied() << " applied on all nodes)";
      for (auto& h : healed_) {
        s << "\n    " << h.data << ": "
          << (h.acked    ? "acked at " + std::to_string(h.index)
              : h.failed ? "failed"
                         : "pending");
      }
      s << "\n    members: " << raft::describe(latest_config_);
      for (auto& n : nodes_) {
        if (!n.started) continue;
        s << "\n    n" << n.id.value << (n.up ? "" : " (down)");
        if (n.up) {
          auto st = n.rep->status();
          s << " applied " << st.applied.value << " role " << raft::to_string(st.core.role)
            << " term " << st.core.term.value << " commit " << st.core.commit.value << " last "
            << st.core.last_index.value << " persisted " << st.core.persisted_index.value
            << " snapshot " << st.core.snapshot_index.value;
          for (auto& pr : st.core.peers)
            s << " [n" << pr.id.value << " match " << pr.match.value << " next " << pr.next.value
              << " " << raft::to_string(pr.state) << "]";
        }
      }
      fail(s.str());
    }
    if (res_.ok && !leader_seen_at) fail("liveness: no leader after healing");
    res_.committed = committed_.size();
    for (auto& n : nodes_)
      if (n.rep) res_.lease_reads += n.rep->core().status().lease_reads;
    return res_;
  }

 private:
  using wire_body = std::variant<raft::message, raft::forward_request, raft::forward_reply>;
  struct in_flight {
    std::int64_t at;
    std::uint64_t order;  // random tie-break: reordering among same-time deliveries
    raft::node_id from, to;
    wire_body body;
    std::int64_t sent = 0;
    bool sender_may_campaign = false;  // sent while self_removal_pending (membership)
  };
  struct event {
    std::int64_t at;
    std::string what;
  };
  struct committed_entry {
    raft::term_t term;
    std::uint64_t data_hash;
    std::uint64_t chain;  // state-machine hash after applying it
  };
  struct healed_write {
    std::string data;
    bool acked = false;
    bool failed = false;
    bool pending = false;
    std::uint64_t index = 0;
  };

  static std::uint64_t hash_bytes(std::string_view s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
  }
  static std::uint64_t chain(std::uint64_t h, const raft::entry& e) {
    std::uint64_t x = h * 31 + e.index.value;
    x = x * 31 + e.term.value;
    return (x ^ hash_bytes(e.data)) * 0x100000001B3ull;
  }

  // The state machine: a hash chain over every applied entry, checked against what every
  // other node applied at the same index.
  class hash_sm final : public raft::state_machine {
   public:
    hash_sm(cluster& c, int k, std::uint64_t applied, std::uint64_t hash)
        : c_(c), k_(k), applied_(applied), hash_(hash) {}

    std::string apply(const raft::entry& e) override {
      if (e.index.value != applied_ + 1) {
        c_.fail("apply out of order on n" + std::to_string(k_ + 1) + ": applied " +
                std::to_string(applied_) + " then " + std::to_string(e.index.value));
      }
      applied_ = e.index.value;
      hash_ = chain(hash_, e);
      auto it = c_.committed_.find(e.index.value);
      if (it == c_.committed_.end()) {
        c_.committed_[e.index.value] = committed_entry{e.term, hash_bytes(e.data), hash_};
        if (e.type == raft::entry_type::config) c_.on_config_committed(e);
      } else if (it->second.term != e.term || it->second.data_hash != hash_bytes(e.data)) {
        c_.fail("two nodes applied different entries at index " + std::to_string(e.index.value));
      } else if (it->second.chain != hash_) {
        c_.fail("state machines diverged at index " + std::to_string(e.index.value));
      }
      return std::to_string(e.index.value);
    }
    raft::index_t applied_index() const override { return raft::index_t(applied_); }
    std::string snapshot() const override {
      return std::to_string(applied_) + " " + std::to_string(hash_);
    }
    bool restore(std::string_view bytes) override {
      std::istringstream in{std::string(bytes)};
      std::uint64_t idx = 0, h = 0;
      if (!(in >> idx >> h)) return false;
      auto c = c_.committed_.find(idx);
      if (c != c_.committed_.end() && c->second.chain != h)
        c_.fail("installed snapshot differs from the committed state at its index");
      if (idx < applied_) c_.fail("snapshot install moves applied index backwards");
      applied_ = idx;
      hash_ = h;
      ++c_.res_.snapshots_installed;
      c_.trace("n" + std::to_string(k_ + 1) + " install snapshot " + std::to_string(idx));
      return true;
    }
    std::optional<raft::payload> prepare_proposal(std::string_view command,
                                                  std::int64_t) override {
      if (command.empty()) return std::nullopt;
      return raft::payload(command);
    }

   private:
    cluster& c_;
    int k_;
    std::uint64_t applied_;
    std::uint64_t hash_;
  };

  // The node's log store: the memory store, with the entries checked as they are submitted.
  class checked_store final : public raft::log_store {
   public:
    checked_store(cluster& c, int k) : c_(c), k_(k) {}
    void submit(raft::persist_batch b, raft::store_completion done) override {
      c_.check_submitted(k_, b);
      c_.nodes_[k_].store->submit(std::move(b), std::move(done));
    }
    void write_snapshot(raft::snapshot_meta meta, std::shared_ptr<const std::string> data,
                        raft::store_completion done) override {
      c_.nodes_[k_].store->write_snapshot(std::move(meta), std::move(data), std::move(done));
    }
    std::unique_ptr<raft::snapshot_source> open_snapshot(const raft::snapshot_meta& meta,
                                                         std::string& error) override {
      return c_.nodes_[k_].store->open_snapshot(meta, error);
    }
    std::string read_entries(raft::index_t first, raft::index_t last,
                             std::vector<raft::entry>& out) override {
      ++c_.res_.payload_reads;
      return c_.nodes_[k_].store->read_entries(first, last, out);
    }
    std::unique_ptr<raft::snapshot_receiver> open_snapshot_receiver(const raft::snapshot_meta& meta,
                                                                    std::string& error) override {
      auto r = c_.nodes_[k_].store->open_snapshot_receiver(meta, error);
      if (r) ++c_.res_.snapshot_receivers;
      return r;
    }

   private:
    cluster& c_;
    int k_;
  };

  class sender final : public raft::peer_sender {
   public:
    sender(cluster& c, raft::node_id self) : c_(c), self_(self) {}
    void send(const raft::message& m) override {
      if (std::holds_alternative<raft::snapshot_chunk>(m.body)) ++c_.res_.snapshot_chunks;
      if (const auto* req = std::get_if<raft::append_request>(&m.body)) {
        for (const auto& e : req->entries) {
          if (e.released_bytes != 0) {
            c_.fail("entry " + std::to_string(e.index.value) +
                    " was sent without its released payload");
          }
        }
      }
      c_.send(self_, m.to, m);
    }
    bool forward(raft::node_id to, const raft::forward_request& r) override {
      ++c_.res_.forwarded;
      c_.send(self_, to, r);
      return true;
    }
    void reply(raft::node_id to, const raft::forward_reply& r) override { c_.send(self_, to, r); }

   private:
    cluster& c_;
    raft::node_id self_;
  };

  struct node {
    raft::node_id id;
    int period = 10;
    int phase = 0;
    bool up = false;
    std::unique_ptr<raft::storage::memory_store> store;  // survives crashes
    std::unique_ptr<checked_store> checked;
    std::unique_ptr<sender> net;
    std::unique_ptr<hash_sm> sm;
    std::unique_ptr<raft::replica> rep;
    std::deque<std::function<void()>> tasks;  // the replica's executor
    std::uint64_t incarnation = 0;
    bool started = false;              // ever started (a spare id is not, until it joins)
    std::uint64_t checked_commit = 0;  // commit index at the last configuration check
    std::uint64_t checked_seq = 0;     // core::config_seq() at the last configuration check
    std::uint64_t max_term = 0;        // highest term it has held
    std::vector<std::pair<std::uint64_t, std::uint64_t>> provisional;  // see check_submitted
  };

  void trace(std::string what) {
    if (trace_.size() >= trace_limit_) trace_.pop_front();
    trace_.push_back(event{now_, std::move(what)});
  }

 public:
  void fail(const std::string& why) {
    if (!res_.ok || stopping_) return;
    res_.ok = false;
    std::ostringstream s;
    s << "seed " << opt_.seed << " (" << opt_.nodes << " nodes) at t=" << now_ << "ms: " << why;
    res_.failure = s.str();
    std::ostringstream t;
    for (auto& e : trace_) t << "  t=" << e.at << " " << e.what << "\n";
    res_.trace = t.str();
  }

 private:
  raft::replica_options make_options(int k) {
    raft::replica_options o;
    auto& c = o.raft;
    c.id = nodes_[k].id;
    // A spare id joins an existing cluster: no bootstrap, it waits to be contacted.
    if (k < opt_.nodes) c.voters = voters_;
    c.election_ticks = opt_.election_ticks;
    if (opt_.odd_election_ticks != 0 && k == opt_.nodes - 1)
      c.election_ticks = opt_.odd_election_ticks;
    c.heartbeat_ticks = opt_.heartbeat_ticks;
    c.max_inflight = 4;
    c.compacted_entries_dropped_per_step = 3;  // compacted entries outlive a few ticks
    c.max_entries_per_append = 8;
    c.max_bytes_per_append = 4096;
    c.seed = rng_();
    c.check_quorum = opt_.check_quorum;
    c.release_applied_payloads = true;  // as the node runs
    c.mutation = opt_.mutation;
    o.tick_ms = static_cast<std::uint32_t>(opt_.tick_ms);
    o.lease_reads = opt_.lease_reads;
    o.snapshot_entries = opt_.compact_every;
    o.snapshot_chunk_bytes = opt_.snapshot_chunk_bytes;
    o.snapshot_window = opt_.snapshot_window;
    o.serve_timeout_ms = 1000;
    o.boot_id = static_cast<std::uint32_t>(rng_() | 1);
    o.unsafe_ack_before_persist = opt_.unsafe_ack_before_persist;
    node* n = &nodes_[k];
    o.post = [n](std::function<void()> fn) { n->tasks.push_back(std::move(fn)); };
    o.now_ms = [this] { return 1'700'000'000'000 + now_; };
    o.monotonic_ms = [this] { return now_; };
    if (opt_.membership) {
      o.on_config_change = [this, k](const raft::membership& m) {
        trace("n" + std::to_string(k + 1) + " config " + raft::describe(m));
      };
    }
    return o;
  }

  // Start (or restart) node k from what its storage holds.
  void start(int k) {
    auto& n = nodes_[k];
    raft::restore_state rs = n.store->load();
    std::uint64_t applied = 0, hash = 0;
    if (rs.snapshot_data) {
      std::istringstream in(*rs.snapshot_data);
      in >> applied >> hash;
    }
    const auto entries = rs.entries.size();
    const auto term = rs.hs.term.value;
    n.sm = std::make_unique<hash_sm>(*this, k, applied, hash);
    n.tasks.clear();
    n.rep =
        std::make_unique<raft::replica>(make_options(k), std::move(rs), *n.checked, *n.net, *n.sm);
    // What the transport's hellos tell: each member learns the others' read leases.
    for (auto& other : nodes_) {
      if (&other == &n || !other.rep) continue;
      n.rep->set_peer_read_lease(other.id, other.rep->read_lease_ms());
      other.rep->set_peer_read_lease(n.id, n.rep->read_lease_ms());
    }
    n.up = true;
    n.started = true;
    n.checked_commit = ~0ull;
    ++n.incarnation;
    trace("n" + std::to_string(n.id.value) + " start, durable log " + std::to_string(entries) +
          " entries, term " + std::to_string(term));
    n.rep->recover();
    settle(k);
  }

  void crash(int k) {
    auto& n = nodes_[k];
    n.up = false;
    n.store->crash();  // unsynced writes are lost
    for (const auto& key : n.provisional) {
      const auto& log = n.store->state().log;
      auto d = log.find(key.first);
      if (d == log.end() || d->second.term.value != key.second) seen_.erase(key);
    }
    n.provisional.clear();
    res_.lease_reads += n.rep->core().status().lease_reads;
    n.rep.reset();
    n.tasks.clear();
    ++res_.crashes;
    trace("n" + std::to_string(n.id.value) + " CRASH");
  }

  // Runs node k's executor until it is idle, checking safety after every task.
  void settle(int k) {
    auto& n = nodes_[k];
    while (res_.ok && n.up && !n.tasks.empty()) {
      auto fn = std::move(n.tasks.front());
      n.tasks.pop_front();
      fn();
      check_node(k);
    }
  }

  void nemesis() {
    auto r = rng_() % 1000;
    int a = static_cast<int>(rng_() % size());
    int b = static_cast<int>(rng_() % size());
    if (r < 20) {
      // Symmetric partition into a random split.
      std::vector<int> side(size());
      for (auto& s : side) s = static_cast<int>(rng_() % 2);
      for (int i = 0; i < size(); ++i)
        for (int j = 0; j < size(); ++j) blocked_[i][j] = side[i] != side[j];
      trace("partition symmetric");
    } else if (r < 30) {
      if (a != b) {
        blocked_[a][b] = true;
        trace("partition one-way n" + std::to_string(a + 1) + " -> n" + std::to_string(b + 1));
      }
    } else if (r < 60) {
      for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
      trace("heal partitions");
    } else if (r < 75) {
      if (nodes_[a].up) crash(a);
    } else if (r < 115) {
      if (!nodes_[a].up && nodes_[a].started) start(a);
    } else if (r < 125) {
      drop_pct_ = rng_() % 20;
      dup_pct_ = rng_() % 10;
      max_delay_ms_ = 1 + rng_() % 40;
    } else if (r < 135) {
      if (nodes_[a].up && nodes_[a].rep->is_leader() && a != b) {
        nodes_[a].rep->transfer_leadership(nodes_[b].id);
        trace("n" + std::to_string(a + 1) + " transfer to n" + std::to_string(b + 1));
        settle(a);
      }
    } else if (opt_.membership && r < 160) {
      membership_op();
    }
  }

  void heal_all() {
    for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
    drop_pct_ = 0;
    dup_pct_ = 0;
    max_delay_ms_ = 3;
    for (int k = 0; k < size(); ++k)
      if (!nodes_[k].up && nodes_[k].started) start(k);
    trace("HEAL ALL");
  }

  void send(raft::node_id from_id, raft::node_id to_id, wire_body body) {
    int from = static_cast<int>(from_id.value - 1), to = static_cast<int>(to_id.value - 1);
    if (to < 0 || to >= size()) return;  // no such node: nobody listens at that address
    if (blocked_[from][to]) return;
    if (rng_() % 100 < drop_pct_) return;
    int copies = rng_() % 100 < dup_pct_ ? 2 : 1;
    const bool may_campaign =
        opt_.membership && nodes_[from].up && self_removal_pending(nodes_[from].rep->core());
    for (int c = 0; c < copies; ++c) {
      std::int64_t at = now_ + 1 + static_cast<std::int64_t>(rng_() % max_delay_ms_);
      net_.emplace(at, in_flight{at, rng_(), from_id, to_id, body, now_, may_campaign});
    }
  }

  void deliver() {
    std::vector<in_flight> due;
    while (!net_.empty() && net_.begin()->first <= now_) {
      due.push_back(std::move(net_.begin()->second));
      net_.erase(net_.begin());
    }
    std::sort(due.begin(), due.end(), [](auto& x, auto& y) { return x.order < y.order; });
    for (auto& f : due) {
      int to = static_cast<int>(f.to.value - 1);
      auto& n = nodes_[to];
      if (!n.up) continue;
      if (auto* m = std::get_if<raft::message>(&f.body)) {
        if (trace_messages_) {
          trace("n" + std::to_string(m->from.value) + "->n" + std::to_string(m->to.value) + " " +
                raft::message_name(*m) + " t" + std::to_string(m->term.value));
        }
        const auto term_before = n.rep->core().term();
        n.rep->step(*m);
        check_disturbance(f, *m, to, term_before);
      } else if (auto* r = std::get_if<raft::forward_request>(&f.body)) {
        if (trace_messages_)
          trace("n" + std::to_string(f.from.value) + "->n" + std::to_string(to + 1) + " forward");
        n.rep->on_forward_request(f.from, *r);
      } else {
        n.rep->on_forward_reply(f.from, std::get<raft::forward_reply>(f.body));
      }
      settle(to);
      if (!res_.ok) return;
    }
  }

  void complete_writes() {
    for (int k = 0; k < size() && res_.ok; ++k) {
      auto& n = nodes_[k];
      if (!n.up) continue;
      n.store->complete_due(now_);
      settle(k);
      if (!n.store->error().empty()) fail("storage refused a batch: " + n.store->error());
    }
  }

  std::optional<int> current_leader() {
    std::optional<int> best;
    for (int k = 0; k < size(); ++k) {
      auto& n = nodes_[k];
      if (n.up && n.rep->is_leader() &&
          (!best || n.rep->core().term() > nodes_[*best].rep->core().term()))
        best = k;
    }
    return best;
  }

  // A client writes through a random node (a follower forwards it to its leader). `healed`
  // is the index of a healed-period write, or -1.
  bool client_write(std::ptrdiff_t healed = -1) {
    int k = static_cast<int>(rng_() % size());
    auto& n = nodes_[k];
    if (!n.up) return false;
    // A client of the healed period talks to a member (a removed node has no leader to
    // forward to, and would only make it wait for its deadline).
    if (healed >= 0 && !latest_config_.find(n.id)) return false;
    std::string data = healed >= 0
                           ? healed_[healed].data
                           : "w" + std::to_string(opt_.seed) + "-" + std::to_string(++write_seq_);
    if (healed >= 0) {
      healed_[healed].pending = true;
      healed_[healed].failed = false;
    }
    trace("n" + std::to_string(k + 1) + " client write " + data);
    n.rep->propose(data, now_ + (healed >= 0 ? 2000 : 1000),
                   [this, data, healed](raft::replica_error e, std::string result) {
                     on_write_done(data, healed, e, result);
                   });
    settle(k);
    return true;
  }

  void on_write_done(const std::string& data, std::ptrdiff_t healed, raft::replica_error e,
                     const std::string& result) {
    if (stopping_) return;
    if (e == raft::replica_error::none) {
      // Acknowledged: it must be the committed entry at the index it reports.
      const std::uint64_t index = std::stoull(result);
      auto c = committed_.find(index);
      if (c == committed_.end() || c->second.data_hash != hash_bytes(data)) {
        fail("write " + data + " acknowledged at index " + std::to_string(index) +
             " but that is not the committed entry there");
      }
      ++res_.writes_acked;
      if (healed >= 0) {
        healed_[healed].acked = true;
        healed_[healed].pending = false;
        healed_[healed].index = index;
      }
      return;
    }
    trace("write " + data + " failed: " + raft::to_string(e));
    if (healed >= 0 && !healed_[healed].acked) {
      healed_[healed].failed = true;
      healed_[healed].pending = false;
    }
  }

  void retry_failed() {
    for (std::size_t h = 0; h < healed_.size(); ++h) {
      if (!healed_[h].failed) continue;
      if (client_write(static_cast<std::ptrdiff_t>(h))) ++res_.retries;
    }
  }

  void client_read() {
    int k = static_cast<int>(rng_() % size());
    auto& n = nodes_[k];
    if (!n.up) return;
    // Everything committed anywhere before the read starts must be visible to it.
    std::uint64_t must_see = committed_.empty() ? 0 : committed_.rbegin()->first;
    for (auto& o : nodes_)
      if (o.up) must_see = std::max(must_see, o.rep->core().commit_index().value);
    hash_sm* sm = n.sm.get();
    n.rep->read(now_ + 1000, [this, sm, must_see, k](raft::replica_error e) {
      if (stopping_) return;
      if (e != raft::replica_error::none) {
        ++res_.reads_dropped;
        return;
      }
      if (sm->applied_index().value < must_see) {
        fail("stale read on n" + std::to_string(k + 1) + ": applied " +
             std::to_string(sm->applied_index().value) + " misses writes committed up to " +
             std::to_string(must_see) + " before the read began");
      }
      ++res_.reads_ok;
    });
    settle(k);
  }

  // Log matching: an (index, term) pair always names the same entry, with the same
  // predecessor term. Checked on what each node hands its store.
  void check_submitted(int k, const raft::persist_batch& b) {
    auto& n = nodes_[k];
    if (b.install) {
      std::string_view bytes;
      if (b.install->data) {
        bytes = *b.install->data;
      } else if (!b.install->file || !b.install->file->view(bytes).empty()) {
        fail("a received snapshot without its bytes");
      }
      std::istringstream in{std::string(bytes)};
      std::uint64_t idx = 0;
      in >> idx;
      if (idx != b.install->meta.index.value) fail("snapshot bytes do not match its metadata");
    }
    for (auto& e : b.entries) {
      auto prev = n.rep->core().term_at(e.index - 1);
      auto key = std::make_pair(e.index.value, e.term.value);
      auto h = hash_bytes(e.data) ^ static_cast<std::uint64_t>(e.type);
      auto it = seen_.find(key);
      if (it == seen_.end()) {
        seen_[key] = std::make_pair(h, prev ? prev->value : ~0ull);
        // An entry of a term not yet durable on its author (a single voter that won alone):
        // nobody sees it before that write (core::term_unsafe_), so if a crash loses it, it
        // never existed, and its (index, term) may be used again.
        if (n.store->state().hs.term < e.term) n.provisional.push_back(key);
      } else {
        if (it->second.first != h)
          fail("log matching: two different entries at the same index and term");
        if (prev && it->second.second != ~0ull && it->second.second != prev->value)
          fail("log matching: same (index, term) with different predecessor terms");
      }
    }
  }

  void check_node(int k) {
    if (!res_.ok) return;
    auto& n = nodes_[k];
    if (!n.up) return;
    const auto& c = n.rep->core();
    if (auto err = c.check_invariants()) {
      fail("core invariant: " + *err);
      return;
    }
    if (!n.rep->storage_error().empty()) {
      fail("storage error on n" + std::to_string(k + 1) + ": " + n.rep->storage_error());
      return;
    }
    // Learners, joining nodes and removed nodes never campaign; but one of two voters whose
    // own removal is its latest configuration entry, not known committed, may (it may hold
    // the only copy of that entry: see core::may_campaign).
    if ((c.role() == raft::role::pre_candidate || c.role() == raft::role::candidate) &&
        !c.is_voter() && !self_removal_pending(c)) {
      fail("n" + std::to_string(k + 1) + " campaigns (" + raft::to_string(c.role()) +
           ") but is no voter of its configuration (" + raft::describe(c.configuration()) + ")");
      return;
    }
    max_commit_seen_ = std::max(max_commit_seen_, c.commit_index().value);
    n.max_term = std::max(n.max_term, c.term().value);
    if (!removed_at_.count(c.id().value)) max_member_term_ = std::max(max_member_term_, n.max_term);
    if (opt_.membership) {
      check_config(k);
      if (!res_.ok) return;
    }
    if (c.role() == raft::role::leader && opt_.membership) {
      // One change at a time: a leader's log holds at most one configuration entry beyond
      // what is known committed anywhere.
      int uncommitted = 0;
      const auto from = std::max(max_commit_seen_, c.snapshot_index().value) + 1;
      for (auto i = from; i <= c.last_index().value; ++i) {
        const raft::entry* e = c.entry_at(raft::index_t(i));
        if (e && e->type == raft::entry_type::config) ++uncommitted;
      }
      if (uncommitted > 1) {
        fail("leader n" + std::to_string(k + 1) + " holds " + std::to_string(uncommitted) +
             " uncommitted configuration entries (commit known: " +
             std::to_string(max_commit_seen_) + ")");
        return;
      }
    }
    // A leader counts from when its term is durable. One that won alone (a single voter)
    // and crashed before its term reached the disk led for nobody: the core sends nothing of
    // a term before it is durable, and the term may be won again after the restart.
    if (c.role() == raft::role::leader && n.store->state().hs.term >= c.term()) {
      auto [it, inserted] = leaders_.emplace(c.term().value, c.id().value);
      if (!inserted && it->second != c.id().value) {
        fail("two leaders in term " + std::to_string(c.term().value) + ": n" +
             std::to_string(it->second) + " and n" + std::to_string(c.id().value));
        return;
      }
      if (inserted) {
        ++res_.leaders;
        trace("n" + std::to_string(c.id().value) + " LEADER term " +
              std::to_string(c.term().value));
        if (auto r = removed_at_.find(c.id().value);
            r != removed_at_.end() && !self_removal_pending(c)) {
          fail("n" + std::to_string(c.id().value) + " became leader in term " +
               std::to_string(c.term().value) +
               " after its removal committed (t=" + std::to_string(r->second.at) + ")");
          return;
        }
        // Leader completeness (§5.4): a new leader holds every committed entry.
        for (auto& [idx, ce] : committed_) {
          if (idx <= c.snapshot_index().value) continue;
          auto t = c.term_at(raft::index_t(idx));
          if (!t || *t != ce.term) {
            fail("committed entry " + std::to_string(idx) + " missing from new leader n" +
                 std::to_string(c.id().value));
            return;
          }
        }
      }
    }
  }

  // ---- Membership ------------------------------------------------------------------------

  int size() const { return static_cast<int>(nodes_.size()); }

  // One of two voters whose own removal is the latest entry in its log, not known committed
  // to it: it may campaign (core::may_campaign), since it may hold the only copy of that
  // entry. Once the entry is committed elsewhere that is a disturbance, but a bounded one
  // (it wins, commits the entry, hands over), and the price of never deadlocking.
  static bool self_removal_pending(const raft::core& c) {
    if (c.is_voter() || c.config_index() <= c.commit_index() ||
        c.config_index() <= c.snapshot_index())
      return false;
    const raft::membership before = c.config_at(c.config_index() - 1);
    return before.is_voter(c.id()) && before.voters().size() == 2;
  }
  std::string name(raft::node_id id) const { return "n" + std::to_string(id.value); }

  // The configuration as of committed index i, as the committed log says (every committed
  // index has been applied by some node before any node can hold a later one).
  const raft::membership& reference_config_at(std::uint64_t i) const {
    auto it = committed_configs_.upper_bound(i);
    return it == committed_configs_.begin() ? bootstrap_ : std::prev(it)->second;
  }

  // A configuration entry was committed (first applied anywhere).
  void on_config_committed(const raft::entry& e) {
    auto m = raft::decode_membership(e.data);
    if (!m) {
      fail("committed configuration entry at index " + std::to_string(e.index.value) +
           " does not decode");
      return;
    }
    if (!committed_configs_.empty() && committed_configs_.rbegin()->first >= e.index.value) {
      fail("configuration entries committed out of order");
      return;
    }
    committed_configs_[e.index.value] = *m;
    trace("config COMMITTED at " + std::to_string(e.index.value) + ": " + raft::describe(*m));
    // The entry's term names the leader that proposed it (one leader per term).
    if (auto l = leaders_.find(e.term.value); l != leaders_.end()) {
      const raft::node_id proposer(l->second);
      if (latest_config_.find(proposer) && !m->find(proposer)) {
        fail("leader " + name(proposer) + " of term " + std::to_string(e.term.value) +
             " proposed its own removal (index " + std::to_string(e.index.value) +
             ") instead of handing over first");
        return;
      }
    }
    if (auto made = change_between(latest_config_, *m)) {
      if (--open_asks_[*made] < 0) {
        fail("the configuration entry at index " + std::to_string(e.index.value) +
             " makes a change every ask of which was refused or already made (" +
             raft::describe(*m) + ")");
        return;
      }
    }
    for (const auto& x : latest_config_.members) {
      if (m->find(x.id)) continue;
      removed_at_.emplace(x.id.value, removal{now_, nodes_[x.id.value - 1].max_term});
      ++res_.removals;
    }
    for (const auto& x : m->members) {
      if (removed_at_.count(x.id.value)) {
        fail(name(x.id) + " is in a committed configuration again after its removal");
        return;
      }
    }
    latest_config_ = std::move(*m);
  }

  // The single-server change that turns `from` into `to` (kind, subject id), if there is one.
  static std::optional<std::pair<raft::change_kind, std::uint64_t>> change_between(
      const raft::membership& from, const raft::membership& to) {
    for (const auto& x : to.members) {
      const raft::member* before = from.find(x.id);
      if (!before) return std::pair{raft::change_kind::add_learner, x.id.value};
      if (!before->voter && x.voter) return std::pair{raft::change_kind::promote, x.id.value};
    }
    for (const auto& x : from.members)
      if (!to.find(x.id)) return std::pair{raft::change_kind::remove, x.id.value};
    return std::nullopt;
  }

  // Configurations agree: what node k uses at its committed index is what the committed log
  // says there (so any two nodes agree at the same committed index).
  void check_config(int k) {
    auto& n = nodes_[k];
    const auto& c = n.rep->core();
    if (c.commit_index().value == n.checked_commit && c.config_seq() == n.checked_seq) return;
    n.checked_commit = c.commit_index().value;
    n.checked_seq = c.config_seq();
    const std::uint64_t known = committed_.empty() ? 0 : committed_.rbegin()->first;
    const raft::index_t i(std::min(c.commit_index().value, known));
    if (i < c.snapshot_index()) return;
    const raft::membership have = c.config_at(i);
    // A joining node that received the log from its start knows no configuration before
    // the entry that added it.
    if (have.empty() && k >= opt_.nodes) return;
    const raft::membership& want = reference_config_at(i.value);
    if (have != want) {
      fail("configurations disagree: n" + std::to_string(k + 1) + " uses \"" +
           raft::describe(have) + "\" at committed index " + std::to_string(i.value) +
           ", the committed log says \"" + raft::describe(want) + "\"");
    }
  }

  // A removed node must not disturb the members: no message it sent after its removal
  // committed may push a member's term beyond every term the cluster had (its own at the
  // removal included). Answering a lagging member with the cluster's term is fine; a
  // campaign of its own is not. A leader's hand-over (TimeoutNow) is the one message it
  // means the recipient to act on.
  void check_disturbance(const in_flight& f, const raft::message& m, int to, raft::term_t before) {
    if (!opt_.membership || !res_.ok) return;
    auto r = removed_at_.find(f.from.value);
    if (r == removed_at_.end() || f.sent < r->second.at || f.sender_may_campaign) return;
    if (std::holds_alternative<raft::timeout_now>(m.body)) return;
    auto& n = nodes_[to];
    if (!n.up || !latest_config_.find(n.id)) return;
    const auto after = n.rep->core().term().value;
    const auto cluster_term = std::max(max_member_term_, r->second.term);
    if (after > before.value && after > cluster_term) {
      fail("removed " + name(f.from) + " (removal committed at t=" + std::to_string(r->second.at) +
           ") raised member " + name(n.id) + "'s term from " + std::to_string(before.value) +
           " to " + std::to_string(after) + " (the cluster's was " + std::to_string(cluster_term) +
           ") with " + raft::message_name(m));
    }
  }

  int random_up_node() {
    for (int tries = 0; tries < 4; ++tries) {
      int k = static_cast<int>(rng_() % size());
      if (nodes_[k].up) return k;
    }
    return -1;
  }

  template <typename T>
  T pick(const std::vector<T>& v) {
    return v[rng_() % v.size()];
  }

  // An operator's change, asked of a random node (a follower forwards it to its leader),
  // planned from the leader's configuration as an operator would read it off a status
  // page; the core refuses what it must (one change at a time, the §4.1 rule, promotion
  // before catching up).
  void membership_op() {
    const int via = random_up_node();
    if (via < 0) return;
    const auto l = current_leader();
    const raft::membership cfg = nodes_[l ? *l : via].rep->core().configuration();
    if (cfg.empty()) return;
    const auto voters = cfg.voters();
    std::vector<raft::node_id> learners, others;
    const raft::node_id leader = l ? nodes_[*l].id : raft::no_node;
    for (const auto& m : cfg.members) {
      if (!m.voter) learners.push_back(m.id);
      if (m.id != leader && (!m.voter || voters.size() > 2)) others.push_back(m.id);
    }
    switch (rng_() % 6) {
      case 0:
      case 1:
        add_learner(via, false);
        break;
      case 2:
        if (!learners.empty()) change(via, raft::change_kind::promote, pick(learners));
        break;
      case 3:  // remove a follower (voter or learner)
        if (!others.empty()) change(via, raft::change_kind::remove, pick(others));
        break;
      case 4:  // remove the leader: it hands over first, and its successor removes it
        if (leader != raft::no_node && voters.size() > 2)
          change(via, raft::change_kind::remove, leader);
        break;
      case 5:  // replace a voter (maybe the leader) by a fresh node: remove, add, promote
        if (voters.size() >= 2) {
          change(via, raft::change_kind::remove, pick(voters), [this] {
            const int next = random_up_node();
            if (next >= 0) add_learner(next, true);
          });
        }
        break;
    }
  }

  // Starts a fresh spare id as a joining node and asks for it to be added as a learner;
  // with `promote`, asks for its promotion once that committed.
  void add_learner(int via, bool promote) {
    int k = opt_.nodes;
    while (k < size() && nodes_[k].started) ++k;
    if (k == size()) return;  // every spare id has been used: ids are never reused
    start(k);
    const raft::node_id id = nodes_[k].id;
    std::function<void()> then;
    if (promote) {
      then = [this, id] {
        const int next = random_up_node();
        if (next >= 0) change(next, raft::change_kind::promote, id, {}, 3000);
      };
    }
    change(via, raft::change_kind::add_learner, id, std::move(then));
  }

  void change(int via, raft::change_kind kind, raft::node_id id, std::function<void()> then = {},
              std::int64_t timeout_ms = 1500) {
    raft::membership_change c{kind, raft::member{id, false, {}}};
    // Endpoints travel in the configuration; unique per id, as the core requires.
    if (kind == raft::change_kind::add_learner) c.subject.endpoints = {{"peer", "sim:" + name(id)}};
    ++res_.changes_asked;
    ++open_asks_[{kind, id.value}];
    trace(name(nodes_[via].id) + " asks: " + raft::describe(c));
    nodes_[via].rep->change_membership(
        c, now_ + timeout_ms,
        [this, c, then = std::move(then)](raft::replica_error e, std::string result) {
          if (stopping_) return;
          on_change_done(c, e, result, then);
        });
    settle(via);
  }

  void on_change_done(const raft::membership_change& c, raft::replica_error e,
                      const std::string& result, const std::function<void()>& then) {
    if (e != raft::replica_error::none) {
      ++res_.changes_refused;
      trace("change " + raft::describe(c) + " failed: " + raft::to_string(e));
      return;
    }
    auto out = raft::decode_outcome(result);
    if (!out) {
      fail("change " + raft::describe(c) + ": undecodable outcome");
      return;
    }
    if (out->error != raft::change_error::none) {
      ++res_.changes_refused;
      trace("change " + raft::describe(c) + " refused: " + raft::to_string(out->error));
      if (--open_asks_[{c.kind, c.subject.id.value}] < 0) {
        fail("change " + raft::describe(c) + " refused (" + raft::to_string(out->error) +
             "), but it was committed and no other ask of it is open");
      }
      return;
    }
    // Acknowledged: it is the committed configuration entry at the index it reports, and
    // it made the change asked for.
    auto it = committed_.find(out->index.value);
    if (it == committed_.end() ||
        it->second.data_hash != hash_bytes(raft::encode_membership(out->config))) {
      fail("change " + raft::describe(c) + " acknowledged at index " +
           std::to_string(out->index.value) + " but that is not the committed entry there");
      return;
    }
    const raft::member* m = out->config.find(c.subject.id);
    const bool made = c.kind == raft::change_kind::remove    ? m == nullptr
                      : c.kind == raft::change_kind::promote ? m && m->voter
                                                             : m && !m->voter;
    if (!made) {
      fail("change " + raft::describe(c) + " acknowledged with configuration " +
           raft::describe(out->config));
      return;
    }
    ++res_.changes_committed;
    trace("change " + raft::describe(c) + " committed at " + std::to_string(out->index.value));
    if (then) followups_.push_back(then);
  }

  bool all_healed_applied() { return !healed_.empty() && count_healed_applied() == healed_.size(); }

  std::size_t count_healed_applied() {
    std::size_t done = 0;
    for (auto& h : healed_) {
      if (!h.acked) continue;
      bool everywhere = true;
      for (auto& n : nodes_) {
        if (!latest_config_.find(n.id)) continue;  // removed, or never joined
        if (!n.up || n.sm->applied_index().value < h.index) everywhere = false;
      }
      if (everywhere) ++done;
    }
    return done;
  }

 public:
  bool trace_messages_ = false;
  std::size_t trace_limit_ = 120;

 private:
  options opt_;
  std::mt19937_64 rng_;
  std::vector<raft::node_id> voters_;
  std::vector<node> nodes_;
  std::vector<std::vector<bool>> blocked_;  // blocked_[from][to]
  std::uint64_t drop_pct_ = 0, dup_pct_ = 0, max_delay_ms_ = 1;
  std::multimap<std::int64_t, in_flight> net_;
  std::int64_t now_ = 0;
  bool stopping_ = false;
  std::deque<event> trace_;
  result res_;
  std::map<std::uint64_t, committed_entry> committed_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::pair<std::uint64_t, std::uint64_t>> seen_;
  std::map<std::uint64_t, std::uint64_t> leaders_;
  std::vector<healed_write> healed_;
  std::uint64_t write_seq_ = 0;
  // Membership.
  raft::membership bootstrap_;      // the initial voters
  raft::membership latest_config_;  // as of the highest committed configuration entry
  std::map<std::uint64_t, raft::membership> committed_configs_;  // by entry index
  struct removal {
    std::int64_t at;     // when it committed
    std::uint64_t term;  // the highest term the node had held by then
  };
  std::map<std::uint64_t, removal> removed_at_;
  // Asks of each change (kind, subject id) not answered with a refusal and not yet made.
  std::map<std::pair<raft::change_kind, std::uint64_t>, int> open_asks_;
  std::uint64_t max_member_term_ = 0;  // highest term held by a node not removed
  std::uint64_t max_commit_seen_ = 0;  // highest commit index any node has held
  std::vector<std::function<void()>> followups_;
};

inline result run_seed(options o) {
  return cluster(o).run();
}

}  // namespace sim
