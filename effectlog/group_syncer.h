// The daemon's side of `group` durability: a round every few milliseconds fdatasyncs every
// segment written to since the previous round. The daemon runs Run() in a thread of its
// own per job (or calls SyncOnce() from its own timer). A failed sync stops the log.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stop_token>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"
#include "effectlog/log_files.h"
#include "effectlog/sync_policy.h"

namespace lazarus::effectlog {

class GroupSyncer {
 public:
  // `sync` must outlive the syncer.
  static StatusOr<std::unique_ptr<GroupSyncer>> Open(const std::string& dir, SyncPolicy& sync = RealSyncPolicy());

  // One round. On success every record committed before the call is on disk and
  // ControlBlock::durable_upto says up to where. On failure the log is stopped (every
  // later append fails) and the error is returned.
  Status SyncOnce();

  // Rounds every `interval` (the log's group_interval_ms when zero) until `stop` is
  // requested, then a last round. Returns the first error (the log is stopped by then).
  Status Run(std::stop_token stop, std::chrono::milliseconds interval = std::chrono::milliseconds(0));

  [[nodiscard]] uint64_t rounds() const { return rounds_; }

  struct Key {};
  GroupSyncer(Key, std::string dir, ControlFile control, SyncPolicy& sync);

 private:
  const std::string dir_;
  ControlFile control_;
  SyncPolicy& sync_;
  uint64_t next_segment_ = 0;        // the oldest segment that may hold unsynced records (active - 1)
  std::map<uint64_t, UniqueFd> fds_;  // open segments from next_segment_ on
  uint64_t rounds_ = 0;
};

}  // namespace lazarus::effectlog
