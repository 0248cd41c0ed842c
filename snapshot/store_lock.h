// Coordination between ingests and the garbage collector of one store, across threads and
// processes, with flock(2) locks: the kernel drops them when their owner dies, so a SIGKILL
// never leaves the store locked.
//
// store/LOCK    held SHARED by ingests (while they pin chunks), commits, restores and
//               verifies; held EXCLUSIVELY by GC for its whole run.
// leases/NAME   one per ingest in progress, flock'ed EXCLUSIVELY by its owner for its
//               lifetime. It lists every chunk the ingest will reference ("pins"), in
//               checksummed batches. GC keeps every chunk a live lease pins, and deletes
//               the lease files (and tmp/NAME directories) whose owner is gone.
// (The full argument why GC never deletes a chunk an ingest relies on: STORE.md.)
//
// Lease file layout (little-endian): magic "LZLEASE" 1 (version in the last byte), u32 pid,
// u32 zero; then batches: u32 count, u32 zero, count x 16-byte chunk id, u64 XXH3-64 of
// the ids.
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "snapshot/chunk_id.h"

namespace lazarus::store {

class StoreLock {
 public:
  enum class Mode { kShared, kExclusive };
  // With wait == false, fails with kFailedPrecondition instead of waiting.
  static StatusOr<StoreLock> Acquire(const std::string& path, Mode mode, bool wait = true);

 private:
  explicit StoreLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // closing it releases the lock
};

class Lease {
 public:
  Lease() = default;
  Lease(Lease&&) noexcept = default;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { Release(); }

  // Creates leases/NAME and tmp/NAME. Call with the store lock held (shared): GC must never
  // see the file before its owner has locked it.
  static StatusOr<Lease> Create(const std::string& leases_dir, const std::string& tmp_root);

  // Appends `ids` to the lease. Call with the store lock held (shared), before the ingest
  // relies on the chunks existing or makes them visible.
  Status Pin(const std::vector<ChunkId>& ids);

  // A private directory for the ingest's temporary files (removed with the lease).
  [[nodiscard]] const std::string& tmp_dir() const { return tmp_dir_; }
  [[nodiscard]] bool held() const { return fd_.valid(); }

  // Removes tmp/NAME and leases/NAME; the chunks it pinned become ordinary garbage unless a
  // committed manifest references them.
  void Release();

 private:
  UniqueFd fd_;
  std::string path_;
  std::string tmp_dir_;
};

struct LeaseScan {
  std::unordered_set<ChunkId, ChunkIdHash> pinned;
  size_t live = 0;
  size_t stale_removed = 0;  // leases and tmp directories of owners that are gone
};

// Reads every live lease and removes the stale ones. Call with the store lock held
// exclusively. kDataLoss when a live lease is unreadable (its pins would be unknown).
StatusOr<LeaseScan> ScanLeases(const std::string& leases_dir, const std::string& tmp_root);

}  // namespace lazarus::store
