// The store's item set alone (kv/item_set.h): the write path's find() then insert() of new
// keys, and find() of keys present, in ns per key (the best of three rounds).
//
//   item_set_bench [--items 1000000] [--order consecutive|random]
//
// consecutive: "stream-3-0", "stream-3-1", ... in that order (bench/mc_load's stream keys;
// not zero-padded, so not in byte order); random: the same keys shuffled.
#include <algorithm>
#include <chrono>
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
  double insert_ns = 1e18, hit_ns = 1e18;
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
    insert_ns = std::min(insert_ns, std::chrono::duration<double, std::nano>(t1 - t0).count());
    hit_ns = std::min(hit_ns, std::chrono::duration<double, std::nano>(t2 - t1).count());
  }
  std::printf("items=%zu order=%s find_insert_ns=%.0f find_hit_ns=%.0f\n", items, order.c_str(),
              insert_ns / items, hit_ns / items);
}
