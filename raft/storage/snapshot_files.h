// Snapshot files: the state machine's bytes at some (index, term), one file each, beside the
// LMDB environment in data_dir/snapshots/.
//
//   snapshot-<index:20>-<term:20>.snap   complete, fsynced snapshot files
//   tmp-<pid>-<n>-<final name>          a snapshot being written; never read, removed at open
//
// File layout: magic "RKVSNAP1" (8) | header_len u32 | header_crc u32 | header | data, where
// header = snapshot-meta body (records.h) | data_len u64 | data_crc u32. Both the header and
// the data are checksummed, and the name must agree with the header.
//
// Writing is atomic: tmp file, write, fsync, rename to the final name, fsync the directory.
// A crash before the rename leaves a tmp-* file (removed at the next open); after the rename
// the file is complete. A file that later fails its checksum (bit rot) is skipped in favour
// of the next older one, never served: newest_valid() returns the newest file that verifies.
// Whether an older one is still usable (does the log reach back to it?) is the caller's
// question: lmdb_store::load() refuses to start when none covers the recorded snapshot.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "raft/storage/types.h"

namespace raft::storage {

struct snapshot_info {
  snapshot_meta meta;
  std::filesystem::path path;
  std::uint64_t data_bytes = 0;  // size of the state-machine bytes inside the file
};

struct snapshot_file {
  index_t index;
  term_t term;
  std::filesystem::path path;
};

// A snapshot's state-machine bytes: either a read-only map of the file (what a start-up
// load uses: the bytes stay in the page cache, and the heap neither zeroes nor copies a
// state that may be gigabytes; a restart at 1M items spent most of its time in such page
// faults, bench/README-scale.md) or a string held in memory. Move-only.
class snapshot_payload {
 public:
  snapshot_payload() = default;
  explicit snapshot_payload(std::string owned) : owned_(std::move(owned)), view_(owned_) {}
  ~snapshot_payload();
  snapshot_payload(snapshot_payload&& other) noexcept;
  snapshot_payload& operator=(snapshot_payload&& other) noexcept;
  snapshot_payload(const snapshot_payload&) = delete;
  snapshot_payload& operator=(const snapshot_payload&) = delete;

  // Maps the whole of an open file of `file_bytes` (> 0) bytes read-only, page tables
  // filled at once (MAP_POPULATE), and views all of it. `name` goes into the error.
  static result<snapshot_payload> map(int fd, std::size_t file_bytes, const std::string& name);

  std::string_view view() const { return view_; }
  std::size_t size() const { return view_.size(); }
  // Drops the first `n` bytes from the view (a file's header).
  void narrow(std::size_t n) { view_.remove_prefix(std::min(n, view_.size())); }

 private:
  std::string owned_;
  void* map_ = nullptr;
  std::size_t map_bytes_ = 0;
  std::string_view view_;
};

struct parsed_snapshot {
  snapshot_meta meta;
  snapshot_payload data;
};

std::string snapshot_file_name(const snapshot_meta& m);
// (index, term) from a snapshot file name, if it is one.
std::optional<std::pair<index_t, term_t>> parse_snapshot_name(const std::string& name);

// Everything of a file except the data bytes that follow it.
std::string encode_snapshot_header(const snapshot_meta& meta, std::string_view data);
// The same, for data of `data_len` bytes whose CRC-32C is `data_crc` (its size does not
// depend on them, which lets snapshot_stream write the data first and the header last).
std::string encode_snapshot_header(const snapshot_meta& meta, std::uint64_t data_len,
                                   std::uint32_t data_crc);

// One snapshot file written as a stream of state-machine bytes of unknown total size: the
// data goes after a header-sized gap, complete() writes the header into the gap, and
// make_durable() does fsync, rename, directory fsync: exactly the file snapshot_dir::write
// makes (finish() is both). After the open (snapshot_dir::open_stream), append() and
// complete() use only pwrite, so a forked child of a multi-threaded process may run them;
// the parent's copy, which shares the descriptor, then runs make_durable() (the child's
// writes are in the page cache; an fsync through any descriptor of the file syncs them).
class snapshot_stream {
 public:
  snapshot_stream(int fd, snapshot_meta meta, std::filesystem::path dir, std::filesystem::path tmp,
                  std::filesystem::path dst, bool fsync, std::size_t header_bytes);
  ~snapshot_stream();
  snapshot_stream(const snapshot_stream&) = delete;
  snapshot_stream& operator=(const snapshot_stream&) = delete;

  // false once a write failed (complete() then reports it).
  bool append(std::string_view chunk);
  // Writes the header (data length and CRC of what was appended here).
  error complete();
  // fsync, close, rename to the final name, directory fsync. In the process that appended,
  // after complete(); or in the parent of a child that did both and succeeded.
  error make_durable();
  error finish() {
    if (auto e = complete(); !e.ok()) return e;
    return make_durable();
  }
  // The finished file (valid after finish() succeeded, in this process or in a child that
  // used a copy of this object: then data_bytes is unknown here and reads 0).
  snapshot_info info() const { return snapshot_info{meta_, dst_, bytes_}; }
  // A read-only map of the data appended so far, valid until this object is destroyed
  // (finish()'s rename and close do not disturb a map): a snapshot received from the leader
  // is restored from it while finish() makes it durable. Maps once, before finish(); later
  // calls return the same view. Not for a forked child.
  result<std::string_view> map_data();

 private:
  int fd_ = -1;
  snapshot_meta meta_;
  std::filesystem::path dir_, tmp_, dst_;
  bool fsync_ = true;
  std::size_t header_bytes_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint32_t crc_ = 0;
  error err_;
  bool finished_ = false;
  void* map_ = nullptr;
  std::size_t map_bytes_ = 0;
};
// A whole file's bytes, verified; `name` goes into the errors. The data keeps the buffer
// (its header is cut off in place): a caller that moves the bytes in makes no second copy
// of a state that may be gigabytes.
result<parsed_snapshot> parse_snapshot_bytes(std::string bytes, const std::string& name);

class snapshot_dir {
 public:
  snapshot_dir() = default;
  snapshot_dir(std::filesystem::path dir, bool fsync) : dir_(std::move(dir)), fsync_(fsync) {}

  const std::filesystem::path& path() const { return dir_; }

  // Creates the directory if missing; removes tmp-* files, returning their paths.
  result<std::vector<std::filesystem::path>> prepare();

  // Writes the file atomically (see above) on the caller's thread.
  result<snapshot_info> write(const snapshot_meta& meta, std::string_view data);
  // Opens the tmp file of a snapshot written as a stream (snapshot_stream).
  result<std::unique_ptr<snapshot_stream>> open_stream(const snapshot_meta& meta);

  // Every complete snapshot file by name, newest first.
  std::vector<snapshot_file> list() const;

  // A file's meta and verified data (mapped); `corrupt` if its name and header disagree.
  result<parsed_snapshot> read(const snapshot_file& f) const;

  // The newest file that verifies, not older than `recorded` (at recorded.index only with
  // recorded.term). Files skipped on the way are reported to `skipped` with the reason.
  std::optional<std::pair<snapshot_info, snapshot_payload>> newest_valid(
      const snapshot_meta& recorded, const std::function<void(std::string)>& skipped) const;

  // Removes every file older than index (best effort: a leftover is only wasted space).
  void remove_older_than(index_t index) const;

 private:
  std::filesystem::path dir_;
  bool fsync_ = true;
  std::atomic<std::uint64_t> tmp_counter_{0};
};

}  // namespace raft::storage
