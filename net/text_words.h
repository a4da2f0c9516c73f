// Rules shared by every door: what a key may be, and how a text-protocol line splits into
// words (memcached and CS733 use the same tokenizer).
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace net {

// The memcached key rules (SPEC §3), used by every door: 1..max_key_bytes bytes, no space
// and no control characters.
bool valid_key(std::string_view key, std::size_t max_key_bytes);

// Splits on runs of spaces (only ' ' separates, as in memcached's tokenizer).
std::vector<std::string_view> split_words(std::string_view line);

}  // namespace net
