// Replay after a real CRIU restore, without the daemon: the test does what the daemon does.
// An unmodified program runs under the shim with a log; the test dumps it with
// `criu dump --leave-running`, lets it go on, SIGKILLs it, bumps the incarnation and
// `criu restore`s it. The restored process resumes from the snapshot's memory, finds its
// log mappings showing everything written after the snapshot, replays that part (its file
// writes are skipped) and goes on live.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "tests/client/client_test_util.h"

namespace lazarus::client_test {
namespace {

int CountTicks(const std::string& path) { return static_cast<int>(Lines(ReadText(path)).size()); }

bool WaitFor(const std::function<bool()>& done, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

int Criu(const std::vector<std::string>& args, const std::string& log_dir) {
  std::string cmd = LAZARUS_CRIU_BINARY;
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >" + log_dir + "/criu.out 2>&1";
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Starts a program the way a job runs: a session of its own, the log and shim in its
// environment, stdin and stdout on /dev/null, stderr to `err`.
pid_t StartJob(const std::vector<std::string>& args, const std::string& log, bool shim, const std::string& err) {
  std::vector<std::string> argv = args, env{"LAZARUS_LOG=" + log, "LAZARUS_JOB=criu"};
  argv[0] = kBinDir + "/" + argv[0];
  if (shim) env.push_back("LD_PRELOAD=" + kShim);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();  // a session of its own: CRIU dumps it without --shell-job
    const int null = ::open("/dev/null", O_RDWR);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(e, 2);
    ::close_range(3, ~0U, 0);
    ::execve(cargv[0], cargv.data(), cenv.data());
    ::_exit(127);
  }
  return pid;
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// True once `pid` has exited (a restored process is not our child: it may linger as a zombie
// until its new parent reaps it).
bool Gone(pid_t pid) {
  const std::string stat = ReadText("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return stat.empty() || (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z');
}

// Acceptance test 5 at the engine's level: a snapshot taken at each step of an explicit
// effect's protocol (before its INTENT, after its INTENT, after the perform function did its
// work, after its RESULT); the process finishes, the snapshot is restored, and the restored
// process must end with the same results, every RESULT from the log, nothing appended twice.
class CriuEffectSweep : public ::testing::TestWithParam<const char*> {};

TEST_P(CriuEffectSweep, RestoreAtEachStepOfAnEffectReplaysConsistently) {
  ASSERT_EQ(::geteuid(), 0u) << "CRIU needs root: run this test as root (CI does)";
  const std::string point = GetParam();
  constexpr int kEffects = 8, kPausedEffect = 3;
  ScratchDir dir;
  MakeLog(dir / "log");
  const std::string images = dir / "images", pause = dir / "pause", results = dir / "results";
  const std::string performed = dir / "performed";
  ASSERT_EQ(::mkdir(images.c_str(), 0700), 0);
  const pid_t pid = StartJob({"lzc-effects", std::to_string(kEffects), "--performed", performed, "--results", results,
                              "--pause", std::to_string(kPausedEffect), point, pause},
                             dir / "log", /*shim=*/false, dir / "stderr");
  ASSERT_TRUE(WaitFor([&] { return Exists(pause + ".paused"); }, 10000)) << ReadText(dir / "stderr");
  ASSERT_EQ(Criu({"dump", "-t", std::to_string(pid), "-D", images, "--leave-running", "-o", "dump.log"}, dir.path()), 0)
      << ReadText(dir / "criu.out") << ReadText(images + "/dump.log");
  WriteText(pause + ".go", "");
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadText(dir / "stderr");
  const auto original = Lines(ReadText(results));
  ASSERT_EQ(original.size(), static_cast<size_t>(kEffects));
  const size_t records = ReadLog(dir / "log").size();

  EXPECT_EQ(BumpIncarnation(dir / "log"), 2u);
  ASSERT_EQ(Criu({"restore", "-D", images, "-d", "-o", "restore.log"}, dir.path()), 0)
      << ReadText(dir / "criu.out") << ReadText(images + "/restore.log");
  ASSERT_TRUE(WaitFor([&] { return Gone(pid); }, 20000));
  EXPECT_EQ(ReadText(dir / "stderr"), "");

  // The restored process goes on from the pause and reports every later effect as replayed,
  // with the original status and result (the effect caught in the middle takes its RESULT
  // from the log when the previous incarnation recorded one).
  const auto all = Lines(ReadText(results));
  const size_t from = point == "after" ? kPausedEffect + 1 : kPausedEffect;
  ASSERT_EQ(all.size(), original.size() + (kEffects - from)) << ReadText(results);
  for (size_t i = from; i < static_cast<size_t>(kEffects); ++i) {
    std::string want = original[i];
    want.replace(want.find("replayed=0"), 10, "replayed=1");
    EXPECT_EQ(all[original.size() + i - from], want);
  }
  // Performed once each; a perform function frozen before doing its work does it again on
  // restore (its code after the snapshot runs again), and its result still comes from the log.
  std::map<std::string, int> times;
  for (const auto& l : Lines(ReadText(performed))) ++times[l];
  for (int i = 0; i < kEffects; ++i) {
    EXPECT_EQ(times[std::to_string(i)], i == kPausedEffect && point == "intent" ? 2 : 1) << "effect " << i;
  }
  EXPECT_EQ(ReadLog(dir / "log").size(), records) << "the replay appended records";
}

INSTANTIATE_TEST_SUITE_P(Points, CriuEffectSweep, ::testing::Values("before", "intent", "performed", "after"));

TEST(CriuReplay, RestoredProcessReplaysWhatItDidAfterTheSnapshotThenGoesOnLive) {
  ASSERT_EQ(::geteuid(), 0u) << "CRIU needs root: run this test as root (CI does)";
  ScratchDir dir;
  MakeLog(dir / "log");
  const std::string out = dir / "out", images = dir / "images";
  ASSERT_EQ(::mkdir(images.c_str(), 0700), 0);
  constexpr int kTicks = 120;

  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();  // a session of its own: CRIU dumps it without --shell-job
    const int null = ::open("/dev/null", O_RDWR);
    const int err = ::open((dir / "stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(err, 2);
    ::close_range(3, ~0U, 0);
    const std::string log = "LAZARUS_LOG=" + dir / "log", preload = "LD_PRELOAD=" + kShim;
    const std::string prog = kBinDir + "/lzc-shim-io", count = std::to_string(kTicks);
    char* argv[] = {const_cast<char*>(prog.c_str()), const_cast<char*>("ticks"), const_cast<char*>(out.c_str()),
                    const_cast<char*>(count.c_str()), nullptr};
    char* envp[] = {const_cast<char*>(log.c_str()), const_cast<char*>("LAZARUS_JOB=criu"),
                    const_cast<char*>(preload.c_str()), nullptr};
    ::execve(argv[0], argv, envp);
    ::_exit(127);
  }
  ASSERT_TRUE(WaitFor([&] { return CountTicks(out) >= 20; }, 10000));
  ASSERT_EQ(Criu({"dump", "-t", std::to_string(pid), "-D", images, "--leave-running", "-o", "dump.log"}, dir.path()), 0)
      << ReadText(dir / "criu.out") << ReadText(images + "/dump.log");
  const int at_snapshot = CountTicks(out);
  ASSERT_TRUE(WaitFor([&] { return CountTicks(out) >= at_snapshot + 20; }, 10000));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  const int at_kill = CountTicks(out);
  ASSERT_LT(at_kill, kTicks);
  EXPECT_EQ(BumpIncarnation(dir / "log"), 2u);
  ASSERT_EQ(Criu({"restore", "-D", images, "-d", "-o", "restore.log"}, dir.path()), 0)
      << ReadText(dir / "criu.out") << ReadText(images + "/restore.log");
  ASSERT_TRUE(WaitFor([&] { return CountTicks(out) >= kTicks && Gone(pid); }, 20000))
      << CountTicks(out) << " ticks";

  // Every tick exactly once, in order: the ticks between the snapshot and the kill were
  // replayed (their writes skipped), not written again; the clock never went backwards.
  const auto lines = Lines(ReadText(out));
  ASSERT_EQ(lines.size(), static_cast<size_t>(kTicks)) << "snapshot at " << at_snapshot << ", kill at " << at_kill;
  long last_ms = -1;
  for (int i = 0; i < kTicks; ++i) {
    int tick = 0;
    long ms = 0;
    ASSERT_EQ(std::sscanf(lines[i].c_str(), "tick %d %ld", &tick, &ms), 2) << lines[i];
    EXPECT_EQ(tick, i + 1);
    EXPECT_GE(ms, last_ms) << "clock went backwards at tick " << tick;
    last_ms = ms;
  }
  EXPECT_EQ(ReadText(dir / "stderr"), "");
  // The log holds each tick's records once: the replayed part was not appended again.
  std::set<uint64_t> seqs;
  for (const auto& r : ReadLog(dir / "log")) {
    if (r.channel == 0) {
      EXPECT_TRUE(seqs.insert(r.sequence).second) << "sequence " << r.sequence << " twice";
    }
  }
}

}  // namespace
}  // namespace lazarus::client_test
