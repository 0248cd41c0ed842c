// libFuzzer target for the manifest reader (snapshot/manifest_file.h: record file -> MAC
// under the daemon's key -> Manifest -> validation), the path every manifest of the store
// takes before anything uses it. It must never crash, and what it accepts must be true:
//
// The first input byte picks the mode:
//  - raw: the rest is a manifest file as found on disk. Nothing can carry a valid MAC without
//    the key, so the reader must refuse every one of them.
//  - signed: the rest is what a writer holding the key serialized as the manifest (any
//    bytes); the harness signs it, so the reader gets past the MAC to the protobuf parser
//    and the validation. Whatever it accepts must satisfy what Materialize, Verify and GC
//    rely on, and survive being written and read again.
//  - built: the rest is a program that builds a manifest the way ingests do (files, whole
//    and patched pieces, patch chunks), with mistakes a buggy writer could make, signs it and
//    may then damage the file: accepted exactly when it is undamaged and ValidateManifest
//    accepts it; a damaged file is always refused.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "snapshot/chunk_store.h"
#include "snapshot/manifest_file.h"
#include "snapshot/store_internal.h"
#include "snapshot/store_key.h"

namespace {

using namespace lazarus;
using namespace lazarus::store;

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "oracle: %s\n", why);
  std::abort();
}

const StoreKey& Key() {
  static const StoreKey key = [] {
    uint8_t bytes[kKeyBytes];
    for (size_t i = 0; i < kKeyBytes; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 1);
    return StoreKey::FromBytes(bytes, sizeof bytes);
  }();
  return key;
}

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool empty() const { return p_ == end_; }
  uint8_t Byte() { return p_ == end_ ? 0 : *p_++; }
  uint32_t U32() { return Byte() | Byte() << 8 | Byte() << 16 | static_cast<uint32_t>(Byte()) << 24; }
  uint64_t U64() { return U32() | static_cast<uint64_t>(U32()) << 32; }
  std::string Bytes(size_t n) {
    n = std::min<size_t>(n, static_cast<size_t>(end_ - p_));
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  std::string Rest() { return Bytes(static_cast<size_t>(end_ - p_)); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// What an accepted manifest must be.
void CheckAccepted(const Manifest& m) {
  if (m.job_id() != "job" || m.snapshot_id() != 1 || m.format() != kManifestFormat) Fail("accepted another snapshot");
  if (!ValidateManifest(m).ok()) Fail("accepted an invalid manifest");
  std::unordered_map<ChunkId, internal::ChunkUse, ChunkIdHash> chunks;
  if (!internal::NeededChunks(m, &chunks).ok()) Fail("accepted a manifest whose chunks are unknown");
  for (const auto& file : m.files()) {
    uint64_t at = 0;
    for (const auto& piece : file.pieces()) {
      if (piece.offset() != at) Fail("accepted pieces with a gap");
      at += piece.size();
    }
    if (at != file.size()) Fail("accepted pieces that do not cover their file");
  }
  // Written again by the writer and read back: the same manifest.
  auto again = EncodeManifestFile(m, Key());
  if (!again.ok()) Fail("cannot write back an accepted manifest");
  Manifest back;
  if (!DecodeManifestFile(*again, "again", Key(), "job", 1, &back).ok()) Fail("an accepted manifest does not read back");
  if (back.SerializeAsString() != m.SerializeAsString()) Fail("an accepted manifest reads back different");
}

void FuzzRaw(Input in) {
  Manifest m;
  if (DecodeManifestFile(in.Rest(), "fuzz.manifest", Key(), "job", 1, &m).ok()) Fail("accepted a manifest it did not sign");
}

void FuzzSigned(Input in) {
  auto file = EncodeManifestFileFromBytes(in.Rest(), Key());
  if (!file.ok()) return;
  Manifest m;
  if (DecodeManifestFile(*file, "fuzz.manifest", Key(), "job", 1, &m).ok()) CheckAccepted(m);
}

std::string Id(Input& in) {
  // Mostly a few ids that repeat (chunks shared by pieces), sometimes a bad length.
  const uint8_t b = in.Byte();
  if (b == 0xff) return in.Bytes(in.Byte() % 20);
  return std::string(15, '\x11') + static_cast<char>(b % 8);
}
std::string MacField(Input& in) {
  const uint8_t b = in.Byte();
  if (b == 0xff) return in.Bytes(in.Byte() % 20);
  return std::string(16, static_cast<char>(b));
}

void FuzzBuilt(Input in) {
  Manifest m;
  m.set_format(in.Byte() == 0xfe ? 1 : kManifestFormat);
  m.set_job_id(in.Byte() == 0xfe ? "other" : "job");
  m.set_snapshot_id(in.Byte() == 0xfe ? 2 : 1);
  const int patch_chunks = in.Byte() % 4;
  for (int i = 0; i < patch_chunks; ++i) {
    ChunkSize* c = m.add_patch_chunks();
    c->set_id(Id(in));
    c->set_mac(MacField(in));
    c->set_raw_size(in.Byte() % 8 == 0 ? in.U32() : (in.Byte() % 32) * 4096u);
  }
  static const char* kNames[] = {"pages-1.img", "core-1.img", "inventory.img", "", "..", "a/b", "pages-1.img"};
  const int files = in.Byte() % 5;
  for (int f = 0; f < files && !in.empty(); ++f) {
    ImageFile* file = m.add_files();
    const uint8_t n = in.Byte();
    file->set_name(n < 7 * 32 ? kNames[n % 7] : in.Bytes(in.Byte() % 8));
    file->set_mode(in.Byte() == 0xfe ? in.U32() : 0600);
    uint64_t at = 0;
    const int pieces = in.Byte() % 6;
    for (int p = 0; p < pieces && !in.empty(); ++p) {
      Piece* piece = file->add_pieces();
      const uint8_t shape = in.Byte();
      const uint32_t size = shape % 16 == 0 ? in.U32() : (1 + shape % 64) * 4096u - (shape % 32 == 1 ? 100 : 0);
      piece->set_offset(shape % 32 == 2 ? at + 4096 : at);
      piece->set_size(size);
      piece->set_id(Id(in));
      if (shape & 0x80) {
        Patch* patch = piece->mutable_patch();
        patch->set_base(Id(in));
        patch->set_base_mac(MacField(in));
        patch->set_base_first_page(static_cast<int32_t>(in.U32() % 200) - 100);
        patch->set_page_mask(in.Byte() % 4 == 0 ? in.U64() : (uint64_t{1} << (in.Byte() % 8)) - 1);
        if (patch->page_mask() != 0) {
          patch->set_chunk(Id(in));
          patch->set_chunk_offset((in.Byte() % 16) * 4096u);
        }
      } else {
        piece->set_mac(MacField(in));
      }
      at += size;
    }
    file->set_size(in.Byte() == 0xfe ? at + 1 : at);
  }
  auto file = EncodeManifestFile(m, Key());
  if (!file.ok()) return;
  std::string bytes = *file;
  bool damaged = false;
  if (in.Byte() == 0xfd && !bytes.empty()) {
    const size_t at = in.U32() % bytes.size();
    const uint8_t x = in.Byte();
    if (x != 0) {
      bytes[at] = static_cast<char>(bytes[at] ^ x);
      damaged = true;
    }
  } else if (in.Byte() == 0xfc && !bytes.empty()) {
    bytes.resize(in.U32() % bytes.size());
    damaged = true;
  }
  Manifest back;
  const Status st = DecodeManifestFile(bytes, "fuzz.manifest", Key(), "job", 1, &back);
  if (damaged) {
    if (st.ok()) Fail("accepted a damaged manifest file");
    return;
  }
  // Valid: names this snapshot, passes validation, and parses (protobuf writes string fields
  // that are not UTF-8, such as a file name of arbitrary bytes, but refuses to read them).
  Manifest reparsed;
  const bool valid = m.format() == kManifestFormat && m.job_id() == "job" && m.snapshot_id() == 1 &&
                     ValidateManifest(m).ok() && reparsed.ParseFromString(m.SerializeAsString());
  if (st.ok() != valid) Fail(valid ? "refused a valid manifest" : "accepted an invalid manifest");
  if (st.ok()) CheckAccepted(back);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Input in(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: FuzzRaw(in); break;
    case 1: FuzzSigned(in); break;
    default: FuzzBuilt(in); break;
  }
  return 0;
}
