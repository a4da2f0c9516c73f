// Unit tests of membership changes in the Raft core (raft/membership.h): learners, promotion,
// removal (of a follower and of the leader), one change at a time, the thesis §4.1 rule, and
// configurations through truncation, snapshots and restarts. Tests of several nodes run the
// production drive loop on the hand-driven harness (test/sim/harness.h); rule tests step one
// core by hand.
#define BOOST_TEST_MODULE raft_membership
#include <boost/test/unit_test.hpp>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "raft/core.h"
#include "raft/membership.h"
#include "test/sim/harness.h"

using namespace raft;

namespace {

node_id n(std::uint64_t v) {
  return node_id(v);
}
index_t i(std::uint64_t v) {
  return index_t(v);
}

membership_change add(std::uint64_t id) {
  return membership_change{change_kind::add_learner,
                           member{n(id), false, {{"peer", "h" + std::to_string(id) + ":1"}}}};
}
membership_change promote(std::uint64_t id) {
  return membership_change{change_kind::promote, member{n(id), false, {}}};
}
membership_change remove(std::uint64_t id) {
  return membership_change{change_kind::remove, member{n(id), false, {}}};
}

struct cluster : sim::harness {
  explicit cluster(int size) : sim::harness(size) {}
  ~cluster() { BOOST_TEST(!invariant_broken.has_value(), invariant_broken.value_or("")); }
  void elect(std::uint64_t id) {
    BOOST_REQUIRE(sim::harness::elect(id));
    tick_all(2);  // the no-op commits: changes are allowed from here on
  }
  // Proposes c on leader `l` and runs until it is committed on the leader.
  change_result change(std::uint64_t l, const membership_change& c, int ticks = 20) {
    auto r = (*this)[l].propose_change(c);
    if (!r.ok()) return r;
    deliver();
    for (int k = 0; k < ticks && (*this)[l].commit_index() < r.index; ++k) tick_all(1);
    BOOST_TEST(((*this)[l].commit_index() >= r.index));
    return r;
  }
  bool write(std::uint64_t l, const std::string& data) { return (*this)[l].propose(data).ok(); }

  // A change asked of node `via`'s replica, as the HTTP API asks it, run for up to `ticks`
  // ticks until answered, delivering all but what `drop` picks. The replica error, and the
  // outcome when there is one.
  struct answer {
    replica_error error = replica_error::none;
    std::optional<change_outcome> outcome;
  };
  answer ask(std::uint64_t via, const membership_change& c, std::int64_t deadline_ms, int ticks,
             const std::function<bool(const wire&)>& drop = {}) {
    answer a;
    bool done = false;
    rep(via).change_membership(c, now() + deadline_ms, [&](replica_error e, std::string result) {
      done = true;
      a.error = e;
      a.outcome = decode_outcome(result);
    });
    deliver_except(drop);
    for (int k = 0; k < ticks && !done; ++k) {
      tick_only(1);
      deliver_except(drop);

    }
    return a;
  }
};

// Rule tests on one core: take its output, report it persisted at once, return messages.
std::vector<message> drain(core& c) {
  std::vector<message> out;
  while (c.has_ready()) {
    auto r = c.take_ready();
    BOOST_REQUIRE(!c.check_invariants());
    for (auto& m : r.messages) out.push_back(m);
    for (auto& m : r.messages_after_persist) out.push_back(m);
    if (!r.entries.empty()) c.on_persisted(r.entries.back().index, r.entries.back().term);
  }
  return out;
}

config make_config(std::uint64_t id, int nodes) {
  return sim::harness::make_config(id, nodes, false);
}

entry config_entry(std::uint64_t term, std::uint64_t index, const membership& m) {
  return entry{term_t(term), i(index), entry_type::config, encode_membership(m)};
}

}  // namespace

// A learner receives the log but counts for nothing: with two of three voters away, the
// leader and the learner together commit nothing.
BOOST_AUTO_TEST_CASE(learner_receives_the_log_but_does_not_count) {
  cluster cl(3);
  cl.elect(1);
  cl.add_joining(4);
  BOOST_REQUIRE(cl.change(1, add(4)).ok());
  BOOST_REQUIRE(cl.write(1, "a"));
  cl.tick_all(3);
  BOOST_TEST((cl[4].commit_index() == cl[1].commit_index()));
  BOOST_TEST(cl.at(4).sm->entries.back().data == "a");
  BOOST_TEST(!cl[4].is_voter());
  BOOST_TEST(cl[4].configuration().find(n(4)) != nullptr);
  BOOST_TEST((cl[4].configuration() == cl[1].configuration()));

  cl.isolate(2);
  cl.isolate(3);
  const auto before = cl[1].commit_index();
  BOOST_REQUIRE(cl.write(1, "b"));
  cl.tick_all(3);
  BOOST_TEST((cl[4].last_index() == cl[1].last_index()));  // replicated to the learner...
  BOOST_TEST((cl[1].commit_index() == before));            // ...and not committed
  cl.heal();
  cl.tick_all(3);
  BOOST_TEST((cl[1].commit_index() == cl[1].last_index()));
}

// Promotion waits until the learner has caught up; then the new voter counts.
BOOST_AUTO_TEST_CASE(promotion_is_refused_until_the_learner_caught_up_then_it_counts) {
  cluster cl(3);
  cl.elect(1);
  for (int k = 0; k < 40; ++k) BOOST_REQUIRE(cl.write(1, "v" + std::to_string(k)));
  cl.tick_all(3);
  cl.add_joining(4);
  cl.isolate(4);
  BOOST_REQUIRE(cl.change(1, add(4)).ok());
  BOOST_TEST((cl[1].propose_change(promote(4)).error == change_error::not_caught_up));
  cl.heal();
  cl.tick_all(5);
  auto r = cl.change(1, promote(4));
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(cl[1].configuration().is_voter(n(4)));
  // Four voters: a commit needs three. With 3 away, 1, 2 and 4 commit; 4 counts.
  cl.isolate(3);
  BOOST_REQUIRE(cl.write(1, "after"));
  cl.tick_all(3);
  BOOST_TEST((cl[1].commit_index() == cl[1].last_index()));
  // And with 4 away too, nothing commits: the quorum really is three of four.
  cl.isolate(4);
  const auto before = cl[1].commit_index();
  BOOST_REQUIRE(cl.write(1, "stuck"));
  cl.tick_all(3);
  BOOST_TEST((cl[1].commit_index() == before));
}

// A removed follower leaves the quorum; it learns its removal and never campaigns again.
BOOST_AUTO_TEST_CASE(remove_a_follower) {
  cluster cl(3);
  cl.elect(1);
  BOOST_REQUIRE(cl.change(1, remove(3)).ok());
  cl.tick_all(3);
  BOOST_TEST(cl[3].removed());
  BOOST_TEST((cl[1].configuration() == voters_only({n(1), n(2)})));
  // Two voters now: 1 and 2 commit without 3.
  cl.isolate(3);
  BOOST_REQUIRE(cl.write(1, "x"));
  cl.tick_all(3);
  BOOST_TEST((cl[1].commit_index() == cl[1].last_index()));
  const auto term = cl[3].term();
  cl.rep(3).campaign();
  cl.tick_all(60);
  BOOST_TEST((cl[3].role() == role::follower));
  BOOST_TEST((cl[3].term() == term));
  BOOST_TEST((cl.rep(3).core().leader() == no_node));
  // Nobody else's term moved either.
  cl.heal();
  cl.tick_all(30);
  BOOST_TEST((cl[3].term() == term));
  BOOST_TEST((cl[1].role() == role::leader));
}

// The leader asked to remove itself hands over first (SPEC §8): it appends nothing, starts a
// transfer to its most up-to-date voter, and refuses the change as transient. The next
// leader, of a configuration that still holds the old one, removes it as a follower.
BOOST_AUTO_TEST_CASE(removing_the_leader_hands_over_before_any_entry_is_appended) {
  cluster cl(3);
  cl.elect(1);
  const auto term = cl[1].term();
  const auto last = cl[1].last_index();
  const auto r = cl[1].propose_change(remove(1));
  BOOST_TEST((r.error == change_error::transfer_in_progress));
  BOOST_TEST((cl[1].last_index() == last));
  BOOST_TEST(cl[1].transferring());
  auto next_leader = [&]() -> std::optional<node_id> {
    for (std::uint64_t id : {2, 3})
      if (cl[id].role() == role::leader) return n(id);
    return std::nullopt;
  };
  int ticks = 0;
  cl.deliver();
  for (; ticks < 30 && !next_leader(); ++ticks) cl.tick_all(1);
  BOOST_REQUIRE(next_leader().has_value());
  BOOST_TEST(ticks < 5);  // election_ticks is 10: the hand-over did not wait for a timeout
  const std::uint64_t l = next_leader()->value;
  BOOST_TEST((cl[l].term() == term + 1));
  BOOST_TEST((cl[1].role() == role::follower));
  BOOST_TEST(cl[1].is_voter());  // handed over as a member: nothing removed it yet
  // The new leader removes it; the old one stays quiet.
  const auto removal = cl.change(l, remove(1));
  BOOST_REQUIRE(removal.ok());
  BOOST_TEST((removal.term == term + 1));
  cl.tick_all(3);
  BOOST_TEST(cl[1].removed());
  cl.tick_all(60);
  BOOST_TEST((cl[1].role() == role::follower));
  BOOST_TEST((cl[l].role() == role::leader));
  BOOST_TEST((cl[l].term() == term + 1));
}

// The same asked of the replicas, as the HTTP API asks: of the leader itself, and of a
// follower that forwards it. Either way the change is made by the next leader and answered
// as committed; a forward is not lost to the leader change that the hand-over is. The
// last case loses what the old leader answers the asking follower after stepping down: it
// must say at once that nothing was proposed, since an answer sent after the hand-over may
// arrive when the follower already follows the new leader (and has given the change up as
// of unknown fate).
BOOST_AUTO_TEST_CASE(a_replica_asked_to_remove_its_leader_gets_it_done_by_the_next_one) {
  struct way {
    std::uint64_t via;
    bool drop_late_answers;
  };
  for (const way w : {way{1, false}, way{2, false}, way{3, false}, way{3, true}}) {
    BOOST_TEST_CONTEXT("asked of node " << w.via
                                        << (w.drop_late_answers ? ", late answers lost" : "")) {
      cluster cl(3);
      cl.elect(1);
      const auto term = cl[1].term();
      // The old leader's answers to `via` once it stepped down are lost (delayed past the
      // hand-over).
      auto late = [&](const sim::harness::wire& x) {
        return w.drop_late_answers && x.from == n(1) && x.to == n(w.via) &&
               std::holds_alternative<forward_reply>(x.body) && cl[1].role() != role::leader;
      };
      const auto [error, outcome] = cl.ask(w.via, remove(1), 5000, 100, late);
      BOOST_TEST((error == replica_error::none), to_string(error));
      BOOST_REQUIRE(outcome.has_value());
      BOOST_TEST((outcome->error == change_error::none), to_string(outcome->error));
      BOOST_TEST(!outcome->config.find(n(1)));
      // The entry is of the next leader's term, and node 1 never led after its own term.
      const auto* e = cl[2].entry_at(outcome->index);
      BOOST_REQUIRE(e != nullptr);
      BOOST_TEST((e->term == term + 1));
      cl.tick_all(20);
      const auto leader = cl.leader();
      BOOST_REQUIRE(leader.has_value());
      BOOST_TEST((*leader != n(1)));
      BOOST_TEST((cl[leader->value].term() == term + 1));
    }
  }
}

// A leader whose hand-over cannot finish (here every TimeoutNow is lost) keeps leading and
// keeps its place; the request ends with the transient refusal, asked of it or of a
// follower: nothing was changed, and the caller may ask again (HTTP 503 not_ready).
BOOST_AUTO_TEST_CASE(a_removal_of_the_leader_that_cannot_hand_over_is_refused_as_transient) {
  for (const std::uint64_t via : {1, 3}) {
    BOOST_TEST_CONTEXT("asked of node " << via) {
      cluster cl(3);
      cl.elect(1);
      auto timeout_now_lost = [](const sim::harness::wire& x) {
        const auto* m = std::get_if<message>(&x.body);
        return m && std::holds_alternative<timeout_now>(m->body);
      };
      const auto [error, outcome] = cl.ask(via, remove(1), 1000, 150, timeout_now_lost);
      BOOST_TEST((error == replica_error::none), to_string(error));
      BOOST_REQUIRE(outcome.has_value());
      BOOST_TEST((outcome->error == change_error::transfer_in_progress), to_string(outcome->error));
      BOOST_TEST((cl[1].role() == role::leader));
      BOOST_TEST(cl[1].configuration().is_voter(n(1)));
    }
  }
}

// The voter with the longest log is down: the hand-over goes to a voter that answers (and
// is sent the entries it lacks first), and the removal is made at once. A transfer to the
// longest log would fail after an election timeout, and could be retried at it again.
BOOST_AUTO_TEST_CASE(removing_the_leader_hands_over_to_a_voter_that_answers) {
  cluster cl(4);
  cl.elect(1);
  BOOST_REQUIRE(cl.write(1, "x"));
  cl.tick_all(2);
  // Entry "y" reaches node 2 only; 3 and 4 keep answering heartbeats.
  auto appends_to_3_and_4 = [](const sim::harness::wire& w) {
    const auto* m = std::get_if<message>(&w.body);
    return m && (w.to == n(3) || w.to == n(4)) && std::holds_alternative<append_request>(m->body);
  };
  BOOST_REQUIRE(cl.write(1, "y"));
  cl.deliver_except(appends_to_3_and_4);
  cl.isolate(2);
  for (int k = 0; k < 5; ++k) {  // past two heartbeat periods: node 2 has gone silent
    cl.tick_only(1);
    cl.deliver_except(appends_to_3_and_4);
  }
  // Within half an election timeout (10 ticks): a transfer to node 2 would first have to
  // time out.
  const auto [error, outcome] = cl.ask(1, remove(1), 5000, 5);
  BOOST_TEST((error == replica_error::none), to_string(error));
  BOOST_REQUIRE(outcome.has_value());
  BOOST_TEST((outcome->error == change_error::none), to_string(outcome->error));
  const auto leader = cl.leader();
  BOOST_TEST((leader == n(3) || leader == n(4)));
}

// The network may duplicate a forwarded change (paper §5.1). The copy must not be served
// again: at once it would be refused (another change in progress) and that answer could
// reach the follower first, a refusal of a change that is made; late, it would make the
// change once more (here: bring back a member removed in between).
BOOST_AUTO_TEST_CASE(a_duplicated_forward_of_a_change_is_served_once) {
  cluster cl(3);
  cl.elect(1);
  cl.add_joining(4);
  std::optional<change_outcome> outcome;
  replica_error error = replica_error::none;
  cl.rep(3).change_membership(add(4), cl.now() + 5000, [&](replica_error e, std::string r) {
    error = e;
    outcome = decode_outcome(r);
  });
  cl.process(n(3));
  std::optional<sim::harness::wire> copy;
  for (const auto& w : cl.queue)
    if (w.from == n(3) && std::holds_alternative<forward_request>(w.body)) copy = w;
  BOOST_REQUIRE(copy.has_value());
  cl.queue.push_back(*copy);
  for (int k = 0; k < 30 && !outcome && error == replica_error::none; ++k) cl.tick_all(1);
  BOOST_TEST((error == replica_error::none), to_string(error));
  BOOST_REQUIRE(outcome.has_value());
  BOOST_TEST((outcome->error == change_error::none), to_string(outcome->error));
  BOOST_REQUIRE(cl.change(1, remove(4)).ok());
  cl.tick_all(2);
  cl.queue.push_back(*copy);
  cl.tick_all(10);
  BOOST_TEST(!cl[1].configuration().find(n(4)), describe(cl[1].configuration()));
}

// One change at a time.
BOOST_AUTO_TEST_CASE(second_change_while_the_first_is_uncommitted_is_refused) {
  cluster cl(3);
  cl.elect(1);
  cl.isolate(2);
  cl.isolate(3);
  cl.add_joining(4);
  BOOST_REQUIRE(cl[1].propose_change(add(4)).ok());
  BOOST_TEST((cl[1].propose_change(remove(3)).error == change_error::change_in_progress));
  BOOST_TEST((cl[1].propose_change(promote(4)).error == change_error::change_in_progress));
  cl.heal();
  cl.tick_all(3);
  BOOST_TEST((cl[1].propose_change(remove(3)).ok()));
}

// Thesis §4.1: no change before an entry of the leader's own term has committed.
BOOST_AUTO_TEST_CASE(change_before_the_terms_first_commit_is_refused) {
  core c(make_config(1, 3));
  c.campaign();
  drain(c);
  c.step(message{n(2), n(1), term_t(1), vote_response{true, false}});
  drain(c);
  BOOST_REQUIRE((c.role() == role::leader));
  BOOST_TEST((c.propose_change(remove(3)).error == change_error::leader_not_ready));
  // Follower 2 acknowledges the no-op: it commits, and changes are allowed.
  c.step(message{n(2), n(1), term_t(1), append_response{false, c.last_index(), {}, {}, {}}});
  drain(c);
  BOOST_REQUIRE((c.commit_index() == c.last_index()));
  BOOST_TEST(c.propose_change(remove(3)).ok());
  // Not on a follower.
  core f(make_config(2, 3));
  BOOST_TEST((f.propose_change(remove(3)).error == change_error::not_leader));
}

// The configuration in use is the latest in the log, committed or not: truncating an
// uncommitted configuration entry away goes back to the one before.
BOOST_AUTO_TEST_CASE(truncating_a_config_entry_reverts_the_configuration) {
  core f(make_config(2, 3));
  membership with4 = voters_only({n(1), n(2), n(3)});
  with4.members.push_back(member{n(4), false, {}});
  append_request a;
  a.entries = {entry{term_t(1), i(1), entry_type::noop, {}}, config_entry(1, 2, with4)};
  f.step(message{n(1), n(2), term_t(1), a});
  drain(f);
  BOOST_TEST((f.configuration() == with4));
  BOOST_TEST((f.config_index() == i(2)));
  const auto seq = f.config_seq();
  // Leader 3 of term 2 never had it: its entry 2 replaces the configuration entry.
  append_request b;
  b.prev_index = i(1);
  b.prev_term = term_t(1);
  b.entries = {entry{term_t(2), i(2), entry_type::noop, {}}};
  f.step(message{n(3), n(2), term_t(2), b});
  drain(f);
  BOOST_TEST((f.configuration() == voters_only({n(1), n(2), n(3)})));
  BOOST_TEST((f.config_index() == i(0)));
  BOOST_TEST(f.config_seq() > seq);
  BOOST_TEST((f.config_at(i(1)) == voters_only({n(1), n(2), n(3)})));
}

// A snapshot carries the configuration as of its index; a follower that installs it uses it.
BOOST_AUTO_TEST_CASE(snapshot_carries_the_configuration) {
  cluster cl(3);
  cl.elect(1);
  cl.isolate(3);
  cl.add_joining(4);
  auto r = cl.change(1, add(4));
  BOOST_REQUIRE(r.ok());
  for (int k = 0; k < 10; ++k) BOOST_REQUIRE(cl.write(1, "s" + std::to_string(k)));
  cl.tick_all(3);
  const membership want = cl[1].configuration();
  BOOST_TEST((cl[1].config_at(r.index) == want));
  BOOST_TEST((cl[1].config_at(r.index - 1) == voters_only({n(1), n(2), n(3)})));
  const index_t upto = cl[1].applied_index();
  auto bytes = std::make_shared<const std::string>("snapshot@" + std::to_string(upto.value));
  BOOST_REQUIRE(cl.compact(1, upto, bytes));
  BOOST_TEST((cl[1].config_at(upto) == want));
  BOOST_TEST((cl[1].configuration() == want));
  cl.heal();
  cl.tick_all(8);
  BOOST_REQUIRE(!cl.at(3).snapshots.empty());
  BOOST_TEST((cl.at(3).snapshots.back().meta.config == want));
  BOOST_TEST((cl[3].configuration() == want));
  BOOST_TEST((cl[3].config_at(cl[3].snapshot_index()) == want));
  // And the restart of that follower still knows it (from its stored snapshot).
  cl.crash_and_restart(n(3));
  BOOST_TEST((cl[3].configuration() == want));
}

// A node started to join (no bootstrap) waits: it never campaigns, whatever happens.
BOOST_AUTO_TEST_CASE(a_joining_node_never_campaigns) {
  cluster cl(3);
  cl.elect(1);
  cl.add_joining(4);
  cl.isolate(4);
  cl.rep(4).campaign();
  cl.tick_all(100);
  BOOST_TEST((cl[4].role() == role::follower));
  BOOST_TEST((cl[4].term() == term_t(0)));
  BOOST_TEST(cl[4].configuration().empty());
  BOOST_TEST(!cl[4].removed());
  BOOST_TEST(cl.at(4).sent.empty());
}

// Restarted from storage whose log holds a configuration entry, a node uses that entry, not
// the bootstrap list of its config.
BOOST_AUTO_TEST_CASE(restart_uses_the_configuration_in_the_log) {
  restore_state rs;
  rs.hs.term = term_t(1);
  rs.entries = {entry{term_t(1), i(1), entry_type::noop, {}},
                config_entry(1, 2, voters_only({n(1), n(2)}))};
  core c(make_config(1, 3), rs);  // the bootstrap says 1, 2, 3
  BOOST_TEST((c.configuration() == voters_only({n(1), n(2)})));
  BOOST_TEST((c.config_index() == i(2)));
  c.campaign();
  auto out = drain(c);
  std::set<std::uint64_t> asked;
  for (auto& m : out)
    if (std::holds_alternative<vote_request>(m.body)) asked.insert(m.to.value);
  BOOST_TEST((asked == std::set<std::uint64_t>{2}));

  // The same through the replica: a node restarted after a change uses it.
  cluster cl(3);
  cl.elect(1);
  cl.add_joining(4);
  BOOST_REQUIRE(cl.change(1, add(4)).ok());
  cl.tick_all(2);
  const membership want = cl[1].configuration();
  cl.crash_and_restart(n(2));
  BOOST_TEST((cl[2].configuration() == want));
}

// Of two voters, the leader removes the other and crashes before its own write of the entry
// is durable; only the removed node holds it. After the restart the leader is in a
// configuration that needs the removed node's vote, which its longer log makes it refuse.
// The removed node still campaigns (only in this case), commits its removal and hands over.
BOOST_AUTO_TEST_CASE(two_voters_a_removal_only_the_removed_node_holds_does_not_deadlock) {
  cluster cl(3);
  cl.elect(1);
  BOOST_REQUIRE(cl.change(1, remove(3)).ok());
  cl.tick_all(2);
  cl.isolate(3);
  cl.auto_persist = false;
  BOOST_REQUIRE(cl[1].propose_change(remove(2)).ok());
  cl.process(n(1));  // the append goes out while the leader's own write is in flight
  std::deque<sim::harness::wire> to_2;
  for (auto& w : cl.queue)
    if (w.to == n(2)) to_2.push_back(std::move(w));
  cl.queue = std::move(to_2);
  cl.deliver();
  cl.at(2).store->complete_due(INT64_MAX);
  cl.run(n(2));
  cl.queue.clear();  // its acknowledgement is lost
  cl.auto_persist = true;
  cl.crash_and_restart(n(1));
  BOOST_REQUIRE(!cl[2].is_voter());
  BOOST_REQUIRE(cl[1].configuration().is_voter(n(2)));  // the removal died with the crash
  std::optional<node_id> leader;
  for (int k = 0; k < 200 && !(leader && *leader == n(1)); ++k) {
    cl.tick_all(1);
    leader = cl.leader();
  }
  BOOST_REQUIRE(leader.has_value());
  BOOST_TEST((*leader == n(1)));
  BOOST_TEST((cl[1].configuration() == voters_only({n(1)})));
  BOOST_TEST((cl[2].role() == role::follower));
}

// A learner's vote can be needed (a promotion not yet committed on the others); it must
// answer a vote request once it has not heard from a leader for an election timeout.
BOOST_AUTO_TEST_CASE(a_learner_answers_votes_after_an_election_timeout) {
  core l(make_config(4, 0));
  membership m = voters_only({n(1)});
  m.members.push_back(member{n(4), false, {}});
  append_request a;
  a.entries = {entry{term_t(1), i(1), entry_type::noop, {}}, config_entry(1, 2, m)};
  a.commit = i(2);
  l.step(message{n(1), n(4), term_t(1), a});
  drain(l);
  BOOST_REQUIRE(!l.is_voter());
  // Heard from the leader just now: the lease holds.
  l.step(message{n(1), n(4), term_t(2), vote_request{i(3), term_t(1), false, false}});
  BOOST_TEST(drain(l).empty());
  for (int k = 0; k < 40; ++k) l.tick();
  drain(l);
  l.step(message{n(1), n(4), term_t(2), vote_request{i(3), term_t(1), false, false}});
  bool granted = false;
  for (auto& msg : drain(l))
    if (auto* v = std::get_if<vote_response>(&msg.body)) granted = v->granted;
  BOOST_TEST(granted);
  BOOST_TEST((l.role() == role::follower));
}
