// Cuts image files into pieces. Page images (CRIU's pages-*.img: a stream of 4 KiB pages)
// are cut at page boundaries chosen by content: a piece ends after a page whose fingerprint
// (a hash of 128 bytes sampled across the page) is divisible by a constant, subject to a
// minimum and a maximum piece length. Whether a page ends a piece depends on that page
// alone, so inserting or removing a page moves at most the boundaries of the next piece or
// two; everything after them is cut exactly as before and deduplicates.
// Other image files are small: they are cut into fixed pieces of kMaxPieceBytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lazarus::store {

constexpr size_t kPageBytes = 4096;
constexpr uint32_t kMaxPiecePages = 64;  // a patched piece's page mask is 64 bits
constexpr size_t kMaxPieceBytes = kMaxPiecePages * kPageBytes;

struct Chunking {
  uint32_t min_pages = 8;
  uint32_t avg_pages = 16;  // expected length of a piece where no maximum applies
  uint32_t max_pages = kMaxPiecePages;
};

struct Extent {
  size_t offset = 0;
  size_t size = 0;
};

// The fingerprint that decides whether a page ends a piece.
uint64_t PageFingerprint(const uint8_t* page);

// Pieces of a page image of `size` bytes; a tail shorter than a page is a piece of its own.
std::vector<Extent> CutPageImage(const uint8_t* data, size_t size, const Chunking& chunking);

// Pieces of at most kMaxPieceBytes.
std::vector<Extent> CutFixed(size_t size);

}  // namespace lazarus::store
