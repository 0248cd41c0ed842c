// The files of one log: creating a log, naming and listing segments, creating a segment
// so that it appears whole or not at all, and mapping the control file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "effectlog/format.h"
#include "effectlog/mapped_region.h"
#include "effectlog/sync_policy.h"

namespace lazarus::effectlog {

struct LogOptions {
  uint32_t segment_size = kDefaultSegmentSize;  // multiple of 4096, kMinSegmentSize..kMaxSegmentSize
  DurabilityMode durability = DurabilityMode::kProcess;
  uint32_t group_interval_ms = kDefaultGroupIntervalMs;
};

// Creates an empty log in `dir` (made if missing): the control file and segment 0, both
// durable on return. kAlreadyExists when `dir` already holds a log.
Status CreateLog(const std::string& dir, const LogOptions& options, SyncPolicy& sync = RealSyncPolicy());

std::string SegmentFileName(uint64_t number);
std::string SegmentPath(const std::string& dir, uint64_t number);
// The number in "seg-<16 hex>", or nothing for any other name.
std::optional<uint64_t> ParseSegmentFileName(std::string_view name);
// The segment numbers present in `dir`, ascending.
StatusOr<std::vector<uint64_t>> ListSegments(const std::string& dir);

// kDataLoss unless `block` is a control block this code can use.
Status CheckControlBlock(const ControlBlock& block);
// kDataLoss unless `header` is segment `number` of a log with `segment_size`.
Status CheckSegmentHeader(const SegmentHeader& header, uint64_t number, uint32_t segment_size);

// Opens segment `number` read-write, creating it first when it does not exist. A new
// segment gets its full size allocated (a write into a hole of a full disk would be a
// SIGBUS in the job) and its header, under a temporary name that link(2) then publishes:
// of two processes creating the same segment, one wins and the other opens its file. With
// `durable`, the file and its directory entry are synced (through `sync`) before return.
StatusOr<UniqueFd> OpenOrCreateSegment(const std::string& dir, uint64_t number, uint32_t segment_size,
                                       uint64_t incarnation, bool durable, SyncPolicy& sync);

// Raises a shared u64 to at least `value`.
inline void AtomicMax(uint64_t& field, uint64_t value) {
  auto a = Atomic(field);
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (cur < value && !a.compare_exchange_weak(cur, value)) {
  }
}

// The control file, mapped shared. Owns the mapping; block() lives as long as this object.
class ControlFile {
 public:
  // `writable`: the writer and the daemon; the reader maps it read-only.
  static StatusOr<ControlFile> Open(const std::string& dir, bool writable);

  [[nodiscard]] ControlBlock* block() const { return reinterpret_cast<ControlBlock*>(map_.data()); }
  [[nodiscard]] uint32_t segment_size() const { return block()->segment_size; }
  [[nodiscard]] DurabilityMode durability() const { return static_cast<DurabilityMode>(block()->durability); }

  // Stops the log (first reason wins): every later append fails. Writable files only.
  void Stop(StopReason reason, int err) const;
  [[nodiscard]] int stop_errno() const { return Atomic(block()->stop_errno).load(std::memory_order_relaxed); }

  // The shared counters (see ControlBlock for who writes which).
  [[nodiscard]] uint64_t incarnation() const { return Atomic(block()->incarnation).load(std::memory_order_acquire); }
  // Daemon, before a restored job runs: returns the new incarnation number.
  uint64_t BeginIncarnation() const { return Atomic(block()->incarnation).fetch_add(1) + 1; }
  // Job: asks the daemon for a snapshot; returns the request count.
  uint64_t RequestSnapshot() const { return Atomic(block()->snapshot_requests).fetch_add(1) + 1; }
  [[nodiscard]] uint64_t snapshot_requests() const {
    return Atomic(block()->snapshot_requests).load(std::memory_order_acquire);
  }
  // Daemon, after each snapshot.
  void CountSnapshot() const { Atomic(block()->snapshots_taken).fetch_add(1); }
  [[nodiscard]] uint64_t snapshots_taken() const {
    return Atomic(block()->snapshots_taken).load(std::memory_order_acquire);
  }
  // Everything committed below this position is on disk (group and sync modes).
  [[nodiscard]] LogPosition durable_upto() const {
    return LogPosition::Unpack(Atomic(block()->durable_upto).load(std::memory_order_acquire));
  }
  void AdvanceDurable(LogPosition p) const { AtomicMax(block()->durable_upto, p.Packed()); }
  void AdvanceActiveSegment(uint64_t n) const { AtomicMax(block()->active_segment, n); }
  [[nodiscard]] uint64_t active_segment() const {
    return Atomic(block()->active_segment).load(std::memory_order_acquire);
  }
  [[nodiscard]] StopReason stopped() const {
    return static_cast<StopReason>(Atomic(block()->stopped).load(std::memory_order_acquire));
  }

 private:
  explicit ControlFile(MappedRegion map) : map_(std::move(map)) {}
  MappedRegion map_;
};

// Faults a freshly mapped segment's pages in (best effort: only a speed-up). In `process`
// mode writable, and in large folios where the kernel has them for the file system (fewer
// faults; nothing fdatasyncs a process-mode log, so no folio is written back whole for a
// few new bytes). In the modes that sync, only read in: dirty zero pages would be written
// back by every sync.
void PrefaultSegment(void* addr, size_t size, DurabilityMode mode);

const char* StopReasonName(StopReason reason);
const char* DurabilityModeName(DurabilityMode mode);
std::optional<DurabilityMode> ParseDurabilityMode(std::string_view name);

}  // namespace lazarus::effectlog
