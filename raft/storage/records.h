// The records the store keeps in LMDB, and their codecs. Pure: bytes in, bytes out.
//
// Every value starts with a CRC-32C of the rest ("sealed"); integers are little-endian
// (base/bytes.h). The layout, in the "meta" and "log" databases:
//
//   "meta"  "format"     -> crc32c u32 | version u32 (= format_version)
//           "hard_state" -> crc32c u32 | term u64 | vote u64 | commit u64
//           "journal_seq"-> crc32c u32 | seq u64 (format 2: the last journal record applied)
//           "journal_drained" -> the same layout: present while the journal holds nothing
//                           LMDB lacks (journal.h, "Missing files"), naming journal_seq then
//           "snapshot"   -> crc32c u32 | index u64 | term u64 | n u32 | n x voter u64
//                           [| config bytes] when n's top bit is set: the whole configuration
//                           (raft/membership.h encode_membership), varint-length-prefixed
//   "log"   key = index as 8 big-endian bytes (memcmp order = numeric order)
//           value = crc32c u32 | type u8 | 0 u8 x3 | term u64 | index u64 | data
//
// An entry repeats its index inside the checksummed value so a record under the wrong key is
// caught too. A decoder that finds a checksum mismatch or a malformed body returns `corrupt`
// with an error naming the record ("checksum mismatch in log entry 42 (stored crc32c ...)").
// The snapshot files (snapshot_files.h) reuse the snapshot-meta body inside their header.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "raft/storage/types.h"

namespace raft::storage {

// 2: the journal (journal.h) holds the newest batches and "journal_seq" says how far LMDB
// has caught up. A build that knows only 1 would ignore the journal and lose them, so it
// refuses version 2; this build upgrades a version 1 dir (no journal yet) in place.
inline constexpr std::uint32_t format_version = 2;
inline constexpr std::uint32_t format_version_without_journal = 1;
inline constexpr std::size_t entry_header_bytes = 24;  // crc 4 | type 1 | pad 3 | term 8 | index 8

// crc32c(body) | body.
std::string seal(std::string_view body);
// The body of a sealed record, or `corrupt` naming it when the checksum does not match.
result<std::string_view> unseal(std::string_view record, std::string_view name);

// Log entries. encode_entry reuses `out`'s buffer (the writer encodes thousands a second).
void encode_entry(const entry& e, std::string& out);
result<entry> decode_entry(index_t key, std::string_view record);

std::string encode_hard_state(const hard_state& h);
result<hard_state> decode_hard_state(std::string_view record);

// The "snapshot" record: the sealed meta body.
std::string encode_snapshot_record(const snapshot_meta& m);
result<snapshot_meta> decode_snapshot_record(std::string_view record);

// "journal_seq": the last journal record (journal.h) LMDB's state includes.
std::string encode_journal_seq(std::uint64_t seq);
result<std::uint64_t> decode_journal_seq(std::string_view record);

std::string encode_format_record(std::uint32_t version);
// The version a format record names; 0 when its body is malformed.
result<std::uint32_t> decode_format_record(std::string_view record);

// index u64 | term u64 | n u32 | n x voter u64 [| config], appended to w / read from r.
void write_meta_body(base::byte_writer& w, const snapshot_meta& m);
result<snapshot_meta> read_meta_body(base::byte_reader& r, std::string_view name);

// Log keys: 8 big-endian bytes.
std::array<char, 8> log_key(index_t i);
// The index of a log key; nullopt when it is not 8 bytes long.
std::optional<index_t> log_key_index(std::string_view key);

}  // namespace raft::storage
