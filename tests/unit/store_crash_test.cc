// A SIGKILL at any step of ingest, commit or GC leaves every listed snapshot restorable,
// and GC afterwards reclaims everything the dead process left. The process under test is a
// forked child killed at a named step (or at a random moment); the parent checks the store.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "snapshot/chunk_store.h"
#include "store_test_util.h"
#include "temp_dir.h"

namespace lazarus::store {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::store::testing;

// Snapshot k of the test job: the images of snapshot k-1 with some pages rewritten.
Images ImagesFor(uint32_t k) {
  Images images = SampleImages(300, 1);
  for (uint32_t i = 2; i <= k; ++i) RewritePages(images["pages-1.img"], 20, i % 20, i * 100);
  images["inventory.img"] = "inventory " + std::to_string(k);
  return images;
}

const char* g_kill_at = nullptr;
void KillAt(const char* point) {
  if (g_kill_at && std::strcmp(point, g_kill_at) == 0) ::raise(SIGKILL);
}

// Snapshot k (with k-1 as base), then delete snapshot k-2 and collect garbage.
Status TakeSnapshot(const std::string& root, const std::string& work, uint32_t k) {
  auto store = ChunkStore::Open(root);
  if (!store.ok()) return store.status();
  WriteImages(work, ImagesFor(k));
  auto base = store->Load("job", k - 1);
  LAZARUS_RETURN_IF_ERROR(IngestAndCommit(*store, work, "job", k, base.ok() ? &*base : nullptr));
  if (k >= 3) (void)store->Delete("job", k - 2);
  auto gc = store->CollectGarbage();
  return gc.ok() ? Status::Ok() : gc.status();
}

// Every listed snapshot materializes to exactly its images; then GC leaves nothing behind:
// no lease, no temporary, and no chunk that a listed snapshot does not need.
void ExpectStoreIsConsistent(const std::string& root, const std::string& out, const std::string& context) {
  SCOPED_TRACE(context);
  auto store = ChunkStore::Open(root);
  ASSERT_TRUE(store.ok());
  for (uint32_t id : store->ListIds("job")) {
    auto m = store->Load("job", id);
    ASSERT_TRUE(m.ok()) << m.status().message();
    Status st = store->Materialize(*m, out);
    ASSERT_TRUE(st.ok()) << "snapshot " << id << ": " << st.message();
    EXPECT_EQ(DiffImages(ReadImages(out), ImagesFor(id)), "") << "snapshot " << id;
    (void)RemoveTree(out);
  }
  auto gc = store->CollectGarbage();
  ASSERT_TRUE(gc.ok()) << gc.status().message();
  EXPECT_EQ(CountEntries(root + "/leases"), 0u);
  EXPECT_EQ(CountEntries(root + "/tmp"), 0u);
  EXPECT_EQ(CountEntries(root + "/manifests/job"), store->ListIds("job").size()) << "a manifest temporary is left";
  auto report = store->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(CountChunkFiles(root), report->chunks_checked) << "chunks nobody needs are left";
}

int RunChild(const std::function<void()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

class StoreCrash : public ::testing::TestWithParam<const char*> {};

TEST_P(StoreCrash, KillAtThisStepLeavesListedSnapshotsRestorable) {
  TempDir dir;
  const std::string root = dir / "store";
  {
    auto store = ChunkStore::Open(root);
    ASSERT_TRUE(store.ok());
    WriteImages(dir / "in", ImagesFor(1));
    ASSERT_TRUE(IngestAndCommit(*store, dir / "in", "job", 1).ok());
    WriteImages(dir / "in", ImagesFor(2));
    auto base = store->Load("job", 1);
    ASSERT_TRUE(IngestAndCommit(*store, dir / "in", "job", 2, &*base).ok());
  }
  const int status = RunChild([&] {
    g_kill_at = GetParam();
    SetCrashPointHookForTesting(KillAt);
    ::_exit(TakeSnapshot(root, dir / "child", 3).ok() ? 0 : 1);
  });
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child was not killed at " << GetParam();
  // Snapshot 3 is listed exactly when the kill came after its manifest's rename.
  auto store = ChunkStore::Open(root);
  const std::string point = GetParam();
  const bool committed = point.starts_with("gc.") || point == "commit.visible" || point == "commit.released";
  auto ids = store->ListIds("job");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 3u), committed ? 1 : 0);
  ExpectStoreIsConsistent(root, dir / "out", point);
  // And the store goes on: the next snapshot works.
  WriteImages(dir / "in", ImagesFor(4));
  auto base = store->Load("job", committed ? 3 : 2);
  ASSERT_TRUE(base.ok());
  ASSERT_TRUE(IngestAndCommit(*store, dir / "in", "job", 4, &*base).ok());
  ExpectStoreIsConsistent(root, dir / "out", point + std::string(" + next snapshot"));
}

INSTANTIATE_TEST_SUITE_P(EveryStep, StoreCrash,
                         ::testing::Values("ingest.leased", "ingest.decided", "ingest.written", "ingest.synced",
                                           "ingest.renamed_first", "ingest.renamed", "commit.begin", "commit.synced",
                                           "commit.visible", "commit.released", "gc.locked", "gc.marked",
                                           "gc.removed_first"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '.', '_');
                           return name;
                         });

// SIGKILL at random moments of a child that takes snapshot after snapshot (ingest, commit,
// delete the oldest, GC); after each kill the store is checked and the next child goes on.
TEST(StoreCrashRandom, KillsAtRandomMomentsNeverBreakAListedSnapshot) {
  TempDir dir;
  const std::string root = dir / "store";
  std::mt19937 rng(12345);
  uint32_t next = 1;
  int kills = 0;
  for (int round = 0; round < 12; ++round) {
    pid_t pid = ::fork();
    if (pid == 0) {
      for (uint32_t k = next;; ++k)
        if (!TakeSnapshot(root, dir / "child", k).ok()) ::_exit(20);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 400)(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    ++kills;
    ExpectStoreIsConsistent(root, dir / "out", "after kill " + std::to_string(kills));
    auto store = ChunkStore::Open(root);
    auto ids = store->ListIds("job");
    next = ids.empty() ? 1 : ids.back() + 1;
  }
  EXPECT_GT(next, 3u) << "the children made no progress";
}

// GC in a loop in another process while this one takes snapshots and deletes old ones:
// every snapshot committed stays restorable.
TEST(StoreConcurrentGc, GcInAnotherProcessNeverBreaksASnapshot) {
  TempDir dir;
  const std::string root = dir / "store";
  ASSERT_TRUE(ChunkStore::Open(root).ok());
  pid_t gc = ::fork();
  if (gc == 0) {
    auto store = ChunkStore::Open(root);
    for (;;)
      if (!store->CollectGarbage().ok()) ::_exit(1);
  }
  for (uint32_t k = 1; k <= 8; ++k) {
    Status st = TakeSnapshot(root, dir / "in", k);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  ::kill(gc, SIGKILL);
  int status = 0;
  ::waitpid(gc, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "the GC loop failed";
  auto store = ChunkStore::Open(root);
  EXPECT_EQ(store->ListIds("job"), (std::vector<uint32_t>{7, 8}));
  ExpectStoreIsConsistent(root, dir / "out", "after concurrent GC");
}

}  // namespace
}  // namespace lazarus::store
