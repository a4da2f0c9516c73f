// node::status(): the replica's view plus the transport's, for /v1/status, /metrics and
// memcached `stats`.
#include <cstdio>

#include "app/node.h"
#include "net/peer/transport.h"

namespace app {

namespace {

// RssAnon / RssFile / RssShmem of /proc/self/status (kB there), in bytes; zeros if absent.
void read_rss(net::node_status& out) {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (!f) return;
  char line[256];
  while (std::fgets(line, sizeof line, f)) {
    unsigned long long kb = 0;
    if (std::sscanf(line, "RssAnon: %llu kB", &kb) == 1)
      out.rss_anon_bytes = kb * 1024;
    else if (std::sscanf(line, "RssFile: %llu kB", &kb) == 1)
      out.rss_file_bytes = kb * 1024;
    else if (std::sscanf(line, "RssShmem: %llu kB", &kb) == 1)
      out.rss_shmem_bytes = kb * 1024;
  }
  std::fclose(f);
}

}  // namespace

net::node_status node::status() const {
  const raft::replica_status r = replica_->status();
  const raft::status& s = r.core;
  net::node_status out;
  out.id = self_.value;
  out.role = raft::to_string(s.role);
  out.term = s.term.value;
  out.leader_id = s.leader.value;
  out.commit_index = s.commit.value;
  out.applied_index = store_.applied_index();
  out.last_log_index = s.last_index.value;
  out.snapshot_index = s.snapshot_index.value;
  out.leader_changes = r.leader_changes;
  out.lease_reads = s.lease_reads;
  out.proposals_ok = r.proposals_ok;
  out.proposals_failed = r.proposals_failed;
  out.storage_error = r.storage_error;
  out.snapshot_transfers_done = r.snapshot_transfers_done;
  out.snapshot_transfers_failed = r.snapshot_transfers_failed;
  out.snapshot_transfers_aborted = r.snapshot_transfers_aborted;
  out.receiving_snapshot_index = r.receiving_snapshot_index.value;
  out.receiving_snapshot_bytes = r.receiving_snapshot_bytes;
  out.receiving_snapshot_total = r.receiving_snapshot_total;
  const std::int64_t mono_now =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock::now().time_since_epoch())
          .count();
  read_rss(out);
  const auto now = clock::now();
  const raft::membership& config = replica_->core().configuration();
  out.config_index = replica_->core().config_index().value;
  out.change_in_progress = replica_->core().config_index() > s.commit;
  for (const auto& m : members_) {
    net::member_status ms;
    ms.address = m;
    ms.voter = config.is_voter(m.id);
    if (m.id == self_) {
      ms.caught_up = true;
      ms.match_index = s.persisted_index.value;
      ms.next_index = s.last_index.value + 1;
      ms.last_contact_ms = 0;
      ms.read_lease_ms = replica_->read_lease_ms();
    } else {
      for (const auto& p : s.peers) {
        if (p.id != m.id) continue;
        ms.match_index = p.match.value;
        ms.next_index = p.next.value;
        ms.caught_up = replica_->core().caught_up(m.id);
      }
      for (const auto& t : r.snapshot_transfers) {
        if (t.peer != m.id) continue;
        ms.snapshot_state = t.state;
        ms.snapshot_index = t.index.value;
        ms.snapshot_bytes_acked = t.acked;
        ms.snapshot_bytes_total = t.total;
        ms.snapshot_resends = t.resends;
        ms.snapshot_elapsed_ms = (t.ended_ms != 0 ? t.ended_ms : mono_now) - t.started_ms;
        ms.snapshot_error = t.last_error;
      }
      if (transport_) {
        if (auto ps = transport_->status(m.id)) {
          if (ps->last_received) {
            ms.last_contact_ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(now - *ps->last_received)
                    .count();
          }
          if (ps->read_lease_ms) ms.read_lease_ms = *ps->read_lease_ms;
        }
      }
    }
    out.members.push_back(std::move(ms));
  }
  if (transport_) {
    out.peer_drops = transport_->drops();
    const auto open = transport_->connections();
    out.peer_connections[{"out", "tls"}] = open.out_tls;
    out.peer_connections[{"out", "plain"}] = open.out_plain;
    out.peer_connections[{"in", "tls"}] = open.in_tls;
    out.peer_connections[{"in", "plain"}] = open.in_plain;
  }
  return out;
}

}  // namespace app
