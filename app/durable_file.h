// Small files of a data dir that must never be seen half-written (cluster_id, generation,
// peer_generations): written whole to a temporary file, fsynced, renamed over the old one,
// and the directory fsynced, so a crash leaves either the old file or the new one.
#pragma once

#include <filesystem>
#include <string>

namespace app {

// Replaces `path` with `bytes`, durably. Returns an error line naming the file, or empty.
std::string write_file_atomically(const std::filesystem::path& path, const std::string& bytes);

}  // namespace app
