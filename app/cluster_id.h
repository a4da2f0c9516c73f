// The cluster id: the number every peer frame carries (net/peer/frame.h) so that nodes of
// different clusters never take each other's frames, even at the same addresses.
//
// At its first start a node derives the id from the bootstrap member list and the optional
// [cluster] token, and persists it in its data dir (file `cluster_id`, one line of 16 hex
// digits). From then on the persisted id is the node's id, whatever the config says: the
// member list in the config will change as membership changes, and a cluster must keep its
// id through that. So:
// - every bootstrap member derives the same id (same list, same token) and persists it;
// - a cluster rebuilt at the same addresses with another token (empty data dirs) gets another
//   id, and a node that kept its data dir from the old cluster keeps the old id: the hello
//   check (net/peer/transport.h) refuses it in both directions;
// - a config whose list or token changed after bootstrap does not change the id; the
//   difference is logged once at start-up, because it is either a membership change or a
//   node pointed at the data dir of another cluster, and only the operator knows which.
//
// The file is written once, atomically (temporary file, fsync, rename, directory fsync): a
// crash leaves either no file (the next start derives and writes again) or the whole file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <variant>

namespace app {

struct config;

namespace cluster_id {

// The id every bootstrap member derives from c.members (id, peer address) and
// c.cluster_token; never 0.
std::uint64_t derive(const config& c);

struct loaded {
  std::uint64_t id = 0;  // the cluster id to announce and check in every hello
  bool created = false;  // no file was there: `derived` was written
  bool differs = false;  // the file holds an id other than `derived` (logged)
};

// The file's name inside the data dir.
inline constexpr const char* file_name = "cluster_id";

// Reads data_dir/cluster_id, or writes `derived` there when there is none (creating
// data_dir if needed). Errors (unreadable or malformed file, a failed write) are one line
// naming the file; the node must not start on them. Call it once the data dir is locked
// by the store, so that two processes never race on the file.
std::variant<loaded, std::string> load_or_create(const std::filesystem::path& data_dir,
                                                 std::uint64_t derived);

// Whether data_dir already records a cluster id (a joining node has none until a member
// contacts it).
bool exists(const std::filesystem::path& data_dir);

// The file's content for an id, and its parse (nullopt-like: 0 when malformed).
std::string format(std::uint64_t id);
std::uint64_t parse(std::string_view text);

}  // namespace cluster_id
}  // namespace app
