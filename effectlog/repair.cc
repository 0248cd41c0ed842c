#include "effectlog/repair.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string_view>

#include "common/unique_fd.h"
#include "effectlog/log_files.h"

namespace lazarus::effectlog {
namespace {

Status SyncDir(const std::string& dir, SyncPolicy& sync) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open " + dir);
  if (int err = sync.SyncDirectory(fd.get()); err != 0) return ErrnoStatus("fsync " + dir, err);
  return Status::Ok();
}

// Zeroes [from, to) of the file, keeping its blocks allocated (no hole a later write
// through a mapping could fail to fill).
Status ZeroRange(int fd, uint64_t from, uint64_t to, const std::string& what) {
  if (to <= from) return Status::Ok();
  if (::fallocate(fd, FALLOC_FL_ZERO_RANGE, static_cast<off_t>(from), static_cast<off_t>(to - from)) == 0)
    return Status::Ok();
  static const char zeros[65536] = {};
  for (uint64_t off = from; off < to;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof zeros, to - off));
    ssize_t w = ::pwrite(fd, zeros, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("zero " + what);
    }
    off += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

Status SetTailHint(int fd, uint64_t tail, const std::string& what) {
  if (::pwrite(fd, &tail, sizeof tail, offsetof(SegmentHeader, tail)) != sizeof tail)
    return ErrnoStatus("write tail of " + what);
  return Status::Ok();
}

}  // namespace

StatusOr<RepairReport> RepairTornTail(const std::string& dir, const RepairOptions& options, SyncPolicy& sync) {
  auto validated = ValidateLog(dir);
  if (!validated.ok()) return validated.status();
  RepairReport report;
  report.found = validated->end;
  const ReadEnd& end = report.found;
  const auto posname = [](LogPosition p) { return std::to_string(p.segment) + ":" + std::to_string(p.offset); };
  auto control = ControlFile::Open(dir, /*writable=*/true);
  if (!control.ok()) return control.status();
  if (end.kind == EndKind::kCorrupt) {
    const LogPosition durable = control->durable_upto();
    if (!options.after_power_loss || end.position < durable)
      return Status(Code::kDataLoss, "effect log " + dir + ": damage in the middle at " + posname(end.position) +
                                         " (" + end.problem + "), valid records follow it" +
                                         (options.after_power_loss ? " and it lies below the durable mark " + posname(durable) : "") +
                                         "; not cutting");
    report.dropped_valid_records = true;
  }
  const uint32_t segment_size = control->segment_size();
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();

  // Temporaries of segment creations a crash interrupted (never linked: never part of the log).
  if (std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir); d) {
    while (const dirent* e = ::readdir(d.get())) {
      const std::string_view name = e->d_name;
      if (name.starts_with(kSegmentPrefix) && name.find(".tmp-") != std::string_view::npos)
        (void)::unlinkat(::dirfd(d.get()), e->d_name, 0);
    }
  }

  LogPosition cut = end.position;
  const bool torn = end.kind == EndKind::kTornTail || end.kind == EndKind::kCorrupt;
  if (torn && cut.offset == 0) cut.offset = kSegmentHeaderSize;  // the whole segment goes
  bool removed = false;
  for (uint64_t n : *segments) {
    // A torn segment header: the segment is removed and made again, empty.
    const bool drop = n > cut.segment || (torn && n == cut.segment && end.position.offset == 0);
    if (!drop) continue;
    const std::string path = SegmentPath(dir, n);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) report.bytes_cut += static_cast<uint64_t>(st.st_size);
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("remove " + path);
    ++report.segments_removed;
    removed = true;
  }
  if (removed) LAZARUS_RETURN_IF_ERROR(SyncDir(dir, sync));

  const std::string path = SegmentPath(dir, cut.segment);
  const bool exists = ::access(path.c_str(), F_OK) == 0;
  const bool log_empty = !exists && (segments->empty() || segments->front() >= cut.segment);
  if (exists || log_empty) {
    // OpenOrCreateSegment makes a removed or missing segment again when nothing precedes it.
    auto fd = OpenOrCreateSegment(dir, cut.segment, segment_size, control->incarnation(), /*durable=*/true, sync);
    if (!fd.ok()) return fd.status();
    if (torn && end.position.offset != 0) {
      report.bytes_cut += segment_size - cut.offset;
      LAZARUS_RETURN_IF_ERROR(ZeroRange(fd->get(), cut.offset, segment_size, path));
    }
    LAZARUS_RETURN_IF_ERROR(SetTailHint(fd->get(), cut.offset, path));
    if (int err = sync.SyncSegment(fd->get(), cut.segment); err != 0) return ErrnoStatus("fdatasync " + path, err);
  }
  // Writers roll over to at least active_segment: it must not point past the new end.
  Atomic(control->block()->active_segment).store(exists || log_empty ? cut.segment : cut.segment - 1);
  report.changed = torn || removed;
  report.end = cut;
  return report;
}

StatusOr<CompactReport> Compact(const std::string& dir, LogPosition oldest_needed, SyncPolicy& sync) {
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  CompactReport report;
  if (segments->empty()) return Status(Code::kDataLoss, "effect log " + dir + " has no segment");
  const uint64_t newest = segments->back();
  for (uint64_t n : *segments) {
    if (n >= oldest_needed.segment || n == newest) continue;
    const std::string path = SegmentPath(dir, n);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) report.bytes_removed += static_cast<uint64_t>(st.st_size);
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("remove " + path);
    ++report.segments_removed;
  }
  report.first_segment = std::max(std::min(oldest_needed.segment, newest), segments->front());
  if (report.segments_removed > 0) LAZARUS_RETURN_IF_ERROR(SyncDir(dir, sync));
  return report;
}

StatusOr<std::optional<uint64_t>> OldestMappedSegment(pid_t pid, const std::string& dir) {
  char real[PATH_MAX];
  if (::realpath(dir.c_str(), real) == nullptr) return ErrnoStatus("resolve " + dir);
  const std::string prefix = std::string(real) + "/";
  const std::string maps_path = "/proc/" + std::to_string(pid) + "/maps";
  std::ifstream maps(maps_path);
  if (!maps) return ErrnoStatus("open " + maps_path);
  std::optional<uint64_t> oldest;
  std::string line;
  while (std::getline(maps, line)) {
    const size_t at = line.find(prefix);
    if (at == std::string::npos) continue;
    std::string name = line.substr(at + prefix.size());
    if (const size_t del = name.find(" (deleted)"); del != std::string::npos) name.resize(del);
    if (auto n = ParseSegmentFileName(name); n && (!oldest || *n < *oldest)) oldest = *n;
  }
  return oldest;
}

}  // namespace lazarus::effectlog
