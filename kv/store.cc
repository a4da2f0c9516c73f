// The replicated key-value state machine; see kv/README.md for the model. Longer than ~600
// lines on purpose: every op (classic, meta, limits, purge) applies to the same item map
// under the same expiry, quota, version and at-most-once rules, and the snapshot codec must
// see every field an op can set; split, those shared rules would have to be exported.
#include "kv/store.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/bytes.h"
#include "base/crc32c.h"

namespace kv {
namespace {

constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t int64_min = std::numeric_limits<std::int64_t>::min();

// memcached: an exptime (or flush delay) above 30 days is an absolute Unix time.
constexpr std::int64_t memcached_max_relative_s = 60 * 60 * 24 * 30;

// An expiry that is already past for every clock: how a negative exptime is stored, so the
// item is dead on every replica and for every reader whatever their clocks say.
constexpr std::int64_t expired_long_ago = int64_min;

std::int64_t seconds_to_ms(std::int64_t s) {
  if (s > int64_max / 1000) return int64_max;
  if (s < int64_min / 1000) return int64_min;
  return s * 1000;
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? int64_max : int64_min;
  return r;
}

// The absolute expiry (Unix ms, 0 = never) that `exptime` means for a command applied at now.
std::int64_t expiry_from(const command_view& c, std::int64_t now_ms) {
  const std::int64_t e = c.exptime;
  if (e == 0) return 0;
  if (e < 0) return expired_long_ago;
  std::int64_t at = 0;
  if (c.kind_of_expiry == expiry_kind::memcached && e > memcached_max_relative_s)
    at = seconds_to_ms(e);
  else
    at = saturating_add(now_ms, seconds_to_ms(e));
  // 0 would read as "never"; only reachable with a negative leader clock.
  return at == 0 ? -1 : at;
}

std::uint64_t accounted(std::size_t key_bytes, std::size_t value_bytes) {
  return static_cast<std::uint64_t>(key_bytes) + static_cast<std::uint64_t>(value_bytes) +
         store::item_overhead_bytes;
}

bool c_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

// The number in an item's value the way memcached 1.6 reads it for incr/decr (strtoull, then
// its safe_strtoull checks): optional leading whitespace, an optional sign, decimal digits,
// then the end or whitespace (anything after that is ignored). Out of u64 range, or a
// negative number, is not a number. So " 12", "+12" and "12 abc" are 12; "-1" and "1.5" are not.
std::optional<std::uint64_t> memcached_number(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && c_space(s[i])) ++i;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  const std::size_t first_digit = i;
  std::uint64_t v = 0;
  bool overflow = false;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    const auto digit = static_cast<std::uint64_t>(s[i] - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) overflow = true;
    v = v * 10 + digit;
  }
  if (i == first_digit || overflow) return std::nullopt;
  if (i < s.size() && !c_space(s[i])) return std::nullopt;
  if (negative) {
    v = 0 - v;  // strtoull negates in unsigned arithmetic
    if (static_cast<std::int64_t>(v) < 0) return std::nullopt;
  }
  return v;
}

result outcome(status code, std::uint64_t version = 0, std::uint64_t number = 0) {
  result r;
  r.code = code;
  r.version = version;
  r.number = number;
  return r;
}

bool is_storage(op k) {
  switch (k) {
    case op::set:
    case op::add:
    case op::replace:
    case op::append:
    case op::prepend:
    case op::cas:
      return true;
    default:
      return false;
  }
}

// Snapshot layout (format 3), all integers little-endian, lengths LEB128:
//   "RKVS" | u8 format | u64 applied_index | i64 flush_at_ms | 17 x u64 stats (field order)
//   | varint n_items, n x (bytes key, bytes value, u32 flags, u64 version, i64 expires_at_ms,
//     i64 written_at_ms, u8 meta bits) in strictly increasing key order
//   | varint n_clients, n x (u64 client, u64 last_index, u64 floor_seq, varint n_results,
//     n x (u64 seq, u64 index, bytes encoded result)) in increasing client / seq order
//   | u8 replicated limits (bit 0: configured, bit 1: memory quota; store.h, "Limits"),
//     then if bit 0: u64 max_key_bytes, u64 max_value_bytes, u64 max_memory_bytes (the
//     encode_limits payload), then if bit 1: u64 the memory quota
//   | u32 CRC-32C of every byte before it
// Format 2 is format 3 without the per-item meta byte (every item has meta 0); it is what
// a store writes while no item carries meta marks.
// Format 1 is format 2 without the limits section; it still restores, as "no replicated
// limits" (the restoring node's configured limits stay in force). Limits that were never
// replicated are not written: they are the node's own config, not replicated state, and
// two replicas with different configs must still write identical snapshots.
constexpr std::string_view snapshot_magic = "RKVS";
constexpr std::uint8_t snapshot_format = 3;
constexpr std::uint8_t snapshot_format_without_meta = 2;
constexpr std::uint8_t snapshot_format_without_limits = 1;
constexpr std::size_t limits_payload_bytes = 3 * 8;
// The bits of the snapshot's replicated-limits byte. A store without a client's memory quota
// writes the bytes versions before it wrote (0 or 1), which also read no other value.
constexpr std::uint8_t limits_configured = 1;
constexpr std::uint8_t limits_quota = 2;

constexpr std::uint64_t store_stats::*stat_fields[] = {
    &store_stats::curr_items,  &store_stats::total_items,   &store_stats::bytes,
    &store_stats::cmd_set,     &store_stats::cmd_touch,     &store_stats::cmd_flush,
    &store_stats::delete_hits, &store_stats::delete_misses, &store_stats::incr_hits,
    &store_stats::incr_misses, &store_stats::decr_hits,     &store_stats::decr_misses,
    &store_stats::cas_hits,    &store_stats::cas_misses,    &store_stats::cas_badval,
    &store_stats::touch_hits,  &store_stats::touch_misses,
};
static_assert(sizeof(stat_fields) / sizeof(stat_fields[0]) * sizeof(std::uint64_t) ==
                  sizeof(store_stats),
              "every store_stats counter must be in the snapshot");

}  // namespace

store::store(store_options local) : local_(local), limits_(local) {}

// ---------------------------------------------------------------------------------------
// Applying commands

result store::apply(std::uint64_t index, const command_view& c) {
  // Entries are applied once each, in log order; an old index (a replay the driver should
  // have skipped) must not change the state.
  if (index <= applied_index_) return outcome(status::bad_command);
  applied_index_ = index;
  if (c.id.client != 0) {
    if (auto earlier = dedup_lookup(c.id, index)) return *earlier;
  }
  result r = execute(index, c);
  if (c.id.client != 0) remember(c.id, index, r);
  return r;
}

void store::skip(std::uint64_t index) {
  if (index > applied_index_) applied_index_ = index;
}

result store::execute(std::uint64_t index, const command_view& c) {
  // A delayed flush_all whose deadline has passed is carried out first, so that writes from
  // here on are unaffected by it whatever their timestamps.
  apply_due_flush(c.timestamp_ms);
  if (is_storage(c.kind)) return store_op(index, c);
  switch (c.kind) {
    case op::remove:
      return remove_op(c);
    case op::incr:
    case op::decr:
      return arith_op(index, c);
    case op::touch:
    case op::get_and_touch:
      return touch_op(c);
    case op::flush_all:
      return flush_op(c);
    case op::purge_expired:
      purge(c.timestamp_ms);
      return outcome(status::ok);
    case op::meta_get:
      return meta_get_op(index, c);
    case op::meta_delete:
      return meta_delete_op(index, c);
    case op::meta_arith:
      return meta_arith_op(index, c);
    case op::set_limits:
      return set_limits_op(c);
    default:
      return outcome(status::bad_command);
  }
}

// From here on every replica decides with the replicated limits ("Limits" in store.h).
// Items already stored stay even if a lowered limit would refuse them now (nothing is ever
// evicted).
result store::set_limits_op(const command_view& c) {
  const auto limits = decode_limits(c.value);
  if (!limits) return outcome(status::bad_command);
  switch (c.flags) {
    case limits_from_config:
      if (configured_ == *limits) return outcome(status::exists);
      // A changed configured quota is newer intent than a client's quota; the first
      // configured limits (configured_ unset) may come after a client's quota in the log.
      if (configured_ && configured_->max_memory_bytes != limits->max_memory_bytes)
        memory_quota_.reset();
      configured_ = *limits;
      break;
    case limits_memory_quota:
      memory_quota_ = limits->max_memory_bytes;
      break;
    case limits_absolute:
      configured_ = *limits;
      memory_quota_.reset();
      break;
    case limits_if_unset:
      if (limits_replicated()) return outcome(status::exists);
      configured_ = *limits;
      break;
    default:
      return outcome(status::bad_command);
  }
  refresh_limits();
  return outcome(status::ok);
}

void store::refresh_limits() {
  limits_ = configured_.value_or(local_);
  if (memory_quota_) limits_.max_memory_bytes = *memory_quota_;
}

result store::store_op(std::uint64_t index, const command_view& c) {
  const std::int64_t now = c.timestamp_ms;
  // Above item::max_bytes (4 GiB - 1) an item cannot be laid out; no door or log entry
  // carries that much, and any limit that high refuses it the same way on every replica.
  if (c.key.size() > limits_.max_key_bytes || c.value.size() > limits_.max_value_bytes ||
      c.key.size() > item::max_bytes || c.value.size() > item::max_bytes)
    return outcome(status::too_large);
  ++stats_.cmd_set;
  item* pos = items_.find(c.key);
  const bool live = pos != nullptr && !dead(*pos, now);
  // A write that finds only a dead item reclaims it, as memcached unlinks expired items it
  // meets; on a write that goes ahead the old item is replaced anyway.
  auto miss = [&](status s) {
    if (pos != nullptr) erase_item(pos);
    return outcome(s);
  };
  bool stale_store = false;

  switch (c.kind) {
    case op::add:
      if (live) return outcome(status::not_stored);
      break;
    case op::replace:
    case op::append:
    case op::prepend:
      if (!live) return miss(status::not_stored);
      break;
    case op::cas:
      if (!live) {
        ++stats_.cas_misses;
        return miss(status::not_found);
      }
      // memcached never hands out cas 0, so 0 never matches.
      if (c.cas_unique == 0 || c.cas_unique != pos->version) {
        // meta `ms ... I`: a cas older than the item's still stores, marked stale (the
        // writer raced an invalidation; readers see X and one of them wins a recache).
        if ((c.delta & meta_invalidate) != 0 && c.cas_unique != 0 && c.cas_unique < pos->version) {
          stale_store = true;
          break;
        }
        ++stats_.cas_badval;
        return outcome(status::exists);
      }
      break;
    default:
      break;
  }
  // meta `ms MA/MP ... C<cas>`: append/prepend only onto the version the client saw.
  const bool concatenated = c.kind == op::append || c.kind == op::prepend;
  if (concatenated && c.cas_unique != 0 && c.cas_unique != pos->version)
    return outcome(status::exists);

  std::size_t value_bytes = c.value.size();
  if (concatenated) {
    value_bytes += pos->value_bytes;
    if (value_bytes > limits_.max_value_bytes || value_bytes > item::max_bytes)
      return outcome(status::too_large);
  }
  const std::uint64_t old_bytes = pos != nullptr ? accounted(pos->key_bytes, pos->value_bytes) : 0;
  if (over_quota(old_bytes, accounted(c.key.size(), value_bytes)))
    return outcome(status::out_of_memory);

  if (c.kind == op::cas) ++stats_.cas_hits;
  ++stats_.total_items;
  if (pos != nullptr && !concatenated && pos->value_bytes == value_bytes) {
    // The same size (a counter, a fixed-size record, most caches' steady state): written in
    // place, with no allocation and the footprint unchanged. The fields end up exactly as a
    // fresh item below would have them.
    std::uint8_t meta = (c.delta & meta_key_binary) != 0 ? item_key_binary : 0;
    std::int64_t expires_at_ms = expiry_from(c, now);
    if (stale_store) {
      expires_at_ms = pos->expires_at_ms;
      meta |= item_stale | (pos->meta & item_token_sent);
    }
    if (!c.value.empty()) std::memcpy(pos->value_data(), c.value.data(), c.value.size());
    pos->flags = c.flags;
    if (pos->expires_at_ms != expires_at_ms) items_.set_expiry(pos, expires_at_ms);
    pos->version = index;
    pos->written_at_ms = now;
    pos->meta = meta;
    return outcome(status::stored, index);
  }

  item* next = item::make(c.key, value_bytes);
  if (concatenated) {
    const item& old = *pos;
    const std::string_view first = c.kind == op::append ? old.value() : c.value;
    const std::string_view second = c.kind == op::append ? std::string_view(c.value) : old.value();
    if (!first.empty()) std::memcpy(next->value_data(), first.data(), first.size());
    if (!second.empty())
      std::memcpy(next->value_data() + first.size(), second.data(), second.size());
    next->flags = old.flags;
    next->expires_at_ms = old.expires_at_ms;
  } else {
    if (!c.value.empty()) std::memcpy(next->value_data(), c.value.data(), c.value.size());
    next->flags = c.flags;
    next->expires_at_ms = expiry_from(c, now);
  }
  next->version = index;
  next->written_at_ms = now;
  // A base64 key is remembered by the item it stored; append/prepend build a new item
  // from the old one, which memcached does not mark binary.
  next->meta = (c.delta & meta_key_binary) != 0 && !concatenated ? item_key_binary : 0;
  if (stale_store) {
    // memcached keeps the old item's TTL and its token-sent mark.
    next->expires_at_ms = pos->expires_at_ms;
    next->meta |= item_stale | (pos->meta & item_token_sent);
  }

  write_item(pos, next);
  return outcome(status::stored, index);
}

result store::remove_op(const command_view& c) {
  if (c.key.size() > limits_.max_key_bytes) return outcome(status::too_large);
  item* pos = items_.find(c.key);
  if (pos == nullptr || dead(*pos, c.timestamp_ms)) {
    ++stats_.delete_misses;
    if (pos != nullptr) erase_item(pos);
    return outcome(status::not_found);
  }
  // A conditional delete (HTTP If-Match) removes only the version the client saw.
  if (c.cas_unique != 0 && c.cas_unique != pos->version) return outcome(status::exists);
  erase_item(pos);
  ++stats_.delete_hits;
  return outcome(status::deleted);
}

result store::arith_op(std::uint64_t index, const command_view& c) {
  if (c.key.size() > limits_.max_key_bytes) return outcome(status::too_large);
  const bool incr = c.kind == op::incr;
  item* pos = items_.find(c.key);
  if (pos == nullptr || dead(*pos, c.timestamp_ms)) {
    ++(incr ? stats_.incr_misses : stats_.decr_misses);
    if (pos != nullptr) erase_item(pos);
    return outcome(status::not_found);
  }
  return add_delta(index, pos, incr, c.delta, c.timestamp_ms);
}

result store::add_delta(std::uint64_t index, item*& it, bool incr, std::uint64_t delta,
                        std::int64_t now_ms) {
  const auto old_value = memcached_number(it->value());
  if (!old_value) return outcome(status::non_numeric);
  // Unsigned arithmetic wraps at 2^64 for incr, as memcached does; decr stops at 0.
  const std::uint64_t value =
      incr ? *old_value + delta : (delta > *old_value ? 0 : *old_value - delta);

  std::string text = std::to_string(value);
  // memcached rewrites a result that fits in place, padded with spaces to the old length
  // (the item keeps its meta marks); a longer one is a new item (without them).
  const bool longer = text.size() > it->value_bytes;
  if (!longer) text.resize(it->value_bytes, ' ');
  if (over_quota(accounted(it->key_bytes, it->value_bytes), accounted(it->key_bytes, text.size())))
    return outcome(status::out_of_memory);
  ++(incr ? stats_.incr_hits : stats_.decr_hits);
  if (!longer) {  // flags, expiry and meta marks are kept
    std::memcpy(it->value_data(), text.data(), text.size());
    it->version = index;
    it->written_at_ms = now_ms;
    return outcome(status::number, index, value);
  }
  item* next = item::make(it->key(), text);
  next->flags = it->flags;  // flags and expiry are kept
  next->expires_at_ms = it->expires_at_ms;
  next->version = index;
  next->written_at_ms = now_ms;
  write_item(it, next);
  it = next;
  return outcome(status::number, index, value);
}

// memcached mg with T/N/R (or on a stale item): one atomic decision at apply time.
result store::meta_get_op(std::uint64_t index, const command_view& c) {
  if (c.key.size() > limits_.max_key_bytes) return outcome(status::too_large);
  const std::int64_t now = c.timestamp_ms;
  const bool has_ttl = (c.flags & meta_has_ttl) != 0;
  item* pos = items_.find(c.key);
  if (pos != nullptr && dead(*pos, now)) {
    erase_item(pos);
    pos = nullptr;
  }
  bool won = false;
  bool created = false;
  if (pos == nullptr) {
    if ((c.flags & meta_vivify) == 0) {
      if (has_ttl) {
        ++stats_.cmd_touch;
        ++stats_.touch_misses;
      }
      return outcome(status::not_found);
    }
    // Vivify on miss: an empty item whose first reader wins the right to fill it.
    command_view ttl = c;
    ttl.exptime = c.delay_s;
    if (over_quota(0, accounted(c.key.size(), 0))) return outcome(status::not_found);
    item* fresh = item::make(c.key, std::size_t{0});
    fresh->version = index;
    fresh->written_at_ms = now;
    fresh->expires_at_ms = expiry_from(ttl, now);
    write_item(nullptr, fresh);
    pos = fresh;
    ++stats_.total_items;
    created = true;
    won = true;
  }
  item& it = *pos;
  const std::int64_t expiry_before = created ? 0 : it.expires_at_ms;
  if (has_ttl) {
    // On a vivified item, an N after T has the last word.
    if (!created || (c.flags & meta_vivify_after_ttl) == 0)
      items_.set_expiry(pos, expiry_from(c, now));
    ++stats_.cmd_touch;
    ++stats_.touch_hits;
  }
  // R judges the TTL as of its place among the flags: before or after T.
  const std::int64_t expiry_for_recache =
      (c.flags & meta_recache_after_ttl) != 0 ? it.expires_at_ms : expiry_before;
  if ((c.flags & meta_recache) != 0 && !created && (it.meta & item_token_sent) == 0 &&
      expiry_for_recache != 0) {
    command_view recache = c;
    recache.exptime = static_cast<std::int64_t>(c.cas_unique);
    const std::int64_t at = recache.exptime == 0 ? 0 : expiry_from(recache, now);
    if (at != 0 && expiry_for_recache < at) won = true;
  }
  if ((it.meta & item_stale) != 0 && (it.meta & item_token_sent) == 0) won = true;
  // A token already sent is reported (Z) by the reader; only the winner sets it.
  const bool token_was_sent = (it.meta & item_token_sent) != 0;
  if (won) it.meta |= item_token_sent;
  result r = outcome(status::item, static_cast<std::uint64_t>(expiry_before),
                     (won ? meta_won : 0) | (created ? meta_created : 0));
  r.item = view_of(it);
  if (token_was_sent) r.item->meta |= item_token_sent;
  return r;
}

result store::meta_delete_op(std::uint64_t index, const command_view& c) {
  if (c.key.size() > limits_.max_key_bytes) return outcome(status::too_large);
  item* pos = items_.find(c.key);
  if (pos == nullptr || dead(*pos, c.timestamp_ms)) {
    ++stats_.delete_misses;
    if (pos != nullptr) erase_item(pos);
    return outcome(status::not_found);
  }
  if ((c.flags & meta_has_cas) != 0 && c.cas_unique != pos->version) {
    ++stats_.delete_misses;
    return outcome(status::exists);
  }
  if ((c.flags & meta_stale_flag) != 0) {
    // Invalidate: the item stays, marked stale, with a new version; the next reader wins
    // the recache token.
    if ((c.flags & meta_has_ttl) != 0) items_.set_expiry(pos, expiry_from(c, c.timestamp_ms));
    pos->meta = (pos->meta | item_stale) & ~item_token_sent;
    pos->version = index;
    return outcome(status::deleted, index);
  }
  erase_item(pos);
  ++stats_.delete_hits;
  return outcome(status::deleted);
}

result store::meta_arith_op(std::uint64_t index, const command_view& c) {
  if (c.key.size() > limits_.max_key_bytes) return outcome(status::too_large);
  const std::int64_t now = c.timestamp_ms;
  const bool incr = (c.flags & meta_decr) == 0;
  item* pos = items_.find(c.key);
  if (pos != nullptr && dead(*pos, now)) {
    erase_item(pos);
    pos = nullptr;
  }
  result r;
  if (pos == nullptr) {
    if ((c.flags & meta_vivify) == 0) {
      ++(incr ? stats_.incr_misses : stats_.decr_misses);
      return outcome(status::not_found);
    }
    const auto initial = memcached_number(c.value);
    const std::uint64_t number = initial.value_or(0);
    const std::string text = std::to_string(number);
    if (over_quota(0, accounted(c.key.size(), text.size()))) return outcome(status::out_of_memory);
    command_view ttl = c;
    ttl.exptime = c.delay_s;
    item* fresh = item::make(c.key, text);
    fresh->version = index;
    fresh->written_at_ms = now;
    fresh->expires_at_ms = expiry_from(ttl, now);
    write_item(nullptr, fresh);
    pos = fresh;
    ++stats_.total_items;
    r = outcome(status::stored, index, number);
  } else {
    // memcached compares a non-zero cas only.
    if ((c.flags & meta_has_cas) != 0 && c.cas_unique != 0 && c.cas_unique != pos->version)
      return outcome(status::exists);
    r = add_delta(index, pos, incr, c.delta, now);
    if (r.code != status::number) return r;
  }
  if ((c.flags & meta_has_ttl) != 0) items_.set_expiry(pos, expiry_from(c, now));
  r.item = view_of(*pos);
  return r;
}

result store::touch_op(const command_view& c) {
  if (c.key.size() > limits_.max_key_bytes) return outcome(status::too_large);
  ++stats_.cmd_touch;
  item* pos = items_.find(c.key);
  if (pos == nullptr || dead(*pos, c.timestamp_ms)) {
    ++stats_.touch_misses;
    if (pos != nullptr) erase_item(pos);
    return outcome(status::not_found);
  }
  // Only the expiry changes: the version (memcached cas) and write time stay.
  items_.set_expiry(pos, expiry_from(c, c.timestamp_ms));
  ++stats_.touch_hits;
  const item& it = *pos;
  if (c.kind == op::touch) return outcome(status::touched, it.version);
  result r = outcome(status::item, it.version);
  r.item = view_of(it);
  return r;
}

result store::flush_op(const command_view& c) {
  const std::int64_t now = c.timestamp_ms;
  ++stats_.cmd_flush;
  // memcached reads the delay like an exptime: above 30 days it is an absolute Unix time;
  // zero or negative means now.
  std::int64_t deadline = now;
  if (c.delay_s > 0) {
    if (c.kind_of_expiry == expiry_kind::memcached && c.delay_s > memcached_max_relative_s)
      deadline = seconds_to_ms(c.delay_s);
    else
      deadline = saturating_add(now, seconds_to_ms(c.delay_s));
  }
  if (deadline <= now) {
    // Everything stored so far dies now. Dropping it at once is equivalent for every reader
    // and frees the memory; items written by later entries are unaffected even if they carry
    // the same timestamp. A pending delayed flush is replaced, as in memcached.
    erase_all();
    flush_at_ms_ = 0;
  } else {
    flush_at_ms_ = deadline;
  }
  return outcome(status::ok);
}

void store::apply_due_flush(std::int64_t now_ms) {
  if (flush_at_ms_ == 0 || now_ms < flush_at_ms_) return;
  // Collected first: erasing reshapes the tree under a cursor.
  std::vector<item*> victims;
  items_.for_each([&](item& it) {
    if (it.written_at_ms <= flush_at_ms_) victims.push_back(&it);
  });
  for (item* it : victims) erase_item(it);
  flush_at_ms_ = 0;
}

void store::purge(std::int64_t now_ms) {
  while (!items_.by_expiry().empty() && items_.by_expiry().begin()->first <= now_ms)
    erase_item(const_cast<item*>(items_.by_expiry().begin()->second));  // drops the entry
}

// ---------------------------------------------------------------------------------------
// Item bookkeeping: every change of items_ goes through these so that stats_.bytes,
// stats_.curr_items and the expiry index stay exact.

bool store::dead(const item& it, std::int64_t now_ms) const {
  if (it.expires_at_ms != 0 && it.expires_at_ms <= now_ms) return true;
  return flush_at_ms_ != 0 && now_ms >= flush_at_ms_ && it.written_at_ms <= flush_at_ms_;
}

bool store::over_quota(std::uint64_t old_bytes, std::uint64_t new_bytes) const {
  // Only growth is refused: a write that shrinks or keeps the footprint always goes ahead,
  // even if the store is already above a (since lowered) quota.
  if (new_bytes <= old_bytes) return false;
  return stats_.bytes - old_bytes + new_bytes > limits_.max_memory_bytes;
}

void store::write_item(item* old, item* fresh) {
  if (old != nullptr) {
    stats_.bytes -= accounted(old->key_bytes, old->value_bytes);
    items_.replace(old, fresh);
  } else {
    items_.insert(fresh);
    ++stats_.curr_items;
  }
  stats_.bytes += accounted(fresh->key_bytes, fresh->value_bytes);
}

void store::erase_item(item* it) {
  stats_.bytes -= accounted(it->key_bytes, it->value_bytes);
  --stats_.curr_items;
  items_.erase(it);
}

void store::erase_all() {
  items_.clear();
  stats_.bytes = 0;
  stats_.curr_items = 0;
}

// ---------------------------------------------------------------------------------------
// Reads

std::optional<item_view> store::find(std::string_view key, std::int64_t now_ms) const {
  const item* it = items_.lookup(key);
  if (it == nullptr || dead(*it, now_ms)) return std::nullopt;
  return view_of(*it);
}

miss_kind store::why_missing(std::string_view key, std::int64_t now_ms) const {
  const item* it = items_.find(key);
  if (it == nullptr) return miss_kind::absent;
  if (flush_at_ms_ != 0 && now_ms >= flush_at_ms_ && it->written_at_ms <= flush_at_ms_)
    return miss_kind::flushed;
  if (it->expires_at_ms != 0 && it->expires_at_ms <= now_ms) return miss_kind::expired;
  return miss_kind::absent;  // live: not a miss at all
}

item_view store::view_of(const item& it) {
  return item_view{std::string(it.value()), it.flags, it.version, it.expires_at_ms, it.meta};
}

std::vector<key_info> store::list(std::string_view prefix, std::string_view after,
                                  std::size_t limit, std::int64_t now_ms) const {
  std::vector<key_info> out;
  if (limit == 0) return out;
  // From the later of "first key >= prefix" and "first key > after".
  auto pos =
      !after.empty() && after >= prefix ? items_.seek(after, false) : items_.seek(prefix, true);
  for (; pos.get() != nullptr && out.size() < limit; pos.next()) {
    const item& it = *pos.get();
    if (!it.key().starts_with(prefix)) break;
    if (dead(it, now_ms)) continue;
    out.push_back(key_info{std::string(it.key()), it.version, it.value_bytes, it.expires_at_ms});
  }
  return out;
}

std::vector<std::string> store::expired_keys(std::int64_t now_ms, std::size_t limit) const {
  std::vector<std::string> out;
  if (flush_at_ms_ != 0 && now_ms >= flush_at_ms_) {
    // A due flush may kill items without an expiry: look at everything.
    for (auto pos = items_.begin(); pos.get() != nullptr && out.size() < limit; pos.next())
      if (dead(*pos.get(), now_ms)) out.emplace_back(pos.get()->key());
    return out;
  }
  for (const auto& [at, it] : items_.by_expiry()) {
    if (out.size() >= limit || at > now_ms) break;
    out.emplace_back(it->key());
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// At-most-once

std::optional<result> store::dedup_lookup(const request_id& id, std::uint64_t index) {
  auto found = clients_.find(id.client);
  if (found == clients_.end()) return std::nullopt;
  client_window& w = found->second;
  touch_client(w, id.client, index);
  if (const remembered* r = w.results.find(id.seq)) return r->outcome;
  // Older than the window: it may have been applied and forgotten. Applying it again could
  // apply it twice, so it is not applied, and the answer says that its outcome is unknown
  // (not that the command was bad: the first attempt may well have succeeded).
  if (id.seq <= w.floor_seq) return outcome(status::outcome_unknown);
  return std::nullopt;
}

void store::remember(const request_id& id, std::uint64_t index, const result& r) {
  auto [found, inserted] = clients_.try_emplace(id.client);
  if (inserted && clients_.size() > dedup_max_clients) {
    // Evict the client seen least recently (its last log index is the smallest).
    const std::uint64_t victim = least_recent_client();
    auto v = clients_.find(victim);
    for (std::size_t i = 0; i < v->second.results.size(); ++i) {
      const remembered& rem = v->second.results[i];
      if (rem.outcome.item) {
        remembered_items_.erase(rem.index);
        remembered_item_bytes_ -= rem.outcome.item->value.size();
      }
    }
    clients_by_age_.erase({v->second.last_index, victim});
    clients_.erase(v);
  }
  client_window& w = found->second;
  touch_client(w, id.client, index);  // usually done already, by dedup_lookup for this index

  if (w.results.size() >= dedup_window_per_client) {
    if (w.results.front().seq > id.seq) {
      // Older than every result of a full window: it would be the one to make room, so it
      // is forgotten at once (the window is unchanged; its seq now counts as forgotten).
      w.floor_seq = std::max(w.floor_seq, id.seq);
      return;
    }
    forget(w, 0);  // the oldest result makes room
  }
  w.results.insert(remembered{id.seq, index, r});
  if (r.item) {
    remembered_items_.emplace(index, std::pair{id.client, id.seq});
    remembered_item_bytes_ += r.item->value.size();
  }
  while (remembered_item_bytes_ > dedup_max_item_bytes) {
    const auto [client, seq] = remembered_items_.begin()->second;
    client_window& owner = clients_.find(client)->second;
    forget(owner, owner.results.lower_bound(seq));
  }
}

void store::touch_client(client_window& w, std::uint64_t client, std::uint64_t index) {
  // A new client (last_index 0, never a log index) gets its entry in the age order; a known
  // one's entry is left where it is (see clients_by_age_).
  if (w.last_index == 0) clients_by_age_.emplace(index, client);
  w.last_index = index;
}

std::uint64_t store::least_recent_client() {
  for (;;) {
    const auto oldest = clients_by_age_.begin();
    const auto [index, client] = *oldest;
    const std::uint64_t last = clients_.find(client)->second.last_index;
    if (last == index) return client;
    clients_by_age_.erase(oldest);  // out of date: moved to where it belongs, and on
    clients_by_age_.emplace(last, client);
  }
}

void store::forget(client_window& w, std::size_t pos) {
  const remembered& rem = w.results[pos];
  w.floor_seq = std::max(w.floor_seq, rem.seq);
  if (rem.outcome.item) {
    remembered_items_.erase(rem.index);
    remembered_item_bytes_ -= rem.outcome.item->value.size();
  }
  w.results.erase(pos);
}

// ---------------------------------------------------------------------------------------
// Snapshots

std::string store::snapshot() const {
  std::string all;
  all.reserve(64 + stats_.bytes);
  snapshot_to([&all](std::string_view chunk) {
    all.append(chunk);
    return true;
  });
  return all;
}

bool store::snapshot_to(const std::function<bool(std::string_view)>& sink) const {
  // Serialised into a bounded buffer handed to `sink` whenever it fills, with the trailer's
  // CRC carried across chunks: the bytes are exactly those of one contiguous snapshot, and
  // memory stays flat whatever the store's size (this runs in a forked child too, where
  // every page it touches beyond the parent's is extra RSS).
  constexpr std::size_t chunk_bytes = 1 << 20;
  std::string out;
  out.reserve(chunk_bytes + 4096);
  std::uint32_t crc = 0;
  bool ok = true;
  const auto flush = [&] {
    if (!ok || out.empty()) return;
    crc = base::crc32c(out, crc);
    ok = sink(out);
    out.clear();
  };
  base::byte_writer w(out);
  out.append(snapshot_magic);
  // Format 3 only when some item carries meta marks, so a store that never saw a meta
  // command writes the same bytes as before (the format still follows from the state).
  bool with_meta = false;
  for (auto pos = items_.begin(); pos.get() != nullptr && !with_meta; pos.next())
    with_meta = pos.get()->meta != 0;
  w.u8(with_meta ? snapshot_format : snapshot_format_without_meta);
  w.u64(applied_index_);
  w.i64(flush_at_ms_);
  for (auto field : stat_fields) w.u64(stats_.*field);
  w.varint(items_.size());
  for (auto pos = items_.begin(); pos.get() != nullptr; pos.next()) {
    const item& it = *pos.get();
    w.bytes(it.key());
    w.bytes(it.value());
    w.u32(it.flags);
    w.u64(it.version);
    w.i64(it.expires_at_ms);
    w.i64(it.written_at_ms);
    if (with_meta) w.u8(it.meta);
    if (out.size() >= chunk_bytes) flush();
    if (!ok) return false;
  }
  w.varint(clients_.size());
  for (const auto& [client, cw] : clients_) {
    w.u64(client);
    w.u64(cw.last_index);
    w.u64(cw.floor_seq);
    w.varint(cw.results.size());
    for (std::size_t i = 0; i < cw.results.size(); ++i) {
      const remembered& rem = cw.results[i];
      w.u64(rem.seq);
      w.u64(rem.index);
      w.bytes(encode(rem.outcome));
    }
    if (out.size() >= chunk_bytes) flush();
    if (!ok) return false;
  }
  w.u8((configured_ ? limits_configured : 0) | (memory_quota_ ? limits_quota : 0));
  if (configured_) out += encode_limits(*configured_);
  if (memory_quota_) w.u64(*memory_quota_);
  flush();
  if (!ok) return false;
  w.u32(crc);
  return sink(out);
}

bool store::restore(std::string_view bytes) {
  if (bytes.size() < snapshot_magic.size() + 1 + 4) return false;
  const std::string_view body = bytes.substr(0, bytes.size() - 4);
  {
    base::byte_reader trailer(bytes.substr(bytes.size() - 4));
    if (trailer.u32() != base::crc32c(body)) return false;
  }
  if (!body.starts_with(snapshot_magic)) return false;
  base::byte_reader r(body.substr(snapshot_magic.size()));

  // Build the new state aside; *this changes only once everything checked out.
  store fresh(local_);
  const auto format = r.u8();
  if (format != snapshot_format && format != snapshot_format_without_meta &&
      format != snapshot_format_without_limits)
    return false;
  auto applied = r.u64();
  auto flush_at = r.i64();
  if (!applied || !flush_at) return false;
  fresh.applied_index_ = *applied;
  fresh.flush_at_ms_ = *flush_at;
  store_stats stats;
  for (auto field : stat_fields) {
    auto v = r.u64();
    if (!v) return false;
    stats.*field = *v;
  }

  auto n_items = r.varint();
  if (!n_items) return false;
  const item* previous = nullptr;
  for (std::uint64_t i = 0; i < *n_items; ++i) {
    auto key = r.bytes();
    auto value = key ? r.bytes() : std::nullopt;
    auto flags = value ? r.u32() : std::nullopt;
    auto version = flags ? r.u64() : std::nullopt;
    auto expires = version ? r.i64() : std::nullopt;
    auto written = expires ? r.i64() : std::nullopt;
    if (!written) return false;
    std::uint8_t meta = 0;
    if (format == snapshot_format) {
      auto m = r.u8();
      if (!m || (*m & ~(item_stale | item_token_sent | item_key_binary)) != 0) return false;
      meta = *m;
    }
    // Strictly increasing keys: one encoding per state, and appending at the end is cheap.
    if (previous != nullptr && !(previous->key() < *key)) return false;
    if (key->size() > item::max_bytes || value->size() > item::max_bytes) return false;
    item* it = item::make(*key, *value);
    it->flags = *flags;
    it->version = *version;
    it->expires_at_ms = *expires;
    it->written_at_ms = *written;
    it->meta = meta;
    fresh.items_.append_greatest(it);
    previous = it;
  }

  auto n_clients = r.varint();
  if (!n_clients || *n_clients > dedup_max_clients) return false;
  for (std::uint64_t i = 0; i < *n_clients; ++i) {
    auto client = r.u64();
    auto last_index = client ? r.u64() : std::nullopt;
    auto floor_seq = last_index ? r.u64() : std::nullopt;
    auto n_results = floor_seq ? r.varint() : std::nullopt;
    if (!n_results || *client == 0 || *n_results > dedup_window_per_client) return false;
    if (!fresh.clients_.empty() && !(fresh.clients_.rbegin()->first < *client)) return false;
    client_window cw;
    cw.last_index = *last_index;
    cw.floor_seq = *floor_seq;
    for (std::uint64_t j = 0; j < *n_results; ++j) {
      auto seq = r.u64();
      auto index = seq ? r.u64() : std::nullopt;
      auto encoded = index ? r.bytes() : std::nullopt;
      if (!encoded) return false;
      auto outcome = decode_result(*encoded);
      if (!outcome) return false;
      if (!cw.results.empty() && !(cw.results.back().seq < *seq)) return false;
      cw.results.insert(remembered{*seq, *index, std::move(*outcome)});
    }
    fresh.clients_.emplace_hint(fresh.clients_.end(), *client, std::move(cw));
  }
  if (format != snapshot_format_without_limits) {
    const auto replicated = r.u8();
    if (!replicated || (*replicated & ~(limits_configured | limits_quota)) != 0) return false;
    if ((*replicated & limits_configured) != 0) {
      const std::string_view rest = body.substr(body.size() - r.remaining());
      if (rest.size() < limits_payload_bytes) return false;
      auto limits = decode_limits(rest.substr(0, limits_payload_bytes));
      if (!limits) return false;
      for (int i = 0; i < 3; ++i) r.u64();  // the payload just decoded
      fresh.configured_ = *limits;
    }
    if ((*replicated & limits_quota) != 0) {
      const auto quota = r.u64();
      if (!quota || *quota == 0) return false;
      fresh.memory_quota_ = *quota;
    }
    fresh.refresh_limits();
  }
  if (!r.at_end()) return false;

  fresh.rebuild_indexes();
  // The counters that follow from the items must agree with them.
  if (fresh.stats_.curr_items != stats.curr_items || fresh.stats_.bytes != stats.bytes)
    return false;
  // Each log index carries one request: the derived orders must not have collapsed entries.
  std::size_t with_item = 0;
  for (const auto& [client, cw] : fresh.clients_)
    for (std::size_t j = 0; j < cw.results.size(); ++j)
      with_item += cw.results[j].outcome.item ? 1 : 0;
  if (fresh.clients_by_age_.size() != fresh.clients_.size() ||
      fresh.remembered_items_.size() != with_item)
    return false;
  fresh.stats_ = stats;
  *this = std::move(fresh);
  return true;
}

std::optional<command> limits_command_if_needed(const store& s, const store_options& local) {
  if (s.configured_limits() == local) return std::nullopt;
  return set_limits_command(local, limits_from_config);
}

void store::rebuild_indexes() {
  stats_.curr_items = items_.size();
  stats_.bytes = 0;
  // (The expiry index is kept by items_ itself.)
  items_.for_each(
      [this](const item& it) { stats_.bytes += accounted(it.key_bytes, it.value_bytes); });
  clients_by_age_.clear();
  remembered_items_.clear();
  remembered_item_bytes_ = 0;
  for (const auto& [client, cw] : clients_) {
    clients_by_age_.emplace(cw.last_index, client);
    for (std::size_t i = 0; i < cw.results.size(); ++i) {
      const remembered& rem = cw.results[i];
      if (!rem.outcome.item) continue;
      remembered_items_.emplace(rem.index, std::pair{client, rem.seq});
      remembered_item_bytes_ += rem.outcome.item->value.size();
    }
  }
}

}  // namespace kv
