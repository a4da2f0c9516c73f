// The shape of the stored log and how a batch advances it: pure rules, no LMDB, no I/O.
//
// Between transactions the stored log holds exactly the indexes snap.index+1 .. last_index,
// no hole, terms never decreasing, none below snap.term; the hard state is whatever the last
// batch carrying one said. `advance` checks one batch against that shape and returns the
// shape after it, in the order the writer applies a batch's parts:
//
//   1. truncate_from (§5.3): must be > snap.index. Entries >= it go; if that shortens the
//      log, the new last term is the term of entry truncate_from-1 (the snapshot's term when
//      that is the snapshot index). Truncating past the end changes nothing.
//   2. entries: the first is last_index+1, indexes consecutive, every term > 0 and not below
//      the previous entry's (or the snapshot's, when the log is empty).
//   3. compaction (§7): not below snap.index. If the log holds meta.index (after steps 1
//      and 2), its term must equal meta.term: compacting over a conflicting entry would
//      make the snapshot and the log disagree; the caller truncates first. Entries <=
//      meta.index go; if the log ended at or before meta.index, it is now empty and its
//      last (index, term) is the snapshot's.
//   4. hard: replaces the hard state.
//
// A violation is `invalid_batch` (a caller bug); the writer then aborts the transaction and
// fails the store. Terms of entries already stored come from a term_source (the writer
// reads them inside its transaction); an error from it (a missing or corrupt entry) is
// passed on as is.
#pragma once

#include "raft/storage/types.h"

namespace raft::storage {

struct log_shape {
  index_t last_index;  // last entry, or snap.index when the log is empty
  term_t last_term;
  snapshot_meta snap;  // the recorded snapshot (index 0: none)
  hard_state hard;

  persisted as_persisted() const { return persisted{last_index, last_term, hard}; }
  bool operator==(const log_shape&) const = default;
};

// Terms of entries in the stored log as it was BEFORE the batch being checked: asked only
// for snap.index < i <= last_index.
class term_source {
 public:
  virtual result<term_t> term_at(index_t i) const = 0;

 protected:
  ~term_source() = default;
};

// The shape after b, or why b may not be applied to `before`.
result<log_shape> advance(const log_shape& before, const batch& b, const term_source& terms);

}  // namespace raft::storage
