// The content-addressed snapshot store: CRIU image directories go in as deduplicated,
// compressed chunks plus one manifest per snapshot, and come back out byte for byte.
// Every chunk file and manifest carries a MAC under the daemon's key, so nothing this
// daemon did not write is ever restored (STORE.md, "Authentication").
//
//   STATE/secret.key                 the key (store_key.h), beside the store by default
//   store/FORMAT                     StoreInfo record (layout version)
//   store/LOCK                       flock: see store_lock.h
//   store/chunks/ab/abcdef...        chunk files (chunk_file.h), named by XXH3-128 of content
//   store/manifests/JOB/ID.manifest  one Manifest record per committed snapshot
//   store/leases/NAME.lease          one per ingest in progress (store_lock.h)
//   store/tmp/NAME/                  that ingest's temporary chunk files
//   store/quarantine/                chunks Verify found damaged (moved aside, removed by GC)
//
// A snapshot is: Ingest (after CRIU has dumped into a staging directory and the job runs
// again) -> PendingSnapshot -> Commit, which makes it durable and then visible. A crash at
// any point leaves every committed snapshot intact, and anything half-done is removed by
// CollectGarbage. STORE.md has the formats, the commit protocol and the GC argument.
//
// A ChunkStore is safe to use from several threads and processes at once (one snapshot at a
// time per job is the caller's rule: Commit refuses an id that exists).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "snapshot/chunk_id.h"
#include "snapshot/chunker.h"
#include "snapshot/manifest.pb.h"
#include "snapshot/store_key.h"
#include "snapshot/store_lock.h"

namespace lazarus::store {

// 2: chunk files and manifests carry MACs (STORE.md, "Authentication").
constexpr uint32_t kStoreFormat = 2;
constexpr uint32_t kManifestFormat = 2;

struct IngestOptions {
  unsigned threads = 0;  // 0: one per CPU
  // zstd level of new chunks. 1 by lazarus-bench-store --sweep: level 3 stores 2% less for
  // 20% more CPU, -1 saves 8% CPU for 2% more, -5 saves 25% CPU for 20% more; decompression
  // (restore) speed differs little.
  int zstd_level = 1;
  Chunking chunking;
  // The job's previous snapshot, if any: a piece that changed since is stored as a patch of
  // that snapshot's piece (only the changed pages are stored). Must outlive Ingest, and come
  // from Load: the MACs it recorded are trusted for the chunks it names.
  const Manifest* base = nullptr;
};

struct IngestStats {
  uint64_t raw_bytes = 0;         // bytes of the image files
  uint64_t files = 0;
  uint64_t pieces = 0;
  uint64_t reused_pieces = 0;     // found in the store (or the base) unchanged
  uint64_t patched_pieces = 0;    // stored as changed pages over a base piece
  uint64_t patch_pages = 0;       // pages the new patches hold
  uint64_t new_chunks = 0;        // chunk files written
  uint64_t new_stored_bytes = 0;  // their bytes on disk (headers included)
  double wall_seconds = 0;
  double cpu_seconds = 0;         // all threads of the ingest
};

// An ingested snapshot that is not committed yet. While it lives, GC keeps every chunk it
// needs (its lease). Destroying it without Commit discards it (its new chunks become garbage).
class PendingSnapshot {
 public:
  PendingSnapshot(PendingSnapshot&&) noexcept = default;
  PendingSnapshot& operator=(PendingSnapshot&&) noexcept = default;

  // The manifest to be committed: the caller fills in what the store cannot know
  // (record, criu_version, effectlog_position); Commit sets job_id, snapshot_id, format and,
  // when zero, created_unix_ms.
  Manifest& manifest() { return manifest_; }
  [[nodiscard]] const IngestStats& stats() const { return stats_; }

 private:
  friend class ChunkStore;
  PendingSnapshot() = default;
  Manifest manifest_;
  IngestStats stats_;
  Lease lease_;
};

struct SnapshotKey {
  std::string job_id;
  uint32_t snapshot_id = 0;
  friend bool operator==(const SnapshotKey&, const SnapshotKey&) = default;
  friend auto operator<=>(const SnapshotKey&, const SnapshotKey&) = default;
};

struct SnapshotSummary {
  std::string job_id;
  uint32_t snapshot_id = 0;
  int64_t created_unix_ms = 0;
  uint64_t raw_bytes = 0;
  uint64_t new_stored_bytes = 0;
  uint32_t pieces = 0;
};

struct MaterializeOptions {
  unsigned threads = 0;  // 0: 4 per CPU, at least 8 (reads of small chunk files overlap)
};

struct BadChunk {
  ChunkId id;
  // "missing", "content hash mismatch", "not authenticated by this daemon's key", ...
  std::string problem;
  std::vector<SnapshotKey> needed_by;  // every checked snapshot that cannot restore without it
  // The file itself is missing, damaged or not authenticated (else it is intact, but not
  // the file some snapshots recorded: only those are in needed_by).
  bool file_damaged = true;
};

struct VerifyOptions {
  std::optional<std::string> job;  // only this job's snapshots (all when empty)
  unsigned threads = 0;             // 0: 4 per CPU, at least 8
  // Move damaged chunks to quarantine/ so that the next ingest that meets the same content
  // writes it again (later snapshots are then intact; the damaged ones stay damaged).
  bool quarantine = false;
};

struct VerifyReport {
  uint64_t snapshots_checked = 0;
  uint64_t chunks_checked = 0;
  uint64_t bytes_checked = 0;  // raw bytes of the chunks read back
  std::vector<BadChunk> bad_chunks;
  std::vector<std::string> bad_manifests;      // unreadable manifests (path: problem)
  std::vector<SnapshotKey> damaged_snapshots;  // snapshots that need a bad chunk, sorted
  uint64_t quarantined = 0;
  [[nodiscard]] bool ok() const { return bad_chunks.empty() && bad_manifests.empty(); }
};

struct GcOptions {
  bool wait = true;  // false: fail with kFailedPrecondition when the store is busy
};

struct GcReport {
  uint64_t chunks_kept = 0;
  uint64_t chunks_removed = 0;
  uint64_t bytes_removed = 0;
  uint64_t leftovers_removed = 0;  // stale leases, tmp directories, manifest temporaries, quarantine
};

class ChunkStore {
 public:
  // Creates the layout under `root` if needed (0700), checks its format version, and reads
  // the key that authenticates its chunks and manifests: `key_path`, by default
  // DefaultKeyPath(root). A missing key is made (32 random bytes, 0600) only while the store
  // holds no chunk and no manifest; otherwise Open fails (kFailedPrecondition) saying so,
  // since a new key would make every snapshot in it unrestorable. A key file that is not
  // exactly 32 bytes, unreadable, or readable by others is refused the same way.
  static StatusOr<ChunkStore> Open(const std::string& root, const std::string& key_path = "");
  // ROOT/../secret.key: for the daemon's STATE/store, STATE/secret.key.
  static std::string DefaultKeyPath(const std::string& root);

  ChunkStore(ChunkStore&&) noexcept = default;
  ChunkStore& operator=(ChunkStore&&) noexcept = default;

  // Reads every regular file of CRIU's image directory `images_dir` (no subdirectories),
  // writes the chunks the store does not have yet and makes them durable. The directory is
  // only read; the caller removes it afterwards. Memory: a few MiB plus a read-only mapping
  // of one image file at a time. On failure nothing of the ingest remains but chunks that
  // GC reclaims; a full file system gives kIo with "out of space: <path>: No space left on
  // device". A chunk already in the store that `options.base` does not name is read back and
  // compared with the piece before it is shared: kFailedPrecondition when it holds other
  // bytes under the same XXH3-128 id (a crafted collision; STORE.md, "Authentication").
  StatusOr<PendingSnapshot> Ingest(const std::string& images_dir, const IngestOptions& options = {}) const;

  // Makes the snapshot durable, then lists it as JOB/ID. `pending` is consumed whatever the
  // result. kAlreadyExists when JOB/ID exists, kInvalidArgument for a bad job id or a
  // manifest that would not read back (e.g. a string field of the record that is not UTF-8).
  Status Commit(const std::string& job_id, uint32_t snapshot_id, PendingSnapshot pending) const;

  // Committed snapshots of a job, oldest first; unreadable manifests go to `errors`.
  std::vector<SnapshotSummary> List(const std::string& job_id, std::vector<std::string>* errors = nullptr) const;
  // Their ids only (no manifest is read).
  std::vector<uint32_t> ListIds(const std::string& job_id) const;
  std::vector<std::string> ListJobs() const;
  // kNotFound when missing; kDataLoss when damaged, not authenticated by this store's key
  // ("manifest JOB/ID (...) is not authenticated by this daemon's key (...)") or invalid
  // (manifest_file.h: the MAC is checked before the manifest is parsed).
  StatusOr<Manifest> Load(const std::string& job_id, uint32_t snapshot_id) const;

  // Writes the snapshot's image files into `out_dir` (created if missing; files in it with
  // the same names are replaced), checking every chunk: its MAC (under this store's key,
  // and the one the manifest recorded) before it is decompressed, then its content.
  // kDataLoss naming the chunk id when a chunk is damaged or not authenticated, kNotFound
  // naming it when it is missing; the files written so far are removed then.
  Status Materialize(const Manifest& manifest, const std::string& out_dir, const MaterializeOptions& options = {}) const;

  // Re-reads every chunk the snapshots need and checks its MAC (against the key and against
  // what each manifest recorded) and its content against its id. Manifests that are not
  // authenticated are reported in bad_manifests.
  StatusOr<VerifyReport> Verify(const VerifyOptions& options = {}) const;

  // Unlists a snapshot (its chunks go at the next CollectGarbage). kNotFound when missing.
  Status Delete(const std::string& job_id, uint32_t snapshot_id) const;
  Status DeleteJob(const std::string& job_id) const;

  // Mark and sweep: removes every chunk that no committed manifest and no live ingest
  // needs, and what crashed ingests left behind. Refuses (kDataLoss, nothing removed) while
  // a manifest is unreadable: Delete it first.
  StatusOr<GcReport> CollectGarbage(const GcOptions& options = {}) const;

  [[nodiscard]] const std::string& root() const { return root_; }
  [[nodiscard]] const StoreKey& key() const { return key_; }
  // Path of a chunk file (tests and tools).
  [[nodiscard]] std::string ChunkPath(const ChunkId& id) const;
  [[nodiscard]] std::string ManifestPath(const std::string& job_id, uint32_t snapshot_id) const;

 private:
  ChunkStore(std::string root, StoreKey key) : root_(std::move(root)), key_(std::move(key)) {}
  StatusOr<StoreLock> Lock(StoreLock::Mode mode, bool wait = true) const;

  std::string root_;
  StoreKey key_;
  UniqueFd chunks_fd_;  // store/chunks, for *at() calls on chunk files
};

// Test hook: called at each named step of ingest, commit and GC (store_crash_points.h).
// A test sets it to kill or stop the process there; nullptr (the default) does nothing.
using CrashPointHook = void (*)(const char* point);
void SetCrashPointHookForTesting(CrashPointHook hook);

}  // namespace lazarus::store
