// Reuse of the nodes of a std::map or std::unordered_map (any map with node handles).
//
// A map that a stream of requests inserts into and erases from at the same pace (a replica's
// calls in flight, keyed by id or by log index) would allocate one node and free one per
// request. node_pool parks the nodes it erases (extract() keeps the node's memory) and
// inserts into parked nodes first, so such a map allocates only while it grows past what it
// held before. At most `max_parked` nodes wait; the rest are freed as usual.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace base {

template <typename Map>
class node_pool {
 public:
  explicit node_pool(std::size_t max_parked = 1024) : max_parked_(max_parked) {}

  // Inserts (key, value); returns the iterator to the element. The key must not be present.
  template <typename Key, typename Value>
  typename Map::iterator insert(Map& map, Key&& key, Value&& value) {
    if (parked_.empty()) {
      return map.emplace(std::forward<Key>(key), std::forward<Value>(value)).first;
    }
    typename Map::node_type node = std::move(parked_.back());
    parked_.pop_back();
    node.key() = std::forward<Key>(key);
    node.mapped() = std::forward<Value>(value);
    return map.insert(std::move(node)).position;
  }

  // Erases the element at `it`, keeping its node for the next insert.
  void erase(Map& map, typename Map::iterator it) {
    typename Map::node_type node = map.extract(it);
    if (parked_.size() < max_parked_) parked_.push_back(std::move(node));
  }

  std::size_t parked() const { return parked_.size(); }

 private:
  std::size_t max_parked_;
  std::vector<typename Map::node_type> parked_;
};

}  // namespace base
