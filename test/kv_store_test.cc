// The kv state machine: memcached semantics of every op, expiry, flush, quota, at-most-once,
// listing and snapshots.
#define BOOST_TEST_MODULE kv_store
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <limits>
#include <iterator>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "base/crc32c.h"
#include "kv/item_set.h"
#include "kv/seq_ring.h"
#include "kv/store.h"

// Every allocation of this test program is counted, so a test can show that a write
// allocates nothing (a replacement of the global operator new, as the standard allows).
namespace {
std::size_t allocations = 0;
}  // namespace
void* operator new(std::size_t bytes) {
  ++allocations;
  if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

// Runs f and returns how many times it called operator new.
template <typename F>
std::size_t allocations_in(F&& f) {
  const std::size_t before = allocations;
  f();
  return allocations - before;
}

// 2026-01-01T00:00:00Z, a leader clock reading in ms.
constexpr std::int64_t t0 = 1'767'225'600'000;
constexpr std::uint64_t max_u64 = 0xffffffffffffffffull;

kv::command make(kv::op kind, std::string key, std::string value = {}, std::int64_t now = t0) {
  kv::command c;
  c.kind = kind;
  c.key = std::move(key);
  c.value = std::move(value);
  c.timestamp_ms = now;
  return c;
}

// A store with a running log index, so each test reads like a client session.
struct fixture {
  kv::store s;
  std::uint64_t next_index = 1;

  explicit fixture(kv::store_options o = {}) : s(o) {}

  kv::result apply(const kv::command& c) { return s.apply(next_index++, c); }

  kv::result set(std::string key, std::string value, std::uint32_t flags = 0,
                 std::int64_t exptime = 0, std::int64_t now = t0) {
    auto c = make(kv::op::set, std::move(key), std::move(value), now);
    c.flags = flags;
    c.exptime = exptime;
    return apply(c);
  }
  kv::result op(kv::op kind, std::string key, std::string value = {}, std::int64_t now = t0) {
    return apply(make(kind, std::move(key), std::move(value), now));
  }
  kv::result incr(kv::op kind, std::string key, std::uint64_t delta, std::int64_t now = t0) {
    auto c = make(kind, std::move(key), {}, now);
    c.delta = delta;
    return apply(c);
  }
  kv::result cas(std::string key, std::string value, std::uint64_t unique, std::int64_t now = t0) {
    auto c = make(kv::op::cas, std::move(key), std::move(value), now);
    c.cas_unique = unique;
    return apply(c);
  }
  kv::result touch(kv::op kind, std::string key, std::int64_t exptime, std::int64_t now = t0) {
    auto c = make(kind, std::move(key), {}, now);
    c.exptime = exptime;
    return apply(c);
  }
  kv::result flush(std::int64_t delay_s, std::int64_t now = t0) {
    auto c = make(kv::op::flush_all, {}, {}, now);
    c.delay_s = delay_s;
    return apply(c);
  }
  std::optional<kv::item_view> get(std::string_view key, std::int64_t now = t0) const {
    return s.find(key, now);
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Storage commands

BOOST_AUTO_TEST_CASE(set_stores_value_and_flags_with_version_equal_to_log_index) {
  fixture f;
  auto r = f.set("k", "hello", 42);
  BOOST_TEST((r.code == kv::status::stored));
  BOOST_TEST(r.version == 1u);
  auto it = f.get("k");
  BOOST_REQUIRE(it.has_value());
  BOOST_TEST(it->value == "hello");
  BOOST_TEST(it->flags == 42u);
  BOOST_TEST(it->version == 1u);
  BOOST_TEST(it->expires_at_ms == 0);
  BOOST_TEST(f.s.applied_index() == 1u);
  BOOST_TEST(f.s.stats().cmd_set == 1u);
  BOOST_TEST(f.s.stats().curr_items == 1u);
  BOOST_TEST(f.s.stats().total_items == 1u);
  BOOST_TEST(f.s.stats().bytes == 1u + 5u + kv::store::item_overhead_bytes);
  // Overwriting gives the new index as version and re-accounts the bytes.
  BOOST_TEST(f.set("k", "hi").version == 2u);
  BOOST_TEST(f.get("k")->version == 2u);
  BOOST_TEST(f.s.stats().bytes == 1u + 2u + kv::store::item_overhead_bytes);
  BOOST_TEST(f.s.stats().curr_items == 1u);
  BOOST_TEST(f.s.stats().total_items == 2u);
}

BOOST_AUTO_TEST_CASE(add_stores_only_when_the_key_is_absent) {
  fixture f;
  BOOST_TEST((f.op(kv::op::add, "k", "a").code == kv::status::stored));
  BOOST_TEST((f.op(kv::op::add, "k", "b").code == kv::status::not_stored));
  BOOST_TEST(f.get("k")->value == "a");
  BOOST_TEST(f.s.stats().cmd_set == 2u);
}

BOOST_AUTO_TEST_CASE(add_succeeds_over_an_expired_item) {
  fixture f;
  f.set("k", "old", 0, 1);
  BOOST_TEST((f.op(kv::op::add, "k", "new", t0 + 1000).code == kv::status::stored));
  BOOST_TEST(f.get("k", t0 + 1000)->value == "new");
  BOOST_TEST(f.s.stats().curr_items == 1u);
}

BOOST_AUTO_TEST_CASE(replace_stores_only_when_the_key_is_present) {
  fixture f;
  BOOST_TEST((f.op(kv::op::replace, "k", "a").code == kv::status::not_stored));
  BOOST_TEST(!f.get("k").has_value());
  f.set("k", "a");
  auto r = f.op(kv::op::replace, "k", "b");
  BOOST_TEST((r.code == kv::status::stored));
  BOOST_TEST(f.get("k")->value == "b");
  BOOST_TEST(f.get("k")->version == r.version);
}

BOOST_AUTO_TEST_CASE(replace_of_an_expired_item_is_not_stored_and_reclaims_it) {
  fixture f;
  f.set("k", "a", 0, 1);
  BOOST_TEST((f.op(kv::op::replace, "k", "b", t0 + 1000).code == kv::status::not_stored));
  BOOST_TEST(f.s.stats().curr_items == 0u);
  BOOST_TEST(f.s.stats().bytes == 0u);
}

BOOST_AUTO_TEST_CASE(append_and_prepend_keep_flags_and_expiry_and_take_a_new_version) {
  fixture f;
  f.set("k", "mid", 7, 100);
  const auto before = *f.get("k");
  auto r = f.op(kv::op::append, "k", ">>", t0 + 5000);
  BOOST_TEST((r.code == kv::status::stored));
  r = f.op(kv::op::prepend, "k", "<<", t0 + 6000);
  BOOST_TEST((r.code == kv::status::stored));
  auto after = f.get("k", t0 + 6000);
  BOOST_REQUIRE(after.has_value());
  BOOST_TEST(after->value == "<<mid>>");
  BOOST_TEST(after->flags == 7u);
  BOOST_TEST(after->expires_at_ms == before.expires_at_ms);
  BOOST_TEST(after->expires_at_ms == t0 + 100'000);
  BOOST_TEST(after->version == 3u);
  BOOST_TEST(r.version == 3u);
  BOOST_TEST(f.s.stats().bytes == 1u + 7u + kv::store::item_overhead_bytes);
}

BOOST_AUTO_TEST_CASE(append_and_prepend_on_a_missing_key_are_not_stored) {
  fixture f;
  BOOST_TEST((f.op(kv::op::append, "k", "x").code == kv::status::not_stored));
  BOOST_TEST((f.op(kv::op::prepend, "k", "x").code == kv::status::not_stored));
  BOOST_TEST(f.s.stats().curr_items == 0u);
}

BOOST_AUTO_TEST_CASE(append_past_the_value_limit_is_too_large_and_changes_nothing) {
  kv::store_options o;
  o.max_value_bytes = 8;
  fixture f(o);
  f.set("k", "12345");
  BOOST_TEST((f.op(kv::op::append, "k", "6789").code == kv::status::too_large));
  BOOST_TEST(f.get("k")->value == "12345");
  BOOST_TEST((f.op(kv::op::append, "k", "678").code == kv::status::stored));
}

BOOST_AUTO_TEST_CASE(cas_with_the_current_version_stores) {
  fixture f;
  auto v = f.set("k", "a").version;
  auto r = f.cas("k", "b", v);
  BOOST_TEST((r.code == kv::status::stored));
  BOOST_TEST(r.version == 2u);
  BOOST_TEST(f.get("k")->value == "b");
  BOOST_TEST(f.s.stats().cas_hits == 1u);
  BOOST_TEST(f.s.stats().cmd_set == 2u);
}

BOOST_AUTO_TEST_CASE(cas_with_a_stale_version_is_exists_and_counts_badval) {
  fixture f;
  auto v = f.set("k", "a").version;
  f.set("k", "b");
  BOOST_TEST((f.cas("k", "c", v).code == kv::status::exists));
  BOOST_TEST(f.get("k")->value == "b");
  BOOST_TEST(f.s.stats().cas_badval == 1u);
  BOOST_TEST(f.s.stats().cas_hits == 0u);
}

BOOST_AUTO_TEST_CASE(cas_on_a_missing_key_is_not_found_and_counts_misses) {
  fixture f;
  BOOST_TEST((f.cas("k", "c", 1).code == kv::status::not_found));
  BOOST_TEST(f.s.stats().cas_misses == 1u);
  BOOST_TEST(!f.get("k").has_value());
}

BOOST_AUTO_TEST_CASE(cas_unique_zero_never_matches) {
  fixture f;
  BOOST_TEST((f.cas("k", "x", 0).code == kv::status::not_found));
  f.set("k", "a");
  BOOST_TEST((f.cas("k", "x", 0).code == kv::status::exists));
  BOOST_TEST(f.get("k")->value == "a");
}

BOOST_AUTO_TEST_CASE(oversized_key_or_value_is_too_large_and_changes_nothing) {
  kv::store_options o;
  o.max_key_bytes = 4;
  o.max_value_bytes = 4;
  fixture f(o);
  f.set("k", "v");
  const auto bytes = f.s.stats().bytes;
  BOOST_TEST((f.set("kkkkk", "v").code == kv::status::too_large));
  BOOST_TEST((f.set("k", "vvvvv").code == kv::status::too_large));
  BOOST_TEST((f.op(kv::op::remove, "kkkkk").code == kv::status::too_large));
  BOOST_TEST((f.incr(kv::op::incr, "kkkkk", 1).code == kv::status::too_large));
  BOOST_TEST((f.touch(kv::op::touch, "kkkkk", 1).code == kv::status::too_large));
  BOOST_TEST(f.get("k")->value == "v");
  BOOST_TEST(f.s.stats().bytes == bytes);
  BOOST_TEST(f.s.stats().curr_items == 1u);
  BOOST_TEST(f.s.stats().cmd_set == 1u);  // refused before counting, as memcached does
  BOOST_TEST((f.set("kkkk", "vvvv").code == kv::status::stored));  // the limits are inclusive
}

// ---------------------------------------------------------------------------------------
// delete

BOOST_AUTO_TEST_CASE(remove_deletes_a_present_key_and_counts_hits_and_misses) {
  fixture f;
  f.set("k", "a");
  BOOST_TEST((f.op(kv::op::remove, "k").code == kv::status::deleted));
  BOOST_TEST(!f.get("k").has_value());
  BOOST_TEST((f.op(kv::op::remove, "k").code == kv::status::not_found));
  BOOST_TEST(f.s.stats().delete_hits == 1u);
  BOOST_TEST(f.s.stats().delete_misses == 1u);
  BOOST_TEST(f.s.stats().curr_items == 0u);
  BOOST_TEST(f.s.stats().bytes == 0u);
}

BOOST_AUTO_TEST_CASE(conditional_remove_deletes_only_the_matching_version) {
  fixture f;
  auto v = f.set("k", "a").version;
  auto c = make(kv::op::remove, "k");
  c.cas_unique = v + 100;
  BOOST_TEST((f.apply(c).code == kv::status::exists));
  BOOST_TEST(f.get("k").has_value());
  c.cas_unique = v;
  BOOST_TEST((f.apply(c).code == kv::status::deleted));
  BOOST_TEST(!f.get("k").has_value());
}

// ---------------------------------------------------------------------------------------
// incr / decr

BOOST_AUTO_TEST_CASE(incr_adds_and_stores_decimal_text_keeping_flags_and_expiry) {
  fixture f;
  f.set("n", "41", 5, 60);
  auto r = f.incr(kv::op::incr, "n", 1);
  BOOST_TEST((r.code == kv::status::number));
  BOOST_TEST(r.number == 42u);
  BOOST_TEST(r.version == 2u);
  auto it = f.get("n");
  BOOST_TEST(it->value == "42");
  BOOST_TEST(it->flags == 5u);
  BOOST_TEST(it->version == 2u);
  BOOST_TEST(it->expires_at_ms == t0 + 60'000);
  BOOST_TEST(f.s.stats().incr_hits == 1u);
}

BOOST_AUTO_TEST_CASE(incr_wraps_at_two_to_the_64) {
  fixture f;
  f.set("n", "18446744073709551615");
  auto r = f.incr(kv::op::incr, "n", 1);
  BOOST_TEST((r.code == kv::status::number));
  BOOST_TEST(r.number == 0u);
  BOOST_TEST(f.get("n")->value == "0                   ");  // padded in place, as memcached
  r = f.incr(kv::op::incr, "n", max_u64);
  BOOST_TEST(r.number == max_u64);
  BOOST_TEST(f.incr(kv::op::incr, "n", 2).number == 1u);
}

BOOST_AUTO_TEST_CASE(decr_stops_at_zero) {
  fixture f;
  f.set("n", "10");
  BOOST_TEST(f.incr(kv::op::decr, "n", 3).number == 7u);
  auto r = f.incr(kv::op::decr, "n", 100);
  BOOST_TEST((r.code == kv::status::number));
  BOOST_TEST(r.number == 0u);
  BOOST_TEST(f.get("n")->value == "0 ");
  BOOST_TEST(f.s.stats().decr_hits == 2u);
}

BOOST_AUTO_TEST_CASE(incr_and_decr_of_a_non_numeric_value_fail_and_change_nothing) {
  fixture f;
  const std::vector<std::string> bad = {
      "", "abc", "12a", "-1", "- 1", "1.5", "+", " ", "18446744073709551616", "1x 2"};
  for (const auto& v : bad) {
    f.set("n", v);
    const auto before = *f.get("n");
    BOOST_TEST((f.incr(kv::op::incr, "n", 1).code == kv::status::non_numeric),
               "value '" << v << "'");
    BOOST_TEST((f.incr(kv::op::decr, "n", 1).code == kv::status::non_numeric),
               "value '" << v << "'");
    BOOST_TEST((*f.get("n") == before));
  }
  BOOST_TEST(f.s.stats().incr_hits == 0u);
  BOOST_TEST(f.s.stats().incr_misses == 0u);
  // Leading zeros within 20 digits are still a number.
  f.set("n", "00000000000000000007");
  BOOST_TEST(f.incr(kv::op::incr, "n", 1).number == 8u);
}

// memcached reads the value with strtoull: blanks before, a sign, digits, then the end or a
// blank (the rest is ignored); a result no longer than the old value is padded with spaces.
// The expectations below are what memcached 1.6.18 answers.
BOOST_AUTO_TEST_CASE(incr_reads_and_pads_numbers_as_memcached_does) {
  fixture f;
  const std::vector<std::tuple<std::string, std::uint64_t, std::string>> cases = {
      {" 1", 2, "2 "},
      {"1 ", 2, "2 "},
      {"+1", 2, "2 "},
      {"\t5", 6, "6 "},
      {"-0", 1, "1 "},
      {"12 abc", 13, "13    "},
      {"000000000000000000001", 2, "2                    "},
      {"99", 100, "100"},
      {"100", 101, "101"},
  };
  for (const auto& [value, number, stored] : cases) {
    f.set("n", value);
    const auto r = f.incr(kv::op::incr, "n", 1);
    BOOST_TEST((r.code == kv::status::number), "value '" << value << "'");
    BOOST_TEST(r.number == number, "value '" << value << "'");
    BOOST_TEST(f.get("n")->value == stored, "value '" << value << "'");
  }
  f.set("n", "100");
  BOOST_TEST(f.incr(kv::op::decr, "n", 1).number == 99u);
  BOOST_TEST(f.get("n")->value == "99 ");
}

BOOST_AUTO_TEST_CASE(incr_and_decr_on_a_missing_key_are_not_found) {
  fixture f;
  BOOST_TEST((f.incr(kv::op::incr, "n", 1).code == kv::status::not_found));
  BOOST_TEST((f.incr(kv::op::decr, "n", 1).code == kv::status::not_found));
  BOOST_TEST(f.s.stats().incr_misses == 1u);
  BOOST_TEST(f.s.stats().decr_misses == 1u);
  BOOST_TEST(!f.get("n").has_value());
}

// ---------------------------------------------------------------------------------------
// touch / gat

BOOST_AUTO_TEST_CASE(touch_changes_only_the_expiry_and_keeps_the_version) {
  fixture f;
  f.set("k", "v", 3, 10);
  auto r = f.touch(kv::op::touch, "k", 100, t0 + 5000);
  BOOST_TEST((r.code == kv::status::touched));
  auto it = f.get("k", t0 + 50'000);
  BOOST_REQUIRE(it.has_value());
  BOOST_TEST(it->version == 1u);
  BOOST_TEST(it->value == "v");
  BOOST_TEST(it->flags == 3u);
  BOOST_TEST(it->expires_at_ms == t0 + 5000 + 100'000);
  BOOST_TEST(f.s.stats().touch_hits == 1u);
  BOOST_TEST(f.s.stats().cmd_touch == 1u);
  // Touch 0 removes the expiry.
  f.touch(kv::op::touch, "k", 0);
  BOOST_TEST(f.get("k", t0 + 1'000'000'000)->expires_at_ms == 0);
}

BOOST_AUTO_TEST_CASE(touch_of_a_missing_or_expired_key_is_not_found) {
  fixture f;
  BOOST_TEST((f.touch(kv::op::touch, "k", 10).code == kv::status::not_found));
  f.set("e", "v", 0, 1);
  BOOST_TEST((f.touch(kv::op::touch, "e", 100, t0 + 1000).code == kv::status::not_found));
  BOOST_TEST(f.s.stats().touch_misses == 2u);
}

BOOST_AUTO_TEST_CASE(get_and_touch_returns_the_item_with_its_new_expiry) {
  fixture f;
  f.set("k", "v", 9, 10);
  auto r = f.touch(kv::op::get_and_touch, "k", 20);
  BOOST_TEST((r.code == kv::status::item));
  BOOST_REQUIRE(r.item.has_value());
  BOOST_TEST(r.item->value == "v");
  BOOST_TEST(r.item->flags == 9u);
  BOOST_TEST(r.item->version == 1u);
  BOOST_TEST(r.item->expires_at_ms == t0 + 20'000);
  BOOST_TEST(f.get("k")->expires_at_ms == t0 + 20'000);
  BOOST_TEST(f.get("k")->version == 1u);
  BOOST_TEST((f.touch(kv::op::get_and_touch, "x", 20).code == kv::status::not_found));
  BOOST_TEST(f.s.stats().touch_hits == 1u);
  BOOST_TEST(f.s.stats().touch_misses == 1u);
  BOOST_TEST(f.s.stats().cmd_touch == 2u);
}

// ---------------------------------------------------------------------------------------
// Expiry

BOOST_AUTO_TEST_CASE(an_item_is_visible_until_one_ms_before_its_expiry_and_gone_at_it) {
  fixture f;
  f.set("k", "v", 0, 10);
  const std::int64_t at = t0 + 10'000;
  BOOST_TEST(f.get("k")->expires_at_ms == at);
  BOOST_TEST(f.get("k", at - 1).has_value());
  BOOST_TEST(!f.get("k", at).has_value());
  BOOST_TEST(!f.get("k", at + 1).has_value());
  // Writes see the same boundary.
  BOOST_TEST((f.op(kv::op::replace, "k", "w", at - 1).code == kv::status::stored));
  f.set("j", "v", 0, 10);
  BOOST_TEST((f.op(kv::op::replace, "j", "w", at).code == kv::status::not_stored));
}

BOOST_AUTO_TEST_CASE(negative_exptime_stores_an_already_expired_item) {
  fixture f;
  f.set("k", "old");
  BOOST_TEST((f.set("k", "new", 0, -1).code == kv::status::stored));
  BOOST_TEST(!f.get("k").has_value());
  BOOST_TEST(!f.get("k", 0).has_value());  // dead for every reader clock
  // As in memcached it still occupies memory until purged or overwritten.
  BOOST_TEST(f.s.stats().curr_items == 1u);
  BOOST_TEST(f.s.expired_keys(t0, 10) == std::vector<std::string>{"k"});
  // Touch with a negative exptime expires a live item.
  f.set("t", "v");
  BOOST_TEST((f.touch(kv::op::touch, "t", -1).code == kv::status::touched));
  BOOST_TEST(!f.get("t").has_value());
}

BOOST_AUTO_TEST_CASE(memcached_exptime_above_thirty_days_is_absolute_unix_time) {
  fixture f;
  const std::int64_t thirty_days = 2'592'000;
  // Exactly 30 days is still relative.
  f.set("rel", "v", 0, thirty_days);
  BOOST_TEST(f.get("rel")->expires_at_ms == t0 + thirty_days * 1000);
  // One second more is a Unix time: 1970-01-31, long past, so the item is dead at once.
  f.set("past", "v", 0, thirty_days + 1);
  BOOST_TEST(!f.get("past").has_value());
  // A Unix time in the future.
  const std::int64_t at_s = t0 / 1000 + 3600;
  f.set("abs", "v", 0, at_s);
  BOOST_TEST(f.get("abs")->expires_at_ms == at_s * 1000);
  BOOST_TEST(f.get("abs", at_s * 1000 - 1).has_value());
  BOOST_TEST(!f.get("abs", at_s * 1000).has_value());
}

BOOST_AUTO_TEST_CASE(relative_expiry_kind_treats_large_values_as_seconds_from_now) {
  fixture f;
  auto c = make(kv::op::set, "k", "v");
  c.kind_of_expiry = kv::expiry_kind::relative;
  c.exptime = 100'000'000;  // ~3 years; memcached kind would read this as 1973
  f.apply(c);
  BOOST_TEST(f.get("k")->expires_at_ms == t0 + 100'000'000'000);
  // Absurd values saturate instead of overflowing into the past.
  c.key = "huge";
  c.exptime = std::numeric_limits<std::int64_t>::max();
  f.apply(c);
  BOOST_TEST(f.get("huge", t0 + 1'000'000'000'000'000).has_value());
  // Relative 0 is never, negative is already expired.
  c.key = "never";
  c.exptime = 0;
  f.apply(c);
  BOOST_TEST(f.get("never")->expires_at_ms == 0);
  c.key = "gone";
  c.exptime = -5;
  f.apply(c);
  BOOST_TEST(!f.get("gone").has_value());
}

// ---------------------------------------------------------------------------------------
// flush_all

BOOST_AUTO_TEST_CASE(flush_all_without_delay_hides_everything_written_before_it) {
  fixture f;
  f.set("a", "1");
  f.set("b", "2");
  BOOST_TEST((f.flush(0).code == kv::status::ok));
  BOOST_TEST(!f.get("a").has_value());
  BOOST_TEST(!f.get("b").has_value());
  BOOST_TEST(f.s.stats().cmd_flush == 1u);
  BOOST_TEST(f.s.stats().bytes == 0u);
  // A write after the flush survives even with the same timestamp.
  f.set("c", "3");
  BOOST_TEST(f.get("c").has_value());
  BOOST_TEST(f.get("c", t0 + 1'000'000).has_value());
}

BOOST_AUTO_TEST_CASE(flush_all_with_delay_hides_items_written_before_the_deadline_from_it_on) {
  fixture f;
  f.set("early", "1");
  f.flush(10);  // deadline t0 + 10 s
  const std::int64_t deadline = t0 + 10'000;
  f.set("between", "2", 0, 0, t0 + 5000);  // written before the deadline: flushed too
  BOOST_TEST(f.get("early", deadline - 1).has_value());
  BOOST_TEST(f.get("between", deadline - 1).has_value());
  BOOST_TEST(!f.get("early", deadline).has_value());
  BOOST_TEST(!f.get("between", deadline).has_value());
  // Writes before the deadline see the items; writes after it do not.
  BOOST_TEST((f.op(kv::op::add, "early", "x", deadline - 1).code == kv::status::not_stored));
  f.set("later", "3", 0, 0, deadline + 1);
  BOOST_TEST(!f.get("early", deadline + 1).has_value());
  BOOST_TEST(f.get("later", deadline + 1).has_value());
  BOOST_TEST(f.get("later", deadline + 1'000'000).has_value());
  // Applying an entry past the deadline reclaimed the flushed items.
  BOOST_TEST(f.s.stats().curr_items == 1u);
}

BOOST_AUTO_TEST_CASE(flush_all_delay_above_thirty_days_is_an_absolute_time) {
  fixture f;
  f.set("a", "1");
  const std::int64_t at_s = t0 / 1000 + 60;
  f.flush(at_s);
  BOOST_TEST(f.get("a", at_s * 1000 - 1).has_value());
  BOOST_TEST(!f.get("a", at_s * 1000).has_value());
}

BOOST_AUTO_TEST_CASE(flush_all_without_delay_cancels_a_pending_delayed_flush) {
  fixture f;
  f.flush(10);
  f.flush(0, t0 + 1000);
  f.set("a", "1", 0, 0, t0 + 2000);  // written before the cancelled deadline
  BOOST_TEST(f.get("a", t0 + 20'000).has_value());
}

// ---------------------------------------------------------------------------------------
// purge_expired

BOOST_AUTO_TEST_CASE(purge_expired_removes_expired_items_and_frees_their_bytes) {
  fixture f;
  f.set("keep", "v");
  f.set("short", "v", 0, 1);
  f.set("long", "v", 0, 100);
  const auto bytes_before = f.s.stats().bytes;
  BOOST_TEST(f.s.expired_keys(t0 + 1000, 10) == std::vector<std::string>{"short"});
  BOOST_TEST(f.s.expired_keys(t0 + 100'000, 1).size() == 1u);  // limit honoured
  BOOST_TEST(f.s.expired_keys(t0 + 100'000, 10).size() == 2u);
  BOOST_TEST((f.op(kv::op::purge_expired, "", "", t0 + 1000).code == kv::status::ok));
  BOOST_TEST(f.s.stats().curr_items == 2u);
  BOOST_TEST(f.s.stats().bytes == bytes_before - (5u + 1u + kv::store::item_overhead_bytes));
  BOOST_TEST(f.s.expired_keys(t0 + 1000, 10).empty());
  BOOST_TEST(f.get("long", t0 + 1000).has_value());
  f.op(kv::op::purge_expired, "", "", t0 + 100'000);
  BOOST_TEST(f.s.stats().curr_items == 1u);
  BOOST_TEST(f.get("keep", t0 + 100'000).has_value());
}

BOOST_AUTO_TEST_CASE(expired_keys_includes_items_of_a_due_delayed_flush) {
  fixture f;
  f.set("a", "1");
  f.flush(5);
  BOOST_TEST(f.s.expired_keys(t0 + 4999, 10).empty());
  BOOST_TEST(f.s.expired_keys(t0 + 5000, 10) == std::vector<std::string>{"a"});
  f.op(kv::op::purge_expired, "", "", t0 + 5000);
  BOOST_TEST(f.s.stats().curr_items == 0u);
  BOOST_TEST(f.s.stats().bytes == 0u);
}

// ---------------------------------------------------------------------------------------
// Memory quota

BOOST_AUTO_TEST_CASE(a_write_over_the_quota_is_refused_and_changes_nothing) {
  kv::store_options o;
  const std::uint64_t item = 1 + 10 + kv::store::item_overhead_bytes;
  o.max_memory_bytes = 3 * item;
  fixture f(o);
  f.set("a", "0123456789");
  f.set("b", "0123456789");
  f.set("c", "0123456789");
  BOOST_TEST(f.s.stats().bytes == 3 * item);
  const auto snap = f.s.snapshot();
  for (auto kind : {kv::op::set, kv::op::add}) {
    BOOST_TEST((f.op(kind, "d", "x").code == kv::status::out_of_memory));
  }
  BOOST_TEST((f.op(kv::op::append, "a", "x").code == kv::status::out_of_memory));
  BOOST_TEST((f.op(kv::op::replace, "a", "0123456789x").code == kv::status::out_of_memory));
  BOOST_TEST((f.cas("a", "0123456789x", 1).code == kv::status::out_of_memory));
  // Everything is as before apart from the counters of the refused commands and the index.
  kv::store expected(o);
  BOOST_REQUIRE(expected.restore(snap));
  BOOST_TEST(f.s.stats().bytes == expected.stats().bytes);
  BOOST_TEST(f.s.stats().curr_items == 3u);
  BOOST_TEST(f.s.stats().cas_hits == 0u);
  BOOST_TEST(f.s.stats().total_items == 3u);
  for (auto key : {"a", "b", "c"}) BOOST_TEST((f.get(key) == expected.find(key, t0)));
  BOOST_TEST(!f.get("d").has_value());
}

BOOST_AUTO_TEST_CASE(a_write_that_shrinks_or_keeps_the_size_is_allowed_at_the_quota) {
  kv::store_options o;
  const std::uint64_t item = 1 + 10 + kv::store::item_overhead_bytes;
  o.max_memory_bytes = 2 * item;
  fixture f(o);
  f.set("a", "0123456789");
  f.set("b", "0123456789");
  BOOST_TEST((f.op(kv::op::replace, "a", "short").code == kv::status::stored));
  BOOST_TEST((f.set("b", "9876543210").code == kv::status::stored));
  // The five bytes freed by the shrink can be used again, and no more.
  BOOST_TEST((f.op(kv::op::append, "a", "12345").code == kv::status::stored));
  BOOST_TEST((f.op(kv::op::append, "a", "6").code == kv::status::out_of_memory));
  // Deleting frees room for a new item.
  f.op(kv::op::remove, "b");
  BOOST_TEST((f.set("c", "0123456789").code == kv::status::stored));
}

BOOST_AUTO_TEST_CASE(incr_that_grows_the_value_past_the_quota_is_refused) {
  kv::store_options o;
  o.max_memory_bytes = 1 + 1 + kv::store::item_overhead_bytes;
  fixture f(o);
  f.set("n", "9");
  BOOST_TEST((f.incr(kv::op::incr, "n", 1).code == kv::status::out_of_memory));
  BOOST_TEST(f.get("n")->value == "9");
  BOOST_TEST(f.incr(kv::op::decr, "n", 1).number == 8u);
}

// ---------------------------------------------------------------------------------------
// Replicated limits

namespace {

// Two replicas whose own configs differ, fed the same entries: every result must match.
struct replica_pair {
  replica_pair(kv::store_options local_a, kv::store_options local_b) : a(local_a), b(local_b) {}
  kv::status both(const kv::command& c) {
    ++index;
    const auto ra = a.apply(index, c);
    BOOST_TEST((ra == b.apply(index, c)), "index " << index);
    return ra.code;
  }
  kv::store a, b;
  std::uint64_t index = 0;
};

}  // namespace

BOOST_AUTO_TEST_CASE(replicas_with_different_local_limits_agree_once_set_limits_is_applied) {
  kv::store_options small;
  small.max_value_bytes = 1000;
  small.max_key_bytes = 10;
  small.max_memory_bytes = 1ull << 20;
  kv::store_options large;
  large.max_value_bytes = 100'000;
  large.max_key_bytes = 250;
  large.max_memory_bytes = 64ull << 20;
  kv::store_options leader;  // what the leader's config says: between the two
  leader.max_value_bytes = 5000;
  leader.max_key_bytes = 100;
  leader.max_memory_bytes = 10'000;
  replica_pair r(small, large);
  kv::store& a = r.a;
  kv::store& b = r.b;
  auto both = [&r](const kv::command& c) { return r.both(c); };
  BOOST_TEST(!a.limits_replicated());

  // Without replicated limits the two configs decide differently: this is the divergence.
  {
    kv::store a0(small), b0(large);
    const auto c = make(kv::op::set, "k", std::string(3000, 'v'));
    BOOST_TEST((a0.apply(1, c).code == kv::status::too_large));
    BOOST_TEST((b0.apply(1, c).code == kv::status::stored));
  }

  auto limits = kv::set_limits_command(leader, kv::limits_from_config);
  limits.timestamp_ms = t0;
  BOOST_TEST((both(limits) == kv::status::ok));
  BOOST_TEST((a.options() == leader));
  BOOST_TEST((b.options() == leader));
  BOOST_TEST(a.limits_replicated());
  BOOST_TEST((a.local_options() == small));

  // A value between the two local limits: both store it (the small node used to refuse it).
  BOOST_TEST((both(make(kv::op::set, "k", std::string(3000, 'v'))) == kv::status::stored));
  // Over the replicated limit: both refuse it (the large node used to store it).
  BOOST_TEST((both(make(kv::op::set, "big", std::string(6000, 'v'))) == kv::status::too_large));
  BOOST_TEST((both(make(kv::op::append, "k", std::string(2001, 'v'))) == kv::status::too_large));
  // The key limit and the memory quota are replicated too.
  BOOST_TEST((both(make(kv::op::set, std::string(50, 'k'), "v")) == kv::status::stored));
  BOOST_TEST((both(make(kv::op::set, std::string(101, 'k'), "v")) == kv::status::too_large));
  BOOST_TEST((both(make(kv::op::remove, std::string(101, 'k'))) == kv::status::too_large));
  BOOST_TEST((both(make(kv::op::set, "m1", std::string(4000, 'v'))) == kv::status::stored));
  BOOST_TEST((both(make(kv::op::set, "m2", std::string(4000, 'v'))) == kv::status::out_of_memory));
  BOOST_TEST(a.snapshot() == b.snapshot());

  // A later set_limits (the new leader's config) takes over on both.
  leader.max_value_bytes = 2000;
  leader.max_memory_bytes = 1 << 20;
  BOOST_TEST((both(kv::set_limits_command(leader, kv::limits_from_config)) == kv::status::ok));
  BOOST_TEST((both(make(kv::op::set, "x", std::string(2500, 'v'))) == kv::status::too_large));
  BOOST_TEST((both(make(kv::op::set, "m2", std::string(1500, 'v'))) == kv::status::stored));
  // Nothing already stored is dropped when a limit is lowered.
  BOOST_TEST(a.find("k", t0)->value.size() == 3000u);
  BOOST_TEST(a.snapshot() == b.snapshot());
}

BOOST_AUTO_TEST_CASE(a_set_limits_entry_with_a_bad_payload_changes_nothing) {
  fixture f;
  auto c = kv::set_limits_command({1, 1, 1}, kv::limits_from_config);
  c.value = "short";  // the decoder refuses it; the store stays safe on its own anyway
  BOOST_TEST((f.apply(c).code == kv::status::bad_command));
  BOOST_TEST(!f.s.limits_replicated());
  BOOST_TEST((f.s.options() == kv::store_options{}));
}

BOOST_AUTO_TEST_CASE(a_leader_proposes_its_configured_limits_while_the_clusters_differ) {
  kv::store_options local;
  local.max_value_bytes = 4096;
  kv::store s(local);
  // Never replicated: propose, even though the limits in force already equal the local ones,
  // so that followers with other configs adopt them.
  auto c = kv::limits_command_if_needed(s, local);
  BOOST_REQUIRE(c.has_value());
  BOOST_TEST((c->kind == kv::op::set_limits));
  BOOST_TEST(c->flags == kv::limits_from_config);
  BOOST_TEST((kv::decode_limits(c->value) == local));
  BOOST_TEST((kv::decode_command(kv::encode(*c)) == *c));
  BOOST_TEST((s.apply(1, *c).code == kv::status::ok));
  BOOST_TEST(s.limits_replicated());
  BOOST_TEST((s.configured_limits() == local));
  BOOST_TEST(!kv::limits_command_if_needed(s, local).has_value());
  // Applying it twice (two proposals before the first was applied) changes nothing.
  BOOST_TEST((s.apply(2, *c).code == kv::status::exists));
  BOOST_TEST((s.options() == local));
  // A leader with another config (a file edited before a restart, or a node whose file
  // differs) proposes its own, and they take over.
  kv::store_options edited = local;
  edited.max_value_bytes = 8192;
  auto c2 = kv::limits_command_if_needed(s, edited);
  BOOST_REQUIRE(c2.has_value());
  BOOST_TEST((s.apply(3, *c2).code == kv::status::ok));
  BOOST_TEST((s.options() == edited));
  BOOST_TEST(!kv::limits_command_if_needed(s, edited).has_value());
  // The first leader's proposal, applied late (after the edited one), takes over again: the
  // proposing leader then sees that the limits differ from its own and proposes them anew.
  BOOST_TEST((s.apply(4, *c).code == kv::status::ok));
  BOOST_TEST((s.options() == local));
  BOOST_TEST(kv::limits_command_if_needed(s, edited).has_value());
}

// A client's cache_memlimit committed ahead of the new leader's first limits: that proposal
// must not undo the acknowledged change. (Seen in test_memcached_meta.py: a cache_memlimit
// sent right after the election reverted.)
BOOST_AUTO_TEST_CASE(the_initial_limits_do_not_undo_a_cache_memlimit_committed_before_them) {
  kv::store_options local;
  kv::store s(local);
  auto initial = kv::limits_command_if_needed(s, local);  // proposed, not yet applied
  BOOST_REQUIRE(initial.has_value());
  kv::store_options quota = local;
  quota.max_memory_bytes = 8u << 20;
  BOOST_TEST((s.apply(1, kv::set_limits_command(quota, kv::limits_memory_quota)).code ==
              kv::status::ok));
  BOOST_TEST(s.options().max_memory_bytes == (8u << 20));
  BOOST_TEST((s.apply(2, *initial).code == kv::status::ok));
  BOOST_TEST(s.options().max_memory_bytes == (8u << 20));
  BOOST_TEST((s.configured_limits() == local));
  BOOST_TEST((s.memory_quota() == (8u << 20)));
  // A later cache_memlimit replaces the quota.
  quota.max_memory_bytes = 16u << 20;
  BOOST_TEST((s.apply(3, kv::set_limits_command(quota, kv::limits_memory_quota)).code ==
              kv::status::ok));
  BOOST_TEST(s.options().max_memory_bytes == (16u << 20));
}

BOOST_AUTO_TEST_CASE(a_cache_memlimit_lasts_until_the_configured_quota_changes) {
  kv::store_options config;
  config.max_memory_bytes = 64u << 20;
  replica_pair r(config, kv::store_options{10, 10, 1u << 20});  // b's own file differs
  kv::store& a = r.a;
  kv::store& b = r.b;
  auto both = [&r](const kv::command& c) { return r.both(c); };
  BOOST_TEST((both(*kv::limits_command_if_needed(a, config)) == kv::status::ok));
  kv::store_options quota = config;
  quota.max_memory_bytes = 8u << 20;
  quota.max_value_bytes = 1;  // ignored: a cache_memlimit sets only the quota
  BOOST_TEST((both(kv::set_limits_command(quota, kv::limits_memory_quota)) == kv::status::ok));
  kv::store_options in_force = config;
  in_force.max_memory_bytes = 8u << 20;
  BOOST_TEST((a.options() == in_force));
  BOOST_TEST((b.options() == in_force));
  BOOST_TEST((both(make(kv::op::set, "v", std::string(2000, 'v'))) == kv::status::stored));

  // A leader whose configured quota is the cluster's leaves the client's quota in force,
  // even when its value limit differs (that one changes).
  kv::store_options wider = config;
  wider.max_value_bytes = 2u << 20;
  BOOST_TEST((both(*kv::limits_command_if_needed(a, wider)) == kv::status::ok));
  in_force.max_value_bytes = 2u << 20;
  BOOST_TEST((a.options() == in_force));
  BOOST_TEST(!kv::limits_command_if_needed(a, wider).has_value());
  BOOST_TEST((both(kv::set_limits_command(wider, kv::limits_from_config)) == kv::status::exists));

  // The snapshot carries both the configured limits and the quota, byte-identical.
  BOOST_TEST(a.snapshot() == b.snapshot());
  kv::store restored(kv::store_options{7, 7, 7u << 20});
  BOOST_REQUIRE(restored.restore(a.snapshot()));
  BOOST_TEST((restored.options() == in_force));
  BOOST_TEST((restored.configured_limits() == wider));
  BOOST_TEST((restored.memory_quota() == (8u << 20)));
  BOOST_TEST(restored.snapshot() == a.snapshot());

  // A leader whose configured quota changed (max_memory_mb edited): newer intent, it wins.
  kv::store_options bigger = wider;
  bigger.max_memory_bytes = 128u << 20;
  BOOST_TEST((both(*kv::limits_command_if_needed(a, bigger)) == kv::status::ok));
  BOOST_TEST((a.options() == bigger));
  BOOST_TEST(!a.memory_quota().has_value());
  BOOST_TEST(a.snapshot() == b.snapshot());
}

BOOST_AUTO_TEST_CASE(limits_entries_of_earlier_versions_keep_their_meaning) {
  kv::store_options first{100, 1000, 10u << 20};
  kv::store_options quota = first;
  quota.max_memory_bytes = 20u << 20;
  // No flag (an earlier cache_memlimit): all three limits, any quota replaced.
  kv::store s(kv::store_options{});
  BOOST_TEST((s.apply(1, kv::set_limits_command(quota, kv::limits_memory_quota)).code ==
              kv::status::ok));
  BOOST_TEST((s.apply(2, kv::set_limits_command(first, kv::limits_absolute)).code ==
              kv::status::ok));
  BOOST_TEST((s.options() == first));
  BOOST_TEST(!s.memory_quota().has_value());
  // limits_if_unset (an earlier leader's first proposal): nothing once limits are replicated.
  BOOST_TEST((s.apply(3, kv::set_limits_command(quota, kv::limits_if_unset)).code ==
              kv::status::exists));
  BOOST_TEST((s.options() == first));
  kv::store fresh(kv::store_options{});
  BOOST_TEST((fresh.apply(1, kv::set_limits_command(first, kv::limits_if_unset)).code ==
              kv::status::ok));
  BOOST_TEST((fresh.options() == first));
  // A snapshot holding configured limits without a quota has the bytes earlier versions
  // wrote: one flag byte 1 and the 24-byte payload before the checksum.
  const std::string snap = fresh.snapshot();
  BOOST_TEST(snap.substr(snap.size() - 4 - 25, 1) == std::string(1, '\x01'));
  BOOST_TEST(snap.substr(snap.size() - 4 - 24, 24) == kv::encode_limits(first));
}

BOOST_AUTO_TEST_CASE(a_snapshot_carries_the_replicated_limits) {
  kv::store_options leader;
  leader.max_value_bytes = 300;
  leader.max_key_bytes = 20;
  leader.max_memory_bytes = 50'000;
  kv::store_options mine;  // the restoring node's config differs
  mine.max_value_bytes = 10;
  fixture f;
  f.apply(kv::set_limits_command(leader, kv::limits_from_config));
  f.set("a", std::string(200, 'x'));
  const auto snap = f.s.snapshot();

  kv::store other(mine);
  BOOST_REQUIRE(other.restore(snap));
  BOOST_TEST(other.limits_replicated());
  BOOST_TEST((other.options() == leader));
  BOOST_TEST((other.local_options() == mine));
  BOOST_TEST(other.snapshot() == snap);
  // Decisions after the restore use the replicated limits, not the local ones.
  const auto c = make(kv::op::set, "b", std::string(250, 'y'));
  BOOST_TEST((other.apply(10, c) == f.s.apply(10, c)));
  BOOST_TEST((other.find("b", t0).has_value()));
  BOOST_TEST(other.snapshot() == f.s.snapshot());

  // A snapshot without replicated limits leaves the restoring node's own in force.
  kv::store unset;
  unset.apply(1, make(kv::op::set, "k", "v"));
  kv::store target(mine);
  target.apply(1, kv::set_limits_command(leader, kv::limits_from_config));
  BOOST_REQUIRE(target.restore(unset.snapshot()));
  BOOST_TEST(!target.limits_replicated());
  BOOST_TEST((target.options() == mine));
  BOOST_TEST(target.snapshot() == unset.snapshot());
}

namespace {

// The format-1 form (before limits were replicated) of a format-2 snapshot: the same body
// without the limits section, with format byte 1 and its own checksum.
std::string as_format_1(const std::string& snap, bool had_limits) {
  std::string body = snap.substr(0, snap.size() - 4);
  body.resize(body.size() - (had_limits ? 25 : 1));
  BOOST_REQUIRE(body[4] == 2);
  body[4] = 1;
  const std::uint32_t crc = base::crc32c(body);
  for (int k = 0; k < 4; ++k) body.push_back(static_cast<char>((crc >> (8 * k)) & 0xff));
  return body;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_format_1_snapshot_still_restores_without_replicated_limits) {
  kv::store_options mine;
  mine.max_value_bytes = 777;
  for (bool had_limits : {false, true}) {
    fixture f;
    if (had_limits) f.apply(kv::set_limits_command(mine, kv::limits_from_config));
    f.set("a", "1", 1, 100);
    f.set("b", std::string(500, 'x'));
    auto c = make(kv::op::incr, "a");
    c.id = {4, 4};
    f.apply(c);
    const auto old = as_format_1(f.s.snapshot(), had_limits);
    kv::store target(mine);
    BOOST_REQUIRE(target.restore(old));
    BOOST_TEST(!target.limits_replicated());
    BOOST_TEST((target.options() == mine));
    BOOST_TEST(target.applied_index() == f.s.applied_index());
    BOOST_TEST((target.stats() == f.s.stats()));
    BOOST_TEST((target.find("b", t0) == f.get("b")));
    BOOST_TEST((target.apply(20, c) == f.s.apply(20, c)));  // the dedup table came along
    // A corrupted old snapshot is still refused.
    std::string bad = old;
    bad[6] ^= 1;
    BOOST_TEST(!target.restore(bad));
  }
}

BOOST_AUTO_TEST_CASE(a_snapshot_with_a_bad_limits_section_is_rejected) {
  fixture f;
  f.apply(kv::set_limits_command({}, kv::limits_from_config));
  f.set("k", "v");
  const std::string snap = f.s.snapshot();
  const std::size_t flag_at = snap.size() - 4 - 25;
  auto reseal = [](std::string body) {
    const std::uint32_t crc = base::crc32c(body);
    for (int k = 0; k < 4; ++k) body.push_back(static_cast<char>((crc >> (8 * k)) & 0xff));
    return body;
  };
  const std::string body = snap.substr(0, snap.size() - 4);
  kv::store target;
  BOOST_TEST(target.restore(reseal(body)));
  // Bit 1 alone says a quota of 8 bytes follows, not 24; bit 2 means nothing.
  for (char flag : {2, 4}) {
    std::string other = body;
    other[flag_at] = flag;
    BOOST_TEST(!target.restore(reseal(other)), "flag " << int(flag));
  }
  std::string zero_key = body;
  for (int i = 0; i < 8; ++i) zero_key[flag_at + 1 + i] = 0;  // max_key_bytes 0
  BOOST_TEST(!target.restore(reseal(zero_key)));
  BOOST_TEST(!target.restore(reseal(body.substr(0, body.size() - 1))));
  BOOST_TEST(!target.restore(reseal(body + '\0')));
  // Flag 0 followed by the payload is not one encoding of "no limits".
  std::string flag0 = body;
  flag0[flag_at] = 0;
  BOOST_TEST(!target.restore(reseal(flag0)));
}

// ---------------------------------------------------------------------------------------
// Keys are bytes

BOOST_AUTO_TEST_CASE(keys_may_hold_any_bytes) {
  fixture f;
  const std::vector<std::string> keys = {std::string("\x01\x02", 2),
                                         "a\tb",
                                         "\x7f",
                                         std::string("\xff\xfe", 2),
                                         std::string("z\0z", 3),
                                         "\xc3\xa9t\xc3\xa9"};
  for (const auto& k : keys) BOOST_TEST((f.set(k, "v:" + k).code == kv::status::stored));
  for (const auto& k : keys) BOOST_TEST(f.get(k)->value == "v:" + k);
  // Listed in byte order (unsigned), as std::string compares.
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> listed;
  for (const auto& info : f.s.list("", "", 100, t0)) listed.push_back(info.key);
  BOOST_TEST(listed == sorted, boost::test_tools::per_element());
  BOOST_TEST(f.s.list(std::string("\xff", 1), "", 10, t0).size() == 1u);
  kv::store copy;
  BOOST_REQUIRE(copy.restore(f.s.snapshot()));
  for (const auto& k : keys) BOOST_TEST((copy.find(k, t0) == f.get(k)));
  BOOST_TEST((f.op(kv::op::remove, std::string("\xff\xfe", 2)).code == kv::status::deleted));
}

// ---------------------------------------------------------------------------------------
// At-most-once

BOOST_AUTO_TEST_CASE(a_repeated_request_returns_the_same_result_without_applying_again) {
  fixture f;
  f.set("n", "1");
  auto c = make(kv::op::incr, "n");
  c.delta = 5;
  c.id = {7, 1};
  auto first = f.apply(c);
  BOOST_TEST(first.number == 6u);
  const auto stats = f.s.stats();
  auto again = f.apply(c);
  BOOST_TEST((again == first));
  BOOST_TEST(f.get("n")->value == "6");
  BOOST_TEST(f.get("n")->version == first.version);
  BOOST_TEST((f.s.stats() == stats));
  BOOST_TEST(f.s.applied_index() == 3u);  // the duplicate entry was still consumed
  // The next seq of the same client and the same seq of another client do apply.
  c.id = {7, 2};
  BOOST_TEST(f.apply(c).number == 11u);
  c.id = {8, 1};
  BOOST_TEST(f.apply(c).number == 16u);
  // Without an id nothing is deduplicated.
  c.id = {};
  BOOST_TEST(f.apply(c).number == 21u);
  BOOST_TEST(f.apply(c).number == 26u);
}

BOOST_AUTO_TEST_CASE(a_repeated_set_keeps_its_first_version) {
  fixture f;
  auto c = make(kv::op::set, "k", "v");
  c.id = {1, 10};
  auto first = f.apply(c);
  f.set("other", "x");
  auto again = f.apply(c);
  BOOST_TEST((again == first));
  BOOST_TEST(f.get("k")->version == 1u);
  BOOST_TEST(f.s.stats().cmd_set == 2u);
}

BOOST_AUTO_TEST_CASE(a_request_older_than_the_window_is_not_reapplied_and_its_outcome_unknown) {
  fixture f;
  f.set("n", "0");
  auto c = make(kv::op::incr, "n");
  c.delta = 1;
  const std::uint64_t total = kv::store::dedup_window_per_client + 10;
  for (std::uint64_t seq = 1; seq <= total; ++seq) {
    c.id = {5, seq};
    f.apply(c);
  }
  BOOST_TEST(f.get("n")->value == std::to_string(total));
  c.id = {5, 1};  // forgotten: might have been applied, so it must not apply again
  const auto stats = f.s.stats();
  // Not "bad command": the first attempt was applied; the client cannot learn its result.
  BOOST_TEST((f.apply(c).code == kv::status::outcome_unknown));
  BOOST_TEST((f.s.stats() == stats));
  c.id = {5, total - kv::store::dedup_window_per_client + 1};  // oldest still remembered
  BOOST_TEST(f.apply(c).number == total - kv::store::dedup_window_per_client + 1);
  BOOST_TEST(f.get("n")->value == std::to_string(total));
}

BOOST_AUTO_TEST_CASE(the_least_recently_seen_client_is_evicted_beyond_the_client_bound) {
  fixture f;
  auto c = make(kv::op::set, "k", "v");
  for (std::uint64_t client = 1; client <= kv::store::dedup_max_clients + 1; ++client) {
    c.id = {client, 1};
    f.apply(c);
    if (client == 2) {
      c.id = {1, 2};  // client 1 is seen again: now client 2 is the least recently seen
      f.apply(c);
    }
  }
  BOOST_TEST(f.s.dedup_clients() == kv::store::dedup_max_clients);
  // Client 2 was evicted (its last request is the oldest): its seq 1 applies again.
  c.id = {2, 1};
  const auto before = f.s.stats().cmd_set;
  f.apply(c);
  BOOST_TEST(f.s.stats().cmd_set == before + 1);
}

BOOST_AUTO_TEST_CASE(remembered_get_and_touch_values_are_bounded_in_bytes) {
  fixture f;
  const std::string big(1 << 20, 'v');
  f.set("k", big);
  auto c = make(kv::op::get_and_touch, "k");
  const std::uint64_t n = kv::store::dedup_max_item_bytes / big.size() + 4;
  for (std::uint64_t seq = 1; seq <= n; ++seq) {
    c.id = {3, seq};
    BOOST_TEST((f.apply(c).code == kv::status::item));
  }
  // The oldest results were dropped to stay within the byte bound and are refused now.
  c.id = {3, 1};
  BOOST_TEST((f.apply(c).code == kv::status::outcome_unknown));
  c.id = {3, n};
  auto again = f.apply(c);
  BOOST_TEST((again.code == kv::status::item));
  BOOST_TEST(again.item->value == big);
  BOOST_TEST(f.s.stats().touch_hits == n);
}

BOOST_AUTO_TEST_CASE(requests_applied_out_of_seq_order_are_remembered_in_their_place) {
  fixture f;
  f.set("n", "0");
  auto c = make(kv::op::incr, "n");
  c.delta = 1;
  // A client's requests usually reach the log in seq order; these do not.
  std::map<std::uint64_t, std::uint64_t> first;  // seq -> the value its incr returned
  for (std::uint64_t seq : {50, 10, 30, 60, 20, 40}) {
    c.id = {9, seq};
    first[seq] = f.apply(c).number;
  }
  BOOST_TEST(f.get("n")->value == "6");
  kv::store copy;
  BOOST_REQUIRE(copy.restore(f.s.snapshot()));
  BOOST_TEST(copy.snapshot() == f.s.snapshot());  // the window is written in seq order
  for (const auto& [seq, number] : first) {
    c.id = {9, seq};
    BOOST_TEST(f.apply(c).number == number);
    BOOST_TEST(copy.apply(f.next_index - 1, c).number == number);
  }
  BOOST_TEST(f.get("n")->value == "6");

  // Fill the window with later requests (even seqs from 1000): the oldest results make
  // room, in seq order.
  for (std::uint64_t i = 0; i < kv::store::dedup_window_per_client; ++i) {
    c.id = {9, 1000 + 2 * i};
    f.apply(c);
  }
  const std::uint64_t total = 6 + kv::store::dedup_window_per_client;
  BOOST_TEST(f.get("n")->value == std::to_string(total));
  for (std::uint64_t seq : {10, 20, 30, 40, 50, 60}) {
    c.id = {9, seq};
    BOOST_TEST((f.apply(c).code == kv::status::outcome_unknown));
  }
  // A request older than every result of a full window, never seen before, applies once;
  // it is the one that makes room, so a retry of it cannot learn its result.
  c.id = {9, 70};
  BOOST_TEST(f.apply(c).number == total + 1);
  BOOST_TEST((f.apply(c).code == kv::status::outcome_unknown));
  // One inside the window's range but not seen is remembered, and the oldest is dropped.
  c.id = {9, 1501};
  BOOST_TEST(f.apply(c).number == total + 2);
  BOOST_TEST(f.apply(c).number == total + 2);
  c.id = {9, 1000};
  BOOST_TEST((f.apply(c).code == kv::status::outcome_unknown));
  c.id = {9, 1002};
  BOOST_TEST(f.apply(c).number == 8u);  // the earliest result still remembered
  BOOST_TEST(f.get("n")->value == std::to_string(total + 2));
}

BOOST_AUTO_TEST_CASE(seq_ring_keeps_the_order_and_contents_of_a_map) {
  // Mostly new greatest keys, some out of order; pops from the front and erases anywhere;
  // through growth and wrap-around of the ring. A std::map is the reference.
  struct value {
    std::uint64_t seq = 0;
    std::string text;
  };
  kv::seq_ring<value> ring;
  std::map<std::uint64_t, std::string> model;
  std::mt19937_64 rng(11);
  std::uint64_t next = 1000;
  for (int step = 0; step < 30000; ++step) {
    const auto what = rng() % 10;
    if (what < 6 || model.empty()) {
      const std::uint64_t seq = rng() % 4 == 0 ? next - 1 - rng() % 900 : next++;
      if (model.count(seq)) continue;
      const std::string text = "v" + std::to_string(seq);
      const std::size_t at = ring.insert(value{seq, text});
      model[seq] = text;
      BOOST_REQUIRE(at == static_cast<std::size_t>(std::distance(model.begin(), model.find(seq))));
    } else if (what < 8 || model.size() > 400) {
      BOOST_REQUIRE(ring.front().seq == model.begin()->first);
      ring.pop_front();
      model.erase(model.begin());
    } else if (what < 9) {
      const std::size_t at = rng() % model.size();
      ring.erase(at);
      model.erase(std::next(model.begin(), static_cast<std::ptrdiff_t>(at)));
    } else {
      const std::uint64_t seq = next - 1 - rng() % 1200;
      const value* found = ring.find(seq);
      const auto expected = model.find(seq);
      BOOST_REQUIRE((found != nullptr) == (expected != model.end()));
      if (found) BOOST_REQUIRE(found->text == expected->second);
    }
    BOOST_REQUIRE(ring.size() == model.size());
    if (step % 101 == 0) {
      std::size_t i = 0;
      for (const auto& [seq, text] : model) {
        BOOST_REQUIRE(ring[i].seq == seq);
        BOOST_REQUIRE(ring[i].text == text);
        ++i;
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(entries_at_or_below_the_applied_index_are_ignored) {
  fixture f;
  f.set("k", "v");
  f.s.skip(5);
  BOOST_TEST(f.s.applied_index() == 5u);
  const auto snap = f.s.snapshot();
  BOOST_TEST((f.s.apply(5, make(kv::op::set, "k", "w")).code == kv::status::bad_command));
  BOOST_TEST((f.s.apply(2, make(kv::op::remove, "k")).code == kv::status::bad_command));
  f.s.skip(3);
  BOOST_TEST(f.s.snapshot() == snap);
  BOOST_TEST(f.s.apply(6, make(kv::op::set, "k", "w")).version == 6u);
}

// ---------------------------------------------------------------------------------------
// Listing

BOOST_AUTO_TEST_CASE(list_returns_live_keys_in_order_by_prefix_after_and_limit) {
  fixture f;
  for (auto k : {"user:3", "user:1", "app", "user:2", "userx", "user:4", "v"}) f.set(k, "val");
  f.set("user:25", "v", 0, 1);  // expired at the read time below
  const std::int64_t now = t0 + 2000;
  auto keys = [](const std::vector<kv::key_info>& v) {
    std::vector<std::string> out;
    for (const auto& k : v) out.push_back(k.key);
    return out;
  };
  BOOST_TEST(keys(f.s.list("user:", "", 100, now)) ==
             (std::vector<std::string>{"user:1", "user:2", "user:3", "user:4"}));
  BOOST_TEST(keys(f.s.list("user:", "user:2", 100, now)) ==
             (std::vector<std::string>{"user:3", "user:4"}));
  BOOST_TEST(keys(f.s.list("user:", "user:", 2, now)) ==
             (std::vector<std::string>{"user:1", "user:2"}));
  BOOST_TEST(keys(f.s.list("user:", "a", 100, now)).size() == 4u);  // after before the prefix
  BOOST_TEST(keys(f.s.list("user:", "zzz", 100, now)).empty());
  BOOST_TEST(keys(f.s.list("", "", 3, now)) ==
             (std::vector<std::string>{"app", "user:1", "user:2"}));
  BOOST_TEST(f.s.list("", "", 0, now).empty());
  auto info = f.s.list("v", "", 10, now);
  BOOST_REQUIRE(info.size() == 1u);
  BOOST_TEST(info[0].bytes == 3u);
  BOOST_TEST(info[0].version == 7u);
  BOOST_TEST(info[0].expires_at_ms == 0);
  // The expired key shows up for a reader whose clock is before its expiry.
  BOOST_TEST(keys(f.s.list("user:2", "", 10, t0)) ==
             (std::vector<std::string>{"user:2", "user:25"}));
}

// ---------------------------------------------------------------------------------------
// Snapshots and determinism

namespace {

// A random but valid workload over a small key space, so that ops hit and miss.
kv::command random_command(std::mt19937_64& rng, std::int64_t& now, const kv::store& s) {
  static const kv::op ops[] = {kv::op::set,       kv::op::set,          kv::op::add,
                               kv::op::replace,   kv::op::append,       kv::op::prepend,
                               kv::op::cas,       kv::op::remove,       kv::op::incr,
                               kv::op::decr,      kv::op::touch,        kv::op::get_and_touch,
                               kv::op::flush_all, kv::op::purge_expired};
  now += static_cast<std::int64_t>(rng() % 3000);
  kv::command c;
  c.kind = ops[rng() % std::size(ops)];
  if (c.kind == kv::op::flush_all && rng() % 20 != 0) c.kind = kv::op::set;  // keep data around
  c.key = "k" + std::to_string(rng() % 40);
  c.value =
      rng() % 3 == 0 ? std::to_string(rng() % 1000) : std::string(rng() % 50, 'a' + rng() % 26);
  c.flags = static_cast<std::uint32_t>(rng() % 4);
  c.exptime = rng() % 4 == 0 ? static_cast<std::int64_t>(rng() % 20) - 2 : 0;
  c.kind_of_expiry = rng() % 2 ? kv::expiry_kind::memcached : kv::expiry_kind::relative;
  // Often the current version (as a client that just read it), so that cas matches.
  const auto current = s.find(c.key, now);
  c.cas_unique = current && rng() % 2 ? current->version : rng() % 5;
  c.delta = rng() % 3 == 0 ? rng() : rng() % 100;
  c.delay_s = static_cast<std::int64_t>(rng() % 5);
  c.timestamp_ms = now;
  if (rng() % 2) c.id = {1 + rng() % 5, 1 + rng() % 2000};
  return c;
}

kv::store_options small_quota() {
  kv::store_options o;
  o.max_memory_bytes = 2500;  // small enough that some writes hit the quota
  o.max_value_bytes = 80;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(snapshot_then_restore_then_snapshot_is_byte_identical) {
  fixture f;
  f.set("a", "1", 1, 100);
  f.set("b", std::string(1000, 'x'));
  f.flush(50);
  auto c = make(kv::op::get_and_touch, "a");
  c.exptime = 30;
  c.id = {9, 3};
  f.apply(c);
  f.s.skip(20);
  const auto snap = f.s.snapshot();
  kv::store other;
  BOOST_REQUIRE(other.restore(snap));
  BOOST_TEST(other.snapshot() == snap);
  BOOST_TEST(other.applied_index() == 20u);
  BOOST_TEST((other.stats() == f.s.stats()));
  BOOST_TEST((other.find("a", t0) == f.get("a")));
  // The dedup window and the pending flush came along.
  BOOST_TEST((other.apply(21, c) == f.s.apply(21, c)));
  BOOST_TEST(!other.find("b", t0 + 50'000).has_value());
  BOOST_TEST(other.snapshot() == f.s.snapshot());
}

BOOST_AUTO_TEST_CASE(stores_fed_the_same_commands_have_byte_identical_snapshots) {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    std::mt19937_64 rng(seed);
    kv::store a(small_quota()), b(small_quota());
    std::optional<kv::store> resumed;
    std::int64_t now = t0;
    std::map<kv::status, int> seen;
    const int n = 4000;
    for (int i = 1; i <= n; ++i) {
      const auto c = random_command(rng, now, a);
      const auto index = static_cast<std::uint64_t>(i);
      const auto ra = a.apply(index, c);
      ++seen[ra.code];
      BOOST_TEST((ra == b.apply(index, c)), "seed " << seed << " index " << i);
      if (resumed) BOOST_TEST((ra == resumed->apply(index, c)), "seed " << seed << " index " << i);
      if (i == n / 2) {  // a replica that starts from a snapshot halfway
        resumed.emplace(small_quota());
        BOOST_REQUIRE(resumed->restore(a.snapshot()));
      }
    }
    BOOST_TEST(a.snapshot() == b.snapshot(), "seed " << seed);
    BOOST_TEST(a.snapshot() == resumed->snapshot(), "seed " << seed);
    // The workload exercised the interesting paths.
    BOOST_TEST(a.stats().cas_hits > 0u);
    BOOST_TEST(a.stats().incr_hits > 0u);
    BOOST_TEST(a.stats().curr_items > 0u);
    for (auto code :
         {kv::status::stored, kv::status::not_stored, kv::status::exists, kv::status::not_found,
          kv::status::deleted, kv::status::touched, kv::status::number, kv::status::item,
          kv::status::non_numeric, kv::status::too_large, kv::status::out_of_memory})
      BOOST_TEST(seen[code] > 0, "seed " << seed << " status " << static_cast<int>(code));
  }
}

BOOST_AUTO_TEST_CASE(a_corrupted_or_truncated_snapshot_is_rejected_and_changes_nothing) {
  fixture f;
  f.set("a", "1", 1, 100);
  f.set("b", "22");
  auto c = make(kv::op::incr, "zz");
  c.id = {4, 4};
  f.apply(c);
  const auto snap = f.s.snapshot();

  kv::store target;
  target.apply(1, make(kv::op::set, "mine", "v"));
  const auto mine = target.snapshot();
  for (std::size_t i = 0; i < snap.size(); ++i) {
    std::string bad = snap;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    BOOST_TEST(!target.restore(bad), "flipped byte " << i);
  }
  for (std::size_t n = 0; n < snap.size(); ++n)
    BOOST_TEST(!target.restore(std::string_view(snap).substr(0, n)), "length " << n);
  BOOST_TEST(!target.restore(snap + '\0'));
  BOOST_TEST(target.snapshot() == mine);
  BOOST_TEST(target.restore(snap));
}

BOOST_AUTO_TEST_CASE(random_bytes_with_a_valid_checksum_never_restore_garbage) {
  // Bytes that pass the checksum but not the structure must still be rejected safely.
  std::mt19937_64 rng(99);
  kv::store target;
  for (int i = 0; i < 2000; ++i) {
    std::string body = "RKVS";
    body.push_back(1);
    const auto n = rng() % 400;
    for (std::size_t j = 0; j < n; ++j) body.push_back(static_cast<char>(rng()));
    const std::uint32_t crc = base::crc32c(body);
    for (int k = 0; k < 4; ++k) body.push_back(static_cast<char>((crc >> (8 * k)) & 0xff));
    if (target.restore(body)) {
      // Whatever was accepted must be a consistent state.
      kv::store copy;
      BOOST_TEST(copy.restore(target.snapshot()));
      BOOST_TEST(copy.snapshot() == target.snapshot());
    }
  }
}

// ---------------------------------------------------------------------------------------
// Meta commands (memcached mg/ms/md/ma): the stale-while-revalidate state is replicated.

BOOST_AUTO_TEST_SUITE(meta_commands)

kv::command meta(kv::op kind, std::string key, std::uint32_t flags, std::int64_t now = t0) {
  auto c = make(kind, std::move(key), {}, now);
  c.flags = flags;
  return c;
}

BOOST_AUTO_TEST_CASE(invalidate_marks_stale_and_one_reader_wins_the_token) {
  fixture f;
  f.set("k", "v", 0, 100);
  const auto version = f.get("k")->version;
  auto md = meta(kv::op::meta_delete, "k", kv::meta_stale_flag | kv::meta_has_ttl);
  md.exptime = 30;
  const auto r = f.apply(md);
  BOOST_TEST((r.code == kv::status::deleted));
  auto item = f.get("k");
  BOOST_REQUIRE(item.has_value());
  BOOST_TEST(item->version > version);  // a new cas
  BOOST_TEST(item->meta == kv::item_stale);
  BOOST_TEST(item->expires_at_ms == t0 + 30000);
  // The first meta_get wins, the next sees the token already sent.
  auto first = f.apply(meta(kv::op::meta_get, "k", 0));
  BOOST_TEST((first.code == kv::status::item));
  BOOST_TEST(first.number == kv::meta_won);
  BOOST_TEST(first.item->meta == (kv::item_stale | kv::item_token_sent));
  auto second = f.apply(meta(kv::op::meta_get, "k", 0));
  BOOST_TEST(second.number == 0u);
  // A new value clears the marks.
  f.set("k", "fresh");
  BOOST_TEST(f.get("k")->meta == 0);
}

BOOST_AUTO_TEST_CASE(vivify_creates_an_empty_item_and_wins) {
  fixture f;
  auto c = meta(kv::op::meta_get, "v", kv::meta_vivify);
  c.delay_s = 30;
  auto r = f.apply(c);
  BOOST_TEST((r.code == kv::status::item));
  BOOST_TEST(r.number == (kv::meta_won | kv::meta_created));
  BOOST_TEST(r.item->value.empty());
  BOOST_TEST(r.item->expires_at_ms == t0 + 30000);
  r = f.apply(c);
  BOOST_TEST(r.number == 0u);
  BOOST_TEST((r.item->meta & kv::item_token_sent) != 0);
  BOOST_TEST(f.s.stats().total_items == 1u);
  // Without N a miss stays a miss.
  BOOST_TEST((f.apply(meta(kv::op::meta_get, "none", 0)).code == kv::status::not_found));
}

BOOST_AUTO_TEST_CASE(recache_wins_when_the_ttl_is_below_the_threshold) {
  fixture f;
  f.set("r", "v", 0, 20);
  auto c = meta(kv::op::meta_get, "r", kv::meta_recache);
  c.cas_unique = 10;
  BOOST_TEST(f.apply(c).number == 0u);  // 20 s left, threshold 10
  c.cas_unique = 30;
  BOOST_TEST(f.apply(c).number == kv::meta_won);
  BOOST_TEST(f.apply(c).number == 0u);  // token already sent
  f.set("n", "v");                      // no TTL: never wins
  c.key = "n";
  BOOST_TEST(f.apply(c).number == 0u);
}

BOOST_AUTO_TEST_CASE(meta_delete_compares_cas_including_zero) {
  fixture f;
  f.set("d", "v");
  auto c = meta(kv::op::meta_delete, "d", kv::meta_has_cas);
  c.cas_unique = 0;
  BOOST_TEST((f.apply(c).code == kv::status::exists));
  c.cas_unique = f.get("d")->version;
  BOOST_TEST((f.apply(c).code == kv::status::deleted));
  BOOST_TEST((f.apply(c).code == kv::status::not_found));
}

BOOST_AUTO_TEST_CASE(meta_arith_vivifies_compares_and_sets_ttl) {
  fixture f;
  auto c = meta(kv::op::meta_arith, "n", kv::meta_vivify);
  c.value = "7";
  c.delta = 1;
  auto r = f.apply(c);
  BOOST_TEST((r.code == kv::status::stored));
  BOOST_TEST(r.number == 7u);
  r = f.apply(c);
  BOOST_TEST((r.code == kv::status::number));
  BOOST_TEST(r.number == 8u);
  auto d = meta(kv::op::meta_arith, "n", kv::meta_decr | kv::meta_has_cas | kv::meta_has_ttl);
  d.delta = 100;
  d.cas_unique = 1;  // not its version
  BOOST_TEST((f.apply(d).code == kv::status::exists));
  d.cas_unique = 0;  // 0 is not compared (memcached)
  d.exptime = 50;
  r = f.apply(d);
  BOOST_TEST(r.number == 0u);
  BOOST_TEST(r.item->expires_at_ms == t0 + 50000);
  BOOST_TEST((f.apply(meta(kv::op::meta_arith, "none", 0)).code == kv::status::not_found));
}

BOOST_AUTO_TEST_CASE(cas_with_invalidate_stores_an_older_cas_as_stale) {
  fixture f;
  f.set("c", "v", 0, 100);
  const auto version = f.get("c")->version;
  auto c = make(kv::op::cas, "c", "late");
  c.delta = kv::meta_invalidate;
  f.set("c", "v2", 0, 100);  // the item moves on
  c.cas_unique = version;    // now older than the item's
  BOOST_TEST((f.apply(c).code == kv::status::stored));
  auto item = f.get("c");
  BOOST_TEST(item->value == "late");
  BOOST_TEST(item->meta == kv::item_stale);
  BOOST_TEST(item->expires_at_ms == t0 + 100000);  // the old TTL is kept
  c.cas_unique = 0;                                // cas 0 never stores
  BOOST_TEST((f.apply(c).code == kv::status::exists));
}

BOOST_AUTO_TEST_CASE(meta_marks_survive_snapshots_and_results_round_trip) {
  fixture f;
  f.set("a", "1");
  const auto plain = f.s.snapshot();
  BOOST_TEST(plain[4] == 2);  // no meta marks: format 2, as before
  f.apply(meta(kv::op::meta_delete, "a", kv::meta_stale_flag));
  auto ms = make(kv::op::set, "b", "2");
  ms.delta = kv::meta_key_binary;
  f.apply(ms);
  const auto snap = f.s.snapshot();
  BOOST_TEST(snap[4] == 3);
  kv::store other;
  BOOST_REQUIRE(other.restore(snap));
  BOOST_TEST(other.find("a", t0)->meta == kv::item_stale);
  BOOST_TEST(other.find("b", t0)->meta == kv::item_key_binary);
  BOOST_TEST(other.snapshot() == snap);
  BOOST_REQUIRE(other.restore(plain));
  BOOST_TEST(other.find("a", t0)->meta == 0);
  const auto r = f.apply(meta(kv::op::meta_get, "a", 0));
  BOOST_TEST((kv::decode_result(kv::encode(r)) == r));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Item layout (kv/item_set.h): one allocation per item, reallocated when its size changes,
// in a treap whose shape depends only on the keys.

namespace {

std::vector<std::string> all_keys(const kv::store& s, std::int64_t now = t0) {
  std::vector<std::string> out;
  std::string after;
  for (;;) {
    auto page = s.list("", after, 97, now);
    if (page.empty()) return out;
    for (auto& info : page) out.push_back(std::move(info.key));
    after = out.back();
  }
}

}  // namespace

// item_set remembers where find() found an item so that a replace or erase of it right
// after does not walk the tree again; any change in between must make it walk. Random
// finds, inserts, replaces and erases (often of an item found before other changes) against
// a std::map: the set must hold exactly the map's keys and values, in order.
// Run over 300 keys and over 5,000 (a deeper tree, past the reads' lookup-cache threshold,
// whose slots every replace and erase must keep right), with some items edited in place
// after their find, as kv::store overwrites a value of the same size.
BOOST_AUTO_TEST_CASE(item_set_stays_exact_when_changes_come_between_a_find_and_its_use) {
  for (const unsigned keys : {300u, 5000u}) {
  BOOST_TEST_CONTEXT("keys " << keys) {
  kv::item_set set;
  std::map<std::string, std::string> model;
  std::mt19937 rng(7);
  auto key = [&] { return "k" + std::to_string(rng() % keys); };
  for (int step = 0; step < 40000; ++step) {
    const std::string k = key();
    kv::item* found = set.find(k);
    BOOST_REQUIRE_EQUAL(found != nullptr, model.count(k) == 1);
    // Sometimes change something else between the find and the use of what it found
    // (reaching it by a cursor, which leaves what find() remembered alone).
    if (rng() % 3 == 0) {
      const std::string other = key();
      if (other != k) {
        if (model.count(other) == 1) {
          set.erase(set.seek(other, true).get());
          model.erase(other);
        } else {
          set.insert(kv::item::make(other, "o" + std::to_string(step)));
          model[other] = "o" + std::to_string(step);
        }
      }
    }
    if (found == nullptr) {
      set.insert(kv::item::make(k, "v" + std::to_string(step)));
      model[k] = "v" + std::to_string(step);
    } else if (const auto pick = rng() % 3; pick == 0) {
      set.replace(found, kv::item::make(k, "r" + std::to_string(step)));
      model[k] = "r" + std::to_string(step);
    } else if (pick == 1 && found->value_bytes > 0) {
      found->value_data()[0] = 'w';  // in place, as kv::store overwrites a same-size value
      model[k][0] = 'w';
    } else {
      set.erase(found);
      model.erase(k);
    }
  }
  BOOST_REQUIRE_EQUAL(set.size(), model.size());
  auto m = model.begin();
  for (auto c = set.begin(); c.get() != nullptr; c.next(), ++m) {
    BOOST_REQUIRE(m != model.end());
    BOOST_REQUIRE_EQUAL(c.get()->key(), m->first);
    BOOST_REQUIRE_EQUAL(c.get()->value(), m->second);
    // The heap order by priority holds below every item.
    for (const kv::item* child : {c.get()->left, c.get()->right})
      if (child != nullptr) BOOST_REQUIRE_LE(child->priority, c.get()->priority);
  }
  BOOST_TEST((m == model.end()));
  for (const auto& [k, v] : model) BOOST_REQUIRE_EQUAL(set.find(k)->value(), v);
  }
  }
}

// Past 1,024 items lookup() answers from a table of recently read items (kv/item_set.h,
// "Lookup cache"). Every erase and replace must leave no slot pointing at the freed item,
// and the table's resizing as the set grows must lose nothing: random lookups, inserts,
// replaces and erases over 6,000 keys (the set crosses the threshold and grows the table
// several times), each lookup checked against a std::map, with ASan catching any use of a
// freed item.
BOOST_AUTO_TEST_CASE(item_set_lookup_cache_never_returns_an_erased_or_replaced_item) {
  kv::item_set set;
  std::map<std::string, std::string> model;
  std::mt19937 rng(3);
  for (int step = 0; step < 60000; ++step) {
    const std::string k = "key-" + std::to_string(rng() % 6000);
    const kv::item* found = set.lookup(k);
    const auto m = model.find(k);
    BOOST_REQUIRE_EQUAL(found != nullptr, m != model.end());
    if (found != nullptr) {
      BOOST_REQUIRE_EQUAL(found->key(), k);
      BOOST_REQUIRE_EQUAL(found->value(), m->second);
    }
    const std::string v = std::to_string(step);
    switch (rng() % 4) {
      case 0:
      case 1:
        if (found == nullptr) {
          set.insert(kv::item::make(k, v));
        } else {
          set.replace(set.find(k), kv::item::make(k, v));
        }
        model[k] = v;
        break;
      case 2:
        if (found != nullptr) {
          set.erase(set.find(k));
          model.erase(k);
        }
        break;
      default:  // reach the item by a cursor instead: the write must still fix the table
        if (found != nullptr) {
          set.replace(set.seek(k, true).get(), kv::item::make(k, v));
          model[k] = v;
        }
        break;
    }
  }
  BOOST_REQUIRE_GT(model.size(), 1024u);
  for (const auto& [k, v] : model) BOOST_REQUIRE_EQUAL(set.lookup(k)->value(), v);
  // Moved and cleared sets keep no table that points into freed items.
  kv::item_set moved(std::move(set));
  for (const auto& [k, v] : model) BOOST_REQUIRE_EQUAL(moved.lookup(k)->value(), v);
  moved.clear();
  BOOST_TEST(moved.lookup(model.begin()->first) == nullptr);
}

// The lookup cache keeps every recently read key while the set fits its size (twice the
// set's size in entries): after one read of each of 5,000 keys, a second read of each
// finds it in the table. A direct-mapped table of the same size walked again for 1,359 of
// the 5,000 keys (those that share a slot with another; 9 walk now).
BOOST_AUTO_TEST_CASE(item_set_lookup_cache_keeps_keys_that_share_a_bucket) {
  kv::item_set set;
  constexpr int keys = 5000;
  for (int i = 0; i < keys; ++i) set.insert(kv::item::make("key-" + std::to_string(i), "v"));
  for (int i = 0; i < keys; ++i) BOOST_REQUIRE(set.lookup("key-" + std::to_string(i)));
  const std::uint64_t first_pass = set.lookup_walks();
  BOOST_TEST(first_pass == std::uint64_t{keys});
  for (int i = 0; i < keys; ++i) {
    const kv::item* it = set.lookup("key-" + std::to_string(i));
    BOOST_REQUIRE(it != nullptr);
    BOOST_REQUIRE_EQUAL(it->key(), "key-" + std::to_string(i));
  }
  BOOST_TEST(set.lookup_walks() - first_pass <= std::uint64_t{keys / 100});
  // A missing key walks every time (the table holds only items).
  BOOST_TEST(set.lookup("absent") == nullptr);
  BOOST_TEST(set.lookup("absent") == nullptr);
  BOOST_TEST(set.lookup_walks() - first_pass <= std::uint64_t{keys / 100 + 2});
}

// A write of the same size reuses the item (kv/store.cc store_op: no allocation) and must
// leave every field as a new item would: value, flags, expiry (and the expiry index),
// version, meta marks, and the byte accounting. Without the reuse each of these writes
// allocates a new item.
BOOST_AUTO_TEST_CASE(a_write_of_the_same_size_is_made_in_place_with_every_field_renewed) {
  fixture f;
  f.set("k", "aaaa", 1, 100);
  const auto bytes = f.s.stats().bytes;
  auto c = make(kv::op::set, "k", "bbbb");
  c.flags = 2;
  kv::result r;
  BOOST_TEST(allocations_in([&] { r = f.apply(c); }) == 0u);
  BOOST_TEST((r.code == kv::status::stored));
  auto it = f.get("k");
  BOOST_REQUIRE(it.has_value());
  BOOST_TEST(it->value == "bbbb");
  BOOST_TEST(it->flags == 2u);
  BOOST_TEST(it->expires_at_ms == 0);
  BOOST_TEST(it->version == r.version);
  BOOST_TEST(f.s.stats().bytes == bytes);
  BOOST_TEST(f.s.stats().curr_items == 1u);
  BOOST_TEST(f.s.stats().total_items == 2u);
  // The expiry index followed: the old expiry no longer purges it, a new one does.
  f.apply(make(kv::op::purge_expired, "", "", t0 + 100000));
  BOOST_TEST(f.get("k", t0 + 100000).has_value());
  f.set("k", "cccc", 3, 50);
  BOOST_TEST(f.get("k")->expires_at_ms == t0 + 50000);
  f.apply(make(kv::op::purge_expired, "", "", t0 + 50000));
  BOOST_TEST(f.s.stats().curr_items == 0u);
  BOOST_TEST(f.s.stats().bytes == 0u);
  // An invalidated item (meta `md I` marks it stale): a plain set of the same size clears
  // the mark, as a new item would carry none.
  f.set("m", "1234");
  f.apply(meta_commands::meta(kv::op::meta_delete, "m", kv::meta_stale_flag));
  BOOST_REQUIRE((f.get("m")->meta & kv::item_stale) != 0);
  f.set("m", "5678");
  BOOST_TEST(f.get("m")->meta == 0u);
  BOOST_TEST(f.get("m")->value == "5678");
  // A decr result that fits is padded in place (memcached does the same).
  f.set("n", "10");
  const auto decr = [&] { BOOST_TEST(f.incr(kv::op::decr, "n", 5).number == 5u); };
  BOOST_TEST(allocations_in(decr) == 0u);
  BOOST_TEST(f.get("n")->value == "5 ");
  // A write of another size over an existing item makes a new item.
  BOOST_TEST(allocations_in([&] { f.apply(make(kv::op::set, "m", "longer")); }) >= 1u);
  BOOST_TEST(f.get("m")->value == "longer");
}

// Over 3,000 keys, values of 4-6 bytes (so a third of the overwrites are in place) and expiries that come and go: every item, the expiry index
// (checked by purging) and the byte accounting match a model.
BOOST_AUTO_TEST_CASE(in_place_writes_keep_the_expiry_index_and_the_accounting_exact) {
  fixture f;
  struct entry {
    std::string value;
    std::uint32_t flags;
    std::int64_t expires_at_ms;
  };
  std::map<std::string, entry> model;
  std::mt19937 rng(11);
  for (int step = 0; step < 30000; ++step) {
    const std::string k = "key-" + std::to_string(rng() % 3000);
    if (rng() % 10 == 0) {
      f.op(kv::op::remove, k);
      model.erase(k);
      continue;
    }
    const std::string v(rng() % 3 + 4, static_cast<char>('a' + step % 26));
    const auto flags = static_cast<std::uint32_t>(rng() % 4);
    const auto ttl_s = static_cast<std::int64_t>(rng() % 3) * 100;  // none, 100 s, 200 s
    f.set(k, v, flags, ttl_s);
    model[k] = {v, flags, ttl_s == 0 ? 0 : t0 + ttl_s * 1000};
  }
  // Everything whose last write gave 100 s is purged; nothing else is.
  f.apply(make(kv::op::purge_expired, "", "", t0 + 150000));
  std::erase_if(model, [](const auto& kv) { return kv.second.expires_at_ms == t0 + 100000; });
  std::uint64_t bytes = 0;
  for (const auto& [k, e] : model) {
    const auto it = f.get(k);
    BOOST_REQUIRE(it.has_value());
    BOOST_REQUIRE_EQUAL(it->value, e.value);
    BOOST_REQUIRE_EQUAL(it->flags, e.flags);
    BOOST_REQUIRE_EQUAL(it->expires_at_ms, e.expires_at_ms);
    bytes += k.size() + e.value.size() + kv::store::item_overhead_bytes;
  }
  BOOST_TEST(f.s.stats().curr_items == model.size());
  BOOST_TEST(f.s.stats().bytes == bytes);
}

// prefetch() only reads: over an empty set, present and absent keys, more keys than one
// round of lanes, the state (and so the snapshot) is unchanged.
BOOST_AUTO_TEST_CASE(prefetch_changes_nothing) {
  fixture f;
  const std::vector<std::string_view> some{"a", "", "zz"};
  f.s.prefetch(some);
  std::vector<std::string> keys;
  for (int i = 0; i < 3000; ++i) keys.push_back("key-" + std::to_string(i * 7 % 3001));
  for (std::size_t i = 0; i < keys.size(); i += 2) f.set(keys[i], "v");
  const std::string before = f.s.snapshot();
  std::vector<std::string_view> views(keys.begin(), keys.end());
  f.s.prefetch(views);
  f.s.prefetch(std::span<const std::string_view>(views).first(5));
  BOOST_TEST(f.s.snapshot() == before);
  for (std::size_t i = 0; i < keys.size(); ++i) BOOST_TEST(f.get(keys[i]).has_value() == (i % 2 == 0));
}

BOOST_AUTO_TEST_CASE(items_that_grow_and_shrink_keep_their_fields_and_the_accounting) {
  fixture f;
  f.set("k", "", 7, 100);  // empty value, with an expiry
  BOOST_TEST(f.get("k")->value.empty());
  std::string expect;
  for (int i = 0; i < 50; ++i) {
    const std::string piece(static_cast<std::size_t>(i * 13 + 1), static_cast<char>('a' + i % 26));
    const bool back = i % 2 == 0;
    BOOST_TEST(
        (f.op(back ? kv::op::append : kv::op::prepend, "k", piece).code == kv::status::stored));
    expect = back ? expect + piece : piece + expect;
  }
  auto it = f.get("k");
  BOOST_REQUIRE(it.has_value());
  BOOST_TEST(it->value == expect);
  BOOST_TEST(it->flags == 7u);
  BOOST_TEST(it->expires_at_ms == t0 + 100000);
  BOOST_TEST(f.s.stats().bytes == 1u + expect.size() + kv::store::item_overhead_bytes);
  // incr grows "9" to "10" (a new, longer item) and decr pads back in place.
  f.set("n", "9");
  BOOST_TEST(f.incr(kv::op::incr, "n", 1).number == 10u);
  BOOST_TEST(f.get("n")->value == "10");
  BOOST_TEST(f.incr(kv::op::decr, "n", 5).number == 5u);
  BOOST_TEST(f.get("n")->value == "5 ");
  BOOST_TEST(f.s.stats().bytes ==
             1u + expect.size() + 1u + 2u + 2 * kv::store::item_overhead_bytes);
  // The expiry index followed the item through every reallocation: it is purged on time.
  f.apply(make(kv::op::purge_expired, "", "", t0 + 100000));
  BOOST_TEST(!f.get("k", t0 + 100000).has_value());
  BOOST_TEST(f.s.stats().curr_items == 1u);
  BOOST_TEST(f.s.stats().bytes == 1u + 2u + kv::store::item_overhead_bytes);
}

BOOST_AUTO_TEST_CASE(long_keys_empty_values_and_one_mebibyte_values_round_trip) {
  fixture f;
  const std::string long_key(250, 'K');
  const std::string other_key = long_key.substr(1) + "x";  // 250 bytes too
  const std::string mib(1 << 20, 'm');
  BOOST_TEST((f.set(long_key, "").code == kv::status::stored));
  BOOST_TEST((f.set("big", mib).code == kv::status::stored));
  BOOST_TEST((f.set(other_key, mib.substr(1)).code == kv::status::stored));
  BOOST_TEST((f.op(kv::op::append, other_key, "!").code == kv::status::stored));
  BOOST_TEST((f.op(kv::op::append, other_key, "!").code == kv::status::too_large));
  BOOST_TEST(f.get(long_key)->value.empty());
  BOOST_TEST(f.get("big")->value == mib);
  BOOST_TEST(f.get(other_key)->value == mib.substr(1) + "!");
  kv::store copy;
  BOOST_REQUIRE(copy.restore(f.s.snapshot()));
  BOOST_TEST(copy.snapshot() == f.s.snapshot());
  BOOST_TEST((copy.find(long_key, t0) == f.get(long_key)));
  BOOST_TEST((copy.find("big", t0) == f.get("big")));
  BOOST_TEST((copy.stats() == f.s.stats()));
}

BOOST_AUTO_TEST_CASE(a_snapshot_of_100k_items_round_trips_and_does_not_depend_on_write_order) {
  // Keys written in two different orders (and with deletions in between) give the same
  // state, hence the same snapshot bytes; a restored store answers every key and lists
  // them all in order.
  std::vector<std::string> keys;
  for (int i = 0; i < 100000; ++i) keys.push_back("key:" + std::to_string(i * 7919 % 100003));
  auto fill = [&](const std::vector<std::string>& order) {
    kv::store s;
    std::uint64_t index = 1;
    for (const auto& k : order) {
      auto c = make(kv::op::set, k, "value of " + k);
      c.exptime = k.size() % 3 == 0 ? 3600 : 0;
      s.apply(index++, c);
    }
    // Deletions in the middle of the run, then their keys written again.
    for (std::size_t i = 0; i < order.size(); i += 10)
      s.apply(index++, make(kv::op::remove, order[i]));
    for (std::size_t i = 0; i < order.size(); i += 10) {
      auto c = make(kv::op::set, order[i], "value of " + order[i]);
      c.exptime = order[i].size() % 3 == 0 ? 3600 : 0;
      s.apply(index++, c);
    }
    return s;
  };
  const kv::store a = fill(keys);
  std::vector<std::string> reversed(keys.rbegin(), keys.rend());
  const kv::store b = fill(reversed);
  // Same keys, values and expiries (the versions differ with the order).
  BOOST_TEST(all_keys(a) == all_keys(b));
  BOOST_TEST(a.stats().bytes == b.stats().bytes);
  const std::string snap = a.snapshot();
  kv::store restored;
  BOOST_REQUIRE(restored.restore(snap));
  BOOST_TEST(restored.snapshot() == snap);
  BOOST_TEST((restored.stats() == a.stats()));
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  BOOST_TEST(all_keys(restored) == sorted);
  std::size_t wrong = 0;
  for (const auto& k : keys) {
    const auto it = restored.find(k, t0);
    if (!it || it->value != "value of " + k || it != a.find(k, t0)) ++wrong;
  }
  BOOST_TEST(wrong == 0u);
  // The restored expiry index is complete: an hour later exactly the items with a TTL go.
  const auto due = restored.expired_keys(t0 + 3600 * 1000, 1000000);
  const auto with_ttl = std::count_if(keys.begin(), keys.end(),
                                      [](const std::string& k) { return k.size() % 3 == 0; });
  BOOST_TEST(due.size() == static_cast<std::size_t>(with_ttl));
  restored.apply(restored.applied_index() + 1,
                 make(kv::op::purge_expired, "", "", t0 + 3600 * 1000));
  BOOST_TEST(restored.stats().curr_items == keys.size() - static_cast<std::size_t>(with_ttl));
  BOOST_TEST(all_keys(restored).size() == restored.stats().curr_items);
}

BOOST_AUTO_TEST_CASE(a_copied_store_is_independent_of_its_original) {
  fixture f;
  for (int i = 0; i < 1000; ++i)
    f.set("k" + std::to_string(i), std::to_string(i), 0, i % 2 ? 60 : 0);
  kv::store copy = f.s;
  BOOST_TEST(copy.snapshot() == f.s.snapshot());
  f.op(kv::op::remove, "k1");
  f.op(kv::op::append, "k2", "+");
  BOOST_TEST(copy.find("k1", t0)->value == "1");
  BOOST_TEST(copy.find("k2", t0)->value == "2");
  copy = f.s;
  BOOST_TEST(copy.snapshot() == f.s.snapshot());
  // The copy's expiry index points at its own items.
  copy.apply(copy.applied_index() + 1, make(kv::op::purge_expired, "", "", t0 + 60000));
  BOOST_TEST(copy.stats().curr_items == 500u);
  BOOST_TEST(f.s.stats().curr_items == 999u);
  BOOST_TEST(f.get("k3")->value == "3");
}

BOOST_AUTO_TEST_CASE(random_writes_match_a_simple_model) {
  // set/add/append/prepend/remove/incr on a small key space against std::map, with
  // listings and snapshot round trips checked along the way.
  std::mt19937_64 rng(12345);
  fixture f;
  std::map<std::string, std::string> model;
  for (int step = 0; step < 20000; ++step) {
    const std::string key(1 + rng() % 6, static_cast<char>('a' + rng() % 4));
    const std::string value(rng() % 40, static_cast<char>('0' + rng() % 10));
    const auto present = model.find(key);
    switch (rng() % 6) {
      case 0:
        f.set(key, value);
        model[key] = value;
        break;
      case 1:
        BOOST_TEST(((f.op(kv::op::add, key, value).code == kv::status::stored) ==
                    (present == model.end())));
        if (present == model.end()) model[key] = value;
        break;
      case 2:
        f.op(kv::op::append, key, value);
        if (present != model.end()) present->second += value;
        break;
      case 3:
        f.op(kv::op::prepend, key, value);
        if (present != model.end()) present->second = value + present->second;
        break;
      case 4:
        f.op(kv::op::remove, key);
        model.erase(key);
        break;
      default: {
        const auto r = f.incr(kv::op::incr, key, 1);
        if (r.code == kv::status::number) model[key] = f.get(key)->value;
        break;
      }
    }
    if (step % 1000 == 999) {
      std::vector<std::string> expect;
      for (const auto& [k, v] : model) expect.push_back(k);
      BOOST_TEST(all_keys(f.s) == expect);
      kv::store copy;
      BOOST_REQUIRE(copy.restore(f.s.snapshot()));
      BOOST_TEST(copy.snapshot() == f.s.snapshot());
    }
  }
  std::uint64_t bytes = 0;
  for (const auto& [k, v] : model) {
    BOOST_TEST(f.get(k)->value == v);
    bytes += k.size() + v.size() + kv::store::item_overhead_bytes;
  }
  BOOST_TEST(f.s.stats().curr_items == model.size());
  BOOST_TEST(f.s.stats().bytes == bytes);
}

// memcached's get_expired / get_flushed: a miss is told apart from an absent key while the
// item is still held (expired and not yet reclaimed; hidden by a delayed flush_all).
BOOST_AUTO_TEST_CASE(why_missing_tells_expired_and_flushed_items_from_absent_keys) {
  fixture f;
  f.set("ttl", "1", 0, 10);  // expires at t0 + 10 s
  f.set("kept", "2");
  BOOST_TEST((f.s.why_missing("none", t0) == kv::miss_kind::absent));
  BOOST_TEST((f.s.why_missing("ttl", t0 + 10'000) == kv::miss_kind::expired));
  f.flush(20);  // deadline t0 + 20 s: both are hidden from then on
  const std::int64_t deadline = t0 + 20'000;
  BOOST_TEST((f.s.why_missing("kept", deadline) == kv::miss_kind::flushed));
  // Expired and flushed: flushed, as memcached checks that first.
  BOOST_TEST((f.s.why_missing("ttl", deadline) == kv::miss_kind::flushed));
  BOOST_TEST(!f.get("kept", deadline).has_value());
}
