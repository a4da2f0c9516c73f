// The bootstrap member list as the data dir records it (file `bootstrap_members`).
//
// SPEC §8: the [[cluster.member]] list only bootstraps a new cluster; from then on the
// configuration lives in the replicated state (configuration entries, snapshots). The core
// starts from the configuration of its snapshot and log, and falls back to the bootstrap list
// only while neither has one (a cluster that never changed its membership and has not
// snapshotted since). That fallback must be the list the cluster was bootstrapped with, not
// whatever the config file says today, so it is written here at the first start and read
// back on every later one. A joining node ([cluster] state = "join") records an empty list:
// it has no configuration until the leader's log gives it one, even after a restart.
//
// Text, one member per line, so an operator can read it:
//   raftkv bootstrap members v1
//   1 voter peer=127.0.0.1:7001 memcached=127.0.0.1:11211 http=127.0.0.1:8001
// Written once, atomically (app/durable_file.h). The conversions between the config's
// member addresses and the replicated configuration's members live here too.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <variant>

#include "net/service_types.h"
#include "raft/types.h"

namespace app {
struct config;
}

namespace app::bootstrap_members {

inline constexpr const char* file_name = "bootstrap_members";

struct loaded {
  raft::membership members;
  bool created = false;  // no file was there: `fallback` was written
};

// Reads data_dir/bootstrap_members, or writes `fallback` there when there is none. Errors
// (unreadable or malformed file, a failed write) are one line naming the file.
std::variant<loaded, std::string> load_or_create(const std::filesystem::path& data_dir,
                                                 const raft::membership& fallback);

// The list a node started with config `c` bootstraps a new cluster with: every
// [[cluster.member]] as a voter with its doors by name (the endpoints SPEC §8 names); empty
// for a joining node ([cluster] state = "join"). `raftkv restore` writes it into the
// restored snapshot's configuration, so it must be the list a first start would record.
raft::membership from_config(const config& c);
// One member as the replicated configuration carries it: its doors by name (SPEC §8 names).
raft::member to_member(const net::member_address& a, bool voter);
// Its inverse: the addresses a configuration's member advertises.
net::member_address to_address(const raft::member& m);

std::string format(const raft::membership& m);
// The list a file's text holds; an error line when it is malformed.
std::variant<raft::membership, std::string> parse(std::string_view text);

}  // namespace app::bootstrap_members
