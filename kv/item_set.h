// The items of kv::store, one heap allocation each, in key order.
//
// Memory layout (the reason this file exists; bench/README-scale.md "Memory per item" has
// the measurements). An item is ONE allocation: a 57-byte header (two child links, version,
// expiry, write time, flags, lengths, tree priority, meta bits) followed by the key bytes and
// then the value bytes, with no terminator and no padding. A 10-byte key with a 100-byte
// value asks malloc for 167 bytes, which glibc serves from a 176-byte chunk; nothing else is
// allocated per item (no map node, no std::string headers, no hash bucket). The previous
// std::map<std::string, {std::string value, ...}> took a 144-byte node plus a 112-byte value
// chunk: 256 bytes.
//
// Order: the items form a treap, a binary search tree by key that is also a max-heap by a
// priority derived from a hash of the key. A treap needs two links per node (a red-black
// tree needs three plus a colour) and has a simple iterative insert (split) and erase
// (merge), so no operation recurses and a deep tree cannot overflow the stack. Because the
// priority is a function of the key, the shape of the tree depends only on the set of keys,
// never on the order of the writes or on any randomness: every replica (and the simulator)
// does exactly the same work. Expected depth is about 2 ln n (~28 at a million keys); a
// client could craft keys whose hashes degrade it, at a cost like hash flooding a fixed-hash
// table (memcached's is fixed too), and the iterative algorithms keep that to slowness.
//
// Lookup cache: a read (lookup()) first tries a small table of recently read items and
// walks the tree only on a miss; a write (find()) walks, since a replace needs the link to
// the item anyway and a bulk load of new keys would only pay for the table and never hit
// it. A walk is ~2 ln n dependent loads; with 32 connections of `get` over 10,000 keys it
// was 8% of the leader's event loop, 17% over 100,000 keys (bench/README-profile.md,
// "Lookups"). The table is set-associative: a key's hash (the priority above) picks a
// bucket of eight entries, one cache line, and each entry keeps 16 more bits of the hash
// beside the item's address, so a hit reads one line of the table and then only the item
// whose bits match. (It was direct-mapped, one pointer per slot: over 100,000 random keys a
// fifth of the reads found their slot taken by another key and walked, and the walk was
// still 6% of the leader's loop under that load; bench/README-profile.md, "A lookup table
// in cache lines".) Writes through the table were tried (bench/README-profile.md, "Writes
// in place"): over 100,000 random keys on a single node the walk fell from 9-10% of the
// samples to 5-6% with the table, but on a stream of consecutive keys, whose walks share
// their cached upper levels, the leader's loop went from 2.8% in the walk to 9.9% in walk
// plus table (each slot is a random access into 2 MiB), and the streams and the bulk load
// are what the goals measure. The table is bounded (recent_entries_max entries of 8 bytes,
// 2 MiB) whatever the set's size, costs nothing to restore (it starts empty), and is never
// serialized: it changes no reply and no replica's state. (A full hash index through the
// items was tried: at a million items it cost 8-10 bytes per item, a slower restart and a
// slower bulk load; see the same section.)
//
// Insert after a missed find: the store's write path finds a key first (a replace needs
// the link to the item), and a new key is then inserted, which walked down the same path
// again: with the batch prefetch, three walks per new key, the insert's alone 5% of the
// leader's event loop under a stream of new keys (bench/README-profile.md, "A batch read
// in pieces"). find() records the links it passes; insert() of the key the last find()
// missed, with nothing changed since, takes the path from that record instead of comparing
// keys again: the descent stops at the first recorded node the new item outranks, and the
// split below follows the recorded directions (the walk went left at a node exactly when
// the key is smaller, which is where the split puts that node).
//
// Batch prefetch: a walk is a chain of dependent loads, and on the guest measured each
// miss costs ~100 ns or more: a find took ~1 us over 100,000 random keys and ~3.5 us over
// a million (bench/README-profile.md, "Batch prefetch"), and the walk was 15-19% of a
// follower's event loop under 32 connections of random `set`s. Before applying a chunk of
// committed entries, kv::store::prefetch() walks down for all of their keys in lockstep
// (prefetch()): one level of every walk per round, so the misses of a round overlap
// instead of following one another. The real walks then find their nodes in cache. It
// only reads, so it changes nothing a replica could see.
//
// Invariants:
//  - keys are unique, in-order traversal is strictly increasing (byte-wise, unsigned, as
//    std::string compares), and every parent's priority is >= its children's;
//  - an item pointer stays valid until the item is erased or replaced (replace() frees the
//    old allocation: callers never keep an item* across a write of the same key);
//  - by_expiry_ holds (expires_at_ms, item) for exactly the items with expires_at_ms != 0;
//    items change expiry only through set_expiry() (and are inserted/replaced/erased only
//    through this class), so the index never points at a freed item;
//  - an entry of recent_ is empty or points at an item of the set, with the top 16 bits of
//    that item's priority (erase and replace clear or update the entry of the item they
//    free; clear() and moves empty the table).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kv {

struct item {
  item* left;
  item* right;
  std::uint64_t version;       // log index of the write that set value/flags
  std::int64_t expires_at_ms;  // 0 = never
  std::int64_t written_at_ms;  // leader time of the last write (for flush_all)
  std::uint32_t flags;
  std::uint32_t key_bytes;
  std::uint32_t value_bytes;
  std::uint32_t priority;  // treap heap order: hash of the key
  std::uint8_t meta;       // item_stale | item_token_sent | item_key_binary
  // Key then value follow the header (see header_bytes).

  static constexpr std::size_t max_bytes = 0xffffffffu;  // per key and per value

  std::string_view key() const { return {data(), key_bytes}; }
  std::string_view value() const { return {data() + key_bytes, value_bytes}; }
  char* value_data() { return data() + key_bytes; }

  // Allocates an item for `key` with room for `value_bytes` bytes of value (uninitialised)
  // and every other field zero. Both sizes must be <= max_bytes.
  static item* make(std::string_view key, std::size_t value_bytes);
  // make() with the value given.
  static item* make(std::string_view key, std::string_view value);
  static void destroy(item* it);

 private:
  char* data() { return reinterpret_cast<char*>(this) + header_bytes(); }
  const char* data() const { return reinterpret_cast<const char*>(this) + header_bytes(); }
  static std::size_t header_bytes();
};

class item_set {
 public:
  item_set() = default;
  ~item_set() { clear(); }
  item_set(const item_set& other);
  item_set& operator=(const item_set& other);
  item_set(item_set&& other) noexcept;
  item_set& operator=(item_set&& other) noexcept;

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The item with this key, or nullptr. For a write: a replace or erase of the item found
  // starts from where this walk ended; the item's fields (not its key or its size; an
  // expiry only through set_expiry()) may also be changed in place.
  item* find(std::string_view key) const;
  // The same for a read: through the lookup cache (see the top of the file).
  const item* lookup(std::string_view key) const;
  // How many lookup()s of a set past the table's threshold missed the table and walked.
  std::uint64_t lookup_walks() const { return lookup_walks_; }
  // Brings the tree paths of these keys into the CPU's cache ahead of their writes
  // (kv::store::prefetch; see "Batch prefetch" at the top of the file). Reads only.
  void prefetch(std::span<const std::string_view> keys) const;
  // Takes ownership of `fresh`, whose key must be absent.
  void insert(item* fresh);
  // Puts `fresh` (same key as `old`, which must be in the set) in old's place and frees old.
  void replace(item* old, item* fresh);
  // Removes and frees `it`.
  void erase(item* it);
  void clear();
  // Changes the expiry of `it` (keeping the expiry index exact).
  void set_expiry(item* it, std::int64_t expires_at_ms);

  // Takes ownership of `fresh`, whose key must be greater than every key in the set: builds
  // the tree in O(1) amortised per item (restore reads items in key order). Any other
  // operation ends the sequence of appends.
  void append_greatest(item* fresh);
  // The greatest key's item, or nullptr (O(depth)).
  const item* last() const;

  // In-order traversal from a starting point: a stack of the ancestors still to visit.
  class cursor {
   public:
    item* get() const { return stack_.empty() ? nullptr : stack_.back(); }
    void next();

   private:
    friend class item_set;
    void push_left(item* t);
    std::vector<item*> stack_;
  };
  cursor begin() const;
  // The first item whose key is >= key (inclusive) or > key (!inclusive).
  cursor seek(std::string_view key, bool inclusive) const;

  // Calls f(item&) for every item in key order.
  template <typename F>
  void for_each(F&& f) const {
    for (cursor c = begin(); c.get() != nullptr; c.next()) f(*c.get());
  }

  // Items with an expiry, by (expires_at_ms, key).
  struct by_expiry_order {
    bool operator()(const std::pair<std::int64_t, const item*>& a,
                    const std::pair<std::int64_t, const item*>& b) const {
      if (a.first != b.first) return a.first < b.first;
      return a.second->key() < b.second->key();
    }
  };
  using expiry_index = std::set<std::pair<std::int64_t, const item*>, by_expiry_order>;
  const expiry_index& by_expiry() const { return by_expiry_; }

 private:
  item** link_of(std::string_view key) const;
  // The link that points at `it` (an item of the set): the one find() remembered if it
  // found `it` and nothing changed since, else a walk from the root.
  item** link_to(const item* it) const;
  void forget_found() const {
    found_ = nullptr;
    found_link_ = nullptr;
    path_depth_ = 0;
  }
  void index_expiry(const item* it);
  void unindex_expiry(const item* it);

  // The lookup cache (see the top of the file). An entry is 0 (empty) or an item's address
  // (below 2^48, as user-space addresses are on x86-64 and arm64 Linux; an item above that
  // is simply not cached) with the top 16 bits of its priority in its own top 16 bits. The
  // bucket is picked by the priority's low bits, so the two never overlap (at most 2^15
  // buckets).
  static constexpr std::size_t recent_ways = 8;
  static constexpr std::size_t recent_entries_max = std::size_t{1} << 18;
  struct alignas(64) recent_bucket {
    std::uint64_t entry[recent_ways];
  };
  static_assert(sizeof(recent_bucket) == 64, "one bucket per cache line");
  static_assert(recent_entries_max / recent_ways <= std::size_t{1} << 16,
                "bucket bits and tag bits must not overlap");
  void forget_recent(const item* it, item* successor);

  item* root_ = nullptr;
  std::size_t size_ = 0;
  mutable std::vector<recent_bucket> recent_;  // empty, or a power-of-two number of buckets
  mutable std::uint32_t recent_victim_ = 0;    // which full bucket's entry the next miss takes
  mutable std::uint64_t lookup_walks_ = 0;
  expiry_index by_expiry_;
  std::vector<item*> spine_;  // append_greatest: the right spine, root first
  // Where the last find() found its item. The store's write path finds a key and then
  // replaces or erases that item; with this the second step starts at the link instead of
  // walking down again (a walk is ~2 ln n dependent loads, most of them cache misses).
  // Every change of the tree forgets it, so it never points into a freed node.
  mutable const item* found_ = nullptr;
  mutable item** found_link_ = nullptr;
  // The links the last find() passed, root first, ending with the null link where its key
  // would go, when it found nothing (path_depth_ 0 otherwise, or when the tree is deeper
  // than max_path); missed_key_ is that key. Forgotten with the rest by every change.
  static constexpr std::size_t max_path = 96;
  mutable item** path_[max_path];
  mutable std::size_t path_depth_ = 0;
  mutable std::string missed_key_;
};

}  // namespace kv
