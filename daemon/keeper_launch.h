// Starts a lazarus-keeper, the process that parents a job's root: detached from the
// daemon (double fork, own session) so that it outlives a daemon crash and keeps the
// job's exit status for it, as containerd-shim and conmon do.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/records.pb.h"

namespace lazarus {

struct KeeperStarted {
  records::ProcessRef keeper;
  records::ProcessRef root;
};

// Runs `argv` (argv[0] is the keeper binary) with `env` and waits until it reports that
// the job's root runs, or why it does not.
StatusOr<KeeperStarted> LaunchKeeper(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                     std::chrono::milliseconds timeout);

}  // namespace lazarus
