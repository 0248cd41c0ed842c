// How the effect log makes bytes durable. The real policy calls fdatasync/fsync; tests put
// a fault-injection policy here that remembers what each sync covered and can later throw
// away everything else (a power cut, see tests/unit/effectlog_fault_injection.h).
#pragma once

#include <cstdint>

namespace lazarus::effectlog {

class SyncPolicy {
 public:
  virtual ~SyncPolicy() = default;
  // Makes every byte written so far to segment `segment_number` (open as `fd`, possibly
  // through a shared mapping) durable. Returns 0 or an errno value.
  virtual int SyncSegment(int fd, uint64_t segment_number) = 0;
  // Makes the directory entries of the log (new segments) durable. Returns 0 or errno.
  virtual int SyncDirectory(int dir_fd) = 0;
};

// fdatasync / fsync. Lives for the whole program.
SyncPolicy& RealSyncPolicy();

}  // namespace lazarus::effectlog
