// The daemon's secret key and the message authentication codes made with it.
//
// The key is 32 random bytes in a file only the daemon can read (STATE/secret.key, 0600).
// Every chunk file and every manifest of the snapshot store carries a MAC under it, so that
// a restore refuses anything this daemon did not write (STORE.md, "Authentication").
//
// The MAC is HMAC-SHA256 (OpenSSL's libcrypto), cut to its first 128 bits. Why this one:
// it is the standard keyed MAC, in a library every Debian system has (libssl-dev to build);
// on CPUs with SHA extensions (x86 SHA-NI, ARMv8 crypto) OpenSSL computes SHA-256 at
// ~2 GB/s per core, faster than libsodium's keyed BLAKE2b (~1 GB/s, no hardware help);
// 128 bits leave forgery at 2^-128 per try (truncation as in NIST SP 800-107) and keep
// manifests 16 bytes per piece smaller than full tags.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

struct evp_mac_ctx_st;  // OpenSSL's EVP_MAC_CTX

namespace lazarus::store {

constexpr size_t kKeyBytes = 32;
constexpr size_t kMacBytes = 16;
using Mac = std::array<uint8_t, kMacBytes>;

// Constant-time comparison (CRYPTO_memcmp): how long it takes says nothing of where two
// MACs differ.
bool MacEqual(const Mac& a, const Mac& b);
bool MacEqual(const Mac& a, std::string_view raw);  // false unless raw holds kMacBytes
std::string MacRaw(const Mac& mac);                  // the 16 bytes, as stored in manifests
std::string MacHex(const Mac& mac);

class StoreKey {
 public:
  // Reads a key file: a regular file of exactly 32 bytes, owned by this process's user and
  // accessible to nobody else. kNotFound when it does not exist; kFailedPrecondition
  // naming the problem for anything else (never the key's bytes).
  static StatusOr<StoreKey> Read(const std::string& path);
  // Makes a new random key (getrandom) in `path`, mode 0600, durable. When another process
  // made one first, reads that one instead (never replaces a key).
  static StatusOr<StoreKey> Create(const std::string& path);
  // A key from its bytes (tests and fuzzing); `size` must be kKeyBytes.
  static StoreKey FromBytes(const uint8_t* bytes, size_t size);

  // 16 hex digits naming the key (a MAC of a constant): tells keys apart in messages,
  // reveals nothing of the key.
  [[nodiscard]] const std::string& id() const;
  // MAC of the concatenation of `parts`.
  [[nodiscard]] Mac Compute(std::initializer_list<std::string_view> parts) const;

 private:
  friend class MacContext;
  struct Secret;
  explicit StoreKey(std::shared_ptr<const Secret> secret) : secret_(std::move(secret)) {}
  std::shared_ptr<const Secret> secret_;
};

// An incremental MAC under one key, reused for many messages; one per thread.
class MacContext {
 public:
  explicit MacContext(const StoreKey& key);
  MacContext(MacContext&&) noexcept = default;
  MacContext& operator=(MacContext&&) noexcept = default;

  void Begin();
  void Update(const void* data, size_t size);
  Mac Finish();

 private:
  struct Free {
    void operator()(evp_mac_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_mac_ctx_st, Free> ctx_;
};

}  // namespace lazarus::store
