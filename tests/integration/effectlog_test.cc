// The daemon's side of the effect log: every job gets one with the durability it asked
// for; snapshots and restores leave markers in it; a torn tail is cut before a restore and
// damage in the middle refuses it, changing nothing.
#include <fcntl.h>
#include <unistd.h>

#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

constexpr const char* kFirstSegment = "seg-0000000000000000";

class EffectLog : public LazarusTest {
 protected:
  ::testing::AssertionResult Log(const std::string& job, api::LogInfo* info) {
    CmdResult r = Cli({"log", job, "--json"});
    if (r.exit_code != 0) return ::testing::AssertionFailure() << r.Describe();
    return ParseJson(r.out, info);
  }

  // A counter job with `durability`, checkpointed `snapshots` times, then SIGKILLed.
  void CrashedCounter(const std::string& durability, int snapshots, std::string* id) {
    const std::string file = WorkPath("counter.txt");
    CmdResult r = Cli({"run", "--no-shim", "--durability", durability, "--", BinPath("lz-counter"), file});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    *id = Trim(r.out);
    ASSERT_TRUE(WaitForState(*id, "running"));
    ASSERT_TRUE(WaitForValues(file, 5));
    for (int i = 0; i < snapshots; ++i) {
      uint32_t snap = 0;
      ASSERT_TRUE(Checkpoint(*id, &snap));
    }
    ASSERT_TRUE(KillJobProcesses(*id));
    ASSERT_TRUE(WaitForState(*id, "crashed"));
  }

  std::string SegmentPath(const std::string& id) { return state_dir_ + "/jobs/" + id + "/log/" + kFirstSegment; }

  static void WriteAt(const std::string& path, off_t offset, const std::string& bytes) {
    int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), offset), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }

  static off_t OffsetOf(const std::string& position) {  // "SEGMENT:OFFSET"
    return static_cast<off_t>(std::stoll(position.substr(position.find(':') + 1)));
  }
};

TEST_F(EffectLog, EveryJobHasALogWithTheDurabilityItAskedFor) {
  for (const std::string mode : {"process", "group", "sync"}) {
    CmdResult r = Cli({"run", "--no-shim", "--durability", mode, "--", BinPath("lz-counter"), WorkPath(mode + ".txt")});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    const std::string id = Trim(r.out);
    api::JobInfo info;
    ASSERT_TRUE(Status(id, &info));
    EXPECT_EQ(info.durability(), mode) << info.ShortDebugString();
    api::LogInfo log;
    ASSERT_TRUE(Log(id, &log));
    EXPECT_EQ(log.durability(), mode);
    EXPECT_EQ(log.records_size(), 0) << log.ShortDebugString();
    EXPECT_EQ(log.end(), "clean") << log.ShortDebugString();
    EXPECT_EQ(log.incarnation(), 1u);
  }
  CmdResult r = Cli({"run", "--durability", "eventually", "--", BinPath("lz-counter"), WorkPath("x.txt")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(IsOneLineCliError(r));
  EXPECT_NE(r.err.find("eventually"), std::string::npos) << r.err;
  api::JobList list;
  ASSERT_TRUE(List(&list));
  EXPECT_EQ(list.jobs_size(), 3) << "a refused run creates nothing";
}

TEST_F(EffectLog, SnapshotAndRestoreLeaveMarkers) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(CrashedCounter("sync", 1, &id));
  CmdResult r = Cli({"restore", id});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::LogInfo log;
  ASSERT_TRUE(Log(id, &log));
  ASSERT_EQ(log.records_size(), 2) << log.ShortDebugString();
  EXPECT_EQ(log.records(0).type(), "snapshot-at");
  EXPECT_EQ(log.records(0).state(), "marker");
  EXPECT_NE(log.records(0).detail().find("snapshot 1 of incarnation 1"), std::string::npos) << log.records(0).detail();
  EXPECT_EQ(log.records(1).type(), "incarnation-began");
  EXPECT_NE(log.records(1).detail().find("incarnation 2 from snapshot 1"), std::string::npos) << log.records(1).detail();
  EXPECT_EQ(log.incarnation(), 2u);
  api::JobInfo info;
  ASSERT_TRUE(Status(id, &info));
  EXPECT_EQ(info.incarnation(), 2u) << "the job's incarnation is the log's";
}

TEST_F(EffectLog, TornTailIsCutBeforeRestore) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(CrashedCounter("process", 1, &id));
  api::LogInfo before;
  ASSERT_TRUE(Log(id, &before));
  ASSERT_EQ(before.end(), "clean");
  // A record cut off mid-write: garbage where the next record would start.
  ASSERT_NO_FATAL_FAILURE(WriteAt(SegmentPath(id), OffsetOf(before.end_position()), "\x13\x37torn-record-bytes"));
  api::LogInfo torn;
  ASSERT_TRUE(Log(id, &torn));
  EXPECT_EQ(torn.end(), "torn tail") << torn.ShortDebugString();

  CmdResult r = Cli({"restore", id});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::LogInfo after;
  ASSERT_TRUE(Log(id, &after));
  EXPECT_EQ(after.records_size(), 2) << "the valid record is kept, the marker of the restore follows it: "
                                     << after.ShortDebugString();
  EXPECT_EQ(ReadFile(daemon_->log_path()).find("cut a torn tail") != std::string::npos, true);
}

TEST_F(EffectLog, DamageInTheMiddleRefusesRestoreAndChangesNothing) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(CrashedCounter("process", 2, &id));
  api::LogInfo before;
  ASSERT_TRUE(Log(id, &before));
  ASSERT_EQ(before.records_size(), 2) << before.ShortDebugString();
  // Flip a byte inside the first marker's payload: a valid record follows it.
  const off_t first = OffsetOf(before.records(0).position());
  ASSERT_NO_FATAL_FAILURE(WriteAt(SegmentPath(id), first + 60, "\xff"));
  const std::string damaged = ReadFile(SegmentPath(id));

  CmdResult r = Cli({"restore", id});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_TRUE(IsOneLineCliError(r));
  EXPECT_NE(r.err.find("effect log"), std::string::npos) << r.err;
  api::JobInfo info;
  ASSERT_TRUE(Status(id, &info));
  EXPECT_EQ(info.state(), "crashed") << info.ShortDebugString();
  EXPECT_EQ(info.incarnation(), 1u) << info.ShortDebugString();
  EXPECT_TRUE(ReadFile(SegmentPath(id)) == damaged) << "a refused restore leaves the log as it was";
}

}  // namespace
}  // namespace lztest
