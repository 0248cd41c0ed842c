#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>


extern char** environ;

namespace lztest {

namespace {

using Clock = std::chrono::steady_clock;

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// In a forked child: stdin from /dev/null and every fd >= 3 closed.
void ChildStdinNullAndCloseFds() {
  int null = open("/dev/null", O_RDONLY);
  if (null >= 0) {
    dup2(null, 0);
    if (null != 0) close(null);
  }
  close_range(3, ~0U, 0);
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

void RemoveTree(const std::string& path) {
  nftw(path.c_str(), RemoveEntry, 64, FTW_DEPTH | FTW_PHYS);
}

bool IsDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::string BinDir() { return LAZARUS_BIN_DIR; }
std::string BinPath(const std::string& name) { return BinDir() + "/" + name; }

// ---- processes ------------------------------------------------------------------------

std::string CmdResult::Describe() const {
  std::ostringstream o;
  o << "`" << command << "` -> ";
  if (timed_out)
    o << "TIMED OUT";
  else
    o << "exit " << exit_code;
  o << "\n  stdout: " << (out.empty() ? "(empty)" : Tail(out, 20))
    << "\n  stderr: " << (err.empty() ? "(empty)" : Tail(err, 20));
  return o.str();
}

CmdResult RunCommand(const std::vector<std::string>& argv, const CmdOptions& options) {
  CmdResult r;
  r.command = Join(argv);
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    r.err = std::string("pipe: ") + strerror(errno);
    return r;
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    r.err = std::string("pipe: ") + strerror(errno);
    return r;
  }
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; e++) env.emplace_back(*e);
  for (const auto& e : options.env) env.push_back(e);
  auto cargv = CStrings(argv);
  auto cenv = CStrings(env);

  pid_t pid = fork();
  if (pid < 0) {
    r.err = std::string("fork: ") + strerror(errno);
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
    return r;
  }
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    ChildStdinNullAndCloseFds();
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) _exit(126);
    execve(cargv[0], cargv.data(), cenv.data());
    dprintf(2, "exec %s: %s\n", cargv[0], strerror(errno));
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);

  auto deadline = Clock::now() + options.timeout;
  bool exited = false;
  int status = 0;
  Clock::time_point exited_at;
  struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  bool open_fd[2] = {true, true};
  char buf[8192];
  for (;;) {
    if (!exited) {
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        exited_at = Clock::now();
      }
    }
    if (!open_fd[0] && !open_fd[1] && exited) break;
    // Something the command started may hold the pipes: give up reading 2 s after it ended.
    if (exited && Clock::now() - exited_at > 2s) break;
    if (!exited && Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.timed_out = true;
      exited = true;
      exited_at = Clock::now() - 1900ms;  // read what is buffered, briefly
    }
    for (int i = 0; i < 2; i++) fds[i].fd = open_fd[i] ? (i == 0 ? out_pipe[0] : err_pipe[0]) : -1;
    int n = poll(fds, 2, 20);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (!open_fd[i] || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        open_fd[i] = false;
      }
    }
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  if (r.timed_out) {
    r.exit_code = -1;
  } else if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.exit_code = 128 + WTERMSIG(status);
  }
  return r;
}

bool WaitUntil(const std::function<bool()>& pred, Millis timeout, Millis interval) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return false;
  auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

std::vector<pid_t> ProcessTree(pid_t root) {
  std::vector<pid_t> out;
  if (root <= 0 || access(("/proc/" + std::to_string(root)).c_str(), F_OK) != 0) return out;
  std::set<pid_t> seen;
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    if (!seen.insert(p).second) continue;
    out.push_back(p);
    std::string task_dir = "/proc/" + std::to_string(p) + "/task";
    DIR* d = opendir(task_dir.c_str());
    if (d == nullptr) continue;
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::istringstream in(ReadFile(task_dir + "/" + e->d_name + "/children"));
      pid_t c;
      while (in >> c) todo.push_back(c);
    }
    closedir(d);
  }
  return out;
}

std::vector<pid_t> KillTree(pid_t root) {
  std::vector<pid_t> killed;
  // Twice: a process may fork while we walk the tree.
  for (int round = 0; round < 2; round++) {
    auto tree = ProcessTree(root);
    // Descendants first, the root (the init of the job's PID namespace) last.
    for (auto it = tree.rbegin(); it != tree.rend(); ++it) {
      if (kill(*it, SIGKILL) == 0 && std::find(killed.begin(), killed.end(), *it) == killed.end())
        killed.push_back(*it);
    }
  }
  return killed;
}

std::string ProcessComm(pid_t pid) {
  return Trim(ReadFile("/proc/" + std::to_string(pid) + "/comm"));
}

int PickFreePort() {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  int port = -1;
  socklen_t len = sizeof a;
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(s);
  return port;
}

std::optional<std::string> TcpFetch(int port, Millis timeout) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return std::nullopt;
  struct timeval tv {};
  tv.tv_sec = static_cast<long>(timeout.count() / 1000);
  tv.tv_usec = static_cast<long>((timeout.count() % 1000) * 1000);
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(s);
    return std::nullopt;
  }
  std::string data;
  char buf[256];
  for (;;) {
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EOF, reset or timeout
  }
  close(s);
  return data;
}

// ---- files ----------------------------------------------------------------------------

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  return static_cast<bool>(out);
}

std::string Tail(const std::string& text, size_t lines) {
  if (text.empty()) return text;
  size_t pos = text.size();
  if (text.back() == '\n') pos--;
  size_t count = 0;
  while (pos > 0) {
    if (text[pos - 1] == '\n' && ++count == lines) break;
    pos--;
  }
  return (pos > 0 ? "[...]\n" : "") + text.substr(pos);
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

off_t FileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return st.st_size;
}

std::vector<long> ReadValues(const std::string& path) {
  std::string text = ReadFile(path);
  std::vector<long> v;
  size_t start = 0;
  for (;;) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) break;  // a partial last line is still being written
    std::string line = text.substr(start, nl - start);
    v.push_back(IsDigits(line) && line.size() < 18 ? std::stol(line) : -1);
    start = nl + 1;
  }
  return v;
}

std::string DescribeValues(const std::vector<long>& v) {
  std::ostringstream o;
  o << v.size() << " values";
  if (v.empty()) return o.str();
  o << ", first " << v.front() << ", last " << v.back() << ", breaks: [";
  int shown = 0;
  size_t breaks = 0;
  for (size_t i = 1; i < v.size(); i++) {
    if (v[i] != v[i - 1] + 1) {
      breaks++;
      if (shown++ < 8) o << (shown > 1 ? ", " : "") << "at " << i << ": " << v[i - 1] << " -> " << v[i];
    }
  }
  if (breaks > 8) o << ", ... (" << breaks << " in all)";
  o << "]";
  return o.str();
}

off_t BytesOfValues(long n) {
  off_t total = 0;
  long lo = 1;
  for (int digits = 1; lo <= n; digits++, lo *= 10) {
    long hi = std::min(n, lo * 10 - 1);
    total += static_cast<off_t>(hi - lo + 1) * (digits + 1);
  }
  return total;
}

std::vector<off_t> FdPositions(pid_t root, const std::string& path) {
  std::vector<off_t> out;
  for (pid_t p : ProcessTree(root)) {
    std::string fd_dir = "/proc/" + std::to_string(p) + "/fd";
    DIR* d = opendir(fd_dir.c_str());
    if (d == nullptr) continue;
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char target[4096];
      ssize_t n = readlink((fd_dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      if (path != target) continue;
      std::istringstream info(ReadFile("/proc/" + std::to_string(p) + "/fdinfo/" + e->d_name));
      std::string key;
      long long pos;
      while (info >> key) {
        if (key == "pos:" && info >> pos) {
          out.push_back(static_cast<off_t>(pos));
          break;
        }
      }
    }
    closedir(d);
  }
  return out;
}

// ---- the daemon -----------------------------------------------------------------------

Daemon::Daemon(std::string state_dir, std::string socket, std::string log_path)
    : state_dir_(std::move(state_dir)), socket_(std::move(socket)), log_path_(std::move(log_path)) {}

Daemon::~Daemon() { Kill(); }

std::string Daemon::StagingDir() const {
  return "/dev/shm/lazarus-it-" + state_dir_.substr(state_dir_.find("lazarus-it-") + 11, 6);
}

::testing::AssertionResult Daemon::Start(Millis timeout) {
  std::string bin = BinPath("lazarusd");
  if (access(bin.c_str(), X_OK) != 0)
    return ::testing::AssertionFailure() << "the daemon is not built: " << bin << " is missing";
  int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return ::testing::AssertionFailure() << "cannot open " << log_path_ << ": " << strerror(errno);
  std::vector<std::string> argv{bin, "--foreground", "--state-dir", state_dir_, "--socket", socket_,
                                "--staging-dir", StagingDir()};
  auto cargv = CStrings(argv);
  pid_t pid = fork();
  if (pid < 0) {
    close(log);
    return ::testing::AssertionFailure() << "fork: " << strerror(errno);
  }
  if (pid == 0) {
    setpgid(0, 0);
    dup2(log, 1);
    dup2(log, 2);
    ChildStdinNullAndCloseFds();
    execv(cargv[0], cargv.data());
    dprintf(2, "exec %s: %s\n", cargv[0], strerror(errno));
    _exit(127);
  }
  close(log);
  pid_ = pid;
  exited_ = false;

  // Ready when `list` answers on its socket (a stale socket file of an earlier daemon may
  // be there already: only an answer counts).
  auto deadline = Clock::now() + timeout;
  CmdResult r;
  while (Clock::now() < deadline) {
    if (!Alive()) {
      return ::testing::AssertionFailure() << "lazarusd exited during start-up (" << DescribeExit()
                                           << "); log:\n" << Tail(ReadFile(log_path_), 40);
    }
    struct stat st;
    if (stat(socket_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      r = RunCommand({BinPath("lazarus"), "--socket", socket_, "list", "--json"}, WithTimeout(10s));
      if (r.exit_code == 0) return ::testing::AssertionSuccess();
    }
    std::this_thread::sleep_for(30ms);
  }
  return ::testing::AssertionFailure() << "lazarusd did not answer `list` on " << socket_ << " within "
                                       << timeout.count() << " ms; last try: " << r.Describe() << "\nlog:\n"
                                       << Tail(ReadFile(log_path_), 40);
}

void Daemon::Kill() {
  if (pid_ <= 0 || exited_) return;
  kill(pid_, SIGKILL);
  int st = 0;
  if (waitpid(pid_, &st, 0) == pid_) {
    exited_ = true;
    wait_status_ = st;
  }
}

bool Daemon::Alive() {
  if (pid_ <= 0 || exited_) return false;
  int st = 0;
  pid_t w = waitpid(pid_, &st, WNOHANG);
  if (w == pid_) {
    exited_ = true;
    wait_status_ = st;
    return false;
  }
  return true;
}

std::string Daemon::DescribeExit() const {
  if (!exited_) return "running";
  if (WIFEXITED(wait_status_)) return "exit status " + std::to_string(WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) return std::string("killed by signal ") + strsignal(WTERMSIG(wait_status_));
  return "status " + std::to_string(wait_status_);
}

// ---- the fixture ----------------------------------------------------------------------

void LazarusTest::SetUp() {
  signal(SIGPIPE, SIG_IGN);
  for (const char* b : {"lazarusd", "lazarus", "lz-counter"}) {
    ASSERT_EQ(access(BinPath(b).c_str(), X_OK), 0) << BinPath(b) << " is missing: build it first";
  }
  char tmpl[] = "/var/tmp/lazarus-it-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
  tmp_dir_ = tmpl;
  state_dir_ = tmp_dir_ + "/state";
  socket_ = tmp_dir_ + "/lazarusd.sock";
  work_dir_ = tmp_dir_ + "/work";
  ASSERT_EQ(mkdir(work_dir_.c_str(), 0755), 0) << strerror(errno);
  ASSERT_TRUE(RestartDaemon());
}

::testing::AssertionResult LazarusTest::RestartDaemon() {
  if (daemon_ && daemon_->Alive())
    return ::testing::AssertionFailure() << "RestartDaemon: the old daemon still runs";
  daemon_starts_++;
  std::string log = tmp_dir_ + "/lazarusd." + std::to_string(daemon_starts_) + ".log";
  daemon_logs_.push_back(log);
  daemon_ = std::make_unique<Daemon>(state_dir_, socket_, log);
  return daemon_->Start();
}

void LazarusTest::TearDown() {
  if (tmp_dir_.empty()) return;
  bool daemon_alive = daemon_ && daemon_->Alive();
  if (daemon_ && daemon_->pid() > 0 && !daemon_alive) {
    // A test that kills the daemon itself restarts it; a daemon that died on its own is a bug.
    ADD_FAILURE() << "lazarusd (pid " << daemon_->pid() << ") died during the test: " << daemon_->DescribeExit();
  }
  if (HasFailure()) PrintDiagnostics();
  CleanUpJobs();
  if (daemon_) daemon_->Kill();
  // Whatever is left: the roots and keepers of jobs we saw (only if still ours).
  for (pid_t p : seen_pids_) {
    std::string comm = ProcessComm(p);
    if (!comm.empty() && (comm.rfind("lazarus", 0) == 0 || comm.rfind("lz-", 0) == 0)) KillTree(p);
  }
  for (pid_t p : spawned_) KillSpawned(p);
  const char* keep = getenv("LAZARUS_IT_KEEP");
  if (keep != nullptr && *keep != '\0' && std::string(keep) != "0") {
    std::cerr << "[harness] kept " << tmp_dir_ << "\n";
  } else {
    RemoveTree(tmp_dir_);
  }
  // The daemon's staging area on tmpfs: a SIGKILLed daemon leaves it behind.
  if (daemon_) RemoveTree(daemon_->StagingDir());
}

void LazarusTest::CleanUpJobs() {
  if (!daemon_ || !daemon_->Alive()) return;
  CmdResult r = Cli({"list", "--json"}, 15s);
  api::JobList list;
  if (r.exit_code != 0 || !ParseJson(r.out, &list)) return;
  for (const auto& j : list.jobs()) {
    if (j.pid() > 0) seen_pids_.push_back(j.pid());
    if (j.keeper_pid() > 0) seen_pids_.push_back(j.keeper_pid());
    if (j.state() != "exited") Cli({"kill", j.id()}, 15s);
    if (j.pid() > 0) KillTree(j.pid());
  }
}

void LazarusTest::PrintDiagnostics() {
  std::ostringstream o;
  o << "\n======== diagnostics (" << tmp_dir_ << ") ========\n";
  for (const auto& log : daemon_logs_) {
    o << "---- " << log << " (last 150 lines) ----\n" << Tail(ReadFile(log), 150) << "\n";
  }
  if (daemon_ && daemon_->Alive()) {
    CmdResult r = Cli({"list", "--json"}, 15s);
    api::JobList list;
    if (r.exit_code == 0 && ParseJson(r.out, &list)) {
      for (const auto& j : list.jobs()) {
        o << "---- job " << j.id() << ": " << j.ShortDebugString() << "\n";
        if (!j.stderr_path().empty())
          o << "  -- stderr " << j.stderr_path() << ":\n" << Tail(ReadFile(j.stderr_path()), 30) << "\n";
        if (!j.stdout_path().empty())
          o << "  -- stdout " << j.stdout_path() << ":\n" << Tail(ReadFile(j.stdout_path()), 10) << "\n";
      }
    } else {
      o << "---- list failed: " << r.Describe() << "\n";
    }
  }
  // CRIU's logs and anything else named *.log in the state dir, newest last.
  std::vector<std::pair<time_t, std::string>> logs;
  std::vector<std::string> dirs{state_dir_};
  while (!dirs.empty()) {
    std::string dir = dirs.back();
    dirs.pop_back();
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string p = dir + "/" + name;
      struct stat st;
      if (lstat(p.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) dirs.push_back(p);
      else if (S_ISREG(st.st_mode) && name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0 &&
               name != "stdout.log" && name != "stderr.log")  // shown with the job
        logs.emplace_back(st.st_mtime, p);
    }
    closedir(d);
  }
  std::sort(logs.begin(), logs.end());
  if (logs.size() > 6) logs.erase(logs.begin(), logs.end() - 6);
  for (const auto& [mtime, p] : logs) {
    std::string text = ReadFile(p);
    // CRIU's errors are what matter; show them and the end of the log.
    std::string errors;
    for (const auto& line : SplitLines(text))
      if (line.find("Error") != std::string::npos && line.find("RLIMIT_NOFILE") == std::string::npos &&
          line.find("Could not process rule") == std::string::npos)  // nft's noise
        errors += line + "\n";
    o << "---- " << p << " ----\n";
    if (!errors.empty()) o << "  errors:\n" << Tail(errors, 20) << "\n";
    o << "  tail:\n" << Tail(text, 15) << "\n";
  }
  o << "======== end of diagnostics ========\n";
  std::cerr << o.str();
}

CmdResult LazarusTest::Cli(const std::vector<std::string>& args, Millis timeout,
                           const std::vector<std::string>& env) {
  std::vector<std::string> argv{BinPath("lazarus"), "--socket", socket_};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, WithTimeout(timeout, work_dir_, env));
}

::testing::AssertionResult LazarusTest::RunJob(const std::vector<std::string>& cmd, std::string* id,
                                               const std::string& name, bool shim) {
  std::vector<std::string> args{"run"};
  if (!shim) args.push_back("--no-shim");
  if (!name.empty()) {
    args.push_back("--name");
    args.push_back(name);
  }
  args.push_back("--");
  args.insert(args.end(), cmd.begin(), cmd.end());
  CmdResult r = Cli(args);
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "run failed: " << r.Describe();
  std::string out = Trim(r.out);
  if (out.empty() || out.find('\n') != std::string::npos || out.find(' ') != std::string::npos)
    return ::testing::AssertionFailure() << "run should print the job id on one line: " << r.Describe();
  *id = out;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult LazarusTest::Status(const std::string& job, api::JobInfo* info) {
  CmdResult r = Cli({"status", job, "--json"});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "status failed: " << r.Describe();
  info->Clear();
  auto parsed = ParseJson(r.out, info);
  if (!parsed) return parsed;
  if (info->pid() > 0) seen_pids_.push_back(info->pid());
  if (info->keeper_pid() > 0) seen_pids_.push_back(info->keeper_pid());
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult LazarusTest::List(api::JobList* list) {
  CmdResult r = Cli({"list", "--json"});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "list failed: " << r.Describe();
  list->Clear();
  return ParseJson(r.out, list);
}

::testing::AssertionResult LazarusTest::Snapshots(const std::string& job, api::SnapshotList* list) {
  CmdResult r = Cli({"snapshots", job, "--json"});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "snapshots failed: " << r.Describe();
  list->Clear();
  return ParseJson(r.out, list);
}

::testing::AssertionResult LazarusTest::Checkpoint(const std::string& job, uint32_t* snapshot) {
  CmdResult r = Cli({"checkpoint", job});
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "checkpoint failed: " << r.Describe();
  std::string out = Trim(r.out);
  if (!IsDigits(out) || out.size() > 9)
    return ::testing::AssertionFailure() << "checkpoint should print the snapshot id (a small integer): "
                                         << r.Describe();
  *snapshot = static_cast<uint32_t>(std::stoul(out));
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult LazarusTest::WaitForState(const std::string& job, const std::string& state,
                                                     api::JobInfo* info, Millis timeout) {
  api::JobInfo last;
  std::string last_error;
  bool ok = WaitUntil(
      [&] {
        auto r = Status(job, &last);
        if (!r) {
          last_error = r.message();
          return false;
        }
        last_error.clear();
        return last.state() == state;
      },
      timeout, 50ms);
  if (info != nullptr) *info = last;
  if (!ok) {
    return ::testing::AssertionFailure() << "job " << job << " did not reach state '" << state << "' within "
                                         << timeout.count() << " ms; last status: " << last.ShortDebugString()
                                         << (last_error.empty() ? "" : "; last error: " + last_error);
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult LazarusTest::KillJobProcesses(const std::string& job) {
  api::JobInfo info;
  auto st = Status(job, &info);
  if (!st) return st;
  if (info.pid() <= 0) return ::testing::AssertionFailure() << "job has no pid: " << info.ShortDebugString();
  auto killed = KillTree(info.pid());
  if (killed.empty())
    return ::testing::AssertionFailure() << "no process of the job to kill (pid " << info.pid() << ")";
  bool gone = WaitUntil(
      [&] {
        for (pid_t p : killed)
          if (ProcessAlive(p)) return false;
        return true;
      },
      5s);
  if (!gone) return ::testing::AssertionFailure() << "the job's processes survived SIGKILL";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult LazarusTest::WaitForValues(const std::string& path, size_t n, Millis timeout) {
  std::vector<long> v;
  bool ok = WaitUntil(
      [&] {
        v = ReadValues(path);
        return v.size() >= n;
      },
      timeout, 20ms);
  if (!ok)
    return ::testing::AssertionFailure() << path << " did not reach " << n << " values within " << timeout.count()
                                         << " ms: " << DescribeValues(v);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult LazarusTest::DaemonAnswers() {
  if (!daemon_ || !daemon_->Alive())
    return ::testing::AssertionFailure() << "lazarusd is dead: " << (daemon_ ? daemon_->DescribeExit() : "never started");
  CmdResult r = Cli({"list", "--json"}, 15s);
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "lazarusd does not answer: " << r.Describe();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult LazarusTest::IsOneLineCliError(const CmdResult& r) {
  std::string err = Trim(r.err);
  if (err.empty()) return ::testing::AssertionFailure() << "no error message on stderr: " << r.Describe();
  if (err.find('\n') != std::string::npos)
    return ::testing::AssertionFailure() << "the error should be one line: " << r.Describe();
  if (err.rfind("lazarus: error: ", 0) != 0)
    return ::testing::AssertionFailure() << "the error should start with 'lazarus: error: ': " << r.Describe();
  return ::testing::AssertionSuccess();
}

pid_t LazarusTest::SpawnDetached(const std::vector<std::string>& argv) {
  auto cargv = CStrings(argv);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setsid();
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
    }
    close_range(3, ~0U, 0);
    if (chdir(work_dir_.c_str()) != 0) _exit(126);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  spawned_.push_back(pid);
  return pid;
}

void LazarusTest::KillSpawned(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  // Reap it if it is still our child (a restored copy is someone else's child).
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
}

// ---- assertions -----------------------------------------------------------------------

::testing::AssertionResult IsTwoRunsResumingFromSnapshot(const std::vector<long>& v, long a, long b,
                                                         long k_min, long min_after) {
  auto fail = [&]() {
    return ::testing::AssertionFailure() << "expected 1..K (K >= " << k_min << ") then S+1..M with " << a
                                         << " <= S <= " << b << " and M >= S+" << min_after << "; got "
                                         << DescribeValues(v) << "\n  ";
  };
  if (v.empty()) return fail() << "the file is empty";
  if (v.front() != 1) return fail() << "the first value is not 1";
  std::vector<size_t> breaks;
  for (size_t i = 1; i < v.size(); i++)
    if (v[i] != v[i - 1] + 1) breaks.push_back(i);
  if (breaks.empty()) return fail() << "no restart in the values (the job never resumed from the snapshot?)";
  if (breaks.size() > 1) return fail() << "more than one break in the sequence";
  long k = v[breaks[0] - 1];
  long s = v[breaks[0]] - 1;
  long m = v.back();
  if (v[breaks[0]] <= 1) return fail() << "the job started again from the beginning (0/1) instead of the snapshot";
  if (k < k_min) return fail() << "K=" << k << " is less than the last value seen before the kill";
  if (s < a || s > b)
    return fail() << "resumed after S=" << s << ", outside the checkpoint window [" << a << ", " << b << "]";
  if (m < s + min_after) return fail() << "too few values after the restore";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsOneRun(const std::vector<long>& v) {
  if (v.empty()) return ::testing::AssertionFailure() << "the file is empty";
  if (v.front() != 1) return ::testing::AssertionFailure() << "the first value is not 1: " << DescribeValues(v);
  for (size_t i = 1; i < v.size(); i++)
    if (v[i] != v[i - 1] + 1)
      return ::testing::AssertionFailure() << "not one consecutive run 1..N: " << DescribeValues(v);
  return ::testing::AssertionSuccess();
}

}  // namespace lztest
