// A full file system: the snapshot that does not fit fails with a clear error, removes its
// temporary files, leaves older snapshots intact, and the next snapshot works once there is
// room again. The store lives on a 2 MiB tmpfs mounted for the test (needs root).
#include <sys/mount.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "snapshot/chunk_store.h"
#include "store_test_util.h"
#include "temp_dir.h"

namespace lazarus::store {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::store::testing;

class StoreFull : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "this test mounts a tmpfs: run it as root (CI does)";
    ASSERT_TRUE(MakeDirs(dir_ / "fs").ok());
    if (::mount("tmpfs", (dir_ / "fs").c_str(), "tmpfs", 0, "size=2m,mode=0700") != 0)
      FAIL() << "cannot mount a tmpfs: " << std::strerror(errno);
    mounted_ = true;
    auto s = ChunkStore::Open(dir_ / "fs/store");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_.emplace(std::move(s).value());
  }
  void TearDown() override {
    store_.reset();
    if (mounted_) ::umount2((dir_ / "fs").c_str(), MNT_DETACH);
  }
  void ExpectNoTemporaries() {
    EXPECT_EQ(CountEntries(dir_ / "fs/store/leases"), 0u);
    EXPECT_EQ(CountEntries(dir_ / "fs/store/tmp"), 0u);
    EXPECT_EQ(CountEntries(dir_ / "fs/store/manifests/job"), store_->ListIds("job").size());
  }
  void ExpectRestores(uint32_t id, const Images& images) {
    auto m = store_->Load("job", id);
    ASSERT_TRUE(m.ok()) << m.status().message();
    ASSERT_TRUE(store_->Materialize(*m, dir_ / "out").ok());
    EXPECT_EQ(DiffImages(ReadImages(dir_ / "out"), images), "");
    (void)RemoveTree(dir_ / "out");
  }

  TempDir dir_;  // images and outputs live outside the small file system
  bool mounted_ = false;
  std::optional<ChunkStore> store_;
};

TEST_F(StoreFull, SnapshotThatDoesNotFitFailsCleanlyAndOlderOnesStayIntact) {
  Images small = {{"pages-1.img", RandomBytes(64 * kPage, 1)}, {"core-1.img", "core"}};
  WriteImages(dir_ / "small", small);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "small", "job", 1).ok());
  const size_t chunks_before = CountChunkFiles(dir_ / "fs/store");

  Images big = {{"pages-1.img", RandomBytes(1024 * kPage, 2)}, {"core-1.img", "core 2"}};  // 4 MiB
  WriteImages(dir_ / "big", big);
  Status st = IngestAndCommit(*store_, dir_ / "big", "job", 2);
  EXPECT_EQ(st.code(), Code::kIo);
  EXPECT_NE(st.message().find("out of space: "), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(dir_ / "fs/store/tmp/"), std::string::npos) << st.message();  // where
  EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st.message();
  ExpectNoTemporaries();
  EXPECT_EQ(CountChunkFiles(dir_ / "fs/store"), chunks_before);
  EXPECT_EQ(store_->ListIds("job"), (std::vector<uint32_t>{1}));
  ExpectRestores(1, small);
  EXPECT_TRUE(store_->Verify()->ok());

  // Room again (a snapshot that fits): it works.
  Images next = {{"pages-1.img", RandomBytes(64 * kPage, 3)}, {"core-1.img", "core 3"}};
  WriteImages(dir_ / "next", next);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "next", "job", 3).ok());
  ExpectRestores(3, next);
  ExpectRestores(1, small);
}

// The chunks fit but the manifest does not: the commit fails, nothing is listed, and GC
// takes back the chunks.
TEST_F(StoreFull, CommitOnAFullFileSystemFailsAndGcReclaimsItsChunks) {
  Images first = {{"pages-1.img", RandomBytes(16 * kPage, 4)}};
  WriteImages(dir_ / "first", first);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "first", "job", 1).ok());
  const size_t chunks_before = CountChunkFiles(dir_ / "fs/store");
  WriteImages(dir_ / "second", {{"pages-1.img", RandomBytes(16 * kPage, 5)}});
  auto pending = store_->Ingest(dir_ / "second");
  ASSERT_TRUE(pending.ok()) << pending.status().message();
  // Fill what is left of the file system.
  {
    const std::string filler = dir_ / "fs/filler";
    const std::string block(4096, 'f');
    FILE* f = std::fopen(filler.c_str(), "w");
    ASSERT_NE(f, nullptr);
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size() && std::fflush(f) == 0) {
    }
    std::fclose(f);
  }
  Status st = store_->Commit("job", 2, std::move(pending).value());
  EXPECT_EQ(st.code(), Code::kIo);
  EXPECT_NE(st.message().find("out of space"), std::string::npos) << st.message();
  ASSERT_EQ(::unlink((dir_ / "fs/filler").c_str()), 0);
  EXPECT_EQ(store_->ListIds("job"), (std::vector<uint32_t>{1}));
  ExpectNoTemporaries();
  ASSERT_TRUE(store_->CollectGarbage().ok());
  EXPECT_EQ(CountChunkFiles(dir_ / "fs/store"), chunks_before);
  ExpectRestores(1, first);
}

}  // namespace
}  // namespace lazarus::store
