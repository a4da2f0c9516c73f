// Snapshots taken in a forked child (app/kv_state_machine.h): the caller gets control back
// long before the state is serialised, the file holds exactly the bytes snapshot() gives at
// the index the snapshot was started at (whatever is applied afterwards), it restores
// byte-identically, and lmdb_store::load() finds it after a restart.
#define BOOST_TEST_MODULE app_snapshot
#include <stdlib.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "app/kv_state_machine.h"
#include "app/lmdb_log_store.h"
#include "kv/store.h"
#include "raft/membership.h"
#include "raft/storage/lmdb_store.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string t = (fs::temp_directory_path() / "raftkv-app-snapshot-XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(t.data()));
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

kv::store_options big_limits() {
  kv::store_options o;
  o.max_memory_bytes = 8ull << 30;
  return o;
}

kv::command set_cmd(const std::string& key, std::string value, std::int64_t now) {
  kv::command c;
  c.kind = kv::op::set;
  c.key = key;
  c.value = std::move(value);
  c.timestamp_ms = now;
  return c;
}

// n items of 100-byte values, one entry each; returns the next free index.
std::uint64_t fill(kv::store& s, std::uint64_t n, std::uint64_t index = 1, char fill_char = 'v') {
  for (std::uint64_t i = 0; i < n; ++i, ++index) {
    const auto r = s.apply(
        index, set_cmd("key:" + std::to_string(i), std::string(100, fill_char), 1'700'000'000'000));
    BOOST_REQUIRE(r.code == kv::status::stored);
  }
  return index;
}

std::unique_ptr<raft::storage::lmdb_store> open_store(const fs::path& dir) {
  raft::storage::options o;
  o.data_dir = dir;
  o.log = [](raft::storage::log_level, std::string_view) {};
  auto r = raft::storage::lmdb_store::open(std::move(o));
  BOOST_REQUIRE_MESSAGE(r.store, "open failed: " << r.err.message);
  return std::move(r.store);
}

raft::snapshot_meta meta_at(std::uint64_t index) {
  raft::snapshot_meta m;
  m.index = raft::index_t{index};
  m.term = raft::term_t{1};
  m.config = raft::voters_only({raft::node_id{1}});
  return m;
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

struct completion {
  std::atomic<bool> done{false};
  std::string error;
  std::shared_ptr<const std::string> data;

  raft::snapshot_completion fn() {
    return [this](std::string e, std::shared_ptr<const std::string> d) {
      error = std::move(e);
      data = std::move(d);
      done = true;
    };
  }
  bool wait(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
    return done;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(snapshot_to_streams_the_same_bytes_in_chunks) {
  kv::store s(big_limits());
  fill(s, 30'000);  // ~4 MB: several chunks
  const std::string whole = s.snapshot();
  std::string joined;
  std::size_t chunks = 0;
  BOOST_TEST(s.snapshot_to([&](std::string_view c) {
    joined.append(c);
    ++chunks;
    return true;
  }));
  BOOST_TEST(chunks > 2u);
  BOOST_TEST((joined == whole));

  // A sink that fails stops the serialisation at once.
  std::size_t calls = 0;
  BOOST_TEST(!s.snapshot_to([&](std::string_view) {
    ++calls;
    return false;
  }));
  BOOST_TEST(calls == 1u);
}

BOOST_AUTO_TEST_CASE(forked_snapshot_returns_at_once_and_restores_byte_identically) {
  temp_dir dir;
  kv::store s(big_limits());
  std::uint64_t next = fill(s, 400'000);
  const std::uint64_t at = s.applied_index();

  // What serialising on the caller costs (what the event loop used to pay).
  const auto ser_start = std::chrono::steady_clock::now();
  const std::string reference = s.snapshot();
  const double serialise_ms = ms_since(ser_start);

  {
    auto lmdb = open_store(dir.path);
    app::lmdb_log_store logs(*lmdb, raft::index_t{});
    app::kv_state_machine sm(s, /*fork_snapshots=*/true);
    completion c;
    const auto call_start = std::chrono::steady_clock::now();
    sm.start_snapshot(meta_at(at), logs, c.fn());
    const double call_ms = ms_since(call_start);
    BOOST_TEST_MESSAGE("serialise on the caller: " << serialise_ms
                                                   << " ms; start_snapshot: " << call_ms
                                                   << " ms; fork " << sm.last_fork_us() << " us");
    // The caller keeps applying while the child writes: these writes must not appear.
    for (int i = 0; i < 5'000; ++i, ++next)
      s.apply(next, set_cmd("key:" + std::to_string(i), std::string(100, 'X'), 1'700'000'000'001));
    BOOST_TEST(call_ms * 4 < serialise_ms);

    BOOST_REQUIRE(c.wait(120s));
    BOOST_TEST(c.error == "");
    BOOST_TEST(!c.data);  // the bytes stay in the file
    sm.wait_for_snapshot();

    const auto latest = lmdb->latest_snapshot();
    BOOST_REQUIRE(latest.has_value());
    BOOST_TEST((latest->meta == meta_at(at)));
    BOOST_TEST(latest->data_bytes == reference.size());
    auto bytes = lmdb->read_snapshot(*latest);
    BOOST_REQUIRE(bytes.ok());
    BOOST_TEST((bytes.value == reference));

    kv::store restored(big_limits());
    BOOST_REQUIRE(restored.restore(bytes.value));
    BOOST_TEST((restored.snapshot() == reference));
    BOOST_TEST(restored.applied_index() == at);

    // No tmp file is left behind.
    for (const auto& de : fs::directory_iterator(dir.path / "snapshots"))
      BOOST_TEST(de.path().filename().string().rfind("tmp-", 0) != 0);
    logs.close();
  }

  // A restart finds the file the child wrote.
  auto lmdb = open_store(dir.path);
  auto loaded = lmdb->load();
  BOOST_REQUIRE(loaded.ok());
  BOOST_REQUIRE(loaded.value.snapshot.has_value());
  BOOST_TEST((loaded.value.snapshot->meta == meta_at(at)));
  BOOST_TEST((loaded.value.snapshot_data.view() == reference));
}

BOOST_AUTO_TEST_CASE(snapshot_on_the_caller_writes_the_same_file) {
  temp_dir dir;
  kv::store s(big_limits());
  fill(s, 2'000);
  const std::string reference = s.snapshot();
  auto lmdb = open_store(dir.path);
  app::lmdb_log_store logs(*lmdb, raft::index_t{});
  app::kv_state_machine sm(s, /*fork_snapshots=*/false);
  completion c;
  sm.start_snapshot(meta_at(s.applied_index()), logs, c.fn());
  BOOST_REQUIRE(c.wait(60s));
  BOOST_TEST(c.error == "");
  BOOST_REQUIRE(c.data);
  BOOST_TEST((*c.data == reference));
  logs.close();
  const auto latest = lmdb->latest_snapshot();
  BOOST_REQUIRE(latest.has_value());
  auto bytes = lmdb->read_snapshot(*latest);
  BOOST_REQUIRE(bytes.ok());
  BOOST_TEST((bytes.value == reference));
}

namespace {

// A log store whose snapshot writer fails after `limit` bytes, as a full disk would.
class failing_store final : public raft::log_store {
 public:
  explicit failing_store(std::uint64_t limit) : limit_(limit) {}
  void submit(raft::persist_batch, raft::store_completion done) override { done("unused"); }
  void write_snapshot(raft::snapshot_meta, std::shared_ptr<const std::string>,
                      raft::store_completion done) override {
    done("unused");
  }
  std::unique_ptr<raft::snapshot_source> open_snapshot(const raft::snapshot_meta&,
                                                       std::string& error) override {
    error = "none";
    return nullptr;
  }
  std::unique_ptr<raft::snapshot_writer> open_snapshot_writer(const raft::snapshot_meta&,
                                                              std::string& error) override {
    error.clear();
    return std::make_unique<writer>(limit_, adopted_);
  }
  bool adopted() const { return *adopted_; }

 private:
  struct writer final : raft::snapshot_writer {
    writer(std::uint64_t limit, std::shared_ptr<bool> adopted)
        : limit(limit), adopted(std::move(adopted)) {}
    bool append(std::string_view c) override {
      written += c.size();
      return written <= limit;
    }
    std::string complete() override {
      return written <= limit ? "" : "disk full: " + std::to_string(written) + " bytes";
    }
    std::string adopt() override {
      *adopted = true;
      return {};
    }
    std::uint64_t limit, written = 0;
    std::shared_ptr<bool> adopted;
  };
  std::uint64_t limit_;
  std::shared_ptr<bool> adopted_ = std::make_shared<bool>(false);
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_child_that_cannot_write_reports_its_error) {
  kv::store s(big_limits());
  fill(s, 20'000);
  failing_store logs(1 << 20);
  app::kv_state_machine sm(s, /*fork_snapshots=*/true);
  completion c;
  sm.start_snapshot(meta_at(s.applied_index()), logs, c.fn());
  BOOST_REQUIRE(c.wait(60s));
  BOOST_TEST(c.error.rfind("disk full: ", 0) == 0u, c.error);
  BOOST_TEST(!logs.adopted());

  // The same store with room enough: the child succeeds and the file is adopted.
  failing_store roomy(1ull << 40);
  completion ok;
  sm.start_snapshot(meta_at(s.applied_index()), roomy, ok.fn());
  BOOST_REQUIRE(ok.wait(60s));
  BOOST_TEST(ok.error == "");
  sm.wait_for_snapshot();
  BOOST_TEST(roomy.adopted());
}

// A received snapshot is rebuilt on a thread and swapped in on the event loop (here: the test
// thread, running what was posted). The old state is dropped when the restore starts (peak
// memory: one state, not two): meanwhile the store is empty at the old applied index. A
// snapshot that does not restore leaves that empty store (the replica then stops).
BOOST_AUTO_TEST_CASE(start_restore_drops_the_old_state_builds_the_new_aside_and_swaps_it_in) {
  kv::store source(big_limits());
  const std::uint64_t next = fill(source, 20'000, 1, 'n');
  auto bytes = std::make_shared<const std::string>(source.snapshot());

  std::mutex m;
  std::vector<std::function<void()>> posted;
  auto post = [&](std::function<void()> fn) {
    std::lock_guard lock(m);
    posted.push_back(std::move(fn));
  };
  auto run_posted = [&](std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      std::vector<std::function<void()>> fns;
      {
        std::lock_guard lock(m);
        fns.swap(posted);
      }
      for (auto& fn : fns) fn();
      if (!fns.empty()) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(2ms);
    }
  };

  kv::store target(big_limits());
  const std::uint64_t old_applied = fill(target, 10, 1, 'o') - 1;
  app::kv_state_machine sm(target, /*fork_snapshots=*/false, post);
  std::optional<bool> result;
  sm.start_restore(*bytes, bytes, [&](bool ok) { result = ok; });
  // Until the loop runs the swap, however long the thread took: no old items, the old
  // applied index.
  BOOST_TEST(!result.has_value());
  BOOST_TEST(target.stats().curr_items == 0u);
  BOOST_TEST(!target.find("key:0", 1'700'000'000'000).has_value());
  BOOST_TEST(target.applied_index() == old_applied);
  BOOST_TEST(sm.applied_index().value == old_applied);
  BOOST_REQUIRE(run_posted(30s));
  BOOST_REQUIRE(result.has_value());
  BOOST_TEST(*result);
  BOOST_TEST(target.stats().curr_items == 20'000u);
  BOOST_TEST(target.applied_index() == next - 1);
  BOOST_TEST(target.snapshot() == *bytes);

  // Corrupt bytes: done(false), and the store stays the empty one at the applied index.
  auto bad = std::make_shared<std::string>(*bytes);
  (*bad)[bad->size() / 2] ^= 0x5a;
  result.reset();
  sm.start_restore(*bad, bad, [&](bool ok) { result = ok; });
  BOOST_REQUIRE(run_posted(30s));
  BOOST_REQUIRE(result.has_value());
  BOOST_TEST(!*result);
  BOOST_TEST(target.stats().curr_items == 0u);
  BOOST_TEST(target.applied_index() == next - 1);
}

namespace {

std::size_t tmp_files(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& de : fs::directory_iterator(dir / "snapshots"))
    if (de.path().filename().string().rfind("tmp-", 0) == 0) ++n;
  return n;
}

}  // namespace

// A snapshot streamed from the leader is assembled in a temp file as it arrives
// (lmdb_log_store::open_snapshot_receiver), not in memory: a view of the file restores
// byte-identically, the install batch makes it the latest snapshot and records it (a restart
// loads it), the view outlives the rename, and a receiver dropped before its install leaves
// no file behind.
BOOST_AUTO_TEST_CASE(a_received_snapshot_is_assembled_in_a_file_and_installed_by_its_batch) {
  temp_dir dir;
  kv::store s(big_limits());
  fill(s, 20'000);
  const std::string reference = s.snapshot();
  const auto meta = meta_at(s.applied_index());
  {
    auto lmdb = open_store(dir.path);
    BOOST_REQUIRE(lmdb->load().ok());
    app::lmdb_log_store logs(*lmdb, raft::index_t{});

    // Dropped half way (a newer snapshot, a new leader): its temp file goes with it.
    {
      std::string error;
      auto dropped = logs.open_snapshot_receiver(meta, error);
      BOOST_REQUIRE(dropped);
      BOOST_TEST(error == "");
      BOOST_TEST(dropped->append(std::string_view(reference).substr(0, 1000)) == "");
      BOOST_TEST(tmp_files(dir.path) == 1u);
    }
    BOOST_TEST(tmp_files(dir.path) == 0u);

    std::string error;
    std::shared_ptr<raft::snapshot_receiver> r = logs.open_snapshot_receiver(meta, error);
    BOOST_REQUIRE(r);
    for (std::size_t at = 0; at < reference.size(); at += 64 << 10)
      BOOST_REQUIRE(r->append(std::string_view(reference).substr(at, 64 << 10)) == "");
    std::string_view view;
    BOOST_REQUIRE(r->view(view) == "");
    BOOST_TEST((view == reference));
    BOOST_TEST(!lmdb->latest_snapshot().has_value());  // not a snapshot before its install

    std::promise<std::string> installed;
    raft::persist_batch b;
    b.install = raft::received_snapshot{meta, nullptr, r};
    logs.submit(std::move(b), [&](std::string e) { installed.set_value(std::move(e)); });
    auto f = installed.get_future();
    BOOST_REQUIRE(f.wait_for(60s) == std::future_status::ready);
    BOOST_TEST(f.get() == "");
    const auto latest = lmdb->latest_snapshot();
    BOOST_REQUIRE(latest.has_value());
    BOOST_TEST((latest->meta == meta));
    BOOST_TEST(latest->data_bytes == reference.size());
    auto bytes = lmdb->read_snapshot(*latest);
    BOOST_REQUIRE(bytes.ok());
    BOOST_TEST((bytes.value == reference));
    BOOST_TEST(tmp_files(dir.path) == 0u);  // renamed, not copied

    kv::store restored(big_limits());
    BOOST_REQUIRE(restored.restore(view));  // the map outlives the rename
    BOOST_TEST((restored.snapshot() == reference));
    r.reset();
    logs.close();
  }
  auto lmdb = open_store(dir.path);
  auto loaded = lmdb->load();
  BOOST_REQUIRE(loaded.ok());
  BOOST_REQUIRE(loaded.value.snapshot.has_value());
  BOOST_TEST((loaded.value.snapshot->meta == meta));
  BOOST_TEST((loaded.value.snapshot_data.view() == reference));
}
