// Fuzz target: every decoder of bytes that arrive from outside the process — Raft messages,
// peer frames, hellos and refusals, forwarding bodies and members views, kv commands and
// results, kv snapshots.
// Invariants: nothing crashes or reads out of bounds, and whatever decodes re-encodes to
// bytes that decode to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "kv/command.h"
#include "kv/store.h"
#include "net/peer/frame.h"
#include "raft/codec.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  if (auto m = raft::decode(input)) check(raft::decode(raft::encode(*m)) == m);
  if (auto c = kv::decode_command(input)) check(kv::decode_command(kv::encode(*c)) == c);
  if (auto r = kv::decode_result(input)) check(kv::decode_result(kv::encode(*r)) == r);
  if (auto f = net::decode_forward_request(input)) {
    check(net::decode_forward_request(net::encode(*f)) == f);
  }
  if (auto f = net::decode_forward_response(input)) {
    check(net::decode_forward_response(net::encode(*f)) == f);
  }

  // One encoding per view (varint lengths admit no over-long form): the bytes come back.
  if (auto v = net::decode_members_view(input)) check(net::encode_members_view(*v) == input);

  if (auto h = net::decode_hello(input)) check(net::decode_hello(net::encode_hello(*h)) == h);
  if (auto r = net::decode_refusal(input)) check(net::decode_refusal(net::encode(*r)) == r);

  const auto frame = net::decode_frame(input, 1 << 16);
  if (const auto* d = std::get_if<net::decoded_frame>(&frame)) {
    check(d->consumed <= size);
    const std::string again = net::encode_frame(d->value.header, d->value.payload);
    check(std::string_view(again) == input.substr(0, d->consumed));
  }

  kv::store store;
  if (store.restore(input)) {
    kv::store again;
    check(again.restore(store.snapshot()) && again.snapshot() == store.snapshot());
  }
  return 0;
}
