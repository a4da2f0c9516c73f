// The store's item set alone (kv/item_set.h): the write path's find() then insert() of new
// keys, find() of keys present, and the reads' lookup() of keys present in random order
// (twice per key, after a first pass that fills the lookup cache), in ns per key (the best
// of three rounds).
//
//   item_set_bench [--items 1000000] [--order consecutive|random]
//
// consecutive: "stream-3-0", "stream-3-1", ... in that order (bench/mc_load's stream keys;
// not zero-padded, so not in byte order); random: the same keys shuffled.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kv/item_set.h"

int main(int argc, char** argv) {
  std::size_t items = 1000000;
  std::string order = "consecutive";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--items") {
      items = std::stoul(argv[i + 1]);
    } else if (a == "--order") {
      order = argv[i + 1];
    } else {
      std::fprintf(stderr, "usage: item_set_bench [--items N] [--order consecutive|random]\n");
      return 2;
    }
  }
  std::vector<std::string> keys;
  keys.reserve(items);
  for (std::size_t i = 0; i < items; ++i) keys.push_back("stream-3-" + std::to_string(i));
  if (order == "random") std::shuffle(keys.begin(), keys.end(), std::mt19937(1));
  const std::string value(100, 'x');
  std::vector<const std::string*> reads;
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& k : keys) reads.push_back(&k);
  }
  std::shuffle(reads.begin(), reads.end(), std::mt19937(2));
  double insert_ns = 1e18, hit_ns = 1e18, lookup_ns = 1e18;
  std::uint64_t lookup_walks = 0;
  using clock = std::chrono::steady_clock;
  for (int round = 0; round < 3; ++round) {
    kv::item_set set;
    const auto t0 = clock::now();
    for (const auto& k : keys) {
      if (set.find(k) == nullptr) set.insert(kv::item::make(k, value));
    }
    const auto t1 = clock::now();
    std::size_t hits = 0;
    for (const auto& k : keys) hits += set.find(k) != nullptr;
    const auto t2 = clock::now();
    if (hits != items) {
      std::fprintf(stderr, "item_set_bench: %zu of %zu keys found\n", hits, items);
      return 1;
    }
    for (const auto& k : keys) hits += set.lookup(k) != nullptr;
    const std::uint64_t walks_before = set.lookup_walks();
    const auto t3 = clock::now();
    for (const std::string* k : reads) hits += set.lookup(*k) != nullptr;
    const auto t4 = clock::now();
    if (hits != 4 * items) {
      std::fprintf(stderr, "item_set_bench: lookups found %zu of %zu\n", hits - items, 3 * items);
      return 1;
    }
    insert_ns = std::min(insert_ns, std::chrono::duration<double, std::nano>(t1 - t0).count());
    hit_ns = std::min(hit_ns, std::chrono::duration<double, std::nano>(t2 - t1).count());
    lookup_ns = std::min(lookup_ns, std::chrono::duration<double, std::nano>(t4 - t3).count());
    lookup_walks = set.lookup_walks() - walks_before;
  }
  std::printf(
      "items=%zu order=%s find_insert_ns=%.0f find_hit_ns=%.0f lookup_ns=%.0f "
      "lookup_walks_per_read=%.3f\n",
      items, order.c_str(), insert_ns / items, hit_ns / items, lookup_ns / reads.size(),
      static_cast<double>(lookup_walks) / reads.size());
}
