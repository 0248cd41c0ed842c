// What the daemon does to a log between incarnations: cut a torn tail before a restore,
// and drop segments no retained snapshot needs. Neither may run while a writer is live.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "effectlog/format.h"
#include "effectlog/reader.h"
#include "effectlog/sync_policy.h"

namespace lazarus::effectlog {

struct RepairOptions {
  // The machine lost power (or the disk was detached) since the log was written. Then
  // damage followed by valid records is expected where writes were never synced: the disk
  // may have kept a later page and lost an earlier one. Such damage at or after the
  // durable mark (ControlBlock::durable_upto as found on disk) is cut like a torn tail:
  // nothing after the mark was ever promised. Damage below the mark is still refused.
  bool after_power_loss = false;
};

struct RepairReport {
  ReadEnd found;                 // what validation found before the repair
  bool changed = false;
  uint64_t bytes_cut = 0;        // bytes zeroed after the cut point
  uint64_t segments_removed = 0;
  bool dropped_valid_records = false;  // after_power_loss cut above records never synced
  LogPosition end;               // where the next record goes now
};

// Validates the log and cuts a torn tail: zeroes everything after the last valid record,
// removes later segments (they hold nothing valid), resets the tail hint and makes all of
// it durable. Damage in the middle is refused with kDataLoss naming its position, and the
// log is left as it is. Abandoned slots are kept (a restored thread may own one).
StatusOr<RepairReport> RepairTornTail(const std::string& dir, const RepairOptions& options = {},
                                      SyncPolicy& sync = RealSyncPolicy());

struct CompactReport {
  uint64_t segments_removed = 0;
  uint64_t bytes_removed = 0;
  uint64_t first_segment = 0;  // the oldest segment left
};

// Deletes every segment that lies entirely before `oldest_needed` (the smallest log
// position among the retained snapshots: see OldestMappedSegment for what that must
// include). Whole segments only; the newest segment is never deleted.
StatusOr<CompactReport> Compact(const std::string& dir, LogPosition oldest_needed,
                                SyncPolicy& sync = RealSyncPolicy());

// The oldest segment of the log in `dir` that process `pid` has mapped (from
// /proc/PID/maps), or nothing. A snapshot needs every file its processes map (CRIU maps
// them again on restore), so the daemon lowers a snapshot's position to this segment
// when it records it at freeze time.
StatusOr<std::optional<uint64_t>> OldestMappedSegment(pid_t pid, const std::string& dir);

}  // namespace lazarus::effectlog
