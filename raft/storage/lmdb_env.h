// The LMDB environment of a store: opening it, its transactions, map growth and what a
// failed commit means. No threads of its own: lmdb_store reads through it from any thread;
// commit() is called by the checkpointer (writer.h) and, before it starts, by the journal
// replay in lmdb_store::open.
//
// Three named databases hold the records of records.h ("meta": format, hard state, snapshot
// record; "log": the entries). Every read verifies checksums; a mismatch is an error naming
// the record and load() fails on it, so the node refuses to start rather than truncating a
// committed entry away and possibly leading without it (§5.4.1 relies on every committed
// entry being present on whoever becomes leader).
//
// ## A commit
//
// commit() applies a run of batches inside ONE write transaction, each part in the order of
// log_shape.h (which decides validity and the resulting shape before anything is written),
// then mdb_txn_commit: LMDB writes the new pages, fdatasyncs the data file, then writes the
// meta page that points at them. The env is opened with MDB_NOMETASYNC, so that meta write
// is NOT synced (without the flag LMDB writes it through an O_DSYNC descriptor); the
// checkpointer calls sync() right after, and only then counts the commit durable. A crash
// anywhere before the meta page is durable leaves the previous commit; LMDB never overwrites
// pages the last two commits use, so that state is intact. A transaction that changed
// nothing commits without writing or syncing anything (commit_report::synced says which).
//
// ## Pre-sizing
//
// When a write extends the data file, the next fdatasync must also commit the new size
// through the filesystem journal (ext4: a journal commit, often as slow as the data sync
// itself); so must a write into fallocate()d but unwritten extents. presize() keeps real,
// written zeros ahead of the last page LMDB uses: an eighth of the used size, 4 to 64 MiB,
// within the map, topped up when less than a quarter of it is left, in 1 MiB writes and
// one fdatasync, between transactions. Commits then overwrite blocks that exist, and their
// fdatasync has only data to flush. LMDB never reads pages beyond its last used page, so
// the zeros are invisible to it. A failed write of zeros (no space, a file size limit) is
// logged and ends pre-sizing for this process: LMDB's own writes then extend the file and
// report what fails. A failed fdatasync fails the store like any other.
//
// If the map is full (MDB_MAP_FULL) the transaction is aborted, the map doubled (up to
// max_map_bytes) and the whole transaction retried: nothing of the aborted attempt is on
// disk. Readers hold map_mutex_ shared for the life of a read transaction; the resize holds
// it exclusively (LMDB: no transaction may be active then). Beyond max_map_bytes, on ENOSPC,
// EIO or any other failure the transaction is aborted (LMDB leaves the last committed state
// intact) and the error is returned; LMDB reports a short page write as EIO, so an EIO with
// almost no space left on the filesystem is classified as disk_full.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "raft/storage/log_shape.h"
#include "raft/storage/types.h"

struct MDB_env;

namespace raft::storage {

struct env_options {
  std::filesystem::path dir;
  bool fsync = true;
  std::uint64_t initial_map_bytes = 64ull << 20;
  std::uint64_t max_map_bytes = 16ull << 30;
  std::function<void(log_level, std::string_view)> log;  // never empty
};

// What one commit() did.
struct commit_report {
  std::vector<persisted> after;     // per batch: the state right after it
  log_shape shape;                  // after the last batch
  std::size_t entries = 0;          // entries appended
  std::uint64_t bytes = 0;          // their payload bytes
  std::chrono::nanoseconds took{};  // inside mdb_txn_commit
  // The transaction changed something, so mdb_txn_commit wrote pages and fdatasynced the
  // data file (which also made every earlier commit's meta page durable). A commit that
  // changed nothing (only barriers) does neither.
  bool synced = false;
};

// Everything load() needs from LMDB, verified: contiguous from recorded.index + 1, terms
// never decreasing.
struct stored_log {
  hard_state hard;
  snapshot_meta recorded;  // the "snapshot" record (index 0: none)
  std::vector<entry> entries;
};

class lmdb_env {
 public:
  // Opens (or initialises) the environment in opts.dir and checks the format version.
  static result<std::unique_ptr<lmdb_env>> open(env_options opts);
  ~lmdb_env();
  lmdb_env(const lmdb_env&) = delete;
  lmdb_env& operator=(const lmdb_env&) = delete;

  // The committed shape: hard state, snapshot record, last entry.
  result<log_shape> read_shape() const;
  result<stored_log> read_log() const;
  // Entries [first, last]; an error if any is missing or corrupt.
  result<std::vector<entry>> read_entries(index_t first, index_t last) const;

  // Applies `batches` on top of `committed` in one transaction and commits it (see above),
  // recording journal_seq (journal.h) as the last journal record the state includes.
  result<commit_report> commit(const log_shape& committed, std::span<const batch> batches,
                               std::uint64_t journal_seq);

  // The last journal record the committed state includes (0: none yet).
  result<std::uint64_t> read_journal_seq() const;

  // The "journal_drained" record (journal.h, "Missing files"): the journal_seq at which
  // the journal was known to hold nothing LMDB lacks (a new env, a format-1 upgrade, a
  // clean close), or nullopt once a journal may hold more. set_ writes (or, with nullopt,
  // deletes) it in a transaction of its own, made durable, and returns the fdatasyncs that
  // took (the commit's and sync()'s; none without fsync). Not while the checkpointer runs.
  result<std::optional<std::uint64_t>> read_journal_drained() const;
  result<std::uint64_t> set_journal_drained(std::optional<std::uint64_t> seq);

  // Makes every commit so far durable: fdatasync of the data file (mdb_env_sync). Writer
  // thread only.
  error sync();

  // Keeps real, written zeros ahead of the pages LMDB uses (see above). Returns whether it
  // extended the file and fdatasynced it; an error only when that fdatasync failed. Writer
  // thread only, between transactions.
  result<bool> presize();

  // Whether commits are synced at all (false: the fsync = false benchmark mode).
  bool durable() const { return opts_.fsync; }

  std::uint64_t map_bytes() const;
  std::uint64_t map_grows() const { return grows_.load(); }

 private:
  explicit lmdb_env(env_options opts);

  // One attempt at the current map size: an LMDB code (MDB_MAP_FULL: grow and retry) or a
  // validation / corruption error.
  struct attempt {
    int rc = 0;
    error err;
  };
  // A "journal_seq"-shaped meta record (records.h): nullopt when absent.
  result<std::optional<std::uint64_t>> read_seq_record(std::string_view key) const;
  attempt try_commit(const log_shape& committed, std::span<const batch> batches,
                     std::uint64_t journal_seq, commit_report& report);

  env_options opts_;
  MDB_env* env_ = nullptr;
  unsigned meta_dbi_ = 0;
  unsigned log_dbi_ = 0;
  mutable std::shared_mutex map_mutex_;
  std::uint64_t map_bytes_ = 0;
  std::atomic<std::uint64_t> grows_{0};
  std::string scratch_;          // entry encoding buffer (writer thread)
  bool presize_failed_ = false;  // a write of zeros failed: no more pre-sizing
};

}  // namespace raft::storage
