#include "net/text_words.h"

namespace net {

bool valid_key(std::string_view key, std::size_t max_key_bytes) {
  if (key.empty() || key.size() > max_key_bytes) return false;
  return key.find_first_of(std::string_view(" \r\n\0", 4)) == std::string_view::npos;
}

std::vector<std::string_view> split_words(std::string_view line) {
  // Counted first, so that the vector is allocated once (every request splits its line:
  // growing by push_back cost a storage command four allocations).
  std::size_t count = 0;
  for (std::size_t k = 0; k < line.size(); ++k)
    count += line[k] != ' ' && (k == 0 || line[k - 1] == ' ');
  std::vector<std::string_view> out;
  out.reserve(count);
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    if (i == line.size()) break;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace net
