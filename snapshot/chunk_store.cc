// ChunkStore: opening the layout, commit, listing and deletion. Ingest, materialize,
// verify and GC live in store_*.cc.
#include "snapshot/chunk_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <filesystem>

#include "common/fs_util.h"
#include "common/record_file.h"
#include "snapshot/manifest_file.h"
#include "snapshot/store_internal.h"
#include "snapshot/store_io.h"

namespace lazarus::store {
namespace fs = std::filesystem;
using namespace internal;

namespace {

std::atomic<CrashPointHook> g_crash_hook{nullptr};

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "12.manifest" -> 12
std::optional<uint32_t> ParseManifestName(const std::string& name) {
  const std::string suffix = kManifestSuffix;
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  const std::string digits = name.substr(0, name.size() - suffix.size());
  if (digits.empty() || digits.size() > 10 || digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const uint64_t v = std::stoull(digits);
  if (v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(v);
}

}  // namespace

namespace internal {

std::string ChunkRelPath(const ChunkId& id) {
  const std::string hex = id.Hex();
  return hex.substr(0, 2) + "/" + hex;
}

Status CheckJobId(const std::string& job_id) {
  const bool ok = !job_id.empty() && job_id.size() <= 128 && job_id != "." && job_id != ".." &&
                  std::all_of(job_id.begin(), job_id.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                           c == '_' || c == '-';
                  });
  if (!ok) return Status(Code::kInvalidArgument, "bad job id \"" + job_id + "\" for the snapshot store");
  return Status::Ok();
}

void CrashPoint(const char* point) {
  if (CrashPointHook hook = g_crash_hook.load(std::memory_order_relaxed)) hook(point);
}

Status NeededChunks(const Manifest& manifest, std::unordered_map<ChunkId, ChunkUse, ChunkIdHash>* out) {
  auto bad = [&](const std::string& what) {
    return Status(Code::kDataLoss, "manifest " + KeyName(manifest.job_id(), manifest.snapshot_id()) + ": " + what);
  };
  auto use = [&](const ChunkId& id, std::string_view mac, uint32_t raw_size) -> Status {
    if (mac.size() != kMacBytes) return bad("chunk " + id.Hex() + " without a MAC");
    ChunkUse& u = (*out)[id];
    if (raw_size != 0) u.raw_size = raw_size;
    Mac m;
    std::memcpy(m.data(), mac.data(), kMacBytes);
    if (std::find(u.macs.begin(), u.macs.end(), m) == u.macs.end()) u.macs.push_back(m);
    return Status::Ok();
  };
  std::unordered_map<ChunkId, std::string_view, ChunkIdHash> patch_macs;
  for (const auto& patch : manifest.patch_chunks()) {
    auto id = ChunkId::FromBytes(patch.id());
    if (!id) return bad("patch chunk without an id");
    LAZARUS_RETURN_IF_ERROR(use(*id, patch.mac(), patch.raw_size()));
    patch_macs.emplace(*id, patch.mac());
  }
  for (const auto& file : manifest.files()) {
    for (const auto& piece : file.pieces()) {
      if (!piece.has_patch()) {
        auto id = ChunkId::FromBytes(piece.id());
        if (!id) return bad("piece of " + file.name() + " without a chunk id");
        LAZARUS_RETURN_IF_ERROR(use(*id, piece.mac(), piece.size()));
        continue;
      }
      auto base = ChunkId::FromBytes(piece.patch().base());
      if (!base) return bad("patched piece of " + file.name() + " without a base chunk id");
      LAZARUS_RETURN_IF_ERROR(use(*base, piece.patch().base_mac(), 0));
      if (piece.patch().page_mask() == 0) continue;  // nothing replaced: no patch chunk
      auto chunk = ChunkId::FromBytes(piece.patch().chunk());
      if (!chunk) return bad("patched piece of " + file.name() + " without a patch chunk id");
      if (!patch_macs.count(*chunk)) return bad("patch chunk " + chunk->Hex() + " is not listed");
    }
  }
  return Status::Ok();
}

std::string KeyName(const std::string& job_id, uint32_t snapshot_id) { return job_id + "/" + std::to_string(snapshot_id); }

}  // namespace internal

void SetCrashPointHookForTesting(CrashPointHook hook) { g_crash_hook.store(hook); }

std::string ChunkStore::DefaultKeyPath(const std::string& root) {
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return Dirname(r) + "/secret.key";
}

namespace {

// What of the store a new key would orphan: "N snapshots and M chunks", or "" when nothing.
std::string StoreContents(const std::string& root) {
  size_t manifests = 0, chunks = 0;
  std::error_code ec;
  for (const auto& job : fs::directory_iterator(root + "/" + kManifestsDir, ec)) {
    std::error_code ec2;
    for (const auto& entry : fs::directory_iterator(job.path(), ec2))
      if (ParseManifestName(entry.path().filename().string())) ++manifests;
  }
  for (const auto& sub : fs::directory_iterator(root + "/" + kChunksDir, ec)) {
    std::error_code ec2;
    for (auto it = fs::directory_iterator(sub.path(), ec2); !ec2 && it != fs::directory_iterator(); it.increment(ec2))
      ++chunks;
  }
  if (manifests == 0 && chunks == 0) return "";
  return std::to_string(manifests) + " snapshots and " + std::to_string(chunks) + " chunk files";
}

}  // namespace

StatusOr<ChunkStore> ChunkStore::Open(const std::string& root, const std::string& key_path_arg) {
  const std::string key_path = key_path_arg.empty() ? DefaultKeyPath(root) : key_path_arg;
  LAZARUS_RETURN_IF_ERROR(MakeDirs(root, 0700));
  for (const char* dir : {kChunksDir, kManifestsDir, kLeasesDir, kTmpDir, kQuarantineDir}) {
    const std::string path = root + "/" + dir;
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return IoError("mkdir " + path, errno);
  }
  // All 256 fan-out directories up front: GC never removes them, so an ingest never races
  // a rmdir when it renames a chunk into place.
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) {
    const std::string path = root + "/" + kChunksDir + "/" + kHex[i >> 4] + kHex[i & 15];
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return IoError("mkdir " + path, errno);
  }
  const std::string format_path = root + "/" + kFormatFile;
  StoreInfo info;
  Status read = ReadRecordFile(format_path, &info);
  if (read.code() == Code::kNotFound) {
    info.set_format(kStoreFormat);
    info.set_created_unix_ms(NowUnixMs());
    // The directories first, then FORMAT: a store with a FORMAT file is complete.
    LAZARUS_RETURN_IF_ERROR(FsyncTree(root + "/" + kChunksDir));
    LAZARUS_RETURN_IF_ERROR(FsyncPath(root));
    LAZARUS_RETURN_IF_ERROR(WriteRecordFile(format_path, info).Context("create snapshot store " + root));
  } else if (!read.ok()) {
    return read.Context("open snapshot store " + root);
  } else if (info.format() != kStoreFormat) {
    return Status(Code::kFailedPrecondition, "snapshot store " + root + " has format " + std::to_string(info.format()) +
                                                 ", this build reads format " + std::to_string(kStoreFormat));
  }
  auto key = StoreKey::Read(key_path);
  if (key.status().code() == Code::kNotFound) {
    // Made only while nothing in the store was authenticated with a lost one.
    if (const std::string contents = StoreContents(root); !contents.empty())
      return Status(Code::kFailedPrecondition,
                    "snapshot store " + root + " holds " + contents + " but its key " + key_path +
                        " is missing: without that key none of them can be restored, and a new key would not "
                        "authenticate them. Put the key file back (32 bytes, mode 0600), or move the store aside "
                        "to start an empty one");
    key = StoreKey::Create(key_path);
  }
  if (!key.ok()) return key.status().Context("open snapshot store " + root);
  ChunkStore store(root, std::move(key).value());
  const std::string chunks = root + "/" + kChunksDir;
  store.chunks_fd_ = UniqueFd(::open(chunks.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!store.chunks_fd_) return ErrnoStatus("open " + chunks);
  return store;
}

StatusOr<StoreLock> ChunkStore::Lock(StoreLock::Mode mode, bool wait) const {
  return StoreLock::Acquire(root_ + "/" + kLockFile, mode, wait);
}

std::string ChunkStore::ChunkPath(const ChunkId& id) const { return root_ + "/" + kChunksDir + "/" + ChunkRelPath(id); }

std::string ChunkStore::ManifestPath(const std::string& job_id, uint32_t snapshot_id) const {
  return root_ + "/" + kManifestsDir + "/" + job_id + "/" + std::to_string(snapshot_id) + kManifestSuffix;
}

Status ChunkStore::Commit(const std::string& job_id, uint32_t snapshot_id, PendingSnapshot pending) const {
  LAZARUS_RETURN_IF_ERROR(CheckJobId(job_id));
  const std::string what = "commit snapshot " + KeyName(job_id, snapshot_id);
  if (!pending.lease_.held()) return Status(Code::kFailedPrecondition, what + ": the ingest was already consumed");
  Manifest& m = pending.manifest_;
  m.set_format(kManifestFormat);
  m.set_job_id(job_id);
  m.set_snapshot_id(snapshot_id);
  if (m.created_unix_ms() == 0) m.set_created_unix_ms(NowUnixMs());
  // Never write what Load would refuse: read back what would be written (this also catches
  // string fields that are not UTF-8, which protobuf serializes but refuses to parse).
  auto encoded = EncodeManifestFile(m, key_);
  if (!encoded.ok()) return encoded.status().Context(what);
  {
    Manifest back;
    Status readable = DecodeManifestFile(*encoded, ManifestPath(job_id, snapshot_id), key_, job_id, snapshot_id, &back);
    if (!readable.ok())
      return Status(Code::kInvalidArgument, what + ": the manifest would not read back: " + readable.message());
  }

  const std::string job_dir = root_ + "/" + kManifestsDir + "/" + job_id;
  const std::string path = ManifestPath(job_id, snapshot_id);
  // Shared: GC (exclusive) never runs between our barrier and the manifest's rename, and
  // never removes our manifest's temporary file.
  auto lock = Lock(StoreLock::Mode::kShared);
  if (!lock.ok()) return lock.status().Context(what);
  if (::access(path.c_str(), F_OK) == 0) return Status(Code::kAlreadyExists, what + ": it exists");
  if (::mkdir(job_dir.c_str(), 0700) != 0 && errno != EEXIST) return IoError(what + ": mkdir " + job_dir, errno);
  CrashPoint("commit.begin");
  // The barrier: every chunk this manifest names is durable under its final name (ours were
  // synced before their rename; this also covers the renames, the job directory, and chunks
  // a concurrent ingest renamed into place that we deduplicated against).
  if (::syncfs(chunks_fd_.get()) != 0) return IoError(what + ": syncfs " + root_, errno);
  CrashPoint("commit.synced");
  // Written to ID.manifest.tmp, fsynced, renamed, directory fsynced: visible only whole.
  Status written = WriteFileAtomic(path, *encoded);
  if (!written.ok()) {
    ::unlink((path + ".tmp").c_str());
    if (written.message().find(std::strerror(ENOSPC)) != std::string::npos ||
        written.message().find(std::strerror(EDQUOT)) != std::string::npos)
      return Status(written.code(), what + ": out of space: " + written.message());
    return written.Context(what);
  }
  CrashPoint("commit.visible");
  pending.lease_.Release();  // the manifest protects the chunks from now on
  CrashPoint("commit.released");
  return Status::Ok();
}

std::vector<uint32_t> ChunkStore::ListIds(const std::string& job_id) const {
  std::vector<uint32_t> out;
  if (!CheckJobId(job_id).ok()) return out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ + "/" + kManifestsDir + "/" + job_id, ec))
    if (auto id = ParseManifestName(entry.path().filename().string())) out.push_back(*id);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> ChunkStore::ListJobs() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ + "/" + kManifestsDir, ec))
    if (entry.is_directory(ec) && CheckJobId(entry.path().filename().string()).ok())
      out.push_back(entry.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

StatusOr<Manifest> ChunkStore::Load(const std::string& job_id, uint32_t snapshot_id) const {
  LAZARUS_RETURN_IF_ERROR(CheckJobId(job_id));
  const std::string path = ManifestPath(job_id, snapshot_id);
  auto bytes = ReadFile(path, kRecordHeaderBytes + kMaxRecordPayloadBytes);
  if (bytes.status().code() == Code::kNotFound)
    return Status(Code::kNotFound, "no snapshot " + KeyName(job_id, snapshot_id) + " in the store");
  if (!bytes.ok()) {
    // Too large is damage (the reader's limit), like in ReadRecordFile.
    const Code code = bytes.status().code() == Code::kInvalidArgument ? Code::kDataLoss : bytes.status().code();
    return Status(code, "snapshot " + KeyName(job_id, snapshot_id) + ": " + bytes.status().message());
  }
  Manifest m;
  LAZARUS_RETURN_IF_ERROR(DecodeManifestFile(*bytes, path, key_, job_id, snapshot_id, &m));
  return m;
}

std::vector<SnapshotSummary> ChunkStore::List(const std::string& job_id, std::vector<std::string>* errors) const {
  std::vector<SnapshotSummary> out;
  for (uint32_t id : ListIds(job_id)) {
    auto m = Load(job_id, id);
    if (!m.ok()) {
      if (m.status().code() != Code::kNotFound && errors) errors->push_back(m.status().message());
      continue;
    }
    SnapshotSummary s;
    s.job_id = job_id;
    s.snapshot_id = id;
    s.created_unix_ms = m->created_unix_ms();
    s.raw_bytes = m->sizes().raw_bytes();
    s.new_stored_bytes = m->sizes().new_stored_bytes();
    s.pieces = m->sizes().pieces();
    out.push_back(std::move(s));
  }
  return out;
}

Status ChunkStore::Delete(const std::string& job_id, uint32_t snapshot_id) const {
  LAZARUS_RETURN_IF_ERROR(CheckJobId(job_id));
  const std::string path = ManifestPath(job_id, snapshot_id);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return Status(Code::kNotFound, "no snapshot " + KeyName(job_id, snapshot_id) + " in the store");
    return ErrnoStatus("delete " + path);
  }
  return FsyncPath(Dirname(path));
}

Status ChunkStore::DeleteJob(const std::string& job_id) const {
  LAZARUS_RETURN_IF_ERROR(CheckJobId(job_id));
  for (uint32_t id : ListIds(job_id)) {
    Status st = Delete(job_id, id);
    if (!st.ok() && st.code() != Code::kNotFound) return st;
  }
  const std::string dir = root_ + "/" + kManifestsDir + "/" + job_id;
  LAZARUS_RETURN_IF_ERROR(RemoveTree(dir));
  return FsyncPath(root_ + "/" + kManifestsDir);
}

}  // namespace lazarus::store
