// The effect-log format: the one header shared by the writer, the reader and client-lib
// (including the LD_PRELOAD shim). The prose spec with the reasons is effectlog/FORMAT.md;
// this file is its executable form. Everything here is inline, allocation-free and
// exception-free, so it can be compiled into a -fvisibility=hidden shim and called from
// a signal handler.
//
// A log is a directory:
//   control                 one 4 KiB page, ControlBlock: the fields daemon and job share
//   seg-<16 hex digits>     segments, all of ControlBlock::segment_size bytes: a 4 KiB
//                           SegmentHeader page, then records at 8-byte aligned offsets
//
// Every slot in a segment's data area begins with an 8-byte frame word, written with one
// atomic store (a torn write cannot split it):
//
//   bits  0..31  length   bytes of the whole slot, header and padding included (8-aligned)
//   bits 32..47  state    kFrameClaimed | kFrameCommitted | kFramePad (0 = never written)
//   bits 48..63  check    FrameCheck(length, state): any one damaged byte is detected
//
// A committed slot is a record:
//
//   +0   u64   frame
//   +8   u64   checksum   XXH3-64 of bytes [16, 56 + payload_size), seeded with length
//   +16  u16   type       RecordType; types a reader does not know are skipped
//   +18  u16   flags      0 today; readers ignore bits they do not know
//   +20  u32   channel    thread ordinal within the job; kDaemonChannel for markers
//   +24  u64   sequence   per channel, from 0, no gaps
//   +32  u32   kind       effect kind (client-lib's table); 0 for markers
//   +36  u32   payload_size
//   +40  u8[16] digest    XXH3-128 of the request (RequestDigest), zero for markers
//   +56  payload, then zero padding to the next multiple of 8
//
// All integers are little-endian (x86-64 and arm64 are; static_assert below).
#pragma once

#include <atomic>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL  // static inline copies: no symbol clash inside a preloaded shim
#endif
#include <xxhash.h>

namespace lazarus::effectlog {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the effect log is little-endian");

// Bumped for any change an old reader would misread. Appending a field to the reserved
// space of a header or adding a record type is not such a change.
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kMinReaderVersion = 1;

inline constexpr char kControlMagic[8] = {'L', 'Z', 'E', 'L', 'C', 'T', 'L', 0};
inline constexpr char kSegmentMagic[8] = {'L', 'Z', 'E', 'L', 'S', 'E', 'G', 0};
inline constexpr char kControlFileName[] = "control";
inline constexpr char kSegmentPrefix[] = "seg-";  // + 16 lower-case hex digits

inline constexpr uint32_t kPageSize = 4096;
inline constexpr uint32_t kControlSize = kPageSize;
inline constexpr uint32_t kSegmentHeaderSize = kPageSize;  // records start here
inline constexpr uint32_t kMinSegmentSize = 2 * kPageSize;
inline constexpr uint32_t kMaxSegmentSize = 1u << 30;
inline constexpr uint32_t kDefaultSegmentSize = 16u << 20;
inline constexpr uint32_t kDefaultGroupIntervalMs = 5;

enum class DurabilityMode : uint32_t {
  kProcess = 1,  // the append returns after the memory write (the page cache keeps it)
  kGroup = 2,    // the daemon fdatasyncs at least every group_interval_ms
  kSync = 3,     // the append returns once its record is on disk (group commit)
};

enum class RecordType : uint16_t {
  kIntent = 1,            // about to perform an output effect
  kResult = 2,            // the effect's result (payload)
  kSnapshotAt = 3,        // daemon marker, payload SnapshotAtPayload
  kIncarnationBegan = 4,  // daemon marker, payload IncarnationPayload
};

inline constexpr uint32_t kDaemonChannel = 0xffffffffu;

// ---- frame word -------------------------------------------------------------------------
// State values differ in both bytes, so no single damaged byte turns one into another.
inline constexpr uint16_t kFrameClaimed = 0x6c43;    // space reserved, record not written yet
inline constexpr uint16_t kFrameCommitted = 0x4d63;  // record complete; checksum must match
inline constexpr uint16_t kFramePad = 0x5050;        // rest of the segment unused (roll-over)

inline constexpr uint16_t FrameCheck(uint32_t length, uint16_t state) {
  return static_cast<uint16_t>((length & 0xffff) ^ (length >> 16) ^ state ^ 0x4c5a);
}
inline constexpr uint64_t MakeFrame(uint32_t length, uint16_t state) {
  return uint64_t{length} | uint64_t{state} << 32 | uint64_t{FrameCheck(length, state)} << 48;
}
inline constexpr uint32_t FrameLength(uint64_t frame) { return static_cast<uint32_t>(frame); }
inline constexpr uint16_t FrameState(uint64_t frame) { return static_cast<uint16_t>(frame >> 32); }
// True when the frame is one the writer can have produced (length and check agree).
inline constexpr bool FrameWellFormed(uint64_t frame) {
  const uint16_t state = FrameState(frame);
  const uint32_t length = FrameLength(frame);
  return (state == kFrameClaimed || state == kFrameCommitted || state == kFramePad) && length >= 8 &&
         length % 8 == 0 && static_cast<uint16_t>(frame >> 48) == FrameCheck(length, state);
}

// ---- records ----------------------------------------------------------------------------
struct Digest128 {
  uint64_t low = 0;
  uint64_t high = 0;
  friend bool operator==(const Digest128&, const Digest128&) = default;
};

struct RecordHeader {
  uint64_t frame;
  uint64_t checksum;
  uint16_t type;
  uint16_t flags;
  uint32_t channel;
  uint64_t sequence;
  uint32_t kind;
  uint32_t payload_size;
  uint8_t digest[16];
};
static_assert(offsetof(RecordHeader, frame) == 0);
static_assert(offsetof(RecordHeader, checksum) == 8);
static_assert(offsetof(RecordHeader, type) == 16);
static_assert(offsetof(RecordHeader, flags) == 18);
static_assert(offsetof(RecordHeader, channel) == 20);
static_assert(offsetof(RecordHeader, sequence) == 24);
static_assert(offsetof(RecordHeader, kind) == 32);
static_assert(offsetof(RecordHeader, payload_size) == 36);
static_assert(offsetof(RecordHeader, digest) == 40);
inline constexpr uint32_t kRecordHeaderSize = 56;
static_assert(sizeof(RecordHeader) == kRecordHeaderSize);
inline constexpr uint32_t kChecksumFrom = 16;  // the checksum covers [16, 56 + payload_size)

inline constexpr uint32_t Align8(uint64_t n) { return static_cast<uint32_t>((n + 7) & ~uint64_t{7}); }
inline constexpr uint32_t RecordLength(uint32_t payload_size) {
  return Align8(uint64_t{kRecordHeaderSize} + payload_size);
}
// The largest payload a segment of `segment_size` bytes can hold.
inline constexpr uint32_t MaxPayload(uint32_t segment_size) {
  return segment_size - kSegmentHeaderSize - kRecordHeaderSize;
}

// `record` points at the frame word of a record whose header fields are in place.
inline uint64_t RecordChecksum(const uint8_t* record, uint32_t length, uint32_t payload_size) {
  return XXH3_64bits_withSeed(record + kChecksumFrom, kRecordHeaderSize - kChecksumFrom + size_t{payload_size},
                              length);
}

inline Digest128 RequestDigest(const void* data, size_t size) {
  const XXH128_hash_t h = XXH3_128bits(data, size);
  return {h.low64, h.high64};
}

// Marker payloads (the daemon's records, channel kDaemonChannel).
struct SnapshotAtPayload {
  uint64_t snapshot_id;
  uint64_t incarnation;
  uint64_t position;  // LogPosition::Packed() of the log's tail at freeze time
};
static_assert(sizeof(SnapshotAtPayload) == 24);
struct IncarnationPayload {
  uint64_t incarnation;
  uint64_t restored_from_snapshot;  // 0 for the first incarnation
};
static_assert(sizeof(IncarnationPayload) == 16);

// ---- positions --------------------------------------------------------------------------
// A place in the log: the segment number and the byte offset in it. Ordered like the log.
// Packed() keeps that order in one u64 (offsets < 2^32, segments < 2^32), for the shared
// header and for manifests.
struct LogPosition {
  uint64_t segment = 0;
  uint64_t offset = 0;

  friend constexpr auto operator<=>(const LogPosition&, const LogPosition&) = default;
  constexpr uint64_t Packed() const { return segment << 32 | (offset & 0xffffffffu); }
  static constexpr LogPosition Unpack(uint64_t packed) { return {packed >> 32, packed & 0xffffffffu}; }
};

// ---- shared headers ---------------------------------------------------------------------
// Both are shared memory between processes of different builds (daemon, job): fixed
// offsets, explicit padding, fields only ever appended into the reserved space, fields
// that change at run time only accessed through Atomic() (they are plain integers so that
// the layout is the same in any compiler and language).

// The control file: the fields that must not move when the log rolls over to a new segment.
struct ControlBlock {
  // Written once when the log is created.
  char magic[8];                // 0
  uint32_t format_version;      // 8
  uint32_t min_reader_version;  // 12
  uint32_t segment_size;        // 16  bytes of every segment file
  uint32_t durability;          // 20  DurabilityMode
  uint32_t group_interval_ms;   // 24
  uint32_t reserved0;           // 28
  uint64_t create_checksum;     // 32  XXH3-64 of bytes [0, 32)
  uint8_t pad0[24];             // 40
  // Changed at run time (atomics). Each written by one side.
  uint64_t incarnation;         // 64  daemon: bumped before a restored job runs
  uint64_t snapshot_requests;   // 72  job: +1 asks the daemon for a snapshot
  uint64_t snapshots_taken;     // 80  daemon: +1 after each snapshot
  uint32_t stopped;             // 88  StopReason; once non-zero every append fails
  int32_t stop_errno;           // 92  errno of the failure that stopped the log
  uint64_t durable_upto;        // 96  packed LogPosition: committed records below are on disk
  uint8_t pad1[24];             // 104
  uint64_t active_segment;      // 128 newest segment (writers roll to at least this one)
  uint8_t pad2[56];             // 136
  // Written by the job's library, read by the daemon for `lazarus status`.
  uint64_t replay_total;        // 192 records in the job's current replay index
  uint64_t replay_pending;      // 200 of them not replayed yet (0: the job runs live)
  uint64_t effects_replayed;    // 208 answered from the log since the process began recording
  uint64_t effects_in_doubt;    // 216 found in doubt (INTENT without RESULT)
  uint8_t reserved[kControlSize - 224];  // 224: room for appended fields
};
static_assert(offsetof(ControlBlock, segment_size) == 16);
static_assert(offsetof(ControlBlock, create_checksum) == 32);
static_assert(offsetof(ControlBlock, incarnation) == 64);
static_assert(offsetof(ControlBlock, snapshot_requests) == 72);
static_assert(offsetof(ControlBlock, snapshots_taken) == 80);
static_assert(offsetof(ControlBlock, stopped) == 88);
static_assert(offsetof(ControlBlock, stop_errno) == 92);
static_assert(offsetof(ControlBlock, durable_upto) == 96);
static_assert(offsetof(ControlBlock, active_segment) == 128);
static_assert(offsetof(ControlBlock, replay_total) == 192);
static_assert(offsetof(ControlBlock, replay_pending) == 200);
static_assert(offsetof(ControlBlock, effects_replayed) == 208);
static_assert(offsetof(ControlBlock, effects_in_doubt) == 216);
static_assert(sizeof(ControlBlock) == kControlSize);

enum class StopReason : uint32_t {
  kRunning = 0,
  kSyncFailed = 1,     // an fdatasync failed: what is on disk is unknown
  kSegmentFailed = 2,  // a new segment could not be created (ENOSPC, ...)
  kCorrupt = 3,        // a writer found a frame it did not expect
  kStoppedByDaemon = 4,
};

struct SegmentHeader {
  char magic[8];                // 0
  uint32_t format_version;      // 8
  uint32_t min_reader_version;  // 12
  uint64_t segment_number;      // 16
  uint32_t segment_size;        // 24
  uint32_t header_size;         // 28  = kSegmentHeaderSize: the first record's offset
  uint64_t incarnation;         // 32  the incarnation that created the segment
  uint64_t header_checksum;     // 40  XXH3-64 of bytes [0, 40)
  uint8_t pad0[16];             // 48
  uint64_t tail;                // 64  atomic hint: first unclaimed offset (or below it)
  uint8_t pad1[56];             // 72
  uint8_t reserved[kSegmentHeaderSize - 128];  // 128: room for appended fields
};
static_assert(offsetof(SegmentHeader, segment_number) == 16);
static_assert(offsetof(SegmentHeader, header_checksum) == 40);
static_assert(offsetof(SegmentHeader, tail) == 64);
static_assert(sizeof(SegmentHeader) == kSegmentHeaderSize);

inline constexpr size_t kControlChecksummed = offsetof(ControlBlock, create_checksum);
inline constexpr size_t kSegmentChecksummed = offsetof(SegmentHeader, header_checksum);

template <typename T>
inline std::atomic_ref<T> Atomic(T& field) {
  static_assert(std::atomic_ref<T>::is_always_lock_free, "shared-memory fields must be lock-free");
  return std::atomic_ref<T>(field);
}

inline std::atomic_ref<uint64_t> FrameAt(uint8_t* segment_base, uint32_t offset) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(segment_base + offset));
}

}  // namespace lazarus::effectlog
