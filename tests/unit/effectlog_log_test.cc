// Reader and writer behaviours of the effect log, one test per behaviour.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "effectlog/repair.h"
#include "effectlog_test_util.h"
#include "temp_dir.h"

namespace lazarus::effectlog {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::effectlog::testing;

constexpr uint32_t kSmallSegment = 8192;  // one page of header, one page of records

std::string NewLog(const TempDir& tmp, uint32_t segment_size = kSmallSegment,
                   DurabilityMode mode = DurabilityMode::kProcess) {
  const std::string dir = tmp / "log";
  LogOptions o;
  o.segment_size = segment_size;
  o.durability = mode;
  EXPECT_TRUE(CreateLog(dir, o).ok());
  return dir;
}

std::unique_ptr<Writer> OpenWriter(const std::string& dir) {
  auto w = Writer::Open(dir);
  EXPECT_TRUE(w.ok()) << w.status().message();
  return w.ok() ? std::move(*w) : nullptr;
}

// Appends records (channel 1, sequences 0..n-1) with the given payload sizes; returns positions.
std::vector<LogPosition> AppendSizes(Writer& w, const std::vector<size_t>& sizes) {
  std::vector<LogPosition> at;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string p = PayloadFor(1, i, sizes[i]);
    AppendResult r = w.Append(ArgsFor(1, i, p));
    EXPECT_TRUE(r.ok());
    at.push_back(r.position);
  }
  return at;
}

TEST(EffectLog, EmptyLogEndsCleanAtFirstRecordPosition) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  ReadBack rb = ReadAll(dir);
  EXPECT_TRUE(rb.records.empty());
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
  EXPECT_EQ(rb.end.position, (LogPosition{0, kSegmentHeaderSize}));
}

TEST(EffectLog, CreatingTwiceIsAlreadyExists) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  EXPECT_EQ(CreateLog(dir, LogOptions{}).code(), Code::kAlreadyExists);
}

TEST(EffectLog, BadSegmentSizeIsInvalidArgument) {
  TempDir tmp;
  LogOptions o;
  o.segment_size = 10000;
  EXPECT_EQ(CreateLog(tmp / "log", o).code(), Code::kInvalidArgument);
}

TEST(EffectLog, AppendedRecordsReadBackInOrderWithEveryField) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  auto w = OpenWriter(dir);
  const auto at = AppendSizes(*w, {0, 1, 13, 64, 100});
  ReadBack rb = ReadAll(dir);
  ASSERT_EQ(rb.records.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(rb.records[i].position, at[i]);
    EXPECT_EQ(rb.records[i].sequence, i);
    EXPECT_EQ(rb.records[i].channel, 1u);
    EXPECT_EQ(rb.records[i].type, static_cast<uint16_t>(RecordType::kResult));
    EXPECT_TRUE(RecordIsIntact(rb.records[i], rb.payloads[i], std::vector<size_t>{0, 1, 13, 64, 100}[i]));
  }
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
  EXPECT_EQ(rb.end.position, w->Tail());
}

TEST(EffectLog, PositionsAreOrderedLikeTheLog) {
  EXPECT_LT((LogPosition{0, 9000}), (LogPosition{1, 4096}));
  EXPECT_LT((LogPosition{1, 4096}).Packed(), (LogPosition{1, 4104}).Packed());
  EXPECT_LT((LogPosition{0, 0xffffffff}).Packed(), (LogPosition{1, 0}).Packed());
  EXPECT_EQ(LogPosition::Unpack((LogPosition{7, 123456}).Packed()), (LogPosition{7, 123456}));
}

TEST(EffectLog, RecordsRollOverIntoNewSegments) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  auto w = OpenWriter(dir);
  std::vector<size_t> sizes(200, 64);  // 120 bytes each: ~34 per 4 KiB segment
  const auto at = AppendSizes(*w, sizes);
  EXPECT_GT(at.back().segment, 4u);
  ReadBack rb = ReadAll(dir);
  ASSERT_EQ(rb.records.size(), 200u);
  for (size_t i = 0; i < rb.records.size(); ++i) EXPECT_EQ(rb.records[i].position, at[i]);
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
}

TEST(EffectLog, PayloadLargerThanASegmentIsRejected) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  auto w = OpenWriter(dir);
  const std::string big(w->max_payload() + 1, 'x');
  EXPECT_EQ(w->Append(ArgsFor(1, 0, big)).code, AppendCode::kTooLarge);
  const std::string fits(w->max_payload(), 'x');
  EXPECT_TRUE(w->Append(ArgsFor(1, 0, fits)).ok());
  EXPECT_EQ(ReadAll(dir).records.size(), 1u);
}

TEST(EffectLog, ReopenedWriterAppendsAfterExistingRecords) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  AppendSizes(*OpenWriter(dir), {10, 20});
  auto w = OpenWriter(dir);
  const std::string p = PayloadFor(2, 0);
  EXPECT_TRUE(w->Append(ArgsFor(2, 0, p)).ok());
  ReadBack rb = ReadAll(dir);
  ASSERT_EQ(rb.records.size(), 3u);
  EXPECT_EQ(rb.records[2].channel, 2u);
}

TEST(EffectLog, UnknownRecordTypeIsReturnedForTheCallerToSkip) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  auto w = OpenWriter(dir);
  const std::string p = PayloadFor(1, 0);
  AppendArgs a = ArgsFor(1, 0, p);
  a.type = static_cast<RecordType>(999);
  ASSERT_TRUE(w->Append(a).ok());
  ReadBack rb = ReadAll(dir);
  ASSERT_EQ(rb.records.size(), 1u);
  EXPECT_FALSE(rb.records[0].known_type());
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
}

// Damages the log's first segment in place (the writer is gone).
void Patch(const std::string& dir, size_t offset, const std::string& bytes) {
  const std::string path = SegmentPath(dir, 0);
  std::string data = ReadWholeFile(path);
  data.replace(offset, bytes.size(), bytes);
  WriteWholeFile(path, data);
}

TEST(EffectLog, ChecksumMismatchInTheMiddleIsReportedWithItsPosition) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), {64, 64, 64, 64});
  Patch(dir, at[1].offset + kRecordHeaderSize + 3, "X");
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.records.size(), 1u);
  EXPECT_EQ(rb.end.kind, EndKind::kCorrupt);
  EXPECT_EQ(rb.end.position, at[1]);
  EXPECT_EQ(rb.end.problem, "checksum mismatch");
}

TEST(EffectLog, ChecksumMismatchInTheLastRecordIsATornTail) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), {64, 64, 64});
  Patch(dir, at[2].offset + kRecordHeaderSize + 3, "X");
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.records.size(), 2u);
  EXPECT_EQ(rb.end.kind, EndKind::kTornTail);
  EXPECT_EQ(rb.end.position, at[2]);
}

TEST(EffectLog, TruncatedTrailingRecordIsIgnored) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), {64, 64, 64});
  // The last record's second half never reached the disk.
  Patch(dir, at[2].offset + 60, std::string(60, '\0'));
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.records.size(), 2u);
  EXPECT_EQ(rb.end.kind, EndKind::kTornTail);
  EXPECT_EQ(rb.end.position, at[2]);
}

TEST(EffectLog, ClaimedSlotOfADeadWriterIsSkipped) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), {64, 64, 64});
  // Record 1's writer claimed its slot and died before committing.
  uint64_t claimed = MakeFrame(RecordLength(64), kFrameClaimed);
  Patch(dir, at[1].offset, std::string(reinterpret_cast<const char*>(&claimed), 8) + std::string(RecordLength(64) - 8, '\0'));
  ReadBack rb = ReadAll(dir);
  ASSERT_EQ(rb.records.size(), 2u);
  EXPECT_EQ(rb.records[1].position, at[2]);
  EXPECT_EQ(rb.abandoned, 1u);
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
}

TEST(EffectLog, ClaimedSlotStopsALiveReaderUntilCommitted) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), {64, 64});
  uint64_t claimed = MakeFrame(RecordLength(64), kFrameClaimed);
  Patch(dir, at[1].offset, std::string(reinterpret_cast<const char*>(&claimed), 8));
  ReaderOptions live;
  live.live = true;
  ReadBack rb = ReadAll(dir, live);
  EXPECT_EQ(rb.records.size(), 1u);
  EXPECT_EQ(rb.end.kind, EndKind::kPending);
  EXPECT_EQ(rb.end.position, at[1]);
}

TEST(EffectLog, LiveReaderPicksUpRecordsAppendedAfterItsEnd) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  auto w = OpenWriter(dir);
  ReaderOptions live;
  live.live = true;
  auto reader = Reader::Open(dir, live).value();
  RecordView r;
  EXPECT_FALSE(reader->Next(&r));
  EXPECT_EQ(reader->end().kind, EndKind::kClean);
  AppendSizes(*w, std::vector<size_t>(40, 64));  // crosses into segment 1
  int n = 0;
  while (reader->Next(&r)) ++n;
  EXPECT_EQ(n, 40);
}

TEST(EffectLog, ZeroedSpaceFollowedByRecordsIsDamageInTheMiddle) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), {64, 64, 64});
  Patch(dir, at[1].offset, std::string(RecordLength(64), '\0'));  // a page lost, the next one kept
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.records.size(), 1u);
  EXPECT_EQ(rb.end.kind, EndKind::kCorrupt);
  EXPECT_EQ(rb.end.position, at[1]);
}

TEST(EffectLog, MissingSegmentInTheMiddleIsReported) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  AppendSizes(*OpenWriter(dir), std::vector<size_t>(100, 64));
  ASSERT_EQ(::unlink(SegmentPath(dir, 1).c_str()), 0);
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.end.kind, EndKind::kCorrupt);
  EXPECT_EQ(rb.end.position, (LogPosition{1, 0}));
  EXPECT_NE(rb.end.problem.find("missing"), std::string::npos);
}

TEST(EffectLog, DamagedSegmentHeaderIsReported) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  AppendSizes(*OpenWriter(dir), {64});
  Patch(dir, 3, "X");
  ReadBack rb = ReadAll(dir);
  EXPECT_TRUE(rb.records.empty());
  EXPECT_EQ(rb.end.kind, EndKind::kCorrupt);
  EXPECT_EQ(rb.end.position, (LogPosition{0, 0}));
}

// The exhaustive checks: a small log of one segment with records of several sizes.
struct SmallLog {
  std::string dir;
  std::vector<LogPosition> at;
  std::vector<uint32_t> lengths;
  std::vector<uint32_t> used;  // header + payload: the bytes the checksum covers (padding is not)
  std::string image;  // the segment file
  uint32_t end = 0;   // offset after the last record
};

SmallLog MakeSmallLog(const TempDir& tmp) {
  SmallLog s;
  s.dir = NewLog(tmp);
  const std::vector<size_t> sizes = {0, 1, 13, 64, 100, 7};
  s.at = AppendSizes(*OpenWriter(s.dir), sizes);
  for (size_t z : sizes) {
    s.lengths.push_back(RecordLength(static_cast<uint32_t>(z)));
    s.used.push_back(kRecordHeaderSize + static_cast<uint32_t>(z));
  }
  s.image = ReadWholeFile(SegmentPath(s.dir, 0));
  s.end = static_cast<uint32_t>(s.at.back().offset + s.lengths.back());
  return s;
}

// How many records lie wholly below `offset` (their padding aside).
size_t RecordsBelow(const SmallLog& s, size_t offset) {
  size_t n = 0;
  while (n < s.at.size() && s.at[n].offset + s.used[n] <= offset) ++n;
  return n;
}

TEST(EffectLog, EveryTruncationYieldsExactlyTheValidPrefix) {
  TempDir tmp;
  const SmallLog s = MakeSmallLog(tmp);
  const std::string path = SegmentPath(s.dir, 0);
  for (size_t len = 0; len <= s.end + 16; ++len) {
    WriteWholeFile(path, s.image.substr(0, len));
    ReadBack rb = ReadAll(s.dir);
    const size_t want = len < kSegmentHeaderSize ? 0 : RecordsBelow(s, len);
    ASSERT_EQ(rb.records.size(), want) << "file cut at " << len;
    for (size_t i = 0; i < want; ++i) ASSERT_EQ(rb.records[i].position, s.at[i]);
    ASSERT_NE(rb.end.kind, EndKind::kCorrupt) << "file cut at " << len << ": " << rb.end.problem;
  }
}

TEST(EffectLog, EveryTornWriteYieldsExactlyTheValidPrefix) {
  TempDir tmp;
  const SmallLog s = MakeSmallLog(tmp);
  const std::string path = SegmentPath(s.dir, 0);
  // The file keeps its size; everything from `cut` on never reached the disk (zeros).
  for (size_t cut = kSegmentHeaderSize; cut <= s.end; ++cut) {
    std::string img = s.image;
    std::memset(img.data() + cut, 0, img.size() - cut);
    WriteWholeFile(path, img);
    ReadBack rb = ReadAll(s.dir);
    const size_t want = RecordsBelow(s, cut);
    ASSERT_EQ(rb.records.size(), want) << "torn at " << cut;
    ASSERT_NE(rb.end.kind, EndKind::kCorrupt) << "torn at " << cut << ": " << rb.end.problem;
    if (want < s.at.size() && cut > s.at[want].offset) {
      ASSERT_EQ(rb.end.kind, EndKind::kTornTail) << "torn at " << cut;
    }
    const LogPosition want_end = want < s.at.size() ? s.at[want] : LogPosition{0, s.end};
    ASSERT_EQ(rb.end.position, want_end);
  }
}

TEST(EffectLog, EveryFlippedByteIsDetectedAndNothingPastItIsReturned) {
  TempDir tmp;
  const SmallLog s = MakeSmallLog(tmp);
  const std::string path = SegmentPath(s.dir, 0);
  for (size_t i = 0; i < s.end + 64; ++i) {
    std::string img = s.image;
    img[i] = static_cast<char>(img[i] ^ 0x5a);
    WriteWholeFile(path, img);
    ReadBack rb = ReadAll(s.dir);
    SCOPED_TRACE("flipped byte " + std::to_string(i));
    if (i < kSegmentChecksummed + 8) {  // header fields and their checksum
      ASSERT_TRUE(rb.records.empty());
      ASSERT_EQ(rb.end.kind, EndKind::kCorrupt);
      continue;
    }
    if (i < kSegmentHeaderSize) {  // padding, the tail hint, reserved space: not read
      ASSERT_EQ(rb.records.size(), s.at.size());
      continue;
    }
    if (i >= s.end) {  // garbage after the end: nothing lost, a torn tail to cut
      ASSERT_EQ(rb.records.size(), s.at.size());
      ASSERT_EQ(rb.end.kind, EndKind::kTornTail);
      ASSERT_EQ(rb.end.position, (LogPosition{0, s.end}));
      continue;
    }
    size_t k = 0;  // the record holding byte i
    while (s.at[k].offset + s.lengths[k] <= i) ++k;
    // A byte in a record's zero padding is outside the checksum: harmless.
    RecordHeader h;
    std::memcpy(&h, s.image.data() + s.at[k].offset, sizeof h);
    if (i >= s.at[k].offset + kRecordHeaderSize + h.payload_size) {
      ASSERT_EQ(rb.records.size(), s.at.size());
      continue;
    }
    ASSERT_EQ(rb.records.size(), k);
    for (size_t j = 0; j < k; ++j) ASSERT_EQ(rb.records[j].position, s.at[j]);
    ASSERT_EQ(rb.end.position, s.at[k]);
    ASSERT_EQ(rb.end.kind, k + 1 < s.at.size() ? EndKind::kCorrupt : EndKind::kTornTail);
  }
}

TEST(EffectLog, RepairCutsATornTailAndAppendsGoOnAfterIt) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), {64, 64, 64});
  Patch(dir, at[2].offset + 70, "garbage");
  auto rep = RepairTornTail(dir);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_EQ(rep->found.kind, EndKind::kTornTail);
  EXPECT_TRUE(rep->changed);
  EXPECT_EQ(rep->end, at[2]);
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.records.size(), 2u);
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
  auto w = OpenWriter(dir);
  const std::string p = PayloadFor(1, 2);
  AppendResult r = w->Append(ArgsFor(1, 2, p));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.position, at[2]);
  EXPECT_EQ(ReadAll(dir).records.size(), 3u);
}

TEST(EffectLog, RepairRefusesDamageInTheMiddleAndChangesNothing) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), {64, 64, 64});
  Patch(dir, at[1].offset + 60, "X");
  const std::string before = ReadWholeFile(SegmentPath(dir, 0));
  auto rep = RepairTornTail(dir);
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.status().code(), Code::kDataLoss);
  EXPECT_NE(rep.status().message().find("0:" + std::to_string(at[1].offset)), std::string::npos)
      << rep.status().message();
  EXPECT_EQ(ReadWholeFile(SegmentPath(dir, 0)), before);
}

TEST(EffectLog, RepairRemovesEmptySegmentsAfterATornOne) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), std::vector<size_t>(70, 64));
  ASSERT_GE(at.back().segment, 2u);
  // Power cut: the second segment's records and everything after never reached the disk.
  const uint64_t torn = at.back().segment - 1;
  const std::string path = SegmentPath(dir, torn);
  std::string img = ReadWholeFile(path);
  std::memset(img.data() + kSegmentHeaderSize + 200, 0, img.size() - kSegmentHeaderSize - 200);
  WriteWholeFile(path, img);
  {
    std::string last = ReadWholeFile(SegmentPath(dir, torn + 1));
    std::memset(last.data() + kSegmentHeaderSize, 0, last.size() - kSegmentHeaderSize);
    WriteWholeFile(SegmentPath(dir, torn + 1), last);
  }
  auto rep = RepairTornTail(dir);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_EQ(rep->segments_removed, 1u);
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
  auto w = OpenWriter(dir);
  AppendSizes(*w, std::vector<size_t>(50, 64));
  EXPECT_EQ(ReadAll(dir).end.kind, EndKind::kClean);
}

TEST(EffectLog, CompactionDeletesOnlyWholeSegmentsBeforeThePosition) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  const auto at = AppendSizes(*OpenWriter(dir), std::vector<size_t>(200, 64));
  const LogPosition keep = at[120];
  auto rep = Compact(dir, keep);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->segments_removed, keep.segment);
  EXPECT_EQ(rep->first_segment, keep.segment);
  // Every record from `keep` on is still there, read from that position.
  ReaderOptions from;
  from.from = keep;
  ReadBack rb = ReadAll(dir, from);
  ASSERT_EQ(rb.records.size(), 80u);
  EXPECT_EQ(rb.records[0].sequence, 120u);
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
  // Reading the whole log starts at the first segment left.
  EXPECT_EQ(ReadAll(dir).end.kind, EndKind::kClean);
  ReaderOptions gone;
  gone.from = at[0];
  EXPECT_EQ(Reader::Open(dir, gone).status().code(), Code::kNotFound);
}

TEST(EffectLog, CompactionNeverDeletesTheNewestSegment) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  AppendSizes(*OpenWriter(dir), std::vector<size_t>(100, 64));
  auto rep = Compact(dir, LogPosition{1000, 0});
  ASSERT_TRUE(rep.ok());
  auto segs = ListSegments(dir).value();
  ASSERT_EQ(segs.size(), 1u);
  const size_t before = ReadAll(dir).records.size();
  auto w = OpenWriter(dir);
  AppendSizes(*w, {64});
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.records.size(), before + 1);
  EXPECT_EQ(rb.end.kind, EndKind::kClean);
}

TEST(EffectLog, OldestMappedSegmentFindsTheWritersMapping) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  auto w = OpenWriter(dir);
  AppendSizes(*w, std::vector<size_t>(100, 64));
  auto oldest = OldestMappedSegment(::getpid(), dir);
  ASSERT_TRUE(oldest.ok());
  ASSERT_TRUE(oldest->has_value());
  EXPECT_EQ(**oldest, w->Tail().segment);
  w.reset();
  EXPECT_FALSE(OldestMappedSegment(::getpid(), dir)->has_value());
}

TEST(EffectLog, ManyThreadsAppendEveryRecordWithIntactSequences) {
  TempDir tmp;
  const std::string dir = NewLog(tmp, 64 * 1024);
  auto w = OpenWriter(dir);
  constexpr int kThreads = 8;
  constexpr uint64_t kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; i < kPerThread; ++i) {
        const std::string p = PayloadFor(static_cast<uint32_t>(t), i, 8 + (i % 90));
        ASSERT_TRUE(w->Append(ArgsFor(static_cast<uint32_t>(t), i, p)).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.end.kind, EndKind::kClean) << rb.end.problem;
  ASSERT_EQ(rb.records.size(), kThreads * kPerThread);
  std::vector<uint64_t> next(kThreads, 0);
  for (size_t i = 0; i < rb.records.size(); ++i) {
    const RecordView& r = rb.records[i];
    ASSERT_LT(r.channel, static_cast<uint32_t>(kThreads));
    ASSERT_EQ(r.sequence, next[r.channel]++) << "channel " << r.channel;
    ASSERT_TRUE(RecordIsIntact(r, rb.payloads[i], 8 + (r.sequence % 90)));
  }
  auto report = ValidateLog(dir).value();
  EXPECT_EQ(report.records, kThreads * kPerThread);
  for (auto& [ch, c] : report.channels) EXPECT_EQ(c.sequence_gaps, 0u) << "channel " << ch;
}

TEST(EffectLog, TwoWritersOnOneLogShareIt) {
  // The job and the daemon (markers) append to the same log from two mappings.
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  auto job = OpenWriter(dir);
  auto daemon = OpenWriter(dir);
  std::thread t([&] {
    for (uint64_t i = 0; i < 2000; ++i) {
      const std::string p = PayloadFor(0, i);
      ASSERT_TRUE(job->Append(ArgsFor(0, i, p)).ok());
    }
  });
  for (uint64_t i = 0; i < 300; ++i) {
    SnapshotAtPayload m{i, 1, job->Tail().Packed()};
    AppendArgs a;
    a.type = RecordType::kSnapshotAt;
    a.channel = kDaemonChannel;
    a.sequence = i;
    a.payload = &m;
    a.payload_size = sizeof m;
    ASSERT_TRUE(daemon->Append(a).ok());
  }
  t.join();
  ReadBack rb = ReadAll(dir);
  EXPECT_EQ(rb.end.kind, EndKind::kClean) << rb.end.problem;
  EXPECT_EQ(rb.records.size(), 2300u);
}

TEST(EffectLog, StartNewSegmentMovesAppendsToAFreshSegment) {
  TempDir tmp;
  const std::string dir = NewLog(tmp, 64 * 1024);
  auto w = OpenWriter(dir);
  AppendSizes(*w, {64});
  ASSERT_TRUE(w->StartNewSegment().ok());
  const std::string p = PayloadFor(1, 1);
  AppendResult r = w->Append(ArgsFor(1, 1, p));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.position, (LogPosition{1, kSegmentHeaderSize}));
  EXPECT_EQ(ReadAll(dir).records.size(), 2u);
}

TEST(EffectLog, SharedCountersReachBothSides) {
  TempDir tmp;
  const std::string dir = NewLog(tmp);
  auto job = OpenWriter(dir);
  auto daemon = ControlFile::Open(dir, true).value();
  EXPECT_EQ(job->control().incarnation(), 1u);
  EXPECT_EQ(daemon.BeginIncarnation(), 2u);
  EXPECT_EQ(job->control().incarnation(), 2u);
  job->control().RequestSnapshot();
  EXPECT_EQ(daemon.snapshot_requests(), 1u);
  daemon.Stop(StopReason::kStoppedByDaemon, 0);
  const std::string p = PayloadFor(1, 0);
  EXPECT_EQ(job->Append(ArgsFor(1, 0, p)).code, AppendCode::kStopped);
}

}  // namespace
}  // namespace lazarus::effectlog
