#include "effectlog/writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

namespace lazarus::effectlog {

struct Writer::Segment {
  uint64_t number = 0;
  UniqueFd fd;
  MappedRegion map;
  uint8_t* base = nullptr;
  SegmentHeader* header = nullptr;
  std::atomic<bool> retired{false};  // no longer the active segment
  std::atomic<bool> unmapped{false};
  // Appends inside this segment right now. Written by every append: a cache line of its
  // own, or it would bounce the read-mostly fields above between the appending cores.
  alignas(64) std::atomic<int64_t> users{0};
  char pad[64 - sizeof(std::atomic<int64_t>)];
};

Status ToStatus(const AppendResult& r) {
  switch (r.code) {
    case AppendCode::kOk: return Status::Ok();
    case AppendCode::kStopped:
      return r.err != 0 ? ErrnoStatus("effect log is stopped", r.err)
                        : Status(Code::kFailedPrecondition, "effect log is stopped");
    case AppendCode::kTooLarge: return Status(Code::kInvalidArgument, "effect log record larger than a segment");
    case AppendCode::kIo: return ErrnoStatus("effect log append", r.err);
  }
  return Status(Code::kInternal, "unknown append result");
}

Writer::Writer(Key, std::string dir, ControlFile control, const WriterOptions& options)
    : dir_(std::move(dir)),
      control_(std::move(control)),
      sync_(options.sync != nullptr ? *options.sync : RealSyncPolicy()),
      populate_(options.populate),
      min_fd_(options.min_fd),
      mode_(control_.durability()),
      segment_size_(control_.segment_size()) {}

Writer::~Writer() = default;

StatusOr<std::unique_ptr<Writer>> Writer::Open(const std::string& dir, const WriterOptions& options) {
  auto control = ControlFile::Open(dir, /*writable=*/true);
  if (!control.ok()) return control.status();
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  if (segments->empty()) return Status(Code::kDataLoss, "effect log " + dir + " has no segment");
  auto w = std::make_unique<Writer>(Key{}, dir, std::move(*control), options);
  // The newest file is where appends go; a stale active_segment in the control block is
  // only a hint for writers that roll over.
  auto seg = w->MapSegment(segments->back());
  if (!seg.ok()) return seg.status();
  w->active_.store(seg->get());
  w->segments_.push_back(std::move(*seg));
  w->control_.AdvanceActiveSegment(segments->back());
  return w;
}

StatusOr<std::unique_ptr<Writer::Segment>> Writer::MapSegment(uint64_t number) {
  auto fd = OpenOrCreateSegment(dir_, number, segment_size_, control_.incarnation(),
                                /*durable=*/mode_ != DurabilityMode::kProcess, sync_);
  if (!fd.ok()) return fd.status();
  const std::string path = SegmentPath(dir_, number);
  if (min_fd_ > 0 && fd->get() < min_fd_) {
    UniqueFd high(::fcntl(fd->get(), F_DUPFD_CLOEXEC, min_fd_));
    if (!high) return ErrnoStatus("move the descriptor of " + path + " to " + std::to_string(min_fd_) + " or above");
    *fd = std::move(high);
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return ErrnoStatus("stat " + path);
  if (st.st_size != static_cast<off_t>(segment_size_))
    return Status(Code::kDataLoss, path + ": " + std::to_string(st.st_size) + " bytes instead of " +
                                       std::to_string(segment_size_));
  void* p = ::mmap(nullptr, segment_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd->get(), 0);
  if (p == MAP_FAILED) return ErrnoStatus("map " + path);
  auto s = std::make_unique<Segment>();
  s->number = number;
  s->fd = std::move(*fd);
  s->map = MappedRegion(p, segment_size_);
  s->base = s->map.data();
  s->header = reinterpret_cast<SegmentHeader*>(s->base);
  LAZARUS_RETURN_IF_ERROR(CheckSegmentHeader(*s->header, number, segment_size_).Context(dir_));
  // The first write to each page would otherwise take a fault on the hot path.
  if (populate_) PrefaultSegment(p, segment_size_, mode_);
  return s;
}

Writer::Segment* Writer::AcquireActive() noexcept {
  for (;;) {
    Segment* s = active_.load(std::memory_order_acquire);
    s->users.fetch_add(1);
    // Re-check after announcing ourselves: a roller that retired `s` before our increment
    // has already changed active_, so we back off; one that retires it later sees us.
    if (active_.load() == s) return s;
    Release(s);
  }
}

void Writer::Release(Segment* s) noexcept {
  if (s->users.fetch_sub(1) == 1 && s->retired.load()) Unmap(s);
}

void Writer::Unmap(Segment* s) noexcept {
  if (s->unmapped.exchange(true)) return;
  // In sync mode a waiting append may still need this segment's records on disk: sync
  // before the fd goes (SyncSegmentsUpTo skips segments whose fd is closed).
  if (mode_ == DurabilityMode::kSync) {
    if (int err = sync_.SyncSegment(s->fd.get(), s->number); err != 0) control_.Stop(StopReason::kSyncFailed, err);
  }
  std::lock_guard lock(segments_mu_);
  s->map.reset();
  s->fd.reset();
}

uint32_t Writer::Claim(Segment* s, uint32_t length) noexcept {
  auto tail = Atomic(s->header->tail);
  uint64_t t = tail.load(std::memory_order_acquire);
  for (;;) {
    if (t < kSegmentHeaderSize || t > segment_size_ || t % 8 != 0) return kCorruptClaim;
    if (t == segment_size_) return 0;
    auto frame = FrameAt(s->base, static_cast<uint32_t>(t));
    uint64_t w = frame.load(std::memory_order_acquire);
    if (w == 0) {
      const bool fits = t + length <= segment_size_;
      const uint64_t mine = fits ? MakeFrame(length, kFrameClaimed)
                                 : MakeFrame(static_cast<uint32_t>(segment_size_ - t), kFramePad);
      if (frame.compare_exchange_strong(w, mine, std::memory_order_acq_rel, std::memory_order_acquire)) {
        uint64_t expected = t;
        tail.compare_exchange_strong(expected, t + FrameLength(mine));  // others help if this loses
        return fits ? static_cast<uint32_t>(t) : 0;
      }
      // Lost the race: `w` is the winner's frame; step over it below.
    }
    if (!FrameWellFormed(w) || t + FrameLength(w) > segment_size_) return kCorruptClaim;
    const uint64_t next = t + FrameLength(w);
    uint64_t expected = t;
    // Help the tail along (its owner may be slow, or dead after a SIGKILL).
    t = tail.compare_exchange_strong(expected, next) ? next : std::max(expected, next);
  }
}

AppendResult Writer::Append(const AppendArgs& a) noexcept {
  if (control_.stopped() != StopReason::kRunning) return {AppendCode::kStopped, control_.stop_errno(), {}};
  if (a.payload_size > max_payload()) return {AppendCode::kTooLarge, 0, {}};
  const uint32_t length = RecordLength(a.payload_size);
  for (;;) {
    Segment* s = AcquireActive();
    const uint32_t off = Claim(s, length);
    if (off == kCorruptClaim) {
      Release(s);
      control_.Stop(StopReason::kCorrupt, 0);
      return {AppendCode::kStopped, 0, {}};
    }
    if (off == 0) {
      Release(s);
      if (AppendResult r = Roll(s); !r.ok()) return r;
      continue;
    }
    uint8_t* rec = s->base + off;
    RecordHeader h;
    h.frame = 0;
    h.checksum = 0;
    h.type = static_cast<uint16_t>(a.type);
    h.flags = a.flags;
    h.channel = a.channel;
    h.sequence = a.sequence;
    h.kind = a.kind;
    h.payload_size = a.payload_size;
    std::memcpy(h.digest, &a.digest, sizeof h.digest);
    // Everything but the frame word, which another thread may be reading.
    std::memcpy(rec + 8, reinterpret_cast<const uint8_t*>(&h) + 8, kRecordHeaderSize - 8);
    if (a.pieces != nullptr) {
      uint32_t at = 0;
      for (uint32_t i = 0; i < a.piece_count && at < a.payload_size; ++i) {
        const uint32_t n = std::min(a.pieces[i].size, a.payload_size - at);
        if (n > 0) std::memcpy(rec + kRecordHeaderSize + at, a.pieces[i].data, n);
        at += n;
      }
      if (at < a.payload_size) std::memset(rec + kRecordHeaderSize + at, 0, a.payload_size - at);
    } else if (a.payload_size > 0) {
      std::memcpy(rec + kRecordHeaderSize, a.payload, a.payload_size);
    }
    const uint32_t used = kRecordHeaderSize + a.payload_size;
    if (length > used) std::memset(rec + used, 0, length - used);
    const uint64_t sum = RecordChecksum(rec, length, a.payload_size);
    std::memcpy(rec + 8, &sum, sizeof sum);
    // Publish: a reader that sees the committed frame (acquire) sees every byte above.
    FrameAt(s->base, off).store(MakeFrame(length, kFrameCommitted), std::memory_order_release);
    const LogPosition pos{s->number, off};
    Release(s);
    if (mode_ == DurabilityMode::kSync) {
      AppendResult r = WaitDurable({pos.segment, pos.offset + length});
      r.position = pos;
      return r;
    }
    return {AppendCode::kOk, 0, pos};
  }
}

AppendResult Writer::Roll(Segment* full) noexcept {
  std::lock_guard lock(roll_mu_);
  if (active_.load() != full) return {};  // another thread of ours rolled already
  // Another process (the daemon, another job process) may have rolled further already.
  const uint64_t next = std::max(full->number + 1, control_.active_segment());
  auto seg = MapSegment(next);
  if (!seg.ok()) {
    // The Status names the cause; the hot-path result carries only a code.
    control_.Stop(StopReason::kSegmentFailed, EIO);
    return {AppendCode::kIo, EIO, {}};
  }
  Segment* s = seg->get();
  {
    std::lock_guard seglock(segments_mu_);
    segments_.push_back(std::move(*seg));
  }
  control_.AdvanceActiveSegment(next);
  active_.store(s);
  full->retired.store(true);
  if (full->users.load() == 0) Unmap(full);
  return {};
}

Status Writer::StartNewSegment() {
  for (;;) {
    Segment* s = AcquireActive();
    // Claim the rest of the segment as padding (a record as large as the segment never fits).
    const uint32_t off = Claim(s, segment_size_);
    Release(s);
    if (off == kCorruptClaim) {
      control_.Stop(StopReason::kCorrupt, 0);
      return Status(Code::kDataLoss, "effect log segment " + std::to_string(s->number) + " has a damaged frame");
    }
    if (off == 0) return ToStatus(Roll(s));
  }
}

LogPosition Writer::Tail() {
  Segment* s = AcquireActive();
  LogPosition p{s->number, Atomic(s->header->tail).load(std::memory_order_acquire)};
  // The hint may lag behind slots whose claimer has not advanced it yet: walk past them.
  while (p.offset + 8 <= segment_size_) {
    const uint64_t w = FrameAt(s->base, static_cast<uint32_t>(p.offset)).load(std::memory_order_acquire);
    if (w == 0 || !FrameWellFormed(w)) break;
    p.offset += FrameLength(w);
  }
  Release(s);
  if (p.offset >= segment_size_) p = {s->number + 1, kSegmentHeaderSize};
  return p;
}

int Writer::SyncSegmentsUpTo(uint64_t first, uint64_t last_segment) noexcept {
  std::vector<std::pair<uint64_t, UniqueFd>> fds;
  {
    std::lock_guard lock(segments_mu_);
    for (const auto& s : segments_) {
      if (s->number < first || s->number > last_segment || !s->fd) continue;
      // dup: the segment may be released while we sync it; its own fd may then close.
      UniqueFd fd(::fcntl(s->fd.get(), F_DUPFD_CLOEXEC, 0));
      if (!fd) return errno;
      fds.emplace_back(s->number, std::move(fd));
    }
  }
  for (auto& [number, fd] : fds) {
    if (int err = sync_.SyncSegment(fd.get(), number); err != 0) return err;
  }
  return 0;
}

AppendResult Writer::WaitDurable(LogPosition end) noexcept {
  std::unique_lock lock(sync_mu_);
  // The record was committed before this point, so any fdatasync that starts after it
  // covers it: join the next round not started yet. (Positions cannot decide this: a
  // record below another one's position may be committed after it.)
  const uint64_t my_round = next_round_;
  if (joined_++ == 0) {
    round_first_segment_ = round_last_segment_ = end.segment;
    round_end_ = end.Packed();
  } else {
    round_first_segment_ = std::min(round_first_segment_, end.segment);
    round_last_segment_ = std::max(round_last_segment_, end.segment);
    round_end_ = std::max(round_end_, end.Packed());
  }
  if (leader_waiting_) arrive_cv_.notify_one();
  while (done_round_ < my_round) {
    if (control_.stopped() != StopReason::kRunning) return {AppendCode::kStopped, control_.stop_errno(), {}};
    if (leader_) {
      sync_cv_.wait(lock);
      continue;
    }
    // Leader of round my_round (no round runs, and ours is not done: it has not started).
    leader_ = true;
    // The threads the previous round released are appending their next records: wait a
    // little for as many as that round covered, or the threads split into halves that
    // take turns and each fdatasync covers only half of them.
    if (joined_ < last_group_ && max_wait_.count() > 0) {
      leader_waiting_ = true;
      arrive_cv_.wait_for(lock, max_wait_, [&] { return joined_ >= last_group_; });
      leader_waiting_ = false;
    }
    const uint64_t round = next_round_++;
    const int group = std::exchange(joined_, 0);
    const uint64_t first = round_first_segment_, last = round_last_segment_, round_end = round_end_;
    lock.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    const int err = SyncSegmentsUpTo(first, last);
    const auto took = std::chrono::steady_clock::now() - t0;
    lock.lock();
    leader_ = false;
    if (err != 0) {
      control_.Stop(StopReason::kSyncFailed, err);
      sync_cv_.notify_all();
      return {AppendCode::kStopped, err, {}};
    }
    if (control_.stopped() != StopReason::kRunning) {  // e.g. an Unmap whose sync failed
      sync_cv_.notify_all();
      return {AppendCode::kStopped, control_.stop_errno(), {}};
    }
    done_round_ = round;
    last_group_ = group;
    max_wait_ = std::min<std::chrono::nanoseconds>(took / 2, std::chrono::microseconds(kMaxLeaderWaitUs));
    control_.AdvanceDurable(LogPosition::Unpack(round_end));
    sync_cv_.notify_all();
  }
  return {};
}

Status Writer::Sync() {
  const LogPosition end = Tail();
  if (mode_ == DurabilityMode::kSync) return ToStatus(WaitDurable(end));
  // Every segment still open: a record of an older one may have been committed late.
  if (int err = SyncSegmentsUpTo(0, end.segment); err != 0) {
    control_.Stop(StopReason::kSyncFailed, err);
    return ErrnoStatus("fdatasync effect log " + dir_, err);
  }
  control_.AdvanceDurable(end);
  return Status::Ok();
}

}  // namespace lazarus::effectlog
