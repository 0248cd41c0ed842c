// Mark and sweep: unreferenced chunks go, referenced ones stay, and an ingest in progress
// never loses a chunk it relies on, whenever GC runs.
#include <gtest/gtest.h>

#include <cstring>

#include "snapshot/chunk_store.h"
#include "snapshot/store_lock.h"
#include "store_test_util.h"
#include "temp_dir.h"

namespace lazarus::store {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::store::testing;

class StoreGc : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ChunkStore::Open(dir_ / "store");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_.emplace(std::move(s).value());
  }
  Images Materialized(const std::string& job, uint32_t id) {
    auto m = store_->Load(job, id);
    EXPECT_TRUE(m.ok()) << m.status().message();
    const std::string out = dir_ / ("out-" + job + std::to_string(id));
    Status st = store_->Materialize(*m, out);
    EXPECT_TRUE(st.ok()) << st.message();
    return ReadImages(out);
  }
  GcReport Gc() {
    auto report = store_->CollectGarbage();
    EXPECT_TRUE(report.ok()) << report.status().message();
    return report.ok() ? *report : GcReport{};
  }

  TempDir dir_;
  std::optional<ChunkStore> store_;
};

TEST_F(StoreGc, RemovesUnreferencedChunksAndKeepsReferencedOnes) {
  const Images a = SampleImages(300, 1), b = SampleImages(300, 2);
  WriteImages(dir_ / "a", a);
  WriteImages(dir_ / "b", b);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "a", "job", 1).ok());
  const size_t after_a = CountChunkFiles(dir_ / "store");
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "b", "job", 2).ok());
  const size_t after_b = CountChunkFiles(dir_ / "store");
  ASSERT_TRUE(store_->Delete("job", 1).ok());
  GcReport report = Gc();
  // What only snapshot 1 needed is gone (inventory.img and empty.img are shared).
  EXPECT_EQ(CountChunkFiles(dir_ / "store"), after_b - after_a + 1);
  EXPECT_EQ(report.chunks_removed, after_a - 1);
  EXPECT_EQ(report.chunks_kept, after_b - after_a + 1);
  EXPECT_EQ(DiffImages(Materialized("job", 2), b), "");
  EXPECT_TRUE(store_->Verify()->ok());
  EXPECT_EQ(Gc().chunks_removed, 0u);  // nothing more to do
}

TEST_F(StoreGc, KeepsBaseAndPatchChunksOfPatchedSnapshots) {
  Images images = SampleImages(800, 3);
  WriteImages(dir_ / "in", images);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  RewritePages(images["pages-1.img"], 40, 1, 5);
  WriteImages(dir_ / "in", images);
  auto base = store_->Load("job", 1);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 2, &*base).ok());
  ASSERT_TRUE(store_->Delete("job", 1).ok());  // snapshot 2 still needs 1's chunks as bases
  Gc();
  EXPECT_EQ(DiffImages(Materialized("job", 2), images), "");
}

// The race GC must win: snapshot 1 is the only reference to its chunks; an ingest of the
// same content finds them all present (so writes nothing), then snapshot 1 is deleted and GC
// runs before the new snapshot is committed.
TEST_F(StoreGc, ProtectsChunksOfAnIngestNotYetCommitted) {
  const Images images = SampleImages(300, 4);
  WriteImages(dir_ / "in", images);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  auto pending = store_->Ingest(dir_ / "in");
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->stats().new_chunks, 0u);
  ASSERT_TRUE(store_->Delete("job", 1).ok());
  EXPECT_EQ(Gc().chunks_removed, 0u);
  ASSERT_TRUE(store_->Commit("job", 2, std::move(pending).value()).ok());
  EXPECT_EQ(DiffImages(Materialized("job", 2), images), "");
}

TEST_F(StoreGc, DiscardedIngestLeavesOnlyGarbage) {
  WriteImages(dir_ / "in", SampleImages(200, 5));
  {
    auto pending = store_->Ingest(dir_ / "in");
    ASSERT_TRUE(pending.ok());
    EXPECT_GT(CountChunkFiles(dir_ / "store"), 0u);
  }  // dropped without Commit
  EXPECT_EQ(CountEntries(dir_ / "store/leases"), 0u);
  EXPECT_EQ(CountEntries(dir_ / "store/tmp"), 0u);
  Gc();
  EXPECT_EQ(CountChunkFiles(dir_ / "store"), 0u);
}

// GC run from inside an ingest, right after it decided what to reuse in pages-1.img (the
// last file) and again after its chunks are synced (the hook runs with no store lock held,
// as a concurrent GC in another thread or process could).
const ChunkStore* g_store = nullptr;
int g_decided = 0;
int g_gc_runs = 0;
uint64_t g_gc_removed = 0;
void RunGcAt(const char* point) {
  if (std::strcmp(point, "ingest.decided") == 0 && ++g_decided < 5) return;
  if (std::strcmp(point, "ingest.decided") != 0 && std::strcmp(point, "ingest.synced") != 0) return;
  auto report = g_store->CollectGarbage();
  if (report.ok()) {
    ++g_gc_runs;
    g_gc_removed += report->chunks_removed;
  }
}

TEST_F(StoreGc, ProtectsChunksAnIngestDecidedToReuseWhileItRuns) {
  Images images = SampleImages(600, 6);
  WriteImages(dir_ / "in", images);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  auto base = store_->Load("job", 1);
  ASSERT_TRUE(base.ok());
  ASSERT_TRUE(store_->Delete("job", 1).ok());  // its chunks are garbage unless pinned
  WriteImages(dir_ / "other", SampleImages(20, 60));
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "other", "other", 1).ok());
  ASSERT_TRUE(store_->Delete("other", 1).ok());  // garbage nobody pins
  RewritePages(images["pages-1.img"], 30, 2, 8);
  WriteImages(dir_ / "in", images);
  g_store = &*store_;
  SetCrashPointHookForTesting(RunGcAt);
  IngestOptions options;
  options.base = &*base;
  auto pending = store_->Ingest(dir_ / "in", options);
  SetCrashPointHookForTesting(nullptr);
  ASSERT_TRUE(pending.ok()) << pending.status().message();
  EXPECT_GT(pending->stats().patched_pieces, 0u);  // it relied on snapshot 1's chunks as bases
  EXPECT_GE(g_gc_runs, 2);
  EXPECT_GT(g_gc_removed, 0u);  // GC did run and removed what nobody needed
  ASSERT_TRUE(store_->Commit("job", 2, std::move(pending).value()).ok());
  Gc();
  EXPECT_EQ(DiffImages(Materialized("job", 2), images), "");
}

// A snapshot whose commit failed, ingested again: its patch chunk exists already (as
// garbage) and is reused; GC running before the commit must not take it.
TEST_F(StoreGc, ProtectsAPatchChunkLeftByAFailedAttemptAndReused) {
  Images images = SampleImages(600, 10);
  WriteImages(dir_ / "in", images);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  auto base = store_->Load("job", 1);
  RewritePages(images["pages-1.img"], 30, 4, 11);
  WriteImages(dir_ / "in", images);
  IngestOptions options;
  options.base = &*base;
  {
    auto failed = store_->Ingest(dir_ / "in", options);  // dropped: as if its commit failed
    ASSERT_TRUE(failed.ok());
    ASSERT_GT(failed->stats().patched_pieces, 0u);
  }
  g_store = &*store_;
  g_gc_runs = 0;
  // GC after the ingest found the patch chunk and before it commits.
  SetCrashPointHookForTesting([](const char* point) {
    if (std::strcmp(point, "ingest.synced") == 0 && g_store->CollectGarbage().ok()) ++g_gc_runs;
  });
  auto pending = store_->Ingest(dir_ / "in", options);
  SetCrashPointHookForTesting(nullptr);
  ASSERT_TRUE(pending.ok()) << pending.status().message();
  EXPECT_EQ(g_gc_runs, 1);
  EXPECT_EQ(pending->stats().new_chunks, 0u);  // everything, the patch chunk too, was there
  ASSERT_TRUE(store_->Commit("job", 2, std::move(pending).value()).ok());
  EXPECT_EQ(DiffImages(Materialized("job", 2), images), "");
}

TEST_F(StoreGc, RemovesWhatCrashedIngestsAndCommitsLeft) {
  WriteImages(dir_ / "in", SampleImages(20, 9));
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  // A dead ingest's lease (nobody holds its lock) and files, a dead commit's temporary.
  ASSERT_TRUE(WriteFileAtomic(dir_ / "store/leases/1-2-3.lease", "LZLEASE\x01").ok());
  ASSERT_TRUE(MakeDirs(dir_ / "store/tmp/1-2-3").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ / "store/tmp/1-2-3/0123", "x").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ / "store/manifests/job/2.manifest.tmp", "half").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ / "store/chunks/ab/not-a-chunk", "x").ok());
  EXPECT_EQ(store_->ListIds("job"), (std::vector<uint32_t>{1}));
  GcReport report = Gc();
  EXPECT_EQ(report.leftovers_removed, 3u);
  EXPECT_EQ(report.chunks_removed, 1u);
  EXPECT_EQ(CountEntries(dir_ / "store/leases"), 0u);
  EXPECT_EQ(CountEntries(dir_ / "store/tmp"), 0u);
  EXPECT_EQ(CountEntries(dir_ / "store/manifests/job"), 1u);
  EXPECT_EQ(DiffImages(Materialized("job", 1), SampleImages(20, 9)), "");
}

TEST_F(StoreGc, RefusesToSweepWhileAManifestIsUnreadable) {
  WriteImages(dir_ / "a", SampleImages(50, 7));
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "a", "job", 1).ok());
  WriteImages(dir_ / "b", SampleImages(50, 8));
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "b", "job", 2).ok());
  ASSERT_TRUE(store_->Delete("job", 2).ok());
  FlipByte(store_->ManifestPath("job", 1), 40);
  const size_t before = CountChunkFiles(dir_ / "store");
  auto report = store_->CollectGarbage();
  EXPECT_EQ(report.status().code(), Code::kDataLoss);
  EXPECT_NE(report.status().message().find("1.manifest"), std::string::npos) << report.status().message();
  EXPECT_EQ(CountChunkFiles(dir_ / "store"), before);
}

TEST_F(StoreGc, DoesNotWaitForABusyStoreWhenAskedNotTo) {
  auto held = StoreLock::Acquire(dir_ / "store/LOCK", StoreLock::Mode::kShared);
  ASSERT_TRUE(held.ok());
  GcOptions options;
  options.wait = false;
  EXPECT_EQ(store_->CollectGarbage(options).status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace lazarus::store
