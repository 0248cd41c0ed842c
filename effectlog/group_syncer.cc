#include "effectlog/group_syncer.h"

#include "effectlog/prepare.h"

#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>

namespace lazarus::effectlog {

GroupSyncer::GroupSyncer(Key, std::string dir, ControlFile control, SyncPolicy& sync)
    : dir_(std::move(dir)), control_(std::move(control)), sync_(sync) {}

StatusOr<std::unique_ptr<GroupSyncer>> GroupSyncer::Open(const std::string& dir, SyncPolicy& sync) {
  auto control = ControlFile::Open(dir, /*writable=*/true);
  if (!control.ok()) return control.status();
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  auto s = std::make_unique<GroupSyncer>(Key{}, dir, std::move(*control), sync);
  s->next_segment_ = segments->empty() ? 0 : segments->back();
  return s;
}

Status GroupSyncer::SyncOnce() {
  if (control_.stopped() != StopReason::kRunning)
    return Status(Code::kFailedPrecondition, std::string("effect log is stopped: ") + StopReasonName(control_.stopped()));
  const uint64_t active = control_.active_segment();
  LogPosition durable{active, kSegmentHeaderSize};
  for (uint64_t n = next_segment_; n <= active; ++n) {
    auto it = fds_.find(n);
    if (it == fds_.end()) {
      UniqueFd fd(::open(SegmentPath(dir_, n).c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd) {
        if (errno == ENOENT) continue;  // compacted, or a roll-over not finished yet
        return ErrnoStatus("open " + SegmentPath(dir_, n));
      }
      it = fds_.emplace(n, std::move(fd)).first;
    }
    if (n == active) {
      // Read before the sync: every record committed below it is covered by the sync.
      uint64_t tail = 0;
      if (::pread(it->second.get(), &tail, sizeof tail, offsetof(SegmentHeader, tail)) == sizeof tail)
        durable.offset = tail;
    }
    if (int err = sync_.SyncSegment(it->second.get(), n); err != 0) {
      control_.Stop(StopReason::kSyncFailed, err);
      return ErrnoStatus("fdatasync effect log segment " + SegmentPath(dir_, n), err);
    }
  }
  // Older segments are full, but a writer that claimed its slot just before a roll-over
  // may commit into the previous segment after this round: keep syncing that one too.
  const uint64_t keep = active > 0 ? active - 1 : 0;
  fds_.erase(fds_.begin(), fds_.lower_bound(keep));
  next_segment_ = keep;
  control_.AdvanceDurable(durable);
  ++rounds_;
  // Off the job's hot path: the segment the job will roll over to.
  if (auto prepared = PrepareNextSegment(dir_, control_, sync_); !prepared.ok()) return prepared.status();
  return Status::Ok();
}

Status GroupSyncer::Run(std::stop_token stop, std::chrono::milliseconds interval) {
  if (interval.count() == 0) interval = std::chrono::milliseconds(control_.block()->group_interval_ms);
  std::mutex mu;
  std::condition_variable_any cv;
  auto next = std::chrono::steady_clock::now();
  while (!stop.stop_requested()) {
    LAZARUS_RETURN_IF_ERROR(SyncOnce());
    // Rounds start every `interval`, not `interval` after the previous one ended.
    next += interval;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;
    std::unique_lock lock(mu);
    cv.wait_until(lock, stop, next, [] { return false; });
  }
  return SyncOnce();
}

}  // namespace lazarus::effectlog
