// Which snapshots a retention policy lets go. Pure: the caller deletes them (ChunkStore::
// Delete) and then collects garbage.
#pragma once

#include <cstdint>
#include <vector>

#include "snapshot/chunk_store.h"

namespace lazarus::store {

struct RetentionPolicy {
  uint32_t keep_last = 3;  // the newest N (at least 1 is always kept)
  // When > 0, also the oldest snapshot of every period of this many seconds (of wall time
  // since the epoch: "one per hour" keeps the first snapshot of each hour). Such a snapshot
  // stays kept as newer ones come, so the choice is stable from one run to the next.
  int64_t keep_every_seconds = 0;
};

// The ids (ascending) of the snapshots of one job that the policy does not keep.
std::vector<uint32_t> SelectForDeletion(const std::vector<SnapshotSummary>& snapshots, const RetentionPolicy& policy);

}  // namespace lazarus::store
