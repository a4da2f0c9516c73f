// Unit tests of the LMDB Raft storage on temporary directories: round trips, reopen,
// truncation, compaction, snapshot files, checksums, the lock, map growth, disk full and
// the storage format version.
#define BOOST_TEST_MODULE storage_unit_test
#include <lmdb.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <string>

#include "raft/membership.h"
#include "raft/storage/lmdb_store.h"
#include "raft/storage/records.h"
#include "test/support/submit_wait.h"

namespace fs = std::filesystem;
using namespace raft;
using namespace raft::storage;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "storage_unit_XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

options quiet(const fs::path& dir) {
  options o;
  o.data_dir = dir;
  o.log = [](log_level, std::string_view) {};
  return o;
}

std::unique_ptr<lmdb_store> must_open(options o) {
  auto r = lmdb_store::open(std::move(o));
  BOOST_REQUIRE_MESSAGE(r.store, "open failed: " << r.err.message);
  return std::move(r.store);
}

entry make_entry(std::uint64_t index, std::uint64_t term, std::size_t bytes = 16) {
  entry e;
  e.index = index_t{index};
  e.term = term_t{term};
  std::string data(bytes, '\0');
  for (std::size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>('a' + (index * 7 + i) % 26);
  e.data = data;
  return e;
}

std::vector<entry> make_entries(std::uint64_t first, std::uint64_t last, std::uint64_t term,
                                std::size_t bytes = 16) {
  std::vector<entry> out;
  for (auto i = first; i <= last; ++i) out.push_back(make_entry(i, term, bytes));
  return out;
}

using test_support::submit_wait;

batch append(std::vector<entry> es) {
  batch b;
  b.entries = std::move(es);
  return b;
}

snapshot_meta meta(std::uint64_t index, std::uint64_t term) {
  return snapshot_meta{index_t{index}, term_t{term},
                       raft::voters_only({node_id{1}, node_id{2}, node_id{3}})};
}

// Flips one byte inside every copy of `needle` in the file (LMDB keeps old page copies).
int corrupt_every_copy(const fs::path& file, const std::string& needle) {
  std::ifstream in(file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  int n = 0;
  for (auto pos = bytes.find(needle); pos != std::string::npos; pos = bytes.find(needle, pos + 1)) {
    bytes[pos + needle.size() / 2] ^= 0x20;
    ++n;
  }
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(append_read_round_trip_and_reopen) {
  temp_dir dir;
  const hard_state hs{term_t{3}, node_id{2}, index_t{40}};
  {
    auto s = must_open(quiet(dir.path));
    auto loaded = s->load();
    BOOST_REQUIRE(loaded.ok());
    BOOST_TEST(loaded.value.entries.empty());
    BOOST_TEST(loaded.value.last_index.value == 0u);

    for (std::uint64_t first = 1; first <= 91; first += 10) {
      batch b = append(make_entries(first, first + 9, first < 50 ? 1 : 3, 100));
      if (first == 91) b.hard = hs;
      auto r = submit_wait(*s, std::move(b));
      BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
      BOOST_TEST(r.value.last_index.value == first + 9);
      BOOST_TEST(r.value.last_term.value == (first < 50 ? 1u : 3u));
    }
    auto read = s->read_entries(index_t{5}, index_t{60});
    BOOST_REQUIRE(read.ok());
    BOOST_REQUIRE(read.value.size() == 56u);
    BOOST_TEST((read.value.front() == make_entry(5, 1, 100)));
    BOOST_TEST((read.value.back() == make_entry(60, 3, 100)));
    BOOST_TEST(!s->read_entries(index_t{95}, index_t{101}).ok());  // 101 does not exist
    s->close();
  }
  auto s = must_open(quiet(dir.path));
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST((loaded.value.hard == hs));
  BOOST_TEST(!loaded.value.snapshot.has_value());
  BOOST_REQUIRE(loaded.value.entries.size() == 100u);
  for (std::uint64_t i = 1; i <= 100; ++i)
    BOOST_TEST((loaded.value.entries[i - 1] == make_entry(i, i <= 50 ? 1 : 3, 100)));
  BOOST_TEST(loaded.value.last_index.value == 100u);
  BOOST_TEST(loaded.value.last_term.value == 3u);
  // Appending continues where the log ended.
  auto r = submit_wait(*s, append({make_entry(101, 3)}));
  BOOST_TEST(r.ok());
  BOOST_TEST(r.value.last_index.value == 101u);
}

BOOST_AUTO_TEST_CASE(truncate_replaces_a_conflicting_suffix) {
  temp_dir dir;
  auto s = must_open(quiet(dir.path));
  BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 10, 1))).ok());

  batch b;  // §5.3: entries 6.. conflict; replaced by the leader's term-2 entries
  b.truncate_from = index_t{6};
  b.entries = make_entries(6, 8, 2);
  auto r = submit_wait(*s, std::move(b));
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST(r.value.last_index.value == 8u);
  BOOST_TEST(r.value.last_term.value == 2u);

  batch only_truncate;  // the persisted notice names the new last entry and its term
  only_truncate.truncate_from = index_t{8};
  r = submit_wait(*s, std::move(only_truncate));
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value.last_index.value == 7u);
  BOOST_TEST(r.value.last_term.value == 2u);
  s->close();

  s = must_open(quiet(dir.path));
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_REQUIRE(loaded.value.entries.size() == 7u);
  BOOST_TEST((loaded.value.entries[4] == make_entry(5, 1)));
  BOOST_TEST((loaded.value.entries[5] == make_entry(6, 2)));
  BOOST_TEST((loaded.value.entries[6] == make_entry(7, 2)));
}

BOOST_AUTO_TEST_CASE(compaction_drops_the_prefix_and_older_snapshot_files) {
  temp_dir dir;
  auto s = must_open(quiet(dir.path));
  BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 20, 1))).ok());
  BOOST_REQUIRE(s->write_snapshot(meta(10, 1), "state-at-10").ok());
  batch c;
  c.compaction = meta(10, 1);
  auto r = submit_wait(*s, std::move(c));
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST(r.value.last_index.value == 20u);
  BOOST_TEST(!s->read_entries(index_t{10}, index_t{10}).ok());  // gone
  BOOST_TEST(s->read_entries(index_t{11}, index_t{20}).ok());

  BOOST_REQUIRE(s->write_snapshot(meta(15, 1), "state-at-15").ok());
  c.compaction = meta(15, 1);
  BOOST_REQUIRE(submit_wait(*s, std::move(c)).ok());
  std::size_t files = 0;
  for (const auto& de : fs::directory_iterator(dir.path / "snapshots")) {
    ++files;
    BOOST_TEST(de.path().filename().string().find("00000000000000000015") != std::string::npos);
  }
  BOOST_TEST(files == 1u);
  auto latest = s->latest_snapshot();
  BOOST_REQUIRE(latest.has_value());
  BOOST_TEST((latest->meta == meta(15, 1)));
  auto bytes = s->read_snapshot(*latest);
  BOOST_REQUIRE(bytes.ok());
  BOOST_TEST(bytes.value == "state-at-15");

  // A follower installing a snapshot beyond its log (§7): the log restarts after it.
  BOOST_REQUIRE(s->write_snapshot(meta(30, 2), "state-at-30").ok());
  batch install;
  install.truncate_from = index_t{16};
  install.compaction = meta(30, 2);
  r = submit_wait(*s, std::move(install));
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST(r.value.last_index.value == 30u);
  BOOST_TEST(r.value.last_term.value == 2u);
  BOOST_REQUIRE(submit_wait(*s, append(make_entries(31, 32, 2))).ok());
  s->close();

  s = must_open(quiet(dir.path));
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_REQUIRE(loaded.value.snapshot.has_value());
  BOOST_TEST((loaded.value.snapshot->meta == meta(30, 2)));
  BOOST_TEST(loaded.value.snapshot_data.view() == "state-at-30");
  BOOST_REQUIRE(loaded.value.entries.size() == 2u);
  BOOST_TEST(loaded.value.entries[0].index.value == 31u);
  BOOST_TEST(loaded.value.last_index.value == 32u);
}

BOOST_AUTO_TEST_CASE(crash_between_snapshot_file_and_compaction_is_completed_at_load) {
  temp_dir dir;
  {
    auto s = must_open(quiet(dir.path));
    BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 20, 1))).ok());
    BOOST_REQUIRE(s->write_snapshot(meta(12, 1), "twelve").ok());
    // no compaction submitted: as if the process died here
  }
  auto s = must_open(quiet(dir.path));
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_REQUIRE(loaded.value.snapshot.has_value());
  BOOST_TEST(loaded.value.snapshot->meta.index.value == 12u);
  BOOST_REQUIRE(loaded.value.entries.size() == 8u);
  BOOST_TEST(loaded.value.entries.front().index.value == 13u);
  BOOST_TEST(!s->read_entries(index_t{12}, index_t{12}).ok());  // the prefix is gone now
}

BOOST_AUTO_TEST_CASE(corrupt_newest_snapshot_falls_back_to_the_previous_one) {
  temp_dir dir;
  {
    auto s = must_open(quiet(dir.path));
    BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 20, 1))).ok());
    BOOST_REQUIRE(s->write_snapshot(meta(5, 1), "snapshot five").ok());
    BOOST_REQUIRE(s->write_snapshot(meta(15, 1), "snapshot fifteen").ok());
  }
  const fs::path newest =
      dir.path / "snapshots" / "snapshot-00000000000000000015-00000000000000000001.snap";
  BOOST_REQUIRE(corrupt_every_copy(newest, "fifteen") == 1);
  // A torn write (never renamed) must be ignored and removed too.
  std::ofstream(dir.path / "snapshots" / "tmp-1-0-snapshot-x.snap") << "torn";

  auto s = must_open(quiet(dir.path));
  BOOST_TEST(!fs::exists(dir.path / "snapshots" / "tmp-1-0-snapshot-x.snap"));
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_REQUIRE(loaded.value.snapshot.has_value());
  BOOST_TEST(loaded.value.snapshot->meta.index.value == 5u);
  BOOST_TEST(loaded.value.snapshot_data.view() == "snapshot five");
  BOOST_REQUIRE(loaded.value.entries.size() == 15u);
  BOOST_TEST(loaded.value.entries.front().index.value == 6u);
}

BOOST_AUTO_TEST_CASE(corrupt_only_snapshot_after_compaction_is_a_clear_error) {
  temp_dir dir;
  {
    auto s = must_open(quiet(dir.path));
    BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 20, 1))).ok());
    BOOST_REQUIRE(s->write_snapshot(meta(15, 1), "snapshot fifteen").ok());
    batch c;
    c.compaction = meta(15, 1);
    BOOST_REQUIRE(submit_wait(*s, std::move(c)).ok());
  }
  BOOST_REQUIRE(corrupt_every_copy(dir.path / "snapshots" /
                                       "snapshot-00000000000000000015-00000000000000000001.snap",
                                   "fifteen") == 1);
  auto s = must_open(quiet(dir.path));
  auto loaded = s->load();
  BOOST_REQUIRE(!loaded.ok());
  BOOST_TEST((loaded.err.code == errc::corrupt));
  BOOST_TEST(loaded.err.message.find("no valid snapshot file covers index 15") != std::string::npos,
             loaded.err.message);
}

BOOST_AUTO_TEST_CASE(checksum_mismatch_in_a_log_entry_is_detected_on_reopen) {
  temp_dir dir;
  {
    auto s = must_open(quiet(dir.path));
    BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 4, 1))).ok());
    entry marked = make_entry(5, 1);
    marked.data = "PAYLOAD-OF-ENTRY-FIVE";
    BOOST_REQUIRE(submit_wait(*s, append({marked})).ok());
    BOOST_REQUIRE(submit_wait(*s, append(make_entries(6, 9, 1))).ok());
  }
  BOOST_REQUIRE(corrupt_every_copy(dir.path / "data.mdb", "PAYLOAD-OF-ENTRY-FIVE") >= 1);

  auto s = must_open(quiet(dir.path));  // the last entry is fine, so open succeeds
  auto loaded = s->load();
  BOOST_REQUIRE(!loaded.ok());
  BOOST_TEST((loaded.err.code == errc::corrupt));
  BOOST_TEST(loaded.err.message.find("checksum mismatch in log entry 5") != std::string::npos,
             loaded.err.message);
  auto read = s->read_entries(index_t{4}, index_t{6});
  BOOST_TEST(!read.ok());
  BOOST_TEST(read.err.message.find("log entry 5") != std::string::npos, read.err.message);
  BOOST_TEST(s->read_entries(index_t{6}, index_t{9}).ok());
}

BOOST_AUTO_TEST_CASE(checksum_mismatch_in_the_hard_state_fails_open) {
  temp_dir dir;
  {
    auto s = must_open(quiet(dir.path));
    batch b;
    b.hard = hard_state{term_t{0x5151515151515151ull}, node_id{1}, index_t{0}};
    BOOST_REQUIRE(submit_wait(*s, std::move(b)).ok());
  }
  BOOST_REQUIRE(corrupt_every_copy(dir.path / "data.mdb", std::string(8, '\x51')) >= 1);
  auto r = lmdb_store::open(quiet(dir.path));
  BOOST_REQUIRE(!r.store);
  BOOST_TEST((r.err.code == errc::corrupt));
  BOOST_TEST(r.err.message.find("checksum mismatch in hard state") != std::string::npos,
             r.err.message);
}

BOOST_AUTO_TEST_CASE(second_open_of_a_data_dir_is_refused_with_the_owner_pid) {
  temp_dir dir;
  auto first = must_open(quiet(dir.path));
  auto second = lmdb_store::open(quiet(dir.path));
  BOOST_REQUIRE(!second.store);
  BOOST_TEST((second.err.code == errc::locked));
  const std::string expect = "data dir " + dir.path.string() +
                             " is locked by another process (pid " + std::to_string(::getpid()) +
                             ")";
  BOOST_TEST(second.err.message == expect);
  first->close();
  auto third = lmdb_store::open(quiet(dir.path));  // released on close
  BOOST_TEST(third.store != nullptr);
}

// A killed node's snapshot child may still hold the lock it inherited for a moment after
// the node is gone (app/kv_state_machine.h). Here a process takes the lock the way
// take_lock() does and exits at once, leaving a child holding it for 300 ms: open() waits
// for the child instead of refusing the data dir.
BOOST_AUTO_TEST_CASE(a_lock_left_to_a_child_of_a_dead_holder_is_waited_for) {
  temp_dir dir;
  fs::create_directories(dir.path);
  const std::string lock_path = (dir.path / "LOCK").string();
  const pid_t holder = ::fork();
  BOOST_REQUIRE(holder >= 0);
  if (holder == 0) {  // only async-signal-safe calls from here on
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) ::_exit(2);
    char pid[32];  // "<pid>\n", formatted by hand (snprintf is not async-signal-safe)
    int n = sizeof pid;
    pid[--n] = '\n';
    for (long v = ::getpid(); v > 0; v /= 10) pid[--n] = static_cast<char>('0' + v % 10);
    const auto len = static_cast<std::size_t>(static_cast<int>(sizeof pid) - n);
    if (::write(fd, pid + n, len) != static_cast<::ssize_t>(len)) ::_exit(3);
    if (::fork() == 0) {  // the orphan: keeps the lock 300 ms after its parent is gone
      const timespec t{0, 300'000'000};
      ::nanosleep(&t, nullptr);
      ::_exit(0);
    }
    ::_exit(0);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(holder, &status, 0) == holder);
  BOOST_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const auto start = std::chrono::steady_clock::now();
  auto r = lmdb_store::open(quiet(dir.path));
  const auto waited = std::chrono::steady_clock::now() - start;
  BOOST_TEST(r.store != nullptr, r.err.message);
  BOOST_TEST(waited >= std::chrono::milliseconds(100));  // the orphan held it meanwhile
}

BOOST_AUTO_TEST_CASE(invalid_batches_fail_the_store_and_every_later_submit) {
  temp_dir dir;
  auto s = must_open(quiet(dir.path));
  BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 3, 2))).ok());
  auto r = submit_wait(*s, append({make_entry(5, 2)}));  // hole at 4
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST((r.err.code == errc::invalid_batch));
  BOOST_TEST(s->health().message == r.err.message);
  auto later = submit_wait(*s, append({make_entry(4, 2)}));
  BOOST_TEST(!later.ok());
  BOOST_TEST(s->read_entries(index_t{1}, index_t{3}).ok());  // reads keep working
  s->close();
  auto closed = submit_wait(*s, batch{});
  BOOST_TEST((closed.err.code == errc::closed));

  // Lower terms, overwriting without truncation and truncating into the snapshot: all refused.
  for (int kind = 0; kind < 3; ++kind) {
    temp_dir d2;
    auto s2 = must_open(quiet(d2.path));
    BOOST_REQUIRE(submit_wait(*s2, append(make_entries(1, 3, 2))).ok());
    batch bad;
    if (kind == 0) bad.entries = {make_entry(4, 1)};
    if (kind == 1) bad.entries = {make_entry(3, 2)};
    if (kind == 2) {
      BOOST_REQUIRE(s2->write_snapshot(meta(2, 2), "x").ok());
      batch c;
      c.compaction = meta(2, 2);
      BOOST_REQUIRE(submit_wait(*s2, std::move(c)).ok());
      bad.truncate_from = index_t{2};
    }
    auto br = submit_wait(*s2, std::move(bad));
    BOOST_TEST((br.err.code == errc::invalid_batch), "kind " << kind << ": " << br.err.message);
  }
}

BOOST_AUTO_TEST_CASE(callbacks_run_in_submission_order_and_batches_share_commits) {
  temp_dir dir;
  auto s = must_open(quiet(dir.path));
  constexpr int n = 200;
  // (Boost.Test is not thread-safe: callbacks only record, the test thread asserts.)
  std::vector<std::pair<int, std::uint64_t>> seen;  // (submission number, persisted index)
  int failures = 0;
  std::mutex m;
  std::promise<void> all;
  for (int i = 1; i <= n; ++i) {
    s->submit(append({make_entry(i, 1, 100)}), [&, i](const result<persisted>& r) {
      std::lock_guard lock(m);
      failures += r.ok() ? 0 : 1;
      seen.emplace_back(i, r.value.last_index.value);
      if (i == n) all.set_value();
    });
  }
  BOOST_REQUIRE(all.get_future().wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  std::lock_guard lock(m);
  BOOST_TEST(failures == 0);
  BOOST_REQUIRE(seen.size() == static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    BOOST_TEST(seen[i].first == i + 1);  // callbacks in submission order
    BOOST_TEST(seen[i].second == static_cast<std::uint64_t>(i + 1));
  }
  const auto st = s->stats();
  BOOST_TEST(st.batches == static_cast<std::uint64_t>(n));
  BOOST_TEST(st.entries == static_cast<std::uint64_t>(n));
  // Group commit: while one fsync runs the rest queue up and share the next.
  BOOST_TEST(st.commits < static_cast<std::uint64_t>(n), "commits " << st.commits);
}

BOOST_AUTO_TEST_CASE(on_commit_reports_each_commit) {
  temp_dir dir;
  options o = quiet(dir.path);
  std::atomic<int> calls{0};
  std::atomic<int> zero_latencies{0};
  std::atomic<std::size_t> entries{0};
  o.on_commit = [&](std::chrono::nanoseconds latency, std::size_t, std::size_t n) {
    if (latency.count() <= 0) ++zero_latencies;
    ++calls;
    entries += n;
  };
  auto s = must_open(o);
  BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 5, 1))).ok());
  BOOST_REQUIRE(submit_wait(*s, append(make_entries(6, 6, 1))).ok());
  BOOST_TEST(calls.load() == 2);
  BOOST_TEST(zero_latencies.load() == 0);
  BOOST_TEST(entries.load() == 6u);
  BOOST_TEST(s->stats().commits == 2u);
}

BOOST_AUTO_TEST_CASE(map_grows_automatically_up_to_the_maximum) {
  temp_dir dir;
  options o = quiet(dir.path);
  o.initial_map_bytes = 1 << 20;
  o.max_map_bytes = 64 << 20;
  auto s = must_open(o);
  std::uint64_t next = 1;
  for (int b = 0; b < 40; ++b) {  // 40 x 100 KiB = 4 MB
    auto r = submit_wait(*s, append(make_entries(next, next + 9, 1, 10 * 1024)));
    BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
    next += 10;
  }
  s->close();  // LMDB receives the journaled batches by the end of close() at the latest
  BOOST_TEST(s->stats().map_grows >= 2u);
  BOOST_TEST(s->stats().map_bytes > (1u << 20));
  s = must_open(o);
  auto loaded = s->load();
  BOOST_REQUIRE(loaded.ok());
  BOOST_TEST(loaded.value.entries.size() == 400u);
}

namespace {

// Fills the store until a write fails; returns the last acknowledged index.
std::uint64_t fill_until_failure(lmdb_store& s, result<persisted>& failure) {
  std::uint64_t acked = 0;
  for (std::uint64_t next = 1; next < 100000; next += 8) {
    auto r = submit_wait(s, append(make_entries(next, next + 7, 1, 8 * 1024)));
    if (!r.ok()) {
      failure = r;
      return acked;
    }
    acked = r.value.last_index.value;
  }
  BOOST_FAIL("the store never filled up");
  return acked;
}

void check_intact(lmdb_store& s, std::uint64_t acked) {
  auto read = s.read_entries(index_t{1}, index_t{acked});
  BOOST_REQUIRE_MESSAGE(read.ok(), read.err.message);
  for (std::uint64_t i = 1; i <= acked; ++i)
    BOOST_CHECK((read.value[i - 1] == make_entry(i, 1, 8 * 1024)));
}

}  // namespace

BOOST_AUTO_TEST_CASE(disk_full_at_the_map_maximum_fails_cleanly_and_keeps_data) {
  temp_dir dir;
  options o = quiet(dir.path);
  o.initial_map_bytes = 256 << 10;
  o.max_map_bytes = 1 << 20;
  std::uint64_t acked = 0;
  {
    auto s = must_open(o);
    result<persisted> failure;
    acked = fill_until_failure(*s, failure);
    BOOST_TEST(acked > 0u);
    BOOST_TEST((failure.err.code == errc::disk_full));
    BOOST_TEST(failure.err.message.find("disk full") != std::string::npos, failure.err.message);
    BOOST_TEST(s->health().message == failure.err.message);
    // Every later write fails at once; reads keep working.
    auto later = submit_wait(*s, append({make_entry(acked + 1, 1, 8)}));
    BOOST_TEST((later.err.code == errc::disk_full));
    check_intact(*s, acked);
  }
  // After the operator makes room (a bigger maximum), the node comes back with its data.
  o.max_map_bytes = 64 << 20;
  auto s = must_open(o);
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST(loaded.value.last_index.value == acked);
  BOOST_TEST(submit_wait(*s, append({make_entry(acked + 1, 1, 8)})).ok());
}

BOOST_AUTO_TEST_CASE(disk_full_on_a_small_tmpfs_fails_cleanly_and_keeps_data) {
  temp_dir dir;
  const fs::path mnt = dir.path / "mnt";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=2m") != 0) {
    BOOST_TEST_MESSAGE("cannot mount a tmpfs here (" << std::strerror(errno) << "); skipped");
    return;
  }
  struct unmount {
    fs::path p;
    ~unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } guard{mnt};
  options o = quiet(mnt / "node");
  o.initial_map_bytes = 64 << 20;  // the map is not the limit here: the filesystem is
  o.journal_file_bytes = 128 << 10;
  std::uint64_t acked = 0;
  {
    auto s = must_open(o);
    result<persisted> failure;
    acked = fill_until_failure(*s, failure);
    BOOST_TEST(acked > 0u);
    BOOST_TEST((failure.err.code == errc::disk_full), failure.err.message);
    BOOST_TEST(failure.err.message.find("disk full") != std::string::npos, failure.err.message);
    check_intact(*s, acked);
    BOOST_TEST(!s->write_snapshot(meta(1, 1), std::string(4 << 20, 's')).ok());
  }
  // The acknowledged batches LMDB could not take are in the journal; once the operator
  // makes room they are replayed into LMDB at the next start.
  BOOST_REQUIRE(::mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT, "size=8m") == 0);
  auto s = must_open(o);
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST(loaded.value.last_index.value == acked);
  BOOST_TEST(loaded.value.entries.size() == acked);
}

BOOST_AUTO_TEST_CASE(an_io_error_fails_the_store_without_damaging_it) {
  temp_dir dir;
  auto s = must_open(quiet(dir.path));
  BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 8, 1, 8 * 1024))).ok());
  std::uint64_t acked = 8;
  // A file size limit makes LMDB's page writes fail like a failing device would.
  rlimit saved{};
  BOOST_REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  const auto saved_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = fs::file_size(dir.path / "data.mdb") + 16 * 1024;
  BOOST_REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
  result<persisted> failure;
  for (int n = 0; n < 100; ++n) {
    auto r = submit_wait(*s, append(make_entries(acked + 1, acked + 8, 1, 8 * 1024)));
    if (!r.ok()) {
      failure = r;
      break;
    }
    acked = r.value.last_index.value;
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, saved_handler);

  BOOST_REQUIRE(!failure.ok());
  BOOST_TEST_MESSAGE("the store reported: " << failure.err.message);
  BOOST_TEST((failure.err.code == errc::io_error), failure.err.message);
  BOOST_TEST(failure.err.message.find("I/O error") != std::string::npos, failure.err.message);
  BOOST_TEST(s->health().message == failure.err.message);
  // Failed for good, even though the cause went away: after a failed fsync the page cache
  // may have dropped the data, so a retry could report durable what is not.
  BOOST_TEST(!submit_wait(*s, append({make_entry(acked + 1, 1, 8 * 1024)})).ok());
  check_intact(*s, acked);
  s->close();
  s = must_open(quiet(dir.path));
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST(loaded.value.last_index.value == acked);
  BOOST_TEST(submit_wait(*s, append({make_entry(acked + 1, 1, 8 * 1024)})).ok());
}

BOOST_AUTO_TEST_CASE(fsync_off_is_announced_loudly) {
  temp_dir dir;
  options o = quiet(dir.path);
  o.fsync = false;
  std::vector<std::pair<log_level, std::string>> lines;  // open() logs on this thread
  o.log = [&](log_level l, std::string_view text) { lines.emplace_back(l, text); };
  auto s = must_open(o);
  bool warned = false;
  for (const auto& [level, text] : lines)
    warned =
        warned || (level == log_level::warning && text.find("fsync = false") != std::string::npos &&
                   text.find("NOT") != std::string::npos);
  BOOST_TEST(warned);
  BOOST_TEST(submit_wait(*s, append(make_entries(1, 3, 1))).ok());
}

BOOST_AUTO_TEST_CASE(replay_applies_every_entry_and_reports) {
  loaded_state st;
  st.entries = make_entries(1, 5000, 1);
  st.last_index = index_t{5000};
  std::uint64_t sum = 0;
  std::vector<std::string> lines;
  const auto n = replay(
      st, [&](const entry& e) { sum += e.index.value; },
      [&](log_level, std::string_view l) { lines.emplace_back(l); }, std::chrono::milliseconds(0));
  BOOST_TEST(n == 5000u);
  BOOST_TEST(sum == 5000u * 5001u / 2);
  BOOST_REQUIRE(!lines.empty());
  BOOST_TEST(lines.front().find("replayed 1024 of 5000") != std::string::npos, lines.front());
  BOOST_TEST(lines.back().find("replayed 5000 entries up to index 5000") != std::string::npos,
             lines.back());
}

namespace {

// Sets the "format" record of a closed data dir's LMDB to `version` (and, to make a dir as
// a format-1 build left it, drops the journal and the journal seq). Returns the version
// the record held before.
std::uint32_t set_format(const fs::path& dir, std::uint32_t version, bool as_format_1) {
  MDB_env* env = nullptr;
  BOOST_REQUIRE(mdb_env_create(&env) == 0);
  mdb_env_set_maxdbs(env, 4);
  BOOST_REQUIRE(mdb_env_open(env, dir.c_str(), 0, 0644) == 0);
  MDB_txn* txn = nullptr;
  BOOST_REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
  MDB_dbi meta_db = 0;
  BOOST_REQUIRE(mdb_dbi_open(txn, "meta", 0, &meta_db) == 0);
  std::string key = "format";
  MDB_val k{key.size(), key.data()}, v{};
  BOOST_REQUIRE(mdb_get(txn, meta_db, &k, &v) == 0);
  const auto before = decode_format_record({static_cast<const char*>(v.mv_data), v.mv_size}).value;
  std::string rec = encode_format_record(version);
  MDB_val rv{rec.size(), rec.data()};
  BOOST_REQUIRE(mdb_put(txn, meta_db, &k, &rv, 0) == 0);
  if (as_format_1) {
    std::string seq_key = "journal_seq";
    MDB_val sk{seq_key.size(), seq_key.data()};
    mdb_del(txn, meta_db, &sk, nullptr);
  }
  BOOST_REQUIRE(mdb_txn_commit(txn) == 0);
  mdb_env_close(env);
  if (as_format_1) {
    fs::remove(dir / "journal-0");
    fs::remove(dir / "journal-1");
  }
  return before;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_format_1_dir_is_upgraded_and_a_newer_format_is_refused) {
  temp_dir dir;
  {
    auto s = must_open(quiet(dir.path));
    BOOST_REQUIRE(submit_wait(*s, append(make_entries(1, 5, 1))).ok());
  }
  BOOST_TEST(set_format(dir.path, 1, true) == format_version);

  std::vector<std::string> lines;
  options o = quiet(dir.path);
  o.log = [&](log_level, std::string_view text) { lines.emplace_back(text); };
  {
    auto s = must_open(o);
    auto loaded = s->load();
    BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
    BOOST_TEST(loaded.value.entries.size() == 5u);
    BOOST_TEST(submit_wait(*s, append(make_entries(6, 6, 1))).ok());
  }
  bool upgraded = false;
  for (const auto& l : lines)
    upgraded = upgraded || l.find("to storage format 2") != std::string::npos;
  BOOST_TEST(upgraded);
  BOOST_TEST(fs::exists(dir.path / "journal-0"));
  // The upgrade is recorded: a format-1 build would now refuse the dir.
  BOOST_TEST(set_format(dir.path, 3, false) == 2u);

  auto refused = lmdb_store::open(quiet(dir.path));
  BOOST_TEST(!refused.store);
  BOOST_TEST((refused.err.code == errc::bad_format));
  BOOST_TEST(
      refused.err.message.find("has storage format 3, this build reads 2") != std::string::npos,
      refused.err.message);
  set_format(dir.path, 2, false);
  auto s = must_open(quiet(dir.path));
  auto loaded = s->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST(loaded.value.last_index.value == 6u);
}

// raft/storage/writer.h, "Scheduling": the journal and checkpointer threads run as
// SCHED_BATCH work so that the event loop gets a busy core first. Counted over this
// process's threads: two more while a store is open, none left once it is closed.
BOOST_AUTO_TEST_CASE(the_storage_threads_run_as_batch_work) {
  auto batch_threads = [] {
    int n = 0;
    for (const auto& t : fs::directory_iterator("/proc/self/task")) {
      const auto tid = static_cast<pid_t>(std::stol(t.path().filename().string()));
      if (::sched_getscheduler(tid) == SCHED_BATCH) ++n;
    }
    return n;
  };
  const int before = batch_threads();
  temp_dir dir;
  auto s = must_open(quiet(dir.path));
  BOOST_TEST(batch_threads() == before + 2);
  s.reset();
  BOOST_TEST(batch_threads() == before);
}
