#include "raft/storage/lmdb_env.h"

#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "raft/storage/file_io.h"
#include "raft/storage/records.h"

namespace raft::storage {

namespace {

constexpr std::string_view key_format = "format";
constexpr std::string_view key_hard_state = "hard_state";
constexpr std::string_view key_snapshot = "snapshot";
constexpr std::string_view key_journal_seq = "journal_seq";
constexpr std::string_view key_journal_drained = "journal_drained";

// An LMDB return code as an error; ENOSPC is "disk full" wherever it shows up.
error lmdb_error(int rc, std::string_view what) {
  if (rc == ENOSPC)
    return make_error(errc::disk_full, "disk full: " + std::string(what) + ": " + mdb_strerror(rc));
  if (rc == MDB_MAP_FULL)
    return make_error(errc::disk_full, "disk full: " + std::string(what) + ": LMDB map is full");
  return make_error(errc::io_error, "I/O error: " + std::string(what) + ": " + mdb_strerror(rc));
}

MDB_val as_val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
std::string_view as_view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

// A log key, owning its bytes for as long as LMDB looks at them.
struct key_val {
  std::array<char, 8> bytes;
  explicit key_val(index_t i) : bytes(log_key(i)) {}
  MDB_val val() { return MDB_val{bytes.size(), bytes.data()}; }
};

// The index of a log key (0 for a malformed key: never a valid index, so never expected).
index_t key_index(const MDB_val& k) {
  return log_key_index(as_view(k)).value_or(index_t{0});
}

// A read-only transaction that always ends.
struct read_txn {
  MDB_txn* txn = nullptr;
  int rc = 0;
  explicit read_txn(MDB_env* env) { rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn); }
  ~read_txn() {
    if (txn) mdb_txn_abort(txn);
  }
};

// A cursor that always closes.
struct cursor {
  MDB_cursor* cur = nullptr;
  int rc = 0;
  cursor(MDB_txn* txn, MDB_dbi dbi) { rc = mdb_cursor_open(txn, dbi, &cur); }
  ~cursor() {
    if (cur) mdb_cursor_close(cur);
  }
};

// Hard state and snapshot record (either may be absent: a fresh store).
error read_meta(MDB_txn* txn, MDB_dbi meta, hard_state& hard, snapshot_meta& snap) {
  MDB_val k = as_val(key_hard_state), v{};
  if (mdb_get(txn, meta, &k, &v) == 0) {
    auto h = decode_hard_state(as_view(v));
    if (!h.ok()) return h.err;
    hard = h.value;
  }
  k = as_val(key_snapshot);
  if (mdb_get(txn, meta, &k, &v) == 0) {
    auto m = decode_snapshot_record(as_view(v));
    if (!m.ok()) return m.err;
    snap = m.value;
  }
  return {};
}

}  // namespace

lmdb_env::lmdb_env(env_options opts) : opts_(std::move(opts)) {}

lmdb_env::~lmdb_env() {
  if (env_) mdb_env_close(env_);
}

result<std::unique_ptr<lmdb_env>> lmdb_env::open(env_options opts) {
  std::unique_ptr<lmdb_env> e(new lmdb_env(std::move(opts)));
  const auto& o = e->opts_;
  const auto fail = [](error err) { return result<std::unique_ptr<lmdb_env>>{nullptr, err}; };
  if (int rc = mdb_env_create(&e->env_); rc != 0) return fail(lmdb_error(rc, "mdb_env_create"));
  mdb_env_set_maxdbs(e->env_, 4);
  e->map_bytes_ = std::min(o.initial_map_bytes, o.max_map_bytes);
  if (int rc = mdb_env_set_mapsize(e->env_, e->map_bytes_); rc != 0)
    return fail(lmdb_error(rc, "mdb_env_set_mapsize"));
  // MDB_NOTLS: read transactions are not tied to a thread slot (readers come from any
  // thread). MDB_NOMETASYNC: a commit is one fdatasync, its meta page is made durable by
  // the next one (the writer reports a batch only after that; see writer.h). MDB_NOSYNC
  // only when the operator asked for fsync = false.
  const unsigned flags = MDB_NOTLS | (o.fsync ? MDB_NOMETASYNC : MDB_NOSYNC);
  if (int rc = mdb_env_open(e->env_, o.dir.c_str(), flags, 0644); rc != 0) {
    mdb_env_close(e->env_);
    e->env_ = nullptr;
    return fail(lmdb_error(rc, "open LMDB environment in " + o.dir.string()));
  }
  // Reader slots left by a killed process would pin old pages forever (the file would only
  // grow); the caller holds the data dir's LOCK, so every other slot is stale.
  int stale_readers = 0;
  mdb_reader_check(e->env_, &stale_readers);
  MDB_envinfo info{};
  mdb_env_info(e->env_, &info);
  e->map_bytes_ = info.me_mapsize;  // an existing env may already be larger

  // Create the databases and the format record, or check the format of an existing env.
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(e->env_, nullptr, 0, &txn); rc != 0)
    return fail(lmdb_error(rc, "begin"));
  const auto abort = [&](error err) {
    mdb_txn_abort(txn);
    return fail(std::move(err));
  };
  int rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &e->meta_dbi_);
  if (rc == 0) rc = mdb_dbi_open(txn, "log", MDB_CREATE, &e->log_dbi_);
  if (rc != 0) return abort(lmdb_error(rc, "open databases"));
  MDB_val k = as_val(key_format), v{};
  rc = mdb_get(txn, e->meta_dbi_, &k, &v);
  bool upgraded = false;
  const auto write_format = [&] {
    const std::string rec = encode_format_record(format_version);
    MDB_val rv = as_val(rec);
    return mdb_put(txn, e->meta_dbi_, &k, &rv, 0);
  };
  // A new env, or one of format 1, has no journal yet: nothing it could have lost.
  const auto write_drained = [&] {
    const std::string rec = encode_journal_seq(0);
    MDB_val dk = as_val(key_journal_drained), dv = as_val(rec);
    return mdb_put(txn, e->meta_dbi_, &dk, &dv, 0);
  };
  if (rc == MDB_NOTFOUND) {
    if (rc = write_format(); rc != 0) return abort(lmdb_error(rc, "write format record"));
    if (rc = write_drained(); rc != 0) return abort(lmdb_error(rc, "write journal record"));
  } else if (rc == 0) {
    auto version = decode_format_record(as_view(v));
    if (!version.ok()) return abort(version.err);
    if (version.value == format_version_without_journal) {
      // Nothing to convert: a version 1 dir simply has no journal yet (journal.h).
      if (rc = write_format(); rc != 0) return abort(lmdb_error(rc, "upgrade format record"));
      if (rc = write_drained(); rc != 0) return abort(lmdb_error(rc, "write journal record"));
      upgraded = true;
      o.log(log_level::info, "upgraded " + o.dir.string() + " to storage format " +
                                 std::to_string(format_version) + " (adds the journal)");
    } else if (version.value != format_version)
      return abort(
          make_error(errc::bad_format, "data dir " + o.dir.string() + " has storage format " +
                                           std::to_string(version.value) + ", this build reads " +
                                           std::to_string(format_version)));
  } else {
    return abort(lmdb_error(rc, "read format record"));
  }
  if (rc = mdb_txn_commit(txn); rc != 0) return fail(lmdb_error(rc, "initialise environment"));
  // Durable before the first journal record: an older build must refuse this dir from now.
  if (upgraded && o.fsync) {
    if (error err = e->sync(); !err.ok()) return fail(err);
  }
  return {std::move(e), {}};
}

error lmdb_env::sync() {
  if (int rc = mdb_env_sync(env_, 1); rc != 0) return lmdb_error(rc, "sync of the Raft log");
  return {};
}

result<bool> lmdb_env::presize() {
  // Only the sync latency is at stake: not without fsync, not again after a failure.
  if (!opts_.fsync || presize_failed_) return {false, {}};
  int fd = -1;
  MDB_envinfo info{};
  MDB_stat st{};
  if (mdb_env_get_fd(env_, &fd) != 0 || mdb_env_info(env_, &info) != 0 ||
      mdb_env_stat(env_, &st) != 0)
    return {false, {}};
  struct stat file {};
  if (::fstat(fd, &file) != 0) return {false, {}};
  const std::uint64_t page = st.ms_psize;
  const std::uint64_t used = (static_cast<std::uint64_t>(info.me_last_pgno) + 1) * page;
  // Slack: an eighth of what is used, at least 4 MiB, at most 64 MiB, within the map.
  // Extending only once less than a quarter of it is left keeps the extra syncs rare.
  const std::uint64_t slack = std::clamp<std::uint64_t>(used / 8, 4 << 20, 64 << 20);
  const std::uint64_t size = static_cast<std::uint64_t>(file.st_size);
  if (size >= used + slack / 4) return {false, {}};
  const std::uint64_t target = std::min<std::uint64_t>(used + slack, map_bytes_) / page * page;
  if (target <= size) return {false, {}};
  static const std::string zeros(1 << 20, '\0');
  int failed = 0;
  for (std::uint64_t at = size; at < target && failed == 0;) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), target - at));
    const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(at));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      failed = w < 0 ? errno : EIO;
    else
      at += static_cast<std::uint64_t>(w);
  }
  if (failed != 0) {
    // Only an optimisation: LMDB's own writes extend the file (and report what fails). A
    // failed write of zeros lost nothing else.
    opts_.log(log_level::warning, "stopped pre-sizing " + (opts_.dir / "data.mdb").string() + ": " +
                                      errno_error(failed, "write zeros").message);
    presize_failed_ = true;
    return {false, {}};
  }
  // The size change is journaled by this sync, not by the next commit's. A failed sync is
  // a failed sync of the log: the kernel may have dropped the unsynced meta page of the
  // last commit, and a later sync would not bring it back.
  if (::fdatasync(fd) != 0) return {false, errno_error(errno, "sync of the Raft log")};
  return {true, {}};
}

std::uint64_t lmdb_env::map_bytes() const {
  std::shared_lock lock(map_mutex_);
  return map_bytes_;
}

result<log_shape> lmdb_env::read_shape() const {
  std::shared_lock lock(map_mutex_);
  read_txn rt(env_);
  if (rt.rc != 0) return {{}, lmdb_error(rt.rc, "begin read")};
  log_shape s;
  if (auto err = read_meta(rt.txn, meta_dbi_, s.hard, s.snap); !err.ok()) return {{}, err};
  s.last_index = s.snap.index;
  s.last_term = s.snap.term;
  cursor c(rt.txn, log_dbi_);
  if (c.rc != 0) return {{}, lmdb_error(c.rc, "cursor")};
  MDB_val k{}, v{};
  const int rc = mdb_cursor_get(c.cur, &k, &v, MDB_LAST);
  if (rc == 0) {
    auto e = decode_entry(key_index(k), as_view(v));
    if (!e.ok()) return {{}, e.err};
    s.last_index = e.value.index;
    s.last_term = e.value.term;
  } else if (rc != MDB_NOTFOUND) {
    return {{}, lmdb_error(rc, "read last entry")};
  }
  return {std::move(s), {}};
}

result<std::optional<std::uint64_t>> lmdb_env::read_seq_record(std::string_view key) const {
  std::shared_lock lock(map_mutex_);
  read_txn rt(env_);
  if (rt.rc != 0) return {{}, lmdb_error(rt.rc, "begin read")};
  MDB_val k = as_val(key), v{};
  const int rc = mdb_get(rt.txn, meta_dbi_, &k, &v);
  if (rc == MDB_NOTFOUND) return {std::nullopt, {}};
  if (rc != 0) return {{}, lmdb_error(rc, "read the " + std::string(key) + " record")};
  auto seq = decode_journal_seq(as_view(v));
  if (!seq.ok()) return {{}, seq.err};
  return {seq.value, {}};
}

result<std::uint64_t> lmdb_env::read_journal_seq() const {
  auto seq = read_seq_record(key_journal_seq);
  return {seq.value.value_or(0), seq.err};
}

result<std::optional<std::uint64_t>> lmdb_env::read_journal_drained() const {
  return read_seq_record(key_journal_drained);
}

result<std::uint64_t> lmdb_env::set_journal_drained(std::optional<std::uint64_t> seq) {
  std::shared_lock lock(map_mutex_);
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &txn); rc != 0) return {0, lmdb_error(rc, "begin")};
  MDB_val k = as_val(key_journal_drained);
  const std::string rec = seq ? encode_journal_seq(*seq) : std::string();
  MDB_val v = as_val(rec);
  int rc = seq ? mdb_put(txn, meta_dbi_, &k, &v, 0) : mdb_del(txn, meta_dbi_, &k, nullptr);
  if (rc == MDB_NOTFOUND) rc = 0;  // nothing to delete
  if (rc != 0) {
    mdb_txn_abort(txn);
    return {0, lmdb_error(rc, "write journal drained record")};
  }
  if (rc = mdb_txn_commit(txn); rc != 0)
    return {0, lmdb_error(rc, "commit journal drained record")};
  lock.unlock();
  if (!opts_.fsync) return {0, {}};
  return {2, sync()};
}

result<stored_log> lmdb_env::read_log() const {
  std::shared_lock lock(map_mutex_);
  read_txn rt(env_);
  if (rt.rc != 0) return {{}, lmdb_error(rt.rc, "begin read")};
  stored_log out;
  if (auto err = read_meta(rt.txn, meta_dbi_, out.hard, out.recorded); !err.ok()) return {{}, err};
  cursor c(rt.txn, log_dbi_);
  if (c.rc != 0) return {{}, lmdb_error(c.rc, "cursor")};
  index_t expect = out.recorded.index + 1;
  term_t prev_term = out.recorded.term;
  MDB_val k{}, v{};
  int rc = mdb_cursor_get(c.cur, &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(c.cur, &k, &v, MDB_NEXT)) {
    const index_t i = key_index(k);
    if (i != expect)
      return {{},
              make_error(errc::corrupt, "log is not contiguous: expected entry " +
                                            std::to_string(expect.value) + ", found " +
                                            std::to_string(i.value))};
    auto e = decode_entry(i, as_view(v));
    if (!e.ok()) return {{}, e.err};
    if (e.value.term < prev_term)
      return {{},
              make_error(errc::corrupt, "log entry " + std::to_string(i.value) + " has term " +
                                            std::to_string(e.value.term.value) +
                                            " below its predecessor's " +
                                            std::to_string(prev_term.value))};
    prev_term = e.value.term;
    out.entries.push_back(std::move(e.value));
    ++expect;
  }
  if (rc != MDB_NOTFOUND) return {{}, lmdb_error(rc, "read log")};
  return {std::move(out), {}};
}

result<std::vector<entry>> lmdb_env::read_entries(index_t first, index_t last) const {
  result<std::vector<entry>> out;
  if (last < first) return out;
  std::shared_lock lock(map_mutex_);
  read_txn rt(env_);
  if (rt.rc != 0) return {{}, lmdb_error(rt.rc, "begin read")};
  cursor c(rt.txn, log_dbi_);
  if (c.rc != 0) return {{}, lmdb_error(c.rc, "cursor")};
  key_val key(first);
  MDB_val k = key.val(), v{};
  int rc = mdb_cursor_get(c.cur, &k, &v, MDB_SET_KEY);
  for (index_t i = first; i <= last; ++i) {
    if (rc == MDB_NOTFOUND || (rc == 0 && key_index(k) != i)) {
      out.err = make_error(errc::corrupt, "log entry " + std::to_string(i.value) + " is missing");
      break;
    }
    if (rc != 0) {
      out.err = lmdb_error(rc, "read log");
      break;
    }
    auto e = decode_entry(i, as_view(v));
    if (!e.ok()) {
      out.err = e.err;
      break;
    }
    out.value.push_back(std::move(e.value));
    if (i < last) rc = mdb_cursor_get(c.cur, &k, &v, MDB_NEXT);
  }
  if (!out.ok()) out.value.clear();
  return out;
}

namespace {

// Terms of stored entries, read inside the write transaction (log_shape.h's term_source).
class txn_terms final : public term_source {
 public:
  txn_terms(MDB_txn* txn, MDB_dbi log) : txn_(txn), log_(log) {}
  result<term_t> term_at(index_t i) const override {
    key_val key(i);
    MDB_val k = key.val(), v{};
    if (mdb_get(txn_, log_, &k, &v) != 0)
      return {{},
              make_error(errc::corrupt, "log entry " + std::to_string(i.value) + " is missing")};
    auto e = decode_entry(i, as_view(v));
    if (!e.ok()) return {{}, e.err};
    return {e.value.term, {}};
  }

 private:
  MDB_txn* txn_;
  MDB_dbi log_;
};

}  // namespace

lmdb_env::attempt lmdb_env::try_commit(const log_shape& committed, std::span<const batch> batches,
                                       std::uint64_t journal_seq, commit_report& report) {
  attempt out;
  report.after.assign(batches.size(), persisted{});
  report.shape = committed;
  report.entries = 0;
  report.bytes = 0;
  report.synced = false;
  MDB_txn* txn = nullptr;
  if (out.rc = mdb_txn_begin(env_, nullptr, 0, &txn); out.rc != 0) return out;
  {
    cursor c(txn, log_dbi_);
    out.rc = c.rc;
    const txn_terms terms(txn, log_dbi_);
    for (std::size_t n = 0; n < batches.size() && out.rc == 0; ++n) {
      const batch& b = batches[n];
      auto next = advance(report.shape, b, terms);
      if (!next.ok()) {
        out.err = next.err;
        break;
      }
      // §5.3: a follower deletes a conflicting entry and all that follow it.
      if (b.truncate_from) {
        MDB_val k{}, v{};
        while (out.rc == 0) {
          int rc = mdb_cursor_get(c.cur, &k, &v, MDB_LAST);
          if (rc == MDB_NOTFOUND || (rc == 0 && key_index(k) < *b.truncate_from)) break;
          if (rc == 0) rc = mdb_cursor_del(c.cur, 0);
          if (rc == 0) report.synced = true;
          out.rc = rc;
        }
      }
      for (const entry& e : b.entries) {
        if (out.rc != 0) break;
        encode_entry(e, scratch_);
        key_val key(e.index);
        MDB_val k = key.val(), v = as_val(scratch_);
        // MDB_APPEND: keys arrive in increasing order, so LMDB can skip the search and fill
        // pages completely.
        out.rc = mdb_cursor_put(c.cur, &k, &v, MDB_APPEND);
        report.synced = true;
        ++report.entries;
        report.bytes += e.data.size();
      }
      // §7: the snapshot replaces the log prefix it covers.
      if (b.compaction && out.rc == 0) {
        const std::string rec = encode_snapshot_record(*b.compaction);
        MDB_val k = as_val(key_snapshot), v = as_val(rec);
        out.rc = mdb_put(txn, meta_dbi_, &k, &v, 0);
        report.synced = true;
        while (out.rc == 0) {
          int rc = mdb_cursor_get(c.cur, &k, &v, MDB_FIRST);
          if (rc == MDB_NOTFOUND || (rc == 0 && key_index(k) > b.compaction->index)) break;
          if (rc == 0) rc = mdb_cursor_del(c.cur, 0);
          out.rc = rc;
        }
      }
      // Figure 2: currentTerm and votedFor are stable before answering any RPC.
      if (b.hard && out.rc == 0) {
        const std::string rec = encode_hard_state(*b.hard);
        MDB_val k = as_val(key_hard_state), v = as_val(rec);
        out.rc = mdb_put(txn, meta_dbi_, &k, &v, 0);
        report.synced = true;
      }
      report.shape = next.value;
      report.after[n] = report.shape.as_persisted();
    }
    if (journal_seq > 0 && out.rc == 0 && out.err.ok()) {
      const std::string rec = encode_journal_seq(journal_seq);
      MDB_val k = as_val(key_journal_seq), v = as_val(rec);
      out.rc = mdb_put(txn, meta_dbi_, &k, &v, 0);
      report.synced = true;
    }
  }
  if (out.rc == 0 && out.err.ok()) {
    const auto start = std::chrono::steady_clock::now();
    out.rc = mdb_txn_commit(txn);  // writes the pages, fdatasyncs, writes the meta page
    report.took = std::chrono::steady_clock::now() - start;
    // Without the fsync option nothing is synced at all (MDB_NOSYNC).
    report.synced = report.synced && opts_.fsync;
  } else {
    mdb_txn_abort(txn);
  }
  return out;
}

result<commit_report> lmdb_env::commit(const log_shape& committed, std::span<const batch> batches,
                                       std::uint64_t journal_seq) {
  result<commit_report> out;
  for (;;) {  // one attempt per map size
    const attempt a = try_commit(committed, batches, journal_seq, out.value);
    if (a.rc == MDB_MAP_FULL && map_bytes_ < opts_.max_map_bytes) {
      // Grow and retry the same batches: nothing of the aborted attempt is on disk.
      const std::uint64_t next = std::min(map_bytes_ * 2, opts_.max_map_bytes);
      std::unique_lock lock(map_mutex_);
      const int rc = mdb_env_set_mapsize(env_, next);
      if (rc == 0) map_bytes_ = next;
      lock.unlock();
      if (rc == 0) {
        ++grows_;
        opts_.log(log_level::info, "LMDB map grown to " + std::to_string(next >> 20) + " MiB");
        continue;
      }
      out.err = lmdb_error(rc, "grow the LMDB map");
      return out;
    }
    if (a.rc == MDB_MAP_FULL) {
      out.err = make_error(errc::disk_full, "disk full: the LMDB map reached max_map_bytes (" +
                                                std::to_string(opts_.max_map_bytes) + " bytes)");
    } else if (a.rc == EIO &&
               free_bytes(opts_.dir) < std::max<std::uint64_t>(1 << 20, 2 * out.value.bytes)) {
      // LMDB reports a short page write as EIO; on a full filesystem that is ENOSPC.
      out.err = make_error(errc::disk_full,
                           "disk full: commit of the Raft log failed (short write) with " +
                               std::to_string(free_bytes(opts_.dir)) +
                               " bytes free on the filesystem of " + opts_.dir.string());
    } else if (a.rc != 0) {
      out.err = lmdb_error(a.rc, "commit of the Raft log");
    } else {
      out.err = a.err;
    }
    return out;
  }
}

}  // namespace raft::storage
