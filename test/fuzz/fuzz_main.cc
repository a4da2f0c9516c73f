// A stand-in for libFuzzer's driver, so every fuzz target also runs in ctest with any
// compiler: it feeds the target seed inputs and seeded random mutations of them.
//   fuzz_x                 run the built-in seeds and 20,000 mutations (seed 1)
//   fuzz_x --runs N --seed S
//   fuzz_x FILE...         replay inputs (e.g. a crash file from a libFuzzer run)
// With clang, configure with -DRAFTKV_FUZZ=ON to get real libFuzzer binaries instead.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kv/command.h"
#include "net/peer/frame.h"
#include "raft/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

int run(const std::string& input) {
  return LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()),
                                input.size());
}

// Valid inputs of every format, so mutations start from deep inside each decoder.
std::vector<std::string> seeds() {
  std::vector<std::string> out = {
      "set k 0 0 5\r\nhello\r\nget k\r\n",
      "gets a b c\r\ncas k 1 2 3 4 noreply\r\nabc\r\nincr n 5\r\ndecr n 1\r\n",
      "touch k 10\r\ngat 5 k\r\nflush_all 3\r\nstats\r\nversion\r\nverbosity 1\r\nquit\r\n",
      "set k 60 3\r\nabc\r\ngetm k\r\ncas k 0 7 2\r\nxy\r\ndelete k\r\n",
      "append k 0 0 2000000\r\n",
  };
  kv::command c;
  c.kind = kv::op::cas;
  c.key = "key";
  c.value = "value";
  c.flags = 7;
  c.exptime = 100;
  c.cas_unique = 42;
  c.timestamp_ms = 1700000000000;
  c.id = {3, 4};
  out.push_back(kv::encode(c));
  kv::result r;
  r.code = kv::status::item;
  r.item = kv::item_view{"v", 1, 2, 3};
  out.push_back(kv::encode(r));
  raft::message m;
  m.from = raft::node_id(1);
  m.to = raft::node_id(2);
  m.term = raft::term_t(3);
  raft::append_request a;
  a.prev_index = raft::index_t(4);
  a.prev_term = raft::term_t(2);
  a.entries.push_back(raft::entry{raft::term_t(3), raft::index_t(5), raft::entry_type::normal,
                                  "data"});
  a.commit = raft::index_t(4);
  m.body = a;
  out.push_back(raft::encode(m));
  net::frame_header h;
  h.kind = net::frame_kind::raft_message;
  h.cluster_id = 9;
  h.from = raft::node_id(1);
  h.to = raft::node_id(2);
  out.push_back(net::encode_frame(h, out.back()));
  out.push_back(net::encode(net::forward_request{5, net::forward_op::write, kv::encode(c)}));
  net::node_status view;
  view.config_index = 12;
  view.leader_id = 1;
  net::member_status member;
  member.address = {raft::node_id(1), "h:1", "h:2", "", "h:4"};
  member.match_index = 12;
  view.members.push_back(member);
  out.push_back(net::encode_members_view(view));
  return out;
}

std::string mutate(std::string s, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < edits; ++i) {
    const auto pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 5) {
      case 0:  // flip a bit
        if (!s.empty()) s[pos % s.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:  // insert a random byte
        s.insert(s.begin() + static_cast<long>(pos), static_cast<char>(rng()));
        break;
      case 2:  // delete a byte
        if (!s.empty()) s.erase(pos % s.size(), 1);
        break;
      case 3:  // truncate
        s.resize(pos);
        break;
      default:  // an interesting byte
        if (!s.empty()) {
          static constexpr char interesting[] = {'\r', '\n', ' ', '\0', '\xff', '\x7f', '0', '9'};
          s[pos % s.size()] = interesting[rng() % sizeof interesting];
        }
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t runs = 20000;
  std::uint64_t seed = 1;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::stoull(argv[++i]);
    } else if (std::strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      seed = std::stoull(argv[++i]);
    } else {
      files.emplace_back(argv[i]);
    }
  }
  if (!files.empty()) {
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      run(std::string(std::istreambuf_iterator<char>(in), {}));
    }
    std::printf("replayed %zu inputs\n", files.size());
    return 0;
  }
  const auto base = seeds();
  for (const auto& s : base) run(s);
  std::mt19937_64 rng(seed);
  for (std::uint64_t i = 0; i < runs; ++i) {
    std::string input;
    if (rng() % 8 == 0) {
      input.resize(rng() % 256);
      for (auto& ch : input) ch = static_cast<char>(rng());
    } else {
      input = mutate(base[rng() % base.size()], rng);
    }
    run(input);
  }
  std::printf("%llu inputs (seed %llu): no invariant broken\n",
              static_cast<unsigned long long>(runs + base.size()),
              static_cast<unsigned long long>(seed));
  return 0;
}
