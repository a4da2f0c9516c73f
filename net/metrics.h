// Per-node counters and latency histograms for /metrics (Prometheus text format) and for
// the memcached `stats` command. Not replicated: each node counts what it served.
// Runs on the io_context thread only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace kv {
struct store_stats;
}

namespace net {

struct node_status;

enum class door : std::uint8_t { memcached = 0, cs733 = 1, http = 2 };
inline constexpr std::size_t door_count = 3;
std::string_view to_string(door d);

// A cumulative histogram with fixed bucket bounds (seconds), Prometheus style.
class latency_histogram {
 public:
  static constexpr std::array<double, 14> bounds_s = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0};
  void observe(std::chrono::nanoseconds latency);
  // count of observations <= bounds_s[i] (cumulative), i < bounds_s.size()
  std::uint64_t cumulative(std::size_t i) const;
  std::uint64_t count() const { return count_; }
  double sum_s() const { return sum_s_; }

 private:
  std::array<std::uint64_t, bounds_s.size()> buckets_{};  // non-cumulative
  std::uint64_t count_ = 0;
  double sum_s_ = 0;
};

// memcached-style read counters (write counters live in kv::store_stats).
struct read_counters {
  std::uint64_t cmd_get = 0;  // keys requested by get/gets/gat/gats
  std::uint64_t get_hits = 0;
  std::uint64_t get_misses = 0;
  std::uint64_t get_expired = 0;  // misses of an item past its expiry (memcached's meaning)
  std::uint64_t get_flushed = 0;  // misses of an item invalidated by flush_all
  std::uint64_t bytes_read = 0;   // bytes received from clients
  std::uint64_t bytes_written = 0;
};

class metrics {
 public:
  // One request of `command` ("get", "set", "GET /v1/kv", ...) served by door d, with its
  // outcome ok/failed and how long it took from parse to reply.
  void observe_request(door d, std::string_view command, bool ok, std::chrono::nanoseconds latency);
  void connection_opened(door d);
  void connection_closed(door d);
  void observe_fsync(std::chrono::nanoseconds latency);
  // A SIGHUP reload of certificates, token and users (app/server.cc): done or refused.
  void observe_reload(bool done) { ++(done ? reloads_done_ : reloads_refused_); }
  // When the certificate in use for `use` ("peer", "http") expires, in Unix seconds; set at
  // start and by every reload that was done.
  void set_certificate_expiry(const std::string& use, std::int64_t unix_seconds) {
    certificate_expiry_[use] = unix_seconds;
  }
  void clear_certificate_expiry(const std::string& use) { certificate_expiry_.erase(use); }

  std::uint64_t current_connections(door d) const;
  std::uint64_t total_connections(door d) const;
  read_counters& reads() { return reads_; }
  const read_counters& reads() const { return reads_; }

  // The whole exposition: these metrics plus gauges from the node and the store.
  std::string render_prometheus(const node_status& node, const kv::store_stats& store) const;

 private:
  struct request_series {
    std::uint64_t ok = 0;
    std::uint64_t failed = 0;
    latency_histogram latency;
  };
  std::array<std::map<std::string, request_series, std::less<>>, door_count> requests_;
  std::array<std::uint64_t, door_count> current_connections_{};
  std::array<std::uint64_t, door_count> total_connections_{};
  latency_histogram fsync_;
  read_counters reads_;
  std::uint64_t reloads_done_ = 0;
  std::uint64_t reloads_refused_ = 0;
  std::map<std::string, std::int64_t> certificate_expiry_;
};

}  // namespace net
