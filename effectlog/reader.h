// The reader and validator: walks a log's segments in order and hands out its records.
//
// What damage means (FORMAT.md, "Reading"):
//  - a torn or corrupt TAIL (damage with no valid record anywhere after it) is a clean cut:
//    reading stops there and end() reports the cut point; RepairTornTail() removes it;
//  - damage in the MIDDLE (a bad slot followed by valid records, or a missing segment) is
//    reported with its position and never skipped: reading stops before it;
//  - claimed slots whose writer died (kAbandoned) are skipped when no writer is live.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "effectlog/format.h"
#include "effectlog/mapped_region.h"
#include "effectlog/segment_parser.h"

namespace lazarus::effectlog {

enum class EndKind {
  kClean,     // every byte after the last record is unused
  kTornTail,  // damaged bytes after the last record, and nothing valid after them
  kCorrupt,   // damage followed by valid records (or a missing segment): needs a human
  kPending,   // live reading only: a claimed slot not committed yet; try again later
};
const char* EndKindName(EndKind kind);

struct ReadEnd {
  EndKind kind = EndKind::kClean;
  // kClean: where the next record goes; kTornTail: the cut point (the first damaged
  // byte); kCorrupt: the damaged slot; kPending: the pending slot.
  LogPosition position;
  std::string problem;  // what is wrong (kTornTail, kCorrupt)
};

struct ReaderOptions {
  // Writers may be appending while we read (client-lib during replay): claimed slots stop
  // the reader (kPending) instead of being skipped, and the end is not classified.
  bool live = false;
  // Start at this record boundary (e.g. a snapshot's position) instead of the first
  // segment present. kNotFound when compaction already removed it.
  LogPosition from{};
};

class Reader {
 public:
  static StatusOr<std::unique_ptr<Reader>> Open(const std::string& dir, const ReaderOptions& options = {});
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // The next record, or false at the end of what can be read (then end() says why). A
  // record's payload stays valid until the next call. Records of types this reader does
  // not know are returned too (known_type() is false): replay skips them.
  [[nodiscard]] bool Next(RecordView* record);
  [[nodiscard]] const ReadEnd& end() const { return end_; }
  // Claimed slots skipped because their writer died without committing.
  [[nodiscard]] uint64_t abandoned() const { return abandoned_; }

  struct Key {};
  Reader(Key, std::string dir, uint32_t segment_size, std::vector<uint64_t> segments, const ReaderOptions& options);

 private:
  Status MapCurrent();
  bool Finish(EndKind kind, LogPosition position, std::string problem);
  // Damage at (current segment, offset): a torn tail unless something valid follows.
  bool Classify(uint32_t offset, const std::string& problem, bool zero_frame);
  bool LaterSegmentHasRecord();
  bool NextSegment();

  const std::string dir_;
  const uint32_t segment_size_;
  std::vector<uint64_t> segments_;  // as listed at Open(), plus any found later
  const ReaderOptions options_;
  size_t index_ = 0;  // into segments_
  UniqueFd fd_;
  MappedRegion map_;
  SegmentBytes cur_;
  uint32_t offset_ = 0;
  bool done_ = false;
  ReadEnd end_;
  uint64_t abandoned_ = 0;
};

// What a validation found. The daemon validates before every restore.
struct ChannelSummary {
  uint64_t records = 0;
  uint64_t first_sequence = 0;
  uint64_t last_sequence = 0;
  uint64_t sequence_gaps = 0;  // times a record's sequence was not the previous one + 1
};
struct ValidationReport {
  uint64_t records = 0;
  uint64_t abandoned = 0;
  uint64_t bytes = 0;  // of records
  LogPosition first;   // first record (or the start of the first segment)
  ReadEnd end;
  std::map<uint32_t, ChannelSummary> channels;
};
// Reads the whole log (no writer may be live). Fails only when the log cannot be opened;
// damage is in report.end.
StatusOr<ValidationReport> ValidateLog(const std::string& dir);

}  // namespace lazarus::effectlog
