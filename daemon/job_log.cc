#include "daemon/job_log.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/fs_util.h"

#include <algorithm>
#include <chrono>

#include "effectlog/group_syncer.h"
#include "effectlog/prepare.h"
#include "effectlog/reader.h"
#include "effectlog/repair.h"

namespace lazarus {
using namespace effectlog;

namespace {
constexpr auto kPrepareInterval = std::chrono::milliseconds(5);
}  // namespace

StatusOr<std::unique_ptr<JobLog>> JobLog::Create(const std::string& dir, const LogOptions& options, uid_t owner,
                                                 gid_t group) {
  LAZARUS_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  if (::chown(dir.c_str(), owner, group) != 0) return ErrnoStatus("chown " + dir);
  LAZARUS_RETURN_IF_ERROR(CreateLog(dir, options).Context("create effect log"));
  return Open(dir);
}

StatusOr<std::unique_ptr<JobLog>> JobLog::Open(const std::string& dir) {
  auto control = ControlFile::Open(dir, /*writable=*/true);
  if (!control.ok()) return control.status().Context("open effect log " + dir);
  auto log = std::make_unique<JobLog>(Key{}, dir, std::move(*control));
  // The daemon's markers go on their own channel; continue its sequence.
  auto report = ValidateLog(dir);
  if (report.ok()) {
    auto it = report->channels.find(kDaemonChannel);
    if (it != report->channels.end()) log->daemon_sequence_ = it->second.last_sequence + 1;
  }
  return log;
}

JobLog::~JobLog() { StopKeeping(); }

Status JobLog::OpenWriter() {
  if (writer_) return Status::Ok();
  auto writer = Writer::Open(dir_);
  if (!writer.ok()) return writer.status().Context("open effect log " + dir_ + " for the daemon's markers");
  writer_ = std::move(*writer);
  return Status::Ok();
}

void JobLog::StartKeeping() {
  if (keeper_.joinable()) return;
  const std::string dir = dir_;
  if (durability() == DurabilityMode::kGroup) {
    keeper_ = std::jthread([dir](std::stop_token stop) {
      auto syncer = GroupSyncer::Open(dir);
      if (!syncer.ok()) {
        spdlog::error("effect log {}: {}", dir, syncer.status().message());
        return;
      }
      Status st = (*syncer)->Run(stop);
      if (!st.ok()) spdlog::error("effect log {} stopped: {}", dir, st.message());
    });
    return;
  }
  keeper_ = std::jthread([dir](std::stop_token stop) {
    auto control = ControlFile::Open(dir, /*writable=*/true);
    if (!control.ok()) return;
    while (!stop.stop_requested()) {
      auto made = PrepareNextSegment(dir, *control);
      if (!made.ok()) spdlog::warn("effect log {}: {}", dir, made.status().message());
      std::this_thread::sleep_for(kPrepareInterval);
    }
  });
}

void JobLog::StopKeeping() {
  if (!keeper_.joinable()) return;
  keeper_.request_stop();
  keeper_.join();
}

StatusOr<LogPosition> JobLog::FreezePosition(const std::vector<pid_t>& tree) {
  LAZARUS_RETURN_IF_ERROR(OpenWriter());
  LogPosition position = writer_->Tail();
  for (pid_t pid : tree) {
    auto mapped = OldestMappedSegment(pid, dir_);
    if (mapped.ok() && mapped->has_value()) position = std::min(position, LogPosition{**mapped, 0});
  }
  return position;
}

Status JobLog::Append(RecordType type, const void* payload, uint32_t size) {
  LAZARUS_RETURN_IF_ERROR(OpenWriter());
  AppendArgs args;
  args.type = type;
  args.channel = kDaemonChannel;
  args.sequence = daemon_sequence_;
  args.payload = payload;
  args.payload_size = size;
  auto result = writer_->Append(args);
  if (!result.ok()) return ToStatus(result).Context("append a marker to effect log " + dir_);
  ++daemon_sequence_;
  return Status::Ok();
}

Status JobLog::MarkSnapshot(uint64_t snapshot_id, uint64_t incarnation, LogPosition position) {
  SnapshotAtPayload payload{snapshot_id, incarnation, position.Packed()};
  LAZARUS_RETURN_IF_ERROR(Append(RecordType::kSnapshotAt, &payload, sizeof payload));
  control_.CountSnapshot();
  return Status::Ok();
}

StatusOr<uint64_t> JobLog::BeginIncarnation(uint64_t restored_from_snapshot) {
  // Repair requires that nobody appends: not the job (it is dead) and not us.
  StopKeeping();
  writer_.reset();
  auto repaired = RepairTornTail(dir_);
  if (!repaired.ok()) return repaired.status().Context("effect log " + dir_ + " cannot be replayed");
  if (repaired->changed)
    spdlog::info("effect log {}: cut a torn tail at {}:{} ({} bytes)", dir_, repaired->found.position.segment,
                 repaired->found.position.offset, repaired->bytes_cut);
  const uint64_t incarnation = control_.BeginIncarnation();
  IncarnationPayload payload{incarnation, restored_from_snapshot};
  LAZARUS_RETURN_IF_ERROR(Append(RecordType::kIncarnationBegan, &payload, sizeof payload));
  return incarnation;
}

Status JobLog::Compact(LogPosition oldest_needed) {
  auto report = effectlog::Compact(dir_, oldest_needed);
  if (!report.ok()) return report.status().Context("compact effect log " + dir_);
  if (report->segments_removed)
    spdlog::info("effect log {}: compacted {} segments ({} bytes)", dir_, report->segments_removed,
                 report->bytes_removed);
  return Status::Ok();
}

}  // namespace lazarus
