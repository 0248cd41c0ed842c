// `lazarus run`: the job's environment, working directory, output files and PID namespace.
#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

class Run : public LazarusTest {};

TEST_F(Run, JobGetsCallersCwdEnvironmentAndOwnOutputFiles) {
  // The shell records what the job sees, then sleeps (a job that exits at once is another
  // case).
  std::string script =
      "pwd > where.txt; echo \"$LZ_IT_MARK\" > env.txt; echo $$ > pid.txt; "
      "echo to-stdout; echo to-stderr >&2; exec sleep 600";
  CmdResult r = Cli({"run", "--name", "shell", "--json", "--", "/bin/sh", "-c", script}, 60s,
                    {"LZ_IT_MARK=hello-from-the-caller"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  // --json prints the JobInfo.
  api::JobInfo printed;
  ASSERT_TRUE(ParseJson(r.out, &printed));
  std::string id = printed.id();
  ASSERT_FALSE(id.empty()) << r.Describe();
  EXPECT_EQ(printed.name(), "shell") << printed.ShortDebugString();
  api::JobInfo info;
  ASSERT_TRUE(Status("shell", &info)) << "status by name";
  EXPECT_EQ(info.id(), id);
  ASSERT_TRUE(WaitUntil([&] { return !ReadFile(WorkPath("pid.txt")).empty(); }, 10s)) << "the job did not run";
  EXPECT_EQ(Trim(ReadFile(WorkPath("where.txt"))), work_dir_) << "the job should start in the caller's cwd";
  EXPECT_EQ(Trim(ReadFile(WorkPath("env.txt"))), "hello-from-the-caller") << "the job should get the caller's env";
  std::string inner_pid = Trim(ReadFile(WorkPath("pid.txt")));
  EXPECT_NE(inner_pid, "1") << "the job runs under an init in its own PID namespace";
  EXPECT_NE(inner_pid, std::to_string(info.pid())) << "the job should be in its own PID namespace";
  ASSERT_TRUE(WaitForState(id, "running", &info));
  ASSERT_FALSE(info.stdout_path().empty()) << info.ShortDebugString();
  ASSERT_FALSE(info.stderr_path().empty()) << info.ShortDebugString();
  EXPECT_TRUE(WaitUntil([&] { return ReadFile(info.stdout_path()).find("to-stdout") != std::string::npos; }, 5s))
      << info.stdout_path() << ": " << ReadFile(info.stdout_path());
  EXPECT_TRUE(WaitUntil([&] { return ReadFile(info.stderr_path()).find("to-stderr") != std::string::npos; }, 5s))
      << info.stderr_path() << ": " << ReadFile(info.stderr_path());
  EXPECT_EQ(ProcessComm(info.pid()), "lazarus-init") << "the job's root process should be lazarus-init";
}

TEST_F(Run, JobThatExitsIsExitedWithItsStatus) {
  std::string id;
  ASSERT_TRUE(RunJob({"/bin/sh", "-c", "sleep 0.3; exit 7"}, &id));
  // Gone on its own: exited (or crashed, for a non-zero status), with the status kept.
  api::JobInfo info;
  bool done = WaitUntil([&] { return Status(id, &info) && (info.state() == "exited" || info.state() == "crashed"); },
                        10s, 50ms);
  ASSERT_TRUE(done) << info.ShortDebugString();
  EXPECT_NE(info.exit_status().find("7"), std::string::npos) << info.ShortDebugString();
  api::JobList list;
  ASSERT_TRUE(List(&list));
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).id(), id);
}

// --json of checkpoint and restore, and the socket from LAZARUS_SOCKET.
TEST_F(Run, JsonOutputsAndSocketFromEnvironment) {
  std::string file = WorkPath("counter.txt");
  // No --socket: LAZARUS_SOCKET says where the daemon is.
  CmdResult r = RunCommand({BinPath("lazarus"), "run", "--name", "envsock", "--", BinPath("lz-counter"), file},
                           WithTimeout(60s, work_dir_, {"LAZARUS_SOCKET=" + socket_}));
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  std::string id = Trim(r.out);
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitForValues(file, 10));

  CmdResult c = Cli({"checkpoint", id, "--json"});
  ASSERT_EQ(c.exit_code, 0) << c.Describe();
  api::SnapshotInfo snap;
  ASSERT_TRUE(ParseJson(c.out, &snap));
  EXPECT_EQ(snap.id(), 1u) << snap.ShortDebugString();
  EXPECT_GT(snap.size_bytes(), 0u) << snap.ShortDebugString();
  EXPECT_GT(snap.created_unix_ms(), 1600000000000) << snap.ShortDebugString();

  api::SnapshotList list;
  ASSERT_TRUE(Snapshots(id, &list));
  ASSERT_EQ(list.snapshots_size(), 1);
  EXPECT_EQ(list.snapshots(0).id(), snap.id());
  EXPECT_EQ(list.snapshots(0).created_unix_ms(), snap.created_unix_ms());

  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  CmdResult rs = Cli({"restore", id, "--json"});
  ASSERT_EQ(rs.exit_code, 0) << rs.Describe();
  api::JobInfo info;
  ASSERT_TRUE(ParseJson(rs.out, &info));
  EXPECT_EQ(info.id(), id) << info.ShortDebugString();
  EXPECT_EQ(info.incarnation(), 2u) << info.ShortDebugString();
  ASSERT_TRUE(WaitForState(id, "running", &info));

  CmdResult l = RunCommand({BinPath("lazarus"), "list"}, WithTimeout(60s, work_dir_, {"LAZARUS_SOCKET=" + socket_}));
  ASSERT_EQ(l.exit_code, 0) << l.Describe();
  EXPECT_NE(l.out.find(id), std::string::npos) << "list should show the job: " << l.Describe();
}

}  // namespace
}  // namespace lztest
