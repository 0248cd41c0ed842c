// The same snapshot restored twice: once in place, once as a clone while the first runs.
#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

class Clone : public LazarusTest {};

TEST_F(Clone, RestoreSameSnapshotTwice) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), file}, &id, "original"));
  api::JobInfo first;
  ASSERT_TRUE(WaitForState(id, "running", &first));
  ASSERT_TRUE(WaitForValues(file, 20));
  long a = ReadValues(file).back();
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  long b = ReadValues(file).back();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  size_t n = ReadValues(file).size();

  CmdResult r = Cli({"restore", id, "--snapshot", std::to_string(snap)});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::JobInfo restored;
  ASSERT_TRUE(WaitForState(id, "running", &restored));
  ASSERT_TRUE(WaitForValues(file, n + 20));
  ASSERT_TRUE(IsTwoRunsResumingFromSnapshot(ReadValues(file), a, b, a, 20));

  // The same snapshot again, as a clone, while the restored job runs.
  CmdResult c = Cli({"restore", id, "--clone", "--name", "copy", "--snapshot", std::to_string(snap)});
  ASSERT_TRUE(DaemonAnswers()) << "after: " << c.Describe();
  if (c.exit_code == 0) {
    std::string clone_id = Trim(c.out);
    ASSERT_FALSE(clone_id.empty()) << c.Describe();
    ASSERT_EQ(clone_id.find('\n'), std::string::npos) << c.Describe();
    EXPECT_NE(clone_id, id) << "a clone is a new job";
    api::JobInfo clone;
    ASSERT_TRUE(WaitForState(clone_id, "running", &clone));
    EXPECT_EQ(clone.name(), "copy") << clone.ShortDebugString();
    EXPECT_NE(clone.pid(), restored.pid()) << clone.ShortDebugString();
    EXPECT_NE(clone.job_dir(), restored.job_dir()) << clone.ShortDebugString();
    EXPECT_NE(clone.stdout_path(), restored.stdout_path()) << "the clone's output must go to its own job dir";
    EXPECT_NE(clone.stderr_path(), restored.stderr_path()) << "the clone's output must go to its own job dir";
    // Both keep running, independently: the shared counter file now gets both sequences.
    size_t m = ReadValues(file).size();
    std::this_thread::sleep_for(500ms);
    EXPECT_TRUE(ProcessAlive(clone.pid()));
    EXPECT_TRUE(ProcessAlive(restored.pid()));
    std::vector<long> v = ReadValues(file);
    EXPECT_GE(v.size(), m + 40) << "two counters should write about 100 values in 500 ms: " << DescribeValues(v);
    api::JobInfo again;
    ASSERT_TRUE(Status(clone_id, &again));
    EXPECT_EQ(again.state(), "running") << again.ShortDebugString();
    EXPECT_EQ(again.pid(), clone.pid());
  } else {
    EXPECT_TRUE(IsOneLineCliError(c));
    std::cerr << "[info] clone refused: " << c.Describe() << "\n";
  }
  // Either way the first one still runs, unchanged.
  api::JobInfo st;
  ASSERT_TRUE(Status(id, &st));
  EXPECT_EQ(st.state(), "running") << st.ShortDebugString();
  EXPECT_EQ(st.pid(), restored.pid()) << st.ShortDebugString();
  EXPECT_EQ(st.incarnation(), restored.incarnation()) << st.ShortDebugString();
  EXPECT_TRUE(ProcessAlive(restored.pid()));
  EXPECT_TRUE(DaemonAnswers());
}

// A clone of a job that still runs (never crashed): both run.
TEST_F(Clone, CloneOfRunningJobRunsBesideIt) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), file}, &id));
  api::JobInfo first;
  ASSERT_TRUE(WaitForState(id, "running", &first));
  ASSERT_TRUE(WaitForValues(file, 10));
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  CmdResult c = Cli({"restore", id, "--clone"});
  ASSERT_EQ(c.exit_code, 0) << c.Describe();
  std::string clone_id = Trim(c.out);
  ASSERT_NE(clone_id, id);
  api::JobInfo clone;
  ASSERT_TRUE(WaitForState(clone_id, "running", &clone));
  EXPECT_NE(clone.pid(), first.pid());
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(ProcessAlive(clone.pid()));
  EXPECT_TRUE(ProcessAlive(first.pid()));
  api::JobInfo st;
  ASSERT_TRUE(Status(id, &st));
  EXPECT_EQ(st.state(), "running");
  EXPECT_EQ(st.pid(), first.pid());
  EXPECT_EQ(st.incarnation(), first.incarnation());

  // Killing the clone does not touch the original.
  CmdResult k = Cli({"kill", clone_id});
  ASSERT_EQ(k.exit_code, 0) << k.Describe();
  ASSERT_TRUE(WaitForState(clone_id, "exited"));
  EXPECT_TRUE(ProcessAlive(first.pid()));
  ASSERT_TRUE(Status(id, &st));
  EXPECT_EQ(st.state(), "running");
}

}  // namespace
}  // namespace lztest
