#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>

namespace base {
namespace {
std::atomic<std::uint64_t> node_id_for_log{0};
std::atomic<log_level> min_level_for_log{log_level::info};

std::string_view level_name(log_level level) {
  switch (level) {
    case log_level::debug: return "DEBUG";
    case log_level::info: return "INFO";
    case log_level::warn: return "WARN";
    case log_level::error: return "ERROR";
  }
  return "?";
}
}  // namespace

void set_log_node_id(std::uint64_t id) { node_id_for_log = id; }
void set_log_level(log_level min_level) { min_level_for_log = min_level; }
bool log_enabled(log_level level) { return level >= min_level_for_log.load(); }

void log_line(log_level level, std::string_view message) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t seconds = system_clock::to_time_t(now);
  const auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  char prefix[96];
  std::snprintf(prefix, sizeof prefix, "%s.%03dZ %-5s node=%llu ", stamp, static_cast<int>(millis),
                level_name(level).data(),
                static_cast<unsigned long long>(node_id_for_log.load()));
  std::string line(prefix);
  line.append(message);
  line.push_back('\n');
  // One write per line: lines from different threads stay whole.
  const char* data = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, data, left);
    if (n <= 0) break;
    data += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace base
