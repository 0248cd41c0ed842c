// Regular files a job holds open. CRIU records each one's size at dump and refuses to
// restore when it changed, which every job that writes a file would trip over. So the
// daemon notes path, flags and offset while the tree is frozen, and the restorer opens
// the files itself and hands them to CRIU (inherit-fd), which then skips the check.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "daemon/records.pb.h"

namespace lazarus::snapshot {

// Call while the tree under `root` is frozen (CRIU's post-dump notification): offsets
// then are those of the image. Paths under /proc, /sys and /dev, deleted files, and a
// path open with different flags or offsets in several places are left to CRIU.
std::vector<records::OpenFile> CollectOpenRegularFiles(pid_t root);

struct InheritedFile {
  std::string key;  // CRIU's name for the file: its path without the leading '/'
  UniqueFd fd;
};

// Opens every file of `files` with its flags at its offset. `redirect` maps a path at dump
// time to the path to open instead (a clone's stdout goes to its own job directory).
StatusOr<std::vector<InheritedFile>> ReopenForRestore(
    const google::protobuf::RepeatedPtrField<records::OpenFile>& files,
    const std::map<std::string, std::string>& redirect);

}  // namespace lazarus::snapshot
