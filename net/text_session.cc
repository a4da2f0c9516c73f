#include "net/text_session.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <vector>

#include "base/log.h"
#include "net/listener.h"
#include "net/open_calls.h"

namespace net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto wait_token = asio::as_tuple(asio::use_awaitable);

// A broadcast wake-up for coroutines on one thread: wait() suspends until the next
// notify_all(). The timer never expires (its expiry is set once and never changed: changing
// it would cancel the waits); cancel() completes every pending wait. Waiters re-check their
// condition in a loop, and there is no gap between a check and its wait on one thread, so
// no wake-up is lost.
// Every request notifies as it finishes, mostly when nobody waits: the count of waits
// started since the last notify_all() skips the cancel then (a cancel takes the reactor's
// lock and walks the timer queue). cancel() completes every pending wait, so after it
// there are none until the next wait().
class condition {
 public:
  explicit condition(const asio::any_io_executor& ex)
      : timer_(ex, asio::steady_timer::time_point::max()) {}
  auto wait() {
    ++waiting_;
    return timer_.async_wait(wait_token);
  }
  void notify_all() {
    if (waiting_ == 0) return;
    waiting_ = 0;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  std::size_t waiting_ = 0;
};

}  // namespace

// The state shared by the reader (the session coroutine), the writer and the running
// requests of one connection. Held by shared_ptr so that coroutine frames destroyed with
// the io_context (never resumed) do not outlive it.
struct text_connection {
  struct slot {
    std::string reply;
    std::size_t bytes = 0;  // counted against pipeline_limits::max_bytes
    bool done = false;      // reply complete
    bool spilling = false;  // its call waits for the writer to take the partial reply
  };

  text_connection(tcp::socket& s, text_protocol& p, pipeline_limits l)
      : socket(s),
        protocol(p),
        limits(l),
        writer_wake(s.get_executor()),
        progress(s.get_executor()) {}

  slot& at(std::uint64_t seq) { return fifo[seq - head_seq]; }
  // A request is finished once its slot is done (or already written and gone).
  bool finished(std::uint64_t seq) const { return seq < head_seq || fifo[seq - head_seq].done; }
  // The earliest request in `open` (open_writes or open_reads) not yet finished;
  // open_calls::none if none.
  std::uint64_t first_open(open_calls& open) {
    return open.first_open([this](std::uint64_t seq) { return finished(seq); });
  }
  void start(open_calls& open, std::uint64_t seq) {
    open.start(seq, [this](std::uint64_t seq) { return finished(seq); });
  }
  bool full() const { return fifo.size() >= limits.max_requests || fifo_bytes >= limits.max_bytes; }

  // Marks the slot at seq complete and wakes the writer, unless the reader is parsing: it
  // sends what is ready itself when it stops (send_ready()).
  void finish(std::uint64_t seq) {
    slot& s = at(seq);
    s.done = true;
    s.spilling = false;
    s.bytes += s.reply.size();
    fifo_bytes += s.reply.size();
    if (!reader_parsing) writer_wake.notify_all();
  }

  bool head_ready() const {
    return !fifo.empty() && (fifo.front().done || fifo.front().spilling);
  }

  // The reader's shortcut, called whenever it stops parsing: if the writer is not in the
  // middle of a write, the finished replies at the head go out now in one non-blocking
  // gathered write. On a connection that sends one request and waits (a `get` answered on
  // the leader's lease finishes while it is parsed), that is the whole reply path: no
  // wake-up of the writer, no posted resumption, no async_write. What the socket does not
  // take now, and everything else, the writer sends.
  void send_ready() {
    if (!writing && !broken && !fifo.empty() && fifo.front().done) {
      gather.clear();
      for (const slot& s : fifo) {
        if (!s.done || gather.size() == 64) break;
        if (!s.reply.empty()) gather.emplace_back(boost::asio::buffer(s.reply));
      }
      boost::system::error_code ec;
      if (!socket.non_blocking()) socket.non_blocking(true, ec);
      std::size_t n = ec ? 0 : socket.write_some(gather, ec);
      if (n > 0) protocol.count_bytes_written(n);
      bool freed = false;
      while (!fifo.empty() && fifo.front().done && n >= fifo.front().reply.size()) {
        n -= fifo.front().reply.size();
        fifo_bytes -= fifo.front().bytes;
        fifo.pop_front();
        ++head_seq;
        freed = true;
      }
      if (n > 0) fifo.front().reply.erase(0, n);  // the writer sends the rest
      if (freed) progress.notify_all();
      // A failed write is the writer's to report: it meets the same error.
    }
    if (head_ready()) writer_wake.notify_all();
  }

  tcp::socket& socket;
  text_protocol& protocol;
  pipeline_limits limits;

  // Slots of requests parsed and not yet written, in request order; the front one has
  // sequence number head_seq. std::deque keeps references to elements valid across
  // push_back and pop_front of other elements.
  std::deque<slot> fifo;
  std::uint64_t head_seq = 0;
  std::uint64_t next_seq = 0;
  std::size_t fifo_bytes = 0;
  // The calls started and maybe still running, by kind (the ordering rules).
  open_calls open_writes;
  open_calls open_reads;
  std::size_t calls_running = 0;

  bool reader_done = false;  // no more slots will be added
  bool writer_done = false;
  bool broken = false;  // a write failed: nothing more is sent
  bool reader_parsing = false;  // the reader runs its parse loop (and will call send_ready())
  bool writing = false;         // the writer has taken replies and is sending them
  std::vector<boost::asio::const_buffer> gather;  // send_ready()'s buffers

  condition writer_wake;  // the writer waits here for filled slots / spills / the end
  condition progress;     // others wait here: room, spill taken, request finished, writer done
};

void reply_handle::finish(std::string reply) {
  if (c_->finished(seq_)) return;
  auto& slot = c_->at(seq_);
  if (slot.reply.empty()) {
    slot.reply = std::move(reply);
  } else {
    slot.reply += reply;
  }
  --c_->calls_running;
  c_->finish(seq_);
  c_->progress.notify_all();
}

std::string& reply_sink::text() {
  return c_.at(seq_).reply;
}

asio::awaitable<bool> reply_sink::spill() {
  if (c_.broken) co_return false;
  if (c_.at(seq_).reply.size() < spill_bytes) co_return true;
  c_.at(seq_).spilling = true;
  c_.writer_wake.notify_all();
  while (c_.at(seq_).spilling && !c_.broken) co_await c_.progress.wait();
  co_return !c_.broken;
}

namespace {

// Sends the replies of the slots at the head of the FIFO, in order, one gathered write per
// batch of filled slots; ends once the reader is done and the FIFO is empty.
asio::awaitable<void> write_replies(std::shared_ptr<text_connection> c) {
  std::vector<std::string> batch;
  std::vector<asio::const_buffer> buffers;
  for (;;) {
    batch.clear();
    bool freed = false;
    while (!c->fifo.empty()) {
      auto& head = c->fifo.front();
      if (head.done) {
        if (!head.reply.empty()) batch.push_back(std::move(head.reply));
        c->fifo_bytes -= head.bytes;
        c->fifo.pop_front();
        ++c->head_seq;
        freed = true;
        continue;
      }
      if (head.spilling) {
        // The request at the head is still producing: send what it has so far.
        batch.push_back(std::move(head.reply));
        head.reply.clear();
        head.spilling = false;
        freed = true;
      }
      break;
    }
    if (freed) c->progress.notify_all();
    if (!batch.empty() && !c->broken) {
      buffers.clear();
      for (const auto& b : batch) buffers.emplace_back(asio::buffer(b));
      c->writing = true;
      auto [ec, n] = co_await asio::async_write(c->socket, buffers, wait_token);
      c->writing = false;
      if (ec) {
        c->broken = true;
        // Fail the reader's pending wait too: nothing it reads can be answered.
        boost::system::error_code ignored;
        c->socket.shutdown(tcp::socket::shutdown_both, ignored);
        c->progress.notify_all();
      } else {
        c->protocol.count_bytes_written(n);
      }
      continue;  // more slots may have been filled while writing
    }
    if (c->reader_done && c->fifo.empty()) break;
    co_await c->writer_wake.wait();
  }
  c->writer_done = true;
  c->progress.notify_all();
}

// Runs one request: waits for the ordering rule, runs the call, fills the slot.
asio::awaitable<void> run_call(std::shared_ptr<text_connection> c, std::uint64_t seq, access order,
                               std::function<asio::awaitable<void>(reply_sink&)> call) {
  auto& other = order == access::write ? c->open_reads : c->open_writes;
  while (c->first_open(other) < seq) co_await c->progress.wait();
  reply_sink sink(*c, seq);
  try {
    co_await call(sink);
  } catch (const std::exception& e) {
    base::log(base::log_level::error, "request failed: ", e.what());
    sink.text() = c->protocol.internal_error_reply();
  }
  --c->calls_running;
  c->finish(seq);
  c->progress.notify_all();
}

// Starts a callback request (text_step::kind::start). A `start` that throws before it has
// handed the handle on is answered with the internal error; if it had handed it on, its
// later finish() finds the slot filled and does nothing.
void start_request(const std::shared_ptr<text_connection>& c, std::uint64_t seq,
                   const std::function<void(reply_handle)>& start) {
  try {
    start(reply_handle(c, seq));
  } catch (const std::exception& e) {
    base::log(base::log_level::error, "request failed: ", e.what());
    reply_handle(c, seq).finish(c->protocol.internal_error_reply());
  }
}

// A callback request that must wait for the ordering rule: waits, then starts it.
asio::awaitable<void> start_when_allowed(std::shared_ptr<text_connection> c, std::uint64_t seq,
                                         access order, std::function<void(reply_handle)> start) {
  auto& other = order == access::write ? c->open_reads : c->open_writes;
  while (c->first_open(other) < seq) co_await c->progress.wait();
  start_request(c, seq, start);
}

}  // namespace

asio::awaitable<void> run_text_session(tcp::socket& socket, text_protocol& protocol,
                                       pipeline_limits limits) {
  auto c = std::make_shared<text_connection>(socket, protocol, limits);
  const auto ex = socket.get_executor();
  asio::co_spawn(ex, write_replies(c), asio::detached);
  input_buffer in;
  bool closing = false;
  try {
    while (!closing && !c->broken) {
      // Parse what has arrived, within the bounds.
      int parsed = 0;
      std::size_t turn_bytes = 0;  // parsed in this turn
      bool tail_taken = false;
      c->reader_parsing = true;
      while (!closing && !c->broken && !in.skipping()) {
        if (++parsed > limits.requests_per_turn) {
          // A short tail, less input left than this turn has parsed, is parsed in the same
          // turn (once: at most twice the turn's count). A client's round of 100 requests
          // in one write was otherwise proposed as 64 and then 36, and the second part
          // waited for the first one's journal sync: two syncs in each round's latency
          // (bench/README-profile.md, "A round in one read").
          if (!tail_taken && in.size() < turn_bytes) {
            tail_taken = true;
            parsed = 1;
          } else {
            parsed = 0;
            turn_bytes = 0;
            tail_taken = false;
            c->reader_parsing = false;
            c->send_ready();
            co_await asio::post(ex, asio::use_awaitable);
            c->reader_parsing = true;
            continue;
          }
        }
        if (c->full()) {
          c->reader_parsing = false;
          c->send_ready();
          // send_ready() may have made the room itself; then nobody else would wake us.
          if (c->full()) co_await c->progress.wait();
          c->reader_parsing = true;
          continue;
        }
        text_step step = protocol.parse(in.view());
        if (step.what == text_step::kind::need_more) break;
        const std::size_t consumed = std::min(step.consumed, in.size());
        in.consume(consumed);
        in.skip(step.discard);
        turn_bytes += consumed;
        const std::uint64_t seq = c->next_seq++;
        c->fifo.emplace_back();
        c->fifo.back().bytes = consumed;
        c->fifo_bytes += consumed;
        switch (step.what) {
          case text_step::kind::close:
            closing = true;
            [[fallthrough]];
          case text_step::kind::reply:
            c->fifo.back().reply = std::move(step.reply);
            c->finish(seq);
            break;
          case text_step::kind::call:
            c->start(step.order == access::write ? c->open_writes : c->open_reads, seq);
            ++c->calls_running;
            asio::co_spawn(ex, run_call(c, seq, step.order, std::move(step.call)), asio::detached);
            break;
          case text_step::kind::start: {
            auto& open = step.order == access::write ? c->open_writes : c->open_reads;
            auto& other = step.order == access::write ? c->open_reads : c->open_writes;
            c->start(open, seq);
            ++c->calls_running;
            if (c->first_open(other) < seq) {
              asio::co_spawn(ex, start_when_allowed(c, seq, step.order, std::move(step.start)),
                             asio::detached);
            } else {
              start_request(c, seq, step.start);  // the common case: nothing to wait for
            }
            break;
          }
          case text_step::kind::need_more:
            break;
        }
      }
      c->reader_parsing = false;
      if (closing || c->broken) break;
      c->send_ready();
      const std::size_t n = co_await in.read_some(socket);
      if (n == 0) break;
      protocol.count_bytes_read(n);
    }
  } catch (const std::exception& e) {
    base::log(base::log_level::warn, "session ended: ", e.what());
  }
  // Let the writer finish what is queued, and every running request end: they reference
  // the protocol, which lives in the caller's frame.
  c->reader_parsing = false;  // also when the loop ended by an exception
  c->reader_done = true;
  c->writer_wake.notify_all();
  while (!c->writer_done || c->calls_running > 0) co_await c->progress.wait();
}

}  // namespace net
