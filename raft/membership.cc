#include "raft/membership.h"

#include <algorithm>

#include "base/bytes.h"

namespace raft {

const char* to_string(change_error e) {
  switch (e) {
    case change_error::none:
      return "ok";
    case change_error::not_leader:
      return "not the leader";
    case change_error::transfer_in_progress:
      return "leadership transfer in progress";
    case change_error::change_in_progress:
      return "another membership change is in progress";
    case change_error::leader_not_ready:
      return "the new leader has not committed an entry of its term yet";
    case change_error::member_exists:
      return "id already in use";
    case change_error::address_in_use:
      return "address already in use by another member";
    case change_error::unknown_member:
      return "no such member";
    case change_error::not_learner:
      return "not a learner";
    case change_error::last_voter:
      return "would leave no voter";
    case change_error::not_caught_up:
      return "the learner has not caught up with the leader's log";
    case change_error::malformed:
      return "malformed membership change";
  }
  return "?";
}

bool retryable(change_error e) {
  return e == change_error::transfer_in_progress || e == change_error::leader_not_ready ||
         e == change_error::not_caught_up;
}

std::variant<membership, change_error> apply_change(const membership& current,
                                                    const membership_change& c) {
  if (c.subject.id == no_node) return change_error::malformed;
  membership next = current;
  auto it = std::find_if(next.members.begin(), next.members.end(),
                         [&](const member& m) { return m.id == c.subject.id; });
  switch (c.kind) {
    case change_kind::add_learner: {
      if (it != next.members.end()) return change_error::member_exists;
      for (const auto& m : current.members)
        for (const auto& [name, value] : m.endpoints)
          for (const auto& [new_name, new_value] : c.subject.endpoints)
            if (!value.empty() && value == new_value) return change_error::address_in_use;
      member added = c.subject;
      added.voter = false;
      std::sort(added.endpoints.begin(), added.endpoints.end());
      next.members.push_back(std::move(added));
      std::sort(next.members.begin(), next.members.end(),
                [](const member& a, const member& b) { return a.id < b.id; });
      return next;
    }
    case change_kind::promote:
      if (it == next.members.end()) return change_error::unknown_member;
      if (it->voter) return change_error::not_learner;
      it->voter = true;
      return next;
    case change_kind::remove: {
      if (it == next.members.end()) return change_error::unknown_member;
      next.members.erase(it);
      if (next.voters().empty()) return change_error::last_voter;
      return next;
    }
  }
  return change_error::malformed;
}

namespace {

void write_member(base::byte_writer& w, const member& m) {
  w.u64(m.id.value);
  w.u8(m.voter ? 1 : 0);
  w.varint(m.endpoints.size());
  for (const auto& [name, value] : m.endpoints) {
    w.bytes(name);
    w.bytes(value);
  }
}

std::optional<member> read_member(base::byte_reader& r) {
  const auto id = r.u64();
  const auto voter = r.u8();
  const auto n = r.varint();
  // Each endpoint takes at least two bytes: never trust a count beyond that.
  if (!id || *id == 0 || !voter || *voter > 1 || !n || *n > r.remaining() / 2) return std::nullopt;
  member m;
  m.id = node_id{*id};
  m.voter = *voter == 1;
  for (std::uint64_t k = 0; k < *n; ++k) {
    auto name = r.bytes();
    auto value = r.bytes();
    if (!name || !value) return std::nullopt;
    m.endpoints.emplace_back(std::string(*name), std::string(*value));
  }
  return m;
}

}  // namespace

std::string encode_membership(const membership& m) {
  std::string out;
  base::byte_writer w(out);
  w.varint(m.members.size());
  for (const auto& x : m.members) write_member(w, x);
  return out;
}

std::optional<membership> decode_membership(std::string_view bytes) {
  base::byte_reader r(bytes);
  const auto n = r.varint();
  // A member takes at least 10 bytes (id, voter flag, endpoint count).
  if (!n || *n > r.remaining() / 10) return std::nullopt;
  membership m;
  for (std::uint64_t k = 0; k < *n; ++k) {
    auto x = read_member(r);
    if (!x) return std::nullopt;
    // Sorted and unique, as every encoder writes them: anything else is not ours.
    if (!m.members.empty() && !(m.members.back().id < x->id)) return std::nullopt;
    m.members.push_back(std::move(*x));
  }
  if (!r.at_end()) return std::nullopt;
  return m;
}

std::string encode_change(const membership_change& c) {
  std::string out;
  base::byte_writer w(out);
  w.u8(static_cast<std::uint8_t>(c.kind));
  write_member(w, c.subject);
  return out;
}

std::optional<membership_change> decode_change(std::string_view bytes) {
  base::byte_reader r(bytes);
  const auto kind = r.u8();
  if (!kind || *kind < static_cast<std::uint8_t>(change_kind::add_learner) ||
      *kind > static_cast<std::uint8_t>(change_kind::remove))
    return std::nullopt;
  auto m = read_member(r);
  if (!m || !r.at_end()) return std::nullopt;
  return membership_change{static_cast<change_kind>(*kind), std::move(*m)};
}

std::string encode_outcome(const change_outcome& o) {
  std::string out;
  base::byte_writer w(out);
  w.u8(static_cast<std::uint8_t>(o.error));
  w.u64(o.index.value);
  w.bytes(encode_membership(o.config));
  return out;
}

std::optional<change_outcome> decode_outcome(std::string_view bytes) {
  base::byte_reader r(bytes);
  const auto error = r.u8();
  const auto index = r.u64();
  const auto config = r.bytes();
  if (!error || *error > static_cast<std::uint8_t>(change_error::malformed) || !index || !config ||
      !r.at_end())
    return std::nullopt;
  auto m = decode_membership(*config);
  if (!m) return std::nullopt;
  return change_outcome{static_cast<change_error>(*error), index_t{*index}, std::move(*m)};
}

std::string describe(const membership& m) {
  std::string voters, learners;
  for (const auto& x : m.members) {
    std::string& to = x.voter ? voters : learners;
    if (!to.empty()) to += ",";
    to += std::to_string(x.id.value);
  }
  std::string out = "voters " + (voters.empty() ? std::string("none") : voters);
  if (!learners.empty()) out += "; learners " + learners;
  return out;
}

std::string describe(const membership_change& c) {
  std::string out;
  switch (c.kind) {
    case change_kind::add_learner:
      out = "add learner ";
      break;
    case change_kind::promote:
      out = "promote ";
      break;
    case change_kind::remove:
      out = "remove ";
      break;
  }
  out += std::to_string(c.subject.id.value);
  if (c.kind == change_kind::add_learner) {
    std::string eps;
    for (const auto& [name, value] : c.subject.endpoints) {
      if (!eps.empty()) eps += " ";
      eps += name + "=" + value;
    }
    if (!eps.empty()) out += " (" + eps + ")";
  }
  return out;
}

membership voters_only(const std::vector<node_id>& voters) {
  membership m;
  for (auto v : voters) m.members.push_back(member{v, true, {}});
  std::sort(m.members.begin(), m.members.end(),
            [](const member& a, const member& b) { return a.id < b.id; });
  m.members.erase(std::unique(m.members.begin(), m.members.end(),
                              [](const member& a, const member& b) { return a.id == b.id; }),
                  m.members.end());
  return m;
}

}  // namespace raft
