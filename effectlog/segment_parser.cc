#include "effectlog/segment_parser.h"

#include <cstring>

namespace lazarus::effectlog {
namespace {

uint64_t LoadFrame(const uint8_t* p, bool live) {
  if (live) return __atomic_load_n(reinterpret_cast<const uint64_t*>(p), __ATOMIC_ACQUIRE);
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

}  // namespace

Slot ParseSlot(const SegmentBytes& seg, uint32_t offset, bool live, RecordView* record) {
  if (offset >= seg.segment_size) return {SlotKind::kFull, 0, nullptr};
  if (size_t{offset} + 8 > seg.size) return {SlotKind::kEnd, 0, nullptr};  // short file: the rest reads as zero
  const uint8_t* p = seg.data + offset;
  const uint64_t frame = LoadFrame(p, live);
  if (frame == 0) return {SlotKind::kEnd, 0, nullptr};
  if (!FrameWellFormed(frame)) return {SlotKind::kDamage, 0, "damaged frame word"};
  const uint32_t length = FrameLength(frame);
  if (uint64_t{offset} + length > seg.segment_size) return {SlotKind::kDamage, 0, "frame length past the segment end"};
  switch (FrameState(frame)) {
    case kFramePad:
      if (uint64_t{offset} + length != seg.segment_size)
        return {SlotKind::kDamage, 0, "padding frame that does not reach the segment end"};
      return {SlotKind::kPad, length, nullptr};
    case kFrameClaimed:
      if (length < kRecordHeaderSize) return {SlotKind::kDamage, 0, "claimed slot shorter than a record header"};
      return {live ? SlotKind::kPending : SlotKind::kAbandoned, length, nullptr};
    default:
      break;  // committed
  }
  if (length < kRecordHeaderSize) return {SlotKind::kDamage, 0, "record shorter than its header"};
  if (size_t{offset} + kRecordHeaderSize > seg.size) return {SlotKind::kDamage, 0, "record cut off by the end of the file"};
  RecordHeader h;
  std::memcpy(&h, p, sizeof h);
  if (RecordLength(h.payload_size) != length || h.payload_size > length)
    return {SlotKind::kDamage, 0, "payload size does not match the frame length"};
  // The padding after the payload is not part of the record: a short file may lack it.
  if (size_t{offset} + kRecordHeaderSize + h.payload_size > seg.size)
    return {SlotKind::kDamage, 0, "record cut off by the end of the file"};
  if (RecordChecksum(p, length, h.payload_size) != h.checksum) return {SlotKind::kDamage, 0, "checksum mismatch"};
  if (record != nullptr) {
    record->position = {seg.number, offset};
    record->length = length;
    record->type = h.type;
    record->flags = h.flags;
    record->channel = h.channel;
    record->sequence = h.sequence;
    record->kind = h.kind;
    std::memcpy(&record->digest, h.digest, sizeof record->digest);
    record->payload = p + kRecordHeaderSize;
    record->payload_size = h.payload_size;
  }
  return {SlotKind::kRecord, length, nullptr};
}

bool HasValidRecordFrom(const SegmentBytes& seg, uint32_t from) {
  const size_t end = seg.size < seg.segment_size ? seg.size : seg.segment_size;
  for (size_t off = (size_t{from} + 7) & ~size_t{7}; off + kRecordHeaderSize <= end; off += 8) {
    uint64_t frame;
    std::memcpy(&frame, seg.data + off, sizeof frame);
    if (FrameState(frame) != kFrameCommitted || !FrameWellFormed(frame)) continue;  // cheap filter first
    if (ParseSlot(seg, static_cast<uint32_t>(off), /*live=*/false, nullptr).kind == SlotKind::kRecord) return true;
  }
  return false;
}

bool AllZero(const SegmentBytes& seg, size_t from, size_t to) {
  if (to > seg.size) to = seg.size;
  for (size_t i = from; i < to; ++i) {
    if (seg.data[i] != 0) return false;
  }
  return true;
}

}  // namespace lazarus::effectlog
