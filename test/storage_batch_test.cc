// Unit tests of the storage layer's pure parts, without LMDB or files: how a batch advances
// the log's shape (raft/storage/log_shape.h) and the record codecs (records.h,
// snapshot_files.h's byte format).
#define BOOST_TEST_MODULE storage_batch_test
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include "raft/membership.h"
#include "raft/storage/log_shape.h"
#include "raft/storage/records.h"
#include "raft/storage/snapshot_files.h"
#include "test/support/temp_dir.h"

using namespace raft;
using namespace raft::storage;

namespace {

entry make_entry(std::uint64_t index, std::uint64_t term, std::string data = "x") {
  return entry{term_t{term}, index_t{index}, entry_type::normal, std::move(data)};
}

// The stored log as a map; counts the lookups so tests can show which terms were asked for.
struct map_terms final : term_source {
  std::map<std::uint64_t, std::uint64_t> terms;  // index -> term
  mutable std::vector<std::uint64_t> asked;
  result<term_t> term_at(index_t i) const override {
    asked.push_back(i.value);
    auto it = terms.find(i.value);
    if (it == terms.end())
      return {{},
              make_error(errc::corrupt, "log entry " + std::to_string(i.value) + " is missing")};
    return {term_t{it->second}, {}};
  }
};

log_shape shape(std::uint64_t last, std::uint64_t last_term, std::uint64_t snap = 0,
                std::uint64_t snap_term = 0) {
  log_shape s;
  s.last_index = index_t{last};
  s.last_term = term_t{last_term};
  s.snap = snapshot_meta{index_t{snap}, term_t{snap_term}, raft::voters_only({node_id{1}})};
  return s;
}

snapshot_meta meta(std::uint64_t index, std::uint64_t term) {
  return snapshot_meta{index_t{index}, term_t{term}, raft::voters_only({node_id{1}, node_id{2}})};
}

bool invalid(const result<log_shape>& r) {
  return !r.ok() && r.err.code == errc::invalid_batch;
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_empty_batch_changes_nothing) {
  map_terms t;
  const log_shape s = shape(5, 2);
  auto r = advance(s, batch{}, t);
  BOOST_REQUIRE(r.ok());
  BOOST_TEST((r.value == s));
  BOOST_TEST(t.asked.empty());
}

BOOST_AUTO_TEST_CASE(appends_must_follow_without_holes_and_with_terms_not_decreasing) {
  map_terms t;
  batch ok;
  ok.entries = {make_entry(1, 1), make_entry(2, 1), make_entry(3, 4)};
  auto r = advance(shape(0, 0), ok, t);
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST(r.value.last_index.value == 3u);
  BOOST_TEST(r.value.last_term.value == 4u);

  const log_shape s = shape(3, 4);
  batch hole;
  hole.entries = {make_entry(5, 4)};
  BOOST_TEST(invalid(advance(s, hole, t)));
  batch overwrite;  // index 3 again without truncate_from
  overwrite.entries = {make_entry(3, 4)};
  BOOST_TEST(invalid(advance(s, overwrite, t)));
  batch lower;
  lower.entries = {make_entry(4, 3)};
  BOOST_TEST(invalid(advance(s, lower, t)));
  batch zero;
  zero.entries = {make_entry(1, 0)};
  BOOST_TEST(invalid(advance(shape(0, 0), zero, t)));
  batch gap_inside;
  gap_inside.entries = {make_entry(4, 4), make_entry(6, 4)};
  auto g = advance(s, gap_inside, t);
  BOOST_TEST(invalid(g));
  BOOST_TEST(g.err.message.find("entry 6 does not follow the last index 4") != std::string::npos,
             g.err.message);
  batch below_snapshot_term;  // the first entry after a snapshot may not go below its term
  below_snapshot_term.entries = {make_entry(11, 2)};
  BOOST_TEST(invalid(advance(shape(10, 3, 10, 3), below_snapshot_term, t)));
}

BOOST_AUTO_TEST_CASE(truncation_takes_the_last_term_from_the_entry_before_it) {
  map_terms t;
  t.terms = {{1, 1}, {2, 1}, {3, 2}, {4, 2}, {5, 2}};
  batch b;
  b.truncate_from = index_t{4};
  b.entries = {make_entry(4, 3)};
  auto r = advance(shape(5, 2), b, t);
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST(r.value.last_index.value == 4u);
  BOOST_TEST(r.value.last_term.value == 3u);
  BOOST_TEST(t.asked == std::vector<std::uint64_t>{3});

  // Truncation alone leaves the earlier entry's term as the last.
  batch only;
  only.truncate_from = index_t{3};
  r = advance(shape(5, 2), only, t);
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value.last_index.value == 2u);
  BOOST_TEST(r.value.last_term.value == 1u);

  // After truncation the appended entries must still not go below the kept term.
  batch lower;
  lower.truncate_from = index_t{4};
  lower.entries = {make_entry(4, 1)};
  BOOST_TEST(invalid(advance(shape(5, 2), lower, t)));
}

BOOST_AUTO_TEST_CASE(truncation_down_to_the_snapshot_uses_its_term_and_past_the_end_is_a_no_op) {
  map_terms t;  // empty: any lookup fails
  batch b;
  b.truncate_from = index_t{11};
  auto r = advance(shape(15, 4, 10, 3), b, t);
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST(r.value.last_index.value == 10u);
  BOOST_TEST(r.value.last_term.value == 3u);
  BOOST_TEST(t.asked.empty());

  batch past;
  past.truncate_from = index_t{20};
  r = advance(shape(15, 4, 10, 3), past, t);
  BOOST_REQUIRE(r.ok());
  BOOST_TEST((r.value == shape(15, 4, 10, 3)));
  BOOST_TEST(t.asked.empty());

  batch inside;
  inside.truncate_from = index_t{10};
  auto bad = advance(shape(15, 4, 10, 3), inside, t);
  BOOST_TEST(invalid(bad));
  BOOST_TEST(bad.err.message.find("inside the snapshot") != std::string::npos, bad.err.message);
}

BOOST_AUTO_TEST_CASE(a_failing_term_lookup_is_passed_on) {
  map_terms t;  // entry 3 missing: storage corruption, not a caller bug
  batch b;
  b.truncate_from = index_t{4};
  auto r = advance(shape(5, 2), b, t);
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST((r.err.code == errc::corrupt));
  BOOST_TEST(r.err.message == "log entry 3 is missing");
}

BOOST_AUTO_TEST_CASE(compaction_checks_the_term_at_its_index_and_moves_the_base) {
  map_terms t;
  t.terms = {{1, 1}, {2, 1}, {3, 2}, {4, 2}};
  batch c;
  c.compaction = meta(3, 2);
  auto r = advance(shape(4, 2), c, t);
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST((r.value.snap == meta(3, 2)));
  BOOST_TEST(r.value.last_index.value == 4u);  // the log after the snapshot stays
  BOOST_TEST(r.value.last_term.value == 2u);

  batch conflict;
  conflict.compaction = meta(3, 1);
  auto bad = advance(shape(4, 2), conflict, t);
  BOOST_TEST(invalid(bad));
  BOOST_TEST(bad.err.message.find("truncate first") != std::string::npos, bad.err.message);

  batch below;
  below.compaction = meta(5, 2);
  BOOST_TEST(invalid(advance(shape(8, 2, 6, 2), below, t)));

  // Beyond the end of the log: the log is empty afterwards, its last entry is the snapshot.
  t.asked.clear();
  batch beyond;
  beyond.compaction = meta(9, 5);
  r = advance(shape(4, 2), beyond, t);
  BOOST_REQUIRE(r.ok());
  BOOST_TEST(r.value.last_index.value == 9u);
  BOOST_TEST(r.value.last_term.value == 5u);
  BOOST_TEST(t.asked.empty());
}

BOOST_AUTO_TEST_CASE(compaction_over_entries_of_the_same_batch_uses_their_terms) {
  map_terms t;
  t.terms = {{1, 1}, {2, 1}, {3, 1}};
  batch b;  // replace 3.. with term 2 entries, then compact at 4 (one of the new entries)
  b.truncate_from = index_t{3};
  b.entries = {make_entry(3, 2), make_entry(4, 2), make_entry(5, 2)};
  b.compaction = meta(4, 2);
  auto r = advance(shape(3, 1), b, t);
  BOOST_REQUIRE_MESSAGE(r.ok(), r.err.message);
  BOOST_TEST(t.asked == std::vector<std::uint64_t>{2});  // only for the truncation
  BOOST_TEST(r.value.snap.index.value == 4u);
  BOOST_TEST(r.value.last_index.value == 5u);

  // The old term 1 at index 3 was truncated away: compacting at 3 with term 1 conflicts.
  b.compaction = meta(3, 1);
  BOOST_TEST(invalid(advance(shape(3, 1), b, t)));
}

BOOST_AUTO_TEST_CASE(hard_state_is_replaced_only_when_the_batch_carries_one) {
  map_terms t;
  log_shape s = shape(0, 0);
  s.hard = hard_state{term_t{2}, node_id{1}, index_t{0}};
  batch b;
  b.entries = {make_entry(1, 2)};
  auto r = advance(s, b, t);
  BOOST_REQUIRE(r.ok());
  BOOST_TEST((r.value.hard == s.hard));
  b.hard = hard_state{term_t{3}, node_id{2}, index_t{1}};
  r = advance(s, b, t);
  BOOST_REQUIRE(r.ok());
  BOOST_TEST((r.value.hard == *b.hard));
  BOOST_TEST((r.value.as_persisted().hard == *b.hard));
}

// Random valid batches against a map model of the log: the shape advance() returns always
// agrees with the model's.
BOOST_AUTO_TEST_CASE(random_valid_batches_agree_with_a_model_of_the_log) {
  std::mt19937_64 rng(7);
  map_terms model;
  log_shape s = shape(0, 0);
  for (int step = 0; step < 5000; ++step) {
    batch b;
    std::uint64_t last = s.last_index.value;
    std::uint64_t term = s.last_term.value;
    const auto dice = rng() % 10;
    if (dice == 0 && last > s.snap.index.value) {
      const std::uint64_t from = s.snap.index.value + 1 + rng() % (last - s.snap.index.value);
      b.truncate_from = index_t{from};
      model.terms.erase(model.terms.lower_bound(from), model.terms.end());
      last = from - 1;
      term = last == s.snap.index.value ? s.snap.term.value : model.terms.at(last);
    }
    const auto n = rng() % 4;
    for (std::uint64_t k = 0; k < n; ++k) {
      term += rng() % 3 == 0 ? 1 : 0;
      if (term == 0) term = 1;
      b.entries.push_back(make_entry(++last, term));
    }
    for (const auto& e : b.entries) model.terms[e.index.value] = e.term.value;
    if (dice == 1 && last > s.snap.index.value) {
      const std::uint64_t at = s.snap.index.value + 1 + rng() % (last - s.snap.index.value);
      b.compaction = meta(at, model.terms.at(at));
    }
    if (rng() % 4 == 0) b.hard = hard_state{term_t{term}, node_id{1}, index_t{0}};
    auto r = advance(s, b, model);
    BOOST_REQUIRE_MESSAGE(r.ok(), "step " << step << ": " << r.err.message);
    if (b.compaction)
      model.terms.erase(model.terms.begin(), model.terms.upper_bound(b.compaction->index.value));
    s = r.value;
    const std::uint64_t want_last =
        model.terms.empty() ? s.snap.index.value : model.terms.rbegin()->first;
    const std::uint64_t want_term =
        model.terms.empty() ? s.snap.term.value : model.terms.rbegin()->second;
    BOOST_REQUIRE_EQUAL(s.last_index.value, want_last);
    BOOST_REQUIRE_EQUAL(s.last_term.value, want_term);
    if (b.hard) BOOST_REQUIRE((s.hard == *b.hard));
  }
}

// ---- records ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(entry_records_round_trip_and_name_what_is_damaged) {
  const entry e{term_t{7}, index_t{42}, entry_type::noop, std::string("pay\0load", 8)};
  std::string rec;
  encode_entry(e, rec);
  BOOST_TEST(rec.size() == entry_header_bytes + 8);
  auto back = decode_entry(index_t{42}, rec);
  BOOST_REQUIRE_MESSAGE(back.ok(), back.err.message);
  BOOST_TEST((back.value == e));

  std::string flipped = rec;
  flipped[entry_header_bytes + 1] ^= 0x01;
  auto bad = decode_entry(index_t{42}, flipped);
  BOOST_TEST((bad.err.code == errc::corrupt));
  BOOST_TEST(bad.err.message.find("checksum mismatch in log entry 42") != std::string::npos,
             bad.err.message);

  auto wrong_key = decode_entry(index_t{43}, rec);  // a record under the wrong key
  BOOST_TEST((wrong_key.err.code == errc::corrupt));
  BOOST_TEST(wrong_key.err.message.find("does not match its key") != std::string::npos);

  BOOST_TEST(!decode_entry(index_t{42}, rec.substr(0, 3)).ok());
  BOOST_TEST(!decode_entry(index_t{42}, seal("short")).ok());
}

BOOST_AUTO_TEST_CASE(meta_records_round_trip_and_reject_damage) {
  const hard_state h{term_t{5}, node_id{3}, index_t{99}};
  auto hb = decode_hard_state(encode_hard_state(h));
  BOOST_REQUIRE(hb.ok());
  BOOST_TEST((hb.value == h));
  std::string hr = encode_hard_state(h);
  hr.back() ^= 0x40;
  BOOST_TEST(decode_hard_state(hr).err.message.find("checksum mismatch in hard state") == 0u);

  const snapshot_meta m = meta(100, 4);
  auto mb = decode_snapshot_record(encode_snapshot_record(m));
  BOOST_REQUIRE(mb.ok());
  BOOST_TEST((mb.value == m));
  // A voter count far beyond the bytes present is malformed (and allocates nothing).
  std::string body;
  base::byte_writer w(body);
  w.u64(1);
  w.u64(1);
  w.u32(0xFFFFFFFFu);
  BOOST_TEST(!decode_snapshot_record(seal(body)).ok());

  auto v = decode_format_record(encode_format_record(format_version));
  BOOST_REQUIRE(v.ok());
  BOOST_TEST(v.value == format_version);
  BOOST_TEST(decode_format_record(seal("12345")).value == 0u);
}

BOOST_AUTO_TEST_CASE(log_keys_sort_numerically_as_bytes) {
  const std::uint64_t values[] = {0, 1, 255, 256, 65535, 1ull << 32, (1ull << 63) + 5};
  for (std::size_t i = 0; i + 1 < std::size(values); ++i) {
    const auto a = log_key(index_t{values[i]});
    const auto b = log_key(index_t{values[i + 1]});
    BOOST_TEST(std::memcmp(a.data(), b.data(), 8) < 0);
    BOOST_TEST(log_key_index(std::string_view(a.data(), 8))->value == values[i]);
  }
  BOOST_TEST(!log_key_index("1234567").has_value());
}

BOOST_AUTO_TEST_CASE(snapshot_file_bytes_round_trip_and_detect_tears) {
  const snapshot_meta m = meta(77, 3);
  const std::string data(5000, 'q');
  const std::string file = encode_snapshot_header(m, data) + data;
  auto p = parse_snapshot_bytes(file, "f");
  BOOST_REQUIRE_MESSAGE(p.ok(), p.err.message);
  BOOST_TEST((p.value.meta == m));
  BOOST_TEST(p.value.data.view() == data);

  auto torn = parse_snapshot_bytes(file.substr(0, file.size() - 1), "f");
  BOOST_TEST(torn.err.message.find("torn or truncated") != std::string::npos, torn.err.message);
  std::string rot = file;
  rot[rot.size() - 10] ^= 0x01;
  BOOST_TEST(parse_snapshot_bytes(rot, "f").err.message.find("checksum mismatch in data") !=
             std::string::npos);
  std::string bad_header = file;
  bad_header[20] ^= 0x01;
  BOOST_TEST(parse_snapshot_bytes(bad_header, "f").err.message.find("header") != std::string::npos);
  BOOST_TEST(!parse_snapshot_bytes("RKVSNAP1", "f").ok());

  const std::string name = snapshot_file_name(m);
  auto parsed_name = parse_snapshot_name(name);
  BOOST_REQUIRE(parsed_name.has_value());
  BOOST_TEST(parsed_name->first.value == 77u);
  BOOST_TEST(parsed_name->second.value == 3u);
  BOOST_TEST(!parse_snapshot_name("tmp-1-2-" + name).has_value());
}

BOOST_AUTO_TEST_CASE(snapshot_payload_views_survive_moves_mapped_or_owned) {
  // Owned and short: the string's bytes live inside the object, so a moved view must be
  // rebuilt, not copied.
  auto owned = parse_snapshot_bytes(encode_snapshot_header(meta(5, 1), "tiny") + "tiny", "f");
  BOOST_REQUIRE(owned.ok());
  snapshot_payload moved = std::move(owned.value.data);
  BOOST_TEST(moved.view() == "tiny");
  snapshot_payload again;
  again = std::move(moved);
  BOOST_TEST(again.view() == "tiny");
  BOOST_TEST(moved.view().empty());

  // Mapped: written through snapshot_dir, read back as a map of the file.
  test_support::temp_dir dir("raftkv-payload-");
  snapshot_dir snaps(dir.path, /*fsync=*/false);
  BOOST_REQUIRE(snaps.prepare().ok());
  const std::string big(300'000, 'z');
  BOOST_REQUIRE(snaps.write(meta(9, 2), big).ok());
  auto files = snaps.list();
  BOOST_REQUIRE(files.size() == 1u);
  auto read = snaps.read(files[0]);
  BOOST_REQUIRE_MESSAGE(read.ok(), read.err.message);
  BOOST_TEST((read.value.meta == meta(9, 2)));
  snapshot_payload kept = std::move(read.value.data);
  BOOST_TEST(kept.size() == big.size());
  BOOST_TEST((kept.view() == big));

  // A file cut short is refused, not mapped past its end.
  std::filesystem::resize_file(files[0].path, 10);
  auto cut = snaps.read(files[0]);
  BOOST_TEST(!cut.ok());
}
