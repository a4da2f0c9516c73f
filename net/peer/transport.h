// The peer transport: carries opaque payloads between cluster members over TCP, in frames
// (net/peer/frame.h). It knows nothing about Raft; the node hands it encoded messages.
//
// Shape. Every ordered pair of nodes uses its own connection: node A dials B and only
// writes on it; B only reads. So each node runs one outbound coroutine per peer (dial,
// hello, write) and one inbound coroutine per accepted connection (read, check, deliver).
//
// Delivery is best effort, as Raft expects of its network (paper §5.1: RPCs may be lost,
// delayed, duplicated or reordered; the protocol retries):
// - send() never blocks. Each peer has a bounded outbound queue; when a new message would
//   overflow it, the oldest queued messages are dropped (drop-oldest: newer Raft messages
//   supersede older ones, e.g. a heartbeat carries the latest commit index). Drops are
//   counted in peer_status::frames_dropped.
// - Messages written to a connection that then fails are lost, not retried.
// - One order per peer: the messages to one peer that arrive, arrive in the order sent,
//   whatever their sizes. (A large Raft append overtaken by the small appends sent after it
//   would make the follower reject them all for a gap and the leader fall back to probing.)
// - Large messages (payload > chunk_bytes: big appends, snapshots) are sent as fragment
//   frames of at most chunk_bytes, one fragment per write. The messages queued behind a
//   large one wait until its last fragment is written: a heartbeat may wait behind a
//   snapshot, which is the price of the order above. At most max_bulk_messages large
//   messages wait per peer (drop-oldest too; the one being written is finished first). A
//   large message cut by a lost connection is sent again from its start on the next
//   connection, ahead of everything queued behind it.
// - Outbound frames are gathered: one write carries every queued small frame (up to
//   max_batch_bytes), so many small messages cost one system call.
//
// Incarnations. Each transport draws a random incarnation when it is built (one per process
// life) and announces it in its hellos. A reply (frame_kind::forward_response) is queued
// tagged with the incarnation of its receiver as last announced to us, and written with it
// in the frame header; a node drops a frame tagged with an incarnation other than its own.
// The receiver's call ids start again after a restart, so a reply queued while it was down
// and replayed on reconnect would otherwise answer a call of its next life. When a peer's
// hello announces a new incarnation, the replies still queued for its previous life are
// dropped at once (the receiver's check covers the reconnect that beats that hello). A reply
// sent after the new hello was read is tagged with the new life even if it answers the old
// one: the transport cannot know which call it answers, so the node's call ids must also
// differ across its lives for that narrow case. Raft messages and forward requests are not
// tagged: Raft copes with messages from or to an earlier life, and a request queued by this
// node belongs to this node's current life, so its reply is wanted whichever life of the
// peer answers it.
//
// Identity (docs/config.md): every connection starts with a hello frame. The receiver drops any
// frame whose cluster id is not its own, whose sender is not a member (or is itself), whose
// receiver is not itself, whose sender differs from the connection's hello, or that is meant
// for another incarnation, and logs it at most once per drop_log_interval per (reason,
// sender). A connection whose hello fails these checks, or whose bytes do not decode, is
// closed. Inbound connections are bounded (4 per member, plus 4): beyond that a new one is
// closed at once. "Member" means the current members: the member list given at construction
// is only the first one, and the node replaces it at run time (set_members) whenever the
// replicated configuration changes.
//
// Membership changes (set_members). An added member is dialled at once and its frames are
// accepted from then on. A removed member gets nothing more: its queue is dropped, our
// connection to it closed, send() to it refused, and its frames are refused as from a
// stranger (unknown_sender), those already buffered included; the connections it opened are
// closed. Its peer state lives on, out of the member list, only until its outbound coroutine
// has seen the removal and ended (that coroutine refers to it): a member removed and added
// again starts afresh, with its counters at zero and an empty queue. A member whose address
// changed is dialled at the new address at once (our connection to the old one is closed);
// its queue is kept. Its recorded data-dir generation (below) is kept across all of this: a
// removed id coming back is still the same member to the amnesia guard.
//
// Joining (cluster_id 0 at construction): a node started with `[cluster] state = "join"` and
// an empty data dir does not know its cluster's id until a member contacts it. Until then it
// dials nobody (its hellos could only carry cluster id 0, which every member would count as
// other_cluster; send() queues, and the queue goes out once the id is known), and it drops
// every inbound frame but the hello that opens a connection. The first such hello from a
// current member that passes every other check (receiver, TLS certificate, hello contents,
// data-dir generation) tells the id: options.adopt_cluster_id makes it durable (an error
// closes that connection and the node stays at 0, to try again at the next hello), and from
// then on the node uses and checks that id everywhere as if it had been given it, and dials
// every member. A stranger's hello (not a member) never sets it. Without TLS a process that
// claims a member's id is believed, exactly as it would be by a node that knows the id: the
// cluster id keeps apart clusters that share addresses by mistake, it is not a defence.
//
// Amnesia guard (options.generations; docs/config.md "Data dir"). A node whose data dir was
// lost comes back under its old id with an empty log, term 0 and no vote: it could vote a
// second time in a term, and the entries it acknowledged (counted toward a majority) are
// gone from it. Each data dir has a generation, drawn when it was first initialised
// (app/generation.h), and every hello announces it. The transport remembers, durably, the
// generation each member announced first (options.generations->record, called on the
// io_context before any frame of that hello's connection is delivered: a member is learned
// once per life of the cluster, so one small synchronous fsync then is cheaper than the
// reasoning a window of delivered-but-unrecorded frames would need: a node that counted a
// vote or an acknowledgement of a member always knows, after any crash, which data dir it
// came from). A hello announcing another generation than the recorded one means the
// member lost its data dir, and then:
// - every frame of that connection, the hello included, is dropped (drop reason
//   lost_data_dir, counted in drops()), and the error is logged once per life of the member;
// - nothing but hellos and one `refused` frame (net/peer/frame.h) goes to it: its queued
//   messages are dropped, send() refuses new ones, and our connection to it is closed and
//   dialled again so that the refusal is the first thing after the hello (tagged with the
//   refused life's incarnation, so a later life gets a refusal of its own);
// - a later hello announcing the recorded generation (the data dir restored from a backup)
//   lifts the refusal.
// The refused node decides what to do (app/node.cc: exit if its data dir is new).
// Without options.generations the transport announces a generation drawn per transport and
// checks none (tests and tools that have no data dir).
//
// TLS (options.tls, docs/config.md [tls]): every connection starts with a TLS handshake in
// which both sides present a certificate signed by the cluster CA, and nothing else is read
// or written before it completes (plain TCP to a TLS peer port gets nothing back). The name
// in the certificate binds the connection to one member: the dialler checks that the
// certificate of the node it dialled says "raftkv-node-<that id>"; the acceptor checks that
// the hello claims the id its dialler's certificate names, so the hello's sender, which every
// later frame must repeat, is authenticated. A failed handshake (drop reason tls_refused) or
// a certificate naming another member (wrong_certificate) closes the connection, is logged
// like the other refusals and counted in drops().
// With options.tls->plain (net/peer/tls.h, plain_peers) other than `refuse`, the port also
// takes plain TCP: an accepted connection whose first byte is not a TLS handshake record is
// read as plain frames, with the checks of a transport without TLS. With `dial` this node
// dials plain too. set_tls() can move a running transport between no TLS, `dial`, `accept`
// and `refuse`, one step at a time; the connections the new setting would not make are
// closed (ours are dialled again at once), so after the step every link is as it says.
//
// Threading: everything runs on the io_context given at construction; no method is
// thread-safe; handler and logger are called on that io_context and never after stop().
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "net/peer/frame.h"
#include "net/peer/tls.h"
#include "raft/types.h"

namespace net {

struct peer_transport_options {
  // Bound on one frame's payload and on one reassembled message (config max_frame_bytes).
  std::size_t max_frame_bytes = default_max_frame_bytes;
  // Messages above this size are fragmented; also the largest fragment.
  std::size_t chunk_bytes = std::size_t{1} << 20;
  // Bounds on the small-message queue of one peer (whichever is hit first).
  std::size_t max_queue_frames = 4096;
  std::size_t max_queue_bytes = std::size_t{32} << 20;
  // Large messages waiting per peer, including the one being written; at least 1.
  std::size_t max_bulk_messages = 2;
  // Small frames gathered into one write.
  std::size_t max_batch_bytes = std::size_t{256} << 10;
  // Reconnect delay: doubles after each failed attempt, from initial up to max.
  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{1000};
  std::chrono::milliseconds connect_timeout{1000};
  // A write that makes no progress for this long closes the connection (peer stuck).
  std::chrono::milliseconds write_timeout{10000};
  // Rate limit for "dropped frame" warnings, per (reason, claimed sender).
  std::chrono::milliseconds drop_log_interval{10000};
  // Set: every connection, dialled or accepted, is mutual TLS (net/peer/tls.h); the TLS
  // handshake must finish within connect_timeout. Unset: plain TCP.
  std::optional<peer_tls> tls;

  // The amnesia guard (see the header essay). Unset: no data dir, nothing checked.
  struct generation_guard {
    // This node's data-dir generation, announced in every hello; never 0.
    std::uint64_t own = 0;
    // The generations recorded for other members (from the data dir's record).
    std::map<raft::node_id, std::uint64_t> known;
    // Makes a first-seen generation durable before it is trusted; returns "" or the error
    // (then the connection is closed and the member tried again at its next hello).
    std::function<std::string(raft::node_id, std::uint64_t generation)> record;
  };
  std::optional<generation_guard> generations;

  // Announced in every hello: the read lease this node would hold as leader, in ms (0: read
  // leases off; raft::replica::read_lease_ms()).
  std::int64_t read_lease_ms = 0;
  // Called on the io_context with the read lease a member announced, for every hello
  // accepted, before any other frame of that connection is delivered (raft/core.h, "Read
  // leases": a leader counts a peer's acknowledgements toward its lease only if the peer's
  // lease is at least its own).
  std::function<void(raft::node_id, std::int64_t read_lease_ms)> on_read_lease;

  // Only for a joining node (cluster_id 0 at construction; see "Joining" in the header
  // essay): makes the cluster id learned from a member's hello durable before it is used;
  // returns "" or the error (then that connection is closed and the id stays unknown).
  // Unset: the id is adopted in memory only.
  std::function<std::string(std::uint64_t cluster_id)> adopt_cluster_id;
};

// One peer as this transport sees it, for status pages and last_contact_ms.
struct peer_status {
  raft::node_id id;
  std::string address;     // "host:port" from the member list
  bool connected = false;  // our outbound connection is established
  bool tls = false;        // ... and is TLS
  // Last frame received from this peer on any inbound connection; nullopt: never.
  std::optional<std::chrono::steady_clock::time_point> last_received;
  // The peer's incarnation from its latest hello; 0: never heard. Changes when it restarts.
  std::uint64_t incarnation = 0;
  // The peer's data-dir generation from its latest hello; 0: never heard.
  std::uint64_t generation = 0;
  // The read lease its latest hello announced, in ms; nullopt: never heard.
  std::optional<std::int64_t> read_lease_ms;
  // Refused: it announced another generation than the recorded one (lost its data dir).
  bool refused = false;
  std::uint64_t frames_sent = 0;      // messages written (a fragmented one counts once)
  std::uint64_t bytes_sent = 0;       // bytes written, frame overhead included
  std::uint64_t frames_received = 0;  // messages delivered to the handler
  std::uint64_t bytes_received = 0;   // bytes read from this peer's connections
  // Messages dropped by the queue bound, a failed write, or because they were replies meant
  // for a previous life of the peer.
  std::uint64_t frames_dropped = 0;
  std::uint64_t connects = 0;     // outbound connections established
  std::size_t queued_frames = 0;  // messages waiting (small + large)
  std::size_t queued_bytes = 0;   // their payload bytes
};

class peer_transport {
 public:
  using log_level = base::log_level;
  // Where the transport's lines go (connects, disconnects, refused frames); the node owns
  // logging, so e.g. [](log_level l, std::string s) { base::log(l, s); }.
  using logger = std::function<void(log_level, std::string)>;
  // A whole message (reassembled if it was fragmented) from member `from`.
  using frame_handler =
      std::function<void(raft::node_id from, frame_kind kind, std::string payload)>;

  // members: every member's peer address, this node included (its own entry is ignored);
  // acceptor: already bound and listening on this node's peer address (the caller binds so
  // that "port in use" is reported at start-up); cluster_id: 0 for a joining node that does
  // not know it yet (header essay, "Joining"). Nothing runs until start().
  peer_transport(boost::asio::any_io_executor executor, raft::node_id self,
                 std::uint64_t cluster_id, std::map<raft::node_id, std::string> members,
                 boost::asio::ip::tcp::acceptor acceptor, frame_handler on_frame, logger log,
                 peer_transport_options options = {});
  // Stops (see stop()).
  ~peer_transport();
  peer_transport(const peer_transport&) = delete;
  peer_transport& operator=(const peer_transport&) = delete;

  // Starts accepting and dialling every other member (once the cluster id is known).
  void start();

  // Replaces the member list (same form as the constructor's: every member's peer address,
  // this node's own entry ignored), for a change of the replicated configuration: added
  // members are dialled, removed ones forgotten, moved ones redialled at their new address
  // (header essay, "Membership changes"). One log line per change. Ignored after stop().
  void set_members(std::map<raft::node_id, std::string> members);

  // Replaces the TLS settings (new certificates, a new CA, plain_peers: a reload on SIGHUP)
  // for the connections made from now on; open TLS connections keep the certificates they
  // were made with. TLS may be turned on or off only where every link stays plain: on with
  // plain `dial`, off from `dial` (header essay); otherwise returns false and changes nothing.
  // Connections the new setting would neither make nor accept are closed.
  bool set_tls(std::optional<peer_tls> tls);

  // Open connections by direction and by TLS or plain TCP.
  struct connection_counts {
    std::size_t out_tls = 0, out_plain = 0, in_tls = 0, in_plain = 0;
  };
  connection_counts connections() const;

  // Queues payload for `to`. Returns false (and queues nothing) when `to` is not another
  // current member or is refused (lost its data dir), the payload is over max_frame_bytes, kind is
  // hello or refused (the transport's own), or the transport is stopped. True means queued,
  // not delivered.
  bool send(raft::node_id to, frame_kind kind, std::string payload);

  // Closes the acceptor and every connection and cancels every timer: all coroutines end
  // promptly. No callback runs after this returns. Idempotent.
  void stop();

  // The current members but self.
  std::vector<peer_status> status() const;
  // Refusals and drops by reason ("other_cluster", "tls_refused", "wrong_certificate",
  // "queue_full", "lost_data_dir", ...), one per event (a refused connection, a dropped inbound
  // frame, one overflow of an outbound queue), whether its log line was written or rate-limited
  // away. Only reasons that happened are listed.
  std::map<std::string, std::uint64_t> drops() const;
  // nullopt: `peer` is not a current member (or is self).
  std::optional<peer_status> status(raft::node_id peer) const;
  // The cluster id in use: as constructed, or adopted by a joining node; 0 until then.
  std::uint64_t cluster_id() const;
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // This transport's incarnation (random, never 0), announced in its hellos.
  std::uint64_t incarnation() const;
  // The data-dir generation announced in its hellos (options.generations->own, or drawn).
  std::uint64_t generation() const;

  // The cluster id every bootstrap member derives alike: a hash of the sorted (id, peer
  // address) pairs and the cluster token ([cluster] token; empty: none, which gives the id
  // a member list alone gave before tokens existed). Never 0. A node persists it at its
  // first start (app/cluster_id.h), so later edits of the list do not change it.
  static std::uint64_t derive_cluster_id(const std::map<raft::node_id, std::string>& members,
                                         std::string_view token = {});

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace net
