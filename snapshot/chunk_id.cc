#include "snapshot/chunk_id.h"

#include <xxhash.h>

namespace lazarus::store {

ChunkId ChunkId::Of(const void* data, size_t size) {
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits(data, size));
  ChunkId id;
  std::memcpy(id.bytes.data(), canonical.digest, 16);
  return id;
}

std::optional<ChunkId> ChunkId::FromBytes(std::string_view raw) {
  if (raw.size() != 16) return std::nullopt;
  ChunkId id;
  std::memcpy(id.bytes.data(), raw.data(), 16);
  return id;
}

std::optional<ChunkId> ChunkId::FromHex(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  ChunkId id;
  for (size_t i = 0; i < 16; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return id;
}

std::string ChunkId::Hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (size_t i = 0; i < 16; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

}  // namespace lazarus::store
