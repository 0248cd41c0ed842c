#include "daemon/keeper_launch.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include "common/unique_fd.h"
#include "daemon/keeper_protocol.h"

namespace lazarus {
namespace {

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

StatusOr<KeeperStarted> LaunchKeeper(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                     std::chrono::milliseconds timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus("pipe for keeper");
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  auto c_argv = CStrings(argv);
  auto c_env = CStrings(env);
  pid_t middle = ::fork();
  if (middle < 0) return ErrnoStatus("fork keeper");
  if (middle == 0) {
    // Async-signal-safe calls only: the daemon is multithreaded.
    ::setsid();
    pid_t keeper = ::fork();
    if (keeper != 0) ::_exit(keeper < 0 ? 1 : 0);
    ::dup2(write_end.get(), keeper::kResultFd);  // dup2 clears FD_CLOEXEC on the copy
    ::close_range(keeper::kResultFd + 1, ~0U, 0);   // nothing of the daemon's leaks into jobs
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
    }
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    ::_exit(127);
  }
  write_end.reset();
  int status;
  while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Status(Code::kIo, "could not fork the keeper process");

  std::string report;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Status(Code::kIo, "the keeper did not report within " + std::to_string(timeout.count()) + " ms");
    pollfd pfd{read_end.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus("poll keeper pipe");
    if (r == 0) continue;
    char buf[4096];
    ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read keeper pipe");
    if (n == 0) break;
    report.append(buf, static_cast<size_t>(n));
  }
  if (report.rfind("ok ", 0) == 0) {
    std::istringstream in(report.substr(3));
    int32_t keeper_pid, root_pid;
    uint64_t keeper_start, root_start;
    if (in >> keeper_pid >> keeper_start >> root_pid >> root_start) {
      KeeperStarted started;
      started.keeper.set_pid(keeper_pid);
      started.keeper.set_start_time(keeper_start);
      started.root.set_pid(root_pid);
      started.root.set_start_time(root_start);
      return started;
    }
  }
  if (report.rfind("error\n", 0) == 0) return Status(Code::kCriu, report.substr(6));
  if (report.empty()) return Status(Code::kInternal, "the keeper exited without a report (is " + argv[0] + " installed?)");
  return Status(Code::kInternal, "unexpected keeper report: " + report);
}

}  // namespace lazarus
