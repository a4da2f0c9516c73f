#include "app/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace app {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int e) {
  return std::generic_category().message(e);
}

}  // namespace

std::string write_file_atomically(const fs::path& path, const std::string& bytes) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return "cannot create " + tmp.string() + ": " + errno_text(errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : EIO;
      ::close(fd);
      return "cannot write " + tmp.string() + ": " + errno_text(e);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    return "cannot fsync " + tmp.string() + ": " + errno_text(e);
  }
  if (::close(fd) != 0) return "cannot close " + tmp.string() + ": " + errno_text(errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return "cannot rename " + tmp.string() + " to " + path.string() + ": " + errno_text(errno);
  }
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return "cannot open " + dir.string() + ": " + errno_text(errno);
  const int rc = ::fsync(dfd);
  const int e = errno;
  ::close(dfd);
  if (rc != 0) return "cannot fsync " + dir.string() + ": " + errno_text(e);
  return {};
}

}  // namespace app
