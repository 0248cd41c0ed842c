// The replay engine: the internal interface between liblazarus.so, which owns it, and the
// LD_PRELOAD shim (liblazarus-preload.so), which links against liblazarus.so and calls it
// for every intercepted call. Not installed; both libraries are built from the same tree
// and installed together, so this interface has no version of its own.
//
// The effect protocol (DESIGN.md, "Replay"). Every record of a thread's channel has its own
// sequence number, from 0, without gaps:
//
//   output effect (explicit effects; shim writes, sends, connect):
//       INTENT  seq s     kind, request digest, a short request summary
//       RESULT  seq s+1   kind, request digest, the result
//   input effect (shim reads, clocks, randomness, accept, readiness):
//       RESULT  seq s     kind, request digest, the result
//
// The effect's idempotency key is (job, channel, s). Live, a call is: sync the incarnation;
// [append INTENT]; perform; append RESULT. After a restore, the same call finds its records
// in the replay index instead: a RESULT whose kind and digest match is returned without
// performing; a mismatch is a divergence (the job stops); an INTENT without RESULT is in
// doubt and follows the effect's policy. A thread whose records are used up goes live.
//
// A snapshot may freeze a thread anywhere in that sequence, so every step re-checks the
// incarnation: a thread restored after its INTENT, or while performing, looks up its RESULT
// before appending one and uses the logged one when a previous incarnation recorded it
// (that result is what the rest of the log was produced from). A thread restored between
// its check and its append may append a second record with a sequence the log already
// holds: readers take the first occurrence in log order, and the appender, seeing the
// incarnation changed, uses that first occurrence too.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "effectlog/format.h"
#include "effectlog/writer.h"

#define LAZARUS_INTERNAL __attribute__((visibility("default")))

namespace lazarus::client {

using effectlog::Digest128;
using effectlog::PayloadPiece;

// Effect kinds from here on are the shim's (kShimKindBase + the call's id in calls.def).
inline constexpr uint32_t kShimKindBase = 0x80000000u;
// Channel numbers: automatic ordinals are kImageChannelStride * image + ordinal, where
// image counts the programs a process exec'd into (0 for the first); channels a program
// names itself (lazarus_thread_set_channel) are kUserChannelBase + its number.
inline constexpr uint32_t kImageChannelStride = 0x100000u;
inline constexpr uint32_t kMaxImages = 0x3ff;
inline constexpr uint32_t kUserChannelBase = 0x40000000u;

enum class Policy : uint8_t {
  kAtMostOnce = 0,   // in doubt: the effect is answered "interrupted" (and that is recorded)
  kAtLeastOnce = 1,  // in doubt: performed again
  kFail = 2,         // in doubt: the job stops with a report
};

struct ChannelReplay;

// One thread's channel. Written by its own thread only; the replay index builder reads
// next_seq (atomically) while the thread may be stopped anywhere.
struct Channel {
  uint32_t id;
  uint32_t pad;
  uint64_t next_seq;  // the sequence of this channel's next record
  // Replay cursor: which index it refers to, and where in it this channel is.
  uint64_t generation;
  const ChannelReplay* replay;
  size_t cursor;
};

// Per-thread state, all zero at thread start (static TLS: no constructor, no allocation).
struct ThreadState {
  Channel* channel;  // null until the thread's first effect
  uint32_t guard;    // > 0 while inside Lazarus or inside an explicit effect: hooks pass through
  uint32_t nested;   // effects nested in the current explicit effect (for their keys)
};

enum Mode : uint32_t {
  kInert = 0,   // no log (not under Lazarus, a forked child, a Lazarus helper): calls pass through
  kActive = 1,  // effects are recorded and replayed
};

struct Counters {
  std::atomic<uint64_t> performed{0};
  std::atomic<uint64_t> replayed{0};
  std::atomic<uint64_t> in_doubt{0};
  std::atomic<uint64_t> unrecorded{0};
  std::atomic<int64_t> replay_pending{0};  // records of the current index not consumed yet
};

// The process-wide state the hooks read on every call.
struct Globals {
  std::atomic<uint32_t> mode{kInert};
  effectlog::ControlBlock* control = nullptr;      // shared with the daemon (active only)
  std::atomic<uint64_t> seen_incarnation{0};       // the incarnation this memory last synced with
  Counters counters;
};

LAZARUS_INTERNAL extern Globals g_lazarus;
LAZARUS_INTERNAL extern __thread ThreadState t_lazarus __attribute__((tls_model("initial-exec")));

inline bool IsActive() { return g_lazarus.mode.load(std::memory_order_relaxed) == kActive; }

// Marks the calling thread as inside Lazarus for its lifetime: intercepted calls made
// meanwhile (the library's own log I/O, a perform function's libc calls) pass through.
class ScopedGuard {
 public:
  ScopedGuard() { ++t_lazarus.guard; }
  ~ScopedGuard() { --t_lazarus.guard; }
  ScopedGuard(const ScopedGuard&) = delete;
  ScopedGuard& operator=(const ScopedGuard&) = delete;
};

// ---- effects ----------------------------------------------------------------------------
struct EffectSpec {
  uint32_t kind = 0;
  Digest128 digest{};
  bool output = false;  // INTENT before performing (output effects)
  Policy policy = Policy::kAtMostOnce;
  // INTENT payload: a short summary of the request (divergence reports, in-doubt checks).
  const PayloadPiece* summary = nullptr;
  uint32_t summary_count = 0;
  // The RESULT recorded for an in-doubt effect answered "interrupted" (kAtMostOnce).
  const void* interrupted = nullptr;
  uint32_t interrupted_size = 0;
  // What the program asked, for divergence reports (may be empty).
  const void* request = nullptr;
  uint32_t request_size = 0;
};

enum class Start : uint8_t {
  kLive,         // perform the effect now, then FinishEffect
  kReplayed,     // the log answered it: result/result_size hold the logged RESULT payload
  kInterrupted,  // in doubt, policy kAtMostOnce: "interrupted" was recorded; do not perform
  kLogFailed,    // the log cannot record: do not perform (log_error says why)
};

enum class Finish : uint8_t {
  kRecorded,   // RESULT appended
  kReplayed,   // the log already held this effect's RESULT (restored while performing): use it
  kLogFailed,  // performed, not recorded
};

// One effect in progress, on the caller's stack.
struct Effect {
  EffectSpec spec;
  Channel* channel = nullptr;
  uint64_t seq = 0;                       // its first record's sequence (its key)
  bool in_doubt = false;                  // kLive for an in-doubt effect re-performed (kAtLeastOnce)
  const uint8_t* logged_intent = nullptr;  // the INTENT payload the log holds, when it holds one
  uint32_t logged_intent_size = 0;
  const uint8_t* result = nullptr;  // kReplayed: the logged RESULT payload (valid until the next restore)
  uint32_t result_size = 0;
  effectlog::AppendCode log_error = effectlog::AppendCode::kOk;
};

// Call with the guard held. Never returns on a divergence or an in-doubt kFail effect
// (the job stops with a report).
LAZARUS_INTERNAL Start BeginEffect(Effect* e) noexcept;
// After performing (kLive): records the RESULT, given as pieces of `size` bytes in all.
LAZARUS_INTERNAL Finish FinishEffect(Effect* e, const PayloadPiece* pieces, uint32_t count, uint32_t size) noexcept;

// True while the calling thread's channel still has logged records to replay (false for a
// thread that has no channel yet: this never assigns one).
LAZARUS_INTERNAL bool ThreadIsReplaying() noexcept;

// The calling thread's channel (assigned in order of first use when it has none).
LAZARUS_INTERNAL Channel* CurrentChannel() noexcept;
// True when `fd` is one of the library's own descriptors (a segment of the job's log): the
// shim never lets the program close it (programs that close every descriptor from 3 up).
LAZARUS_INTERNAL bool IsLibraryFd(int fd) noexcept;
// The lowest descriptor number the library's own descriptors use (0 when inert).
LAZARUS_INTERNAL int LibraryFdBase() noexcept;

// The largest payload a record can hold in this log.
LAZARUS_INTERNAL uint32_t MaxPayload() noexcept;
// Writes "JOB:CHANNEL:SEQUENCE" (snprintf semantics); returns its length.
LAZARUS_INTERNAL size_t FormatKey(char* buf, size_t size, uint32_t channel, uint64_t seq) noexcept;

// Appends `data` to the NUL-terminated `out` as quoted text (printable ASCII as is, the
// rest escaped), at most `max` bytes of it.
LAZARUS_INTERNAL void AppendPreview(char* out, size_t cap, const void* data, size_t size, size_t max) noexcept;

// Stops the job: writes `report` (and the log's state) to stderr and exits with `status`.
[[noreturn]] LAZARUS_INTERNAL void StopJob(int status, const char* report) noexcept;

// ---- what the shim plugs in ---------------------------------------------------------------
struct ShimPlugin {
  // A name for a shim kind (divergence reports), or null.
  const char* (*kind_name)(uint32_t kind) = nullptr;
  // Describes a logged payload of a shim kind for a report (snprintf semantics).
  void (*describe)(uint32_t kind, uint16_t type, const uint8_t* payload, uint32_t size, char* out,
                   size_t cap) = nullptr;
  // Called for each RESULT in a new replay index (under the index lock, before any thread
  // replays it), then once with record == null when the index is complete.
  void (*observe_result)(uint32_t kind, const uint8_t* payload, uint32_t size) = nullptr;
  void (*index_built)() = nullptr;
};
LAZARUS_INTERNAL void RegisterShim(const ShimPlugin& plugin) noexcept;

}  // namespace lazarus::client
