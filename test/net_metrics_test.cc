// net::metrics: histogram arithmetic, connection counters, and the Prometheus text
// exposition checked by a small parser of the text format (0.0.4).
#define BOOST_TEST_MODULE net_metrics
#include <boost/test/unit_test.hpp>

#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kv/store.h"
#include "net/metrics.h"
#include "net/service.h"

using namespace std::chrono_literals;

namespace {

struct sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct exposition {
  std::map<std::string, std::string> type;  // family -> counter/gauge/histogram
  std::map<std::string, std::string> help;
  std::vector<sample> samples;

  std::optional<double> find(const std::string& name,
                             const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& s : samples) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : labels) {
        auto it = s.labels.find(k);
        if (it == s.labels.end() || it->second != v) match = false;
      }
      if (match) return s.value;
    }
    return std::nullopt;
  }
};

bool valid_name(const std::string& n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// The family a sample belongs to: histogram series carry a suffix.
std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (std::string suffix : {"_bucket", "_sum", "_count"}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      std::string base = name.substr(0, name.size() - suffix.size());
      auto it = types.find(base);
      if (it != types.end() && it->second == "histogram") return base;
    }
  }
  return name;
}

// Parses the text format strictly; any violation fails the current test.
exposition parse(const std::string& text) {
  exposition e;
  BOOST_REQUIRE(!text.empty());
  BOOST_REQUIRE_EQUAL(text.back(), '\n');
  std::istringstream in(text);
  std::string line;
  std::set<std::string> sample_keys;
  while (std::getline(in, line)) {
    BOOST_REQUIRE_MESSAGE(!line.empty(), "empty line in exposition");
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const bool is_type = line[2] == 'T';
      const std::string rest = line.substr(7);
      const auto space = rest.find(' ');
      BOOST_REQUIRE(space != std::string::npos);
      const std::string name = rest.substr(0, space);
      BOOST_REQUIRE_MESSAGE(valid_name(name), "bad metric name " << name);
      const std::string arg = rest.substr(space + 1);
      if (is_type) {
        BOOST_REQUIRE_MESSAGE(!e.type.count(name), "second TYPE for " << name);
        BOOST_REQUIRE_MESSAGE(arg == "counter" || arg == "gauge" || arg == "histogram",
                              "bad type " << arg);
        e.type[name] = arg;
      } else {
        BOOST_REQUIRE(!arg.empty());
        e.help[name] = arg;
      }
      continue;
    }
    BOOST_REQUIRE_MESSAGE(line[0] != '#', "unexpected comment " << line);
    sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    BOOST_REQUIRE_MESSAGE(valid_name(s.name), "bad sample name in " << line);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (line.at(i) != '}') {
        std::size_t eq = line.find('=', i);
        BOOST_REQUIRE(eq != std::string::npos);
        const std::string key = line.substr(i, eq - i);
        BOOST_REQUIRE_MESSAGE(valid_name(key), "bad label name in " << line);
        BOOST_REQUIRE_EQUAL(line.at(eq + 1), '"');
        std::string value;
        std::size_t j = eq + 2;
        for (;; ++j) {
          const char c = line.at(j);
          if (c == '"') break;
          if (c == '\\') {
            const char n = line.at(++j);
            BOOST_REQUIRE_MESSAGE(n == '\\' || n == '"' || n == 'n', "bad escape in " << line);
            value += n == 'n' ? '\n' : n;
          } else {
            value += c;
          }
        }
        s.labels[key] = value;
        i = j + 1;
        if (line.at(i) == ',') ++i;
      }
      ++i;
    }
    BOOST_REQUIRE_EQUAL(line.at(i), ' ');
    const std::string number = line.substr(i + 1);
    if (number == "+Inf") {
      s.value = 1e308 * 10;
    } else {
      std::size_t used = 0;
      s.value = std::stod(number, &used);
      BOOST_REQUIRE_MESSAGE(used == number.size(), "trailing garbage in " << line);
    }
    const std::string fam = family_of(s.name, e.type);
    BOOST_REQUIRE_MESSAGE(e.type.count(fam), "sample before its TYPE: " << line);
    BOOST_REQUIRE_MESSAGE(e.help.count(fam), "sample without HELP: " << line);
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) key += "|" + k + "=" + v;
    BOOST_REQUIRE_MESSAGE(sample_keys.insert(key).second, "duplicate series " << line);
    if (e.type[fam] == "counter") {
      BOOST_CHECK_MESSAGE(s.name.ends_with("_total"), "counter without _total: " << s.name);
    }
    e.samples.push_back(std::move(s));
  }
  return e;
}

// Every histogram's buckets are cumulative, end with +Inf == _count.
void check_histograms(const exposition& e) {
  for (const auto& [fam, type] : e.type) {
    if (type != "histogram") continue;
    std::map<std::string, std::vector<std::pair<double, double>>> buckets;  // labels -> (le, v)
    std::map<std::string, double> counts;
    for (const auto& s : e.samples) {
      std::string series;
      for (const auto& [k, v] : s.labels)
        if (k != "le") series += k + "=" + v + ",";
      if (s.name == fam + "_bucket") {
        const std::string le = s.labels.at("le");
        buckets[series].push_back({le == "+Inf" ? 1e308 * 10 : std::stod(le), s.value});
      } else if (s.name == fam + "_count") {
        counts[series] = s.value;
      }
    }
    BOOST_CHECK_EQUAL(buckets.size(), counts.size());
    for (const auto& [series, b] : buckets) {
      BOOST_REQUIRE(!b.empty());
      for (std::size_t i = 1; i < b.size(); ++i) {
        BOOST_CHECK_MESSAGE(b[i].first > b[i - 1].first, "le not increasing in " << fam);
        BOOST_CHECK_MESSAGE(b[i].second >= b[i - 1].second, "bucket not cumulative in " << fam);
      }
      BOOST_CHECK_MESSAGE(b.back().first > 1e308, "last bucket is not +Inf in " << fam);
      BOOST_CHECK_EQUAL(b.back().second, counts.at(series));
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(histogram_buckets_are_cumulative_and_inclusive) {
  net::latency_histogram h;
  h.observe(50us);     // <= 0.0001
  h.observe(100us);    // exactly on the first bound: counts in it (le is "<=")
  h.observe(3ms);      // <= 0.005
  h.observe(10s);      // above every bound: only in +Inf
  BOOST_CHECK_EQUAL(h.count(), 4u);
  BOOST_CHECK_EQUAL(h.cumulative(0), 2u);
  BOOST_CHECK_EQUAL(h.cumulative(4), 2u);  // 0.0025
  BOOST_CHECK_EQUAL(h.cumulative(5), 3u);  // 0.005
  BOOST_CHECK_EQUAL(h.cumulative(net::latency_histogram::bounds_s.size() - 1), 3u);
  BOOST_CHECK_CLOSE(h.sum_s(), 0.00005 + 0.0001 + 0.003 + 10.0, 1e-6);
}

BOOST_AUTO_TEST_CASE(connection_counters_track_open_and_total) {
  net::metrics m;
  m.connection_opened(net::door::http);
  m.connection_opened(net::door::http);
  m.connection_opened(net::door::memcached);
  m.connection_closed(net::door::http);
  BOOST_CHECK_EQUAL(m.current_connections(net::door::http), 1u);
  BOOST_CHECK_EQUAL(m.total_connections(net::door::http), 2u);
  BOOST_CHECK_EQUAL(m.current_connections(net::door::memcached), 1u);
  BOOST_CHECK_EQUAL(m.current_connections(net::door::cs733), 0u);
  m.connection_closed(net::door::cs733);  // never below zero
  BOOST_CHECK_EQUAL(m.current_connections(net::door::cs733), 0u);
}

BOOST_AUTO_TEST_CASE(door_names) {
  BOOST_CHECK_EQUAL(net::to_string(net::door::memcached), "memcached");
  BOOST_CHECK_EQUAL(net::to_string(net::door::cs733), "cs733");
  BOOST_CHECK_EQUAL(net::to_string(net::door::http), "http");
}

BOOST_AUTO_TEST_CASE(exposition_parses_and_carries_every_value) {
  net::metrics m;
  m.observe_request(net::door::http, "GET /v1/kv", true, 200us);
  m.observe_request(net::door::http, "GET /v1/kv", false, 2ms);
  m.observe_request(net::door::memcached, "set", true, 700us);
  m.observe_request(net::door::cs733, "odd \"name\"\\x", true, 1us);
  m.connection_opened(net::door::http);
  m.observe_fsync(3ms);
  m.observe_fsync(30ms);
  m.reads().get_hits = 7;

  net::node_status node;
  node.id = 2;
  node.role = "leader";
  node.term = 9;
  node.leader_id = 2;
  node.commit_index = 41;
  node.applied_index = 40;
  node.last_log_index = 42;
  node.leader_changes = 3;
  node.proposals_ok = 11;
  node.proposals_failed = 1;
  kv::store_stats store;
  store.curr_items = 5;
  store.bytes = 1234;

  const exposition e = parse(m.render_prometheus(node, store));
  check_histograms(e);

  BOOST_CHECK_EQUAL(e.find("raftkv_term").value_or(-1), 9);
  BOOST_CHECK_EQUAL(e.find("raftkv_role", {{"role", "leader"}}).value_or(-1), 1);
  BOOST_CHECK_EQUAL(e.find("raftkv_role", {{"role", "follower"}}).value_or(-1), 0);
  BOOST_CHECK_EQUAL(e.find("raftkv_leader_changes_total").value_or(-1), 3);
  BOOST_CHECK_EQUAL(e.find("raftkv_commit_index").value_or(-1), 41);
  BOOST_CHECK_EQUAL(e.find("raftkv_applied_index").value_or(-1), 40);
  BOOST_CHECK_EQUAL(e.find("raftkv_last_log_index").value_or(-1), 42);
  BOOST_CHECK_EQUAL(e.find("raftkv_proposals_total", {{"outcome", "ok"}}).value_or(-1), 11);
  BOOST_CHECK_EQUAL(e.find("raftkv_proposals_total", {{"outcome", "failed"}}).value_or(-1), 1);
  BOOST_CHECK_EQUAL(e.find("raftkv_items").value_or(-1), 5);
  BOOST_CHECK_EQUAL(e.find("raftkv_bytes").value_or(-1), 1234);
  BOOST_CHECK_EQUAL(e.find("raftkv_get_hits_total").value_or(-1), 7);
  BOOST_CHECK_EQUAL(
      e.find("raftkv_requests_total",
             {{"door", "http"}, {"command", "GET /v1/kv"}, {"outcome", "ok"}})
          .value_or(-1),
      1);
  BOOST_CHECK_EQUAL(
      e.find("raftkv_requests_total",
             {{"door", "http"}, {"command", "GET /v1/kv"}, {"outcome", "failed"}})
          .value_or(-1),
      1);
  // The escaped label value reads back as the original text.
  BOOST_CHECK(e.find("raftkv_requests_total", {{"command", "odd \"name\"\\x"}}).has_value());
  BOOST_CHECK_EQUAL(e.find("raftkv_request_duration_seconds_count",
                           {{"door", "http"}, {"command", "GET /v1/kv"}})
                        .value_or(-1),
                    2);
  BOOST_CHECK_EQUAL(e.find("raftkv_request_duration_seconds_bucket",
                           {{"door", "http"}, {"command", "GET /v1/kv"}, {"le", "0.00025"}})
                        .value_or(-1),
                    1);
  BOOST_CHECK_EQUAL(e.find("raftkv_fsync_duration_seconds_count").value_or(-1), 2);
  BOOST_CHECK_EQUAL(e.find("raftkv_fsync_duration_seconds_bucket", {{"le", "0.005"}}).value_or(-1),
                    1);
  BOOST_CHECK_EQUAL(e.find("raftkv_connections", {{"door", "http"}}).value_or(-1), 1);
  BOOST_CHECK_EQUAL(e.find("raftkv_connections_total", {{"door", "http"}}).value_or(-1), 1);
  BOOST_CHECK_EQUAL(e.type.at("raftkv_request_duration_seconds"), "histogram");
}

BOOST_AUTO_TEST_CASE(reloads_and_certificate_expiry_are_exposed) {
  net::metrics m;
  const exposition none = parse(m.render_prometheus(net::node_status{}, kv::store_stats{}));
  BOOST_CHECK_EQUAL(none.find("raftkv_reloads_total", {{"result", "done"}}).value_or(-1), 0);
  BOOST_CHECK_EQUAL(none.find("raftkv_reloads_total", {{"result", "refused"}}).value_or(-1), 0);
  // Without TLS there is no certificate, and no family for one.
  BOOST_CHECK(!none.type.contains("raftkv_tls_certificate_expiry_timestamp_seconds"));

  m.observe_reload(true);
  m.observe_reload(false);
  m.observe_reload(true);
  m.set_certificate_expiry("peer", 1800000000);
  m.set_certificate_expiry("http", 1700000000);
  m.set_certificate_expiry("http", 1900000000);  // a reload replaces it
  const exposition e = parse(m.render_prometheus(net::node_status{}, kv::store_stats{}));
  BOOST_CHECK_EQUAL(e.find("raftkv_reloads_total", {{"result", "done"}}).value_or(-1), 2);
  BOOST_CHECK_EQUAL(e.find("raftkv_reloads_total", {{"result", "refused"}}).value_or(-1), 1);
  BOOST_CHECK_EQUAL(
      e.find("raftkv_tls_certificate_expiry_timestamp_seconds", {{"use", "peer"}}).value_or(-1),
      1800000000);
  BOOST_CHECK_EQUAL(
      e.find("raftkv_tls_certificate_expiry_timestamp_seconds", {{"use", "http"}}).value_or(-1),
      1900000000);
  BOOST_CHECK_EQUAL(e.type.at("raftkv_tls_certificate_expiry_timestamp_seconds"), "gauge");
}

BOOST_AUTO_TEST_CASE(members_are_counted_by_role) {
  net::metrics m;
  net::node_status node;
  node.role = "leader";
  for (std::uint64_t id = 1; id <= 5; ++id) {
    net::member_status s;
    s.address.id = raft::node_id(id);
    s.voter = id <= 3;  // three voters, two learners
    node.members.push_back(s);
  }
  const exposition e = parse(m.render_prometheus(node, kv::store_stats{}));
  BOOST_CHECK_EQUAL(e.type.at("raftkv_members"), "gauge");
  BOOST_CHECK_EQUAL(e.find("raftkv_members", {{"role", "voter"}}).value_or(-1), 3);
  BOOST_CHECK_EQUAL(e.find("raftkv_members", {{"role", "learner"}}).value_or(-1), 2);
  // Both series are there even when there is no learner (a gauge at 0, not a missing series).
  node.members.resize(1);
  const exposition one = parse(m.render_prometheus(node, kv::store_stats{}));
  BOOST_CHECK_EQUAL(one.find("raftkv_members", {{"role", "voter"}}).value_or(-1), 1);
  BOOST_CHECK_EQUAL(one.find("raftkv_members", {{"role", "learner"}}).value_or(-1), 0);
  std::size_t series = 0;
  for (const auto& s : one.samples) series += s.name == "raftkv_members";
  BOOST_CHECK_EQUAL(series, 2u);
}
