// CRC-32C (Castagnoli), the checksum carried by every record the storage layer writes.
//
// CRC-32C rather than CRC-32: it detects more error patterns in the record sizes used here
// and is the polynomial disks and filesystems use, so a value computed here can be checked
// against other tools. Software slicing-by-8: a few GB/s, far below the cost of an fsync.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace raft::storage {

// Continues a CRC-32C over data; start with crc = 0.
std::uint32_t crc32c_extend(std::uint32_t crc, const void* data, std::size_t size);

inline std::uint32_t crc32c(std::string_view bytes) {
  return crc32c_extend(0, bytes.data(), bytes.size());
}

}  // namespace raft::storage
