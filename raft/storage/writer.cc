#include "raft/storage/writer.h"

#include <algorithm>
#include <cstring>
#include <string>

#include <pthread.h>
#include <sched.h>

namespace raft::storage {

using clock = std::chrono::steady_clock;

// Terms of the journaled log for log_shape's checks (journal thread): the tail, or LMDB
// below tail_first (see "The tail" in writer.h).
class writer::tail_terms final : public term_source {
 public:
  explicit tail_terms(const writer& w) : w_(w) {}
  result<term_t> term_at(index_t i) const override {
    {
      std::lock_guard lock(w_.tail_mutex_);
      if (i >= w_.tail_first_) {
        const auto at = static_cast<std::size_t>(i.value - w_.tail_first_.value);
        if (at < w_.tail_.size()) return {w_.tail_[at].e.term, {}};
        return {{},
                make_error(errc::corrupt, "log entry " + std::to_string(i.value) + " is missing")};
      }
    }
    auto e = w_.env_.read_entries(i, i);
    if (!e.ok()) return {{}, e.err};
    return {e.value.front().term, {}};
  }

 private:
  const writer& w_;
};

// See "Scheduling" in the header. Set from here, once the thread exists, so that it holds
// when the constructor returns. Linux lets a process move its threads between the normal
// policies unprivileged; if it cannot, the thread keeps SCHED_OTHER and works the same.
void writer::run_as_batch_work(std::thread& t, const char* which) const {
  const sched_param none{};
  if (const int rc = ::pthread_setschedparam(t.native_handle(), SCHED_BATCH, &none); rc != 0) {
    hooks_.log(log_level::warning, std::string("storage: the ") + which +
                                       " thread stays SCHED_OTHER: " + std::strerror(rc));
  }
}

writer::writer(lmdb_env& env, journal_files& journal, log_shape committed, std::uint64_t seq,
               writer_hooks hooks, writer_options opts)
    : env_(env),
      journal_(journal),
      hooks_(std::move(hooks)),
      opts_(opts),
      committed_(committed),
      seq_(seq),
      compacted_(committed.snap.index),
      checkpointed_shape_(committed),
      checkpointed_seq_(seq),
      tail_first_(committed.last_index + 1),
      tail_snap_(committed.snap.index) {
  thread_ = std::thread([this] { run(); });
  checkpointer_ = std::thread([this] { checkpoint_run(); });
  run_as_batch_work(thread_, "journal");
  run_as_batch_work(checkpointer_, "checkpointer");
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
  {
    std::lock_guard lock(handed_mutex_);
    checkpointer_stopping_ = true;
  }
  handed_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
}

bool writer::drained() const {
  return failure().ok() && checkpointed_seq_.load() == seq_;
}

error writer::failure() const {
  std::lock_guard lock(failure_mutex_);
  return failure_;
}

writer_stats writer::stats() const {
  return writer_stats{commits_,   syncs_,       batches_,       entries_, bytes_,
                      commit_ns_, checkpoints_, checkpoint_ns_, switches_};
}

result<std::vector<entry>> writer::read_entries(index_t first, index_t last) const {
  result<std::vector<entry>> out;
  if (last < first) return out;
  std::lock_guard lock(tail_mutex_);
  if (first <= tail_snap_) {  // compacted, though LMDB may not have dropped it yet
    out.err = make_error(errc::corrupt, "log entry " + std::to_string(first.value) +
                                            " is missing (compacted into the snapshot)");
    return out;
  }
  if (first < tail_first_) {
    const index_t upto = std::min(last, tail_first_ - 1);
    out = env_.read_entries(first, upto);
    if (!out.ok() || upto == last) return out;
  }
  for (index_t i = std::max(first, tail_first_); i <= last; ++i) {
    const auto at = static_cast<std::size_t>(i.value - tail_first_.value);
    if (at >= tail_.size()) {
      out.value.clear();
      out.err = make_error(errc::corrupt, "log entry " + std::to_string(i.value) + " is missing");
      return out;
    }
    out.value.push_back(tail_[at].e);
  }
  return out;
}

void writer::set_failure(const error& err) {
  std::lock_guard lock(failure_mutex_);
  if (!failure_.ok()) return;
  failure_ = err;
  hooks_.log(log_level::error, "storage failed, writes are refused from now on: " + err.message);
}

void writer::fail(const error& err, std::vector<submit_callback>& callbacks) {
  set_failure(err);
  const error f = failure();
  for (auto& cb : callbacks)
    if (cb) cb(result<persisted>{{}, f});
}

void writer::run() {
  std::vector<batch> batches;
  std::vector<submit_callback> callbacks;
  for (;;) {
    batches.clear();
    callbacks.clear();
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return !queued_.empty() || stopping_; });
      if (queued_.empty()) return;  // stopping and drained
      batches.swap(queued_);
      callbacks.swap(queued_callbacks_);
    }
    journal(batches, callbacks);
  }
}

void writer::journal(std::vector<batch>& batches, std::vector<submit_callback>& callbacks) {
  if (error f = failure(); !f.ok()) return fail(f, callbacks);

  // File work the records depend on (batch::prepare), in order, before the record.
  for (auto& b : batches) {
    if (!b.prepare) continue;
    if (error err = b.prepare(); !err.ok()) return fail(err, callbacks);
    b.prepare = nullptr;
  }

  // Check every batch against the journaled log before anything is written.
  std::vector<persisted> after(batches.size());
  log_shape shape = committed_;
  const tail_terms terms(*this);
  bool changes = false;
  std::size_t entries = 0;
  std::uint64_t bytes = 0;
  for (std::size_t n = 0; n < batches.size(); ++n) {
    const batch& b = batches[n];
    auto next = advance(shape, b, terms);
    if (!next.ok()) return fail(next.err, callbacks);
    shape = next.value;
    after[n] = shape.as_persisted();
    changes = changes || b.truncate_from || !b.entries.empty() || b.compaction || b.hard;
    entries += b.entries.size();
    for (const entry& e : b.entries) bytes += e.data.size();
  }

  if (changes) {
    // The other file is free once LMDB durably holds every record in it.
    if (journal_.wants_switch()) {
      if (journal_.inactive_last_seq() <= checkpointed_seq_.load()) {
        journal_.switch_files();
        ++switches_;
      } else {
        std::lock_guard lock(handed_mutex_);
        urgent_ = true;
        handed_cv_.notify_one();
      }
    }
    const std::uint64_t seq = seq_ + 1;
    record_.clear();
    encode_journal_record(seq, batches, record_);
    const auto start = clock::now();
    if (error err = journal_.append(seq, record_); !err.ok()) return fail(err, callbacks);
    const auto took = clock::now() - start;
    seq_ = seq;
    committed_ = shape;
    ++commits_;
    if (env_.durable()) ++syncs_;
    batches_ += batches.size();
    entries_ += entries;
    bytes_ += bytes;
    commit_ns_ += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(took).count());
    if (hooks_.on_commit) hooks_.on_commit(took, batches.size(), entries);
    update_tail(seq, batches);
  }

  // Durable: every record up to this one has been written and synced, in order. A
  // compaction in it will be replayed into LMDB after a crash, so the snapshot files
  // older than it are no longer needed.
  if (committed_.snap.index > compacted_ && changes) {
    compacted_ = committed_.snap.index;
    if (hooks_.on_compacted) hooks_.on_compacted(compacted_);
  }
  for (std::size_t n = 0; n < callbacks.size(); ++n)
    if (callbacks[n]) callbacks[n](result<persisted>{after[n], {}});

  if (!changes) return;
  std::lock_guard lock(handed_mutex_);
  const bool first = handed_.empty();
  if (first) handed_since_ = clock::now();
  handed_.push_back(handed{seq_, std::move(batches)});
  handed_bytes_ += record_.size();
  // The checkpointer sleeps until something arrives, then until its interval ends.
  if (first || handed_bytes_ >= opts_.checkpoint_bytes) handed_cv_.notify_one();
}

void writer::update_tail(std::uint64_t seq, const std::vector<batch>& batches) {
  std::lock_guard lock(tail_mutex_);
  for (const batch& b : batches) {
    if (b.truncate_from) {
      const index_t t = *b.truncate_from;
      if (t <= tail_first_) {
        tail_.clear();
        tail_first_ = t;
      } else {
        while (!tail_.empty() && tail_.back().e.index >= t) tail_.pop_back();
      }
    }
    for (const entry& e : b.entries) tail_.push_back(tail_entry{seq, e});
    if (b.compaction) {
      const index_t m = b.compaction->index;
      while (!tail_.empty() && tail_.front().e.index <= m) tail_.pop_front();
      tail_first_ = std::max(tail_first_, m + 1);
      tail_snap_ = std::max(tail_snap_, m);
    }
  }
}

void writer::checkpoint_run() {
  std::vector<handed> work;
  for (;;) {
    work.clear();
    {
      std::unique_lock lock(handed_mutex_);
      for (;;) {
        if (checkpointer_stopping_ || urgent_ || handed_bytes_ >= opts_.checkpoint_bytes) break;
        if (handed_.empty()) {
          handed_cv_.wait(lock);
          continue;
        }
        if (handed_cv_.wait_until(lock, handed_since_ + opts_.checkpoint_interval) ==
            std::cv_status::timeout)
          break;
      }
      if (handed_.empty() && checkpointer_stopping_) return;
      work.swap(handed_);
      handed_bytes_ = 0;
      urgent_ = false;
    }
    if (work.empty()) continue;
    if (!failure().ok()) continue;  // failed: the journal keeps what LMDB lacks
    checkpoint(work);
  }
}

void writer::checkpoint(std::vector<handed>& work) {
  const auto start = clock::now();
  std::vector<batch> batches;
  for (auto& h : work)
    for (auto& b : h.batches) batches.push_back(std::move(b));
  const std::uint64_t seq = work.back().seq;

  // Between transactions: keep written zeros ahead of LMDB's pages (lmdb_env.h).
  auto presized = env_.presize();
  if (!presized.ok()) {
    set_failure(presized.err);
    return;
  }
  if (presized.value) ++syncs_;
  auto report = env_.commit(checkpointed_shape_, batches, seq);
  if (!report.ok()) {
    set_failure(report.err);
    return;
  }
  if (report.value.synced) ++syncs_;
  // Under MDB_NOMETASYNC the commit synced its pages but not its meta page: sync again so
  // the whole state, journal seq included, is durable before the journal reuses a file.
  if (env_.durable()) {
    if (error err = env_.sync(); !err.ok()) {
      set_failure(err);
      return;
    }
    ++syncs_;
  }
  checkpointed_shape_ = report.value.shape;
  checkpointed_seq_.store(seq);
  ++checkpoints_;
  checkpoint_ns_ += static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - start).count());
  {
    std::lock_guard lock(tail_mutex_);
    while (!tail_.empty() && tail_.front().seq <= seq) {
      tail_first_ = tail_.front().e.index + 1;
      tail_.pop_front();
    }
  }
}

}  // namespace raft::storage
