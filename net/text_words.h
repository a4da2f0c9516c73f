// Rules shared by every door: what a key may be, and how a text-protocol line splits into
// words (memcached and CS733 use the same tokenizer).
#pragma once

#include <cstddef>
#include <string_view>

#include <boost/container/small_vector.hpp>

namespace net {

// The memcached key rules (docs/memcached.md), used by every door: 1..max_key_bytes bytes of
// any value except space, CR, LF and NUL, exactly what memcached 1.6.18 stores. Other control
// bytes, DEL and bytes >= 0x80 (not necessarily UTF-8) are valid key bytes: standard tools
// such as memcaslap send them. The four excluded bytes are the ones that cannot survive the
// text protocols (space separates words, LF ends a line, CR is stripped before it, NUL ends
// memcached's C string of the line).
bool valid_key(std::string_view key, std::size_t max_key_bytes);

// The words of a line. A request line has a handful (a storage command six or seven), so
// they live inside the object: splitting a line allocates nothing unless it has more than 8.
using word_list = boost::container::small_vector<std::string_view, 8>;

// Splits on runs of spaces (only ' ' separates, as in memcached's tokenizer).
word_list split_words(std::string_view line);

}  // namespace net
