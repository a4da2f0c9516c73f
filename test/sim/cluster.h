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
  raft::unsafe_mutation mutation = raft::unsafe_mutation::none;
  bool unsafe_ack_before_persist = false;  // drive-loop mutation (raft::replica_options)
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
  std::uint64_t snapshots_installed = 0;
  std::uint64_t snapshot_chunks = 0;  // snapshot_chunk messages sent
  std::uint64_t crashes = 0;
  std::uint64_t leaders = 0;
  std::uint64_t retries = 0;  // healed-period writes that failed and were retried
};

class cluster {
 public:
  explicit cluster(options o) : opt_(o), rng_(o.seed * 0x9E3779B97F4A7C15ull + 7) {
    for (int k = 1; k <= opt_.nodes; ++k) voters_.push_back(raft::node_id(k));
    nodes_.resize(opt_.nodes);
    for (int k = 0; k < opt_.nodes; ++k) {
      auto& n = nodes_[k];
      n.id = raft::node_id(k + 1);
      // Clocks drift: each node ticks every tick_ms +- 1 ms, with its own phase.
      n.period = opt_.tick_ms - 1 + static_cast<int>(rng_() % 3);
      n.phase = static_cast<int>(rng_() % n.period);
      n.store = std::make_unique<raft::storage::memory_store>(
          [this] { return now_; }, [this] { return 1 + static_cast<std::int64_t>(rng_() % 8); });
      n.checked = std::make_unique<checked_store>(*this, k);
      n.net = std::make_unique<sender>(*this, n.id);
    }
    blocked_.assign(opt_.nodes, std::vector<bool>(opt_.nodes, false));
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
      if (!healed && now_ % opt_.tick_ms == 0) nemesis();
      deliver();
      complete_writes();
      for (int k = 0; k < opt_.nodes && res_.ok; ++k) {
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
      for (auto& n : nodes_) {
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
    return res_;
  }

 private:
  using wire_body = std::variant<raft::message, raft::forward_request, raft::forward_reply>;
  struct in_flight {
    std::int64_t at;
    std::uint64_t order;  // random tie-break: reordering among same-time deliveries
    raft::node_id from, to;
    wire_body body;
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

  static std::uint64_t hash_bytes(const std::string& s) {
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
    std::optional<std::string> prepare_proposal(std::string_view command, std::int64_t) override {
      if (command.empty()) return std::nullopt;
      return std::string(command);
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

   private:
    cluster& c_;
    int k_;
  };

  class sender final : public raft::peer_sender {
   public:
    sender(cluster& c, raft::node_id self) : c_(c), self_(self) {}
    void send(const raft::message& m) override {
      if (std::holds_alternative<raft::snapshot_chunk>(m.body)) ++c_.res_.snapshot_chunks;
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
    c.voters = voters_;
    c.election_ticks = opt_.election_ticks;
    c.heartbeat_ticks = opt_.heartbeat_ticks;
    c.max_inflight = 4;
    c.max_entries_per_append = 8;
    c.max_bytes_per_append = 4096;
    c.seed = rng_();
    c.check_quorum = opt_.check_quorum;
    c.mutation = opt_.mutation;
    o.tick_ms = static_cast<std::uint32_t>(opt_.tick_ms);
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
    n.up = true;
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
    int a = static_cast<int>(rng_() % opt_.nodes);
    int b = static_cast<int>(rng_() % opt_.nodes);
    if (r < 20) {
      // Symmetric partition into a random split.
      std::vector<int> side(opt_.nodes);
      for (auto& s : side) s = static_cast<int>(rng_() % 2);
      for (int i = 0; i < opt_.nodes; ++i)
        for (int j = 0; j < opt_.nodes; ++j) blocked_[i][j] = side[i] != side[j];
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
      if (!nodes_[a].up) start(a);
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
    }
  }

  void heal_all() {
    for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
    drop_pct_ = 0;
    dup_pct_ = 0;
    max_delay_ms_ = 3;
    for (int k = 0; k < opt_.nodes; ++k)
      if (!nodes_[k].up) start(k);
    trace("HEAL ALL");
  }

  void send(raft::node_id from_id, raft::node_id to_id, wire_body body) {
    int from = static_cast<int>(from_id.value - 1), to = static_cast<int>(to_id.value - 1);
    if (blocked_[from][to]) return;
    if (rng_() % 100 < drop_pct_) return;
    int copies = rng_() % 100 < dup_pct_ ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      std::int64_t at = now_ + 1 + static_cast<std::int64_t>(rng_() % max_delay_ms_);
      net_.emplace(at, in_flight{at, rng_(), from_id, to_id, body});
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
        n.rep->step(*m);
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
    for (int k = 0; k < opt_.nodes && res_.ok; ++k) {
      auto& n = nodes_[k];
      if (!n.up) continue;
      n.store->complete_due(now_);
      settle(k);
      if (!n.store->error().empty()) fail("storage refused a batch: " + n.store->error());
    }
  }

  std::optional<int> current_leader() {
    std::optional<int> best;
    for (int k = 0; k < opt_.nodes; ++k) {
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
    int k = static_cast<int>(rng_() % opt_.nodes);
    auto& n = nodes_[k];
    if (!n.up) return false;
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
    int k = static_cast<int>(rng_() % opt_.nodes);
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
      std::istringstream in(*b.install->data);
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
    if (c.role() == raft::role::leader) {
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

  bool all_healed_applied() { return !healed_.empty() && count_healed_applied() == healed_.size(); }

  std::size_t count_healed_applied() {
    std::size_t done = 0;
    for (auto& h : healed_) {
      if (!h.acked) continue;
      bool everywhere = true;
      for (auto& n : nodes_)
        if (!n.up || n.sm->applied_index().value < h.index) everywhere = false;
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
};

inline result run_seed(options o) {
  return cluster(o).run();
}

}  // namespace sim
