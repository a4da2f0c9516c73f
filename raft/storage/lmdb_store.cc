#include "raft/storage/lmdb_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>

#include "raft/storage/file_io.h"
#include "raft/storage/lmdb_env.h"
#include "raft/storage/writer.h"

namespace raft::storage {

namespace fs = std::filesystem;

struct lmdb_store::impl {
  impl(fs::path snapshot_path, bool fsync) : snapshots(std::move(snapshot_path), fsync) {}

  int lock_fd = -1;
  snapshot_dir snapshots;
  std::unique_ptr<lmdb_env> env;
  std::unique_ptr<journal_files> journal;
  std::unique_ptr<writer> w;
  std::uint64_t closed_map_bytes = 0;  // what stats() reports once the env is closed
  std::uint64_t closed_map_grows = 0;
  std::uint64_t own_syncs = 0;  // fdatasyncs of open() and close() (journal_drained)

  mutable std::mutex state_mutex;
  std::optional<snapshot_info> latest_snapshot;  // newest durable valid snapshot file
};

lmdb_store::lmdb_store(options opts)
    : opts_(std::move(opts)),
      impl_(std::make_unique<impl>(opts_.data_dir / "snapshots", opts_.fsync)) {}

lmdb_store::~lmdb_store() {
  close();
}

void lmdb_store::log(log_level level, std::string_view text) const {
  if (opts_.log) {
    opts_.log(level, text);
    return;
  }
  const char* tag = level == log_level::info      ? "info"
                    : level == log_level::warning ? "WARN"
                                                  : "ERROR";
  std::fprintf(stderr, "storage %s: %.*s\n", tag, static_cast<int>(text.size()), text.data());
}

namespace {

// The pid recorded in data_dir/LOCK by its holder, or "unknown".
std::string lock_holder(const fs::path& lock_path) {
  std::string pid = "unknown";
  if (auto content = read_file(lock_path); content.ok() && !content.value.empty()) {
    pid = content.value;
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  }
  return pid;
}

// Is `pid` (as recorded in LOCK) a process that no longer exists?
bool holder_is_gone(const std::string& pid) {
  char* end = nullptr;
  const long n = std::strtol(pid.c_str(), &end, 10);
  if (pid.empty() || *end != '\0' || n <= 0 || n == ::getpid()) return false;
  return ::kill(static_cast<pid_t>(n), 0) != 0 && errno == ESRCH;
}

// Takes data_dir/LOCK (one process per data dir: two writers would interleave their logs)
// and writes our pid into it for the next one's error message.
//
// The lock belongs to the open file, so a node's snapshot child (app/kv_state_machine.h)
// holds it too. When the node is killed the child is killed with it (PR_SET_PDEATHSIG), but
// it may take a moment to exit, and a node that is restarted at once would find the lock
// held by a process that no longer exists. The lock is only ever inherited that way (it is
// opened O_CLOEXEC), so in that case we wait for it, up to `orphan_wait`, instead of
// refusing to start.
result<int> take_lock(const fs::path& dir) {
  constexpr auto orphan_wait = std::chrono::seconds(10);
  const fs::path lock_path = dir / "LOCK";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return {-1, errno_error(errno, "open " + lock_path.string())};
  const auto deadline = std::chrono::steady_clock::now() + orphan_wait;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    if (e == EINTR) continue;
    const std::string pid = e == EWOULDBLOCK ? lock_holder(lock_path) : std::string();
    if (e == EWOULDBLOCK && holder_is_gone(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    ::close(fd);
    if (e != EWOULDBLOCK) return {-1, errno_error(e, "lock " + lock_path.string())};
    return {-1, make_error(errc::locked, "data dir " + dir.string() +
                                             " is locked by another process (pid " + pid + ")")};
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  error err;
  if (::ftruncate(fd, 0) != 0) err = errno_error(errno, "truncate " + lock_path.string());
  if (err.ok()) err = write_all(fd, pid, lock_path.string());
  if (!err.ok()) {
    ::close(fd);
    return {-1, err};
  }
  return {fd, {}};
}

}  // namespace

open_result lmdb_store::open(options opts) {
  std::unique_ptr<lmdb_store> s(new lmdb_store(std::move(opts)));
  auto& im = *s->impl_;
  const auto& o = s->opts_;
  const fs::path dir = o.data_dir;
  const auto fail = [&](error e) {
    s->close();
    return open_result{nullptr, std::move(e)};
  };
  if (dir.empty()) return fail(make_error(errc::io_error, "data_dir is empty"));

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return fail(
        make_error(errc::io_error, "cannot create data dir " + dir.string() + ": " + ec.message()));
  auto lock = take_lock(dir);
  if (!lock.ok()) return fail(lock.err);
  im.lock_fd = lock.value;

  auto removed = im.snapshots.prepare();
  if (!removed.ok()) return fail(removed.err);
  for (const auto& p : removed.value)
    s->log(log_level::info, "removed unfinished snapshot " + p.string());

  const auto log_fn = [p = s.get()](log_level l, std::string_view text) { p->log(l, text); };
  auto env =
      lmdb_env::open(env_options{dir, o.fsync, o.initial_map_bytes, o.max_map_bytes, log_fn});
  if (!env.ok()) return fail(env.err);
  im.env = std::move(env.value);
  if (auto err = fsync_dir(dir); !err.ok() && o.fsync) return fail(err);

  // A journal file that is gone, emptied or cut short may have held what LMDB lacks
  // (journal.h, "Missing files"): refuse before open() creates or fills it anew, or the next
  // start would not know.
  auto applied = im.env->read_journal_seq();
  if (!applied.ok()) return fail(applied.err);
  auto drained = im.env->read_journal_drained();
  if (!drained.ok()) return fail(drained.err);
  if (const auto gone = journal_files::missing_or_short(dir, o.journal_file_bytes);
      !gone.empty() && drained.value != applied.value) {
    return fail(make_error(
        errc::corrupt,
        "journal file " + gone.front() +
            " and the node did not stop cleanly: it may have held log entries "
            "and a vote this node acknowledged. Restore the file, or treat this data dir as "
            "lost (docs/config.md, \"Lost data dirs\")"));
  }

  // Records the journal holds beyond LMDB (a crash before their checkpoint) go into LMDB
  // now, in one transaction made durable before anything else happens.
  auto journal = journal_files::open(dir, o.journal_file_bytes, o.fsync);
  if (!journal.ok()) return fail(journal.err);
  im.journal = std::move(journal.value);
  auto pending = im.journal->recover(applied.value);
  if (!pending.ok()) return fail(pending.err);
  std::uint64_t seq = applied.value;
  if (!pending.value.empty()) {
    auto before = im.env->read_shape();
    if (!before.ok()) return fail(before.err);
    std::vector<batch> batches;
    for (auto& r : pending.value)
      for (auto& b : r.batches) batches.push_back(std::move(b));
    seq = pending.value.back().seq;
    auto done = im.env->commit(before.value, batches, seq);
    if (!done.ok()) return fail(done.err);
    if (o.fsync) {
      if (auto err = im.env->sync(); !err.ok()) return fail(err);
    }
    s->log(log_level::info, "journal: applied records " + std::to_string(applied.value + 1) +
                                "-" + std::to_string(seq) + " (" +
                                std::to_string(done.value.entries) + " entries) to LMDB");
  }

  // Both files exist from here on; the writer may fill them with what LMDB lacks.
  if (drained.value) {
    auto cleared = im.env->set_journal_drained(std::nullopt);
    if (!cleared.ok()) return fail(cleared.err);
    im.own_syncs += cleared.value;
  }

  // The committed state the writer starts from: hard state, snapshot record, last entry.
  auto shape = im.env->read_shape();
  if (!shape.ok()) return fail(shape.err);

  if (!o.fsync)
    s->log(log_level::warning,
           "raft.fsync = false: commits are NOT flushed to disk; a power loss or kernel crash "
           "can lose acknowledged writes. Use only for throwaway benchmarks.");
  s->log(log_level::info, "opened " + dir.string() + " (last index " +
                              std::to_string(shape.value.last_index.value) + ", snapshot index " +
                              std::to_string(shape.value.snap.index.value) + ", map " +
                              std::to_string(im.env->map_bytes() >> 20) + " MiB)");
  writer_hooks hooks;
  hooks.log = log_fn;
  hooks.on_commit = o.on_commit;
  // Older snapshot files are useless once the log prefix after them is gone.
  hooks.on_compacted = [p = s.get()](index_t at) { p->impl_->snapshots.remove_older_than(at); };
  writer_options wo;
  wo.checkpoint_interval = o.checkpoint_interval;
  im.w = std::make_unique<writer>(*im.env, *im.journal, shape.value, seq, std::move(hooks), wo);
  return open_result{std::move(s), {}};
}

void lmdb_store::close() {
  if (!impl_) return;
  auto& im = *impl_;
  if (im.w) im.w->stop();  // drains: every queued callback has run, LMDB has caught up
  // A clean close: the journal holds nothing LMDB lacks (journal.h, "Missing files"). Best
  // effort: without the record, a start that finds a journal file gone refuses.
  if (im.w && im.env && im.w->drained()) {
    if (auto seq = im.env->read_journal_seq(); seq.ok()) {
      auto marked = im.env->set_journal_drained(seq.value);
      im.own_syncs += marked.value;
      if (!marked.ok())
        log(log_level::warning, "could not record the clean close: " + marked.err.message);
    }
  }
  im.journal.reset();  // the stopped writer keeps answering submit() with `closed`
  if (im.env) {
    im.closed_map_bytes = im.env->map_bytes();
    im.closed_map_grows = im.env->map_grows();
    im.env.reset();
  }
  if (im.lock_fd >= 0) {
    ::close(im.lock_fd);  // releases the flock
    im.lock_fd = -1;
  }
}

void lmdb_store::submit(batch b, submit_callback cb) {
  impl_->w->submit(std::move(b), std::move(cb));
}

result<std::vector<entry>> lmdb_store::read_entries(index_t first, index_t last) const {
  if (!impl_->env || !impl_->w) return {{}, make_error(errc::closed, "storage is closed")};
  return impl_->w->read_entries(first, last);
}

result<loaded_state> lmdb_store::load() {
  auto& im = *impl_;
  const auto start = std::chrono::steady_clock::now();
  if (!im.env) return {{}, make_error(errc::closed, "storage is closed")};
  auto stored = im.env->read_log();
  if (!stored.ok()) return {{}, stored.err};
  const snapshot_meta& recorded = stored.value.recorded;
  std::vector<entry>& log_entries = stored.value.entries;
  result<loaded_state> out;
  auto& st = out.value;
  st.hard = stored.value.hard;

  // The newest valid snapshot file not older than the recorded one. A corrupt newer file is
  // skipped, never served.
  auto chosen = im.snapshots.newest_valid(
      recorded, [this](const std::string& why) { log(log_level::warning, why); });
  if (recorded.index.value > 0 && !chosen) {
    return {{},
            make_error(errc::corrupt, "no valid snapshot file covers index " +
                                          std::to_string(recorded.index.value) +
                                          " (the log starts after it); the node cannot recover "
                                          "its state from this data dir")};
  }

  snapshot_meta base = recorded;
  if (chosen) {
    st.snapshot = chosen->first;
    st.snapshot_data = std::move(chosen->second);
  }
  if (chosen && st.snapshot->meta.index > recorded.index) {
    // Crash between write_snapshot and the compaction commit: finish the compaction now.
    const snapshot_meta& m = st.snapshot->meta;
    batch fix;
    const auto at = std::find_if(log_entries.begin(), log_entries.end(),
                                 [&](const entry& e) { return e.index == m.index; });
    const bool conflict = at != log_entries.end() && at->term != m.term;
    if (conflict) fix.truncate_from = m.index;  // §7: the log disagrees with the snapshot
    fix.compaction = m;
    std::promise<result<persisted>> done;
    submit(std::move(fix), [&done](const result<persisted>& r) { done.set_value(r); });
    auto r = done.get_future().get();
    if (!r.ok()) return {{}, r.err};
    log(log_level::info,
        "completed the compaction at snapshot index " + std::to_string(m.index.value));
    base = m;
    if (conflict) log_entries.clear();
  }
  if (chosen) {
    im.snapshots.remove_older_than(st.snapshot->meta.index);
    std::lock_guard lock(im.state_mutex);
    im.latest_snapshot = st.snapshot;
  }

  for (auto& e : log_entries)
    if (e.index > base.index) st.entries.push_back(std::move(e));
  st.last_index = st.entries.empty() ? base.index : st.entries.back().index;
  st.last_term = st.entries.empty() ? base.term : st.entries.back().term;
  st.took = std::chrono::steady_clock::now() - start;
  return out;
}

error lmdb_store::write_snapshot(const snapshot_meta& meta, std::string_view data) {
  auto& im = *impl_;
  auto written = im.snapshots.write(meta, data);
  if (!written.ok()) {
    log(log_level::error, "snapshot at index " + std::to_string(meta.index.value) +
                              " not written: " + written.err.message);
    return written.err;
  }
  std::lock_guard lock(im.state_mutex);
  if (!im.latest_snapshot || im.latest_snapshot->meta.index <= meta.index)
    im.latest_snapshot = std::move(written.value);
  return {};
}

result<std::unique_ptr<snapshot_stream>> lmdb_store::open_snapshot_stream(
    const snapshot_meta& meta) {
  return impl_->snapshots.open_stream(meta);
}

void lmdb_store::snapshot_streamed(snapshot_info info) {
  std::lock_guard lock(impl_->state_mutex);
  if (!impl_->latest_snapshot || impl_->latest_snapshot->meta.index <= info.meta.index)
    impl_->latest_snapshot = std::move(info);
}

std::optional<snapshot_info> lmdb_store::latest_snapshot() const {
  std::lock_guard lock(impl_->state_mutex);
  return impl_->latest_snapshot;
}

result<std::string> lmdb_store::read_snapshot(const snapshot_info& info) const {
  auto file = read_file(info.path);
  if (!file.ok()) return {{}, file.err};
  auto parsed = parse_snapshot_bytes(std::move(file.value), "snapshot file " + info.path.string());
  if (!parsed.ok()) return {{}, parsed.err};
  if (parsed.value.meta != info.meta)
    return {{},
            make_error(errc::corrupt, "snapshot file " + info.path.string() +
                                          " does not hold the expected snapshot")};
  return {std::string(parsed.value.data.view()), {}};
}

error lmdb_store::health() const {
  return impl_->w ? impl_->w->failure() : error{};
}

store_stats lmdb_store::stats() const {
  const auto& im = *impl_;
  store_stats s;
  if (im.w) {
    const writer_stats w = im.w->stats();
    s.commits = w.commits;
    s.syncs = w.syncs + im.own_syncs;
    s.batches = w.batches;
    s.entries = w.entries;
    s.bytes = w.bytes;
    s.commit_ns_total = w.commit_ns;
    s.checkpoints = w.checkpoints;
    s.checkpoint_ns_total = w.checkpoint_ns;
    s.journal_switches = w.journal_switches;
  }
  s.map_grows = im.env ? im.env->map_grows() : im.closed_map_grows;
  s.map_bytes = im.env ? im.env->map_bytes() : im.closed_map_bytes;
  return s;
}

std::uint64_t replay(const loaded_state& state, const std::function<void(const entry&)>& apply,
                     const std::function<void(log_level, std::string_view)>& log,
                     std::chrono::milliseconds progress_every) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto next_report = start + progress_every;
  const std::uint64_t total = state.entries.size();
  std::uint64_t done = 0;
  for (const entry& e : state.entries) {
    apply(e);
    ++done;
    if ((done & 1023u) == 0 && clock::now() >= next_report) {
      next_report = clock::now() + progress_every;
      if (log)
        log(log_level::info, "recovery: replayed " + std::to_string(done) + " of " +
                                 std::to_string(total) + " entries (at index " +
                                 std::to_string(e.index.value) + ")");
    }
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start + state.took);
  if (log) {
    std::string line = "recovery: ";
    if (state.snapshot)
      line += "snapshot at index " + std::to_string(state.snapshot->meta.index.value) + " (" +
              std::to_string(state.snapshot_data.size()) + " bytes), ";
    line += "replayed " + std::to_string(done) + " entries up to index " +
            std::to_string(state.last_index.value) + " in " + std::to_string(ms.count()) + " ms";
    log(log_level::info, line);
  }
  return done;
}

}  // namespace raft::storage
