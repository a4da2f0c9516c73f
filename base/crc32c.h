// CRC-32C (Castagnoli): the checksum of kv snapshots, snapshot files, journal and log records
// and peer frames.
//
// Chosen over a multiplicative hash because it detects every burst error up to 32 bits, and
// because x86-64 computes it in hardware (SSE4.2's crc32 instruction, 8 bytes per
// instruction). crc32c() uses that instruction where the CPU has it, checked once at run time,
// and slicing-by-8 tables elsewhere (about a byte per cycle). The two give the same values
// (kv_command_test compares them), so a data dir or a peer frame written on one CPU verifies
// on the other. Before the hardware path, the two checksum passes over a 110 MB snapshot were
// ~15% of a restart's recovery (bench/README-scale.md).
#pragma once

#include <cstdint>
#include <string_view>

namespace base {

// Extends `crc` (the value returned for the bytes before) with `bytes`. Start with 0.
// crc32c("123456789") == 0xE3069283.
std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0);

// The table code alone, whatever the CPU: for tests that compare the two paths.
std::uint32_t crc32c_portable(std::string_view bytes, std::uint32_t crc = 0);

}  // namespace base
