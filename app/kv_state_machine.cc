#include "app/kv_state_machine.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>

#include "base/log.h"
#include "base/memory.h"
#include "kv/command.h"

namespace app {

namespace {

// Large frees leave the allocator holding the pages (glibc returns only the top of its
// heap by itself, TCMalloc a little at a time); a flush of a big store or a restore
// would otherwise keep the old state's RSS.
constexpr std::uint64_t trim_after_freed_bytes = 64ull << 20;

void trim_memory() {
  base::release_free_memory();
}

}  // namespace

kv_state_machine::~kv_state_machine() {
  alive_.reset();
  wait_for_snapshot();
  if (restorer_.joinable()) restorer_.join();
  if (reaper_.joinable()) reaper_.join();
}

void kv_state_machine::wait_for_snapshot() {
  if (waiter_.joinable()) waiter_.join();
}

std::string kv_state_machine::apply(const raft::entry& e) {
  if (e.type == raft::entry_type::normal) {
    if (auto cmd = kv::decode_command_view(e.data)) {
      last_applied_stamp_ms_ = std::max(last_applied_stamp_ms_, cmd->timestamp_ms);
      const std::uint64_t before = store_.stats().bytes;
      std::string out = kv::encode(store_.apply(e.index.value, *cmd));
      const std::uint64_t after = store_.stats().bytes;
      if (before > after && before - after >= trim_after_freed_bytes) trim_memory();
      return out;
    }
    base::log(base::log_level::warn, "entry ", e.index.value, " holds no valid command; skipped");
  }
  store_.skip(e.index.value);
  return {};
}

void kv_state_machine::prefetch(std::span<const raft::entry> entries) const {
  std::array<std::string_view, raft::state_machine::prefetch_entries> keys;
  std::size_t n = 0;
  for (const raft::entry& e : entries) {
    if (n == keys.size()) break;
    if (e.type != raft::entry_type::normal) continue;
    // The key is a view into the entry's payload, which outlives this call.
    if (auto cmd = kv::decode_command_view(e.data); cmd && !cmd->key.empty())
      keys[n++] = cmd->key;
  }
  store_.prefetch(std::span<const std::string_view>(keys.data(), n));
}

bool kv_state_machine::restore(std::string_view bytes) {
  bool ok = false;
  {
    const base::huge_page_window window;  // app/huge_page_heap.h
    ok = store_.restore(bytes);
  }
  // The old state was freed wholesale.
  if (ok) trim_memory();
  return ok;
}

void kv_state_machine::start_restore(std::string_view bytes, std::shared_ptr<const void> owner,
                                     std::function<void(bool ok)> done) {
  if (!post_) {
    return raft::state_machine::start_restore(bytes, std::move(owner), std::move(done));
  }
  // The replica restores one snapshot at a time: a previous thread has posted its result.
  if (restorer_.joinable()) restorer_.join();
  // The old state goes first (the header's essay): an empty store at the same applied index
  // takes its place, and a thread frees it while the new one is built.
  const auto local = store_.local_options();
  auto old = std::make_shared<kv::store>(local);
  std::swap(store_, *old);
  store_.skip(old->applied_index());
  if (reaper_.joinable()) reaper_.join();
  reaper_ = std::thread([old = std::move(old)]() mutable {
    old.reset();
    trim_memory();
  });
  std::weak_ptr<int> alive = alive_;
  restorer_ = std::thread([this, alive, bytes, owner = std::move(owner), done = std::move(done),
                           local, post = post_]() mutable {
    auto fresh = std::make_shared<kv::store>(local);
    bool ok = false;
    {
      const base::huge_page_window window;  // app/huge_page_heap.h
      ok = fresh->restore(bytes);
    }
    owner.reset();  // the bytes (a map of the received file) are no longer needed
    if (!ok) fresh.reset();
    post([this, alive, ok, fresh = std::move(fresh), done = std::move(done)]() mutable {
      if (alive.expired()) return;
      if (ok) std::swap(store_, *fresh);  // fresh now holds the empty stand-in
      done(ok);
    });
  });
}

void kv_state_machine::start_snapshot(const raft::snapshot_meta& meta, raft::log_store& logs,
                                      raft::snapshot_completion done) {
  if (!fork_snapshots_) return raft::state_machine::start_snapshot(meta, logs, std::move(done));
  std::string error;
  std::shared_ptr<raft::snapshot_writer> w = logs.open_snapshot_writer(meta, error);
  if (!w) {
    if (!error.empty()) return done(std::move(error), nullptr);
    return raft::state_machine::start_snapshot(meta, logs, std::move(done));
  }
  // The replica runs one snapshot at a time: the previous waiter has run its completion and
  // is about to return, if it has not already.
  wait_for_snapshot();

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return done(std::string("snapshot: pipe: ") + std::strerror(errno), nullptr);
  }
  const pid_t parent = ::getpid();
  const auto fork_start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: serialise and write, nothing else (see the essay in the header). It dies
    // with the node: a killed node's child would otherwise hold the data dir's lock
    // until it is done, and a node restarted meanwhile would find its data dir locked.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the node died before prctl()
    ::setpriority(PRIO_PROCESS, 0, 19);  // the event loops first (see the header)
    ::close(fds[0]);
    store_.snapshot_to([&w](std::string_view chunk) { return w->append(chunk); });
    const std::string err = w->complete();  // no sync here: the parent's adopt() syncs
    std::size_t off = 0;
    while (off < err.size()) {
      const ::ssize_t n = ::write(fds[1], err.data() + off, err.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    ::_exit(err.empty() ? 0 : 1);
  }
  const auto fork_us = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - fork_start)
                           .count();
  ::close(fds[1]);
  if (pid < 0) {
    const int e = errno;
    ::close(fds[0]);
    base::log(base::log_level::warn, "snapshot: fork failed (", std::strerror(e),
              "); taking it on the event loop");
    w.reset();  // removes its tmp file
    return raft::state_machine::start_snapshot(meta, logs, std::move(done));
  }
  last_fork_us_ = static_cast<std::uint64_t>(fork_us);
  waiter_ = std::thread([pid, rfd = fds[0], w = std::move(w), done = std::move(done),
                         index = meta.index.value, fork_us, fork_start]() mutable {
    std::string child_error;
    char buf[512];
    for (;;) {
      const ::ssize_t n = ::read(rfd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      child_error.append(buf, static_cast<std::size_t>(n));
    }
    ::close(rfd);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    // The child is gone, and with it the sharing of the parent's pages: from here on a
    // page the event loop writes is no longer copied.
    const auto child_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - fork_start)
                              .count();
    std::string error;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      error = !child_error.empty() ? child_error
              : WIFSIGNALED(status)
                  ? "snapshot child killed by signal " + std::to_string(WTERMSIG(status))
                  : "snapshot child failed with status " + std::to_string(WEXITSTATUS(status));
    } else {
      error = w->adopt();
    }
    w.reset();  // closes the parent's descriptor; removes the tmp file if the child failed
    if (error.empty()) {
      const auto total_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - fork_start)
                                .count();
      base::log(base::log_level::info, "snapshot at index ", index, " written by a child in ",
                child_ms, " ms (fork ", fork_us / 1000.0, " ms), durable after ", total_ms,
                " ms");
    }
    trim_memory();
    done(std::move(error), nullptr);
  });
}

std::optional<raft::payload> kv_state_machine::prepare_proposal(std::string_view command,
                                                                std::int64_t now_ms) {
  auto cmd = kv::decode_command_view(command);  // points into `command`: nothing copied
  if (!cmd) return std::nullopt;
  last_proposed_stamp_ms_ = std::max({now_ms, last_proposed_stamp_ms_, last_applied_stamp_ms_});
  cmd->timestamp_ms = last_proposed_stamp_ms_;
  // Encoded into a buffer kept for the next proposal, then copied once into the payload.
  proposal_buffer_.clear();
  kv::encode_to(*cmd, proposal_buffer_);
  return raft::payload(proposal_buffer_);
}

}  // namespace app
