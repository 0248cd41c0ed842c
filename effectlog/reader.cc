#include "effectlog/reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "effectlog/log_files.h"

namespace lazarus::effectlog {
namespace {

// A segment file mapped read-only, as much of it as exists (a short file is a torn tail).
struct MappedSegment {
  UniqueFd fd;
  MappedRegion map;
  SegmentBytes bytes;
};

StatusOr<MappedSegment> MapSegmentReadOnly(const std::string& dir, uint64_t number, uint32_t segment_size) {
  const std::string path = SegmentPath(dir, number);
  MappedSegment m;
  m.fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!m.fd) return ErrnoStatus("open effect log segment " + path);
  struct stat st {};
  if (::fstat(m.fd.get(), &st) != 0) return ErrnoStatus("stat " + path);
  const size_t size = std::min<size_t>(static_cast<size_t>(st.st_size), segment_size);
  m.bytes = {nullptr, 0, segment_size, number};
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, m.fd.get(), 0);
    if (p == MAP_FAILED) return ErrnoStatus("map " + path);
    m.map = MappedRegion(p, size);
    m.bytes.data = m.map.data();
    m.bytes.size = size;
  }
  return m;
}

bool HeaderOk(const SegmentBytes& b) {
  return b.size >= kSegmentHeaderSize &&
         CheckSegmentHeader(*reinterpret_cast<const SegmentHeader*>(b.data), b.number, b.segment_size).ok();
}

}  // namespace

const char* EndKindName(EndKind kind) {
  switch (kind) {
    case EndKind::kClean: return "clean";
    case EndKind::kTornTail: return "torn tail";
    case EndKind::kCorrupt: return "corrupt";
    case EndKind::kPending: return "pending";
  }
  return "unknown";
}

Reader::Reader(Key, std::string dir, uint32_t segment_size, std::vector<uint64_t> segments,
               const ReaderOptions& options)
    : dir_(std::move(dir)), segment_size_(segment_size), segments_(std::move(segments)), options_(options) {}

Reader::~Reader() = default;

StatusOr<std::unique_ptr<Reader>> Reader::Open(const std::string& dir, const ReaderOptions& options) {
  auto control = ControlFile::Open(dir, /*writable=*/false);
  if (!control.ok()) return control.status();
  auto segments = ListSegments(dir);
  if (!segments.ok()) return segments.status();
  if (segments->empty()) return Status(Code::kDataLoss, "effect log " + dir + " has no segment");
  const LogPosition from = options.from;
  if (from != LogPosition{}) {
    if (from.segment < segments->front())
      return Status(Code::kNotFound, "effect log " + dir + ": segment " + std::to_string(from.segment) +
                                         " was compacted away (first is " + std::to_string(segments->front()) + ")");
    if (from.offset % 8 != 0 || from.offset > control->segment_size())
      return Status(Code::kInvalidArgument, "effect log position " + std::to_string(from.segment) + ":" +
                                                std::to_string(from.offset) + " is not a record boundary");
    std::erase_if(*segments, [&](uint64_t n) { return n < from.segment; });
    if (segments->empty() || segments->front() != from.segment) segments->insert(segments->begin(), from.segment);
  }
  auto r = std::make_unique<Reader>(Key{}, dir, control->segment_size(), std::move(*segments), options);
  if (Status st = r->MapCurrent(); !st.ok() && st.code() != Code::kDataLoss) return st;
  if (from != LogPosition{} && r->cur_.data != nullptr) r->offset_ = std::max<uint32_t>(static_cast<uint32_t>(from.offset), kSegmentHeaderSize);
  return r;
}

// Maps segments_[index_]; a missing, short or damaged one ends the reading (classified).
Status Reader::MapCurrent() {
  const uint64_t n = segments_[index_];
  map_.reset();
  fd_.reset();
  cur_ = {nullptr, 0, segment_size_, n};
  offset_ = kSegmentHeaderSize;
  auto m = MapSegmentReadOnly(dir_, n, segment_size_);
  if (!m.ok()) {
    // Reading from the position of a segment not created yet: the log ends there.
    if (m.status().code() == Code::kNotFound && index_ + 1 == segments_.size()) {
      Finish(EndKind::kClean, {n, kSegmentHeaderSize}, "");
      return Status::Ok();
    }
    if (m.status().code() != Code::kNotFound) {
      Finish(EndKind::kCorrupt, {n, 0}, m.status().message());
      return m.status();
    }
  } else {
    fd_ = std::move(m->fd);
    map_ = std::move(m->map);
    cur_ = m->bytes;
  }
  if (!HeaderOk(cur_)) {
    // A damaged header: records may still sit in the segment (reading would be a guess).
    const bool follows = (cur_.size > kSegmentHeaderSize && HasValidRecordFrom(cur_, kSegmentHeaderSize)) ||
                         LaterSegmentHasRecord();
    const std::string problem = SegmentFileName(n) + (cur_.size < kSegmentHeaderSize ? ": missing or short header"
                                                                                     : ": damaged segment header");
    Finish(follows ? EndKind::kCorrupt : EndKind::kTornTail, {n, 0}, problem);
    return Status(Code::kDataLoss, problem);
  }
  return Status::Ok();
}

bool Reader::Finish(EndKind kind, LogPosition position, std::string problem) {
  end_ = {kind, position, std::move(problem)};
  // Live reading may resume where it stopped once writers went on; damage is final.
  done_ = !(options_.live && (kind == EndKind::kClean || kind == EndKind::kPending));
  return false;
}

bool Reader::LaterSegmentHasRecord() {
  for (size_t i = index_ + 1; i < segments_.size(); ++i) {
    auto m = MapSegmentReadOnly(dir_, segments_[i], segment_size_);
    if (!m.ok()) continue;
    if (m->bytes.size > kSegmentHeaderSize && HasValidRecordFrom(m->bytes, kSegmentHeaderSize)) return true;
  }
  return false;
}

bool Reader::NextSegment() {
  const uint64_t n = segments_[index_];
  if (index_ + 1 == segments_.size()) {
    // A segment created after Open() (live reading, or a writer that rolled over).
    if (::access(SegmentPath(dir_, n + 1).c_str(), F_OK) != 0) {
      return Finish(EndKind::kClean, {n + 1, kSegmentHeaderSize}, "");
    }
    segments_.push_back(n + 1);
  }
  if (segments_[index_ + 1] != n + 1) {
    ++index_;
    const bool follows = LaterSegmentHasRecord() || [&] {
      auto m = MapSegmentReadOnly(dir_, segments_[index_], segment_size_);
      return m.ok() && m->bytes.size > kSegmentHeaderSize && HasValidRecordFrom(m->bytes, kSegmentHeaderSize);
    }();
    --index_;
    return Finish(follows ? EndKind::kCorrupt : EndKind::kTornTail, {n + 1, 0},
                  SegmentFileName(n + 1) + " is missing");
  }
  ++index_;
  return MapCurrent().ok();
}

bool Reader::Classify(uint32_t offset, const std::string& problem, bool zero_frame) {
  const LogPosition at{cur_.number, offset};
  if (HasValidRecordFrom(cur_, offset + 8) || LaterSegmentHasRecord())
    return Finish(EndKind::kCorrupt, at, problem);
  if (zero_frame && AllZero(cur_, offset, cur_.size) && index_ + 1 == segments_.size())
    return Finish(EndKind::kClean, at, "");
  return Finish(EndKind::kTornTail, at, problem);
}

bool Reader::Next(RecordView* record) {
  if (done_) return false;
  for (;;) {
    const Slot s = ParseSlot(cur_, offset_, options_.live, record);
    switch (s.kind) {
      case SlotKind::kRecord:
        offset_ += s.length;
        return true;
      case SlotKind::kAbandoned:
        ++abandoned_;
        offset_ += s.length;
        continue;
      case SlotKind::kPending:
        return Finish(EndKind::kPending, {cur_.number, offset_}, "");
      case SlotKind::kPad:
      case SlotKind::kFull:
        if (!NextSegment()) return false;
        continue;
      case SlotKind::kEnd:
        if (options_.live) return Finish(EndKind::kClean, {cur_.number, offset_}, "");
        return Classify(offset_, "unwritten space followed by more data", /*zero_frame=*/true);
      case SlotKind::kDamage:
        return Classify(offset_, s.problem, /*zero_frame=*/false);
    }
  }
}

StatusOr<ValidationReport> ValidateLog(const std::string& dir) {
  auto reader = Reader::Open(dir);
  if (!reader.ok()) return reader.status();
  ValidationReport report;
  RecordView r;
  bool first = true;
  while ((*reader)->Next(&r)) {
    if (first) report.first = r.position;
    first = false;
    ++report.records;
    report.bytes += r.length;
    ChannelSummary& c = report.channels[r.channel];
    if (c.records == 0) c.first_sequence = r.sequence;
    else if (r.sequence != c.last_sequence + 1) ++c.sequence_gaps;
    c.last_sequence = r.sequence;
    ++c.records;
  }
  report.end = (*reader)->end();
  report.abandoned = (*reader)->abandoned();
  if (first) report.first = report.end.position;
  return report;
}

}  // namespace lazarus::effectlog
