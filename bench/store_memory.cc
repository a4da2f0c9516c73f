// Memory per item of kv::store against memcached, measured the same way for both.
//
//   store_memory [--items 1000000] [--value-bytes 100] [--memcached /usr/bin/memcached]
//                [--port 31499]
//
// 1. kv::store: applies `items` set commands (10-byte keys "k000000000", values of
//    `value-bytes` bytes, no expiry) through store::apply, as a replica does, and reports the
//    growth of the process's anonymous resident memory (/proc/self/status RssAnon) and of
//    malloc's in-use bytes (mallinfo2) per item. Then it times a find of every key, a listing
//    of 100 keys, an overwrite of every key in a scattered order, snapshot_to into a counting
//    sink and a restore, so a layout change that saves memory but costs speed shows up too.
// 2. memcached (when --memcached names an executable): starts `memcached -t 1 -m 1024` on
//    127.0.0.1:port, loads the same items over its text protocol (`set ... noreply` in
//    batches of 1,000 closed by `version`) and reports its RssAnon growth per item from
//    /proc/<pid>/status, then stops it (by pid).
//
// Output: `key=value` lines (see bench/README-scale.md, "Memory per item").
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kv/store.h"

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// RssAnon of /proc/<pid>/status in bytes (pid "self" for this process).
std::uint64_t rss_anon_bytes(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("RssAnon:")) return std::strtoull(line.c_str() + 8, nullptr, 10) * 1024;
  }
  return 0;
}

std::uint64_t malloc_in_use() {
  return mallinfo2().uordblks + mallinfo2().hblkhd;
}

std::string key_of(std::uint64_t i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "k%09llu", static_cast<unsigned long long>(i));
  return buf;
}

void measure_store(std::uint64_t items, std::size_t value_bytes) {
  kv::store_options o;
  o.max_memory_bytes = std::uint64_t{64} << 30;
  kv::store s(o);
  kv::command c;
  c.kind = kv::op::set;
  c.value.assign(value_bytes, 'v');
  c.timestamp_ms = 1'700'000'000'000;
  malloc_trim(0);
  const std::uint64_t rss0 = rss_anon_bytes("self");
  const std::uint64_t heap0 = malloc_in_use();
  auto t = clock_type::now();
  for (std::uint64_t i = 0; i < items; ++i) {
    c.key = key_of(i);
    if (s.apply(i + 1, c).code != kv::status::stored) {
      std::fprintf(stderr, "store_memory: set %llu failed\n", static_cast<unsigned long long>(i));
      std::exit(1);
    }
  }
  const double load_s = seconds_since(t);
  const std::uint64_t rss1 = rss_anon_bytes("self");
  const std::uint64_t heap1 = malloc_in_use();
  std::printf("store items=%llu value_bytes=%zu load_secs=%.2f items_per_s=%.0f\n",
              static_cast<unsigned long long>(items), value_bytes, load_s, items / load_s);
  std::printf(
      "store anon_rss_growth_mb=%.1f anon_bytes_per_item=%.1f heap_bytes_per_item=%.1f "
      "accounted_bytes_per_item=%.1f\n",
      (rss1 - rss0) / 1048576.0, double(rss1 - rss0) / items, double(heap1 - heap0) / items,
      double(s.stats().bytes) / items);

  t = clock_type::now();
  std::uint64_t hits = 0;
  for (std::uint64_t i = 0; i < items; ++i) hits += s.find(key_of(i), c.timestamp_ms) ? 1 : 0;
  const double find_s = seconds_since(t);
  t = clock_type::now();
  std::uint64_t listed = 0;
  for (int i = 0; i < 1000; ++i)
    listed += s.list("k0", key_of(i * 997), 100, c.timestamp_ms).size();
  const double list_s = seconds_since(t);
  std::printf("store finds=%llu hits=%llu find_ns=%.0f list100_us=%.1f listed=%llu\n",
              static_cast<unsigned long long>(items), static_cast<unsigned long long>(hits),
              find_s * 1e9 / items, list_s * 1e6 / 1000, static_cast<unsigned long long>(listed));

  // Overwrites of existing keys in a scattered order (a multiplicative walk over the key
  // space), as a steady write load applies them: each finds its item and replaces it.
  t = clock_type::now();
  for (std::uint64_t i = 0; i < items; ++i) {
    c.key = key_of((i * 2654435761u) % items);
    if (s.apply(items + i + 1, c).code != kv::status::stored) {
      std::fprintf(stderr, "store_memory: overwrite %llu failed\n",
                   static_cast<unsigned long long>(i));
      std::exit(1);
    }
  }
  const double update_s = seconds_since(t);
  std::printf("store overwrites=%llu overwrite_ns=%.0f\n", static_cast<unsigned long long>(items),
              update_s * 1e9 / items);

  t = clock_type::now();
  std::uint64_t snapshot_bytes = 0;
  s.snapshot_to([&](std::string_view chunk) {
    snapshot_bytes += chunk.size();
    return true;
  });
  const double snap_s = seconds_since(t);
  const std::string bytes = s.snapshot();
  kv::store restored(o);
  t = clock_type::now();
  const bool ok = restored.restore(bytes);
  const double restore_s = seconds_since(t);
  std::printf("store snapshot_bytes=%llu snapshot_to_secs=%.2f restore_secs=%.2f restore_ok=%d\n",
              static_cast<unsigned long long>(snapshot_bytes), snap_s, restore_s, ok ? 1 : 0);
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

int connect_with_deadline(int port, double seconds) {
  const auto start = clock_type::now();
  while (seconds_since(start) < seconds) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    ::close(fd);
    // Polling a server that is starting up: there is nothing to wait on but the port.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

void measure_memcached(const std::string& exe, int port, std::uint64_t items,
                       std::size_t value_bytes) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const std::string p = std::to_string(port);
    std::vector<const char*> args = {exe.c_str(), "-t", "1",       "-m", "1024", "-l",
                                     "127.0.0.1", "-p", p.c_str(), "-U", "0"};
    // memcached refuses to run as root unless told which user to be.
    if (::geteuid() == 0) args.insert(args.end(), {"-u", "root"});
    args.push_back(nullptr);
    ::execv(exe.c_str(), const_cast<char* const*>(args.data()));
    ::_exit(127);
  }
  const int fd = connect_with_deadline(port, 10);
  if (fd < 0) {
    std::fprintf(stderr, "store_memory: memcached did not start on port %d\n", port);
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string pid_s = std::to_string(pid);
  const std::uint64_t rss0 = rss_anon_bytes(pid_s);
  const std::string value(value_bytes, 'v');
  const auto t = clock_type::now();
  std::string batch;
  char reply[256];
  for (std::uint64_t first = 0; first < items; first += 1000) {
    batch.clear();
    for (std::uint64_t i = first; i < std::min(items, first + 1000); ++i) {
      batch += "set " + key_of(i) + " 0 0 " + std::to_string(value_bytes) + " noreply\r\n";
      batch += value;
      batch += "\r\n";
    }
    batch += "version\r\n";
    if (!send_all(fd, batch)) break;
    std::string got;
    while (got.find("\r\n") == std::string::npos) {
      const ssize_t n = ::recv(fd, reply, sizeof reply, 0);
      if (n <= 0) break;
      got.append(reply, static_cast<std::size_t>(n));
    }
    if (!got.starts_with("VERSION")) {
      std::fprintf(stderr, "store_memory: memcached answered %s\n", got.c_str());
      break;
    }
  }
  const double load_s = seconds_since(t);
  const std::uint64_t rss1 = rss_anon_bytes(pid_s);
  std::printf(
      "memcached items=%llu load_secs=%.2f anon_rss_growth_mb=%.1f anon_bytes_per_item=%.1f\n",
      static_cast<unsigned long long>(items), load_s, (rss1 - rss0) / 1048576.0,
      double(rss1 - rss0) / items);
  ::close(fd);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t items = 1'000'000;
  std::size_t value_bytes = 100;
  std::string memcached;
  int port = 31499;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--items")
      items = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--value-bytes")
      value_bytes = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--memcached")
      memcached = argv[i + 1];
    else if (flag == "--port")
      port = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr,
                   "usage: store_memory [--items N] [--value-bytes B] [--memcached EXE] "
                   "[--port P]\n");
      return 2;
    }
  }
  measure_store(items, value_bytes);
  if (!memcached.empty()) measure_memcached(memcached, port, items, value_bytes);
  return 0;
}
