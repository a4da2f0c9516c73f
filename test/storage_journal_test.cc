// Tests of the journal in front of LMDB (raft/storage/journal.h, writer.h): the record
// codec, the recovery scan's stopping rules, the gap check, and a store that recovers from
// the journal what LMDB has not received yet.
#define BOOST_TEST_MODULE storage_journal_test
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "raft/membership.h"
#include "raft/storage/journal.h"
#include "raft/storage/lmdb_store.h"
#include "test/support/submit_wait.h"
#include "test/support/temp_dir.h"

namespace fs = std::filesystem;
using namespace raft;
using namespace raft::storage;

namespace {

using test_support::temp_dir;

entry make_entry(std::uint64_t index, std::uint64_t term, std::size_t bytes = 16) {
  entry e;
  e.index = index_t{index};
  e.term = term_t{term};
  e.data = std::string(bytes, static_cast<char>('a' + index % 26));
  return e;
}

batch append(std::uint64_t first, std::uint64_t last, std::uint64_t term) {
  batch b;
  for (auto i = first; i <= last; ++i) b.entries.push_back(make_entry(i, term));
  return b;
}

snapshot_meta meta(std::uint64_t index, std::uint64_t term) {
  return snapshot_meta{index_t{index}, term_t{term}, raft::voters_only({node_id{1}, node_id{2}})};
}

std::string record(std::uint64_t seq, const std::vector<batch>& batches) {
  std::string out;
  encode_journal_record(seq, batches, out);
  return out;
}

std::vector<std::uint64_t> seqs(const std::vector<journal_record>& rs) {
  std::vector<std::uint64_t> out;
  for (const auto& r : rs) out.push_back(r.seq);
  return out;
}

// A data dir whose LMDB never catches up by itself: only close() or a full journal
// checkpoints.
options lagging(const fs::path& dir) {
  options o;
  o.data_dir = dir;
  o.log = [](log_level, std::string_view) {};
  o.checkpoint_interval = std::chrono::minutes(10);
  return o;
}

using test_support::submit_wait;

// A lagging store in dir, opened and loaded (the test stops if it cannot be).
std::unique_ptr<lmdb_store> open_lagging(const fs::path& dir) {
  auto opened = lmdb_store::open(lagging(dir));
  BOOST_REQUIRE_MESSAGE(opened.store, opened.err.message);
  auto loaded = opened.store->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  return std::move(opened.store);
}

// What a crash now would leave, as far as the page cache goes: a copy of the files.
void copy_data_files(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const char* name : {"data.mdb", "journal-0", "journal-1"})
    fs::copy_file(from / name, to / name, fs::copy_options::overwrite_existing);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_record_carries_every_part_of_its_batches) {
  std::vector<batch> in(3);
  in[0].truncate_from = index_t{7};
  in[0].entries = append(7, 9, 3).entries;
  in[0].entries[1].type = entry_type::config;
  in[0].hard = hard_state{term_t{3}, node_id{2}, index_t{6}};
  in[1].compaction = meta(8, 3);
  // in[2]: a barrier, nothing at all
  const auto out = scan_journal(record(41, in), "j");
  BOOST_REQUIRE(out.size() == 1u);
  BOOST_TEST(out[0].seq == 41u);
  BOOST_REQUIRE(out[0].batches.size() == 3u);
  const batch& b0 = out[0].batches[0];
  BOOST_TEST(b0.truncate_from.value_or(index_t{0}).value == 7u);
  BOOST_TEST((b0.entries == in[0].entries));
  BOOST_TEST((b0.hard == in[0].hard));
  BOOST_TEST(!b0.compaction.has_value());
  BOOST_TEST((out[0].batches[1].compaction == in[1].compaction));
  BOOST_TEST(!out[0].batches[1].hard.has_value());
  BOOST_TEST(out[0].batches[2].entries.empty());
  BOOST_TEST(!out[0].batches[2].truncate_from.has_value());
}

BOOST_AUTO_TEST_CASE(the_scan_stops_at_a_torn_or_damaged_record) {
  const std::string first = record(1, {append(1, 2, 1)});
  const std::string second = record(2, {append(3, 4, 1)});
  const std::string zeros(4096, '\0');
  BOOST_TEST(seqs(scan_journal(first + second + zeros, "j")) == (std::vector<std::uint64_t>{1, 2}));
  // Torn: the second record's last bytes never reached the disk.
  BOOST_TEST(seqs(scan_journal(first + second.substr(0, second.size() - 3), "j")) ==
             (std::vector<std::uint64_t>{1}));
  // Damaged: one flipped bit in its body.
  std::string flipped = second;
  flipped[flipped.size() - 5] ^= 0x01;
  BOOST_TEST(seqs(scan_journal(first + flipped + first, "j")) == (std::vector<std::uint64_t>{1}));
  // A fresh file is all zeros.
  BOOST_TEST(scan_journal(zeros, "j").empty());
}

BOOST_AUTO_TEST_CASE(the_scan_ignores_what_a_reused_file_held_before) {
  // The file held records 5, 6, 7; it was reused from offset 0 and record 10 (the same
  // size as 5) overwrote 5. Records 6 and 7 are intact but older: the scan ends at them.
  const std::string old5 = record(5, {append(1, 2, 1)});
  const std::string old6 = record(6, {append(3, 4, 1)});
  const std::string old7 = record(7, {append(5, 6, 1)});
  const std::string new10 = record(10, {append(9, 10, 2)});
  BOOST_REQUIRE(new10.size() == old5.size());
  BOOST_TEST(seqs(scan_journal(new10 + old6 + old7, "j")) == (std::vector<std::uint64_t>{10}));
}

BOOST_AUTO_TEST_CASE(records_after_the_checkpoint_must_run_on_without_a_gap) {
  const auto with = [](std::vector<std::uint64_t> ss) {
    std::vector<journal_record> out;
    for (auto s : ss) out.push_back(journal_record{s, {}});
    return out;
  };
  // The active file holds 5-6, the other 2-4 (3-4 not yet checkpointed).
  auto r = records_after(2, with({5, 6}), with({2, 3, 4}));
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST(seqs(r.value) == (std::vector<std::uint64_t>{3, 4, 5, 6}));
  // Everything checkpointed: nothing to replay.
  r = records_after(6, with({5, 6}), with({2, 3, 4}));
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value.empty());
  // Record 4 lost (damaged) while 5 survived: a durable record is gone.
  r = records_after(2, with({5, 6}), with({2, 3}));
  BOOST_TEST((r.err.code == errc::corrupt));
  BOOST_TEST(r.err.message.find("journal record 4 is missing") != std::string::npos, r.err.message);
}

BOOST_AUTO_TEST_CASE(a_crash_before_the_checkpoint_recovers_from_the_journal) {
  temp_dir dir("storage_journal_");
  const fs::path live = dir.path / "live", crashed = dir.path / "crashed";
  const auto store = open_lagging(live);
  auto& s = *store;
  BOOST_REQUIRE(submit_wait(s, append(1, 10, 1)).ok());
  batch replace = append(8, 12, 2);  // a new leader's suffix replaces 8-10
  replace.truncate_from = index_t{8};
  replace.hard = hard_state{term_t{2}, node_id{3}, index_t{7}};
  BOOST_REQUIRE(submit_wait(s, std::move(replace)).ok());
  BOOST_TEST(s.stats().checkpoints == 0u);

  // Reads see the journaled log, though LMDB has none of it yet.
  auto read = s.read_entries(index_t{7}, index_t{12});
  BOOST_REQUIRE_MESSAGE(read.ok(), read.err.message);
  BOOST_REQUIRE(read.value.size() == 6u);
  BOOST_TEST(read.value[0].term.value == 1u);
  BOOST_TEST(read.value[1].term.value == 2u);
  BOOST_TEST(read.value[5].index.value == 12u);

  copy_data_files(live, crashed);
  std::vector<std::string> lines;
  options o = lagging(crashed);
  o.log = [&](log_level, std::string_view text) { lines.emplace_back(text); };
  auto again = lmdb_store::open(o);
  BOOST_REQUIRE_MESSAGE(again.store, again.err.message);
  bool replayed = false;
  for (const auto& l : lines) replayed = replayed || l.find("journal: applied records 1-2") == 0;
  BOOST_TEST(replayed, "no replay line among " << lines.size() << " lines");
  auto loaded = again.store->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST(loaded.value.last_index.value == 12u);
  BOOST_TEST(loaded.value.last_term.value == 2u);
  BOOST_TEST((loaded.value.hard == hard_state{term_t{2}, node_id{3}, index_t{7}}));
  BOOST_REQUIRE(loaded.value.entries.size() == 12u);
  BOOST_TEST(loaded.value.entries[6].term.value == 1u);
  BOOST_TEST(loaded.value.entries[7].term.value == 2u);
}

// journal.h, "Missing files": after a crash, a journal file that is gone, emptied or cut
// short may have held what LMDB lacks (here: entries 1-10 and a vote), so the store refuses
// to open, and does not create or fill the file (the next attempt must refuse too).
// Restored, the file gives it all back.
BOOST_AUTO_TEST_CASE(a_journal_file_missing_after_a_crash_refuses_the_open) {
  temp_dir dir("storage_journal_");
  const fs::path live = dir.path / "live", crashed = dir.path / "crashed";
  const auto store = open_lagging(live);
  auto& s = *store;
  batch b = append(1, 10, 1);
  b.hard = hard_state{term_t{1}, node_id{2}, index_t{0}};
  BOOST_REQUIRE(submit_wait(s, std::move(b)).ok());
  BOOST_TEST(s.stats().checkpoints == 0u);
  copy_data_files(live, crashed);
  const std::uint64_t full = fs::file_size(crashed / "journal-0");
  // How much of the file is left: none (removed), 0 bytes, a cut inside the first record.
  for (const char* name : {"journal-0", "journal-1"}) {
    for (const std::optional<std::uint64_t> left :
         {std::optional<std::uint64_t>(), std::optional<std::uint64_t>(0),
          std::optional<std::uint64_t>(20)}) {
      const std::string what =
          "journal file " + (crashed / name).string() +
          (!left        ? " is missing"
           : *left == 0 ? " is empty"
                        : " is cut short (20 of " + std::to_string(full) + " bytes)");
      BOOST_TEST_CONTEXT(what) {
        const fs::path kept = dir.path / "kept";
        fs::copy_file(crashed / name, kept);
        if (!left) fs::remove(crashed / name);
        if (left) fs::resize_file(crashed / name, *left);
        for (int attempt = 0; attempt < 2; ++attempt) {
          auto refused = lmdb_store::open(lagging(crashed));
          BOOST_TEST(!refused.store);
          BOOST_TEST((refused.err.code == errc::corrupt));
          BOOST_TEST(refused.err.message.find(what) != std::string::npos, refused.err.message);
          BOOST_TEST((fs::exists(crashed / name) == left.has_value()));
          if (left) BOOST_TEST(fs::file_size(crashed / name) == *left);
        }
        fs::remove(crashed / name);
        fs::rename(kept, crashed / name);
      }
    }
  }
  auto again = lmdb_store::open(lagging(crashed));
  BOOST_REQUIRE_MESSAGE(again.store, again.err.message);
  auto loaded = again.store->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST(loaded.value.last_index.value == 10u);
  BOOST_TEST((loaded.value.hard.vote == node_id{2}));
}

// After a clean close LMDB holds everything, and says so: a missing journal file is
// created anew. The open takes that back before the writer runs, so the same loss after
// the next crash is refused again. A new data dir (nothing journaled yet) opens too.
BOOST_AUTO_TEST_CASE(a_journal_file_missing_after_a_clean_close_is_created_anew) {
  temp_dir dir("storage_journal_");
  const fs::path data = dir.path / "node", crashed = dir.path / "crashed";
  {
    const auto first = open_lagging(data);
    BOOST_REQUIRE(submit_wait(*first, append(1, 10, 1)).ok());
    first->close();
  }
  fs::remove(data / "journal-1");
  auto opened = lmdb_store::open(lagging(data));
  BOOST_REQUIRE_MESSAGE(opened.store, opened.err.message);
  BOOST_TEST(fs::exists(data / "journal-1"));
  auto& s = *opened.store;
  auto loaded = s.load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST(loaded.value.last_index.value == 10u);
  BOOST_REQUIRE(submit_wait(s, append(11, 12, 1)).ok());
  copy_data_files(data, crashed);
  fs::remove(crashed / "journal-0");
  auto refused = lmdb_store::open(lagging(crashed));
  BOOST_TEST(!refused.store);
  BOOST_TEST((refused.err.code == errc::corrupt), refused.err.message);

  // A new data dir whose first open failed before its journal existed (a directory stands
  // where a journal file should be) holds nothing the journal could have had.
  const fs::path fresh = dir.path / "fresh";
  fs::create_directories(fresh / "journal-1");
  auto first = lmdb_store::open(lagging(fresh));
  BOOST_REQUIRE(!first.store);
  fs::remove(fresh / "journal-0");
  fs::remove(fresh / "journal-1");
  auto second = lmdb_store::open(lagging(fresh));
  BOOST_REQUIRE_MESSAGE(second.store, second.err.message);
}

BOOST_AUTO_TEST_CASE(a_compaction_hides_its_prefix_before_the_checkpoint) {
  temp_dir dir("storage_journal_");
  const auto store = open_lagging(dir.path);
  auto& s = *store;
  BOOST_REQUIRE(submit_wait(s, append(1, 20, 1)).ok());
  BOOST_REQUIRE(s.write_snapshot(meta(10, 1), "ten").ok());
  batch c;
  c.compaction = meta(10, 1);
  BOOST_REQUIRE(submit_wait(s, std::move(c)).ok());
  BOOST_TEST(s.stats().checkpoints == 0u);
  BOOST_TEST(!s.read_entries(index_t{10}, index_t{11}).ok());
  auto rest = s.read_entries(index_t{11}, index_t{20});
  BOOST_REQUIRE_MESSAGE(rest.ok(), rest.err.message);
  BOOST_TEST(rest.value.size() == 10u);
  s.close();
  BOOST_TEST(s.stats().checkpoints == 1u);  // close() catches LMDB up

  auto again = lmdb_store::open(lagging(dir.path));
  BOOST_REQUIRE_MESSAGE(again.store, again.err.message);
  auto loaded = again.store->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_REQUIRE(loaded.value.snapshot.has_value());
  BOOST_TEST(loaded.value.snapshot->meta.index.value == 10u);
  BOOST_TEST(loaded.value.entries.size() == 10u);
}

BOOST_AUTO_TEST_CASE(a_full_journal_file_waits_for_its_checkpoint_before_reuse) {
  temp_dir dir("storage_journal_");
  options o = lagging(dir.path);
  o.journal_file_bytes = 8 << 10;  // switch after 4 KiB
  auto opened = lmdb_store::open(o);
  BOOST_REQUIRE_MESSAGE(opened.store, opened.err.message);
  auto& s = *opened.store;
  BOOST_REQUIRE(s.load().ok());
  // Write until the journal has switched files twice: the second switch goes back to the
  // first file, which needed a checkpoint of the records in it, asked for by the journal
  // (the interval is ten minutes). The checkpointer runs on its own thread, so how many
  // writes that takes depends on the machine.
  std::uint64_t next = 1;
  for (int n = 0; n < 5000 && s.stats().journal_switches < 2; ++n, next += 4)
    BOOST_REQUIRE(submit_wait(s, append(next, next + 3, 1)).ok());
  const auto st = s.stats();
  BOOST_TEST(st.journal_switches >= 2u);
  BOOST_TEST(st.checkpoints >= 1u);
  copy_data_files(dir.path, dir.path / "crashed");
  s.close();
  options crashed = lagging(dir.path / "crashed");
  crashed.journal_file_bytes = o.journal_file_bytes;  // smaller files would be cut short
  auto again = lmdb_store::open(crashed);
  BOOST_REQUIRE_MESSAGE(again.store, again.err.message);
  auto loaded = again.store->load();
  BOOST_REQUIRE_MESSAGE(loaded.ok(), loaded.err.message);
  BOOST_TEST(loaded.value.last_index.value == next - 1);
}
