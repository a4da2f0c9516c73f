// What the machine charges for the two things every replicated write does several times:
// a durable 4 KiB write, and waking another thread. Both are fixed costs per batch on
// every node, so they bound the CPU per write of small batches (bench/README-profile.md,
// "What a batch costs on this machine").
//
//   bench/platform_costs [dir]        (default /var/tmp; the files are removed at the end)
//
// Prints, for one pwrite + fdatasync of 4 KiB into a pre-written file: wall time and CPU
// time of the calling thread per sync; the median sync latency with 1, 2 and 3 writers on
// separate files at once (three nodes sharing one disk); and, for an eventfd round trip
// between two threads: wall time and CPU time on each side.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

double thread_cpu_us() {
  rusage r{};
  ::getrusage(RUSAGE_THREAD, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

bool write_all(int fd, const char* data, std::size_t n, off_t at) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, data, n, at);
    if (w <= 0) return false;
    data += w;
    at += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

struct sync_result {
  double wall_us = 0, cpu_us = 0, p50_us = 0;
  bool ok = false;
};

// `count` syncs of one 4 KiB page into an 8 MiB file written with zeros first (as the
// journal's files are), so that no sync has to change the file's size or extents.
sync_result measure_syncs(const std::string& path, int count) {
  sync_result r;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return r;
  std::vector<char> zeros(1 << 20, 0);
  bool ok = true;
  for (int i = 0; i < 8 && ok; ++i)
    ok = write_all(fd, zeros.data(), zeros.size(), static_cast<off_t>(i) << 20);
  ok = ok && ::fdatasync(fd) == 0;
  char page[4096];
  std::memset(page, 'x', sizeof page);
  std::vector<double> each;
  const double cpu0 = thread_cpu_us();
  const auto t0 = clock_type::now();
  for (int i = 0; i < count && ok; ++i) {
    const auto s = clock_type::now();
    ok = write_all(fd, page, sizeof page, static_cast<off_t>(i % 2048) * 4096) &&
         ::fdatasync(fd) == 0;
    each.push_back(us_since(s));
  }
  r.wall_us = us_since(t0) / count;
  r.cpu_us = (thread_cpu_us() - cpu0) / count;
  ::close(fd);
  ::unlink(path.c_str());
  if (!ok || each.empty()) return r;
  std::nth_element(each.begin(), each.begin() + each.size() / 2, each.end());
  r.p50_us = each[each.size() / 2];
  r.ok = true;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/var/tmp";
  const std::string base = dir + "/platform_costs." + std::to_string(::getpid());

  const sync_result one = measure_syncs(base + ".0", 2000);
  if (!one.ok) {
    std::fprintf(stderr, "platform_costs: cannot write and sync files in %s\n", dir.c_str());
    return 1;
  }
  std::printf("pwrite+fdatasync 4KiB: wall_us=%.1f cpu_us=%.1f p50_us=%.0f\n", one.wall_us,
              one.cpu_us, one.p50_us);

  for (int writers = 1; writers <= 3; ++writers) {
    std::vector<sync_result> results(static_cast<std::size_t>(writers));
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&results, &base, w] {
        results[static_cast<std::size_t>(w)] =
            measure_syncs(base + "." + std::to_string(w + 1), 1500);
      });
    }
    for (auto& t : threads) t.join();
    std::printf("concurrent writers=%d p50_us_each=", writers);
    for (const auto& r : results) std::printf("%s%.0f", &r == &results[0] ? "" : ",", r.p50_us);
    std::printf("\n");
  }

  // Two threads pass a token through two eventfds, each blocking in read(): every hop is
  // a sleep and a wake-up, as between an event loop and a storage thread.
  const int a = ::eventfd(0, EFD_CLOEXEC), b = ::eventfd(0, EFD_CLOEXEC);
  if (a < 0 || b < 0) {
    std::fprintf(stderr, "platform_costs: eventfd failed\n");
    return 1;
  }
  constexpr int rounds = 20000;
  double peer_cpu = 0;
  std::thread peer([&] {
    const double c0 = thread_cpu_us();
    std::uint64_t v = 0;
    for (int i = 0; i < rounds; ++i) {
      if (::read(a, &v, sizeof v) != sizeof v) break;
      v = 1;
      if (::write(b, &v, sizeof v) != sizeof v) break;
    }
    peer_cpu = thread_cpu_us() - c0;
  });
  const double c0 = thread_cpu_us();
  const auto t0 = clock_type::now();
  std::uint64_t v = 0;
  for (int i = 0; i < rounds; ++i) {
    v = 1;
    if (::write(a, &v, sizeof v) != sizeof v) break;
    if (::read(b, &v, sizeof v) != sizeof v) break;
  }
  const double wall = us_since(t0) / rounds;
  const double cpu = (thread_cpu_us() - c0) / rounds;
  peer.join();
  ::close(a);
  ::close(b);
  std::printf("eventfd round trip: wall_us=%.1f cpu_us_this_side=%.1f cpu_us_other_side=%.1f\n",
              wall, cpu, peer_cpu / rounds);
  return 0;
}
