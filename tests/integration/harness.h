// Harness of the integration tests: a real lazarusd on a fresh state directory, the real
// `lazarus` CLI, real CRIU and the job programs of tests/jobs.
//
// Every test gets its own temporary directory (state dir, socket, daemon log, work files
// of the jobs), its own daemon, and on teardown every job is killed, the daemon is
// SIGKILLed and the directory removed. When a test failed, the teardown prints the daemon
// log, each job's status, stdout and stderr and the tails of the CRIU logs in the state
// dir; set LAZARUS_IT_KEEP=1 to keep the directory.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "daemon/api.pb.h"

namespace lztest {

namespace api = ::lazarus::api;
using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// Where the built executables are (LAZARUS_BIN_DIR, set by the CMakeLists).
std::string BinDir();
std::string BinPath(const std::string& name);

// Parses the CLI's --json output into an API message (unknown fields ignored).
template <typename Msg>
::testing::AssertionResult ParseJson(const std::string& text, Msg* msg) {
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  auto st = google::protobuf::util::JsonStringToMessage(text, msg, opts);
  if (!st.ok()) {
    return ::testing::AssertionFailure() << "cannot parse JSON as " << Msg::descriptor()->full_name() << ": "
                                         << st.ToString() << "\n--- text:\n" << text;
  }
  return ::testing::AssertionSuccess();
}

// ---- processes ------------------------------------------------------------------------

struct CmdResult {
  int exit_code = -1;  // exit status; 128+N when killed by signal N; -1: could not run / timed out
  bool timed_out = false;
  std::string out;
  std::string err;
  std::string command;  // for messages
  std::string Describe() const;
};

struct CmdOptions {
  Millis timeout = 60s;
  std::string cwd;                // empty: the test's current directory
  std::vector<std::string> env;   // extra "NAME=value" entries added to the environment
};

inline CmdOptions WithTimeout(Millis timeout, std::string cwd = "", std::vector<std::string> env = {}) {
  CmdOptions o;
  o.timeout = timeout;
  o.cwd = std::move(cwd);
  o.env = std::move(env);
  return o;
}

// Runs argv (no shell) and captures its exit code, stdout and stderr.
CmdResult RunCommand(const std::vector<std::string>& argv, const CmdOptions& options = {});

// Polls `pred` every `interval` until it returns true or `timeout` passes.
bool WaitUntil(const std::function<bool()>& pred, Millis timeout, Millis interval = 20ms);

// True when `pid` exists and is not a zombie.
bool ProcessAlive(pid_t pid);
// `root` and all its descendants (host PIDs, through /proc/PID/task/*/children).
std::vector<pid_t> ProcessTree(pid_t root);
// SIGKILLs `root` and every descendant; returns the PIDs it signalled.
std::vector<pid_t> KillTree(pid_t root);
// The comm of a process ("" when it does not exist).
std::string ProcessComm(pid_t pid);

// A TCP port that was free a moment ago on 127.0.0.1.
int PickFreePort();
// Connects to 127.0.0.1:port and reads until EOF (or timeout); nullopt when the connection
// cannot be made.
std::optional<std::string> TcpFetch(int port, Millis timeout = 5s);

// ---- files ----------------------------------------------------------------------------

std::string ReadFile(const std::string& path);  // "" when missing
bool WriteFile(const std::string& path, const std::string& content);
std::string Tail(const std::string& text, size_t lines);
std::string Trim(const std::string& s);
std::vector<std::string> SplitLines(const std::string& text);  // without the empty last one
off_t FileSize(const std::string& path);  // -1 when missing

// The complete lines of a counter file as numbers (a trailing partial line is ignored; a
// line that is not a number becomes -1 so that every sequence check fails on it).
std::vector<long> ReadValues(const std::string& path);
// "N values, first .. last, breaks at [i: a -> b, ...]" for messages.
std::string DescribeValues(const std::vector<long>& v);
// Bytes that the lines "1\n" .. "n\n" take.
off_t BytesOfValues(long n);
// The file positions of every fd of the process tree under `root` that is open on `path`.
std::vector<off_t> FdPositions(pid_t root, const std::string& path);

// ---- the daemon -----------------------------------------------------------------------

class Daemon {
 public:
  Daemon(std::string state_dir, std::string socket, std::string log_path);
  ~Daemon();  // SIGKILLs it if it still runs
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts lazarusd --foreground and waits until its socket accepts and `list` answers.
  ::testing::AssertionResult Start(Millis timeout = 20s);
  // SIGKILL and reap.
  void Kill();
  // True while the process runs (reaps it when it has exited and records its status).
  bool Alive();
  std::string DescribeExit() const;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  const std::string& socket() const { return socket_; }
  const std::string& state_dir() const { return state_dir_; }
  // Its --staging-dir: on tmpfs, one per test, removed on teardown.
  std::string StagingDir() const;

 private:
  std::string state_dir_, socket_, log_path_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int wait_status_ = 0;
};

// ---- the fixture ----------------------------------------------------------------------

class LazarusTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // `lazarus --socket SOCK args...`, cwd = work dir.
  CmdResult Cli(const std::vector<std::string>& args, Millis timeout = 60s,
                const std::vector<std::string>& env = {});

  // `lazarus run [--name NAME] [--no-shim] -- cmd...`; *id = the printed job id. Without
  // the shim a restored job redoes what it did after the snapshot (the CRIU mechanics the
  // restore tests check); with it that is replayed from the effect log (exactly_once_test).
  ::testing::AssertionResult RunJob(const std::vector<std::string>& cmd, std::string* id,
                                    const std::string& name = "", bool shim = false);
  ::testing::AssertionResult Status(const std::string& job, api::JobInfo* info);
  ::testing::AssertionResult List(api::JobList* list);
  ::testing::AssertionResult Snapshots(const std::string& job, api::SnapshotList* list);
  // `lazarus checkpoint JOB`; *snapshot = the printed id.
  ::testing::AssertionResult Checkpoint(const std::string& job, uint32_t* snapshot);
  // Polls `status` until the state is `state` (10 s by default); *info = the last status.
  ::testing::AssertionResult WaitForState(const std::string& job, const std::string& state,
                                          api::JobInfo* info = nullptr, Millis timeout = 10s);
  // SIGKILLs every process of the job from outside (its init and all descendants).
  ::testing::AssertionResult KillJobProcesses(const std::string& job);
  // Waits until the counter file at `path` holds at least `n` values.
  ::testing::AssertionResult WaitForValues(const std::string& path, size_t n, Millis timeout = 15s);
  // The daemon still runs and answers `list`.
  ::testing::AssertionResult DaemonAnswers();

  // Checks that a failed CLI call printed exactly one line "lazarus: error: ..." on stderr.
  static ::testing::AssertionResult IsOneLineCliError(const CmdResult& r);

  // Replaces the daemon: a new lazarusd on the same state dir and socket (the old one must
  // be gone already), logging to a new file.
  ::testing::AssertionResult RestartDaemon();

  // Starts `argv` as a process of our own, in its own session, stdio on /dev/null: for
  // attach. The process is killed and reaped on teardown.
  pid_t SpawnDetached(const std::vector<std::string>& argv);
  // SIGKILLs and reaps a process started by SpawnDetached.
  void KillSpawned(pid_t pid);

  std::string WorkPath(const std::string& name) const { return work_dir_ + "/" + name; }

  std::string tmp_dir_, state_dir_, socket_, work_dir_;
  std::unique_ptr<Daemon> daemon_;
  int daemon_starts_ = 0;
  std::vector<std::string> daemon_logs_;
  std::vector<pid_t> spawned_;
  std::vector<pid_t> seen_pids_;  // roots and keepers of jobs seen by Status: killed on teardown

 private:
  void PrintDiagnostics();
  void CleanUpJobs();
};

// The acceptance check of a counter job (an O_APPEND file) that was checkpointed when the
// file's last value was between `a` and `b`, killed when it was at least `k_min`, and then
// restored: the values are exactly two strictly consecutive runs, 1..K (K >= k_min) and
// S+1..M with a <= S <= b and M >= S + min_after.
::testing::AssertionResult IsTwoRunsResumingFromSnapshot(const std::vector<long>& v, long a, long b,
                                                         long k_min, long min_after);
// The values are exactly 1..N, consecutive.
::testing::AssertionResult IsOneRun(const std::vector<long>& v);

}  // namespace lztest
