// Cluster membership changes: what a change is, whether it is allowed, and the bytes of a
// configuration as it travels in a config entry (entry_type::config) and in snapshots.
//
// ## The rule (Raft thesis §4.1, single-server changes)
//
// A configuration entry carries the whole new configuration. Every node uses the latest
// configuration in its log, committed or not, from the moment the entry is appended (and
// goes back to the previous one if the entry is truncated away). That is safe only if any
// two consecutive configurations have overlapping majorities, which holds when they differ
// by at most one voter; hence the changes below each add or remove one voter or touch a
// learner only, and the leader refuses a new change while an earlier one is uncommitted.
// The thesis' fix (§4.1, "a leader may not append a configuration entry until it has
// committed an entry of its own term") closes the bug where a leader of an old configuration
// and one of a new configuration could both be elected after a change that never committed;
// raft::core enforces it (change_error::leader_not_ready).
//
// Learners (thesis §4.2.1) join as non-voters: they receive the log and snapshots and count
// for nothing, so a new node that needs hours to catch up does not make the cluster wait.
// Promotion makes one learner a voter: one more voter, so it is a single-server change too.
// A leader asked to remove itself first hands leadership to its most up-to-date voter
// (core::propose_change), and the next leader removes it as a follower. A node leads with
// its own removal in its log in one corner only (core::may_campaign); it counts itself for
// nothing, and hands over once the entry commits (core::maybe_leave).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "raft/types.h"

namespace raft {

enum class change_kind : std::uint8_t {
  add_learner = 1,  // a new id, non-voting
  promote = 2,      // learner -> voter
  remove = 3,       // any member
};

struct membership_change {
  change_kind kind = change_kind::add_learner;
  member subject;  // add_learner: the whole new member; promote/remove: only the id is used

  bool operator==(const membership_change&) const = default;
};

// Why a change was refused. The HTTP API maps each to a status (SPEC §8).
enum class change_error : std::uint8_t {
  none = 0,
  not_leader,            // only the leader changes the configuration
  transfer_in_progress,  // leadership is being handed over: retry
  change_in_progress,    // an earlier configuration entry is not committed yet
  leader_not_ready,      // no entry of the leader's term committed yet (thesis §4.1 fix): retry
  member_exists,         // add: the id is already a member
  address_in_use,        // add: one of its endpoints is another member's
  unknown_member,        // promote/remove: no such id
  not_learner,           // promote: it is already a voter
  last_voter,            // remove: it would leave no voter
  not_caught_up,         // promote: the learner's log is still far behind the leader's
  malformed,             // the change's bytes did not decode (or id 0)
};
const char* to_string(change_error e);
// A transient refusal worth retrying in a moment (the HTTP API waits on it).
bool retryable(change_error e);

// The configuration after `c`, or why it is refused. Pure: checks only what the configuration
// itself can tell (the leader's core adds the log-dependent checks).
std::variant<membership, change_error> apply_change(const membership& current,
                                                    const membership_change& c);

// Encodings (little-endian, length-prefixed; decoders reject trailing bytes and never
// allocate beyond the input).
std::string encode_membership(const membership& m);
std::optional<membership> decode_membership(std::string_view bytes);
std::string encode_change(const membership_change& c);
std::optional<membership_change> decode_change(std::string_view bytes);

// What a membership change came to, as raft::replica::change_membership reports it (and a
// leader sends it back to the follower that forwarded the change): refused with `error`, or
// committed at `index`, giving `config`.
struct change_outcome {
  change_error error = change_error::none;
  index_t index;
  membership config;

  bool operator==(const change_outcome&) const = default;
};
std::string encode_outcome(const change_outcome& o);
std::optional<change_outcome> decode_outcome(std::string_view bytes);

// For log lines: "voters 1,2,3; learners 4" and "add learner 4 (peer=h:p)".
std::string describe(const membership& m);
std::string describe(const membership_change& c);

// A configuration of `voters` with no endpoints (tests, and old snapshot records).
membership voters_only(const std::vector<node_id>& voters);

}  // namespace raft
