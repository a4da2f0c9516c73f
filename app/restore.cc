#include "app/restore.h"

#include <CLI/CLI.hpp>
#include <future>
#include <iostream>
#include <system_error>

#include "app/bootstrap_members.h"
#include "app/cluster_id.h"
#include "app/config.h"
#include "app/generation.h"
#include "app/lmdb_log_store.h"
#include "base/log.h"
#include "kv/store.h"
#include "raft/membership.h"
#include "raft/storage/file_io.h"
#include "raft/storage/lmdb_store.h"

namespace app {

namespace fs = std::filesystem;
using base::log_level;

namespace {

constexpr int exit_failed = 1;
constexpr int exit_bad_usage = 2;

// "" when `dir` does not exist or is an empty directory, else why it may not be restored into.
std::string check_empty(const fs::path& dir, bool& exists) {
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  exists = false;
  if (st.type() == fs::file_type::not_found) return "";
  if (ec) return "cannot stat data dir " + dir.string() + ": " + ec.message();
  exists = true;
  if (st.type() != fs::file_type::directory) {
    return "data dir " + dir.string() + " exists and is not a directory";
  }
  fs::directory_iterator it(dir, ec);
  if (ec) return "cannot list data dir " + dir.string() + ": " + ec.message();
  if (it != fs::directory_iterator()) {
    return "data dir " + dir.string() +
           " is not empty: restore initialises a new node's data dir only (it would replace "
           "this node's Raft state); to restore this node, stop it and delete its data dir "
           "first";
  }
  return "";
}

// Removes what a failed restore wrote: everything inside `dir` (it was empty), and `dir`
// itself when it did not exist before.
void undo(const fs::path& dir, bool existed) {
  std::error_code ec;
  if (!existed) {
    fs::remove_all(dir, ec);
  } else {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::error_code rm;
      fs::remove_all(e.path(), rm);
    }
  }
  if (ec) base::log(log_level::warn, "could not remove what was written in ", dir.string());
}

std::unique_ptr<raft::storage::lmdb_store> open_store(const config& c, raft::storage::error& err) {
  raft::storage::options opts = storage_options(c);
  opts.fsync = true;  // whatever [raft] fsync says: a restored state must survive a power cut
  auto opened = raft::storage::lmdb_store::open(std::move(opts));
  if (!opened.store) err = opened.err;
  return std::move(opened.store);
}

// "" when the store holds no Raft state at all (the data dir is still ours to fill).
std::string check_no_raft_state(raft::storage::lmdb_store& store, const fs::path& dir) {
  auto loaded = store.load();
  if (!loaded.ok()) return "cannot load " + dir.string() + ": " + loaded.err.message;
  const auto& s = loaded.value;
  if (s.snapshot || !s.entries.empty() || s.hard.term.value != 0 || s.last_index.value != 0) {
    return "data dir " + dir.string() + " holds Raft state";
  }
  return "";
}

// Writes the snapshot file, then records it as the log's base with the hard state, in one
// batch; "" or the error.
std::string write_raft_state(raft::storage::lmdb_store& store, const raft::snapshot_meta& meta,
                             std::string_view data) {
  if (auto e = store.write_snapshot(meta, data)) return e.message;
  raft::storage::batch b;
  b.compaction = meta;
  b.hard = raft::hard_state{meta.term, raft::no_node, meta.index};
  std::promise<raft::storage::result<raft::storage::persisted>> done;
  auto outcome = done.get_future();
  store.submit(std::move(b), [&done](const raft::storage::result<raft::storage::persisted>& r) {
    done.set_value(r);
  });
  const auto r = outcome.get();
  if (!r.ok()) return r.err.message;
  if (r.value.last_index != meta.index || r.value.last_term != meta.term) {
    return "the log base was not recorded at the snapshot (storage reports index " +
           std::to_string(r.value.last_index.value) + ", term " +
           std::to_string(r.value.last_term.value) + ")";
  }
  return "";
}

// Opens the data dir again and checks that it loads as a node's start would see it.
std::string verify_raft_state(const config& c, const raft::snapshot_meta& meta) {
  raft::storage::error err;
  auto store = open_store(c, err);
  if (!store) return err.message;
  auto loaded = store->load();
  store->close();
  if (!loaded.ok()) return "cannot load " + c.data_dir.string() + ": " + loaded.err.message;
  const auto& s = loaded.value;
  if (!s.snapshot || s.snapshot->meta != meta || !s.entries.empty() || s.last_index != meta.index ||
      s.hard != raft::hard_state{meta.term, raft::no_node, meta.index}) {
    return "the restored data dir " + c.data_dir.string() + " does not load as written";
  }
  return "";
}

}  // namespace

namespace restore {

std::variant<checked_snapshot, std::string> check_file(const fs::path& file) {
  auto bytes = raft::storage::read_file(file);
  if (!bytes.ok()) return bytes.err.message;
  // Moved in: the data keeps the file's buffer, one copy of the state.
  auto parsed = raft::storage::parse_snapshot_bytes(std::move(bytes.value), file.string());
  if (!parsed.ok()) return parsed.err.message;
  const auto& meta = parsed.value.meta;
  if (meta.index.value == 0 || meta.term.value == 0) {
    return file.string() + ": a snapshot at index 0 or term 0 holds nothing to restore";
  }
  kv::store state;
  if (!state.restore(parsed.value.data.view())) {
    return file.string() + ": the state machine's bytes do not restore (checksum or format)";
  }
  if (state.applied_index() != meta.index.value) {
    return file.string() + ": the state machine is at index " +
           std::to_string(state.applied_index()) + " but the file says " +
           std::to_string(meta.index.value);
  }
  checked_snapshot out;
  out.meta = meta;
  out.items = state.stats().curr_items;
  out.data = std::move(parsed.value.data);
  return out;
}

std::string into_data_dir(const config& c, const checked_snapshot& snap) {
  if (c.join) {
    return "restore makes a founding member of a new cluster, but this config has [cluster] "
           "state = \"join\" (a joining node gets its state from the leader)";
  }
  bool existed = false;
  if (auto why = check_empty(c.data_dir, existed); !why.empty()) return why;

  raft::snapshot_meta meta = snap.meta;
  meta.config = bootstrap_members::from_config(c);

  // A fresh data dir's files, in the order a first start writes them, all while the store
  // holds the data dir's lock: the generation, the Raft state, the cluster id and the
  // bootstrap list.
  raft::storage::error open_err;
  auto store = open_store(c, open_err);
  if (!store) {
    // Locked: a node started on the data dir since it was found empty; its files are not
    // ours to remove. Any other failure left at most the start of an unusable store.
    if (open_err.code != raft::storage::errc::locked) undo(c.data_dir, existed);
    return open_err.message;
  }
  if (auto e = check_no_raft_state(*store, c.data_dir); !e.empty()) return e;
  std::string err = [&]() -> std::string {
    auto gen = generation::load_or_create(c.data_dir, /*has_raft_state=*/false);
    if (auto* e = std::get_if<std::string>(&gen)) return *e;
    if (auto e = write_raft_state(*store, meta, snap.data.view()); !e.empty()) return e;
    auto cid = cluster_id::load_or_create(c.data_dir, cluster_id::derive(c));
    if (auto* e = std::get_if<std::string>(&cid)) return *e;
    auto boot = bootstrap_members::load_or_create(c.data_dir, meta.config);
    if (auto* e = std::get_if<std::string>(&boot)) return *e;
    return "";
  }();
  store->close();
  if (err.empty()) err = verify_raft_state(c, meta);
  if (!err.empty()) {
    undo(c.data_dir, existed);
    return err + " (what was written in " + c.data_dir.string() + " was removed)";
  }
  return "";
}

}  // namespace restore

restore_cli::restore_cli(CLI::App& parent) {
  cmd_ = parent.add_subcommand(
      "restore", "initialise an empty data dir from a snapshot file (a backup), for a new cluster");
  cmd_->add_option("--snapshot", snapshot_, "a snapshot-*.snap file copied from any node")
      ->required();
  auto* cfg = cmd_->add_option("--config", config_file_,
                               "the TOML config of the new node (its data dir must be empty)");
  auto* check =
      cmd_->add_flag("--check", check_, "only verify the snapshot file and print what it holds");
  check->excludes(cfg);
}

bool restore_cli::chosen() const {
  return cmd_->parsed();
}

int restore_cli::run() const {
  if (!check_ && config_file_.empty()) {
    std::cerr << "raftkv: restore needs --config FILE (or --check to only verify the file)\n";
    return exit_bad_usage;
  }
  config c;
  if (!check_) {
    auto loaded = load_config(config_file_);
    if (auto* error = std::get_if<config_error>(&loaded)) {
      std::cerr << "raftkv: " << error->message << "\n";
      return exit_bad_usage;
    }
    c = std::get<config>(std::move(loaded));
    if (c.join) {
      std::cerr << "raftkv: " << config_file_
                << ": restore makes a founding member of a new cluster; [cluster] state must "
                   "be \"new\", not \"join\"\n";
      return exit_bad_usage;
    }
  }

  auto checked = restore::check_file(snapshot_);
  if (auto* error = std::get_if<std::string>(&checked)) {
    std::cerr << "raftkv: snapshot not restorable: " << *error << "\n";
    return exit_failed;
  }
  const auto& snap = std::get<restore::checked_snapshot>(checked);
  const std::string what = "index " + std::to_string(snap.meta.index.value) + ", term " +
                           std::to_string(snap.meta.term.value) + ", " +
                           std::to_string(snap.items) + " items, " +
                           std::to_string(snap.data.size()) + " bytes of state";
  if (check_) {
    std::cout << snapshot_ << ": ok: " << what << "; taken in a cluster of "
              << raft::describe(snap.meta.config) << "\n";
    return 0;
  }

  if (auto error = restore::into_data_dir(c, snap); !error.empty()) {
    std::cerr << "raftkv: restore failed: " << error << "\n";
    return exit_failed;
  }
  std::cout << "restored node " << c.node_id << " (data dir " << c.data_dir.string() << ") from "
            << snapshot_ << ": " << what << "; members "
            << raft::describe(bootstrap_members::from_config(c)) << ", cluster id "
            << cluster_id::format(cluster_id::derive(c));  // ends with a newline
  return 0;
}

}  // namespace app
