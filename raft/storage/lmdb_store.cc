#include "raft/storage/lmdb_store.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <system_error>

#include "base/crc32c.h"

namespace raft::storage {

// Every record carries the same CRC-32C the kv snapshots and peer frames use.
using base::crc32c;

std::string_view to_string(errc e) {
  switch (e) {
    case errc::ok:
      return "ok";
    case errc::locked:
      return "locked";
    case errc::io_error:
      return "io_error";
    case errc::disk_full:
      return "disk_full";
    case errc::corrupt:
      return "corrupt";
    case errc::invalid_batch:
      return "invalid_batch";
    case errc::bad_format:
      return "bad_format";
    case errc::closed:
      return "closed";
  }
  return "unknown";
}

namespace {

namespace fs = std::filesystem;

constexpr std::uint32_t format_version = 1;
constexpr std::size_t entry_header_bytes = 24;  // crc 4 | type 1 | pad 3 | term 8 | index 8
constexpr std::string_view snapshot_magic = "RKVSNAP1";

constexpr std::string_view key_format = "format";
constexpr std::string_view key_hard_state = "hard_state";
constexpr std::string_view key_snapshot = "snapshot";

error make_error(errc code, std::string message) {
  return error{code, std::move(message)};
}

std::string errno_text(int e) {
  return std::generic_category().message(e);
}

// An LMDB return code as an error; ENOSPC is "disk full" wherever it shows up.
error lmdb_error(int rc, std::string_view what) {
  if (rc == ENOSPC)
    return make_error(errc::disk_full, "disk full: " + std::string(what) + ": " + mdb_strerror(rc));
  if (rc == MDB_MAP_FULL)
    return make_error(errc::disk_full, "disk full: " + std::string(what) + ": LMDB map is full");
  return make_error(errc::io_error, "I/O error: " + std::string(what) + ": " + mdb_strerror(rc));
}

error errno_error(int e, std::string_view what) {
  if (e == ENOSPC || e == EDQUOT)
    return make_error(errc::disk_full, "disk full: " + std::string(what) + ": " + errno_text(e));
  return make_error(errc::io_error, "I/O error: " + std::string(what) + ": " + errno_text(e));
}

// ---- little-endian encoding -------------------------------------------------------------

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}
std::uint32_t get_u32(const unsigned char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
std::uint64_t get_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
void set_u32(std::string& out, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}

// Log keys are big-endian so LMDB's default memcmp order is numeric order.
struct log_key {
  unsigned char bytes[8];
  explicit log_key(index_t i) {
    for (int k = 0; k < 8; ++k)
      bytes[7 - k] = static_cast<unsigned char>((i.value >> (8 * k)) & 0xFFu);
  }
  MDB_val val() { return MDB_val{sizeof bytes, bytes}; }
};
index_t key_index(const MDB_val& k) {
  std::uint64_t v = 0;
  const auto* p = static_cast<const unsigned char*>(k.mv_data);
  for (std::size_t i = 0; i < k.mv_size && i < 8; ++i) v = (v << 8) | p[i];
  return index_t{v};
}

MDB_val as_val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
std::string_view as_view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

// A record = crc32c(body) | body.
std::string seal(std::string body) {
  std::string out;
  out.reserve(4 + body.size());
  put_u32(out, crc32c(body));
  out += body;
  return out;
}

// The body of a sealed record, or an error naming it when the checksum does not match.
result<std::string_view> unseal(std::string_view record, std::string_view name) {
  if (record.size() < 4)
    return {{}, make_error(errc::corrupt, std::string(name) + ": record too short")};
  const auto stored = get_u32(reinterpret_cast<const unsigned char*>(record.data()));
  const auto body = record.substr(4);
  const auto computed = crc32c(body);
  if (stored != computed) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " (stored crc32c %08x, computed %08x)", stored, computed);
    return {{}, make_error(errc::corrupt, "checksum mismatch in " + std::string(name) + buf)};
  }
  return {body, {}};
}

void encode_entry(const entry& e, std::string& out) {
  out.clear();
  out.reserve(entry_header_bytes + e.data.size());
  put_u32(out, 0);  // crc, filled below
  out.push_back(static_cast<char>(e.type));
  out.append(3, '\0');
  put_u64(out, e.term.value);
  put_u64(out, e.index.value);
  out += e.data;
  set_u32(out, 0, crc32c(std::string_view(out).substr(4)));
}

result<entry> decode_entry(index_t key, std::string_view record) {
  const std::string name = "log entry " + std::to_string(key.value);
  auto body = unseal(record, name);
  if (!body.ok()) return {{}, body.err};
  if (record.size() < entry_header_bytes)
    return {{}, make_error(errc::corrupt, name + ": record too short")};
  const auto* p = reinterpret_cast<const unsigned char*>(record.data());
  entry e;
  if (p[4] > static_cast<unsigned char>(entry_type::noop))
    return {{}, make_error(errc::corrupt, name + ": unknown entry type " + std::to_string(p[4]))};
  e.type = static_cast<entry_type>(p[4]);
  e.term = term_t{get_u64(p + 8)};
  e.index = index_t{get_u64(p + 16)};
  if (e.index != key)
    return {{},
            make_error(errc::corrupt, name + ": stored index " + std::to_string(e.index.value) +
                                          " does not match its key")};
  e.data.assign(record.substr(entry_header_bytes));
  return {std::move(e), {}};
}

std::string encode_hard_state(const hard_state& h) {
  std::string body;
  put_u64(body, h.term.value);
  put_u64(body, h.vote.value);
  put_u64(body, h.commit.value);
  return seal(std::move(body));
}

result<hard_state> decode_hard_state(std::string_view record) {
  auto body = unseal(record, "hard state");
  if (!body.ok()) return {{}, body.err};
  if (body.value.size() != 24) return {{}, make_error(errc::corrupt, "hard state: wrong size")};
  const auto* p = reinterpret_cast<const unsigned char*>(body.value.data());
  return {hard_state{term_t{get_u64(p)}, node_id{get_u64(p + 8)}, index_t{get_u64(p + 16)}}, {}};
}

std::string encode_meta_body(const snapshot_meta& m) {
  std::string body;
  put_u64(body, m.index.value);
  put_u64(body, m.term.value);
  put_u32(body, static_cast<std::uint32_t>(m.voters.size()));
  for (auto v : m.voters) put_u64(body, v.value);
  return body;
}

// Parses what encode_meta_body wrote; `used` receives its length.
result<snapshot_meta> decode_meta_body(std::string_view body, std::string_view name,
                                       std::size_t* used = nullptr) {
  const auto bad = [&] {
    return result<snapshot_meta>{{}, make_error(errc::corrupt, std::string(name) + ": malformed")};
  };
  if (body.size() < 20) return bad();
  const auto* p = reinterpret_cast<const unsigned char*>(body.data());
  snapshot_meta m;
  m.index = index_t{get_u64(p)};
  m.term = term_t{get_u64(p + 8)};
  const std::uint64_t n = get_u32(p + 16);
  if (body.size() < 20 + 8 * n) return bad();
  for (std::uint64_t i = 0; i < n; ++i) m.voters.push_back(node_id{get_u64(p + 20 + 8 * i)});
  if (used) *used = 20 + 8 * n;
  return {std::move(m), {}};
}

// ---- files --------------------------------------------------------------------------------

error fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "open directory " + dir.string());
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) return errno_error(e, "fsync directory " + dir.string());
  return {};
}

error write_all(int fd, std::string_view bytes, const std::string& what) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "write " + what);
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

result<std::string> read_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {{}, errno_error(errno, "open " + path.string())};
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return {{}, errno_error(e, "read " + path.string())};
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return {std::move(out), {}};
}

std::string snapshot_file_name(const snapshot_meta& m) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "snapshot-%020llu-%020llu.snap",
                static_cast<unsigned long long>(m.index.value),
                static_cast<unsigned long long>(m.term.value));
  return buf;
}

// (index, term) from a snapshot file name, if it is one.
std::optional<std::pair<index_t, term_t>> parse_snapshot_name(const std::string& name) {
  unsigned long long i = 0, t = 0;
  char tail[8] = {};
  if (name.size() != 55 ||
      std::sscanf(name.c_str(), "snapshot-%20llu-%20llu.%4s", &i, &t, tail) != 3 ||
      std::string_view(tail) != "snap")
    return std::nullopt;
  return std::pair{index_t{i}, term_t{t}};
}

// Snapshot file: magic(8) | header_len u32 | header_crc u32 | header | data, where
// header = meta body | data_len u64 | data_crc u32.
std::string encode_snapshot_header(const snapshot_meta& meta, std::string_view data) {
  std::string header = encode_meta_body(meta);
  put_u64(header, data.size());
  put_u32(header, crc32c(data));
  std::string out(snapshot_magic);
  put_u32(out, static_cast<std::uint32_t>(header.size()));
  put_u32(out, crc32c(header));
  out += header;
  return out;
}

struct parsed_snapshot {
  snapshot_meta meta;
  std::string data;
};

result<parsed_snapshot> parse_snapshot_file(const fs::path& path) {
  auto file = read_file(path);
  if (!file.ok()) return {{}, file.err};
  const std::string name = "snapshot file " + path.string();
  const auto bad = [&](std::string why) {
    return result<parsed_snapshot>{{}, make_error(errc::corrupt, name + ": " + why)};
  };
  std::string_view bytes = file.value;
  if (bytes.size() < 16 || bytes.substr(0, 8) != snapshot_magic) return bad("bad magic");
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::uint32_t header_len = get_u32(p + 8);
  const std::uint32_t header_crc = get_u32(p + 12);
  if (bytes.size() < 16ull + header_len) return bad("truncated header");
  const auto header = bytes.substr(16, header_len);
  if (crc32c(header) != header_crc) return bad("checksum mismatch in header");
  std::size_t used = 0;
  auto meta = decode_meta_body(header, name, &used);
  if (!meta.ok()) return {{}, meta.err};
  if (header.size() != used + 12) return bad("malformed header");
  const auto* h = reinterpret_cast<const unsigned char*>(header.data()) + used;
  const std::uint64_t data_len = get_u64(h);
  const std::uint32_t data_crc = get_u32(h + 8);
  const auto data = bytes.substr(16 + header_len);
  if (data.size() != data_len) return bad("size mismatch (torn or truncated)");
  if (crc32c(data) != data_crc) return bad("checksum mismatch in data");
  return {parsed_snapshot{std::move(meta.value), std::string(data)}, {}};
}

struct snapshot_file {
  index_t index;
  term_t term;
  fs::path path;
};

// Every complete snapshot file, newest first.
std::vector<snapshot_file> list_snapshots(const fs::path& dir) {
  std::vector<snapshot_file> out;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir, ec)) {
    if (auto parsed = parse_snapshot_name(de.path().filename().string()))
      out.push_back({parsed->first, parsed->second, de.path()});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::pair(a.index, a.term) > std::pair(b.index, b.term);
  });
  return out;
}

// Bytes an unprivileged writer may still use on the filesystem holding dir (max on error).
std::uint64_t free_bytes(const fs::path& dir) {
  struct statvfs sv {};
  if (::statvfs(dir.c_str(), &sv) != 0) return UINT64_MAX;
  return static_cast<std::uint64_t>(sv.f_bavail) * sv.f_frsize;
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

}  // namespace

// ---- the store ----------------------------------------------------------------------------

struct lmdb_store::impl {
  // What is committed (writer thread only, after open).
  struct log_state {
    index_t last_index;
    term_t last_term;
    snapshot_meta snap;
    hard_state hard;
  };
  struct pending {
    batch b;
    submit_callback cb;
  };

  MDB_env* env = nullptr;
  MDB_dbi meta_dbi = 0;
  MDB_dbi log_dbi = 0;
  int lock_fd = -1;
  fs::path snapshot_dir;

  // Readers hold it shared for the life of a read transaction; the writer holds it
  // exclusively while resizing the map (LMDB: no transaction may be active then).
  mutable std::shared_mutex map_mutex;
  std::uint64_t map_bytes = 0;

  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<pending> queue;
  bool stopping = false;
  bool closed = false;

  mutable std::mutex state_mutex;
  error failure;                                 // set once, never cleared
  std::optional<snapshot_info> latest_snapshot;  // newest durable valid snapshot file
  std::atomic<std::uint64_t> commits{0}, batches{0}, entries{0}, bytes{0}, commit_ns{0}, grows{0};

  log_state committed;
  std::string scratch;  // entry encoding buffer (writer thread)
  std::atomic<std::uint64_t> tmp_counter{0};

  error failed() const {
    std::lock_guard lock(state_mutex);
    return failure;
  }
};

lmdb_store::lmdb_store(options opts) : opts_(std::move(opts)), impl_(std::make_unique<impl>()) {}

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

open_result lmdb_store::open(options opts) {
  std::unique_ptr<lmdb_store> s(new lmdb_store(std::move(opts)));
  auto& im = *s->impl_;
  const fs::path dir = s->opts_.data_dir;
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

  // One process per data dir: two writers would interleave their logs (SPEC §1.1).
  const fs::path lock_path = dir / "LOCK";
  im.lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (im.lock_fd < 0) return fail(errno_error(errno, "open " + lock_path.string()));
  if (::flock(im.lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    if (e == EWOULDBLOCK) {
      std::string pid = "unknown";
      if (auto content = read_file(lock_path); content.ok() && !content.value.empty()) {
        pid = content.value;
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      }
      ::close(im.lock_fd);
      im.lock_fd = -1;
      return fail(make_error(errc::locked, "data dir " + dir.string() +
                                               " is locked by another process (pid " + pid + ")"));
    }
    return fail(errno_error(e, "lock " + lock_path.string()));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(im.lock_fd, 0) != 0)
    return fail(errno_error(errno, "truncate " + lock_path.string()));
  if (auto err = write_all(im.lock_fd, pid, lock_path.string()); !err.ok()) return fail(err);

  im.snapshot_dir = dir / "snapshots";
  fs::create_directories(im.snapshot_dir, ec);
  if (ec)
    return fail(make_error(errc::io_error,
                           "cannot create " + im.snapshot_dir.string() + ": " + ec.message()));
  // tmp-* files are snapshots a crash interrupted before their rename: never complete.
  for (const auto& de : fs::directory_iterator(im.snapshot_dir, ec)) {
    if (de.path().filename().string().rfind("tmp-", 0) == 0) {
      std::error_code rm_ec;
      fs::remove(de.path(), rm_ec);
      s->log(log_level::info, "removed unfinished snapshot " + de.path().string());
    }
  }

  const auto& o = s->opts_;
  if (int rc = mdb_env_create(&im.env); rc != 0) return fail(lmdb_error(rc, "mdb_env_create"));
  mdb_env_set_maxdbs(im.env, 4);
  im.map_bytes = std::min(o.initial_map_bytes, o.max_map_bytes);
  if (int rc = mdb_env_set_mapsize(im.env, im.map_bytes); rc != 0)
    return fail(lmdb_error(rc, "mdb_env_set_mapsize"));
  // MDB_NOTLS: read transactions are not tied to a thread slot (readers come from any
  // thread). MDB_NOSYNC only when the operator asked for fsync = false.
  const unsigned flags = MDB_NOTLS | (o.fsync ? 0u : MDB_NOSYNC);
  if (int rc = mdb_env_open(im.env, dir.c_str(), flags, 0644); rc != 0) {
    mdb_env_close(im.env);
    im.env = nullptr;
    return fail(lmdb_error(rc, "open LMDB environment in " + dir.string()));
  }
  // Reader slots left by a killed process would pin old pages forever (the file would only
  // grow); we hold the LOCK, so every other slot is stale.
  int stale_readers = 0;
  mdb_reader_check(im.env, &stale_readers);
  MDB_envinfo info{};
  mdb_env_info(im.env, &info);
  im.map_bytes = info.me_mapsize;  // an existing env may already be larger

  // Create the databases and the format record, or check the format of an existing env.
  {
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(im.env, nullptr, 0, &txn); rc != 0)
      return fail(lmdb_error(rc, "begin"));
    int rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &im.meta_dbi);
    if (rc == 0) rc = mdb_dbi_open(txn, "log", MDB_CREATE, &im.log_dbi);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return fail(lmdb_error(rc, "open databases"));
    }
    MDB_val k = as_val(key_format), v{};
    rc = mdb_get(txn, im.meta_dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
      std::string body;
      put_u32(body, format_version);
      const std::string rec = seal(std::move(body));
      MDB_val rv = as_val(rec);
      rc = mdb_put(txn, im.meta_dbi, &k, &rv, 0);
      if (rc != 0) {
        mdb_txn_abort(txn);
        return fail(lmdb_error(rc, "write format record"));
      }
    } else if (rc == 0) {
      auto body = unseal(as_view(v), "format record");
      if (!body.ok()) {
        mdb_txn_abort(txn);
        return fail(body.err);
      }
      const auto version = body.value.size() == 4
                               ? get_u32(reinterpret_cast<const unsigned char*>(body.value.data()))
                               : 0;
      if (version != format_version) {
        mdb_txn_abort(txn);
        return fail(
            make_error(errc::bad_format, "data dir " + dir.string() + " has storage format " +
                                             std::to_string(version) + ", this build reads " +
                                             std::to_string(format_version)));
      }
    } else {
      mdb_txn_abort(txn);
      return fail(lmdb_error(rc, "read format record"));
    }
    if (rc = mdb_txn_commit(txn); rc != 0) return fail(lmdb_error(rc, "initialise environment"));
  }
  if (auto err = fsync_dir(dir); !err.ok() && o.fsync) return fail(err);

  // The committed state the writer starts from: hard state, snapshot record, last entry.
  // (A lambda so the read transaction ends before fail() closes the env.)
  const auto read_committed = [&]() -> error {
    read_txn rt(im.env);
    if (rt.rc != 0) return lmdb_error(rt.rc, "begin read");
    MDB_val k = as_val(key_hard_state), v{};
    if (mdb_get(rt.txn, im.meta_dbi, &k, &v) == 0) {
      auto h = decode_hard_state(as_view(v));
      if (!h.ok()) return h.err;
      im.committed.hard = h.value;
    }
    k = as_val(key_snapshot);
    if (mdb_get(rt.txn, im.meta_dbi, &k, &v) == 0) {
      auto body = unseal(as_view(v), "snapshot record");
      if (!body.ok()) return body.err;
      auto m = decode_meta_body(body.value, "snapshot record");
      if (!m.ok()) return m.err;
      im.committed.snap = m.value;
    }
    im.committed.last_index = im.committed.snap.index;
    im.committed.last_term = im.committed.snap.term;
    MDB_cursor* cur = nullptr;
    if (int rc = mdb_cursor_open(rt.txn, im.log_dbi, &cur); rc != 0)
      return lmdb_error(rc, "cursor");
    MDB_val ck{}, cv{};
    const int rc = mdb_cursor_get(cur, &ck, &cv, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == 0) {
      auto e = decode_entry(key_index(ck), as_view(cv));
      if (!e.ok()) return e.err;
      im.committed.last_index = e.value.index;
      im.committed.last_term = e.value.term;
    } else if (rc != MDB_NOTFOUND) {
      return lmdb_error(rc, "read last entry");
    }
    return {};
  };
  if (auto err = read_committed(); !err.ok()) return fail(err);

  if (!o.fsync)
    s->log(log_level::warning,
           "raft.fsync = false: commits are NOT flushed to disk; a power loss or kernel crash "
           "can lose acknowledged writes. Use only for throwaway benchmarks.");
  s->log(log_level::info, "opened " + dir.string() + " (last index " +
                              std::to_string(im.committed.last_index.value) + ", snapshot index " +
                              std::to_string(im.committed.snap.index.value) + ", map " +
                              std::to_string(im.map_bytes >> 20) + " MiB)");
  s->writer_ = std::thread([p = s.get()] { p->writer_main(); });
  return open_result{std::move(s), {}};
}

void lmdb_store::close() {
  if (!impl_) return;
  auto& im = *impl_;
  {
    std::lock_guard lock(im.queue_mutex);
    if (im.closed) return;
    im.stopping = true;
  }
  im.queue_cv.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard lock(im.queue_mutex);
    im.closed = true;
  }
  if (im.env) {
    mdb_env_close(im.env);
    im.env = nullptr;
  }
  if (im.lock_fd >= 0) {
    ::close(im.lock_fd);  // releases the flock
    im.lock_fd = -1;
  }
}

void lmdb_store::submit(batch b, submit_callback cb) {
  auto& im = *impl_;
  {
    std::lock_guard lock(im.queue_mutex);
    if (!im.stopping) {
      im.queue.push_back({std::move(b), std::move(cb)});
      im.queue_cv.notify_one();
      return;
    }
  }
  if (cb) cb(result<persisted>{{}, make_error(errc::closed, "storage is closed")});
}

namespace {

// Outcome of applying batches inside one write transaction.
struct apply_outcome {
  int rc = 0;  // an LMDB error (MDB_MAP_FULL means: grow and retry)
  error err;   // or a validation / corruption error
};

}  // namespace

void lmdb_store::writer_main() {
  auto& im = *impl_;
  for (;;) {
    std::deque<impl::pending> work;
    {
      std::unique_lock lock(im.queue_mutex);
      im.queue_cv.wait(lock, [&] { return !im.queue.empty() || im.stopping; });
      if (im.queue.empty()) return;  // stopping and drained
      work.swap(im.queue);
    }

    if (error f = im.failed(); !f.ok()) {
      for (auto& p : work)
        if (p.cb) p.cb(result<persisted>{{}, f});
      continue;
    }

    std::vector<persisted> outs(work.size());
    impl::log_state state;
    std::size_t entry_count = 0;
    std::uint64_t byte_count = 0;
    std::chrono::nanoseconds commit_time{};
    error err;

    for (;;) {  // one attempt per map size
      state = im.committed;
      entry_count = 0;
      byte_count = 0;
      MDB_txn* txn = nullptr;
      apply_outcome out;
      out.rc = mdb_txn_begin(im.env, nullptr, 0, &txn);
      MDB_cursor* cur = nullptr;
      if (out.rc == 0) out.rc = mdb_cursor_open(txn, im.log_dbi, &cur);

      // Reads the term of entry i inside this transaction (after a truncation, the new
      // last entry's term is needed for the persisted notice).
      const auto term_at = [&](index_t i) -> result<term_t> {
        if (i == state.snap.index) return {state.snap.term, {}};
        log_key key(i);
        MDB_val k = key.val(), v{};
        const int rc = mdb_get(txn, im.log_dbi, &k, &v);
        if (rc != 0) {
          return {
              {},
              make_error(errc::corrupt, "log entry " + std::to_string(i.value) + " is missing")};
        }
        auto e = decode_entry(i, as_view(v));
        if (!e.ok()) return {{}, e.err};
        return {e.value.term, {}};
      };

      for (std::size_t n = 0; n < work.size() && out.rc == 0 && out.err.ok(); ++n) {
        const batch& b = work[n].b;
        const auto invalid = [&](std::string why) {
          out.err = make_error(errc::invalid_batch, "invalid storage batch: " + why);
        };
        // §5.3: a follower deletes a conflicting entry and all that follow it.
        if (b.truncate_from) {
          const index_t from = *b.truncate_from;
          if (from <= state.snap.index) {
            invalid("truncate_from " + std::to_string(from.value) +
                    " is inside the snapshot (index " + std::to_string(state.snap.index.value) +
                    ")");
            break;
          }
          MDB_val k{}, v{};
          while (out.rc == 0) {
            int rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
            if (rc == MDB_NOTFOUND || (rc == 0 && key_index(k) < from)) break;
            if (rc == 0) rc = mdb_cursor_del(cur, 0);
            out.rc = rc;
          }
          if (out.rc != 0) break;
          if (from <= state.last_index) {
            state.last_index = from - 1;
            auto t = term_at(state.last_index);
            if (!t.ok()) {
              out.err = t.err;
              break;
            }
            state.last_term = t.value;
          }
        }
        for (const entry& e : b.entries) {
          if (e.index != state.last_index + 1) {
            invalid("entry " + std::to_string(e.index.value) + " does not follow the last index " +
                    std::to_string(state.last_index.value));
            break;
          }
          if (e.term.value == 0 || e.term < state.last_term) {
            invalid("entry " + std::to_string(e.index.value) + " has term " +
                    std::to_string(e.term.value) + ", below the previous term " +
                    std::to_string(state.last_term.value));
            break;
          }
          encode_entry(e, im.scratch);
          log_key key(e.index);
          MDB_val k = key.val(), v = as_val(im.scratch);
          // MDB_APPEND: keys arrive in increasing order, so LMDB can skip the search and
          // fill pages completely.
          out.rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND);
          if (out.rc != 0) break;
          state.last_index = e.index;
          state.last_term = e.term;
          ++entry_count;
          byte_count += e.data.size();
        }
        if (out.rc != 0 || !out.err.ok()) break;
        // §7: the snapshot replaces the log prefix it covers.
        if (b.compaction) {
          const snapshot_meta& m = *b.compaction;
          if (m.index < state.snap.index) {
            invalid("compaction at " + std::to_string(m.index.value) +
                    " is below the snapshot at " + std::to_string(state.snap.index.value));
            break;
          }
          if (m.index <= state.last_index && m.index > state.snap.index) {
            auto t = term_at(m.index);
            if (!t.ok()) {
              out.err = t.err;
              break;
            }
            if (t.value != m.term) {
              invalid("compaction at " + std::to_string(m.index.value) + " term " +
                      std::to_string(m.term.value) + " conflicts with the log's term " +
                      std::to_string(t.value.value) + " (truncate first)");
              break;
            }
          }
          const std::string rec = seal(encode_meta_body(m));
          MDB_val k = as_val(key_snapshot), v = as_val(rec);
          out.rc = mdb_put(txn, im.meta_dbi, &k, &v, 0);
          while (out.rc == 0) {
            int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
            if (rc == MDB_NOTFOUND || (rc == 0 && key_index(k) > m.index)) break;
            if (rc == 0) rc = mdb_cursor_del(cur, 0);
            out.rc = rc;
          }
          if (out.rc != 0) break;
          state.snap = m;
          if (state.last_index <= m.index) {
            state.last_index = m.index;
            state.last_term = m.term;
          }
        }
        // Figure 2: currentTerm and votedFor are stable before answering any RPC.
        if (b.hard) {
          const std::string rec = encode_hard_state(*b.hard);
          MDB_val k = as_val(key_hard_state), v = as_val(rec);
          out.rc = mdb_put(txn, im.meta_dbi, &k, &v, 0);
          if (out.rc != 0) break;
          state.hard = *b.hard;
        }
        outs[n] = persisted{state.last_index, state.last_term, state.hard};
      }
      if (cur) mdb_cursor_close(cur);

      if (out.rc == 0 && out.err.ok()) {
        const auto start = std::chrono::steady_clock::now();
        out.rc = mdb_txn_commit(txn);  // writes the pages, fsyncs, writes the meta page
        commit_time = std::chrono::steady_clock::now() - start;
        txn = nullptr;
      }
      if (txn) mdb_txn_abort(txn);

      if (out.rc == MDB_MAP_FULL && im.map_bytes < opts_.max_map_bytes) {
        // Grow and retry the same batches: nothing of the aborted attempt is on disk.
        const std::uint64_t next = std::min(im.map_bytes * 2, opts_.max_map_bytes);
        std::unique_lock lock(im.map_mutex);
        const int rc = mdb_env_set_mapsize(im.env, next);
        if (rc == 0) im.map_bytes = next;
        lock.unlock();
        if (rc == 0) {
          ++im.grows;
          log(log_level::info, "LMDB map grown to " + std::to_string(next >> 20) + " MiB");
          continue;
        }
        out.rc = rc;
      }
      if (out.rc == MDB_MAP_FULL) {
        err = make_error(errc::disk_full, "disk full: the LMDB map reached max_map_bytes (" +
                                              std::to_string(opts_.max_map_bytes) + " bytes)");
      } else if (out.rc == EIO &&
                 free_bytes(opts_.data_dir) < std::max<std::uint64_t>(1 << 20, 2 * byte_count)) {
        // LMDB reports a short page write as EIO; on a full filesystem that is ENOSPC.
        err = make_error(errc::disk_full,
                         "disk full: commit of the Raft log failed (short write) with " +
                             std::to_string(free_bytes(opts_.data_dir)) +
                             " bytes free on the filesystem of " + opts_.data_dir.string());
      } else if (out.rc != 0) {
        err = lmdb_error(out.rc, "commit of the Raft log");
      } else {
        err = out.err;
      }
      break;
    }

    if (!err.ok()) {
      {
        std::lock_guard lock(im.state_mutex);
        im.failure = err;
      }
      log(log_level::error, "storage failed, writes are refused from now on: " + err.message);
      for (auto& p : work)
        if (p.cb) p.cb(result<persisted>{{}, err});
      continue;
    }

    const snapshot_meta old_snap = im.committed.snap;
    im.committed = state;
    ++im.commits;
    im.batches += work.size();
    im.entries += entry_count;
    im.bytes += byte_count;
    im.commit_ns += static_cast<std::uint64_t>(commit_time.count());
    if (opts_.on_commit) opts_.on_commit(commit_time, work.size(), entry_count);
    // Older snapshot files are useless once the log prefix after them is gone. Removed
    // before the callbacks run, so a caller told "compacted" never still sees them.
    if (state.snap.index > old_snap.index) {
      for (const auto& f : list_snapshots(im.snapshot_dir)) {
        if (f.index < state.snap.index) {
          std::error_code ec;
          fs::remove(f.path, ec);
        }
      }
    }

    for (std::size_t n = 0; n < work.size(); ++n)
      if (work[n].cb) work[n].cb(result<persisted>{outs[n], {}});
  }
}

result<std::vector<entry>> lmdb_store::read_entries(index_t first, index_t last) const {
  auto& im = *impl_;
  result<std::vector<entry>> out;
  if (last < first) return out;
  std::shared_lock lock(im.map_mutex);
  read_txn rt(im.env);
  if (rt.rc != 0) return {{}, lmdb_error(rt.rc, "begin read")};
  MDB_cursor* cur = nullptr;
  if (int rc = mdb_cursor_open(rt.txn, im.log_dbi, &cur); rc != 0)
    return {{}, lmdb_error(rc, "cursor")};
  log_key key(first);
  MDB_val k = key.val(), v{};
  int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
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
    if (i < last) rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  if (!out.ok()) out.value.clear();
  return out;
}

result<loaded_state> lmdb_store::load() {
  auto& im = *impl_;
  const auto start = std::chrono::steady_clock::now();
  result<loaded_state> out;
  auto& st = out.value;
  snapshot_meta recorded;
  std::vector<entry> log_entries;
  {
    std::shared_lock lock(im.map_mutex);
    read_txn rt(im.env);
    if (rt.rc != 0) return {{}, lmdb_error(rt.rc, "begin read")};
    MDB_val k = as_val(key_hard_state), v{};
    if (mdb_get(rt.txn, im.meta_dbi, &k, &v) == 0) {
      auto h = decode_hard_state(as_view(v));
      if (!h.ok()) return {{}, h.err};
      st.hard = h.value;
    }
    k = as_val(key_snapshot);
    if (mdb_get(rt.txn, im.meta_dbi, &k, &v) == 0) {
      auto body = unseal(as_view(v), "snapshot record");
      if (!body.ok()) return {{}, body.err};
      auto m = decode_meta_body(body.value, "snapshot record");
      if (!m.ok()) return {{}, m.err};
      recorded = m.value;
    }
    MDB_cursor* cur = nullptr;
    if (int rc = mdb_cursor_open(rt.txn, im.log_dbi, &cur); rc != 0)
      return {{}, lmdb_error(rc, "cursor")};
    index_t expect = recorded.index + 1;
    term_t prev_term = recorded.term;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      const index_t i = key_index(k);
      if (k.mv_size != 8 || i != expect) {
        mdb_cursor_close(cur);
        return {{},
                make_error(errc::corrupt, "log is not contiguous: expected entry " +
                                              std::to_string(expect.value) + ", found " +
                                              std::to_string(i.value))};
      }
      auto e = decode_entry(i, as_view(v));
      if (!e.ok()) {
        mdb_cursor_close(cur);
        return {{}, e.err};
      }
      if (e.value.term < prev_term) {
        mdb_cursor_close(cur);
        return {{},
                make_error(errc::corrupt, "log entry " + std::to_string(i.value) + " has term " +
                                              std::to_string(e.value.term.value) +
                                              " below its predecessor's " +
                                              std::to_string(prev_term.value))};
      }
      prev_term = e.value.term;
      log_entries.push_back(std::move(e.value));
      ++expect;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) return {{}, lmdb_error(rc, "read log")};
  }

  // The newest valid snapshot file not older than the recorded one. A corrupt newer file is
  // skipped, never served.
  std::optional<snapshot_file> chosen;
  for (const auto& f : list_snapshots(im.snapshot_dir)) {
    if (f.index < recorded.index) break;
    if (f.index == recorded.index && f.term != recorded.term) {
      log(log_level::warning, "ignoring snapshot " + f.path.string() +
                                  ": its term disagrees with the recorded snapshot");
      continue;
    }
    auto parsed = parse_snapshot_file(f.path);
    if (parsed.ok() && (parsed.value.meta.index != f.index || parsed.value.meta.term != f.term)) {
      parsed.err = make_error(errc::corrupt,
                              "snapshot file " + f.path.string() + ": name and header disagree");
    }
    if (!parsed.ok()) {
      log(log_level::warning, "ignoring snapshot: " + parsed.err.message);
      continue;
    }
    chosen = f;
    st.snapshot = snapshot_info{parsed.value.meta, f.path, parsed.value.data.size()};
    st.snapshot_data = std::move(parsed.value.data);
    break;
  }
  if (recorded.index.value > 0 && !chosen) {
    return {{},
            make_error(errc::corrupt, "no valid snapshot file covers index " +
                                          std::to_string(recorded.index.value) +
                                          " (the log starts after it); the node cannot recover "
                                          "its state from this data dir")};
  }

  snapshot_meta base = recorded;
  if (chosen && chosen->index > recorded.index) {
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
    for (const auto& f : list_snapshots(im.snapshot_dir)) {
      if (f.index < chosen->index) {
        std::error_code ec;
        fs::remove(f.path, ec);
      }
    }
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
  const std::string final_name = snapshot_file_name(meta);
  const fs::path tmp =
      im.snapshot_dir / ("tmp-" + std::to_string(::getpid()) + "-" +
                         std::to_string(im.tmp_counter.fetch_add(1)) + "-" + final_name);
  const fs::path dst = im.snapshot_dir / final_name;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(errno, "create " + tmp.string());
  error err = write_all(fd, encode_snapshot_header(meta, data), tmp.string());
  if (err.ok()) err = write_all(fd, data, tmp.string());
  if (err.ok() && opts_.fsync && ::fsync(fd) != 0)
    err = errno_error(errno, "fsync " + tmp.string());
  if (::close(fd) != 0 && err.ok()) err = errno_error(errno, "close " + tmp.string());
  if (err.ok() && ::rename(tmp.c_str(), dst.c_str()) != 0)
    err = errno_error(errno, "rename to " + dst.string());
  if (!err.ok()) {
    std::error_code ec;
    fs::remove(tmp, ec);
    log(log_level::error,
        "snapshot at index " + std::to_string(meta.index.value) + " not written: " + err.message);
    return err;
  }
  // The rename is durable only once the directory is.
  if (opts_.fsync) {
    if (err = fsync_dir(im.snapshot_dir); !err.ok()) return err;
  }
  std::lock_guard lock(im.state_mutex);
  if (!im.latest_snapshot || im.latest_snapshot->meta.index <= meta.index)
    im.latest_snapshot = snapshot_info{meta, dst, data.size()};
  return {};
}

std::optional<snapshot_info> lmdb_store::latest_snapshot() const {
  std::lock_guard lock(impl_->state_mutex);
  return impl_->latest_snapshot;
}

result<std::string> lmdb_store::read_snapshot(const snapshot_info& info) const {
  auto parsed = parse_snapshot_file(info.path);
  if (!parsed.ok()) return {{}, parsed.err};
  if (parsed.value.meta != info.meta)
    return {{},
            make_error(errc::corrupt, "snapshot file " + info.path.string() +
                                          " does not hold the expected snapshot")};
  return {std::move(parsed.value.data), {}};
}

error lmdb_store::health() const {
  return impl_->failed();
}

store_stats lmdb_store::stats() const {
  const auto& im = *impl_;
  store_stats s;
  s.commits = im.commits;
  s.batches = im.batches;
  s.entries = im.entries;
  s.bytes = im.bytes;
  s.commit_ns_total = im.commit_ns;
  s.map_grows = im.grows;
  std::shared_lock lock(im.map_mutex);
  s.map_bytes = im.map_bytes;
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
