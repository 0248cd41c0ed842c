// Segments made ahead of time. A writer that rolls over to a segment that does not exist
// yet creates it on the job's hot path: file creation, block allocation and the zeroing of
// every page (about 1 us per 4 KiB page here: as much as the appends themselves). The
// daemon calls PrepareNextSegment every few milliseconds per job (GroupSyncer's rounds do
// it), so that a roll-over only maps pages already in the page cache.
#pragma once

#include <string>

#include "common/status.h"
#include "effectlog/log_files.h"
#include "effectlog/sync_policy.h"

namespace lazarus::effectlog {

// When the active segment is at least half full and the next one does not exist, creates
// it (durably unless the log is in `process` mode) and faults its pages in. Returns true
// when it made one. Safe while writers append (creation is atomic, see OpenOrCreateSegment).
StatusOr<bool> PrepareNextSegment(const std::string& dir, const ControlFile& control,
                                  SyncPolicy& sync = RealSyncPolicy());

}  // namespace lazarus::effectlog
