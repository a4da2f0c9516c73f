// The replicated key-value state machine.
//
// Pure and single-threaded: no I/O, no clock, no threads. "Now" is always passed in: for
// writes it is the leader's timestamp carried in the command (so every replica makes the
// same decision), for reads it is the reader's clock (only used to hide expired items).
// The same sequence of apply() calls gives byte-identical snapshots on every replica.
//
// Limits. The limits that decide too_large and out_of_memory are replicated state too, so
// replicas whose config files differ never decide differently. A store starts with its
// node's configured limits (`local`); set_limits entries (kv/command.h) then replace them:
// - a leader's configured [limits] (limits_from_config): each leader proposes its own
//   whenever they differ from the cluster's configured ones (limits_command_if_needed), so
//   editing [limits] on every node and restarting them changes the cluster's limits;
// - a client's cache_memlimit (limits_memory_quota): a memory quota that overrides the
//   configured max_memory_bytes until a leader's configured max_memory_bytes itself
//   changes. A leader whose file only repeats the configured quota, or differs in the key
//   or value limit alone, leaves it in force; so does a new cluster's first proposal, which
//   a cache_memlimit sent right after the election can precede in the log.
// The limits in force are the configured ones (the local ones until some are replicated)
// with the memory quota over them. Until a cluster's first set_limits entry is applied,
// each replica uses its own config, as every replica did before limits were replicated.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kv/command.h"
#include "kv/item_set.h"
#include "kv/seq_ring.h"

namespace kv {

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
  std::uint64_t bytes = 0;         // value size
  std::int64_t expires_at_ms = 0;  // 0 = never
};

class store {
 public:
  // `local` is the node's configured limits: in force until a set_limits entry is applied
  // (and again after restoring a snapshot that carries no replicated limits). "Limits" above.
  explicit store(store_options local = {});

  // Applies the command of the log entry at `index` (> applied_index()). The item version
  // of a write is `index`. Uses c.timestamp_ms as "now". An index at or below
  // applied_index() is a replay: it returns bad_command and changes nothing. A command with
  // id.client != 0 that was already applied returns its remembered result and changes
  // nothing but applied_index(); one older than the remembered window returns
  // outcome_unknown (it may have been applied before; it is not applied again).
  result apply(std::uint64_t index, const command_view& c);

  // Records that the entry at `index` carried no command for the store (a Raft no-op or an
  // undecodable entry) so applied_index() keeps up.
  void skip(std::uint64_t index);

  // Brings the tree paths of these keys into the CPU's cache, ahead of apply() of commands
  // that touch them (kv/item_set.h, "Batch prefetch"). Changes nothing.
  void prefetch(std::span<const std::string_view> keys) const { items_.prefetch(keys); }

  // The live item under key at time now_ms, or nullopt if absent, expired or flushed.
  std::optional<item_view> find(std::string_view key, std::int64_t now_ms) const;
  // Why find(key, now_ms) finds nothing (kv/command.h, miss_kind).
  miss_kind why_missing(std::string_view key, std::int64_t now_ms) const;

  // Live keys that start with prefix and sort after `after`, in order, at most `limit`.
  std::vector<key_info> list(std::string_view prefix, std::string_view after, std::size_t limit,
                             std::int64_t now_ms) const;

  // Up to `limit` keys whose items are expired or flushed at now_ms (for a purge proposal;
  // a purge_expired command removes all of them, whatever the limit).
  std::vector<std::string> expired_keys(std::int64_t now_ms, std::size_t limit) const;

  std::uint64_t applied_index() const { return applied_index_; }
  const store_stats& stats() const { return stats_; }
  // The limits in force (the configured ones with the memory quota over them: "Limits"
  // above). Apply decisions use exactly these.
  const store_options& options() const { return limits_; }
  // True once a set_limits entry was applied (or restored from a snapshot).
  bool limits_replicated() const { return configured_.has_value() || memory_quota_.has_value(); }
  // The cluster's configured limits: the last leader's [limits] that were applied; nullopt
  // while no leader's limits were.
  const std::optional<store_options>& configured_limits() const { return configured_; }
  // A client's memory quota (cache_memlimit) in force over the configured one, if any.
  const std::optional<std::uint64_t>& memory_quota() const { return memory_quota_; }
  const store_options& local_options() const { return local_; }

  // Serialises the whole state (items, counters, flush deadline, dedup table, applied index,
  // replicated limits) with a format version header and a checksum trailer.
  std::string snapshot() const;
  // The same bytes as snapshot(), handed to `sink` in consecutive chunks of about 1 MiB (so
  // a snapshot can go to a file without a second copy of the state in memory). Stops and
  // returns false as soon as sink returns false.
  bool snapshot_to(const std::function<bool(std::string_view)>& sink) const;
  // Replaces this store's state with a snapshot; returns false (and leaves the store
  // unchanged) if the bytes are malformed or the checksum does not match.
  bool restore(std::string_view bytes);

  // Accounted bytes per item on top of key and value: roughly what the item header and
  // allocator rounding cost, so the quota tracks real memory use. Replicated semantics: it
  // decides apply outcomes, so it stays 64 whatever the real layout (kv/item_set.h).
  static constexpr std::uint64_t item_overhead_bytes = 64;
  // At-most-once window: the results of the last `dedup_window_per_client` requests (by seq)
  // of each of at most `dedup_max_clients` clients (the least recently seen client is
  // evicted), and at most `dedup_max_item_bytes` of remembered get_and_touch values (oldest
  // evicted first).
  static constexpr std::size_t dedup_window_per_client = 1024;
  static constexpr std::size_t dedup_max_clients = 4096;
  static constexpr std::uint64_t dedup_max_item_bytes = 16ull << 20;

  // Number of clients and remembered results (for tests and status).
  std::size_t dedup_clients() const { return clients_.size(); }

 private:
  struct remembered {
    std::uint64_t seq = 0;    // the request's number within its client
    std::uint64_t index = 0;  // log index that produced the result (eviction order)
    result outcome;
  };
  struct client_window {
    std::uint64_t last_index = 0;  // latest log index carrying a request of this client
    std::uint64_t floor_seq = 0;   // highest evicted seq: an unknown seq <= it is refused
    seq_ring<remembered> results;  // by seq (kv/seq_ring.h)
  };

  result execute(std::uint64_t index, const command_view& c);
  result store_op(std::uint64_t index, const command_view& c);
  result remove_op(const command_view& c);
  result arith_op(std::uint64_t index, const command_view& c);
  // incr/decr of the live item `it` (shared by incr/decr and meta_arith). On success `it`
  // is the new item (the old one is freed).
  result add_delta(std::uint64_t index, item*& it, bool incr, std::uint64_t delta,
                   std::int64_t now_ms);
  result meta_get_op(std::uint64_t index, const command_view& c);
  result meta_delete_op(std::uint64_t index, const command_view& c);
  result meta_arith_op(std::uint64_t index, const command_view& c);
  static item_view view_of(const item& it);
  result touch_op(const command_view& c);
  result flush_op(const command_view& c);
  void purge(std::int64_t now_ms);
  void apply_due_flush(std::int64_t now_ms);

  bool dead(const item& it, std::int64_t now_ms) const;
  // True if replacing `old_bytes` of accounted memory by `new_bytes` must be refused.
  bool over_quota(std::uint64_t old_bytes, std::uint64_t new_bytes) const;
  // Puts `fresh` in place of `old` (nullptr: a new key), keeping the counters exact.
  void write_item(item* old, item* fresh);
  void erase_item(item* it);
  void erase_all();

  std::optional<result> dedup_lookup(const request_id& id, std::uint64_t index);
  void remember(const request_id& id, std::uint64_t index, const result& r);
  // Records that `client` (whose window is w) sent the request at log index `index`.
  void touch_client(client_window& w, std::uint64_t client, std::uint64_t index);
  // The client whose latest request is the oldest (clients_ holds more than one).
  std::uint64_t least_recent_client();
  // Drops the result at position `pos` of w's window.
  void forget(client_window& w, std::size_t pos);
  void rebuild_indexes();
  result set_limits_op(const command_view& c);
  // limits_ from local_, configured_ and memory_quota_.
  void refresh_limits();

  store_options local_;   // this node's configured limits (the bootstrap values)
  store_options limits_;  // limits in force (see options())
  std::optional<store_options> configured_;     // replicated: a leader's [limits]
  std::optional<std::uint64_t> memory_quota_;  // replicated: a client's cache_memlimit
  // One allocation per item, in key order (cheap prefix listing, snapshots in key order),
  // with an index by expiry (purge and expired_keys in O(expired)): kv/item_set.h.
  item_set items_;
  std::int64_t flush_at_ms_ = 0;  // items written at or before it are dead once now >= it
  std::uint64_t applied_index_ = 0;
  store_stats stats_;
  // At-most-once: per client, the recent requests and their results.
  std::map<std::uint64_t, client_window> clients_;
  // (last_index, client) for each client, in age order. Lazy: an entry is moved only when
  // least_recent_client() finds it at the front with an older last_index than its
  // client's, so a request costs no tree update here; every entry's index is at most its
  // client's last_index, so the first up-to-date entry is the least recent client.
  std::set<std::pair<std::uint64_t, std::uint64_t>> clients_by_age_;
  // Remembered results that carry an item value, by index -> (client, seq), oldest first.
  std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> remembered_items_;
  std::uint64_t remembered_item_bytes_ = 0;
};

// For the leader's drive loop: while the cluster's configured limits differ from this
// node's configured `local` ones (or none were replicated yet), the set_limits command
// (limits_from_config) that makes them the cluster's; nullopt when they are the same.
// Proposing it twice is harmless: the second applies as status::exists and changes nothing.
std::optional<command> limits_command_if_needed(const store& s, const store_options& local);

}  // namespace kv
