// The amnesia guard's files: this data dir's generation, the generations recorded for the
// other members, and the mark of a node refused for a lost data dir.
//
// The danger. A node whose data dir was wiped restarts under its old id with an empty log,
// term 0 and no vote. Raft's safety rests on what a node wrote to disk before answering: a
// vote granted in a term, entries acknowledged to a leader (and counted toward a majority).
// The wiped node has forgotten both: it could vote a second time in a term (two leaders),
// and a committed entry it held may now be held by a minority only, so the next leader can
// lack it and overwrite it. Nothing in Raft detects this; the node must be kept out.
//
// The design.
// 1. Generation. When a node opens a data dir holding no generation it draws a random
//    non-zero 64-bit number and writes it to `generation`, once, atomically (temporary
//    file, fsync, rename, directory fsync), before the transport starts: so before the node
//    sends any vote or acknowledgement, every one of them was made by a data dir with a
//    generation on disk. `fresh` says the data dir held no Raft state either (an empty
//    dir, or one whose node never got as far as a vote or an entry): only such a node can
//    be an amnesiac. A data dir with Raft state but no generation (made by a version
//    without this guard) gets one too and is not fresh: the peers learn it at first sight.
// 2. Every hello announces the generation (net/peer/frame.h).
// 3. Each node records, durably, the generation it first heard from each other member
//    (`peer_generations`, rewritten atomically when a member is first heard: once per
//    member per life of the cluster). The write is synchronous, on the event loop, before
//    any frame of that connection is delivered: one small fsync per newly learned member
//    costs nothing worth a thread, and it means that a node that counted a vote or an
//    acknowledgement of a member knows, even after its own crash, which data dir made it.
// 4. A hello announcing another generation than the recorded one is refused
//    (net/peer/transport.h): every frame of that connection is dropped, and the sender is
//    told with a `refused` frame on the refuser's own connection to it.
// 5. The refused node, if its data dir was fresh in this process life, is the amnesiac: it
//    writes `refused` (the reason, for the operator and for its next start, which then
//    refuses to run at once: a supervisor restarting it must not bring it back as a node
//    whose data dir merely looks not-fresh any more) and exits with status 1. A node whose
//    data dir was not fresh cannot have lost it in this life; it logs the refusal and runs
//    on (its peers still refuse it: the operator must look).
//
// Limits. A member never heard by a node is learned at first sight: a node that never
// talked to the amnesiac's previous life (say it was down all along) accepts the new one;
// the nodes that did talk to it refuse it, and it exits at the first refusal. A data dir
// restored from a copy keeps its generation and is accepted: that is the operator's
// decision, and safe only if the node did nothing after the copy was taken (an older copy
// has forgotten votes and acknowledged entries just as an empty data dir; the guard cannot
// tell them apart).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace app::generation {

inline constexpr const char* file_name = "generation";
inline constexpr const char* peers_file_name = "peer_generations";
inline constexpr const char* refused_file_name = "refused";

struct loaded {
  std::uint64_t value = 0;  // never 0
  bool created = false;     // no file was there: `value` was drawn and written now
  bool fresh = false;       // created in a data dir that held no Raft state
};

// Reads data_dir/generation, or draws one and writes it when there is none.
// has_raft_state: the data dir holds a log entry, a snapshot, a term or a vote. Errors
// (unreadable or malformed file, a failed write) are one line naming the file. Call it once
// the data dir is locked by the store.
std::variant<loaded, std::string> load_or_create(const std::filesystem::path& data_dir,
                                                 bool has_raft_state);

// The generations recorded for other members: id -> generation. A missing file is an empty
// record; a malformed one is an error naming it.
using peer_record = std::map<std::uint64_t, std::uint64_t>;
std::variant<peer_record, std::string> load_peers(const std::filesystem::path& data_dir);
// Rewrites the whole record atomically; "" or the error.
std::string save_peers(const std::filesystem::path& data_dir, const peer_record& record);

// The refused mark: written (atomically) before an amnesiac exits; its text is the error.
std::string mark_refused(const std::filesystem::path& data_dir, std::string_view why);
// The mark's text, if the data dir has one.
std::optional<std::string> refused_mark(const std::filesystem::path& data_dir);

// File contents: 16 hex digits and a newline; peers: one "<id> <16 hex digits>" line per
// member in id order. parse: 0 / nullopt when malformed.
std::string format(std::uint64_t generation);
std::uint64_t parse(std::string_view text);
std::string format_peers(const peer_record& record);
std::optional<peer_record> parse_peers(std::string_view text);

}  // namespace app::generation
