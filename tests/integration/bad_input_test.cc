// Every bad request gets a clear one-line error and changes nothing.
#include <sys/stat.h>

#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

class BadInput : public LazarusTest {
 protected:
  // Runs lazarusd with `args` and expects it to exit non-zero within 10 s with one line on
  // stderr.
  CmdResult ExpectDaemonRefuses(const std::vector<std::string>& args) {
    std::vector<std::string> argv{BinPath("lazarusd"), "--foreground"};
    argv.insert(argv.end(), args.begin(), args.end());
    CmdResult r = RunCommand(argv, WithTimeout(10s, work_dir_));
    EXPECT_FALSE(r.timed_out) << "lazarusd should refuse to start, but it ran: " << r.Describe();
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    std::string err = Trim(r.err);
    EXPECT_FALSE(err.empty()) << "no error message: " << r.Describe();
    EXPECT_EQ(err.find('\n'), std::string::npos) << "the error should be one line: " << r.Describe();
    return r;
  }
};

TEST_F(BadInput, UnknownJobIsAnError) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{{"status", "nope"},
                                                                             {"checkpoint", "nope"},
                                                                             {"snapshots", "nope"},
                                                                             {"restore", "nope"},
                                                                             {"kill", "nope"},
                                                                             {"rm", "nope"}}) {
    CmdResult r = Cli(args);
    EXPECT_EQ(r.exit_code, 1) << r.Describe();
    EXPECT_TRUE(IsOneLineCliError(r));
    EXPECT_NE(r.err.find("nope"), std::string::npos) << "the error should name the job: " << r.Describe();
  }
  api::JobList list;
  ASSERT_TRUE(List(&list));
  EXPECT_EQ(list.jobs_size(), 0);
  EXPECT_TRUE(DaemonAnswers());
}

TEST_F(BadInput, RestoreOfRunningJobIsRefused) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), file}, &id));
  api::JobInfo before;
  ASSERT_TRUE(WaitForState(id, "running", &before));
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  CmdResult r = Cli({"restore", id});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_TRUE(IsOneLineCliError(r));
  EXPECT_NE(r.err.find("running"), std::string::npos) << "the error should say the job is running: " << r.Describe();
  api::JobInfo after;
  ASSERT_TRUE(Status(id, &after));
  EXPECT_EQ(after.state(), "running") << after.ShortDebugString();
  EXPECT_EQ(after.pid(), before.pid()) << after.ShortDebugString();
  EXPECT_EQ(after.incarnation(), before.incarnation()) << after.ShortDebugString();
  EXPECT_TRUE(ProcessAlive(before.pid()));
  size_t n = ReadValues(file).size();
  EXPECT_TRUE(WaitForValues(file, n + 10));
  EXPECT_TRUE(IsOneRun(ReadValues(file)));
}

TEST_F(BadInput, CheckpointOfExitedJobIsRefused) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), file}, &id));
  api::JobInfo before;
  ASSERT_TRUE(WaitForState(id, "running", &before));
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  CmdResult k = Cli({"kill", id});
  ASSERT_EQ(k.exit_code, 0) << k.Describe();
  api::JobInfo exited;
  ASSERT_TRUE(WaitForState(id, "exited", &exited));
  EXPECT_FALSE(exited.exit_status().empty()) << exited.ShortDebugString();
  EXPECT_NE(exited.exit_status().find("kill"), std::string::npos)
      << "exit_status should say it was killed: " << exited.ShortDebugString();
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(before.pid()); }, 5s)) << "kill left the job's process alive";

  CmdResult r = Cli({"checkpoint", id});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_TRUE(IsOneLineCliError(r));
  api::JobInfo after;
  ASSERT_TRUE(Status(id, &after));
  EXPECT_EQ(after.state(), "exited");
  EXPECT_EQ(after.snapshot_count(), 1u) << after.ShortDebugString();
  api::SnapshotList snaps;
  ASSERT_TRUE(Snapshots(id, &snaps));
  EXPECT_EQ(snaps.snapshots_size(), 1) << snaps.ShortDebugString();
}

TEST_F(BadInput, RunOfMissingCommandIsRefused) {
  api::JobList before;
  ASSERT_TRUE(List(&before));
  CmdResult r = Cli({"run", "--", "/nonexistent/cmd", "arg"});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(IsOneLineCliError(r));
  EXPECT_NE(r.err.find("/nonexistent/cmd"), std::string::npos) << "the error should name the command: " << r.Describe();
  api::JobList after;
  ASSERT_TRUE(List(&after));
  EXPECT_EQ(after.jobs_size(), before.jobs_size()) << after.ShortDebugString();
  EXPECT_TRUE(DaemonAnswers());
}

TEST_F(BadInput, UnwritableStateDirIsRefused) {
  // Under /proc nothing can be created, even by root.
  ExpectDaemonRefuses({"--state-dir", "/proc/lazarus-nope", "--socket", tmp_dir_ + "/other1.sock"});
  // A regular file where the state dir should be, and a path below a regular file.
  std::string file = tmp_dir_ + "/not-a-dir";
  ASSERT_TRUE(WriteFile(file, "x"));
  ExpectDaemonRefuses({"--state-dir", file, "--socket", tmp_dir_ + "/other2.sock"});
  ExpectDaemonRefuses({"--state-dir", file + "/state", "--socket", tmp_dir_ + "/other3.sock"});
  EXPECT_TRUE(DaemonAnswers());
}

TEST_F(BadInput, SocketInUseByLiveDaemonIsRefused) {
  std::string other_state = tmp_dir_ + "/state2";
  ExpectDaemonRefuses({"--state-dir", other_state, "--socket", socket_});
  EXPECT_TRUE(DaemonAnswers()) << "the first daemon must still answer on its socket";
  // And it still works.
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), WorkPath("counter.txt")}, &id));
  ASSERT_TRUE(WaitForState(id, "running"));
}

TEST_F(BadInput, SecondDaemonOnSameStateDirIsRefused) {
  CmdResult r = ExpectDaemonRefuses({"--state-dir", state_dir_, "--socket", tmp_dir_ + "/other.sock"});
  std::string err = Trim(r.err);
  bool clear = err.find(state_dir_) != std::string::npos || err.find("already") != std::string::npos ||
               err.find("lock") != std::string::npos || err.find("in use") != std::string::npos;
  EXPECT_TRUE(clear) << "the error should say the state dir is in use: " << r.Describe();
  EXPECT_TRUE(DaemonAnswers());
}

TEST_F(BadInput, UnknownCliCommandIsUsageError) {
  CmdResult r = Cli({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_TRUE(IsOneLineCliError(r));
  CmdResult none = RunCommand({BinPath("lazarus"), "--socket", socket_});
  EXPECT_EQ(none.exit_code, 2) << "no command at all is a usage error: " << none.Describe();
  CmdResult missing = Cli({"status"});
  EXPECT_EQ(missing.exit_code, 2) << "a missing JOB is a usage error: " << missing.Describe();
  EXPECT_TRUE(DaemonAnswers());
}

TEST_F(BadInput, RestoreOfMissingSnapshotIsRefused) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), file}, &id));
  api::JobInfo before;
  ASSERT_TRUE(WaitForState(id, "running", &before));
  // A crashed job without any snapshot cannot be restored.
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  CmdResult none = Cli({"restore", id});
  EXPECT_EQ(none.exit_code, 1) << "restore without any snapshot: " << none.Describe();
  EXPECT_TRUE(IsOneLineCliError(none));
  api::JobInfo after;
  ASSERT_TRUE(Status(id, &after));
  EXPECT_EQ(after.state(), "crashed") << after.ShortDebugString();
  // A snapshot id that does not exist.
  CmdResult r = Cli({"restore", id, "--snapshot", "42"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_TRUE(IsOneLineCliError(r));
  EXPECT_NE(r.err.find("42"), std::string::npos) << "the error should name the snapshot: " << r.Describe();
  ASSERT_TRUE(Status(id, &after));
  EXPECT_EQ(after.state(), "crashed") << after.ShortDebugString();
  EXPECT_EQ(after.incarnation(), before.incarnation()) << after.ShortDebugString();
  EXPECT_TRUE(DaemonAnswers());
}

TEST_F(BadInput, RemovedJobIsGone) {
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), WorkPath("counter.txt")}, &id));
  api::JobInfo info;
  ASSERT_TRUE(WaitForState(id, "running", &info));
  CmdResult rm = Cli({"rm", id});
  EXPECT_NE(rm.exit_code, 0) << "rm of a running job without --force must fail: " << rm.Describe();
  EXPECT_TRUE(IsOneLineCliError(rm));
  ASSERT_TRUE(Status(id, &info));
  EXPECT_EQ(info.state(), "running");
  std::string job_dir = info.job_dir();
  rm = Cli({"rm", "--force", id});
  ASSERT_EQ(rm.exit_code, 0) << rm.Describe();
  EXPECT_TRUE(WaitUntil([&] { return !ProcessAlive(info.pid()); }, 5s)) << "rm --force left the job running";
  CmdResult st = Cli({"status", id});
  EXPECT_EQ(st.exit_code, 1) << st.Describe();
  EXPECT_TRUE(IsOneLineCliError(st));
  if (!job_dir.empty()) {
    struct stat sb;
    EXPECT_NE(stat(job_dir.c_str(), &sb), 0) << "rm should delete the job's data: " << job_dir;
  }

  // rm of a job that has exited (no --force needed), by name.
  std::string id2;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), WorkPath("counter2.txt")}, &id2, "second"));
  ASSERT_TRUE(WaitForState(id2, "running"));
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id2, &snap));
  CmdResult k = Cli({"kill", "second"});
  ASSERT_EQ(k.exit_code, 0) << k.Describe();
  ASSERT_TRUE(WaitForState(id2, "exited"));
  rm = Cli({"rm", "second"});
  ASSERT_EQ(rm.exit_code, 0) << rm.Describe();
  st = Cli({"status", id2});
  EXPECT_EQ(st.exit_code, 1) << st.Describe();
  api::JobList list;
  ASSERT_TRUE(List(&list));
  EXPECT_EQ(list.jobs_size(), 0) << list.ShortDebugString();
}

}  // namespace
}  // namespace lztest
