// A small hand-driven cluster of raft::replica for unit tests (raft_core_test,
// raft_replica_test): the production drive loop over in-memory stores, with a FIFO network
// the test delivers explicitly, links it can cut, and a logical clock moved by tick_all().
//
// Each replica's executor is a task queue; process(id) runs it until idle and, unless
// auto_persist is off, completes the node's storage writes (instant persistence) as it goes.
// Everything the replicas output is recorded per node: every batch taken (observe hook:
// read states, dropped reads, received snapshots), every message sent, every entry applied.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "raft/replica.h"
#include "raft/storage/memory_store.h"

namespace sim {

// A state machine that records what it applied. Snapshots are "snapshot@<index>".
class recording_sm final : public raft::state_machine {
 public:
  std::string apply(const raft::entry& e) override {
    applied_ = e.index.value;
    entries.push_back(e);
    events.emplace_back('a', e.index.value);
    return "applied@" + std::to_string(e.index.value) + ":" + std::string(e.data.view());
  }
  void prefetch(std::span<const raft::entry> chunk) const override {
    for (const raft::entry& e : chunk) events.emplace_back('p', e.index.value);
  }
  raft::index_t applied_index() const override { return raft::index_t(applied_); }
  std::string snapshot() const override { return "snapshot@" + std::to_string(applied_); }
  bool restore(std::string_view bytes) override {
    auto at = bytes.rfind('@');
    if (at == std::string_view::npos) return false;
    applied_ = std::stoull(std::string(bytes.substr(at + 1)));
    ++restores;
    return true;
  }
  std::optional<raft::payload> prepare_proposal(std::string_view command,
                                                std::int64_t now_ms) override {
    if (command.empty()) return std::nullopt;
    last_stamp = now_ms;
    return raft::payload(command);
  }
  // With defer_restores, a received snapshot is restored only when the test calls
  // complete_restores() (production restores on another thread meanwhile).
  void start_restore(std::string_view bytes, std::shared_ptr<const void> owner,
                     std::function<void(bool)> done) override {
    if (!defer_restores)
      return raft::state_machine::start_restore(bytes, std::move(owner), std::move(done));
    pending_restores.push_back(pending_restore{bytes, std::move(owner), std::move(done)});
  }
  std::size_t complete_restores() {
    std::size_t n = 0;
    while (!pending_restores.empty()) {
      auto p = std::move(pending_restores.front());
      pending_restores.pop_front();
      p.done(restore(p.bytes));
      ++n;
    }
    return n;
  }

  std::vector<raft::entry> entries;
  // ('p', index): the entry was in a prefetch() hint; ('a', index): it was applied.
  mutable std::vector<std::pair<char, std::uint64_t>> events;
  bool defer_restores = false;
  // The bytes stay valid while owner lives (state_machine::start_restore).
  struct pending_restore {
    std::string_view bytes;
    std::shared_ptr<const void> owner;
    std::function<void(bool)> done;
  };
  std::deque<pending_restore> pending_restores;
  int restores = 0;
  std::int64_t last_stamp = 0;

 private:
  std::uint64_t applied_ = 0;
};

struct harness_options {
  bool pre_vote = true;
  std::uint64_t snapshot_entries = 0;
  std::uint32_t boot_id = 0;  // 0: random per start
  bool unsafe_ack_before_persist = false;
  // Per-node wall-clock skew (node id -> ms added to its clock); the logical clock is shared.
  std::map<std::uint64_t, std::int64_t> clock_skew_ms;
  std::size_t snapshot_chunk_bytes = std::size_t{512} << 10;  // replica_options
  std::size_t snapshot_window = 4;
  raft::unsafe_mutation mutation = raft::unsafe_mutation::none;  // every node's core
  bool release_applied_payloads = true;                          // raft::config, as the node runs
  bool lease_reads = false;                                      // replica_options
  // Per-node election timeout in ticks (node id -> election_ticks) for members configured
  // apart; the others use make_config's.
  std::map<std::uint64_t, std::uint32_t> election_ticks;
};

class harness {
 public:
  using wire_body = std::variant<raft::message, raft::forward_request, raft::forward_reply>;
  struct wire {
    raft::node_id from, to;
    wire_body body;
  };

  struct member {
    raft::node_id id;
    std::unique_ptr<raft::storage::memory_store> store;
    std::unique_ptr<recording_sm> sm;
    std::unique_ptr<raft::replica> rep;
    std::deque<std::function<void()>> tasks;
    // Recorded output.
    std::vector<raft::read_state> reads;
    std::vector<std::uint64_t> dropped;
    std::vector<raft::received_snapshot> snapshots;
    std::vector<raft::message> sent;
    std::uint32_t boot = 0;
    std::size_t clock_reads = 0;  // calls of the replica's now_ms and monotonic_ms
  };

  using options = harness_options;

  explicit harness(int size, options o = {}) : opt_(o) {
    for (int k = 1; k <= size; ++k) voters_.push_back(raft::node_id(k));
    for (int k = 1; k <= size; ++k) {
      auto m = std::make_unique<member>();
      m->id = raft::node_id(k);
      m->store = std::make_unique<raft::storage::memory_store>([this] { return now_; });
      members_[m->id] = std::move(m);
      start(raft::node_id(k));
    }
  }
  ~harness() {
    for (auto& [id, m] : members_) m->rep.reset();
  }

  static raft::config make_config(std::uint64_t id, int nodes, bool pre_vote = true) {
    raft::config c;
    c.id = raft::node_id(id);
    for (int k = 1; k <= nodes; ++k) c.voters.push_back(raft::node_id(k));
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.max_inflight = 4;
    c.compacted_entries_dropped_per_step = 3;  // compacted entries outlive a few ticks
    c.seed = id * 1000 + 17;
    c.pre_vote = pre_vote;
    return c;
  }

  // Adds node `id` as a node that joins an existing cluster: an empty store and no bootstrap
  // configuration (it waits to be contacted; raft::config). Ids beyond the initial ones.
  void add_joining(std::uint64_t id) {
    auto m = std::make_unique<member>();
    m->id = raft::node_id(id);
    m->store = std::make_unique<raft::storage::memory_store>([this] { return now_; });
    members_[m->id] = std::move(m);
    joining_.insert(raft::node_id(id));
    start(raft::node_id(id));
  }

  // (Re)starts a node from what its store holds.
  void start(raft::node_id id) {
    auto& m = *members_.at(id);
    m.rep.reset();
    m.tasks.clear();
    raft::restore_state rs = m.store->load();
    m.sm = std::make_unique<recording_sm>();
    if (rs.snapshot_data) m.sm->restore(*rs.snapshot_data);
    m.sm->restores = 0;
    raft::replica_options o;
    o.raft = make_config(id.value, static_cast<int>(voters_.size()), opt_.pre_vote);
    if (joining_.count(id)) o.raft.voters.clear();
    o.raft.mutation = opt_.mutation;
    if (auto t = opt_.election_ticks.find(id.value); t != opt_.election_ticks.end())
      o.raft.election_ticks = t->second;
    o.raft.release_applied_payloads = opt_.release_applied_payloads;
    o.tick_ms = tick_ms;
    o.lease_reads = opt_.lease_reads;
    o.snapshot_entries = opt_.snapshot_entries;
    o.serve_timeout_ms = 1000;
    o.boot_id = opt_.boot_id;
    o.unsafe_ack_before_persist = opt_.unsafe_ack_before_persist;
    o.snapshot_chunk_bytes = opt_.snapshot_chunk_bytes;
    o.snapshot_window = opt_.snapshot_window;
    member* mp = &m;
    o.post = [mp](std::function<void()> fn) { mp->tasks.push_back(std::move(fn)); };
    const std::int64_t skew =
        opt_.clock_skew_ms.count(id.value) ? opt_.clock_skew_ms.at(id.value) : 0;
    o.now_ms = [this, mp, skew] {
      ++mp->clock_reads;
      return 1'700'000'000'000 + now_ + skew;
    };
    o.monotonic_ms = [this, mp] {
      ++mp->clock_reads;
      return now_;
    };
    o.observe = [mp](const raft::ready& r) {
      for (auto& x : r.read_states) mp->reads.push_back(x);
      for (auto& x : r.dropped_reads) mp->dropped.push_back(x);
      if (r.snapshot) {
        // Tests compare the bytes: copy them out of a receiver (raft::snapshot_receiver).
        auto s = *r.snapshot;
        std::string_view held;
        if (!s.data && s.file && s.file->view(held).empty())
          s.data = std::make_shared<const std::string>(held);
        mp->snapshots.push_back(std::move(s));
      }
    };
    senders_[id] = std::make_unique<sender>(*this, id);
    m.rep = std::make_unique<raft::replica>(std::move(o), std::move(rs), *m.store, *senders_[id],
                                            *m.sm);
    m.boot = m.rep->boot_id();
    // What the transport's hellos tell: each member learns the others' read leases.
    for (auto& [other_id, other] : members_) {
      if (other_id == id || !other->rep) continue;
      m.rep->set_peer_read_lease(other_id, other->rep->read_lease_ms());
      other->rep->set_peer_read_lease(id, m.rep->read_lease_ms());
    }
    m.rep->recover();
    run(id);
  }
  // Loses every write not yet durable, then restarts.
  void crash_and_restart(raft::node_id id) {
    auto& m = *members_.at(id);
    m.store->crash();
    m.rep.reset();
    m.tasks.clear();
    start(id);
  }

  member& at(std::uint64_t id) { return *members_.at(raft::node_id(id)); }
  raft::replica& rep(std::uint64_t id) { return *at(id).rep; }
  raft::core& operator[](std::uint64_t id) { return rep(id).core_for_tests(); }
  std::map<raft::node_id, std::unique_ptr<member>>& members() { return members_; }

  // Runs node id's executor (and, with auto_persist, its storage) until idle.
  void run(raft::node_id id) {
    auto& m = *members_.at(id);
    for (int guard = 0; guard < 100000; ++guard) {
      if (!m.tasks.empty()) {
        auto fn = std::move(m.tasks.front());
        m.tasks.pop_front();
        fn();
        if (m.rep) check(m);
        continue;
      }
      if (auto_persist && m.store->pending() > 0) {
        m.store->complete_due(INT64_MAX);
        continue;
      }
      break;
    }
  }
  // Hands whatever the core produced since the last batch to the drive loop.
  void process(raft::node_id id) {
    members_.at(id)->rep->poke();
    run(id);
  }
  void process_all() {
    for (auto& [id, m] : members_) process(id);
  }
  void deliver() { deliver_except({}); }
  // deliver(), dropping what `drop` picks as well as what crosses a cut link.
  void deliver_except(const std::function<bool(const wire&)>& drop) {
    process_all();
    for (int guard = 0; guard < 100000 && !queue.empty(); ++guard) {
      wire w = std::move(queue.front());
      queue.pop_front();
      if (cut.count({w.from, w.to}) || !members_.count(w.to) || (drop && drop(w))) continue;
      auto& m = *members_.at(w.to);
      if (auto* msg = std::get_if<raft::message>(&w.body)) {
        m.rep->step(*msg);
      } else if (auto* req = std::get_if<raft::forward_request>(&w.body)) {
        m.rep->on_forward_request(w.from, *req);
      } else {
        m.rep->on_forward_reply(w.from, std::get<raft::forward_reply>(w.body));
      }
      run(w.to);
    }
  }
  void tick_all(int ticks) {
    for (int k = 0; k < ticks; ++k) {
      now_ += tick_ms;
      for (auto& [id, m] : members_) {
        m->rep->tick();
        run(id);
      }
      deliver();
    }
  }
  // Advances time and ticks every node, delivering nothing (the test delivers by hand).
  void tick_only(int ticks) {
    for (int k = 0; k < ticks; ++k) {
      now_ += tick_ms;
      for (auto& [id, m] : members_) {
        m->rep->tick();
        run(id);
      }
    }
  }
  void isolate(std::uint64_t id) {
    for (auto& [other, m] : members_) {
      if (other == raft::node_id(id)) continue;
      cut.insert({raft::node_id(id), other});
      cut.insert({other, raft::node_id(id)});
    }
  }
  void heal() { cut.clear(); }
  bool elect(std::uint64_t id) {
    rep(id).campaign();
    run(raft::node_id(id));
    deliver();
    return (*this)[id].role() == raft::role::leader;
  }
  std::optional<raft::node_id> leader() {
    std::optional<raft::node_id> best;
    for (auto& [id, m] : members_) {
      const auto& c = m->rep->core();
      if (c.role() == raft::role::leader &&
          (!best || c.term() > members_.at(*best)->rep->core().term()))
        best = id;
    }
    return best;
  }
  std::int64_t now() const { return now_; }
  // Takes a snapshot of node id's state by hand: the bytes become a durable snapshot file in
  // its store (what a leader streams to a follower), then its core drops the log prefix.
  bool compact(std::uint64_t id, raft::index_t upto, std::shared_ptr<const std::string> bytes) {
    auto& m = at(id);
    raft::snapshot_meta meta;
    meta.index = upto;
    meta.term = m.rep->core().term_at(upto).value_or(raft::term_t{});
    meta.config = m.rep->core().config_at(upto);
    m.store->write_snapshot(meta, bytes, [](std::string) {});
    m.store->complete_all();
    return (*this)[id].compact(upto, bytes);
  }

  std::deque<wire> queue;
  std::set<std::pair<raft::node_id, raft::node_id>> cut;  // (from, to) links that drop
  bool auto_persist = true;
  std::uint32_t tick_ms = 10;
  // First broken core invariant seen, if any (checked after every task).
  std::optional<std::string> invariant_broken;

 private:
  class sender final : public raft::peer_sender {
   public:
    sender(harness& h, raft::node_id self) : h_(h), self_(self) {}
    void send(const raft::message& m) override {
      h_.members_.at(self_)->sent.push_back(m);
      h_.queue.push_back(wire{self_, m.to, m});
    }
    bool forward(raft::node_id to, const raft::forward_request& r) override {
      h_.queue.push_back(wire{self_, to, r});
      return true;
    }
    void reply(raft::node_id to, const raft::forward_reply& r) override {
      h_.queue.push_back(wire{self_, to, r});
    }

   private:
    harness& h_;
    raft::node_id self_;
  };

  void check(member& m) {
    if (invariant_broken) return;
    if (auto err = m.rep->core().check_invariants()) invariant_broken = *err;
  }

  options opt_;
  std::vector<raft::node_id> voters_;
  std::map<raft::node_id, std::unique_ptr<member>> members_;
  std::map<raft::node_id, std::unique_ptr<sender>> senders_;
  std::set<raft::node_id> joining_;
  std::int64_t now_ = 0;
};

}  // namespace sim
