// Power-loss test of the LMDB Raft storage: every batch reported persisted must survive
// losing every write that was not yet fdatasynced.
//
// The model: this executable defines fdatasync() and fsync(), so the calls liblmdb (and the
// store itself) make resolve here instead of in libc: symbol interposition of an executable
// over a shared library, no LD_PRELOAD. Each one runs the real system call, and when its fd
// is one of the watched files (data.mdb, journal-0, journal-1), that file's content right
// after the sync is kept as "what a power loss now would leave" of it (the worst case:
// every unsynced write lost). Writes made afterwards (the next journal record, LMDB's meta
// page under MDB_NOMETASYNC, a checkpoint's pages) are not in that image until that file's
// next sync.
//
// Whenever a callback reports a batch persisted, the test reopens the latest image in a
// scratch data dir with the real recovery path (lmdb_store::open + load) and checks the
// batch is in it: the reported last entry with its term, the hard state at least as new. A
// store that reported a batch before its journal record was synced, or that reused a
// journal file before LMDB durably held its records, fails here: the reopened image lacks
// the batch.
#define BOOST_TEST_MODULE storage_power_test
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "raft/storage/lmdb_store.h"

namespace fs = std::filesystem;
using namespace raft;
using namespace raft::storage;

namespace {

// What survives a power loss of the watched files: each one's content as of its last sync.
struct power_model {
  using image_t = std::map<std::string, std::shared_ptr<const std::string>>;  // name -> bytes
  std::mutex m;
  std::map<std::string, std::string> watched;  // absolute path -> file name in the data dir
  image_t durable;
  std::uint64_t syncs = 0;

  // From what the file holds now: the store synced it when it created it.
  void watch(const fs::path& file) {
    watched[fs::canonical(file).string()] = file.filename().string();
    std::ifstream in(file, std::ios::binary);
    durable[file.filename().string()] = std::make_shared<std::string>(
        std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  void on_sync(int fd) {
    char link[64];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    std::error_code ec;
    const fs::path target = fs::read_symlink(link, ec);
    std::lock_guard lock(m);
    if (ec) return;
    const auto w = watched.find(target.string());
    if (w == watched.end()) return;
    auto image = std::make_shared<std::string>();
    char buf[1 << 16];
    for (off_t at = 0;;) {
      const ssize_t n = ::pread(fd, buf, sizeof buf, at);
      if (n <= 0) break;
      image->append(buf, static_cast<std::size_t>(n));
      at += n;
    }
    durable[w->second] = std::move(image);
    ++syncs;
  }
  image_t image() {
    std::lock_guard lock(m);
    return durable;
  }
};

std::atomic<power_model*> g_model{nullptr};

}  // namespace

// The interposed calls (see the essay at the top).
extern "C" int fdatasync(int fd) {
  const int rc = static_cast<int>(::syscall(SYS_fdatasync, fd));
  if (rc == 0)
    if (auto* m = g_model.load()) m->on_sync(fd);
  return rc;
}
extern "C" int fsync(int fd) {
  const int rc = static_cast<int>(::syscall(SYS_fsync, fd));
  if (rc == 0)
    if (auto* m = g_model.load()) m->on_sync(fd);
  return rc;
}

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "storage_power_XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Small journal files: the run switches files and checkpoints many times, so reports land
// at every point of that cycle.
options quiet(const fs::path& dir,
              std::chrono::milliseconds checkpoint_interval = std::chrono::milliseconds(2)) {
  options o;
  o.data_dir = dir;
  o.log = [](log_level, std::string_view) {};
  o.journal_file_bytes = 32 << 10;
  o.checkpoint_interval = checkpoint_interval;
  return o;
}

std::string payload(std::uint64_t index) {
  return std::string(50 + index % 200, static_cast<char>('a' + index % 26));
}

// Reopens `image` as the files of a fresh data dir and says what is missing of `reported`
// (empty: all there).
std::string check_image(const power_model::image_t& image, const fs::path& scratch,
                        const persisted& reported) {
  std::error_code ec;
  fs::remove_all(scratch, ec);
  fs::create_directories(scratch);
  for (const auto& [name, bytes] : image) {
    const int fd = ::open((scratch / name).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return "cannot write the image";
    const bool ok =
        ::write(fd, bytes->data(), bytes->size()) == static_cast<ssize_t>(bytes->size());
    ::close(fd);
    if (!ok) return "cannot write the image";
  }
  auto opened = lmdb_store::open(quiet(scratch));
  if (!opened.store) return "the image does not open: " + opened.err.message;
  auto loaded = opened.store->load();
  if (!loaded.ok()) return "the image does not load: " + loaded.err.message;
  const auto& st = loaded.value;
  const std::string want = "reported last index " + std::to_string(reported.last_index.value) +
                           " term " + std::to_string(reported.last_term.value) + " hard term " +
                           std::to_string(reported.hard.term.value);
  if (st.last_index < reported.last_index)
    return want + ", but after the power loss the log ends at " +
           std::to_string(st.last_index.value);
  if (reported.last_index.value > 0) {
    const auto& e = st.entries.at(reported.last_index.value - 1);
    if (e.term != reported.last_term || e.data != payload(e.index.value))
      return want + ", but entry " + std::to_string(e.index.value) + " differs";
  }
  if (st.hard.term < reported.hard.term)
    return want + ", but the hard state has term " + std::to_string(st.hard.term.value);
  return {};
}

}  // namespace

namespace {

void every_reported_batch_survives(std::chrono::milliseconds checkpoint_interval) {
  temp_dir dir;
  const fs::path data = dir.path / "node";
  power_model model;
  auto s = lmdb_store::open(quiet(data, checkpoint_interval));
  BOOST_REQUIRE_MESSAGE(s.store, s.err.message);
  auto& store = *s.store;
  BOOST_REQUIRE(store.load().ok());
  for (const char* name : {"data.mdb", "journal-0", "journal-1"}) model.watch(data / name);
  g_model = &model;
  const std::uint64_t syncs_before = store.stats().syncs;  // open()'s, unseen by the model

  std::uint64_t seed = std::random_device{}();
  if (const char* env = std::getenv("RAFTKV_POWER_SEED")) seed = std::strtoull(env, nullptr, 10);
  BOOST_TEST_MESSAGE("seed " << seed << " (replay with RAFTKV_POWER_SEED=" << seed << ")");
  std::mt19937_64 rng(seed);

  // Callbacks run on the writer thread: they check and record, the test thread asserts.
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::string> problems;
  std::uint64_t reports = 0, in_flight = 0;
  const fs::path scratch = dir.path / "after-power-loss";
  const auto on_done = [&](const result<persisted>& r) {
    std::string problem =
        r.ok() ? check_image(model.image(), scratch, r.value) : "submit failed: " + r.err.message;
    std::lock_guard lock(m);
    if (!problem.empty()) problems.push_back(std::move(problem));
    ++reports;
    --in_flight;
    cv.notify_all();
  };

  constexpr int batches = 300;
  std::uint64_t last = 0, term = 1;
  for (int n = 0; n < batches; ++n) {
    {
      // Up to 8 batches in flight, so commits carry several and cover each other.
      std::unique_lock lock(m);
      BOOST_REQUIRE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return in_flight < 8; }));
      ++in_flight;
    }
    batch b;
    const auto dice = rng() % 10;
    if (dice == 0) {
      // A barrier: nothing to write, reported once everything before it is durable.
    } else if (dice == 1) {
      b.hard = hard_state{term_t{++term}, node_id{1}, index_t{0}};  // a vote, no entries
    } else {
      for (auto k = 1 + rng() % 5; k > 0; --k) {
        ++last;
        b.entries.push_back(entry{term_t{term}, index_t{last}, entry_type::normal, payload(last)});
      }
      if (rng() % 3 == 0) b.hard = hard_state{term_t{term}, node_id{1}, index_t{0}};
    }
    store.submit(std::move(b), on_done);
  }
  {
    std::unique_lock lock(m);
    BOOST_REQUIRE(cv.wait_for(lock, std::chrono::seconds(120), [&] { return in_flight == 0; }));
  }
  store.close();
  g_model = nullptr;

  std::lock_guard lock(m);
  BOOST_TEST(reports == static_cast<std::uint64_t>(batches));
  BOOST_TEST(model.syncs > 0u, "the interposed fdatasync never ran: the model saw nothing");
  for (std::size_t k = 0; k < problems.size() && k < 10; ++k) BOOST_ERROR(problems[k]);
  BOOST_TEST(problems.empty(), problems.size() << " reports were not durable");
  const auto st = store.stats();
  // The store's own count (what storage_bench reports as syncs/commit) is every sync made.
  BOOST_TEST(st.syncs - syncs_before == model.syncs);
  BOOST_TEST(st.checkpoints > 1u, "LMDB never caught up in the run: " << st.checkpoints);
  BOOST_TEST(st.journal_switches > 1u, "the journal never reused a file: " << st.journal_switches);
  BOOST_TEST_MESSAGE(st.commits << " journal records, " << st.checkpoints << " checkpoints, "
                                << st.journal_switches << " journal switches, " << st.syncs
                                << " syncs, " << model.syncs << " syncs seen by the model");
}

}  // namespace

// Checkpoints a few milliseconds behind the journal: the usual case.
BOOST_AUTO_TEST_CASE(every_reported_batch_survives_losing_unsynced_writes) {
  every_reported_batch_survives(std::chrono::milliseconds(2));
}

// Checkpoints only when the journal needs its other file back: a file must not be reused
// before LMDB durably holds every record in it.
BOOST_AUTO_TEST_CASE(a_journal_file_is_reused_only_after_its_checkpoint) {
  every_reported_batch_survives(std::chrono::minutes(10));
}
