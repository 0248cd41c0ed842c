#include "common/record_file.h"

#include <gtest/gtest.h>

#include "common/fs_util.h"
#include "daemon/records.pb.h"
#include "temp_dir.h"

namespace lazarus {
namespace {

using testing::TempDir;

records::JobRecord SampleJob() {
  records::JobRecord r;
  r.set_id("0badcafe");
  r.set_name("counter");
  r.add_argv("/bin/sleep");
  r.add_argv("100");
  r.set_state(records::RUNNING);
  r.set_incarnation(3);
  return r;
}

TEST(RecordFile, WrittenRecordReadsBackEqual) {
  TempDir dir;
  ASSERT_TRUE(WriteRecordFile(dir / "job.rec", SampleJob()).ok());
  records::JobRecord back;
  ASSERT_TRUE(ReadRecordFile(dir / "job.rec", &back).ok());
  EXPECT_EQ(back.SerializeAsString(), SampleJob().SerializeAsString());
}

TEST(RecordFile, MissingFileIsNotFound) {
  TempDir dir;
  records::JobRecord back;
  EXPECT_EQ(ReadRecordFile(dir / "nope.rec", &back).code(), Code::kNotFound);
}

TEST(RecordFile, EveryFlippedByteIsDetected) {
  TempDir dir;
  ASSERT_TRUE(WriteRecordFile(dir / "job.rec", SampleJob()).ok());
  const std::string good = ReadFile(dir / "job.rec").value();
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x40;
    ASSERT_TRUE(WriteFileAtomic(dir / "bad.rec", bad).ok());
    records::JobRecord back;
    Status st = ReadRecordFile(dir / "bad.rec", &back);
    EXPECT_EQ(st.code(), Code::kDataLoss) << "flipped byte " << i << " went unnoticed";
  }
}

TEST(RecordFile, EveryTruncationIsDetected) {
  TempDir dir;
  ASSERT_TRUE(WriteRecordFile(dir / "job.rec", SampleJob()).ok());
  const std::string good = ReadFile(dir / "job.rec").value();
  for (size_t len = 0; len < good.size(); ++len) {
    ASSERT_TRUE(WriteFileAtomic(dir / "short.rec", good.substr(0, len)).ok());
    records::JobRecord back;
    EXPECT_EQ(ReadRecordFile(dir / "short.rec", &back).code(), Code::kDataLoss) << "length " << len;
  }
}

TEST(RecordFile, RewriteReplacesWholeRecordAndLeavesNoTemporary) {
  TempDir dir;
  auto r = SampleJob();
  ASSERT_TRUE(WriteRecordFile(dir / "job.rec", r).ok());
  r.set_state(records::CRASHED);
  ASSERT_TRUE(WriteRecordFile(dir / "job.rec", r).ok());
  records::JobRecord back;
  ASSERT_TRUE(ReadRecordFile(dir / "job.rec", &back).ok());
  EXPECT_EQ(back.state(), records::CRASHED);
  EXPECT_EQ(ReadFile(dir / "job.rec.tmp").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace lazarus
