// The wire format between raftkv nodes: length-prefixed, versioned, checksummed frames.
//
// Pure code (standard library only): the transport reads bytes from a socket and hands them
// here; nothing in this file does I/O, so every decoder can be fed arbitrary bytes in tests.
//
// One frame, all integers little-endian:
//
//   offset size  field
//   0      4     magic "RKVP" (bytes 'R' 'K' 'V' 'P')
//   4      1     version (frame_version; a node refuses any other)
//   5      1     kind (frame_kind)
//   6      1     flags (frame_flags; unknown bits are an error)
//   7      1     reserved, must be 0
//   8      8     cluster id (the id every member persisted at bootstrap; app/cluster_id.h)
//   16     8     sender node id
//   24     8     receiver node id
//   32     8     receiver incarnation: 0 = any life of the receiver; else the frame is meant
//                for that life only and any other life drops it
//   40     4     payload length in bytes (<= the reader's max_frame_bytes)
//   44     n     payload (opaque to this layer; e.g. an encoded Raft message)
//   44+n   4     CRC32C (base/crc32c.h) of bytes [0, 44+n)
//
// The hello's payload is the sender's incarnation (u64, never 0): a number drawn at random
// by each process for its transport, so that a peer can tell a restarted node from one that
// merely reconnected; then the sender's data-dir generation (u64, never 0): a number drawn
// once when the sender's data dir was first initialised and kept in it (app/generation.h),
// so that a peer can tell a node that kept its Raft state from one that lost it (the
// amnesia guard, net/peer/transport.h); then the read lease the sender would hold as leader
// in milliseconds (u64, 0 = none: read leases off), which tells a leader whether the
// sender's acknowledgements may extend its own lease (raft/core.h, "Read leases"). Replies
// (forward_response) carry the incarnation of the node they answer, so a reply queued while that
// node was down never reaches its next life, whose call ids mean other calls.
//
// A `refused` frame tells its receiver that the sender will not take its frames; payload:
// u8 reason (refusal_reason), u64 the receiver's generation as the sender recorded it, u64
// the generation the receiver announced. It is written on the sender's outbound connection.
//
// Version history: 1 had no receiver incarnation (header of 36 bytes) and an empty hello.
// 2 added the receiver incarnation; its hello carried the incarnation only (8 bytes). 3 adds
// the generation to the hello (16 bytes) and the `refused` kind. 4 adds the read lease to
// the hello (24 bytes). Versions refuse each other's frames (bad_version), so a cluster
// moves from one to the next by stopping every node, upgrading and starting again.
//
// A large message is split by the sender into fragment frames (see frame_flags); the
// fragments and every other frame to the same peer are written in send order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "net/service_types.h"
#include "raft/types.h"

namespace net {

inline constexpr std::uint8_t frame_version = 4;
inline constexpr std::size_t frame_header_bytes = 44;
// The hello's payload: the sender's incarnation, data-dir generation and read lease.
inline constexpr std::size_t hello_payload_bytes = 24;
// The refused frame's payload: reason, recorded generation, announced generation.
inline constexpr std::size_t refused_payload_bytes = 17;
inline constexpr std::size_t frame_trailer_bytes = 4;
inline constexpr std::size_t frame_overhead_bytes = frame_header_bytes + frame_trailer_bytes;
// Default bound on one frame's payload and on one reassembled message (config
// max_frame_bytes); a peer announcing more is cut off before its payload is buffered.
inline constexpr std::size_t default_max_frame_bytes = std::size_t{64} << 20;

enum class frame_kind : std::uint8_t {
  hello = 1,             // first frame on every connection: announces cluster, sender,
                         // receiver; payload: the sender's incarnation and generation
  raft_message = 2,      // payload: one encoded Raft message
  forward_request = 3,   // payload: encode(forward_request)
  forward_response = 4,  // payload: encode(forward_response)
  refused = 5,           // payload: encode(refusal); the sender takes no frame of the receiver
};
inline constexpr std::uint8_t max_frame_kind = 5;

std::string_view to_string(frame_kind k);

// Flag bits. A frame without `fragment` carries a whole message. A large message is sent as
// a run of fragment frames of the same kind on one connection: the first has `first`, the
// last has `last` (a one-fragment message has both). A sender that abandons a message simply
// starts the next one with `first`. (The transport writes a run without other frames between
// its fragments, so that messages arrive in send order; a reader still accepts whole frames
// between fragments.)
namespace frame_flags {
inline constexpr std::uint8_t fragment = 0x01;
inline constexpr std::uint8_t first = 0x02;
inline constexpr std::uint8_t last = 0x04;
inline constexpr std::uint8_t all = fragment | first | last;
}  // namespace frame_flags

// Everything in a frame but its payload and checksum.
struct frame_header {
  frame_kind kind = frame_kind::hello;
  std::uint8_t flags = 0;            // frame_flags bits; first/last only with fragment
  std::uint64_t cluster_id = 0;      // must equal the receiver's cluster id
  raft::node_id from;                // sender; must be a member other than the receiver
  raft::node_id to;                  // receiver; must be the receiving node
  std::uint64_t to_incarnation = 0;  // 0, or the receiver's incarnation the frame is meant for

  bool operator==(const frame_header&) const = default;
};

// A decoded frame. payload views the buffer given to decode_frame.
struct frame {
  frame_header header;
  std::string_view payload;
};

enum class frame_error : std::uint8_t {
  bad_magic = 1,  // not a raftkv peer stream (or it lost sync)
  bad_version,    // a node speaking another frame version
  bad_kind,       // unknown frame kind
  bad_flags,      // unknown flag bits, reserved byte set, or first/last without fragment
  oversize,       // payload length over max_frame_bytes
  bad_checksum,   // CRC32C mismatch: corrupted in transit or not a frame
};

std::string_view to_string(frame_error e);

// The buffer holds only part of a frame; at least `total_bytes` are needed (the whole frame
// once the header is in, else the header).
struct need_more {
  std::size_t total_bytes = 0;
};

struct decoded_frame {
  frame value;
  std::size_t consumed = 0;  // bytes of the buffer this frame occupied
};

using decode_outcome = std::variant<need_more, decoded_frame, frame_error>;

// Decodes the frame at the start of `bytes`. Never reads past bytes.size(); reports
// oversize from the header alone, so a reader never buffers more than max_payload_bytes
// plus the frame overhead for one frame.
decode_outcome decode_frame(std::string_view bytes,
                            std::size_t max_payload_bytes = default_max_frame_bytes);

// Appends one encoded frame to out. The caller keeps payload within the receiver's bound.
void append_frame(std::string& out, const frame_header& h, std::string_view payload);
std::string encode_frame(const frame_header& h, std::string_view payload);

// --- The forwarding protocol -----------------------------------------------------------
// A follower that receives a client request it cannot serve itself sends it to the leader
// in a forward_request frame and relays the forward_response with the same call id.

enum class forward_op : std::uint8_t {
  write = 1,          // body: kv::encode(command); response body: kv::encode(result)
  read_barrier = 2,   // body empty; response body empty (the error says whether it passed)
  config_change = 3,  // body: raft::encode_change; response body: raft::encode_outcome
  members_view = 4,   // body empty; response body: encode_members_view (the leader's view)
};

struct forward_request {
  std::uint64_t call_id = 0;  // chosen by the follower, unique among its open calls
  forward_op op = forward_op::write;
  std::string body;  // meaning depends on op

  bool operator==(const forward_request&) const = default;
};

struct forward_response {
  std::uint64_t call_id = 0;                  // the request's call id
  service_error error = service_error::none;  // none: body holds the result
  std::string body;

  bool operator==(const forward_response&) const = default;
};

std::string encode(const forward_request& r);
std::string encode(const forward_response& r);
// nullopt on any malformed input (short, unknown op or error code).
std::optional<forward_request> decode_forward_request(std::string_view bytes);
std::optional<forward_response> decode_forward_response(std::string_view bytes);

// forward_op::members_view's answer: the configuration as the leader sees it, with each
// member's progress (what only the leader knows), so that GET /v1/members on a follower shows
// what it shows on the leader. Carries config_index, change_in_progress, leader_id and, per
// member, its address, voter, caught_up and match_index; decode leaves the rest of
// node_status at its defaults. decode: nullopt on any malformed input.
std::string encode_members_view(const node_status& s);
std::optional<node_status> decode_members_view(std::string_view bytes);

// The hello's payload. decode_hello: nullopt unless exactly hello_payload_bytes holding a
// non-zero incarnation, a non-zero generation and a read lease below 2^63.
struct hello {
  std::uint64_t incarnation = 0;  // the sender's process life
  std::uint64_t generation = 0;   // the sender's data dir (app/generation.h)
  // The read lease the sender would hold as leader, in ms (raft::replica::read_lease_ms());
  // 0: it has read leases off (and then keeps no vote lease across its restarts).
  std::int64_t read_lease_ms = 0;

  bool operator==(const hello&) const = default;
};
std::string encode_hello(const hello& h);
std::optional<hello> decode_hello(std::string_view payload);

// Why a node refuses another's frames.
enum class refusal_reason : std::uint8_t {
  // The receiver announced a generation other than the one the sender recorded for it: its
  // data dir was lost (or replaced) since, and with it the votes and entries it promised.
  lost_data_dir = 1,
};
inline constexpr std::uint8_t max_refusal_reason = 1;

struct refusal {
  refusal_reason reason = refusal_reason::lost_data_dir;
  std::uint64_t recorded_generation = 0;   // what the sender knows the receiver by
  std::uint64_t announced_generation = 0;  // what the receiver announced in its hello

  bool operator==(const refusal&) const = default;
};
std::string encode(const refusal& r);
// nullopt unless exactly refused_payload_bytes with a known reason and non-zero generations.
std::optional<refusal> decode_refusal(std::string_view payload);

}  // namespace net
