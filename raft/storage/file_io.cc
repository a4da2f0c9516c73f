#include "raft/storage/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace raft::storage {

namespace fs = std::filesystem;

error errno_error(int e, std::string_view what) {
  const std::string text = std::generic_category().message(e);
  if (e == ENOSPC || e == EDQUOT)
    return make_error(errc::disk_full, "disk full: " + std::string(what) + ": " + text);
  return make_error(errc::io_error, "I/O error: " + std::string(what) + ": " + text);
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
  // Sized from fstat and read in place: a snapshot file may be gigabytes, and appending
  // 64 KiB at a time made the string reallocate (and copy) itself ~log2(size) times.
  // The size is a hint: the loop reads to end of file whatever it finds there.
  struct stat st {};
  std::size_t size = 0;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) size = static_cast<std::size_t>(st.st_size);
  std::string out(size + 1, '\0');  // one byte more, so that end of file is seen in place
  std::size_t have = 0;
  for (;;) {
    if (have == out.size()) out.resize(out.size() + (out.size() >> 1) + (1 << 16));
    const ssize_t n = ::read(fd, out.data() + have, out.size() - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return {{}, errno_error(e, "read " + path.string())};
    }
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(have);
  return {std::move(out), {}};
}

error fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "open directory " + dir.string());
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) return errno_error(e, "fsync directory " + dir.string());
  return {};
}

std::uint64_t free_bytes(const fs::path& dir) {
  struct statvfs sv {};
  if (::statvfs(dir.c_str(), &sv) != 0) return UINT64_MAX;
  return static_cast<std::uint64_t>(sv.f_bavail) * sv.f_frsize;
}

}  // namespace raft::storage
