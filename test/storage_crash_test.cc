// Crash test of the LMDB Raft storage: a child process (this executable re-run with
// `--child DIR SEED`) appends batches, truncates, snapshots and compacts, and prints every
// outcome the store reported durable. The parent SIGKILLs it at random moments, many times,
// and after each kill reopens the data dir and checks:
//   - every entry reported persisted is there with the reported term, or is covered by the
//     snapshot; nothing after it was lost;
//   - the log is a clean prefix: contiguous from snapshot+1, terms never decrease, every
//     entry's payload intact (it is a function of its index and term);
//   - the snapshot bytes match their metadata; the hard state is not older than reported.
// Most kills land between two checkpoints, so most reopens replay journal records LMDB had
// not received (raft/storage/journal.h); the test counts them and fails if none did.
// Every failure prints the seed; RAFTKV_CRASH_SEED=N replays it, RAFTKV_CRASH_ROUNDS=N
// changes the number of kills (default 40).
#define BOOST_TEST_MODULE storage_crash_test
#define BOOST_TEST_NO_MAIN
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>

#include "raft/membership.h"
#include "raft/storage/lmdb_store.h"

namespace fs = std::filesystem;
using namespace raft;
using namespace raft::storage;

namespace {

// The payload of entry (index, term): any torn or misplaced byte shows.
std::string payload_of(std::uint64_t index, std::uint64_t term) {
  std::uint64_t x = index * 0x9E3779B97F4A7C15ull ^ term * 0xC2B2AE3D27D4EB4Full;
  std::string s((index * 31 + term * 7) % 300, '\0');
  for (auto& c : s) {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    c = static_cast<char>(x >> 56);
  }
  return s;
}

std::string snapshot_bytes(std::uint64_t index, std::uint64_t term) {
  return "snapshot " + std::to_string(index) + " " + std::to_string(term) + " " +
         std::string(8192, static_cast<char>('a' + index % 26));
}

void say(const std::string& line) {
  const std::string l = line + "\n";
  // One write(2) per line, unbuffered: what was printed before the kill reaches the parent.
  [[maybe_unused]] auto n = ::write(1, l.data(), l.size());
}

// ---- child ------------------------------------------------------------------------------

int child_main(const fs::path& dir, std::uint64_t seed) {
  options o;
  o.data_dir = dir;
  o.log = [](log_level, std::string_view) {};
  auto opened = lmdb_store::open(o);
  if (!opened.store) {
    say("error open " + opened.err.message);
    return 3;
  }
  auto& s = *opened.store;
  auto loaded = s.load();
  if (!loaded.ok()) {
    say("error load " + loaded.err.message);
    return 3;
  }
  say("open");  // the parent's kill timer starts here (see run_child)
  std::mt19937_64 rng(seed);
  std::uint64_t last = loaded.value.last_index.value;
  std::uint64_t term =
      std::max<std::uint64_t>(loaded.value.last_term.value, loaded.value.hard.term.value);
  if (term == 0) term = 1;
  std::uint64_t snap_index = loaded.value.snapshot ? loaded.value.snapshot->meta.index.value : 0;

  std::mutex m;
  std::condition_variable cv;
  int in_flight = 0;
  bool failed = false;
  const auto on_done = [&](std::string what) {
    return [&, what](const result<persisted>& r) {
      if (!r.ok()) {
        say("error submit " + r.err.message);
      } else {
        say(what + " " + std::to_string(r.value.last_index.value) + " " +
            std::to_string(r.value.last_term.value) + " " +
            std::to_string(r.value.hard.term.value));
      }
      std::lock_guard lock(m);
      failed = failed || !r.ok();
      --in_flight;
      cv.notify_all();
    };
  };

  for (;;) {
    {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return in_flight < 32 || failed; });
      if (failed) return 4;
      ++in_flight;
    }
    const auto dice = rng() % 100;
    batch b;
    if (dice < 3 && last > snap_index + 3) {
      // A new leader's entries replace an uncommitted suffix (§5.3). Announced after every
      // earlier report and before the submit: from then on the parent no longer expects the
      // old entries >= from.
      std::promise<void> barrier;
      s.submit(batch{}, [&barrier](const result<persisted>&) { barrier.set_value(); });
      barrier.get_future().wait();
      {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return in_flight == 1; });
      }
      const std::uint64_t from = last - rng() % 3;
      ++term;
      say("truncate " + std::to_string(from));
      b.truncate_from = index_t{from};
      last = from - 1;
    } else if (dice < 5 && last > snap_index) {
      // Snapshot at some index (synchronously waiting for the log to be durable up to it),
      // then the compaction that drops the prefix.
      std::promise<void> barrier;
      s.submit(batch{}, [&barrier](const result<persisted>&) { barrier.set_value(); });
      barrier.get_future().wait();
      {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return in_flight == 1; });
      }
      const std::uint64_t at = last - rng() % std::min<std::uint64_t>(last - snap_index, 50);
      auto at_entries = s.read_entries(index_t{at}, index_t{at});
      if (!at_entries.ok()) {
        say("error read " + at_entries.err.message);
        return 5;
      }
      const snapshot_meta meta{index_t{at}, at_entries.value[0].term,
                               raft::voters_only({node_id{1}})};
      if (auto err = s.write_snapshot(meta, snapshot_bytes(at, meta.term.value)); !err.ok()) {
        say("error snapshot " + err.message);
        return 5;
      }
      b.compaction = meta;
      snap_index = at;
      s.submit(std::move(b), on_done("compacted"));
      continue;
    }
    const auto n = 1 + rng() % 20;
    for (std::uint64_t k = 0; k < n; ++k) {
      ++last;
      b.entries.push_back(
          entry{term_t{term}, index_t{last}, entry_type::normal, payload_of(last, term)});
    }
    b.hard = hard_state{term_t{term}, node_id{1}, index_t{0}};
    s.submit(std::move(b), on_done("persisted"));
  }
}

// ---- parent -----------------------------------------------------------------------------

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "storage_crash_XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct child_run {
  std::vector<std::string> lines;
  int status = 0;
};

// Runs the child until kill_after has passed since it reported its store open, then
// SIGKILLs it; returns what it printed. The child is always reaped, even when a check
// fails. (Counting from the open, not the start: opening takes 170-250 ms on a slow disk,
// and a kill that always lands before the first write tests nothing.)
child_run run_child(const fs::path& dir, std::uint64_t seed, std::chrono::milliseconds kill_after) {
  int fds[2];
  BOOST_REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    const std::string seed_text = std::to_string(seed);
    ::execl("/proc/self/exe", "storage_crash_test", "--child", dir.c_str(), seed_text.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string buffer;
  // Until the child reports "open": a generous bound, then the kill.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool open = false;
  bool killed = false;
  char chunk[4096];
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (!killed && now >= deadline) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    int timeout_ms = -1;
    if (!killed)
      timeout_ms =
          static_cast<int>(
              std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) +
          1;
    pollfd p{fds[0], POLLIN, 0};
    const int rc = ::poll(&p, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) continue;
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n <= 0) break;  // EOF: the child is gone (after the kill, the pipe drains first)
    buffer.append(chunk, static_cast<std::size_t>(n));
    if (!open && buffer.find('\n') != std::string::npos) {
      open = true;  // its first line: "open", or an error
      deadline = std::chrono::steady_clock::now() + kill_after;
    }
  }
  ::close(fds[0]);
  if (!killed) ::kill(pid, SIGKILL);
  child_run out;
  ::waitpid(pid, &out.status, 0);
  std::istringstream in(buffer);
  for (std::string line; std::getline(in, line);) out.lines.push_back(line);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_reported_persisted_entry_survives_sigkill) {
  std::uint64_t seed = std::random_device{}();
  if (const char* env = std::getenv("RAFTKV_CRASH_SEED")) seed = std::strtoull(env, nullptr, 10);
  int rounds = 40;
  if (const char* env = std::getenv("RAFTKV_CRASH_ROUNDS")) rounds = std::atoi(env);
  BOOST_TEST_MESSAGE("seed " << seed << " (replay with RAFTKV_CRASH_SEED=" << seed << ")");
  std::mt19937_64 rng(seed);

  temp_dir dir;
  const fs::path data = dir.path / "node";
  std::map<std::uint64_t, std::uint64_t> expected;  // reported persisted: index -> term
  std::uint64_t reported_hard_term = 0;
  std::uint64_t total_reports = 0;
  int journal_replays = 0;

  for (int round = 0; round < rounds; ++round) {
    BOOST_TEST_CONTEXT("seed " << seed << " round " << round) {
      const auto kill_after = std::chrono::milliseconds(5 + rng() % 200);
      auto run = run_child(data, rng(), kill_after);
      BOOST_REQUIRE_MESSAGE(WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGKILL,
                            "child ended on its own (status "
                                << run.status
                                << "): " << (run.lines.empty() ? "" : run.lines.back()));
      for (const auto& line : run.lines) {
        std::istringstream in(line);
        std::string what;
        in >> what;
        BOOST_REQUIRE_MESSAGE(what != "error", line);
        if (what == "truncate") {
          std::uint64_t from = 0;
          in >> from;
          expected.erase(expected.lower_bound(from), expected.end());
        } else if (what == "persisted" || what == "compacted") {
          std::uint64_t index = 0, term = 0, hard_term = 0;
          in >> index >> term >> hard_term;
          // A persisted notice covers the whole log up to index: record its last entry.
          if (what == "persisted") expected[index] = term;
          reported_hard_term = std::max(reported_hard_term, hard_term);
          ++total_reports;
        }
      }

      options o;
      o.data_dir = data;
      o.log = [&](log_level, std::string_view text) {
        // The kill left journal records LMDB had not received yet (writer.h).
        if (text.find("journal: applied records") == 0) ++journal_replays;
      };
      auto opened = lmdb_store::open(o);
      BOOST_REQUIRE_MESSAGE(opened.store, opened.err.message);
      auto loaded = opened.store->load();
      BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
      const auto& st = loaded.value;

      std::uint64_t snap = 0;
      if (st.snapshot) {
        snap = st.snapshot->meta.index.value;
        BOOST_TEST(st.snapshot_data.view() == snapshot_bytes(snap, st.snapshot->meta.term.value));
      }
      // A clean prefix: contiguous from snap+1, terms never decrease, payloads intact.
      std::uint64_t prev_term = st.snapshot ? st.snapshot->meta.term.value : 0;
      for (std::size_t k = 0; k < st.entries.size(); ++k) {
        const auto& e = st.entries[k];
        BOOST_REQUIRE_EQUAL(e.index.value, snap + 1 + k);
        BOOST_REQUIRE(e.term.value >= prev_term);
        prev_term = e.term.value;
        BOOST_REQUIRE_MESSAGE(e.data == payload_of(e.index.value, e.term.value),
                              "payload of entry " << e.index.value << " is damaged");
      }
      BOOST_TEST(st.last_index.value == snap + st.entries.size());
      // Everything reported persisted is still there (or inside the snapshot).
      for (const auto& [index, term] : expected) {
        if (index <= snap) continue;
        BOOST_REQUIRE_MESSAGE(index <= st.last_index.value, "reported-persisted entry "
                                                                << index << " lost (log ends at "
                                                                << st.last_index.value << ")");
        BOOST_REQUIRE_MESSAGE(st.entries[index - snap - 1].term.value == term,
                              "entry " << index << " has term "
                                       << st.entries[index - snap - 1].term.value << ", reported "
                                       << term);
      }
      BOOST_TEST(st.hard.term.value >= reported_hard_term);
      opened.store->close();
      // Drop expectations the snapshot now covers.
      expected.erase(expected.begin(), expected.upper_bound(snap));
    }
  }
  BOOST_TEST_MESSAGE(rounds << " kills, " << total_reports << " persisted reports, "
                            << journal_replays << " reopens replayed the journal");
  BOOST_TEST(total_reports > 0u);  // the children did work (thousands on an idle machine)
  // Most kills land between two checkpoints (50 ms apart), so recovery from the journal is
  // what most reopens exercise.
  BOOST_TEST(journal_replays > 0);
}

int main(int argc, char* argv[]) {
  if (argc == 4 && std::strcmp(argv[1], "--child") == 0)
    return child_main(argv[2], std::strtoull(argv[3], nullptr, 10));
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
