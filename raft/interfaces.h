// The three narrow interfaces through which raft::replica (raft/replica.h) drives the world:
// a log store, a peer sender and a state machine. Production implements them over LMDB, the
// peer transport and kv::store (app/); tests over raft/storage/memory_store.h, a simulated
// network and a hash-chain state machine (test/sim/). Nothing here knows about Asio, LMDB or kv.
//
// Threads: the replica calls every method on its own executor. Completions of the log store
// may be invoked on any thread (the LMDB writer thread, a snapshot thread); the replica hands
// them to its executor hook before touching any state.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "raft/core.h"
#include "raft/message.h"
#include "raft/types.h"

namespace raft {

// Why a call on the replica failed; tells the caller what to do next.
enum class replica_error : std::uint8_t {
  none = 0,
  not_leader,   // this node is not (or no longer) the leader; a follower's forward was refused
  no_leader,    // no leader known before the deadline: retry later
  timeout,      // deadline passed: the outcome is unknown (the write may still commit)
  stopped,      // the replica is shutting down
  unavailable,  // storage failed: nothing more is acknowledged by this node
  rejected,     // the state machine refused the command (prepare_proposal returned nullopt)
};

const char* to_string(replica_error e);

// One ordered write. Its parts take effect in this order, atomically (one transaction):
//   1. install:       a snapshot received from the leader: make its file durable (from
//                     install->data, or by finishing install->file), record it as the log's
//                     base and drop the whole stored log. The store does the file work on
//                     its own thread, in order with the batches: seconds for a large one;
//   2. truncate_from: delete stored entries with index >= it (a conflicting suffix, §5.3);
//   3. entries:       append; the first is the stored last index + 1 (after 1 and 2);
//   4. compact:       a local snapshot whose file is already durable (log_store::write_snapshot):
//                     record it as the log's base and delete entries <= its index;
//   5. hs:            term, vote, commit.
// Batches take effect in submission order. An empty batch is an ordering barrier: its
// completion runs once every earlier batch is durable.
struct persist_batch {
  std::optional<received_snapshot> install;
  std::optional<index_t> truncate_from;
  std::vector<entry> entries;
  std::optional<snapshot_meta> compact;
  std::optional<hard_state> hs;

  bool empty() const { return !install && !truncate_from && entries.empty() && !compact && !hs; }
};

// Runs once the work is durable (error empty) or failed for good (error = one line for a
// human). May run on any thread.
using store_completion = std::function<void(std::string error)>;

// One local snapshot file being written as a stream (log_store::open_snapshot_writer). A
// state machine that serialises in a forked child (app/kv_state_machine.h) runs append()
// and complete() in the child; they must therefore do nothing but plain file calls. The
// sync is adopt()'s, in the parent: the child exits as soon as its bytes are written, and
// the copy-on-write sharing of the parent's memory ends with it.
class snapshot_writer {
 public:
  virtual ~snapshot_writer() = default;
  // Appends state-machine bytes; false once a write failed (complete() says why).
  virtual bool append(std::string_view chunk) = 0;
  // Writes what completes the file (not yet durable, still under its temporary name); an
  // error line, or empty.
  virtual std::string complete() = 0;
  // In the process that opened the writer, once complete() succeeded here or in a child
  // that used a copy of it: makes the file durable under its final name and records it
  // with the store (as write_snapshot does). Returns an error line, or empty.
  virtual std::string adopt() = 0;
};

// A local snapshot is durable (error empty) or failed. data: its bytes when they were taken
// in memory anyway (the default start_snapshot), else null (the file holds them).
using snapshot_completion =
    std::function<void(std::string error, std::shared_ptr<const std::string> data)>;

// A snapshot streamed from the leader, assembled by the log store as it arrives
// (log_store::open_snapshot_receiver): a temp file in production, so that a follower never
// holds a second copy of a large state in memory, and the file written as the bytes arrive
// is the one that becomes the snapshot (no second write at install).
//   - append(): on the replica's executor, one chunk (snapshot_chunk_bytes) at a time, so it
//     must not block for long: production queues the chunk for a writer thread (no sync);
//   - view(): once every byte is in, a read-only view of them (a map of the file) that stays
//     valid while this object lives; the state machine restores from it;
//   - install(): called by the store that made it, on its own thread, when the persist_batch
//     carrying it is written: makes the file durable under its final name and records it.
// Destroyed before install() (a newer snapshot, a new leader, a failed check): what was
// written is removed.
class snapshot_receiver {
 public:
  virtual ~snapshot_receiver() = default;
  // An error line, or empty.
  virtual std::string append(std::string_view chunk) = 0;
  // An error line, or empty (then `out` holds every byte appended).
  virtual std::string view(std::string_view& out) = 0;
  // An error line, or empty.
  virtual std::string install() = 0;
};

// The bytes of one durable snapshot, read piecewise while it is streamed to a follower
// (raft/replica.h, "Snapshot transfer"): production reads its file, so no copy of the whole
// snapshot is held in memory for sending.
class snapshot_source {
 public:
  virtual ~snapshot_source() = default;
  virtual std::uint64_t size() const = 0;
  // CRC-32C (base/crc32c.h) of all size() bytes.
  virtual std::uint32_t checksum() const = 0;
  // Replaces `out` with the bytes [offset, offset + n) (fewer only at the end). Returns an
  // error line for a human, empty on success. Bounded work: the caller asks for one chunk.
  virtual std::string read(std::uint64_t offset, std::size_t n, std::string& out) = 0;
};

class log_store {
 public:
  virtual ~log_store() = default;
  // Queues b behind every earlier batch; `done` runs when b is durable (or failed).
  virtual void submit(persist_batch b, store_completion done) = 0;
  // Makes a snapshot file durable (no ordering with batches); `done` runs when it is. The
  // replica records it with a persist_batch::compact only after that.
  virtual void write_snapshot(snapshot_meta meta, std::shared_ptr<const std::string> data,
                              store_completion done) = 0;
  // The durable snapshot at exactly meta (index and term), to stream to a follower; null
  // with `error` set when there is none (yet, or any more).
  virtual std::unique_ptr<snapshot_source> open_snapshot(const snapshot_meta& meta,
                                                         std::string& error) = 0;
  // Replaces `out` with the durable entries [first, last], payloads included: the drive
  // loop reads back the payloads the core released from memory (raft::config::
  // release_applied_payloads) when it sends them to a lagging peer. Only entries the core
  // knows durable are asked for. Returns an error line for a human, empty on success. This
  // default keeps no log to read, for stores used without released payloads.
  virtual std::string read_entries(index_t first, index_t last, std::vector<entry>& out) {
    (void)first;
    (void)last;
    out.clear();
    return "this log store cannot read entries back";
  }
  // A writer of the snapshot file for `meta`, for a state machine that streams its bytes
  // itself (state_machine::start_snapshot). nullptr with `error` empty: this store offers
  // none (use write_snapshot); nullptr with `error` set: the file cannot be created.
  virtual std::unique_ptr<snapshot_writer> open_snapshot_writer(const snapshot_meta& meta,
                                                                std::string& error) {
    (void)meta;
    error.clear();
    return nullptr;
  }
  // Where a follower assembles the snapshot at `meta` that the leader streams to it.
  // nullptr with `error` empty: this store offers none, and the replica assembles the bytes
  // in memory (persist_batch::install then carries them as data); nullptr with `error` set:
  // the file cannot be created (the replica answers the leader with a failure).
  virtual std::unique_ptr<snapshot_receiver> open_snapshot_receiver(const snapshot_meta& meta,
                                                                    std::string& error) {
    (void)meta;
    error.clear();
    return nullptr;
  }
};

// A client write that a follower hands to its leader. call_id is unique across this
// follower's restarts (raft/replica.h); the command is the state machine's opaque bytes.
struct forward_request {
  std::uint64_t call_id = 0;
  std::string command;
  // The command is a membership change (raft/membership.h encode_change), not a state
  // machine command; the reply's result is an encoded change_outcome.
  bool config_change = false;

  bool operator==(const forward_request&) const = default;
};

// The leader's answer: error none => result holds the state machine's encoded result.
struct forward_reply {
  std::uint64_t call_id = 0;
  replica_error error = replica_error::none;
  std::string result;

  bool operator==(const forward_reply&) const = default;
};

class peer_sender {
 public:
  virtual ~peer_sender() = default;
  // Best effort: the network may drop, delay, duplicate and reorder.
  virtual void send(const message& m) = 0;
  // false when `to` cannot be reached at all now (the caller treats it as "not leader").
  virtual bool forward(node_id to, const forward_request& r) = 0;
  virtual void reply(node_id to, const forward_reply& r) = 0;
};

class state_machine {
 public:
  virtual ~state_machine() = default;
  // Applies a committed entry (normal, noop or config; index = applied_index() + 1) and
  // returns the encoded result for whoever proposed it (may be empty; ignored for noops and
  // config entries, which only advance applied_index(): the replica owns configurations).
  virtual std::string apply(const entry& e) = 0;
  // A hint that apply() of these entries comes next, in order: an implementation may bring
  // what they will touch into the CPU's cache. Must change nothing. The replica calls it
  // for each chunk of up to prefetch_entries committed entries before applying them.
  virtual void prefetch(std::span<const entry> entries) const { (void)entries; }
  static constexpr std::size_t prefetch_entries = 16;
  // Last index applied (or covered by the restored snapshot).
  virtual index_t applied_index() const = 0;
  // The state at applied_index(), as bytes restore() accepts.
  virtual std::string snapshot() const = 0;
  // Bytes the state holds, as the snapshot policy weighs it against the log applied since
  // the last snapshot (replica_options::snapshot_log_ratio); 0 if unknown.
  virtual std::uint64_t state_bytes() const { return 0; }
  // Makes the state at applied_index() (== meta.index) a durable snapshot file in `store`
  // and calls done (on any thread) when it is, or failed. The replica keeps applying entries
  // meanwhile, so an implementation that returns before the bytes are taken must capture
  // the state at the call (app/kv_state_machine.h forks and serialises in the child). This
  // default takes the bytes now, on the caller's thread, and writes them with
  // write_snapshot (the simulator's state machines; any small state).
  virtual void start_snapshot(const snapshot_meta& meta, log_store& store,
                              snapshot_completion done) {
    auto data = std::make_shared<const std::string>(snapshot());
    store.write_snapshot(meta, data, [data, done = std::move(done)](std::string error) {
      done(std::move(error), data);
    });
  }
  // Replaces the whole state with a snapshot (received from the leader); false if corrupt.
  virtual bool restore(std::string_view bytes) = 0;
  // The same, for a snapshot received at run time: a large state takes seconds to rebuild,
  // so an implementation may build the new state on another thread from `bytes` and switch
  // to it when done. `bytes` stay valid and unchanged while `owner` lives (they may be a map
  // of the received file: snapshot_receiver::view): hold it until the restore is over. Until
  // it calls done, on the replica's executor, with whether the bytes restored, the replica
  // applies nothing and keeps serving the old state's applied_index(). This default
  // restores here, at once.
  virtual void start_restore(std::string_view bytes, std::shared_ptr<const void> owner,
                             std::function<void(bool ok)> done) {
    (void)owner;
    done(restore(bytes));
  }
  // The leader turns a client command into the bytes it proposes (e.g. stamps its clock
  // into it, so every replica applies the same "now"): the new entry's payload, which the
  // log, storage, the followers' appends and the apply then share; nullopt: undecodable,
  // refuse it.
  virtual std::optional<payload> prepare_proposal(std::string_view command,
                                                  std::int64_t now_ms) = 0;
};

}  // namespace raft
