// Values kept in increasing order of a u64 key (their `seq`), stored in a ring buffer: the
// at-most-once window of one client in kv/store.h, which is touched by every write.
//
// Why a ring and not a tree: a client numbers its requests and they reach the log in that
// order, so nearly every insert is a new greatest key (an append at the back) and every
// eviction takes the least (the front). Both are O(1) here and, once the ring has grown to
// the window, allocate nothing, where a std::map paid a node, a rebalance on each side and
// a lookup walk of ten scattered nodes per write (with the clients' age order, 6.9% of a
// follower's event loop in a bulk load: bench/README-profile.md, "The at-most-once window
// and the clocks"). A key that arrives out of order (a request retried after a leader
// change, say) is put in its place by moving the greater ones up one slot: O(n), n at most
// the window, and rare. Lookups binary-search.
//
// T is default-constructible and movable and has a std::uint64_t member `seq`; keys are
// unique (insert() of a key already present is the caller's bug, and is not checked).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace kv {

template <typename T>
class seq_ring {
 public:
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The value at position `i` in key order (0 = the least key).
  T& operator[](std::size_t i) { return slots_[slot(i)]; }
  const T& operator[](std::size_t i) const { return slots_[slot(i)]; }
  T& front() { return (*this)[0]; }
  const T& front() const { return (*this)[0]; }
  const T& back() const { return (*this)[size_ - 1]; }

  // The position of the first value whose key is not less than `seq` (size() if none).
  std::size_t lower_bound(std::uint64_t seq) const {
    if (size_ == 0 || back().seq < seq) return size_;  // the usual case: a new request
    std::size_t lo = 0, hi = size_;
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo) / 2;
      if ((*this)[mid].seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // The value whose key is `seq`, or nullptr.
  const T* find(std::uint64_t seq) const {
    const std::size_t at = lower_bound(seq);
    return at < size_ && (*this)[at].seq == seq ? &(*this)[at] : nullptr;
  }

  // Puts `v` at its place in key order; returns that position.
  std::size_t insert(T v) {
    if (size_ == slots_.size()) grow();
    const std::size_t at = lower_bound(v.seq);
    for (std::size_t i = size_; i > at; --i) (*this)[i] = std::move((*this)[i - 1]);
    ++size_;
    (*this)[at] = std::move(v);
    return at;
  }

  void pop_front() {
    front() = T{};  // release what the value holds now, not when its slot is reused
    head_ = slot(1);
    --size_;
  }

  // Removes the value at position `pos`, moving the greater ones down one slot.
  void erase(std::size_t pos) {
    if (pos == 0) return pop_front();
    for (std::size_t i = pos; i + 1 < size_; ++i) (*this)[i] = std::move((*this)[i + 1]);
    (*this)[size_ - 1] = T{};
    --size_;
  }

 private:
  std::size_t slot(std::size_t i) const {
    const std::size_t s = head_ + i;
    return s < slots_.size() ? s : s - slots_.size();
  }

  // Doubles the capacity (from 8), the values moved to the front in key order.
  void grow() {
    std::vector<T> bigger(slots_.empty() ? 8 : 2 * slots_.size());
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = std::move((*this)[i]);
    slots_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<T> slots_;  // the ring; head_ is the least key's slot
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace kv
