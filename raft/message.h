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

class snapshot_receiver;  // raft/interfaces.h

// InstallSnapshot (paper §7). The leader's core emits it with metadata only (data null): the
// drive loop (raft/replica.h, "Snapshot transfer") turns it into a stream of snapshot_chunk
// messages read from the snapshot file, and never puts it on the network as such. The
// receiving drive loop hands its core one with the reassembled bytes, verified: in memory
// (data), or assembled by its log store (file).
struct snapshot_request {
  snapshot_meta meta;                       // what the snapshot covers
  std::shared_ptr<const std::string> data;  // state-machine snapshot bytes (null: metadata only)
  // Local only, never encoded: the verified bytes held by the log store instead of data.
  std::shared_ptr<snapshot_receiver> file;

  bool operator==(const snapshot_request& o) const {
    return meta == o.meta && file == o.file &&
           ((data == o.data) || (data && o.data && *data == *o.data));
  }
};

// One piece of a snapshot being streamed by the leader (raft/replica.h, "Snapshot
// transfer"). Bounded by the sender's chunk size, so heartbeats and appends queued behind it
// on the same connection wait for at most a few chunks.
struct snapshot_chunk {
  snapshot_meta meta;          // which snapshot
  std::uint64_t offset = 0;    // of `data` within the snapshot's bytes
  std::uint64_t total = 0;     // size of the whole snapshot
  std::uint32_t checksum = 0;  // CRC-32C of the whole snapshot (the same in every chunk)
  bool last = false;           // offset + data.size() == total
  std::string data;

  bool operator==(const snapshot_chunk&) const = default;
};

// The follower's answer to a chunk: it holds the bytes [0, next) of that snapshot. A next
// other than the chunk's end tells the leader to resend from there (a chunk was lost, or the
// follower started over). `done`: the whole snapshot verified and was handed to the core;
// `failed`: it did not verify (size or checksum) and the follower dropped it.
struct snapshot_chunk_response {
  index_t index;  // the chunk's snapshot (index, term)
  term_t snapshot_term;
  std::uint64_t offset = 0;  // the chunk answered
  std::uint64_t next = 0;
  bool done = false;
  bool failed = false;

  bool operator==(const snapshot_chunk_response&) const = default;
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
  // The leader's wall clock (Unix ms) when it confirmed the read: the follower judges
  // expiry by it, not by its own clock (docs/semantics.md, "Time and expiry").
  std::int64_t leader_time_ms = 0;

  bool operator==(const read_index_response&) const = default;
};

using message_body =
    std::variant<append_request, append_response, vote_request, vote_response, heartbeat_request,
                 heartbeat_response, snapshot_request, timeout_now, read_index_request,
                 read_index_response, snapshot_chunk, snapshot_chunk_response>;

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
