// Reading a snapshot file piecewise, to stream it to a follower (raft/replica.h, "Snapshot
// transfer") without holding the whole of it in memory.
//
// open() reads and verifies the file's header only (snapshot_files.h: magic, header CRC,
// meta equal to the one asked for, data length equal to what the file holds) and keeps the
// descriptor: a newer snapshot may delete the file meanwhile, and the open descriptor still
// reads it. The data's CRC-32C, from the header, is what the follower checks the whole
// against; a bit flipped on disk since the file was written is caught there, not here.
// read() is one pread of at most one chunk: bounded work on the caller's thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "raft/interfaces.h"
#include "raft/storage/types.h"

namespace raft::storage {

class snapshot_file_source final : public raft::snapshot_source {
 public:
  static result<std::unique_ptr<snapshot_file_source>> open(const std::filesystem::path& path,
                                                            const snapshot_meta& expect);
  ~snapshot_file_source() override;
  snapshot_file_source(const snapshot_file_source&) = delete;
  snapshot_file_source& operator=(const snapshot_file_source&) = delete;

  std::uint64_t size() const override { return size_; }
  std::uint32_t checksum() const override { return crc_; }
  std::string read(std::uint64_t offset, std::size_t n, std::string& out) override;

 private:
  snapshot_file_source() = default;
  int fd_ = -1;
  std::string name_;
  std::uint64_t data_offset_ = 0;
  std::uint64_t size_ = 0;
  std::uint32_t crc_ = 0;
};

}  // namespace raft::storage
