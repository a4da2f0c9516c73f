#include "raft/storage/snapshot_stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/bytes.h"
#include "base/crc32c.h"
#include "raft/storage/file_io.h"
#include "raft/storage/records.h"

namespace raft::storage {

namespace {

constexpr std::string_view snapshot_magic = "RKVSNAP1";

// Reads exactly n bytes at offset (retrying short reads and EINTR).
error pread_all(int fd, char* buf, std::size_t n, std::uint64_t offset, const std::string& what) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "reading " + what);
    }
    if (got == 0) return make_error(errc::corrupt, what + ": truncated");
    buf += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
  return {};
}

}  // namespace

result<std::unique_ptr<snapshot_file_source>> snapshot_file_source::open(
    const std::filesystem::path& path, const snapshot_meta& expect) {
  using out_t = result<std::unique_ptr<snapshot_file_source>>;
  const std::string name = path.filename().string();
  std::unique_ptr<snapshot_file_source> s(new snapshot_file_source());
  s->name_ = name;
  s->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (s->fd_ < 0) return out_t{nullptr, errno_error(errno, "opening " + path.string())};
  char fixed[16];
  if (auto err = pread_all(s->fd_, fixed, sizeof fixed, 0, name)) return out_t{nullptr, err};
  const auto bad = [&](std::string why) {
    return out_t{nullptr, make_error(errc::corrupt, name + ": " + why)};
  };
  if (std::string_view(fixed, 8) != snapshot_magic) return bad("bad magic");
  const std::uint32_t header_len = base::load_le32(fixed + 8);
  const std::uint32_t header_crc = base::load_le32(fixed + 12);
  if (header_len > (1u << 20)) return bad("implausible header length");
  std::string header(header_len, '\0');
  if (auto err = pread_all(s->fd_, header.data(), header_len, 16, name)) return out_t{nullptr, err};
  if (base::crc32c(header) != header_crc) return bad("checksum mismatch in header");
  base::byte_reader r(header);
  auto meta = read_meta_body(r, name);
  if (!meta.ok()) return out_t{nullptr, meta.err};
  const auto data_len = r.u64();
  const auto data_crc = r.u32();
  if (!data_len || !data_crc || !r.at_end()) return bad("malformed header");
  if (meta.value != expect) return bad("holds another snapshot than the one asked for");
  struct stat st {};
  if (::fstat(s->fd_, &st) != 0) return out_t{nullptr, errno_error(errno, "stat " + name)};
  s->data_offset_ = 16 + std::uint64_t{header_len};
  if (static_cast<std::uint64_t>(st.st_size) != s->data_offset_ + *data_len) {
    return bad("size mismatch (torn or truncated)");
  }
  s->size_ = *data_len;
  s->crc_ = *data_crc;
  return out_t{std::move(s), {}};
}

snapshot_file_source::~snapshot_file_source() {
  if (fd_ >= 0) ::close(fd_);
}

std::string snapshot_file_source::read(std::uint64_t offset, std::size_t n, std::string& out) {
  if (offset > size_) return name_ + ": read past the end";
  if (n > size_ - offset) n = static_cast<std::size_t>(size_ - offset);
  out.resize(n);
  if (auto err = pread_all(fd_, out.data(), n, data_offset_ + offset, name_)) return err.message;
  return {};
}

}  // namespace raft::storage
