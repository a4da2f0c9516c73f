// CRC-32C (Castagnoli), the checksum of kv snapshots.
//
// Chosen over a multiplicative hash because it detects every burst error up to 32 bits and
// runs at about a byte per cycle with slicing-by-8 tables, which matters for snapshots of a
// full memory quota. Portable table code: the kv library stays free of CPU intrinsics.
#pragma once

#include <cstdint>
#include <string_view>

namespace base {

// Extends `crc` (the value returned for the bytes before) with `bytes`. Start with 0.
// crc32c("123456789") == 0xE3069283.
std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0);

}  // namespace base
