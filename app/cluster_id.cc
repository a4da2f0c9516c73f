#include "app/cluster_id.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include "app/config.h"
#include "base/log.h"
#include "net/peer/transport.h"

namespace app::cluster_id {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int e) {
  return std::generic_category().message(e);
}

// Writes all of `bytes` to a new file at `path` and makes it durable: temporary file,
// fsync, rename, fsync of the directory.
std::string write_atomically(const fs::path& path, const std::string& bytes) {
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

}  // namespace

std::uint64_t derive(const config& c) {
  std::map<raft::node_id, std::string> members;
  for (const auto& m : c.members) members[raft::node_id(m.id)] = m.peer.text;
  return net::peer_transport::derive_cluster_id(members, c.cluster_token);
}

std::string format(std::uint64_t id) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) out[static_cast<std::size_t>(i)] = digits[id & 0xf];
  return out + "\n";
}

std::uint64_t parse(std::string_view text) {
  if (text.size() == 17 && text.back() == '\n') text.remove_suffix(1);
  if (text.size() != 16) return 0;
  std::uint64_t id = 0;
  for (char ch : text) {
    int v = 0;
    if (ch >= '0' && ch <= '9') {
      v = ch - '0';
    } else if (ch >= 'a' && ch <= 'f') {
      v = ch - 'a' + 10;
    } else {
      return 0;
    }
    id = (id << 4) | static_cast<std::uint64_t>(v);
  }
  return id;
}

std::variant<loaded, std::string> load_or_create(const fs::path& data_dir, std::uint64_t derived) {
  const fs::path path = data_dir / file_name;
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (ec) return "cannot read " + path.string() + ": " + ec.message();

  if (!exists) {
    fs::create_directories(data_dir, ec);
    if (ec) return "cannot create " + data_dir.string() + ": " + ec.message();
    if (auto err = write_atomically(path, format(derived)); !err.empty()) return err;
    base::log(base::log_level::info, "cluster id ", format(derived).substr(0, 16), " recorded in ",
              path.string());
    return loaded{derived, true, false};
  }

  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) return "cannot read " + path.string();
  // At most a line is expected; a larger file is not ours.
  const std::string content = text.str().substr(0, 64);
  const std::uint64_t id = parse(content);
  if (id == 0) {
    return path.string() +
           ": malformed cluster id (expected one line of 16 hex digits); restore the file, "
           "or empty the data dir to make this node new";
  }
  if (id != derived) {
    base::log(base::log_level::warn, "cluster id ", format(id).substr(0, 16), " from ",
              path.string(), " differs from ", format(derived).substr(0, 16),
              " derived from the config's [[cluster.member]] list and [cluster] token; keeping ",
              format(id).substr(0, 16),
              " (the list changed since bootstrap, or this data dir belongs to another cluster)");
  }
  return loaded{id, false, id != derived};
}

}  // namespace app::cluster_id
