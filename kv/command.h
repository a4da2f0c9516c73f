// The replicated write commands of raftkv and their results.
//
// Every write from every door (memcached, CS733, HTTP) becomes one kv::command, encoded
// into a compact binary form and carried by one Raft log entry. The state machine applies
// the decoded command with the entry's index (which becomes the item version) and the
// leader's timestamp (which is "now" for expiry), so every replica computes the same result.
//
// Results are encoded too: a follower forwards a command to the leader and relays the
// encoded result back to its client.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace kv {

enum class op : std::uint8_t {
  set = 1,        // store unconditionally
  add,            // store only if absent
  replace,        // store only if present
  append,         // value = old + new; flags and expiry kept
  prepend,        // value = new + old; flags and expiry kept
  cas,            // store only if present and its version == cas_unique
  remove,         // delete (memcached `delete`, CS733 `delete`, HTTP DELETE)
  incr,           // decimal add with wrap at 2^64
  decr,           // decimal subtract, floor at 0
  touch,          // change expiry only; version kept
  get_and_touch,  // memcached gat/gats: touch and return the item
  flush_all,      // invalidate every item stored before now + delay_s
  purge_expired,  // leader-proposed reclamation of expired items' memory
  set_limits,     // leader-proposed: adopt the limits in `value` (see encode_limits)
  // The memcached meta commands that need more than the ops above (see "Meta commands").
  meta_get,     // mg with T, N or R, or on a stale item: touch / vivify / win a recache
  meta_delete,  // md: delete, compare cas, or (I) mark stale
  meta_arith,   // ma: incr/decr with compare cas, vivify on miss, new TTL
};

// Meta commands (memcached mg/ms/md/ma). The stale-while-revalidate state they use lives
// in the item (item_view::meta bits) and changes only through the log, so every replica
// agrees. The command fields carry their arguments as follows (the binary format is the
// one of every command; these fields are otherwise unused by these ops):
//  - storage ops (ms): delta bit meta_key_binary = the key was sent base64 (`b`), bit
//    meta_invalidate = `I` (with op::cas: a cas older than the item's stores the value
//    marked stale instead of failing; a cas of 0 never does); append/prepend with cas_unique != 0
//    store only if it equals the item's version (`C`).
//  - meta_get: flags bits meta_has_ttl (`T`, exptime), meta_vivify (`N`, delay_s = its
//    TTL; meta_vivify_after_ttl: N came after T, so on a vivified item N's TTL is the
//    final one), meta_recache (`R`, cas_unique = its TTL as two's complement;
//    meta_recache_after_ttl: R came after T, so it judges the new TTL). The result
//    is status::item with the item after the command (number bits meta_won: this request
//    won the recache token, `W`; meta_created: vivified now; version: the item's expiry
//    before the command, two's complement, for `t` shown ahead of `T`) or not_found.
//  - meta_delete: flags bits meta_has_cas (cas_unique compared, 0 included),
//    meta_invalidate (mark stale and take a new version instead of deleting),
//    meta_has_ttl (with invalidate: new exptime). Result deleted / not_found / exists.
//  - meta_arith: delta, flags bits meta_decr, meta_has_cas (cas_unique compared when
//    non-zero, as memcached does), meta_has_ttl (exptime), meta_vivify (delay_s = TTL;
//    value = the initial value in decimal). Result number (+ item; stored when N created
//    it) / not_found / exists / non_numeric / out_of_memory.
inline constexpr std::uint64_t meta_key_binary = 1;
inline constexpr std::uint64_t meta_invalidate = 2;
inline constexpr std::uint32_t meta_has_ttl = 1;
inline constexpr std::uint32_t meta_vivify = 2;
inline constexpr std::uint32_t meta_recache = 4;
inline constexpr std::uint32_t meta_has_cas = 8;
inline constexpr std::uint32_t meta_stale_flag = 16;  // meta_delete: I
inline constexpr std::uint32_t meta_decr = 32;
inline constexpr std::uint32_t meta_vivify_after_ttl = 64;    // meta_get: N came after T
inline constexpr std::uint32_t meta_recache_after_ttl = 128;  // meta_get: R came after T
inline constexpr std::uint64_t meta_won = 1;                  // meta_get result.number bits
inline constexpr std::uint64_t meta_created = 2;

// item_view::meta bits.
inline constexpr std::uint8_t item_stale = 1;       // invalidated (md I / ms I): mg shows X
inline constexpr std::uint8_t item_token_sent = 2;  // a recache token was handed out: Z
inline constexpr std::uint8_t item_key_binary = 4;  // stored by ms with a base64 key

// The limits that decide the outcome of an apply (too_large, out_of_memory). They are part
// of the replicated state: a node's configured values are only what its store starts with
// and what it proposes (op::set_limits) when it leads, so replicas whose config files
// differ still make the same decisions (docs/semantics.md).
struct store_options {
  std::size_t max_key_bytes = 250;
  std::size_t max_value_bytes = 1048576;
  std::uint64_t max_memory_bytes = 1024ull << 20;  // quota for keys + values + overhead

  bool operator==(const store_options&) const = default;
};

// How `exptime` is to be read.
enum class expiry_kind : std::uint8_t {
  memcached = 0,  // 0 never; 1..2592000 relative seconds; larger = absolute Unix time;
                  // negative = already expired
  relative = 1,   // CS733 and HTTP ttl: always relative seconds, 0 = never
};

// Identifies a client request so that a forwarded or retried write applies at most once.
// client = 0 means "no id" (not deduplicated).
struct request_id {
  std::uint64_t client = 0;  // unique per (node, boot) or per remote client
  std::uint64_t seq = 0;     // increases per request of that client

  bool operator==(const request_id&) const = default;
};

// A command's fields. Bytes is std::string for a `command`, which owns its key and value,
// or std::string_view for a `command_view`, which points into bytes that outlive it (an
// encoded command in the log, or a command): applying an entry and stamping a proposal
// read the fields in place instead of copying the value out first.
template <typename Bytes>
struct basic_command {
  op kind = op::set;
  Bytes key;                 // 1..max_key_bytes, no space, CR, LF or NUL
  Bytes value;               // data block for storage commands
  std::uint32_t flags = 0;   // opaque client flags
  std::int64_t exptime = 0;  // see kind_of_expiry
  expiry_kind kind_of_expiry = expiry_kind::memcached;
  std::uint64_t cas_unique = 0;   // for op::cas (0 never matches); for remove: 0 = any
  std::uint64_t delta = 0;        // incr/decr amount
  std::int64_t delay_s = 0;       // flush_all delay
  std::int64_t timestamp_ms = 0;  // leader wall clock (Unix ms), stamped at propose
  request_id id;                  // at-most-once identity (client 0 = none)

  basic_command() = default;
  // The other kind: a view of a command is implicit (a function that reads a command takes
  // a command_view); an owning copy of a view is explicit (it copies key and value).
  template <typename Other>
    requires(!std::is_same_v<Bytes, Other>)
  explicit(!std::is_same_v<Bytes, std::string_view>)
      basic_command(const basic_command<Other>& c)  // NOLINT: implicit for views by design
      : kind(c.kind), key(c.key), value(c.value), flags(c.flags), exptime(c.exptime),
        kind_of_expiry(c.kind_of_expiry), cas_unique(c.cas_unique), delta(c.delta),
        delay_s(c.delay_s), timestamp_ms(c.timestamp_ms), id(c.id) {}

  bool operator==(const basic_command&) const = default;
};
using command = basic_command<std::string>;
using command_view = basic_command<std::string_view>;

// An owning copy of a view.
command to_command(const command_view& c);

// The outcome of applying one command.
enum class status : std::uint8_t {
  stored = 1,       // set/add/replace/append/prepend/cas succeeded
  not_stored,       // add on present, replace/append/prepend on absent
  exists,           // cas version mismatch (memcached EXISTS, CS733 ERR_VERSION, HTTP 412)
  not_found,        // key absent or expired
  deleted,          // remove succeeded
  touched,          // touch succeeded
  number,           // incr/decr succeeded; result.number holds the new value
  item,             // get_and_touch hit; result.item holds the item
  ok,               // flush_all, purge_expired
  non_numeric,      // incr/decr on a value that is not a decimal u64
  too_large,        // value over max_value_bytes
  out_of_memory,    // the write would take the store over its memory quota
  bad_command,      // the command could not be decoded or is invalid
  outcome_unknown,  // a retry older than the at-most-once window: it may or may not have
                    // been applied earlier, and it was not applied now (memcached
                    // SERVER_ERROR ... outcome unknown, CS733 ERR_INTERNAL, HTTP 504)
};

// An item as returned by reads and by get_and_touch.
// Why a read found no live item under a key (memcached's get_flushed / get_expired
// counters): an item still held but invalidated by flush_all, one past its expiry, or none.
// A flushed item that has also expired counts as flushed, as memcached checks that first.
enum class miss_kind : std::uint8_t { absent, expired, flushed };

struct item_view {
  std::string value;
  std::uint32_t flags = 0;
  std::uint64_t version = 0;       // log index of the write that set value/flags (= cas unique)
  std::int64_t expires_at_ms = 0;  // Unix ms; 0 = never
  std::uint8_t meta = 0;           // item_stale | item_token_sent | item_key_binary

  bool operator==(const item_view&) const = default;
};

struct result {
  status code = status::ok;
  std::uint64_t version = 0;      // version of the item written (stored), else 0
  std::uint64_t number = 0;       // incr/decr new value
  std::optional<item_view> item;  // get_and_touch

  bool operator==(const result&) const = default;
};

// Binary encodings (little-endian, versioned). decode_* return nullopt on any malformed
// input, never read out of bounds, and never allocate more than the input size implies.
std::string encode(const command_view& c);
// Appends the same bytes to `out` (whose capacity a caller can keep from call to call).
void encode_to(const command_view& c, std::string& out);
std::optional<command> decode_command(std::string_view bytes);
// The same checks; the view's key and value point into `bytes`.
std::optional<command_view> decode_command_view(std::string_view bytes);
std::string encode(const result& r);
std::optional<result> decode_result(std::string_view bytes);

// The payload of op::set_limits: max_key_bytes, max_value_bytes and max_memory_bytes as
// three u64 little-endian. decode_limits accepts exactly that, with every limit non-zero.
std::string encode_limits(const store_options& limits);
std::optional<store_options> decode_limits(std::string_view bytes);
// A set_limits command carrying `limits` (no key, no timestamp, no request id) and one of
// the flags below, which say what the entry means (kv/store.h, "Limits").
command set_limits_command(const store_options& limits, std::uint32_t flags);
// A leader's configured [limits] (limits_command_if_needed). They become the cluster's
// configured limits unless these are already the same; the memory quota that a client set
// (limits_memory_quota) stays, unless the configured max_memory_bytes itself changed.
inline constexpr std::uint32_t limits_from_config = 2;
// A client's `cache_memlimit`: only max_memory_bytes counts. It sets the memory quota in
// force until a leader's configured max_memory_bytes changes.
inline constexpr std::uint32_t limits_memory_quota = 4;
// Written by earlier versions and still applied as they were: with no flag, adopt all three
// limits (their `cache_memlimit`); with limits_if_unset, adopt them only while the store has
// no replicated limits (their leader's first proposal).
inline constexpr std::uint32_t limits_absolute = 0;
inline constexpr std::uint32_t limits_if_unset = 1;

}  // namespace kv
