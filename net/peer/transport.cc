// The peer transport (net/peer/transport.h has the contract). Longer than ~600 lines on
// purpose: the outbound side (one ordered queue per peer, fragments, backoff, incarnations)
// and the inbound side (hello checks, reassembly) share the per-peer state and its
// invariants, and a reader should see every path that touches them together.
#include "net/peer/transport.h"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <exception>
#include <random>
#include <tuple>
#include <utility>

#include "base/host_port.h"
#include "net/peer/tls.h"

namespace net {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
namespace ssl = asio::ssl;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
using clock = std::chrono::steady_clock;

// Why an inbound frame or connection was refused; with the claimed sender, the key of the
// warning rate limit.
enum class drop_reason : std::uint8_t {
  other_cluster,
  unknown_sender,
  not_for_us,
  sender_changed,
  no_hello,
  bad_fragment,
  undecodable,
  too_many_connections,
  queue_full,
  bad_hello,
  other_incarnation,
  tls_refused,        // the TLS handshake failed (no or untrusted certificate, not TLS, timeout)
  wrong_certificate,  // the certificate names another member than the connection speaks for
  lost_data_dir,      // the sender announced another data-dir generation than recorded
  unrecorded_generation,  // a first-seen generation could not be made durable
  unrecorded_cluster_id,  // a joining node could not make the adopted cluster id durable
};
inline constexpr std::size_t drop_reason_count =
    static_cast<std::size_t>(drop_reason::unrecorded_cluster_id) + 1;

std::string_view to_string(drop_reason r) {
  switch (r) {
    case drop_reason::other_cluster:
      return "other_cluster";
    case drop_reason::unknown_sender:
      return "unknown_sender";
    case drop_reason::not_for_us:
      return "not_for_us";
    case drop_reason::sender_changed:
      return "sender_changed";
    case drop_reason::no_hello:
      return "no_hello";
    case drop_reason::bad_fragment:
      return "bad_fragment";
    case drop_reason::undecodable:
      return "undecodable";
    case drop_reason::too_many_connections:
      return "too_many_connections";
    case drop_reason::queue_full:
      return "queue_full";
    case drop_reason::bad_hello:
      return "bad_hello";
    case drop_reason::other_incarnation:
      return "other_incarnation";
    case drop_reason::tls_refused:
      return "tls_refused";
    case drop_reason::wrong_certificate:
      return "wrong_certificate";
    case drop_reason::lost_data_dir:
      return "lost_data_dir";
    case drop_reason::unrecorded_generation:
      return "unrecorded_generation";
    case drop_reason::unrecorded_cluster_id:
      return "unrecorded_cluster_id";
  }
  return "unknown";
}

// A connection's byte stream is its TCP socket, or TLS over that socket. These pick one per
// operation without adding a coroutine frame: each returns the operation's own awaitable.
using tls_stream = ssl::stream<tcp::socket&>;
using io_result = std::tuple<boost::system::error_code, std::size_t>;

// Cluster ids as the data dir's cluster_id file spells them (app/cluster_id.h).
std::string hex(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<std::size_t>(i)] = digits[v & 0xf];
  return out;
}

bool cancelled(asio::cancellation_state s) {
  return s.cancelled() != asio::cancellation_type::none;
}

asio::awaitable<io_result> read_some(tcp::socket& socket, tls_stream* tls,
                                     asio::mutable_buffer into) {
  if (tls) return tls->async_read_some(into, nothrow);
  return socket.async_read_some(into, nothrow);
}

asio::awaitable<io_result> write_all(tcp::socket& socket, tls_stream* tls,
                                     asio::const_buffer bytes) {
  if (tls) return asio::async_write(*tls, bytes, nothrow);
  return asio::async_write(socket, bytes, nothrow);
}

}  // namespace

struct peer_transport::impl : std::enable_shared_from_this<impl> {
  // One queued message. Small ones go out whole; large ones (payload over chunk_bytes) as
  // fragments, and only the front message of a queue is ever partly written.
  struct message {
    frame_kind kind;
    std::string payload;
    std::uint64_t to_incarnation = 0;  // 0: any life of the peer (see the header essay)
    bool large = false;
    std::size_t offset = 0;  // large: bytes already written on the current connection
    bool started = false;    // large: a fragment is written or in flight: never dropped
  };

  struct peer {
    peer(asio::any_io_executor ex, raft::node_id id, std::string address)
        : socket(ex), resolver(ex), wake(ex), timer(ex) {
      st.id = id;
      st.address = std::move(address);
    }

    // Identity, connection state and counters, as reported; queued_* are filled in on
    // demand from the queues.
    peer_status st;
    // Every message to this peer in send order; one queue so that sizes never reorder them.
    std::deque<message> queue;
    std::size_t small_count = 0;  // bounded by max_queue_frames
    std::size_t small_bytes = 0;  // bounded by max_queue_bytes
    std::size_t large_count = 0;  // bounded by max_bulk_messages
    std::size_t large_bytes = 0;
    tcp::socket socket;
    // With options.tls: the context of the current connection (set_tls may replace the
    // transport's meanwhile), and TLS over `socket` made from it anew per dial.
    std::shared_ptr<ssl::context> tls_context;
    std::optional<tls_stream> tls;
    tcp::resolver resolver;
    asio::steady_timer wake;          // waited on while the queues are empty; send() cancels it
    asio::steady_timer timer;         // connect/write timeouts and reconnect backoff
    bool unreachable_logged = false;  // "cannot reach" said for the current outage
    bool flapping = false;            // the last connection closed right after it opened
    std::string close_reason;
    // Set while the peer is refused (it lost its data dir): what it is told, and the life
    // of it that is told (the refused frame is tagged with that incarnation).
    std::optional<refusal> refused;
    std::uint64_t refused_incarnation = 0;
    // An outbound coroutine (run_outbound) is running for this peer and refers to it: a
    // removed peer is kept in `retired` until that coroutine has ended.
    bool dialling = false;
    // No longer a member (set_members): the outbound coroutine ends at its next step.
    bool removed = false;
    // The address changed (set_members): dial the new one now, without backoff or a
    // "cannot reach" line for the abandoned attempt.
    bool redial = false;
  };

  // An accepted connection, so that stop() and set_members() can close it.
  struct inbound_connection {
    tcp::socket* socket = nullptr;
    raft::node_id sender = raft::no_node;  // from its accepted hello; no_node before
    bool tls = false;                      // TLS, or plain TCP
  };

  struct drop_log_entry {
    clock::time_point last;
    std::uint64_t suppressed = 0;
  };

  impl(asio::any_io_executor ex, raft::node_id self_, std::uint64_t cluster_id_,
       std::map<raft::node_id, std::string> members_, tcp::acceptor acceptor_,
       frame_handler on_frame_, logger log_, peer_transport_options options_)
      : executor(std::move(ex)),
        self(self_),
        cluster_id(cluster_id_),
        incarnation(draw_incarnation()),
        generation(options_.generations && options_.generations->own != 0
                       ? options_.generations->own
                       : draw_incarnation()),
        acceptor(std::move(acceptor_)),
        on_frame(std::move(on_frame_)),
        log(std::move(log_)),
        options(options_) {
    options.chunk_bytes =
        std::max<std::size_t>(1, std::min(options.chunk_bytes, options.max_frame_bytes));
    options.max_bulk_messages = std::max<std::size_t>(1, options.max_bulk_messages);
    for (auto& [id, address] : members_) {
      if (id == self || id == raft::no_node) continue;
      peers.emplace(id, std::make_unique<peer>(executor, id, std::move(address)));
    }
  }

  asio::any_io_executor executor;
  raft::node_id self;
  std::uint64_t cluster_id;
  std::uint64_t incarnation;  // this process life's; announced in every hello
  std::uint64_t generation;   // this data dir's; announced in every hello
  tcp::acceptor acceptor;
  frame_handler on_frame;
  logger log;
  peer_transport_options options;
  std::map<raft::node_id, std::unique_ptr<peer>> peers;  // every member but self
  // Removed members whose outbound coroutine has not ended yet (it erases its peer here).
  std::vector<std::unique_ptr<peer>> retired;
  std::map<std::uint64_t, inbound_connection> inbound;  // open inbound connections
  std::uint64_t next_inbound = 0;
  std::map<std::pair<drop_reason, std::uint64_t>, drop_log_entry> drop_log;
  std::array<std::uint64_t, drop_reason_count> drop_counts{};  // every drop, logged or not
  bool started = false;
  bool stopped = false;

  // 64 random bits: two lives of one node drawing the same number is as likely as a CRC
  // collision on every frame, and a clock could repeat after a reset.
  static std::uint64_t draw_incarnation() {
    std::random_device entropy;
    std::uint64_t v = 0;
    while (v == 0) v = (std::uint64_t{entropy()} << 32) | entropy();
    return v;
  }

  // The plain_peers rule (net/peer/tls.h) in force.
  bool accepts_plain() const { return !options.tls || options.tls->plain != plain_peers::refuse; }
  bool dials_tls() const { return options.tls && options.tls->plain != plain_peers::dial; }

  void say(log_level level, std::string text) {
    if (!stopped && log) log(level, "peers: " + std::move(text));
  }

  // One warning per (reason, sender) per drop_log_interval: a misconfigured node sending
  // many frames must not flood the log.
  void log_drop(drop_reason reason, raft::node_id from, const std::string& text,
                log_level level = log_level::warn) {
    ++drop_counts[static_cast<std::size_t>(reason)];
    if (drop_log.size() >= 1024 && !drop_log.contains({reason, from.value})) drop_log.clear();
    const auto now = clock::now();
    auto [it, fresh] = drop_log.try_emplace({reason, from.value}, drop_log_entry{now, 0});
    if (!fresh && now - it->second.last < options.drop_log_interval) {
      ++it->second.suppressed;
      return;
    }
    std::string line = text;
    if (it->second.suppressed > 0) {
      line += " (" + std::to_string(it->second.suppressed) + " similar suppressed)";
    }
    it->second = drop_log_entry{now, 0};
    say(level, std::move(line));
  }

  frame_header header_to(raft::node_id to, frame_kind kind, std::uint8_t flags,
                         std::uint64_t to_incarnation = 0) const {
    return frame_header{kind, flags, cluster_id, self, to, to_incarnation};
  }

  // docs/config.md: peers identify with the cluster's member ids. opening_hello: h is the
  // hello that opens a connection, which may tell a joining node (cluster id still 0) its
  // cluster's id: its cluster id is then not checked here, only that it is one (adopt()).
  std::optional<std::pair<drop_reason, std::string>> check_identity(const frame_header& h,
                                                                    bool opening_hello) const {
    const std::string what = "dropped " + std::string(to_string(h.kind)) + " frame from node " +
                             std::to_string(h.from.value) + ": ";
    const bool adoptable = cluster_id == 0 && opening_hello && h.cluster_id != 0;
    if (cluster_id == 0 && !adoptable) {
      return std::pair{drop_reason::other_cluster,
                       what + "this node does not know its cluster id yet; only a member's " +
                           "hello can tell it"};
    }
    if (h.cluster_id != cluster_id && !adoptable) {
      return std::pair{drop_reason::other_cluster, what + "cluster id " + hex(h.cluster_id) +
                                                       " is not ours (" + hex(cluster_id) + ")"};
    }
    if (h.to != self) {
      return std::pair{drop_reason::not_for_us,
                       what + "addressed to node " + std::to_string(h.to.value)};
    }
    if (!peers.contains(h.from)) {
      return std::pair{drop_reason::unknown_sender, what + "not a member of this cluster"};
    }
    return std::nullopt;
  }

  // --- sending --------------------------------------------------------------------------

  bool send(raft::node_id to, frame_kind kind, std::string payload) {
    if (stopped || kind == frame_kind::hello || kind == frame_kind::refused ||
        payload.size() > options.max_frame_bytes) {
      return false;
    }
    auto it = peers.find(to);
    if (it == peers.end()) return false;
    peer& p = *it->second;
    if (p.refused) {
      ++p.st.frames_dropped;  // nothing but the refusal goes to a refused peer
      return false;
    }
    message m{kind, std::move(payload)};
    m.large = m.payload.size() > options.chunk_bytes;
    // A reply is for the life of the peer that asked (see the header essay).
    if (kind == frame_kind::forward_response) m.to_incarnation = p.st.incarnation;
    std::uint64_t dropped = 0;
    if (m.large && p.large_count >= options.max_bulk_messages) {
      const auto waiting = std::find_if(p.queue.begin(), p.queue.end(),
                                        [](const message& q) { return q.large && !q.started; });
      ++dropped;
      if (waiting == p.queue.end()) {
        note_dropped(p, dropped);
        return false;  // only the message being written is queued (max_bulk_messages 1)
      }
      erase(p, waiting);
    }
    enqueue(p, std::move(m));
    while (p.small_count > options.max_queue_frames || p.small_bytes > options.max_queue_bytes) {
      // The oldest small message; never a started one (small ones are written whole).
      erase(p, std::find_if(p.queue.begin(), p.queue.end(),
                            [](const message& q) { return !q.large; }));
      ++dropped;
    }
    note_dropped(p, dropped);
    p.wake.cancel();
    return true;
  }

  static void enqueue(peer& p, message m) {
    if (m.large) {
      ++p.large_count;
      p.large_bytes += m.payload.size();
    } else {
      ++p.small_count;
      p.small_bytes += m.payload.size();
    }
    p.queue.push_back(std::move(m));
  }

  // Removes one queued message, keeping the counters; `at` is not a started message.
  static std::deque<message>::iterator erase(peer& p, std::deque<message>::iterator at) {
    if (at->large) {
      --p.large_count;
      p.large_bytes -= at->payload.size();
    } else {
      --p.small_count;
      p.small_bytes -= at->payload.size();
    }
    return p.queue.erase(at);
  }

  // The message at the front was written whole (or its last fragment was).
  static void pop_written(peer& p) { erase(p, p.queue.begin()); }

  // A hello from `p` announced `incarnation`. If it is a new life, the replies still queued
  // for the previous one would only be dropped by the receiver: drop them now.
  void learn_incarnation(peer& p, std::uint64_t incarnation_) {
    const std::uint64_t before = std::exchange(p.st.incarnation, incarnation_);
    if (before == 0 || before == incarnation_) return;
    std::uint64_t dropped = 0;
    for (auto it = p.queue.begin(); it != p.queue.end();) {
      if (it->to_incarnation != 0 && it->to_incarnation != incarnation_ && !it->started) {
        it = erase(p, it);
        ++dropped;
      } else {
        ++it;
      }
    }
    p.st.frames_dropped += dropped;
    say(log_level::info,
        "node " + std::to_string(p.st.id.value) + " restarted (new incarnation)" +
            (dropped == 0 ? std::string()
                          : ": dropped " + std::to_string(dropped) + " queued repl" +
                                (dropped == 1 ? "y" : "ies") + " meant for its previous life"));
  }

  enum class generation_check { accepted, refused, unrecorded };

  // The amnesia guard (header essay): a hello from `p` announced `h`.
  generation_check check_generation(peer& p, const hello& h) {
    p.st.generation = h.generation;
    if (!options.generations) return generation_check::accepted;
    auto& guard = *options.generations;
    const std::string who = "node " + std::to_string(p.st.id.value);
    const auto known = guard.known.find(p.st.id);
    if (known == guard.known.end()) {
      // First sight: made durable before any frame of this connection is delivered.
      if (guard.record) {
        if (auto err = guard.record(p.st.id, h.generation); !err.empty()) {
          log_drop(drop_reason::unrecorded_generation, p.st.id,
                   "closing the connection of " + who + ": cannot record its data-dir generation " +
                       hex(h.generation) + ": " + err,
                   log_level::error);
          return generation_check::unrecorded;
        }
      }
      guard.known.emplace(p.st.id, h.generation);
      say(log_level::info, who + ": data-dir generation " + hex(h.generation) + " recorded");
      return generation_check::accepted;
    }
    if (known->second == h.generation) {
      if (p.refused) {
        p.refused.reset();
        p.refused_incarnation = 0;
        p.st.refused = false;
        say(log_level::warn, who + " announces its recorded data-dir generation " +
                                 hex(h.generation) + " again: no longer refused");
      }
      return generation_check::accepted;
    }
    refuse(p, refusal{refusal_reason::lost_data_dir, known->second, h.generation}, h.incarnation);
    return generation_check::refused;
  }

  // `p` lost its data dir: nothing but a refusal goes to it from now on.
  void refuse(peer& p, const refusal& r, std::uint64_t its_incarnation) {
    const bool same_life = p.refused && p.refused_incarnation == its_incarnation;
    p.refused = r;
    p.refused_incarnation = its_incarnation;
    p.st.refused = true;
    if (same_life) return;  // another connection of a life already refused and told
    say(log_level::error,
        "node " + std::to_string(p.st.id.value) + " announced data-dir generation " +
            hex(r.announced_generation) + ", but this node recorded " + hex(r.recorded_generation) +
            " for it: node " + std::to_string(p.st.id.value) +
            " lost its data dir (and with it its votes and the entries it acknowledged); "
            "refusing its frames and telling it so. Restore its data dir only from a copy "
            "taken after its last run, or remove it from the cluster and add it back under a "
            "new id");
    // Drop what was queued for it, even a message half written: the connection is closed
    // below, and the next one starts with the hello and the refusal.
    std::uint64_t dropped = p.queue.size();
    p.queue.clear();
    p.small_count = p.small_bytes = p.large_count = p.large_bytes = 0;
    p.st.frames_dropped += dropped;
    if (p.st.connected) {
      p.close_reason = "refused (node lost its data dir)";
      boost::system::error_code ignored;
      p.socket.close(ignored);
    }
  }

  void note_dropped(peer& p, std::uint64_t dropped) {
    if (dropped == 0) return;
    p.st.frames_dropped += dropped;
    log_drop(drop_reason::queue_full, p.st.id,
             "outbound queue to node " + std::to_string(p.st.id.value) +
                 " is full: dropped the oldest message(s)");
  }

  asio::awaitable<boost::system::error_code> connect(peer& p) {
    const auto address = base::split_host_port(p.st.address);
    if (!address) co_return make_error_code(asio::error::invalid_argument);
    auto [rerr, endpoints] =
        co_await p.resolver.async_resolve(address->host, address->port, nothrow);
    if (rerr || stopped || p.removed || p.redial) {
      co_return rerr ? rerr : asio::error::operation_aborted;
    }
    p.timer.expires_after(options.connect_timeout);
    auto r =
        co_await (asio::async_connect(p.socket, endpoints, nothrow) || p.timer.async_wait(nothrow));
    if (r.index() == 1) {
      boost::system::error_code ignored;
      p.socket.close(ignored);
      co_return make_error_code(asio::error::timed_out);
    }
    const auto cerr = std::get<0>(std::get<0>(r));
    if (cerr) co_return cerr;
    boost::system::error_code ignored;
    p.socket.set_option(tcp::no_delay(true), ignored);
    if (dials_tls()) co_return co_await handshake_with(p);
    co_return boost::system::error_code{};
  }

  // The client side of mutual TLS on p.socket, just connected: OpenSSL checks the chain,
  // this checks that the certificate is the one of the member we dialled (tls.h). Any
  // failure is a refusal: logged (rate-limited), counted, and the socket closed.
  asio::awaitable<boost::system::error_code> handshake_with(peer& p) {
    p.tls_context = options.tls->client;
    p.tls.emplace(p.socket, *p.tls_context);
    p.timer.expires_after(options.connect_timeout);
    auto r = co_await (p.tls->async_handshake(ssl::stream_base::client, nothrow) ||
                       p.timer.async_wait(nothrow));
    boost::system::error_code ec;
    std::string why;
    if (r.index() == 1) {
      ec = make_error_code(asio::error::timed_out);
      why = "TLS handshake timed out";
    } else if ((ec = std::get<0>(std::get<0>(r)))) {
      why = "TLS handshake failed: " + ec.message();
    }
    if (ec) {
      // A handshake cut by stop() or set_members() is not a refusal.
      if (!stopped && !p.removed && !p.redial) {
        log_drop(drop_reason::tls_refused, p.st.id,
                 "refused the peer at " + p.st.address + " (dialling node " +
                     std::to_string(p.st.id.value) + "): " + why);
      }
      boost::system::error_code ignored;
      p.socket.close(ignored);
      co_return ec;
    }
    const auto cn = peer_certificate_common_name(p.tls->native_handle());
    if (cn != peer_common_name(p.st.id)) {
      log_drop(drop_reason::wrong_certificate, p.st.id,
               "refused the peer at " + p.st.address + ": it should be node " +
                   std::to_string(p.st.id.value) + " but its certificate names " +
                   (cn ? "\"" + *cn + "\"" : "no single CN"));
      boost::system::error_code ignored;
      p.socket.close(ignored);
      co_return make_error_code(asio::error::access_denied);
    }
    co_return boost::system::error_code{};
  }

  // Dials the peer, keeps the connection fed, and dials again after any failure, until
  // stop() or the peer's removal from the members.
  asio::awaitable<void> run_outbound(peer& p) {
    auto keep_alive = shared_from_this();
    // However the coroutine ends: a removed peer is destroyed here, once nothing refers to
    // it (set_members() left it in `retired` for this coroutine).
    struct finish {
      impl& self;
      peer& p;
      ~finish() {
        p.dialling = false;
        boost::system::error_code ignored;
        p.socket.close(ignored);  // a connect that completed as the peer was removed
        if (p.removed) {
          std::erase_if(self.retired, [this](const auto& r) { return r.get() == &p; });
        }
      }
    } guard{*this, p};
    auto backoff = options.backoff_initial;
    while (!stopped && !p.removed) {
      if (std::exchange(p.redial, false)) backoff = options.backoff_initial;
      const auto ec = co_await connect(p);
      if (stopped || p.removed) break;
      if (!ec && p.tls.has_value() != dials_tls()) p.redial = true;  // set_tls() meanwhile
      if (p.redial) {
        // The address or the TLS setting changed meanwhile: drop what was reached, if
        // anything, and dial anew.
        boost::system::error_code ignored;
        p.socket.close(ignored);
        p.tls.reset();
        continue;
      }
      if (ec) {
        if (!p.unreachable_logged) {
          say(log_level::info, "cannot reach node " + std::to_string(p.st.id.value) + " at " +
                                   p.st.address + ": " + ec.message() + "; retrying");
          p.unreachable_logged = true;
        }
      } else {
        p.unreachable_logged = false;
        p.st.connected = true;
        p.st.tls = p.tls.has_value();
        ++p.st.connects;
        // A peer that keeps closing our connections at once (e.g. it refuses our hello)
        // would log two lines per redial: after the first such flap, only at debug level.
        say(p.flapping ? log_level::debug : log_level::info,
            "connected to node " + std::to_string(p.st.id.value) + " at " + p.st.address);
        const auto since = clock::now();
        p.close_reason.clear();
        co_await (write_loop(p) || watch_closed(p));
        p.st.connected = false;
        p.st.tls = false;
        boost::system::error_code ignored;
        p.socket.close(ignored);
        // No close_notify: the peer only reads, and a lost connection is the same to it.
        p.tls.reset();
        // A large message cut short starts again from its first fragment next time, still
        // ahead of everything sent after it.
        if (!p.queue.empty() && p.queue.front().started) {
          p.queue.front().offset = 0;
          p.queue.front().started = false;
        }
        if (stopped || p.removed) break;
        if (p.redial) continue;  // closed by set_members() or set_tls(), which logged why
        const bool short_lived = clock::now() - since < options.backoff_max;
        say(p.flapping ? log_level::debug : log_level::info,
            "lost connection to node " + std::to_string(p.st.id.value) + ": " +
                (p.close_reason.empty() ? "closed" : p.close_reason));
        p.flapping = short_lived;
        // A connection that lived long was healthy: redial quickly. One closed at once
        // backs off like a failed dial.
        if (!short_lived) backoff = options.backoff_initial;
      }
      p.timer.expires_after(backoff);
      co_await p.timer.async_wait(nothrow);
      backoff = std::min(backoff * 2, options.backoff_max);
    }
  }

  // The peer never writes on a connection we dialled, so any completed read means it
  // closed (or broke protocol): either way the connection is done.
  asio::awaitable<void> watch_closed(peer& p) {
    co_await asio::this_coro::throw_if_cancelled(false);
    char scratch[64];
    tls_stream* tls = p.tls ? &*p.tls : nullptr;
    auto [ec, n] = co_await read_some(p.socket, tls, asio::buffer(scratch));
    if (p.close_reason.empty()) {
      p.close_reason = ec ? ec.message() : "peer sent unexpected bytes";
    }
  }

  asio::awaitable<void> write_loop(peer& p) {
    co_await asio::this_coro::throw_if_cancelled(false);
    std::string batch;
    // The hello goes first, in the same write as whatever is already queued.
    append_frame(batch, header_to(p.st.id, frame_kind::hello, 0),
                 encode_hello({incarnation, generation, options.read_lease_ms}));
    // A refused peer gets the refusal, meant for the life refused, and then nothing else.
    if (p.refused) {
      append_frame(batch, header_to(p.st.id, frame_kind::refused, 0, p.refused_incarnation),
                   encode(*p.refused));
    }
    for (;;) {
      while (batch.empty() && p.queue.empty()) {
        p.wake.expires_at(asio::steady_timer::time_point::max());
        co_await p.wake.async_wait(nothrow);
        if (stopped || p.removed || cancelled(co_await asio::this_coro::cancellation_state)) {
          co_return;
        }
      }
      // Whole messages from the front of the queue, up to max_batch_bytes; a large message
      // at the front contributes one fragment and ends the batch: what is behind it waits
      // for its last fragment (one order per peer).
      std::uint64_t messages = 0;
      std::size_t piece = 0;
      bool fragment = false;
      bool fragment_ends = false;
      while (!p.queue.empty() && batch.size() < options.max_batch_bytes) {
        message& m = p.queue.front();
        if (!m.large) {
          append_frame(batch, header_to(p.st.id, m.kind, 0, m.to_incarnation), m.payload);
          pop_written(p);
          ++messages;
          continue;
        }
        piece = std::min(options.chunk_bytes, m.payload.size() - m.offset);
        fragment_ends = m.offset + piece == m.payload.size();
        std::uint8_t flags = frame_flags::fragment;
        if (m.offset == 0) flags |= frame_flags::first;
        if (fragment_ends) flags |= frame_flags::last;
        append_frame(batch, header_to(p.st.id, m.kind, flags, m.to_incarnation),
                     std::string_view(m.payload).substr(m.offset, piece));
        m.started = true;
        fragment = true;
        break;
      }
      p.timer.expires_after(options.write_timeout);
      auto r = co_await (write_all(p.socket, p.tls ? &*p.tls : nullptr, asio::buffer(batch)) ||
                         p.timer.async_wait(nothrow));
      if (r.index() == 1 || std::get<0>(std::get<0>(r))) {
        p.st.frames_dropped += messages;
        if (p.close_reason.empty()) {
          p.close_reason = r.index() == 1
                               ? "write timed out"
                               : "write failed: " + std::get<0>(std::get<0>(r)).message();
        }
        co_return;
      }
      p.st.bytes_sent += batch.size();
      p.st.frames_sent += messages;
      batch.clear();
      // The started message is still at the front: started messages are never dropped and
      // nothing is put ahead of them; only stop() empties the queue meanwhile.
      if (fragment && !p.queue.empty() && p.queue.front().started) {
        p.queue.front().offset += piece;
        if (fragment_ends) {
          pop_written(p);
          ++p.st.frames_sent;
        }
      }
      if (stopped || p.removed || cancelled(co_await asio::this_coro::cancellation_state)) {
        co_return;
      }
    }
  }

  // --- receiving ------------------------------------------------------------------------

  asio::awaitable<void> run_acceptor() {
    auto keep_alive = shared_from_this();
    while (!stopped) {
      auto [ec, socket] = co_await acceptor.async_accept(nothrow);
      if (stopped) break;
      if (ec) {
        // Out of descriptors or similar: pause instead of spinning.
        say(log_level::warn, "accept failed: " + ec.message());
        asio::steady_timer pause(executor, options.backoff_max);
        co_await pause.async_wait(nothrow);
        continue;
      }
      // Members need one connection each (two across a reconnect); more is not a member.
      if (inbound.size() >= 4 * peers.size() + 4) {
        log_drop(drop_reason::too_many_connections, raft::no_node,
                 "refused an inbound connection: too many open");
        continue;  // the socket closes as it goes out of scope
      }
      asio::co_spawn(executor, run_inbound(std::move(socket)), report("inbound connection"));
    }
  }

  asio::awaitable<void> run_inbound(tcp::socket socket) {
    auto keep_alive = shared_from_this();
    const std::uint64_t key = next_inbound++;
    inbound.emplace(key, inbound_connection{&socket, raft::no_node});
    // Unregistered even if the handler throws out of read_frames: stop() must never
    // touch a socket that is gone.
    struct unregister {
      impl& self;
      std::uint64_t key;
      ~unregister() { self.inbound.erase(key); }
    } guard{*this, key};
    if (!options.tls) {
      co_await read_frames(socket, nullptr, std::nullopt, key);
      co_return;
    }
    if (accepts_plain()) {
      // plain_peers: a TLS client opens with a handshake record (content type 22); a plain
      // peer with a frame's magic. Peeked, so that either reader gets every byte.
      unsigned char first = 0;
      asio::steady_timer deadline(executor, options.connect_timeout);
      auto r = co_await (
          socket.async_receive(asio::buffer(&first, 1), tcp::socket::message_peek, nothrow) ||
          deadline.async_wait(nothrow));
      if (stopped || r.index() == 1 || std::get<0>(std::get<0>(r)) ||
          std::get<1>(std::get<0>(r)) == 0) {
        co_return;  // nothing came in time, or the connection ended: nobody to refuse
      }
      if (first != 0x16) {
        co_await read_frames(socket, nullptr, std::nullopt, key);
        co_return;
      }
      if (!options.tls) co_return;  // TLS turned off during the peek (set_tls)
    }
    // The server side of mutual TLS. Until it completes nothing is read as a frame and
    // nothing is written but the handshake: plain TCP gets no byte of ours back.
    inbound.at(key).tls = true;
    const std::shared_ptr<ssl::context> context = options.tls->server;  // this connection's
    tls_stream tls(socket, *context);
    asio::steady_timer deadline(executor, options.connect_timeout);
    auto r = co_await (tls.async_handshake(ssl::stream_base::server, nothrow) ||
                       deadline.async_wait(nothrow));
    if (stopped) co_return;
    if (r.index() == 1 || std::get<0>(std::get<0>(r))) {
      log_drop(
          drop_reason::tls_refused, raft::no_node,
          "refused a connection from " + describe(socket, std::nullopt) + ": " +
              (r.index() == 1 ? std::string("TLS handshake timed out")
                              : "TLS handshake failed: " + std::get<0>(std::get<0>(r)).message()));
      co_return;
    }
    // The chain is the CA's (OpenSSL checked it); the name says which member this is.
    const auto cn = peer_certificate_common_name(tls.native_handle());
    const auto certified = cn ? node_id_of_common_name(*cn) : std::nullopt;
    if (!certified || !peers.contains(*certified)) {
      log_drop(drop_reason::wrong_certificate, certified.value_or(raft::no_node),
               "refused a connection from " + describe(socket, std::nullopt) +
                   ": its certificate names " + (cn ? "\"" + *cn + "\"" : "no single CN") +
                   ", not a member of this cluster");
      co_return;
    }
    co_await read_frames(socket, &tls, certified, key);
  }

  // Reads and delivers the frames of one inbound connection. tls: the connection's TLS
  // stream, or null for plain TCP; certified: the member its certificate names (TLS only),
  // which the hello must claim; key: the connection's entry in `inbound`.
  asio::awaitable<void> read_frames(tcp::socket& socket, tls_stream* tls,
                                    std::optional<raft::node_id> certified, std::uint64_t key) {
    std::vector<char> buf(64 << 10);
    std::size_t begin = 0, end = 0;
    std::optional<raft::node_id> sender;  // set by a valid hello
    bool lost_data_dir = false;           // the hello's generation is refused
    std::string partial;                  // reassembly of a fragmented message
    std::optional<frame_kind> partial_kind;

    while (!stopped) {
      // Decode every complete frame in the buffer.
      std::size_t needed = 0;
      for (;;) {
        const auto outcome = decode_frame(std::string_view(buf.data() + begin, end - begin),
                                          options.max_frame_bytes);
        if (const auto* more = std::get_if<need_more>(&outcome)) {
          needed = more->total_bytes;
          break;
        }
        if (const auto* err = std::get_if<frame_error>(&outcome)) {
          log_drop(drop_reason::undecodable, sender.value_or(raft::no_node),
                   "closing a connection from " + describe(socket, sender) + ": " +
                       std::string(to_string(*err)));
          co_return;
        }
        const auto& d = std::get<decoded_frame>(outcome);
        begin += d.consumed;
        const frame_header& h = d.value.header;

        // A member removed while its frames were buffered is caught here too (unknown_sender).
        if (auto refused = check_identity(h, !sender && h.kind == frame_kind::hello)) {
          log_drop(refused->first, h.from, refused->second);
          if (!sender) co_return;  // an unidentified connection gets nothing more
          continue;
        }
        if (!sender) {
          if (certified && h.from != *certified) {
            // Keyed by the certificate's id: that is who connected (the dialler's own
            // refusal of a node is keyed by the id it dialled).
            log_drop(drop_reason::wrong_certificate, *certified,
                     "closing a connection from " + describe(socket, std::nullopt) +
                         ": it claims to be node " + std::to_string(h.from.value) +
                         " but its certificate names node " + std::to_string(certified->value));
            co_return;
          }
          if (h.kind != frame_kind::hello) {
            log_drop(drop_reason::no_hello, h.from,
                     "closing a connection from node " + std::to_string(h.from.value) +
                         ": it did not start with a hello");
            co_return;
          }
          const auto its_hello = decode_hello(d.value.payload);
          if (!its_hello) {
            log_drop(drop_reason::bad_hello, h.from,
                     "closing a connection from node " + std::to_string(h.from.value) +
                         ": its hello does not carry an incarnation and a generation");
            co_return;
          }
          peer& hp = *peers.at(h.from);
          const auto checked = check_generation(hp, *its_hello);
          if (checked == generation_check::unrecorded) co_return;
          lost_data_dir = checked == generation_check::refused;
          if (cluster_id == 0) {
            // A joining node learns its cluster's id from a member that passed every check
            // (check_identity let this hello's id through, and only this one).
            if (lost_data_dir || !adopt(h.from, h.cluster_id)) co_return;
          }
          sender = h.from;
          inbound.at(key).sender = h.from;
          learn_incarnation(hp, its_hello->incarnation);
          hp.st.read_lease_ms = its_hello->read_lease_ms;
          if (options.on_read_lease) options.on_read_lease(h.from, its_hello->read_lease_ms);
          say(log_level::debug, "accepted a connection from node " + std::to_string(h.from.value));
        } else if (h.from != *sender) {
          log_drop(drop_reason::sender_changed, h.from,
                   "dropped a frame claiming node " + std::to_string(h.from.value) +
                       " on the connection of node " + std::to_string(sender->value));
          continue;
        }
        if (lost_data_dir) {
          // The error was logged once for this life of the sender (refuse()); the count
          // shows how much it tried.
          log_drop(drop_reason::lost_data_dir, h.from,
                   "dropped " + std::string(to_string(h.kind)) + " frame from node " +
                       std::to_string(h.from.value) + ": it lost its data dir (refused)",
                   log_level::debug);
          continue;
        }
        peer& p = *peers.at(h.from);
        p.st.last_received = clock::now();
        p.st.bytes_received += d.consumed;
        if (h.kind == frame_kind::hello) continue;
        if (h.to_incarnation != 0 && h.to_incarnation != incarnation) {
          // Expected after a restart, not a fault: info, not warn.
          log_drop(drop_reason::other_incarnation, h.from,
                   "dropped " + std::string(to_string(h.kind)) + " frame from node " +
                       std::to_string(h.from.value) + ": meant for a previous life of this node",
                   log_level::info);
          continue;
        }

        if ((h.flags & frame_flags::fragment) == 0) {
          deliver(p, h.kind, std::string(d.value.payload));
        } else {
          if (h.flags & frame_flags::first) {
            partial.clear();
            partial_kind = h.kind;
          }
          if (partial_kind != h.kind ||
              partial.size() + d.value.payload.size() > options.max_frame_bytes) {
            log_drop(drop_reason::bad_fragment, h.from,
                     "dropped a fragmented message from node " + std::to_string(h.from.value) +
                         ": fragments out of sequence or over max_frame_bytes");
            partial.clear();
            partial_kind.reset();
            continue;
          }
          partial.append(d.value.payload);
          if (h.flags & frame_flags::last) {
            partial_kind.reset();
            deliver(p, h.kind, std::exchange(partial, std::string{}));
          }
        }
        if (stopped) co_return;
      }

      // Keep unread bytes at the front and make room for at least one whole frame.
      if (begin > 0) {
        std::copy(buf.begin() + static_cast<std::ptrdiff_t>(begin),
                  buf.begin() + static_cast<std::ptrdiff_t>(end), buf.begin());
        end -= begin;
        begin = 0;
      }
      if (end == 0 && buf.size() > (std::size_t{2} << 20)) {
        buf.assign(64 << 10, '\0');  // give back the room an oversized frame took
      }
      // need_more asks for more than is buffered, so this always leaves room to read into.
      if (needed > buf.size()) buf.resize(needed);

      auto [ec, n] =
          co_await read_some(socket, tls, asio::buffer(buf.data() + end, buf.size() - end));
      if (ec) {
        if (sender && !stopped) {
          say(log_level::debug,
              "connection from node " + std::to_string(sender->value) + " closed: " + ec.message());
        }
        co_return;
      }
      end += n;
    }
  }

  // on_frame may change the members (set_members): `p` must not be touched after it.
  void deliver(peer& p, frame_kind kind, std::string payload) {
    ++p.st.frames_received;
    const raft::node_id from = p.st.id;
    if (on_frame) on_frame(from, kind, std::move(payload));
  }

  static std::string describe(const tcp::socket& socket, std::optional<raft::node_id> sender) {
    if (sender) return "node " + std::to_string(sender->value);
    boost::system::error_code ec;
    const auto ep = socket.remote_endpoint(ec);
    if (ec) return "an unidentified peer";
    return ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  // Completion of a top-level coroutine: reports what escaped it (nothing should).
  std::function<void(std::exception_ptr)> report(std::string what) {
    return [self = shared_from_this(), what = std::move(what)](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        self->say(log_level::error, what + " failed: " + x.what());
      }
    };
  }

  void start() {
    if (started || stopped) return;
    started = true;
    asio::co_spawn(executor, run_acceptor(), report("acceptor"));
    if (cluster_id == 0) {
      say(log_level::info,
          "cluster id not known yet (joining): not dialling any member until one of them "
          "connects and its hello tells it");
    }
    for (auto& [id, p] : peers) dial(*p);
  }

  // Starts the outbound coroutine of `p` unless one runs or dialling must wait: before
  // start(), after stop(), or while the cluster id is unknown (a hello with cluster id 0
  // would only be counted as other_cluster by the member; adopt() dials then).
  void dial(peer& p) {
    if (!started || stopped || cluster_id == 0 || p.dialling || p.removed) return;
    p.dialling = true;
    asio::co_spawn(executor, run_outbound(p),
                   report("connection to node " + std::to_string(p.st.id.value)));
  }

  // The first hello from a member tells a joining node its cluster id (header essay).
  // Returns false (the connection is to be closed) if it could not be made durable.
  bool adopt(raft::node_id from, std::uint64_t id) {
    if (options.adopt_cluster_id) {
      if (auto err = options.adopt_cluster_id(id); !err.empty()) {
        log_drop(drop_reason::unrecorded_cluster_id, from,
                 "closing the connection of node " + std::to_string(from.value) +
                     ": cannot record the cluster id " + hex(id) + " it announced: " + err,
                 log_level::error);
        return false;
      }
    }
    cluster_id = id;
    say(log_level::info,
        "joined cluster " + hex(id) + " (learned from node " + std::to_string(from.value) + ")");
    for (auto& [pid, p] : peers) dial(*p);
    return true;
  }

  // The replicated configuration changed: see set_members() in the header.
  void set_members(std::map<raft::node_id, std::string> members) {
    if (stopped) return;
    members.erase(self);
    members.erase(raft::no_node);
    for (auto it = peers.begin(); it != peers.end();) {
      if (members.contains(it->first)) {
        ++it;
        continue;
      }
      const raft::node_id id = it->first;
      retire(std::move(it->second));
      it = peers.erase(it);
      say(log_level::info, "node " + std::to_string(id.value) + " removed");
    }
    for (auto& [id, address] : members) {
      auto it = peers.find(id);
      if (it == peers.end()) {
        auto& p = *peers.emplace(id, std::make_unique<peer>(executor, id, address)).first->second;
        say(log_level::info, "now dialling node " + std::to_string(id.value) + " at " + address);
        dial(p);
        continue;
      }
      peer& p = *it->second;
      if (p.st.address == address) continue;
      say(log_level::info, "node " + std::to_string(id.value) + " moved from " + p.st.address +
                               " to " + address + ": redialling");
      p.st.address = std::move(address);
      p.unreachable_logged = false;
      if (!p.dialling) continue;  // the next dial uses the new address
      // Cut whatever the outbound coroutine waits on (a dial, a connection, a backoff):
      // it sees `redial` and dials the new address at once.
      p.redial = true;
      p.close_reason = "node moved";
      boost::system::error_code ignored;
      p.socket.close(ignored);
      p.resolver.cancel();
      p.timer.cancel();
    }
  }

  // A reload's TLS settings: see set_tls() in the header.
  bool set_tls(std::optional<peer_tls> tls) {
    const bool plain_links = !options.tls || options.tls->plain == plain_peers::dial;
    const bool stays_plain = !tls || tls->plain == plain_peers::dial;
    if (options.tls.has_value() != tls.has_value() && !(plain_links && stays_plain)) return false;
    const std::string before(options.tls ? to_string(options.tls->plain) : "no TLS");
    options.tls = std::move(tls);
    const std::string after(options.tls ? to_string(options.tls->plain) : "no TLS");
    if (before != after) say(log_level::info, "peer TLS: " + before + " -> " + after);
    boost::system::error_code ignored;
    for (auto& [key, conn] : inbound) {
      if (conn.tls ? !options.tls : !accepts_plain()) conn.socket->close(ignored);
    }
    for (auto& [id, p] : peers) {
      if (!p->st.connected || p->st.tls == dials_tls()) continue;
      // As for a moved node: the outbound coroutine sees `redial` and dials again at once.
      p->redial = true;
      p->close_reason = dials_tls() ? "now dialling over TLS" : "now dialling plain TCP";
      p->socket.close(ignored);
      p->resolver.cancel();
      p->timer.cancel();
    }
    return true;
  }

  // `p` is no longer a member: nothing goes to it or comes from it from now on. Its frames
  // are refused because it is gone from `peers` (check_identity); the connections it opened
  // are closed so that its frames already in flight are not read.
  void retire(std::unique_ptr<peer> owned) {
    peer& p = *owned;
    p.removed = true;
    p.st.connected = false;
    p.queue.clear();
    p.small_count = p.small_bytes = p.large_count = p.large_bytes = 0;
    boost::system::error_code ignored;
    p.socket.close(ignored);
    p.resolver.cancel();
    p.wake.cancel();
    p.timer.cancel();
    for (auto& [key, conn] : inbound) {
      if (conn.sender == p.st.id) conn.socket->close(ignored);
    }
    // Its outbound coroutine still refers to it and destroys it as it ends.
    if (p.dialling) retired.push_back(std::move(owned));
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    for (auto& [id, p] : peers) {
      p->st.connected = false;
      p->socket.close(ignored);
      p->resolver.cancel();
      p->wake.cancel();
      p->timer.cancel();
      p->queue.clear();
      p->small_count = p->small_bytes = p->large_count = p->large_bytes = 0;
    }
    for (auto& [key, conn] : inbound) conn.socket->close(ignored);
  }

  peer_status status_of(const peer& p) const {
    peer_status s = p.st;
    s.queued_frames = p.queue.size();
    s.queued_bytes = p.small_bytes + p.large_bytes;
    return s;
  }
};

peer_transport::peer_transport(asio::any_io_executor executor, raft::node_id self,
                               std::uint64_t cluster_id,
                               std::map<raft::node_id, std::string> members, tcp::acceptor acceptor,
                               frame_handler on_frame, logger log, peer_transport_options options)
    : impl_(std::make_shared<impl>(std::move(executor), self, cluster_id, std::move(members),
                                   std::move(acceptor), std::move(on_frame), std::move(log),
                                   options)) {}

peer_transport::~peer_transport() {
  stop();
}

void peer_transport::start() {
  impl_->start();
}

bool peer_transport::send(raft::node_id to, frame_kind kind, std::string payload) {
  return impl_->send(to, kind, std::move(payload));
}

void peer_transport::stop() {
  impl_->stop();
}

void peer_transport::set_members(std::map<raft::node_id, std::string> members) {
  impl_->set_members(std::move(members));
}

bool peer_transport::set_tls(std::optional<peer_tls> tls) {
  return impl_->set_tls(std::move(tls));
}

peer_transport::connection_counts peer_transport::connections() const {
  connection_counts out;
  for (const auto& [id, p] : impl_->peers) {
    if (p->st.connected) ++(p->st.tls ? out.out_tls : out.out_plain);
  }
  for (const auto& [key, conn] : impl_->inbound) ++(conn.tls ? out.in_tls : out.in_plain);
  return out;
}

std::uint64_t peer_transport::cluster_id() const {
  return impl_->cluster_id;
}

std::vector<peer_status> peer_transport::status() const {
  std::vector<peer_status> out;
  out.reserve(impl_->peers.size());
  for (const auto& [id, p] : impl_->peers) out.push_back(impl_->status_of(*p));
  return out;
}

std::map<std::string, std::uint64_t> peer_transport::drops() const {
  std::map<std::string, std::uint64_t> out;
  for (std::size_t i = 0; i < drop_reason_count; ++i) {
    const std::uint64_t n = impl_->drop_counts[i];
    if (n > 0) out.emplace(to_string(static_cast<drop_reason>(i)), n);
  }
  return out;
}

std::optional<peer_status> peer_transport::status(raft::node_id peer) const {
  const auto it = impl_->peers.find(peer);
  if (it == impl_->peers.end()) return std::nullopt;
  return impl_->status_of(*it->second);
}

std::uint64_t peer_transport::incarnation() const {
  return impl_->incarnation;
}

std::uint64_t peer_transport::generation() const {
  return impl_->generation;
}

tcp::endpoint peer_transport::local_endpoint() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec);
}

std::uint64_t peer_transport::derive_cluster_id(const std::map<raft::node_id, std::string>& members,
                                                std::string_view token) {
  // FNV-1a over "id=address;" in id order, then "token=<token>;" when there is a token:
  // every node with the same list and token gets the same id, and no token gives the id
  // of the member list alone (as before tokens existed). Not a secret and not a defence
  // against a hostile peer (that is [tls]); it keeps apart clusters that share addresses.
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
  };
  for (const auto& [id, address] : members) {
    mix(std::to_string(id.value));
    mix("=");
    mix(address);
    mix(";");
  }
  if (!token.empty()) {
    mix("token=");
    mix(token);
    mix(";");
  }
  return h == 0 ? 1 : h;
}

}  // namespace net
