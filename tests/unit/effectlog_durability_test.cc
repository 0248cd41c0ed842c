// The promises of the durability modes, tested against a power cut acted out by
// FaultInjectionSync: what no fdatasync covered is gone afterwards.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "effectlog/group_syncer.h"
#include "effectlog/repair.h"
#include "effectlog_fault_injection.h"
#include "effectlog_test_util.h"
#include "temp_dir.h"

namespace lazarus::effectlog {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::effectlog::testing;
using Clock = std::chrono::steady_clock;

struct Log {
  std::string dir;
  std::unique_ptr<FaultInjectionSync> disk;
};

Log NewLog(const TempDir& tmp, DurabilityMode mode, uint32_t segment_size = 64 * 1024) {
  Log log{tmp / "log", nullptr};
  log.disk = std::make_unique<FaultInjectionSync>(log.dir);
  LogOptions o;
  o.segment_size = segment_size;
  o.durability = mode;
  EXPECT_TRUE(CreateLog(log.dir, o, *log.disk).ok());
  return log;
}

std::unique_ptr<Writer> OpenWriter(const Log& log) {
  WriterOptions o;
  o.sync = log.disk.get();
  return Writer::Open(log.dir, o).value();
}

TEST(EffectLogDurability, ThePowerCutDropsWhatNoSyncCovered) {
  // The fault-injection layer itself: process mode promises nothing across a power cut.
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kProcess);
  auto w = OpenWriter(log);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(w->Append(ArgsFor(1, i, PayloadFor(1, i))).ok());
  ASSERT_TRUE(w->Sync().ok());
  for (uint64_t i = 10; i < 20; ++i) ASSERT_TRUE(w->Append(ArgsFor(1, i, PayloadFor(1, i))).ok());
  w.reset();
  log.disk->PowerCut();
  ReadBack rb = ReadAll(log.dir);
  EXPECT_EQ(rb.records.size(), 10u);
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
}

TEST(EffectLogDurability, EverySyncAppendThatReturnedSurvivesAPowerCut) {
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kSync, 16 * 1024);  // several roll-overs
  auto w = OpenWriter(log);
  constexpr int kThreads = 4;
  constexpr uint64_t kPerThread = 150;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; i < kPerThread; ++i) {
        const std::string p = PayloadFor(static_cast<uint32_t>(t), i);
        ASSERT_TRUE(w->Append(ArgsFor(static_cast<uint32_t>(t), i, p)).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  w.reset();
  log.disk->PowerCut();
  ReadBack rb = ReadAll(log.dir);
  EXPECT_NE(rb.end.kind, EndKind::kCorrupt) << rb.end.problem;
  ASSERT_EQ(rb.records.size(), kThreads * kPerThread);
  for (size_t i = 0; i < rb.records.size(); ++i) ASSERT_TRUE(RecordIsIntact(rb.records[i], rb.payloads[i]));
}

TEST(EffectLogDurability, ConcurrentSyncAppendsShareOneFdatasync) {
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kSync, 1 << 20);
  auto w = OpenWriter(log);
  const uint64_t before = log.disk->segment_syncs();
  constexpr int kThreads = 4;
  constexpr uint64_t kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; i < kPerThread; ++i) {
        const std::string p = PayloadFor(static_cast<uint32_t>(t), i);
        ASSERT_TRUE(w->Append(ArgsFor(static_cast<uint32_t>(t), i, p)).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  const uint64_t syncs = log.disk->segment_syncs() - before;
  // Each sync copies a 1 MiB image here (slow, like a disk): waiting threads pile up.
  EXPECT_LT(syncs, kThreads * kPerThread * 3 / 4) << syncs << " fdatasyncs for " << kThreads * kPerThread << " appends";
}

TEST(EffectLogDurability, GroupModeKeepsEverythingBeforeTheLastRound) {
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kGroup, 16 * 1024);
  auto w = OpenWriter(log);
  auto syncer = GroupSyncer::Open(log.dir, *log.disk).value();
  for (uint64_t i = 0; i < 400; ++i) ASSERT_TRUE(w->Append(ArgsFor(1, i, PayloadFor(1, i))).ok());
  ASSERT_TRUE(syncer->SyncOnce().ok());
  EXPECT_EQ(w->control().durable_upto(), w->Tail());
  for (uint64_t i = 400; i < 450; ++i) ASSERT_TRUE(w->Append(ArgsFor(1, i, PayloadFor(1, i))).ok());
  w.reset();
  log.disk->PowerCut();
  ReadBack rb = ReadAll(log.dir);
  EXPECT_EQ(rb.records.size(), 400u);
  EXPECT_NE(rb.end.kind, EndKind::kCorrupt) << rb.end.problem;
}

TEST(EffectLogDurability, GroupModeLosesAtMostItsWindow) {
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kGroup, 1 << 20);
  auto w = OpenWriter(log);
  auto syncer = GroupSyncer::Open(log.dir, *log.disk).value();
  constexpr auto kWindow = std::chrono::milliseconds(5);
  Status syncer_result;
  std::jthread syncer_thread([&](std::stop_token stop) { syncer_result = syncer->Run(stop, kWindow); });

  // Each record's payload carries when its append returned.
  const auto t0 = Clock::now();
  uint64_t n = 0;
  while (Clock::now() - t0 < std::chrono::milliseconds(300)) {
    const int64_t at = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
    std::string p(reinterpret_cast<const char*>(&at), sizeof at);
    ASSERT_TRUE(w->Append(ArgsFor(1, n++, p)).ok());
    if (n % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  // The power goes: from now on nothing reaches the disk.
  log.disk->FailSyncsWith(EIO);
  const int64_t cut = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
  syncer_thread.request_stop();
  syncer_thread.join();
  EXPECT_GT(syncer->rounds(), 10u);
  w.reset();
  log.disk->PowerCut();

  ReadBack rb = ReadAll(log.dir);
  EXPECT_NE(rb.end.kind, EndKind::kCorrupt) << rb.end.problem;
  ASSERT_GT(rb.records.size(), 0u);
  // A prefix survived, and everything it lost was appended within the window before the
  // cut (plus scheduling slack on this shared machine: the syncer thread is not real-time).
  for (size_t i = 0; i < rb.records.size(); ++i) ASSERT_EQ(rb.records[i].sequence, i);
  const uint64_t lost = n - rb.records.size();
  int64_t last_kept = 0;
  std::memcpy(&last_kept, rb.payloads.back().data(), sizeof last_kept);
  const int64_t lost_window_us = cut - last_kept;
  constexpr int64_t kSlackUs = 150'000;
  EXPECT_LE(lost_window_us, std::chrono::duration_cast<std::chrono::microseconds>(kWindow).count() + kSlackUs)
      << lost << " records lost, the last kept one was appended " << lost_window_us << " us before the cut";
  std::printf("group mode: %llu appends, %llu lost, last kept %lld us before the cut, %llu rounds\n",
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(lost),
              static_cast<long long>(lost_window_us), static_cast<unsigned long long>(syncer->rounds()));
}

TEST(EffectLogDurability, FailedSyncStopsTheLogForEveryLaterAppend) {
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kSync);
  auto w = OpenWriter(log);
  ASSERT_TRUE(w->Append(ArgsFor(1, 0, PayloadFor(1, 0))).ok());
  log.disk->FailSyncsWith(EIO);
  AppendResult r = w->Append(ArgsFor(1, 1, PayloadFor(1, 1)));
  EXPECT_EQ(r.code, AppendCode::kStopped);
  EXPECT_EQ(r.err, EIO);
  EXPECT_EQ(w->control().stopped(), StopReason::kSyncFailed);
  log.disk->FailSyncsWith(0);  // the disk "recovers": the log must not
  EXPECT_EQ(w->Append(ArgsFor(1, 2, PayloadFor(1, 2))).code, AppendCode::kStopped);
  // Another process (the daemon) sees it in the shared header.
  EXPECT_EQ(ControlFile::Open(log.dir, false).value().stopped(), StopReason::kSyncFailed);
}

TEST(EffectLogDurability, FailedGroupRoundStopsTheJobsAppends) {
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kGroup);
  auto w = OpenWriter(log);
  auto syncer = GroupSyncer::Open(log.dir, *log.disk).value();
  ASSERT_TRUE(w->Append(ArgsFor(1, 0, PayloadFor(1, 0))).ok());
  log.disk->FailSyncsWith(EIO);
  Status st = syncer->SyncOnce();
  EXPECT_EQ(st.code(), Code::kIo);
  EXPECT_EQ(w->Append(ArgsFor(1, 1, PayloadFor(1, 1))).code, AppendCode::kStopped);
  EXPECT_EQ(ToStatus(w->Append(ArgsFor(1, 1, PayloadFor(1, 1)))).code(), Code::kIo);
}

TEST(EffectLogDurability, PowerLossDamageAfterTheDurableMarkIsCut) {
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kGroup);
  auto w = OpenWriter(log);
  auto syncer = GroupSyncer::Open(log.dir, *log.disk).value();
  std::vector<LogPosition> at;
  for (uint64_t i = 0; i < 20; ++i) at.push_back(w->Append(ArgsFor(1, i, PayloadFor(1, i))).position);
  ASSERT_TRUE(syncer->SyncOnce().ok());
  for (uint64_t i = 20; i < 30; ++i) at.push_back(w->Append(ArgsFor(1, i, PayloadFor(1, i))).position);
  w.reset();
  // The disk kept record 25 but lost record 22 (never synced, written back out of order).
  const std::string path = SegmentPath(log.dir, 0);
  std::string img = ReadWholeFile(path);
  std::memset(img.data() + at[22].offset, 0, RecordLength(64));
  WriteWholeFile(path, img);
  ASSERT_EQ(ReadAll(log.dir).end.kind, EndKind::kCorrupt);
  EXPECT_EQ(RepairTornTail(log.dir).status().code(), Code::kDataLoss);  // without the power-loss flag
  RepairOptions o;
  o.after_power_loss = true;
  auto rep = RepairTornTail(log.dir, o);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_TRUE(rep->dropped_valid_records);
  ReadBack rb = ReadAll(log.dir);
  EXPECT_EQ(rb.records.size(), 22u);
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
}

TEST(EffectLogDurability, PowerLossDamageBelowTheDurableMarkIsRefused) {
  TempDir tmp;
  Log log = NewLog(tmp, DurabilityMode::kGroup);
  auto w = OpenWriter(log);
  auto syncer = GroupSyncer::Open(log.dir, *log.disk).value();
  std::vector<LogPosition> at;
  for (uint64_t i = 0; i < 20; ++i) at.push_back(w->Append(ArgsFor(1, i, PayloadFor(1, i))).position);
  ASSERT_TRUE(syncer->SyncOnce().ok());
  w.reset();
  const std::string path = SegmentPath(log.dir, 0);
  std::string img = ReadWholeFile(path);
  img[at[5].offset + 60] ^= 1;  // a synced record rotted
  WriteWholeFile(path, img);
  RepairOptions o;
  o.after_power_loss = true;
  EXPECT_EQ(RepairTornTail(log.dir, o).status().code(), Code::kDataLoss);
}

}  // namespace
}  // namespace lazarus::effectlog
