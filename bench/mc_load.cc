// Closed-loop load generator for the memcached text door: N connections, each with exactly one
// request outstanding (send, wait for the whole reply, send the next), so the measured
// throughput is what N synchronous clients get and the latency is a true round trip.
// memaslap keeps a window of requests per connection, which measures pipelining instead.
//
//   mc_load --servers 127.0.0.1:11211[,host:port...] --connections 32 --seconds 10
//           --op set|get|mixed --value-bytes 100 --keys 100000 [--warmup-seconds 1]
//           [--get-percent 90] [--preload] [--depth 100]
//   mc_load --servers 127.0.0.1:11211 --op load --items 1000000 [--key-prefix item:]
//           [--depth 1000] [--window 1] [--value-bytes 100]
//
// --op stream: each connection streams `--depth` `set ... noreply` commands in one write, then
// `version`, and waits for the VERSION line (memcached's usual way to pipeline noreply writes
// and learn they were all processed). Any other reply is an error (a refused noreply set sends
// nothing, so the last batch of every connection is read back with one multi-get at the end
// and each of its keys must hit with the right size). Throughput counts the sets; latency is
// per batch.
//
// --op load: a bulk load of exactly --items keys "<--key-prefix><i>", i = 0..items-1, on ONE
// connection: batches of --depth `set ... noreply` each closed by `version`, --window batches
// sent before the oldest one's VERSION is awaited. Any reply but VERSION is an error. Prints
//   load_items=N load_window=W load_secs=S items_per_s=R loader_cpu_s=C
// (C: this process's own CPU, user + system: it shares the machine's cores with the servers).
// Nothing is read back here: the caller checks the items (bench/scale_bench.sh does, all of
// them, after a restart). --seconds, --warmup-seconds and --connections do not apply.
//
// Connections are spread round-robin over the servers. Every reply is checked: a set must
// answer STORED, a get must answer a VALUE block of the right size (or END for a miss, counted
// separately); anything else counts as an error, and the exit status is 1 if there were errors.
// Output: one summary line per run, e.g.
//   op=set conns=32 ops=41234 secs=10.00 ops_per_s=4123 p50_us=... p90_us=... p99_us=...
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>

namespace asio = boost::asio;
using asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::vector<std::pair<std::string, std::string>> servers;
  int connections = 32;
  double seconds = 10;
  double warmup_seconds = 1;
  std::string op = "set";
  std::size_t value_bytes = 100;
  std::uint64_t keys = 100000;
  int get_percent = 90;
  bool preload = false;
  int depth = 100;  // --op stream and load: sets per batch
  std::uint64_t items = 0;         // --op load
  std::string key_prefix = "item:";  // --op load
  int window = 1;                  // --op load: batches in flight
};

struct results {
  std::vector<std::uint32_t> latencies_us;  // only ops completed after the warm-up
  std::uint64_t errors = 0;
  std::uint64_t misses = 0;
  std::string first_error;
};

[[noreturn]] void usage(const char* why) {
  std::cerr << "mc_load: " << why
            << "\nusage: mc_load --servers host:port[,host:port] [--connections N] [--seconds S]"
               " [--warmup-seconds S] [--op set|get|mixed] [--value-bytes B] [--keys K]"
               " [--get-percent P] [--preload] [--depth N]\n"
               "       mc_load --servers host:port --op load --items N [--key-prefix P]"
               " [--depth N] [--window W] [--value-bytes B]\n";
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (a == "--servers") {
      std::string list = next();
      std::size_t start = 0;
      while (start <= list.size()) {
        std::size_t comma = list.find(',', start);
        std::string one =
            list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        std::size_t colon = one.rfind(':');
        if (colon == std::string::npos) usage("server must be host:port");
        o.servers.emplace_back(one.substr(0, colon), one.substr(colon + 1));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--connections") {
      o.connections = std::stoi(next());
    } else if (a == "--seconds") {
      o.seconds = std::stod(next());
    } else if (a == "--warmup-seconds") {
      o.warmup_seconds = std::stod(next());
    } else if (a == "--op") {
      o.op = next();
    } else if (a == "--value-bytes") {
      o.value_bytes = std::stoul(next());
    } else if (a == "--keys") {
      o.keys = std::stoull(next());
    } else if (a == "--get-percent") {
      o.get_percent = std::stoi(next());
    } else if (a == "--depth") {
      o.depth = std::stoi(next());
    } else if (a == "--items") {
      o.items = std::stoull(next());
    } else if (a == "--key-prefix") {
      o.key_prefix = next();
    } else if (a == "--window") {
      o.window = std::stoi(next());
    } else if (a == "--preload") {
      o.preload = true;
    } else {
      usage("unknown option");
    }
  }
  if (o.servers.empty()) usage("--servers is required");
  if (o.op != "set" && o.op != "get" && o.op != "mixed" && o.op != "stream" && o.op != "load") {
    usage("--op must be set, get, mixed, stream or load");
  }
  if (o.connections < 1 || o.keys < 1 || o.seconds <= 0 || o.depth < 1 || o.window < 1) {
    usage("bad number");
  }
  if (o.op == "load" && o.items < 1) usage("--op load needs --items N");
  return o;
}

std::string key_of(std::uint64_t k) {
  return "bench-" + std::to_string(k);
}

// One synchronous client. Returns when `stop_at` has passed (after its in-flight request).
asio::awaitable<void> client(tcp::endpoint ep, const options& o, int id,
                             clock_type::time_point measure_from, clock_type::time_point stop_at,
                             results& out, std::uint64_t preload_begin, std::uint64_t preload_end) {
  auto executor = co_await asio::this_coro::executor;
  tcp::socket sock(executor);
  co_await sock.async_connect(ep, asio::use_awaitable);
  sock.set_option(tcp::no_delay(true));
  const std::string value(o.value_bytes, 'x');
  std::mt19937_64 rng(0x5eed + static_cast<std::uint64_t>(id));
  std::uniform_int_distribution<std::uint64_t> pick(0, o.keys - 1);
  std::uniform_int_distribution<int> percent(0, 99);
  asio::streambuf in;
  std::string req;
  std::string line;

  auto fail = [&](std::string what) {
    ++out.errors;
    if (out.first_error.empty()) out.first_error = std::move(what);
  };
  auto read_line = [&]() -> asio::awaitable<std::string> {
    co_await asio::async_read_until(sock, in, "\r\n", asio::use_awaitable);
    std::istream is(&in);
    std::string l;
    std::getline(is, l);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    co_return l;
  };
  auto do_set = [&](std::uint64_t k) -> asio::awaitable<void> {
    req.clear();
    req += "set ";
    req += key_of(k);
    req += " 0 0 ";
    req += std::to_string(value.size());
    req += "\r\n";
    req += value;
    req += "\r\n";
    co_await asio::async_write(sock, asio::buffer(req), asio::use_awaitable);
    line = co_await read_line();
    if (line != "STORED") fail("set: " + line);
  };
  auto do_get = [&](std::uint64_t k) -> asio::awaitable<void> {
    req.clear();
    req += "get ";
    req += key_of(k);
    req += "\r\n";
    co_await asio::async_write(sock, asio::buffer(req), asio::use_awaitable);
    line = co_await read_line();
    if (line == "END") {
      ++out.misses;
      co_return;
    }
    if (line.rfind("VALUE ", 0) != 0) {
      fail("get: " + line);
      co_return;
    }
    std::size_t bytes = std::stoul(line.substr(line.rfind(' ') + 1));
    std::size_t need = bytes + 2 + 5;  // data, \r\n, END\r\n
    if (in.size() < need) {
      co_await asio::async_read(sock, in, asio::transfer_exactly(need - in.size()),
                                asio::use_awaitable);
    }
    in.consume(bytes + 2);
    line = co_await read_line();
    if (line != "END") fail("get trailer: " + line);
    if (bytes != o.value_bytes) fail("get: value of " + std::to_string(bytes) + " bytes");
  };

  // --op stream: one batch of `depth` noreply sets and a version; returns the batch's keys.
  std::uint64_t stream_seq = 0;
  std::vector<std::string> batch_keys;
  auto do_stream_batch = [&]() -> asio::awaitable<void> {
    req.clear();
    batch_keys.clear();
    for (int i = 0; i < o.depth; ++i) {
      std::string key =
          "stream-" + std::to_string(id) + "-" + std::to_string(stream_seq++ % o.keys);
      req += "set ";
      req += key;
      req += " 0 0 ";
      req += std::to_string(value.size());
      req += " noreply\r\n";
      req += value;
      req += "\r\n";
      batch_keys.push_back(std::move(key));
    }
    req += "version\r\n";
    co_await asio::async_write(sock, asio::buffer(req), asio::use_awaitable);
    line = co_await read_line();
    if (line.rfind("VERSION ", 0) != 0) fail("stream: " + line);
  };
  // Reads back the last batch: every key must hit with the value's size.
  auto verify_stream_batch = [&]() -> asio::awaitable<void> {
    req = "get";
    for (auto& k : batch_keys) req += " " + k;
    req += "\r\n";
    co_await asio::async_write(sock, asio::buffer(req), asio::use_awaitable);
    std::size_t hits = 0;
    for (;;) {
      line = co_await read_line();
      if (line == "END") break;
      if (line.rfind("VALUE ", 0) != 0) {
        fail("stream verify: " + line);
        co_return;
      }
      std::size_t bytes = std::stoul(line.substr(line.rfind(' ') + 1));
      if (in.size() < bytes + 2) {
        co_await asio::async_read(sock, in, asio::transfer_exactly(bytes + 2 - in.size()),
                                  asio::use_awaitable);
      }
      in.consume(bytes + 2);
      if (bytes != o.value_bytes)
        fail("stream verify: value of " + std::to_string(bytes) + " bytes");
      ++hits;
    }
    if (hits != batch_keys.size()) {
      fail("stream verify: " + std::to_string(batch_keys.size() - hits) + " of the last batch's " +
           std::to_string(batch_keys.size()) + " keys missing");
    }
  };

  try {
    for (std::uint64_t k = preload_begin; k < preload_end; ++k) co_await do_set(k);
    if (o.op == "stream") {
      while (clock_type::now() < stop_at) {
        auto start = clock_type::now();
        co_await do_stream_batch();
        auto end = clock_type::now();
        if (start >= measure_from && end <= stop_at) {
          out.latencies_us.push_back(static_cast<std::uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(end - start).count()));
        }
      }
      if (!batch_keys.empty()) co_await verify_stream_batch();
    } else {
      while (clock_type::now() < stop_at) {
        std::uint64_t k = pick(rng);
        bool is_get = o.op == "get" || (o.op == "mixed" && percent(rng) < o.get_percent);
        auto start = clock_type::now();
        if (is_get) {
          co_await do_get(k);
        } else {
          co_await do_set(k);
        }
        auto end = clock_type::now();
        if (start >= measure_from && end <= stop_at) {
          out.latencies_us.push_back(static_cast<std::uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(end - start).count()));
        }
      }
    }
  } catch (const std::exception& e) {
    fail(std::string("connection: ") + e.what());
  }
}

double percentile_us(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  std::size_t i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

// --op load (see the top of the file). Returns the number of errors; the first in `first_error`.
asio::awaitable<std::uint64_t> bulk_load(tcp::endpoint ep, const options& o,
                                         std::string& first_error) {
  auto executor = co_await asio::this_coro::executor;
  tcp::socket sock(executor);
  co_await sock.async_connect(ep, asio::use_awaitable);
  sock.set_option(tcp::no_delay(true));
  const std::string value(o.value_bytes, 'v');
  const std::string size_and_flags = " 0 0 " + std::to_string(o.value_bytes) + " noreply\r\n";
  std::string req;
  asio::streambuf in;
  std::uint64_t errors = 0;
  int in_flight = 0;
  auto await_version = [&]() -> asio::awaitable<void> {
    co_await asio::async_read_until(sock, in, "\r\n", asio::use_awaitable);
    std::istream is(&in);
    std::string line;
    std::getline(is, line);
    if (line.rfind("VERSION ", 0) != 0) {
      if (errors++ == 0) first_error = "load: " + line;
    }
    --in_flight;
  };
  char digits[24];
  for (std::uint64_t first = 0; first < o.items; first += static_cast<std::uint64_t>(o.depth)) {
    const std::uint64_t end = std::min(o.items, first + static_cast<std::uint64_t>(o.depth));
    req.clear();
    for (std::uint64_t i = first; i < end; ++i) {
      req += "set ";
      req += o.key_prefix;
      auto [p, ec] = std::to_chars(digits, digits + sizeof digits, i);
      req.append(digits, p);
      req += size_and_flags;
      req += value;
      req += "\r\n";
    }
    req += "version\r\n";
    co_await asio::async_write(sock, asio::buffer(req), asio::use_awaitable);
    ++in_flight;
    while (in_flight >= o.window) co_await await_version();
  }
  while (in_flight > 0) co_await await_version();
  co_return errors;
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse(argc, argv);
  asio::io_context io(1);
  tcp::resolver resolver(io);
  std::vector<tcp::endpoint> endpoints;
  for (auto& [host, port] : o.servers) {
    endpoints.push_back(*resolver.resolve(host, port).begin());
  }

  if (o.op == "load") {
    std::uint64_t errors = 0;
    std::string first_error;
    const auto start = clock_type::now();
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          errors = co_await bulk_load(endpoints.front(), o, first_error);
        },
        [&](std::exception_ptr e) {
          if (!e) return;
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& x) {
            ++errors;
            first_error = std::string("connection: ") + x.what();
          }
        });
    io.run();
    const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
    rusage self{};
    ::getrusage(RUSAGE_SELF, &self);
    const double cpu = static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
                       static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
    std::printf("load_items=%llu load_window=%d load_secs=%.2f items_per_s=%.0f loader_cpu_s=%.2f\n",
                static_cast<unsigned long long>(o.items), o.window, secs,
                static_cast<double>(o.items) / secs, cpu);
    if (errors) {
      std::fprintf(stderr, "mc_load: %llu errors, first: %s\n",
                   static_cast<unsigned long long>(errors), first_error.c_str());
      return 1;
    }
    return 0;
  }

  // Preload every key once (so gets hit), split over the connections, before the clock starts.
  if (o.preload) {
    std::vector<results> pre(static_cast<std::size_t>(o.connections));
    auto never = clock_type::time_point::min();
    std::uint64_t per = (o.keys + static_cast<std::uint64_t>(o.connections) - 1) /
                        static_cast<std::uint64_t>(o.connections);
    for (int c = 0; c < o.connections; ++c) {
      std::uint64_t begin = std::min<std::uint64_t>(o.keys, per * static_cast<std::uint64_t>(c));
      std::uint64_t end = std::min<std::uint64_t>(o.keys, begin + per);
      asio::co_spawn(io,
                     client(endpoints[static_cast<std::size_t>(c) % endpoints.size()], o, c, never,
                            never, pre[static_cast<std::size_t>(c)], begin, end),
                     asio::detached);
    }
    io.run();
    io.restart();
    for (auto& r : pre) {
      if (r.errors) {
        std::cerr << "mc_load: preload failed: " << r.first_error << "\n";
        return 1;
      }
    }
  }

  std::vector<results> per_conn(static_cast<std::size_t>(o.connections));
  auto t0 = clock_type::now();
  auto measure_from = t0 + std::chrono::duration_cast<clock_type::duration>(
                               std::chrono::duration<double>(o.warmup_seconds));
  auto stop_at = measure_from + std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double>(o.seconds));
  for (int c = 0; c < o.connections; ++c) {
    asio::co_spawn(io,
                   client(endpoints[static_cast<std::size_t>(c) % endpoints.size()], o, c,
                          measure_from, stop_at, per_conn[static_cast<std::size_t>(c)], 0, 0),
                   asio::detached);
  }
  io.run();

  std::vector<std::uint32_t> all;
  std::uint64_t errors = 0, misses = 0;
  std::string first_error;
  for (auto& r : per_conn) {
    all.insert(all.end(), r.latencies_us.begin(), r.latencies_us.end());
    errors += r.errors;
    misses += r.misses;
    if (first_error.empty()) first_error = r.first_error;
  }
  std::sort(all.begin(), all.end());
  // In stream mode each latency sample is one batch of `depth` sets.
  const double per_sample = o.op == "stream" ? o.depth : 1;
  double ops_per_s = static_cast<double>(all.size()) * per_sample / o.seconds;
  std::printf(
      "op=%s conns=%d value_bytes=%zu ops=%zu secs=%.2f ops_per_s=%.0f p50_us=%.0f p90_us=%.0f "
      "p99_us=%.0f p999_us=%.0f max_us=%.0f misses=%llu errors=%llu\n",
      o.op.c_str(), o.connections, o.value_bytes,
      static_cast<std::size_t>(static_cast<double>(all.size()) * per_sample), o.seconds, ops_per_s,
      percentile_us(all, 0.50), percentile_us(all, 0.90), percentile_us(all, 0.99),
      percentile_us(all, 0.999), all.empty() ? 0.0 : static_cast<double>(all.back()),
      static_cast<unsigned long long>(misses), static_cast<unsigned long long>(errors));
  if (errors) {
    std::fprintf(stderr, "mc_load: %llu errors, first: %s\n",
                 static_cast<unsigned long long>(errors), first_error.c_str());
    return 1;
  }
  return 0;
}
