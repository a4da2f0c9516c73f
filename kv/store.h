// The replicated key-value state machine.
//
// Pure and single-threaded: no I/O, no clock, no threads. "Now" is always passed in: for
// writes it is the leader's timestamp carried in the command (so every replica makes the
// same decision), for reads it is the reader's clock (only used to hide expired items).
// The same sequence of apply() calls gives byte-identical snapshots on every replica.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kv/command.h"

namespace kv {

struct store_options {
  std::size_t max_key_bytes = 250;
  std::size_t max_value_bytes = 1048576;
  std::uint64_t max_memory_bytes = 1024ull << 20;  // quota for keys + values + overhead
};

// Counters maintained by apply() (replicated, identical on every replica).
struct store_stats {
  std::uint64_t curr_items = 0;
  std::uint64_t total_items = 0;
  std::uint64_t bytes = 0;  // accounted bytes (what the quota counts)
  std::uint64_t cmd_set = 0;
  std::uint64_t cmd_touch = 0;
  std::uint64_t cmd_flush = 0;
  std::uint64_t delete_hits = 0;
  std::uint64_t delete_misses = 0;
  std::uint64_t incr_hits = 0;
  std::uint64_t incr_misses = 0;
  std::uint64_t decr_hits = 0;
  std::uint64_t decr_misses = 0;
  std::uint64_t cas_hits = 0;
  std::uint64_t cas_misses = 0;
  std::uint64_t cas_badval = 0;
  std::uint64_t touch_hits = 0;
  std::uint64_t touch_misses = 0;

  bool operator==(const store_stats&) const = default;
};

// One key in a listing.
struct key_info {
  std::string key;
  std::uint64_t version = 0;
  std::uint64_t bytes = 0;       // value size
  std::int64_t expires_at_ms = 0;// 0 = never
};

class store {
 public:
  explicit store(store_options options = {});

  // Applies the command of the log entry at `index` (> applied_index()). The item version
  // of a write is `index`. Uses c.timestamp_ms as "now".
  result apply(std::uint64_t index, const command& c);

  // Records that the entry at `index` carried no command for the store (a Raft no-op or an
  // undecodable entry) so applied_index() keeps up.
  void skip(std::uint64_t index);

  // The live item under key at time now_ms, or nullopt if absent, expired or flushed.
  std::optional<item_view> find(std::string_view key, std::int64_t now_ms) const;

  // Live keys that start with prefix and sort after `after`, in order, at most `limit`.
  std::vector<key_info> list(std::string_view prefix, std::string_view after, std::size_t limit,
                             std::int64_t now_ms) const;

  // Up to `limit` keys whose items are expired or flushed at now_ms (for a purge proposal).
  std::vector<std::string> expired_keys(std::int64_t now_ms, std::size_t limit) const;

  std::uint64_t applied_index() const { return applied_index_; }
  const store_stats& stats() const { return stats_; }
  const store_options& options() const { return options_; }

  // Serialises the whole state (items, counters, flush deadline, dedup table, applied index)
  // with a format version header and a checksum trailer.
  std::string snapshot() const;
  // Replaces this store's state with a snapshot; returns false (and leaves the store
  // unchanged) if the bytes are malformed or the checksum does not match.
  bool restore(std::string_view bytes);

 private:
  struct stored_item {
    std::string value;
    std::uint32_t flags = 0;
    std::uint64_t version = 0;
    std::int64_t expires_at_ms = 0;  // 0 = never
    std::int64_t written_at_ms = 0;  // leader time of the last write (for flush_all)
  };

  store_options options_;
  std::map<std::string, stored_item, std::less<>> items_;  // ordered: cheap prefix listing
  std::int64_t flush_at_ms_ = 0;  // items written at or before it are dead once now >= it
  std::uint64_t applied_index_ = 0;
  store_stats stats_;
  // At-most-once: latest applied request per client and its result.
  std::map<std::uint64_t, std::pair<std::uint64_t, result>> last_request_;
};

}  // namespace kv
