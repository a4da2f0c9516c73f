#include "app/lmdb_log_store.h"

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "app/config.h"
#include "base/log.h"
#include "raft/storage/snapshot_stream.h"

namespace app {

raft::storage::options storage_options(const config& c) {
  raft::storage::options opts;
  opts.data_dir = c.data_dir;
  opts.fsync = c.raft.fsync;
  opts.max_map_bytes = c.raft.max_disk_mb << 20;
  opts.log = [](raft::storage::log_level level, std::string_view text) {
    const auto l = level == raft::storage::log_level::info      ? base::log_level::info
                   : level == raft::storage::log_level::warning ? base::log_level::warn
                                                                : base::log_level::error;
    base::log(l, "storage: ", text);
  };
  return opts;
}

namespace {

raft::storage::submit_callback completion(raft::store_completion done) {
  return [done = std::move(done)](const raft::storage::result<raft::storage::persisted>& r) {
    done(r.err ? r.err.message : std::string());
  };
}

}  // namespace

void lmdb_log_store::submit(raft::persist_batch b, raft::store_completion done) {
  if (b.install) {
    // The file first (the record must never point at a snapshot that is not durable), then
    // one transaction that records it and drops the whole stored log (paper §7). Both on
    // the writer thread, in order (the header's essay).
    raft::storage::batch replace;
    replace.truncate_from = stored_snapshot_index_ + 1;
    replace.compaction = b.install->meta;
    stored_snapshot_index_ = b.install->meta.index;
    // Runs on the writer thread, which the lmdb_store owns: capture it, not this object.
    replace.prepare = [store = &store_, install = std::move(*b.install)]() -> raft::storage::error {
      if (install.file) {
        auto err = install.file->install();
        if (err.empty()) return {};
        return raft::storage::make_error(raft::storage::errc::io_error, std::move(err));
      }
      return store->write_snapshot(install.meta, *install.data);
    };
    // A failure here fails the store for good, so the batch below reports it.
    store_.submit(std::move(replace), [](const auto&) {});
  }
  raft::storage::batch sb;
  sb.truncate_from = b.truncate_from;
  sb.entries = std::move(b.entries);
  sb.compaction = b.compact;
  sb.hard = b.hs;
  if (b.compact) stored_snapshot_index_ = b.compact->index;
  store_.submit(std::move(sb), completion(std::move(done)));
}

void lmdb_log_store::write_snapshot(raft::snapshot_meta meta,
                                    std::shared_ptr<const std::string> data,
                                    raft::store_completion done) {
  // The replica writes one snapshot at a time: the previous thread has finished its work.
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  snapshot_thread_ =
      std::thread([this, meta = std::move(meta), data = std::move(data), done = std::move(done)] {
        auto err = store_.write_snapshot(meta, *data);
        done(err ? err.message : std::string());
      });
}

namespace {

class stream_writer final : public raft::snapshot_writer {
 public:
  stream_writer(raft::storage::lmdb_store& store,
                std::unique_ptr<raft::storage::snapshot_stream> stream)
      : store_(store), stream_(std::move(stream)) {}

  bool append(std::string_view chunk) override { return stream_->append(chunk); }
  std::string complete() override {
    auto err = stream_->complete();
    return err.ok() ? std::string() : err.message;
  }
  std::string adopt() override {
    if (auto err = stream_->make_durable(); !err.ok()) return err.message;
    // The bytes were written by another process (or this one): learn the size from disk.
    auto info = stream_->info();
    std::error_code ec;
    const auto file_bytes = std::filesystem::file_size(info.path, ec);
    if (ec) return "snapshot file " + info.path.string() + ": " + ec.message();
    if (info.data_bytes == 0) {
      auto head = raft::storage::encode_snapshot_header(info.meta, 0, 0).size();
      info.data_bytes = file_bytes > head ? file_bytes - head : 0;
    }
    store_.snapshot_streamed(std::move(info));
    return {};
  }

 private:
  raft::storage::lmdb_store& store_;
  std::unique_ptr<raft::storage::snapshot_stream> stream_;
};

// The follower's side of a snapshot transfer: the chunks go into a snapshot_stream's temp
// file as they arrive; the restore reads a map of it; install() (on the writer thread)
// writes the header, syncs and renames it, and records it as the latest snapshot file.
//
// The writes happen on a thread of the receiver's own: append() on the event loop only
// queues a copy of the chunk, so a disk that is slow to take the bytes (the kernel holds
// back a writer once too much of the page cache is dirty) does not stall the loop. The
// queue is bounded (queue_limit): a disk that falls that far behind makes append() wait,
// which is the backpressure the leader's window then feels. A write error is returned by
// the next append(), view() or install(); view() and install() wait for the queue first.
class stream_receiver final : public raft::snapshot_receiver {
 public:
  stream_receiver(raft::storage::lmdb_store& store,
                  std::unique_ptr<raft::storage::snapshot_stream> stream)
      : store_(store), stream_(std::move(stream)), writer_([this] { write_queued(); }) {}
  ~stream_receiver() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    writer_.join();
  }

  std::string append(std::string_view chunk) override {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return queued_bytes_ < queue_limit || !error_.empty(); });
    if (!error_.empty()) return error_;
    queue_.emplace_back(chunk);
    queued_bytes_ += chunk.size();
    changed_.notify_all();
    return {};
  }
  std::string view(std::string_view& out) override {
    if (auto err = drain(); !err.empty()) return err;
    auto mapped = stream_->map_data();
    if (!mapped.ok()) return mapped.err.message;
    out = mapped.value;
    return {};
  }
  std::string install() override {
    if (auto err = drain(); !err.empty()) return err;
    if (auto err = stream_->finish(); !err.ok()) return err.message;
    store_.snapshot_streamed(stream_->info());
    return {};
  }

 private:
  static constexpr std::size_t queue_limit = std::size_t{8} << 20;

  // Waits until every queued chunk is written; the first write error, or empty.
  std::string drain() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return queue_.empty() || !error_.empty(); });
    return error_;
  }

  void write_queued() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (stopping_) return;  // what is still queued goes with the temp file
      // The front chunk stays queued while it is written, so drain() waits for it too
      // (append() only adds at the back: the reference stays valid).
      const std::string& chunk = queue_.front();
      const bool failed_before = !error_.empty();
      lock.unlock();
      const bool ok = !failed_before && stream_->append(chunk);
      lock.lock();
      if (!ok && !failed_before) {
        // The stream keeps its first error, which finish() returns (without renaming: the
        // temp file goes when the receiver does).
        auto err = stream_->finish();
        error_ = err.ok() ? std::string("snapshot write failed") : err.message;
      }
      queued_bytes_ -= chunk.size();
      queue_.pop_front();
      changed_.notify_all();
    }
  }

  raft::storage::lmdb_store& store_;
  std::unique_ptr<raft::storage::snapshot_stream> stream_;
  std::mutex mutex_;
  std::condition_variable changed_;  // queue, error or stopping changed
  std::deque<std::string> queue_;
  std::size_t queued_bytes_ = 0;
  std::string error_;  // the first write error, for good
  bool stopping_ = false;
  std::thread writer_;  // last: started once everything above exists
};

// A stream_writer or stream_receiver over a new snapshot_stream for meta; null with `error`
// set if the temp file cannot be created.
template <typename T>
std::unique_ptr<T> open_stream_as(raft::storage::lmdb_store& store, const raft::snapshot_meta& meta,
                                  std::string& error) {
  auto opened = store.open_snapshot_stream(meta);
  if (!opened.ok()) {
    error = opened.err.message;
    return nullptr;
  }
  error.clear();
  return std::make_unique<T>(store, std::move(opened.value));
}

}  // namespace

std::unique_ptr<raft::snapshot_receiver> lmdb_log_store::open_snapshot_receiver(
    const raft::snapshot_meta& meta, std::string& error) {
  return open_stream_as<stream_receiver>(store_, meta, error);
}

std::unique_ptr<raft::snapshot_writer> lmdb_log_store::open_snapshot_writer(
    const raft::snapshot_meta& meta, std::string& error) {
  return open_stream_as<stream_writer>(store_, meta, error);
}

std::unique_ptr<raft::snapshot_source> lmdb_log_store::open_snapshot(
    const raft::snapshot_meta& meta, std::string& error) {
  // Every snapshot file lives beside the latest one; the core asks for the one it compacted
  // to, which a newer file may already have joined.
  const auto latest = store_.latest_snapshot();
  if (!latest) {
    error = "no snapshot file in storage";
    return nullptr;
  }
  const auto path = latest->path.parent_path() / raft::storage::snapshot_file_name(meta);
  auto opened = raft::storage::snapshot_file_source::open(path, meta);
  if (!opened.ok()) {
    error = opened.err.message;
    return nullptr;
  }
  return std::move(opened.value);
}

std::string lmdb_log_store::read_entries(raft::index_t first, raft::index_t last,
                                         std::vector<raft::entry>& out) {
  auto read = store_.read_entries(first, last);
  if (!read.ok()) {
    out.clear();
    return read.err.message;
  }
  out = std::move(read.value);
  return {};
}

void lmdb_log_store::close() {
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
}

}  // namespace app
