#define BOOST_TEST_MODULE net_peer_transport
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "net/peer/frame.h"
#include "net/peer/transport.h"
#include "test/support/run_until.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using net::frame_kind;
using net::peer_transport;
using raft::node_id;

namespace {

struct received {
  node_id from;
  frame_kind kind;
  std::string payload;
};

using test_support::run_until;

tcp::acceptor listen_on(asio::io_context& io, unsigned short port = 0) {
  tcp::acceptor a(io);
  a.open(tcp::v4());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind({asio::ip::address_v4::loopback(), port});
  a.listen();
  return a;
}

std::string address_of(const tcp::acceptor& a) {
  return "127.0.0.1:" + std::to_string(a.local_endpoint().port());
}

std::string random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// One transport plus everything it delivered and logged.
struct test_node {
  std::vector<received> got;
  std::vector<std::pair<peer_transport::log_level, std::string>> logs;
  std::unique_ptr<peer_transport> transport;
  // Called after recording each delivered frame, to let a test react.
  std::function<void(const received&)> react;

  std::size_t count_from(node_id from) const {
    std::size_t n = 0;
    for (const auto& r : got) n += r.from == from;
    return n;
  }
  std::size_t logs_containing(const std::string& text) const {
    std::size_t n = 0;
    for (const auto& [level, line] : logs) n += line.find(text) != std::string::npos;
    return n;
  }
  std::size_t logs_at(base::log_level at, const std::string& text) const {
    std::size_t n = 0;
    for (const auto& [level, line] : logs) n += level == at && line.find(text) != std::string::npos;
    return n;
  }
};

// A cluster of transports on one io_context, on ephemeral loopback ports.
struct cluster {
  asio::io_context io;
  std::map<node_id, std::string> members;
  std::map<node_id, tcp::acceptor> pending;  // bound acceptors not yet handed to a transport
  std::map<node_id, std::unique_ptr<test_node>> nodes;
  std::uint64_t cluster_id = 0;

  explicit cluster(int size) {
    for (int i = 1; i <= size; ++i) {
      auto a = listen_on(io);
      members[node_id(i)] = address_of(a);
      pending.emplace(node_id(i), std::move(a));
    }
    cluster_id = peer_transport::derive_cluster_id(members);
  }

  ~cluster() {
    for (auto& [id, n] : nodes) {
      if (n->transport) n->transport->stop();
    }
    nodes.clear();
  }

  test_node& start(node_id id, net::peer_transport_options options = {}) {
    auto a = std::move(pending.at(id));
    pending.erase(id);
    return start_with(id, cluster_id, members, std::move(a), options);
  }

  // Starts a transport with any identity (used to impersonate strangers).
  test_node& start_with(node_id id, std::uint64_t cid, std::map<node_id, std::string> view,
                        tcp::acceptor a, net::peer_transport_options options = {}) {
    auto n = std::make_unique<test_node>();
    test_node* raw = n.get();
    n->transport = std::make_unique<peer_transport>(
        io.get_executor(), id, cid, std::move(view), std::move(a),
        [raw](node_id from, frame_kind kind, std::string payload) {
          raw->got.push_back(received{from, kind, std::move(payload)});
          if (raw->react) raw->react(raw->got.back());
        },
        [raw](peer_transport::log_level level, std::string line) {
          raw->logs.emplace_back(level, std::move(line));
        },
        options);
    n->transport->start();
    auto& slot = nodes[id];
    slot = std::move(n);
    return *slot;
  }

  // Stops and destroys node id, then lets its coroutines finish.
  void kill(node_id id) {
    nodes.at(id)->transport->stop();
    nodes.erase(id);
  }

  peer_transport& t(int id) { return *nodes.at(node_id(id))->transport; }
  test_node& n(int id) { return *nodes.at(node_id(id)); }
};

bool connected(peer_transport& t, int to) {
  auto s = t.status(node_id(to));
  return s && s->connected;
}

}  // namespace

BOOST_AUTO_TEST_CASE(three_nodes_exchange_frames_in_order) {
  cluster c(3);
  for (int i = 1; i <= 3; ++i) c.start(node_id(i));
  constexpr int per_pair = 300;
  for (int seq = 0; seq < per_pair; ++seq) {
    for (int from = 1; from <= 3; ++from) {
      for (int to = 1; to <= 3; ++to) {
        if (from == to) continue;
        const auto kind = seq % 2 ? frame_kind::forward_request : frame_kind::raft_message;
        BOOST_TEST_REQUIRE(c.t(from).send(
            node_id(to), kind,
            std::to_string(from) + "->" + std::to_string(to) + "#" + std::to_string(seq)));
      }
    }
  }
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    for (int i = 1; i <= 3; ++i) {
      if (c.n(i).got.size() < 2 * per_pair) return false;
    }
    return true;
  }));
  for (int to = 1; to <= 3; ++to) {
    BOOST_TEST(c.n(to).got.size() == std::size_t{2 * per_pair});
    std::map<int, int> next;  // sender -> next expected seq
    // The receiver may decode a batch before the sender has seen its write complete.
    BOOST_TEST_REQUIRE(run_until(c.io, [&] {
      for (const auto& s : c.t(to).status()) {
        if (s.frames_sent < std::uint64_t{per_pair}) return false;
      }
      return true;
    }));
    for (const auto& r : c.n(to).got) {
      const int from = static_cast<int>(r.from.value);
      const int seq = next[from]++;
      BOOST_TEST(r.payload ==
                 std::to_string(from) + "->" + std::to_string(to) + "#" + std::to_string(seq));
      BOOST_TEST((r.kind == (seq % 2 ? frame_kind::forward_request : frame_kind::raft_message)));
    }
    for (int from = 1; from <= 3; ++from) {
      if (from == to) continue;
      const auto s = c.t(to).status(node_id(from));
      BOOST_TEST_REQUIRE(s.has_value());
      BOOST_TEST(s->frames_received == std::uint64_t{per_pair});
      BOOST_TEST(s->last_received.has_value());
      BOOST_TEST(s->connected);
      BOOST_TEST(s->frames_sent == std::uint64_t{per_pair});
      BOOST_TEST(s->frames_dropped == 0u);
      BOOST_TEST(s->queued_frames == 0u);
      BOOST_TEST(s->connects == 1u);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_large_message_and_the_small_ones_after_it_arrive_in_send_order) {
  // An append just over the chunk size is fragmented; the heartbeats and small appends
  // sent after it must not overtake it, or the follower sees a gap and rejects them all.
  cluster c(2);
  c.start(node_id(1));
  c.start(node_id(2));
  const std::string big = random_bytes((1 << 20) + 100, 42);
  BOOST_TEST_REQUIRE(c.t(1).send(node_id(2), frame_kind::raft_message, "before"));
  BOOST_TEST_REQUIRE(c.t(1).send(node_id(2), frame_kind::raft_message, big));
  for (int i = 0; i < 100; ++i) {
    BOOST_TEST_REQUIRE(
        c.t(1).send(node_id(2), frame_kind::raft_message, "small " + std::to_string(i)));
  }
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return c.n(2).got.size() == 102; }));
  const auto& got = c.n(2).got;
  BOOST_TEST(got[0].payload == "before");
  BOOST_TEST(got[1].payload.size() == big.size());
  BOOST_TEST((got[1].payload == big));
  for (int i = 0; i < 100; ++i) {
    BOOST_TEST((got[2 + i].payload == "small " + std::to_string(i)),
               "message " << 2 + i << " has " << got[2 + i].payload.size() << " bytes");
  }
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return c.t(1).status(node_id(2))->frames_sent == 102; }));
  const auto s = c.t(1).status(node_id(2));
  BOOST_TEST(s->bytes_sent > big.size());
  BOOST_TEST(s->queued_frames == 0u);
}

BOOST_AUTO_TEST_CASE(messages_of_mixed_sizes_and_kinds_keep_one_order_per_peer) {
  // Sizes on both sides of the chunk size, sent in bursts while earlier ones are still
  // being written: every peer sees exactly its sender's order.
  cluster c(3);
  net::peer_transport_options o;
  o.chunk_bytes = 4 << 10;
  o.max_bulk_messages = 1000;
  for (int i = 1; i <= 3; ++i) c.start(node_id(i), o);
  std::mt19937 rng(99);
  std::map<int, std::vector<std::string>> sent;  // receiver -> payloads from node 1
  const frame_kind kinds[] = {frame_kind::raft_message, frame_kind::forward_request,
                              frame_kind::forward_response};
  std::size_t expected = 0;
  for (int burst = 0; burst < 10; ++burst) {
    for (int k = 0; k < 30; ++k) {
      const int to = 2 + static_cast<int>(rng() % 2);
      const std::size_t size = rng() % 3 == 0 ? (4 << 10) + rng() % (20 << 10) : rng() % 200;
      std::string payload = std::to_string(sent[to].size()) + ":" +
                            random_bytes(size, static_cast<std::uint32_t>(rng()));
      BOOST_TEST_REQUIRE(c.t(1).send(node_id(to), kinds[rng() % 3], payload));
      sent[to].push_back(std::move(payload));
      ++expected;
    }
    // Let part of it go out before the next burst.
    for (int step = 0; step < 5; ++step) c.io.run_one_for(5ms);
  }
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return c.n(2).got.size() + c.n(3).got.size() == expected; }));
  for (int to = 2; to <= 3; ++to) {
    const auto& got = c.n(to).got;
    BOOST_TEST_REQUIRE(got.size() == sent[to].size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      BOOST_TEST_REQUIRE((got[i].payload == sent[to][i]), "node " << to << " message " << i);
    }
  }
}

BOOST_AUTO_TEST_CASE(reconnects_after_the_peer_restarts) {
  cluster c(2);
  net::peer_transport_options o;
  o.backoff_max = 200ms;
  c.start(node_id(1), o);
  c.start(node_id(2), o);
  c.t(1).send(node_id(2), frame_kind::raft_message, "before");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return c.n(2).got.size() == 1; }));
  BOOST_TEST_REQUIRE(connected(c.t(1), 2));

  const auto port = static_cast<unsigned short>(c.t(2).local_endpoint().port());
  c.kill(node_id(2));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return !connected(c.t(1), 2); }));
  BOOST_TEST(c.n(1).logs_containing("lost connection to node 2") == 1u);

  // Node 2 comes back on the same address.
  c.pending.emplace(node_id(2), listen_on(c.io, port));
  c.start(node_id(2), o);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return connected(c.t(1), 2); }));
  BOOST_TEST(c.t(1).status(node_id(2))->connects == 2u);
  c.t(1).send(node_id(2), frame_kind::raft_message, "after");
  c.t(2).send(node_id(1), frame_kind::raft_message, "back");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return !c.n(2).got.empty() && !c.n(1).got.empty(); }));
  BOOST_TEST(c.n(2).got.back().payload == "after");
  BOOST_TEST(c.n(1).got.back().payload == "back");
}

// Every hello announces the sender's read lease; the receiver hears it (on_read_lease, and
// in status()) before any other frame of that connection is delivered, and again from the
// next life of the sender.
BOOST_AUTO_TEST_CASE(a_hello_tells_the_receiver_the_senders_read_lease) {
  cluster c(2);
  std::vector<std::pair<node_id, std::int64_t>> heard;  // at node 1
  std::size_t frames_before_lease = 0;
  net::peer_transport_options o1;
  o1.backoff_max = 200ms;
  o1.read_lease_ms = 210;
  o1.on_read_lease = [&](node_id from, std::int64_t lease) { heard.emplace_back(from, lease); };
  net::peer_transport_options o2;
  o2.backoff_max = 200ms;
  o2.read_lease_ms = 0;
  auto& one = c.start(node_id(1), o1);
  one.react = [&](const received&) {
    if (heard.empty()) ++frames_before_lease;
  };
  c.start(node_id(2), o2);
  BOOST_TEST(!c.t(1).status(node_id(2))->read_lease_ms.has_value());
  c.t(2).send(node_id(1), frame_kind::raft_message, "first");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return c.n(1).got.size() == 1; }));
  BOOST_TEST(frames_before_lease == 0u);
  BOOST_TEST_REQUIRE(heard.size() == 1u);
  BOOST_TEST((heard[0] == std::pair<node_id, std::int64_t>{node_id(2), 0}));
  BOOST_TEST(*c.t(1).status(node_id(2))->read_lease_ms == 0);
  c.t(1).send(node_id(2), frame_kind::raft_message, "back");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return c.n(2).got.size() == 1; }));
  BOOST_TEST(*c.t(2).status(node_id(1))->read_lease_ms == 210);

  // Node 2's next life runs with leases on.
  const auto port = static_cast<unsigned short>(c.t(2).local_endpoint().port());
  c.kill(node_id(2));
  c.pending.emplace(node_id(2), listen_on(c.io, port));
  o2.read_lease_ms = 150;
  c.start(node_id(2), o2);
  c.t(2).send(node_id(1), frame_kind::raft_message, "again");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return c.n(1).got.size() == 2; }));
  BOOST_TEST_REQUIRE(heard.size() == 2u);
  BOOST_TEST((heard[1] == std::pair<node_id, std::int64_t>{node_id(2), 150}));
  BOOST_TEST(*c.t(1).status(node_id(2))->read_lease_ms == 150);
}

BOOST_AUTO_TEST_CASE(frames_from_strangers_and_other_clusters_are_dropped_and_logged) {
  cluster c(2);
  auto& a = c.start(node_id(1));
  net::peer_transport_options fast;
  fast.backoff_initial = 10ms;
  fast.backoff_max = 40ms;

  // Node 3 is not a member; it believes it is, in a member list of its own.
  auto stranger_acceptor = listen_on(c.io);
  std::map<node_id, std::string> stranger_view = c.members;
  stranger_view[node_id(3)] = address_of(stranger_acceptor);
  auto& stranger =
      c.start_with(node_id(3), c.cluster_id, stranger_view, std::move(stranger_acceptor), fast);
  // Node 2's id, but another cluster.
  auto& other = c.start_with(node_id(2), c.cluster_id + 1, c.members,
                             std::move(c.pending.at(node_id(2))), fast);
  for (int i = 0; i < 5; ++i) {
    stranger.transport->send(node_id(1), frame_kind::raft_message, "from stranger");
    other.transport->send(node_id(1), frame_kind::raft_message, "from other cluster");
  }
  // Each of them is refused at its hello and redials several times.
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    return stranger.transport->status(node_id(1))->connects >= 3 &&
           other.transport->status(node_id(1))->connects >= 3;
  }));
  BOOST_TEST(a.got.empty());
  // Logged, but once per (reason, sender) per interval, not once per attempt.
  BOOST_TEST(a.logs_containing("not a member") == 1u);
  BOOST_TEST(a.logs_containing("is not ours") == 1u);
  // The refused side says so once at info level, then only at debug level while it redials.
  BOOST_TEST(stranger.logs_containing("lost connection to node 1") >= 2u);
  BOOST_TEST(stranger.logs_at(base::log_level::info, "lost connection to node 1") == 1u);
  BOOST_TEST(stranger.logs_at(base::log_level::info, "connected to node 1") == 1u);
  BOOST_TEST(a.transport->status(node_id(2))->frames_received == 0u);
  BOOST_TEST(!a.transport->status(node_id(2))->last_received.has_value());
}

BOOST_AUTO_TEST_CASE(bad_frames_after_a_valid_hello_are_dropped_one_by_one) {
  cluster c(2);
  auto& a = c.start(node_id(1));
  // Speak the protocol by hand as node 2, on one connection, so that the order of
  // processing is known: when "good" arrives, the frames before it were handled.
  tcp::socket raw(c.io);
  asio::connect(raw, std::vector{a.transport->local_endpoint()});
  auto h = [&](std::uint64_t cid, int from, int to, frame_kind kind = frame_kind::raft_message) {
    return net::frame_header{kind, 0, cid, node_id(from), node_id(to)};
  };
  std::string bytes;
  net::append_frame(bytes, h(c.cluster_id, 2, 1, frame_kind::hello), net::encode_hello({77, 1}));
  net::append_frame(bytes, h(c.cluster_id + 1, 2, 1), "other cluster");
  net::append_frame(bytes, h(c.cluster_id, 2, 7), "not for node 1");
  net::append_frame(bytes, h(c.cluster_id, 9, 1), "unknown sender");
  net::append_frame(bytes, h(c.cluster_id, 1, 1), "claims to be node 1 itself");
  // A lone middle fragment has nothing to continue.
  net::append_frame(
      bytes,
      {frame_kind::raft_message, net::frame_flags::fragment, c.cluster_id, node_id(2), node_id(1)},
      "orphan fragment");
  net::append_frame(bytes, h(c.cluster_id, 2, 1), "good");
  asio::write(raw, asio::buffer(bytes));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return !a.got.empty(); }));
  BOOST_TEST(a.got.size() == 1u);
  BOOST_TEST(a.got[0].payload == "good");
  BOOST_TEST(a.got[0].from.value == 2u);
  BOOST_TEST(a.logs_containing("is not ours") == 1u);
  BOOST_TEST(a.logs_containing("addressed to node 7") == 1u);
  BOOST_TEST(a.logs_containing("not a member") == 2u);  // node 9, and node 1 as a sender
  BOOST_TEST(a.logs_containing("out of sequence") == 1u);

  // Bytes that do not decode end the connection.
  std::string corrupt = net::encode_frame(h(c.cluster_id, 2, 1), "payload");
  corrupt[net::frame_header_bytes] ^= 1;
  asio::write(raw, asio::buffer(corrupt));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return a.logs_containing("bad checksum") == 1; }));
  raw.non_blocking(true);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    char b;
    boost::system::error_code ec;
    raw.read_some(asio::buffer(&b, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }));
  BOOST_TEST(a.got.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_connection_must_start_with_a_hello) {
  cluster c(2);
  auto& a = c.start(node_id(1));
  tcp::socket raw(c.io);
  asio::connect(raw, std::vector{a.transport->local_endpoint()});
  asio::write(raw, asio::buffer(net::encode_frame(
                       {frame_kind::raft_message, 0, c.cluster_id, node_id(2), node_id(1)}, "x")));
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return a.logs_containing("did not start with a hello") == 1; }));
  BOOST_TEST(a.got.empty());
}

BOOST_AUTO_TEST_CASE(queue_bound_drops_the_oldest_messages) {
  cluster c(2);
  net::peer_transport_options o;
  o.max_queue_frames = 10;
  o.chunk_bytes = 1024;
  o.max_bulk_messages = 2;
  o.backoff_initial = 10ms;
  o.backoff_max = 50ms;
  // Node 2 is down: its port is free, so dialling it is refused.
  const auto port = c.pending.at(node_id(2)).local_endpoint().port();
  c.pending.at(node_id(2)).close();
  c.pending.erase(node_id(2));
  auto& a = c.start(node_id(1), o);

  for (int i = 0; i < 100; ++i) {
    BOOST_TEST_REQUIRE(a.transport->send(node_id(2), frame_kind::raft_message, std::to_string(i)));
  }
  std::vector<std::string> large;
  for (int i = 0; i < 5; ++i) {
    large.push_back(random_bytes(4096, static_cast<std::uint32_t>(i)));
    BOOST_TEST_REQUIRE(a.transport->send(node_id(2), frame_kind::raft_message, large.back()));
  }
  auto s = a.transport->status(node_id(2));
  BOOST_TEST(s->queued_frames == 12u);  // 10 small + 2 large
  BOOST_TEST(s->frames_dropped == 93u);
  BOOST_TEST(s->queued_bytes == 10 * 2 + 2 * 4096u);
  BOOST_TEST(a.logs_containing("outbound queue to node 2 is full") == 1u);

  // Let it fail to dial a few times; the queue keeps its bound meanwhile.
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return a.logs_containing("cannot reach node 2") == 1; }));
  BOOST_TEST(a.transport->status(node_id(2))->queued_frames == 12u);

  // Node 2 comes up: it gets the newest 10 small messages in order, then the newest 2
  // large ones, intact.
  c.pending.emplace(node_id(2), listen_on(c.io, static_cast<unsigned short>(port)));
  auto& b = c.start(node_id(2), o);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return b.got.size() == 12; }));
  for (int i = 0; i < 10; ++i) BOOST_TEST(b.got[i].payload == std::to_string(90 + i));
  BOOST_TEST((b.got[10].payload == large[3]));
  BOOST_TEST((b.got[11].payload == large[4]));
  BOOST_TEST(run_until(c.io, [&] { return a.transport->status(node_id(2))->queued_frames == 0; }));
}

BOOST_AUTO_TEST_CASE(send_refuses_what_it_cannot_deliver) {
  cluster c(2);
  net::peer_transport_options o;
  o.max_frame_bytes = 1000;
  auto& a = c.start(node_id(1), o);
  BOOST_TEST(!a.transport->send(node_id(1), frame_kind::raft_message, "to self"));
  BOOST_TEST(!a.transport->send(node_id(5), frame_kind::raft_message, "to a stranger"));
  BOOST_TEST(!a.transport->send(node_id(2), frame_kind::hello, ""));
  BOOST_TEST(!a.transport->send(node_id(2), frame_kind::raft_message, std::string(1001, 'x')));
  BOOST_TEST(a.transport->send(node_id(2), frame_kind::raft_message, std::string(1000, 'x')));
  a.transport->stop();
  BOOST_TEST(!a.transport->send(node_id(2), frame_kind::raft_message, "after stop"));
}

BOOST_AUTO_TEST_CASE(stop_ends_every_coroutine_and_silences_callbacks) {
  cluster c(3);
  for (int i = 1; i <= 3; ++i) c.start(node_id(i));
  for (int i = 0; i < 10; ++i) c.t(1).send(node_id(2), frame_kind::raft_message, "x");
  c.t(1).send(node_id(3), frame_kind::raft_message, random_bytes(4 << 20, 1));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return connected(c.t(2), 1) && connected(c.t(3), 1); }));
  // Mid-flight: stop everything. The io_context must run out of work promptly, which it
  // only does once every accept, read, write, timer and dial has ended.
  const std::size_t delivered = c.n(2).got.size() + c.n(3).got.size();
  for (int i = 1; i <= 3; ++i) c.t(i).stop();
  const auto started = std::chrono::steady_clock::now();
  c.io.restart();
  c.io.run_for(5s);
  BOOST_TEST(c.io.stopped());
  BOOST_TEST((std::chrono::steady_clock::now() - started < 2s));
  BOOST_TEST(c.n(2).got.size() + c.n(3).got.size() == delivered);
  for (int i = 1; i <= 3; ++i) {
    for (const auto& s : c.t(i).status()) BOOST_TEST(!s.connected);
  }
}

BOOST_AUTO_TEST_CASE(a_hello_without_an_incarnation_closes_the_connection) {
  cluster c(2);
  auto& a = c.start(node_id(1));
  tcp::socket raw(c.io);
  asio::connect(raw, std::vector{a.transport->local_endpoint()});
  std::string bytes;
  // A version-1 style hello (empty payload), then a frame that must not be delivered.
  net::append_frame(bytes, {frame_kind::hello, 0, c.cluster_id, node_id(2), node_id(1)}, {});
  net::append_frame(bytes, {frame_kind::raft_message, 0, c.cluster_id, node_id(2), node_id(1)},
                    "x");
  asio::write(raw, asio::buffer(bytes));
  BOOST_TEST_REQUIRE(run_until(
      c.io, [&] { return a.logs_containing("its hello does not carry an incarnation") == 1; }));
  raw.non_blocking(true);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    char b;
    boost::system::error_code ec;
    raw.read_some(asio::buffer(&b, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }));
  BOOST_TEST(a.got.empty());
}

BOOST_AUTO_TEST_CASE(a_reply_queued_while_the_peer_is_down_is_not_delivered_to_its_next_life) {
  // Node 2 forwarded a request to node 1 and died; node 1's reply, queued while node 2 is
  // down, answers a call id that node 2's next life may reuse for another call.
  cluster c(2);
  net::peer_transport_options o;
  o.backoff_initial = 10ms;
  o.backoff_max = 50ms;
  c.start(node_id(1), o);
  c.start(node_id(2), o);
  const std::uint64_t first_life = c.t(2).incarnation();
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    return c.t(1).status(node_id(2))->incarnation == first_life && connected(c.t(1), 2);
  }));
  const auto port = static_cast<unsigned short>(c.t(2).local_endpoint().port());
  c.kill(node_id(2));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return !connected(c.t(1), 2); }));

  BOOST_TEST_REQUIRE(c.t(1).send(node_id(2), frame_kind::forward_response, "stale reply"));
  BOOST_TEST_REQUIRE(c.t(1).send(node_id(2), frame_kind::raft_message, "raft message"));
  BOOST_TEST_REQUIRE(c.t(1).send(node_id(2), frame_kind::forward_request, "request"));
  const auto dropped_before = c.t(1).status(node_id(2))->frames_dropped;

  c.pending.emplace(node_id(2), listen_on(c.io, port));
  auto& b = c.start(node_id(2), o);
  BOOST_TEST(b.transport->incarnation() != first_life);
  // Raft messages and requests survive the restart, in order; the reply does not.
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return b.got.size() >= 2; }));
  BOOST_TEST(b.got[0].payload == "raft message");
  BOOST_TEST(b.got[1].payload == "request");
  // A reply sent once node 1 knows the new life reaches it, behind nothing stale.
  BOOST_TEST_REQUIRE(run_until(
      c.io, [&] { return c.t(1).status(node_id(2))->incarnation == b.transport->incarnation(); }));
  BOOST_TEST_REQUIRE(c.t(1).send(node_id(2), frame_kind::forward_response, "fresh reply"));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return b.got.size() >= 3; }));
  BOOST_TEST(b.got.size() == 3u);
  BOOST_TEST(b.got[2].payload == "fresh reply");
  for (const auto& r : b.got) BOOST_TEST(r.payload != "stale reply");
  // Dropped by node 1 if node 2's hello came first, else by node 2 on arrival.
  BOOST_TEST((c.t(1).status(node_id(2))->frames_dropped == dropped_before + 1 ||
              b.logs_containing("meant for a previous life of this node") == 1));
}

BOOST_AUTO_TEST_CASE(a_new_incarnation_in_a_hello_drops_the_replies_queued_for_the_old_one) {
  // The sender's side, alone: node 2's port is closed so node 1 cannot dial it, and node 2's
  // next life announces itself by hand.
  cluster c(2);
  net::peer_transport_options o;
  o.backoff_initial = 10ms;
  o.backoff_max = 50ms;
  const auto port = c.pending.at(node_id(2)).local_endpoint().port();
  c.pending.at(node_id(2)).close();
  c.pending.erase(node_id(2));
  auto& a = c.start(node_id(1), o);
  auto hello_from_2 = [&](std::uint64_t incarnation) {
    auto s = std::make_unique<tcp::socket>(c.io);
    asio::connect(*s, std::vector{a.transport->local_endpoint()});
    asio::write(*s, asio::buffer(net::encode_frame(
                        {frame_kind::hello, 0, c.cluster_id, node_id(2), node_id(1)},
                        net::encode_hello({incarnation, 1}))));
    return s;
  };
  auto first = hello_from_2(1111);
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return a.transport->status(node_id(2))->incarnation == 1111; }));
  BOOST_TEST_REQUIRE(a.transport->send(node_id(2), frame_kind::forward_response, "for 1111"));
  BOOST_TEST_REQUIRE(a.transport->send(node_id(2), frame_kind::raft_message, "raft"));
  BOOST_TEST_REQUIRE(a.transport->send(node_id(2), frame_kind::forward_response,
                                       random_bytes(3 << 20, 3)));  // fragmented
  BOOST_TEST(a.transport->status(node_id(2))->queued_frames == 3u);
  // Reconnecting as the same life changes nothing.
  first.reset();
  auto again = hello_from_2(1111);
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return a.logs_containing("accepted a connection from node 2") == 2; }));
  BOOST_TEST(a.transport->status(node_id(2))->queued_frames == 3u);
  // A new life: both replies go, the Raft message stays.
  auto next = hello_from_2(2222);
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return a.transport->status(node_id(2))->incarnation == 2222; }));
  const auto s = a.transport->status(node_id(2));
  BOOST_TEST(s->queued_frames == 1u);
  BOOST_TEST(s->queued_bytes == 4u);
  BOOST_TEST(s->frames_dropped == 2u);
  BOOST_TEST(a.logs_containing("node 2 restarted (new incarnation): dropped 2 queued replies") ==
             1u);
  (void)port;
}

BOOST_AUTO_TEST_CASE(a_frame_meant_for_another_incarnation_is_dropped_by_its_receiver) {
  // The receiver's side, alone: the sender reconnected before it heard of the restart.
  cluster c(2);
  auto& a = c.start(node_id(1));
  const std::uint64_t mine = a.transport->incarnation();
  BOOST_TEST(mine != 0u);
  tcp::socket raw(c.io);
  asio::connect(raw, std::vector{a.transport->local_endpoint()});
  auto h = [&](frame_kind kind, std::uint64_t to_incarnation, std::uint8_t flags = 0) {
    return net::frame_header{kind, flags, c.cluster_id, node_id(2), node_id(1), to_incarnation};
  };
  std::string bytes;
  net::append_frame(bytes, h(frame_kind::hello, 0), net::encode_hello({5, 1}));
  net::append_frame(bytes, h(frame_kind::forward_response, mine + 1), "old life");
  using namespace net::frame_flags;
  net::append_frame(bytes, h(frame_kind::forward_response, mine + 1, fragment | first), "old ");
  net::append_frame(bytes, h(frame_kind::forward_response, mine + 1, fragment | last), "fragments");
  net::append_frame(bytes, h(frame_kind::forward_response, mine), "this life");
  net::append_frame(bytes, h(frame_kind::forward_response, 0), "any life");
  net::append_frame(bytes, h(frame_kind::raft_message, 0), "end");
  asio::write(raw, asio::buffer(bytes));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return a.got.size() == 3; }));
  BOOST_TEST(a.got[0].payload == "this life");
  BOOST_TEST(a.got[1].payload == "any life");
  BOOST_TEST(a.got[2].payload == "end");
  // Logged once per interval, at info: it is what a restart looks like, not a fault.
  BOOST_TEST(a.logs_at(base::log_level::info, "meant for a previous life of this node") == 1u);
  BOOST_TEST(a.logs_containing("out of sequence") == 0u);
}

BOOST_AUTO_TEST_CASE(clusters_with_different_tokens_at_the_same_addresses_cannot_talk) {
  // A cluster rebuilt at the same addresses with a new token, and node 2 still running
  // with (or restarted from the data dir of) the old one.
  cluster c(2);
  const auto new_id = peer_transport::derive_cluster_id(c.members, "rebuilt");
  const auto old_id = peer_transport::derive_cluster_id(c.members, "original");
  BOOST_TEST_REQUIRE(new_id != old_id);
  net::peer_transport_options o;
  o.backoff_initial = 10ms;
  o.backoff_max = 40ms;
  auto& a = c.start_with(node_id(1), new_id, c.members, std::move(c.pending.at(node_id(1))), o);
  const auto port = c.pending.at(node_id(2)).local_endpoint().port();
  auto& old = c.start_with(node_id(2), old_id, c.members, std::move(c.pending.at(node_id(2))), o);
  c.pending.clear();
  for (int i = 0; i < 3; ++i) {
    a.transport->send(node_id(2), frame_kind::raft_message, "to the old node");
    old.transport->send(node_id(1), frame_kind::raft_message, "from the old node");
  }
  // Each refuses the other's hello, in both directions, and each redials a few times.
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    return a.transport->status(node_id(2))->connects >= 3 &&
           old.transport->status(node_id(1))->connects >= 3;
  }));
  BOOST_TEST(a.got.empty());
  BOOST_TEST(old.got.empty());
  BOOST_TEST(a.logs_containing("is not ours") == 1u);
  BOOST_TEST(old.logs_containing("is not ours") == 1u);
  BOOST_TEST(a.transport->status(node_id(2))->incarnation == 0u);

  // Node 2 of the rebuilt cluster, at the same address, is accepted.
  c.kill(node_id(2));
  c.pending.emplace(node_id(2), listen_on(c.io, static_cast<unsigned short>(port)));
  auto& fresh = c.start_with(node_id(2), new_id, c.members, std::move(c.pending.at(node_id(2))), o);
  c.pending.clear();
  fresh.transport->send(node_id(1), frame_kind::raft_message, "from the new node 2");
  // Delivery is at most once: node 1 may still hold a connection that reached the old
  // listener's backlog, and a frame written to it before its reset is lost, as Raft allows.
  // So node 1 sends again, like Raft's retries, until the new node 2 has one.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  bool delivered = false;
  while (!delivered && std::chrono::steady_clock::now() < deadline) {
    a.transport->send(node_id(2), frame_kind::raft_message, "to the new node 2");
    delivered = run_until(
        c.io, [&] { return !fresh.got.empty() && fresh.got.back().payload == "to the new node 2"; },
        200ms);
  }
  BOOST_TEST_REQUIRE(delivered);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return !a.got.empty(); }));
  BOOST_TEST(a.got.size() == 1u);
  BOOST_TEST(a.got.back().payload == "from the new node 2");
  // What node 1 wrote to the old node was lost with those connections; some may still have
  // been queued and arrive first.
  BOOST_TEST(fresh.got.back().payload == "to the new node 2");
}

BOOST_AUTO_TEST_CASE(cluster_id_is_derived_from_the_member_list) {
  std::map<node_id, std::string> m{{node_id(1), "127.0.0.1:7001"}, {node_id(2), "127.0.0.1:7002"}};
  const auto id = peer_transport::derive_cluster_id(m);
  BOOST_TEST(id != 0u);
  BOOST_TEST(peer_transport::derive_cluster_id(m) == id);
  auto moved = m;
  moved[node_id(2)] = "127.0.0.1:7003";
  BOOST_TEST(peer_transport::derive_cluster_id(moved) != id);
  auto grown = m;
  grown[node_id(3)] = "127.0.0.1:7003";
  BOOST_TEST(peer_transport::derive_cluster_id(grown) != id);
  // A token makes another cluster of the same list; no token is the list alone.
  BOOST_TEST(peer_transport::derive_cluster_id(m, "") == id);
  const auto with_token = peer_transport::derive_cluster_id(m, "prod-2024");
  BOOST_TEST(with_token != id);
  BOOST_TEST(peer_transport::derive_cluster_id(m, "prod-2024") == with_token);
  BOOST_TEST(peer_transport::derive_cluster_id(m, "prod-2025") != with_token);
}

BOOST_AUTO_TEST_CASE(a_whole_frame_larger_than_the_read_buffer_is_delivered) {
  // A sender with a larger chunk size may send a big message as one frame; the reader grows
  // its buffer to the announced size (bounded by max_frame_bytes) and shrinks it after.
  cluster c(2);
  auto& a = c.start(node_id(1));
  tcp::socket raw(c.io);
  asio::connect(raw, std::vector{a.transport->local_endpoint()});
  const std::string big = random_bytes(3 << 20, 5);
  std::string bytes;
  net::append_frame(bytes, {frame_kind::hello, 0, c.cluster_id, node_id(2), node_id(1)},
                    net::encode_hello({77, 1}));
  net::append_frame(bytes, {frame_kind::raft_message, 0, c.cluster_id, node_id(2), node_id(1)},
                    big);
  net::append_frame(bytes, {frame_kind::raft_message, 0, c.cluster_id, node_id(2), node_id(1)},
                    "next");
  raw.non_blocking(true);
  std::size_t written = 0;
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    boost::system::error_code ec;
    written += raw.write_some(asio::buffer(bytes.data() + written, bytes.size() - written), ec);
    return a.got.size() == 2;
  }));
  BOOST_TEST((a.got[0].payload == big));
  BOOST_TEST(a.got[1].payload == "next");
  const auto s = a.transport->status(node_id(2));
  BOOST_TEST(s->bytes_received == bytes.size());
  BOOST_TEST(s->frames_received == 2u);
}

BOOST_AUTO_TEST_CASE(a_large_message_cut_by_a_lost_connection_is_resent_whole) {
  cluster c(2);
  net::peer_transport_options o;
  o.chunk_bytes = 4 << 10;
  o.backoff_max = 100ms;
  c.start(node_id(1), o);
  c.start(node_id(2), o);
  const std::string big = random_bytes(4 << 20, 11);
  BOOST_TEST_REQUIRE(c.t(1).send(node_id(2), frame_kind::raft_message, big));
  // Node 2 dies with part of the message read.
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return c.t(2).status(node_id(1))->bytes_received > (256u << 10); }));
  BOOST_TEST_REQUIRE(c.n(2).got.empty());
  const auto port = static_cast<unsigned short>(c.t(2).local_endpoint().port());
  c.kill(node_id(2));
  c.pending.emplace(node_id(2), listen_on(c.io, port));
  auto& b = c.start(node_id(2), o);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return !b.got.empty(); }));
  BOOST_TEST(b.got.size() == 1u);
  BOOST_TEST(b.got[0].payload.size() == big.size());
  BOOST_TEST((b.got[0].payload == big));
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return c.t(1).status(node_id(2))->queued_frames == 0; }));
  BOOST_TEST(c.t(1).status(node_id(2))->connects == 2u);
}

namespace {

// The amnesia guard of one node: a data-dir generation and the record of the others', kept
// here instead of in a file; `records` counts the durable writes the transport asked for.
struct guard_store {
  std::map<node_id, std::uint64_t> recorded;
  int records = 0;
  std::string fail;  // set: record() fails with it

  net::peer_transport_options options(std::uint64_t own) {
    net::peer_transport_options o;
    o.backoff_initial = 10ms;
    o.backoff_max = 50ms;
    net::peer_transport_options::generation_guard g;
    g.own = own;
    g.known = recorded;
    g.record = [this](node_id id, std::uint64_t generation) -> std::string {
      if (!fail.empty()) return fail;
      ++records;
      recorded[id] = generation;
      return {};
    };
    o.generations = std::move(g);
    return o;
  }
};

std::uint64_t drops_of(peer_transport& t, const std::string& reason) {
  const auto d = t.drops();
  const auto it = d.find(reason);
  return it == d.end() ? 0 : it->second;
}

std::size_t count_kind(const test_node& n, frame_kind kind) {
  std::size_t k = 0;
  for (const auto& r : n.got) k += r.kind == kind;
  return k;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_member_that_lost_its_data_dir_is_refused_and_told_so) {
  cluster c(2);
  guard_store one, two;
  c.start(node_id(1), one.options(0x1111));
  c.start(node_id(2), two.options(0x2222));
  BOOST_TEST(c.t(1).generation() == 0x1111u);
  c.t(2).send(node_id(1), frame_kind::raft_message, "vote");
  c.t(1).send(node_id(2), frame_kind::raft_message, "append");
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return c.n(1).got.size() == 1 && c.n(2).got.size() == 1; }));
  // Each learned the other's generation once, before delivering its first frame.
  BOOST_TEST(one.records == 1);
  BOOST_TEST(one.recorded.at(node_id(2)) == 0x2222u);
  BOOST_TEST(two.recorded.at(node_id(1)) == 0x1111u);
  BOOST_TEST(c.t(1).status(node_id(2))->generation == 0x2222u);
  BOOST_TEST_REQUIRE(connected(c.t(1), 2));

  // Node 2 loses its data dir: it comes back with another generation and no record.
  const auto port = static_cast<unsigned short>(c.t(2).local_endpoint().port());
  c.kill(node_id(2));
  guard_store wiped;
  c.pending.emplace(node_id(2), listen_on(c.io, port));
  auto& b = c.start(node_id(2), wiped.options(0x3333));
  b.transport->send(node_id(1), frame_kind::raft_message, "second vote");

  // Node 1 refuses it and says so; node 2 gets the refusal on node 1's connection to it.
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return count_kind(b, frame_kind::refused) >= 1; }));
  const auto& told = *std::find_if(b.got.begin(), b.got.end(),
                                   [](const received& r) { return r.kind == frame_kind::refused; });
  BOOST_TEST((told.from == node_id(1)));
  const auto r = net::decode_refusal(told.payload);
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST((r->reason == net::refusal_reason::lost_data_dir));
  BOOST_TEST(r->recorded_generation == 0x2222u);
  BOOST_TEST(r->announced_generation == 0x3333u);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return drops_of(c.t(1), "lost_data_dir") >= 2; }));
  BOOST_TEST(c.n(1).got.size() == 1u);  // neither the hello nor "second vote" delivered
  BOOST_TEST(c.n(1).logs_at(base::log_level::error, "node 2 lost its data dir") == 1u);
  BOOST_TEST(c.t(1).status(node_id(2))->refused);
  BOOST_TEST(one.records == 1);  // the record is not overwritten
  BOOST_TEST(one.recorded.at(node_id(2)) == 0x2222u);
  // Nothing but the refusal goes to it: no Raft message of node 1 reaches node 2.
  BOOST_TEST(!c.t(1).send(node_id(2), frame_kind::raft_message, "append"));
  BOOST_TEST(count_kind(b, frame_kind::raft_message) == 0u);
  BOOST_TEST(b.got.size() == count_kind(b, frame_kind::refused));
  // More frames of that life are dropped and counted, and not logged again as errors.
  const auto before = drops_of(c.t(1), "lost_data_dir");
  b.transport->send(node_id(1), frame_kind::raft_message, "third vote");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return drops_of(c.t(1), "lost_data_dir") > before; }));
  BOOST_TEST(c.n(1).got.size() == 1u);
  BOOST_TEST(c.n(1).logs_at(base::log_level::error, "node 2 lost its data dir") == 1u);

  // Its data dir restored (the recorded generation again): accepted as before.
  c.kill(node_id(2));
  c.pending.emplace(node_id(2), listen_on(c.io, port));
  auto& restored = c.start(node_id(2), two.options(0x2222));
  restored.transport->send(node_id(1), frame_kind::raft_message, "back");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return c.n(1).got.size() == 2; }));
  BOOST_TEST(c.n(1).got.back().payload == "back");
  BOOST_TEST(!c.t(1).status(node_id(2))->refused);
  BOOST_TEST_REQUIRE(c.t(1).send(node_id(2), frame_kind::raft_message, "welcome"));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return !restored.got.empty(); }));
  BOOST_TEST(restored.got.back().payload == "welcome");
  BOOST_TEST(count_kind(restored, frame_kind::refused) == 0u);
  BOOST_TEST(one.records == 1);
}

BOOST_AUTO_TEST_CASE(a_member_first_heard_late_is_learned_and_a_failed_record_refuses_it) {
  cluster c(3);
  guard_store one, two, three;
  c.start(node_id(1), one.options(11));
  c.start(node_id(2), two.options(22));
  c.t(1).send(node_id(2), frame_kind::raft_message, "a");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return c.n(2).got.size() == 1; }));
  BOOST_TEST(one.recorded.count(node_id(3)) == 0u);

  // Node 3 starts late, after the others talked: it is learned at first sight.
  c.start(node_id(3), three.options(33));
  c.t(3).send(node_id(1), frame_kind::raft_message, "late");
  c.t(1).send(node_id(3), frame_kind::raft_message, "hi");
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return c.n(1).got.size() == 1 && c.n(3).got.size() == 1; }));
  BOOST_TEST(one.recorded.at(node_id(3)) == 33u);
  BOOST_TEST(three.recorded.at(node_id(1)) == 11u);
  BOOST_TEST(drops_of(c.t(1), "lost_data_dir") == 0u);

  // A record that cannot be made durable: the frames of that member are not delivered.
  c.kill(node_id(3));
  guard_store broken;
  broken.fail = "disk full";
  // Node 2 restarts with its data dir but cannot write its record of node 3 (never seen
  // by this life, since its record is empty in `broken`).
  const auto port2 = static_cast<unsigned short>(c.t(2).local_endpoint().port());
  c.kill(node_id(2));
  c.pending.emplace(node_id(2), listen_on(c.io, port2));
  auto& b = c.start(node_id(2), broken.options(22));
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return drops_of(c.t(2), "unrecorded_generation") >= 1; }));
  BOOST_TEST(b.got.empty());
  BOOST_TEST(b.logs_at(base::log_level::error, "disk full") >= 1u);
}

// --- membership changes at run time (set_members) and joining (cluster id 0) ---------------

namespace {

net::peer_transport_options fast_redial() {
  net::peer_transport_options o;
  o.backoff_initial = 10ms;
  o.backoff_max = 40ms;
  return o;
}

bool has_payload(const test_node& n, node_id from, const std::string& payload) {
  return std::any_of(n.got.begin(), n.got.end(),
                     [&](const received& r) { return r.from == from && r.payload == payload; });
}

// Sends until `receiver` has the payload from `from`: a frame written to a connection that
// is then closed is lost, and Raft sends again the same way. False if send() refuses.
bool deliver_eventually(cluster& c, test_node& sender, node_id from, node_id to,
                        test_node& receiver, const std::string& payload) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!sender.transport->send(to, frame_kind::raft_message, payload)) return false;
    if (run_until(
            c.io, [&] { return has_payload(receiver, from, payload); }, 200ms))
      return true;
  }
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_added_member_is_dialled_and_its_frames_are_accepted) {
  cluster c(3);
  const auto o = fast_redial();
  const std::map<node_id, std::string> first{{node_id(1), c.members.at(node_id(1))},
                                             {node_id(2), c.members.at(node_id(2))}};
  auto& a = c.start_with(node_id(1), c.cluster_id, first, std::move(c.pending.at(node_id(1))), o);
  auto& b = c.start_with(node_id(2), c.cluster_id, first, std::move(c.pending.at(node_id(2))), o);
  // Node 3 was added: it knows all three, nodes 1 and 2 have not applied the change yet.
  auto& n3 =
      c.start_with(node_id(3), c.cluster_id, c.members, std::move(c.pending.at(node_id(3))), o);
  c.pending.clear();
  BOOST_TEST(!a.transport->send(node_id(3), frame_kind::raft_message, "not yet"));
  BOOST_TEST(!a.transport->status(node_id(3)).has_value());
  n3.transport->send(node_id(1), frame_kind::raft_message, "too early");
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return drops_of(*a.transport, "unknown_sender") >= 2; }));
  BOOST_TEST(a.got.empty());

  a.transport->set_members(c.members);
  BOOST_TEST(a.logs_containing("peers: now dialling node 3 at " + c.members.at(node_id(3))) == 1u);
  BOOST_TEST(a.transport->status().size() == 2u);
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(3), n3, "welcome"));
  BOOST_TEST_REQUIRE(deliver_eventually(c, n3, node_id(3), node_id(1), a, "thanks"));
  BOOST_TEST(a.transport->status(node_id(3))->frames_received >= 1u);
  BOOST_TEST(connected(*a.transport, 3));
  // Node 2 is not disturbed by the change.
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(2), b, "still here"));
  BOOST_TEST(a.transport->status(node_id(2))->connects == 1u);

  // The same members again: nothing changes, nothing is logged.
  const auto lines = a.logs.size();
  a.transport->set_members(c.members);
  BOOST_TEST(a.logs.size() == lines);
  BOOST_TEST(a.transport->status(node_id(3))->connects == 1u);
}

BOOST_AUTO_TEST_CASE(a_removed_member_is_heard_no_more_and_can_be_added_again) {
  cluster c(2);
  const auto o = fast_redial();
  auto& a = c.start(node_id(1), o);
  auto& b = c.start(node_id(2), o);
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(2), b, "hi"));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return connected(*b.transport, 1); }));

  // Node 1 applies the removal of node 2 inside its frame handler, as a node applies a
  // configuration entry: node 2's frames behind it, maybe in the same read, are not delivered.
  const std::map<node_id, std::string> alone{{node_id(1), c.members.at(node_id(1))}};
  a.react = [&](const received& r) {
    if (r.payload == "leave") a.transport->set_members(alone);
  };
  b.transport->send(node_id(1), frame_kind::raft_message, "before");
  b.transport->send(node_id(1), frame_kind::raft_message, "leave");
  b.transport->send(node_id(1), frame_kind::raft_message, "after");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return has_payload(a, node_id(2), "leave"); }));
  a.react = nullptr;
  BOOST_TEST(a.logs_containing("peers: node 2 removed") == 1u);
  BOOST_TEST(!a.transport->send(node_id(2), frame_kind::raft_message, "to a former member"));
  BOOST_TEST(!a.transport->status(node_id(2)).has_value());
  BOOST_TEST(a.transport->status().empty());

  // Its connection was closed, and each redial is refused at its hello.
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    return b.transport->status(node_id(1))->connects >= 4 &&
           drops_of(*a.transport, "unknown_sender") >= 3;
  }));
  for (int i = 0; i < 3; ++i) b.transport->send(node_id(1), frame_kind::raft_message, "ignored");
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return b.transport->status(node_id(1))->connects >= 6; }));
  BOOST_TEST(a.got.size() == 2u);  // "before" and "leave"
  BOOST_TEST(!has_payload(a, node_id(2), "after"));
  BOOST_TEST(!has_payload(a, node_id(2), "ignored"));
  // Node 1 dials it no more (it would have redialled within its 40 ms backoff).
  BOOST_TEST(a.logs_containing("connected to node 2") == 1u);
  BOOST_TEST(a.logs_containing("lost connection to node 2") == 0u);

  // Added again: a new member as far as the transport knows, counters from zero.
  a.transport->set_members(c.members);
  BOOST_TEST(a.logs_containing("peers: now dialling node 2 at " + c.members.at(node_id(2))) == 1u);
  BOOST_TEST(a.transport->status(node_id(2))->frames_received == 0u);
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(2), b, "welcome back"));
  BOOST_TEST_REQUIRE(deliver_eventually(c, b, node_id(2), node_id(1), a, "glad to be back"));
  BOOST_TEST(a.transport->status(node_id(2))->connects == 1u);

  // Removed and added again at once, while its old coroutine is still winding down: the two
  // peer states coexist for a moment; the new one works.
  a.transport->set_members(alone);
  a.transport->set_members(c.members);
  BOOST_TEST(a.logs_containing("peers: node 2 removed") == 2u);
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(2), b, "third time"));
  BOOST_TEST_REQUIRE(deliver_eventually(c, b, node_id(2), node_id(1), a, "still me"));
}

BOOST_AUTO_TEST_CASE(a_member_that_moved_is_redialled_at_its_new_address) {
  cluster c(2);
  const auto o = fast_redial();
  auto& a = c.start(node_id(1), o);
  c.start(node_id(2), o);
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(2), c.n(2), "before"));
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return connected(*a.transport, 2); }));

  // Node 2 moves while its old process still answers at the old address: node 1 must leave
  // the connection it has and dial the new address.
  std::unique_ptr<test_node> old = std::move(c.nodes.at(node_id(2)));
  c.nodes.erase(node_id(2));
  auto moved_acceptor = listen_on(c.io);
  auto moved = c.members;
  moved[node_id(2)] = address_of(moved_acceptor);
  auto& fresh = c.start_with(node_id(2), c.cluster_id, moved, std::move(moved_acceptor), o);
  a.transport->set_members(moved);
  BOOST_TEST(a.logs_containing("peers: node 2 moved from " + c.members.at(node_id(2)) + " to " +
                               moved.at(node_id(2))) == 1u);
  BOOST_TEST(a.transport->status(node_id(2))->address == moved.at(node_id(2)));
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(2), fresh, "after"));
  BOOST_TEST(old->got.size() == 1u);  // nothing more went to the old address
  BOOST_TEST(a.transport->status(node_id(2))->connects == 2u);
  BOOST_TEST_REQUIRE(deliver_eventually(c, fresh, node_id(2), node_id(1), a, "from the new place"));
  old->transport->stop();

  // It moves again, this time restarting on another port while node 1 redials the address
  // it left: delivery resumes at the new address.
  c.kill(node_id(2));
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return a.logs_containing("cannot reach node 2") >= 1; }));
  auto third_acceptor = listen_on(c.io);
  auto third = moved;
  third[node_id(2)] = address_of(third_acceptor);
  auto& again = c.start_with(node_id(2), c.cluster_id, third, std::move(third_acceptor), o);
  a.transport->set_members(third);
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(2), again, "found you"));
  BOOST_TEST_REQUIRE(deliver_eventually(c, again, node_id(2), node_id(1), a, "yes"));
}

BOOST_AUTO_TEST_CASE(a_joining_node_adopts_the_cluster_id_of_the_first_member_that_contacts_it) {
  cluster c(2);
  const auto o = fast_redial();
  // Node 2 joins with an empty data dir: cluster id 0. Its first attempt to make the id
  // durable fails.
  std::vector<std::uint64_t> adopted;
  std::string fail_once = "disk full";
  auto joining = o;
  joining.adopt_cluster_id = [&](std::uint64_t id) {
    adopted.push_back(id);
    return std::exchange(fail_once, std::string{});
  };
  auto& j = c.start_with(node_id(2), 0, c.members, std::move(c.pending.at(node_id(2))), joining);
  c.pending.erase(node_id(2));
  BOOST_TEST(j.transport->cluster_id() == 0u);
  BOOST_TEST(j.transport->send(node_id(1), frame_kind::raft_message, "queued while joining"));

  // A stranger of another cluster (node 9, not a member) contacts it: never adopted.
  auto stranger_acceptor = listen_on(c.io);
  const std::map<node_id, std::string> stranger_view{{node_id(2), c.members.at(node_id(2))},
                                                     {node_id(9), address_of(stranger_acceptor)}};
  auto& stranger =
      c.start_with(node_id(9), c.cluster_id + 1, stranger_view, std::move(stranger_acceptor), o);
  stranger.transport->send(node_id(2), frame_kind::raft_message, "adopt me");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    return stranger.transport->status(node_id(2))->connects >= 3 &&
           drops_of(*j.transport, "unknown_sender") >= 3;
  }));
  BOOST_TEST(adopted.empty());
  BOOST_TEST(j.transport->cluster_id() == 0u);
  BOOST_TEST(j.got.empty());
  // Meanwhile it dials nobody: node 1's port listens (its transport is not started yet),
  // so any dial would have connected.
  BOOST_TEST(j.transport->status(node_id(1))->connects == 0u);

  // Node 1, a member with the real id, contacts it.
  auto& a = c.start(node_id(1), o);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return j.transport->cluster_id() != 0; }));
  BOOST_TEST(adopted.size() == 2u);
  for (auto id : adopted) BOOST_TEST(id == c.cluster_id);
  BOOST_TEST(j.transport->cluster_id() == c.cluster_id);
  BOOST_TEST(drops_of(*j.transport, "unrecorded_cluster_id") == 1u);
  BOOST_TEST(j.logs_at(base::log_level::error, "disk full") == 1u);
  BOOST_TEST(j.logs_containing("joined cluster") == 1u);

  // Now it dials with the adopted id: what it queued arrives, and both ways work.
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return has_payload(a, node_id(2), "queued while joining"); }));
  BOOST_TEST_REQUIRE(deliver_eventually(c, a, node_id(1), node_id(2), j, "hello joiner"));
  BOOST_TEST_REQUIRE(deliver_eventually(c, j, node_id(2), node_id(1), a, "hello member"));
  BOOST_TEST(drops_of(*a.transport, "other_cluster") == 0u);  // it never sent cluster id 0

  // The stranger stays refused, now for its cluster id, and changes nothing.
  const auto other = drops_of(*j.transport, "other_cluster");
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return drops_of(*j.transport, "other_cluster") > other; }));
  BOOST_TEST(adopted.size() == 2u);
  BOOST_TEST(j.transport->cluster_id() == c.cluster_id);
  BOOST_TEST(!has_payload(j, node_id(9), "adopt me"));
}
