// kv::store as the Raft state machine (raft/interfaces.h): entries carry kv commands, results
// go back encoded, and the leader stamps its clock into every command it proposes (SPEC §2:
// every replica then judges expiry with the same "now" when it applies the entry).
//
// ## Snapshots without stopping the world
//
// Serialising the store takes about a second per 100 MB; done on the event loop it stalls
// every request for that long. With `fork_snapshots`, start_snapshot() fork()s instead (as
// Redis' BGSAVE does): the child's memory is a copy-on-write image of the store at exactly
// applied_index(), so the parent returns at once and keeps applying while the child
// streams kv::store::snapshot_to() into the snapshot file's temporary name
// (raft::snapshot_writer) and _exit()s. The bytes are those snapshot() would give at that
// index, so replicas stay byte-identical. The parent's cost is the fork itself (copying
// page tables: a few ms per GB) plus the pages the parent writes while the child runs
// (each copied once: a fault and a 4 KiB copy, costly on a paravirtualised guest; in a
// bulk load nearly every insert writes a link into an older item's page). So the child
// does not sync: it exits once its bytes are in the page cache, and the parent's waiter
// thread makes the file durable (fsync, rename, directory fsync) after it. On an otherwise
// idle machine a 140 MB snapshot takes about 150 ms to write and 85 ms to sync; under a
// bulk load the sync waits behind the journals' and takes longer, all of it time in which
// the parent would otherwise still be copying pages.
//
// Threads and fork: only the calling thread exists in the child, and any lock another
// thread held at the fork stays held there. The child therefore does nothing but read the
// store, allocate (glibc's malloc and TCMalloc both take their locks around fork through
// pthread_atfork) and make plain file calls; no logging, no Asio, no LMDB. It reports an
// error line through a pipe and its exit status. A thread of the parent waits for it,
// makes the file durable and records it with the log store (adopt()), returns freed memory
// to the kernel
// (base::release_free_memory) and runs the completion. If fork fails (e.g. no memory for
// the page tables) the snapshot is taken the old way, on the caller.
//
// The child runs at the lowest CPU priority (nice 19): it has seconds to finish, the event
// loop a few milliseconds per request, and on a small machine (or with every member of a
// cluster on one, each snapshotting at the same index) the children otherwise take the
// cores the event loops need. In a 1M-item bulk load (bench/scale_bench.sh) that took the
// leader's get p99 from 11.4-12.3 ms to 7.7-7.9 ms. The price: when other work keeps every
// core busy, the child waits for it (a 1M-item snapshot took 8.6 s instead of 1-2 s during
// a build), and the log grows until it is done.
//
// The child dies with the node (PR_SET_PDEATHSIG, which follows the forking thread: the
// event loop's, which lives as long as the process). It shares the node's lock on the
// data dir, so a child left running by a killed node would keep a restarted node out of its
// data dir until it finished; its unfinished tmp file is removed by the next start
// (raft/storage/snapshot_files.h). The next start waits briefly for a child that is still
// exiting (raft/storage/lmdb_store.cc, take_lock).
//
// ## Restoring a received snapshot off the event loop
//
// Rebuilding a store from a snapshot takes about half a second per 100 MB. With a `post`
// function, start_restore() builds the new kv::store on a thread of its own from the bytes
// (which the replica keeps unchanged until done) and swaps it in on the event loop (a few
// pointer moves) when it is complete.
//
// The old state is dropped when the restore starts, not when it ends, so that the node's
// peak memory is one state and not two (a follower that catches up holds nearly as much as
// the leader already): store_ becomes an empty store at the old applied index, and a thread
// frees the old items while the new ones are built. Nothing needs the old state meanwhile:
// the replica applies nothing until the restore is done, and every read waits for an index
// past the snapshot's (raft/replica.h), so no client can see the empty stand-in; only the
// counters (status, stats) read zero items for those seconds. A snapshot that does not
// restore leaves the stand-in, and the replica stops for good (a storage failure). Only
// the restoring thread touches the new store until the swap; only the event loop touches
// store_.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "kv/store.h"
#include "raft/interfaces.h"

namespace app {

class kv_state_machine final : public raft::state_machine {
 public:
  using post_function = std::function<void(std::function<void()>)>;
  // fork_snapshots: take snapshots in a forked child (production); else on the caller.
  // post: runs a function on the event loop; with it, received snapshots are restored on a
  // thread (see the essay); without it, at once on the caller.
  explicit kv_state_machine(kv::store& store, bool fork_snapshots = false, post_function post = {})
      : store_(store), fork_snapshots_(fork_snapshots), post_(std::move(post)) {}
  // Waits for a snapshot child still running (its completion runs).
  ~kv_state_machine() override;
  kv_state_machine(const kv_state_machine&) = delete;
  kv_state_machine& operator=(const kv_state_machine&) = delete;

  // Normal entries: decode and apply (an undecodable one is skipped with a warning);
  // noops: skipped. Returns kv::encode(result), or empty when nothing was applied.
  std::string apply(const raft::entry& e) override;
  // Warms the store's tree paths for the entries' keys (kv::store::prefetch).
  void prefetch(std::span<const raft::entry> entries) const override;
  raft::index_t applied_index() const override { return raft::index_t(store_.applied_index()); }
  std::string snapshot() const override { return store_.snapshot(); }
  bool restore(std::string_view bytes) override;
  void start_restore(std::string_view bytes, std::shared_ptr<const void> owner,
                     std::function<void(bool ok)> done) override;
  std::uint64_t state_bytes() const override { return store_.stats().bytes; }
  void start_snapshot(const raft::snapshot_meta& meta, raft::log_store& logs,
                      raft::snapshot_completion done) override;
  // Waits until no snapshot child runs (tests, shutdown).
  void wait_for_snapshot();
  // Duration of the last fork() call in microseconds (0 before the first).
  std::uint64_t last_fork_us() const { return last_fork_us_.load(); }
  // Decodes, stamps it, re-encodes; nullopt when it does not decode. The stamp is now_ms but
  // never earlier than any stamp applied or proposed here before (docs/semantics.md: stamps
  // never go back, also across leader changes, whatever the new leader's clock says).
  std::optional<raft::payload> prepare_proposal(std::string_view command,
                                                std::int64_t now_ms) override;

  // The latest leader stamp applied (0 before the first since start-up): a linearizable read
  // judges expiry by the later of this and the leader's time of its ReadIndex answer.
  std::int64_t last_applied_stamp_ms() const { return last_applied_stamp_ms_; }

 private:
  kv::store& store_;
  bool fork_snapshots_ = false;
  std::thread waiter_;  // waits for the snapshot child
  post_function post_;
  std::thread restorer_;  // builds the store of a received snapshot
  std::thread reaper_;    // frees the state a restore replaced
  // Expires with this object: a restore that finishes after it must not touch it.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::atomic<std::uint64_t> last_fork_us_{0};
  std::int64_t last_applied_stamp_ms_ = 0;
  std::int64_t last_proposed_stamp_ms_ = 0;
  std::string proposal_buffer_;  // prepare_proposal's encoding, reused
};

}  // namespace app
