#include "net/service.h"

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
