// Content-defined cutting of page images, and what it buys in the store: an inserted or
// removed page shifts nothing after it.
#include "snapshot/chunker.h"

#include <gtest/gtest.h>

#include <set>

#include "snapshot/chunk_id.h"
#include "snapshot/chunk_store.h"
#include "store_test_util.h"
#include "temp_dir.h"

namespace lazarus::store {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::store::testing;

std::set<ChunkId> PieceIds(const std::string& image) {
  std::set<ChunkId> ids;
  const auto* data = reinterpret_cast<const uint8_t*>(image.data());
  for (const auto& e : CutPageImage(data, image.size(), Chunking{})) ids.insert(ChunkId::Of(data + e.offset, e.size));
  return ids;
}

TEST(StoreChunker, PiecesCoverTheImageWithinMinAndMax) {
  const std::string image = Pages(3000, 1) + "tail";
  const Chunking c;
  auto pieces = CutPageImage(reinterpret_cast<const uint8_t*>(image.data()), image.size(), c);
  size_t at = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].offset, at);
    at += pieces[i].size;
    if (i + 2 < pieces.size()) {  // all but the last page piece and the tail
      EXPECT_EQ(pieces[i].size % kPageBytes, 0u);
      EXPECT_GE(pieces[i].size, c.min_pages * kPageBytes);
      EXPECT_LE(pieces[i].size, c.max_pages * kPageBytes);
    }
  }
  EXPECT_EQ(at, image.size());
  EXPECT_EQ(pieces.back().size, 4u);  // the partial tail is a piece of its own
  const double avg_pages = 3000.0 / static_cast<double>(pieces.size() - 1);
  EXPECT_GT(avg_pages, 10);
  EXPECT_LT(avg_pages, 24);
}

TEST(StoreChunker, InsertedPageShiftsNothingAfterIt) {
  const std::string before = Pages(4000, 2);
  std::string after = before;
  after.insert(2000 * kPage, Pages(1, 99));  // one new page in the middle
  const auto old_ids = PieceIds(before);
  const auto new_ids = PieceIds(after);
  size_t new_pieces = 0;
  for (const auto& id : new_ids) new_pieces += old_ids.count(id) ? 0 : 1;
  // The piece that holds the new page, and at most one more while the cut points realign.
  EXPECT_LE(new_pieces, 2u) << "of " << new_ids.size() << " pieces";
}

TEST(StoreChunker, RemovedPageShiftsNothingAfterIt) {
  const std::string before = Pages(4000, 3);
  std::string after = before;
  after.erase(1234 * kPage, kPage);
  const auto old_ids = PieceIds(before);
  size_t new_pieces = 0;
  for (const auto& id : PieceIds(after)) new_pieces += old_ids.count(id) ? 0 : 1;
  EXPECT_LE(new_pieces, 2u);
}

// The same in the store, measured as the dedup ratio of the second snapshot: with a page
// inserted near the front, almost nothing is stored again.
TEST(StoreChunker, InsertedPageCostsAboutOnePieceInTheStore) {
  TempDir dir;
  auto store = ChunkStore::Open(dir / "store");
  ASSERT_TRUE(store.ok()) << store.status().message();
  Images images = SampleImages(4000, 4);
  WriteImages(dir / "a", images);
  IngestStats first, second;
  ASSERT_TRUE(IngestAndCommit(*store, dir / "a", "job", 1, nullptr, &first).ok());
  images["pages-1.img"].insert(10 * kPage, Pages(1, 77));
  WriteImages(dir / "b", images);
  ASSERT_TRUE(IngestAndCommit(*store, dir / "b", "job", 2, nullptr, &second).ok());
  const double ratio = static_cast<double>(second.new_stored_bytes) / static_cast<double>(first.new_stored_bytes);
  EXPECT_LT(ratio, 0.02) << second.new_stored_bytes << " new bytes after " << first.new_stored_bytes;
  EXPECT_GE(second.reused_pieces + 3, second.pieces);
}

TEST(StoreChunker, CutsAreDeterministic) {
  const std::string image = Pages(500, 5);
  const auto* data = reinterpret_cast<const uint8_t*>(image.data());
  auto a = CutPageImage(data, image.size(), Chunking{});
  auto b = CutPageImage(data, image.size(), Chunking{});
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].offset, b[i].offset);
}

TEST(StoreChunker, OtherFilesAreCutIntoFixedPieces) {
  auto pieces = CutFixed(kMaxPieceBytes * 2 + 10);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[2].size, 10u);
  EXPECT_TRUE(CutFixed(0).empty());
}

}  // namespace
}  // namespace lazarus::store
