// File-system helpers with the durability rules of the project: a record becomes visible
// only whole (write a temporary, fsync, rename, fsync the directory).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace lazarus {

// Replaces `path` with `data` atomically and durably: readers see the old or the new
// content, never a mix, and after return the new content survives a power cut.
Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0600);

// Reads a whole file; fails with kInvalidArgument when it is larger than max_bytes.
StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = 64u << 20);

// mkdir -p with `mode` for the directories it creates.
Status MakeDirs(const std::string& path, mode_t mode = 0700);

// rm -rf; a missing path is not an error.
Status RemoveTree(const std::string& path);

Status FsyncPath(const std::string& path);
// fsyncs every file and directory under `root`, then `root` itself.
Status FsyncTree(const std::string& root);

// Bytes of all regular files under `root`.
uint64_t TreeSize(const std::string& root);

std::string Dirname(const std::string& path);

}  // namespace lazarus
