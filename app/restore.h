// `raftkv restore`: start a NEW cluster from a backup, a snapshot file copied from any node
// of another (or the same, older) cluster (docs/operations.md, "Backup and restore").
//
//   raftkv restore --config FILE --snapshot PATH   initialise this node's empty data dir
//   raftkv restore --check --snapshot PATH         only verify a snapshot file
//
// Why a snapshot file is the backup. It holds the whole state machine at one log index
// (items, counters, the at-most-once table, the replicated limits) and is complete by
// construction: it is written to a tmp-* name, fsynced and only then renamed into
// data_dir/snapshots/ (raft/storage/snapshot_files.h), so a snapshot-*.snap file seen in that
// directory, even on a running node, is whole. Both its header and its data are checksummed,
// and the state machine's bytes carry their own checksum (kv/store.h): a copy that went bad
// on the way is detected, here, before anything is written.
//
// What restoring means. Every node of the new cluster is restored from the same file, so
// they all start at the same (index, term) with the same bytes and agree from the first
// moment; no node has to send another a snapshot. For each node the data dir gets:
// - the snapshot file, with the file's index, term and data but the configuration replaced
//   by the NEW config's [[cluster.member]] list (all voters; bootstrap_members::from_config,
//   the list a first start of that config would record). The old cluster's configuration
//   names other machines, and the core starts from the snapshot's configuration
//   (raft/core.cc), so keeping it would make the new nodes call the old ones;
// - the log base recorded at that snapshot (the batch `compaction` of raft/storage/types.h,
//   what installing a received snapshot does): the log is empty and its last (index, term)
//   is the snapshot's, so the first leader's entries follow it and every follower's log
//   matches at that index;
// - the hard state {term = the snapshot's term, no vote, commit = the snapshot's index}: the
//   first election is in a later term than anything in the snapshot, and nothing up to the
//   snapshot is ever applied again;
// - cluster_id derived from the new config as at any first start (the new members' ids and
//   addresses, and the token): frames from the old cluster, whose id came from its own list,
//   are refused (app/cluster_id.h);
// - bootstrap_members (the new list) and a new data-dir generation (app/generation.h). The
//   members of the new cluster have never heard of this data dir, so they learn its
//   generation at first sight; nothing can misfire.
//
// Refusals. The data dir must not exist or be an empty directory: restoring over a node's
// state would make it forget votes and acknowledged entries (the amnesia that
// app/generation.h guards against), so an operator who means it deletes the data dir first.
// A config with [cluster] state = "join" is refused too: a restored node is a founding member
// of a new cluster, and a joining node gets its state from the leader instead. The snapshot is
// verified completely before the data dir is touched; if a write fails after that, what was
// written is removed again, so a retry finds the data dir empty (a crash of this process can
// still leave a partial data dir: it is then refused as not empty, and deleted by hand).
//
// Exit codes (SPEC §1.1): 0 restored (or, with --check, the file verified); 2 bad command line
// or config (nothing was read or written); 1 the data dir is not empty, the snapshot file is
// unreadable or corrupt, or a write failed; each with a one-line reason naming the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <variant>

#include "raft/storage/snapshot_files.h"
#include "raft/types.h"

namespace CLI {
class App;
}

namespace app {

struct config;

namespace restore {

// A snapshot file that verified.
struct checked_snapshot {
  raft::snapshot_meta meta;  // as the file says (its configuration is the old cluster's)
  raft::storage::snapshot_payload data;  // the state machine's bytes
  std::uint64_t items = 0;   // items held by the state machine
};

// Reads `file` and verifies it: the file's checksums, and that its state-machine bytes
// restore (their own checksum) to the file's index. Errors are one line naming the file.
std::variant<checked_snapshot, std::string> check_file(const std::filesystem::path& file);

// Initialises c.data_dir from `snap` for the config `c` (see the essay). "" or the error
// (the data dir is then as empty as it was, unless it was not empty to begin with).
std::string into_data_dir(const config& c, const checked_snapshot& snap);

}  // namespace restore

// The subcommand, wired like member_cli: CLI11 keeps pointers to the option fields, so this
// object outlives parent.parse() and is neither copied nor moved.
class restore_cli {
 public:
  explicit restore_cli(CLI::App& parent);
  restore_cli(const restore_cli&) = delete;
  restore_cli& operator=(const restore_cli&) = delete;

  bool chosen() const;
  // Runs the parsed command, prints the outcome; returns the process exit code.
  int run() const;

 private:
  CLI::App* cmd_ = nullptr;
  std::string config_file_;
  std::string snapshot_;
  bool check_ = false;
};

}  // namespace app
