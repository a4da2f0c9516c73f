// The shared text connection loop (net/text_session.h) through the memcached and CS733
// doors over loopback, against a kv_service double that holds writes back and completes a
// batch in reverse order. It checks what pipelining promises: a connection's writes are all
// in flight together (not one commit at a time), replies come back in request order
// whatever order requests complete in, a read sees the connection's earlier writes (its
// barrier starts only after they completed), noreply writes answer nothing, the per
// connection bound holds, and a large multi-get is written out in pieces intact.
#define BOOST_TEST_MODULE net_text_session
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <deque>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kv/store.h"
#include "net/cs733/session.h"
#include "net/memcached/session.h"
#include "net/metrics.h"
#include "net/open_calls.h"
#include "net/service.h"
#include "test/support/held_service.h"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

// A memcached and a CS733 door on ephemeral ports, on their own io_context thread.
struct fixture {
  // Runs fn on the io thread and returns its result.
  template <typename F>
  auto on_io(F fn) {
    std::promise<decltype(fn())> done;
    asio::post(io, [&] {
      if constexpr (std::is_void_v<decltype(fn())>) {
        fn();
        done.set_value();
      } else {
        done.set_value(fn());
      }
    });
    return done.get_future().get();
  }

  explicit fixture(bool automatic = true, net::pipeline_limits pipeline = {})
      : service(io, automatic),
        mc(io, service, memcached_options(pipeline)),
        cs(io, service, cs733_options(pipeline)) {
    mc.listen("127.0.0.1", 0);
    cs.listen("127.0.0.1", 0);
    mc.start();
    cs.start();
    thread = std::thread([this] { io.run(); });
  }
  ~fixture() {
    on_io([this] {
      mc.stop();
      cs.stop();
      service.release();  // let held requests end
    });
    io.stop();
    thread.join();
  }

  static net::memcached_options memcached_options(net::pipeline_limits p) {
    net::memcached_options o;
    o.version = "test";
    o.pipeline = p;
    return o;
  }
  static net::cs733_options cs733_options(net::pipeline_limits p) {
    net::cs733_options o;
    o.pipeline = p;
    return o;
  }

  tcp::socket connect(std::uint16_t port) {
    tcp::socket s(client_io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    return s;
  }

  asio::io_context io;
  test_support::held_service service;
  net::memcached_server mc;
  net::cs733_server cs;
  std::thread thread;
  asio::io_context client_io;
};

void send(tcp::socket& s, std::string_view bytes) {
  asio::write(s, asio::buffer(bytes));
}

// Reads exactly n bytes.
std::string receive(tcp::socket& s, std::size_t n) {
  std::string out(n, '\0');
  asio::read(s, asio::buffer(out));
  return out;
}

// The text of one `set` of key to value.
std::string set_request(std::string_view key, const std::string& value) {
  return "set " + std::string(key) + " 0 0 " + std::to_string(value.size()) + "\r\n" + value +
         "\r\n";
}

std::string sets(int n, bool noreply) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += "set k" + std::to_string(i) + " 0 0 1" + (noreply ? " noreply" : "") + "\r\nv\r\n";
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(pipelined_writes_are_in_flight_together) {
  fixture f;
  auto s = f.connect(f.mc.port());
  const int n = 200;
  send(s, sets(n, false));
  std::string expected;
  for (int i = 0; i < n; ++i) expected += "STORED\r\n";
  BOOST_CHECK_EQUAL(receive(s, expected.size()), expected);
  // A session that waited for each write before starting the next would never have more
  // than one held, and would need n batches. This one starts a turn's worth at once (the
  // double answers once per turn), and the last turn also takes the short tail after it.
  const auto turn = std::size_t(net::pipeline_limits{}.requests_per_turn);
  const auto held = f.on_io([&] { return f.service.max_held(); });
  BOOST_CHECK_GE(held, turn);
  BOOST_CHECK_LE(held, 2 * turn);
  BOOST_CHECK_LE(f.on_io([&] { return f.service.batches(); }), (n + turn - 1) / turn);
}

// A client's round sent in one write, more than a turn's count but less than two, larger
// than the room of the connection's buffer: it is read in one go (what the socket still
// holds after a read that filled the room is taken at once) and started in one turn (the
// tail after a turn's count is parsed with it), so it is one batch, one journal sync in the
// cluster. Read in two pieces, or cut at the turn's count, it was two.
BOOST_AUTO_TEST_CASE(a_round_in_one_write_is_started_in_one_turn) {
  fixture f;
  auto s = f.connect(f.mc.port());
  const std::string version_reply = "VERSION 1.6.18-raftkv-test\r\n";
  // A first small request leaves the connection a buffer of a few KiB.
  send(s, "version\r\n");
  BOOST_REQUIRE_EQUAL(receive(s, version_reply.size()), version_reply);
  const auto turn = net::pipeline_limits{}.requests_per_turn;
  const int n = turn + turn / 2;
  std::string round;
  for (int i = 0; i < n; ++i) {
    round += "set k" + std::to_string(1000 + i) + " 0 0 100 noreply\r\n" + std::string(100, 'v') +
             "\r\n";
  }
  round += "version\r\n";
  BOOST_REQUIRE_GT(round.size(), 8192u);  // past the room of the first read's buffer
  send(s, round);
  BOOST_CHECK_EQUAL(receive(s, version_reply.size()), version_reply);
  BOOST_CHECK_EQUAL(f.on_io([&] { return f.service.max_held(); }), std::size_t(n));
  BOOST_CHECK_EQUAL(f.on_io([&] { return f.service.batches(); }), 1u);
}

BOOST_AUTO_TEST_CASE(replies_keep_request_order_when_requests_complete_out_of_order) {
  fixture f;
  auto s = f.connect(f.mc.port());
  send(s, "set a 0 0 1\r\n1\r\nset b 0 0 1\r\n5\r\n");
  BOOST_CHECK_EQUAL(receive(s, 16), "STORED\r\nSTORED\r\n");
  // One write: four writes released as one batch and woken last first, a parse error, a
  // bad data chunk (its 4 bytes "xyz\r" are dropped; the "\n" left is an empty line, ERROR,
  // as in memcached) and an immediate reply between them.
  send(s,
       "incr a 1\r\nincr b 1\r\nbogus\r\nincr a 10\r\nset c 0 0 2\r\nxyz\r\nversion\r\n"
       "delete b\r\n");
  const std::string expected =
      "2\r\n6\r\nERROR\r\n12\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\n"
      "VERSION 1.6.18-raftkv-test\r\nDELETED\r\n";
  BOOST_CHECK_EQUAL(receive(s, expected.size()), expected);
}

BOOST_AUTO_TEST_CASE(a_read_waits_for_the_connections_earlier_writes) {
  fixture f;
  auto s = f.connect(f.mc.port());
  send(s, "set x 0 0 3\r\nnew\r\nget x\r\nset x 0 0 5\r\nnewer\r\n");
  const std::string expected = "STORED\r\nVALUE x 0 3\r\nnew\r\nEND\r\nSTORED\r\n";
  BOOST_CHECK_EQUAL(receive(s, expected.size()), expected);
  // The barrier started after the earlier write completed, and the later write was not
  // proposed before the read had finished (it would have overtaken it).
  const auto events = f.on_io([&] { return f.service.events(); });
  const std::vector<std::string> want = {"write x", "done x", "barrier", "write x", "done x"};
  BOOST_CHECK_EQUAL_COLLECTIONS(events.begin(), events.end(), want.begin(), want.end());
}

// Several reads and writes interleaved on one connection: each read waits for every earlier
// write, each write for every earlier read, writes next to each other are in flight together
// and so are reads. Checks the bookkeeping of open requests beyond one of each kind.
BOOST_AUTO_TEST_CASE(interleaved_reads_and_writes_keep_the_ordering_rules) {
  fixture f;
  auto s = f.connect(f.mc.port());
  send(s,
       "set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b\r\nget a\r\n"
       "set a 0 0 1\r\n3\r\nset c 0 0 1\r\n4\r\nget c a\r\n");
  const std::string expected =
      "STORED\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n"
      "VALUE a 0 1\r\n1\r\nEND\r\nSTORED\r\nSTORED\r\n"
      "VALUE c 0 1\r\n4\r\nVALUE a 0 1\r\n3\r\nEND\r\n";
  BOOST_CHECK_EQUAL(receive(s, expected.size()), expected);
  // A batch is woken last first. The two reads start only after both writes before them
  // completed; the two writes after them only once both reads finished; the last read
  // only after those writes completed.
  const auto events = f.on_io([&] { return f.service.events(); });
  const std::vector<std::string> want = {"write a", "write b", "done b",  "done a",
                                         "barrier", "barrier", "write a", "write c",
                                         "done c",  "done a",  "barrier"};
  BOOST_CHECK_EQUAL_COLLECTIONS(events.begin(), events.end(), want.begin(), want.end());
  BOOST_CHECK_EQUAL(f.on_io([&] { return f.service.batches(); }), std::size_t(2));
}

// A write the service refuses at once, or whose call throws, is answered in its place;
// the writes around it and the connection go on.
BOOST_AUTO_TEST_CASE(a_write_refused_or_failed_at_once_keeps_its_place) {
  fixture f;
  auto s = f.connect(f.mc.port());
  send(s,
       "set a 0 0 1\r\n1\r\nset refused 0 0 1\r\n2\r\nset throws 0 0 1\r\n3\r\n"
       "set b 0 0 1\r\n4\r\nget a b throws\r\n");
  const std::string expected =
      "STORED\r\nSERVER_ERROR busy, try again\r\nSERVER_ERROR internal error\r\nSTORED\r\n"
      "VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n4\r\nEND\r\n";
  BOOST_CHECK_EQUAL(receive(s, expected.size()), expected);
}

// A get whose barrier fails answers the error in its place, whether it asks for one key
// (answered from the barrier's callback) or several (a coroutine that may spill).
BOOST_AUTO_TEST_CASE(a_get_whose_barrier_fails_answers_the_error) {
  fixture f;
  auto s = f.connect(f.mc.port());
  send(s, "set a 0 0 1\r\n1\r\n");
  BOOST_CHECK_EQUAL(receive(s, 8), "STORED\r\n");
  f.on_io([&] { f.service.fail_barriers(net::service_error::no_leader); });
  send(s, "get a\r\ngets a a\r\nversion\r\n");
  const std::string expected =
      "SERVER_ERROR no leader\r\nSERVER_ERROR no leader\r\nVERSION 1.6.18-raftkv-test\r\n";
  BOOST_CHECK_EQUAL(receive(s, expected.size()), expected);
  f.on_io([&] { f.service.fail_barriers(net::service_error::none); });
  send(s, "gets a\r\nget a a\r\n");
  const std::string hits =
      "VALUE a 0 1 1\r\n1\r\nEND\r\nVALUE a 0 1\r\n1\r\nVALUE a 0 1\r\n1\r\nEND\r\n";
  BOOST_CHECK_EQUAL(receive(s, hits.size()), hits);
}

// Replies finished while their requests are parsed go out from the reader in one
// non-blocking write (text_connection::send_ready); what the socket does not take then, the
// writer sends. Six megabytes of replies to one burst of requests, more than the
// connection's bound (4 MiB), must arrive whole and in order: the reader stops at the
// bound, and its own write may be what makes room again.
BOOST_AUTO_TEST_CASE(replies_larger_than_the_socket_takes_at_once_arrive_whole) {
  fixture f;
  auto s = f.connect(f.mc.port());
  const std::string big(600 * 1024, 'b');
  send(s, set_request("big", big) + set_request("small", "s"));
  BOOST_CHECK_EQUAL(receive(s, 16), "STORED\r\nSTORED\r\n");
  std::string requests, expected;
  for (int i = 0; i < 10; ++i) {
    requests += i % 3 == 1 ? "get small\r\n" : "get big\r\n";
    expected += i % 3 == 1 ? "VALUE small 0 1\r\ns\r\nEND\r\n"
                           : "VALUE big 0 " + std::to_string(big.size()) + "\r\n" + big + "\r\nEND\r\n";
  }
  send(s, requests + "version\r\n");
  expected += "VERSION 1.6.18-raftkv-test\r\n";
  const std::string got = receive(s, expected.size());
  BOOST_CHECK(got == expected);
}

BOOST_AUTO_TEST_CASE(noreply_writes_hold_a_place_and_answer_nothing) {
  fixture f;
  auto s = f.connect(f.mc.port());
  send(s, sets(500, true) + "get k499\r\nversion\r\n");
  const std::string expected = "VALUE k499 0 1\r\nv\r\nEND\r\nVERSION 1.6.18-raftkv-test\r\n";
  BOOST_CHECK_EQUAL(receive(s, expected.size()), expected);
  const auto turn = std::size_t(net::pipeline_limits{}.requests_per_turn);
  const auto held = f.on_io([&] { return f.service.max_held(); });
  BOOST_CHECK_GE(held, turn);
  BOOST_CHECK_LE(held, 2 * turn);
}

BOOST_AUTO_TEST_CASE(the_connection_bound_stops_parsing) {
  net::pipeline_limits bound;
  bound.max_requests = 4;
  fixture f(/*automatic=*/false, bound);
  auto s = f.connect(f.mc.port());
  const int n = 12;
  send(s, sets(n, false));
  std::string expected;
  for (int i = 0; i < n; ++i) expected += "STORED\r\n";
  // Release whatever is held until every reply has arrived.
  std::string got;
  s.non_blocking(true);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got.size() < expected.size() && std::chrono::steady_clock::now() < deadline) {
    f.on_io([&] { f.service.release(); });
    char buf[256];
    boost::system::error_code ec;
    const std::size_t k = s.read_some(asio::buffer(buf), ec);
    if (!ec) got.append(buf, k);
    if (ec == asio::error::would_block) std::this_thread::sleep_for(1ms);  // polling a socket
  }
  BOOST_CHECK_EQUAL(got, expected);
  BOOST_CHECK_EQUAL(f.on_io([&] { return f.service.max_held(); }), std::size_t(4));
}

BOOST_AUTO_TEST_CASE(a_large_multi_get_arrives_whole) {
  fixture f;
  auto s = f.connect(f.mc.port());
  const std::string value(100 * 1000, 'z');
  send(s, set_request("big", value));
  BOOST_CHECK_EQUAL(receive(s, 8), "STORED\r\n");
  std::string get = "get";
  for (int i = 0; i < 30; ++i) get += " big";
  send(s, get + "\r\nversion\r\n");
  std::string expected;
  for (int i = 0; i < 30; ++i) expected += "VALUE big 0 100000\r\n" + value + "\r\n";
  expected += "END\r\nVERSION 1.6.18-raftkv-test\r\n";
  BOOST_CHECK(receive(s, expected.size()) == expected);
}

BOOST_AUTO_TEST_CASE(quit_answers_what_came_before_it_and_closes) {
  fixture f;
  auto s = f.connect(f.mc.port());
  send(s, "set q 0 0 1\r\n1\r\nquit\r\nversion\r\n");
  BOOST_CHECK_EQUAL(receive(s, 8), "STORED\r\n");
  char byte;
  boost::system::error_code ec;
  asio::read(s, asio::buffer(&byte, 1), ec);
  BOOST_CHECK(ec == asio::error::eof);
}

BOOST_AUTO_TEST_CASE(cs733_pipelines_the_same_way) {
  fixture f;
  auto s = f.connect(f.cs.port());
  send(s,
       "set a 0 1\r\nx\r\nset b 0 1 noreply\r\ny\r\nget a\r\nbad\r\ncas a 0 1 1\r\nz\r\n"
       "getm b\r\n");
  const std::string expected =
      "OK 1\r\nVALUE 1\r\nx\r\nERR_CMD_ERR\r\nOK 3\r\nVALUE 2 0 1\r\ny\r\n";
  BOOST_CHECK_EQUAL(receive(s, expected.size()), expected);
}

// The ordering records of a connection's calls (net/open_calls.h) stay within its calls in
// flight. A connection that only writes never asks for its earliest open write; the
// records of its finished writes must still go, or they pile up, one per write, until the
// connection closes.
BOOST_AUTO_TEST_CASE(a_write_only_connection_keeps_no_record_of_finished_writes) {
  net::open_calls writes;
  std::uint64_t finished_below = 0;  // calls [0, finished_below) are finished
  const auto finished = [&](std::uint64_t seq) { return seq < finished_below; };
  for (std::uint64_t seq = 0; seq < 100'000; ++seq) {
    writes.start(seq, finished);
    if (seq % 10 == 9) finished_below = seq + 1;  // ten at a time in flight
    BOOST_REQUIRE_LE(writes.records(), 10u);
  }
  // A call still running at the front holds every later record until it finishes.
  net::open_calls reads;
  std::vector<bool> done(2'000, true);
  done[0] = false;
  const auto read_finished = [&](std::uint64_t seq) { return bool(done[seq]); };
  for (std::uint64_t seq = 0; seq < 2'000; ++seq) reads.start(seq, read_finished);
  BOOST_CHECK_EQUAL(reads.first_open(read_finished), 0u);
  done[0] = true;
  BOOST_CHECK_EQUAL(reads.first_open(read_finished), net::open_calls::none);
  BOOST_CHECK_EQUAL(reads.records(), 0u);
}
