// Human-readable log lines on stderr: time, level, node id, message (docs/config.md).
// One process is one node, so the node id is process-wide. Called on any thread: each line is
// written with a single write(2) so lines from the storage thread never interleave.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

namespace base {

enum class log_level : std::uint8_t { debug = 0, info = 1, warn = 2, error = 3 };

void set_log_node_id(std::uint64_t id);
void set_log_level(log_level min_level);
bool log_enabled(log_level level);
void log_line(log_level level, std::string_view message);

// log(level, a, b, c...) streams its arguments into one line.
template <typename... Args>
void log(log_level level, const Args&... args) {
  if (!log_enabled(level)) return;
  std::ostringstream out;
  (out << ... << args);
  log_line(level, out.str());
}

}  // namespace base
