// Per-user authorization with real unprivileged users (made with useradd): a user runs,
// checkpoints, restores and kills its own jobs, which run with its uid; it cannot see or
// touch root's jobs or another user's, and cannot read any snapshot.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

// Test users, created once (and left for the next run: useradd is slow).
uid_t EnsureUser(const std::string& name) {
  if (const passwd* pw = ::getpwnam(name.c_str())) return pw->pw_uid;
  CmdResult r = RunCommand({"/usr/sbin/useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  const passwd* pw = ::getpwnam(name.c_str());
  return pw ? pw->pw_uid : 0;
}

uid_t ProcessUid(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key)
    if (key == "Uid:") {
      uid_t uid;
      in >> uid;
      return uid;
    }
  return static_cast<uid_t>(-1);
}

class Users : public LazarusTest {
 protected:
  void SetUp() override {
    LazarusTest::SetUp();
    alice_ = EnsureUser("lazarus-it-alice");
    bob_ = EnsureUser("lazarus-it-bob");
    ASSERT_NE(alice_, 0u);
    ASSERT_NE(bob_, 0u);
    // The users run copies of the CLI and the job from a directory they may enter (the
    // build tree may be private), and their jobs write into the shared work directory.
    bin_ = tmp_dir_ + "/bin";
    ASSERT_EQ(::mkdir(bin_.c_str(), 0755), 0);
    for (const char* b : {"lazarus", "lz-counter"})
      std::filesystem::copy_file(BinPath(b), bin_ + "/" + b);
    ASSERT_EQ(::chmod(tmp_dir_.c_str(), 0711), 0);
    ASSERT_EQ(::chmod(work_dir_.c_str(), 0777), 0);
  }

  CmdResult As(const std::string& user, const std::vector<std::string>& args) {
    std::vector<std::string> argv{"/usr/sbin/runuser", "-u", user, "--", bin_ + "/lazarus", "--socket", socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, WithTimeout(60s, work_dir_));
  }

  // The job's own process: the child of its init.
  pid_t CommandPid(const api::JobInfo& info) {
    auto tree = ProcessTree(info.pid());
    return tree.size() > 1 ? tree[1] : 0;
  }

  static ::testing::AssertionResult Denied(const CmdResult& r) {
    if (r.exit_code != 1) return ::testing::AssertionFailure() << "expected exit 1: " << r.Describe();
    if (r.err.find("permission denied") == std::string::npos && r.err.find("no job") == std::string::npos)
      return ::testing::AssertionFailure() << "expected a permission error: " << r.Describe();
    return IsOneLineCliError(r);
  }

  uid_t alice_ = 0, bob_ = 0;
  std::string bin_;
};

TEST_F(Users, UserRunsCheckpointsRestoresAndKillsItsOwnJobWithItsUid) {
  const std::string file = WorkPath("alice.txt");
  CmdResult r = As("lazarus-it-alice", {"run", "--no-shim", "--name", "mine", "--", bin_ + "/lz-counter", file});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::string id = Trim(r.out);
  api::JobInfo info;
  ASSERT_TRUE(WaitForState(id, "running", &info));
  ASSERT_TRUE(WaitForValues(file, 10));
  EXPECT_EQ(ProcessUid(CommandPid(info)), alice_) << "the job runs with its owner's uid, never as root";
  struct stat st {};
  ASSERT_EQ(::stat(info.stdout_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, alice_) << "the job's output files belong to its owner";

  long a = ReadValues(file).back();
  r = As("lazarus-it-alice", {"checkpoint", "mine"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  long b = ReadValues(file).back();
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  long k = ReadValues(file).back();
  r = As("lazarus-it-alice", {"restore", "mine"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  ASSERT_TRUE(WaitForState(id, "running", &info));
  ASSERT_TRUE(WaitForValues(file, static_cast<size_t>(k + 20)));
  EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(ReadValues(file), a, b, k, 5));
  EXPECT_EQ(ProcessUid(CommandPid(info)), alice_) << "still the owner's uid after a restore";

  r = As("lazarus-it-alice", {"kill", "mine"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  r = As("lazarus-it-alice", {"rm", "mine"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

TEST_F(Users, UserCannotSeeOrTouchRootsOrAnotherUsersJobs) {
  std::string roots;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), WorkPath("root.txt")}, &roots, "rootjob"));
  CmdResult r = As("lazarus-it-bob", {"run", "--no-shim", "--name", "bobs", "--", bin_ + "/lz-counter", WorkPath("bob.txt")});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::string bobs = Trim(r.out);
  api::JobInfo root_before, bob_before;
  ASSERT_TRUE(WaitForState(roots, "running", &root_before));
  ASSERT_TRUE(WaitForState(bobs, "running", &bob_before));

  for (const std::string& victim : {roots, bobs}) {
    for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
             {"status", victim}, {"checkpoint", victim}, {"snapshots", victim}, {"restore", victim},
             {"restore", victim, "--clone"}, {"kill", victim}, {"rm", victim, "--force"}, {"log", victim},
             {"policy", victim, "--interval", "1"}}) {
      std::vector<std::string> args = cmd;
      EXPECT_TRUE(Denied(As("lazarus-it-alice", args))) << "alice: " << cmd[0] << " " << victim;
    }
  }
  r = As("lazarus-it-alice", {"list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::JobList alices_view;
  ASSERT_TRUE(ParseJson(r.out, &alices_view));
  EXPECT_EQ(alices_view.jobs_size(), 0) << "alice sees no job but her own: " << alices_view.ShortDebugString();

  // Nothing changed for the owners.
  api::JobInfo root_after, bob_after;
  ASSERT_TRUE(Status(roots, &root_after));
  ASSERT_TRUE(Status(bobs, &bob_after));
  EXPECT_EQ(root_after.state(), "running");
  EXPECT_EQ(root_after.pid(), root_before.pid());
  EXPECT_EQ(root_after.snapshot_count(), 0u);
  EXPECT_EQ(bob_after.state(), "running");
  EXPECT_EQ(bob_after.pid(), bob_before.pid());
  EXPECT_EQ(bob_after.snapshot_count(), 0u);
  EXPECT_EQ(bob_after.policy().interval_s(), 0u);

  // Root manages every job.
  uint32_t snap = 0;
  EXPECT_TRUE(Checkpoint(bobs, &snap));
}

TEST_F(Users, UserCannotReadAnySnapshotFile) {
  CmdResult r = As("lazarus-it-alice", {"run", "--no-shim", "--", bin_ + "/lz-counter", WorkPath("a.txt")});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::string id = Trim(r.out);
  r = As("lazarus-it-alice", {"checkpoint", id, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::SnapshotInfo snap;
  ASSERT_TRUE(ParseJson(r.out, &snap));
  ASSERT_FALSE(snap.path().empty());
  // Every file under the snapshot, tried as the job's own user.
  int files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(snap.path())) {
    if (!entry.is_regular_file()) continue;
    ++files;
    CmdResult cat = RunCommand({"/usr/sbin/runuser", "-u", "lazarus-it-alice", "--", "/usr/bin/cat", entry.path().string()});
    EXPECT_NE(cat.exit_code, 0) << "alice could read " << entry.path();
  }
  EXPECT_GT(files, 0);
  CmdResult ls = RunCommand({"/usr/sbin/runuser", "-u", "lazarus-it-alice", "--", "/usr/bin/ls", snap.path()});
  EXPECT_NE(ls.exit_code, 0) << "alice could list " << snap.path();
}

// A forged image restored as root is code execution as root: the daemon restores only
// what it wrote itself (manifests and chunks carry a MAC under its key).
TEST_F(Users, AlteredManifestIsRefusedAtRestore) {
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), WorkPath("m.txt")}, &id));
  ASSERT_TRUE(WaitForValues(WorkPath("m.txt"), 5));
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  const std::string manifest = state_dir_ + "/store/manifests/" + id + "/" + std::to_string(snap) + ".manifest";
  std::string bytes = ReadFile(manifest);
  ASSERT_GT(bytes.size(), 64u) << manifest;
  // A forger changes one bit of the content and fixes the record's plain checksum
  // (common/record_file.h: magic 8, length 4, XXH3-64 8, payload): only the MAC is left.
  bytes[bytes.size() / 2] ^= 0x01;
  const uint64_t checksum = XXH3_64bits(bytes.data() + 20, bytes.size() - 20);
  std::memcpy(bytes.data() + 12, &checksum, sizeof checksum);
  ASSERT_TRUE(WriteFile(manifest, bytes));

  CmdResult r = Cli({"restore", id, "--snapshot", std::to_string(snap)});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_TRUE(IsOneLineCliError(r));
  EXPECT_NE(r.err.find("not authenticated"), std::string::npos) << r.err;
  api::JobInfo info;
  ASSERT_TRUE(Status(id, &info));
  EXPECT_EQ(info.state(), "crashed") << "a refused restore changes nothing";
}

}  // namespace
}  // namespace lztest
