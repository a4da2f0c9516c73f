#include "net/text_words.h"

namespace net {

bool valid_key(std::string_view key, std::size_t max_key_bytes) {
  if (key.empty() || key.size() > max_key_bytes) return false;
  return key.find_first_of(std::string_view(" \r\n\0", 4)) == std::string_view::npos;
}

word_list split_words(std::string_view line) {
  word_list out;
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
