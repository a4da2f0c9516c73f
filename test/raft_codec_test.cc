#define BOOST_TEST_MODULE raft_codec
#include <boost/test/unit_test.hpp>
#include <random>

#include "raft/codec.h"
#include "raft/membership.h"

using namespace raft;

namespace {

std::vector<message> samples() {
  std::vector<message> out;
  auto hdr = [](message_body b) {
    return message{node_id(1), node_id(2), term_t(7), std::move(b)};
  };
  append_request a;
  a.prev_index = index_t(4);
  a.prev_term = term_t(3);
  a.commit = index_t(4);
  a.entries.push_back(entry{term_t(7), index_t(5), entry_type::noop, ""});
  a.entries.push_back(entry{term_t(7), index_t(6), entry_type::normal, std::string("x\0y", 3)});
  out.push_back(hdr(a));
  out.push_back(hdr(append_request{}));
  out.push_back(hdr(append_response{true, index_t(0), index_t(9), term_t(2), index_t(3)}));
  out.push_back(hdr(append_response{false, index_t(12), index_t(0), term_t(0), index_t(0)}));
  out.push_back(hdr(vote_request{index_t(10), term_t(6), true, false}));
  out.push_back(hdr(vote_request{index_t(10), term_t(6), false, true}));
  out.push_back(hdr(vote_response{true, true}));
  out.push_back(hdr(heartbeat_request{index_t(3), 99}));
  out.push_back(hdr(heartbeat_response{99}));
  out.push_back(
      hdr(snapshot_request{snapshot_meta{index_t(50), term_t(4),
                                         raft::voters_only({node_id(1), node_id(2), node_id(3)})},
                           std::make_shared<const std::string>("state bytes"), nullptr}));
  out.push_back(hdr(timeout_now{}));
  out.push_back(hdr(read_index_request{12345}));
  out.push_back(hdr(read_index_response{12345, index_t(77), true, 1764300000123}));
  out.push_back(hdr(snapshot_chunk{
      snapshot_meta{index_t(50), term_t(4), raft::voters_only({node_id(1), node_id(2)})}, 1024,
      1029, 0xdeadbeef, true, "tail!"}));
  out.push_back(hdr(snapshot_chunk_response{index_t(50), term_t(4), 1024, 1029, true, false}));
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_message_type_round_trips) {
  auto all = samples();
  std::vector<bool> seen(std::variant_size_v<message_body>, false);
  for (const auto& m : all) {
    auto bytes = encode(m);
    auto back = decode(bytes);
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST((*back == m), message_name(m));
    seen[m.body.index()] = true;
  }
  for (bool s : seen) BOOST_TEST(s);
}

BOOST_AUTO_TEST_CASE(every_truncation_and_extension_is_rejected) {
  for (const auto& m : samples()) {
    auto bytes = encode(m);
    for (std::size_t n = 0; n < bytes.size(); ++n)
      BOOST_TEST(!decode(std::string_view(bytes).substr(0, n)).has_value());
    BOOST_TEST(!decode(bytes + "x").has_value());
  }
}

BOOST_AUTO_TEST_CASE(wrong_version_or_tag_is_rejected) {
  auto bytes = encode(samples()[0]);
  auto v = bytes;
  v[0] = static_cast<char>(raft::codec_version + 1);
  BOOST_TEST(!decode(v).has_value());
  auto t = bytes;
  t[1] = static_cast<char>(std::variant_size_v<message_body>);
  BOOST_TEST(!decode(t).has_value());
}

BOOST_AUTO_TEST_CASE(huge_length_fields_do_not_allocate) {
  // An append_request claiming 2^60 entries, and a snapshot claiming 2^62 bytes.
  auto bytes = encode(message{node_id(1), node_id(2), term_t(1), append_request{}});
  // count is the last 8 bytes.
  bytes[bytes.size() - 1] = 0x10;
  BOOST_TEST(!decode(bytes).has_value());
  auto snap = encode(
      message{node_id(1), node_id(2), term_t(1),
              snapshot_request{snapshot_meta{}, std::make_shared<const std::string>(), nullptr}});
  snap[snap.size() - 1] = 0x40;
  BOOST_TEST(!decode(snap).has_value());
}

BOOST_AUTO_TEST_CASE(random_garbage_and_bit_flips_never_crash) {
  std::mt19937_64 rng(42);
  auto all = samples();
  std::size_t decoded = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string bytes;
    if (round % 2 == 0) {
      bytes.resize(rng() % 200);
      for (auto& c : bytes) c = static_cast<char>(rng());
      if (!bytes.empty()) bytes[0] = codec_version;
    } else {
      bytes = encode(all[rng() % all.size()]);
      for (int flips = 0; flips < 3; ++flips)
        bytes[rng() % bytes.size()] ^= static_cast<char>(1u << (rng() % 8));
    }
    auto m = decode(bytes);
    if (m) {
      ++decoded;
      // Whatever decodes must re-encode to the same bytes (the encoding is canonical).
      BOOST_TEST((encode(*m) == bytes));
    }
  }
  BOOST_TEST_MESSAGE("decoded " << decoded << " of 20000 mutated inputs");
}

// raft/payload.h: an entry's bytes are shared by its copies, never copied with them.
BOOST_AUTO_TEST_CASE(payload_copies_share_one_block) {
  payload a(std::string(100, 'x'));
  payload b = a;
  BOOST_TEST(b == a);
  BOOST_TEST(static_cast<const void*>(b.data()) == static_cast<const void*>(a.data()));
  entry e{term_t{1}, index_t{1}, entry_type::normal, a};
  entry copy = e;
  BOOST_TEST(static_cast<const void*>(copy.data.data()) == static_cast<const void*>(a.data()));
  a.clear();  // the others keep the bytes
  BOOST_TEST(a.empty());
  BOOST_TEST(b.size() == 100u);
  BOOST_TEST(copy.data == std::string(100, 'x'));
  payload moved = std::move(b);
  BOOST_TEST(b.empty());
  BOOST_TEST(moved == copy.data);
  BOOST_TEST(payload() == payload(""));  // empty bytes hold no block
  BOOST_TEST(payload().data() != nullptr);
  BOOST_TEST(!(payload("ab") == payload("ac")));
}

BOOST_AUTO_TEST_CASE(decoded_entries_own_their_bytes) {
  std::string frame;
  {
    append_request r;
    r.entries.push_back(entry{term_t{2}, index_t{7}, entry_type::normal, "seven"});
    frame = encode(message{node_id{1}, node_id{2}, term_t{2}, r});
  }
  auto m = decode(frame);
  BOOST_REQUIRE(m);
  frame.assign(frame.size(), '\0');  // the payload does not point into the frame
  const auto& got = std::get<append_request>(m->body).entries;
  BOOST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].data == "seven");
}
