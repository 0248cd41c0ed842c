#include "effectlog/log_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <memory>

#include "common/fs_util.h"

namespace lazarus::effectlog {
namespace {

class RealSync final : public SyncPolicy {
 public:
  int SyncSegment(int fd, uint64_t) override { return ::fdatasync(fd) == 0 ? 0 : errno; }
  int SyncDirectory(int dir_fd) override { return ::fsync(dir_fd) == 0 ? 0 : errno; }
};

Status WriteAllAt(int fd, const void* data, size_t size, off_t offset, const std::string& what) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write " + what);
    }
    p += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return Status::Ok();
}

// Allocates every block of the file now, so that writes through the mapping never need one.
Status Allocate(int fd, uint32_t size, const std::string& what) {
  int err = ::posix_fallocate(fd, 0, size);
  if (err == EOPNOTSUPP || err == EINVAL) {  // e.g. a file system without fallocate
    if (::ftruncate(fd, size) != 0) return ErrnoStatus("resize " + what);
    return Status::Ok();
  }
  if (err != 0) return ErrnoStatus("allocate " + std::to_string(size) + " bytes for " + what, err);
  return Status::Ok();
}

}  // namespace

SyncPolicy& RealSyncPolicy() {
  static RealSync policy;
  return policy;
}

std::string SegmentFileName(uint64_t number) {
  char name[sizeof kSegmentPrefix + 16];
  std::snprintf(name, sizeof name, "%s%016" PRIx64, kSegmentPrefix, number);
  return name;
}

std::string SegmentPath(const std::string& dir, uint64_t number) { return dir + "/" + SegmentFileName(number); }

std::optional<uint64_t> ParseSegmentFileName(std::string_view name) {
  constexpr size_t prefix = sizeof kSegmentPrefix - 1;
  if (name.size() != prefix + 16 || name.substr(0, prefix) != kSegmentPrefix) return std::nullopt;
  uint64_t n = 0;
  for (char c : name.substr(prefix)) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else return std::nullopt;
    n = n << 4 | static_cast<uint64_t>(digit);
  }
  return n;
}

StatusOr<std::vector<uint64_t>> ListSegments(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return ErrnoStatus("open effect log directory " + dir);
  std::vector<uint64_t> out;
  errno = 0;
  while (const dirent* e = ::readdir(d.get())) {
    if (auto n = ParseSegmentFileName(e->d_name)) out.push_back(*n);
  }
  if (errno != 0) return ErrnoStatus("list effect log directory " + dir);
  std::sort(out.begin(), out.end());
  return out;
}

Status CheckControlBlock(const ControlBlock& b) {
  if (std::memcmp(b.magic, kControlMagic, sizeof kControlMagic) != 0)
    return Status(Code::kDataLoss, "not an effect log control file (bad magic)");
  if (XXH3_64bits(&b, kControlChecksummed) != b.create_checksum)
    return Status(Code::kDataLoss, "effect log control file: header checksum mismatch");
  if (b.min_reader_version > kFormatVersion)
    return Status(Code::kFailedPrecondition, "effect log format " + std::to_string(b.format_version) +
                                                 " needs a reader of version " + std::to_string(b.min_reader_version) +
                                                 " (this is " + std::to_string(kFormatVersion) + ")");
  if (b.segment_size < kMinSegmentSize || b.segment_size > kMaxSegmentSize || b.segment_size % kPageSize != 0)
    return Status(Code::kDataLoss, "effect log control file: bad segment size " + std::to_string(b.segment_size));
  return Status::Ok();
}

Status CheckSegmentHeader(const SegmentHeader& h, uint64_t number, uint32_t segment_size) {
  const std::string name = SegmentFileName(number);
  if (std::memcmp(h.magic, kSegmentMagic, sizeof kSegmentMagic) != 0)
    return Status(Code::kDataLoss, name + ": not an effect log segment (bad magic)");
  if (XXH3_64bits(&h, kSegmentChecksummed) != h.header_checksum)
    return Status(Code::kDataLoss, name + ": segment header checksum mismatch");
  if (h.min_reader_version > kFormatVersion)
    return Status(Code::kFailedPrecondition, name + ": needs a reader of version " + std::to_string(h.min_reader_version));
  if (h.segment_number != number)
    return Status(Code::kDataLoss, name + ": header says segment " + std::to_string(h.segment_number));
  if (h.segment_size != segment_size || h.header_size != kSegmentHeaderSize)
    return Status(Code::kDataLoss, name + ": segment size " + std::to_string(h.segment_size) + " instead of " +
                                       std::to_string(segment_size));
  return Status::Ok();
}

namespace {

// The files of a log belong to the owner of its directory: the daemon (root) creates
// segments ahead for a job that runs as its user, and that job must open them.
void MatchDirectoryOwner(int fd, const std::string& dir) {
  if (::geteuid() != 0) return;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && st.st_uid != 0) (void)!::fchown(fd, st.st_uid, st.st_gid);
}

}  // namespace

Status CreateLog(const std::string& dir, const LogOptions& options, SyncPolicy& sync) {
  if (options.segment_size < kMinSegmentSize || options.segment_size > kMaxSegmentSize ||
      options.segment_size % kPageSize != 0)
    return Status(Code::kInvalidArgument, "effect log segment size must be a multiple of 4096 between " +
                                              std::to_string(kMinSegmentSize) + " and " + std::to_string(kMaxSegmentSize));
  if (!ParseDurabilityMode(DurabilityModeName(options.durability)))
    return Status(Code::kInvalidArgument, "unknown durability mode");
  if (options.group_interval_ms == 0) return Status(Code::kInvalidArgument, "group interval must be at least 1 ms");
  LAZARUS_RETURN_IF_ERROR(MakeDirs(dir));
  const std::string control_path = dir + "/" + kControlFileName;
  if (::access(control_path.c_str(), F_OK) == 0)
    return Status(Code::kAlreadyExists, "an effect log already exists in " + dir);

  ControlBlock b{};
  std::memcpy(b.magic, kControlMagic, sizeof b.magic);
  b.format_version = kFormatVersion;
  b.min_reader_version = kMinReaderVersion;
  b.segment_size = options.segment_size;
  b.durability = static_cast<uint32_t>(options.durability);
  b.group_interval_ms = options.group_interval_ms;
  b.create_checksum = XXH3_64bits(&b, kControlChecksummed);
  b.incarnation = 1;
  // Segment 0 first: a control file is the sign of a complete log.
  auto seg = OpenOrCreateSegment(dir, 0, options.segment_size, 1, /*durable=*/true, sync);
  if (!seg.ok()) return seg.status();
  LAZARUS_RETURN_IF_ERROR(WriteFileAtomic(control_path, std::string_view(reinterpret_cast<const char*>(&b), sizeof b)));
  UniqueFd control(::open(control_path.c_str(), O_RDWR | O_CLOEXEC));
  if (control) MatchDirectoryOwner(control.get(), dir);
  return Status::Ok();
}

StatusOr<UniqueFd> OpenOrCreateSegment(const std::string& dir, uint64_t number, uint32_t segment_size,
                                       uint64_t incarnation, bool durable, SyncPolicy& sync) {
  const std::string path = SegmentPath(dir, number);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (fd) return fd;
  if (errno != ENOENT) return ErrnoStatus("open effect log segment " + path);

  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(::syscall(SYS_gettid));
  fd.reset(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return ErrnoStatus("create effect log segment " + tmp);
  MatchDirectoryOwner(fd.get(), dir);
  SegmentHeader h{};
  std::memcpy(h.magic, kSegmentMagic, sizeof h.magic);
  h.format_version = kFormatVersion;
  h.min_reader_version = kMinReaderVersion;
  h.segment_number = number;
  h.segment_size = segment_size;
  h.header_size = kSegmentHeaderSize;
  h.incarnation = incarnation;
  h.header_checksum = XXH3_64bits(&h, kSegmentChecksummed);
  h.tail = kSegmentHeaderSize;
  Status st = Allocate(fd.get(), segment_size, tmp);
  if (st.ok()) st = WriteAllAt(fd.get(), &h, sizeof h, 0, tmp);
  if (st.ok() && durable) {
    if (int err = sync.SyncSegment(fd.get(), number); err != 0) st = ErrnoStatus("fdatasync " + tmp, err);
  }
  if (st.ok() && ::link(tmp.c_str(), path.c_str()) != 0) {
    if (errno == EEXIST) {  // another process created it first: use theirs
      ::unlink(tmp.c_str());
      UniqueFd theirs(::open(path.c_str(), O_RDWR | O_CLOEXEC));
      if (!theirs) return ErrnoStatus("open effect log segment " + path);
      return theirs;
    }
    st = ErrnoStatus("link " + tmp + " to " + path);
  }
  ::unlink(tmp.c_str());
  if (!st.ok()) return st;
  // Reopen by the final name: a mapping made through `fd` would be named after the
  // unlinked temporary in /proc/PID/maps, and CRIU would dump it as a deleted file.
  fd.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open effect log segment " + path);
  if (durable) {
    UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd) return ErrnoStatus("open " + dir);
    if (int err = sync.SyncDirectory(dfd.get()); err != 0) return ErrnoStatus("fsync " + dir, err);
  }
  return fd;
}

StatusOr<ControlFile> ControlFile::Open(const std::string& dir, bool writable) {
  const std::string path = dir + "/" + kControlFileName;
  UniqueFd fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open effect log control file " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path);
  if (st.st_size != kControlSize)
    return Status(Code::kDataLoss, path + ": " + std::to_string(st.st_size) + " bytes instead of " +
                                       std::to_string(kControlSize));
  void* p = ::mmap(nullptr, kControlSize, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return ErrnoStatus("map " + path);
  ControlFile file{MappedRegion(p, kControlSize)};
  LAZARUS_RETURN_IF_ERROR(CheckControlBlock(*file.block()).Context(path));
  return file;
}

void ControlFile::Stop(StopReason reason, int err) const {
  uint32_t expected = 0;
  if (Atomic(block()->stopped).compare_exchange_strong(expected, static_cast<uint32_t>(reason))) {
    Atomic(block()->stop_errno).store(err, std::memory_order_relaxed);
  }
}

void PrefaultSegment(void* addr, size_t size, DurabilityMode mode) {
  constexpr int kPopulateRead = 22;   // MADV_POPULATE_READ, Linux 5.14
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE
  if (mode == DurabilityMode::kProcess) {
    (void)::madvise(addr, size, MADV_HUGEPAGE);
    (void)::madvise(addr, size, kPopulateWrite);
  } else {
    (void)::madvise(addr, size, kPopulateRead);
  }
}

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kRunning: return "running";
    case StopReason::kSyncFailed: return "an fdatasync failed";
    case StopReason::kSegmentFailed: return "a new segment could not be created";
    case StopReason::kCorrupt: return "a writer found a damaged frame";
    case StopReason::kStoppedByDaemon: return "stopped by the daemon";
  }
  return "unknown stop reason";
}

const char* DurabilityModeName(DurabilityMode mode) {
  switch (mode) {
    case DurabilityMode::kProcess: return "process";
    case DurabilityMode::kGroup: return "group";
    case DurabilityMode::kSync: return "sync";
  }
  return "unknown";
}

std::optional<DurabilityMode> ParseDurabilityMode(std::string_view name) {
  if (name == "process") return DurabilityMode::kProcess;
  if (name == "group") return DurabilityMode::kGroup;
  if (name == "sync") return DurabilityMode::kSync;
  return std::nullopt;
}

}  // namespace lazarus::effectlog
