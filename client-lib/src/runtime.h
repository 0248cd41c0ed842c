// liblazarus's process state, shared by its own source files (not by the shim).
#pragma once

#include <limits.h>

#include <atomic>
#include <cstdint>

#include "client-lib/src/engine.h"
#include "effectlog/writer.h"

namespace lazarus::client {

inline constexpr uint32_t kMaxChannels = 1u << 18;  // threads one process may ever use
inline constexpr int kMaxRestoreHooks = 16;
inline constexpr int kMaxKindNames = 256;

struct RestoreHook {
  void (*fn)(void*, uint64_t);
  void* arg;
};

struct KindName {
  uint32_t kind;
  char name[52];
};

// Set up once by the constructor (Init), before main; read-only afterwards except where
// marked atomic.
struct Runtime {
  effectlog::Writer* writer = nullptr;  // never destroyed: threads may append until exit
  char log_dir[PATH_MAX] = {};
  char job[128] = {};
  uint32_t image = 0;  // programs exec'd before this one in this process
  int fd_base = 0;     // the library's descriptors are at or above this number
  bool verbose = false;

  Channel* channels = nullptr;  // kMaxChannels, mapped at Init
  std::atomic<uint32_t> next_slot{0};
  std::atomic<uint32_t> next_ordinal{0};

  ShimPlugin shim;

  RestoreHook hooks[kMaxRestoreHooks] = {};
  std::atomic<int> hook_count{0};

  KindName kind_names[kMaxKindNames] = {};
  std::atomic<int> kind_name_count{0};
};

extern Runtime g_runtime;

// Builds the replay index when the control block's incarnation differs from the one this
// memory last saw, and runs the restore hooks. Cheap when nothing changed.
void SlowSyncIncarnation() noexcept;
inline void SyncIncarnation() noexcept {
  const uint64_t now = effectlog::Atomic(g_lazarus.control->incarnation).load(std::memory_order_acquire);
  if (now != g_lazarus.seen_incarnation.load(std::memory_order_acquire)) SlowSyncIncarnation();
}

// A kind's name for reports ("send", "ledger.add"), or null.
const char* KindNameOf(uint32_t kind) noexcept;

// Claims a channel slot with the given id for the calling thread.
Channel* AttachThreadChannel(uint32_t id) noexcept;

// Writes to stderr without going through the shim and without allocating.
void WriteStderr(const char* text) noexcept;

}  // namespace lazarus::client
