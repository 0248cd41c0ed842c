// What the parts of ChunkStore (chunk_store.cc, store_ingest.cc, store_materialize.cc,
// store_verify.cc, store_gc.cc) share: the layout's names and the crash points.
#pragma once

#include <string>
#include <unordered_map>

#include "common/status.h"
#include "snapshot/chunk_id.h"
#include "snapshot/manifest.pb.h"

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

// Every chunk id a manifest needs, with the raw size it must have (0 when unknown), and
// kDataLoss when a field that must hold an id does not.
Status NeededChunks(const Manifest& manifest, std::unordered_map<ChunkId, uint32_t, ChunkIdHash>* out);

// "JOB/ID"
std::string KeyName(const std::string& job_id, uint32_t snapshot_id);

}  // namespace lazarus::store::internal
