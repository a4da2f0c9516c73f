// The binary encodings of kv commands and results, and the snapshot checksum.
#define BOOST_TEST_MODULE kv_command
#include <boost/test/unit_test.hpp>

#include <random>
#include <string>
#include <vector>

#include "kv/command.h"
#include "base/crc32c.h"

namespace {

const std::vector<kv::op> all_ops = {
    kv::op::set,    kv::op::add,   kv::op::replace, kv::op::append,        kv::op::prepend,
    kv::op::cas,    kv::op::remove, kv::op::incr,   kv::op::decr,          kv::op::touch,
    kv::op::get_and_touch, kv::op::flush_all, kv::op::purge_expired};

const std::vector<kv::status> all_statuses = {
    kv::status::stored,      kv::status::not_stored, kv::status::exists,
    kv::status::not_found,   kv::status::deleted,    kv::status::touched,
    kv::status::number,      kv::status::item,       kv::status::ok,
    kv::status::non_numeric, kv::status::too_large,  kv::status::out_of_memory,
    kv::status::bad_command, kv::status::outcome_unknown};

kv::command full_command(kv::op kind) {
  kv::command c;
  c.kind = kind;
  c.key = "user:42";
  c.value = std::string("v\0al\r\nue", 8);
  c.flags = 0xdeadbeef;
  c.exptime = -7;
  c.kind_of_expiry = kv::expiry_kind::relative;
  c.cas_unique = 0xffffffffffffffffull;
  c.delta = 12345678901234ull;
  c.delay_s = 2592001;
  c.timestamp_ms = 1'790'000'000'123;
  c.id = {77, 1ull << 40};
  return c;
}

kv::command random_command(std::mt19937_64& rng) {
  kv::command c;
  c.kind = all_ops[rng() % all_ops.size()];
  const auto pick = [&](auto v) { return rng() % 2 ? decltype(v){} : v; };
  c.key = std::string(rng() % 300, static_cast<char>('a' + rng() % 26));
  c.value = std::string(rng() % 2000, static_cast<char>(rng()));
  c.flags = pick(static_cast<std::uint32_t>(rng()));
  c.exptime = pick(static_cast<std::int64_t>(rng()));
  c.kind_of_expiry = rng() % 2 ? kv::expiry_kind::memcached : kv::expiry_kind::relative;
  c.cas_unique = pick(static_cast<std::uint64_t>(rng()));
  c.delta = pick(static_cast<std::uint64_t>(rng()));
  c.delay_s = pick(static_cast<std::int64_t>(rng()));
  c.timestamp_ms = pick(static_cast<std::int64_t>(rng()));
  c.id = {pick(static_cast<std::uint64_t>(rng())), pick(static_cast<std::uint64_t>(rng()))};
  return c;
}

kv::result item_result() {
  kv::result r;
  r.code = kv::status::item;
  r.version = 99;
  r.item = kv::item_view{std::string("x\0y", 3), 7, 99, -1};
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(crc32c_matches_the_standard_check_value) {
  BOOST_TEST(base::crc32c("123456789") == 0xE3069283u);
  BOOST_TEST(base::crc32c("") == 0u);
  // Incremental use gives the same value as one call, across the 8-byte fast path.
  const std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    std::string_view all(text);
    BOOST_TEST(base::crc32c(all.substr(cut), base::crc32c(all.substr(0, cut))) == base::crc32c(all));
  }
}

BOOST_AUTO_TEST_CASE(crc32c_hardware_and_table_paths_agree) {
  // Every length up to 100 at every alignment within a word, and a few large buffers: the
  // tail loops, the 8-byte loops, and a chained call.
  std::string text(70'000, '\0');
  std::uint32_t x = 12345;
  for (auto& c : text) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 16);
  }
  const std::string_view all(text);
  for (std::size_t offset = 0; offset < 8; ++offset) {
    for (std::size_t len = 0; len <= 100; ++len) {
      const auto part = all.substr(offset, len);
      BOOST_TEST(base::crc32c(part) == base::crc32c_portable(part));
    }
  }
  BOOST_TEST(base::crc32c(all) == base::crc32c_portable(all));
  BOOST_TEST(base::crc32c(all.substr(3), 0xdeadbeefu) == base::crc32c_portable(all.substr(3), 0xdeadbeefu));
  BOOST_TEST(base::crc32c_portable("123456789") == 0xE3069283u);
}

BOOST_AUTO_TEST_CASE(every_op_round_trips_with_all_fields_set) {
  for (auto kind : all_ops) {
    const kv::command c = full_command(kind);
    auto back = kv::decode_command(kv::encode(c));
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST((*back == c));
  }
}

BOOST_AUTO_TEST_CASE(every_op_round_trips_with_default_fields) {
  for (auto kind : all_ops) {
    kv::command c;
    c.kind = kind;
    auto back = kv::decode_command(kv::encode(c));
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST((*back == c));
  }
}

BOOST_AUTO_TEST_CASE(random_commands_round_trip) {
  std::mt19937_64 rng(20261127);
  for (int i = 0; i < 2000; ++i) {
    const kv::command c = random_command(rng);
    auto back = kv::decode_command(kv::encode(c));
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST((*back == c));
  }
}

// Applying an entry and stamping a proposal read the command in place: the view's key and
// value point into the encoded bytes; encode_to and to_command give the same command back.
BOOST_AUTO_TEST_CASE(a_command_view_reads_the_encoded_bytes_in_place) {
  std::mt19937_64 rng(20261130);
  for (int i = 0; i < 500; ++i) {
    const kv::command c = random_command(rng);
    const std::string bytes = kv::encode(c);
    auto view = kv::decode_command_view(bytes);
    BOOST_REQUIRE(view.has_value());
    const auto inside = [&](std::string_view part) {
      return part.empty() || (part.data() >= bytes.data() &&
                              part.data() + part.size() <= bytes.data() + bytes.size());
    };
    BOOST_TEST(inside(view->key));
    BOOST_TEST(inside(view->value));
    BOOST_TEST((kv::to_command(*view) == c));
    std::string again = "prefix";
    kv::encode_to(*view, again);
    BOOST_TEST(again == "prefix" + bytes);
    BOOST_TEST((kv::command_view(c) == *view));
  }
  for (std::size_t n = 0; n < 8; ++n) {
    const std::string bytes = kv::encode(full_command(kv::op::set));
    BOOST_TEST(!kv::decode_command_view(std::string_view(bytes).substr(0, n)).has_value());
  }
}

BOOST_AUTO_TEST_CASE(encoding_of_a_small_set_is_compact) {
  kv::command c;
  c.key = "k";
  c.value = "v";
  c.timestamp_ms = 1'790'000'000'000;
  c.id = {3, 4};
  // 4 header bytes, 2 x (1 length + 1 byte), 3 x 8-byte fields.
  BOOST_TEST(kv::encode(c).size() == 4u + 4u + 24u);
}

BOOST_AUTO_TEST_CASE(every_result_round_trips) {
  for (auto code : all_statuses) {
    kv::result r;
    r.code = code;
    auto back = kv::decode_result(kv::encode(r));
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST((*back == r));
    r.version = 12;
    r.number = 0xffffffffffffffffull;
    back = kv::decode_result(kv::encode(r));
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST((*back == r));
  }
  auto back = kv::decode_result(kv::encode(item_result()));
  BOOST_REQUIRE(back.has_value());
  BOOST_TEST((*back == item_result()));
}

BOOST_AUTO_TEST_CASE(decode_command_rejects_every_truncation) {
  const std::string bytes = kv::encode(full_command(kv::op::cas));
  for (std::size_t n = 0; n < bytes.size(); ++n)
    BOOST_TEST(!kv::decode_command(std::string_view(bytes).substr(0, n)).has_value(), "length " << n);
}

BOOST_AUTO_TEST_CASE(decode_result_rejects_every_truncation) {
  const std::string bytes = kv::encode(item_result());
  for (std::size_t n = 0; n < bytes.size(); ++n)
    BOOST_TEST(!kv::decode_result(std::string_view(bytes).substr(0, n)).has_value(), "length " << n);
}

BOOST_AUTO_TEST_CASE(decode_rejects_trailing_bytes) {
  BOOST_TEST(!kv::decode_command(kv::encode(full_command(kv::op::set)) + '\0').has_value());
  BOOST_TEST(!kv::decode_result(kv::encode(item_result()) + 'x').has_value());
  kv::result plain;
  BOOST_TEST(!kv::decode_result(kv::encode(plain) + 'x').has_value());
}

BOOST_AUTO_TEST_CASE(decode_rejects_unknown_format_op_kind_and_status) {
  const std::string good = kv::encode(full_command(kv::op::set));
  auto with = [&](std::size_t at, char v) {
    std::string b = good;
    b[at] = v;
    return b;
  };
  BOOST_TEST(kv::decode_command(good).has_value());
  BOOST_TEST(!kv::decode_command(with(0, 2)).has_value());   // format version
  BOOST_TEST(!kv::decode_command(with(1, 0)).has_value());   // op below range
  BOOST_TEST(!kv::decode_command(with(1, 18)).has_value());  // op above range
  BOOST_TEST(!kv::decode_command(with(2, 2)).has_value());   // expiry kind
  BOOST_TEST(kv::decode_command(with(1, 13)).has_value());   // purge_expired is valid

  const std::string res = kv::encode(kv::result{});
  auto res_with = [&](std::size_t at, char v) {
    std::string b = res;
    b[at] = v;
    return b;
  };
  BOOST_TEST(!kv::decode_result(res_with(0, 0)).has_value());
  BOOST_TEST(!kv::decode_result(res_with(1, 0)).has_value());
  BOOST_TEST(kv::decode_result(res_with(1, 14)).has_value());  // outcome_unknown
  BOOST_TEST(!kv::decode_result(res_with(1, 15)).has_value());
  BOOST_TEST(!kv::decode_result(res_with(2, 8)).has_value());  // unknown field bit
}

BOOST_AUTO_TEST_CASE(set_limits_round_trips_and_only_with_a_valid_payload) {
  const kv::store_options limits{100, 5000, 1ull << 30};
  const kv::command c = kv::set_limits_command(limits, kv::limits_from_config);
  BOOST_TEST((c.kind == kv::op::set_limits));
  BOOST_TEST(c.value.size() == 24u);
  BOOST_TEST((kv::decode_limits(c.value) == limits));
  auto stamped = c;
  stamped.timestamp_ms = 1'790'000'000'000;
  for (const auto& cmd : {c, stamped}) {
    auto back = kv::decode_command(kv::encode(cmd));
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST((*back == cmd));
  }
  // Each meaning round-trips (the two of earlier versions too); no other flags decode.
  for (std::uint32_t flags : {kv::limits_absolute, kv::limits_if_unset, kv::limits_from_config,
                              kv::limits_memory_quota}) {
    const auto cmd = kv::set_limits_command(limits, flags);
    BOOST_TEST((kv::decode_command(kv::encode(cmd)) == cmd), "flags " << flags);
  }
  for (std::uint32_t flags : {3u, 5u, 6u, 8u, 0x80000000u}) {
    const auto cmd = kv::set_limits_command(limits, flags);
    BOOST_TEST(!kv::decode_command(kv::encode(cmd)).has_value(), "flags " << flags);
  }
  // A payload of the wrong size, a zero limit or a key make the entry undecodable (it is
  // then skipped by every replica alike).
  auto bad = c;
  bad.value.pop_back();
  BOOST_TEST(!kv::decode_command(kv::encode(bad)).has_value());
  bad.value = c.value + '\0';
  BOOST_TEST(!kv::decode_command(kv::encode(bad)).has_value());
  for (int field = 0; field < 3; ++field) {
    kv::store_options zero = limits;
    if (field == 0) zero.max_key_bytes = 0;
    if (field == 1) zero.max_value_bytes = 0;
    if (field == 2) zero.max_memory_bytes = 0;
    BOOST_TEST(!kv::decode_limits(kv::encode_limits(zero)).has_value());
    BOOST_TEST(!kv::decode_command(kv::encode(kv::set_limits_command(zero, kv::limits_from_config)))
                     .has_value());
  }
  bad = c;
  bad.key = "k";
  BOOST_TEST(!kv::decode_command(kv::encode(bad)).has_value());
}

BOOST_AUTO_TEST_CASE(decode_rejects_a_length_past_the_end_without_allocating_it) {
  // format, op set, kind, mask 0, key length = 2^62 (varint), nothing after it.
  std::string b = {1, 1, 0, 0};
  std::uint64_t huge = 1ull << 62;
  while (huge >= 0x80) {
    b.push_back(static_cast<char>((huge & 0x7f) | 0x80));
    huge >>= 7;
  }
  b.push_back(static_cast<char>(huge));
  BOOST_TEST(!kv::decode_command(b).has_value());
  b += "abc";
  BOOST_TEST(!kv::decode_command(b).has_value());
}

BOOST_AUTO_TEST_CASE(decode_rejects_non_canonical_forms) {
  // A field flagged present but zero.
  std::string b = {1, 1, 0, 1, 0, 0, 0, 0, 0, 0};
  BOOST_TEST(!kv::decode_command(b).has_value());
  // The same command without the flag is fine.
  BOOST_TEST(kv::decode_command(std::string{1, 1, 0, 0, 0, 0}).has_value());
  // An over-long varint length (0 written as two bytes).
  BOOST_TEST(!kv::decode_command(std::string{1, 1, 0, 0, char(0x80), 0, 0}).has_value());
  // A varint with more than 64 bits.
  std::string long_varint = {1, 1, 0, 0};
  for (int i = 0; i < 10; ++i) long_varint.push_back(char(0xff));
  long_varint.push_back(1);
  BOOST_TEST(!kv::decode_command(long_varint).has_value());
}

BOOST_AUTO_TEST_CASE(random_bytes_never_crash_and_what_decodes_is_canonical) {
  std::mt19937_64 rng(733);
  int decoded = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string b(rng() % 64, '\0');
    for (auto& ch : b) ch = static_cast<char>(rng());
    // Half the inputs start with a valid header so the decoder gets past the first checks.
    if (i % 2 == 0 && b.size() >= 4) {
      b[0] = 1;
      b[1] = static_cast<char>(1 + rng() % 13);
      b[2] = static_cast<char>(rng() % 2);
    }
    if (auto c = kv::decode_command(b)) {
      ++decoded;
      BOOST_TEST(kv::encode(*c) == b);
    }
    if (auto r = kv::decode_result(b)) BOOST_TEST(kv::encode(*r) == b);
  }
  BOOST_TEST_MESSAGE("random inputs that decoded: " << decoded);
}

BOOST_AUTO_TEST_CASE(mutated_valid_encodings_never_crash) {
  std::mt19937_64 rng(11211);
  for (int i = 0; i < 3000; ++i) {
    std::string b = kv::encode(random_command(rng));
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] = static_cast<char>(rng());
    if (rng() % 3 == 0) b.resize(rng() % (b.size() + 1));
    if (auto c = kv::decode_command(b)) BOOST_TEST(kv::encode(*c) == b);
    std::string r = kv::encode(item_result());
    r[rng() % r.size()] = static_cast<char>(rng());
    if (auto back = kv::decode_result(r)) BOOST_TEST(kv::encode(*back) == r);
  }
}
