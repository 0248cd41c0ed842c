// Damage is found and named: Verify names every bad chunk and the snapshots that need it;
// Materialize refuses with the chunk's id instead of writing wrong bytes.
#include <gtest/gtest.h>

#include <algorithm>

#include "snapshot/chunk_file.h"
#include "snapshot/chunk_store.h"
#include "store_test_util.h"
#include "temp_dir.h"

namespace lazarus::store {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::store::testing;

class StoreVerify : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ChunkStore::Open(dir_ / "store");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_.emplace(std::move(s).value());
    // Two snapshots that share most chunks; the second is partly a patch of the first.
    images_ = SampleImages(400, 1);
    WriteImages(dir_ / "in", images_);
    ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
    RewritePages(images_["pages-1.img"], 50, 3, 9);
    WriteImages(dir_ / "in", images_);
    auto base = store_->Load("job", 1);
    ASSERT_TRUE(base.ok());
    ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 2, &*base).ok());
  }

  // A chunk of a whole piece of pages-1.img that both snapshots need.
  ChunkId SharedChunk() {
    auto m1 = store_->Load("job", 1);
    auto m2 = store_->Load("job", 2);
    for (const auto& p2 : m2->files(4).pieces()) {
      if (p2.has_patch()) continue;
      for (const auto& p1 : m1->files(4).pieces())
        if (p1.id() == p2.id()) return *ChunkId::FromBytes(p1.id());
    }
    ADD_FAILURE() << "no shared chunk";
    return {};
  }
  ChunkId PatchChunk() {
    auto m2 = store_->Load("job", 2);
    EXPECT_GT(m2->patch_chunks_size(), 0);
    return *ChunkId::FromBytes(m2->patch_chunks(0).id());
  }

  TempDir dir_;
  std::optional<ChunkStore> store_;
  Images images_;
};

TEST_F(StoreVerify, IntactStoreVerifies) {
  auto report = store_->Verify();
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->snapshots_checked, 2u);
  EXPECT_EQ(report->chunks_checked, CountChunkFiles(dir_ / "store"));
}

TEST_F(StoreVerify, FlippedByteInAChunkIsNamedWithEverySnapshotThatNeedsIt) {
  const ChunkId bad = SharedChunk();
  FlipByte(store_->ChunkPath(bad), kChunkHeaderBytes + 100);
  auto report = store_->Verify();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->bad_chunks.size(), 1u);
  EXPECT_EQ(report->bad_chunks[0].id, bad);
  EXPECT_NE(report->bad_chunks[0].problem.find(bad.Hex()), std::string::npos) << report->bad_chunks[0].problem;
  EXPECT_EQ(report->bad_chunks[0].needed_by, (std::vector<SnapshotKey>{{"job", 1}, {"job", 2}}));
  EXPECT_EQ(report->damaged_snapshots, (std::vector<SnapshotKey>{{"job", 1}, {"job", 2}}));
}

TEST_F(StoreVerify, MaterializeFailsNamingTheBadChunkAndLeavesNoFiles) {
  const ChunkId bad = SharedChunk();
  FlipByte(store_->ChunkPath(bad), kChunkHeaderBytes + 7);
  auto m = store_->Load("job", 2);
  ASSERT_TRUE(m.ok());
  Status st = store_->Materialize(*m, dir_ / "out");
  EXPECT_EQ(st.code(), Code::kDataLoss);
  EXPECT_NE(st.message().find("chunk " + bad.Hex()), std::string::npos) << st.message();
  EXPECT_EQ(CountEntries(dir_ / "out"), 0u);
}

TEST_F(StoreVerify, DamagedPatchChunkBreaksOnlyTheSnapshotThatNeedsIt) {
  const ChunkId bad = PatchChunk();
  FlipByte(store_->ChunkPath(bad), kChunkHeaderBytes + 1);
  auto report = store_->Verify();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->bad_chunks.size(), 1u);
  EXPECT_EQ(report->bad_chunks[0].id, bad);
  EXPECT_EQ(report->damaged_snapshots, (std::vector<SnapshotKey>{{"job", 2}}));
  auto m2 = store_->Load("job", 2);
  Status st = store_->Materialize(*m2, dir_ / "out2");
  EXPECT_EQ(st.code(), Code::kDataLoss);
  EXPECT_NE(st.message().find(bad.Hex()), std::string::npos) << st.message();
  auto m1 = store_->Load("job", 1);
  EXPECT_TRUE(store_->Materialize(*m1, dir_ / "out1").ok());  // the older one is the fallback
}

TEST_F(StoreVerify, MissingChunkIsNamed) {
  const ChunkId gone = SharedChunk();
  ASSERT_EQ(::unlink(store_->ChunkPath(gone).c_str()), 0);
  auto report = store_->Verify(VerifyOptions{.job = "job"});
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->bad_chunks.size(), 1u);
  EXPECT_NE(report->bad_chunks[0].problem.find("missing"), std::string::npos) << report->bad_chunks[0].problem;
  auto m = store_->Load("job", 1);
  Status st = store_->Materialize(*m, dir_ / "out");
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_NE(st.message().find(gone.Hex()), std::string::npos);
}

// Like record_file's test: whichever byte of a chunk file flips, Verify notices.
TEST_F(StoreVerify, EveryFlippedByteOfAChunkFileIsDetected) {
  // The smallest chunk (a small image file): few bytes to try.
  auto m = store_->Load("job", 1);
  ChunkId small = *ChunkId::FromBytes(m->files(3).pieces(0).id());  // pagemap-42.img
  const std::string path = store_->ChunkPath(small);
  auto original = ReadFile(path);
  ASSERT_TRUE(original.ok());
  for (size_t i = 0; i < original->size(); ++i) {
    FlipByte(path, i);
    auto report = store_->Verify();
    ASSERT_TRUE(report.ok());
    ASSERT_EQ(report->bad_chunks.size(), 1u) << "flipped byte " << i << " went unnoticed";
    ASSERT_TRUE(WriteFileAtomic(path, *original, 0600).ok());
  }
  auto clean = store_->Verify();
  EXPECT_TRUE(clean->ok());
}

// A chunk of a page image keeps the hashes of its pages after the payload (for ingests to
// compare against): a flip there is damage too.
TEST_F(StoreVerify, EveryFlippedByteOfAChunksPageHashesIsDetected) {
  const ChunkId chunk = SharedChunk();
  const std::string path = store_->ChunkPath(chunk);
  auto original = ReadFile(path);
  ASSERT_TRUE(original.ok());
  ChunkHeader header;
  ASSERT_TRUE(ParseChunkHeader(reinterpret_cast<const uint8_t*>(original->data()), original->size(), chunk, &header).ok());
  ASSERT_GT(header.page_hashes(), 0u);
  for (size_t i = kChunkHeaderBytes + header.stored_size; i < original->size(); ++i) {
    FlipByte(path, i);
    auto report = store_->Verify();
    ASSERT_TRUE(report.ok());
    ASSERT_EQ(report->bad_chunks.size(), 1u) << "flipped byte " << i << " went unnoticed";
    ASSERT_TRUE(WriteFileAtomic(path, *original, 0600).ok());
  }
}

TEST_F(StoreVerify, DamagedManifestIsReported) {
  FlipByte(store_->ManifestPath("job", 1), 30);
  auto report = store_->Verify();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->bad_manifests.size(), 1u);
  EXPECT_NE(report->bad_manifests[0].find("1.manifest"), std::string::npos);
  EXPECT_EQ(report->snapshots_checked, 1u);
  std::vector<std::string> errors;
  EXPECT_EQ(store_->List("job", &errors).size(), 1u);
  EXPECT_EQ(errors.size(), 1u);
}

// Quarantine moves the bad chunk aside; the next snapshot with the same content writes it
// again, so it restores although the old snapshots stay damaged.
TEST_F(StoreVerify, QuarantinedChunkIsWrittenAgainByTheNextIngest) {
  const ChunkId bad = SharedChunk();
  FlipByte(store_->ChunkPath(bad), kChunkHeaderBytes + 3);
  VerifyOptions options;
  options.quarantine = true;
  auto report = store_->Verify(options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->quarantined, 1u);
  auto base = store_->Load("job", 2);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 3, &*base).ok());
  auto m3 = store_->Load("job", 3);
  ASSERT_TRUE(store_->Materialize(*m3, dir_ / "out").ok());
  EXPECT_EQ(DiffImages(ReadImages(dir_ / "out"), images_), "");
  auto again = store_->Verify();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->bad_chunks.empty()) << again->bad_chunks.size();
}

}  // namespace
}  // namespace lazarus::store
