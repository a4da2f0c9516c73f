// The vocabulary of the durable log store: what a caller submits (a batch), what it is told
// back (persisted, or an error), and the error values. lmdb_store.h is the store built on
// these.
//
// The contract of a store, whatever keeps the bytes:
//   - batches are applied in submission order; each one as a unit (never half a batch);
//   - a batch's callback runs once what the batch wrote is durable, with the log's last
//     (index, term) and the hard state right after that batch; callbacks run in submission
//     order; reporting later than necessary is allowed, reporting early never is;
//   - a batch that would break the log's shape (log_shape.h) fails the store.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "raft/types.h"

namespace raft::storage {

enum class errc : std::uint8_t {
  ok = 0,
  locked,         // data_dir held by another process (or another open in this one)
  io_error,       // open/read/write/fsync failed; message has the errno text
  disk_full,      // ENOSPC, or the LMDB map reached max_map_bytes
  corrupt,        // a checksum mismatch or a broken invariant in what is on disk
  invalid_batch,  // a submitted batch would break the log invariant (caller bug)
  bad_format,     // data written by an unknown format version
  closed,         // the store was closed
};

inline std::string_view to_string(errc e) {
  switch (e) {
    case errc::ok:
      return "ok";
    case errc::locked:
      return "locked";
    case errc::io_error:
      return "io_error";
    case errc::disk_full:
      return "disk_full";
    case errc::corrupt:
      return "corrupt";
    case errc::invalid_batch:
      return "invalid_batch";
    case errc::bad_format:
      return "bad_format";
    case errc::closed:
      return "closed";
  }
  return "unknown";
}

// An error as a value: a code for the program and one line of text for a human.
struct error {
  errc code = errc::ok;
  std::string message;

  bool ok() const { return code == errc::ok; }
  explicit operator bool() const { return !ok(); }  // true when there IS an error
};

inline error make_error(errc code, std::string message) {
  return error{code, std::move(message)};
}

// Either a value or an error (std::expected arrives with C++23).
template <typename T>
struct result {
  T value{};
  error err;
  bool ok() const { return err.ok(); }
};

enum class log_level : std::uint8_t { info, warning, error };

// One unit of work for the writer. Every part is optional; an empty batch is a barrier
// (its callback runs once everything before it is durable).
struct batch {
  // Delete every entry with index >= truncate_from before appending (a follower dropping a
  // conflicting suffix, paper §5.3). Must be > the snapshot index.
  std::optional<index_t> truncate_from;
  // Appended in order; the first must be last_index + 1 (after truncation), indexes
  // consecutive, terms > 0 and not decreasing.
  std::vector<entry> entries;
  // Record this snapshot as the log's base and delete entries <= its index. Its snapshot
  // file must already be durable (write_snapshot). If the log holds meta.index its term must
  // equal meta.term (else truncate first). Must not go below the current snapshot.
  std::optional<snapshot_meta> compaction;
  // New term / vote / commit (paper Figure 2): durable before the callback runs.
  std::optional<hard_state> hard;
  // Runs on the writer thread before the transaction that holds this batch, in submission
  // order: file work the batch's records depend on (a received snapshot's file made durable
  // before `compaction` records it), kept off the caller's thread. An error fails the batch
  // and the store, as a failed commit does.
  std::function<error()> prepare;
};

// What a batch made durable (the state right after it, within its transaction).
struct persisted {
  index_t last_index;  // last entry in the log (the snapshot index when the log is empty)
  term_t last_term;    // its term
  hard_state hard;     // the hard state on disk
};

// Runs on the writer thread (or on the caller's after close()).
using submit_callback = std::function<void(const result<persisted>&)>;

}  // namespace raft::storage
