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
// ## Files under data_dir
//
//   LOCK                  flock(LOCK_EX) held while open; contains the owner's pid. A second
//                         process (or a second open in this process) fails with
//                         "data dir D is locked by another process (pid N)".
//   data.mdb, lock.mdb    the LMDB environment (lock.mdb is LMDB's reader table, not ours).
//   snapshots/snapshot-<index:20>-<term:20>.snap   complete, fsynced snapshot files
//   snapshots/tmp-*       a snapshot being written; never read, removed at open.
//
// ## LMDB layout (three named databases, every value starts with a CRC-32C of the rest)
//
//   "meta"  "format"     -> crc32c u32 | version u32 (= 1)
//           "hard_state" -> crc32c u32 | term u64 | vote u64 | commit u64
//           "snapshot"   -> crc32c u32 | index u64 | term u64 | n u32 | n x voter u64
//                           (the log prefix up to index has been dropped: the state machine
//                           must come from a snapshot file with at least this index)
//   "log"   key = index as 8 big-endian bytes (memcmp order = numeric order)
//           value = crc32c u32 | type u8 | 0 u8 x3 | term u64 | index u64 | data
//   Integers are little-endian. The CRC covers everything after it; an entry repeats its
//   index inside the checksummed value so a record under the wrong key is caught too.
//   Invariant between transactions: the log holds exactly the indexes snap+1 .. last with
//   no hole, where snap is the "snapshot" index (0 when there is none); terms never
//   decrease along the log.
//
// Every read verifies the checksum. A mismatch is an error naming the record ("checksum
// mismatch in log entry 42"): load() fails, so the node refuses to start rather than
// truncating a committed entry away and possibly leading without it (§5.4.1 relies on every
// committed entry being present on whoever becomes leader).
//
// ## Writing: one writer thread, group commit (thesis §10.2.1)
//
// submit() only queues. The writer thread owns every LMDB write transaction: it takes every
// batch queued so far, applies them in order inside ONE transaction and commits it; the
// commit is the fsync. Under load many batches (and entries) share one fsync; a lone write
// still costs exactly one. Within a batch the order is: truncate_from, append entries,
// compaction, hard state. After the commit each batch's callback runs on the writer thread,
// in submission order, with what that batch made durable: the log's last (index, term) and
// the hard state. The node posts that to its io_context (on_persisted). A leader may send
// AppendEntries before its own write is durable; it counts itself towards a quorum only up
// to the persisted index (§10.2.1).
//
// If the map is full (MDB_MAP_FULL) the transaction is aborted, the map doubled (up to
// max_map_bytes) and the whole transaction retried. Beyond max_map_bytes, on ENOSPC, EIO or
// any other failure, the transaction is aborted (LMDB leaves the last committed state intact)
// and the store becomes *failed*: every callback of that transaction and every later submit
// reports the error (e.g. "disk full: ..."), health() returns it for the status page and the
// node stops acknowledging writes. Reads (read_entries, the in-memory kv) keep working.
// The failure is permanent for this process even if the cause goes away: after a failed
// write or fsync the kernel may already have dropped the dirty pages, so a retry could
// report durable what is not; a restart reopens from what LMDB last committed. (LMDB reports
// a short page write as EIO; on a filesystem with almost no space left that is classified
// as disk_full.)
// A batch that breaks the log invariant (a hole, overwriting without truncate_from, a
// truncation below the snapshot) is a caller bug and fails the store the same way.
//
// `fsync = false` opens the env with MDB_NOSYNC and skips snapshot fsyncs: commits are then
// NOT durable across a power loss or kernel crash (they still survive a process kill, as the
// data is in the page cache). A loud warning is logged at open. Benchmarks only.
//
// ## What a crash at each step leaves behind
//
//   - Before mdb_txn_commit returns: LMDB writes the new pages, fsyncs, then writes and
//     fsyncs the meta page. A crash anywhere before the meta page is durable leaves the
//     previous commit; no callback of that transaction ran, so nothing was reported
//     persisted. A crash after leaves the new commit (its callbacks may or may not have run;
//     reporting less than is durable is safe).
//   - Snapshot files: written to tmp-*, fsynced, renamed, directory fsynced. A crash before
//     the rename leaves a tmp-* file that is removed at the next open; after the rename the
//     file is complete. A file whose checksum fails later (bit rot) is ignored in favour of
//     the previous one when the log still reaches back to it, otherwise load() fails.
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

std::string_view to_string(errc e);

// An error as a value: a code for the program and one line of text for a human.
struct error {
  errc code = errc::ok;
  std::string message;

  bool ok() const { return code == errc::ok; }
  explicit operator bool() const { return !ok(); }  // true when there IS an error
};

// Either a value or an error (std::expected arrives with C++23).
template <typename T>
struct result {
  T value{};
  error err;
  bool ok() const { return err.ok(); }
};

enum class log_level : std::uint8_t { info, warning, error };

struct options {
  std::filesystem::path data_dir;                 // created if missing
  bool fsync = true;                              // false: benchmarks only (logged loudly at open)
  std::uint64_t initial_map_bytes = 64ull << 20;  // first LMDB map size
  std::uint64_t max_map_bytes = 16ull << 30;      // the map doubles up to this, then disk_full
  // Where the store's own lines go (open, warnings, failures, snapshot cleanup). Default:
  // stderr. Called from the thread doing the work (caller or writer).
  std::function<void(log_level, std::string_view)> log;
  // Called on the writer thread after every commit attempt that succeeded: how long
  // mdb_txn_commit (write + fsync) took, how many batches and entries it carried. For the
  // fsync latency histogram in /metrics; keep it cheap.
  std::function<void(std::chrono::nanoseconds, std::size_t batches, std::size_t entries)> on_commit;
};

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
};

// What a batch made durable (the state right after it, within its transaction).
struct persisted {
  index_t last_index;  // last entry in the log (the snapshot index when the log is empty)
  term_t last_term;    // its term
  hard_state hard;     // the hard state on disk
};

// Runs on the writer thread (or on the caller's after close()).
using submit_callback = std::function<void(const result<persisted>&)>;

struct snapshot_info {
  snapshot_meta meta;
  std::filesystem::path path;
  std::uint64_t data_bytes = 0;  // size of the state-machine bytes inside the file
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
  std::uint64_t commits = 0;          // write transactions committed (= fsyncs when fsync)
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

  void writer_main();
  void log(log_level level, std::string_view text) const;

  options opts_;
  std::unique_ptr<impl> impl_;
  std::thread writer_;
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
