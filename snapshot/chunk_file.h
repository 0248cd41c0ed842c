// One chunk file of the store (chunks/ab/abcdef...): a header and the chunk's bytes,
// zstd-compressed unless that would not make them smaller. Layout (little-endian):
//   0  magic            8   "LZCHK" 0 0 1 (format version in the last byte)
//   8  id               16  XXH3-128 of the raw bytes, canonical: also the file's name
//  24  raw_size         u32
//  28  stored_size      u32 payload bytes that follow the header
//  32  codec            u8  0 = raw, 1 = zstd
//  33  flags            u8  bit 0: page hashes follow the payload
//  34  reserved         2   zero
//  36  header_checksum  u32 low 32 bits of XXH3-64 of bytes 0..35
//  40  payload          stored_size bytes
//  then, with flag bit 0: raw_size / 4096 x u64 XXH3-64 of each page of the raw bytes, and
//  u64 XXH3-64 of those hashes.
// The id is the checksum of the content: a reader decompresses, hashes and compares, so a
// flipped bit anywhere in the file is detected (in the header and the page hashes by their
// own checksums). Page hashes let an ingest find which pages of a piece changed since an
// earlier snapshot by reading 8 bytes per page instead of decompressing the piece.
#pragma once

#include <zstd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "snapshot/chunk_id.h"

namespace lazarus::store {

constexpr size_t kChunkHeaderBytes = 40;
// Larger raw sizes in a header are damage, not data (pieces are at most 256 KiB and patch
// chunks at most 1 MiB).
constexpr uint32_t kMaxChunkRawBytes = 8u << 20;

struct ChunkHeader {
  ChunkId id;
  uint32_t raw_size = 0;
  uint32_t stored_size = 0;
  uint8_t codec = 0;
  uint8_t flags = 0;
  [[nodiscard]] size_t page_hashes() const;  // how many follow the payload (0 without the flag)
  [[nodiscard]] size_t file_size() const;    // what the whole file must measure
};

// XXH3-64 of one page, as kept in a chunk's page hashes.
uint64_t PageHash(const uint8_t* page);

// Compresses chunks; one per thread (it owns a zstd context).
class ChunkEncoder {
 public:
  explicit ChunkEncoder(int zstd_level);
  // Replaces `out` with the whole chunk file for `data`, whose id is `id`; with
  // `page_hashes`, the hashes of its whole pages follow (for pieces of page images).
  Status Encode(const ChunkId& id, const uint8_t* data, size_t size, bool page_hashes, std::vector<uint8_t>* out);

 private:
  struct Free {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  };
  std::unique_ptr<ZSTD_CCtx, Free> ctx_;
  int level_;
};

// Reads chunks back; one per thread (it owns a zstd context and a file buffer).
class ChunkDecoder {
 public:
  ChunkDecoder();
  // Reads chunk file dir_fd/rel_path that must hold chunk `id`, and replaces `out` with its
  // raw bytes. kNotFound when the file is missing; kDataLoss, with a message that names the
  // chunk, when anything in it is wrong.
  Status Read(int dir_fd, const std::string& rel_path, const ChunkId& id, std::vector<uint8_t>* out);
  // The same into `dst`, which the chunk must fill exactly (`size` bytes): kDataLoss when
  // its raw size differs.
  Status ReadInto(int dir_fd, const std::string& rel_path, const ChunkId& id, uint8_t* dst, size_t size);
  // Reads only the page hashes (without decompressing). kNotFound when the chunk or its page
  // hashes are missing, kDataLoss when they are damaged.
  static Status ReadPageHashes(int dir_fd, const std::string& rel_path, const ChunkId& id, std::vector<uint64_t>* hashes);

 private:
  struct Free {
    void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
  };
  // Reads and checks the file and its header into file_ / *header.
  Status Load(int dir_fd, const std::string& rel_path, const ChunkId& id, ChunkHeader* header);
  // Decompresses file_'s payload into dst (header->raw_size bytes) and checks the id.
  Status Decode(const ChunkHeader& header, const ChunkId& id, uint8_t* dst);

  std::unique_ptr<ZSTD_DCtx, Free> ctx_;
  std::vector<uint8_t> file_;
};

// Parses and checks a chunk header (magic, version, checksum, sizes, id).
Status ParseChunkHeader(const uint8_t* data, size_t size, const ChunkId& expect, ChunkHeader* header);

}  // namespace lazarus::store
