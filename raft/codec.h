// Binary encoding of Raft messages for the peer transport.
//
// Layout (all integers little-endian, fixed width):
//   u8 version (=2) | u8 body tag (index in message_body) | u64 from | u64 to | u64 term | body
// Strings are u64 length + bytes; vectors are u64 count + elements. decode() checks every
// length against the bytes that remain before allocating, so garbage input can never make it
// allocate more than the input size, and rejects trailing bytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "raft/message.h"

namespace raft {

// 2: read_index_response carries leader_time_ms; 3: snapshots travel as snapshot_chunk;
// 4: snapshot metadata carries the whole configuration (encode_membership), entries may be
// entry_type::config
inline constexpr std::uint8_t codec_version = 4;

std::string encode(const message& m);
std::optional<message> decode(std::string_view bytes);

}  // namespace raft
