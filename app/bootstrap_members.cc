#include "app/bootstrap_members.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include "app/config.h"
#include "app/durable_file.h"

namespace app::bootstrap_members {

namespace {
constexpr std::string_view header = "raftkv bootstrap members v1";
}  // namespace

raft::member to_member(const net::member_address& a, bool voter) {
  raft::member m{a.id, voter, {}};
  // In name order, as the configuration keeps them.
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"cs733", &a.cs733},
                                    {"http", &a.http},
                                    {"memcached", &a.memcached},
                                    {"peer", &a.peer}}) {
    if (!value->empty()) m.endpoints.emplace_back(name, *value);
  }
  return m;
}

net::member_address to_address(const raft::member& m) {
  net::member_address a;
  a.id = m.id;
  for (const auto& [name, value] : m.endpoints) {
    if (name == "peer") a.peer = value;
    if (name == "memcached") a.memcached = value;
    if (name == "cs733") a.cs733 = value;
    if (name == "http") a.http = value;
  }
  return a;
}

raft::membership from_config(const config& c) {
  raft::membership m;
  if (c.join) return m;
  for (const auto& a : c.member_addresses()) m.members.push_back(to_member(a, true));
  return m;
}

std::string format(const raft::membership& m) {
  std::string out(header);
  out += "\n";
  for (const auto& x : m.members) {
    out += std::to_string(x.id.value);
    out += x.voter ? " voter" : " learner";
    for (const auto& [name, value] : x.endpoints) out += " " + name + "=" + value;
    out += "\n";
  }
  return out;
}

std::variant<raft::membership, std::string> parse(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string line;
  if (!std::getline(in, line) || line != header) return std::string("bad first line");
  raft::membership m;
  int n = 1;
  while (std::getline(in, line)) {
    ++n;
    std::istringstream words(line);
    std::string id_text, role, pair;
    if (!(words >> id_text >> role)) return "line " + std::to_string(n) + ": malformed";
    std::uint64_t id = 0;
    const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (ec != std::errc{} || end != id_text.data() + id_text.size() || id == 0 ||
        (role != "voter" && role != "learner")) {
      return "line " + std::to_string(n) + ": malformed";
    }
    raft::member x{raft::node_id{id}, role == "voter", {}};
    while (words >> pair) {
      const auto eq = pair.find('=');
      if (eq == std::string::npos || eq == 0) return "line " + std::to_string(n) + ": malformed";
      x.endpoints.emplace_back(pair.substr(0, eq), pair.substr(eq + 1));
    }
    std::sort(x.endpoints.begin(), x.endpoints.end());
    if (!m.members.empty() && !(m.members.back().id < x.id)) {
      return "line " + std::to_string(n) + ": ids out of order";
    }
    m.members.push_back(std::move(x));
  }
  return m;
}

std::variant<loaded, std::string> load_or_create(const std::filesystem::path& data_dir,
                                                 const raft::membership& fallback) {
  const auto path = data_dir / file_name;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in && !in.eof()) return "cannot read " + path.string();
    auto parsed = parse(text.str());
    if (auto* err = std::get_if<std::string>(&parsed)) {
      return path.string() + ": " + *err;
    }
    return loaded{std::get<raft::membership>(std::move(parsed)), false};
  }
  if (ec) return "cannot stat " + path.string() + ": " + ec.message();
  std::filesystem::create_directories(data_dir, ec);
  if (auto err = write_file_atomically(path, format(fallback)); !err.empty()) return err;
  return loaded{fallback, true};
}

}  // namespace app::bootstrap_members
