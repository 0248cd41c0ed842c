#include "common/proc_util.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace lazarus {

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 2));
  ProcStat st;
  std::string skip;
  fields >> st.state >> st.ppid >> st.pgid >> st.sid;
  // Fields 7..21 are not needed; start time is field 22 (the 20th after the state).
  for (int i = 0; i < 15; ++i) fields >> skip;
  fields >> st.start_time;
  if (!fields) return std::nullopt;
  return st;
}

std::optional<uint64_t> ProcessStartTime(pid_t pid) {
  auto st = ReadProcStat(pid);
  if (!st) return std::nullopt;
  return st->start_time;
}

bool ProcessAlive(pid_t pid, uint64_t start_time) {
  if (pid <= 0) return false;
  auto st = ReadProcStat(pid);
  if (!st || st->state == 'Z' || st->state == 'X') return false;
  return start_time == 0 || st->start_time == start_time;
}

std::vector<pid_t> ProcessTree(pid_t root) {
  std::vector<pid_t> out{root};
  for (size_t i = 0; i < out.size(); ++i) {
    std::string task_dir = "/proc/" + std::to_string(out[i]) + "/task/";
    // Children hang off the thread that forked them; read every thread's list.
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(task_dir, ec)) {
      std::ifstream children(task.path() / "children");
      pid_t child;
      while (children >> child) out.push_back(child);
    }
  }
  return out;
}

StatusOr<UniqueFd> PidfdOpen(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return ErrnoStatus("pidfd_open " + std::to_string(pid));
  return UniqueFd(fd);
}

std::string DescribeWaitStatus(int wstatus) {
  if (WIFEXITED(wstatus)) return "exited " + std::to_string(WEXITSTATUS(wstatus));
  if (WIFSIGNALED(wstatus)) {
    const char* name = sigabbrev_np(WTERMSIG(wstatus));
    return std::string("killed by SIG") + (name ? name : std::to_string(WTERMSIG(wstatus)).c_str());
  }
  return "status " + std::to_string(wstatus);
}

}  // namespace lazarus
