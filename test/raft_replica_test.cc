// Unit tests of the drive loop (raft/replica.h) over in-memory stores (test/sim/harness.h).
#define BOOST_TEST_MODULE raft_replica
#include <boost/test/unit_test.hpp>
#include <map>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "raft/replica.h"
#include "test/sim/harness.h"

using namespace raft;

namespace {

node_id n(std::uint64_t v) {
  return node_id(v);
}

struct write_result {
  std::optional<replica_error> error;
  std::string result;
};

replica::write_callback into(write_result& r) {
  return [&r](replica_error e, std::string result) {
    r.error = e;
    r.result = std::move(result);
  };
}

template <typename T>
std::size_t count(const std::vector<message>& ms, node_id to = no_node) {
  std::size_t k = 0;
  for (auto& m : ms)
    if (std::holds_alternative<T>(m.body) && (to == no_node || m.to == to)) ++k;
  return k;
}

struct cluster : sim::harness {
  explicit cluster(int size, sim::harness_options o = {}) : sim::harness(size, o) {}
  ~cluster() { BOOST_TEST(!invariant_broken.has_value(), invariant_broken.value_or("")); }
  void elect(std::uint64_t id) {
    BOOST_REQUIRE(sim::harness::elect(id));
    tick_all(2);  // the leader's no-op commits
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(proposal_completes_only_after_commit) {
  cluster cl(3);
  cl.elect(1);
  write_result w;
  cl.rep(1).propose("x", cl.now() + 1000, into(w));
  BOOST_TEST(!w.error);  // never from inside the call
  cl.run(n(1));          // appended and persisted locally, replication sent, nothing acked
  BOOST_TEST(!w.error);
  cl.deliver();
  BOOST_REQUIRE(w.error);
  BOOST_TEST((*w.error == replica_error::none));
  const auto index = cl[1].last_index();
  BOOST_TEST(w.result == "applied@" + std::to_string(index.value) + ":x");
  BOOST_TEST((cl[1].commit_index() == index));
  BOOST_TEST(cl.rep(1).status().proposals_ok == 1u);
}

BOOST_AUTO_TEST_CASE(leader_stamps_its_clock_into_proposals) {
  cluster cl(3);
  cl.elect(1);
  write_result w;
  cl.rep(1).propose("x", cl.now() + 1000, into(w));
  cl.deliver();
  BOOST_TEST(cl.at(1).sm->last_stamp == 1'700'000'000'000 + cl.now());
  // An undecodable command is refused by the state machine, never proposed.
  write_result bad;
  const auto last = cl[1].last_index();
  cl.rep(1).propose("", cl.now() + 1000, into(bad));
  cl.deliver();
  BOOST_REQUIRE(bad.error);
  BOOST_TEST((*bad.error == replica_error::rejected));
  BOOST_TEST((cl[1].last_index() == last));
}

BOOST_AUTO_TEST_CASE(follower_forwards_a_write_to_the_leader) {
  cluster cl(3);
  cl.elect(1);
  write_result w;
  cl.rep(2).propose("via-2", cl.now() + 1000, into(w));
  cl.run(n(2));
  BOOST_REQUIRE(!cl.queue.empty());
  BOOST_TEST(std::holds_alternative<forward_request>(cl.queue.back().body));
  cl.deliver();
  BOOST_REQUIRE(w.error);
  BOOST_TEST((*w.error == replica_error::none));
  BOOST_TEST(cl.at(1).sm->entries.back().data == "via-2");
  BOOST_TEST(w.result == "applied@" + std::to_string(cl[1].last_index().value) + ":via-2");
}

BOOST_AUTO_TEST_CASE(forward_is_retried_with_the_next_leader) {
  cluster cl(3);
  cl.elect(1);
  cl.isolate(1);
  write_result w;
  cl.rep(2).propose("retry-me", cl.now() + 5000, into(w));
  cl.deliver();  // the forward to node 1 is lost
  BOOST_TEST(!w.error);
  for (int k = 0; k < 100 && !w.error; ++k) cl.tick_all(1);
  BOOST_REQUIRE(w.error);
  BOOST_TEST((*w.error == replica_error::none));
  auto l = cl.leader();
  BOOST_REQUIRE(l.has_value());
  BOOST_TEST((*l != n(1)));
  BOOST_TEST(cl.at(l->value).sm->entries.back().data == "retry-me");
}

BOOST_AUTO_TEST_CASE(write_without_leader_times_out_with_no_leader) {
  cluster cl(3);
  write_result w;
  cl.rep(2).propose("x", cl.now() + 100, into(w));
  cl.run(n(2));
  cl.isolate(1);
  cl.isolate(2);
  cl.isolate(3);
  for (int k = 0; k < 20 && !w.error; ++k) cl.tick_all(1);
  BOOST_REQUIRE(w.error);
  BOOST_TEST((*w.error == replica_error::no_leader));
}

BOOST_AUTO_TEST_CASE(reads_queued_meanwhile_share_one_round) {
  cluster cl(3);
  cl.elect(1);
  int done = 0;
  auto ok = [&done](replica_error e) { done += e == replica_error::none; };
  // Five reads in one turn of the executor: one round.
  for (int k = 0; k < 5; ++k) cl.rep(1).read(cl.now() + 1000, ok);
  cl.deliver();
  BOOST_TEST(done == 5);
  BOOST_TEST(cl.at(1).reads.size() == 1u);
  // One read starts a round; three more while it is in flight share the next one.
  cl.rep(1).read(cl.now() + 1000, ok);
  cl.run(n(1));
  for (int k = 0; k < 3; ++k) cl.rep(1).read(cl.now() + 1000, ok);
  cl.run(n(1));
  BOOST_TEST(done == 5);  // nothing confirmed yet
  cl.deliver();
  BOOST_TEST(done == 9);
  BOOST_TEST(cl.at(1).reads.size() == 3u);
  // Through a follower too (the core forwards the ReadIndex to the leader).
  cl.rep(2).read(cl.now() + 1000, ok);
  cl.deliver();
  BOOST_TEST(done == 10);
  BOOST_TEST((cl.at(2).sm->applied_index() >= cl[1].commit_index()));
}

BOOST_AUTO_TEST_CASE(read_waits_until_the_read_index_is_applied) {
  cluster cl(3);
  cl.elect(1);
  // A write commits through nodes 1 and 3 while node 2 hears nothing.
  cl.cut.insert({n(1), n(2)});
  write_result w;
  cl.rep(1).propose("x", cl.now() + 1000, into(w));
  cl.deliver();
  BOOST_REQUIRE((w.error && *w.error == replica_error::none));
  const auto commit = cl[1].commit_index();
  BOOST_REQUIRE((cl.at(2).sm->applied_index() < commit));
  cl.heal();
  // A read through node 2: the leader confirms it at `commit`, but the entries that would
  // let node 2 apply up to there are held back.
  int done = 0;
  cl.rep(2).read(cl.now() + 1000, [&](replica_error e) {
    done += e == replica_error::none;
    BOOST_TEST((cl.at(2).sm->applied_index() >= commit));
  });
  cl.run(n(2));
  std::deque<sim::harness::wire> held;
  for (int guard = 0; guard < 1000 && !cl.queue.empty(); ++guard) {
    auto m = std::move(cl.queue.front());
    cl.queue.pop_front();
    auto* msg = std::get_if<message>(&m.body);
    if (msg && m.to == n(2) && std::holds_alternative<append_request>(msg->body)) {
      held.push_back(std::move(m));
      continue;
    }
    BOOST_REQUIRE(msg);
    cl.rep(m.to.value).step(*msg);
    cl.run(m.to);
  }
  BOOST_TEST(cl.at(2).reads.size() == 1u);  // confirmed at the leader's commit index
  BOOST_TEST((cl.at(2).reads[0].index >= commit));
  BOOST_TEST(done == 0);  // but not applied here yet
  for (auto& m : held) cl.queue.push_back(std::move(m));
  cl.deliver();
  BOOST_TEST(done == 1);
}

BOOST_AUTO_TEST_CASE(snapshot_every_n_applied_entries_compacts_the_log) {
  sim::harness_options o;
  o.snapshot_entries = 5;
  cluster cl(3, o);
  cl.elect(1);
  for (int k = 0; k < 12; ++k) {
    write_result w;
    cl.rep(1).propose("v" + std::to_string(k), cl.now() + 1000, into(w));
    cl.deliver();
  }
  for (std::uint64_t id = 1; id <= 3; ++id) {
    const auto& d = cl.at(id).store->state();
    BOOST_REQUIRE(d.snapshot.has_value());
    BOOST_TEST(d.snapshot->index.value >= 10u);
    BOOST_TEST((cl[id].snapshot_index() == d.snapshot->index));
    BOOST_TEST(d.log.begin()->first == d.snapshot->index.value + 1);
    BOOST_TEST(*d.file_data == "snapshot@" + std::to_string(d.file_meta->index.value));
  }
  // A restart recovers from the snapshot and applies only what follows it: at once up to
  // the commit index it stored (which may lag), the rest when the leader says.
  const auto commit = cl[2].commit_index();
  const auto stored =
      std::max(cl.at(2).store->state().hs.commit, cl.at(2).store->state().snapshot->index);
  cl.crash_and_restart(n(2));
  BOOST_TEST((cl.at(2).sm->applied_index() == stored));
  cl.tick_all(10);
  BOOST_TEST((cl.at(2).sm->applied_index() == commit));
  BOOST_TEST(cl.at(2).sm->entries.size() ==
             commit.value - cl.at(2).store->state().snapshot->index.value);
  // take_snapshot with nothing new answers at once.
  std::optional<replica_error> snap;
  cl.rep(1).take_snapshot([&](replica_error e) { snap = e; });
  cl.run(n(1));
  BOOST_TEST((snap && *snap == replica_error::none));
}

BOOST_AUTO_TEST_CASE(recovery_applies_the_committed_log_through_the_one_apply_path) {
  cluster cl(3);
  cl.elect(1);
  for (int k = 0; k < 7; ++k) {
    write_result w;
    cl.rep(1).propose("r" + std::to_string(k), cl.now() + 1000, into(w));
    cl.deliver();
  }
  cl.tick_all(2);  // followers learn the last commit index (not written for its own sake)
  const auto commit = cl[1].commit_index();
  BOOST_REQUIRE(commit.value >= 8u);
  // The stored commit index came with the last batch of entries: it may lag by that batch.
  const auto stored = cl.at(3).store->state().hs.commit;
  BOOST_REQUIRE(stored.value >= 7u);
  cl.crash_and_restart(n(3));
  // Applied before anything else happened: every entry the stored commit index covers,
  // from the stored log.
  BOOST_TEST((cl.at(3).sm->applied_index() == stored));
  BOOST_TEST(cl.at(3).sm->entries.size() == stored.value);
  // The rest, through the same apply path, once the leader's heartbeat says so.
  cl.tick_all(10);
  BOOST_TEST((cl.at(3).sm->applied_index() == commit));
  BOOST_TEST(cl.at(3).sm->entries.size() == commit.value);
  BOOST_TEST(cl.at(3).sm->entries.back().data == "r6");
}

// Before applying committed entries the replica hands them to the state machine's
// prefetch() hint (kv::store warms its tree paths), in chunks of at most
// state_machine::prefetch_entries, each chunk before any of its entries is applied.
BOOST_AUTO_TEST_CASE(committed_entries_are_hinted_in_chunks_before_they_are_applied) {
  cluster cl(3);
  cl.elect(1);
  std::vector<write_result> w(40);
  for (std::size_t k = 0; k < w.size(); ++k)
    cl.rep(1).propose("w" + std::to_string(k), cl.now() + 1000, into(w[k]));
  cl.deliver();
  cl.tick_all(2);
  for (auto& r : w) BOOST_REQUIRE((r.error == replica_error::none));
  for (std::uint64_t id = 1; id <= 3; ++id) {
    BOOST_TEST_CONTEXT("node " << id) {
      const auto& events = cl.at(id).sm->events;
      std::set<std::uint64_t> hinted;
      std::size_t run = 0, longest_run = 0;
      for (const auto& [kind, index] : events) {
        if (kind == 'p') {
          hinted.insert(index);
          longest_run = std::max(longest_run, ++run);
        } else {
          run = 0;
          BOOST_TEST(hinted.count(index) == 1u, "entry " << index << " applied before its hint");
        }
      }
      // The 40 writes were committed together, so chunks were full; none was larger.
      BOOST_TEST(longest_run == raft::state_machine::prefetch_entries);
      BOOST_TEST(cl.at(id).sm->applied_index().value >= 41u);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_turns_fresh_writes_share_one_reading_of_the_clocks) {
  cluster cl(3);
  cl.elect(1);
  std::vector<write_result> w(40);
  const std::size_t before = cl.at(1).clock_reads;
  for (std::size_t k = 0; k < w.size(); ++k)
    cl.rep(1).propose("w" + std::to_string(k), cl.now() + 1000, into(w[k]));
  cl.process(n(1));  // the turn that proposes them
  // Reading both clocks for each write would take 80 and more.
  BOOST_TEST(cl.at(1).clock_reads - before < w.size());
  cl.deliver();
  cl.tick_all(2);
  for (auto& r : w) BOOST_TEST((r.error == replica_error::none));
}

BOOST_AUTO_TEST_CASE(acknowledgements_wait_for_the_batch_to_be_durable) {
  for (bool mutation : {false, true}) {
    sim::harness_options o;
    o.unsafe_ack_before_persist = mutation;
    cluster cl(3, o);
    cl.elect(1);
    cl.auto_persist = false;
    cl[1].propose("x");
    cl.process(n(1));
    cl.at(2).sent.clear();
    // Deliver the append to node 2 only.
    std::deque<sim::harness::wire> rest;
    while (!cl.queue.empty()) {
      auto w = std::move(cl.queue.front());
      cl.queue.pop_front();
      if (w.to == n(2)) {
        cl.rep(2).step(std::get<message>(w.body));
        cl.run(n(2));
      }
    }
    BOOST_TEST(cl.at(2).store->pending() > 0u);
    // Correct loop: no acknowledgement before the write is durable. The mutation sends it.
    BOOST_TEST(count<append_response>(cl.at(2).sent) == (mutation ? 1u : 0u));
    cl.at(2).store->complete_all();
    cl.run(n(2));
    BOOST_TEST(count<append_response>(cl.at(2).sent) == 1u);
  }
}

// A heartbeat answer promises no entry: with its term and vote durable it does not wait
// for the follower's batch in flight, so a ReadIndex round does not wait for a fsync.
// An answer in a term that is not yet durable still waits.
BOOST_AUTO_TEST_CASE(heartbeat_answers_do_not_wait_for_entries_being_written) {
  cluster cl(3);
  cl.elect(1);
  cl.auto_persist = false;
  cl[1].propose("x");
  cl.process(n(1));
  // Node 2 takes what is queued for it (its write stays in flight); nothing else moves.
  auto deliver_to_2 = [&cl] {
    std::deque<sim::harness::wire> rest;
    std::deque<sim::harness::wire> now = std::move(cl.queue);
    cl.queue.clear();
    for (auto& w : now) {
      if (w.to != n(2)) {
        rest.push_back(std::move(w));
        continue;
      }
      if (auto* m = std::get_if<message>(&w.body)) cl.rep(2).step(*m);
      cl.run(n(2));
    }
    for (auto& w : cl.queue) rest.push_back(std::move(w));  // what node 2 sent, after
    cl.queue = std::move(rest);
  };
  deliver_to_2();
  BOOST_REQUIRE(cl.at(2).store->pending() > 0u);
  cl.at(2).sent.clear();
  // A read on the leader starts a heartbeat round; node 2 answers at once.
  bool read_done = false;
  cl.rep(1).read(cl.now() + 1000, replica::done_callback([&read_done](replica_error e) {
                   read_done = e == replica_error::none;
                 }));
  cl.process(n(1));
  deliver_to_2();
  BOOST_TEST(cl.at(2).store->pending() > 0u);
  BOOST_TEST(count<heartbeat_response>(cl.at(2).sent) == 1u);
  BOOST_TEST(count<append_response>(cl.at(2).sent) == 0u);  // that one still waits
  // The answer reaches the leader: the read is served while both followers still write.
  cl.deliver();
  BOOST_TEST(read_done);
  BOOST_TEST(cl.at(2).store->pending() > 0u);

  // A node that has just moved to a new term answers nothing before the term is durable.
  cluster c2(3);
  c2.elect(1);
  c2.auto_persist = false;
  c2.at(2).sent.clear();
  c2.rep(2).step(
      message{n(3), n(2), term_t(c2[1].term().value + 5), heartbeat_request{index_t{}, 0}});
  c2.run(n(2));
  BOOST_TEST(c2.at(2).store->pending() > 0u);
  BOOST_TEST(count<heartbeat_response>(c2.at(2).sent) == 0u);
  c2.at(2).store->complete_all();
  c2.run(n(2));
  BOOST_TEST(count<heartbeat_response>(c2.at(2).sent) == 1u);
}

BOOST_AUTO_TEST_CASE(a_write_costs_each_node_one_durable_batch) {
  // The commit index need not be durable (a restarted node clamps it and learns the rest
  // from the leader), so learning that an entry committed must not cost a write of its own:
  // that would be a second fsync per write on every node, and the next entries would queue
  // behind it. One write, replicated and committed everywhere: one batch per node.
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(10);
  std::uint64_t before[4];
  for (std::uint64_t i = 1; i <= 3; ++i) before[i] = cl.at(i).store->batches_submitted();
  write_result w;
  cl.rep(1).propose("x", cl.now() + 1000, into(w));
  cl.run(n(1));
  cl.deliver();
  BOOST_REQUIRE(w.error);
  BOOST_TEST((*w.error == replica_error::none));
  cl.tick_all(10);  // heartbeats tell the followers the new commit index
  for (std::uint64_t i = 1; i <= 3; ++i) {
    BOOST_TEST((cl[i].commit_index() == cl[1].last_index()), "node " << i);
    BOOST_TEST(cl.at(i).store->batches_submitted() - before[i] == 1u, "node " << i);
  }
  // Term and vote still go out at once: an election writes a batch before any vote.
}

BOOST_AUTO_TEST_CASE(storage_error_stops_acknowledgements_and_writes) {
  cluster cl(3);
  cl.elect(1);
  cl.at(2).store->fail("disk full: no space left on device");
  cl.at(2).sent.clear();
  write_result w;
  cl.rep(1).propose("x", cl.now() + 1000, into(w));
  cl.deliver();
  // Node 3 acknowledges, so the write commits; node 2 acknowledges nothing any more.
  BOOST_TEST((w.error && *w.error == replica_error::none));
  BOOST_TEST(count<append_response>(cl.at(2).sent) == 0u);
  BOOST_TEST(cl.rep(2).storage_error() == "disk full: no space left on device");
  BOOST_TEST(cl.rep(2).status().storage_error == cl.rep(2).storage_error());
  write_result refused;
  cl.rep(2).propose("y", cl.now() + 1000, into(refused));
  cl.run(n(2));
  BOOST_REQUIRE(refused.error);
  BOOST_TEST((*refused.error == replica_error::unavailable));
  // Heartbeats keep coming; still no acknowledgement of any kind that promises storage.
  cl.tick_all(5);
  BOOST_TEST(count<append_response>(cl.at(2).sent) == 0u);
  BOOST_TEST(count<vote_response>(cl.at(2).sent) == 0u);
}

BOOST_AUTO_TEST_CASE(call_ids_differ_across_restarts_and_stale_replies_are_dropped) {
  cluster cl(3);
  cl.elect(1);
  // Node 2 forwards a write; the leader's reply is held back.
  cl.cut.insert({n(1), n(2)});
  write_result w;
  cl.rep(2).propose("x", cl.now() + 1000, into(w));
  cl.run(n(2));
  BOOST_REQUIRE(std::holds_alternative<forward_request>(cl.queue.back().body));
  const auto first_life = std::get<forward_request>(cl.queue.back().body).call_id;
  const auto boot1 = cl.at(2).boot;
  BOOST_TEST((first_life >> 32) == boot1);
  cl.deliver();  // the reply to node 2 is cut
  cl.crash_and_restart(n(2));
  cl.heal();
  BOOST_TEST(cl.at(2).boot != boot1);
  cl.tick_all(3);  // it learns who leads
  // Its next life forwards a write of its own; the old life's reply arrives meanwhile.
  write_result w2;
  cl.rep(2).propose("y", cl.now() + 1000, into(w2));
  cl.run(n(2));
  BOOST_REQUIRE(std::holds_alternative<forward_request>(cl.queue.back().body));
  const auto second_life = std::get<forward_request>(cl.queue.back().body).call_id;
  BOOST_TEST(second_life != first_life);
  BOOST_TEST((second_life >> 32) == cl.at(2).boot);
  cl.rep(2).on_forward_reply(n(1), forward_reply{first_life, replica_error::none, "stale"});
  cl.run(n(2));
  BOOST_TEST(!w2.error);  // not taken for the new call
  BOOST_TEST(cl.rep(2).status().replies_dropped == 1u);
  cl.deliver();
  BOOST_REQUIRE(w2.error);
  BOOST_TEST((*w2.error == replica_error::none));
  BOOST_TEST(w2.result.find(":y") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(stop_fails_every_waiting_call) {
  cluster cl(3);
  cl.elect(1);
  cl.isolate(1);
  write_result w;
  std::optional<replica_error> r;
  cl.rep(1).propose("x", cl.now() + 1000, into(w));
  cl.rep(1).read(cl.now() + 1000, [&](replica_error e) { r = e; });
  cl.deliver();
  BOOST_TEST(!w.error);
  cl.rep(1).stop();
  BOOST_TEST((w.error && *w.error == replica_error::stopped));
  BOOST_TEST((r && *r == replica_error::stopped));
}

namespace {

// A snapshot far larger than one chunk streams to a lagging follower with a bounded window;
// a link cut in the middle loses chunks, and the stream resumes from the acknowledged offset
// once the link is back: the follower installs the exact bytes and no election happens.
// receivers: whether the follower's store assembles the bytes (log_store::
// open_snapshot_receiver, a temp file in production) or the replica does, in memory.
void stream_a_snapshot_across_a_cut_link(bool receivers) {
  sim::harness_options o;
  o.snapshot_chunk_bytes = 4096;
  o.snapshot_window = 3;
  cluster cl(3, o);
  cl.at(3).store->offer_receivers(receivers);
  cl.elect(1);
  cl.isolate(3);
  for (int k = 0; k < 20; ++k) cl[1].propose("v" + std::to_string(k));
  cl.deliver();
  const index_t upto = cl[1].applied_index();
  // 200 KB of state: 49 chunks. recording_sm restores from what follows the last '@'.
  auto bytes = std::make_shared<const std::string>(std::string(200'000, 'p') + "snapshot@" +
                                                   std::to_string(upto.value));
  BOOST_REQUIRE(cl.compact(1, upto, bytes));
  const term_t term = cl[1].term();
  cl.heal();

  // Let the stream start, then count chunks in flight: never more than the window.
  std::size_t chunks_seen = 0, max_in_queue = 0;
  bool cut_done = false;
  for (int round = 0; round < 400 && cl[3].snapshot_index() != upto; ++round) {
    cl.process_all();
    std::size_t in_queue = 0;
    for (auto& w : cl.queue)
      if (auto* m = std::get_if<message>(&w.body);
          m && std::holds_alternative<snapshot_chunk>(m->body))
        ++in_queue;
    max_in_queue = std::max(max_in_queue, in_queue);
    // Deliver one message at a time, so the cut lands in the middle of the stream.
    if (!cl.queue.empty()) {
      auto w = std::move(cl.queue.front());
      cl.queue.pop_front();
      auto* m = std::get_if<message>(&w.body);
      if (m && std::holds_alternative<snapshot_chunk>(m->body)) ++chunks_seen;
      if (!cl.cut.count({w.from, w.to}) && m) {
        cl.rep(w.to.value).step(*m);
        cl.run(w.to);
      }
    }
    if (!cut_done && chunks_seen == 10) {
      cl.isolate(3);  // the connection drops: whatever is in flight is lost
      cut_done = true;
      cl.deliver();
      cl.tick_all(5);
      cl.heal();
    }
    if (cl.queue.empty()) cl.tick_only(1);
  }
  // Finish whatever is left (resends after a stall).
  for (int k = 0; k < 200 && cl[3].snapshot_index() != upto; ++k) cl.tick_all(1);
  cl.deliver();  // the follower's last answer
  BOOST_TEST(cut_done);
  BOOST_TEST((cl[3].snapshot_index() == upto));
  BOOST_REQUIRE(!cl.at(3).snapshots.empty());
  BOOST_TEST(*cl.at(3).snapshots.back().data == *bytes);  // exact bytes, verified
  BOOST_TEST(max_in_queue <= 3u);
  const auto st = cl.rep(1).status();
  BOOST_TEST(st.snapshot_transfers_done == 1u);
  BOOST_REQUIRE(st.snapshot_transfers.size() == 1u);
  BOOST_TEST(st.snapshot_transfers[0].state == "done");
  BOOST_TEST(st.snapshot_transfers[0].total == bytes->size());
  BOOST_TEST(st.snapshot_transfers[0].resends >= 1u);    // it resumed after the cut
  BOOST_TEST(cl.at(1).store->snapshots_opened() == 1u);  // one stream, resumed, not restarted
  // Where the follower held the bytes: its store's receiver (once: the cut resumed it), or
  // memory.
  const auto& installed = cl.at(3).snapshots.back();
  if (receivers) {
    BOOST_TEST(cl.at(3).store->receivers_opened() == 1u);
    BOOST_TEST(cl.at(3).store->receivers_installed() == 1u);
    BOOST_TEST(installed.file != nullptr);
  } else {
    BOOST_TEST(cl.at(3).store->receivers_opened() == 0u);
    BOOST_TEST(installed.file == nullptr);
  }
  BOOST_REQUIRE(cl.at(3).store->state().file_data);
  BOOST_TEST((*cl.at(3).store->state().file_data == *bytes));  // durable: the same bytes
  // No election: same leader, same term.
  BOOST_TEST((cl[1].term() == term));
  BOOST_TEST((cl[1].role() == role::leader));
  // Replication continues from the snapshot on.
  BOOST_REQUIRE(cl[1].propose("after").ok());
  cl.deliver();
  cl.tick_all(3);
  BOOST_TEST((cl[3].commit_index() == cl[1].last_index()));
}

}  // namespace

BOOST_AUTO_TEST_CASE(snapshot_streams_in_chunks_into_the_store_and_survives_a_cut_link) {
  stream_a_snapshot_across_a_cut_link(true);
}

BOOST_AUTO_TEST_CASE(snapshot_streams_in_chunks_into_memory_and_survives_a_cut_link) {
  stream_a_snapshot_across_a_cut_link(false);
}

// A follower that cannot store a received snapshot (its disk is full under the temp file)
// answers the leader with a failure rather than acknowledge bytes it does not hold: the
// leader counts a failed transfer, the follower installs nothing, and once the disk has room
// a later transfer installs the exact bytes.
BOOST_AUTO_TEST_CASE(a_snapshot_the_follower_cannot_store_fails_and_a_later_transfer_installs) {
  sim::harness_options o;
  o.snapshot_chunk_bytes = 4096;
  o.snapshot_window = 3;
  cluster cl(3, o);
  cl.elect(1);
  cl.isolate(3);
  for (int k = 0; k < 20; ++k) cl[1].propose("v" + std::to_string(k));
  cl.deliver();
  const index_t upto = cl[1].applied_index();
  auto bytes = std::make_shared<const std::string>(std::string(50'000, 'q') + "snapshot@" +
                                                   std::to_string(upto.value));
  BOOST_REQUIRE(cl.compact(1, upto, bytes));
  cl.at(3).store->fail_receivers("no space left on device");
  cl.heal();
  for (int k = 0; k < 200 && cl.rep(1).status().snapshot_transfers_failed == 0; ++k) cl.tick_all(1);
  BOOST_TEST(cl.rep(1).status().snapshot_transfers_failed >= 1u);
  BOOST_TEST(cl.at(3).snapshots.empty());
  BOOST_TEST((cl[3].snapshot_index() < upto));
  BOOST_TEST(cl.at(3).store->receivers_installed() == 0u);

  cl.at(3).store->fail_receivers({});
  for (int k = 0; k < 500 && cl[3].snapshot_index() != upto; ++k) cl.tick_all(1);
  BOOST_TEST((cl[3].snapshot_index() == upto));
  BOOST_TEST(cl.at(3).store->receivers_installed() == 1u);
  BOOST_REQUIRE(cl.at(3).store->state().file_data);
  BOOST_TEST((*cl.at(3).store->state().file_data == *bytes));
  BOOST_TEST(cl.rep(1).status().snapshot_transfers_done == 1u);
}

// A received snapshot may be restored off the executor (app/kv_state_machine does, on a
// thread). Meanwhile the follower keeps answering its leader (no election), persists new
// entries, applies nothing and holds reads; once the restore is done it applies the waiting
// entries in order.
BOOST_AUTO_TEST_CASE(a_snapshot_restored_off_the_executor_holds_applies_not_the_node) {
  cluster cl(3);
  cl.at(3).sm->defer_restores = true;
  cl.elect(1);
  cl.isolate(3);
  for (int k = 0; k < 10; ++k) cl[1].propose("v" + std::to_string(k));
  cl.deliver();
  const index_t upto = cl[1].applied_index();
  BOOST_REQUIRE(cl.compact(
      1, upto, std::make_shared<const std::string>("snapshot@" + std::to_string(upto.value))));
  const term_t term = cl[1].term();
  cl.heal();
  for (int round = 0; round < 50 && cl.at(3).sm->pending_restores.empty(); ++round) {
    cl.tick_all(1);
  }
  BOOST_REQUIRE(cl.at(3).sm->pending_restores.size() == 1u);
  BOOST_TEST((cl.rep(3).status().restoring_snapshot_index == upto));
  const index_t before = cl.at(3).sm->applied_index();
  BOOST_TEST((before < upto));

  // Writes go on; node 3 stores them and stays a follower of the same leader.
  for (int k = 0; k < 5; ++k) cl[1].propose("w" + std::to_string(k));
  std::optional<replica_error> read;
  cl.rep(3).read(cl.now() + 100000, [&](replica_error e) { read = e; });
  cl.tick_all(40);  // several election timeouts
  BOOST_TEST((cl[1].term() == term));
  BOOST_TEST((cl[3].leader() == node_id(1)));
  BOOST_TEST((cl[3].last_index() == cl[1].last_index()));
  BOOST_TEST((cl.at(3).sm->applied_index() == before));    // nothing applied meanwhile
  BOOST_TEST(!read.has_value());                           // the read waits for its index
  BOOST_TEST(cl.at(3).sm->pending_restores.size() == 1u);  // one restore at a time

  BOOST_TEST(cl.at(3).sm->complete_restores() == 1u);
  cl.tick_all(2);
  BOOST_TEST((cl.at(3).sm->applied_index() == cl[1].commit_index()));
  BOOST_TEST((cl.rep(3).status().restoring_snapshot_index == index_t{}));
  BOOST_REQUIRE(read.has_value());
  BOOST_TEST((*read == replica_error::none));
  // The waiting entries were applied once, in order, right after the snapshot.
  std::vector<entry> after;
  for (const auto& e : cl.at(3).sm->entries)
    if (e.index > upto) after.push_back(e);
  BOOST_REQUIRE(after.size() >= 5u);
  BOOST_TEST((after.front().index.value == upto.value + 1));
  for (std::size_t k = 1; k < after.size(); ++k) {
    BOOST_TEST((after[k].index.value == after[k - 1].index.value + 1));
  }
  BOOST_TEST(after.back().data == "w4");
}

// A graceful shutdown: the leader hands over to its most up-to-date voter before it stops,
// and never campaigns again.
BOOST_AUTO_TEST_CASE(hand_over_moves_leadership_to_an_up_to_date_voter) {
  cluster cl(3);
  cl.elect(1);
  BOOST_TEST((cl.rep(2).hand_over() == no_node));  // a follower has nothing to hand over
  for (int k = 0; k < 5; ++k) cl[1].propose("h" + std::to_string(k));
  cl.deliver();
  const term_t term = cl[1].term();
  const node_id to = cl.rep(1).hand_over();
  BOOST_REQUIRE((to == n(2) || to == n(3)));
  for (int round = 0; round < 50 && cl.rep(1).is_leader(); ++round) cl.tick_all(1);
  BOOST_TEST(!cl.rep(1).is_leader());
  BOOST_TEST((cl[to.value].term() > term));
  BOOST_TEST(cl.rep(to.value).is_leader());
  // Alone, it never campaigns again.
  cl.isolate(1);
  cl.tick_all(100);
  BOOST_TEST((cl[1].role() != role::candidate && cl[1].role() != role::leader));
}

// ---------------------------------------------------------------------------------------
// Read leases (raft/core.h, "Read leases"). The harness ticks every node at one rate, so the
// lease (leader_lease_ms: (10 - 2) x 10 ms x 3/4 = 60 ms here) is checked against the
// followers' election timeout (10 to 20 ticks of 10 ms) by construction.

namespace {

sim::harness_options with_leases(unsafe_mutation m = unsafe_mutation::none) {
  sim::harness_options o;
  o.lease_reads = true;
  o.mutation = m;
  return o;
}

// With leases on, nobody grants a vote within an election timeout of starting (a restarted
// voter may have promised a lease), so leaders come from the clock, not from campaign().
std::uint64_t tick_until_leader(cluster& cl) {
  for (int k = 0; k < 200 && !cl.leader(); ++k) cl.tick_all(1);
  BOOST_REQUIRE(cl.leader());
  cl.tick_all(3);  // a heartbeat round answered: the lease runs
  return cl.leader()->value;
}

using read_outcome = std::shared_ptr<std::optional<replica_error>>;

read_outcome start_read(cluster& cl, std::uint64_t id) {
  auto out = std::make_shared<std::optional<replica_error>>();
  cl.rep(id).read(cl.now() + 100000, [out](replica_error e) { *out = e; });
  cl.process(n(id));
  return out;
}

bool answered_ok(const read_outcome& r) {
  return r->has_value() && **r == replica_error::none;
}

void cut_both(cluster& cl, std::uint64_t a, std::uint64_t b) {
  cl.cut.insert({n(a), n(b)});
  cl.cut.insert({n(b), n(a)});
}

}  // namespace

BOOST_AUTO_TEST_CASE(leader_lease_reads_need_no_heartbeat_round) {
  BOOST_TEST(leader_lease_ms(10, 30) == 210);  // the node's defaults
  BOOST_TEST(leader_lease_ms(10, 3) == 0);
  for (bool lease : {false, true}) {
    sim::harness_options o;
    o.lease_reads = lease;
    cluster cl(3, o);
    const std::uint64_t l = tick_until_leader(cl);
    // Nothing is delivered: only a lease can answer.
    auto r = start_read(cl, l);
    BOOST_TEST(answered_ok(r) == lease);
    BOOST_TEST(cl[l].status().lease_reads == (lease ? 1u : 0u));
    cl.deliver();
    BOOST_TEST(answered_ok(r));
    // A follower's read is forwarded; the leader answers it on its lease too.
    const std::uint64_t f = l == 1 ? 2 : 1;
    auto rf = start_read(cl, f);
    cl.deliver();
    BOOST_TEST(answered_ok(rf));
    BOOST_TEST(cl[l].status().lease_reads == (lease ? 2u : 0u));
  }
}

BOOST_AUTO_TEST_CASE(a_cut_off_leader_stops_lease_reads_before_anyone_else_can_lead) {
  cluster cl(3, with_leases());
  const std::uint64_t l = tick_until_leader(cl);
  cl.isolate(l);
  int served = 0;
  for (int tick = 0; tick < 100; ++tick) {
    auto r = start_read(cl, l);
    if (answered_ok(r)) ++served;
    bool other = false;
    for (std::uint64_t k = 1; k <= 3; ++k)
      if (k != l && cl[k].role() == role::leader) other = true;
    if (other) {
      BOOST_TEST(!cl[l].lease_valid());
      BOOST_TEST(!answered_ok(r));
      BOOST_TEST_MESSAGE("new leader after " << tick << " ticks; " << served
                                             << " reads served on the old lease");
      break;
    }
    cl.tick_all(1);
  }
  BOOST_TEST(served > 0);  // the lease was in use when the leader was cut off
  BOOST_TEST(!cl[l].lease_valid());
}

// A transfer's election skips the followers' vote lease: the old leader must stop reading on
// its lease the moment it asks. Here it never hears of the new leader (its inbound links are
// cut), which commits a write; a read on the old leader must not answer without it. The
// mutation that keeps the lease shows the stale read this prevents.
BOOST_AUTO_TEST_CASE(a_leadership_transfer_ends_the_lease) {
  for (auto mutation : {unsafe_mutation::none, unsafe_mutation::lease_survives_transfer}) {
    cluster cl(3, with_leases(mutation));
    const std::uint64_t l = tick_until_leader(cl);
    const std::uint64_t to = l == 1 ? 2 : 1;
    const std::uint64_t third = 6 - l - to;
    BOOST_REQUIRE(cl[l].lease_valid());
    // It still sends, but hears nothing.
    cl.cut.insert({n(to), n(l)});
    cl.cut.insert({n(third), n(l)});
    BOOST_REQUIRE(cl.rep(l).transfer_leadership(n(to)) == replica_error::none);
    cl.deliver();
    BOOST_REQUIRE(cl.rep(to).is_leader());
    write_result w;
    cl.rep(to).propose("after", cl.now() + 100000, into(w));
    cl.deliver();
    BOOST_REQUIRE(w.error.has_value());
    BOOST_REQUIRE((*w.error == replica_error::none));
    BOOST_REQUIRE(cl.rep(l).is_leader());  // not told yet
    auto r = start_read(cl, l);
    const bool stale = answered_ok(r) && cl.at(l).sm->applied_index() < cl[to].commit_index();
    BOOST_TEST(stale == (mutation == unsafe_mutation::lease_survives_transfer));
  }
}

// A voter that restarts may have answered the heartbeat a leader's lease counts on; it must
// not vote that lease away. Leader 1 holds its lease on node 2's answers alone (3 is cut
// off); 2 restarts and 3 campaigns at once: 2 refuses for an election timeout, and by the
// time 3 wins, 1's lease is over.
BOOST_AUTO_TEST_CASE(a_restarted_voter_does_not_vote_within_a_lease) {
  cluster cl(3, with_leases());
  const std::uint64_t l = tick_until_leader(cl);
  const std::uint64_t f = l == 1 ? 2 : 1;
  const std::uint64_t c = 6 - l - f;
  cut_both(cl, l, c);
  cl.tick_all(2);
  BOOST_REQUIRE(cl[l].lease_valid());
  cut_both(cl, l, f);
  cl.crash_and_restart(n(f));
  cl.rep(c).campaign();
  cl.deliver();
  BOOST_TEST(!cl.rep(c).is_leader());
  for (int tick = 0; tick < 100 && !cl.rep(c).is_leader(); ++tick) {
    BOOST_TEST(!(cl[l].lease_valid() && cl[l].role() == role::leader && cl.rep(c).is_leader()));
    cl.tick_all(1);
  }
  BOOST_TEST(cl.rep(c).is_leader());
  BOOST_TEST(!cl[l].lease_valid());
}

// A member configured apart: node 3 runs with an election timeout of 3 ticks against the
// others' 10, so it stops refusing votes, and campaigns itself, long before the read lease
// of a leader with 10 ticks runs out. Its hellos say so (a read lease of 0: below 4 ticks
// it holds none), and a leader must not count its answers toward the lease. Here leader l
// hears only from 3 (f is cut off from it), then from nobody; 3 campaigns at every tick and
// wins once f stops honouring l (10 ticks without hearing from it). Counting 3 (the mutation)
// leaves l reading on its lease while 3 leads; without it l has no lease by then.
BOOST_AUTO_TEST_CASE(a_member_with_a_shorter_vote_lease_does_not_extend_a_lease) {
  for (auto mutation : {unsafe_mutation::none, unsafe_mutation::lease_trusts_every_peer}) {
    auto o = with_leases(mutation);
    o.election_ticks[3] = 3;
    cluster cl(3, o);
    BOOST_TEST(cl.rep(3).read_lease_ms() == 0);
    BOOST_TEST(cl.rep(1).read_lease_ms() == 60);
    cl.isolate(3);  // a leader other than 3
    const std::uint64_t l = tick_until_leader(cl);
    BOOST_REQUIRE(l != 3);
    const std::uint64_t f = 3 - l;
    cl.heal();
    cl.tick_all(3);
    BOOST_REQUIRE(cl[l].lease_valid());
    cut_both(cl, l, f);
    cl.tick_all(7);  // the lease f's answers gave has run out
    BOOST_TEST(cl[l].lease_valid() == (mutation == unsafe_mutation::lease_trusts_every_peer));
    cut_both(cl, l, 3);
    bool overlap = false;  // another leader while l reads on its lease
    bool other = false;
    for (int tick = 0; tick < 30 && cl[l].role() == role::leader; ++tick) {
      if (!cl.rep(3).is_leader()) cl.sim::harness::elect(3);  // it may lose: no tick_all here
      other = cl.rep(3).is_leader() || cl.rep(f).is_leader();
      if (other && cl[l].lease_valid()) overlap = true;
      cl.tick_all(1);
    }
    BOOST_TEST(other);
    BOOST_TEST(overlap == (mutation == unsafe_mutation::lease_trusts_every_peer));
  }
}

// What a member learns from a hello: a peer whose lease shrinks below this node's ends the
// lease in force at once (it may have restarted with a shorter vote lease since it answered).
BOOST_AUTO_TEST_CASE(a_peer_announcing_a_shorter_lease_ends_the_lease) {
  cluster cl(3, with_leases());
  const std::uint64_t l = tick_until_leader(cl);
  BOOST_REQUIRE(cl[l].lease_valid());
  const std::uint64_t f = l == 1 ? 2 : 1;
  cl.rep(l).set_peer_read_lease(n(f), 60);  // unchanged: nothing happens
  BOOST_TEST(cl[l].lease_valid());
  cl.rep(l).set_peer_read_lease(n(f), 59);
  BOOST_TEST(!cl[l].lease_valid());
  cl.tick_all(3);  // the other follower alone is a quorum with the leader
  BOOST_TEST(cl[l].lease_valid());
  cl.rep(l).set_peer_read_lease(n(6 - l - f), 0);
  BOOST_TEST(!cl[l].lease_valid());
  cl.tick_all(3);  // nobody left to count
  BOOST_TEST(!cl[l].lease_valid());
  auto r = start_read(cl, l);
  BOOST_TEST(!r->has_value());  // it waits for a heartbeat round instead
  cl.deliver();
  BOOST_TEST(answered_ok(r));
}

// The replica's deadlines pop in the order of one heap of (deadline, id), whatever order
// they were pushed in: mostly in order (one timeout for every call), sometimes not.
BOOST_AUTO_TEST_CASE(deadline_queue_pops_in_heap_order) {
  using value = std::pair<std::int64_t, std::uint64_t>;
  raft::deadline_queue q;
  std::priority_queue<value, std::vector<value>, std::greater<>> reference;
  std::uint64_t seed = 12345;
  const auto next = [&seed] {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return seed >> 33;
  };
  std::int64_t now = 0;
  std::uint64_t id = 0;
  std::size_t popped = 0;
  for (int step = 0; step < 20'000; ++step) {
    now += static_cast<std::int64_t>(next() % 3);
    // 90%: the usual timeout; else a shorter, a longer or an already past one.
    std::int64_t deadline = now + 100;
    if (next() % 10 == 0) deadline = now + static_cast<std::int64_t>(next() % 300) - 50;
    q.push(deadline, ++id);
    reference.emplace(deadline, id);
    if (next() % 4 == 0) {
      while (!reference.empty() && reference.top().first <= now) {
        const auto got = q.pop_due(now);
        BOOST_REQUIRE(got.has_value());
        BOOST_REQUIRE(*got == reference.top());
        reference.pop();
        ++popped;
      }
      BOOST_REQUIRE(!q.pop_due(now).has_value());
    }
  }
  BOOST_TEST(popped > 10'000u);
}

// base::node_pool (the replica's writes_ and proposals_): a map that erases and inserts at
// the same pace reuses its nodes (the same addresses come back), up to the parked bound.
BOOST_AUTO_TEST_CASE(node_pool_reuses_erased_nodes) {
  std::map<std::uint64_t, std::string> m;
  base::node_pool<std::map<std::uint64_t, std::string>> pool(2);
  const std::string* first = &pool.insert(m, 1u, std::string(40, 'a'))->second;
  pool.insert(m, 2u, "b");
  pool.erase(m, m.find(1));
  BOOST_TEST(pool.parked() == 1u);
  auto it = pool.insert(m, 3u, std::string("c"));
  BOOST_TEST(&it->second == first);  // the node of key 1, now holding key 3
  BOOST_TEST(it->second == "c");
  BOOST_TEST(pool.parked() == 0u);
  BOOST_TEST(m.size() == 2u);
  BOOST_TEST((m.begin()->first == 2u && std::next(m.begin())->first == 3u));
  for (std::uint64_t k = 10; k < 20; ++k) pool.insert(m, k, "x");
  while (!m.empty()) pool.erase(m, m.begin());
  BOOST_TEST(pool.parked() == 2u);  // the rest were freed
}
