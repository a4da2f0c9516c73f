#include "net/peer/frame.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <initializer_list>

#include "base/bytes.h"
#include "base/crc32c.h"

namespace net {
namespace {

constexpr std::array<char, 4> magic = {'R', 'K', 'V', 'P'};

void append_u64(std::string& out, std::uint64_t v) {
  char b[8];
  base::store_le64(b, v);
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
    case frame_kind::hello:
      return "hello";
    case frame_kind::raft_message:
      return "raft message";
    case frame_kind::forward_request:
      return "forward request";
    case frame_kind::forward_response:
      return "forward response";
    case frame_kind::refused:
      return "refused";
  }
  return "unknown";
}

std::string_view to_string(frame_error e) {
  switch (e) {
    case frame_error::bad_magic:
      return "bad magic";
    case frame_error::bad_version:
      return "unsupported frame version";
    case frame_error::bad_kind:
      return "unknown frame kind";
    case frame_error::bad_flags:
      return "bad frame flags";
    case frame_error::oversize:
      return "frame over max_frame_bytes";
    case frame_error::bad_checksum:
      return "bad checksum";
  }
  return "unknown frame error";
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
  base::store_le64(p + 8, h.cluster_id);
  base::store_le64(p + 16, h.from.value);
  base::store_le64(p + 24, h.to.value);
  base::store_le64(p + 32, h.to_incarnation);
  base::store_le32(p + 40, static_cast<std::uint32_t>(payload.size()));
  out.append(payload);
  const std::uint32_t crc =
      base::crc32c(std::string_view(out).substr(start, frame_header_bytes + payload.size()));
  char trailer[frame_trailer_bytes];
  base::store_le32(trailer, crc);
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
  const std::size_t payload_bytes = base::load_le32(p + 40);
  if (payload_bytes > max_payload_bytes) return frame_error::oversize;
  const std::size_t total = frame_overhead_bytes + payload_bytes;
  if (bytes.size() < total) return need_more{total};

  const std::size_t covered = frame_header_bytes + payload_bytes;
  if (base::crc32c(bytes.substr(0, covered)) != base::load_le32(p + covered)) {
    return frame_error::bad_checksum;
  }

  decoded_frame d;
  d.value.header.kind = static_cast<frame_kind>(p[5]);
  d.value.header.flags = static_cast<std::uint8_t>(p[6]);
  d.value.header.cluster_id = base::load_le64(p + 8);
  d.value.header.from = raft::node_id(base::load_le64(p + 16));
  d.value.header.to = raft::node_id(base::load_le64(p + 24));
  d.value.header.to_incarnation = base::load_le64(p + 32);
  d.value.payload = bytes.substr(frame_header_bytes, payload_bytes);
  d.consumed = total;
  return d;
}

// Forwarding bodies share one layout: u64 call id, u8 code (the op of a request, the error
// of a response), then the body to the end.
namespace {

constexpr std::size_t forward_head_bytes = 9;

std::string encode_forward(std::uint64_t call_id, std::uint8_t code, std::string_view body) {
  std::string out;
  out.reserve(forward_head_bytes + body.size());
  append_u64(out, call_id);
  out.push_back(static_cast<char>(code));
  out.append(body);
  return out;
}

struct forward_parts {
  std::uint64_t call_id;
  std::uint8_t code;
  std::string_view body;
};

std::optional<forward_parts> decode_forward(std::string_view bytes) {
  if (bytes.size() < forward_head_bytes) return std::nullopt;
  return forward_parts{base::load_le64(bytes.data()), static_cast<std::uint8_t>(bytes[8]),
                       bytes.substr(forward_head_bytes)};
}

}  // namespace

std::string encode(const forward_request& r) {
  return encode_forward(r.call_id, static_cast<std::uint8_t>(r.op), r.body);
}

std::string encode(const forward_response& r) {
  return encode_forward(r.call_id, static_cast<std::uint8_t>(r.error), r.body);
}

std::optional<forward_request> decode_forward_request(std::string_view bytes) {
  const auto parts = decode_forward(bytes);
  if (!parts || parts->code < static_cast<std::uint8_t>(forward_op::write) ||
      parts->code > static_cast<std::uint8_t>(forward_op::members_view)) {
    return std::nullopt;
  }
  return forward_request{parts->call_id, static_cast<forward_op>(parts->code),
                         std::string(parts->body)};
}

std::optional<forward_response> decode_forward_response(std::string_view bytes) {
  const auto parts = decode_forward(bytes);
  // service_error::unavailable is the last code the protocol knows.
  if (!parts || parts->code > static_cast<std::uint8_t>(service_error::unavailable)) {
    return std::nullopt;
  }
  return forward_response{parts->call_id, static_cast<service_error>(parts->code),
                          std::string(parts->body)};
}

std::string encode_members_view(const node_status& s) {
  std::string out;
  base::byte_writer w(out);
  w.u64(s.config_index);
  w.u8(s.change_in_progress ? 1 : 0);
  w.u64(s.leader_id);
  w.varint(s.members.size());
  for (const auto& m : s.members) {
    w.u64(m.address.id.value);
    for (const std::string* field :
         {&m.address.peer, &m.address.memcached, &m.address.cs733, &m.address.http}) {
      w.bytes(*field);
    }
    w.u8(m.voter ? 1 : 0);
    w.u8(m.caught_up ? 1 : 0);
    w.u64(m.match_index);
  }
  return out;
}

std::optional<node_status> decode_members_view(std::string_view bytes) {
  base::byte_reader r(bytes);
  const auto flag = [&r]() -> std::optional<bool> {
    const auto b = r.u8();
    if (!b || *b > 1) return std::nullopt;
    return *b == 1;
  };
  node_status s;
  const auto config_index = r.u64();
  const auto change = flag();
  const auto leader_id = r.u64();
  const auto n = r.varint();
  // A member takes at least 22 bytes (id, four empty addresses, two flags, match index).
  if (!config_index || !change || !leader_id || !n || *n > r.remaining() / 22) {
    return std::nullopt;
  }
  s.config_index = *config_index;
  s.change_in_progress = *change;
  s.leader_id = *leader_id;
  for (std::uint64_t i = 0; i < *n; ++i) {
    member_status m;
    const auto id = r.u64();
    if (!id) return std::nullopt;
    m.address.id = raft::node_id{*id};
    for (std::string* field :
         {&m.address.peer, &m.address.memcached, &m.address.cs733, &m.address.http}) {
      const auto bytes_read = r.bytes();
      if (!bytes_read) return std::nullopt;
      *field = std::string(*bytes_read);
    }
    const auto voter = flag();
    const auto caught_up = flag();
    const auto match = r.u64();
    if (!voter || !caught_up || !match) return std::nullopt;
    m.voter = *voter;
    m.caught_up = *caught_up;
    m.match_index = *match;
    s.members.push_back(std::move(m));
  }
  if (!r.at_end()) return std::nullopt;
  return s;
}

std::string encode_hello(const hello& h) {
  std::string out;
  out.reserve(hello_payload_bytes);
  append_u64(out, h.incarnation);
  append_u64(out, h.generation);
  append_u64(out, static_cast<std::uint64_t>(h.read_lease_ms));
  return out;
}

std::optional<hello> decode_hello(std::string_view payload) {
  if (payload.size() != hello_payload_bytes) return std::nullopt;
  const std::uint64_t lease = base::load_le64(payload.data() + 16);
  if (lease > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
  hello h{base::load_le64(payload.data()), base::load_le64(payload.data() + 8),
          static_cast<std::int64_t>(lease)};
  if (h.incarnation == 0 || h.generation == 0) return std::nullopt;
  return h;
}

std::string encode(const refusal& r) {
  std::string out;
  out.reserve(refused_payload_bytes);
  out.push_back(static_cast<char>(r.reason));
  append_u64(out, r.recorded_generation);
  append_u64(out, r.announced_generation);
  return out;
}

std::optional<refusal> decode_refusal(std::string_view payload) {
  if (payload.size() != refused_payload_bytes) return std::nullopt;
  const auto reason = static_cast<std::uint8_t>(payload[0]);
  if (reason == 0 || reason > max_refusal_reason) return std::nullopt;
  refusal r{static_cast<refusal_reason>(reason), base::load_le64(payload.data() + 1),
            base::load_le64(payload.data() + 9)};
  if (r.recorded_generation == 0 || r.announced_generation == 0) return std::nullopt;
  return r;
}

}  // namespace net
