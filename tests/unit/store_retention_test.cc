// Which snapshots a retention policy lets go.
#include "snapshot/retention.h"

#include <gtest/gtest.h>

namespace lazarus::store {
namespace {

std::vector<SnapshotSummary> Every(int64_t seconds, uint32_t count) {
  std::vector<SnapshotSummary> out;
  for (uint32_t id = 1; id <= count; ++id) out.push_back({"job", id, static_cast<int64_t>(id) * seconds * 1000, 0, 0, 0});
  return out;
}

TEST(StoreRetention, KeepsTheLastThreeByDefault) {
  EXPECT_EQ(SelectForDeletion(Every(1, 5), {}), (std::vector<uint32_t>{1, 2}));
  EXPECT_TRUE(SelectForDeletion(Every(1, 3), {}).empty());
}

TEST(StoreRetention, NewestIsChosenByCreationTimeNotId) {
  auto snapshots = Every(1, 4);
  snapshots[0].created_unix_ms = 99'000;  // id 1 is the newest
  RetentionPolicy policy;
  policy.keep_last = 1;
  EXPECT_EQ(SelectForDeletion(snapshots, policy), (std::vector<uint32_t>{2, 3, 4}));
}

TEST(StoreRetention, AtLeastOneIsAlwaysKept) {
  RetentionPolicy policy;
  policy.keep_last = 0;
  EXPECT_EQ(SelectForDeletion(Every(1, 3), policy), (std::vector<uint32_t>{1, 2}));
}

TEST(StoreRetention, KeepEveryKeepsTheFirstSnapshotOfEachPeriod) {
  // One snapshot every 10 minutes for 3 hours (ids 1..18 at 600 s .. 10800 s), one per hour.
  RetentionPolicy policy;
  policy.keep_last = 2;
  policy.keep_every_seconds = 3600;
  auto deleted = SelectForDeletion(Every(600, 18), policy);
  // Kept: 1 (first of hour 0), 6 (3600 s), 12 (7200 s), 18 (10800 s, also among the last 2), 17.
  std::vector<uint32_t> expected;
  for (uint32_t id = 1; id <= 18; ++id)
    if (id != 1 && id != 6 && id != 12 && id != 17 && id != 18) expected.push_back(id);
  EXPECT_EQ(deleted, expected);
}

TEST(StoreRetention, ChoiceIsStableAsSnapshotsAreAdded) {
  RetentionPolicy policy;
  policy.keep_every_seconds = 3600;
  auto all = Every(600, 30);
  std::vector<SnapshotSummary> kept;
  for (const auto& s : all) {  // apply the policy after every new snapshot, as the daemon does
    kept.push_back(s);
    auto doomed = SelectForDeletion(kept, policy);
    std::erase_if(kept, [&](const SnapshotSummary& k) {
      return std::find(doomed.begin(), doomed.end(), k.snapshot_id) != doomed.end();
    });
  }
  std::vector<uint32_t> ids;
  for (const auto& s : kept) ids.push_back(s.snapshot_id);
  EXPECT_EQ(ids, (std::vector<uint32_t>{1, 6, 12, 18, 24, 28, 29, 30}));
}

}  // namespace
}  // namespace lazarus::store
