// Faults of one node that must not become the cluster's problem (issue: full disk, skewed
// clocks), driven through the production drive loop (raft/replica.h) over in-memory stores.
#define BOOST_TEST_MODULE raft_faults
#include <boost/test/unit_test.hpp>
#include <optional>
#include <string>

#include "raft/replica.h"
#include "test/sim/harness.h"

using namespace raft;

namespace {

struct cluster : sim::harness {
  explicit cluster(int size, sim::harness_options o = {}) : sim::harness(size, o) {}
  ~cluster() { BOOST_TEST(!invariant_broken.has_value(), invariant_broken.value_or("")); }
  void elect(std::uint64_t id) {
    BOOST_REQUIRE(sim::harness::elect(id));
    tick_all(2);  // the leader's no-op commits
  }
  // Proposes through node `via` and runs the cluster until the write completes (or `ticks`
  // pass); returns its outcome.
  std::optional<replica_error> write(std::uint64_t via, std::string data, int ticks = 300) {
    std::optional<replica_error> out;
    rep(via).propose(std::move(data), now() + ticks * std::int64_t{tick_ms},
                     [&out](replica_error e, std::string) { out = e; });
    for (int k = 0; k < ticks && !out; ++k) tick_all(1);
    return out;
  }
};

}  // namespace

// A leader whose disk failed keeps heartbeating (it is still alive), so without help the
// followers never elect anyone and the whole cluster refuses writes. It must hand over.
BOOST_AUTO_TEST_CASE(leader_with_failed_storage_hands_leadership_over) {
  cluster cl(3);
  cl.elect(1);
  BOOST_REQUIRE((cl.write(1, "before") == replica_error::none));

  cl.at(1).store->fail("No space left on device");
  // The next write on node 1 fails its storage batch: the replica notices.
  auto failed = cl.write(1, "doomed", 5);
  BOOST_TEST(!cl.rep(1).storage_error().empty());
  BOOST_TEST(cl[1].standing_down());
  (void)failed;

  // Within a couple of election timeouts another node leads, and writes through any node
  // through the healthy nodes succeed again.
  cl.tick_all(40);
  auto l = cl.leader();
  BOOST_REQUIRE(l.has_value());
  BOOST_TEST(l->value != 1u);
  BOOST_TEST((cl.write(l->value, "after") == replica_error::none));
  const std::uint64_t other = l->value == 2 ? 3 : 2;  // the follower that is not node 1
  BOOST_TEST((cl.write(other, "after2") == replica_error::none));

  // And node 1 never campaigns again: however long it waits, terms do not move because of it.
  const auto term = cl[l->value].term();
  cl.tick_all(200);
  BOOST_TEST((cl[1].role() != role::leader));
  BOOST_TEST((cl[l->value].term() == term));
}

// The same when the failing leader cannot hand over (no voter reachable): it steps down
// after an election timeout instead of holding the term's leadership forever.
BOOST_AUTO_TEST_CASE(leader_with_failed_storage_steps_down_even_without_a_successor) {
  cluster cl(3);
  cl.elect(1);
  cl.isolate(1);
  cl.at(1).store->fail("I/O error");
  cl.write(1, "doomed", 3);
  BOOST_TEST(cl[1].standing_down());
  cl.tick_all(30);
  BOOST_TEST((cl[1].role() != role::leader));
}

// A follower standing down neither campaigns nor accepts TimeoutNow.
BOOST_AUTO_TEST_CASE(follower_standing_down_never_campaigns) {
  cluster cl(3);
  cl.elect(1);
  cl[2].stand_down();
  cl.isolate(1);  // without a leader, 2 would campaign within 2 election timeouts
  const auto before = cl[2].term();
  // Its term may follow node 3's campaign (it forgets the lost leader after an election
  // timeout, like any follower), but it never campaigns itself.
  for (int t = 0; t < 100; ++t) {
    cl.tick_all(1);
    BOOST_TEST_REQUIRE((cl[2].role() == role::follower));
    BOOST_TEST_REQUIRE((cl[2].term() <= cl[3].term()));
  }
  BOOST_TEST((cl[3].role() == role::pre_candidate || cl[3].role() == role::candidate ||
              cl[3].term() > before));
}

// A follower whose wall clock is hours off must judge expiry by the leader's clock: the
// ReadIndex answer carries it (docs/semantics.md, "Time and expiry").
BOOST_AUTO_TEST_CASE(read_through_a_skewed_follower_carries_the_leaders_clock) {
  sim::harness_options o;
  o.clock_skew_ms[3] = 2 * 3600 * 1000;  // node 3 is two hours ahead
  cluster cl(3, o);
  cl.elect(1);
  BOOST_REQUIRE((cl.write(1, "x") == replica_error::none));

  std::optional<replica_error> err;
  std::int64_t leader_time = 0;
  cl.rep(3).read(cl.now() + 1000, replica::read_callback([&](replica_error e, std::int64_t t) {
                   err = e;
                   leader_time = t;
                 }));
  for (int k = 0; k < 50 && !err; ++k) cl.tick_all(1);
  BOOST_REQUIRE(err.has_value());
  BOOST_TEST((*err == replica_error::none));
  const std::int64_t leader_clock = 1'700'000'000'000 + cl.now();
  // The leader's clock at confirmation (within the few ticks the round took), not node 3's.
  BOOST_TEST(leader_time <= leader_clock);
  BOOST_TEST(leader_time >= leader_clock - 200);

  // On the leader itself the answer carries its own clock as well.
  std::optional<replica_error> err1;
  std::int64_t t1 = 0;
  cl.rep(1).read(cl.now() + 1000, replica::read_callback([&](replica_error e, std::int64_t t) {
                   err1 = e;
                   t1 = t;
                 }));
  for (int k = 0; k < 50 && !err1; ++k) cl.tick_all(1);
  BOOST_REQUIRE(err1.has_value());
  BOOST_TEST(t1 >= 1'700'000'000'000 + cl.now() - 200);
  BOOST_TEST(t1 <= 1'700'000'000'000 + cl.now());
}

// A ReadIndex request a follower forwarded whose answer is lost must not stay in the core
// forever (before: cleared only on a term change): it is dropped after two election
// timeouts, so the core's bookkeeping stays bounded when replies are lost.
BOOST_AUTO_TEST_CASE(forwarded_read_whose_answer_is_lost_times_out) {
  cluster cl(3);
  cl.elect(1);
  cl.cut.insert({node_id(1), node_id(2)});  // node 2 hears nothing from the leader...
  cl[2].read_index(424242);                 // ...so the answer to this never arrives
  cl.process(node_id(2));
  const auto dropped = [&] {
    for (auto c : cl.at(2).dropped)
      if (c == 424242) return true;
    return false;
  };
  cl.tick_all(5);
  BOOST_TEST(!dropped());
  // Two election timeouts (10 ticks each here); node 2 may also campaign meanwhile, which
  // drops it through the term change — either way it must be gone by then.
  cl.tick_all(2 * 10 + 1);
  BOOST_TEST(dropped());
}
