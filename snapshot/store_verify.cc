// ChunkStore::Verify: every chunk the listed snapshots need, read back and checked against
// its id; the report names each bad chunk and every snapshot that needs it.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>

#include "snapshot/chunk_file.h"
#include "snapshot/chunk_store.h"
#include "snapshot/parallel.h"
#include "snapshot/store_internal.h"

namespace lazarus::store {
using namespace internal;

namespace {

struct Need {
  uint32_t raw_size = 0;  // 0 when the manifest does not say
  std::vector<SnapshotKey> snapshots;
};

}  // namespace

StatusOr<VerifyReport> ChunkStore::Verify(const VerifyOptions& options) const {
  VerifyReport report;
  std::vector<std::string> jobs;
  if (options.job) {
    LAZARUS_RETURN_IF_ERROR(CheckJobId(*options.job));
    jobs.push_back(*options.job);
  } else {
    jobs = ListJobs();
  }
  {
    // Shared: GC cannot remove chunks of the snapshots we are checking.
    auto lock = Lock(StoreLock::Mode::kShared);
    if (!lock.ok()) return lock.status().Context("verify");
    std::map<ChunkId, Need> needs;
    for (const auto& job : jobs) {
      for (uint32_t id : ListIds(job)) {
        auto m = Load(job, id);
        if (!m.ok()) {
          if (m.status().code() != Code::kNotFound)
            report.bad_manifests.push_back(ManifestPath(job, id) + ": " + m.status().message());
          continue;
        }
        std::unordered_map<ChunkId, uint32_t, ChunkIdHash> chunks;
        Status st = NeededChunks(*m, &chunks);
        if (!st.ok()) {
          report.bad_manifests.push_back(ManifestPath(job, id) + ": " + st.message());
          continue;
        }
        ++report.snapshots_checked;
        for (const auto& [chunk, raw] : chunks) {
          Need& need = needs[chunk];
          if (raw != 0) need.raw_size = raw;
          need.snapshots.push_back({job, id});
        }
      }
    }
    std::vector<std::pair<const ChunkId*, Need*>> list;
    for (auto& [id, need] : needs) list.push_back({&id, &need});
    std::vector<Status> results(list.size());
    std::vector<uint64_t> bytes(list.size(), 0);
    const unsigned threads = ResolveIoThreads(options.threads);
    std::vector<ChunkDecoder> decoders(threads);
    std::vector<std::vector<uint8_t>> buffers(threads);
    (void)ParallelFor(list.size(), threads, [&](size_t i, unsigned w) {
      const ChunkId& id = *list[i].first;
      Status st = decoders[w].Read(chunks_fd_.get(), ChunkRelPath(id), id, &buffers[w]);
      if (st.ok() && list[i].second->raw_size != 0 && buffers[w].size() != list[i].second->raw_size)
        st = Status(Code::kDataLoss, "chunk " + id.Hex() + ": holds " + std::to_string(buffers[w].size()) +
                                         " bytes, manifests say " + std::to_string(list[i].second->raw_size));
      bytes[i] = buffers[w].size();
      results[i] = std::move(st);
    });
    std::set<SnapshotKey> damaged;
    for (size_t i = 0; i < list.size(); ++i) {
      ++report.chunks_checked;
      if (results[i].ok()) {
        report.bytes_checked += bytes[i];
        continue;
      }
      BadChunk bad;
      bad.id = *list[i].first;
      bad.problem = results[i].message();
      bad.needed_by = list[i].second->snapshots;
      std::sort(bad.needed_by.begin(), bad.needed_by.end());
      damaged.insert(bad.needed_by.begin(), bad.needed_by.end());
      report.bad_chunks.push_back(std::move(bad));
    }
    report.damaged_snapshots.assign(damaged.begin(), damaged.end());
  }
  if (options.quarantine && !report.bad_chunks.empty()) {
    // Exclusive: no ingest may be between "this chunk exists" and pinning it while it moves.
    auto lock = Lock(StoreLock::Mode::kExclusive);
    if (!lock.ok()) return lock.status().Context("verify: quarantine");
    const std::string quarantine = root_ + "/" + kQuarantineDir + "/";
    for (const auto& bad : report.bad_chunks) {
      const std::string to = quarantine + bad.id.Hex();
      if (::renameat(chunks_fd_.get(), ChunkRelPath(bad.id).c_str(), AT_FDCWD, to.c_str()) == 0) ++report.quarantined;
    }
  }
  return report;
}

}  // namespace lazarus::store
