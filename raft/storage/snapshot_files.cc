#include "raft/storage/snapshot_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "base/bytes.h"
#include "base/crc32c.h"
#include "raft/storage/file_io.h"
#include "raft/storage/records.h"

namespace raft::storage {

namespace fs = std::filesystem;

namespace {
constexpr std::string_view snapshot_magic = "RKVSNAP1";
}

std::string snapshot_file_name(const snapshot_meta& m) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "snapshot-%020llu-%020llu.snap",
                static_cast<unsigned long long>(m.index.value),
                static_cast<unsigned long long>(m.term.value));
  return buf;
}

std::optional<std::pair<index_t, term_t>> parse_snapshot_name(const std::string& name) {
  unsigned long long i = 0, t = 0;
  char tail[8] = {};
  if (name.size() != 55 ||
      std::sscanf(name.c_str(), "snapshot-%20llu-%20llu.%4s", &i, &t, tail) != 3 ||
      std::string_view(tail) != "snap")
    return std::nullopt;
  return std::pair{index_t{i}, term_t{t}};
}

std::string encode_snapshot_header(const snapshot_meta& meta, std::string_view data) {
  return encode_snapshot_header(meta, data.size(), base::crc32c(data));
}

std::string encode_snapshot_header(const snapshot_meta& meta, std::uint64_t data_len,
                                   std::uint32_t data_crc) {
  std::string header;
  base::byte_writer h(header);
  write_meta_body(h, meta);
  h.u64(data_len);
  h.u32(data_crc);
  std::string out(snapshot_magic);
  base::byte_writer w(out);
  w.u32(static_cast<std::uint32_t>(header.size()));
  w.u32(base::crc32c(header));
  out += header;
  return out;
}

namespace {

// Checks a whole file's bytes; returns the meta and where the data starts.
result<std::pair<snapshot_meta, std::size_t>> verify_snapshot_bytes(std::string_view bytes,
                                                                    const std::string& name) {
  using out = result<std::pair<snapshot_meta, std::size_t>>;
  const auto bad = [&](std::string why) {
    return out{{}, make_error(errc::corrupt, name + ": " + why)};
  };
  if (bytes.size() < 16 || bytes.substr(0, 8) != snapshot_magic) return bad("bad magic");
  const std::uint32_t header_len = base::load_le32(bytes.data() + 8);
  const std::uint32_t header_crc = base::load_le32(bytes.data() + 12);
  if (bytes.size() < 16ull + header_len) return bad("truncated header");
  const auto header = bytes.substr(16, header_len);
  if (base::crc32c(header) != header_crc) return bad("checksum mismatch in header");
  base::byte_reader r(header);
  auto meta = read_meta_body(r, name);
  if (!meta.ok()) return {{}, meta.err};
  const auto data_len = r.u64();
  const auto data_crc = r.u32();
  if (!data_len || !data_crc || !r.at_end()) return bad("malformed header");
  const auto data = bytes.substr(16 + header_len);
  if (data.size() != *data_len) return bad("size mismatch (torn or truncated)");
  if (base::crc32c(data) != *data_crc) return bad("checksum mismatch in data");
  return {{std::move(meta.value), 16 + std::size_t{header_len}}, {}};
}

}  // namespace

result<parsed_snapshot> parse_snapshot_bytes(std::string whole, const std::string& name) {
  auto checked = verify_snapshot_bytes(whole, name);
  if (!checked.ok()) return {{}, checked.err};
  whole.erase(0, checked.value.second);
  return {parsed_snapshot{std::move(checked.value.first), snapshot_payload(std::move(whole))}, {}};
}

snapshot_payload::~snapshot_payload() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

snapshot_payload::snapshot_payload(snapshot_payload&& other) noexcept { *this = std::move(other); }

snapshot_payload& snapshot_payload::operator=(snapshot_payload&& other) noexcept {
  if (this == &other) return *this;
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  // A view into a moved std::string would dangle when the string is small (its bytes live
  // inside the object): keep its offset and length and rebuild it.
  const bool owned = other.map_ == nullptr;
  const std::size_t offset =
      owned && !other.view_.empty() ? static_cast<std::size_t>(other.view_.data() - other.owned_.data()) : 0;
  const std::size_t len = other.view_.size();
  owned_ = std::move(other.owned_);
  map_ = std::exchange(other.map_, nullptr);
  map_bytes_ = std::exchange(other.map_bytes_, 0);
  view_ = owned ? std::string_view(owned_).substr(offset, len) : other.view_;
  other.owned_.clear();
  other.view_ = {};
  return *this;
}

result<snapshot_payload> snapshot_payload::map(int fd, std::size_t file_bytes,
                                               const std::string& name) {
  snapshot_payload out;
  void* p = ::mmap(nullptr, file_bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) return {{}, errno_error(errno, "map " + name)};
  out.map_ = p;
  out.map_bytes_ = file_bytes;
  out.view_ = std::string_view(static_cast<const char*>(p), file_bytes);
  return {std::move(out), {}};
}

result<std::vector<fs::path>> snapshot_dir::prepare() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec)
    return {{}, make_error(errc::io_error, "cannot create " + dir_.string() + ": " + ec.message())};
  // tmp-* files are snapshots a crash interrupted before their rename: never complete.
  std::vector<fs::path> removed;
  for (const auto& de : fs::directory_iterator(dir_, ec)) {
    if (de.path().filename().string().rfind("tmp-", 0) == 0) {
      std::error_code rm_ec;
      fs::remove(de.path(), rm_ec);
      removed.push_back(de.path());
    }
  }
  return {std::move(removed), {}};
}

result<snapshot_info> snapshot_dir::write(const snapshot_meta& meta, std::string_view data) {
  const std::string final_name = snapshot_file_name(meta);
  const fs::path tmp = dir_ / ("tmp-" + std::to_string(::getpid()) + "-" +
                               std::to_string(tmp_counter_.fetch_add(1)) + "-" + final_name);
  const fs::path dst = dir_ / final_name;
  // Readable too: a received snapshot is restored from a map of it (map_data).
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return {{}, errno_error(errno, "create " + tmp.string())};
  error err = write_all(fd, encode_snapshot_header(meta, data), tmp.string());
  if (err.ok()) err = write_all(fd, data, tmp.string());
  if (err.ok() && fsync_ && ::fsync(fd) != 0) err = errno_error(errno, "fsync " + tmp.string());
  if (::close(fd) != 0 && err.ok()) err = errno_error(errno, "close " + tmp.string());
  if (err.ok() && ::rename(tmp.c_str(), dst.c_str()) != 0)
    err = errno_error(errno, "rename to " + dst.string());
  if (!err.ok()) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return {{}, err};
  }
  // The rename is durable only once the directory is.
  if (fsync_) {
    if (err = fsync_dir(dir_); !err.ok()) return {{}, err};
  }
  return {snapshot_info{meta, dst, data.size()}, {}};
}

result<std::unique_ptr<snapshot_stream>> snapshot_dir::open_stream(const snapshot_meta& meta) {
  const std::string final_name = snapshot_file_name(meta);
  fs::path tmp = dir_ / ("tmp-" + std::to_string(::getpid()) + "-" +
                         std::to_string(tmp_counter_.fetch_add(1)) + "-" + final_name);
  // Readable too: a received snapshot is restored from a map of it (map_data).
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return {{}, errno_error(errno, "create " + tmp.string())};
  const std::size_t header_bytes = encode_snapshot_header(meta, 0, 0).size();
  return {std::make_unique<snapshot_stream>(fd, meta, dir_, std::move(tmp), dir_ / final_name,
                                            fsync_, header_bytes),
          {}};
}

snapshot_stream::snapshot_stream(int fd, snapshot_meta meta, fs::path dir, fs::path tmp,
                                 fs::path dst, bool fsync, std::size_t header_bytes)
    : fd_(fd),
      meta_(std::move(meta)),
      dir_(std::move(dir)),
      tmp_(std::move(tmp)),
      dst_(std::move(dst)),
      fsync_(fsync),
      header_bytes_(header_bytes) {}

snapshot_stream::~snapshot_stream() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(tmp_.c_str());
}

result<std::string_view> snapshot_stream::map_data() {
  if (map_ == nullptr) {
    if (!err_.ok()) return {{}, err_};
    if (fd_ < 0) return {{}, make_error(errc::io_error, "map " + tmp_.string() + ": closed")};
    if (bytes_ == 0) return {{}, make_error(errc::io_error, "map " + tmp_.string() + ": empty")};
    // From offset 0 (a map starts on a page boundary); the view skips the header gap.
    const std::size_t len = header_bytes_ + bytes_;
    void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) return {{}, errno_error(errno, "map " + tmp_.string())};
    ::madvise(p, len, MADV_SEQUENTIAL);  // a restore reads it once, front to back
    map_ = p;
    map_bytes_ = len;
  }
  return {std::string_view(static_cast<const char*>(map_) + header_bytes_, bytes_), {}};
}

bool snapshot_stream::append(std::string_view chunk) {
  if (!err_.ok()) return false;
  std::size_t done = 0;
  while (done < chunk.size()) {
    const ::ssize_t n = ::pwrite(fd_, chunk.data() + done, chunk.size() - done,
                                 static_cast<::off_t>(header_bytes_ + bytes_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err_ = errno_error(n < 0 ? errno : EIO, "write " + tmp_.string());
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  crc_ = base::crc32c(chunk, crc_);
  bytes_ += chunk.size();
  return true;
}

error snapshot_stream::complete() {
  if (err_.ok() && bytes_ == 0) err_ = make_error(errc::io_error, "empty snapshot data");
  if (err_.ok()) {
    const std::string header = encode_snapshot_header(meta_, bytes_, crc_);
    std::size_t done = 0;
    while (err_.ok() && done < header.size()) {
      const ::ssize_t n =
          ::pwrite(fd_, header.data() + done, header.size() - done, static_cast<::off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        err_ = errno_error(n < 0 ? errno : EIO, "write " + tmp_.string());
      } else {
        done += static_cast<std::size_t>(n);
      }
    }
  }
  return err_;
}

error snapshot_stream::make_durable() {
  if (finished_) return err_;
  if (err_.ok() && fd_ < 0) err_ = make_error(errc::io_error, "sync " + tmp_.string() + ": closed");
  if (err_.ok() && fsync_ && ::fsync(fd_) != 0) err_ = errno_error(errno, "fsync " + tmp_.string());
  if (fd_ >= 0 && ::close(fd_) != 0 && err_.ok())
    err_ = errno_error(errno, "close " + tmp_.string());
  fd_ = -1;
  if (err_.ok() && ::rename(tmp_.c_str(), dst_.c_str()) != 0)
    err_ = errno_error(errno, "rename to " + dst_.string());
  if (!err_.ok()) return err_;
  finished_ = true;
  // The rename is durable only once the directory is.
  if (fsync_) err_ = fsync_dir(dir_);
  return err_;
}

std::vector<snapshot_file> snapshot_dir::list() const {
  std::vector<snapshot_file> out;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir_, ec)) {
    if (auto parsed = parse_snapshot_name(de.path().filename().string()))
      out.push_back({parsed->first, parsed->second, de.path()});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::pair(a.index, a.term) > std::pair(b.index, b.term);
  });
  return out;
}

result<parsed_snapshot> snapshot_dir::read(const snapshot_file& f) const {
  const std::string name = "snapshot file " + f.path.string();
  const int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {{}, errno_error(errno, "open " + f.path.string())};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return {{}, errno_error(e, "stat " + f.path.string())};
  }
  const auto file_bytes = static_cast<std::size_t>(st.st_size);
  if (file_bytes < 16) {  // too short for a header (and a map of nothing is an error)
    ::close(fd);
    return {{}, make_error(errc::corrupt, name + ": bad magic")};
  }
  auto mapped = snapshot_payload::map(fd, file_bytes, name);
  ::close(fd);  // the map keeps the file
  if (!mapped.ok()) return {{}, mapped.err};
  auto checked = verify_snapshot_bytes(mapped.value.view(), name);
  if (!checked.ok()) return {{}, checked.err};
  auto& [meta, offset] = checked.value;
  if (meta.index != f.index || meta.term != f.term)
    return {{}, make_error(errc::corrupt, name + ": name and header disagree")};
  // The same map, viewing the data only.
  snapshot_payload data = std::move(mapped.value);
  data.narrow(offset);
  return {parsed_snapshot{std::move(meta), std::move(data)}, {}};
}

std::optional<std::pair<snapshot_info, snapshot_payload>> snapshot_dir::newest_valid(
    const snapshot_meta& recorded, const std::function<void(std::string)>& skipped) const {
  for (const auto& f : list()) {
    if (f.index < recorded.index) break;
    if (f.index == recorded.index && f.term != recorded.term) {
      skipped("ignoring snapshot " + f.path.string() +
              ": its term disagrees with the recorded snapshot");
      continue;
    }
    auto parsed = read(f);
    if (!parsed.ok()) {
      skipped("ignoring snapshot: " + parsed.err.message);
      continue;
    }
    snapshot_info info{parsed.value.meta, f.path, parsed.value.data.size()};
    return std::pair{std::move(info), std::move(parsed.value.data)};
  }
  return std::nullopt;
}

void snapshot_dir::remove_older_than(index_t index) const {
  for (const auto& f : list()) {
    if (f.index < index) {
      std::error_code ec;
      fs::remove(f.path, ec);
    }
  }
}

}  // namespace raft::storage
