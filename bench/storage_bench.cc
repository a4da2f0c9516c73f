// Group-commit benchmark of the LMDB Raft storage: N writer threads, each with one write of
// one entry outstanding at a time (submit, wait for "persisted", repeat), for a fixed time.
// Prints entries/s, commits/s, fdatasyncs per commit, entries per commit and write latency
// percentiles.
//
//   storage_bench --dir /var/tmp/sb --writers 64 --seconds 5 --entry-bytes 100 [--no-fsync]
//   storage_bench --dir /var/tmp/sb --raw-syncs 500
//
// --raw-syncs N times N x (4 KiB pwrite + fdatasync) overwriting one block of an already
// written file in DIR (no size change, so no metadata to journal): the disk's floor for one
// durable write, for scale.
//
// The directory is wiped before and after the run. See bench/README-storage.md.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "raft/storage/lmdb_store.h"

namespace fs = std::filesystem;
using namespace raft;
using namespace raft::storage;
using clock_type = std::chrono::steady_clock;

namespace {

struct args {
  fs::path dir = "/var/tmp/raftkv-storage-bench";
  int writers = 1;
  double seconds = 5;
  std::size_t entry_bytes = 100;
  bool fsync = true;
  int raw_syncs = 0;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: storage_bench [--dir DIR] [--writers N] [--seconds S] [--entry-bytes B] "
               "[--no-fsync] [--raw-syncs N]\n");
  std::exit(2);
}

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (k == "--dir")
      a.dir = value();
    else if (k == "--writers")
      a.writers = std::atoi(value().c_str());
    else if (k == "--seconds")
      a.seconds = std::atof(value().c_str());
    else if (k == "--entry-bytes")
      a.entry_bytes = static_cast<std::size_t>(std::atoll(value().c_str()));
    else if (k == "--no-fsync")
      a.fsync = false;
    else if (k == "--raw-syncs")
      a.raw_syncs = std::atoi(value().c_str());
    else
      usage();
  }
  if (a.writers < 1 || a.seconds <= 0) usage();
  return a;
}

// One writer's single outstanding write.
struct slot {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  bool ok = true;
};

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()))];
}

int raw_syncs(const args& a) {
  std::error_code ec;
  fs::create_directories(a.dir, ec);
  const fs::path file = a.dir / "raw-sync-probe";
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror("open");
    return 1;
  }
  std::string block(4096, 'r');
  // Written and synced once first: the timed writes then change no size and no extent.
  if (::pwrite(fd, block.data(), block.size(), 0) != 4096 || ::fsync(fd) != 0) {
    std::perror("prepare");
    return 1;
  }
  std::vector<double> us;
  const auto t0 = clock_type::now();
  for (int i = 0; i < a.raw_syncs; ++i) {
    block[0] = static_cast<char>(i);
    const auto start = clock_type::now();
    if (::pwrite(fd, block.data(), block.size(), 0) != 4096 || ::fdatasync(fd) != 0) {
      std::perror("pwrite/fdatasync");
      return 1;
    }
    us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
  ::close(fd);
  fs::remove_all(a.dir, ec);
  std::printf("raw 4KiB pwrite+fdatasync: n=%d syncs/s=%.0f latency_us p50=%.0f p99=%.0f\n",
              a.raw_syncs, a.raw_syncs / elapsed, percentile(us, 0.5), percentile(us, 0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const args a = parse(argc, argv);
  if (a.raw_syncs > 0) return raw_syncs(a);
  std::error_code ec;
  fs::remove_all(a.dir, ec);

  options o;
  o.data_dir = a.dir;
  o.fsync = a.fsync;
  auto opened = lmdb_store::open(o);
  if (!opened.store) {
    std::fprintf(stderr, "open: %s\n", opened.err.message.c_str());
    return 1;
  }
  auto& store = *opened.store;
  if (auto loaded = store.load(); !loaded.ok()) {
    std::fprintf(stderr, "load: %s\n", loaded.err.message.c_str());
    return 1;
  }

  // Indexes must reach the store in order, so assigning one and submitting it is one step.
  std::mutex submit_mutex;
  std::uint64_t next_index = 1;
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::vector<std::vector<double>> latencies_us(a.writers);
  const std::string payload(a.entry_bytes, 'x');

  const auto writer = [&](int w) {
    slot s;
    auto& lat = latencies_us[w];
    while (!stop.load(std::memory_order_relaxed)) {
      const auto start = clock_type::now();
      {
        std::lock_guard lock(submit_mutex);
        batch b;
        b.entries.push_back(entry{term_t{1}, index_t{next_index++}, entry_type::normal, payload});
        s.done = false;
        store.submit(std::move(b), [&s](const result<persisted>& r) {
          std::lock_guard l(s.m);
          s.ok = r.ok();
          s.done = true;
          s.cv.notify_one();
        });
      }
      std::unique_lock l(s.m);
      s.cv.wait(l, [&] { return s.done; });
      if (!s.ok) {
        failed = true;
        return;
      }
      lat.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
    }
  };

  const auto before = store.stats();
  const auto t0 = clock_type::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < a.writers; ++w) threads.emplace_back(writer, w);
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));  // the measured run
  stop = true;
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
  const auto after = store.stats();
  store.close();
  fs::remove_all(a.dir, ec);
  if (failed) {
    std::fprintf(stderr, "a write failed: %s\n", store.health().message.c_str());
    return 1;
  }

  std::vector<double> all;
  for (auto& l : latencies_us) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  const auto pct = [&](double p) {
    return all.empty() ? 0.0
                       : all[std::min(all.size() - 1, static_cast<std::size_t>(p * all.size()))];
  };
  const double entries = static_cast<double>(after.entries - before.entries);
  const double commits = static_cast<double>(after.commits - before.commits);
  const double commit_ms =
      commits > 0
          ? static_cast<double>(after.commit_ns_total - before.commit_ns_total) / commits / 1e6
          : 0;
  const double syncs = static_cast<double>(after.syncs - before.syncs);
  const double checkpoints = static_cast<double>(after.checkpoints - before.checkpoints);
  const double checkpoint_ms =
      checkpoints > 0 ? static_cast<double>(after.checkpoint_ns_total - before.checkpoint_ns_total) /
                            checkpoints / 1e6
                      : 0;
  std::printf(
      "writers=%d entry_bytes=%zu fsync=%s seconds=%.2f entries/s=%.0f commits/s=%.0f "
      "syncs/commit=%.2f entries/commit=%.1f commit_ms=%.3f checkpoints/s=%.1f "
      "checkpoint_ms=%.2f latency_us p50=%.0f p99=%.0f max=%.0f\n",
      a.writers, a.entry_bytes, a.fsync ? "on" : "off", elapsed, entries / elapsed,
      commits / elapsed, commits > 0 ? syncs / commits : 0.0, commits > 0 ? entries / commits : 0.0,
      commit_ms, checkpoints / elapsed, checkpoint_ms, pct(0.50), pct(0.99),
      all.empty() ? 0.0 : all.back());
  return 0;
}
