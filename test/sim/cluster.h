// A seeded, deterministic simulator of a whole Raft cluster driving the real raft::core.
//
// One seed determines everything: the fault schedule, message delays, drops, duplicates and
// reordering, symmetric and one-way partitions, crashes (which lose every write storage had
// not yet reported durable) and restarts, client proposals and ReadIndex reads. Time is a
// logical clock in milliseconds; each node ticks every tick_ms +- 1 ms (drifting clocks).
//
// Safety is checked after every event: at most one leader per term; log matching (same
// index and term => same entry and same predecessor); a committed entry is never lost or
// changed (every new leader holds all of them); no two nodes apply different entries at
// an index; applied indexes only grow; the core's own invariants; reads see every write
// committed before they began. After the fault phase everything heals and liveness is
// checked: a leader within a bounded time, then every proposal of the healed period is
// committed and applied on every node.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "raft/core.h"

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
  bool check_quorum = true;
  raft::unsafe_mutation mutation = raft::unsafe_mutation::none;
};

struct result {
  bool ok = true;
  std::string failure;  // first broken property, with the seed
  std::string trace;    // the last events before the failure
  std::uint64_t committed = 0;
  std::uint64_t reads_ok = 0;
  std::uint64_t reads_dropped = 0;
  std::uint64_t snapshots_installed = 0;
  std::uint64_t crashes = 0;
  std::uint64_t leaders = 0;
  std::uint64_t retries = 0;  // healed-period proposals lost in a leader change and retried
};

class cluster {
 public:
  explicit cluster(options o) : opt_(o), rng_(o.seed * 0x9E3779B97F4A7C15ull + 7) {
    for (int k = 1; k <= opt_.nodes; ++k) voters_.push_back(raft::node_id(k));
    nodes_.resize(opt_.nodes);
    for (int k = 0; k < opt_.nodes; ++k) {
      nodes_[k].id = raft::node_id(k + 1);
      // Clocks drift: each node ticks every tick_ms +- 1 ms, with its own phase.
      nodes_[k].period = opt_.tick_ms - 1 + static_cast<int>(rng_() % 3);
      nodes_[k].phase = static_cast<int>(rng_() % nodes_[k].period);
      start(k);
    }
    blocked_.assign(opt_.nodes, std::vector<bool>(opt_.nodes, false));
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

  result run() {
    const std::int64_t end_faults = opt_.faults ? opt_.fault_ms : 0;
    const std::int64_t end = end_faults + opt_.heal_ms;
    std::optional<std::int64_t> leader_seen_at;
    std::int64_t healed_proposals_from = -1;
    int healed_proposals = 0;
    for (now_ = 0; now_ < end && res_.ok; ++now_) {
      if (now_ == end_faults) heal_all();
      bool healed = now_ >= end_faults;
      if (!healed && now_ % opt_.tick_ms == 0) nemesis();
      deliver();
      complete_writes();
      for (int k = 0; k < opt_.nodes && res_.ok; ++k) {
        auto& n = nodes_[k];
        if (n.up && now_ % n.period == n.phase) {
          n.core->tick();
          after(k);
        }
      }
      if (!res_.ok) break;
      if (!healed) {
        if (rng_() % 100 < 4) client_write();
        if (rng_() % 100 < 2) client_read();
        continue;
      }
      // Healed phase: liveness.
      auto leader = current_leader();
      if (!leader_seen_at) {
        if (leader) {
          leader_seen_at = now_;
          healed_proposals_from = now_;
        } else if (now_ - end_faults > opt_.leader_bound_ms) {
          fail("liveness: no leader within " + std::to_string(opt_.leader_bound_ms) +
               " ms after healing");
          break;
        }
        continue;
      }
      // A proposal can still be lost while leadership settles (an election that was already
      // under way when the faults stopped); a client would retry it, and so do we.
      if (now_ % 50 == 0) retry_overwritten();
      if (healed_proposals < 10 && now_ % 37 == 0) {
        if (client_write(true)) ++healed_proposals;
      }
      if (now_ % 53 == 0) client_read();
      if (healed_proposals >= 10 && all_healed_applied()) break;
    }
    if (res_.ok && healed_proposals_from >= 0 && !all_healed_applied()) {
      std::ostringstream s;
      s << "liveness: proposals of the healed period not applied everywhere (" << healed_proposals
        << " proposed, " << count_healed_applied() << " applied on all nodes)";
      for (auto& p : healed_) {
        auto c = committed_.find(p.index.value);
        s << "\n    " << p.data << " at " << p.index.value << " t" << p.term.value << ": ";
        if (c == committed_.end())
          s << "not committed";
        else if (c->second.term != p.term)
          s << "overwritten by t" << c->second.term.value;
        else
          s << "committed";
      }
      for (auto& n : nodes_) {
        s << "\n    n" << n.id.value << (n.up ? "" : " (down)") << " applied " << n.applied;
        if (n.up) {
          auto st = n.core->status();
          s << " role " << raft::to_string(st.role) << " term " << st.term.value << " commit "
            << st.commit.value << " last " << st.last_index.value << " persisted "
            << st.persisted_index.value << " snapshot " << st.snapshot_index.value;
          for (auto& pr : st.peers)
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
  struct write {
    std::int64_t done_at = 0;
    std::optional<raft::received_snapshot> snapshot;
    std::optional<raft::index_t> truncate_from;
    std::vector<raft::entry> entries;
    std::optional<raft::hard_state> hs;
    std::vector<raft::message> after;
    std::optional<std::pair<raft::index_t, raft::term_t>> persisted;
  };
  struct waiting_read {
    std::uint64_t context;
    raft::index_t index;
  };
  struct node {
    raft::node_id id;
    int period = 10;
    int phase = 0;
    bool up = false;
    std::unique_ptr<raft::core> core;
    // Durable state.
    raft::hard_state hs;
    std::optional<raft::snapshot_meta> snap;
    std::shared_ptr<const std::string> snap_data;
    std::map<std::uint64_t, raft::entry> log;
    // Storage in flight, completed in order.
    std::deque<write> writes;
    // State machine: a hash chain over applied entries.
    std::uint64_t applied = 0;
    std::uint64_t hash = 0;
    // Reads waiting for apply, and every read this incarnation started.
    std::vector<waiting_read> waiting;
    std::unordered_map<std::uint64_t, std::uint64_t> reads;  // context -> must_see
    std::uint64_t incarnation = 0;
  };
  struct in_flight {
    std::int64_t at;
    std::uint64_t order;  // random tie-break: reordering among same-time deliveries
    raft::message m;
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
  struct proposal {
    raft::index_t index;
    raft::term_t term;
    std::string data;
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

  void trace(std::string what) {
    if (trace_.size() >= trace_limit_) trace_.pop_front();
    trace_.push_back(event{now_, std::move(what)});
  }

  void fail(const std::string& why) {
    if (!res_.ok) return;
    res_.ok = false;
    std::ostringstream s;
    s << "seed " << opt_.seed << " (" << opt_.nodes << " nodes) at t=" << now_ << "ms: " << why;
    res_.failure = s.str();
    std::ostringstream t;
    for (auto& e : trace_) t << "  t=" << e.at << " " << e.what << "\n";
    res_.trace = t.str();
  }

  raft::config make_config(int k) {
    raft::config c;
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
    return c;
  }

  // Start (or restart) node k from what its storage holds.
  void start(int k) {
    auto& n = nodes_[k];
    raft::restore_state rs;
    rs.hs = n.hs;
    rs.snapshot = n.snap;
    rs.snapshot_data = n.snap_data;
    for (auto& [i, e] : n.log)
      if (!n.snap || e.index > n.snap->index) rs.entries.push_back(e);
    n.core = std::make_unique<raft::core>(make_config(k), rs);
    n.up = true;
    n.writes.clear();
    n.waiting.clear();
    n.reads.clear();
    ++n.incarnation;
    if (n.snap_data) {
      std::istringstream in(*n.snap_data);
      in >> n.applied >> n.hash;
    } else {
      n.applied = 0;
      n.hash = 0;
    }
    trace("n" + std::to_string(n.id.value) + " start, durable log " + std::to_string(n.log.size()) +
          " entries, term " + std::to_string(n.hs.term.value));
    check_node(k);
  }

  void crash(int k) {
    auto& n = nodes_[k];
    n.up = false;
    n.core.reset();
    n.writes.clear();  // unsynced writes are lost
    n.waiting.clear();
    n.reads.clear();
    ++res_.crashes;
    trace("n" + std::to_string(n.id.value) + " CRASH");
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
      if (nodes_[a].up && nodes_[a].core->role() == raft::role::leader && a != b) {
        nodes_[a].core->transfer_leadership(nodes_[b].id);
        trace("n" + std::to_string(a + 1) + " transfer to n" + std::to_string(b + 1));
        after(a);
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

  void send(const raft::message& m) {
    int from = static_cast<int>(m.from.value - 1), to = static_cast<int>(m.to.value - 1);
    if (blocked_[from][to]) return;
    if (rng_() % 100 < drop_pct_) return;
    int copies = rng_() % 100 < dup_pct_ ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      std::int64_t at = now_ + 1 + static_cast<std::int64_t>(rng_() % max_delay_ms_);
      net_.emplace(at, in_flight{at, rng_(), m});
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
      int to = static_cast<int>(f.m.to.value - 1);
      auto& n = nodes_[to];
      if (!n.up) continue;
      n.core->step(f.m);
      if (trace_messages_) {
        trace("n" + std::to_string(f.m.from.value) + "->n" + std::to_string(f.m.to.value) + " " +
              raft::message_name(f.m) + " t" + std::to_string(f.m.term.value));
      }
      after(to);
      if (!res_.ok) return;
    }
  }

  void complete_writes() {
    for (int k = 0; k < opt_.nodes; ++k) {
      auto& n = nodes_[k];
      while (n.up && !n.writes.empty() && n.writes.front().done_at <= now_) {
        write w = std::move(n.writes.front());
        n.writes.pop_front();
        if (w.snapshot) {
          n.snap = w.snapshot->meta;
          n.snap_data = w.snapshot->data;
          n.log.clear();
        }
        if (w.truncate_from) n.log.erase(n.log.lower_bound(w.truncate_from->value), n.log.end());
        if (!w.entries.empty())
          n.log.erase(n.log.lower_bound(w.entries.front().index.value), n.log.end());
        for (auto& e : w.entries) n.log[e.index.value] = e;
        if (w.hs) n.hs = *w.hs;
        for (auto& m : w.after) send(m);
        if (w.persisted) n.core->on_persisted(w.persisted->first, w.persisted->second);
        after(k);
        if (!res_.ok) return;
      }
    }
  }

  std::optional<int> current_leader() {
    std::optional<int> best;
    for (int k = 0; k < opt_.nodes; ++k) {
      auto& n = nodes_[k];
      if (n.up && n.core->role() == raft::role::leader &&
          (!best || n.core->term() > nodes_[*best].core->term()))
        best = k;
    }
    return best;
  }

  bool client_write(bool healed = false) {
    int k = static_cast<int>(rng_() % opt_.nodes);
    if (!nodes_[k].up) return false;
    auto* core = nodes_[k].core.get();
    if (core->role() != raft::role::leader) {
      // Follow the redirect, as a client would.
      auto l = core->leader();
      if (l == raft::no_node || !nodes_[l.value - 1].up) return false;
      k = static_cast<int>(l.value - 1);
      core = nodes_[k].core.get();
    }
    std::string data = "w" + std::to_string(opt_.seed) + "-" + std::to_string(++write_seq_);
    auto r = core->propose(data);
    if (!r.ok()) return false;
    trace("n" + std::to_string(k + 1) + " propose " + data + " at " +
          std::to_string(r.index.value) + " t" + std::to_string(r.term.value));
    if (healed) healed_.push_back(proposal{r.index, r.term, data});
    after(k);
    return true;
  }

  void client_read() {
    int k = static_cast<int>(rng_() % opt_.nodes);
    auto& n = nodes_[k];
    if (!n.up) return;
    // Everything committed anywhere before the read starts must be visible to it.
    std::uint64_t must_see = committed_.empty() ? 0 : committed_.rbegin()->first;
    for (auto& o : nodes_)
      if (o.up) must_see = std::max(must_see, o.core->commit_index().value);
    std::uint64_t ctx = ++read_seq_;
    n.reads[ctx] = must_see;
    n.core->read_index(ctx);
    after(k);
  }

  // Process every output batch of node k and check safety.
  void after(int k) {
    auto& n = nodes_[k];
    while (res_.ok && n.up && n.core->has_ready()) {
      raft::ready r = n.core->take_ready();
      // Log matching: an (index, term) pair always names the same entry, with the same
      // predecessor term.
      for (auto& e : r.entries) {
        auto prev = n.core->term_at(e.index - 1);
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
      if (r.snapshot) {
        std::istringstream in(*r.snapshot->data);
        std::uint64_t idx = 0, h = 0;
        in >> idx >> h;
        if (idx != r.snapshot->meta.index.value) fail("snapshot bytes do not match its metadata");
        auto c = committed_.find(idx);
        if (c != committed_.end() && c->second.chain != h)
          fail("installed snapshot differs from the committed state at its index");
        if (idx < n.applied) fail("snapshot install moves applied index backwards");
        n.applied = idx;
        n.hash = h;
        ++res_.snapshots_installed;
        trace("n" + std::to_string(n.id.value) + " install snapshot " + std::to_string(idx));
      }
      for (auto& e : r.committed) {
        if (e.index.value != n.applied + 1) {
          fail("apply out of order: applied " + std::to_string(n.applied) + " then " +
               std::to_string(e.index.value));
          break;
        }
        n.applied = e.index.value;
        n.hash = chain(n.hash, e);
        auto c = committed_.find(e.index.value);
        if (c == committed_.end()) {
          committed_[e.index.value] = committed_entry{e.term, hash_bytes(e.data), n.hash};
        } else if (c->second.term != e.term || c->second.data_hash != hash_bytes(e.data)) {
          fail("two nodes applied different entries at index " + std::to_string(e.index.value));
        } else if (c->second.chain != n.hash) {
          fail("state machines diverged at index " + std::to_string(e.index.value));
        }
      }
      write w;
      w.done_at = std::max(n.writes.empty() ? 0 : n.writes.back().done_at,
                           now_ + 1 + static_cast<std::int64_t>(rng_() % 8));
      if (!r.entries.empty()) {
        w.persisted = std::make_pair(r.entries.back().index, r.entries.back().term);
      } else if (r.snapshot) {
        w.persisted = std::make_pair(r.snapshot->meta.index, r.snapshot->meta.term);
      }
      w.snapshot = std::move(r.snapshot);
      w.truncate_from = r.truncate_from;
      w.entries = std::move(r.entries);
      w.hs = r.hs;
      w.after = std::move(r.messages_after_persist);
      bool must_persist = w.snapshot || w.truncate_from || !w.entries.empty() || w.hs;
      if (must_persist || (!w.after.empty() && !n.writes.empty())) {
        n.writes.push_back(std::move(w));  // after-persist messages wait for earlier writes too
      } else {
        for (auto& m : w.after) send(m);
      }
      for (auto& m : r.messages) send(m);
      for (auto& rs : r.read_states) {
        auto it = n.reads.find(rs.context);
        if (it == n.reads.end()) {
          fail("read state for an unknown or finished read");
          break;
        }
        if (rs.index.value < it->second) {
          fail("stale read: read index " + std::to_string(rs.index.value) +
               " misses writes committed up to " + std::to_string(it->second) +
               " before the read began");
        }
        n.waiting.push_back(waiting_read{rs.context, rs.index});
      }
      for (auto c : r.dropped_reads) {
        n.reads.erase(c);
        ++res_.reads_dropped;
      }
      for (auto it = n.waiting.begin(); it != n.waiting.end();) {
        if (it->index.value <= n.applied) {
          n.reads.erase(it->context);
          ++res_.reads_ok;
          it = n.waiting.erase(it);
        } else {
          ++it;
        }
      }
      // Snapshot now and then, so laggards need InstallSnapshot.
      if (n.applied >= n.core->snapshot_index().value + opt_.compact_every &&
          n.applied <= n.core->persisted_index().value &&
          n.applied == n.core->applied_index().value) {
        raft::index_t at(n.applied);
        auto t = n.core->term_at(at);
        std::ostringstream s;
        s << n.applied << " " << n.hash;
        auto data = std::make_shared<const std::string>(s.str());
        if (t && n.core->compact(at, data)) {
          // The node writes its own snapshot synchronously in this model.
          n.snap = raft::snapshot_meta{at, *t, voters_};
          n.snap_data = data;
          n.log.erase(n.log.begin(), n.log.upper_bound(at.value));
        }
      }
      check_node(k);
    }
  }

  void check_node(int k) {
    if (!res_.ok) return;
    auto& n = nodes_[k];
    if (!n.up) return;
    const auto& c = *n.core;
    if (auto err = c.check_invariants()) {
      fail("core invariant: " + *err);
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

  void retry_overwritten() {
    for (auto& p : healed_) {
      auto c = committed_.find(p.index.value);
      if (c == committed_.end() || c->second.term == p.term) continue;
      auto l = current_leader();
      if (!l) return;
      auto r = nodes_[*l].core->propose(p.data);
      if (!r.ok()) return;
      trace("retry " + p.data + " at " + std::to_string(r.index.value));
      p.index = r.index;
      p.term = r.term;
      ++res_.retries;
      after(*l);
    }
  }

  bool all_healed_applied() { return count_healed_applied() == healed_.size() && !healed_.empty(); }

  std::size_t count_healed_applied() {
    std::size_t done = 0;
    for (auto& p : healed_) {
      auto c = committed_.find(p.index.value);
      if (c == committed_.end() || c->second.term != p.term ||
          c->second.data_hash != hash_bytes(p.data))
        continue;
      bool everywhere = true;
      for (auto& n : nodes_)
        if (!n.up || n.applied < p.index.value) everywhere = false;
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
  std::deque<event> trace_;
  result res_;
  std::map<std::uint64_t, committed_entry> committed_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::pair<std::uint64_t, std::uint64_t>> seen_;
  std::map<std::uint64_t, std::uint64_t> leaders_;
  std::vector<proposal> healed_;
  std::uint64_t write_seq_ = 0;
  std::uint64_t read_seq_ = 0;
};

inline result run_seed(options o) {
  return cluster(o).run();
}

}  // namespace sim
