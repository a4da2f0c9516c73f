// The calls of one text connection that may still be running, of one kind (writes or
// reads), by sequence number: what the pipelining rules of net/text_session.cc consult (a
// read waits for the connection's earlier writes, a write for its earlier reads).
//
// Sequence numbers only grow, so a deque in start order replaces a sorted set, and the
// records of finished calls are dropped from its front: whenever the earliest open call is
// asked for, and whenever a call starts. The second matters: a connection that only writes
// never asks for its earliest open write, and without it kept one record per write for as
// long as it stayed open (8 bytes a write: 8 MB after a million-item bulk load, freed only
// at the close).
//
// In the session, a call is finished once its reply is complete; a call whose record is at
// the front and not finished still holds its slot in the connection's reply queue, and
// every later record belongs to a later slot, so the records never outnumber the requests
// in flight (pipeline_limits::max_requests).
#pragma once

#include <cstdint>
#include <deque>
#include <limits>

namespace net {

class open_calls {
 public:
  static constexpr std::uint64_t none = std::numeric_limits<std::uint64_t>::max();

  // A call with sequence number `seq` (greater than every one before) started.
  template <class Finished>
  void start(std::uint64_t seq, const Finished& finished) {
    drop_finished(finished);
    seqs_.push_back(seq);
  }
  // The earliest call not finished yet, or `none`.
  template <class Finished>
  std::uint64_t first_open(const Finished& finished) {
    drop_finished(finished);
    return seqs_.empty() ? none : seqs_.front();
  }
  std::size_t records() const { return seqs_.size(); }

 private:
  template <class Finished>
  void drop_finished(const Finished& finished) {
    while (!seqs_.empty() && finished(seqs_.front())) seqs_.pop_front();
  }
  std::deque<std::uint64_t> seqs_;
};

}  // namespace net
