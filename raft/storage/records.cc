#include "raft/storage/records.h"

#include <cstdio>

#include "base/crc32c.h"
#include "raft/membership.h"

namespace raft::storage {

namespace {
constexpr std::uint32_t config_follows = 0x80000000u;
}  // namespace

std::string seal(std::string_view body) {
  std::string out(4, '\0');
  out.reserve(4 + body.size());
  out += body;
  base::store_le32(out.data(), base::crc32c(body));
  return out;
}

result<std::string_view> unseal(std::string_view record, std::string_view name) {
  if (record.size() < 4)
    return {{}, make_error(errc::corrupt, std::string(name) + ": record too short")};
  const std::uint32_t stored = base::load_le32(record.data());
  const std::string_view body = record.substr(4);
  const std::uint32_t computed = base::crc32c(body);
  if (stored != computed) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " (stored crc32c %08x, computed %08x)", stored, computed);
    return {{}, make_error(errc::corrupt, "checksum mismatch in " + std::string(name) + buf)};
  }
  return {body, {}};
}

void encode_entry(const entry& e, std::string& out) {
  out.clear();
  out.reserve(entry_header_bytes + e.data.size());
  base::byte_writer w(out);
  w.u32(0);  // crc, filled below
  w.u8(static_cast<std::uint8_t>(e.type));
  w.u8(0);
  w.u8(0);
  w.u8(0);
  w.u64(e.term.value);
  w.u64(e.index.value);
  out += e.data;
  base::store_le32(out.data(), base::crc32c(std::string_view(out).substr(4)));
}

result<entry> decode_entry(index_t key, std::string_view record) {
  const std::string name = "log entry " + std::to_string(key.value);
  auto body = unseal(record, name);
  if (!body.ok()) return {{}, body.err};
  if (record.size() < entry_header_bytes)
    return {{}, make_error(errc::corrupt, name + ": record too short")};
  base::byte_reader r(body.value);
  const std::uint8_t type = *r.u8();
  for (int pad = 0; pad < 3; ++pad) r.u8();
  entry e;
  if (type > static_cast<std::uint8_t>(entry_type::config))
    return {{}, make_error(errc::corrupt, name + ": unknown entry type " + std::to_string(type))};
  e.type = static_cast<entry_type>(type);
  e.term = term_t{*r.u64()};
  e.index = index_t{*r.u64()};
  if (e.index != key)
    return {{},
            make_error(errc::corrupt, name + ": stored index " + std::to_string(e.index.value) +
                                          " does not match its key")};
  e.data = payload(record.substr(entry_header_bytes));
  return {std::move(e), {}};
}

std::string encode_hard_state(const hard_state& h) {
  std::string body;
  base::byte_writer w(body);
  w.u64(h.term.value);
  w.u64(h.vote.value);
  w.u64(h.commit.value);
  return seal(body);
}

result<hard_state> decode_hard_state(std::string_view record) {
  auto body = unseal(record, "hard state");
  if (!body.ok()) return {{}, body.err};
  if (body.value.size() != 24) return {{}, make_error(errc::corrupt, "hard state: wrong size")};
  base::byte_reader r(body.value);
  const auto term = *r.u64();
  const auto vote = *r.u64();
  const auto commit = *r.u64();
  return {hard_state{term_t{term}, node_id{vote}, index_t{commit}}, {}};
}

void write_meta_body(base::byte_writer& w, const snapshot_meta& m) {
  w.u64(m.index.value);
  w.u64(m.term.value);
  const auto voters = m.config.voters();
  // The top bit of the count says the whole configuration follows the voters: a reader of
  // the first format (voters only) refuses the record instead of misreading it.
  w.u32(static_cast<std::uint32_t>(voters.size()) | config_follows);
  for (auto v : voters) w.u64(v.value);
  w.bytes(encode_membership(m.config));
}

result<snapshot_meta> read_meta_body(base::byte_reader& r, std::string_view name) {
  const auto bad = [&] {
    return result<snapshot_meta>{{}, make_error(errc::corrupt, std::string(name) + ": malformed")};
  };
  const auto index = r.u64();
  const auto term = r.u64();
  auto n = r.u32();
  if (!index || !term || !n) return bad();
  const bool with_config = (*n & config_follows) != 0;
  *n &= ~config_follows;
  // The count is checked against what is left before anything is allocated for it.
  if (r.remaining() / 8 < *n) return bad();
  snapshot_meta m;
  m.index = index_t{*index};
  m.term = term_t{*term};
  std::vector<node_id> voters;
  voters.reserve(*n);
  for (std::uint32_t i = 0; i < *n; ++i) voters.push_back(node_id{*r.u64()});
  if (with_config) {
    const auto bytes = r.bytes();
    if (!bytes) return bad();
    auto config = decode_membership(*bytes);
    if (!config || config->voters() != voters) return bad();
    m.config = std::move(*config);
  } else {
    // The first format: the voters, no endpoints (the node's config file supplies them).
    m.config = voters_only(voters);
  }
  return {std::move(m), {}};
}

std::string encode_snapshot_record(const snapshot_meta& m) {
  std::string body;
  base::byte_writer w(body);
  write_meta_body(w, m);
  return seal(body);
}

result<snapshot_meta> decode_snapshot_record(std::string_view record) {
  constexpr std::string_view name = "snapshot record";
  auto body = unseal(record, name);
  if (!body.ok()) return {{}, body.err};
  base::byte_reader r(body.value);
  auto m = read_meta_body(r, name);
  if (m.ok() && !r.at_end())
    return {{}, make_error(errc::corrupt, std::string(name) + ": malformed")};
  return m;
}

std::string encode_journal_seq(std::uint64_t seq) {
  std::string body;
  base::byte_writer(body).u64(seq);
  return seal(body);
}

result<std::uint64_t> decode_journal_seq(std::string_view record) {
  auto body = unseal(record, "journal seq record");
  if (!body.ok()) return {{}, body.err};
  if (body.value.size() != 8)
    return {{}, make_error(errc::corrupt, "journal seq record: wrong size")};
  return {base::load_le64(body.value.data()), {}};
}

std::string encode_format_record(std::uint32_t version) {
  std::string body;
  base::byte_writer(body).u32(version);
  return seal(body);
}

result<std::uint32_t> decode_format_record(std::string_view record) {
  auto body = unseal(record, "format record");
  if (!body.ok()) return {{}, body.err};
  if (body.value.size() != 4) return {0, {}};
  return {base::load_le32(body.value.data()), {}};
}

std::array<char, 8> log_key(index_t i) {
  std::array<char, 8> k;
  for (int n = 0; n < 8; ++n) k[7 - n] = static_cast<char>((i.value >> (8 * n)) & 0xFFu);
  return k;
}

std::optional<index_t> log_key_index(std::string_view key) {
  if (key.size() != 8) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : key) v = (v << 8) | static_cast<unsigned char>(c);
  return index_t{v};
}

}  // namespace raft::storage
