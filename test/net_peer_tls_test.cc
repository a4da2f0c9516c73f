// Mutual TLS on the peer transport (net/peer/tls.h, transport.h "TLS"): certificates are made
// at test time by scripts/make-certs.sh (the openssl command line); without openssl every
// case is skipped and says so.
#define BOOST_TEST_MODULE net_peer_tls
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "net/peer/frame.h"
#include "net/peer/tls.h"
#include "net/peer/transport.h"
#include "test/support/run_until.h"

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace fs = std::filesystem;
using asio::ip::tcp;
using namespace std::chrono_literals;
using net::frame_kind;
using net::peer_transport;
using raft::node_id;

namespace {

// Two throwaway CAs, each with certificates for nodes 1..3, made once per test run.
struct certificates {
  fs::path root;
  bool made = false;
  std::string why_not;

  certificates() {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
      why_not = "the openssl command line tool is not installed";
      return;
    }
    root = fs::temp_directory_path() /
           ("raftkv-peer-tls-test-" + std::to_string(std::random_device{}()));
    const std::string script = std::string(RAFTKV_SOURCE_DIR) + "/scripts/make-certs.sh";
    for (const char* ca : {"a", "b"}) {
      const std::string cmd = "bash " + script + " " + (root / ca).string() + " 3 2>/dev/null";
      if (std::system(cmd.c_str()) != 0) {
        why_not = "scripts/make-certs.sh failed: " + cmd;
        return;
      }
    }
    made = true;
  }
  ~certificates() {
    std::error_code ignored;
    if (!root.empty()) fs::remove_all(root, ignored);
  }

  // The TLS setup of node `cert_of` signed by CA `signer`, trusting CA `trust`.
  net::peer_tls tls(int cert_of, const char* signer = "a", const char* trust = "a") const {
    const auto dir = root / signer;
    const std::string name = "node" + std::to_string(cert_of);
    auto made_tls =
        net::make_peer_tls((root / trust / "ca.pem").string(), (dir / (name + ".pem")).string(),
                           (dir / (name + ".key")).string());
    if (auto* why = std::get_if<std::string>(&made_tls)) BOOST_FAIL(*why);
    return std::get<net::peer_tls>(std::move(made_tls));
  }
  fs::path file(const char* ca, const std::string& name) const { return root / ca / name; }
};

const certificates& certs() {
  static certificates c;
  return c;
}

// Skips a case loudly when certificates cannot be made.
struct need_openssl {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    boost::test_tools::assertion_result r(certs().made);
    if (!certs().made) r.message() << "SKIPPED: " << certs().why_not;
    return r;
  }
};

using test_support::run_until;

struct received {
  node_id from;
  frame_kind kind;
  std::string payload;
};

struct test_node {
  std::vector<received> got;
  std::vector<std::string> logs;
  std::unique_ptr<peer_transport> transport;

  std::size_t logs_containing(const std::string& text) const {
    std::size_t n = 0;
    for (const auto& line : logs) n += line.find(text) != std::string::npos;
    return n;
  }
  std::uint64_t drops(const std::string& reason) const {
    const auto d = transport->drops();
    const auto it = d.find(reason);
    return it == d.end() ? 0 : it->second;
  }
};

// Transports of one cluster on one io_context and ephemeral loopback ports.
struct cluster {
  asio::io_context io;
  std::map<node_id, std::string> members;
  std::map<node_id, tcp::acceptor> pending;
  std::map<node_id, std::unique_ptr<test_node>> nodes;
  std::uint64_t cluster_id = 0;

  explicit cluster(int size) {
    for (int i = 1; i <= size; ++i) {
      tcp::acceptor a(io);
      a.open(tcp::v4());
      a.bind({asio::ip::address_v4::loopback(), 0});
      a.listen();
      members[node_id(i)] = "127.0.0.1:" + std::to_string(a.local_endpoint().port());
      pending.emplace(node_id(i), std::move(a));
    }
    cluster_id = peer_transport::derive_cluster_id(members);
  }
  ~cluster() {
    for (auto& [id, n] : nodes) n->transport->stop();
    nodes.clear();
  }

  test_node& start(int id, std::optional<net::peer_tls> tls) {
    net::peer_transport_options options;
    options.tls = std::move(tls);
    options.connect_timeout = 2000ms;
    options.backoff_max = 200ms;
    auto n = std::make_unique<test_node>();
    test_node* raw = n.get();
    auto a = std::move(pending.at(node_id(id)));
    pending.erase(node_id(id));
    n->transport = std::make_unique<peer_transport>(
        io.get_executor(), node_id(id), cluster_id, members, std::move(a),
        [raw](node_id from, frame_kind kind, std::string payload) {
          raw->got.push_back(received{from, kind, std::move(payload)});
        },
        [raw](peer_transport::log_level, std::string line) {
          raw->logs.push_back(std::move(line));
        },
        options);
    n->transport->start();
    auto& slot = nodes[node_id(id)];
    slot = std::move(n);
    return *slot;
  }

  test_node& n(int id) { return *nodes.at(node_id(id)); }
  tcp::endpoint endpoint_of(int id) { return n(id).transport->local_endpoint(); }
};

// Reads from `s` until the connection ends; everything read lands in `got`.
template <typename Stream>
void read_to_end(Stream& s, std::string& got, bool& ended) {
  auto buf = std::make_shared<std::array<char, 512>>();
  s.async_read_some(asio::buffer(*buf),
                    [&s, &got, &ended, buf](boost::system::error_code ec, std::size_t n) {
                      got.append(buf->data(), n);
                      if (ec) {
                        ended = true;
                        return;
                      }
                      read_to_end(s, got, ended);
                    });
}

// The hello a plain node `from` sends to node `to` of cluster `cluster_id`.
std::string plain_hello(std::uint64_t cluster_id, int from, int to) {
  std::string bytes;
  net::frame_header h{frame_kind::hello, 0, cluster_id, node_id(from), node_id(to), 0};
  net::append_frame(bytes, h, net::encode_hello({42, 1}));
  return bytes;
}

// Writes `bytes` on a plain TCP connection to node `to` and reads until the node closes it;
// returns what came back.
std::string send_plain_until_closed(cluster& c, int to, const std::string& bytes) {
  tcp::socket raw(c.io);
  raw.connect(c.endpoint_of(to));
  boost::system::error_code ignored;
  asio::write(raw, asio::buffer(bytes), ignored);
  std::string got;
  bool ended = false;
  read_to_end(raw, got, ended);
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return ended; }));
  return got;
}

}  // namespace

BOOST_AUTO_TEST_CASE(common_names_map_to_member_ids_one_way) {
  BOOST_TEST(net::peer_common_name(node_id(7)) == "raftkv-node-7");
  BOOST_TEST((net::node_id_of_common_name("raftkv-node-7") == std::optional(node_id(7))));
  BOOST_TEST(net::node_id_of_common_name("raftkv-node-4294967295").has_value());
  for (const char* bad : {"raftkv-node-", "raftkv-node-0", "raftkv-node-07", "raftkv-node-7 ",
                          "raftkv-node-+7", "raftkv-node-4294967296", "Raftkv-node-7", "node-7"}) {
    BOOST_TEST_CONTEXT(bad) {
      BOOST_TEST(!net::node_id_of_common_name(bad).has_value());
    }
  }
  BOOST_TEST(!net::node_id_of_common_name(std::string_view("raftkv-node-7\0", 14)).has_value());
}

BOOST_AUTO_TEST_CASE(the_expiry_of_a_contexts_certificate_is_its_not_after,
                     *boost::unit_test::precondition(need_openssl{})) {
  // make-certs.sh signs for 30 days from now: the notAfter, read by the openssl tool too.
  auto tls = certs().tls(1);
  const auto at = net::certificate_expiry(*tls.server);
  BOOST_REQUIRE(at.has_value());
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  BOOST_TEST(*at > now + 29 * 86400);
  BOOST_TEST(*at <= now + 30 * 86400);
  const std::string cmd = "openssl x509 -noout -enddate -dateopt iso_8601 -in " +
                          certs().file("a", "node1.pem").string() + " > " +
                          (certs().root / "enddate").string();
  BOOST_REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(certs().root / "enddate");
  std::string line;
  std::getline(in, line);  // notAfter=2026-12-30 22:59:00Z
  std::tm t{};
  BOOST_REQUIRE(line.starts_with("notAfter="));
  std::istringstream(line.substr(9)) >> std::get_time(&t, "%Y-%m-%d %H:%M:%S");
  BOOST_TEST(*at == static_cast<std::int64_t>(timegm(&t)), line);
  // A context that presents no certificate has no expiry.
  boost::asio::ssl::context bare(boost::asio::ssl::context::tls_client);
  BOOST_TEST(!net::certificate_expiry(bare).has_value());
}

BOOST_AUTO_TEST_CASE(contexts_refuse_bad_files_and_a_certificate_of_another_node,
                     *boost::unit_test::precondition(need_openssl{})) {
  const auto& c = certs();
  const std::string ca = c.file("a", "ca.pem").string();
  const std::string cert = c.file("a", "node1.pem").string();
  const std::string key = c.file("a", "node1.key").string();
  BOOST_TEST(std::holds_alternative<net::peer_tls>(net::make_peer_tls(ca, cert, key, node_id(1))));
  auto error = [](auto made) {
    auto* why = std::get_if<std::string>(&made);
    return why ? *why : std::string();
  };
  // The certificate names node 1, the node is 2: refused at start, naming the file.
  BOOST_TEST(error(net::make_peer_tls(ca, cert, key, node_id(2))).find("raftkv-node-2") !=
             std::string::npos);
  // A key that is not the certificate's.
  BOOST_TEST(
      error(net::make_peer_tls(ca, cert, c.file("a", "node2.key").string())).find("node2.key") !=
      std::string::npos);
  // Not PEM at all (a key where the CA belongs).
  BOOST_TEST(error(net::make_peer_tls(key, cert, key)).find("CA") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(two_tls_transports_exchange_messages,
                     *boost::unit_test::precondition(need_openssl{})) {
  cluster c(2);
  c.start(1, certs().tls(1));
  c.start(2, certs().tls(2));
  // Small ones and one over the fragment size, both ways, in order.
  const std::string big((3u << 20) / 2, 'x');
  for (int from : {1, 2}) {
    const int to = 3 - from;
    for (int i = 0; i < 100; ++i) {
      BOOST_TEST_REQUIRE(
          c.n(from).transport->send(node_id(to), frame_kind::raft_message, std::to_string(i)));
    }
    BOOST_TEST_REQUIRE(c.n(from).transport->send(node_id(to), frame_kind::forward_request, big));
  }
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return c.n(1).got.size() == 101 && c.n(2).got.size() == 101; }));
  for (int to : {1, 2}) {
    const auto& got = c.n(to).got;
    for (int i = 0; i < 100; ++i) {
      BOOST_TEST((got[i].from == node_id(3 - to)));
      BOOST_TEST(got[i].payload == std::to_string(i));
    }
    BOOST_TEST(got[100].payload == big);
    BOOST_TEST(c.n(to).transport->drops().empty());
    BOOST_TEST(c.n(to).transport->status(node_id(3 - to))->connects == 1u);
  }
}

BOOST_AUTO_TEST_CASE(a_node_with_a_certificate_from_another_ca_is_refused,
                     *boost::unit_test::precondition(need_openssl{})) {
  cluster c(3);
  auto& one = c.start(1, certs().tls(1));
  auto& two = c.start(2, certs().tls(2));
  // Node 3's certificate names it but is signed by CA b; it trusts CA a, so only the other
  // side's check can keep it out.
  auto& three = c.start(3, certs().tls(3, "b", "a"));
  for (int i = 0; i < 5; ++i) {
    three.transport->send(node_id(1), frame_kind::raft_message, "from a stranger");
    one.transport->send(node_id(3), frame_kind::raft_message, "to a stranger");
  }
  one.transport->send(node_id(2), frame_kind::raft_message, "to a member");
  two.transport->send(node_id(1), frame_kind::raft_message, "from a member");
  // Node 1 refuses both directions: its acceptor (node 3 dials in) and its dialler (node 3's
  // certificate does not chain to CA a).
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    return one.drops("tls_refused") >= 2 && one.got.size() == 1 && two.got.size() == 1 &&
           one.logs_containing("TLS handshake failed") >= 2;
  }));
  BOOST_TEST(one.got[0].payload == "from a member");
  BOOST_TEST(two.got[0].payload == "to a member");
  BOOST_TEST(three.got.empty());
  BOOST_TEST(!one.transport->status(node_id(3))->connected);
  BOOST_TEST(one.transport->status(node_id(3))->frames_received == 0u);
  // The refusals are rate-limited: one line per reason and direction however often node 3
  // redials (drop_log_interval is 10 s), while the count keeps going up.
  const auto lines = one.logs_containing("TLS handshake failed");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return one.drops("tls_refused") >= 6; }));
  BOOST_TEST(one.logs_containing("TLS handshake failed") == lines);
  BOOST_TEST(lines <= 2u);
}

BOOST_AUTO_TEST_CASE(a_certificate_naming_another_node_than_the_hello_is_refused,
                     *boost::unit_test::precondition(need_openssl{})) {
  cluster c(3);
  auto& one = c.start(1, certs().tls(1));
  auto& two = c.start(2, certs().tls(2));
  // Node 3 holds node 2's certificate and key: the right CA, the wrong name.
  auto& three = c.start(3, certs().tls(2));
  three.transport->send(node_id(1), frame_kind::raft_message, "impostor");
  one.transport->send(node_id(3), frame_kind::raft_message, "to an impostor");
  two.transport->send(node_id(1), frame_kind::raft_message, "from node 2");
  const bool refused = run_until(c.io, [&] {
    return one.drops("wrong_certificate") >= 2 && one.got.size() == 1 &&
           one.logs_containing("claims to be node 3 but its certificate names node 2") >= 1 &&
           one.logs_containing("it should be node 3 but its certificate names") >= 1;
  });
  if (!refused) {
    for (const auto& [r, n] : one.transport->drops()) BOOST_TEST_MESSAGE(r << " = " << n);
    for (const auto& l : one.logs) BOOST_TEST_MESSAGE(l);
  }
  BOOST_TEST_REQUIRE(refused);
  BOOST_TEST((one.got[0].from == node_id(2)));
  BOOST_TEST(one.got[0].payload == "from node 2");
  BOOST_TEST(three.got.empty());
  BOOST_TEST(one.transport->status(node_id(3))->frames_received == 0u);
  BOOST_TEST(one.transport->status(node_id(3))->incarnation == 0u);  // its hello was not taken
  BOOST_TEST(one.drops("tls_refused") == 0u);                        // the chain was fine
}

BOOST_AUTO_TEST_CASE(plain_tcp_to_a_tls_port_gets_nothing,
                     *boost::unit_test::precondition(need_openssl{})) {
  cluster c(2);
  auto& one = c.start(1, certs().tls(1));
  c.pending.clear();  // node 2 is down: node 1's dials fail before any TLS
  // A well-formed plain-text hello and message from "node 2": the old protocol, as a plain
  // node would send it.
  std::string bytes = plain_hello(c.cluster_id, 2, 1);
  net::append_frame(bytes, {frame_kind::raft_message, 0, c.cluster_id, node_id(2), node_id(1), 0},
                    "plain");
  const std::string got = send_plain_until_closed(c, 1, bytes);
  BOOST_TEST(got.empty(), "the TLS port answered plain TCP with " << got.size() << " bytes");
  BOOST_TEST(one.got.empty());
  BOOST_TEST(one.drops("tls_refused") == 1u);
  BOOST_TEST(one.logs_containing("refused a connection from 127.0.0.1:") == 1u);
}

BOOST_AUTO_TEST_CASE(a_tls_client_without_a_certificate_is_refused,
                     *boost::unit_test::precondition(need_openssl{})) {
  cluster c(2);
  auto& one = c.start(1, certs().tls(1));
  c.pending.clear();  // node 2 is down: node 1's dials fail before any TLS
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_verify_mode(ssl::verify_none);
  ssl::stream<tcp::socket> client(c.io, ctx);
  client.next_layer().connect(c.endpoint_of(1));
  bool handshaken = false;
  boost::system::error_code handshake_error;
  client.async_handshake(ssl::stream_base::client, [&](boost::system::error_code ec) {
    handshake_error = ec;
    handshaken = true;
  });
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return handshaken; }));
  std::string got;
  bool ended = !!handshake_error;  // TLS 1.2 fails here; 1.3 only when the server decides
  if (!ended) {
    std::string bytes;
    net::frame_header h{frame_kind::hello, 0, c.cluster_id, node_id(2), node_id(1), 0};
    net::append_frame(bytes, h, net::encode_hello({42, 1}));
    boost::system::error_code ignored;
    asio::write(client, asio::buffer(bytes), ignored);
    read_to_end(client, got, ended);
  }
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return ended && one.drops("tls_refused") == 1u; }));
  BOOST_TEST(got.empty());
  BOOST_TEST(one.got.empty());
  BOOST_TEST(one.transport->status(node_id(2))->incarnation == 0u);
}

namespace {

net::peer_tls with_plain(net::peer_tls tls, net::plain_peers plain) {
  tls.plain = plain;
  return tls;
}

// Every node of `c` dials both others the way `tls_out` says, and takes exactly one
// connection from each, of the kind its dialler uses.
bool links_are(cluster& c, const std::map<int, bool>& tls_out) {
  for (const auto& [id, dials_tls] : tls_out) {
    const auto open = c.n(id).transport->connections();
    std::size_t in_tls = 0;
    for (const auto& [other, other_tls] : tls_out) in_tls += other != id && other_tls;
    if ((dials_tls ? open.out_tls : open.out_plain) != 2 || open.out_tls + open.out_plain != 2 ||
        open.in_tls != in_tls || open.in_plain != 2 - in_tls) {
      return false;
    }
  }
  return true;
}

// One new message between every ordered pair, each delivered.
void exchange(cluster& c, const std::string& tag) {
  std::map<int, std::size_t> before;
  for (int id = 1; id <= 3; ++id) before[id] = c.n(id).got.size();
  for (int from = 1; from <= 3; ++from) {
    for (int to = 1; to <= 3; ++to) {
      if (from != to) c.n(from).transport->send(node_id(to), frame_kind::raft_message, tag);
    }
  }
  BOOST_TEST_REQUIRE(run_until(c.io,
                               [&] {
                                 for (int id = 1; id <= 3; ++id) {
                                   if (c.n(id).got.size() < before[id] + 2) return false;
                                 }
                                 return true;
                               }),
                     tag);
  for (int id = 1; id <= 3; ++id) {
    for (std::size_t i = before[id]; i < c.n(id).got.size(); ++i) {
      BOOST_TEST(c.n(id).got[i].payload == tag);
    }
  }
}

}  // namespace

// docs/config.md "Moving a running cluster to TLS": no TLS -> dial -> accept -> refuse, one
// node at a time, and back; the cluster talks at every step, and after each full round every
// link is what the setting says.
BOOST_AUTO_TEST_CASE(a_running_cluster_moves_to_tls_and_back_one_node_at_a_time,
                     *boost::unit_test::precondition(need_openssl{})) {
  using net::plain_peers;
  cluster c(3);
  for (int id = 1; id <= 3; ++id) c.start(id, std::nullopt);
  std::map<int, bool> tls_out{{1, false}, {2, false}, {3, false}};
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return links_are(c, tls_out); }));
  exchange(c, "plain");

  // A step that would cut links is refused and changes nothing.
  BOOST_TEST(!c.n(1).transport->set_tls(with_plain(certs().tls(1), plain_peers::accept)));
  BOOST_TEST(!c.n(1).transport->set_tls(with_plain(certs().tls(1), plain_peers::refuse)));

  const auto step = [&](plain_peers mode, bool dials_tls, bool tls_on) {
    for (int id = 1; id <= 3; ++id) {
      const std::string what = std::string(net::to_string(mode)) + " on node " +
                               std::to_string(id) + (tls_on ? "" : " (TLS off)");
      BOOST_TEST_CONTEXT(what) {
        std::optional<net::peer_tls> tls;
        if (tls_on) tls = with_plain(certs().tls(id), mode);
        BOOST_TEST_REQUIRE(c.n(id).transport->set_tls(std::move(tls)));
        tls_out[id] = dials_tls;
        BOOST_TEST_REQUIRE(run_until(c.io, [&] { return links_are(c, tls_out); }));
        exchange(c, what);
      }
    }
  };
  step(plain_peers::dial, false, true);
  step(plain_peers::accept, true, true);
  step(plain_peers::refuse, true, true);

  // Now TLS only: a plain hello from "node 2" gets nothing, as on a port that never took
  // plain TCP (plain_tcp_to_a_tls_port_gets_nothing).
  BOOST_TEST(send_plain_until_closed(c, 1, plain_hello(c.cluster_id, 2, 1)).empty());
  BOOST_TEST(c.n(1).drops("tls_refused") == 1u);
  // TLS off from anything but dial would cut links.
  BOOST_TEST(!c.n(1).transport->set_tls(std::nullopt));

  // And back.
  step(plain_peers::accept, true, true);
  step(plain_peers::dial, false, true);
  step(plain_peers::dial, false, false);
  for (int id = 1; id <= 3; ++id) {
    BOOST_TEST(c.n(id).drops("tls_refused") == (id == 1 ? 1u : 0u));
    BOOST_TEST(c.n(id).drops("wrong_certificate") == 0u);
  }
}

// With plain_peers = accept, a plain connection whose hello is wrong is refused as on a
// port without TLS, and a TLS one still needs the CA's certificate.
BOOST_AUTO_TEST_CASE(a_port_that_also_takes_plain_tcp_checks_each_kind_as_its_own,
                     *boost::unit_test::precondition(need_openssl{})) {
  cluster c(3);
  auto& one = c.start(1, with_plain(certs().tls(1), net::plain_peers::accept));
  auto& two = c.start(2, std::nullopt);  // plain
  auto& three = c.start(3, with_plain(certs().tls(3, "b", "b"), net::plain_peers::accept));
  two.transport->send(node_id(1), frame_kind::raft_message, "plain from 2");
  three.transport->send(node_id(1), frame_kind::raft_message, "tls from another CA");
  BOOST_TEST_REQUIRE(
      run_until(c.io, [&] { return one.got.size() == 1 && one.drops("tls_refused") >= 1; }));
  BOOST_TEST(one.got[0].payload == "plain from 2");
  // A plain hello from another cluster is refused as without TLS.
  BOOST_TEST(send_plain_until_closed(c, 1, plain_hello(c.cluster_id + 1, 2, 1)).empty());
  BOOST_TEST(one.drops("other_cluster") >= 1u);
  BOOST_TEST(one.got.size() == 1u);
}

// A node that stops taking plain TCP closes the plain connections it has: a peer that still
// dials plain (a step taken out of order) is cut off at once, not whenever its connection
// happens to end.
BOOST_AUTO_TEST_CASE(a_port_that_stops_taking_plain_tcp_closes_the_plain_connections_it_has,
                     *boost::unit_test::precondition(need_openssl{})) {
  cluster c(2);
  auto& one = c.start(1, with_plain(certs().tls(1), net::plain_peers::accept));
  auto& two = c.start(2, with_plain(certs().tls(2), net::plain_peers::dial));
  two.transport->send(node_id(1), frame_kind::raft_message, "before");
  BOOST_TEST_REQUIRE(run_until(
      c.io, [&] { return one.got.size() == 1 && one.transport->connections().in_plain == 1; }));
  BOOST_TEST_REQUIRE(one.transport->set_tls(certs().tls(1)));  // refuse
  BOOST_TEST_REQUIRE(run_until(c.io, [&] {
    return one.transport->connections().in_plain == 0 && one.drops("tls_refused") >= 1;
  }));
  two.transport->send(node_id(1), frame_kind::raft_message, "after");
  BOOST_TEST_REQUIRE(run_until(c.io, [&] { return one.drops("tls_refused") >= 2; }));
  BOOST_TEST(one.got.size() == 1u);
}
