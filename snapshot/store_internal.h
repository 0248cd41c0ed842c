// What the parts of ChunkStore (chunk_store.cc, store_ingest.cc, store_materialize.cc,
// store_verify.cc, store_gc.cc) share: the layout's names and the crash points.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "snapshot/chunk_id.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/store_key.h"

namespace lazarus::store::internal {

inline constexpr const char* kFormatFile = "FORMAT";
inline constexpr const char* kLockFile = "LOCK";
inline constexpr const char* kChunksDir = "chunks";
inline constexpr const char* kManifestsDir = "manifests";
inline constexpr const char* kLeasesDir = "leases";
inline constexpr const char* kTmpDir = "tmp";
inline constexpr const char* kQuarantineDir = "quarantine";
inline constexpr const char* kManifestSuffix = ".manifest";

// "ab/abcdef...": a chunk's path below chunks/.
std::string ChunkRelPath(const ChunkId& id);

// Job ids become directory names: [A-Za-z0-9._-], 1..128 characters, not "." or "..".
Status CheckJobId(const std::string& job_id);

// Calls the test hook, if any (SetCrashPointHookForTesting).
void CrashPoint(const char* point);

// How a manifest needs one chunk: the raw size it must have (0 when the manifest does not
// say) and the MAC of the file it was taken with (one, unless references disagree).
struct ChunkUse {
  uint32_t raw_size = 0;
  std::vector<Mac> macs;
};

// Every chunk a manifest needs, and kDataLoss when a field that must hold an id or a MAC
// does not.
Status NeededChunks(const Manifest& manifest, std::unordered_map<ChunkId, ChunkUse, ChunkIdHash>* out);

// "JOB/ID"
std::string KeyName(const std::string& job_id, uint32_t snapshot_id);

}  // namespace lazarus::store::internal
