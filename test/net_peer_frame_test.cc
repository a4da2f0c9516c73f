#define BOOST_TEST_MODULE net_peer_frame
#include <boost/test/unit_test.hpp>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <string>

#include "net/peer/frame.h"

namespace net {
// Lets Boost.Test print the values it compares.
std::ostream& operator<<(std::ostream& os, frame_error e) {
  return os << to_string(e);
}
}  // namespace net

namespace {

using net::decode_frame;
using net::decoded_frame;
using net::frame_error;
using net::frame_header;
using net::frame_kind;
using net::need_more;

frame_header sample_header(frame_kind kind = frame_kind::raft_message, std::uint8_t flags = 0) {
  frame_header h;
  h.kind = kind;
  h.flags = flags;
  h.cluster_id = 0x1122334455667788ull;
  h.from = raft::node_id(2);
  h.to = raft::node_id(3);
  h.to_incarnation = 0x0102030405060708ull;
  return h;
}

std::string binary_payload(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

decoded_frame expect_frame(const net::decode_outcome& o) {
  BOOST_REQUIRE_MESSAGE(std::holds_alternative<decoded_frame>(o), "expected a decoded frame");
  return std::get<decoded_frame>(o);
}

frame_error expect_error(const net::decode_outcome& o) {
  BOOST_REQUIRE_MESSAGE(std::holds_alternative<frame_error>(o), "expected a frame error");
  return std::get<frame_error>(o);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_kind_round_trips_with_its_header_and_payload) {
  for (auto kind : {frame_kind::hello, frame_kind::raft_message, frame_kind::forward_request,
                    frame_kind::forward_response, frame_kind::refused}) {
    for (std::size_t n : {0u, 1u, 100u, 70000u}) {
      const std::string payload = binary_payload(n, static_cast<std::uint32_t>(n));
      const auto h = sample_header(kind);
      const std::string bytes = net::encode_frame(h, payload);
      BOOST_TEST(bytes.size() == net::frame_overhead_bytes + n);
      const auto d = expect_frame(decode_frame(bytes));
      BOOST_TEST(d.consumed == bytes.size());
      BOOST_TEST((d.value.header == h));
      BOOST_TEST(d.value.payload == payload);
    }
  }
}

BOOST_AUTO_TEST_CASE(fragment_flags_round_trip) {
  using namespace net::frame_flags;
  for (std::uint8_t f : {std::uint8_t(fragment), std::uint8_t(fragment | first),
                         std::uint8_t(fragment | last), std::uint8_t(fragment | first | last)}) {
    const auto h = sample_header(frame_kind::raft_message, f);
    const auto d = expect_frame(decode_frame(net::encode_frame(h, "piece")));
    BOOST_TEST(d.value.header.flags == f);
  }
}

BOOST_AUTO_TEST_CASE(split_at_every_byte_needs_more_until_the_whole_frame_is_there) {
  const std::string payload = binary_payload(300, 1);
  const std::string bytes = net::encode_frame(sample_header(), payload);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const auto o = decode_frame(std::string_view(bytes).substr(0, n));
    BOOST_REQUIRE_MESSAGE(std::holds_alternative<need_more>(o), "prefix of " << n << " bytes");
    const auto want = std::get<need_more>(o).total_bytes;
    BOOST_TEST(want > n);
    BOOST_TEST(want == (n < net::frame_header_bytes ? net::frame_header_bytes : bytes.size()));
  }
  BOOST_TEST(expect_frame(decode_frame(bytes)).consumed == bytes.size());
}

BOOST_AUTO_TEST_CASE(back_to_back_frames_decode_one_at_a_time) {
  std::string stream;
  for (int i = 0; i < 50; ++i) {
    net::append_frame(stream, sample_header(), std::to_string(i));
  }
  std::string_view rest = stream;
  for (int i = 0; i < 50; ++i) {
    const auto d = expect_frame(decode_frame(rest));
    BOOST_TEST(d.value.payload == std::to_string(i));
    rest.remove_prefix(d.consumed);
  }
  BOOST_TEST(rest.empty());
}

BOOST_AUTO_TEST_CASE(garbage_is_refused_at_the_first_wrong_byte) {
  BOOST_TEST(expect_error(decode_frame("G")) == frame_error::bad_magic);
  BOOST_TEST(expect_error(decode_frame("GET / HTTP/1.1\r\n")) == frame_error::bad_magic);
  std::string bytes = net::encode_frame(sample_header(), "x");
  auto with = [&](std::size_t at, char v) {
    std::string b = bytes;
    b[at] = v;
    return b;
  };
  // Version 1 (no receiver incarnation), 2 (no generation in the hello), 3 (no read lease
  // in the hello) and unknown later versions.
  BOOST_TEST(expect_error(decode_frame(with(4, 1).substr(0, 5))) == frame_error::bad_version);
  BOOST_TEST(expect_error(decode_frame(with(4, 2).substr(0, 5))) == frame_error::bad_version);
  BOOST_TEST(expect_error(decode_frame(with(4, 3).substr(0, 5))) == frame_error::bad_version);
  BOOST_TEST(expect_error(decode_frame(with(4, 5).substr(0, 5))) == frame_error::bad_version);
  BOOST_TEST(expect_error(decode_frame(with(5, 6))) == frame_error::bad_kind);
  BOOST_TEST(expect_error(decode_frame(with(5, 0))) == frame_error::bad_kind);
  BOOST_TEST(expect_error(decode_frame(with(5, 9))) == frame_error::bad_kind);
  BOOST_TEST(expect_error(decode_frame(with(6, 0x08))) == frame_error::bad_flags);
  // first/last without fragment is meaningless.
  BOOST_TEST(expect_error(decode_frame(with(6, 0x02))) == frame_error::bad_flags);
  BOOST_TEST(expect_error(decode_frame(with(7, 1))) == frame_error::bad_flags);
}

BOOST_AUTO_TEST_CASE(oversize_is_refused_from_the_header_alone) {
  const std::string bytes = net::encode_frame(sample_header(), std::string(1000, 'a'));
  const auto header = std::string_view(bytes).substr(0, net::frame_header_bytes);
  BOOST_TEST(expect_error(decode_frame(header, 999)) == frame_error::oversize);
  BOOST_TEST(std::holds_alternative<need_more>(decode_frame(header, 1000)));
  BOOST_TEST(expect_frame(decode_frame(bytes, 1000)).value.payload.size() == 1000u);
  // The largest length a header can announce must not overflow the size arithmetic.
  std::string huge = bytes.substr(0, net::frame_header_bytes);
  for (int i = 40; i < 44; ++i) huge[i] = '\xff';
  BOOST_TEST(expect_error(decode_frame(huge)) == frame_error::oversize);
  BOOST_TEST(std::holds_alternative<need_more>(decode_frame(huge, ~std::size_t{0})));
}

BOOST_AUTO_TEST_CASE(any_single_corrupted_byte_never_yields_a_frame) {
  const std::string bytes = net::encode_frame(sample_header(), binary_payload(64, 3));
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string b = bytes;
      b[i] = static_cast<char>(b[i] ^ (1 << bit));
      const auto o = decode_frame(b);
      // A flipped length bit may make the decoder wait for more; it must never accept.
      BOOST_TEST_REQUIRE(!std::holds_alternative<decoded_frame>(o), "byte " << i << " bit " << bit);
      if (i >= 8 && i < 40) BOOST_TEST(expect_error(o) == frame_error::bad_checksum);
    }
  }
}

BOOST_AUTO_TEST_CASE(random_and_truncated_buffers_never_crash_or_overread) {
  std::mt19937 rng(20240601);
  std::size_t decoded = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string buf;
    if (round % 2 == 0) {
      buf = binary_payload(rng() % 200, rng());
    } else {
      // A valid frame, truncated and with a few random bytes overwritten: reaches the
      // length and checksum paths that pure noise rarely passes.
      buf = net::encode_frame(sample_header(static_cast<frame_kind>(1 + rng() % 5)),
                              binary_payload(rng() % 100, rng()));
      buf.resize(rng() % (buf.size() + 1));
      const int flips = static_cast<int>(rng() % 3);
      for (int f = 0; f < flips && !buf.empty(); ++f)
        buf[rng() % buf.size()] = static_cast<char>(rng());
    }
    // Copy into an exact-size heap block so sanitizers catch any read past the end.
    std::unique_ptr<char[]> exact(new char[buf.size() + 1]);
    std::copy(buf.begin(), buf.end(), exact.get());
    const auto o = decode_frame(std::string_view(exact.get(), buf.size()), 1 << 16);
    if (const auto* d = std::get_if<decoded_frame>(&o)) {
      ++decoded;
      BOOST_TEST_REQUIRE(d->consumed <= buf.size());
      BOOST_TEST_REQUIRE(d->consumed == net::frame_overhead_bytes + d->value.payload.size());
    } else if (const auto* m = std::get_if<need_more>(&o)) {
      BOOST_TEST_REQUIRE(m->total_bytes > buf.size());
    }
  }
  // Untouched, unflipped full frames must have decoded (sanity: the loop exercised success).
  BOOST_TEST(decoded > 0u);
}

BOOST_AUTO_TEST_CASE(forward_request_and_response_round_trip) {
  net::forward_request req{42, net::forward_op::write, binary_payload(77, 9)};
  BOOST_TEST((net::decode_forward_request(net::encode(req)) == req));
  net::forward_request barrier{7, net::forward_op::read_barrier, ""};
  BOOST_TEST((net::decode_forward_request(net::encode(barrier)) == barrier));

  net::forward_response resp{42, net::service_error::not_leader, "abc"};
  BOOST_TEST((net::decode_forward_response(net::encode(resp)) == resp));
  net::forward_response ok{1, net::service_error::none, binary_payload(5, 1)};
  BOOST_TEST((net::decode_forward_response(net::encode(ok)) == ok));
}

BOOST_AUTO_TEST_CASE(malformed_forward_bodies_are_refused) {
  const std::string req = net::encode(net::forward_request{1, net::forward_op::write, "body"});
  for (std::size_t n = 0; n < 9; ++n) {
    BOOST_TEST(!net::decode_forward_request(std::string_view(req).substr(0, n)).has_value());
  }
  std::string bad_op = req;
  bad_op[8] = 0;
  BOOST_TEST(!net::decode_forward_request(bad_op).has_value());
  bad_op[8] = 5;  // one past forward_op::members_view
  BOOST_TEST(!net::decode_forward_request(bad_op).has_value());

  std::string bad_error = net::encode(net::forward_response{1, net::service_error::none, ""});
  bad_error[8] = static_cast<char>(200);
  BOOST_TEST(!net::decode_forward_response(bad_error).has_value());
  BOOST_TEST(!net::decode_forward_response("short").has_value());
}

namespace {

net::node_status sample_members_view() {
  net::node_status s;
  s.config_index = 1234;
  s.change_in_progress = true;
  s.leader_id = 2;
  for (std::uint64_t id : {1, 2, 7}) {
    net::member_status m;
    m.address = {raft::node_id{id}, "10.0.0." + std::to_string(id) + ":7001",
                 id == 7 ? "" : "127.0.0.1:11211", "127.0.0.1:9001", "[::1]:8081"};
    m.voter = id != 7;
    m.caught_up = id != 1;
    m.match_index = 1000 + id;
    m.next_index = 99;  // not carried: only what GET /v1/members shows
    s.members.push_back(m);
  }
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_members_view_round_trips_what_get_members_shows) {
  net::forward_request ask{9, net::forward_op::members_view, ""};
  BOOST_TEST((net::decode_forward_request(net::encode(ask)) == ask));

  const net::node_status sent = sample_members_view();
  const auto got = net::decode_members_view(net::encode_members_view(sent));
  BOOST_TEST_REQUIRE(got.has_value());
  BOOST_TEST(got->config_index == 1234u);
  BOOST_TEST(got->change_in_progress);
  BOOST_TEST(got->leader_id == 2u);
  BOOST_TEST_REQUIRE(got->members.size() == 3u);
  for (std::size_t k = 0; k < 3; ++k) {
    const auto& a = sent.members[k];
    const auto& b = got->members[k];
    BOOST_TEST(b.address.id.value == a.address.id.value);
    BOOST_TEST(b.address.peer == a.address.peer);
    BOOST_TEST(b.address.memcached == a.address.memcached);
    BOOST_TEST(b.address.cs733 == a.address.cs733);
    BOOST_TEST(b.address.http == a.address.http);
    BOOST_TEST(b.voter == a.voter);
    BOOST_TEST(b.caught_up == a.caught_up);
    BOOST_TEST(b.match_index == a.match_index);
    BOOST_TEST(b.next_index == 0u);
  }
  net::node_status empty;
  const auto none = net::decode_members_view(net::encode_members_view(empty));
  BOOST_TEST_REQUIRE(none.has_value());
  BOOST_TEST(none->members.empty());
}

BOOST_AUTO_TEST_CASE(a_malformed_members_view_is_refused) {
  const std::string good = net::encode_members_view(sample_members_view());
  // Every cut, and one byte more.
  for (std::size_t n = 0; n < good.size(); ++n) {
    BOOST_TEST(!net::decode_members_view(std::string_view(good).substr(0, n)).has_value());
  }
  BOOST_TEST(!net::decode_members_view(good + "x").has_value());
  // A flag other than 0 or 1 (change_in_progress sits after the config index).
  std::string bad_flag = good;
  bad_flag[8] = 2;
  BOOST_TEST(!net::decode_members_view(bad_flag).has_value());
  // A member count the bytes cannot hold is refused before anything is allocated.
  std::string huge = good.substr(0, 17);
  huge += std::string("\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 9);
  BOOST_TEST(!net::decode_members_view(huge).has_value());
}

BOOST_AUTO_TEST_CASE(the_header_layout_is_pinned) {
  // The wire format is shared by every version of a cluster's nodes: a change here is a
  // change of frame_version.
  const std::string bytes = net::encode_frame(sample_header(frame_kind::forward_response), "xy");
  BOOST_TEST_REQUIRE(bytes.size() == 44u + 2u + 4u);
  BOOST_TEST(bytes.substr(0, 4) == "RKVP");
  BOOST_TEST(int(bytes[4]) == 4);
  BOOST_TEST(int(bytes[5]) == 4);
  auto u64_at = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  BOOST_TEST(u64_at(8) == 0x1122334455667788ull);
  BOOST_TEST(u64_at(16) == 2u);
  BOOST_TEST(u64_at(24) == 3u);
  BOOST_TEST(u64_at(32) == 0x0102030405060708ull);
  BOOST_TEST(int(bytes[40]) == 2);
  BOOST_TEST(bytes.substr(44, 2) == "xy");
}

BOOST_AUTO_TEST_CASE(the_receiver_incarnation_round_trips_and_defaults_to_any) {
  auto h = sample_header();
  h.to_incarnation = 0;
  BOOST_TEST(expect_frame(decode_frame(net::encode_frame(h, "p"))).value.header.to_incarnation ==
             0u);
  h.to_incarnation = ~std::uint64_t{0};
  BOOST_TEST(expect_frame(decode_frame(net::encode_frame(h, "p"))).value.header.to_incarnation ==
             ~std::uint64_t{0});
}

BOOST_AUTO_TEST_CASE(hello_payload_carries_incarnation_generation_and_read_lease) {
  for (std::uint64_t v :
       {std::uint64_t{1}, std::uint64_t{0xdeadbeefcafef00dull}, ~std::uint64_t{0}}) {
    for (std::int64_t lease : {std::int64_t{0}, std::int64_t{210}, INT64_MAX}) {
      const net::hello h{v, v ^ 0x5a5a5a5a5a5a5a5aull ? v ^ 0x5a5a5a5a5a5a5a5aull : 1, lease};
      const std::string p = net::encode_hello(h);
      BOOST_TEST(p.size() == net::hello_payload_bytes);
      BOOST_TEST(p.size() == 24u);
      const auto back = net::decode_hello(p);
      BOOST_TEST_REQUIRE(back.has_value());
      BOOST_TEST((*back == h));
    }
  }
  // Pinned layout: incarnation, generation, read lease, little-endian.
  const std::string pinned =
      net::encode_hello({0x0102030405060708ull, 0x1112131415161718ull, 0x2122232425262728ll});
  BOOST_TEST(static_cast<int>(pinned[0]) == 0x08);
  BOOST_TEST(static_cast<int>(pinned[7]) == 0x01);
  BOOST_TEST(static_cast<int>(pinned[8]) == 0x18);
  BOOST_TEST(static_cast<int>(pinned[15]) == 0x11);
  BOOST_TEST(static_cast<int>(pinned[16]) == 0x28);
  BOOST_TEST(static_cast<int>(pinned[23]) == 0x21);
  BOOST_TEST(!net::decode_hello("").has_value());  // a version-1 hello
  // A version-2 hello: the incarnation alone; a version-3 one: no read lease.
  BOOST_TEST(!net::decode_hello(net::encode_hello({5, 6, 7}).substr(0, 8)).has_value());
  BOOST_TEST(!net::decode_hello(net::encode_hello({5, 6, 7}).substr(0, 16)).has_value());
  BOOST_TEST(!net::decode_hello(net::encode_hello({0, 6, 7})).has_value());
  BOOST_TEST(!net::decode_hello(net::encode_hello({5, 0, 7})).has_value());
  BOOST_TEST(!net::decode_hello(net::encode_hello({5, 6, 7}) + "x").has_value());
  BOOST_TEST(!net::decode_hello(net::encode_hello({5, 6, 7}).substr(0, 23)).has_value());
  // A read lease of 2^63 or more is malformed (it would be negative as a duration).
  std::string huge = net::encode_hello({5, 6, 7});
  huge[23] = static_cast<char>(0x80);
  BOOST_TEST(!net::decode_hello(huge).has_value());
}

BOOST_AUTO_TEST_CASE(a_refusal_round_trips_and_decodes_strictly) {
  const net::refusal r{net::refusal_reason::lost_data_dir, 0x0102030405060708ull,
                       0xa1a2a3a4a5a6a7a8ull};
  const std::string p = net::encode(r);
  BOOST_TEST(p.size() == net::refused_payload_bytes);
  BOOST_TEST(static_cast<int>(p[0]) == 1);
  BOOST_TEST(static_cast<int>(p[1]) == 0x08);
  BOOST_TEST(static_cast<unsigned char>(p[9]) == 0xa8);
  const auto back = net::decode_refusal(p);
  BOOST_TEST_REQUIRE(back.has_value());
  BOOST_TEST((*back == r));
  // Carried in a frame of its own kind.
  // The decoded payload is a view into the encoded bytes: keep them alive.
  const std::string wire = net::encode_frame(sample_header(frame_kind::refused), p);
  const auto framed = expect_frame(decode_frame(wire));
  BOOST_TEST((framed.value.header.kind == frame_kind::refused));
  BOOST_TEST((net::decode_refusal(framed.value.payload) == std::optional<net::refusal>(r)));

  BOOST_TEST(!net::decode_refusal("").has_value());
  BOOST_TEST(!net::decode_refusal(p + "x").has_value());
  BOOST_TEST(!net::decode_refusal(p.substr(0, 16)).has_value());
  std::string bad = p;
  bad[0] = 0;  // no reason
  BOOST_TEST(!net::decode_refusal(bad).has_value());
  bad[0] = 2;  // unknown reason
  BOOST_TEST(!net::decode_refusal(bad).has_value());
  BOOST_TEST(!net::decode_refusal(net::encode(net::refusal{r.reason, 0, 7})).has_value());
  BOOST_TEST(!net::decode_refusal(net::encode(net::refusal{r.reason, 7, 0})).has_value());
}
