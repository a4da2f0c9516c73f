// Durable Raft storage: a journal in front of the log, the hard state and snapshot metadata
// in LMDB, snapshot files beside it; one journal writer thread with group commit and one
// checkpointer thread that carries the journal into LMDB.
//
// ## What the node gets (Raft paper Figure 2, "persistent state on all servers")
//
//   auto opened = lmdb_store::open({.data_dir = "var/node1"});   // lock, env, journal replay
//   if (!opened.store) die(opened.err.message);
//   auto loaded = opened.store->load();       // hard state, latest valid snapshot, log after it
//   replay(loaded.value, apply_fn, log_fn);   // optional helper: rebuild kv with progress lines
//   store->submit(std::move(batch), callback); // from any thread; applied in submission order
//   store->write_snapshot(meta, bytes);       // on the caller's thread (blocking file I/O)
//   store->close();                           // drain, checkpoint, join, close the env
//
// ## Where each part lives
//
//   types.h           the words: batch, persisted, error, result; the store's contract
//   log_shape.h       pure rules: what a batch may contain, how last index/term, snapshot
//                     and hard state advance (unit-tested without LMDB)
//   records.h         the on-disk records and their codecs (CRC-32C framing, entries, hard
//                     state, snapshot record, format record, log keys)
//   journal.h         the journal: record format, the two files, the recovery scan
//   snapshot_files.h  snapshot files: atomic write, verify, newest valid, cleanup
//   lmdb_env.h        the LMDB environment: open, reads, one commit, map growth, errors
//   writer.h          the two threads: group commit into the journal (one sync per
//                     durable group), checkpoints into LMDB, the in-memory tail, failure
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
//   journal-0, journal-1  the journal (journal.h): the newest batches, which LMDB receives
//                         a few tens of milliseconds later. 8 MiB of written zeros each.
//   snapshots/            snapshot files (snapshot_files.h).
//
// Invariant between transactions: the log holds exactly the indexes snap+1 .. last with no
// hole, where snap is the "snapshot" record's index (0 when there is none); terms never
// decrease along the log. Every read verifies checksums; a corrupt or missing record makes
// load() fail naming it, so the node refuses to start rather than lose a committed entry.
//
// ## Writing: group commit into the journal, checkpoints into LMDB (writer.h)
//
// submit() only queues. The journal thread writes everything queued so far as ONE journal
// record and fdatasyncs it: one sequential write into blocks that exist, the cheapest
// durable write the disk has. Then each batch's callback runs, on that thread, in
// submission order, with what the batch made durable: the log's last (index, term) and the
// hard state. Under load many batches share one record; a lone batch costs one sync. The
// node posts the result to its io_context (on_persisted). A leader may send AppendEntries
// before its own write is durable; it counts itself towards a quorum only up to the
// persisted index (§10.2.1).
//
// The checkpointer thread commits the journaled batches to LMDB in one transaction every
// checkpoint_interval (50 ms) or sooner, then syncs LMDB; the transaction records the last
// journal seq it includes. Until then the entries are served from an in-memory tail, so a
// read (read_entries) sees exactly what was journaled. The journal reuses a file only
// once LMDB durably holds every record in it.
//
// Failures (lmdb_env.h, writer.h): a full map is doubled up to max_map_bytes and the commit
// retried. Beyond that, on ENOSPC, EIO or any other failure of a journal write, a sync or a
// checkpoint, the store becomes *failed* for good: the batches of a failed journal record
// and every later submit report the error (e.g. "disk full: ..."; a failed checkpoint fails
// nothing already reported, the journal holds it), health() returns it for the status page
// and the node stops acknowledging writes. Reads (read_entries, the in-memory kv) keep
// working. A batch that breaks the log invariant (a hole, overwriting without truncate_from,
// a truncation below the snapshot) is a caller bug and fails the store the same way.
//
// `fsync = false` opens the env with MDB_NOSYNC and skips journal and snapshot fsyncs:
// writes are then NOT durable across a power loss or kernel crash (they still survive a process kill, as the
// data is in the page cache). A loud warning is logged at open. Benchmarks only.
//
// ## What a crash at each step leaves behind
//
//   - A journal record (journal.h): a batch's callback runs only after the fdatasync that
//     follows its record's write. A crash before that may leave the record torn or absent;
//     nothing in it was reported. A crash after it leaves the record on disk, and open()
//     replays every record beyond LMDB's journal seq into LMDB (one transaction, synced)
//     before load() reads anything. A valid record beyond a missing one is `corrupt`: the
//     node refuses to start rather than run without writes it acknowledged.
//   - A checkpoint (writer.h, lmdb_env.h): LMDB commits with MDB_NOMETASYNC (pages synced,
//     then the meta page written) and is then synced again, so the transaction is durable
//     as a whole before the journal may reuse the file holding its records. A crash before
//     that leaves LMDB at an earlier checkpoint (LMDB keeps the last two commits' pages
//     intact) and the journal still holds every record after it.
//   - A commit or sync that fails, in either thread: the store fails; reporting nothing more
//     is safe, and whatever was reported is in the journal.
//   A process kill (no power loss) loses nothing the kernel accepted: the page cache
//   survives, and a batch is reported only after its sync anyway.
//   - Snapshot files (snapshot_files.h): tmp file, fsync, rename, directory fsync; a torn
//     tmp-* file is removed at the next open. A file whose checksum fails later (bit rot) is
//     ignored in favour of the previous one when the log still reaches back to it, otherwise
//     load() fails.
//   - Compaction: the node writes the snapshot file first, then submits a batch with
//     `compaction`; it records the snapshot metadata and deletes the covered log prefix in
//     one transaction. Only after its journal record is durable are older snapshot files
//     deleted (after a crash, open() replays that record before load() looks for files). A crash
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
// run on the journal thread: keep them short (post to the io_context), and never call close()
// or wait for another batch from one (the writer would wait for itself). Submits after a
// failure still run their callback on the journal thread; submits after close() run it at
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
  std::uint64_t journal_file_bytes = 8ull << 20;  // each of the two journal files (journal.h)
  // How long journaled batches gather before the checkpointer commits them to LMDB.
  std::chrono::milliseconds checkpoint_interval{50};
  // Where the store's own lines go (open, warnings, failures, snapshot cleanup). Default:
  // stderr. Called from the thread doing the work (caller or writer).
  std::function<void(log_level, std::string_view)> log;
  // Called on the journal thread after every journal record made durable: how long its
  // write + fdatasync took, how many batches and entries it carried. For the fsync latency
  // histogram in /metrics; keep it cheap.
  std::function<void(std::chrono::nanoseconds, std::size_t batches, std::size_t entries)> on_commit;
};

struct loaded_state {
  hard_state hard;
  std::optional<snapshot_info> snapshot;  // latest valid snapshot file, if any
  snapshot_payload snapshot_data;         // its state-machine bytes (mapped, checksum verified)
  std::vector<entry> entries;             // the log after the snapshot, contiguous, verified
  index_t last_index;                     // last entry (or snapshot index, or 0)
  term_t last_term;
  std::chrono::nanoseconds took{};  // time load() spent reading and verifying
};

struct store_stats {
  std::uint64_t commits = 0;          // journal records written (durable groups)
  std::uint64_t syncs = 0;            // fdatasyncs: journal records, checkpoints, pre-sizes
  std::uint64_t batches = 0;          // batches carried by them
  std::uint64_t entries = 0;          // entries appended
  std::uint64_t bytes = 0;            // entry payload bytes appended
  std::uint64_t commit_ns_total = 0;  // time spent writing and syncing journal records
  std::uint64_t checkpoints = 0;      // LMDB transactions that caught up with the journal
  std::uint64_t checkpoint_ns_total = 0;
  std::uint64_t journal_switches = 0;
  std::uint64_t map_grows = 0;        // times the map was enlarged
  std::uint64_t map_bytes = 0;        // current map size
};

struct open_result;

class lmdb_store {
 public:
  // Creates data_dir if missing, takes the LOCK, opens (or initialises) the env, checks the
  // format version, removes torn tmp-* snapshot files, replays the journal into LMDB,
  // starts the threads.
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
  // both threads (LMDB then holds every journaled batch), closes the env and releases the
  // LOCK. Idempotent.
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
