// Drives CRIU through its RPC protocol: one `criu swrk` child per dump or restore, spoken
// to over a SOCK_SEQPACKET socketpair with the messages of CRIU's rpc.proto.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace lazarus::snapshot {

// The criu binary: $LAZARUS_CRIU when set, else the one found at build time.
std::string CriuBinary();

// Called for each CRIU notification ("post-dump", "pre-resume", ...) while CRIU waits for
// the answer; for "post-dump" the dumped tree is still frozen. A non-ok Status fails the
// dump or restore.
using NotifyFn = std::function<Status(const std::string& script, pid_t pid)>;

struct DumpOptions {
  pid_t pid = 0;              // root of the tree to dump
  int images_dir_fd = -1;     // where CRIU writes the images
  int work_dir_fd = -1;       // where CRIU writes its log
  std::string log_file = "dump.log";
  bool leave_running = true;
  bool shell_job = false;     // the root's session or group lies outside the tree
  NotifyFn notify;
};

struct RestoreOptions {
  int images_dir_fd = -1;
  int work_dir_fd = -1;
  std::string log_file = "restore.log";
  bool shell_job = false;
  // CRIU uses these open fds instead of opening the named resources itself
  // (key: a file path without its leading '/', or "pipe:[INO]", ...).
  std::vector<std::pair<std::string, int>> inherit_fds;
};

// Dumps the tree; on failure the Status carries CRIU's error lines from the log.
Status CriuDump(const DumpOptions& options);

// Restores the tree as a child of the calling process (rst_sibling) and returns the host
// PID of its root. On failure the Status carries CRIU's error lines from the log.
StatusOr<pid_t> CriuRestore(const RestoreOptions& options);

// "4.2.1"
StatusOr<std::string> CriuVersion();

// The lines of a CRIU log that say what went wrong (at most `max_lines`, the last ones),
// joined into one line with "; ".
std::string CriuErrorLines(const std::string& log_path, size_t max_lines = 8);

}  // namespace lazarus::snapshot
