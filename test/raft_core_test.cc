// Unit tests of the Raft core, one per rule of the paper / thesis.
#define BOOST_TEST_MODULE raft_core
#include <boost/test/unit_test.hpp>
#include <deque>
#include <map>
#include <memory>
#include <set>

#include "raft/membership.h"
#include "raft/core.h"
#include "test/sim/harness.h"

using namespace raft;

namespace {

node_id n(std::uint64_t v) {
  return node_id(v);
}
term_t t(std::uint64_t v) {
  return term_t(v);
}
index_t i(std::uint64_t v) {
  return index_t(v);
}

config make_config(std::uint64_t id, int nodes, bool pre_vote = true) {
  config c;
  c.id = n(id);
  for (int k = 1; k <= nodes; ++k) c.voters.push_back(n(k));
  c.election_ticks = 10;
  c.heartbeat_ticks = 2;
  c.max_inflight = 4;
  c.seed = id * 1000 + 17;
  c.pre_vote = pre_vote;
  return c;
}

std::vector<entry> log_of(std::initializer_list<std::uint64_t> terms) {
  std::vector<entry> out;
  std::uint64_t idx = 0;
  for (auto tm : terms)
    out.push_back(entry{t(tm), i(++idx), entry_type::normal, "e" + std::to_string(idx)});
  return out;
}

// Rule tests step one core by hand: take its whole output, report it persisted at once, and
// return every message it wants to send. (Tests of several nodes use the replica instead.)
struct drained {
  std::vector<message> messages;
  std::vector<entry> committed;
  std::vector<read_state> reads;
  std::vector<std::uint64_t> dropped;
  std::optional<received_snapshot> snapshot;
};

drained drain(core& c, bool persist = true) {
  drained d;
  while (c.has_ready()) {
    auto r = c.take_ready();
    BOOST_REQUIRE(!c.check_invariants());
    for (auto& m : r.messages) d.messages.push_back(m);
    for (auto& m : r.messages_after_persist) d.messages.push_back(m);
    for (auto& e : r.committed) d.committed.push_back(e);
    for (auto& x : r.read_states) d.reads.push_back(x);
    for (auto& x : r.dropped_reads) d.dropped.push_back(x);
    if (r.snapshot) d.snapshot = r.snapshot;
    if (persist) {
      if (!r.entries.empty())
        c.on_persisted(r.entries.back().index, r.entries.back().term);
      else if (r.snapshot)
        c.on_persisted(r.snapshot->meta.index, r.snapshot->meta.term);
    }
  }
  return d;
}

template <typename T>
std::vector<message> only(const std::vector<message>& ms) {
  std::vector<message> out;
  for (auto& m : ms)
    if (std::holds_alternative<T>(m.body)) out.push_back(m);
  return out;
}

// A small cluster of replicas (the production drive loop, raft/replica.h) over in-memory
// stores that persist instantly, with controllable links (test/sim/harness.h). Tests reach
// the core of each node with cl[id]; what the core outputs is handled by the replica.
struct cluster : sim::harness {
  explicit cluster(int size, bool pre_vote = true)
      : sim::harness(size, with_pre_vote(pre_vote)) {}
  static sim::harness::options with_pre_vote(bool pre_vote) {
    sim::harness::options o;
    o.pre_vote = pre_vote;
    return o;
  }
  ~cluster() { BOOST_TEST(!invariant_broken.has_value(), invariant_broken.value_or("")); }
  void elect(std::uint64_t id) { BOOST_REQUIRE(sim::harness::elect(id)); }
};

message vote_req(std::uint64_t from, std::uint64_t to, std::uint64_t term, std::uint64_t last_index,
                 std::uint64_t last_term, bool pre = false) {
  return message{n(from), n(to), t(term), vote_request{i(last_index), t(last_term), pre, false}};
}

std::optional<vote_response> vote_answer(const drained& d) {
  for (auto& m : d.messages)
    if (auto* v = std::get_if<vote_response>(&m.body)) return *v;
  return std::nullopt;
}

}  // namespace

// Paper Figure 2, RequestVote: "votedFor is null or candidateId".
BOOST_AUTO_TEST_CASE(vote_only_once_per_term) {
  core c(make_config(1, 3));
  c.step(vote_req(2, 1, 1, 0, 0));
  auto a = vote_answer(drain(c));
  BOOST_REQUIRE(a);
  BOOST_TEST(a->granted);
  BOOST_TEST((c.status().vote == n(2)));
  c.step(vote_req(3, 1, 1, 0, 0));
  auto b = vote_answer(drain(c));
  BOOST_REQUIRE(b);
  BOOST_TEST(!b->granted);
  // A retransmitted request from the same candidate gets the same answer.
  c.step(vote_req(2, 1, 1, 0, 0));
  auto again = vote_answer(drain(c));
  BOOST_REQUIRE(again);
  BOOST_TEST(again->granted);
}

// The vote is part of the hard state and must be persisted before the answer is sent.
BOOST_AUTO_TEST_CASE(vote_is_persisted_before_it_is_sent) {
  core c(make_config(1, 3));
  c.step(vote_req(2, 1, 1, 0, 0));
  auto r = c.take_ready();
  BOOST_REQUIRE(r.hs.has_value());
  BOOST_TEST((r.hs->vote == n(2)));
  BOOST_TEST((r.hs->term == t(1)));
  BOOST_TEST(only<vote_response>(r.messages).empty());
  BOOST_TEST(only<vote_response>(r.messages_after_persist).size() == 1u);
}

// Paper Figure 2: "Reply false if term < currentTerm"; the stale sender learns our term.
BOOST_AUTO_TEST_CASE(reject_stale_terms) {
  restore_state rs;
  rs.hs.term = t(5);
  core c(make_config(1, 3), rs);
  c.step(message{n(2), n(1), t(3),
                 append_request{i(0), t(0), {entry{t(3), i(1), entry_type::normal, "x"}}, i(1)}});
  auto d = drain(c);
  BOOST_TEST((c.term() == t(5)));
  BOOST_TEST((c.last_index() == i(0)));
  BOOST_TEST((c.leader() == no_node));
  auto resp = only<append_response>(d.messages);
  BOOST_REQUIRE(resp.size() == 1u);
  BOOST_TEST((resp[0].term == t(5)));
  BOOST_TEST(std::get<append_response>(resp[0].body).reject);
  // A stale vote request is ignored entirely.
  c.step(vote_req(3, 1, 4, 10, 4));
  BOOST_TEST(!vote_answer(drain(c)));
  BOOST_TEST((c.status().vote == no_node));
}

// Paper Figure 2, all servers: a higher term converts a leader to follower.
BOOST_AUTO_TEST_CASE(leader_steps_down_on_higher_term) {
  cluster cl(3);
  cl.elect(1);
  term_t before = cl[1].term();
  cl[1].step(message{n(2), n(1), before + 1, heartbeat_response{0}});
  BOOST_TEST((cl[1].role() == role::follower));
  BOOST_TEST((cl[1].term() == before + 1));
}

// §5.4.1: a voter denies its vote if its log is more up-to-date than the candidate's.
BOOST_AUTO_TEST_CASE(candidate_with_older_log_loses) {
  restore_state rs;
  rs.hs.term = t(2);
  rs.entries = log_of({1, 2});
  core c(make_config(1, 3), rs);
  // Longer log but older last term: refused.
  c.step(vote_req(2, 1, 3, 5, 1));
  auto a = vote_answer(drain(c));
  BOOST_REQUIRE(a);
  BOOST_TEST(!a->granted);
  // Same last term but shorter: refused.
  c.step(vote_req(3, 1, 3, 1, 2));
  auto b = vote_answer(drain(c));
  BOOST_REQUIRE(b);
  BOOST_TEST(!b->granted);
  // Same last term, same length: granted.
  c.step(vote_req(3, 1, 3, 2, 2));
  auto ok = vote_answer(drain(c));
  BOOST_REQUIRE(ok);
  BOOST_TEST(ok->granted);
}

// §5.4.2: a leader never commits an entry from a previous term by counting replicas.
BOOST_AUTO_TEST_CASE(leader_never_commits_previous_term_entry_by_counting) {
  restore_state rs;
  rs.hs.term = t(2);
  rs.entries = log_of({1, 2});
  core c(make_config(1, 3, /*pre_vote=*/false), rs);
  c.campaign();
  drain(c);
  c.step(message{n(2), n(1), t(3), vote_response{true, false}});
  drain(c);
  BOOST_REQUIRE(c.role() == role::leader);
  BOOST_REQUIRE(c.last_index() == i(3));  // the no-op of term 3
  // A majority (1, 2) now holds index 2, but it is from term 2.
  c.step(message{n(2), n(1), t(3), append_response{false, i(2), i(0), t(0), i(0)}});
  drain(c);
  BOOST_TEST((c.commit_index() == i(0)));
  // Once the term-3 entry is on a majority, everything before it commits too.
  c.step(message{n(2), n(1), t(3), append_response{false, i(3), i(0), t(0), i(0)}});
  auto d = drain(c);
  BOOST_TEST((c.commit_index() == i(3)));
  BOOST_TEST(d.committed.size() == 3u);
}

// Paper Figure 8: an entry from an old term, stored on a majority, can still be
// overwritten by a leader of a newer term; so the leader of term 4 must not count it.
BOOST_AUTO_TEST_CASE(figure_8_scenario) {
  // (c): S1 is leader of term 4 with log [1:t1, 2:t2]; S5 holds [1:t1, 2:t3].
  restore_state s1;
  s1.hs.term = t(3);
  s1.entries = log_of({1, 2});
  core leader(make_config(1, 5, false), s1);
  leader.campaign();  // term 4
  drain(leader);
  for (int v : {2, 3}) leader.step(message{n(v), n(1), t(4), vote_response{true, false}});
  drain(leader);
  BOOST_REQUIRE(leader.role() == role::leader);
  BOOST_REQUIRE(leader.term() == t(4));
  // S2 and S3 acknowledge index 2 (term 2): S1, S2, S3 are a majority of 5.
  for (int v : {2, 3})
    leader.step(message{n(v), n(1), t(4), append_response{false, i(2), i(0), t(0), i(0)}});
  drain(leader);
  BOOST_TEST((leader.commit_index() < i(2)));

  // (d): why that matters: S5 (last term 3) can still win S2's and S3's votes in term 5
  // and would overwrite index 2.
  restore_state s2;
  s2.hs.term = t(4);
  s2.entries = log_of({1, 2});
  core follower(make_config(2, 5, false), s2);
  follower.step(vote_req(5, 2, 5, 2, 3));
  auto a = vote_answer(drain(follower));
  BOOST_REQUIRE(a);
  BOOST_TEST(a->granted);
  // S5 as leader of term 5 replaces S2's index 2.
  follower.step(
      message{n(5), n(2), t(5),
              append_request{i(1), t(1), {entry{t(3), i(2), entry_type::normal, "s5"}}, i(0)}});
  auto r = follower.take_ready();
  BOOST_REQUIRE(r.truncate_from.has_value());
  BOOST_TEST((*r.truncate_from == i(2)));
  BOOST_TEST((*follower.term_at(i(2)) == t(3)));

  // (e): once S1 replicates an entry of its own term to a majority, both commit.
  for (int v : {2, 3})
    leader.step(message{n(v), n(1), t(4), append_response{false, i(3), i(0), t(0), i(0)}});
  drain(leader);
  BOOST_TEST((leader.commit_index() == i(3)));
}

// Thesis §10.2.1: the leader counts itself only up to what it has persisted.
BOOST_AUTO_TEST_CASE(leader_counts_itself_only_up_to_persisted_index) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(1);
  auto& l = cl[1];
  index_t commit_before = l.commit_index();
  cl.isolate(3);
  auto p = l.propose("x");
  BOOST_REQUIRE(p.ok());
  // Take the batch but do not report it persisted.
  auto r = l.take_ready();
  BOOST_REQUIRE(!r.entries.empty());
  BOOST_TEST(!r.messages.empty());  // replication starts before the local write
  // Node 2 has not acknowledged either: nothing can commit.
  BOOST_TEST((l.commit_index() == commit_before));
  // Node 2 acknowledges: {2} is not a majority without the leader's own durable copy.
  l.step(message{n(2), n(1), l.term(), append_response{false, p.index, i(0), t(0), i(0)}});
  BOOST_TEST((l.commit_index() == commit_before));
  l.on_persisted(p.index, p.term);
  BOOST_TEST((l.commit_index() == p.index));
}

// A lagging peer that answers every heartbeat (every ReadIndex round is one) is sent at most
// one extra append per heartbeat period, not one per answer: a catching-up follower under a
// read load once drew hundreds of 1 MB appends in one batch and stalled its leader.
BOOST_AUTO_TEST_CASE(heartbeat_answers_from_a_lagging_peer_resend_once_per_period) {
  restore_state rs;
  rs.hs.term = t(1);
  rs.entries = log_of({1, 1, 1, 1, 1});
  core c(make_config(1, 3, /*pre_vote=*/false), rs);
  c.campaign();
  drain(c);
  c.step(message{n(2), n(1), t(2), vote_response{true, false}});
  drain(c);
  BOOST_REQUIRE(c.role() == role::leader);
  // Node 3 never answers the probe: it stays in probe with one request outstanding.
  auto appends_to_3 = [&c](int answers) {
    std::size_t sent = 0;
    for (int k = 0; k < answers; ++k) {
      c.step(message{n(3), n(1), t(2), heartbeat_response{0}});
      for (auto& m : only<append_request>(drain(c).messages))
        if (m.to == n(3)) ++sent;
    }
    return sent;
  };
  BOOST_TEST(appends_to_3(50) <= 1u);
  for (int k = 0; k < 2; ++k) c.tick();  // one heartbeat period (make_config: 2 ticks)
  drain(c);
  BOOST_TEST(appends_to_3(50) == 1u);  // the retry still happens, once
}

// Thesis §9.6: a rejoining partitioned node does not disrupt a stable leader.
BOOST_AUTO_TEST_CASE(pre_vote_does_not_disturb_stable_leader_when_partitioned_node_rejoins) {
  cluster cl(3);
  cl.elect(1);
  term_t term = cl[1].term();
  cl.isolate(3);
  cl.tick_all(100);                    // node 3 times out many times
  BOOST_TEST((cl[3].term() == term));  // pre-vote never won, so its term never grew
  BOOST_TEST((cl[1].role() == role::leader));
  cl.heal();
  cl.tick_all(30);
  BOOST_TEST((cl[1].role() == role::leader));
  BOOST_TEST((cl[1].term() == term));
  BOOST_TEST((cl[3].leader() == n(1)));
}

// Without pre-vote, the same rejoin would force an election: the check above is meaningful.
BOOST_AUTO_TEST_CASE(without_pre_vote_a_rejoining_node_raises_the_term) {
  cluster cl(3, /*pre_vote=*/false);
  cl.elect(1);
  term_t term = cl[1].term();
  cl.isolate(3);
  cl.tick_all(100);
  BOOST_TEST((cl[3].term() > term));
}

// Thesis §6.2: a leader that cannot reach a quorum steps down within an election timeout.
BOOST_AUTO_TEST_CASE(check_quorum_steps_a_partitioned_leader_down) {
  cluster cl(3);
  cl.elect(1);
  cl.isolate(1);
  cl.tick_all(21);  // at most two check-quorum periods
  BOOST_TEST((cl[1].role() != role::leader));
  // The majority side elects a new leader in a higher term.
  cl.tick_all(60);
  auto l = cl.leader();
  BOOST_REQUIRE(l.has_value());
  BOOST_TEST((*l != n(1)));
}

// Thesis §6.4: the leader answers a read only after a heartbeat round with a quorum.
BOOST_AUTO_TEST_CASE(read_index_on_leader_waits_for_quorum_confirmation) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  cl[1].propose("a");
  cl.deliver();
  index_t commit = cl[1].commit_index();
  cl[1].read_index(7);
  cl.process(n(1));
  BOOST_TEST(cl.at(1).reads.empty());  // not yet: the heartbeat round is in flight
  cl.deliver();
  BOOST_REQUIRE(cl.at(1).reads.size() == 1u);
  BOOST_TEST(cl.at(1).reads[0].context == 7u);
  BOOST_TEST((cl.at(1).reads[0].index == commit));
}

BOOST_AUTO_TEST_CASE(read_index_on_follower_is_forwarded_to_the_leader) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  cl[2].read_index(9);
  cl.deliver();
  BOOST_REQUIRE(cl.at(2).reads.size() == 1u);
  BOOST_TEST(cl.at(2).reads[0].context == 9u);
  BOOST_TEST((cl.at(2).reads[0].index == cl[1].commit_index()));
  // A node that knows no leader drops the read at once.
  core lone(make_config(1, 3));
  lone.read_index(5);
  auto d = drain(lone);
  BOOST_REQUIRE(d.dropped.size() == 1u);
  BOOST_TEST(d.dropped[0] == 5u);
}

// Thesis §6.4: a deposed leader must never answer a read (it could be stale).
BOOST_AUTO_TEST_CASE(read_index_on_deposed_leader_never_answers) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  cl.isolate(1);
  cl[1].read_index(11);
  cl.process(n(1));
  // Meanwhile the others elect a new leader and commit a write the old one cannot see.
  cl.tick_all(60);
  auto l = cl.leader();
  BOOST_REQUIRE(l.has_value());
  BOOST_REQUIRE(*l != n(1));
  BOOST_REQUIRE(cl[l->value].propose("new").ok());
  cl.deliver();
  for (int k = 0; k < 50; ++k) cl.tick_all(1);
  BOOST_TEST(cl.at(1).reads.empty());
  // It was told that the read failed, once leadership was lost.
  BOOST_TEST(cl.at(1).dropped.size() == 1u);
}

// Thesis §3.10: leadership transfer completes within an election timeout.
BOOST_AUTO_TEST_CASE(transfer_hands_over_within_an_election_timeout) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  cl[1].propose("x");
  cl.deliver();
  cl[1].transfer_leadership(n(2));
  BOOST_TEST((cl[1].propose("refused").error == propose_error::transfer_in_progress));
  int ticks = 0;
  for (; ticks < 10 && cl[2].role() != role::leader; ++ticks) {
    cl.deliver();
    if (cl[2].role() == role::leader) break;
    cl.tick_all(1);
  }
  BOOST_TEST((cl[2].role() == role::leader));
  BOOST_TEST(ticks < 10);
  BOOST_TEST((cl[1].role() == role::follower));
  // The committed entry survived the handover.
  BOOST_TEST((cl[2].commit_index() >= i(2)));
}

// Transfer to a lagging follower first catches it up.
BOOST_AUTO_TEST_CASE(transfer_to_a_lagging_follower_catches_it_up_first) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  cl.isolate(3);
  for (int k = 0; k < 5; ++k) cl[1].propose("x" + std::to_string(k));
  cl.deliver();
  cl.heal();
  cl[1].transfer_leadership(n(3));
  cl.deliver();
  for (int k = 0; k < 10 && cl[3].role() != role::leader; ++k) cl.tick_all(1);
  BOOST_TEST((cl[3].role() == role::leader));
  BOOST_TEST((cl[3].last_index() >= i(7)));
}

// Memory (config::release_applied_payloads): an entry applied and durable on the leader
// keeps only index, term and size; a follower that was away still receives every payload,
// read back from storage, and applies the same commands.
BOOST_AUTO_TEST_CASE(released_payloads_reach_a_lagging_follower) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  cl.isolate(3);
  std::vector<std::string> proposed;
  for (int k = 0; k < 30; ++k) {
    proposed.push_back("value-" + std::to_string(k) + std::string(k * 7, 'v'));
    BOOST_REQUIRE(cl[1].propose(proposed.back()).ok());
    cl.deliver();
  }
  const index_t last = cl[1].last_index();
  BOOST_REQUIRE(cl[1].commit_index() == last);
  // Applied and durable on the leader: released, size kept. The no-op of the term and any
  // config entry keep theirs (there is nothing to release, or it is needed again).
  std::size_t released = 0;
  for (index_t x = cl[1].first_index(); x <= last; ++x) {
    const entry* e = cl[1].entry_at(x);
    BOOST_REQUIRE(e);
    if (e->type != entry_type::normal) continue;
    BOOST_TEST(e->data.empty());
    BOOST_TEST(e->released_bytes > 0u);
    ++released;
  }
  BOOST_TEST(released == proposed.size());
  const auto reads_before = cl.at(1).store->entries_read_back();
  cl.heal();
  for (int k = 0; k < 10 && cl[3].commit_index() < last; ++k) cl.tick_all(1);
  BOOST_REQUIRE(cl[3].commit_index() == last);
  BOOST_TEST(cl.at(1).store->entries_read_back() > reads_before);
  std::vector<std::string> applied;
  for (const auto& e : cl.at(3).sm->entries)
    if (e.type == entry_type::normal) applied.emplace_back(e.data.view());
  BOOST_TEST(applied == proposed, boost::test_tools::per_element());
  // Nothing left the leader without its payload.
  for (const auto& m : only<append_request>(cl.at(1).sent)) {
    for (const auto& e : std::get<append_request>(m.body).entries) {
      BOOST_TEST(e.released_bytes == 0u);
    }
  }
}

// raft/payload.h: a leader's log, its storage batch and every follower's append hold the
// same bytes, not a copy each.
BOOST_AUTO_TEST_CASE(a_leaders_copies_of_an_entry_share_its_bytes) {
  core c(make_config(1, 3, false));
  c.campaign();
  drain(c);
  c.step(message{n(2), n(1), c.term(), vote_response{true, false}});
  drain(c);
  BOOST_REQUIRE(c.role() == role::leader);
  const index_t noop = c.last_index();
  for (std::uint64_t f : {2, 3})  // both followers hold the no-op: pipelined appends
    c.step(message{n(f), n(1), c.term(), append_response{false, noop, i(0), t(0), i(0)}});
  drain(c);
  auto p = c.propose(std::string(200, 'v'));
  BOOST_REQUIRE(p.ok());
  auto r = c.take_ready();
  const void* bytes = c.entry_at(p.index)->data.data();
  BOOST_REQUIRE(r.entries.size() == 1u);
  BOOST_TEST(static_cast<const void*>(r.entries[0].data.data()) == bytes);
  int appends = 0;
  for (const auto& m : r.messages) {
    if (const auto* a = std::get_if<append_request>(&m.body)) {
      BOOST_REQUIRE(a->entries.size() == 1u);
      BOOST_TEST(static_cast<const void*>(a->entries[0].data.data()) == bytes);
      ++appends;
    }
  }
  BOOST_TEST(appends == 2);
}

// Paper §7: a follower whose next entry was compacted away gets the snapshot.
BOOST_AUTO_TEST_CASE(snapshot_install_on_lagging_follower) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  cl.isolate(3);
  for (int k = 0; k < 30; ++k) cl[1].propose("v" + std::to_string(k));
  cl.deliver();
  auto& l = cl[1];
  index_t upto = l.applied_index();
  BOOST_REQUIRE(upto >= i(30));
  auto bytes = std::make_shared<const std::string>("snapshot@" + std::to_string(upto.value));
  BOOST_REQUIRE(cl.compact(1, upto, bytes));
  BOOST_TEST((l.first_index() == upto + 1));
  BOOST_TEST(!l.compact(upto, bytes));  // not twice
  cl.heal();
  cl.tick_all(5);
  auto& lag = cl[3];
  BOOST_REQUIRE(cl.at(3).snapshots.size() == 1u);
  const auto& s = cl.at(3).snapshots[0];
  BOOST_TEST((s.meta.index == upto));
  BOOST_TEST(*s.data == *bytes);
  BOOST_TEST((lag.snapshot_index() == upto));
  BOOST_TEST((lag.commit_index() == l.commit_index()));
  BOOST_TEST((lag.last_index() == l.last_index()));
  // Replication continues normally after the snapshot.
  BOOST_REQUIRE(l.propose("after").ok());
  cl.deliver();
  cl.tick_all(2);
  BOOST_TEST((lag.commit_index() == l.last_index()));
  BOOST_TEST(cl.at(3).sm->entries.back().data == "after");
}

// A compaction of more entries than one step destroys leaves the rest to the following
// ticks (raft/core.h, dead_front_). Meanwhile reads of the log, appends, a second
// compaction and a snapshot install see exactly the live entries (the harness checks the
// core's invariants after every event).
BOOST_AUTO_TEST_CASE(a_large_compaction_is_destroyed_over_ticks_without_changing_the_log) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  cl.isolate(3);
  for (int k = 0; k < 20'000; ++k) {
    BOOST_REQUIRE(cl[1].propose("v" + std::to_string(k)).ok());
    if (k % 500 == 499) cl.deliver();
  }
  cl.deliver();
  auto& l = cl[1];
  const index_t last = l.last_index();
  BOOST_REQUIRE((l.applied_index() == last));
  const index_t upto = last - 50;  // ~20,000 entries: far more than one step destroys
  const term_t upto_term = *l.term_at(upto);
  auto bytes = std::make_shared<const std::string>("snapshot@" + std::to_string(upto.value));
  BOOST_REQUIRE(cl.compact(1, upto, bytes));
  BOOST_TEST((l.first_index() == upto + 1));
  BOOST_TEST((l.last_index() == last));
  BOOST_TEST((*l.term_at(upto) == upto_term));
  BOOST_TEST(!l.term_at(upto - 1).has_value());
  BOOST_REQUIRE(l.entry_at(last) != nullptr);
  BOOST_TEST((l.entry_at(last)->index == last));
  BOOST_TEST(l.entry_at(upto) == nullptr);
  // Writes go on while the compacted entries wait to be destroyed, and a second compaction
  // comes before they all are.
  BOOST_REQUIRE(l.propose("during").ok());
  cl.deliver();
  BOOST_TEST((cl[2].commit_index() == last + 1));
  BOOST_TEST((l.entry_at(last + 1)->index == last + 1));
  BOOST_REQUIRE(cl.compact(1, last + 1, bytes));
  BOOST_TEST((l.first_index() == last + 2));
  BOOST_TEST((l.last_index() == last + 1));
  cl.tick_all(5);  // destroys a few more of them
  // The isolated follower catches up from the snapshot, and replication goes on.
  cl.heal();
  cl.tick_all(5);
  BOOST_TEST((cl[3].snapshot_index() == last + 1));
  BOOST_REQUIRE(l.propose("after").ok());
  cl.deliver();
  cl.tick_all(2);
  BOOST_TEST((cl[3].commit_index() == last + 2));
  BOOST_TEST(cl.at(3).sm->entries.back().data == "after");
}

// Pipelining is bounded: at most max_inflight AppendEntries outstanding per peer.
BOOST_AUTO_TEST_CASE(replication_in_flight_is_bounded_per_peer) {
  cluster cl(3);
  cl.elect(1);
  cl.tick_all(2);
  std::size_t sent_to_2 = 0;
  for (int k = 0; k < 20; ++k) {
    cl[1].propose("p" + std::to_string(k));
    cl.at(1).sent.clear();
    cl.process(n(1));  // nothing is delivered: no acknowledgement comes back
    for (auto& m : only<append_request>(cl.at(1).sent))
      if (m.to == n(2)) ++sent_to_2;
  }
  BOOST_TEST(sent_to_2 == 4u);  // max_inflight in make_config
  auto st = cl[1].status();
  BOOST_REQUIRE(st.peers.size() == 2u);
  BOOST_TEST((st.peers[0].state == progress_state::replicate));
}

// Fast back-tracking: a follower with a long divergent tail is repaired in few round trips.
BOOST_AUTO_TEST_CASE(conflicting_follower_log_is_repaired_with_few_round_trips) {
  restore_state ls;
  ls.hs.term = t(4);
  ls.entries = log_of({1, 1, 1, 4, 4, 4, 4, 4, 4, 4});
  core leader(make_config(1, 3, false), ls);
  restore_state fs;
  fs.hs.term = t(3);
  fs.entries = log_of({1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3});
  core follower(make_config(2, 3, false), fs);
  leader.campaign();
  drain(leader);
  leader.step(message{n(3), n(1), t(5), vote_response{true, false}});
  int round_trips = 0;
  auto to_follower = drain(leader).messages;
  while (round_trips < 20) {
    std::vector<message> replies;
    for (auto& m : to_follower)
      if (m.to == n(2) && std::holds_alternative<append_request>(m.body)) {
        follower.step(m);
        for (auto& r : drain(follower).messages) replies.push_back(r);
      }
    if (replies.empty()) break;
    ++round_trips;
    to_follower.clear();
    for (auto& r : replies) leader.step(r);
    to_follower = drain(leader).messages;
    if (follower.last_index() == leader.last_index() &&
        *follower.term_at(follower.last_index()) == leader.term())
      break;
  }
  BOOST_TEST(round_trips <= 4);
  BOOST_TEST((follower.last_index() == leader.last_index()));
  for (std::uint64_t k = 1; k <= leader.last_index().value; ++k)
    BOOST_TEST((*follower.term_at(i(k)) == *leader.term_at(i(k))));
}

// A restarted node resumes with its persisted term, vote and log, and re-applies from its
// snapshot.
BOOST_AUTO_TEST_CASE(restart_restores_hard_state_and_log) {
  restore_state rs;
  rs.hs = hard_state{t(3), n(2), i(2)};
  rs.snapshot = snapshot_meta{i(1), t(1), raft::voters_only({n(1), n(2), n(3)})};
  rs.snapshot_data = std::make_shared<const std::string>("s");
  auto l = log_of({1, 2, 3});
  rs.entries.assign(l.begin() + 1, l.end());
  core c(make_config(1, 3), rs);
  BOOST_TEST((c.term() == t(3)));
  BOOST_TEST((c.status().vote == n(2)));
  BOOST_TEST((c.first_index() == i(2)));
  BOOST_TEST((c.last_index() == i(3)));
  BOOST_TEST((c.persisted_index() == i(3)));
  auto d = drain(c);
  BOOST_REQUIRE(d.committed.size() == 1u);
  BOOST_TEST((d.committed[0].index == i(2)));
  // It already voted in term 3.
  c.step(vote_req(3, 1, 3, 3, 3));
  auto a = vote_answer(drain(c));
  BOOST_REQUIRE(a);
  BOOST_TEST(!a->granted);
}

BOOST_AUTO_TEST_CASE(propose_on_follower_is_refused) {
  cluster cl(3);
  cl.elect(1);
  auto r = cl[2].propose("x");
  BOOST_TEST((r.error == propose_error::not_leader));
  BOOST_TEST((cl[2].leader() == n(1)));
}

BOOST_AUTO_TEST_CASE(single_node_cluster_commits_after_persisting) {
  core c(make_config(1, 1));
  c.campaign();
  drain(c);
  BOOST_REQUIRE(c.role() == role::leader);
  auto p = c.propose("solo");
  BOOST_REQUIRE(p.ok());
  auto d = drain(c);
  BOOST_TEST((c.commit_index() == p.index));
  BOOST_REQUIRE(!d.committed.empty());
  BOOST_TEST(d.committed.back().data == "solo");
  c.read_index(3);
  auto rd = drain(c);
  BOOST_REQUIRE(rd.reads.size() == 1u);
  BOOST_TEST((rd.reads[0].index == p.index));
}

// The §5.4.2 test above is sensitive: with the rule deliberately broken, the leader of term 4
// commits the term-2 entry by counting, exactly what Figure 8 shows to be unsafe.
BOOST_AUTO_TEST_CASE(known_bad_commit_any_term_commits_figure_8_entry) {
  restore_state s1;
  s1.hs.term = t(3);
  s1.entries = log_of({1, 2});
  auto cfg = make_config(1, 5, false);
  cfg.mutation = unsafe_mutation::commit_any_term;
  core leader(cfg, s1);
  leader.campaign();
  drain(leader);
  for (int v : {2, 3}) leader.step(message{n(v), n(1), t(4), vote_response{true, false}});
  drain(leader);
  BOOST_REQUIRE(leader.role() == role::leader);
  for (int v : {2, 3})
    leader.step(message{n(v), n(1), t(4), append_response{false, i(2), i(0), t(0), i(0)}});
  drain(leader);
  BOOST_TEST((leader.commit_index() == i(2)));
}
