// Manifest files: writing them with their MAC, and the one path that reads them back
// (ChunkStore::Load, Verify and GC all go through ReadManifestFile):
//   record file (common/record_file.h: magic, size limit, XXH3 checksum)
//   -> SignedManifest -> MAC under the daemon's key, checked before the manifest is parsed
//   -> Manifest -> format, job and snapshot id, structure (ValidateManifest).
// Anything wrong is kDataLoss with a message that names the snapshot.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/store_key.h"

namespace lazarus::store {

// The bytes of a manifest file for `manifest`, authenticated with `key`.
StatusOr<std::string> EncodeManifestFile(const Manifest& manifest, const StoreKey& key);
// The same for bytes that are meant to be a serialized Manifest (tests and fuzzing: what a
// buggy or older writer holding the key could have signed).
StatusOr<std::string> EncodeManifestFileFromBytes(std::string serialized_manifest, const StoreKey& key);

// Reads the bytes of manifest file `name` (for messages) that must hold snapshot
// job_id/snapshot_id: refuses it unless its MAC verifies under `key`, its format is
// kManifestFormat, it names that snapshot and ValidateManifest accepts it.
Status DecodeManifestFile(std::string_view bytes, const std::string& name, const StoreKey& key, const std::string& job_id,
                          uint32_t snapshot_id, Manifest* out);

// What Materialize, Verify and GC rely on: image file names are plain names, unique; the
// pieces of each file cover it in order without gaps; every chunk id and MAC has its size;
// patched pieces are whole pages, name a base and (when they replace pages) a patch chunk
// listed in patch_chunks that holds the pages they take from it. kDataLoss naming the problem.
Status ValidateManifest(const Manifest& manifest);

}  // namespace lazarus::store
