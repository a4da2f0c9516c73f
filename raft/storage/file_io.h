// Small POSIX file helpers of the store: errors with errno text, whole writes and reads,
// directory fsync (a rename or a new file is durable only once its directory is).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "raft/storage/types.h"

namespace raft::storage {

// errno as an error: ENOSPC and EDQUOT are "disk full: ...", anything else "I/O error: ...".
error errno_error(int e, std::string_view what);

// Writes all of bytes to fd (retrying short writes and EINTR).
error write_all(int fd, std::string_view bytes, const std::string& what);

result<std::string> read_file(const std::filesystem::path& path);

error fsync_dir(const std::filesystem::path& dir);

// Bytes an unprivileged writer may still use on the filesystem holding dir (max on error).
std::uint64_t free_bytes(const std::filesystem::path& dir);

}  // namespace raft::storage
