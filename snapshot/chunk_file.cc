#include "snapshot/chunk_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "snapshot/store_io.h"

namespace lazarus::store {
namespace {

constexpr char kMagic[8] = {'L', 'Z', 'C', 'H', 'K', 0, 0, 2};
// Header fields (chunk_file.h).
constexpr size_t kBodyChecksumAt = 36;
constexpr size_t kMacAt = 44;
constexpr size_t kHeaderChecksumAt = 60;
constexpr uint8_t kCodecRaw = 0;
constexpr uint8_t kCodecZstd = 1;
constexpr uint8_t kFlagPageHashes = 1;
constexpr size_t kPage = 4096;

template <typename T>
void Put(uint8_t* at, T value) {
  std::memcpy(at, &value, sizeof(T));  // x86-64 and arm64 are little-endian
}
template <typename T>
T Get(const uint8_t* at) {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

uint32_t HeaderChecksum(const uint8_t* header) { return static_cast<uint32_t>(XXH3_64bits(header, kHeaderChecksumAt)); }

// The MAC of a whole chunk file: header bytes up to the MAC, then the body.
Mac FileMac(MacContext& ctx, const uint8_t* file, size_t size) {
  ctx.Begin();
  ctx.Update(file, kMacAt);
  ctx.Update(file + kChunkHeaderBytes, size - kChunkHeaderBytes);
  return ctx.Finish();
}

Status Damaged(const ChunkId& id, const std::string& what) {
  return Status(Code::kDataLoss, "chunk " + id.Hex() + ": " + what);
}

}  // namespace

uint64_t PageHash(const uint8_t* page) { return XXH3_64bits(page, kPage); }

size_t ChunkHeader::page_hashes() const { return (flags & kFlagPageHashes) ? raw_size / kPage : 0; }

size_t ChunkHeader::file_size() const {
  return kChunkHeaderBytes + stored_size + ((flags & kFlagPageHashes) ? page_hashes() * 8 + 8 : 0);
}

ChunkEncoder::ChunkEncoder(int zstd_level, const StoreKey& key) : ctx_(ZSTD_createCCtx()), level_(zstd_level), mac_(key) {}

Status ChunkEncoder::Encode(const ChunkId& id, const uint8_t* data, size_t size, bool page_hashes,
                            std::vector<uint8_t>* out, Mac* mac) {
  if (size > kMaxChunkRawBytes) return Status(Code::kInternal, "chunk of " + std::to_string(size) + " bytes is too large");
  if (!ctx_) return Status(Code::kInternal, "zstd: cannot allocate a compression context");
  out->resize(kChunkHeaderBytes + ZSTD_compressBound(size));
  uint8_t codec = kCodecZstd;
  size_t stored = ZSTD_compressCCtx(ctx_.get(), out->data() + kChunkHeaderBytes, out->size() - kChunkHeaderBytes, data,
                                    size, level_);
  if (ZSTD_isError(stored)) return Status(Code::kInternal, std::string("zstd compress: ") + ZSTD_getErrorName(stored));
  if (stored >= size) {  // incompressible: keep it raw, which also reads back faster
    codec = kCodecRaw;
    stored = size;
    std::memcpy(out->data() + kChunkHeaderBytes, data, size);
  }
  out->resize(kChunkHeaderBytes + stored);
  if (page_hashes) {
    const size_t pages = size / kPage;
    std::vector<uint64_t> hashes(pages + 1);
    for (size_t p = 0; p < pages; ++p) hashes[p] = PageHash(data + p * kPage);
    hashes[pages] = XXH3_64bits(hashes.data(), pages * 8);
    const auto* bytes = reinterpret_cast<const uint8_t*>(hashes.data());
    out->insert(out->end(), bytes, bytes + hashes.size() * 8);
  }
  uint8_t* h = out->data();
  std::memcpy(h, kMagic, sizeof kMagic);
  std::memcpy(h + 8, id.bytes.data(), 16);
  Put<uint32_t>(h + 24, static_cast<uint32_t>(size));
  Put<uint32_t>(h + 28, static_cast<uint32_t>(stored));
  h[32] = codec;
  h[33] = page_hashes ? kFlagPageHashes : 0;
  h[34] = h[35] = 0;
  Put<uint64_t>(h + kBodyChecksumAt, XXH3_64bits(h + kChunkHeaderBytes, out->size() - kChunkHeaderBytes));
  *mac = FileMac(mac_, h, out->size());
  std::memcpy(h + kMacAt, mac->data(), kMacBytes);
  Put<uint32_t>(h + kHeaderChecksumAt, HeaderChecksum(h));
  return Status::Ok();
}

Status ParseChunkHeader(const uint8_t* data, size_t size, const ChunkId& expect, ChunkHeader* header) {
  if (size < kChunkHeaderBytes) return Damaged(expect, "truncated header (" + std::to_string(size) + " bytes)");
  if (std::memcmp(data, kMagic, 7) != 0) return Damaged(expect, "not a chunk file (bad magic)");
  if (data[7] != kMagic[7]) return Damaged(expect, "unknown chunk format version " + std::to_string(data[7]));
  if (Get<uint32_t>(data + kHeaderChecksumAt) != HeaderChecksum(data)) return Damaged(expect, "header checksum mismatch");
  std::memcpy(header->id.bytes.data(), data + 8, 16);
  header->raw_size = Get<uint32_t>(data + 24);
  header->stored_size = Get<uint32_t>(data + 28);
  header->codec = data[32];
  header->flags = data[33];
  header->body_checksum = Get<uint64_t>(data + kBodyChecksumAt);
  std::memcpy(header->mac.data(), data + kMacAt, kMacBytes);
  if (header->id != expect) return Damaged(expect, "header names chunk " + header->id.Hex());
  if (header->raw_size > kMaxChunkRawBytes) return Damaged(expect, "raw size " + std::to_string(header->raw_size) + " out of range");
  if (header->codec != kCodecRaw && header->codec != kCodecZstd)
    return Damaged(expect, "unknown codec " + std::to_string(header->codec));
  if ((header->flags & ~kFlagPageHashes) != 0 || data[34] != 0 || data[35] != 0)
    return Damaged(expect, "unknown flags " + std::to_string(header->flags));
  if (header->codec == kCodecRaw && header->stored_size != header->raw_size)
    return Damaged(expect, "raw chunk with stored size " + std::to_string(header->stored_size));
  return Status::Ok();
}

ChunkDecoder::ChunkDecoder(const StoreKey& key) : ctx_(ZSTD_createDCtx()), mac_(key) {}

Status ChunkDecoder::Load(int dir_fd, const std::string& rel_path, const ChunkId& id, const Mac* expect,
                          ChunkHeader* header) {
  Status read = ReadWholeFile(dir_fd, rel_path,
                              kChunkHeaderBytes + ZSTD_compressBound(kMaxChunkRawBytes) + kMaxChunkRawBytes / kPage * 8 + 8,
                              &file_);
  if (read.code() == Code::kNotFound) return Status(Code::kNotFound, "chunk " + id.Hex() + " is missing (" + rel_path + ")");
  if (read.code() == Code::kDataLoss) return Damaged(id, read.message());
  if (!read.ok()) return read.Context("chunk " + id.Hex());
  LAZARUS_RETURN_IF_ERROR(ParseChunkHeader(file_.data(), file_.size(), id, header));
  if (file_.size() != header->file_size())
    return Damaged(id, "file holds " + std::to_string(file_.size()) + " bytes, its header says " +
                           std::to_string(header->file_size()));
  // Accidents first, so that damage is named as damage; then forgery.
  if (XXH3_64bits(file_.data() + kChunkHeaderBytes, file_.size() - kChunkHeaderBytes) != header->body_checksum)
    return Damaged(id, "damaged (payload checksum mismatch)");
  const Mac mac = FileMac(mac_, file_.data(), file_.size());
  if (!MacEqual(mac, header->mac))
    return Status(Code::kDataLoss, "chunk " + id.Hex() +
                                       " is not authenticated by this daemon's key (altered, or written by another daemon)");
  if (expect && !MacEqual(mac, *expect))
    return Status(Code::kDataLoss, "chunk " + id.Hex() +
                                       " is not the file the snapshot was taken with (its MAC differs from the one the "
                                       "manifest recorded: replaced since)");
  return Status::Ok();
}

Status ChunkDecoder::Decode(const ChunkHeader& header, const ChunkId& id, uint8_t* dst) {
  const uint8_t* payload = file_.data() + kChunkHeaderBytes;
  if (header.codec == kCodecRaw) {
    std::memcpy(dst, payload, header.raw_size);
  } else {
    if (!ctx_) return Status(Code::kInternal, "zstd: cannot allocate a decompression context");
    size_t n = ZSTD_decompressDCtx(ctx_.get(), dst, header.raw_size, payload, header.stored_size);
    if (ZSTD_isError(n)) return Damaged(id, std::string("cannot decompress: ") + ZSTD_getErrorName(n));
    if (n != header.raw_size)
      return Damaged(id, "decompressed to " + std::to_string(n) + " bytes, header says " + std::to_string(header.raw_size));
  }
  if (ChunkId::Of(dst, header.raw_size) != id) return Damaged(id, "content hash mismatch");
  return Status::Ok();
}

Status ChunkDecoder::Read(int dir_fd, const std::string& rel_path, const ChunkId& id, const Mac* expect,
                          std::vector<uint8_t>* out) {
  ChunkHeader header;
  LAZARUS_RETURN_IF_ERROR(Load(dir_fd, rel_path, id, expect, &header));
  out->resize(header.raw_size);
  LAZARUS_RETURN_IF_ERROR(Decode(header, id, out->data()));
  mac_read_ = header.mac;
  return Status::Ok();
}

Status ChunkDecoder::ReadInto(int dir_fd, const std::string& rel_path, const ChunkId& id, const Mac& expect, uint8_t* dst,
                              size_t size) {
  ChunkHeader header;
  LAZARUS_RETURN_IF_ERROR(Load(dir_fd, rel_path, id, &expect, &header));
  if (header.raw_size != size)
    return Damaged(id, "holds " + std::to_string(header.raw_size) + " bytes, the manifest says " + std::to_string(size));
  LAZARUS_RETURN_IF_ERROR(Decode(header, id, dst));
  mac_read_ = header.mac;
  return Status::Ok();
}

Status ChunkDecoder::ReadPageHashes(int dir_fd, const std::string& rel_path, const ChunkId& id,
                                    std::vector<uint64_t>* hashes, Mac* mac) {
  UniqueFd fd(::openat(dir_fd, rel_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status(Code::kNotFound, "chunk " + id.Hex() + " is missing (" + rel_path + ")");
    return ErrnoStatus("open chunk " + rel_path);
  }
  auto pread_all = [&](void* buf, size_t size, off_t offset) -> Status {
    ssize_t n;
    do {
      n = ::pread(fd.get(), buf, size, offset);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return ErrnoStatus("read chunk " + rel_path);
    if (static_cast<size_t>(n) != size) return Damaged(id, "truncated");
    return Status::Ok();
  };
  uint8_t buf[kChunkHeaderBytes];
  LAZARUS_RETURN_IF_ERROR(pread_all(buf, sizeof buf, 0));
  ChunkHeader header;
  LAZARUS_RETURN_IF_ERROR(ParseChunkHeader(buf, sizeof buf, id, &header));
  if (!(header.flags & kFlagPageHashes)) return Status(Code::kNotFound, "chunk " + id.Hex() + " has no page hashes");
  const size_t pages = header.page_hashes();
  hashes->resize(pages + 1);
  LAZARUS_RETURN_IF_ERROR(
      pread_all(hashes->data(), (pages + 1) * 8, static_cast<off_t>(kChunkHeaderBytes + header.stored_size)));
  if (XXH3_64bits(hashes->data(), pages * 8) != (*hashes)[pages]) return Damaged(id, "page hashes checksum mismatch");
  hashes->resize(pages);
  *mac = header.mac;
  return Status::Ok();
}

}  // namespace lazarus::store
