// Small file helpers for tests: a fresh directory removed at the end, and a file's bytes.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <system_error>

namespace test_support {

// A fresh directory under the system's temporary directory (named `prefix` + random digits),
// removed with everything in it at the end.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& prefix = "raftkv-test-") {
    std::random_device entropy;
    path = std::filesystem::temp_directory_path() /
           (prefix + std::to_string(entropy()) + std::to_string(entropy()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace test_support
