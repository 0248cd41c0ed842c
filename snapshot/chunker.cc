#include "snapshot/chunker.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace lazarus::store {

uint64_t PageFingerprint(const uint8_t* page) {
  // 16 words, one per 256 bytes: a hash of the whole page costs ~4x more, and sampling keeps
  // a boundary where only part of a page was written.
  uint64_t sample[16];
  for (size_t i = 0; i < 16; ++i) std::memcpy(&sample[i], page + i * 256 + (i * 8) % 256, 8);
  return XXH3_64bits(sample, sizeof sample);
}

std::vector<Extent> CutPageImage(const uint8_t* data, size_t size, const Chunking& chunking) {
  const uint32_t max_pages = std::clamp<uint32_t>(chunking.max_pages, 1, kMaxPiecePages);
  const uint32_t min_pages = std::clamp<uint32_t>(chunking.min_pages, 1, max_pages);
  // After min_pages, each page ends the piece with probability 1/divisor.
  const uint64_t divisor = std::max<uint32_t>(chunking.avg_pages, min_pages) - min_pages + 1;
  std::vector<Extent> out;
  const size_t pages = size / kPageBytes;
  out.reserve(pages / std::max<uint32_t>(chunking.avg_pages, 1) + 2);
  size_t start = 0;  // first page of the current piece
  for (size_t p = 0; p < pages; ++p) {
    const size_t length = p - start + 1;
    if (length >= max_pages || (length >= min_pages && PageFingerprint(data + p * kPageBytes) % divisor == 0)) {
      out.push_back({start * kPageBytes, length * kPageBytes});
      start = p + 1;
    }
  }
  if (start < pages) out.push_back({start * kPageBytes, (pages - start) * kPageBytes});
  if (size % kPageBytes != 0) out.push_back({pages * kPageBytes, size % kPageBytes});
  return out;
}

std::vector<Extent> CutFixed(size_t size) {
  std::vector<Extent> out;
  for (size_t offset = 0; offset < size; offset += kMaxPieceBytes)
    out.push_back({offset, std::min(kMaxPieceBytes, size - offset)});
  return out;
}

}  // namespace lazarus::store
