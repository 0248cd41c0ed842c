#include "snapshot/store_key.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/fs_util.h"
#include "common/unique_fd.h"
#include "snapshot/store_io.h"

namespace lazarus::store {

struct StoreKey::Secret {
  std::array<uint8_t, kKeyBytes> bytes{};
  std::string id;
  Secret() = default;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
};

namespace {

// OpenSSL fails here only when it is broken (no default provider, no memory): nothing a
// caller could handle, and no MAC must ever be taken as computed when it was not.
void Must(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "lazarus: OpenSSL HMAC-SHA256: %s failed\n", what);
  std::abort();
}

std::string Octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// What a caller does about any problem with the key file.
constexpr const char* kWithoutIt = "without this daemon's key no snapshot in its store can be restored";

}  // namespace

bool MacEqual(const Mac& a, const Mac& b) { return CRYPTO_memcmp(a.data(), b.data(), kMacBytes) == 0; }

bool MacEqual(const Mac& a, std::string_view raw) {
  return raw.size() == kMacBytes && CRYPTO_memcmp(a.data(), raw.data(), kMacBytes) == 0;
}

std::string MacRaw(const Mac& mac) { return std::string(reinterpret_cast<const char*>(mac.data()), mac.size()); }

std::string MacHex(const Mac& mac) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : mac) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

void MacContext::Free::operator()(evp_mac_ctx_st* ctx) const { EVP_MAC_CTX_free(ctx); }

MacContext::MacContext(const StoreKey& key) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  Must(mac != nullptr, "EVP_MAC_fetch");
  ctx_.reset(EVP_MAC_CTX_new(mac));
  EVP_MAC_free(mac);  // the context holds its own reference
  Must(ctx_ != nullptr, "EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
  Must(EVP_MAC_init(ctx_.get(), key.secret_->bytes.data(), kKeyBytes, params) == 1, "EVP_MAC_init");
}

// Without a key, EVP_MAC_init restarts HMAC with the key it has (its padded inner and outer
// states are kept): no key schedule per message.
void MacContext::Begin() { Must(EVP_MAC_init(ctx_.get(), nullptr, 0, nullptr) == 1, "EVP_MAC_init"); }

void MacContext::Update(const void* data, size_t size) {
  Must(EVP_MAC_update(ctx_.get(), static_cast<const unsigned char*>(data), size) == 1, "EVP_MAC_update");
}

Mac MacContext::Finish() {
  unsigned char full[EVP_MAX_MD_SIZE];
  size_t n = 0;
  Must(EVP_MAC_final(ctx_.get(), full, &n, sizeof full) == 1 && n >= kMacBytes, "EVP_MAC_final");
  Mac mac;
  std::memcpy(mac.data(), full, kMacBytes);
  OPENSSL_cleanse(full, sizeof full);
  return mac;
}

Mac StoreKey::Compute(std::initializer_list<std::string_view> parts) const {
  MacContext ctx(*this);
  ctx.Begin();
  for (std::string_view part : parts) ctx.Update(part.data(), part.size());
  return ctx.Finish();
}

const std::string& StoreKey::id() const { return secret_->id; }

StoreKey StoreKey::FromBytes(const uint8_t* bytes, size_t size) {
  if (size != kKeyBytes) {
    std::fprintf(stderr, "lazarus: StoreKey::FromBytes: %zu bytes, a key has %zu\n", size, kKeyBytes);
    std::abort();
  }
  auto secret = std::make_shared<Secret>();
  std::memcpy(secret->bytes.data(), bytes, kKeyBytes);
  StoreKey key(secret);
  secret->id = MacHex(key.Compute({"lazarus store key id"})).substr(0, 16);
  return key;
}

StatusOr<StoreKey> StoreKey::Read(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) return Status(Code::kNotFound, "key file " + path + " does not exist");
    if (err == ELOOP)
      return Status(Code::kFailedPrecondition, "key file " + path + " is a symbolic link (refused: it must be the file itself)");
    return Status(Code::kFailedPrecondition, "cannot read key file " + path + ": " + std::strerror(err) + "; " + kWithoutIt);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat key file " + path);
  if (!S_ISREG(st.st_mode)) return Status(Code::kFailedPrecondition, "key file " + path + " is not a regular file");
  if (st.st_uid != ::geteuid())
    return Status(Code::kFailedPrecondition, "key file " + path + " belongs to uid " + std::to_string(st.st_uid) +
                                                 ", not to this daemon's user (uid " + std::to_string(::geteuid()) +
                                                 "): refused, someone else may have replaced it");
  if ((st.st_mode & 077) != 0)
    return Status(Code::kFailedPrecondition,
                  "key file " + path + " has mode " + Octal(st.st_mode) +
                      ": other users may have read or replaced it, and a key others know authenticates nothing. "
                      "If you are sure it is intact: chmod 600 " + path);
  if (st.st_size != static_cast<off_t>(kKeyBytes))
    return Status(Code::kFailedPrecondition, "key file " + path + " holds " + std::to_string(st.st_size) +
                                                 " bytes, a key has " + std::to_string(kKeyBytes) +
                                                 " (damaged: put back a copy of the key; " + kWithoutIt + ")");
  auto secret = std::make_shared<Secret>();
  size_t got = 0;
  while (got < kKeyBytes) {
    const ssize_t n = ::pread(fd.get(), secret->bytes.data() + got, kKeyBytes - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(Code::kFailedPrecondition, "cannot read key file " + path + ": " + std::strerror(errno));
    if (n == 0)
      return Status(Code::kFailedPrecondition, "key file " + path + " is shorter than " + std::to_string(kKeyBytes) + " bytes");
    got += static_cast<size_t>(n);
  }
  StoreKey key(secret);
  secret->id = MacHex(key.Compute({"lazarus store key id"})).substr(0, 16);
  return key;
}

StatusOr<StoreKey> StoreKey::Create(const std::string& path) {
  std::array<uint8_t, kKeyBytes> bytes{};
  size_t got = 0;
  while (got < kKeyBytes) {
    const ssize_t n = ::getrandom(bytes.data() + got, kKeyBytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("getrandom for a new store key");
    got += static_cast<size_t>(n);
  }
  StoreKey key = FromBytes(bytes.data(), bytes.size());
  OPENSSL_cleanse(bytes.data(), bytes.size());

  // Written whole to a temporary, made durable, then linked under its name: link(2) never
  // replaces, so of two processes creating a key at once one wins and the other reads it.
  std::string tmp = path + ".XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));  // mode 0600
  if (!fd) return IoError("create key file " + path, errno);
  struct Unlink {
    const std::string& path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_tmp{tmp};
  Status st = WriteAll(fd.get(), key.secret_->bytes.data(), kKeyBytes, "write key file " + tmp);
  if (st.ok() && ::fchmod(fd.get(), 0600) != 0) st = IoError("chmod key file " + tmp, errno);
  if (st.ok() && ::fsync(fd.get()) != 0) st = IoError("fsync key file " + tmp, errno);
  if (!st.ok()) return st;
  fd = UniqueFd();
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    if (errno == EEXIST) return Read(path);
    return IoError("create key file " + path, errno);
  }
  LAZARUS_RETURN_IF_ERROR(FsyncPath(Dirname(path)));
  return key;
}

}  // namespace lazarus::store
