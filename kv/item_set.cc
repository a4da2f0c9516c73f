// The treap of items; see kv/item_set.h for the layout and the invariants.
#include "kv/item_set.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <new>

namespace kv {
namespace {

// The treap priority of a key: FNV-1a, then the murmur3 finaliser so that every key bit
// reaches the high bits that are kept. A pure function of the key, so the tree's shape is
// the same on every replica.
std::uint32_t priority_of(std::string_view key) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return static_cast<std::uint32_t>(h >> 32);
}

}  // namespace

// The layout the memory figures in kv/README.md and bench/README-scale.md assume.
static_assert(offsetof(item, meta) == 56, "item header: 16 + 24 + 16 bytes, then meta");

std::size_t item::header_bytes() {
  return offsetof(item, meta) + sizeof(std::uint8_t);
}

item* item::make(std::string_view key, std::size_t value_bytes) {
  // Never less than sizeof(item), so the header's trailing padding is inside the block.
  const std::size_t bytes = std::max(sizeof(item), header_bytes() + key.size() + value_bytes);
  void* block = ::operator new(bytes);
  item* it = ::new (block) item{};
  it->key_bytes = static_cast<std::uint32_t>(key.size());
  it->value_bytes = static_cast<std::uint32_t>(value_bytes);
  it->priority = priority_of(key);
  if (!key.empty()) std::memcpy(it->data(), key.data(), key.size());
  return it;
}

item* item::make(std::string_view key, std::string_view value) {
  item* it = make(key, value.size());
  if (!value.empty()) std::memcpy(it->value_data(), value.data(), value.size());
  return it;
}

void item::destroy(item* it) {
  ::operator delete(static_cast<void*>(it));
}

// ---------------------------------------------------------------------------------------

item_set::item_set(const item_set& other) {
  for (cursor c = other.begin(); c.get() != nullptr; c.next()) {
    const item& src = *c.get();
    item* copy = item::make(src.key(), src.value());
    copy->version = src.version;
    copy->expires_at_ms = src.expires_at_ms;
    copy->written_at_ms = src.written_at_ms;
    copy->flags = src.flags;
    copy->meta = src.meta;
    append_greatest(copy);
  }
  spine_.clear();
}

item_set& item_set::operator=(const item_set& other) {
  if (this != &other) *this = item_set(other);
  return *this;
}

item_set::item_set(item_set&& other) noexcept
    : root_(std::exchange(other.root_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      recent_(std::move(other.recent_)),
      by_expiry_(std::move(other.by_expiry_)),
      spine_(std::move(other.spine_)) {
  other.by_expiry_.clear();
  other.spine_.clear();
  other.recent_.clear();
  other.forget_found();
}

item_set& item_set::operator=(item_set&& other) noexcept {
  if (this != &other) {
    clear();
    root_ = std::exchange(other.root_, nullptr);
    size_ = std::exchange(other.size_, 0);
    recent_ = std::move(other.recent_);
    other.recent_.clear();
    by_expiry_ = std::move(other.by_expiry_);
    spine_ = std::move(other.spine_);
    other.by_expiry_.clear();
    other.spine_.clear();
    other.forget_found();
  }
  return *this;
}

item** item_set::link_of(std::string_view key) const {
  item** link = const_cast<item**>(&root_);
  while (*link != nullptr) {
    const int cmp = key.compare((*link)->key());
    if (cmp == 0) break;
    link = cmp < 0 ? &(*link)->left : &(*link)->right;
  }
  return link;
}

item* item_set::find(std::string_view key) const {
  // link_of()'s walk, recording the links it passes (see "Insert after a missed find").
  item** link = const_cast<item**>(&root_);
  std::size_t depth = 0;
  for (; *link != nullptr; ++depth) {
    if (depth < max_path) path_[depth] = link;
    const int cmp = key.compare((*link)->key());
    if (cmp == 0) break;
    link = cmp < 0 ? &(*link)->left : &(*link)->right;
  }
  found_ = *link;
  found_link_ = link;
  path_depth_ = 0;
  if (*link == nullptr && depth < max_path) {
    path_[depth] = link;
    path_depth_ = depth + 1;
    missed_key_.assign(key);
  }
  return *link;
}

namespace {

constexpr std::uint64_t recent_tag_mask = ~std::uint64_t{0} << 48;

std::uint64_t recent_tag(std::uint32_t priority) {
  return std::uint64_t{priority >> 16} << 48;
}

// The entry for `it`, or 0 when its address does not fit beside the tag.
std::uint64_t recent_entry(const item* it) {
  const auto address = reinterpret_cast<std::uintptr_t>(it);
  if (it == nullptr || (address & recent_tag_mask) != 0) return 0;
  return recent_tag(it->priority) | address;
}

item* recent_item(std::uint64_t entry) {
  return reinterpret_cast<item*>(static_cast<std::uintptr_t>(entry & ~recent_tag_mask));
}

}  // namespace

const item* item_set::lookup(std::string_view key) const {
  // Sets small enough to stay in the CPU's cache do without the table.
  constexpr std::size_t min_items = 1024;
  if (size_ < min_items) return *link_of(key);
  // Twice the set's size in entries, up to the cap; resized (emptied) as the set grows.
  const std::size_t want = std::min(recent_entries_max, std::bit_ceil(size_) * 2) / recent_ways;
  if (recent_.size() < want) recent_.assign(want, recent_bucket{});
  const std::uint32_t h = priority_of(key);
  recent_bucket& bucket = recent_[h & (recent_.size() - 1)];
  const std::uint64_t tag = recent_tag(h);
  for (const std::uint64_t entry : bucket.entry) {
    if (entry == 0 || (entry & recent_tag_mask) != tag) continue;
    item* it = recent_item(entry);
    if (it->priority == h && it->key() == key) return it;
  }
  ++lookup_walks_;
  item* it = *link_of(key);
  const std::uint64_t fresh = recent_entry(it);
  if (fresh == 0) return it;
  // An empty entry if the bucket has one, else the next in turn: which one is lost does
  // not change a reply, only whether the next read of it walks.
  std::uint64_t* slot = std::find(std::begin(bucket.entry), std::end(bucket.entry), 0);
  if (slot == std::end(bucket.entry)) slot = &bucket.entry[recent_victim_++ % recent_ways];
  *slot = fresh;
  return it;
}

void item_set::prefetch(std::span<const std::string_view> keys) const {
  // The walks of a batch, in lockstep: one level of every walk per round, so the misses of
  // one round are independent loads the CPU overlaps, and each round prefetches the next.
  constexpr std::size_t lanes = 16;
  for (std::size_t first = 0; first < keys.size(); first += lanes) {
    const std::size_t n = std::min(lanes, keys.size() - first);
    const item* at[lanes];
    for (std::size_t i = 0; i < n; ++i) at[i] = root_;
    for (bool walking = root_ != nullptr; walking;) {
      walking = false;
      for (std::size_t i = 0; i < n; ++i) {
        const item* t = at[i];
        if (t == nullptr) continue;
        const int cmp = keys[first + i].compare(t->key());
        const item* next = cmp == 0 ? nullptr : cmp < 0 ? t->left : t->right;
        if (next != nullptr) {
          __builtin_prefetch(next);
          walking = true;
        }
        at[i] = next;
      }
    }
  }
}

item** item_set::link_to(const item* it) const {
  if (found_ == it && it != nullptr) return found_link_;
  return link_of(it->key());
}

void item_set::forget_recent(const item* it, item* successor) {
  if (recent_.empty()) return;
  recent_bucket& bucket = recent_[it->priority & (recent_.size() - 1)];
  const std::uint64_t old = recent_entry(it);
  for (std::uint64_t& entry : bucket.entry) {
    // A successor has the same key, so the same bucket and tag.
    if (old != 0 && entry == old) entry = recent_entry(successor);
  }
}

void item_set::insert(item* fresh) {
  spine_.clear();
  const std::string_view key = fresh->key();
  item** lo = &fresh->left;
  item** hi = &fresh->right;
  item** link = &root_;
  if (path_depth_ > 0 && key == missed_key_) {
    // The last find() missed this key and nothing changed since: its recorded path is the
    // one the walk below would take ("Insert after a missed find").
    std::size_t at = 0;
    while (*path_[at] != nullptr && (*path_[at])->priority >= fresh->priority) ++at;
    link = path_[at];
    for (item* t = *link; t != nullptr; t = *path_[++at]) {
      if (path_[at + 1] == &t->right) {  // t's key is smaller
        *lo = t;
        lo = &t->right;
      } else {
        *hi = t;
        hi = &t->left;
      }
    }
  } else {
    // Down to the first node that `fresh` outranks; everything below it is split by key
    // into fresh's two subtrees (iteratively: no recursion, whatever the depth).
    while (*link != nullptr && (*link)->priority >= fresh->priority)
      link = key < (*link)->key() ? &(*link)->left : &(*link)->right;
    item* t = *link;
    while (t != nullptr) {
      if (t->key() < key) {
        *lo = t;
        lo = &t->right;
        t = t->right;
      } else {
        *hi = t;
        hi = &t->left;
        t = t->left;
      }
    }
  }
  forget_found();
  *lo = nullptr;
  *hi = nullptr;
  *link = fresh;
  ++size_;
  index_expiry(fresh);
}

void item_set::replace(item* old, item* fresh) {
  spine_.clear();
  item** link = link_to(old);
  forget_found();
  unindex_expiry(old);
  // Same key, so the same priority: fresh takes old's place with old's children.
  fresh->left = old->left;
  fresh->right = old->right;
  fresh->priority = old->priority;
  *link = fresh;
  forget_recent(old, fresh);
  item::destroy(old);
  index_expiry(fresh);
}

void item_set::erase(item* it) {
  spine_.clear();
  item** link = link_to(it);
  forget_found();
  unindex_expiry(it);
  // Merge the two subtrees in its place, higher priority on top.
  item* a = it->left;
  item* b = it->right;
  while (a != nullptr && b != nullptr) {
    if (a->priority >= b->priority) {
      *link = a;
      link = &a->right;
      a = a->right;
    } else {
      *link = b;
      link = &b->left;
      b = b->left;
    }
  }
  *link = a != nullptr ? a : b;
  --size_;
  forget_recent(it, nullptr);
  item::destroy(it);
}

void item_set::clear() {
  // The index points into the items: drop it first.
  by_expiry_.clear();
  spine_.clear();
  forget_found();
  std::vector<recent_bucket>().swap(recent_);
  // Free every node without a stack: rotate left children up until none is left.
  item* t = root_;
  while (t != nullptr) {
    if (t->left != nullptr) {
      item* l = t->left;
      t->left = l->right;
      l->right = t;
      t = l;
    } else {
      item* next = t->right;
      item::destroy(t);
      t = next;
    }
  }
  root_ = nullptr;
  size_ = 0;
}

void item_set::set_expiry(item* it, std::int64_t expires_at_ms) {
  unindex_expiry(it);
  it->expires_at_ms = expires_at_ms;
  index_expiry(it);
}

void item_set::append_greatest(item* fresh) {
  forget_found();
  // Cartesian-tree construction over the right spine: pop the spine nodes fresh outranks
  // (they become its left subtree), then hang fresh as the right child of what remains.
  if (spine_.empty() && root_ != nullptr) {
    for (item* t = root_; t != nullptr; t = t->right) spine_.push_back(t);
  }
  fresh->left = nullptr;
  fresh->right = nullptr;
  item* below = nullptr;
  while (!spine_.empty() && spine_.back()->priority < fresh->priority) {
    below = spine_.back();
    spine_.pop_back();
  }
  fresh->left = below;
  if (spine_.empty())
    root_ = fresh;
  else
    spine_.back()->right = fresh;
  spine_.push_back(fresh);
  ++size_;
  index_expiry(fresh);
}

const item* item_set::last() const {
  const item* t = root_;
  while (t != nullptr && t->right != nullptr) t = t->right;
  return t;
}

void item_set::index_expiry(const item* it) {
  if (it->expires_at_ms != 0) by_expiry_.emplace(it->expires_at_ms, it);
}

void item_set::unindex_expiry(const item* it) {
  if (it->expires_at_ms != 0) by_expiry_.erase({it->expires_at_ms, it});
}

// ---------------------------------------------------------------------------------------
// Cursors

void item_set::cursor::push_left(item* t) {
  for (; t != nullptr; t = t->left) stack_.push_back(t);
}

void item_set::cursor::next() {
  item* done = stack_.back();
  stack_.pop_back();
  push_left(done->right);
}

item_set::cursor item_set::begin() const {
  cursor c;
  c.push_left(root_);
  return c;
}

item_set::cursor item_set::seek(std::string_view key, bool inclusive) const {
  // Keep on the stack exactly the nodes at or past the bound where the descent went left:
  // they are the ones still to be visited, the smallest on top.
  cursor c;
  for (item* t = root_; t != nullptr;) {
    const int cmp = t->key().compare(key);
    if (cmp > 0 || (cmp == 0 && inclusive)) {
      c.stack_.push_back(t);
      t = t->left;
    } else {
      t = t->right;
    }
  }
  return c;
}

}  // namespace kv
