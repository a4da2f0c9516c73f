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

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

enum class op : std::uint8_t {
  set = 1,      // store unconditionally
  add,          // store only if absent
  replace,      // store only if present
  append,       // value = old + new; flags and expiry kept
  prepend,      // value = new + old; flags and expiry kept
  cas,          // store only if present and its version == cas_unique
  remove,       // delete (memcached `delete`, CS733 `delete`, HTTP DELETE)
  incr,         // decimal add with wrap at 2^64
  decr,         // decimal subtract, floor at 0
  touch,        // change expiry only; version kept
  get_and_touch,// memcached gat/gats: touch and return the item
  flush_all,    // invalidate every item stored before now + delay_s
  purge_expired // leader-proposed reclamation of expired items' memory
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

struct command {
  op kind = op::set;
  std::string key;                        // <= max_key_bytes, no spaces/control chars
  std::string value;                      // data block for storage commands
  std::uint32_t flags = 0;                // opaque client flags
  std::int64_t exptime = 0;               // see kind_of_expiry
  expiry_kind kind_of_expiry = expiry_kind::memcached;
  std::uint64_t cas_unique = 0;           // for op::cas (0 never matches); for remove: 0 = any
  std::uint64_t delta = 0;                // incr/decr amount
  std::int64_t delay_s = 0;               // flush_all delay
  std::int64_t timestamp_ms = 0;          // leader wall clock (Unix ms), stamped at propose
  request_id id;                          // at-most-once identity (client 0 = none)

  bool operator==(const command&) const = default;
};

// The outcome of applying one command.
enum class status : std::uint8_t {
  stored = 1,      // set/add/replace/append/prepend/cas succeeded
  not_stored,      // add on present, replace/append/prepend on absent
  exists,          // cas version mismatch (memcached EXISTS, CS733 ERR_VERSION, HTTP 412)
  not_found,       // key absent or expired
  deleted,         // remove succeeded
  touched,         // touch succeeded
  number,          // incr/decr succeeded; result.number holds the new value
  item,            // get_and_touch hit; result.item holds the item
  ok,              // flush_all, purge_expired
  non_numeric,     // incr/decr on a value that is not a decimal u64
  too_large,       // value over max_value_bytes
  out_of_memory,   // the write would take the store over its memory quota
  bad_command,     // the command could not be decoded or is invalid
};

// An item as returned by reads and by get_and_touch.
struct item_view {
  std::string value;
  std::uint32_t flags = 0;
  std::uint64_t version = 0;     // log index of the write that set value/flags (= cas unique)
  std::int64_t expires_at_ms = 0;// Unix ms; 0 = never

  bool operator==(const item_view&) const = default;
};

struct result {
  status code = status::ok;
  std::uint64_t version = 0;        // version of the item written (stored), else 0
  std::uint64_t number = 0;         // incr/decr new value
  std::optional<item_view> item;    // get_and_touch

  bool operator==(const result&) const = default;
};

// Binary encodings (little-endian, versioned). decode_* return nullopt on any malformed
// input, never read out of bounds, and never allocate more than the input size implies.
std::string encode(const command& c);
std::optional<command> decode_command(std::string_view bytes);
std::string encode(const result& r);
std::optional<result> decode_result(std::string_view bytes);

}  // namespace kv
