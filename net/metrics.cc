// Per-node counters and the Prometheus text exposition (format 0.0.4).
//
// Names are raftkv_*; counters end in _total, histograms in _seconds with _bucket/_sum/
// _count series and a final le="+Inf" bucket equal to _count, as Prometheus requires.
#include "net/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "kv/store.h"
#include "net/service.h"

namespace net {

std::string_view to_string(door d) {
  switch (d) {
    case door::memcached:
      return "memcached";
    case door::cs733:
      return "cs733";
    case door::http:
      return "http";
  }
  return "unknown";
}

void latency_histogram::observe(std::chrono::nanoseconds latency) {
  const double s = std::max(0.0, std::chrono::duration<double>(latency).count());
  // Observations above the largest bound only count towards +Inf (count_).
  const auto it = std::lower_bound(bounds_s.begin(), bounds_s.end(), s);
  if (it != bounds_s.end()) ++buckets_[static_cast<std::size_t>(it - bounds_s.begin())];
  ++count_;
  sum_s_ += s;
}

std::uint64_t latency_histogram::cumulative(std::size_t i) const {
  std::uint64_t total = 0;
  for (std::size_t b = 0; b <= i && b < buckets_.size(); ++b) total += buckets_[b];
  return total;
}

void metrics::observe_request(door d, std::string_view command, bool ok,
                              std::chrono::nanoseconds latency) {
  auto& series_by_command = requests_[static_cast<std::size_t>(d)];
  auto it = series_by_command.find(command);
  if (it == series_by_command.end())
    it = series_by_command.emplace(std::string(command), request_series{}).first;
  if (ok) {
    ++it->second.ok;
  } else {
    ++it->second.failed;
  }
  it->second.latency.observe(latency);
}

void metrics::connection_opened(door d) {
  ++current_connections_[static_cast<std::size_t>(d)];
  ++total_connections_[static_cast<std::size_t>(d)];
}

void metrics::connection_closed(door d) {
  auto& current = current_connections_[static_cast<std::size_t>(d)];
  if (current > 0) --current;
}

void metrics::observe_fsync(std::chrono::nanoseconds latency) {
  fsync_.observe(latency);
}

std::uint64_t metrics::current_connections(door d) const {
  return current_connections_[static_cast<std::size_t>(d)];
}

std::uint64_t metrics::total_connections(door d) const {
  return total_connections_[static_cast<std::size_t>(d)];
}

namespace {

// Label values may hold any text (a command name); the exposition format escapes
// backslash, double quote and newline.
void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void append_number(std::string& out, std::uint64_t v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

void append_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

// labels: already formatted `k="v",k2="v2"` (may be empty).
template <typename Number>
void append_sample(std::string& out, std::string_view name, std::string_view labels, Number v) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  append_number(out, v);
  out += '\n';
}

template <typename Number>
void append_single(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, Number v) {
  append_header(out, name, type, help);
  append_sample(out, name, "", v);
}

// The _bucket/_sum/_count lines of one histogram series (header written by the caller).
void append_histogram(std::string& out, std::string_view name, std::string_view labels,
                      const latency_histogram& h) {
  const std::string bucket = std::string(name) + "_bucket";
  const std::string sep = labels.empty() ? "" : ",";
  for (std::size_t i = 0; i < latency_histogram::bounds_s.size(); ++i) {
    std::string l(labels);
    l += sep;
    l += "le=\"";
    append_number(l, latency_histogram::bounds_s[i]);
    l += '"';
    append_sample(out, bucket, l, h.cumulative(i));
  }
  append_sample(out, bucket, std::string(labels) + sep + "le=\"+Inf\"", h.count());
  append_sample(out, std::string(name) + "_sum", labels, h.sum_s());
  append_sample(out, std::string(name) + "_count", labels, h.count());
}

std::string door_label(door d) {
  std::string l = "door=\"";
  append_label_value(l, to_string(d));
  l += '"';
  return l;
}

}  // namespace

std::string metrics::render_prometheus(const node_status& node,
                                       const kv::store_stats& store) const {
  std::string out;
  out.reserve(16384);

  // Raft state of this node.
  append_single(out, "raftkv_node_id", "gauge", "Id of this node in the cluster.", node.id);
  append_single(out, "raftkv_term", "gauge", "Current Raft term of this node.", node.term);
  append_header(out, "raftkv_role", "gauge",
                "1 for the Raft role this node is in now, 0 for the others.");
  for (std::string_view role : {"leader", "follower", "candidate", "pre-candidate"}) {
    std::string l = "role=\"";
    append_label_value(l, role);
    l += '"';
    append_sample(out, "raftkv_role", l, std::uint64_t{node.role == role ? 1u : 0u});
  }
  append_single(out, "raftkv_leader_id", "gauge", "Id of the known leader, 0 when none is known.",
                node.leader_id);
  append_single(out, "raftkv_leader_changes_total", "counter",
                "Times this node has seen the leader change.", node.leader_changes);
  append_single(out, "raftkv_lease_reads_total", "counter",
                "Linearizable reads this node answered on its leader lease, without a "
                "heartbeat round.",
                node.lease_reads);
  append_single(out, "raftkv_commit_index", "gauge", "Highest log index known to be committed.",
                node.commit_index);
  append_single(out, "raftkv_applied_index", "gauge",
                "Highest log index applied to the local store.", node.applied_index);
  append_single(out, "raftkv_last_log_index", "gauge", "Index of the last entry in the local log.",
                node.last_log_index);
  append_single(out, "raftkv_snapshot_index", "gauge", "Last log index covered by the snapshot.",
                node.snapshot_index);
  append_header(out, "raftkv_proposals_total", "counter",
                "Client writes proposed through this node, by outcome.");
  append_sample(out, "raftkv_proposals_total", "outcome=\"ok\"", node.proposals_ok);
  append_sample(out, "raftkv_proposals_total", "outcome=\"failed\"", node.proposals_failed);
  append_single(out, "raftkv_storage_healthy", "gauge",
                "1 while storage accepts writes, 0 after a disk error.",
                std::uint64_t{node.storage_error.empty() ? 1u : 0u});
  // By role, so that a learner waiting for promotion (or one left behind) is visible.
  append_header(out, "raftkv_members", "gauge",
                "Members of the configuration this node knows, by role (voter or learner).");
  const auto voters = static_cast<std::uint64_t>(std::count_if(
      node.members.begin(), node.members.end(), [](const auto& m) { return m.voter; }));
  append_sample(out, "raftkv_members", "role=\"voter\"", voters);
  append_sample(out, "raftkv_members", "role=\"learner\"",
                static_cast<std::uint64_t>(node.members.size()) - voters);
  append_header(out, "raftkv_snapshot_transfers_total", "counter",
                "Snapshot streams to followers this node ended as leader, by result.");
  append_sample(out, "raftkv_snapshot_transfers_total", "result=\"done\"",
                node.snapshot_transfers_done);
  append_sample(out, "raftkv_snapshot_transfers_total", "result=\"failed\"",
                node.snapshot_transfers_failed);
  append_sample(out, "raftkv_snapshot_transfers_total", "result=\"aborted\"",
                node.snapshot_transfers_aborted);
  append_header(out, "raftkv_snapshot_transfer_bytes", "gauge",
                "The latest snapshot stream to each member: bytes acknowledged and total.");
  for (const auto& m : node.members) {
    if (m.snapshot_state.empty()) continue;
    const std::string peer = "peer=\"" + std::to_string(m.address.id.value) + "\"";
    append_sample(out, "raftkv_snapshot_transfer_bytes", peer + ",kind=\"acked\"",
                  m.snapshot_bytes_acked);
    append_sample(out, "raftkv_snapshot_transfer_bytes", peer + ",kind=\"total\"",
                  m.snapshot_bytes_total);
  }
  append_header(out, "raftkv_peer_drops_total", "counter",
                "Peer frames and connections refused or dropped, by reason (e.g. tls_refused, "
                "wrong_certificate, other_cluster).");
  for (const auto& [reason, n] : node.peer_drops) {
    append_sample(out, "raftkv_peer_drops_total", "reason=\"" + reason + "\"", n);
  }
  if (!node.peer_connections.empty()) {
    append_header(out, "raftkv_peer_connections", "gauge",
                  "Open peer connections by direction (out: dialled by this node) and by "
                  "security (tls, plain); plain beside [tls] only with [tls] plain_peers.");
    for (const auto& [key, n] : node.peer_connections) {
      append_sample(out, "raftkv_peer_connections",
                    "direction=\"" + key.first + "\",security=\"" + key.second + "\"", n);
    }
  }
  append_header(out, "raftkv_resident_memory_bytes", "gauge",
                "Resident memory of the process, by kind (anon: heap; file: mapped files).");
  append_sample(out, "raftkv_resident_memory_bytes", "kind=\"anon\"", node.rss_anon_bytes);
  append_sample(out, "raftkv_resident_memory_bytes", "kind=\"file\"", node.rss_file_bytes);
  append_sample(out, "raftkv_resident_memory_bytes", "kind=\"shmem\"", node.rss_shmem_bytes);

  append_header(out, "raftkv_reloads_total", "counter",
                "Reloads of certificates, keys, admin token and memcached users (SIGHUP), by "
                "result.");
  append_sample(out, "raftkv_reloads_total", "result=\"done\"", reloads_done_);
  append_sample(out, "raftkv_reloads_total", "result=\"refused\"", reloads_refused_);
  if (!certificate_expiry_.empty()) {
    append_header(out, "raftkv_tls_certificate_expiry_timestamp_seconds", "gauge",
                  "When the certificate this node presents expires (Unix time), by use (peer: "
                  "[tls] cert; http: [http] tls_cert).");
    for (const auto& [use, at] : certificate_expiry_) {
      append_sample(out, "raftkv_tls_certificate_expiry_timestamp_seconds", "use=\"" + use + "\"",
                    static_cast<std::uint64_t>(std::max<std::int64_t>(at, 0)));
    }
  }

  append_header(out, "raftkv_fsync_duration_seconds", "histogram",
                "Latency of the storage fsync (group commit) of the Raft log.");
  append_histogram(out, "raftkv_fsync_duration_seconds", "", fsync_);

  // Requests per door and command.
  const auto request_labels = [](door d, std::string_view command) {
    std::string labels = door_label(d);
    labels += ",command=\"";
    append_label_value(labels, command);
    labels += '"';
    return labels;
  };
  append_header(out, "raftkv_requests_total", "counter",
                "Requests served, by door, command and outcome.");
  for (std::size_t d = 0; d < door_count; ++d) {
    for (const auto& [command, series] : requests_[d]) {
      const std::string base = request_labels(static_cast<door>(d), command);
      append_sample(out, "raftkv_requests_total", base + ",outcome=\"ok\"", series.ok);
      append_sample(out, "raftkv_requests_total", base + ",outcome=\"failed\"", series.failed);
    }
  }
  append_header(out, "raftkv_request_duration_seconds", "histogram",
                "Time from a parsed request to its reply, by door and command.");
  for (std::size_t d = 0; d < door_count; ++d) {
    for (const auto& [command, series] : requests_[d]) {
      const std::string base = request_labels(static_cast<door>(d), command);
      append_histogram(out, "raftkv_request_duration_seconds", base, series.latency);
    }
  }

  append_header(out, "raftkv_connections", "gauge", "Client connections open now, by door.");
  for (std::size_t d = 0; d < door_count; ++d)
    append_sample(out, "raftkv_connections", door_label(static_cast<door>(d)),
                  current_connections_[d]);
  append_header(out, "raftkv_connections_total", "counter",
                "Client connections accepted since start, by door.");
  for (std::size_t d = 0; d < door_count; ++d)
    append_sample(out, "raftkv_connections_total", door_label(static_cast<door>(d)),
                  total_connections_[d]);

  // Reads served by this node (not replicated).
  append_single(out, "raftkv_get_keys_total", "counter", "Keys requested by reads.",
                reads_.cmd_get);
  append_single(out, "raftkv_get_hits_total", "counter", "Reads that found the key.",
                reads_.get_hits);
  append_single(out, "raftkv_get_misses_total", "counter", "Reads that did not find the key.",
                reads_.get_misses);
  append_single(out, "raftkv_client_read_bytes_total", "counter", "Bytes received from clients.",
                reads_.bytes_read);
  append_single(out, "raftkv_client_written_bytes_total", "counter", "Bytes sent to clients.",
                reads_.bytes_written);

  // The replicated store (identical on every replica once applied).
  append_single(out, "raftkv_items", "gauge", "Items in the store.", store.curr_items);
  append_single(out, "raftkv_items_stored_total", "counter", "Items ever stored.",
                store.total_items);
  append_single(out, "raftkv_bytes", "gauge",
                "Bytes the memory quota counts (keys, values and overhead).", store.bytes);
  append_single(out, "raftkv_cmd_set_total", "counter", "Storage commands applied.", store.cmd_set);
  append_header(out, "raftkv_store_ops_total", "counter",
                "Applied commands by operation and hit/miss outcome.");
  const auto op = [&](std::string_view name, std::string_view outcome, std::uint64_t v) {
    std::string l = "op=\"";
    l += name;
    l += "\",outcome=\"";
    l += outcome;
    l += '"';
    append_sample(out, "raftkv_store_ops_total", l, v);
  };
  op("delete", "hit", store.delete_hits);
  op("delete", "miss", store.delete_misses);
  op("incr", "hit", store.incr_hits);
  op("incr", "miss", store.incr_misses);
  op("decr", "hit", store.decr_hits);
  op("decr", "miss", store.decr_misses);
  op("cas", "hit", store.cas_hits);
  op("cas", "miss", store.cas_misses);
  op("cas", "badval", store.cas_badval);
  op("touch", "hit", store.touch_hits);
  op("touch", "miss", store.touch_misses);
  return out;
}

}  // namespace net
