// One chunk file of the store (chunks/ab/abcdef...): a header and the chunk's bytes,
// zstd-compressed unless that would not make them smaller. Layout (little-endian):
//   0  magic            8   "LZCHK" 0 0 2 (format version in the last byte)
//   8  id               16  XXH3-128 of the raw bytes, canonical: also the file's name
//  24  raw_size         u32
//  28  stored_size      u32 payload bytes that follow the header
//  32  codec            u8  0 = raw, 1 = zstd
//  33  flags            u8  bit 0: page hashes follow the payload
//  34  reserved         2   zero
//  36  body_checksum    u64 XXH3-64 of everything after the header (payload, page hashes)
//  44  mac              16  HMAC-SHA256 under the daemon's key (store_key.h), first 16 bytes,
//                           of bytes 0..43 followed by everything after the header
//  60  header_checksum  u32 low 32 bits of XXH3-64 of bytes 0..59
//  64  payload          stored_size bytes
//  then, with flag bit 0: raw_size / 4096 x u64 XXH3-64 of each page of the raw bytes, and
//  u64 XXH3-64 of those hashes.
// Checksums find accidents: a flipped bit in the header or the body is named as damage.
// The MAC finds forgery: only the daemon's key makes it, and it covers the id, the sizes,
// the codec and every byte after the header, so a chunk file altered in any way (checksums
// recomputed or not), or written under another key, is refused before it is decompressed.
// Manifests record the MAC of every chunk they need (the file they were taken with).
// Finally the content is hashed and compared with the id. Page hashes let an ingest find
// which pages of a piece changed since an earlier snapshot by reading 8 bytes per page
// instead of decompressing the piece.
#pragma once

#include <zstd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "snapshot/chunk_id.h"
#include "snapshot/store_key.h"

namespace lazarus::store {

constexpr size_t kChunkHeaderBytes = 64;
// Larger raw sizes in a header are damage, not data (pieces are at most 256 KiB and patch
// chunks at most 1 MiB).
constexpr uint32_t kMaxChunkRawBytes = 8u << 20;

struct ChunkHeader {
  ChunkId id;
  uint32_t raw_size = 0;
  uint32_t stored_size = 0;
  uint8_t codec = 0;
  uint8_t flags = 0;
  uint64_t body_checksum = 0;
  Mac mac{};
  [[nodiscard]] size_t page_hashes() const;  // how many follow the payload (0 without the flag)
  [[nodiscard]] size_t file_size() const;    // what the whole file must measure
};

// XXH3-64 of one page, as kept in a chunk's page hashes.
uint64_t PageHash(const uint8_t* page);

// Compresses chunks; one per thread (it owns a zstd context and a MAC context).
class ChunkEncoder {
 public:
  ChunkEncoder(int zstd_level, const StoreKey& key);
  // Replaces `out` with the whole chunk file for `data`, whose id is `id`; with
  // `page_hashes`, the hashes of its whole pages follow (for pieces of page images). `*mac`
  // is the file's MAC (what manifests record).
  Status Encode(const ChunkId& id, const uint8_t* data, size_t size, bool page_hashes, std::vector<uint8_t>* out,
                Mac* mac);

 private:
  struct Free {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  };
  std::unique_ptr<ZSTD_CCtx, Free> ctx_;
  int level_;
  MacContext mac_;
};

// Reads chunks back; one per thread (it owns a zstd context, a MAC context and a file buffer).
class ChunkDecoder {
 public:
  explicit ChunkDecoder(const StoreKey& key);
  // Reads chunk file dir_fd/rel_path that must hold chunk `id`, and replaces `out` with its
  // raw bytes. Checked in this order, before anything is decompressed: the header, the
  // body checksum, the MAC under this daemon's key and, with `expect`, that the MAC is the
  // one the manifest recorded; then the content against the id. kNotFound when the file is
  // missing; kDataLoss, with a message that names the chunk, when anything is wrong.
  Status Read(int dir_fd, const std::string& rel_path, const ChunkId& id, const Mac* expect, std::vector<uint8_t>* out);
  // The same into `dst`, which the chunk must fill exactly (`size` bytes): kDataLoss when
  // its raw size differs.
  Status ReadInto(int dir_fd, const std::string& rel_path, const ChunkId& id, const Mac& expect, uint8_t* dst,
                  size_t size);
  // The MAC of the chunk the last successful Read or ReadInto returned.
  [[nodiscard]] const Mac& mac() const { return mac_read_; }
  // Reads only the page hashes and the MAC the header claims (without decompressing or
  // authenticating: page hashes only guide an ingest's diff, whose result is checked at
  // restore). kNotFound when the chunk or its page hashes are missing, kDataLoss when they
  // are damaged.
  static Status ReadPageHashes(int dir_fd, const std::string& rel_path, const ChunkId& id, std::vector<uint64_t>* hashes,
                               Mac* mac);

 private:
  struct Free {
    void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
  };
  // Reads and checks the file (header, checksums, MACs) into file_ / *header.
  Status Load(int dir_fd, const std::string& rel_path, const ChunkId& id, const Mac* expect, ChunkHeader* header);
  // Decompresses file_'s payload into dst (header->raw_size bytes) and checks the id.
  Status Decode(const ChunkHeader& header, const ChunkId& id, uint8_t* dst);

  std::unique_ptr<ZSTD_DCtx, Free> ctx_;
  MacContext mac_;
  std::vector<uint8_t> file_;
  Mac mac_read_{};
};

// Parses and checks a chunk header (magic, version, checksum, sizes, id); not the MAC.
Status ParseChunkHeader(const uint8_t* data, size_t size, const ChunkId& expect, ChunkHeader* header);

}  // namespace lazarus::store
