// Little-endian byte readers and writers: the one implementation behind every encoding of
// raftkv (kv commands, results and snapshots; Raft messages; peer frames; storage records).
//
// Fixed-width integers are little-endian; lengths are LEB128 varints so that short keys and
// values cost one length byte while nothing limits a length to 32 bits. The reader never
// reads past its input and reports every malformation as failure, so a decoder built on it
// can promise "nullopt on malformed input, never out of bounds, never over-allocate": a
// length is checked against the bytes actually left before any string is built from it.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace base {

// Fixed-width little-endian loads and stores at a position the caller has bounds-checked.
// On a little-endian machine each is one memcpy, which compiles to a single load or store:
// built byte by byte, a value written to a buffer and read back whole (byte_writer does)
// stalls the CPU's store forwarding; that was 40% of kv::encode_to's samples.
inline void store_le32(char* p, std::uint32_t v) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, &v, 4);
  } else {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
}
inline void store_le64(char* p, std::uint64_t v) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, &v, 8);
  } else {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
}
inline std::uint32_t load_le32(const void* at) {
  std::uint32_t v = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&v, at, 4);
  } else {
    const auto* p = static_cast<const unsigned char*>(at);
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  }
  return v;
}
inline std::uint64_t load_le64(const void* at) {
  std::uint64_t v = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&v, at, 8);
  } else {
    const auto* p = static_cast<const unsigned char*>(at);
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  }
  return v;
}

class byte_writer {
 public:
  explicit byte_writer(std::string& out) : out_(out) {}

  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v) { fixed(v, 4); }
  void u64(std::uint64_t v) { fixed(v, 8); }
  void i64(std::int64_t v) { fixed(static_cast<std::uint64_t>(v), 8); }

  // Each value is built in a local buffer and appended at once: one capacity check per
  // value instead of one per byte (the per-byte push_back was most of the cost of encoding
  // a Raft append, bench/README-profile.md).
  void varint(std::uint64_t v) {
    char buf[10];
    std::size_t n = 0;
    while (v >= 0x80) {
      buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    buf[n++] = static_cast<char>(v);
    out_.append(buf, n);
  }

  // Length-prefixed byte string.
  void bytes(std::string_view s) {
    varint(s.size());
    out_.append(s);
  }

 private:
  void fixed(std::uint64_t v, int width) {
    char buf[8];
    store_le64(buf, v);
    out_.append(buf, static_cast<std::size_t>(width));
  }

  std::string& out_;
};

class byte_reader {
 public:
  explicit byte_reader(std::string_view in) : in_(in) {}

  std::size_t remaining() const { return in_.size() - pos_; }
  bool at_end() const { return pos_ == in_.size(); }

  std::optional<std::uint8_t> u8() {
    if (remaining() < 1) return std::nullopt;
    return static_cast<std::uint8_t>(in_[pos_++]);
  }
  std::optional<std::uint32_t> u32() {
    auto v = fixed(4);
    if (!v) return std::nullopt;
    return static_cast<std::uint32_t>(*v);
  }
  std::optional<std::uint64_t> u64() { return fixed(8); }
  std::optional<std::int64_t> i64() {
    auto v = fixed(8);
    if (!v) return std::nullopt;
    return static_cast<std::int64_t>(*v);
  }

  // Rejects truncation, more than 64 bits, and over-long forms (a trailing zero group), so
  // every value has exactly one encoding.
  std::optional<std::uint64_t> varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (remaining() < 1) return std::nullopt;
      const auto b = static_cast<std::uint8_t>(in_[pos_++]);
      const std::uint64_t group = b & 0x7f;
      if (shift == 63 && group > 1) return std::nullopt;  // bits past 64
      v |= group << shift;
      if ((b & 0x80) == 0) {
        if (b == 0 && shift != 0) return std::nullopt;  // over-long
        return v;
      }
    }
    return std::nullopt;
  }

  // A length-prefixed byte string, viewed in place (no allocation).
  std::optional<std::string_view> bytes() {
    auto n = varint();
    if (!n || *n > remaining()) return std::nullopt;
    std::string_view s = in_.substr(pos_, static_cast<std::size_t>(*n));
    pos_ += static_cast<std::size_t>(*n);
    return s;
  }

 private:
  // width is 4 or 8.
  std::optional<std::uint64_t> fixed(int width) {
    if (remaining() < static_cast<std::size_t>(width)) return std::nullopt;
    const std::uint64_t v =
        width == 8 ? load_le64(in_.data() + pos_) : load_le32(in_.data() + pos_);
    pos_ += static_cast<std::size_t>(width);
    return v;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
};

}  // namespace base
