// `lazarus attach PID`: a process started elsewhere gets snapshots and can be restored.
#include <signal.h>
#include <sys/wait.h>

#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

class Attach : public LazarusTest {
 protected:
  // Starts lz-counter in its own session (stdio on /dev/null) and attaches it.
  void StartAndAttach(const std::string& file, pid_t* pid, std::string* id) {
    *pid = SpawnDetached({BinPath("lz-counter"), file});
    ASSERT_GT(*pid, 0);
    ASSERT_TRUE(WaitForValues(file, 10));
    CmdResult r = Cli({"attach", std::to_string(*pid), "--name", "adopted"});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    *id = Trim(r.out);
    ASSERT_FALSE(id->empty()) << r.Describe();
    ASSERT_EQ(id->find('\n'), std::string::npos) << "attach should print the job id: " << r.Describe();
    api::JobInfo info;
    ASSERT_TRUE(WaitForState(*id, "running", &info));
    EXPECT_EQ(info.pid(), *pid) << info.ShortDebugString();
    EXPECT_TRUE(info.attached()) << info.ShortDebugString();
    EXPECT_EQ(info.name(), "adopted") << info.ShortDebugString();
  }
};

TEST_F(Attach, AttachedCounterContinuesFromSnapshotAfterSigkill) {
  std::string file = WorkPath("counter.txt");
  pid_t pid = 0;
  std::string id;
  ASSERT_NO_FATAL_FAILURE(StartAndAttach(file, &pid, &id));

  ASSERT_TRUE(WaitForValues(file, 20));
  long a = ReadValues(file).back();
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  long b = ReadValues(file).back();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(ProcessAlive(pid)) << "the attached process died at the checkpoint";
  long k = ReadValues(file).back();

  // SIGKILL it and reap it (we are its parent), so that its PID is free for the restore.
  KillSpawned(pid);
  ASSERT_TRUE(WaitForState(id, "crashed"));
  size_t n = ReadValues(file).size();

  CmdResult r = Cli({"restore", id});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::JobInfo restored;
  ASSERT_TRUE(WaitForState(id, "running", &restored));
  EXPECT_TRUE(ProcessAlive(restored.pid())) << restored.ShortDebugString();
  EXPECT_EQ(restored.incarnation(), 2u) << restored.ShortDebugString();
  ASSERT_TRUE(WaitForValues(file, n + 20));
  EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(ReadValues(file), a, b, k, 20));
  EXPECT_TRUE(DaemonAnswers());
}

TEST_F(Attach, CloneOfAttachedJobWhileOriginalRunsSaysPidInUse) {
  std::string file = WorkPath("counter.txt");
  pid_t pid = 0;
  std::string id;
  ASSERT_NO_FATAL_FAILURE(StartAndAttach(file, &pid, &id));
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));

  CmdResult c = Cli({"restore", id, "--clone"});
  ASSERT_TRUE(DaemonAnswers()) << "after: " << c.Describe();
  if (c.exit_code != 0) {
    EXPECT_TRUE(IsOneLineCliError(c));
    std::string err = c.err;
    for (auto& ch : err) ch = static_cast<char>(tolower(ch));
    EXPECT_TRUE(err.find(std::to_string(pid)) != std::string::npos && err.find("in use") != std::string::npos)
        << "the error should say that PID " << pid << " is in use: " << c.Describe();
  } else {
    std::string clone_id = Trim(c.out);
    api::JobInfo clone;
    ASSERT_TRUE(WaitForState(clone_id, "running", &clone));
    EXPECT_TRUE(ProcessAlive(clone.pid()));
  }
  // The original is untouched.
  EXPECT_TRUE(ProcessAlive(pid));
  api::JobInfo st;
  ASSERT_TRUE(Status(id, &st));
  EXPECT_EQ(st.state(), "running") << st.ShortDebugString();
  EXPECT_EQ(st.pid(), pid) << st.ShortDebugString();
  size_t n = ReadValues(file).size();
  EXPECT_TRUE(WaitForValues(file, n + 10));
}

TEST_F(Attach, AttachOfMissingPidIsRefused) {
  // A PID that does not exist: take one of ours that has exited and been reaped.
  pid_t gone = SpawnDetached({"/bin/true"});
  ASSERT_GT(gone, 0);
  KillSpawned(gone);
  CmdResult r = Cli({"attach", std::to_string(gone)});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_TRUE(IsOneLineCliError(r));
  api::JobList list;
  ASSERT_TRUE(List(&list));
  EXPECT_EQ(list.jobs_size(), 0) << list.ShortDebugString();
}

}  // namespace
}  // namespace lztest
