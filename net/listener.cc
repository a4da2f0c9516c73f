#include "net/listener.h"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <list>
#include <tuple>

#include "base/log.h"

namespace net {

namespace asio = boost::asio;
using asio::ip::tcp;

struct listener::state {
  state(asio::io_context& io_in, listener_options options_in, net::metrics* metrics_in, handler h)
      : io(io_in),
        acceptor(io_in),
        options(std::move(options_in)),
        metrics(metrics_in),
        on_connection(std::move(h)) {}

  asio::io_context& io;
  tcp::acceptor acceptor;
  listener_options options;
  net::metrics* metrics;
  handler on_connection;
  std::list<tcp::socket> sockets;  // open connections; std::list keeps iterators stable
  bool stopped = false;
};

namespace {

constexpr auto wait_token = asio::as_tuple(asio::use_awaitable);

// Turns away a connection over the limit: sends the door's refusal, then reads and drops
// what the client sends (bounded in bytes and time) before closing, so that a client that
// had already sent a request (HTTP) reads the refusal instead of a connection reset.
// Refused connections are not counted: the time bound is what limits them.
asio::awaitable<void> refuse(std::shared_ptr<tcp::socket> socket, std::string text) {
  asio::steady_timer deadline(socket->get_executor(), std::chrono::seconds(1));
  deadline.async_wait([socket](const boost::system::error_code& ec) {
    boost::system::error_code ignored;
    if (!ec) socket->close(ignored);  // fails the pending write or read
  });
  boost::system::error_code ec;
  if (!text.empty())
    std::tie(ec, std::ignore) = co_await asio::async_write(*socket, asio::buffer(text), wait_token);
  if (!ec && socket->is_open()) {
    socket->shutdown(tcp::socket::shutdown_send, ec);
    std::array<char, 4096> sink;
    std::size_t drained = 0;
    while (drained < 64 * 1024 && socket->is_open()) {
      auto [rec, n] = co_await socket->async_read_some(asio::buffer(sink), wait_token);
      if (rec) break;
      drained += n;
    }
  }
  deadline.cancel();
  socket->close(ec);
}

void start_connection(const std::shared_ptr<listener::state>& s, tcp::socket socket) {
  boost::system::error_code ec;
  // Replies are small and answer a request: send them now rather than wait for more.
  socket.set_option(tcp::no_delay(true), ec);
  auto it = s->sockets.insert(s->sockets.end(), std::move(socket));
  if (s->metrics) s->metrics->connection_opened(s->options.which);
  asio::co_spawn(
      s->io, [s, it]() -> asio::awaitable<void> { co_await s->on_connection(*it); },
      [s, it](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            base::log(base::log_level::warn, to_string(s->options.which),
                      " session ended: ", ex.what());
          }
        }
        boost::system::error_code ignored;
        it->close(ignored);
        s->sockets.erase(it);
        if (s->metrics) s->metrics->connection_closed(s->options.which);
      });
}

asio::awaitable<void> accept_loop(std::shared_ptr<listener::state> s) {
  while (!s->stopped) {
    auto [ec, socket] = co_await s->acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (s->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Typically EMFILE/ENFILE: the connection stays queued in the kernel. Back off a
      // little so a full descriptor table does not turn this loop into a busy spin.
      base::log(base::log_level::warn, to_string(s->options.which),
                " accept failed: ", ec.message());
      asio::steady_timer pause(s->io, std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    if (s->sockets.size() >= s->options.max_connections) {
      asio::co_spawn(s->io,
                     refuse(std::make_shared<tcp::socket>(std::move(socket)), s->options.refusal),
                     asio::detached);
      continue;
    }
    start_connection(s, std::move(socket));
  }
}

}  // namespace

listener::listener(asio::io_context& io, listener_options options, net::metrics* metrics,
                   handler on_connection)
    : state_(std::make_shared<state>(io, std::move(options), metrics, std::move(on_connection))) {}

listener::~listener() {
  stop();
}

void listener::listen(const std::string& host, std::uint16_t port) {
  tcp::endpoint endpoint(asio::ip::make_address(host), port);
  state_->acceptor.open(endpoint.protocol());
  state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  state_->acceptor.bind(endpoint);
  state_->acceptor.listen(asio::socket_base::max_listen_connections);
}

std::uint16_t listener::port() const {
  return state_->acceptor.local_endpoint().port();
}

void listener::start() {
  asio::co_spawn(state_->io, accept_loop(state_), asio::detached);
}

void listener::stop() {
  if (state_->stopped) return;
  state_->stopped = true;
  boost::system::error_code ec;
  state_->acceptor.close(ec);
  // Shutting a socket down fails its pending read or write, so each session ends; the
  // session's completion handler then erases it from the list.
  for (auto& socket : state_->sockets) {
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.cancel(ec);
  }
}

std::size_t listener::connections() const {
  return state_->sockets.size();
}

void input_buffer::consume(std::size_t n) {
  pos_ += n;
  if (pos_ >= data_.size()) {
    pos_ = 0;
    data_.clear();
    // Drained. A busy connection keeps a small buffer so that the next request costs no
    // allocation; a large one (a big value went through) is given back at once.
    if (data_.capacity() > retained_bytes) std::string().swap(data_);
  }
}

void input_buffer::skip(std::size_t n) {
  skip_ += n;
  const std::size_t now = std::min(skip_, size());
  skip_ -= now;
  consume(now);
}

asio::awaitable<std::size_t> input_buffer::read_some(tcp::socket& socket, std::size_t max_read) {
  if (pos_ > 0) {
    // Move the unparsed tail to the front before growing, so the buffer stays bounded by
    // what one request needs.
    data_.erase(0, pos_);
    pos_ = 0;
  }
  if (const std::size_t room = data_.capacity() - data_.size(); room >= 1024) {
    // A connection in use has a buffer with room: read into it directly. Asio first tries
    // the read at once (a pipelining client's next requests are often there already) and
    // otherwise waits on the registration the socket already has. Waiting for readability
    // first, as below, costs an epoll_ctl to re-arm the descriptor on every request.
    const std::size_t old_size = data_.size();
    const std::size_t wanted = std::min(room, max_read);
    data_.resize(old_size + wanted);
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(data_.data() + old_size, wanted),
                                                   asio::as_tuple(asio::use_awaitable));
    data_.resize(old_size + n);
    if (ec) co_return 0;
    const std::size_t more = n == wanted ? drain(socket, max_read - n) : 0;
    if (skip_ > 0) skip(0);  // drop what arrived of a block being discarded
    co_return n + more;
  }
  for (;;) {
    auto [ec] =
        co_await socket.async_wait(tcp::socket::wait_read, asio::as_tuple(asio::use_awaitable));
    if (ec) co_return 0;
    // Room left in the buffer is read into directly; only a full (or never allocated)
    // buffer asks the kernel how much is waiting, so an idle connection that never sent
    // anything holds no buffer at all.
    std::size_t wanted = data_.capacity() - data_.size();
    if (wanted < 1024) {
      boost::system::error_code avail_ec;
      wanted = socket.available(avail_ec);
      if (avail_ec) co_return 0;
      wanted = std::clamp<std::size_t>(wanted, 4096, max_read);
    }
    wanted = std::min(wanted, max_read);
    const std::size_t old_size = data_.size();
    data_.resize(old_size + wanted);
    boost::system::error_code read_ec;
    if (!socket.non_blocking()) socket.non_blocking(true, read_ec);
    const std::size_t n = socket.read_some(asio::buffer(data_.data() + old_size, wanted), read_ec);
    data_.resize(old_size + n);
    if (read_ec == asio::error::would_block || read_ec == asio::error::try_again) continue;
    if (read_ec) co_return 0;
    if (skip_ > 0) skip(0);  // drop what arrived of a block being discarded
    co_return n;             // sized by what the kernel had: nothing to drain
  }
}

// A read that filled the buffer's room may have left bytes in the socket. They are taken
// now, without waiting: resuming the session after another asynchronous read goes through
// the loop's queue, where the replica's turn runs in between and proposes the requests
// parsed so far. A pipelining client's round, sent in one write, was committed in two
// journal records instead of one that way (a stream of 100 sets arrived as 13,499 bytes,
// the room of the buffer, and then 310: bench/README-profile.md, "A round in one read").
std::size_t input_buffer::drain(tcp::socket& socket, std::size_t max_read) {
  boost::system::error_code ec;
  if (!socket.non_blocking()) socket.non_blocking(true, ec);
  if (ec) return 0;
  std::size_t total = 0;
  while (total < max_read) {
    // First up to the retained size, then doubling: a round larger than that is released
    // once parsed (consume()), and the next one is read in one piece of the size the
    // kernel reports (the wait path of read_some()).
    const std::size_t old_size = data_.size();
    const std::size_t target = old_size < retained_bytes ? retained_bytes : 2 * old_size;
    const std::size_t wanted = std::min(target - old_size, max_read - total);
    data_.resize(old_size + wanted);
    const std::size_t n = socket.read_some(asio::buffer(data_.data() + old_size, wanted), ec);
    data_.resize(old_size + n);
    // An error (the peer closed, or reset) is for the next read to report, after the
    // requests already read have been parsed.
    if (ec) break;
    total += n;
    if (n < wanted) break;
  }
  return total;
}

asio::awaitable<bool> write_all(tcp::socket& socket, std::string& out) {
  if (out.empty()) co_return true;
  auto [ec, n] =
      co_await asio::async_write(socket, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
  (void)n;
  out.clear();
  if (out.capacity() > 64 * 1024) std::string().swap(out);
  co_return !ec;
}

}  // namespace net
