#include "snapshot/snapshot_store.h"

#include <gtest/gtest.h>

#include "common/fs_util.h"
#include "temp_dir.h"

namespace lazarus::snapshot {
namespace {

using testing::TempDir;

records::SnapshotRecord Record(uint32_t id) {
  records::SnapshotRecord r;
  r.set_id(id);
  r.set_job_id("job");
  return r;
}

TEST(SnapshotStore, StagedSnapshotIsInvisibleUntilCommitted) {
  TempDir dir;
  SnapshotStore store(dir.path());
  auto staged = store.Stage(1);
  ASSERT_TRUE(staged.ok());
  ASSERT_TRUE(WriteFileAtomic(staged->images_dir + "/pages-1.img", std::string(4096, 'p')).ok());
  EXPECT_TRUE(store.List().empty());
  ASSERT_TRUE(store.Commit(*staged, Record(1)).ok());
  auto all = store.List();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id(), 1u);
  EXPECT_GE(all[0].size_bytes(), 4096u);
}

TEST(SnapshotStore, ListIsOrderedByIdAndSkipsLeftoversOfACrash) {
  TempDir dir;
  SnapshotStore store(dir.path());
  for (uint32_t id : {3u, 1u, 2u}) {
    auto staged = store.Stage(id);
    ASSERT_TRUE(staged.ok());
    ASSERT_TRUE(store.Commit(*staged, Record(id)).ok());
  }
  ASSERT_TRUE(store.Stage(4).ok());  // a dump that never finished
  auto all = store.List();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id(), 1u);
  EXPECT_EQ(all[2].id(), 3u);
  store.RemoveStaging();
  EXPECT_EQ(ReadFile(dir / ".staging-4/images").status().code(), Code::kNotFound);
}

TEST(SnapshotStore, DamagedRecordIsReportedNotListed) {
  TempDir dir;
  SnapshotStore store(dir.path());
  auto staged = store.Stage(1);
  ASSERT_TRUE(staged.ok());
  ASSERT_TRUE(store.Commit(*staged, Record(1)).ok());
  ASSERT_TRUE(WriteFileAtomic(store.Dir(1) + "/snapshot.rec", "garbage").ok());
  std::vector<std::string> errors;
  EXPECT_TRUE(store.List(&errors).empty());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(store.Get(1).status().code(), Code::kDataLoss);
  EXPECT_EQ(store.Get(7).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace lazarus::snapshot
