#include "effectlog/prepare.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "common/unique_fd.h"
#include "effectlog/mapped_region.h"

namespace lazarus::effectlog {

StatusOr<bool> PrepareNextSegment(const std::string& dir, const ControlFile& control, SyncPolicy& sync) {
  const uint64_t active = control.active_segment();
  const uint32_t size = control.segment_size();
  const std::string next_path = SegmentPath(dir, active + 1);
  if (::access(next_path.c_str(), F_OK) == 0) return false;
  {
    UniqueFd fd(::open(SegmentPath(dir, active).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno == ENOENT ? StatusOr<bool>(false) : StatusOr<bool>(ErrnoStatus("open " + SegmentPath(dir, active)));
    uint64_t tail = 0;
    if (::pread(fd.get(), &tail, sizeof tail, offsetof(SegmentHeader, tail)) != sizeof tail)
      return ErrnoStatus("read tail of " + SegmentPath(dir, active));
    if (tail < size / 2) return false;
  }
  auto fd = OpenOrCreateSegment(dir, active + 1, size, control.incarnation(),
                                /*durable=*/control.durability() != DurabilityMode::kProcess, sync);
  if (!fd.ok()) return fd.status();
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd->get(), 0);
  if (p == MAP_FAILED) return ErrnoStatus("map " + next_path);
  MappedRegion map(p, size);
  PrefaultSegment(p, size, control.durability());
  return true;
}

}  // namespace lazarus::effectlog
