#include "snapshot/manifest_file.h"

#include <unordered_map>
#include <unordered_set>

#include "common/record_file.h"
#include "snapshot/chunk_file.h"
#include "snapshot/chunk_id.h"
#include "snapshot/chunk_store.h"
#include "snapshot/chunker.h"
#include "snapshot/store_internal.h"

namespace lazarus::store {
using internal::KeyName;

namespace {

// Domain separation: no chunk file (which starts "LZCHK") and no other message MACed under
// the key starts like this.
constexpr std::string_view kManifestLabel = "lazarus manifest\n";

}  // namespace

StatusOr<std::string> EncodeManifestFile(const Manifest& manifest, const StoreKey& key) {
  std::string serialized;
  if (!manifest.SerializeToString(&serialized))
    return Status(Code::kInternal, "cannot serialize the manifest of " + KeyName(manifest.job_id(), manifest.snapshot_id()));
  return EncodeManifestFileFromBytes(std::move(serialized), key);
}

StatusOr<std::string> EncodeManifestFileFromBytes(std::string serialized_manifest, const StoreKey& key) {
  SignedManifest signed_manifest;
  signed_manifest.set_manifest(std::move(serialized_manifest));
  signed_manifest.set_key_id(key.id());
  signed_manifest.set_mac(MacRaw(key.Compute({kManifestLabel, signed_manifest.manifest()})));
  return EncodeRecord(signed_manifest);
}

Status DecodeManifestFile(std::string_view bytes, const std::string& name, const StoreKey& key, const std::string& job_id,
                          uint32_t snapshot_id, Manifest* out) {
  const std::string snapshot = KeyName(job_id, snapshot_id);
  SignedManifest signed_manifest;
  LAZARUS_RETURN_IF_ERROR(ParseRecord(bytes, name, &signed_manifest).Context("snapshot " + snapshot));
  // Nothing of the manifest is looked at before its MAC checks out.
  const Mac mac = key.Compute({kManifestLabel, signed_manifest.manifest()});
  if (!MacEqual(mac, signed_manifest.mac())) {
    std::string why = "altered, or written by another daemon";
    const std::string& claimed = signed_manifest.key_id();
    const bool plausible = claimed.size() == 16 && claimed.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (plausible && claimed != key.id())
      why = "it names key " + claimed + ", this daemon's key is " + key.id() + ": written by another daemon, or altered";
    return Status(Code::kDataLoss, "manifest " + snapshot + " (" + name + ") is not authenticated by this daemon's key (" +
                                       why + "); refusing it");
  }
  Manifest m;
  if (!m.ParseFromString(signed_manifest.manifest()))
    return Status(Code::kDataLoss, "manifest " + snapshot + " (" + name + ") is authentic but unparsable");
  if (m.format() != kManifestFormat)
    return Status(Code::kDataLoss, "snapshot " + snapshot + ": manifest format " + std::to_string(m.format()) + " is not " +
                                       std::to_string(kManifestFormat));
  if (m.job_id() != job_id || m.snapshot_id() != snapshot_id)
    return Status(Code::kDataLoss, "snapshot " + snapshot + ": manifest belongs to " + KeyName(m.job_id(), m.snapshot_id()));
  LAZARUS_RETURN_IF_ERROR(ValidateManifest(m));
  *out = std::move(m);
  return Status::Ok();
}

Status ValidateManifest(const Manifest& m) {
  const std::string key = KeyName(m.job_id(), m.snapshot_id());
  auto bad = [&](const std::string& what) { return Status(Code::kDataLoss, "manifest " + key + ": " + what); };

  std::unordered_map<ChunkId, uint32_t, ChunkIdHash> patch_sizes;
  for (const auto& chunk : m.patch_chunks()) {
    auto id = ChunkId::FromBytes(chunk.id());
    if (!id) return bad("patch chunk without an id");
    if (chunk.mac().size() != kMacBytes) return bad("patch chunk " + id->Hex() + " without a MAC");
    if (chunk.raw_size() == 0 || chunk.raw_size() > kMaxChunkRawBytes || chunk.raw_size() % kPageBytes != 0)
      return bad("patch chunk " + id->Hex() + " of " + std::to_string(chunk.raw_size()) + " bytes");
    if (!patch_sizes.emplace(*id, chunk.raw_size()).second) return bad("patch chunk " + id->Hex() + " is listed twice");
  }

  std::unordered_set<std::string> names;
  for (const auto& file : m.files()) {
    const std::string& name = file.name();
    if (name.empty() || name.size() > 255 || name == "." || name == ".." || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos)
      return bad("bad image file name \"" + name + "\"");
    if (!names.insert(name).second) return bad("image file " + name + " is listed twice");
    if ((file.mode() & ~07777u) != 0) return bad("image file " + name + " has mode bits " + std::to_string(file.mode()));
    uint64_t at = 0;
    for (const auto& piece : file.pieces()) {
      const std::string where = "piece of " + name + " at offset " + std::to_string(at);
      if (piece.offset() != at || piece.size() == 0 || piece.size() > kMaxChunkRawBytes || !ChunkId::FromBytes(piece.id()))
        return bad("pieces of " + name + " do not cover it at offset " + std::to_string(at));
      if (!piece.has_patch()) {
        if (piece.mac().size() != kMacBytes) return bad(where + " has no MAC");
      } else {
        const Patch& p = piece.patch();
        const size_t pages = piece.size() / kPageBytes;
        if (piece.size() % kPageBytes != 0 || pages > kMaxPiecePages)
          return bad("patched " + where + " is not whole pages");
        if (!ChunkId::FromBytes(p.base()) || p.base_mac().size() != kMacBytes)
          return bad("patched " + where + " without a base chunk id and MAC");
        if (pages < 64 && (p.page_mask() >> pages) != 0) return bad("patched " + where + " replaces pages it does not have");
        if (p.page_mask() != 0) {
          auto chunk = ChunkId::FromBytes(p.chunk());
          if (!chunk) return bad("patched " + where + " without a patch chunk id");
          auto it = patch_sizes.find(*chunk);
          if (it == patch_sizes.end())
            return bad("patched " + where + " takes pages from patch chunk " + chunk->Hex() + ", which is not listed");
          const uint64_t end = uint64_t{p.chunk_offset()} + uint64_t(__builtin_popcountll(p.page_mask())) * kPageBytes;
          if (end > it->second)
            return bad("patched " + where + " takes pages beyond the end of patch chunk " + chunk->Hex());
        }
      }
      at += piece.size();
    }
    if (at != file.size())
      return bad("pieces of " + name + " cover " + std::to_string(at) + " of " + std::to_string(file.size()) + " bytes");
  }
  return Status::Ok();
}

}  // namespace lazarus::store
