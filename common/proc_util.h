// What the daemon needs to know about processes it does not parent: identity that
// survives PID reuse (pid + start time), liveness, and the tree below a process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace lazarus {

// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or nothing
// when the process does not exist.
std::optional<uint64_t> ProcessStartTime(pid_t pid);

// True when `pid` exists, is not a zombie, and (when start_time != 0) is the same process
// that had that start time: a recycled PID is not mistaken for the job.
bool ProcessAlive(pid_t pid, uint64_t start_time);

// The fields of /proc/PID/stat the daemon uses.
struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  uint64_t start_time = 0;
};
std::optional<ProcStat> ReadProcStat(pid_t pid);

// `root` and all its descendants (host PIDs), parents before children.
std::vector<pid_t> ProcessTree(pid_t root);

StatusOr<UniqueFd> PidfdOpen(pid_t pid);

// "exited 3" / "killed by SIGKILL" for a wait status.
std::string DescribeWaitStatus(int wstatus);

}  // namespace lazarus
