// A daemon killed with SIGKILL leaves its jobs running; a new daemon on the same state
// directory re-adopts them.
#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

class DaemonRestart : public LazarusTest {
 protected:
  // Runs a counter, SIGKILLs the daemon, checks the job keeps going, starts a new daemon
  // on the same state dir and socket and checks it lists the job as running, same pid.
  void RunCounterAndRestartDaemon(const std::string& file, std::string* id, api::JobInfo* before) {
    ASSERT_TRUE(RunJob({BinPath("lz-counter"), file}, id, "survivor"));
    ASSERT_TRUE(WaitForState(*id, "running", before));
    ASSERT_TRUE(WaitForValues(file, 10));

    pid_t old_daemon = daemon_->pid();
    daemon_->Kill();
    ASSERT_FALSE(ProcessAlive(old_daemon));

    // The job does not notice.
    size_t n = ReadValues(file).size();
    ASSERT_TRUE(WaitForValues(file, n + 30, 10s)) << "the job stopped writing when the daemon was killed";
    EXPECT_TRUE(ProcessAlive(before->pid())) << "the job's root process died with the daemon";
    if (before->keeper_pid() > 0) {
      EXPECT_TRUE(ProcessAlive(before->keeper_pid())) << "the keeper died with the daemon";
    }

    // A new daemon on the same state dir (and the same, now stale, socket path).
    ASSERT_TRUE(RestartDaemon());
    api::JobList list;
    ASSERT_TRUE(List(&list));
    const api::JobInfo* found = nullptr;
    for (const auto& j : list.jobs())
      if (j.id() == *id) found = &j;
    ASSERT_NE(found, nullptr) << "the restarted daemon does not list job " << *id << ": " << list.ShortDebugString();
    EXPECT_EQ(found->state(), "running") << found->ShortDebugString();
    EXPECT_EQ(found->pid(), before->pid()) << found->ShortDebugString();
    EXPECT_EQ(found->name(), "survivor") << found->ShortDebugString();
    EXPECT_EQ(found->incarnation(), before->incarnation()) << found->ShortDebugString();
  }
};

TEST_F(DaemonRestart, DaemonSigkillLeavesJobRunning) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  api::JobInfo before;
  ASSERT_NO_FATAL_FAILURE(RunCounterAndRestartDaemon(file, &id, &before));

  // Checkpoints work on the re-adopted job, by id and by name.
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  ASSERT_TRUE(Checkpoint("survivor", &snap));
  api::JobInfo st;
  ASSERT_TRUE(Status(id, &st));
  EXPECT_EQ(st.state(), "running") << st.ShortDebugString();
  EXPECT_EQ(st.pid(), before.pid()) << st.ShortDebugString();
  EXPECT_EQ(st.snapshot_count(), 2u) << st.ShortDebugString();
  size_t n = ReadValues(file).size();
  EXPECT_TRUE(WaitForValues(file, n + 10)) << "the job stopped writing after the checkpoint";
  EXPECT_TRUE(IsOneRun(ReadValues(file)));
}

TEST_F(DaemonRestart, RestartedDaemonNoticesCrashOfReadoptedJobAndRestoresIt) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  api::JobInfo before;
  ASSERT_NO_FATAL_FAILURE(RunCounterAndRestartDaemon(file, &id, &before));

  long a = ReadValues(file).back();
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  long b = ReadValues(file).back();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(KillJobProcesses(id));
  api::JobInfo crashed;
  ASSERT_TRUE(WaitForState(id, "crashed", &crashed)) << "the restarted daemon does not supervise the re-adopted job";
  size_t n = ReadValues(file).size();

  CmdResult r = Cli({"restore", id});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::JobInfo restored;
  ASSERT_TRUE(WaitForState(id, "running", &restored));
  EXPECT_NE(restored.pid(), before.pid());
  EXPECT_EQ(restored.incarnation(), before.incarnation() + 1) << restored.ShortDebugString();
  ASSERT_TRUE(WaitForValues(file, n + 20));
  EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(ReadValues(file), a, b, a, 20));
}

// The keeper holds the exit status of a job that ends while no daemon runs; the next daemon
// reports it.
TEST_F(DaemonRestart, JobExitWhileDaemonIsDownIsReportedAfterRestart) {
  std::string id;
  ASSERT_TRUE(RunJob({"/bin/sh", "-c", "sleep 1; exit 5"}, &id));
  ASSERT_TRUE(WaitForState(id, "running"));
  daemon_->Kill();
  std::this_thread::sleep_for(2000ms);
  ASSERT_TRUE(RestartDaemon());
  api::JobInfo info;
  bool done = WaitUntil([&] { return Status(id, &info) && (info.state() == "exited" || info.state() == "crashed"); },
                        10s, 50ms);
  ASSERT_TRUE(done) << info.ShortDebugString();
  EXPECT_NE(info.exit_status().find("5"), std::string::npos)
      << "the job's real exit status should survive the daemon's absence: " << info.ShortDebugString();
}

}  // namespace
}  // namespace lztest
