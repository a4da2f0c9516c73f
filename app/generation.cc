#include "app/generation.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>

#include "app/durable_file.h"
#include "base/log.h"

namespace app::generation {
namespace fs = std::filesystem;

namespace {

// The file's content; nullopt when there is none or when it cannot be read (`error` says).
std::optional<std::string> read_small(const fs::path& path, std::string& error) {
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (ec) {
    error = "cannot read " + path.string() + ": " + ec.message();
    return std::nullopt;
  }
  if (!exists) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) {
    error = "cannot read " + path.string();
    return std::nullopt;
  }
  // These files are small; a large one is not ours (and is refused by the parsers).
  return text.str().substr(0, 1 << 20);
}

std::uint64_t parse_hex16(std::string_view text) {
  if (text.size() != 16) return 0;
  std::uint64_t v = 0;
  for (char ch : text) {
    int d = 0;
    if (ch >= '0' && ch <= '9') {
      d = ch - '0';
    } else if (ch >= 'a' && ch <= 'f') {
      d = ch - 'a' + 10;
    } else {
      return 0;
    }
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return v;
}

std::uint64_t draw() {
  std::random_device entropy;
  std::uint64_t v = 0;
  while (v == 0) v = (std::uint64_t{entropy()} << 32) | entropy();
  return v;
}

}  // namespace

std::string format(std::uint64_t generation) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, generation >>= 4) {
    out[static_cast<std::size_t>(i)] = digits[generation & 0xf];
  }
  return out + "\n";
}

std::uint64_t parse(std::string_view text) {
  if (text.size() == 17 && text.back() == '\n') text.remove_suffix(1);
  return parse_hex16(text);
}

std::string format_peers(const peer_record& record) {
  std::string out;
  for (const auto& [id, generation] : record) out += std::to_string(id) + " " + format(generation);
  return out;
}

std::optional<peer_record> parse_peers(std::string_view text) {
  peer_record out;
  while (!text.empty()) {
    const auto eol = text.find('\n');
    if (eol == std::string_view::npos) return std::nullopt;  // every line ends with '\n'
    const std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol + 1);
    const auto space = line.find(' ');
    if (space == 0 || space == std::string_view::npos || space > 20) return std::nullopt;
    std::uint64_t id = 0;
    for (char ch : line.substr(0, space)) {
      if (ch < '0' || ch > '9') return std::nullopt;
      const std::uint64_t next = id * 10 + static_cast<std::uint64_t>(ch - '0');
      if (next / 10 != id) return std::nullopt;  // overflow
      id = next;
    }
    const std::uint64_t generation = parse_hex16(line.substr(space + 1));
    if (id == 0 || generation == 0 || !out.emplace(id, generation).second) return std::nullopt;
  }
  return out;
}

std::variant<loaded, std::string> load_or_create(const fs::path& data_dir, bool has_raft_state) {
  const fs::path path = data_dir / file_name;
  std::string error;
  const auto text = read_small(path, error);
  if (!error.empty()) return error;
  if (text) {
    const std::uint64_t value = parse(*text);
    if (value == 0) {
      return path.string() +
             ": malformed data-dir generation (expected one line of 16 hex digits); restore "
             "the data dir from a backup";
    }
    return loaded{value, false, false};
  }
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) return "cannot create " + data_dir.string() + ": " + ec.message();
  const std::uint64_t value = draw();
  if (auto err = write_file_atomically(path, format(value)); !err.empty()) return err;
  if (has_raft_state) {
    // A data dir of a version without the guard: its Raft state is real, so it is known.
    base::log(base::log_level::info, "data-dir generation ", format(value).substr(0, 16),
              " recorded in ", path.string(), " (the data dir already held Raft state)");
  } else {
    base::log(base::log_level::info, "new data dir: generation ", format(value).substr(0, 16),
              " recorded in ", path.string());
  }
  return loaded{value, true, !has_raft_state};
}

std::variant<peer_record, std::string> load_peers(const fs::path& data_dir) {
  const fs::path path = data_dir / peers_file_name;
  std::string error;
  const auto text = read_small(path, error);
  if (!error.empty()) return error;
  if (!text) return peer_record{};
  auto record = parse_peers(*text);
  if (!record) {
    return path.string() +
           ": malformed record of peer generations (expected lines \"<id> <16 hex digits>\"); "
           "restore the data dir from a backup";
  }
  return *record;
}

std::string save_peers(const fs::path& data_dir, const peer_record& record) {
  return write_file_atomically(data_dir / peers_file_name, format_peers(record));
}

std::string mark_refused(const fs::path& data_dir, std::string_view why) {
  std::string text(why);
  if (text.empty() || text.back() != '\n') text += '\n';
  return write_file_atomically(data_dir / refused_file_name, text);
}

std::optional<std::string> refused_mark(const fs::path& data_dir) {
  std::string error;
  auto text = read_small(data_dir / refused_file_name, error);
  if (!error.empty()) return error;
  if (text && !text->empty() && text->back() == '\n') text->pop_back();
  if (text && text->empty()) text = "refused (empty mark)";
  return text;
}

}  // namespace app::generation
