// lazarus-bench-checkpoint: the figures of issue 3 that involve a running job, in one run.
// It prints figures; it never fails because something was slow.
//
// Part 1, side by side: `lazarus checkpoint` and `lazarus restore` (through the snapshot
// store) against raw `criu dump` / `criu restore` of the same kind of process, with raw
// CRIU's images uncompressed on tmpfs (--shm-dir, default /dev/shm).
// Per job size it starts two instances of lz-bench-job: one under Lazarus
// (`lazarus run`: PID 1 of a new PID namespace is lazarus-init, the job is its child) and
// one for raw CRIU, shaped the same way (`unshare --pid --fork lz-bench-job --init`: PID 1
// is a tiny init that calls setsid and forks the job). Each run then, for both instances,
// in alternating order so that neither always goes first on this noisy machine:
//   1. refills the job's memory with new content (no chunk of an earlier snapshot can be
//      reused), takes an idle reading of the job's largest clock gap (the noise floor),
//      resets it, and times the checkpoint command; the largest gap the job saw across the
//      checkpoint is the time it was frozen;
//   2. SIGKILLs the job tree and times the restore command (Lazarus: once the daemon says
//      "crashed"; raw CRIU: once the tree is gone). The restored job is the instance of
//      the next run.
// CRIU's own logs split both commands into CRIU's part and the rest (for Lazarus: the
// store's ingest, from lazarusd's log, and the materialization before a restore).
//
// Part 2, periodic snapshots (MeasurePeriodic): a 512 MiB job under `lazarus run
// --interval 5` that keeps rewriting 1% of its pages per interval; the job adds up the time
// it was stalled (its clock gaps beyond 2 ms); the benchmark reports the share of wall time
// stalled per window of 6 snapshots, the noise floor of the same job without snapshots, and
// the stored bytes per snapshot as a fraction of the raw image (`lazarus snapshots`).
//
// The figures are medians of R runs (windows for part 2). Google Benchmark is not used: its
// repetitions run one benchmark after another, while here the two sides must be interleaved
// run by run, the quantities are process-level (seconds, not nanoseconds) and one of them
// is read from inside another process.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <cctype>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/fs_util.h"
#include "common/proc_util.h"
#include "common/unique_fd.h"

extern char** environ;

namespace lazarus::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A failure of the benchmark itself (a command failed, a process did not show up). Caught
// in main, after the destructors have cleaned up.
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

volatile sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) { g_interrupted = 1; }
void ThrowIfInterrupted() {
  if (g_interrupted) throw BenchError("interrupted");
}

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string Join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

std::string Trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// Polls `ready` every 2 ms until it holds; throws "timed out waiting for <what>".
void WaitFor(const std::function<bool()>& ready, milliseconds timeout, const std::string& what) {
  auto deadline = Clock::now() + timeout;
  while (!ready()) {
    ThrowIfInterrupted();
    if (Clock::now() > deadline) throw BenchError("timed out after " + std::to_string(timeout.count()) + " ms waiting for " + what);
    std::this_thread::sleep_for(milliseconds(2));
  }
}

// ---- processes ---------------------------------------------------------------------------

struct SpawnOptions {
  std::string stdin_path = "/dev/null";
  std::string stdout_path = "/dev/null";  // opened O_APPEND: CRIU restores such files whatever their size
  std::string stderr_path = "/dev/null";
  bool new_session = false;
};

pid_t Spawn(const std::vector<std::string>& argv, const SpawnOptions& opt) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, opt.stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, opt.stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, opt.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (opt.new_session) posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  int err = posix_spawn(&pid, cargv[0], &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (err != 0) throw BenchError("spawn " + Join(argv) + ": " + std::strerror(err));
  return pid;
}

int WaitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

struct CommandResult {
  int wstatus = 0;
  std::string out;
  std::string err;
  double ms = 0;  // from before the fork to after the reap
  [[nodiscard]] bool ok() const { return WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0; }
};

// Runs a command to completion, capturing its stdout and stderr.
CommandResult Run(const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) throw BenchError(std::string("pipe: ") + std::strerror(errno));
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]), err_r(err_pipe[0]), err_w(err_pipe[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  CommandResult r;
  auto t0 = Clock::now();
  pid_t pid = -1;
  int err = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err != 0) throw BenchError("spawn " + Join(argv) + ": " + std::strerror(err));
  out_w.reset();
  err_w.reset();
  pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  r.wstatus = WaitChild(pid);
  r.ms = MsSince(t0);
  return r;
}

std::string Failure(const std::vector<std::string>& argv, const CommandResult& r) {
  std::ostringstream os;
  os << "`" << Join(argv) << "` failed (" << DescribeWaitStatus(r.wstatus) << ")";
  if (!Trim(r.out).empty()) os << "\n  stdout: " << Trim(r.out);
  if (!Trim(r.err).empty()) os << "\n  stderr: " << Trim(r.err);
  return os.str();
}

CommandResult MustRun(const std::vector<std::string>& argv) {
  CommandResult r = Run(argv);
  if (!r.ok()) throw BenchError(Failure(argv, r));
  return r;
}

// SIGKILLs `root` and every descendant (the root first: for a PID-namespace init that
// alone ends the namespace; the rest is for trees that are not one).
void KillTree(pid_t root) {
  if (root <= 0) return;
  for (pid_t p : ProcessTree(root)) ::kill(p, SIGKILL);
}

std::string Exe(pid_t pid) {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  return ec ? std::string() : p.string();
}

void Check(const Status& s) {
  if (!s.ok()) throw BenchError(s.message());
}

// A running process identified so that a recycled PID is not mistaken for it.
struct Proc {
  pid_t pid = 0;
  uint64_t start = 0;
  [[nodiscard]] bool alive() const { return pid > 0 && ProcessAlive(pid, start); }
  static Proc Of(pid_t pid) { return {pid, ProcessStartTime(pid).value_or(0)}; }
};

// ---- the job's gap file --------------------------------------------------------------------

struct GapReading {
  uint64_t gap_us = 0;
  unsigned resets = 0;
  unsigned gen = 0;
  uint64_t ticks = 0;
  uint64_t stall_us = 0;  // sum of the excess over 2 ms of every gap longer than that
  unsigned stalls = 0;
  uint64_t since_us = 0;
};

std::optional<GapReading> ReadGap(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  GapReading g;
  unsigned long long gap = 0, ticks = 0, stall = 0, since = 0;
  if (std::sscanf(line.c_str(), "gap_us %llu resets %u gen %u ticks %llu stall_us %llu stalls %u since_us %llu", &gap, &g.resets, &g.gen,
                  &ticks, &stall, &g.stalls, &since) != 7)
    return std::nullopt;
  g.gap_us = gap;
  g.ticks = ticks;
  g.stall_us = stall;
  g.since_us = since;
  return g;
}

GapReading MustReadGap(const std::string& path) {
  auto g = ReadGap(path);
  if (!g) throw BenchError("cannot read the job's gap file " + path);
  return *g;
}

struct CheckpointTimes {
  double wall_ms = 0;               // the command, as the user waits for it
  std::optional<double> criu_ms;    // the CRIU dump within it (the last timestamp of CRIU's log)
  std::optional<double> ingest_ms;  // the store's ingest and commit within it (Lazarus)
};

struct RestoreTimes {
  double wall_ms = 0;             // the command, as the user waits for it
  std::optional<double> criu_ms;  // the CRIU restore within it (the last timestamp of CRIU's log)
};

// Milliseconds from the start of a CRIU log to its last line: "(SS.uuuuuu) ...".
std::optional<double> CriuLogMs(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return std::nullopt;
  std::optional<double> last;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    double sec = 0;
    if (line.size() > 2 && line[0] == '(' && std::sscanf(line.c_str(), "(%lf)", &sec) == 1) last = sec * 1000.0;
  }
  return last;
}

// One lz-bench-job instance, under Lazarus or raw CRIU.
class Instance {
 public:
  Instance(std::string label, std::string job_exe, std::string gap_path)
      : label_(std::move(label)), job_exe_(std::move(job_exe)), gap_path_(std::move(gap_path)) {}
  virtual ~Instance() = default;

  // Times the side's checkpoint command.
  virtual CheckpointTimes Checkpoint(int run) = 0;
  // SIGKILLs the job tree, waits until its side has noticed, times the restore command,
  // and waits until the restored job runs again.
  virtual RestoreTimes KillAndRestore(int run) = 0;

  // Refills the job's memory (which resets its largest gap) and waits until it is done.
  void Refill() { SignalAndWait(SIGUSR2, [](const GapReading& before, const GapReading& now) { return now.gen > before.gen; }); }
  void ResetGap() { SignalAndWait(SIGUSR1, [](const GapReading& before, const GapReading& now) { return now.resets > before.resets; }); }

  // The largest gap since the last reset, once the job has taken two more readings (the
  // first reading after a freeze is the one that records it).
  double GapMsAfterNextTicks() {
    GapReading now = MustReadGap(gap_path_);
    WaitFor([&] { auto g = ReadGap(gap_path_); return g && g->ticks >= now.ticks + 2; }, milliseconds(10000),
            label_ + " to run after the checkpoint");
    return static_cast<double>(MustReadGap(gap_path_).gap_us) / 1000.0;
  }

  // Waits until the job, child of `root`, has filled its memory and ticks.
  void AwaitJob(Proc root, milliseconds timeout) {
    root_ = root;
    WaitFor([&] { return (job_ = FindJob()).pid > 0; }, timeout, label_ + ": the job process under PID " + std::to_string(root.pid));
    GapReading start{};
    WaitFor(
        [&] {
          auto g = ReadGap(gap_path_);
          if (!g || g->gen == 0) return false;
          if (start.ticks == 0) start = *g;
          return g->ticks >= start.ticks + 2;
        },
        timeout, label_ + ": the job to fill its memory and run (" + gap_path_ + ")");
  }

  [[nodiscard]] const std::string& label() const { return label_; }
  [[nodiscard]] const std::string& gap_path() const { return gap_path_; }

 protected:
  [[nodiscard]] Proc root() const { return root_; }

 private:
  Proc FindJob() const {
    for (pid_t p : ProcessTree(root_.pid)) {
      if (p != root_.pid && Exe(p) == job_exe_) return Proc::Of(p);
    }
    return {};
  }

  void SignalAndWait(int sig, bool (*done)(const GapReading&, const GapReading&)) {
    GapReading before = MustReadGap(gap_path_);
    if (!job_.alive() || ::kill(job_.pid, sig) < 0) throw BenchError(label_ + ": the job process " + std::to_string(job_.pid) + " is gone");
    WaitFor([&] { auto g = ReadGap(gap_path_); return g && done(before, *g); }, milliseconds(60000),
            label_ + ": the job to act on signal " + std::to_string(sig));
  }

  std::string label_;
  std::string job_exe_;
  std::string gap_path_;
  Proc root_;
  Proc job_;
};

// ---- raw CRIU ------------------------------------------------------------------------------

struct Tools {
  std::string criu;
  std::string unshare;
  std::string lazarus;
  std::string lazarusd;
  std::string job;
};

class RawCriuInstance : public Instance {
 public:
  // The job's files go to `dir`, CRIU's images to `images_dir` (tmpfs: a restore from an
  // uncompressed image in memory is what the store's restore is compared with).
  RawCriuInstance(const Tools& tools, const std::string& dir, const std::string& images_dir, unsigned mib)
      : Instance("raw criu " + std::to_string(mib) + " MiB", tools.job, dir + "/job.gap"), tools_(tools), dir_(dir), images_dir_(images_dir), mib_(mib) {}

  // Separate from the constructor so that the destructor cleans up after a failed start.
  void Start(const std::string& content) {
    const Tools& tools = tools_;
    Check(MakeDirs(dir_));
    Check(MakeDirs(images_dir_));
    unshare_pid_ = Spawn({tools.unshare, "--pid", "--fork", tools.job, "--init", "--content", content, std::to_string(mib_), dir_ + "/job.gap"},
                         {.stdout_path = dir_ + "/job.out", .stderr_path = dir_ + "/job.err", .new_session = true});
    pid_t ns_init = 0;
    WaitFor(
        [&] {
          auto tree = ProcessTree(unshare_pid_);
          if (tree.size() > 1 && Exe(tree[1]) == tools.job) ns_init = tree[1];
          return ns_init > 0;
        },
        milliseconds(10000), "unshare to start the job's namespace init");
    AwaitJob(Proc::Of(ns_init), milliseconds(60000));
  }

  ~RawCriuInstance() override {
    if (root().alive()) KillTree(root().pid);
    if (unshare_pid_ > 0) {
      ::kill(unshare_pid_, SIGKILL);
      WaitChild(unshare_pid_);
    }
  }

  CheckpointTimes Checkpoint(int run) override {
    std::string images = images_dir_ + "/run-" + std::to_string(run);
    Check(MakeDirs(images));
    auto r = MustRun({tools_.criu, "dump", "--leave-running", "-t", std::to_string(root().pid), "-D", images, "--tcp-established",
                      "--network-lock", "nftables", "-v4", "-o", "dump.log"});
    // Only the newest image is restored: drop the older one (512 MiB a run adds up).
    if (!last_images_.empty()) Check(RemoveTree(last_images_));
    last_images_ = images;
    CheckpointTimes t;
    t.wall_ms = r.ms;
    t.criu_ms = CriuLogMs(images + "/dump.log");
    return t;
  }

  RestoreTimes KillAndRestore(int run) override {
    Proc old = root();
    KillTree(old.pid);
    if (unshare_pid_ > 0) {  // the first instance is a grandchild of ours: unshare reaps it
      WaitChild(unshare_pid_);
      unshare_pid_ = 0;
    }
    WaitFor([&] { return !old.alive(); }, milliseconds(10000), label() + ": the killed tree to be gone");
    std::string pidfile = dir_ + "/restored.pid";
    ::unlink(pidfile.c_str());
    auto r = MustRun({tools_.criu, "restore", "-D", last_images_, "--restore-detached", "--tcp-close", "--pidfile", pidfile, "-v4", "-o",
                      "restore.log"});
    auto text = ReadFile(pidfile);
    pid_t pid = text.ok() ? std::atoi(text->c_str()) : 0;
    if (pid <= 0) throw BenchError(label() + ": criu restore wrote no pid to " + pidfile);
    try {
      AwaitJob(Proc::Of(pid), milliseconds(30000));
    } catch (const BenchError& e) {
      // Say what became of the restored tree.
      std::string tree;
      for (pid_t p : ProcessTree(pid)) tree += " " + std::to_string(p) + ":" + Exe(p);
      auto err = ReadFile(dir_ + "/job.err");
      auto gap = ReadFile(gap_path());
      auto log = ReadFile(last_images_ + "/restore.log");
      std::string tail = log.ok() ? log->substr(log->size() > 1500 ? log->size() - 1500 : 0) : "(no restore.log)";
      throw BenchError(std::string(e.what()) + "\n  restored root pid " + std::to_string(pid) + (Proc::Of(pid).alive() ? " alive" : " gone") +
                       ", tree:" + (tree.empty() ? " (none)" : tree) + "\n  gap file: " + Trim(gap.ok() ? *gap : "(unreadable)") +
                       "\n  job.err: " + Trim(err.ok() ? *err : "") + "\n  end of restore.log:\n" + tail);
    }
    return {r.ms, CriuLogMs(last_images_ + "/restore.log")};
  }

 private:
  const Tools& tools_;
  std::string dir_;
  std::string images_dir_;
  unsigned mib_;
  pid_t unshare_pid_ = 0;
  std::string last_images_;
};

// ---- Lazarus -------------------------------------------------------------------------------

// The value of a top-level "key": number or string in a flat JSON object.
std::optional<std::string> JsonField(const std::string& json, const std::string& key) {
  std::regex re("\"" + key + "\"\\s*:\\s*(\"([^\"\\\\]*)\"|-?[0-9]+)");
  std::smatch m;
  if (!std::regex_search(json, m, re)) return std::nullopt;
  return m[2].matched ? m[2].str() : m[1].str();
}

struct JobStatus {
  std::string state;
  pid_t pid = 0;
  long incarnation = 0;
  std::string json;
};

class Daemon {
 public:
  // State (the store) under `dir`, staging on tmpfs under `shm_dir` (removed with it).
  Daemon(const Tools& tools, const std::string& dir, const std::string& shm_dir)
      : tools_(tools), state_(dir + "/state"), socket_(dir + "/lazarusd.sock"), log_(dir + "/lazarusd.log"), staging_(shm_dir + "/staging") {}

  // Separate from the constructor so that the destructor stops a daemon that failed to start.
  void Start() {
    const Tools& tools = tools_;
    // The CLI and every job it starts find this daemon through the environment.
    ::setenv("LAZARUS_SOCKET", socket_.c_str(), 1);
    // Its own session: a ^C at the terminal must not kill it before it has stopped the jobs.
    pid_ = Spawn({tools.lazarusd, "--foreground", "--state-dir", state_, "--socket", socket_, "--staging-dir", staging_},
                 {.stdout_path = log_, .stderr_path = log_, .new_session = true});
    WaitFor(
        [&] {
          int status;
          if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = 0;
            throw BenchError("lazarusd exited at start (" + DescribeWaitStatus(status) + "); its log:\n" + LogTail());
          }
          return ::access(socket_.c_str(), F_OK) == 0 && Run({tools.lazarus, "list"}).ok();
        },
        milliseconds(20000), "lazarusd to answer on " + socket_);
  }

  ~Daemon() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    auto deadline = Clock::now() + milliseconds(10000);
    int status;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        std::cerr << "lazarus-bench-checkpoint: lazarusd did not stop on SIGTERM within 10 s: SIGKILL\n";
        ::kill(pid_, SIGKILL);
        WaitChild(pid_);
        break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
  }

  [[nodiscard]] const std::string& log() const { return log_; }

  // The last lines of the daemon's log, for an error message.
  [[nodiscard]] std::string LogTail() const {
    auto text = ReadFile(log_);
    if (!text.ok()) return "(no log: " + text.status().message() + ")";
    size_t pos = text->size();
    for (int lines = 0; lines < 20 && pos > 0; ++lines) pos = text->rfind('\n', pos - 1);
    return text->substr(pos == std::string::npos ? 0 : pos);
  }

 private:
  const Tools& tools_;
  std::string state_;
  std::string socket_;
  std::string log_;
  std::string staging_;
  pid_t pid_ = 0;
};

// What lazarusd logged about snapshot `id` of the job named `name`: "job NAME (ID): snapshot
// N taken: dump D ms, ingest I ms, ...". The API gives dump_ms only; the log also has ingest.
struct LoggedSnapshot {
  double dump_ms = 0;
  double ingest_ms = 0;
};
std::map<uint32_t, LoggedSnapshot> LoggedSnapshots(const std::string& log, const std::string& name) {
  std::map<uint32_t, LoggedSnapshot> out;
  auto text = ReadFile(log);
  if (!text.ok()) return out;
  std::regex re("job " + name + " \\([0-9a-f]+\\): snapshot ([0-9]+) taken: dump ([0-9]+) ms, ingest ([0-9]+) ms");
  for (std::sregex_iterator it(text->begin(), text->end(), re), end; it != end; ++it)
    out[static_cast<uint32_t>(std::stoul((*it)[1].str()))] = {std::stod((*it)[2].str()), std::stod((*it)[3].str())};
  return out;
}

class LazarusInstance : public Instance {
 public:
  LazarusInstance(const Tools& tools, const std::string& dir, unsigned mib, std::string name, std::string daemon_log)
      : Instance("lazarus " + std::to_string(mib) + " MiB", tools.job, dir + "/job.gap"), tools_(tools), dir_(dir), mib_(mib), name_(std::move(name)),
        daemon_log_(std::move(daemon_log)) {}

  // Separate from the constructor so that the destructor removes a job that failed to start.
  // `run_flags` go to `lazarus run` (default --interval 0: no periodic snapshot may land in
  // the middle of a measurement), `job_flags` to lz-bench-job.
  void Start(const std::string& content, std::vector<std::string> run_flags = {"--interval", "0"}, const std::vector<std::string>& job_flags = {}) {
    Check(MakeDirs(dir_));
    started_ = true;
    // --no-shim: the same process as the raw CRIU side (the job makes raw syscalls anyway,
    // so the shim would record nothing; lazarus-bench-client measures the shim).
    std::vector<std::string> argv{tools_.lazarus, "run", "--no-shim", "--name", name_};
    argv.insert(argv.end(), run_flags.begin(), run_flags.end());
    argv.insert(argv.end(), {"--", tools_.job, "--content", content});
    argv.insert(argv.end(), job_flags.begin(), job_flags.end());
    argv.insert(argv.end(), {std::to_string(mib_), dir_ + "/job.gap"});
    auto r = MustRun(argv);
    id_ = Trim(r.out);
    JobStatus st = AwaitState("running", 0, milliseconds(30000));
    AwaitJob(Proc::Of(st.pid), milliseconds(60000));
  }

  ~LazarusInstance() override {
    if (!started_) return;
    Proc last = root();
    try {
      Run({tools_.lazarus, "kill", name_});
      Run({tools_.lazarus, "rm", name_});
    } catch (const BenchError& e) {
      std::cerr << "lazarus-bench-checkpoint: removing job " << name_ << ": " << e.what() << "\n";
    }
    // Whatever the daemon did, nothing of ours outlives the benchmark.
    if (last.alive()) KillTree(last.pid);
    if (keeper_.alive()) KillTree(keeper_.pid);
  }

  CheckpointTimes Checkpoint(int run) override {
    auto r = MustRun({tools_.lazarus, "checkpoint", name_, "--json"});
    CheckpointTimes t;
    t.wall_ms = r.ms;
    // CRIU's log is kept with the snapshot (until retention drops it: read it now).
    if (auto path = JsonField(r.out, "path")) t.criu_ms = CriuLogMs(*path + "/dump.log");
    if (auto id = JsonField(r.out, "id")) {
      auto logged = LoggedSnapshots(daemon_log_, name_);
      if (auto it = logged.find(static_cast<uint32_t>(std::atol(id->c_str()))); it != logged.end()) t.ingest_ms = it->second.ingest_ms;
    }
    return t;
  }

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const std::string& daemon_log() const { return daemon_log_; }

  RestoreTimes KillAndRestore(int run) override {
    JobStatus before = QueryStatus();
    KillTree(root().pid);
    AwaitCrashed(before.incarnation);
    auto r = MustRun({tools_.lazarus, "restore", name_});
    JobStatus st = AwaitState("running", before.incarnation + 1, milliseconds(30000));
    AwaitJob(Proc::Of(st.pid), milliseconds(10000));
    RestoreTimes t{r.ms, std::nullopt};
    // CRIU's log of this restore: JOB_DIR/snapshots/N/restore-ID-INCARNATION.log.
    const std::string log_name = "restore-" + id_ + "-" + std::to_string(st.incarnation) + ".log";
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(JsonField(st.json, "job_dir").value_or("") + "/snapshots", ec)) {
      if (auto ms = CriuLogMs(e.path().string() + "/" + log_name)) t.criu_ms = ms;
    }
    return t;
  }

 public:
  JobStatus QueryStatus() {
    std::vector<std::string> argv{tools_.lazarus, "status", name_, "--json"};
    auto r = MustRun(argv);
    JobStatus st;
    st.json = Trim(r.out);
    auto state = JsonField(st.json, "state");
    if (!state) throw BenchError("`" + Join(argv) + "` printed no state: " + st.json);
    st.state = *state;
    // Protobuf's JSON may leave out fields that hold 0.
    st.pid = std::atoi(JsonField(st.json, "pid").value_or("0").c_str());
    st.incarnation = std::atol(JsonField(st.json, "incarnation").value_or("0").c_str());
    if (auto keeper = JsonField(st.json, "keeper_pid"); keeper && std::atoi(keeper->c_str()) > 0 && keeper_.pid != std::atoi(keeper->c_str()))
      keeper_ = Proc::Of(std::atoi(keeper->c_str()));
    return st;
  }

  // Polls `lazarus status` until the job is in `state` (and, when min_incarnation > 0, in
  // at least that incarnation, with a PID).
  JobStatus AwaitState(const std::string& state, long min_incarnation, milliseconds timeout) {
    JobStatus st;
    auto deadline = Clock::now() + timeout;
    for (;;) {
      ThrowIfInterrupted();
      st = QueryStatus();
      bool pid_ok = state != "running" || st.pid > 0;
      if (st.state == state && st.incarnation >= min_incarnation && pid_ok) return st;
      if (Clock::now() > deadline)
        throw BenchError(label() + ": timed out after " + std::to_string(timeout.count()) + " ms waiting for state \"" + state +
                         "\"; last status: " + st.json);
      std::this_thread::sleep_for(milliseconds(20));
    }
  }

 private:
  // After a SIGKILL of the tree: the daemon must notice and leave the job "crashed" for
  // `lazarus restore` (a daemon that restores it by itself leaves nothing to time).
  void AwaitCrashed(long incarnation) {
    auto deadline = Clock::now() + milliseconds(15000);
    for (;;) {
      ThrowIfInterrupted();
      JobStatus st = QueryStatus();
      if (st.state == "crashed") return;
      if (st.incarnation != incarnation || (st.state != "running" && st.state != "snapshotting"))
        throw BenchError(label() + ": after a SIGKILL of its tree the job went to \"" + st.state + "\" (incarnation " +
                         std::to_string(st.incarnation) + "), not \"crashed\": " + st.json);
      if (Clock::now() > deadline) throw BenchError(label() + ": still not \"crashed\" 15 s after a SIGKILL of its tree: " + st.json);
      std::this_thread::sleep_for(milliseconds(20));
    }
  }

  const Tools& tools_;
  std::string dir_;
  unsigned mib_;
  std::string name_;
  std::string daemon_log_;
  std::string id_;
  bool started_ = false;
  Proc keeper_;
};

// ---- measurement ---------------------------------------------------------------------------

double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Min(const std::vector<double>& v) { return v.empty() ? std::nan("") : *std::min_element(v.begin(), v.end()); }

// lazarus / raw; NaN when either is missing.
double Ratio(double lazarus, double raw) { return raw > 0 ? lazarus / raw : std::nan(""); }

enum Metric {
  kCheckpoint,
  kCriuDump,
  kIngest,
  kCheckpointOther,
  kFrozen,
  kRestore,
  kCriuRestore,
  kRestoreOther,
  kIdleGap,
  kMetricCount
};
const char* const kMetricKey[] = {"checkpoint_ms", "checkpoint_criu_dump_ms", "checkpoint_ingest_ms", "checkpoint_other_ms", "frozen_ms",
                                  "restore_ms",    "restore_criu_ms",         "restore_other_ms",     "idle_gap_ms"};
const char* const kMetricText[] = {"checkpoint: command wall time",
                                   "  of which CRIU dump (CRIU's log)",
                                   "  of which store ingest+commit (job runs)",
                                   "  of which the rest (CLI, staging, GC...)",
                                   "frozen: largest gap seen by the job",
                                   "restore: command wall time",
                                   "  of which CRIU restore (CRIU's log)",
                                   "  of which the rest (materialize, CLI...)",
                                   "idle: largest gap in 200 ms (noise floor)"};
// The goals of issue 3 on the ratio lazarus / raw criu; 0: none.
const double kMetricGoal[] = {0, 0, 0, 0, 1.05, 1.25, 0, 0, 0};
static_assert(std::size(kMetricKey) == kMetricCount && std::size(kMetricText) == kMetricCount && std::size(kMetricGoal) == kMetricCount);

// One side's samples, per metric, in run order.
struct Side {
  std::vector<double> samples[kMetricCount];
};

struct SizeResult {
  unsigned mib = 0;
  Side lazarus, raw;
};

void MeasureCheckpoint(Instance& inst, int run, Side& out) {
  inst.Refill();
  inst.ResetGap();
  std::this_thread::sleep_for(milliseconds(200));
  out.samples[kIdleGap].push_back(inst.GapMsAfterNextTicks());
  inst.ResetGap();
  CheckpointTimes t = inst.Checkpoint(run);
  out.samples[kCheckpoint].push_back(t.wall_ms);
  if (t.criu_ms) out.samples[kCriuDump].push_back(*t.criu_ms);
  if (t.ingest_ms) out.samples[kIngest].push_back(*t.ingest_ms);
  if (t.criu_ms) out.samples[kCheckpointOther].push_back(t.wall_ms - *t.criu_ms - t.ingest_ms.value_or(0));
  out.samples[kFrozen].push_back(inst.GapMsAfterNextTicks());
}

void DropCaches() {
  ::sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3\n";
}

struct Config {
  int runs = 5;
  std::vector<unsigned> sizes{64, 512};
  bool json = false;
  bool raw_only = false;
  bool drop_caches = false;
  bool keep_temp = false;
  std::string content = "random";
  std::string temp_base = "/var/tmp";
  std::string shm_base = "/dev/shm";
  bool checkpoints = true;  // the side-by-side checkpoint/restore runs
  // The periodic part: a job under `lazarus run --interval S`.
  bool periodic = true;
  unsigned periodic_mib = 512;
  unsigned periodic_interval_s = 5;
  int periodic_runs = 3;          // windows; medians are reported
  int periodic_window = 6;        // snapshots per window
  double periodic_churn = 1.0;    // percent of the job's pages rewritten per interval
  double periodic_idle_s = 10;    // the same job without snapshots: the noise floor
};

// Where things go: `work` on disk (state, store, job files), `shm` on tmpfs (raw CRIU's
// images, lazarusd's staging).
struct Dirs {
  std::string work;
  std::string shm;
  std::string daemon_log;
};

SizeResult MeasureSize(const Config& cfg, const Tools& tools, const Dirs& dirs, unsigned mib) {
  SizeResult res;
  res.mib = mib;
  std::string tag = std::to_string(mib);
  const std::string& work = dirs.work;
  std::unique_ptr<LazarusInstance> lz;
  if (!cfg.raw_only) {
    lz = std::make_unique<LazarusInstance>(tools, work + "/lazarus-" + tag, mib, "bench-" + tag, dirs.daemon_log);
    lz->Start(cfg.content);
  }
  auto raw = std::make_unique<RawCriuInstance>(tools, work + "/raw-" + tag, dirs.shm + "/raw-" + tag, mib);
  raw->Start(cfg.content);
  for (int run = 0; run < cfg.runs; ++run) {
    // Alternate who goes first: the second one runs with the first one's dirty page cache.
    std::vector<std::pair<Instance*, Side*>> order{{raw.get(), &res.raw}};
    if (lz) order.insert(run % 2 == 0 ? order.begin() : order.end(), {lz.get(), &res.lazarus});
    for (auto& [inst, side] : order) MeasureCheckpoint(*inst, run, *side);
    for (auto& [inst, side] : order) {
      if (cfg.drop_caches) DropCaches();
      RestoreTimes t = inst->KillAndRestore(run);
      side->samples[kRestore].push_back(t.wall_ms);
      if (t.criu_ms) {
        side->samples[kCriuRestore].push_back(*t.criu_ms);
        side->samples[kRestoreOther].push_back(t.wall_ms - *t.criu_ms);
      }
    }
    if (!cfg.json) std::cerr << "  " << mib << " MiB: run " << run + 1 << "/" << cfg.runs << " done\n";
  }
  return res;
}


// ---- periodic snapshots --------------------------------------------------------------------
//
// One job of periodic_mib MiB under `lazarus run --interval S` (default retention), which
// keeps rewriting periodic_churn% of its pages per interval. The benchmark reads the job's
// cumulative stall (the sum over its clock gaps longer than 2 ms of their excess) every
// 20 ms, and `lazarus snapshots` every second (retention keeps 3: every snapshot is seen).
// The first snapshot (a full one: nothing to deduplicate against) is left out; from the
// second on, the snapshots' start times (created_unix_ms) cut the run into windows of
// periodic_window snapshots each, every boundary 20% of an interval before a snapshot's
// start, so each window holds exactly that many snapshots, whole. A window's share is the
// stall the job accounted in it over its wall time. Then `lazarus policy --interval 0` and
// the same job, still rewriting its pages, is measured without snapshots: the noise floor.

double RealMs() { return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count(); }

struct SnapshotSeen {
  uint32_t id = 0;
  double created_ms = 0;
  double size_bytes = 0;
  double stored_bytes = 0;
};

// The snapshots in `lazarus snapshots --json` (protobuf JSON: 64-bit numbers are strings).
std::vector<SnapshotSeen> ParseSnapshots(const std::string& json) {
  std::vector<SnapshotSeen> out;
  std::regex object("\\{[^{}]*\\}");
  for (std::sregex_iterator it(json.begin(), json.end(), object), end; it != end; ++it) {
    std::string o = it->str();
    auto id = JsonField(o, "id");
    if (!id) continue;
    SnapshotSeen s;
    s.id = static_cast<uint32_t>(std::atol(id->c_str()));
    s.created_ms = std::atof(JsonField(o, "created_unix_ms").value_or("0").c_str());
    s.size_bytes = std::atof(JsonField(o, "size_bytes").value_or("0").c_str());
    s.stored_bytes = std::atof(JsonField(o, "stored_bytes").value_or("0").c_str());
    out.push_back(s);
  }
  return out;
}

struct PeriodicResult {
  bool measured = false;
  unsigned mib = 0;
  unsigned interval_s = 0;
  int window = 0;
  double churn_pages_per_s = 0;
  std::vector<double> window_share;     // percent of the window's wall time stalled
  std::vector<double> window_seconds;
  std::vector<double> period_stall_ms;  // stall per snapshot period (from 20% before one snapshot to 20% before the next)
  double whole_share = std::nan("");    // all windows together
  double idle_share = std::nan("");     // the noise floor
  double idle_seconds = 0;
  std::vector<double> dump_ms, ingest_ms;  // lazarusd's log, snapshots in the windows
  std::vector<double> stored_percent;      // stored bytes / raw image, snapshots in the windows
  std::vector<double> window_stored_percent;  // its median per window
  double first_stored_percent = std::nan("");
  double raw_mib = std::nan("");
  uint32_t taken = 0;   // snapshots that succeeded during the run
  uint32_t failed = 0;  // ids never listed
  std::string last_error;
  double seconds = 0;
};

PeriodicResult MeasurePeriodic(const Config& cfg, const Tools& tools, const Dirs& dirs) {
  PeriodicResult res;
  res.mib = cfg.periodic_mib;
  res.interval_s = cfg.periodic_interval_s;
  res.window = cfg.periodic_window;
  const double pages = static_cast<double>(cfg.periodic_mib) * 256.0;
  res.churn_pages_per_s = pages * cfg.periodic_churn / 100.0 / cfg.periodic_interval_s;
  const auto t_begin = Clock::now();
  LazarusInstance lz(tools, dirs.work + "/periodic", cfg.periodic_mib, "bench-periodic", dirs.daemon_log);
  char churn[32];
  std::snprintf(churn, sizeof churn, "%.3f", res.churn_pages_per_s);
  lz.Start(cfg.content, {"--interval", std::to_string(cfg.periodic_interval_s)}, {"--churn", churn});

  // `lazarus snapshots` on a thread of its own: a slow answer must not thin the samples.
  std::mutex mu;
  std::map<uint32_t, SnapshotSeen> seen;
  std::string poll_error;
  std::atomic<bool> stop{false};
  std::thread poller([&] {
    while (!stop) {
      try {
        auto r = Run({tools.lazarus, "snapshots", lz.name(), "--json"});
        std::lock_guard lock(mu);
        if (!r.ok()) {
          poll_error = Failure({tools.lazarus, "snapshots", lz.name(), "--json"}, r);
        } else {
          for (const auto& s : ParseSnapshots(r.out)) seen.emplace(s.id, s);
        }
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        poll_error = e.what();
      }
      for (int i = 0; i < 50 && !stop; ++i) std::this_thread::sleep_for(milliseconds(20));
    }
  });
  struct StopPoller {
    std::atomic<bool>& stop;
    std::thread& t;
    ~StopPoller() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } stop_poller{stop, poller};

  struct Sample {
    double t_ms;
    double stall_us;
  };
  std::vector<Sample> samples;
  const size_t needed = 2 + static_cast<size_t>(cfg.periodic_runs) * static_cast<size_t>(cfg.periodic_window);
  const double stall_timeout_ms = std::max(90000.0, 6000.0 * cfg.periodic_interval_s);
  double last_progress = RealMs();
  size_t last_count = 0;
  uint64_t last_ticks = 0;
  double last_tick_change = RealMs();
  std::vector<SnapshotSeen> list;
  for (;;) {
    ThrowIfInterrupted();
    double now = RealMs();
    if (auto g = ReadGap(lz.gap_path())) {
      samples.push_back({now, static_cast<double>(g->stall_us)});
      if (g->ticks != last_ticks) last_ticks = g->ticks, last_tick_change = now;
    }
    if (now - last_tick_change > 30000) throw BenchError("periodic: the job has not ticked for 30 s; status: " + lz.QueryStatus().json);
    {
      std::lock_guard lock(mu);
      list.clear();
      for (const auto& [id, s] : seen) list.push_back(s);
    }
    if (list.size() != last_count) {
      last_count = list.size();
      last_progress = now;
      if (!cfg.json) std::cerr << "  periodic: snapshot " << last_count << "/" << needed << " listed\n";
    }
    if (list.size() >= needed) break;
    if (now - last_progress > stall_timeout_ms) {
      std::string err;
      {
        std::lock_guard lock(mu);
        err = poll_error;
      }
      throw BenchError("periodic: no new snapshot listed for " + std::to_string(static_cast<int>(stall_timeout_ms / 1000)) + " s (" + std::to_string(list.size()) + "/" +
                       std::to_string(needed) + "); status: " + lz.QueryStatus().json + (err.empty() ? "" : "; last `lazarus snapshots` error: " + err));
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  stop = true;
  poller.join();

  // The noise floor: the same job, no more snapshots (once the one in progress, if any, is done).
  MustRun({tools.lazarus, "policy", lz.name(), "--interval", "0"});
  lz.AwaitState("running", 0, milliseconds(120000));
  res.last_error = Trim(JsonField(lz.QueryStatus().json, "last_error").value_or(""));
  GapReading g0 = MustReadGap(lz.gap_path());
  auto idle_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.periodic_idle_s));
  while (Clock::now() < idle_end) {
    ThrowIfInterrupted();
    std::this_thread::sleep_for(milliseconds(20));
  }
  GapReading g1 = MustReadGap(lz.gap_path());
  if (g1.since_us > g0.since_us && g1.resets == g0.resets) {
    res.idle_seconds = static_cast<double>(g1.since_us - g0.since_us) / 1e6;
    res.idle_share = 100.0 * static_cast<double>(g1.stall_us - g0.stall_us) / static_cast<double>(g1.since_us - g0.since_us);
  }

  // The windows.
  if (samples.empty()) throw BenchError("periodic: could not read the job's gap file " + lz.gap_path());
  std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  res.taken = static_cast<uint32_t>(list.size());
  res.failed = list.back().id - list.front().id + 1 - static_cast<uint32_t>(list.size());
  auto stall_at = [&](double t_ms) {
    auto it = std::upper_bound(samples.begin(), samples.end(), t_ms, [](double t, const Sample& s) { return t < s.t_ms; });
    return it == samples.begin() ? samples.front().stall_us : std::prev(it)->stall_us;
  };
  const double lead_ms = 200.0 * cfg.periodic_interval_s;  // 20% of an interval
  auto boundary = [&](size_t k) { return list[k].created_ms - lead_ms; };
  for (int r = 0; r < cfg.periodic_runs; ++r) {
    double a = boundary(1 + static_cast<size_t>(r * cfg.periodic_window)), b = boundary(1 + static_cast<size_t>((r + 1) * cfg.periodic_window));
    res.window_seconds.push_back((b - a) / 1000.0);
    res.window_share.push_back(100.0 * (stall_at(b) - stall_at(a)) / 1000.0 / (b - a));
  }
  double a = boundary(1), b = boundary(needed - 1);
  res.whole_share = 100.0 * (stall_at(b) - stall_at(a)) / 1000.0 / (b - a);
  auto logged = LoggedSnapshots(dirs.daemon_log, lz.name());
  std::vector<double> raw_bytes;
  for (size_t k = 1; k + 1 < needed; ++k) {
    res.period_stall_ms.push_back((stall_at(boundary(k + 1)) - stall_at(boundary(k))) / 1000.0);
    if (auto it = logged.find(list[k].id); it != logged.end()) {
      res.dump_ms.push_back(it->second.dump_ms);
      res.ingest_ms.push_back(it->second.ingest_ms);
    }
    if (list[k].size_bytes > 0) res.stored_percent.push_back(100.0 * list[k].stored_bytes / list[k].size_bytes);
    raw_bytes.push_back(list[k].size_bytes);
  }
  for (int r = 0; r < cfg.periodic_runs; ++r) {
    auto first = res.stored_percent.begin() + std::min<long>(r * cfg.periodic_window, static_cast<long>(res.stored_percent.size()));
    auto last = res.stored_percent.begin() + std::min<long>((r + 1) * cfg.periodic_window, static_cast<long>(res.stored_percent.size()));
    res.window_stored_percent.push_back(Median(std::vector<double>(first, last)));
  }
  if (list[0].size_bytes > 0) res.first_stored_percent = 100.0 * list[0].stored_bytes / list[0].size_bytes;
  res.raw_mib = Median(raw_bytes) / (1024.0 * 1024.0);
  res.measured = true;
  res.seconds = MsSince(t_begin) / 1000.0;
  return res;
}

// ---- the machine and the report ------------------------------------------------------------

struct CpuTimes {
  uint64_t total = 0, steal = 0;
};
CpuTimes ReadCpuTimes() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  CpuTimes t;
  in >> cpu;
  for (int i = 0; i < 10; ++i) {
    uint64_t v = 0;
    in >> v;
    t.total += v;
    if (i == 7) t.steal = v;
  }
  return t;
}

std::string LoadAvg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string Fixed(double v, int prec = 1) {
  if (std::isnan(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string JsonNumber(double v) { return std::isnan(v) ? "null" : Fixed(v, 3); }

std::string JsonArray(const std::vector<double>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + Fixed(v[i], 3);
  return out + "]";
}

// Milliseconds to write `mib` MiB into a new file's page cache (no fsync).
double TimePageCacheWrite(const std::string& path, unsigned mib) {
  std::vector<char> buf(1 << 20, 0x5a);
  auto t0 = Clock::now();
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw BenchError("open " + path + ": " + std::strerror(errno));
  for (unsigned i = 0; i < mib; ++i) {
    if (::write(fd.get(), buf.data(), buf.size()) != static_cast<ssize_t>(buf.size())) throw BenchError("write " + path + ": " + std::strerror(errno));
  }
  fd.reset();
  double ms = MsSince(t0);
  ::unlink(path.c_str());
  return ms;
}

struct Machine {
  std::string kernel;
  std::string criu_version;
  long cpus = 0;
  std::string load_before, load_after;
  double steal_percent = 0;
  double seconds = 0;
  // Writing 256 MiB into the page cache: into pages the kernel has to find, then into
  // the pages just freed by deleting that file. On this VM the first is often many times
  // slower (the host lazily backs guest memory it reclaimed), and a dump is mostly that.
  double page_cache_new_ms = 0;
  double page_cache_reuse_ms = 0;
};

double Max(const std::vector<double>& v) { return v.empty() ? std::nan("") : *std::max_element(v.begin(), v.end()); }

// "<= 1.05x: yes" for a ratio with a goal.
std::string GoalText(double goal, double value, const char* unit) {
  if (goal <= 0) return "";
  std::string text = "<= " + Fixed(goal, goal < 2 ? 2 : 0) + unit;
  if (std::isnan(value)) return text;
  // Judged on the figure as printed (2 decimals): 1.053 shows as 1.05, which meets 1.05.
  return text + (std::round(value * 100) <= std::round(goal * 100) ? ": met" : ": NOT met");
}

std::vector<std::string> Notes(const Config& cfg, const Machine& m, const PeriodicResult& p) {
  std::vector<std::string> notes{
      "Noisy machine: " + std::to_string(m.cpus) + " vCPU VM shared with other work (load " + m.load_before + " before, " + m.load_after +
          " after; CPU steal " + Fixed(m.steal_percent) + "% during the benchmark). Medians of " + std::to_string(cfg.runs) +
          " run(s); differences of a few ms, and ratios of small figures, are within the noise. The idle row is the noise floor of the frozen row.",
      "Page cache on this VM: writing 256 MiB took " + Fixed(m.page_cache_new_ms, 0) + " ms into new pages and " + Fixed(m.page_cache_reuse_ms, 0) +
          " ms into just-freed ones (measured at start). CRIU writes images while the job is frozen, so dump and frozen times swing "
          "with which pages the kernel hands out; both sides are exposed alike.",
      "raw criu: `criu dump --leave-running -t ROOT -D DIR --tcp-established --network-lock nftables -v4 -o dump.log` and "
      "`criu restore -D DIR --restore-detached --tcp-close -v4 -o restore.log`, of `unshare --pid --fork lz-bench-job --init` "
      "(PID 1: a tiny init with setsid, like lazarus-init; no --shell-job needed); DIR is on tmpfs (" + cfg.shm_base +
          "): raw images, uncompressed, in memory.",
      "lazarus: `lazarus checkpoint` = CRIU dump into tmpfs staging (" + cfg.shm_base +
          "; the job is frozen only for this), then ingest into the chunked, deduplicated, zstd-compressed store on disk (" + cfg.temp_base +
          ") and commit while the job runs; the command returns after the commit. `lazarus restore` materializes the snapshot from the "
          "store into tmpfs staging, then CRIU restores.",
      "Each checkpoint follows a refill of the job's memory with new " + cfg.content +
          " content, so no chunk of an earlier snapshot is reused (every checkpoint is a full ingest). Frozen = largest gap between the "
          "job's 1 ms CLOCK_MONOTONIC readings across the checkpoint.",
      std::string("Restores read what was just written: ") +
          (cfg.drop_caches ? "page cache dropped before each restore (the store cold; raw images stay in tmpfs)."
                           : "page cache warm (pass --drop-caches for a cold store; raw images are in tmpfs either way)."),
  };
  if (p.measured)
    notes.push_back("Periodic: stalled = sum over the job's clock gaps longer than 2 ms of their excess over 2 ms (frozen by CRIU, or "
                    "kept off the CPU, e.g. by the ingest: 2 vCPUs); windows are cut 20% of an interval before a snapshot starts, so each "
                    "holds whole snapshots; the first snapshot (a full ingest, nothing to deduplicate against) is left out. Medians over "
                    "windows; stored/raw from `lazarus snapshots` (stored_bytes/size_bytes), dump and ingest from lazarusd's log. "
                    "DMTCP's periodic checkpointing freezes such a job about 25% of the time (issue 3).");
  if (cfg.raw_only) notes.push_back("--raw-only: Lazarus was not measured.");
  return notes;
}

void PrintTable(const Config& cfg, const Machine& m, const std::vector<SizeResult>& results, const PeriodicResult& p) {
  std::printf("Lazarus (snapshot store) vs raw CRIU %s, medians; kernel %s, %ld CPUs, job memory: %s content, benchmark took %.1f s\n",
              m.criu_version.c_str(), m.kernel.c_str(), m.cpus, cfg.content.c_str(), m.seconds);
  if (!results.empty()) {
    std::printf("\nCheckpoint and restore, side by side, median of %d run(s)\n", cfg.runs);
    std::printf("%-8s  %-42s  %10s  %10s  %7s  %s\n", "size", "metric (ms)", "lazarus", "raw criu", "ratio", "goal (ratio)");
    for (const auto& r : results) {
      for (int k = 0; k < kMetricCount; ++k) {
        double lz = Median(r.lazarus.samples[k]), raw = Median(r.raw.samples[k]);
        double ratio = Ratio(lz, raw);
        std::printf("%-8s  %-42s  %10s  %10s  %7s  %s\n", (std::to_string(r.mib) + " MiB").c_str(), kMetricText[k], Fixed(lz).c_str(),
                    Fixed(raw).c_str(), std::isnan(ratio) ? "-" : (Fixed(ratio, 2) + "x").c_str(), GoalText(kMetricGoal[k], ratio, "x").c_str());
      }
    }
    std::printf("ratio = lazarus / raw criu (below 1: Lazarus is faster).\n");
  }
  if (p.measured) {
    std::printf("\nPeriodic snapshots: `lazarus run --interval %u`, %u MiB job rewriting %s%% of its pages per interval (%.0f pages/s, at random),\n"
                "%zu window(s) of %d snapshots (%.0f s each), median over windows\n",
                p.interval_s, p.mib, Fixed(cfg.periodic_churn, cfg.periodic_churn < 1 ? 2 : 0).c_str(), p.churn_pages_per_s,
                p.window_share.size(), p.window, Median(p.window_seconds));
    std::printf("%-54s  %9s  %9s  %9s  %s\n", "metric", "median", "min", "max", "goal");
    auto row = [](const std::string& what, const std::vector<double>& v, int prec, const char* unit, const std::string& goal) {
      std::printf("%-54s  %9s  %9s  %9s  %s\n", what.c_str(), (Fixed(Median(v), prec) + unit).c_str(), (Fixed(Min(v), prec) + unit).c_str(),
                  (Fixed(Max(v), prec) + unit).c_str(), goal.c_str());
    };
    row("share of wall time the job was stalled", p.window_share, 2, "%", GoalText(5, Median(p.window_share), "%"));
    std::printf("%-54s  %9s\n", "  all windows together", (Fixed(p.whole_share, 2) + "%").c_str());
    std::printf("%-54s  %9s\n", ("  same job, no snapshots (noise floor, " + Fixed(p.idle_seconds, 0) + " s)").c_str(),
                (Fixed(p.idle_share, 2) + "%").c_str());
    row("stall per snapshot period (ms)", p.period_stall_ms, 1, "", "");
    row("  lazarusd: CRIU dump per snapshot (ms)", p.dump_ms, 0, "", "");
    row("  lazarusd: ingest + commit per snapshot (ms)", p.ingest_ms, 0, "", "");
    row("stored bytes per snapshot / raw image (" + Fixed(p.raw_mib, 1) + " MiB)", p.stored_percent, 2, "%", "");
    std::string per_window;
    for (double v : p.window_stored_percent) per_window += (per_window.empty() ? "" : " / ") + Fixed(v, 2) + "%";
    std::printf("%-54s  %s\n", "  median per window, in order", per_window.c_str());
    std::printf("%-54s  %9s\n", "  first snapshot (full, left out above)", (Fixed(p.first_stored_percent, 1) + "%").c_str());
    std::printf("snapshots taken: %u in %.0f s (%zu in the windows), %u failed; last error: %s\n", p.taken, p.seconds, p.period_stall_ms.size(),
                p.failed, p.last_error.empty() ? "none" : p.last_error.c_str());
    for (const auto& r : results) {
      if (r.mib != p.mib) continue;
      double raw = Median(r.raw.samples[kFrozen]);
      if (!std::isnan(raw))
        std::printf("for reference: raw criu frozen for %u MiB (table above, %.0f ms) once per %u s would be %.2f%% of wall time\n", r.mib, raw,
                    p.interval_s, raw / (10.0 * p.interval_s));
    }
  }
  std::printf("\n");
  for (const auto& n : Notes(cfg, m, p)) std::printf("- %s\n", n.c_str());
}

void PrintJson(const Config& cfg, const Machine& m, const std::vector<SizeResult>& results, const PeriodicResult& p) {
  std::ostringstream os;
  os << "{\n  \"benchmark\": \"checkpoint\",\n  \"runs\": " << cfg.runs << ",\n  \"content\": " << JsonString(cfg.content)
     << ",\n  \"cold_restore\": " << (cfg.drop_caches ? "true" : "false") << ",\n  \"machine\": {\"kernel\": " << JsonString(m.kernel)
     << ", \"cpus\": " << m.cpus << ", \"criu\": " << JsonString(m.criu_version) << ", \"load_before\": " << JsonString(m.load_before)
     << ", \"load_after\": " << JsonString(m.load_after) << ", \"steal_percent\": " << Fixed(m.steal_percent, 2)
     << ", \"seconds\": " << Fixed(m.seconds, 1) << ", \"page_cache_256mib_new_ms\": " << Fixed(m.page_cache_new_ms, 1)
     << ", \"page_cache_256mib_reuse_ms\": " << Fixed(m.page_cache_reuse_ms, 1) << "},\n  \"results\": [";
  bool first = true;
  for (const auto& r : results) {
    for (int k = 0; k < kMetricCount; ++k) {
      double lz = Median(r.lazarus.samples[k]), raw = Median(r.raw.samples[k]);
      os << (first ? "\n" : ",\n") << "    {\"size_mib\": " << r.mib << ", \"metric\": \"" << kMetricKey[k] << "\", \"lazarus_median\": "
         << JsonNumber(lz) << ", \"raw_criu_median\": " << JsonNumber(raw)
         << ", \"ratio\": " << JsonNumber(Ratio(lz, raw)) << ", \"goal_ratio\": " << (kMetricGoal[k] > 0 ? JsonNumber(kMetricGoal[k]) : "null")
         << ", \"lazarus_min\": " << JsonNumber(Min(r.lazarus.samples[k])) << ", \"raw_criu_min\": " << JsonNumber(Min(r.raw.samples[k]))
         << ", \"lazarus_samples\": " << JsonArray(r.lazarus.samples[k])
         << ", \"raw_criu_samples\": " << JsonArray(r.raw.samples[k]) << "}";
      first = false;
    }
  }
  os << "\n  ],\n  \"periodic\": ";
  if (!p.measured) {
    os << "null";
  } else {
    os << "{\"size_mib\": " << p.mib << ", \"interval_s\": " << p.interval_s << ", \"window_snapshots\": " << p.window
       << ", \"churn_pages_per_s\": " << JsonNumber(p.churn_pages_per_s) << ", \"stalled_percent_median\": " << JsonNumber(Median(p.window_share))
       << ", \"goal_percent\": 5, \"stalled_percent_windows\": " << JsonArray(p.window_share) << ", \"window_seconds\": " << JsonArray(p.window_seconds)
       << ", \"stalled_percent_all_windows\": " << JsonNumber(p.whole_share) << ", \"noise_floor_percent\": " << JsonNumber(p.idle_share)
       << ", \"noise_floor_seconds\": " << JsonNumber(p.idle_seconds) << ", \"stall_per_period_ms\": " << JsonArray(p.period_stall_ms)
       << ", \"dump_ms\": " << JsonArray(p.dump_ms) << ", \"ingest_ms\": " << JsonArray(p.ingest_ms)
       << ", \"stored_percent_median\": " << JsonNumber(Median(p.stored_percent)) << ", \"stored_percent\": " << JsonArray(p.stored_percent)
       << ", \"stored_percent_window_medians\": " << JsonArray(p.window_stored_percent)
       << ", \"first_stored_percent\": " << JsonNumber(p.first_stored_percent) << ", \"raw_image_mib\": " << JsonNumber(p.raw_mib)
       << ", \"snapshots_taken\": " << p.taken << ", \"snapshots_failed\": " << p.failed << ", \"last_error\": " << JsonString(p.last_error)
       << ", \"seconds\": " << JsonNumber(p.seconds) << "}";
  }
  os << ",\n  \"notes\": [";
  auto notes = Notes(cfg, m, p);
  for (size_t i = 0; i < notes.size(); ++i) os << (i ? ",\n    " : "\n    ") << JsonString(notes[i]);
  os << "\n  ]\n}\n";
  std::fputs(os.str().c_str(), stdout);
}

// A temporary directory removed with everything in it, unless kept.
class TempDir {
 public:
  TempDir(const std::string& base, bool keep) : keep_(keep) {
    std::string tmpl = base + "/lazarus-bench.XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw BenchError("mkdtemp " + tmpl + ": " + std::strerror(errno));
    path_ = tmpl;
  }
  ~TempDir() {
    if (keep_) {
      std::cerr << "lazarus-bench-checkpoint: kept " << path_ << "\n";
    } else if (auto s = RemoveTree(path_); !s.ok()) {
      std::cerr << "lazarus-bench-checkpoint: " << s.message() << "\n";
    }
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool keep_;
};

std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string p = dir + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

Tools FindTools(const std::string& bin_dir, bool raw_only) {
  Tools t;
  const char* criu = std::getenv("LAZARUS_CRIU");
  t.criu = criu ? criu : LAZARUS_CRIU_BINARY;
  t.unshare = FindInPath("unshare");
  t.job = fs::weakly_canonical(bin_dir + "/lz-bench-job").string();
  t.lazarus = bin_dir + "/lazarus";
  t.lazarusd = bin_dir + "/lazarusd";
  std::vector<std::string> need{t.criu, t.unshare, t.job};
  if (!raw_only) need.insert(need.end(), {t.lazarus, t.lazarusd});
  for (const auto& p : need) {
    if (p.empty() || ::access(p.c_str(), X_OK) != 0)
      throw BenchError("missing executable " + (p.empty() ? std::string("unshare (util-linux)") : p) +
                       (raw_only ? "" : "; build the project first (scripts/bench.sh does), or pass --raw-only"));
  }
  return t;
}

int Main(int argc, char** argv) {
  namespace po = boost::program_options;
  Config cfg;
  std::string sizes_text = "64,512";
  std::string bin_dir = fs::path(fs::read_symlink("/proc/self/exe")).parent_path().string();
  po::options_description desc(
      "lazarus-bench-checkpoint: `lazarus checkpoint`/`restore` vs raw `criu dump`/`restore`, side by side, and the share of\n"
      "wall time a job spends stalled under `lazarus run --interval S` (issue 3's figures, in one run).\n"
      "Needs root, CRIU and (unless --raw-only) lazarusd and lazarus next to this program.\nOptions");
  desc.add_options()("help,h", "this help")("runs", po::value<int>(&cfg.runs)->default_value(5), "repetitions; medians are reported")(
      "sizes", po::value<std::string>(&sizes_text)->default_value("64,512"), "job sizes in MiB, comma-separated")(
      "quick", "smoke run (about 30 s): --runs 1 --sizes 64, periodic part with 64 MiB, --interval 2, one window of 2 snapshots")(
      "json", "print JSON instead of a table")(
      "periodic-only", "skip the side-by-side checkpoint/restore runs")("no-periodic", "skip the periodic part")(
      "periodic-mib", po::value<unsigned>(&cfg.periodic_mib)->default_value(512), "periodic part: job size in MiB")(
      "periodic-interval", po::value<unsigned>(&cfg.periodic_interval_s)->default_value(5), "periodic part: `lazarus run --interval` seconds")(
      "periodic-runs", po::value<int>(&cfg.periodic_runs)->default_value(3), "periodic part: windows; medians are reported")(
      "periodic-window", po::value<int>(&cfg.periodic_window)->default_value(6), "periodic part: snapshots per window")(
      "periodic-churn", po::value<double>(&cfg.periodic_churn)->default_value(1.0),
      "periodic part: percent of the job's pages it rewrites per interval (0: none)")(
      "periodic-idle", po::value<double>(&cfg.periodic_idle_s)->default_value(10), "periodic part: seconds of the noise-floor window")(
      "content", po::value<std::string>(&cfg.content)->default_value("random"), "job memory content: random (incompressible) or text")(
      "drop-caches", "drop the page cache before each restore (cold restores)")(
      "raw-only", "measure raw CRIU only (when lazarusd is not available)")(
      "bin-dir", po::value<std::string>(&bin_dir), "where lazarusd, lazarus and lz-bench-job are (default: next to this program)")(
      "temp-dir", po::value<std::string>(&cfg.temp_base)->default_value("/var/tmp"), "where to put lazarusd's state (the store) and job files")(
      "shm-dir", po::value<std::string>(&cfg.shm_base)->default_value("/dev/shm"), "tmpfs for raw CRIU's images and lazarusd's staging")(
      "keep-temp", "keep the temporary directory (logs, images) for inspection");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "lazarus-bench-checkpoint: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  cfg.json = vm.count("json") > 0;
  cfg.raw_only = vm.count("raw-only") > 0;
  cfg.drop_caches = vm.count("drop-caches") > 0;
  cfg.keep_temp = vm.count("keep-temp") > 0;
  cfg.sizes.clear();
  std::stringstream ss(sizes_text);
  for (std::string item; std::getline(ss, item, ',');) {
    long v = std::atol(item.c_str());
    if (v <= 0) {
      std::cerr << "lazarus-bench-checkpoint: bad size \"" << item << "\" in --sizes\n";
      return 2;
    }
    cfg.sizes.push_back(static_cast<unsigned>(v));
  }
  if (vm.count("quick")) {
    cfg.runs = 1;
    cfg.sizes = {64};
    cfg.periodic_mib = 64;
    cfg.periodic_interval_s = 2;
    cfg.periodic_runs = 1;
    cfg.periodic_window = 2;
    cfg.periodic_idle_s = 2;
  }
  cfg.checkpoints = vm.count("periodic-only") == 0;
  cfg.periodic = vm.count("no-periodic") == 0 && !cfg.raw_only;
  if (cfg.runs < 1 || (cfg.content != "random" && cfg.content != "text")) {
    std::cerr << "lazarus-bench-checkpoint: --runs must be >= 1, --content random or text\n";
    return 2;
  }
  if (cfg.periodic_mib < 1 || cfg.periodic_interval_s < 1 || cfg.periodic_runs < 1 || cfg.periodic_window < 1 || cfg.periodic_churn < 0 ||
      cfg.periodic_churn > 100 || cfg.periodic_idle_s <= 0) {
    std::cerr << "lazarus-bench-checkpoint: bad --periodic-* value\n";
    return 2;
  }
  if (::geteuid() != 0) {
    std::cerr << "lazarus-bench-checkpoint: must run as root (CRIU dumps and restores process trees)\n";
    return 1;
  }

  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;  // no SA_RESTART: waits return EINTR and see the flag
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);

  Machine machine;
  utsname uts{};
  ::uname(&uts);
  machine.kernel = uts.release;
  machine.cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  machine.load_before = LoadAvg();
  auto t0 = Clock::now();
  CpuTimes cpu0 = ReadCpuTimes();

  std::vector<SizeResult> results;
  PeriodicResult periodic;
  std::string daemon_log;
  try {
    Tools tools = FindTools(bin_dir, cfg.raw_only);
    auto version = Run({tools.criu, "--version"});
    std::smatch m;
    machine.criu_version = std::regex_search(version.out, m, std::regex("Version: (\\S+)")) ? m[1].str() : "?";
    TempDir work(cfg.temp_base, cfg.keep_temp);
    TempDir shm(cfg.shm_base, cfg.keep_temp);
    machine.page_cache_new_ms = TimePageCacheWrite(work.path() + "/probe", 256);
    machine.page_cache_reuse_ms = TimePageCacheWrite(work.path() + "/probe", 256);
    Dirs dirs{work.path(), shm.path(), ""};
    std::unique_ptr<Daemon> daemon;
    if (!cfg.raw_only) {
      daemon = std::make_unique<Daemon>(tools, work.path(), shm.path());
      daemon_log = dirs.daemon_log = daemon->log();
      daemon->Start();
    }
    if (cfg.checkpoints)
      for (unsigned mib : cfg.sizes) results.push_back(MeasureSize(cfg, tools, dirs, mib));
    if (cfg.periodic) periodic = MeasurePeriodic(cfg, tools, dirs);
  } catch (const std::exception& e) {
    std::cerr << "lazarus-bench-checkpoint: " << e.what() << "\n";
    if (!daemon_log.empty() && !cfg.keep_temp) std::cerr << "(rerun with --keep-temp to keep lazarusd's log and the images)\n";
    return 1;
  }

  CpuTimes cpu1 = ReadCpuTimes();
  machine.seconds = MsSince(t0) / 1000.0;
  machine.load_after = LoadAvg();
  if (cpu1.total > cpu0.total) machine.steal_percent = 100.0 * static_cast<double>(cpu1.steal - cpu0.steal) / static_cast<double>(cpu1.total - cpu0.total);
  if (cfg.json)
    PrintJson(cfg, machine, results, periodic);
  else
    PrintTable(cfg, machine, results, periodic);
  return 0;
}

}  // namespace
}  // namespace lazarus::bench

int main(int argc, char** argv) { return lazarus::bench::Main(argc, argv); }
