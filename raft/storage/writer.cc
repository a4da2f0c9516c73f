#include "raft/storage/writer.h"

namespace raft::storage {

writer::writer(lmdb_env& env, log_shape committed, writer_hooks hooks)
    : env_(env), committed_(std::move(committed)), hooks_(std::move(hooks)) {
  thread_ = std::thread([this] { run(); });
}

writer::~writer() {
  stop();
}

void writer::submit(batch b, submit_callback cb) {
  {
    std::lock_guard lock(queue_mutex_);
    if (!stopping_) {
      queued_.push_back(std::move(b));
      queued_callbacks_.push_back(std::move(cb));
      queue_cv_.notify_one();
      return;
    }
  }
  if (cb) cb(result<persisted>{{}, make_error(errc::closed, "storage is closed")});
}

void writer::stop() {
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

error writer::failure() const {
  std::lock_guard lock(failure_mutex_);
  return failure_;
}

writer_stats writer::stats() const {
  return writer_stats{commits_, syncs_, batches_, entries_, bytes_, commit_ns_};
}

void writer::run() {
  std::vector<batch> batches;
  std::vector<submit_callback> callbacks;
  for (;;) {
    batches.clear();
    callbacks.clear();
    {
      std::unique_lock lock(queue_mutex_);
      if (queued_.empty() && !stopping_ && held_callbacks_.empty())
        queue_cv_.wait(lock, [&] { return !queued_.empty() || stopping_; });
      batches.swap(queued_);
      callbacks.swap(queued_callbacks_);
    }
    if (batches.empty()) {
      if (held_callbacks_.empty()) return;  // stopping and drained
      // Nothing more to commit: make the held commits durable now rather than wait.
      if (error err = env_.sync(); !err.ok()) {
        fail(err, callbacks);
        continue;
      }
      ++syncs_;
      release_held();
      continue;
    }
    finish(batches, callbacks);
  }
}

void writer::release_held() {
  if (held_compaction_.value > 0 && hooks_.on_compacted) hooks_.on_compacted(held_compaction_);
  held_compaction_ = index_t{0};
  for (std::size_t n = 0; n < held_callbacks_.size(); ++n)
    if (held_callbacks_[n]) held_callbacks_[n](result<persisted>{held_after_[n], {}});
  held_callbacks_.clear();
  held_after_.clear();
}

void writer::fail(const error& err, std::vector<submit_callback>& more) {
  {
    std::lock_guard lock(failure_mutex_);
    if (failure_.ok()) {
      failure_ = err;
      hooks_.log(log_level::error,
                 "storage failed, writes are refused from now on: " + err.message);
    }
  }
  for (auto& cb : held_callbacks_)
    if (cb) cb(result<persisted>{{}, err});
  held_callbacks_.clear();
  held_after_.clear();
  held_compaction_ = index_t{0};
  for (auto& cb : more)
    if (cb) cb(result<persisted>{{}, err});
}

void writer::finish(std::vector<batch>& batches, std::vector<submit_callback>& callbacks) {
  if (error f = failure(); !f.ok()) return fail(f, callbacks);

  // File work the records depend on (batch::prepare), in order, before the transaction.
  for (auto& b : batches) {
    if (!b.prepare) continue;
    if (error err = b.prepare(); !err.ok()) return fail(err, callbacks);
    b.prepare = nullptr;
  }

  // Between transactions: keep written zeros ahead of LMDB. Its fdatasync also covers the
  // held commits.
  auto presized = env_.presize();
  if (!presized.ok()) return fail(presized.err, callbacks);
  if (presized.value) {
    ++syncs_;
    release_held();
  }

  auto report = env_.commit(committed_, batches);
  if (!report.ok()) return fail(report.err, callbacks);

  const commit_report& r = report.value;
  const index_t old_snap = committed_.snap.index;
  committed_ = r.shape;
  ++commits_;
  if (r.synced) ++syncs_;
  batches_ += batches.size();
  entries_ += r.entries;
  bytes_ += r.bytes;
  commit_ns_ += static_cast<std::uint64_t>(r.took.count());
  if (hooks_.on_commit) hooks_.on_commit(r.took, batches.size(), r.entries);

  // This commit's fdatasync made the held commits durable (their meta pages were written
  // before it).
  if (r.synced) release_held();
  const bool was_durable = held_callbacks_.empty();
  if (committed_.snap.index > old_snap) held_compaction_ = committed_.snap.index;
  for (std::size_t n = 0; n < callbacks.size(); ++n) {
    held_callbacks_.push_back(std::move(callbacks[n]));
    held_after_.push_back(r.after[n]);
  }
  // Without fsync nothing is ever synced: report at once (not durable across a power loss;
  // lmdb_store.h says so loudly). A commit that changed nothing on top of a durable state
  // (barriers only) is durable as it stands.
  if (!env_.durable() || (!r.synced && was_durable)) release_held();
}

}  // namespace raft::storage
