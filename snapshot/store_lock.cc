#include "snapshot/store_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "common/fs_util.h"
#include "snapshot/store_io.h"

namespace lazarus::store {
namespace fs = std::filesystem;
namespace {

constexpr char kLeaseMagic[8] = {'L', 'Z', 'L', 'E', 'A', 'S', 'E', 1};
constexpr size_t kLeaseHeaderBytes = 16;
constexpr const char* kLeaseSuffix = ".lease";

int FlockRetry(int fd, int op) {
  int rc;
  do {
    rc = ::flock(fd, op);
  } while (rc != 0 && errno == EINTR);
  return rc;
}

// A name no other lease has had: pid, time and a process-wide counter.
std::string NewLeaseName() {
  static std::atomic<uint64_t> counter{0};
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return std::to_string(::getpid()) + "-" + std::to_string(ts.tv_sec) + std::to_string(ts.tv_nsec) + "-" +
         std::to_string(counter.fetch_add(1));
}

// The pins of one lease file; kDataLoss when it is damaged.
Status ReadPins(const std::string& path, std::unordered_set<ChunkId, ChunkIdHash>* pinned) {
  std::vector<uint8_t> data;
  LAZARUS_RETURN_IF_ERROR(ReadWholeFile(AT_FDCWD, path, size_t{1} << 32, &data));
  if (data.size() < kLeaseHeaderBytes || std::memcmp(data.data(), kLeaseMagic, sizeof kLeaseMagic) != 0)
    return Status(Code::kDataLoss, "lease " + path + ": bad magic");
  size_t at = kLeaseHeaderBytes;
  while (at < data.size()) {
    uint32_t count;
    if (data.size() - at < 8) return Status(Code::kDataLoss, "lease " + path + ": truncated batch header");
    std::memcpy(&count, data.data() + at, 4);
    const size_t bytes = size_t{count} * 16;
    if (data.size() - at - 8 < bytes + 8) return Status(Code::kDataLoss, "lease " + path + ": truncated batch");
    const uint8_t* ids = data.data() + at + 8;
    uint64_t checksum;
    std::memcpy(&checksum, ids + bytes, 8);
    if (XXH3_64bits(ids, bytes) != checksum) return Status(Code::kDataLoss, "lease " + path + ": checksum mismatch");
    for (size_t i = 0; i < count; ++i) {
      ChunkId id;
      std::memcpy(id.bytes.data(), ids + i * 16, 16);
      pinned->insert(id);
    }
    at += 8 + bytes + 8;
  }
  return Status::Ok();
}

}  // namespace

StatusOr<StoreLock> StoreLock::Acquire(const std::string& path, Mode mode, bool wait) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return ErrnoStatus("open store lock " + path);
  int op = (mode == Mode::kShared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB);
  if (FlockRetry(fd.get(), op) != 0) {
    if (errno == EWOULDBLOCK)
      return Status(Code::kFailedPrecondition, "store is busy (an ingest, restore or verify holds " + path + ")");
    return ErrnoStatus("lock " + path);
  }
  return StoreLock(std::move(fd));
}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    fd_ = std::move(other.fd_);
    path_ = std::move(other.path_);
    tmp_dir_ = std::move(other.tmp_dir_);
  }
  return *this;
}

StatusOr<Lease> Lease::Create(const std::string& leases_dir, const std::string& tmp_root) {
  const std::string name = NewLeaseName();
  Lease lease;
  lease.path_ = leases_dir + "/" + name + kLeaseSuffix;
  lease.fd_ = UniqueFd(::open(lease.path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600));
  if (!lease.fd_) return IoError("create lease " + lease.path_, errno);
  if (FlockRetry(lease.fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    Status st = ErrnoStatus("lock lease " + lease.path_);
    ::unlink(lease.path_.c_str());
    lease.fd_.reset();
    return st;
  }
  uint8_t header[kLeaseHeaderBytes] = {};
  std::memcpy(header, kLeaseMagic, sizeof kLeaseMagic);
  const uint32_t pid = static_cast<uint32_t>(::getpid());
  std::memcpy(header + 8, &pid, 4);
  Status st = WriteAll(lease.fd_.get(), header, sizeof header, "write lease " + lease.path_);
  lease.tmp_dir_ = tmp_root + "/" + name;
  if (st.ok() && ::mkdir(lease.tmp_dir_.c_str(), 0700) != 0) st = IoError("mkdir " + lease.tmp_dir_, errno);
  if (!st.ok()) {
    lease.Release();
    return st;
  }
  return lease;
}

Status Lease::Pin(const std::vector<ChunkId>& ids) {
  if (!fd_) return Status(Code::kInternal, "pin on a released lease");
  if (ids.empty()) return Status::Ok();
  std::vector<uint8_t> batch(8 + ids.size() * 16 + 8, 0);
  const uint32_t count = static_cast<uint32_t>(ids.size());
  std::memcpy(batch.data(), &count, 4);
  for (size_t i = 0; i < ids.size(); ++i) std::memcpy(batch.data() + 8 + i * 16, ids[i].bytes.data(), 16);
  const uint64_t checksum = XXH3_64bits(batch.data() + 8, ids.size() * 16);
  std::memcpy(batch.data() + 8 + ids.size() * 16, &checksum, 8);
  // One write(2) per batch: GC reads leases only under the exclusive store lock, which it
  // cannot hold while we write under the shared one, so it never sees half a batch.
  return WriteAll(fd_.get(), batch.data(), batch.size(), "write lease " + path_);
}

void Lease::Release() {
  if (!fd_) return;
  if (!tmp_dir_.empty()) (void)RemoveTree(tmp_dir_);
  ::unlink(path_.c_str());
  fd_.reset();
}

StatusOr<LeaseScan> ScanLeases(const std::string& leases_dir, const std::string& tmp_root) {
  LeaseScan scan;
  std::set<std::string> live_names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(leases_dir, ec)) {
    const std::string path = entry.path().string();
    std::string name = entry.path().filename().string();
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) continue;  // released while we looked
      return ErrnoStatus("open lease " + path);
    }
    if (FlockRetry(fd.get(), LOCK_EX | LOCK_NB) == 0) {  // nobody holds it: its owner is gone
      ::unlink(path.c_str());
      ++scan.stale_removed;
      continue;
    }
    if (errno != EWOULDBLOCK) return ErrnoStatus("lock lease " + path);
    LAZARUS_RETURN_IF_ERROR(ReadPins(path, &scan.pinned));
    ++scan.live;
    const size_t suffix = name.rfind(kLeaseSuffix);
    live_names.insert(suffix == std::string::npos ? name : name.substr(0, suffix));
  }
  if (ec) return Status(Code::kIo, "list " + leases_dir + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(tmp_root, ec)) {
    if (live_names.count(entry.path().filename().string())) continue;
    (void)RemoveTree(entry.path().string());
    ++scan.stale_removed;
  }
  if (ec) return Status(Code::kIo, "list " + tmp_root + ": " + ec.message());
  return scan;
}

}  // namespace lazarus::store
