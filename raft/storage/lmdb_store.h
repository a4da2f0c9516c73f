// Durable Raft storage: the log, the hard state and snapshot metadata in LMDB, snapshot files
// beside it, one writer thread with group commit.
//
// ## What the node gets (Raft paper Figure 2, "persistent state on all servers")
//
//   auto opened = lmdb_store::open({.data_dir = "var/node1"});   // lock + env, no replay yet
//   if (!opened.store) die(opened.err.message);
//   auto loaded = opened.store->load();       // hard state, latest valid snapshot, log after it
//   replay(loaded.value, apply_fn, log_fn);   // optional helper: rebuild kv with progress lines
//   store->submit(std::move(batch), callback); // from any thread; applied in submission order
//   store->write_snapshot(meta, bytes);       // on the caller's thread (blocking file I/O)
//   store->close();                           // drain, join the writer, close the env
//
// ## Where each part lives
//
//   types.h           the words: batch, persisted, error, result; the store's contract
//   log_shape.h       pure rules: what a batch may contain, how last index/term, snapshot
//                     and hard state advance (unit-tested without LMDB)
//   records.h         the on-disk records and their codecs (CRC-32C framing, entries, hard
//                     state, snapshot record, format record, log keys)
//   snapshot_files.h  snapshot files: atomic write, verify, newest valid, cleanup
//   lmdb_env.h        the LMDB environment: open, reads, one commit, map growth, errors
//   writer.h          the writer thread: group commit, one sync per commit, callbacks,
//                     failure
//   file_io.h         POSIX helpers (errno errors, whole reads/writes, directory fsync)
//   lmdb_store.h/.cc  this file: the data dir (LOCK, layout), open/load/close, and the parts
//                     glued into one object
//
// ## Files under data_dir
//
//   LOCK                  flock(LOCK_EX) held while open; contains the owner's pid. A second
//                         process (or a second open in this process) fails with
//                         "data dir D is locked by another process (pid N)".
//   data.mdb, lock.mdb    the LMDB environment (lock.mdb is LMDB's reader table, not ours);
//                         its records are described in records.h.
//   snapshots/            snapshot files (snapshot_files.h).
//
// Invariant between transactions: the log holds exactly the indexes snap+1 .. last with no
// hole, where snap is the "snapshot" record's index (0 when there is none); terms never
// decrease along the log. Every read verifies checksums; a corrupt or missing record makes
// load() fail naming it, so the node refuses to start rather than lose a committed entry.
//
// ## Writing: one writer thread, group commit (thesis §10.2.1)
//
// submit() only queues; the writer (writer.h) commits everything queued so far in ONE LMDB
// transaction, so under load many batches share one commit. Within a batch the order is:
// truncate_from, append entries, compaction, hard state (log_shape.h). A commit costs one
// fdatasync; its batches are reported durable after the NEXT sync (the next commit's, or an
// explicit one as soon as nothing else is queued), so under load each commit's single sync
// also completes the commit before it, and a lone write costs two syncs as it always did.
// The data file is kept pre-sized with written zeros (lmdb_env.h), so that sync does not
// also have to journal a change of the file's size.
// Each batch's callback runs on the writer thread, in submission order, with what that
// batch made durable: the log's last (index, term) and the hard state. The node posts that
// to its io_context (on_persisted). A leader may send AppendEntries before its own write is
// durable; it counts itself towards a quorum only up to the persisted index (§10.2.1).
//
// Failures (lmdb_env.h, writer.h): a full map is doubled up to max_map_bytes and the commit
// retried. Beyond that, on ENOSPC, EIO or any other failure, the transaction is aborted and
// the store becomes *failed* for good: every callback of that transaction and every later
// submit reports the error (e.g. "disk full: ..."), health() returns it for the status page
// and the node stops acknowledging writes. Reads (read_entries, the in-memory kv) keep
// working. A batch that breaks the log invariant (a hole, overwriting without truncate_from,
// a truncation below the snapshot) is a caller bug and fails the store the same way.
//
// `fsync = false` opens the env with MDB_NOSYNC and skips snapshot fsyncs: commits are then
// NOT durable across a power loss or kernel crash (they still survive a process kill, as the
// data is in the page cache). A loud warning is logged at open. Benchmarks only.
//
// ## What a crash at each step leaves behind
//
//   - A commit N (lmdb_env.h, writer.h): LMDB writes N's pages, fdatasyncs, then writes
//     N's meta page without syncing it (MDB_NOMETASYNC). N's callbacks run only after the
//     next fdatasync of the data file has returned: the one inside commit N+1 (when the
//     queue was not empty), an explicit one (when it was), or a pre-size's. So:
//       * crash before N's fdatasync returns: the disk's newest valid meta is N-1's (or
//         N-2's, if N-1's meta was still unsynced: N-1 was not reported either). LMDB only
//         reuses pages freed before the previous commit, so N wrote none of the pages those
//         states use: they are intact. Nothing of N was reported.
//       * crash between N's fdatasync and the covering sync: N's meta may or may not have
//         reached the disk; N or N-1 reopens, both whole (LMDB documents NOMETASYNC as
//         keeping atomicity and consistency, not durability of the last commit). N's
//         callbacks have not run, so nobody was told N is durable.
//       * crash after the covering sync: N's pages and meta are on disk, and so is every
//         batch whose callback ran. (A meta page write torn by power loss is the risk LMDB
//         runs without the flag too: its O_DSYNC meta write can tear the same way.)
//       * a commit or sync that fails: the held callbacks get the error rather than
//         "persisted" (they may be durable after all; reporting less than is durable is
//         safe) and the store fails.
//     A process kill (no power loss) loses nothing the kernel accepted: the page cache
//     survives, and a batch is reported only later still.
//   - Snapshot files (snapshot_files.h): tmp file, fsync, rename, directory fsync; a torn
//     tmp-* file is removed at the next open. A file whose checksum fails later (bit rot) is
//     ignored in favour of the previous one when the log still reaches back to it, otherwise
//     load() fails.
//   - Compaction: the node writes the snapshot file first, then submits a batch with
//     `compaction`; it records the snapshot metadata and deletes the covered log prefix in
//     one transaction. Only after that commit are older snapshot files deleted. A crash
//     between the file and the commit leaves a snapshot newer than the "snapshot" record:
//     load() uses the newer file and, in one transaction, records it and drops the covered
//     prefix (and, if the log disagrees with the snapshot's term at its index, the whole
//     conflicting suffix too, as InstallSnapshot would: paper §7).
//   - Truncation (a follower replacing a conflicting suffix, §5.3) and the appends that
//     follow are one batch, so one transaction: never a state with the suffix half-replaced.
//
// ## Threads
//
// submit, read_entries, health, stats, latest_snapshot and write_snapshot may be called from
// any thread. load() is meant to be called once after open and before any submit. Callbacks
// run on the writer thread: keep them short (post to the io_context), and never call close()
// or wait for another batch from one (the writer would wait for itself). Submits after a
// failure still run their callback on the writer thread; submits after close() run it at
// once on the caller's thread with error `closed`.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "raft/storage/snapshot_files.h"
#include "raft/storage/types.h"
#include "raft/types.h"

namespace raft::storage {

struct options {
  std::filesystem::path data_dir;                 // created if missing
  bool fsync = true;                              // false: benchmarks only (logged loudly at open)
  std::uint64_t initial_map_bytes = 64ull << 20;  // first LMDB map size
  std::uint64_t max_map_bytes = 16ull << 30;      // the map doubles up to this, then disk_full
  // Where the store's own lines go (open, warnings, failures, snapshot cleanup). Default:
  // stderr. Called from the thread doing the work (caller or writer).
  std::function<void(log_level, std::string_view)> log;
  // Called on the writer thread after every commit attempt that succeeded: how long
  // mdb_txn_commit (page writes + one fdatasync) took, how many batches and entries it
  // carried. For the fsync latency histogram in /metrics; keep it cheap.
  std::function<void(std::chrono::nanoseconds, std::size_t batches, std::size_t entries)> on_commit;
};

struct loaded_state {
  hard_state hard;
  std::optional<snapshot_info> snapshot;  // latest valid snapshot file, if any
  std::string snapshot_data;              // its state-machine bytes (checksum verified)
  std::vector<entry> entries;             // the log after the snapshot, contiguous, verified
  index_t last_index;                     // last entry (or snapshot index, or 0)
  term_t last_term;
  std::chrono::nanoseconds took{};  // time load() spent reading and verifying
};

struct store_stats {
  std::uint64_t commits = 0;          // write transactions committed
  std::uint64_t syncs = 0;            // fdatasyncs of the data file (writer.h: ~1 per commit)
  std::uint64_t batches = 0;          // batches carried by them
  std::uint64_t entries = 0;          // entries appended
  std::uint64_t bytes = 0;            // entry payload bytes appended
  std::uint64_t commit_ns_total = 0;  // time spent in mdb_txn_commit
  std::uint64_t map_grows = 0;        // times the map was enlarged
  std::uint64_t map_bytes = 0;        // current map size
};

struct open_result;

class lmdb_store {
 public:
  // Creates data_dir if missing, takes the LOCK, opens (or initialises) the env, checks the
  // format version, removes torn tmp-* snapshot files, starts the writer thread.
  static open_result open(options opts);

  ~lmdb_store();  // close()
  lmdb_store(const lmdb_store&) = delete;
  lmdb_store& operator=(const lmdb_store&) = delete;

  // Hard state, the latest valid snapshot (bytes included) and every log entry after it,
  // all checksum-verified. A corrupt or missing record is an error naming it. If a snapshot
  // file is newer than the recorded one (crash between write_snapshot and the compaction
  // commit), the compaction is completed here, through the writer.
  result<loaded_state> load();

  // Queues b; cb runs after its transaction committed (or failed). See the header essay.
  void submit(batch b, submit_callback cb);

  // Entries [first, last] (inclusive), checksum-verified; an error if any is missing or
  // corrupt. Any thread; works after a write failure.
  result<std::vector<entry>> read_entries(index_t first, index_t last) const;

  // Writes snapshot-<index>-<term>.snap atomically (tmp file, fsync, rename, dir fsync) on
  // the CALLER's thread; blocking, so call it off the io_context. Older snapshot files are
  // removed later, once a compaction at this index or above has committed.
  error write_snapshot(const snapshot_meta& meta, std::string_view data);
  // The same file written as a stream (e.g. by a forked child that serialises the state):
  // open here, append and finish anywhere, then report it with snapshot_streamed().
  result<std::unique_ptr<snapshot_stream>> open_snapshot_stream(const snapshot_meta& meta);
  // A file from open_snapshot_stream() is finished and durable: record it as write_snapshot
  // does (latest_snapshot()). data_bytes: the size of its state-machine bytes.
  void snapshot_streamed(snapshot_info info);
  // The newest snapshot known durable and valid (from load() or write_snapshot()).
  std::optional<snapshot_info> latest_snapshot() const;
  // Reads and verifies a snapshot file's state-machine bytes (e.g. to send InstallSnapshot).
  result<std::string> read_snapshot(const snapshot_info& info) const;

  // ok, or why writes are refused ("disk full: ...", "I/O error: ...").
  error health() const;
  store_stats stats() const;
  const std::filesystem::path& data_dir() const { return opts_.data_dir; }

  // Drains the queue (every queued batch is committed or failed and its callback run), joins
  // the writer thread, closes the env and releases the LOCK. Idempotent.
  void close();

 private:
  struct impl;
  explicit lmdb_store(options opts);

  void log(log_level level, std::string_view text) const;

  options opts_;
  std::unique_ptr<impl> impl_;
};

struct open_result {
  std::unique_ptr<lmdb_store> store;  // null on error
  error err;
};

// Recovery helper for the node (issue: report how long, how many entries, progress): calls
// apply(e) for every entry of state.entries in order, logs a progress line every
// progress_every while it runs and a summary at the end. Returns the number replayed.
std::uint64_t replay(const loaded_state& state, const std::function<void(const entry&)>& apply,
                     const std::function<void(log_level, std::string_view)>& log,
                     std::chrono::milliseconds progress_every = std::chrono::seconds(3));

}  // namespace raft::storage
