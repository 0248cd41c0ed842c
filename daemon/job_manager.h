// The job registry and every operation on jobs. Each job's record is persisted before a
// transition is acted on; long operations on one job (checkpoint, restore, kill) are
// serialized by that job's own lock, so a slow dump of one job never blocks another.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "daemon/caller.h"
#include "daemon/job_log.h"
#include "daemon/api.pb.h"
#include "daemon/records.pb.h"
#include <optional>

#include "common/scoped_dir.h"
#include "snapshot/chunk_store.h"

namespace lazarus {

struct DaemonConfig {
  std::string state_dir;  // holds jobs/ID/...
  std::string bin_dir;    // where lazarus-keeper, lazarus-init and liblazarus-preload.so are
  std::string socket_path;  // told to jobs (LAZARUS_SOCKET)
  std::string staging_dir;  // on tmpfs: CRIU's images between dump and ingest, and for restores
};

class JobManager {
 public:
  explicit JobManager(DaemonConfig config);

  // Reads every job record and re-adopts the jobs whose processes still run.
  Status Load();

  // Notices jobs whose processes ended. Called periodically.
  void Poll();

  // Every operation acts for `caller`: a job of another user is "permission denied"
  // unless the caller is root.
  StatusOr<api::JobInfo> Run(const api::RunRequest& request, const Caller& caller);
  StatusOr<api::JobInfo> Attach(const api::AttachRequest& request, const Caller& caller);
  StatusOr<api::JobList> List(const Caller& caller);
  StatusOr<api::JobInfo> GetStatus(const std::string& ref, const Caller& caller);
  StatusOr<api::SnapshotInfo> Checkpoint(const std::string& ref, const Caller& caller);
  StatusOr<api::SnapshotList> Snapshots(const std::string& ref, const Caller& caller);
  StatusOr<api::JobInfo> Restore(const api::RestoreRequest& request, const Caller& caller);
  StatusOr<api::JobInfo> Kill(const std::string& ref, const Caller& caller);
  Status Remove(const api::RemoveRequest& request, const Caller& caller);
  StatusOr<api::JobInfo> SetPolicy(const api::PolicyRequest& request, const Caller& caller);
  StatusOr<api::LogInfo> Log(const api::LogRequest& request, const Caller& caller);
  StatusOr<api::VerifyReport> Verify(const api::VerifyRequest& request, const Caller& caller);

  // Waits for periodic snapshots in progress.
  void Drain();

 private:
  struct Job {
    std::mutex op;               // held for the whole of a long operation on this job
    records::JobRecord record;   // guarded by JobManager::mu_
    std::unique_ptr<JobLog> log;  // guarded by op; none for attached jobs
    uint64_t snapshot_requests_seen = 0;  // the job's requests (ControlBlock) already served
  };

  StatusOr<api::SnapshotInfo> CheckpointLocked(Job& job, bool periodic);
  // A periodic snapshot is due, or the job asked for one.
  bool SnapshotDue(Job& job);
  std::string JobDir(const std::string& id) const;
  std::string LogDir(const std::string& id) const;
  // Where CRIU's logs of snapshot N of job `id` are kept.
  std::string SnapshotLogDir(const std::string& id, uint32_t snapshot) const;
  // A fresh directory under the staging area (tmpfs), removed when the result goes.
  StatusOr<ScopedDir> MakeStaging(const std::string& name);
  struct StagedRestore {
    uint32_t id = 0;
    records::SnapshotRecord record;
    ScopedDir dir;        // images/ and snapshot.rec, for the keeper
    std::string warning;  // why a newer snapshot was passed over
  };
  // Materializes snapshot `wanted` of `src`, or with 0 the newest intact one (damaged
  // newer ones are passed over and named in the warning).
  StatusOr<StagedRestore> StageRestore(const records::JobRecord& src, uint32_t wanted);
  // Drops the snapshots the job's policy does not keep, their chunks and their log.
  void ApplyRetention(Job& job, const records::JobRecord& record);
  StatusOr<std::shared_ptr<Job>> Find(const std::string& ref, const Caller& caller);
  // Persists `record` and publishes it in the registry.
  Status Save(Job& job, const records::JobRecord& record);
  records::JobRecord Snapshot(const Job& job);
  // Updates a job whose processes may have ended; persists a change. Caller holds no lock.
  void Refresh(Job& job);
  bool Alive(const records::JobRecord& record) const;
  api::JobInfo Info(const records::JobRecord& record) const;
  std::string NewJobId();
  Status CheckNameFree(const std::string& name, uid_t owner);
  StatusOr<std::shared_ptr<Job>> CreateJob(records::JobRecord record);
  void Forget(const std::string& id);

  DaemonConfig config_;
  std::string criu_version_;
  std::optional<store::ChunkStore> store_;  // opened by Load()
  std::mutex mu_;  // guards jobs_ and every Job::record
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::atomic<int> in_flight_{0};  // periodic snapshots running on their own threads
};

}  // namespace lazarus
