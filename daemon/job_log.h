// The daemon's side of one job's effect log (effectlog/): it keeps the log durable as the
// job's mode promises (a group-commit thread, or segments prepared ahead so the job's
// appends never create files), writes the daemon's markers (snapshot taken, incarnation
// began), and readies the log for a restore (cut a torn tail, bump the incarnation).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "effectlog/format.h"
#include "effectlog/log_files.h"
#include "effectlog/writer.h"

namespace lazarus {

class JobLog {
 public:
  // Creates an empty log for a new job; its files belong to the job's owner, who writes them.
  static StatusOr<std::unique_ptr<JobLog>> Create(const std::string& dir, const effectlog::LogOptions& options,
                                                  uid_t owner, gid_t group);
  // Opens the log of an existing job.
  static StatusOr<std::unique_ptr<JobLog>> Open(const std::string& dir);
  ~JobLog();
  struct Key {};  // only Open() constructs
  JobLog(Key, std::string dir, effectlog::ControlFile control) : dir_(std::move(dir)), control_(std::move(control)) {}
  JobLog(const JobLog&) = delete;
  JobLog& operator=(const JobLog&) = delete;

  const std::string& dir() const { return dir_; }
  effectlog::DurabilityMode durability() const { return control_.durability(); }
  const effectlog::ControlFile& control() const { return control_; }

  // While the job runs: group commit or segment preparation, on a thread of its own.
  void StartKeeping();
  void StopKeeping();

  // Call while the job's tree is frozen: where replay of a restore of this snapshot
  // begins. Never after a segment the tree still maps (CRIU maps it again on restore).
  StatusOr<effectlog::LogPosition> FreezePosition(const std::vector<pid_t>& tree);
  Status MarkSnapshot(uint64_t snapshot_id, uint64_t incarnation, effectlog::LogPosition position);

  // Before a restore, with no writer of the job alive: cuts a torn tail (damage in the
  // middle refuses the restore), then starts the next incarnation and marks it.
  // Returns the new incarnation number.
  StatusOr<uint64_t> BeginIncarnation(uint64_t restored_from_snapshot);

  // Drops whole segments before `oldest_needed`.
  Status Compact(effectlog::LogPosition oldest_needed);

 private:
  Status OpenWriter();
  Status Append(effectlog::RecordType type, const void* payload, uint32_t size);

  std::string dir_;
  effectlog::ControlFile control_;
  std::unique_ptr<effectlog::Writer> writer_;  // the daemon's markers
  uint64_t daemon_sequence_ = 0;
  std::jthread keeper_;
};

}  // namespace lazarus
