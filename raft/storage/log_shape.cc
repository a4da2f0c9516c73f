#include "raft/storage/log_shape.h"

#include <string>

namespace raft::storage {

namespace {

error invalid(const std::string& why) {
  return make_error(errc::invalid_batch, "invalid storage batch: " + why);
}

std::string str(index_t i) {
  return std::to_string(i.value);
}
std::string str(term_t t) {
  return std::to_string(t.value);
}

}  // namespace

result<log_shape> advance(const log_shape& before, const batch& b, const term_source& terms) {
  log_shape s = before;
  // Entries of `before` that survived step 1 are <= kept; the term of one of them comes
  // from the store, of one appended by b from b itself.
  index_t kept = before.last_index;

  if (b.truncate_from) {
    const index_t from = *b.truncate_from;
    if (from <= s.snap.index)
      return {{},
              invalid("truncate_from " + str(from) + " is inside the snapshot (index " +
                      str(s.snap.index) + ")")};
    if (from <= s.last_index) {
      s.last_index = from - 1;
      kept = s.last_index;
      if (s.last_index == s.snap.index) {
        s.last_term = s.snap.term;
      } else {
        auto t = terms.term_at(s.last_index);
        if (!t.ok()) return {{}, t.err};
        s.last_term = t.value;
      }
    }
  }

  for (const entry& e : b.entries) {
    if (e.index != s.last_index + 1)
      return {{},
              invalid("entry " + str(e.index) + " does not follow the last index " +
                      str(s.last_index))};
    if (e.term.value == 0 || e.term < s.last_term)
      return {{},
              invalid("entry " + str(e.index) + " has term " + str(e.term) +
                      ", below the previous term " + str(s.last_term))};
    s.last_index = e.index;
    s.last_term = e.term;
  }

  if (b.compaction) {
    const snapshot_meta& m = *b.compaction;
    if (m.index < s.snap.index)
      return {{},
              invalid("compaction at " + str(m.index) + " is below the snapshot at " +
                      str(s.snap.index))};
    if (m.index <= s.last_index && m.index > s.snap.index) {
      term_t t;
      if (m.index > kept) {
        t = b.entries[m.index.value - b.entries.front().index.value].term;
      } else {
        auto stored = terms.term_at(m.index);
        if (!stored.ok()) return {{}, stored.err};
        t = stored.value;
      }
      if (t != m.term)
        return {{},
                invalid("compaction at " + str(m.index) + " term " + str(m.term) +
                        " conflicts with the log's term " + str(t) + " (truncate first)")};
    }
    s.snap = m;
    if (s.last_index <= m.index) {
      s.last_index = m.index;
      s.last_term = m.term;
    }
  }

  if (b.hard) s.hard = *b.hard;
  return {std::move(s), {}};
}

}  // namespace raft::storage
