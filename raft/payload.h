// An entry's bytes, immutable and shared.
//
// A leader hands every entry to its in-memory log, to its storage thread, to each follower's
// append and to the state machine; a follower to its log, its storage thread and the state
// machine. With the bytes in a std::string each of those was an allocation and a copy per
// entry (bench/README-profile.md: the allocator was a fifth of the leader's event loop in a
// bulk load). A payload is one allocation (a reference count, the size, then the bytes),
// made once when the entry is created or decoded; copying the entry copies a pointer.
//
// The bytes never change after construction, so sharing them between threads is safe: the
// count is atomic (the storage threads drop their references on their own threads), and the
// last reference frees the block wherever it is dropped. An empty payload holds no block.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace raft {

class payload {
 public:
  payload() noexcept = default;
  // Copies `bytes` into a new block (none for empty bytes).
  payload(std::string_view bytes) : b_(make(bytes)) {}  // NOLINT: implicit by design
  payload(const std::string& bytes) : payload(std::string_view(bytes)) {}  // NOLINT
  payload(const char* bytes) : payload(std::string_view(bytes)) {}        // NOLINT

  payload(const payload& o) noexcept : b_(o.b_) {
    if (b_ != nullptr) b_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  payload(payload&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
  payload& operator=(const payload& o) noexcept {
    payload(o).swap(*this);
    return *this;
  }
  payload& operator=(payload&& o) noexcept {
    payload(std::move(o)).swap(*this);
    return *this;
  }
  ~payload() { drop(); }

  void swap(payload& o) noexcept { std::swap(b_, o.b_); }
  // Drops this reference; the payload is empty afterwards.
  void clear() noexcept {
    drop();
    b_ = nullptr;
  }

  std::string_view view() const noexcept {
    return b_ == nullptr ? std::string_view() : std::string_view(bytes(b_), b_->size);
  }
  operator std::string_view() const noexcept { return view(); }  // NOLINT
  const char* data() const noexcept { return b_ == nullptr ? "" : bytes(b_); }
  std::size_t size() const noexcept { return b_ == nullptr ? 0 : b_->size; }
  bool empty() const noexcept { return b_ == nullptr; }

  friend bool operator==(const payload& a, const payload& b) noexcept {
    return a.b_ == b.b_ || a.view() == b.view();
  }
  friend bool operator==(const payload& a, std::string_view b) noexcept { return a.view() == b; }
  friend bool operator==(const payload& a, const std::string& b) noexcept { return a.view() == b; }
  friend bool operator==(const payload& a, const char* b) noexcept { return a.view() == b; }
  friend std::ostream& operator<<(std::ostream& os, const payload& p) { return os << p.view(); }

 private:
  struct block {
    std::atomic<std::uint32_t> refs;
    std::uint32_t size;
  };
  static char* bytes(block* b) noexcept { return reinterpret_cast<char*>(b + 1); }

  static block* make(std::string_view bytes_in) {
    if (bytes_in.empty()) return nullptr;
    // Entries are bounded far below this (a peer frame carries at most 64 MiB).
    if (bytes_in.size() > UINT32_MAX) throw std::length_error("raft::payload over 4 GiB");
    void* raw = ::operator new(sizeof(block) + bytes_in.size());
    auto* b = new (raw) block{{1}, static_cast<std::uint32_t>(bytes_in.size())};
    std::memcpy(bytes(b), bytes_in.data(), bytes_in.size());
    return b;
  }
  void drop() noexcept {
    if (b_ != nullptr && b_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      b_->~block();
      ::operator delete(b_);
    }
  }

  block* b_ = nullptr;
};

}  // namespace raft
