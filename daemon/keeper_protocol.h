// What lazarus-keeper tells the daemon on its result pipe (fd 3), once, then closes it:
//   "ok KEEPER_PID KEEPER_START ROOT_PID ROOT_START\n"   the job's root runs
//   "error\n" MESSAGE...                                  nothing runs; MESSAGE for the user
// and what it leaves in the job directory when the job's root ends:
//   exit-status: "INCARNATION WAIT_STATUS\n"  (written atomically)
#pragma once

namespace lazarus::keeper {

constexpr int kResultFd = 3;
constexpr const char* kExitStatusFile = "exit-status";
constexpr const char* kStdoutFile = "stdout.log";
constexpr const char* kStderrFile = "stderr.log";

}  // namespace lazarus::keeper
