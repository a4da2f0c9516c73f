// raft::storage::lmdb_store as the replica's log store (raft/interfaces.h).
//
// Batches go to the LMDB writer thread unchanged in order; their completions run on that
// thread (the replica posts them to its executor). A snapshot received from the leader is
// assembled in a temp file of the snapshot directory as its chunks arrive
// (open_snapshot_receiver: raft::storage::snapshot_stream, written by a thread of the
// receiver's own, so the event loop only queues each chunk); persist_batch::install then
// finishes that file (header, fsync, rename) on the LMDB writer thread, just before the
// transaction that records it (raft::storage::batch::prepare), so the record follows every
// earlier batch and precedes every later one while the event loop never waits for a
// multi-gigabyte fsync. Local snapshot files (write_snapshot) are written on a thread of
// their own, one at a time, while the node keeps serving. Snapshots sent to followers are
// read from their files in chunks (open_snapshot).
#pragma once

#include <thread>

#include "raft/interfaces.h"
#include "raft/storage/lmdb_store.h"

namespace app {

struct config;

// The store options a node's config gives (data dir, fsync, map bound), with storage's log
// lines going to base/log.h. The caller adds what is its own (e.g. on_commit).
raft::storage::options storage_options(const config& c);

class lmdb_log_store final : public raft::log_store {
 public:
  // stored_snapshot_index: the snapshot recorded in the store as loaded.
  lmdb_log_store(raft::storage::lmdb_store& store, raft::index_t stored_snapshot_index)
      : store_(store), stored_snapshot_index_(stored_snapshot_index) {}
  ~lmdb_log_store() override { close(); }

  void submit(raft::persist_batch b, raft::store_completion done) override;
  void write_snapshot(raft::snapshot_meta meta, std::shared_ptr<const std::string> data,
                      raft::store_completion done) override;
  // The snapshot file of `meta` in the store's snapshot directory, read piecewise
  // (raft/storage/snapshot_stream.h).
  std::unique_ptr<raft::snapshot_source> open_snapshot(const raft::snapshot_meta& meta,
                                                       std::string& error) override;
  // The stored entries [first, last] (raft::storage::lmdb_store::read_entries, checksums
  // verified): a read transaction on the event loop, served from the page cache when the
  // entries are recent. Only appends to a peer that lags behind this node's apply point
  // need it.
  std::string read_entries(raft::index_t first, raft::index_t last,
                           std::vector<raft::entry>& out) override;
  // A snapshot file streamed by the state machine (app/kv_state_machine.h writes it from a
  // forked child): raft::storage::snapshot_stream behind raft::snapshot_writer.
  std::unique_ptr<raft::snapshot_writer> open_snapshot_writer(const raft::snapshot_meta& meta,
                                                              std::string& error) override;
  // A snapshot received from the leader, assembled in a temp file beside the snapshots
  // (raft::snapshot_receiver over raft::storage::snapshot_stream).
  std::unique_ptr<raft::snapshot_receiver> open_snapshot_receiver(const raft::snapshot_meta& meta,
                                                                  std::string& error) override;
  // Waits for the snapshot thread. Idempotent.
  void close();

 private:
  raft::storage::lmdb_store& store_;
  raft::index_t stored_snapshot_index_;  // as submitted
  std::thread snapshot_thread_;
};

}  // namespace app
