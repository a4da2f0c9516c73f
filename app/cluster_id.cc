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
#include "app/durable_file.h"
#include "base/log.h"
#include "net/peer/transport.h"

namespace app::cluster_id {
namespace fs = std::filesystem;

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

bool exists(const fs::path& data_dir) {
  std::error_code ec;
  return fs::exists(data_dir / file_name, ec);
}

std::variant<loaded, std::string> load_or_create(const fs::path& data_dir, std::uint64_t derived) {
  const fs::path path = data_dir / file_name;
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (ec) return "cannot read " + path.string() + ": " + ec.message();

  if (!exists) {
    fs::create_directories(data_dir, ec);
    if (ec) return "cannot create " + data_dir.string() + ": " + ec.message();
    if (auto err = write_file_atomically(path, format(derived)); !err.empty()) return err;
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
