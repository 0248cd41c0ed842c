// ChunkStore::Verify: every chunk the listed snapshots need, read back and checked (its MAC
// under the daemon's key, the MAC each manifest recorded, its content against its id); the
// report names each bad chunk and every snapshot that needs it.
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
  // The MAC each snapshot recorded for the chunk (almost always one for all).
  std::vector<std::pair<Mac, SnapshotKey>> macs;
};

// The outcome for one chunk.
struct Checked {
  Status status;               // the file itself: missing, damaged, not authenticated
  std::vector<SnapshotKey> replaced_for;  // intact, but not the file these snapshots recorded
  uint64_t bytes = 0;
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
        std::unordered_map<ChunkId, ChunkUse, ChunkIdHash> chunks;
        Status st = NeededChunks(*m, &chunks);
        if (!st.ok()) {
          report.bad_manifests.push_back(ManifestPath(job, id) + ": " + st.message());
          continue;
        }
        ++report.snapshots_checked;
        for (const auto& [chunk, use] : chunks) {
          Need& need = needs[chunk];
          if (use.raw_size != 0) need.raw_size = use.raw_size;
          need.snapshots.push_back({job, id});
          for (const Mac& mac : use.macs) need.macs.push_back({mac, {job, id}});
        }
      }
    }
    std::vector<std::pair<const ChunkId*, Need*>> list;
    for (auto& [id, need] : needs) list.push_back({&id, &need});
    std::vector<Checked> results(list.size());
    const unsigned threads = ResolveIoThreads(options.threads);
    std::vector<ChunkDecoder> decoders;
    decoders.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) decoders.emplace_back(key_);
    std::vector<std::vector<uint8_t>> buffers(threads);
    (void)ParallelFor(list.size(), threads, [&](size_t i, unsigned w) {
      const ChunkId& id = *list[i].first;
      const Need& need = *list[i].second;
      Checked& out = results[i];
      // Authenticated under the key (before it is decompressed), then the content.
      out.status = decoders[w].Read(chunks_fd_.get(), ChunkRelPath(id), id, nullptr, &buffers[w]);
      if (out.status.ok() && need.raw_size != 0 && buffers[w].size() != need.raw_size)
        out.status = Status(Code::kDataLoss, "chunk " + id.Hex() + ": holds " + std::to_string(buffers[w].size()) +
                                                 " bytes, manifests say " + std::to_string(need.raw_size));
      if (!out.status.ok()) return;
      out.bytes = buffers[w].size();
      for (const auto& [mac, snapshot] : need.macs)
        if (!MacEqual(mac, decoders[w].mac())) out.replaced_for.push_back(snapshot);
    });
    std::set<SnapshotKey> damaged;
    for (size_t i = 0; i < list.size(); ++i) {
      ++report.chunks_checked;
      const Checked& result = results[i];
      if (result.status.ok() && result.replaced_for.empty()) {
        report.bytes_checked += result.bytes;
        continue;
      }
      BadChunk bad;
      bad.id = *list[i].first;
      if (!result.status.ok()) {
        bad.problem = result.status.message();
        bad.needed_by = list[i].second->snapshots;
      } else {
        // An intact chunk this daemon wrote, but not the file those snapshots were taken
        // with (rewritten since, e.g. after a quarantine): they cannot trust it.
        report.bytes_checked += result.bytes;
        bad.file_damaged = false;
        bad.problem = "chunk " + bad.id.Hex() +
                      " is not the file the snapshot was taken with (its MAC differs from the one the manifest "
                      "recorded: replaced since)";
        bad.needed_by = result.replaced_for;
      }
      std::sort(bad.needed_by.begin(), bad.needed_by.end());
      bad.needed_by.erase(std::unique(bad.needed_by.begin(), bad.needed_by.end()), bad.needed_by.end());
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
      // A chunk that is intact but differs from what some manifests recorded stays: others
      // need it as it is, and writing the same content again would not bring those back.
      if (!bad.file_damaged) continue;
      const std::string to = quarantine + bad.id.Hex();
      if (::renameat(chunks_fd_.get(), ChunkRelPath(bad.id).c_str(), AT_FDCWD, to.c_str()) == 0) ++report.quarantined;
    }
  }
  return report;
}

}  // namespace lazarus::store
