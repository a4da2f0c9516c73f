// The two threads of a store: the journal writer (group commit, thesis §10.2.1) and the
// checkpointer that carries journaled batches into LMDB.
//
// ## The journal writer: one sync per durable group
//
// submit() only queues. The journal thread takes every batch queued so far, checks them
// against the log's shape (log_shape.h), writes them as ONE journal record (journal.h) and
// fdatasyncs it; then each batch's callback runs, in submission order, with what that batch
// made durable. Under load many batches share one record; a lone batch costs exactly one
// write and one sync. The thread never waits to collect more: a lone write is not delayed.
// A cycle whose batches change nothing (barriers only) writes nothing: everything before
// it is already durable, so its callbacks run at once.
//
// ## The checkpointer: LMDB a few tens of milliseconds behind
//
// Journaled batches are handed to the checkpointer thread, which commits everything handed
// over so far in one LMDB transaction (with the last journal seq it includes, journal.h)
// and then syncs the data file, so that state is durable as a whole. It waits for
// checkpoint_interval after the first batch arrives, or less when enough bytes are waiting
// or the journal needs its other file back; so LMDB sees a few large transactions a second
// instead of one per group. Only after that sync may the journal reuse the file holding
// those records. (Older snapshot files go as soon as the compaction's journal record is
// durable: recovery replays it into LMDB before anything reads the snapshot record.)
//
// ## The tail: entries not yet in LMDB
//
// Until the checkpointer has committed them, journaled entries live in the tail, an
// in-memory copy of the log from tail_first on. Readers (read_entries, the term lookups of
// log_shape) take an index >= tail_first from the tail and one below it from LMDB. This is
// consistent because of how tail_first moves:
//   - a truncation at t <= tail_first empties the tail and sets tail_first = t: LMDB may
//     still hold entries >= t (they are stale) but they are never read from there again;
//   - a compaction at m drops entries <= m, tail_first >= m + 1;
//   - after a checkpoint through seq s the tail drops, from its front, the entries written
//     by records <= s: those are in LMDB now, exactly as the tail had them (a later
//     truncation or compaction would already have removed them from the tail).
// So an index below tail_first is either in LMDB as the log has it, or compacted away; and
// LMDB below tail_first does not change while the tail's mutex is held, because every
// record that could change it is journaled (and tail_first lowered) under that mutex first.
//
// ## Scheduling
//
// Both threads run under SCHED_BATCH: the same share of the CPU as any other thread, but a
// wake-up of theirs does not preempt whatever is running. On a machine whose cores are busy
// (a bulk load: three nodes on two cores) the event loop, which a client's request waits
// for, then gets a core sooner. The journal's own latency is unchanged where a core is idle
// (a lone write); where none is, its wake-up may wait for the running thread's time slice
// to end instead of cutting it short.
// Measured in bench/README-scale.md ("The storage threads as batch work" and the section
// before it): the probe's get p99 during a 1M-item load was lower in 13 of 15 alternating
// pairs of runs (by 0.2-3.3 ms; 0.1 and 1.1 ms higher in the other two); the load rate and
// closed-loop writes moved within their spread.
//
// ## Failure
//
// A failed journal write or sync, or a failed checkpoint, makes the store *failed* for
// good: the callbacks of that cycle and of every later batch get the error, and failure()
// returns it. It is never cleared: after a failed write or fsync the kernel may already
// have dropped the dirty pages, so a retry could report durable what is not; a restart
// recovers from the journal and LMDB. A failed checkpoint loses nothing acknowledged: the
// journal still holds every record after LMDB's durable journal seq, and the journal never
// reuses a file LMDB has not caught up with.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "raft/storage/journal.h"
#include "raft/storage/lmdb_env.h"
#include "raft/storage/log_shape.h"
#include "raft/storage/types.h"

namespace raft::storage {

struct writer_hooks {
  std::function<void(log_level, std::string_view)> log;  // never empty
  // After every journal record made durable: time of its write + fdatasync, batches,
  // entries (may be empty).
  std::function<void(std::chrono::nanoseconds, std::size_t, std::size_t)> on_commit;
  // Once a journal record that raised the snapshot index is durable, before any of its
  // callbacks run (so a caller told "compacted" never still sees older snapshot files).
  std::function<void(index_t snapshot_index)> on_compacted;
};

struct writer_options {
  // How long the checkpointer lets journaled batches gather before it commits them.
  std::chrono::milliseconds checkpoint_interval{50};
  // Commit sooner once this many journal bytes are waiting.
  std::uint64_t checkpoint_bytes = 4u << 20;
};

struct writer_stats {
  std::uint64_t commits = 0;  // journal records written (durable groups)
  std::uint64_t syncs = 0;    // fdatasyncs: journal records, checkpoints, pre-sizes
  std::uint64_t batches = 0;
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
  std::uint64_t commit_ns = 0;  // time in journal write + fdatasync
  std::uint64_t checkpoints = 0;
  std::uint64_t checkpoint_ns = 0;  // time in LMDB commit + sync
  std::uint64_t journal_switches = 0;
};

class writer {
 public:
  // `committed` is what the env holds after recovery, `seq` the last journal seq in it;
  // both threads start at once.
  writer(lmdb_env& env, journal_files& journal, log_shape committed, std::uint64_t seq,
         writer_hooks hooks, writer_options opts = {});
  ~writer();  // stop()
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  // Queues b. After stop() began, runs cb at once on this thread with error `closed`.
  void submit(batch b, submit_callback cb);

  // Every queued batch is journaled (or failed) and its callback run, every journaled
  // batch is in LMDB and synced (unless the store failed); joins both threads.
  void stop();

  // Entries [first, last] as the journaled log has them (tail, then LMDB). Any thread.
  result<std::vector<entry>> read_entries(index_t first, index_t last) const;

  error failure() const;
  writer_stats stats() const;
  // After stop(): no failure, and LMDB holds, durably, every record the journal was given.
  bool drained() const;

 private:
  void run_as_batch_work(std::thread& t, const char* which) const;  // "Scheduling" above

  struct handed {  // a journal record's batches, waiting for the checkpointer
    std::uint64_t seq;
    std::vector<batch> batches;
  };
  struct tail_entry {
    std::uint64_t seq;  // the journal record that wrote it
    entry e;
  };
  class tail_terms;

  void run();
  void journal(std::vector<batch>& batches, std::vector<submit_callback>& callbacks);
  void update_tail(std::uint64_t seq, const std::vector<batch>& batches);
  void checkpoint_run();
  // One LMDB transaction for `work`, then a sync; a failure fails the store.
  void checkpoint(std::vector<handed>& work);
  // Records err as the store's failure (first one wins) and logs it.
  void set_failure(const error& err);
  void fail(const error& err, std::vector<submit_callback>& callbacks);

  lmdb_env& env_;
  journal_files& journal_;
  writer_hooks hooks_;
  writer_options opts_;

  // Journal thread only.
  log_shape committed_;  // the journaled log's shape
  std::uint64_t seq_;    // last journal seq written
  std::string record_;   // encoding buffer
  index_t compacted_;    // highest compaction reported to on_compacted

  // Checkpointer thread only.
  log_shape checkpointed_shape_;

  // LMDB's durable journal seq: the journal may reuse a file whose records are all <= it.
  std::atomic<std::uint64_t> checkpointed_seq_;

  mutable std::mutex tail_mutex_;
  std::deque<tail_entry> tail_;
  index_t tail_first_;
  index_t tail_snap_;  // the journaled snapshot index: entries <= it are gone

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::vector<batch> queued_;
  std::vector<submit_callback> queued_callbacks_;
  bool stopping_ = false;

  std::mutex handed_mutex_;
  std::condition_variable handed_cv_;
  std::vector<handed> handed_;
  std::uint64_t handed_bytes_ = 0;
  std::chrono::steady_clock::time_point handed_since_{};
  bool urgent_ = false;  // the journal wants its other file back
  bool checkpointer_stopping_ = false;

  mutable std::mutex failure_mutex_;
  error failure_;  // set once, never cleared

  std::atomic<std::uint64_t> commits_{0}, syncs_{0}, batches_{0}, entries_{0}, bytes_{0},
      commit_ns_{0}, checkpoints_{0}, checkpoint_ns_{0}, switches_{0};
  std::thread thread_;
  std::thread checkpointer_;
};

}  // namespace raft::storage
