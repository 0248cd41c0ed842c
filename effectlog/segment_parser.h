// Decoding of one segment's bytes, slot by slot. Pure functions over memory (no files), so
// the reader, the validator and the fuzz target share every decision about what is a
// record, what is unused space and what is damage. Never reads outside [data, data+size).
#pragma once

#include <cstddef>
#include <cstdint>

#include "effectlog/format.h"

namespace lazarus::effectlog {

// One record as stored; payload points into the segment's memory.
struct RecordView {
  LogPosition position;
  uint32_t length = 0;  // bytes in the log, padding included
  uint16_t type = 0;    // a RecordType, or a newer type this reader does not know
  uint16_t flags = 0;
  uint32_t channel = 0;
  uint64_t sequence = 0;
  uint32_t kind = 0;
  Digest128 digest;
  const uint8_t* payload = nullptr;
  uint32_t payload_size = 0;

  [[nodiscard]] bool known_type() const { return type >= 1 && type <= 4; }
};

enum class SlotKind {
  kRecord,     // a committed record with a matching checksum
  kAbandoned,  // claimed, never committed: its writer died (skipped when no writer is live)
  kPending,    // claimed, not committed yet, and writers may be live: stop here for now
  kPad,        // the rest of the segment is unused (the log went on in the next segment)
  kFull,       // the offset is the segment's end
  kEnd,        // never written (zero frame, or past the end of a short file)
  kDamage,     // anything else; `problem` says what
};

struct Slot {
  SlotKind kind = SlotKind::kEnd;
  uint32_t length = 0;            // bytes to the next slot (kRecord, kAbandoned, kPad)
  const char* problem = nullptr;  // kDamage: a static string
};

struct SegmentBytes {
  const uint8_t* data = nullptr;  // the segment file's first byte; 8-byte aligned
  size_t size = 0;                // bytes present (less than segment_size for a short file)
  uint32_t segment_size = 0;      // the log's segment size
  uint64_t number = 0;
};

// Decodes the slot at `offset` (8-aligned, >= kSegmentHeaderSize). `live`: writers may be
// appending right now (frames are read with acquire loads; claimed slots are kPending).
Slot ParseSlot(const SegmentBytes& seg, uint32_t offset, bool live, RecordView* record);

// True when some 8-aligned offset at or after `from` holds a committed record with a
// matching checksum. Used only to tell a torn tail from damage in the middle, never to
// resume reading past damage.
bool HasValidRecordFrom(const SegmentBytes& seg, uint32_t from);

// True when every byte in [from, min(to, size)) is zero.
bool AllZero(const SegmentBytes& seg, size_t from, size_t to);

}  // namespace lazarus::effectlog
