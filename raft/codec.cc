#include "raft/codec.h"

#include <stdexcept>
#include <string>
#include <type_traits>

#include "base/bytes.h"
#include "raft/membership.h"

namespace raft {
namespace {

// Raft messages use fixed-width lengths (u64), not base's varints: the layout predates
// base/bytes.h and is part of the wire format (codec_version). The byte order comes from it.
class writer {
 public:
  void u8(std::uint8_t v) { bytes_.u8(v); }
  void u64(std::uint64_t v) { bytes_.u64(v); }
  void boolean(bool b) { u8(b ? 1 : 0); }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }
  void entry_(const entry& e) {
    // A released payload must have been read back from storage (replica::send): sending
    // the entry without it would hand a follower a different command at this index.
    if (e.released_bytes != 0) {
      throw std::logic_error("entry " + std::to_string(e.index.value) +
                             " is encoded without its released payload");
    }
    u64(e.term.value);
    u64(e.index.value);
    u8(static_cast<std::uint8_t>(e.type));
    str(e.data);
  }
  void reserve(std::size_t n) { out_.reserve(n); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  base::byte_writer bytes_{out_};
};

class reader {
 public:
  explicit reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  void fail() { ok_ = false; }
  bool at_end() const { return pos_ == in_.size(); }
  std::size_t remaining() const { return in_.size() - pos_; }

  std::uint8_t u8() {
    if (!need(1)) return 0;
    return static_cast<std::uint8_t>(in_[pos_++]);
  }
  std::uint64_t u64() {
    if (!need(8)) return 0;
    const std::uint64_t v = base::load_le64(in_.data() + pos_);
    pos_ += 8;
    return v;
  }
  bool boolean() {
    std::uint8_t b = u8();
    if (b > 1) ok_ = false;
    return b == 1;
  }
  // A length-prefixed byte string, as a view into the input.
  std::string_view bytes() {
    std::uint64_t n = u64();
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return {};
    }
    std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string str() { return std::string(bytes()); }
  // Count of elements that each take at least min_size bytes: never trust it beyond that.
  std::uint64_t count(std::size_t min_size) {
    std::uint64_t n = u64();
    if (!ok_ || n > remaining() / min_size) {
      ok_ = false;
      return 0;
    }
    return n;
  }
  entry entry_() {
    entry e;
    e.term = term_t(u64());
    e.index = index_t(u64());
    std::uint8_t t = u8();
    if (t > static_cast<std::uint8_t>(entry_type::config)) ok_ = false;
    e.type = static_cast<entry_type>(t);
    e.data = bytes();  // one allocation: the payload's block
    return e;
  }

 private:
  bool need(std::size_t n) {
    if (!ok_ || remaining() < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

constexpr std::size_t min_entry_bytes = 8 + 8 + 1 + 8;

void write_body(writer& w, const message_body& body) {
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, append_request>) {
          w.u64(b.prev_index.value);
          w.u64(b.prev_term.value);
          w.u64(b.commit.value);
          w.u64(b.entries.size());
          for (const auto& e : b.entries) w.entry_(e);
        } else if constexpr (std::is_same_v<T, append_response>) {
          w.boolean(b.reject);
          w.u64(b.match_index.value);
          w.u64(b.rejected_index.value);
          w.u64(b.conflict_term.value);
          w.u64(b.conflict_index.value);
        } else if constexpr (std::is_same_v<T, vote_request>) {
          w.u64(b.last_index.value);
          w.u64(b.last_term.value);
          w.boolean(b.pre_vote);
          w.boolean(b.transfer);
        } else if constexpr (std::is_same_v<T, vote_response>) {
          w.boolean(b.granted);
          w.boolean(b.pre_vote);
        } else if constexpr (std::is_same_v<T, heartbeat_request>) {
          w.u64(b.commit.value);
          w.u64(b.read_seq);
        } else if constexpr (std::is_same_v<T, heartbeat_response>) {
          w.u64(b.read_seq);
        } else if constexpr (std::is_same_v<T, snapshot_request>) {
          w.u64(b.meta.index.value);
          w.u64(b.meta.term.value);
          w.str(encode_membership(b.meta.config));
          w.str(b.data ? std::string_view(*b.data) : std::string_view());
        } else if constexpr (std::is_same_v<T, snapshot_chunk>) {
          w.u64(b.meta.index.value);
          w.u64(b.meta.term.value);
          w.str(encode_membership(b.meta.config));
          w.u64(b.offset);
          w.u64(b.total);
          w.u64(b.checksum);
          w.boolean(b.last);
          w.str(b.data);
        } else if constexpr (std::is_same_v<T, snapshot_chunk_response>) {
          w.u64(b.index.value);
          w.u64(b.snapshot_term.value);
          w.u64(b.offset);
          w.u64(b.next);
          w.boolean(b.done);
          w.boolean(b.failed);
        } else if constexpr (std::is_same_v<T, timeout_now>) {
          // no fields
        } else if constexpr (std::is_same_v<T, read_index_request>) {
          w.u64(b.context);
        } else if constexpr (std::is_same_v<T, read_index_response>) {
          w.u64(b.context);
          w.u64(b.index.value);
          w.boolean(b.ok);
          w.u64(static_cast<std::uint64_t>(b.leader_time_ms));
        } else {
          static_assert(always_false<T>, "message type without an encoding");
        }
      },
      body);
}

template <typename T>
T read_one(reader& r) {
  T b{};
  if constexpr (std::is_same_v<T, append_request>) {
    b.prev_index = index_t(r.u64());
    b.prev_term = term_t(r.u64());
    b.commit = index_t(r.u64());
    std::uint64_t n = r.count(min_entry_bytes);
    b.entries.reserve(n);
    for (std::uint64_t k = 0; k < n && r.ok(); ++k) b.entries.push_back(r.entry_());
  } else if constexpr (std::is_same_v<T, append_response>) {
    b.reject = r.boolean();
    b.match_index = index_t(r.u64());
    b.rejected_index = index_t(r.u64());
    b.conflict_term = term_t(r.u64());
    b.conflict_index = index_t(r.u64());
  } else if constexpr (std::is_same_v<T, vote_request>) {
    b.last_index = index_t(r.u64());
    b.last_term = term_t(r.u64());
    b.pre_vote = r.boolean();
    b.transfer = r.boolean();
  } else if constexpr (std::is_same_v<T, vote_response>) {
    b.granted = r.boolean();
    b.pre_vote = r.boolean();
  } else if constexpr (std::is_same_v<T, heartbeat_request>) {
    b.commit = index_t(r.u64());
    b.read_seq = r.u64();
  } else if constexpr (std::is_same_v<T, heartbeat_response>) {
    b.read_seq = r.u64();
  } else if constexpr (std::is_same_v<T, snapshot_request>) {
    b.meta.index = index_t(r.u64());
    b.meta.term = term_t(r.u64());
    if (auto config = decode_membership(r.str())) {
      b.meta.config = std::move(*config);
    } else {
      r.fail();
    }
    b.data = std::make_shared<const std::string>(r.str());
  } else if constexpr (std::is_same_v<T, snapshot_chunk>) {
    b.meta.index = index_t(r.u64());
    b.meta.term = term_t(r.u64());
    if (auto config = decode_membership(r.str())) {
      b.meta.config = std::move(*config);
    } else {
      r.fail();
    }
    b.offset = r.u64();
    b.total = r.u64();
    const std::uint64_t crc = r.u64();
    b.checksum = static_cast<std::uint32_t>(crc);
    b.last = r.boolean();
    b.data = r.str();
    if (b.offset > b.total || b.data.size() > b.total - b.offset ||
        b.last != (b.offset + b.data.size() == b.total) || crc > 0xffffffffull)
      r.fail();
  } else if constexpr (std::is_same_v<T, snapshot_chunk_response>) {
    b.index = index_t(r.u64());
    b.snapshot_term = term_t(r.u64());
    b.offset = r.u64();
    b.next = r.u64();
    b.done = r.boolean();
    b.failed = r.boolean();
  } else if constexpr (std::is_same_v<T, timeout_now>) {
  } else if constexpr (std::is_same_v<T, read_index_request>) {
    b.context = r.u64();
  } else if constexpr (std::is_same_v<T, read_index_response>) {
    b.context = r.u64();
    b.index = index_t(r.u64());
    b.ok = r.boolean();
    b.leader_time_ms = static_cast<std::int64_t>(r.u64());
  } else {
    static_assert(always_false<T>, "message type without a decoding");
  }
  return b;
}

template <std::size_t I = 0>
bool read_body(reader& r, std::size_t tag, message_body& out) {
  if constexpr (I < std::variant_size_v<message_body>) {
    if (tag == I) {
      out.emplace<I>(read_one<std::variant_alternative_t<I, message_body>>(r));
      return true;
    }
    return read_body<I + 1>(r, tag, out);
  } else {
    return false;
  }
}

// Room for the whole encoding of most messages, so that an append of many entries is
// built in one allocation instead of growing (and copying) its string several times.
std::size_t size_hint(const message& m) {
  std::size_t n = 128;
  if (const auto* a = std::get_if<append_request>(&m.body))
    for (const auto& e : a->entries) n += min_entry_bytes + e.data.size();
  return n;
}

}  // namespace

std::string encode(const message& m) {
  writer w;
  w.reserve(size_hint(m));
  w.u8(codec_version);
  w.u8(static_cast<std::uint8_t>(m.body.index()));
  w.u64(m.from.value);
  w.u64(m.to.value);
  w.u64(m.term.value);
  write_body(w, m.body);
  return w.take();
}

std::optional<message> decode(std::string_view bytes) {
  reader r(bytes);
  if (r.u8() != codec_version) return std::nullopt;
  std::size_t tag = r.u8();
  message m;
  m.from = node_id(r.u64());
  m.to = node_id(r.u64());
  m.term = term_t(r.u64());
  if (!r.ok()) return std::nullopt;
  if (!read_body(r, tag, m.body)) return std::nullopt;
  if (!r.ok() || !r.at_end()) return std::nullopt;
  return m;
}

}  // namespace raft
