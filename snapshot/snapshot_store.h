// Where a job's snapshots live: jobs/ID/snapshots/N/ with CRIU's images, CRIU's logs and
// a snapshot.rec. A snapshot is staged under .staging-N and becomes visible by one rename
// after everything in it is durable, so a crash leaves either no snapshot N or a whole one.
// (Issue 3 replaces the plain image directory with a chunked, deduplicated store.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/records.pb.h"

namespace lazarus::snapshot {

class SnapshotStore {
 public:
  explicit SnapshotStore(std::string dir) : dir_(std::move(dir)) {}

  struct Staged {
    uint32_t id = 0;
    std::string dir;         // .staging-N
    std::string images_dir;  // .staging-N/images
  };

  StatusOr<Staged> Stage(uint32_t id) const;
  // Makes the staged snapshot durable and visible; fills in its size.
  Status Commit(const Staged& staged, records::SnapshotRecord record) const;
  void Discard(const Staged& staged) const;
  // Removes what a crash left staged.
  void RemoveStaging() const;

  // Committed snapshots, oldest first. Damaged records are skipped (and logged by caller
  // through `errors`).
  std::vector<records::SnapshotRecord> List(std::vector<std::string>* errors = nullptr) const;
  StatusOr<records::SnapshotRecord> Get(uint32_t id) const;

  std::string Dir(uint32_t id) const { return dir_ + "/" + std::to_string(id); }
  std::string ImagesDir(uint32_t id) const { return Dir(id) + "/images"; }
  const std::string& root() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace lazarus::snapshot
