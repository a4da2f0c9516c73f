#include "net/service.h"

#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>

#include "kv/store.h"

namespace net {

kv::miss_kind read_view::why_missing(std::string_view key) const {
  return store_->why_missing(key, now_ms_);
}

std::optional<kv::item_view> read_view::find(std::string_view key) const {
  if (!store_) return std::nullopt;
  return store_->find(key, now_ms_);
}

std::vector<kv::key_info> read_view::list(std::string_view prefix, std::string_view after,
                                          std::size_t limit) const {
  if (!store_) return {};
  return store_->list(prefix, after, limit, now_ms_);
}

namespace {

// A callback-style call seen from a coroutine: `start(callback)` begins the call and the
// coroutine suspends until the callback. Not a coroutine itself: `start` (with whatever it
// captured, e.g. a command) is moved into the initiation's arguments at once, so a
// temporary passed to the caller is safe to co_await. The callback may run inside the
// node's drive loop, which a resumed coroutine must not re-enter: the resumption is posted.
// The handler is shared because the callbacks must be copyable and it is move-only.
template <typename T, typename Start>
boost::asio::awaitable<T> await_callback(Start start) {
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void(T)>(
      [](auto handler, Start start) {
        using handler_type = decltype(handler);
        auto parked = std::make_shared<handler_type>(std::move(handler));
        std::move(start)([parked](T answer) {
          const auto ex = boost::asio::get_associated_executor(*parked);
          boost::asio::post(ex, [parked, answer = std::move(answer)]() mutable {
            auto& handler = *parked;
            std::move(handler)(std::move(answer));
          });
        });
      },
      boost::asio::use_awaitable, std::move(start));
}

}  // namespace

boost::asio::awaitable<write_reply> kv_service::write(kv::command cmd) {
  return await_callback<write_reply>([this, cmd = std::move(cmd)](write_done done) mutable {
    start_write(std::move(cmd), std::move(done));
  });
}

boost::asio::awaitable<read_view> kv_service::linearizable_read() {
  const read_point p = co_await await_callback<read_point>(
      [this](std::function<void(read_point)> done) { start_read_barrier(std::move(done)); });
  if (p.error != service_error::none) co_return read_view(p.error, nullptr, 0);
  co_return read_view(service_error::none, &store(), p.now_ms);
}

void kv_service::start_linearizable_read(read_done done) {
  start_read_barrier([this, done = std::move(done)](read_point p) {
    if (p.error != service_error::none) return done(read_view(p.error, nullptr, 0));
    done(read_view(service_error::none, &store(), p.now_ms));
  });
}

const kv::store_stats& kv_service::store_stats() const {
  return store().stats();
}

const kv::store_options& kv_service::store_options() const {
  return store().options();
}

}  // namespace net
