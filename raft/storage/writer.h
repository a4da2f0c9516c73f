// The writer thread of a store: group commit (thesis §10.2.1) over an lmdb_env.
//
// submit() only queues. The writer thread takes every batch queued so far, applies them in
// order inside ONE transaction and commits it (lmdb_env::commit); under load many batches
// share one commit, a lone batch still costs exactly one. The writer never waits to collect
// more: a lone write is not delayed. After the commit each batch's callback runs on the
// writer thread, in submission order, with what that batch made durable.
//
// ## One sync per commit: a batch is reported after the NEXT sync
//
// The env runs LMDB with MDB_NOMETASYNC (lmdb_env.h). A commit then costs one fdatasync:
//
//   commit N:  write N's pages | fdatasync | write N's meta page (not synced)
//
// and N is durable only once something syncs the data file again. The writer holds N's
// callbacks until then, which is one of:
//   - commit N+1, if it changed anything: its fdatasync runs after N's meta write, so when
//     mdb_txn_commit(N+1) returns, N's meta is on disk. Under load this is the common case:
//     each commit's one sync finishes the previous commit, so a commit costs one sync
//     instead of two (data, then meta through LMDB's O_DSYNC descriptor);
//   - an explicit sync (lmdb_env::sync) as soon as the queue is empty: a lone write is not
//     delayed, it costs the same two syncs as before;
//   - the fdatasync of a pre-size (lmdb_env::presize) before commit N+1.
// A commit that changed nothing (only barriers) syncs nothing: its callbacks join the held
// ones, or run at once when nothing is held.
//
// What a crash or power loss at each of these points leaves, and why every report stays
// true, is argued at the top of lmdb_store.h; test/storage_power_test.cc checks it.
//
// A failed commit makes the writer *failed* for good: every callback of that commit and of
// every later batch gets the error, and failure() returns it. It is never cleared: after a
// failed write or fsync the kernel may already have dropped the dirty pages, so a retry
// could report durable what is not; a restart reopens from what LMDB last committed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "raft/storage/lmdb_env.h"
#include "raft/storage/log_shape.h"
#include "raft/storage/types.h"

namespace raft::storage {

struct writer_hooks {
  std::function<void(log_level, std::string_view)> log;  // never empty
  // After every successful commit: time inside the commit, batches, entries (may be empty).
  std::function<void(std::chrono::nanoseconds, std::size_t, std::size_t)> on_commit;
  // Once a commit that raised the snapshot index is durable, before any of its callbacks
  // run (so a caller told "compacted" never still sees older snapshot files).
  std::function<void(index_t snapshot_index)> on_compacted;
};

struct writer_stats {
  std::uint64_t commits = 0;
  std::uint64_t syncs = 0;  // fdatasyncs: commits that changed something, explicit syncs, pre-sizes
  std::uint64_t batches = 0;
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
  std::uint64_t commit_ns = 0;
};

class writer {
 public:
  // `committed` is what the env holds now; the thread starts at once.
  writer(lmdb_env& env, log_shape committed, writer_hooks hooks);
  ~writer();  // stop()
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  // Queues b. After stop() began, runs cb at once on this thread with error `closed`.
  void submit(batch b, submit_callback cb);

  // Every queued batch is committed (or failed) and its callback run; joins the thread.
  void stop();

  error failure() const;
  writer_stats stats() const;

 private:
  void run();
  void finish(std::vector<batch>& batches, std::vector<submit_callback>& callbacks);
  // Runs the held callbacks (their commits are durable now).
  void release_held();
  // Gives every held callback (and `more`) the error and fails the writer.
  void fail(const error& err, std::vector<submit_callback>& more);

  lmdb_env& env_;
  log_shape committed_;  // writer thread only
  writer_hooks hooks_;

  // Committed but not yet known durable (writer thread only), in submission order.
  std::vector<submit_callback> held_callbacks_;
  std::vector<persisted> held_after_;
  index_t held_compaction_;  // highest snapshot index among them (0: none)

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::vector<batch> queued_;
  std::vector<submit_callback> queued_callbacks_;
  bool stopping_ = false;

  mutable std::mutex failure_mutex_;
  error failure_;  // set once, never cleared

  std::atomic<std::uint64_t> commits_{0}, syncs_{0}, batches_{0}, entries_{0}, bytes_{0},
      commit_ns_{0};
  std::thread thread_;
};

}  // namespace raft::storage
