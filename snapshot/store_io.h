// Small I/O helpers of the snapshot store: whole reads and writes that retry EINTR and say
// what they were doing, and the store's wording for a full file system.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace lazarus::store {

// "<what>: <strerror>", prefixed with "out of space: " for ENOSPC and EDQUOT so that the
// cause reads first.
Status IoError(const std::string& what, int err);

Status WriteAll(int fd, const void* data, size_t size, const std::string& what);
Status PwriteAll(int fd, const void* data, size_t size, off_t offset, const std::string& what);

// Reads the whole file at dir_fd/rel_path into `out`, refusing files above max_bytes
// (kDataLoss: a store file that large is damaged).
Status ReadWholeFile(int dir_fd, const std::string& rel_path, size_t max_bytes, std::vector<uint8_t>* out);

}  // namespace lazarus::store
