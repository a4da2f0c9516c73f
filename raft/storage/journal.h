// The journal: the store's write-ahead file in front of LMDB. A batch is durable once its
// journal record is; LMDB catches up in the background (writer.h, "checkpoints").
//
// ## Why a journal in front of LMDB
//
// An LMDB commit writes several pages at scattered offsets (leaf, branch, free list, the
// named database's root, the meta page) and then needs two ordered syncs before it is
// durable: the pages, then the meta page that points at them. On this project's disks that
// is 0.5-0.8 ms against 0.15 ms for one 4 KiB write + fdatasync. A journal record is one
// sequential write into a file whose blocks already exist (written zeros), then one
// fdatasync: the cheapest durable write the disk offers. LMDB still holds the log (reads,
// restart, compaction); it receives the same batches a few tens of milliseconds later in
// large transactions, each made fully durable before the journal space behind it is reused.
//
// ## Files and records
//
//   journal-0, journal-1   two files of at least `file_bytes` written zeros each. Records
//                          are appended to the active file; when it passes half its size
//                          and everything in the other file is durable in LMDB, the writer
//                          switches to the other file and starts again at offset 0.
//
//   record := magic u32 "RKJ1" | crc32c u32 | body_len u32 | seq u64 | body
//             (crc32c over body_len, seq and body; little-endian)
//   body   := n u32 | n x batch
//   batch  := flags u8 (1: truncate_from, 2: compaction, 4: hard state)
//             | [truncate_from u64] | count u32 | count x (len | entry record)
//             | [len | snapshot record] | [len | hard state record]
//   (len: a varint; the entry, snapshot and hard state records are records.h's, each with
//   its own CRC)
//
// `seq` numbers records 1, 2, 3, ... across both files and never repeats. LMDB's meta
// database holds "journal_seq", the last record its state includes, written in the same
// transaction as that record's batches.
//
// ## Recovery (scan)
//
// A file is read from offset 0 while records parse, their CRC matches and each seq is the
// previous one + 1. The first that fails ends the file: a record torn by a crash, the zeros
// of a fresh file, or an older record left from the file's previous use (its seq is lower:
// the file was reused from offset 0, and seqs only grow). Records with seq > journal_seq,
// from both files, must then run on from journal_seq + 1 without a gap; they are applied to
// LMDB in one transaction and synced before the node starts. A valid record beyond a gap
// means a durable record was lost (a bad sector, a file edited by hand): `corrupt`, and the
// node refuses to start rather than come up without writes it acknowledged.
//
// Why a reused file is safe: the writer switches to a file only when every record in it is
// at or below LMDB's durable journal_seq, so nothing it overwrites is still needed; and a
// record is reported durable only after the fdatasync that follows its write.
//
// ## Missing files
//
// A journal file that is gone (deleted by hand, a data dir copied without it) may have held
// records LMDB never received: acknowledged entries, and the vote of the current term,
// without which the node could vote twice. A scan cannot tell a missing file from an empty
// one, so LMDB's meta database says when the journal held nothing LMDB lacks:
// "journal_drained" names the journal_seq of that moment. It is written with a new env (and
// with the upgrade of a format-1 dir, which had no journal) and by a clean close, after the
// checkpointer caught LMDB up with every record; an open deletes it (synced) once both files
// exist in full, before the writer writes a record. An open that finds a file missing or
// shorter than its full size (files are created in full and never shrink: it was
// truncated, unless its creation was cut short, which leaves the record in place) creates
// or fills it only if "journal_drained" is present and equals journal_seq; otherwise the
// node refuses to start (`corrupt`), as for a lost data dir. The seq guards against a record
// left by a build that knew nothing of it. (The full size has always been 8 MiB; a build
// that made it larger would find every file short after a crash, and refuse until the
// files are restored or the node stops cleanly once with the old build.) A file overwritten
// in place (zeros, another node's journal) is not detected.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "raft/storage/types.h"

namespace raft::storage {

inline constexpr std::uint32_t journal_magic = 0x314A4B52;  // "RKJ1" little-endian
inline constexpr std::size_t journal_header_bytes = 20;

// One record: its seq and the batches it carries (without prepare hooks: those ran before).
struct journal_record {
  std::uint64_t seq = 0;
  std::vector<batch> batches;
};

// Appends the record of `batches` numbered seq to out (not cleared).
void encode_journal_record(std::uint64_t seq, std::span<const batch> batches, std::string& out);

// The records at the start of one file's content, as recovery reads them (see above).
std::vector<journal_record> scan_journal(std::string_view file, const std::string& name,
                                         std::vector<std::string>* notes = nullptr);

// The records after `applied` from both files' scans, in order and without a gap; an error
// naming the gap otherwise.
result<std::vector<journal_record>> records_after(std::uint64_t applied,
                                                  std::vector<journal_record> a,
                                                  std::vector<journal_record> b);

// The two journal files of a data dir. Writer thread only, after open.
class journal_files {
 public:
  // Creates missing files as `file_bytes` of written zeros (synced, directory synced), and
  // fills shorter ones up to that size.
  static result<std::unique_ptr<journal_files>> open(const std::filesystem::path& dir,
                                                     std::uint64_t file_bytes, bool fsync);
  // The files of dir's journal that do not exist or are shorter than `file_bytes`, each
  // with a few words on which (see "Missing files"): open() would create or fill them.
  static std::vector<std::string> missing_or_short(const std::filesystem::path& dir,
                                                   std::uint64_t file_bytes);
  ~journal_files();
  journal_files(const journal_files&) = delete;
  journal_files& operator=(const journal_files&) = delete;

  // Every record in either file after `applied` (see records_after).
  // Also notes each file's last seq, for the writer's reuse check.
  result<std::vector<journal_record>> recover(std::uint64_t applied);

  // Writes `record` (numbered seq) at the active file's end and fdatasyncs the file (without
  // fsync: no sync). Writes beyond the file's size extend it.
  error append(std::uint64_t seq, std::string_view record);

  // Whether the active file is past half its size (time to switch).
  bool wants_switch() const { return offset_ >= file_bytes_ / 2; }
  // The highest seq in the file that is not active (0: none).
  std::uint64_t inactive_last_seq() const { return last_seq_[1 - active_]; }
  // Makes the other file active, from offset 0. The caller checked inactive_last_seq().
  void switch_files();

 private:
  journal_files() = default;

  std::filesystem::path path_[2];
  int fd_[2] = {-1, -1};
  std::uint64_t last_seq_[2] = {0, 0};
  int active_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t file_bytes_ = 0;
  bool fsync_ = true;
};

}  // namespace raft::storage
