// A job killed with SIGKILL and restored continues from its snapshot: for a plain counter,
// a multi-threaded one, one that forks, one with TCP sockets and one that rewrites a
// non-append file which grew after the snapshot.
#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

enum class FileKind {
  kAppend,     // O_APPEND: the restored job appends S+1.. after K
  kOverwrite,  // O_TRUNC, written at the offset: the restored job rewrites from S+1 in place
};

class Restore : public LazarusTest {
 protected:
  // Runs `cmd` (which writes the counter file `file`), checkpoints it, lets it run 300 ms
  // more, SIGKILLs all its processes, restores it and checks that it continued from the
  // snapshot. `after_restore` runs once the restored job wrote 20 more values.
  void CheckCounterSurvivesSigkill(const std::vector<std::string>& cmd, const std::string& file, FileKind kind,
                                   const std::function<void(long s_min)>& after_start = nullptr,
                                   const std::function<void(long s_min)>& after_restore = nullptr) {
    std::string id;
    ASSERT_TRUE(RunJob(cmd, &id));
    api::JobInfo first;
    ASSERT_TRUE(WaitForState(id, "running", &first));
    ASSERT_GT(first.pid(), 0);
    EXPECT_EQ(first.incarnation(), 1u) << first.ShortDebugString();
    EXPECT_EQ(first.snapshot_count(), 0u) << first.ShortDebugString();

    ASSERT_TRUE(WaitForValues(file, 20));
    if (after_start) {
      ASSERT_NO_FATAL_FAILURE(after_start(0));
    }

    // Checkpoint: the snapshot's value S is between A (before) and B (after).
    std::vector<long> before = ReadValues(file);
    ASSERT_TRUE(IsOneRun(before));
    long a = before.back();
    uint32_t snap = 0;
    ASSERT_TRUE(Checkpoint(id, &snap));
    std::vector<long> after = ReadValues(file);
    long b = after.back();
    ASSERT_LE(a, b);

    api::JobInfo st;
    ASSERT_TRUE(Status(id, &st));
    EXPECT_EQ(st.state(), "running") << st.ShortDebugString();
    EXPECT_EQ(st.pid(), first.pid()) << "a checkpoint must leave the job running: " << st.ShortDebugString();
    EXPECT_EQ(st.snapshot_count(), 1u) << st.ShortDebugString();
    EXPECT_EQ(st.latest_snapshot(), snap) << st.ShortDebugString();
    api::SnapshotList snaps;
    ASSERT_TRUE(Snapshots(id, &snaps));
    ASSERT_EQ(snaps.snapshots_size(), 1) << snaps.ShortDebugString();
    EXPECT_EQ(snaps.snapshots(0).id(), snap);
    EXPECT_GT(snaps.snapshots(0).size_bytes(), 0u) << snaps.ShortDebugString();

    // It keeps running after the checkpoint.
    std::this_thread::sleep_for(300ms);
    ASSERT_TRUE(WaitForValues(file, after.size() + 20)) << "the job stopped writing after the checkpoint";

    // SIGKILL every process of the job from outside.
    long k_min = ReadValues(file).back();
    off_t size_at_kill = FileSize(file);
    ASSERT_TRUE(KillJobProcesses(id));
    api::JobInfo crashed;
    ASSERT_TRUE(WaitForState(id, "crashed", &crashed));
    std::vector<long> at_crash = ReadValues(file);
    ASSERT_TRUE(IsOneRun(at_crash));
    ASSERT_GE(at_crash.back(), k_min);
    off_t size_at_crash = FileSize(file);
    ASSERT_GE(size_at_crash, size_at_kill);

    // Restore from the newest snapshot.
    CmdResult r = Cli({"restore", id});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    EXPECT_EQ(Trim(r.out), id) << "restore should print the job id: " << r.Describe();

    api::JobInfo restored;
    ASSERT_TRUE(WaitForState(id, "running", &restored));
    EXPECT_NE(restored.pid(), first.pid()) << restored.ShortDebugString();
    EXPECT_TRUE(ProcessAlive(restored.pid())) << restored.ShortDebugString();
    EXPECT_EQ(restored.incarnation(), 2u) << restored.ShortDebugString();

    if (kind == FileKind::kOverwrite) {
      // The restored process writes at the snapshot's offset, which is at least that of A.
      auto positions = FdPositions(restored.pid(), file);
      EXPECT_FALSE(positions.empty()) << "no process of the restored job has " << file << " open";
      for (off_t pos : positions) EXPECT_GE(pos, BytesOfValues(a)) << "the restored fd's offset is before the snapshot";
    }

    // It writes at least 20 more values. For the overwritten file, it must never shrink
    // (a job started again from scratch would truncate it).
    off_t min_size = size_at_crash;
    size_t want = at_crash.size() + 20;
    std::vector<long> v;
    bool grew = WaitUntil(
        [&] {
          min_size = std::min(min_size, FileSize(file));
          v = ReadValues(file);
          // (For the overwritten file, only the values beyond K add lines.)
          return v.size() >= want;
        },
        15s, 10ms);
    ASSERT_TRUE(grew) << "the restored job did not write 20 more values: " << DescribeValues(v);

    if (kind == FileKind::kAppend) {
      EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(v, a, b, at_crash.back(), 20));
    } else {
      EXPECT_GE(min_size, size_at_crash) << "the file shrank after the restore: the job was started again "
                                            "instead of restored";
      EXPECT_TRUE(IsOneRun(v)) << "a restored lz-rwfile rewrites S+1, S+2, ... at the snapshot's offset, "
                                  "so the file stays one consecutive run";
      EXPECT_GE(v.back(), at_crash.back() + 20);
    }

    if (after_restore) {
      ASSERT_NO_FATAL_FAILURE(after_restore(a));
    }

    api::JobInfo end;
    ASSERT_TRUE(Status(id, &end));
    EXPECT_EQ(end.state(), "running") << end.ShortDebugString();
    EXPECT_EQ(end.incarnation(), 2u) << end.ShortDebugString();
    EXPECT_EQ(end.pid(), restored.pid()) << end.ShortDebugString();
    EXPECT_TRUE(DaemonAnswers());
  }
};

TEST_F(Restore, CounterContinuesFromSnapshotAfterSigkill) {
  std::string file = WorkPath("counter.txt");
  CheckCounterSurvivesSigkill({BinPath("lz-counter"), file}, file, FileKind::kAppend);
}

TEST_F(Restore, MultiThreadedJobContinuesFromSnapshotAfterSigkill) {
  std::string file = WorkPath("threads.txt");
  CheckCounterSurvivesSigkill({BinPath("lz-threads"), file}, file, FileKind::kAppend);
}

TEST_F(Restore, ForkingJobContinuesFromSnapshotAfterSigkill) {
  std::string file = WorkPath("forker.txt");
  CheckCounterSurvivesSigkill({BinPath("lz-forker"), file}, file, FileKind::kAppend);
}

TEST_F(Restore, TcpJobContinuesFromSnapshotAfterSigkill) {
  std::string file = WorkPath("tcp.txt");
  int port = PickFreePort();
  ASSERT_GT(port, 0);
  auto fetch_ok = [&](long at_least) {
    std::optional<std::string> got;
    bool ok = WaitUntil(
        [&] {
          got = TcpFetch(port);
          return got.has_value() && got->rfind("lz-tcp n=", 0) == 0;
        },
        5s, 100ms);
    ASSERT_TRUE(ok) << "connecting to 127.0.0.1:" << port << " failed or got no answer"
                    << (got ? ": got '" + *got + "'" : std::string(": connection refused"));
    long n = std::atol(got->c_str() + 9);
    EXPECT_GE(n, at_least) << "answer: " << *got;
  };
  CheckCounterSurvivesSigkill({BinPath("lz-tcp"), file, std::to_string(port)}, file, FileKind::kAppend,
                              [&](long) { fetch_ok(1); },
                              [&](long a) { fetch_ok(a + 1); });
}

TEST_F(Restore, MemoryContentSurvivesRestore) {
  // lz-memhog checks its whole memory against its pattern every 100 steps and writes "BAD"
  // (a line that is not a number: every sequence check fails on it) on a mismatch.
  std::string file = WorkPath("memhog.txt");
  std::string gaps = WorkPath("gaps.txt");
  CheckCounterSurvivesSigkill({BinPath("lz-memhog"), "64", file, "--gaps", gaps}, file, FileKind::kAppend, nullptr,
                              [&](long a) {
                                // Two full checks after the restore.
                                size_t n = ReadValues(file).size();
                                ASSERT_TRUE(WaitForValues(file, n + 210, 20s));
                                std::vector<long> v = ReadValues(file);
                                EXPECT_EQ(ReadFile(file).find("BAD"), std::string::npos) << Tail(ReadFile(file), 3);
                                EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(v, a, v.back(), 1, 200));
                                std::string g = Trim(ReadFile(gaps));
                                EXPECT_FALSE(g.empty()) << "lz-memhog --gaps wrote nothing";
                              });
}

TEST_F(Restore, NonAppendFileThatGrewAfterSnapshotIsRestored) {
  std::string file = WorkPath("rwfile.txt");
  CheckCounterSurvivesSigkill({BinPath("lz-rwfile"), file}, file, FileKind::kOverwrite);
}

// `lazarus kill` ends the job for good, but its snapshots can still bring it back.
TEST_F(Restore, KilledJobCanBeRestored) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), file}, &id));
  api::JobInfo first;
  ASSERT_TRUE(WaitForState(id, "running", &first));
  ASSERT_TRUE(WaitForValues(file, 20));
  long a = ReadValues(file).back();
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  long b = ReadValues(file).back();
  std::this_thread::sleep_for(200ms);
  CmdResult k = Cli({"kill", id});
  ASSERT_EQ(k.exit_code, 0) << k.Describe();
  ASSERT_TRUE(WaitForState(id, "exited"));
  ASSERT_TRUE(WaitUntil([&] { return !ProcessAlive(first.pid()); }, 5s));
  size_t n = ReadValues(file).size();
  CmdResult r = Cli({"restore", id});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::JobInfo restored;
  ASSERT_TRUE(WaitForState(id, "running", &restored));
  EXPECT_EQ(restored.incarnation(), 2u) << restored.ShortDebugString();
  ASSERT_TRUE(WaitForValues(file, n + 20));
  EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(ReadValues(file), a, b, a, 20));
}

// --snapshot picks an older snapshot than the newest.
TEST_F(Restore, RestoreOfOlderSnapshotResumesFromIt) {
  std::string file = WorkPath("counter.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), file}, &id));
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitForValues(file, 20));
  long a1 = ReadValues(file).back();
  uint32_t snap1 = 0, snap2 = 0;
  ASSERT_TRUE(Checkpoint(id, &snap1));
  long b1 = ReadValues(file).back();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(Checkpoint(id, &snap2));
  EXPECT_NE(snap1, snap2);
  long after2 = ReadValues(file).back();
  ASSERT_GT(after2, b1 + 10);
  api::SnapshotList snaps;
  ASSERT_TRUE(Snapshots(id, &snaps));
  ASSERT_EQ(snaps.snapshots_size(), 2) << snaps.ShortDebugString();
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  size_t n = ReadValues(file).size();
  CmdResult r = Cli({"restore", id, "--snapshot", std::to_string(snap1)});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitForValues(file, n + 20));
  EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(ReadValues(file), a1, b1, after2, 20)) << "should resume from snapshot "
                                                                                   << snap1 << ", not the newest";
}

}  // namespace
}  // namespace lztest
