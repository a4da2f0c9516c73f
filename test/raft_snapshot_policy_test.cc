// The snapshot policy (raft/replica.h, snapshot_due): the log since the last snapshot is
// weighed against the state's size, and snapshot_entries bounds the entries in any case.
#define BOOST_TEST_MODULE raft_snapshot_policy
#include <boost/test/unit_test.hpp>

#include "raft/replica.h"

namespace {

raft::replica_options policy(std::uint64_t entries, std::uint64_t min_bytes, double ratio) {
  raft::replica_options o;
  o.snapshot_entries = entries;
  o.snapshot_min_log_bytes = min_bytes;
  o.snapshot_log_ratio = ratio;
  return o;
}

constexpr std::uint64_t MiB = 1 << 20;

}  // namespace

BOOST_AUTO_TEST_CASE(entries_alone_when_the_size_rule_is_off) {
  const auto o = policy(100, 0, 0.5);
  BOOST_TEST(!raft::snapshot_due(o, 99, 1ull << 40, 0));
  BOOST_TEST(raft::snapshot_due(o, 100, 0, 1ull << 40));
  BOOST_TEST(!raft::snapshot_due(o, 0, 0, 0));
  BOOST_TEST(!raft::snapshot_due(policy(0, 0, 0.5), 1'000'000, 1ull << 40, 0));
}

BOOST_AUTO_TEST_CASE(a_stagger_moves_both_thresholds) {
  auto o = policy(1000, 4 * MiB, 0.5);
  o.snapshot_stagger = 0.2;
  // The entry bound: 1,200 instead of 1,000.
  BOOST_TEST(!raft::snapshot_due(o, 1000, 0, 0));
  BOOST_TEST(!raft::snapshot_due(o, 1199, 0, 0));
  BOOST_TEST(raft::snapshot_due(o, 1200, 0, 0));
  // The byte floor: 4.8 MiB instead of 4.
  o.snapshot_entries = 1'000'000;
  BOOST_TEST(!raft::snapshot_due(o, 10, 4 * MiB + 1, 1 * MiB));
  BOOST_TEST(!raft::snapshot_due(o, 10, 4 * MiB * 12 / 10, 1 * MiB));
  BOOST_TEST(raft::snapshot_due(o, 10, 4 * MiB * 12 / 10 + 1, 1 * MiB));
  // The share of the state: 0.6 of 1 GB instead of 0.5.
  BOOST_TEST(!raft::snapshot_due(o, 10, 600 * MiB, 1024 * MiB));
  BOOST_TEST(raft::snapshot_due(o, 10, 615 * MiB, 1024 * MiB));
}

BOOST_AUTO_TEST_CASE(log_bytes_against_a_fraction_of_the_state) {
  const auto o = policy(1'000'000, 4 * MiB, 0.5);
  // Small state: the floor decides.
  BOOST_TEST(!raft::snapshot_due(o, 1000, 4 * MiB, 1 * MiB));
  BOOST_TEST(raft::snapshot_due(o, 1000, 4 * MiB + 1, 1 * MiB));
  // 1 GB of state: 100 MB of log is not enough, 512 MB + 1 is.
  BOOST_TEST(!raft::snapshot_due(o, 900'000, 100 * MiB, 1024 * MiB));
  BOOST_TEST(!raft::snapshot_due(o, 900'000, 512 * MiB, 1024 * MiB));
  BOOST_TEST(raft::snapshot_due(o, 900'000, 512 * MiB + 1, 1024 * MiB));
  // The entry bound holds whatever the bytes.
  BOOST_TEST(raft::snapshot_due(o, 1'000'000, 1, 1024 * MiB));
  // Nothing applied: never.
  BOOST_TEST(!raft::snapshot_due(o, 0, 1ull << 40, 0));
}
