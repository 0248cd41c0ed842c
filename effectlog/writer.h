// The writer: appends records to a log through shared mappings of its segment files.
// Used inside the job by client-lib (one Writer per process, any number of threads) and by
// the daemon for its markers; both may append to the same log at once.
//
// Append() is lock-free in the common case (no segment roll-over, `process` and `group`
// modes): it claims space with compare-and-swap on the segment's frame words (FORMAT.md,
// "Claiming space"), writes the record into the mapping and publishes it by storing its
// frame word last, with release ordering. It never allocates and never throws. In `sync`
// mode it then waits for an fdatasync that covers the record; concurrent appends share one
// (group commit: the first waiter syncs for everybody who committed before it started).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "effectlog/format.h"
#include "effectlog/log_files.h"
#include "effectlog/mapped_region.h"
#include "effectlog/sync_policy.h"

namespace lazarus::effectlog {

// One part of a payload given in parts (AppendArgs::pieces).
struct PayloadPiece {
  const void* data = nullptr;
  uint32_t size = 0;
};

struct AppendArgs {
  RecordType type = RecordType::kResult;
  uint32_t channel = 0;
  uint64_t sequence = 0;
  uint32_t kind = 0;
  Digest128 digest{};
  const void* payload = nullptr;
  uint32_t payload_size = 0;
  uint16_t flags = 0;
  // Instead of `payload`: the payload as `piece_count` parts stored one after the other
  // (client-lib logs a result header and the caller's buffers without first copying them
  // together). payload_size is still the whole size; parts beyond it are cut, a shortfall
  // is zero-filled.
  const PayloadPiece* pieces = nullptr;
  uint32_t piece_count = 0;
};

enum class AppendCode : uint8_t {
  kOk = 0,
  kStopped,   // the log is stopped (ControlBlock::stopped): nothing more can be recorded
  kTooLarge,  // the payload does not fit in one segment
  kIo,        // a new segment could not be created or synced (the log is stopped too)
};

// The hot path's result: no allocation, no message. ToStatus() makes one when wanted.
struct [[nodiscard]] AppendResult {
  AppendCode code = AppendCode::kOk;
  int err = 0;            // errno behind kIo / kStopped, when there was one
  LogPosition position;   // where the record is (when ok)
  [[nodiscard]] bool ok() const { return code == AppendCode::kOk; }
};
Status ToStatus(const AppendResult& result);

struct WriterOptions {
  // How to make bytes durable; tests inject faults here. Must outlive the Writer.
  SyncPolicy* sync = nullptr;  // nullptr: RealSyncPolicy()
  // Fault in every page of a segment when it is mapped, so appends do not take page faults.
  bool populate = true;
  // Keep the descriptors of the segments at or above this number (0: anywhere). Client-lib
  // sets it: a segment opened on the job's hot path (roll-over) must not take the lowest
  // free number, which the job's next open() would otherwise have got, differently on
  // every run.
  int min_fd = 0;
};

class Writer {
 public:
  // Opens the log in `dir` (made by CreateLog) for appending at its end. After a crash the
  // log must first be repaired (RepairTornTail) so that its end is where the records end.
  static StatusOr<std::unique_ptr<Writer>> Open(const std::string& dir, const WriterOptions& options = {});
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Appends one record. Thread-safe. Returns when the record is as durable as the log's
  // mode promises: `process` and `group` after the memory write, `sync` after fdatasync.
  AppendResult Append(const AppendArgs& args) noexcept;

  // The first position after every slot claimed so far (the log's end; the daemon records
  // it in a snapshot's manifest at freeze time).
  [[nodiscard]] LogPosition Tail();

  // Makes every record committed so far durable, in any mode. Stops the log on failure.
  Status Sync();

  // Pads the rest of the current segment and moves appends to a new one (the daemon does
  // this when a new incarnation begins).
  Status StartNewSegment();

  [[nodiscard]] const ControlFile& control() const { return control_; }
  [[nodiscard]] DurabilityMode durability() const { return mode_; }
  [[nodiscard]] uint32_t max_payload() const { return MaxPayload(segment_size_); }

 private:
  struct Segment;
  struct Key {};  // only Open() constructs

 public:
  Writer(Key, std::string dir, ControlFile control, const WriterOptions& options);

 private:
  StatusOr<std::unique_ptr<Segment>> MapSegment(uint64_t number);
  Segment* AcquireActive() noexcept;
  void Release(Segment* s) noexcept;
  void Unmap(Segment* s) noexcept;
  // The claimed slot's offset; 0 when the segment is full (padded); kCorruptClaim on damage.
  uint32_t Claim(Segment* s, uint32_t length) noexcept;
  AppendResult Roll(Segment* full) noexcept;
  AppendResult WaitDurable(LogPosition end) noexcept;
  // fdatasyncs the segments [first, last] that are still open; 0 or an errno.
  int SyncSegmentsUpTo(uint64_t first, uint64_t last) noexcept;

  static constexpr uint32_t kCorruptClaim = 1;  // never a valid offset (< header size)

  const std::string dir_;
  ControlFile control_;
  SyncPolicy& sync_;
  const bool populate_;
  const int min_fd_;
  const DurabilityMode mode_;
  const uint32_t segment_size_;

  std::atomic<Segment*> active_{nullptr};
  std::mutex roll_mu_;      // one roll-over at a time in this process
  std::mutex segments_mu_;  // guards segments_ and the closing of their fds
  // Every segment this Writer mapped. The structs live as long as the Writer (a thread
  // that lost a race may still touch the counters of an old one); mappings and fds are
  // released as soon as no append is inside them.
  std::vector<std::unique_ptr<Segment>> segments_;

  // Group commit (sync mode), process-local: the threads waiting are this process's.
  // Appends join rounds; a round's leader fdatasyncs once for all who joined it.
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;    // a round finished
  std::condition_variable arrive_cv_;  // an append joined (the leader may be waiting)
  uint64_t next_round_ = 1;            // the round new appends join
  uint64_t done_round_ = 0;            // rounds are done in order
  bool leader_ = false;
  bool leader_waiting_ = false;
  int joined_ = 0;                     // appends in next_round_
  uint64_t round_first_segment_ = 0;   // segments next_round_ must sync
  uint64_t round_last_segment_ = 0;
  uint64_t round_end_ = 0;             // packed end of its newest record
  int last_group_ = 1;                 // appends the previous round covered
  std::chrono::nanoseconds max_wait_{0};
  static constexpr int kMaxLeaderWaitUs = 200;
};

}  // namespace lazarus::effectlog
