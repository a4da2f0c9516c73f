// Messages exchanged between Raft peers.
//
// Every message has a header (from, to, term) and a body, one of the alternatives of
// message_body. The core consumes them with core::step() and produces them in
// ready::messages / ready::messages_after_persist; raft/codec.h turns them into bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "raft/types.h"

namespace raft {

// AppendEntries request (paper Figure 2). Also used as a probe with no entries.
struct append_request {
  index_t prev_index;          // index of the entry just before `entries` (0 = none)
  term_t prev_term;            // term of that entry (0 when prev_index == 0)
  std::vector<entry> entries;  // contiguous, entries[k].index == prev_index + 1 + k
  index_t commit;              // leader's commit index (followers clamp it to what they hold)

  bool operator==(const append_request&) const = default;
};

// Reply to append_request and to snapshot_request.
struct append_response {
  bool reject = false;     // true: the log-matching check failed at rejected_index
  index_t match_index;     // success: the follower's log matches the leader's up to here
  index_t rejected_index;  // reject: the prev_index of the refused request (to spot stale replies)
  // Fast back-tracking hints (thesis §5.3 optimisation, used on reject):
  // conflict_term == 0: the follower's log ends before rejected_index, and conflict_index
  // is its last index + 1. Otherwise conflict_term is the follower's term at rejected_index
  // and conflict_index the first index the follower holds with that term.
  term_t conflict_term;
  index_t conflict_index;

  bool operator==(const append_response&) const = default;
};

// RequestVote (paper Figure 2), or a pre-vote (thesis §9.6) when pre_vote is set.
// For a pre-vote, the header term is the term the sender would campaign in (its term + 1);
// the receiver never changes its own term because of it.
struct vote_request {
  index_t last_index;     // candidate's last log index
  term_t last_term;       // term of that entry
  bool pre_vote = false;  // probe only: "would you vote for me?"
  bool transfer = false;  // campaign caused by TimeoutNow: voters ignore their leader lease

  bool operator==(const vote_request&) const = default;
};

struct vote_response {
  bool granted = false;
  bool pre_vote = false;  // answers a pre-vote

  bool operator==(const vote_response&) const = default;
};

// Leader heartbeat: keeps followers from campaigning and confirms leadership for ReadIndex.
struct heartbeat_request {
  index_t commit;              // min(follower's match index, leader commit): safe to adopt
  std::uint64_t read_seq = 0;  // latest ReadIndex round; echoed in the response

  bool operator==(const heartbeat_request&) const = default;
};

struct heartbeat_response {
  std::uint64_t read_seq = 0;  // echo of the request's read_seq

  bool operator==(const heartbeat_response&) const = default;
};

// InstallSnapshot (paper §7), sent whole: the snapshot bytes are shared, never copied.
struct snapshot_request {
  snapshot_meta meta;                       // what the snapshot covers
  std::shared_ptr<const std::string> data;  // state-machine snapshot bytes (never null)

  bool operator==(const snapshot_request& o) const {
    return meta == o.meta && ((data == o.data) || (data && o.data && *data == *o.data));
  }
};

// Leadership transfer (thesis §3.10): "start an election now, skipping pre-vote".
struct timeout_now {
  bool operator==(const timeout_now&) const = default;
};

// A follower forwards a ReadIndex request to its leader (thesis §6.4).
struct read_index_request {
  std::uint64_t context = 0;  // opaque id chosen by the follower's caller

  bool operator==(const read_index_request&) const = default;
};

// Leader's answer: ok => reads at `index` or later are linearizable for this context.
struct read_index_response {
  std::uint64_t context = 0;
  index_t index;
  bool ok = false;  // false: the leader could not serve it (e.g. lost leadership)

  bool operator==(const read_index_response&) const = default;
};

using message_body = std::variant<append_request, append_response, vote_request, vote_response,
                                  heartbeat_request, heartbeat_response, snapshot_request,
                                  timeout_now, read_index_request, read_index_response>;

// One Raft message. Invariant: from != to, both nonzero.
struct message {
  node_id from;       // sender
  node_id to;         // receiver
  term_t term;        // sender's current term (for a pre-vote request: the proposed term)
  message_body body;  // what it says

  bool operator==(const message&) const = default;
};

// For the static_assert catch-all of a visitor over message_body: a new message type that
// nobody handles does not compile.
template <typename T>
inline constexpr bool always_false = false;

// Short name of the body type, for traces and logs.
const char* message_name(const message& m);

}  // namespace raft
