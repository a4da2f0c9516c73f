// An in-memory raft::log_store for tests and the simulator (LogCabin's MemoryLog beside the
// real one): the same batch rules as the LMDB store, with durability under the test's control.
//
// Writes never complete inside submit()/write_snapshot(): each is queued with a due time
// (the owner's clock plus a delay the owner chooses) and completes, in submission order, when
// the owner calls complete_due(now) or complete_all(). crash() throws away every write not
// yet completed, without running its completion, exactly what a power cut does to writes
// the disk had not acknowledged; load() then returns what a restarted node would find.
//
// A snapshot received from the leader is assembled by a receiver of this store (a string
// standing in for the temp file, open_snapshot_receiver) unless the owner turns receivers
// off, so tests cover both of the replica's ways; persist_batch::install makes it the
// newest file, like install->data.
//
// Snapshot files are a second queue, not ordered with batches (production writes them on
// another thread). open_snapshot() serves the few newest durable files (as the LMDB store
// serves files a stream still reads after a newer one replaced them). The newest durable file wins
// at load(); if it is newer than the recorded snapshot (a crash between the file and its compaction
// batch), load() completes the compaction as the LMDB store does.
//
// A batch that breaks the log invariant (a hole, an overwrite without truncate_from, a
// truncation below the snapshot) fails the store for good, like the LMDB store: the
// simulator reports it as a drive-loop bug. fail() injects a storage failure.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "base/crc32c.h"
#include "raft/interfaces.h"

namespace raft::storage {

class memory_store final : public raft::log_store {
 public:
  // What survives a crash.
  struct durable_state {
    hard_state hs;
    std::optional<snapshot_meta> snapshot;  // recorded log base
    std::map<std::uint64_t, entry> log;     // index -> entry, after the base
    // Newest durable snapshot file.
    std::optional<snapshot_meta> file_meta;
    std::shared_ptr<const std::string> file_data;
  };

  // now: the owner's clock; delay: how long the next write takes (default 0).
  explicit memory_store(std::function<std::int64_t()> now = {},
                        std::function<std::int64_t()> delay = {})
      : now_(std::move(now)), delay_(std::move(delay)) {}

  void submit(persist_batch b, store_completion done) override {
    ++batches_submitted_;
    const std::int64_t at = due(batches_);
    batches_.push_back(pending_batch{at, std::move(b), std::move(done)});
  }

  void write_snapshot(snapshot_meta meta, std::shared_ptr<const std::string> data,
                      store_completion done) override {
    const std::int64_t at = due(files_);
    files_.push_back(pending_file{at, std::move(meta), std::move(data), std::move(done)});
  }

  std::unique_ptr<raft::snapshot_source> open_snapshot(const snapshot_meta& meta,
                                                       std::string& error) override {
    auto it = served_.find(meta.index.value);
    if (it == served_.end() || it->second.first != meta) {
      error = "no durable snapshot at index " + std::to_string(meta.index.value);
      return nullptr;
    }
    ++snapshots_opened_;
    return std::make_unique<source>(it->second.second);
  }
  std::string read_entries(index_t first, index_t last, std::vector<entry>& out) override {
    out.clear();
    for (index_t i = first; i <= last; ++i) {
      auto it = d_.log.find(i.value);
      if (it == d_.log.end()) return "entry " + std::to_string(i.value) + " is not stored";
      out.push_back(it->second);
    }
    ++entries_read_back_;
    return {};
  }
  std::unique_ptr<raft::snapshot_receiver> open_snapshot_receiver(const snapshot_meta& meta,
                                                                  std::string& error) override {
    (void)meta;
    error.clear();
    if (!receivers_) return nullptr;
    ++receivers_opened_;
    return std::make_unique<receiver>(receiver_failure_);
  }
  // Whether open_snapshot_receiver offers one (default yes).
  void offer_receivers(bool on) { receivers_ = on; }
  // While why is not empty, every receiver's append fails with it (a full disk under the
  // temp file); receivers handed out earlier too.
  void fail_receivers(std::string why) { *receiver_failure_ = std::move(why); }
  // Receivers handed out, and those whose snapshot a batch installed.
  std::uint64_t receivers_opened() const { return receivers_opened_; }
  std::uint64_t receivers_installed() const { return receivers_installed_; }
  std::uint64_t snapshots_opened() const { return snapshots_opened_; }
  // read_entries calls that succeeded: appends whose released payloads were read back.
  std::uint64_t entries_read_back() const { return entries_read_back_; }
  // Batches handed to submit() so far: each is one durable write (one fsync in production).
  std::uint64_t batches_submitted() const { return batches_submitted_; }

  // Completes every write due by `now`, in order; returns how many completed.
  std::size_t complete_due(std::int64_t now) {
    std::size_t n = 0;
    while (!batches_.empty() && batches_.front().at <= now) {
      pending_batch p = std::move(batches_.front());
      batches_.pop_front();
      finish(std::move(p));
      ++n;
    }
    while (!files_.empty() && files_.front().at <= now) {
      pending_file f = std::move(files_.front());
      files_.pop_front();
      finish(std::move(f));
      ++n;
    }
    return n;
  }
  // Completes everything queued, including writes queued by the completions themselves.
  std::size_t complete_all() {
    std::size_t n = 0;
    while (!batches_.empty() || !files_.empty()) n += complete_due(INT64_MAX);
    return n;
  }

  // Loses every write not yet completed; their completions never run.
  void crash() {
    batches_.clear();
    files_.clear();
    served_.clear();
    if (d_.file_meta) serve(*d_.file_meta, d_.file_data);
  }
  // From now on every write fails with `why` (and so does every queued one).
  void fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
  }
  const std::string& error() const { return error_; }
  std::size_t pending() const { return batches_.size() + files_.size(); }
  const durable_state& state() const { return d_; }

  // What a restarted node loads: the hard state, the newest snapshot and the log after it.
  restore_state load() {
    if (d_.file_meta && (!d_.snapshot || d_.file_meta->index > d_.snapshot->index)) {
      // Crash between the snapshot file and its compaction batch: complete it (keep the log
      // after the file only if it agrees with the file at its index, as InstallSnapshot).
      const auto& m = *d_.file_meta;
      auto at = d_.log.find(m.index.value);
      if (at == d_.log.end() || at->second.term != m.term) {
        d_.log.clear();
      } else {
        d_.log.erase(d_.log.begin(), d_.log.upper_bound(m.index.value));
      }
      d_.snapshot = m;
    }
    restore_state rs;
    rs.hs = d_.hs;
    if (d_.snapshot) {
      rs.snapshot = d_.snapshot;
      rs.snapshot_data = d_.file_data;
    }
    for (auto& [i, e] : d_.log) rs.entries.push_back(e);
    return rs;
  }

 private:
  // The bytes of one snapshot, shared (never copied whole).
  class source final : public raft::snapshot_source {
   public:
    explicit source(std::shared_ptr<const std::string> data)
        : data_(std::move(data)), crc_(base::crc32c(*data_)) {}
    std::uint64_t size() const override { return data_->size(); }
    std::uint32_t checksum() const override { return crc_; }
    std::string read(std::uint64_t offset, std::size_t n, std::string& out) override {
      if (offset > data_->size()) return "read past the end of the snapshot";
      out.assign(*data_, offset, n);
      return {};
    }

   private:
    std::shared_ptr<const std::string> data_;
    std::uint32_t crc_;
  };

  // The received bytes in a string (the production store's temp file).
  class receiver final : public raft::snapshot_receiver {
   public:
    explicit receiver(std::shared_ptr<const std::string> failure) : failure_(std::move(failure)) {}
    std::string append(std::string_view chunk) override {
      if (!failure_->empty()) return *failure_;
      bytes_.append(chunk);
      return {};
    }
    std::string view(std::string_view& out) override {
      out = bytes_;
      return {};
    }
    std::string install() override { return {}; }  // apply() takes a copy of the bytes
    const std::string& bytes() const { return bytes_; }

   private:
    std::shared_ptr<const std::string> failure_;
    std::string bytes_;
  };

  void serve(const snapshot_meta& m, std::shared_ptr<const std::string> data) {
    if (!data) return;
    served_[m.index.value] = {m, std::move(data)};
    while (served_.size() > 3) served_.erase(served_.begin());
  }

  struct pending_batch {
    std::int64_t at;
    persist_batch b;
    store_completion done;
  };
  struct pending_file {
    std::int64_t at;
    snapshot_meta meta;
    std::shared_ptr<const std::string> data;
    store_completion done;
  };

  template <typename Q>
  std::int64_t due(const Q& q) const {
    std::int64_t at = (now_ ? now_() : 0) + (delay_ ? delay_() : 0);
    if (!q.empty()) at = std::max(at, q.back().at);  // complete in submission order
    return at;
  }

  index_t base() const { return d_.snapshot ? d_.snapshot->index : index_t{}; }
  index_t last() const { return d_.log.empty() ? base() : d_.log.rbegin()->second.index; }

  // The checks of the LMDB store's batch validation: a caller bug fails the store.
  std::string apply(persist_batch& b) {
    if (b.install) {
      const auto& m = b.install->meta;
      if (m.index < base()) return "invalid batch: installed snapshot below the recorded one";
      std::shared_ptr<const std::string> data = b.install->data;
      if (b.install->file) {
        const auto* r = dynamic_cast<const receiver*>(b.install->file.get());
        if (r == nullptr) return "invalid batch: a received snapshot from another store";
        data = std::make_shared<const std::string>(r->bytes());
        ++receivers_installed_;
      }
      if (!data) return "invalid batch: a received snapshot without its bytes";
      d_.log.clear();
      d_.snapshot = m;
      if (!d_.file_meta || d_.file_meta->index <= m.index) {
        d_.file_meta = m;
        d_.file_data = std::move(data);
        serve(m, d_.file_data);
      }
    }
    if (b.truncate_from) {
      if (*b.truncate_from <= base()) return "invalid batch: truncation below the snapshot";
      d_.log.erase(d_.log.lower_bound(b.truncate_from->value), d_.log.end());
    }
    for (auto& e : b.entries) {
      if (e.index != last() + 1) {
        return "invalid batch: entry " + std::to_string(e.index.value) + " after last " +
               std::to_string(last().value);
      }
      const term_t prev = d_.log.empty() ? (d_.snapshot ? d_.snapshot->term : term_t{})
                                         : d_.log.rbegin()->second.term;
      if (e.term.value == 0 || e.term < prev) return "invalid batch: terms decrease";
      d_.log[e.index.value] = e;
    }
    if (b.compact) {
      const auto& m = *b.compact;
      if (m.index < base()) return "invalid batch: compaction below the snapshot";
      if (!d_.file_meta || d_.file_meta->index < m.index)
        return "invalid batch: compaction without its snapshot file";
      auto at = d_.log.find(m.index.value);
      if (at != d_.log.end() && at->second.term != m.term)
        return "invalid batch: compaction term differs from the log";
      d_.log.erase(d_.log.begin(), d_.log.upper_bound(m.index.value));
      d_.snapshot = m;
    }
    if (b.hs) d_.hs = *b.hs;
    return {};
  }

  void finish(pending_batch p) {
    if (error_.empty()) {
      std::string err = apply(p.b);
      if (!err.empty()) error_ = err;
    }
    if (p.done) p.done(error_);
  }

  void finish(pending_file f) {
    if (error_.empty() && (!d_.file_meta || d_.file_meta->index < f.meta.index)) {
      d_.file_meta = f.meta;
      d_.file_data = f.data;
      serve(f.meta, f.data);
    }
    if (f.done) f.done(error_);
  }

  std::function<std::int64_t()> now_;
  std::function<std::int64_t()> delay_;
  std::deque<pending_batch> batches_;
  std::deque<pending_file> files_;
  durable_state d_;
  std::string error_;
  std::map<std::uint64_t, std::pair<snapshot_meta, std::shared_ptr<const std::string>>> served_;
  bool receivers_ = true;
  std::shared_ptr<std::string> receiver_failure_ = std::make_shared<std::string>();
  std::uint64_t receivers_opened_ = 0;
  std::uint64_t receivers_installed_ = 0;
  std::uint64_t snapshots_opened_ = 0;
  std::uint64_t entries_read_back_ = 0;
  std::uint64_t batches_submitted_ = 0;
};

}  // namespace raft::storage
