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

boost::asio::awaitable<write_reply> kv_service::write(kv::command cmd) {
  // Not a coroutine: the command is moved into the initiation's arguments at once, so a
  // temporary passed here is safe to co_await. The handler is shared because write_done
  // must be copyable and the awaitable's handler is move-only.
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void(write_reply)>(
      [this](auto handler, kv::command c) {
        using handler_type = decltype(handler);
        auto parked = std::make_shared<handler_type>(std::move(handler));
        start_write(std::move(c), [parked](write_reply reply) {
          const auto ex = boost::asio::get_associated_executor(*parked);
          boost::asio::post(ex, [parked, reply = std::move(reply)]() mutable {
            std::move(*parked)(std::move(reply));
          });
        });
      },
      boost::asio::use_awaitable, std::move(cmd));
}

boost::asio::awaitable<read_view> kv_service::linearizable_read() {
  const read_point p = co_await read_barrier();
  if (p.error != service_error::none) co_return read_view(p.error, nullptr, 0);
  co_return read_view(service_error::none, &store(), p.now_ms);
}

const kv::store_stats& kv_service::store_stats() const {
  return store().stats();
}

const kv::store_options& kv_service::store_options() const {
  return store().options();
}

}  // namespace net
