// ChunkStore::CollectGarbage: mark and sweep under the exclusive store lock.
// Mark: every chunk a committed manifest needs, and every chunk a live lease pins. Sweep:
// every other file under chunks/, plus what crashed ingests and commits left (stale leases,
// tmp/ directories, manifest temporaries) and quarantined chunks.
// Why an ingest running concurrently never loses a chunk: STORE.md, "GC and ingest".
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "common/fs_util.h"
#include "common/unique_fd.h"
#include "snapshot/chunk_file.h"
#include "snapshot/chunk_store.h"
#include "snapshot/store_internal.h"

namespace lazarus::store {
namespace fs = std::filesystem;
using namespace internal;

StatusOr<GcReport> ChunkStore::CollectGarbage(const GcOptions& options) const {
  GcReport report;
  auto lock = Lock(StoreLock::Mode::kExclusive, options.wait);
  if (!lock.ok()) return lock.status().Context("collect garbage");
  CrashPoint("gc.locked");

  // Leases first, then manifests: an ingest that committed and released its lease before we
  // looked is then seen through its manifest. (Commits hold the shared lock anyway.)
  auto leases = ScanLeases(root_ + "/" + kLeasesDir, root_ + "/" + kTmpDir);
  if (!leases.ok()) return leases.status().Context("collect garbage");
  report.leftovers_removed += leases->stale_removed;
  std::unordered_set<ChunkId, ChunkIdHash> live = std::move(leases->pinned);

  std::error_code ec;
  for (const auto& job : ListJobs()) {
    const std::string dir = root_ + "/" + kManifestsDir + "/" + job;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.ends_with(".tmp")) {  // a commit that died before its rename
        ::unlink(entry.path().c_str());
        ++report.leftovers_removed;
      }
    }
    for (uint32_t id : ListIds(job)) {
      auto m = Load(job, id);
      if (m.status().code() == Code::kNotFound) continue;
      if (!m.ok())
        return Status(Code::kDataLoss, "collect garbage: refusing to sweep while manifest " + ManifestPath(job, id) +
                                           " is unreadable (its chunks are unknown; delete that snapshot first): " +
                                           m.status().message());
      std::unordered_map<ChunkId, ChunkUse, ChunkIdHash> chunks;
      Status st = NeededChunks(*m, &chunks);
      if (!st.ok()) return st.Context("collect garbage: refusing to sweep");
      for (const auto& [chunk, use] : chunks) live.insert(chunk);
    }
  }
  CrashPoint("gc.marked");

  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) {
    const std::string sub = {kHex[i >> 4], kHex[i & 15]};
    UniqueFd sub_fd(::openat(chunks_fd_.get(), sub.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!sub_fd) {
      if (errno == ENOENT) continue;
      return ErrnoStatus("collect garbage: open chunks/" + sub);
    }
    UniqueFd listing(::dup(sub_fd.get()));
    if (!listing) return ErrnoStatus("collect garbage: dup");
    DIR* d = ::fdopendir(listing.get());
    if (!d) return ErrnoStatus("collect garbage: list chunks/" + sub);
    (void)listing.release();  // owned by `d` now
    std::vector<std::string> doomed;
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      auto id = ChunkId::FromHex(name);
      if (id && name.compare(0, 2, sub) == 0 && live.count(*id)) {
        ++report.chunks_kept;
        continue;
      }
      doomed.push_back(name);
    }
    ::closedir(d);
    for (const auto& name : doomed) {
      struct stat st {};
      if (::fstatat(sub_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) report.bytes_removed += static_cast<uint64_t>(st.st_size);
      if (::unlinkat(sub_fd.get(), name.c_str(), 0) != 0 && errno != ENOENT)
        return ErrnoStatus("collect garbage: remove chunks/" + sub + "/" + name);
      if (report.chunks_removed++ == 0) CrashPoint("gc.removed_first");
    }
  }

  for (const auto& entry : fs::directory_iterator(root_ + "/" + kQuarantineDir, ec)) {
    (void)RemoveTree(entry.path().string());
    ++report.leftovers_removed;
  }
  return report;
}

}  // namespace lazarus::store
