// Binary encodings of commands and results.
//
// command (format 1):
//   u8 format(=1) | u8 op | u8 expiry_kind | u8 present-mask
//   | varint len + key | varint len + value
//   | the fields whose mask bit is set, in bit order, little-endian:
//     bit0 flags u32, bit1 exptime i64, bit2 cas_unique u64, bit3 delta u64,
//     bit4 delay_s i64, bit5 timestamp_ms i64, bit6 id.client u64, bit7 id.seq u64
// A field is present exactly when it is non-zero, so a typical set costs a few bytes plus
// key and value, and every command has one encoding (the decoder rejects a present zero).
// op::set_limits (added later, same format: an older decoder rejects the unknown op and
// the entry is skipped) has no key and its value is the 24-byte encode_limits() payload;
// its flags are exactly one of limits_absolute (0), limits_if_unset, limits_from_config and
// limits_memory_quota.
//
// result (format 1):
//   u8 format(=1) | u8 status | u8 present-mask (bits above 3 must be clear)
//   | bit0 version u64 | bit1 number u64
//   | bit2 item: varint len + value, flags u32, version u64, expires_at_ms i64
//   | bit3 (only with bit2) item meta u8, non-zero
#include "kv/command.h"

#include <limits>

#include "base/bytes.h"

namespace kv {
namespace {

constexpr std::uint8_t command_format = 1;
constexpr std::uint8_t result_format = 1;

bool valid_op(std::uint8_t v) {
  return v >= static_cast<std::uint8_t>(op::set) && v <= static_cast<std::uint8_t>(op::meta_arith);
}
bool valid_kind(std::uint8_t v) {
  return v == static_cast<std::uint8_t>(expiry_kind::memcached) ||
         v == static_cast<std::uint8_t>(expiry_kind::relative);
}
bool valid_status(std::uint8_t v) {
  return v >= static_cast<std::uint8_t>(status::stored) &&
         v <= static_cast<std::uint8_t>(status::outcome_unknown);
}

enum command_field : std::uint8_t {
  f_flags = 1u << 0,
  f_exptime = 1u << 1,
  f_cas = 1u << 2,
  f_delta = 1u << 3,
  f_delay = 1u << 4,
  f_timestamp = 1u << 5,
  f_client = 1u << 6,
  f_seq = 1u << 7,
};

enum result_field : std::uint8_t {
  r_version = 1u << 0,
  r_number = 1u << 1,
  r_item = 1u << 2,
  r_item_meta = 1u << 3,
  r_all = r_version | r_number | r_item | r_item_meta,
};

// Reads a field that the mask says is present; a present field must be non-zero.
template <typename T, typename Read>
bool read_present(std::uint8_t mask, std::uint8_t bit, T& out, Read read) {
  if ((mask & bit) == 0) return true;
  auto v = read();
  if (!v || *v == 0) return false;
  out = static_cast<T>(*v);
  return true;
}

}  // namespace

std::string encode(const command_view& c) {
  std::string out;
  out.reserve(16 + c.key.size() + c.value.size() + 8 * 8);
  encode_to(c, out);
  return out;
}

void encode_to(const command_view& c, std::string& out) {
  base::byte_writer w(out);
  std::uint8_t mask = 0;
  if (c.flags != 0) mask |= f_flags;
  if (c.exptime != 0) mask |= f_exptime;
  if (c.cas_unique != 0) mask |= f_cas;
  if (c.delta != 0) mask |= f_delta;
  if (c.delay_s != 0) mask |= f_delay;
  if (c.timestamp_ms != 0) mask |= f_timestamp;
  if (c.id.client != 0) mask |= f_client;
  if (c.id.seq != 0) mask |= f_seq;

  w.u8(command_format);
  w.u8(static_cast<std::uint8_t>(c.kind));
  w.u8(static_cast<std::uint8_t>(c.kind_of_expiry));
  w.u8(mask);
  w.bytes(c.key);
  w.bytes(c.value);
  if (mask & f_flags) w.u32(c.flags);
  if (mask & f_exptime) w.i64(c.exptime);
  if (mask & f_cas) w.u64(c.cas_unique);
  if (mask & f_delta) w.u64(c.delta);
  if (mask & f_delay) w.i64(c.delay_s);
  if (mask & f_timestamp) w.i64(c.timestamp_ms);
  if (mask & f_client) w.u64(c.id.client);
  if (mask & f_seq) w.u64(c.id.seq);
}

command to_command(const command_view& v) { return command(v); }

std::optional<command> decode_command(std::string_view bytes) {
  // Only with the whole input validated are key and value copied (bounded by the input).
  auto v = decode_command_view(bytes);
  if (!v) return std::nullopt;
  return to_command(*v);
}

std::optional<command_view> decode_command_view(std::string_view bytes) {
  base::byte_reader r(bytes);
  auto format = r.u8();
  if (!format || *format != command_format) return std::nullopt;
  auto kind = r.u8();
  if (!kind || !valid_op(*kind)) return std::nullopt;
  auto expiry = r.u8();
  if (!expiry || !valid_kind(*expiry)) return std::nullopt;
  auto mask = r.u8();
  if (!mask) return std::nullopt;
  auto key = r.bytes();
  if (!key) return std::nullopt;
  auto value = r.bytes();
  if (!value) return std::nullopt;

  command_view c;
  c.kind = static_cast<op>(*kind);
  c.kind_of_expiry = static_cast<expiry_kind>(*expiry);
  const std::uint8_t m = *mask;
  if (!read_present(m, f_flags, c.flags, [&] { return r.u32(); }) ||
      !read_present(m, f_exptime, c.exptime, [&] { return r.i64(); }) ||
      !read_present(m, f_cas, c.cas_unique, [&] { return r.u64(); }) ||
      !read_present(m, f_delta, c.delta, [&] { return r.u64(); }) ||
      !read_present(m, f_delay, c.delay_s, [&] { return r.i64(); }) ||
      !read_present(m, f_timestamp, c.timestamp_ms, [&] { return r.i64(); }) ||
      !read_present(m, f_client, c.id.client, [&] { return r.u64(); }) ||
      !read_present(m, f_seq, c.id.seq, [&] { return r.u64(); }))
    return std::nullopt;
  if (!r.at_end()) return std::nullopt;
  if (c.kind == op::set_limits &&
      (!key->empty() || !decode_limits(*value) ||
       (c.flags != limits_absolute && c.flags != limits_if_unset &&
        c.flags != limits_from_config && c.flags != limits_memory_quota)))
    return std::nullopt;
  c.key = *key;
  c.value = *value;
  return c;
}

std::string encode(const result& res) {
  std::string out;
  base::byte_writer w(out);
  std::uint8_t mask = 0;
  if (res.version != 0) mask |= r_version;
  if (res.number != 0) mask |= r_number;
  if (res.item) mask |= r_item;
  if (res.item && res.item->meta != 0) mask |= r_item_meta;
  w.u8(result_format);
  w.u8(static_cast<std::uint8_t>(res.code));
  w.u8(mask);
  if (mask & r_version) w.u64(res.version);
  if (mask & r_number) w.u64(res.number);
  if (res.item) {
    w.bytes(res.item->value);
    w.u32(res.item->flags);
    w.u64(res.item->version);
    w.i64(res.item->expires_at_ms);
    if (mask & r_item_meta) w.u8(res.item->meta);
  }
  return out;
}

std::optional<result> decode_result(std::string_view bytes) {
  base::byte_reader r(bytes);
  auto format = r.u8();
  if (!format || *format != result_format) return std::nullopt;
  auto code = r.u8();
  if (!code || !valid_status(*code)) return std::nullopt;
  auto mask = r.u8();
  if (!mask || (*mask & ~r_all) != 0) return std::nullopt;

  result res;
  res.code = static_cast<status>(*code);
  if (!read_present(*mask, r_version, res.version, [&] { return r.u64(); }) ||
      !read_present(*mask, r_number, res.number, [&] { return r.u64(); }))
    return std::nullopt;
  if (*mask & r_item) {
    auto value = r.bytes();
    auto flags = value ? r.u32() : std::nullopt;
    auto version = flags ? r.u64() : std::nullopt;
    auto expires = version ? r.i64() : std::nullopt;
    if (!expires) return std::nullopt;
    std::uint8_t meta = 0;
    if (!read_present(*mask, r_item_meta, meta, [&] { return r.u8(); })) return std::nullopt;
    if (!r.at_end()) return std::nullopt;
    res.item = item_view{std::string(*value), *flags, *version, *expires, meta};
  } else if (*mask & r_item_meta) {
    return std::nullopt;
  }
  if (!r.at_end()) return std::nullopt;
  return res;
}

std::string encode_limits(const store_options& limits) {
  std::string out;
  base::byte_writer w(out);
  w.u64(limits.max_key_bytes);
  w.u64(limits.max_value_bytes);
  w.u64(limits.max_memory_bytes);
  return out;
}

std::optional<store_options> decode_limits(std::string_view bytes) {
  base::byte_reader r(bytes);
  auto key = r.u64();
  auto value = key ? r.u64() : std::nullopt;
  auto memory = value ? r.u64() : std::nullopt;
  if (!memory || !r.at_end()) return std::nullopt;
  // A zero limit would refuse every write: no configuration can ask for it.
  if (*key == 0 || *value == 0 || *memory == 0) return std::nullopt;
  if (*key > std::numeric_limits<std::size_t>::max() ||
      *value > std::numeric_limits<std::size_t>::max())
    return std::nullopt;
  return store_options{static_cast<std::size_t>(*key), static_cast<std::size_t>(*value), *memory};
}

command set_limits_command(const store_options& limits, std::uint32_t flags) {
  command c;
  c.kind = op::set_limits;
  c.flags = flags;
  c.value = encode_limits(limits);
  return c;
}

}  // namespace kv
