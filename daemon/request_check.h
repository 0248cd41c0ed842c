// Checks every API request before the daemon acts on it: sizes, counts and the shape of
// each field. A request that fails gets one clear error and changes nothing.
#pragma once

#include "common/status.h"
#include "daemon/api.pb.h"

namespace lazarus {

inline constexpr size_t kMaxArgs = 4096;
inline constexpr size_t kMaxArgBytes = 128 * 1024;
inline constexpr size_t kMaxEnvEntries = 4096;
inline constexpr size_t kMaxNameBytes = 64;
inline constexpr size_t kMaxPathBytes = 4096;

Status CheckRequest(const api::Request& request);

}  // namespace lazarus
