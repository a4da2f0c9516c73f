// Test helper for the durable store: submit one batch and wait for its callback.
#pragma once

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <future>

#include "raft/storage/lmdb_store.h"

namespace test_support {

// The batch's result once its callback ran (a test failure if that takes over 30 s).
inline raft::storage::result<raft::storage::persisted> submit_wait(raft::storage::lmdb_store& s,
                                                                   raft::storage::batch b) {
  std::promise<raft::storage::result<raft::storage::persisted>> p;
  auto f = p.get_future();
  s.submit(std::move(b),
           [&p](const raft::storage::result<raft::storage::persisted>& r) { p.set_value(r); });
  BOOST_REQUIRE(f.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  return f.get();
}

}  // namespace test_support
