#include "net/peer_frame.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace net {
namespace {

constexpr std::array<char, 4> magic = {'R', 'K', 'V', 'P'};

// Slicing-by-8 tables for the reflected Castagnoli polynomial: eight bytes per step keeps
// checksumming a multi-megabyte snapshot frame well under the cost of copying it.
using crc_tables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr crc_tables make_crc_tables() {
  constexpr std::uint32_t poly = 0x82F63B78u;
  crc_tables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
    t[0][i] = c;
  }
  for (std::size_t i = 0; i < 256; ++i) {
    for (std::size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
  return t;
}

constexpr crc_tables tables = make_crc_tables();

void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
void put_u64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void append_u64(std::string& out, std::uint64_t v) {
  char b[8];
  put_u64(b, v);
  out.append(b, sizeof b);
}

bool flags_valid(std::uint8_t flags) {
  if ((flags & ~frame_flags::all) != 0) return false;
  // first/last describe a fragment run; on a whole message they mean nothing.
  return (flags & frame_flags::fragment) != 0 || flags == 0;
}

}  // namespace

std::string_view to_string(frame_kind k) {
  switch (k) {
    case frame_kind::hello: return "hello";
    case frame_kind::raft_message: return "raft message";
    case frame_kind::forward_request: return "forward request";
    case frame_kind::forward_response: return "forward response";
  }
  return "unknown";
}

std::string_view to_string(frame_error e) {
  switch (e) {
    case frame_error::bad_magic: return "bad magic";
    case frame_error::bad_version: return "unsupported frame version";
    case frame_error::bad_kind: return "unknown frame kind";
    case frame_error::bad_flags: return "bad frame flags";
    case frame_error::oversize: return "frame over max_frame_bytes";
    case frame_error::bad_checksum: return "bad checksum";
  }
  return "unknown frame error";
}

std::uint32_t crc32c(std::string_view data, std::uint32_t crc) {
  crc = ~crc;
  auto p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t n = data.size();
  while (n >= 8) {
    const std::uint32_t lo = crc ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 |
                                    std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24);
    crc = tables[7][lo & 0xFF] ^ tables[6][(lo >> 8) & 0xFF] ^ tables[5][(lo >> 16) & 0xFF] ^
          tables[4][lo >> 24] ^ tables[3][p[4]] ^ tables[2][p[5]] ^ tables[1][p[6]] ^
          tables[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = tables[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

void append_frame(std::string& out, const frame_header& h, std::string_view payload) {
  const std::size_t start = out.size();
  out.resize(start + frame_header_bytes);
  char* p = out.data() + start;
  std::memcpy(p, magic.data(), magic.size());
  p[4] = static_cast<char>(frame_version);
  p[5] = static_cast<char>(h.kind);
  p[6] = static_cast<char>(h.flags);
  p[7] = 0;
  put_u64(p + 8, h.cluster_id);
  put_u64(p + 16, h.from.value);
  put_u64(p + 24, h.to.value);
  put_u32(p + 32, static_cast<std::uint32_t>(payload.size()));
  out.append(payload);
  const std::uint32_t crc =
      crc32c(std::string_view(out).substr(start, frame_header_bytes + payload.size()));
  char trailer[frame_trailer_bytes];
  put_u32(trailer, crc);
  out.append(trailer, sizeof trailer);
}

std::string encode_frame(const frame_header& h, std::string_view payload) {
  std::string out;
  out.reserve(frame_overhead_bytes + payload.size());
  append_frame(out, h, payload);
  return out;
}

decode_outcome decode_frame(std::string_view bytes, std::size_t max_payload_bytes) {
  // Check what we can as soon as it arrives, so garbage is refused without waiting for a
  // full header and a bogus length never makes the reader buffer it.
  if (bytes.empty()) return need_more{frame_header_bytes};
  const std::size_t magic_seen = std::min(bytes.size(), magic.size());
  if (std::memcmp(bytes.data(), magic.data(), magic_seen) != 0) return frame_error::bad_magic;
  if (bytes.size() > 4 && static_cast<std::uint8_t>(bytes[4]) != frame_version) {
    return frame_error::bad_version;
  }
  if (bytes.size() > 5) {
    const auto kind = static_cast<std::uint8_t>(bytes[5]);
    if (kind == 0 || kind > max_frame_kind) return frame_error::bad_kind;
  }
  if (bytes.size() > 6 && !flags_valid(static_cast<std::uint8_t>(bytes[6]))) {
    return frame_error::bad_flags;
  }
  if (bytes.size() > 7 && bytes[7] != 0) return frame_error::bad_flags;
  if (bytes.size() < frame_header_bytes) return need_more{frame_header_bytes};

  const char* p = bytes.data();
  const std::size_t payload_bytes = get_u32(p + 32);
  if (payload_bytes > max_payload_bytes) return frame_error::oversize;
  const std::size_t total = frame_overhead_bytes + payload_bytes;
  if (bytes.size() < total) return need_more{total};

  const std::size_t covered = frame_header_bytes + payload_bytes;
  if (crc32c(bytes.substr(0, covered)) != get_u32(p + covered)) return frame_error::bad_checksum;

  decoded_frame d;
  d.value.header.kind = static_cast<frame_kind>(p[5]);
  d.value.header.flags = static_cast<std::uint8_t>(p[6]);
  d.value.header.cluster_id = get_u64(p + 8);
  d.value.header.from = raft::node_id(get_u64(p + 16));
  d.value.header.to = raft::node_id(get_u64(p + 24));
  d.value.payload = bytes.substr(frame_header_bytes, payload_bytes);
  d.consumed = total;
  return d;
}

// Forwarding bodies: u64 call id, u8 op or error code, then the body to the end.
std::string encode(const forward_request& r) {
  std::string out;
  out.reserve(9 + r.body.size());
  append_u64(out, r.call_id);
  out.push_back(static_cast<char>(r.op));
  out.append(r.body);
  return out;
}

std::string encode(const forward_response& r) {
  std::string out;
  out.reserve(9 + r.body.size());
  append_u64(out, r.call_id);
  out.push_back(static_cast<char>(r.error));
  out.append(r.body);
  return out;
}

std::optional<forward_request> decode_forward_request(std::string_view bytes) {
  if (bytes.size() < 9) return std::nullopt;
  const auto op = static_cast<std::uint8_t>(bytes[8]);
  if (op != static_cast<std::uint8_t>(forward_op::write) &&
      op != static_cast<std::uint8_t>(forward_op::read_barrier)) {
    return std::nullopt;
  }
  forward_request r;
  r.call_id = get_u64(bytes.data());
  r.op = static_cast<forward_op>(op);
  r.body.assign(bytes.substr(9));
  return r;
}

std::optional<forward_response> decode_forward_response(std::string_view bytes) {
  if (bytes.size() < 9) return std::nullopt;
  const auto error = static_cast<std::uint8_t>(bytes[8]);
  if (error > static_cast<std::uint8_t>(service_error::unavailable)) return std::nullopt;
  forward_response r;
  r.call_id = get_u64(bytes.data());
  r.error = static_cast<service_error>(error);
  r.body.assign(bytes.substr(9));
  return r;
}

}  // namespace net
