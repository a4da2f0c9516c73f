// Runs an io_context until a condition holds or a deadline passes, for tests of Asio code:
// no sleeping, each step waits for the next handler, at most 20 ms.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>

namespace test_support {

template <typename Pred>
bool run_until(boost::asio::io_context& io, Pred pred,
               std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    io.run_one_for(std::chrono::milliseconds(20));
    if (io.stopped()) io.restart();
  }
  return true;
}

}  // namespace test_support
