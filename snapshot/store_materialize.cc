// ChunkStore::Materialize: a manifest -> CRIU's image files, every byte checked (each chunk's
// MAC under the daemon's key and against the manifest before it is decompressed, then its
// content against its id).
// Whole pieces are one chunk each; patched pieces are grouped by patch chunk so that each
// patch chunk is decompressed once per group, not once per piece.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include "common/fs_util.h"
#include "common/unique_fd.h"
#include "snapshot/chunk_file.h"
#include "snapshot/chunk_store.h"
#include "snapshot/manifest_file.h"
#include "snapshot/parallel.h"
#include "snapshot/store_internal.h"
#include "snapshot/store_io.h"

namespace lazarus::store {
using namespace internal;

namespace {

constexpr size_t kPiecesPerGroup = 64;  // patched pieces sharing one decompressed patch chunk

struct PieceRef {
  int file;
  const Piece* piece;
};

// One unit of work: a whole piece, or up to kPiecesPerGroup patched pieces of one patch chunk.
struct Task {
  std::optional<ChunkId> patch_chunk;
  std::vector<PieceRef> pieces;
};

struct Worker {
  explicit Worker(const StoreKey& key) : decoder(key) {}
  ChunkDecoder decoder;
  std::vector<uint8_t> patch;
  std::vector<uint8_t> root;
  std::vector<uint8_t> out;
};

}  // namespace

Status ChunkStore::Materialize(const Manifest& manifest, const std::string& out_dir,
                               const MaterializeOptions& options) const {
  const std::string what = "materialize snapshot " + KeyName(manifest.job_id(), manifest.snapshot_id());
  // Load validated it already; a manifest built by a caller gets the same checks.
  LAZARUS_RETURN_IF_ERROR(ValidateManifest(manifest).Context(what));
  // Patch chunks' MACs, by id (ValidateManifest made sure every one used is listed).
  std::unordered_map<ChunkId, Mac, ChunkIdHash> patch_macs;
  for (const auto& chunk : manifest.patch_chunks()) {
    Mac mac;
    std::memcpy(mac.data(), chunk.mac().data(), kMacBytes);
    patch_macs.emplace(*ChunkId::FromBytes(chunk.id()), mac);
  }
  LAZARUS_RETURN_IF_ERROR(MakeDirs(out_dir, 0700).Context(what));
  UniqueFd dir(::open(out_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoStatus(what + ": open " + out_dir);
  // Shared: GC cannot remove a chunk while we read it.
  auto lock = Lock(StoreLock::Mode::kShared);
  if (!lock.ok()) return lock.status().Context(what);

  // pwrite(2) into the files: measured faster on tmpfs than writing through shared
  // mappings (which need fallocate's zeroing and a fault per page).
  std::vector<UniqueFd> fds;
  auto remove_outputs = [&] {
    for (int i = 0; i < static_cast<int>(fds.size()); ++i) ::unlinkat(dir.get(), manifest.files(i).name().c_str(), 0);
  };
  for (const auto& file : manifest.files()) {
    const std::string path = out_dir + "/" + file.name();
    UniqueFd fd(::openat(dir.get(), file.name().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) {
      Status st = IoError(what + ": create " + path, errno);
      remove_outputs();
      return st;
    }
    fds.push_back(std::move(fd));
    if (::fchmod(fds.back().get(), file.mode() & 07777) != 0) {
      Status st = IoError(what + ": chmod " + path, errno);
      remove_outputs();
      return st;
    }
  }

  auto mac_of = [](const std::string& raw) {
    Mac mac;
    std::memcpy(mac.data(), raw.data(), kMacBytes);  // ValidateManifest checked the size
    return mac;
  };

  std::vector<Task> tasks;
  std::map<ChunkId, std::vector<PieceRef>> by_patch;
  for (int f = 0; f < manifest.files_size(); ++f) {
    for (const auto& piece : manifest.files(f).pieces()) {
      if (piece.has_patch() && piece.patch().page_mask() != 0) {
        auto chunk = ChunkId::FromBytes(piece.patch().chunk());
        if (!chunk) return Status(Code::kDataLoss, what + ": patched piece without a patch chunk id");
        by_patch[*chunk].push_back({f, &piece});
      } else {
        tasks.push_back({std::nullopt, {{f, &piece}}});
      }
    }
  }
  for (auto& [chunk, refs] : by_patch)
    for (size_t i = 0; i < refs.size(); i += kPiecesPerGroup)
      tasks.push_back({chunk, std::vector<PieceRef>(refs.begin() + static_cast<long>(i),
                                                    refs.begin() + static_cast<long>(std::min(refs.size(), i + kPiecesPerGroup)))});

  const unsigned threads = ResolveIoThreads(options.threads);
  std::vector<Worker> workers;
  workers.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) workers.emplace_back(key_);
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  Status error;
  auto fail = [&](Status st) {
    std::lock_guard<std::mutex> guard(error_mu);
    if (error.ok()) error = std::move(st);
    failed = true;
  };

  // One piece's bytes into dst (piece.size() bytes).
  auto build = [&](Worker& w, const PieceRef& ref, const std::vector<uint8_t>* patch, uint8_t* dst) -> Status {
    const Piece& piece = *ref.piece;
    const std::string where = manifest.files(ref.file).name() + " at offset " + std::to_string(piece.offset());
    if (!piece.has_patch()) {
      const ChunkId id = *ChunkId::FromBytes(piece.id());
      Status st = w.decoder.ReadInto(chunks_fd_.get(), ChunkRelPath(id), id, mac_of(piece.mac()), dst, piece.size());
      if (!st.ok()) return Status(st.code(), where + ": " + st.message());
      return Status::Ok();
    }
    const Patch& p = piece.patch();
    auto base = ChunkId::FromBytes(p.base());
    if (!base) return Status(Code::kDataLoss, where + ": patched piece without a base chunk id");
    const Mac base_mac = mac_of(p.base_mac());
    Status st = w.decoder.Read(chunks_fd_.get(), ChunkRelPath(*base), *base, &base_mac, &w.root);
    if (!st.ok()) return Status(st.code(), where + ": " + st.message());
    const size_t pages = piece.size() / kPageBytes;
    const int64_t root_pages = static_cast<int64_t>(w.root.size() / kPageBytes);
    size_t from = p.chunk_offset();
    for (size_t j = 0; j < pages; ++j) {
      uint8_t* to = dst + j * kPageBytes;
      if (p.page_mask() & (uint64_t{1} << j)) {
        if (!patch || from + kPageBytes > patch->size())
          return Status(Code::kDataLoss, where + ": patch chunk " + ChunkId::FromBytes(p.chunk())->Hex() +
                                             " is shorter than the manifest says");
        std::memcpy(to, patch->data() + from, kPageBytes);
        from += kPageBytes;
        continue;
      }
      const int64_t k = p.base_first_page() + static_cast<int64_t>(j);
      if (k < 0 || k >= root_pages)
        return Status(Code::kDataLoss, where + ": base chunk " + base->Hex() + " has no page " + std::to_string(k));
      std::memcpy(to, w.root.data() + static_cast<size_t>(k) * kPageBytes, kPageBytes);
    }
    // The manifest's id of a patched piece is the checksum of the whole result.
    if (ChunkId::Of(dst, piece.size()) != *ChunkId::FromBytes(piece.id()))
      return Status(Code::kDataLoss, where + ": piece " + ChunkId::FromBytes(piece.id())->Hex() +
                                         " rebuilt from base chunk " + base->Hex() + " and patch chunk " +
                                         (p.page_mask() ? ChunkId::FromBytes(p.chunk())->Hex() : std::string("(none)")) +
                                         " does not match its checksum");
    return Status::Ok();
  };

  (void)ParallelFor(tasks.size(), threads, [&](size_t t, unsigned wi) {
    if (failed.load(std::memory_order_relaxed)) return;
    Worker& w = workers[wi];
    const Task& task = tasks[t];
    if (task.patch_chunk) {
      const Mac& patch_mac = patch_macs.at(*task.patch_chunk);
      Status st = w.decoder.Read(chunks_fd_.get(), ChunkRelPath(*task.patch_chunk), *task.patch_chunk, &patch_mac, &w.patch);
      if (!st.ok()) return fail(Status(st.code(), what + ": " + st.message()));
    }
    for (const PieceRef& ref : task.pieces) {
      const size_t f = static_cast<size_t>(ref.file);
      const std::vector<uint8_t>* patch = task.patch_chunk ? &w.patch : nullptr;
      w.out.resize(ref.piece->size());
      Status st = build(w, ref, patch, w.out.data());
      if (st.ok())
        st = PwriteAll(fds[f].get(), w.out.data(), w.out.size(), static_cast<off_t>(ref.piece->offset()),
                       "write " + out_dir + "/" + manifest.files(ref.file).name());
      if (!st.ok()) return fail(st.Context(what));
    }
  });
  if (!error.ok()) {
    remove_outputs();
    return error;
  }
  return Status::Ok();
}

}  // namespace lazarus::store
