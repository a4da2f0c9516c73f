// Vocabulary types shared by the Raft core, its storage and the node runtime.
//
// term, index and node id are distinct strong types so that they cannot be mixed up
// (passing a term where an index is expected does not compile).
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "raft/payload.h"

namespace raft {

// A 64-bit unsigned integer that only compares and does arithmetic with its own kind.
template <typename Tag>
struct strong_u64 {
  std::uint64_t value = 0;

  constexpr strong_u64() = default;
  constexpr explicit strong_u64(std::uint64_t v) : value(v) {}

  constexpr auto operator<=>(const strong_u64&) const = default;

  constexpr strong_u64 operator+(std::uint64_t n) const { return strong_u64(value + n); }
  constexpr strong_u64 operator-(std::uint64_t n) const { return strong_u64(value - n); }
  constexpr strong_u64& operator++() { ++value; return *this; }
  constexpr strong_u64& operator--() { --value; return *this; }
};

struct term_tag {};
struct index_tag {};
struct node_id_tag {};

// Raft term (paper §5.1). 0 = no term yet.
using term_t = strong_u64<term_tag>;
// Position of an entry in the log, 1-based (paper §5.3). 0 = before the first entry.
using index_t = strong_u64<index_tag>;
// Cluster member id from the configuration; 0 = nobody (no vote, no leader known).
using node_id = strong_u64<node_id_tag>;

inline constexpr node_id no_node{};

enum class entry_type : std::uint8_t {
  normal = 0,  // data is an opaque client command for the state machine
  noop = 1,    // appended by a new leader at the start of its term (thesis §6.4); data empty
  config = 2,  // data is a whole new cluster configuration (raft/membership.h, encode_membership)
};

// One log entry. Invariant: index > 0, term > 0.
struct entry {
  term_t term;                           // term of the leader that created it
  index_t index;                         // its position in the log
  entry_type type = entry_type::normal;  // how the state machine should treat data
  payload data;                          // opaque bytes (kv command), shared by copies
  // Not 0: the core released `data` from memory (config::release_applied_payloads) and
  // storage holds it; this is its size. Such an entry never leaves the node as it is: the
  // drive loop reads the payload back before sending it (raft/replica.h).
  std::uint32_t released_bytes = 0;

  bool operator==(const entry&) const = default;
};

// The size of an entry's payload, whether it is held in memory or was released.
inline std::size_t payload_bytes(const entry& e) {
  return e.data.size() + e.released_bytes;
}

// What must be on stable storage before the node answers any RPC (paper Figure 2,
// "persistent state on all servers"); commit is stored too so a restart re-applies less.
struct hard_state {
  term_t term;    // latest term this node has seen
  node_id vote;   // candidate voted for in term, or no_node
  index_t commit; // highest index known committed (may lag; never ahead of the truth)

  bool operator==(const hard_state&) const = default;
};

// One cluster member as the replicated configuration knows it.
struct member {
  node_id id;
  bool voter = true;  // false: a learner (receives the log, never votes or counts for a quorum)
  // Where the member is reached, by name ("peer", "memcached", "http", ...). Opaque to Raft:
  // they travel in configuration entries and snapshots so that every node, a joining one
  // included, learns every other member's addresses from the replicated state. Sorted by name.
  std::vector<std::pair<std::string, std::string>> endpoints;

  bool operator==(const member&) const = default;
};

// A cluster configuration (raft/membership.h). members sorted by id, ids unique. Empty means
// "not known": a snapshot record written before configurations were replicated, or a node
// that joins and has heard nothing yet.
struct membership {
  std::vector<member> members;

  bool empty() const { return members.empty(); }
  const member* find(node_id id) const {
    for (const auto& m : members)
      if (m.id == id) return &m;
    return nullptr;
  }
  bool is_voter(node_id id) const {
    const member* m = find(id);
    return m && m->voter;
  }
  std::vector<node_id> voters() const {
    std::vector<node_id> v;
    for (const auto& m : members)
      if (m.voter) v.push_back(m.id);
    return v;
  }
  bool operator==(const membership&) const = default;
};

// Describes a state-machine snapshot: it contains the effect of every entry up to index.
struct snapshot_meta {
  index_t index;      // last log index the snapshot covers
  term_t term;        // term of the entry at index
  membership config;  // the cluster configuration as of index (latest config entry <= index)

  bool operator==(const snapshot_meta&) const = default;
};

}  // namespace raft

template <typename Tag>
struct std::hash<raft::strong_u64<Tag>> {
  std::size_t operator()(const raft::strong_u64<Tag>& v) const noexcept {
    return std::hash<std::uint64_t>{}(v.value);
  }
};
