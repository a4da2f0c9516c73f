#include "raft/storage/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/bytes.h"
#include "base/crc32c.h"
#include "raft/storage/file_io.h"
#include "raft/storage/records.h"

namespace raft::storage {

namespace fs = std::filesystem;

namespace {

constexpr std::uint8_t has_truncate = 1, has_compaction = 2, has_hard = 4;

fs::path file_path(const fs::path& dir, int n) {
  return dir / ("journal-" + std::to_string(n));
}

// The batches of a record body; nullopt when it is malformed.
std::optional<std::vector<batch>> decode_body(std::string_view body) {
  base::byte_reader r(body);
  const auto n = r.u32();
  if (!n || *n > body.size()) return std::nullopt;
  std::vector<batch> out(*n);
  for (batch& b : out) {
    const auto flags = r.u8();
    if (!flags) return std::nullopt;
    if (*flags & has_truncate) {
      const auto t = r.u64();
      if (!t) return std::nullopt;
      b.truncate_from = index_t{*t};
    }
    const auto count = r.u32();
    if (!count || *count > r.remaining()) return std::nullopt;
    b.entries.reserve(*count);
    for (std::uint32_t i = 0; i < *count; ++i) {
      const auto rec = r.bytes();
      if (!rec || rec->size() < entry_header_bytes) return std::nullopt;
      // The entry's own index (bytes 16-23) is its key; decode_entry checks it again.
      const index_t at{base::load_le64(rec->data() + 16)};
      auto e = decode_entry(at, *rec);
      if (!e.ok()) return std::nullopt;
      b.entries.push_back(std::move(e.value));
    }
    if (*flags & has_compaction) {
      const auto rec = r.bytes();
      if (!rec) return std::nullopt;
      auto m = decode_snapshot_record(*rec);
      if (!m.ok()) return std::nullopt;
      b.compaction = std::move(m.value);
    }
    if (*flags & has_hard) {
      const auto rec = r.bytes();
      if (!rec) return std::nullopt;
      auto h = decode_hard_state(*rec);
      if (!h.ok()) return std::nullopt;
      b.hard = h.value;
    }
  }
  if (!r.at_end()) return std::nullopt;
  return out;
}

}  // namespace

void encode_journal_record(std::uint64_t seq, std::span<const batch> batches, std::string& out) {
  const std::size_t start = out.size();
  base::byte_writer w(out);
  w.u32(journal_magic);
  w.u32(0);  // crc, filled below
  w.u32(0);  // body_len, filled below
  w.u64(seq);
  const std::size_t body_start = out.size();
  w.u32(static_cast<std::uint32_t>(batches.size()));
  std::string scratch;
  for (const batch& b : batches) {
    w.u8(static_cast<std::uint8_t>((b.truncate_from ? has_truncate : 0) |
                                   (b.compaction ? has_compaction : 0) | (b.hard ? has_hard : 0)));
    if (b.truncate_from) w.u64(b.truncate_from->value);
    w.u32(static_cast<std::uint32_t>(b.entries.size()));
    for (const entry& e : b.entries) {
      encode_entry(e, scratch);
      w.bytes(scratch);
    }
    if (b.compaction) w.bytes(encode_snapshot_record(*b.compaction));
    if (b.hard) w.bytes(encode_hard_state(*b.hard));
  }
  base::store_le32(out.data() + start + 8, static_cast<std::uint32_t>(out.size() - body_start));
  base::store_le32(out.data() + start + 4, base::crc32c(std::string_view(out).substr(start + 8)));
}

std::vector<journal_record> scan_journal(std::string_view file, const std::string& name,
                                         std::vector<std::string>* notes) {
  std::vector<journal_record> out;
  std::size_t at = 0;
  while (file.size() - at >= journal_header_bytes) {
    const char* p = file.data() + at;
    if (base::load_le32(p) != journal_magic) break;
    const std::uint32_t crc = base::load_le32(p + 4);
    const std::uint64_t body_len = base::load_le32(p + 8);
    const std::uint64_t seq = base::load_le64(p + 12);
    if (body_len > file.size() - at - journal_header_bytes) break;
    const std::string_view covered(p + 8, 12 + body_len);
    if (base::crc32c(covered) != crc) break;
    if (!out.empty() && seq != out.back().seq + 1) break;  // left from the file's earlier use
    auto batches = decode_body(covered.substr(12));
    if (!batches) {
      // The checksum matched, so this is what was written: a format this build cannot read.
      if (notes) notes->push_back(name + ": record " + std::to_string(seq) + " is malformed");
      break;
    }
    out.push_back(journal_record{seq, std::move(*batches)});
    at += journal_header_bytes + body_len;
  }
  return out;
}

result<std::vector<journal_record>> records_after(std::uint64_t applied,
                                                  std::vector<journal_record> a,
                                                  std::vector<journal_record> b) {
  std::vector<journal_record> all;
  for (auto* v : {&a, &b})
    for (auto& r : *v)
      if (r.seq > applied) all.push_back(std::move(r));
  std::sort(all.begin(), all.end(),
            [](const journal_record& x, const journal_record& y) { return x.seq < y.seq; });
  std::uint64_t expect = applied + 1;
  for (const auto& r : all) {
    if (r.seq != expect)
      return {{},
              make_error(errc::corrupt, "journal record " + std::to_string(expect) +
                                            " is missing but record " + std::to_string(r.seq) +
                                            " is present: acknowledged writes may be lost")};
    ++expect;
  }
  return {std::move(all), {}};
}

journal_files::~journal_files() {
  for (int fd : fd_)
    if (fd >= 0) ::close(fd);
}

std::vector<std::string> journal_files::missing_or_short(const fs::path& dir,
                                                         std::uint64_t file_bytes) {
  std::vector<std::string> out;
  for (int n = 0; n < 2; ++n) {
    const fs::path p = file_path(dir, n);
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    if (ec == std::errc::no_such_file_or_directory) {
      out.push_back(p.string() + " is missing");
    } else if (!ec && size == 0) {
      out.push_back(p.string() + " is empty");
    } else if (!ec && size < file_bytes) {
      out.push_back(p.string() + " is cut short (" + std::to_string(size) + " of " +
                    std::to_string(file_bytes) + " bytes)");
    }
  }
  return out;
}

result<std::unique_ptr<journal_files>> journal_files::open(const fs::path& dir,
                                                           std::uint64_t file_bytes, bool fsync) {
  std::unique_ptr<journal_files> j(new journal_files());
  j->file_bytes_ = file_bytes;
  j->fsync_ = fsync;
  bool created = false;
  for (int n = 0; n < 2; ++n) {
    j->path_[n] = file_path(dir, n);
    const int fd = ::open(j->path_[n].c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return {nullptr, errno_error(errno, "open " + j->path_[n].string())};
    j->fd_[n] = fd;
    const off_t size = ::lseek(fd, 0, SEEK_END);
    if (size < 0) return {nullptr, errno_error(errno, "size of " + j->path_[n].string())};
    if (static_cast<std::uint64_t>(size) >= file_bytes) continue;
    // Written zeros, not a sparse file or fallocate()d extents: an fdatasync after
    // overwriting blocks that exist has only data to flush, no size or extent change.
    static const std::string zeros(1 << 20, '\0');
    for (std::uint64_t at = static_cast<std::uint64_t>(size); at < file_bytes;) {
      const std::size_t len =
          static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), file_bytes - at));
      const ssize_t w = ::pwrite(fd, zeros.data(), len, static_cast<off_t>(at));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        return {nullptr, errno_error(w < 0 ? errno : ENOSPC, "write " + j->path_[n].string())};
      at += static_cast<std::uint64_t>(w);
    }
    if (fsync && ::fdatasync(fd) != 0)
      return {nullptr, errno_error(errno, "sync " + j->path_[n].string())};
    created = true;
  }
  if (created && fsync) {
    if (auto err = fsync_dir(dir); !err.ok()) return {nullptr, err};
  }
  return {std::move(j), {}};
}

result<std::vector<journal_record>> journal_files::recover(std::uint64_t applied) {
  std::vector<journal_record> scanned[2];
  for (int n = 0; n < 2; ++n) {
    auto content = read_file(path_[n]);
    if (!content.ok()) return {{}, content.err};
    std::vector<std::string> notes;
    scanned[n] = scan_journal(content.value, path_[n].string(), &notes);
    if (!notes.empty()) return {{}, make_error(errc::bad_format, notes.front())};
  }
  for (int n = 0; n < 2; ++n) last_seq_[n] = scanned[n].empty() ? 0 : scanned[n].back().seq;
  return records_after(applied, std::move(scanned[0]), std::move(scanned[1]));
}

error journal_files::append(std::uint64_t seq, std::string_view record) {
  const int fd = fd_[active_];
  std::string_view rest = record;
  std::uint64_t at = offset_;
  while (!rest.empty()) {
    const ssize_t w = ::pwrite(fd, rest.data(), rest.size(), static_cast<off_t>(at));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return errno_error(w < 0 ? errno : ENOSPC, "write " + path_[active_].string());
    rest.remove_prefix(static_cast<std::size_t>(w));
    at += static_cast<std::uint64_t>(w);
  }
  if (fsync_ && ::fdatasync(fd) != 0) return errno_error(errno, "sync " + path_[active_].string());
  offset_ = at;
  last_seq_[active_] = seq;
  return {};
}

void journal_files::switch_files() {
  active_ = 1 - active_;
  offset_ = 0;
}

}  // namespace raft::storage
