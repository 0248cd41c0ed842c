// The name of a chunk: XXH3-128 of its uncompressed bytes, in XXH3's canonical (big-endian)
// byte order, written as 32 lowercase hex digits in file names and messages.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace lazarus::store {

struct ChunkId {
  std::array<uint8_t, 16> bytes{};

  static ChunkId Of(const void* data, size_t size);
  // From the 16 raw bytes of a manifest field; nullopt when the length is wrong.
  static std::optional<ChunkId> FromBytes(std::string_view raw);
  // From 32 hex digits (a chunk file name); nullopt for anything else.
  static std::optional<ChunkId> FromHex(std::string_view hex);

  [[nodiscard]] std::string Hex() const;
  // The 16 raw bytes, as stored in manifests.
  [[nodiscard]] std::string Raw() const { return std::string(reinterpret_cast<const char*>(bytes.data()), 16); }

  friend bool operator==(const ChunkId&, const ChunkId&) = default;
  friend auto operator<=>(const ChunkId&, const ChunkId&) = default;
};

struct ChunkIdHash {
  size_t operator()(const ChunkId& id) const {
    uint64_t v;
    std::memcpy(&v, id.bytes.data() + 8, 8);  // already uniformly distributed
    return static_cast<size_t>(v);
  }
};

}  // namespace lazarus::store
