// ChunkStore::Ingest: CRIU's image directory -> new chunks + a manifest to commit.
//
// Per image file: map it, cut it into pieces (chunker.h), hash the pieces (in parallel),
// then decide under the shared store lock what each piece needs, pinning in our lease every
// chunk the decision relies on:
//   stored  - a chunk with its id exists (or this ingest writes it already): reference it;
//   reuse   - the base snapshot has the same bytes as a patch: copy its patch;
//   diff    - a page image piece that the base snapshot holds at the same place (following
//             the offset shift of the last piece found unchanged): compare its pages with
//             the base piece's whole chunk ("root") and store only the differing pages;
//   write   - anything else: a new chunk.
// Then (in parallel, without the lock) compress and write new chunks and compare pages. The
// changed pages of all patched pieces of a file go into patch chunks of up to 1 MiB, so a
// snapshot that changed 1% of its pages writes few files.
// New chunk files are written to tmp/LEASE/, made durable with one syncfs, pinned, and only
// then renamed into chunks/: a chunk file under its final name is always whole and durable.
// The rename never replaces an intact chunk file (RENAME_NOREPLACE): while a chunk file
// exists it is the one every manifest naming it recorded the MAC of.
//
// MACs (STORE.md, "Authentication"): the manifest records, for every chunk it needs, the MAC
// of its file. New chunks: computed when written. Chunks the base snapshot (this job's
// previous one, authenticated when it was loaded) names: its MAC. Any other chunk found in
// the store (written for another job, or earlier): read back, authenticated, and compared
// with our bytes before it is shared. XXH3-128 ids are not collision resistant; a chunk
// another job planted with a crafted colliding id is never taken for ours.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <unordered_map>

#include "common/unique_fd.h"
#include "snapshot/chunk_file.h"
#include "snapshot/chunk_store.h"
#include "snapshot/mapped_file.h"
#include "snapshot/parallel.h"
#include "snapshot/store_internal.h"
#include "snapshot/store_io.h"

namespace lazarus::store {
using namespace internal;

namespace {

constexpr size_t kMaxPatchChunkBytes = 1u << 20;

bool IsPageImage(const std::string& name) { return name.starts_with("pages-") && name.ends_with(".img"); }

// The base snapshot, indexed by file and offset and by piece id.
class BaseIndex {
 public:
  explicit BaseIndex(const Manifest* base) {
    if (!base) return;
    for (const auto& file : base->files()) {
      auto& pieces = files_[file.name()];
      for (const auto& piece : file.pieces()) {
        pieces.push_back(&piece);
        if (auto id = ChunkId::FromBytes(piece.id())) by_id_.try_emplace(*id, Found{&piece, &file.name()});
      }
      std::sort(pieces.begin(), pieces.end(), [](const Piece* a, const Piece* b) { return a->offset() < b->offset(); });
    }
    for (const auto& patch : base->patch_chunks())
      if (auto id = ChunkId::FromBytes(patch.id())) patch_chunks_[*id] = &patch;
    // The MACs of the chunk files the base needs.
    auto add_mac = [&](const std::string& id_raw, const std::string& mac_raw) {
      auto id = ChunkId::FromBytes(id_raw);
      if (!id || mac_raw.size() != kMacBytes) return;
      Mac mac;
      std::memcpy(mac.data(), mac_raw.data(), kMacBytes);
      macs_.try_emplace(*id, mac);
    };
    for (const auto& file : base->files())
      for (const auto& piece : file.pieces()) {
        if (piece.has_patch()) add_mac(piece.patch().base(), piece.patch().base_mac());
        else add_mac(piece.id(), piece.mac());
      }
    for (const auto& patch : base->patch_chunks()) add_mac(patch.id(), patch.mac());
  }

  struct Found {
    const Piece* piece = nullptr;
    const std::string* file = nullptr;
  };
  [[nodiscard]] Found ById(const ChunkId& id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? Found{} : it->second;
  }
  // The piece of file `name` that holds byte `offset`, if any.
  [[nodiscard]] const Piece* At(const std::string& name, uint64_t offset) const {
    auto it = files_.find(name);
    if (it == files_.end() || it->second.empty()) return nullptr;
    const auto& v = it->second;
    auto after = std::upper_bound(v.begin(), v.end(), offset, [](uint64_t o, const Piece* p) { return o < p->offset(); });
    if (after == v.begin()) return nullptr;
    const Piece* p = *(after - 1);
    return offset < p->offset() + p->size() ? p : nullptr;
  }
  [[nodiscard]] const ChunkSize* PatchChunk(const ChunkId& id) const {
    auto it = patch_chunks_.find(id);
    return it == patch_chunks_.end() ? nullptr : it->second;
  }
  // The MAC the base recorded for chunk file `id`, when the base needs that chunk.
  [[nodiscard]] std::optional<Mac> MacOf(const ChunkId& id) const {
    auto it = macs_.find(id);
    if (it == macs_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::unordered_map<std::string, std::vector<const Piece*>> files_;
  std::unordered_map<ChunkId, Found, ChunkIdHash> by_id_;
  std::unordered_map<ChunkId, const ChunkSize*, ChunkIdHash> patch_chunks_;
  std::unordered_map<ChunkId, Mac, ChunkIdHash> macs_;
};

// kKnown: decided earlier in this ingest (copied from known_); kStored: a chunk in the store.
enum class Plan { kKnown, kStored, kReusePatch, kSame, kWrite, kDiff };

struct Item {
  Extent extent;
  ChunkId id;
  Plan plan = Plan::kWrite;
  uint32_t stored_size = 0;     // kStored
  Mac mac{};                     // of the chunk file: kStored, kWrite, kDiff written whole
  bool have_mac = false;         // kStored: `mac` came from the base (else the chunk is read back)
  const Piece* reuse = nullptr;  // kReusePatch: the base piece whose patch we copy
  size_t same_as = 0;            // kSame: an earlier item of this file with the same id
  ChunkId root;                  // kDiff
  int32_t root_first_page = 0;   // kDiff: root page that our page 0 lines up with
  Mac root_mac{};                // kDiff: the root's MAC, as the base recorded it
  bool page_hashes = false;      // a whole-page piece of a page image: its chunk keeps page hashes
  // Results of the parallel phase.
  bool patched = false;  // kDiff that became a patch (else it was written whole)
  uint64_t page_mask = 0;
  uint32_t written_size = 0;  // kWrite, or kDiff written whole: chunk payload bytes
  unsigned writer = 0;        // the worker whose directory holds the new chunk file
  uint64_t written_file_bytes = 0;
  Status status;
};

// Per worker thread: a compressor, a decompressor, their buffers, and a directory of its own
// for new chunk files (creating files in one directory from several threads serializes on
// the directory's lock).
struct Worker {
  Worker(int level, const StoreKey& key) : encoder(level, key), decoder(key) {}
  UniqueFd tmp_fd;
  std::string tmp_dir;
  ChunkEncoder encoder;
  ChunkDecoder decoder;
  std::vector<uint8_t> encoded;
  std::vector<uint8_t> root;
  std::vector<uint64_t> root_hashes;
};

class Ingestor {
 public:
  Ingestor(const ChunkStore& store, int chunks_fd, const IngestOptions& options, Lease* lease, Manifest* manifest,
           IngestStats* stats)
      : store_(store), chunks_fd_(chunks_fd), options_(options), threads_(ResolveThreads(options.threads)),
        base_(options.base), lease_(lease), manifest_(manifest), stats_(stats) {
    for (unsigned i = 0; i < threads_; ++i) workers_.emplace_back(options.zstd_level, store.key());
  }

  Status Run(const std::string& images_dir);
  [[nodiscard]] double helper_cpu() const { return helper_cpu_; }

 private:
  Status IngestFile(int dir_fd, const std::string& name, mode_t mode);
  Status Decide(const std::string& name, bool page_image, std::vector<Item>& items);
  void Work(const MappedFile& map, Item& item, Worker& worker);
  Status WriteChunk(const ChunkId& id, const uint8_t* data, size_t size, bool page_hashes, Worker& worker,
                    uint32_t* stored, uint64_t* file_bytes, Mac* mac);
  // Chunk `id` exists in the store but the base does not name it: reads it back (the MAC
  // under our key, then the content) and compares it with `data`. OK with its MAC in *mac
  // when it holds our bytes; kNotFound when it is unusable (missing, damaged, not ours: we
  // write it ourselves); kFailedPrecondition when it holds other bytes under our id.
  Status Adopt(const ChunkId& id, const uint8_t* data, size_t size, Worker& worker, const std::string& where, Mac* mac);
  // Renames a new chunk file into chunks/ without replacing an intact one.
  Status Place(const Worker& from, const ChunkId& id);
  // Which pages of `item` differ from its root (or have no counterpart there); nullopt when
  // the root cannot be read.
  std::optional<uint64_t> ChangedPages(const uint8_t* data, const Item& item, Worker& worker);
  Status BuildPieces(const MappedFile& map, std::vector<Item>& items, ImageFile* file);
  Status FlushPatch();
  // Stat of chunk `id` under chunks/: its payload size, or nullopt when missing.
  std::optional<uint32_t> Exists(const ChunkId& id) const;
  Status Lock(std::optional<StoreLock>* lock) const;

  const ChunkStore& store_;
  int chunks_fd_;
  const IngestOptions& options_;
  unsigned threads_;
  BaseIndex base_;
  Lease* lease_;
  Manifest* manifest_;
  IngestStats* stats_;
  std::vector<Worker> workers_;
  double helper_cpu_ = 0;

  // Pieces already decided by this ingest, by id: what a later piece with that id copies.
  std::unordered_map<ChunkId, Piece, ChunkIdHash> known_;
  // Patch chunks the manifest needs.
  std::map<ChunkId, ChunkSize> patch_chunks_;
  // New chunk files in tmp/LEASE/wN/ (N: the worker), to be renamed into chunks/.
  std::vector<std::pair<unsigned, ChunkId>> written_;
  // The patch chunk being filled, and the pieces that will point into it.
  std::vector<uint8_t> patch_;
  std::vector<Piece*> patch_pieces_;
  // New chunks whose name another ingest took first with the same bytes: that file's MAC.
  std::unordered_map<ChunkId, Mac, ChunkIdHash> adopted_;
  const std::string* file_name_ = nullptr;  // the image file being ingested (for messages)
};

Status Ingestor::Lock(std::optional<StoreLock>* lock) const {
  auto l = StoreLock::Acquire(store_.root() + "/" + kLockFile, StoreLock::Mode::kShared);
  if (!l.ok()) return l.status();
  lock->emplace(std::move(l).value());
  return Status::Ok();
}

std::optional<uint32_t> Ingestor::Exists(const ChunkId& id) const {
  struct stat st {};
  if (::fstatat(chunks_fd_, ChunkRelPath(id).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) < kChunkHeaderBytes) return std::nullopt;
  return static_cast<uint32_t>(st.st_size - kChunkHeaderBytes);
}

Status Ingestor::Run(const std::string& images_dir) {
  UniqueFd dir(::open(images_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoStatus("open image directory " + images_dir);
  for (size_t w = 0; w < workers_.size(); ++w) {
    Worker& worker = workers_[w];
    worker.tmp_dir = lease_->tmp_dir() + "/w" + std::to_string(w);
    if (::mkdir(worker.tmp_dir.c_str(), 0700) != 0) return IoError("mkdir " + worker.tmp_dir, errno);
    worker.tmp_fd = UniqueFd(::open(worker.tmp_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!worker.tmp_fd) return ErrnoStatus("open " + worker.tmp_dir);
  }

  // The file list, sorted so that the manifest does not depend on directory order.
  std::vector<std::pair<std::string, mode_t>> files;
  {
    UniqueFd listing(::dup(dir.get()));
    if (!listing) return ErrnoStatus("dup image directory fd");
    DIR* d = ::fdopendir(listing.get());
    if (!d) return ErrnoStatus("list " + images_dir);
    (void)listing.release();  // owned by `d` now
    struct Closer {
      DIR* d;
      ~Closer() { ::closedir(d); }
    } closer{d};
    ::rewinddir(d);
    errno = 0;
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      struct stat st {};
      if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoStatus("stat image " + name);
      if (!S_ISREG(st.st_mode))
        return Status(Code::kInvalidArgument, images_dir + "/" + name + " is not a regular file (CRIU writes only files)");
      files.emplace_back(name, st.st_mode & 07777);
    }
    if (errno != 0) return ErrnoStatus("list " + images_dir);
  }
  std::sort(files.begin(), files.end());
  for (const auto& [name, mode] : files) LAZARUS_RETURN_IF_ERROR(IngestFile(dir.get(), name, mode));

  // Durable before visible: one syncfs for all our temporary files, then the renames (every
  // id was pinned when it was decided on, before it could become visible).
  if (!written_.empty() && ::syncfs(workers_[0].tmp_fd.get()) != 0) return IoError("syncfs " + lease_->tmp_dir(), errno);
  CrashPoint("ingest.synced");
  for (size_t i = 0; i < written_.size(); ++i) {
    LAZARUS_RETURN_IF_ERROR(Place(workers_[written_[i].first], written_[i].second));
    if (i == 0) CrashPoint("ingest.renamed_first");
  }
  CrashPoint("ingest.renamed");

  if (!adopted_.empty()) {
    // Name the file that holds each adopted chunk by its MAC, wherever the manifest needs it.
    auto fix = [&](const std::string& id_raw, Piece* piece, Patch* patch) {
      auto it = adopted_.find(*ChunkId::FromBytes(id_raw));
      if (it == adopted_.end()) return;
      if (piece) piece->set_mac(MacRaw(it->second));
      if (patch) patch->set_base_mac(MacRaw(it->second));
    };
    for (auto& file : *manifest_->mutable_files())
      for (auto& piece : *file.mutable_pieces()) {
        if (piece.has_patch()) fix(piece.patch().base(), nullptr, piece.mutable_patch());
        else fix(piece.id(), &piece, nullptr);
      }
    for (auto& [id, size] : patch_chunks_)
      if (auto it = adopted_.find(id); it != adopted_.end()) size.set_mac(MacRaw(it->second));
  }
  for (auto& [id, size] : patch_chunks_) *manifest_->add_patch_chunks() = size;
  auto* chunker = manifest_->mutable_chunker();
  chunker->set_min_pages(options_.chunking.min_pages);
  chunker->set_avg_pages(options_.chunking.avg_pages);
  chunker->set_max_pages(options_.chunking.max_pages);
  auto* sizes = manifest_->mutable_sizes();
  sizes->set_raw_bytes(stats_->raw_bytes);
  sizes->set_new_stored_bytes(stats_->new_stored_bytes);
  sizes->set_new_chunks(static_cast<uint32_t>(stats_->new_chunks));
  sizes->set_pieces(static_cast<uint32_t>(stats_->pieces));
  sizes->set_patched_pieces(static_cast<uint32_t>(stats_->patched_pieces));
  return Status::Ok();
}

Status Ingestor::IngestFile(int dir_fd, const std::string& name, mode_t mode) {
  auto map = MappedFile::Open(dir_fd, name);
  if (!map.ok()) return map.status();
  const bool page_image = IsPageImage(name);
  const std::vector<Extent> extents =
      page_image ? CutPageImage(map->data(), map->size(), options_.chunking) : CutFixed(map->size());
  file_name_ = &name;
  std::vector<Item> items(extents.size());
  helper_cpu_ += ParallelFor(items.size(), threads_, [&](size_t i, unsigned) {
    items[i].extent = extents[i];
    items[i].id = ChunkId::Of(map->data() + extents[i].offset, extents[i].size);
  });
  LAZARUS_RETURN_IF_ERROR(Decide(name, page_image, items));
  CrashPoint("ingest.decided");
  helper_cpu_ += ParallelFor(items.size(), threads_, [&](size_t i, unsigned w) { Work(*map, items[i], workers_[w]); });
  for (const auto& item : items)
    if (!item.status.ok()) return item.status;
  CrashPoint("ingest.written");

  ImageFile* file = manifest_->add_files();
  file->set_name(name);
  file->set_size(map->size());
  file->set_mode(mode);
  LAZARUS_RETURN_IF_ERROR(BuildPieces(*map, items, file));
  // Flushed per file so that known_ never holds a patch whose chunk is not named yet.
  LAZARUS_RETURN_IF_ERROR(FlushPatch());
  stats_->files += 1;
  stats_->raw_bytes += map->size();
  stats_->pieces += items.size();
  return Status::Ok();
}

Status Ingestor::Decide(const std::string& name, bool page_image, std::vector<Item>& items) {
  std::optional<StoreLock> lock;
  LAZARUS_RETURN_IF_ERROR(Lock(&lock));
  std::vector<ChunkId> pins;
  pins.reserve(items.size() + 8);
  std::unordered_map<ChunkId, size_t, ChunkIdHash> first_here;  // id -> first item of this file
  int64_t shift = 0;  // base offset minus our offset, from the last piece found in the base
  for (size_t i = 0; i < items.size(); ++i) {
    Item& item = items[i];
    const uint64_t offset = item.extent.offset;
    item.page_hashes = page_image && item.extent.size % kPageBytes == 0;
    if (auto it = first_here.find(item.id); it != first_here.end()) {
      item.plan = Plan::kSame;
      item.same_as = it->second;
      continue;
    }
    if (auto it = known_.find(item.id); it != known_.end()) {
      item.plan = Plan::kKnown;  // BuildPieces copies known_'s piece (full or patched)
      continue;
    }
    BaseIndex::Found found = base_.ById(item.id);
    if (found.piece && found.file && *found.file == name)
      shift = static_cast<int64_t>(found.piece->offset()) - static_cast<int64_t>(offset);
    if (found.piece && found.piece->has_patch()) {
      const Patch& p = found.piece->patch();
      auto base = ChunkId::FromBytes(p.base());
      auto chunk = ChunkId::FromBytes(p.chunk());
      const bool has_chunk = p.page_mask() == 0 || (chunk && base_.PatchChunk(*chunk) && Exists(*chunk));
      if (base && Exists(*base) && has_chunk) {
        item.plan = Plan::kReusePatch;
        item.reuse = found.piece;
        pins.push_back(*base);
        if (p.page_mask() != 0) pins.push_back(*chunk);
        first_here.emplace(item.id, i);
        continue;
      }
    }
    pins.push_back(item.id);
    first_here.emplace(item.id, i);
    if (auto stored = Exists(item.id)) {
      item.plan = Plan::kStored;
      item.stored_size = *stored;
      if (auto mac = base_.MacOf(item.id)) {
        item.mac = *mac;
        item.have_mac = true;
      }
      continue;
    }
    item.plan = Plan::kWrite;
    if (!page_image || item.extent.size % kPageBytes != 0 || item.extent.size / kPageBytes < 2) continue;
    const int64_t base_offset = static_cast<int64_t>(offset) + shift;
    if (base_offset < 0) continue;
    const Piece* b = base_.At(name, static_cast<uint64_t>(base_offset));
    if (!b) continue;
    std::optional<ChunkId> root = ChunkId::FromBytes(b->has_patch() ? b->patch().base() : b->id());
    if (!root || !Exists(*root)) continue;
    std::optional<Mac> root_mac = base_.MacOf(*root);
    if (!root_mac) continue;
    item.plan = Plan::kDiff;
    item.root = *root;
    item.root_mac = *root_mac;
    item.root_first_page = (b->has_patch() ? b->patch().base_first_page() : 0) +
                           static_cast<int32_t>((static_cast<uint64_t>(base_offset) - b->offset()) / kPageBytes);
    pins.push_back(*root);
  }
  // Pinned before the lock goes: from here on GC keeps what we decided to rely on.
  return lease_->Pin(pins);
}

Status Ingestor::WriteChunk(const ChunkId& id, const uint8_t* data, size_t size, bool page_hashes, Worker& worker,
                            uint32_t* stored, uint64_t* file_bytes, Mac* mac) {
  LAZARUS_RETURN_IF_ERROR(worker.encoder.Encode(id, data, size, page_hashes, &worker.encoded, mac));
  const std::string hex = id.Hex();
  UniqueFd fd(::openat(worker.tmp_fd.get(), hex.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return IoError("create chunk " + worker.tmp_dir + "/" + hex, errno);
  LAZARUS_RETURN_IF_ERROR(
      WriteAll(fd.get(), worker.encoded.data(), worker.encoded.size(), "write chunk " + worker.tmp_dir + "/" + hex));
  *stored = static_cast<uint32_t>(worker.encoded.size() - kChunkHeaderBytes);
  *file_bytes = worker.encoded.size();
  return Status::Ok();
}

Status Ingestor::Adopt(const ChunkId& id, const uint8_t* data, size_t size, Worker& worker, const std::string& where,
                       Mac* mac) {
  Status st = worker.decoder.Read(chunks_fd_, ChunkRelPath(id), id, nullptr, &worker.root);
  if (!st.ok()) return Status(Code::kNotFound, st.message());
  if (worker.root.size() != size || std::memcmp(worker.root.data(), data, size) != 0)
    return Status(Code::kFailedPrecondition,
                  where + " has the id of stored chunk " + id.Hex() +
                      " (XXH3-128) but other content: a crafted hash collision? Refusing to share that chunk; no "
                      "snapshot holding these bytes can be stored while it exists");
  *mac = worker.decoder.mac();
  return Status::Ok();
}

Status Ingestor::Place(const Worker& from, const ChunkId& id) {
  const std::string hex = id.Hex();
  const std::string target = ChunkRelPath(id);
  const std::string what = "rename " + from.tmp_dir + "/" + hex + " into the store";
  int rc = ::renameat2(from.tmp_fd.get(), hex.c_str(), chunks_fd_, target.c_str(), RENAME_NOREPLACE);
  if (rc != 0 && errno == EINVAL) {  // a file system without RENAME_NOREPLACE: link(2) never replaces either
    rc = ::linkat(from.tmp_fd.get(), hex.c_str(), chunks_fd_, target.c_str(), 0);
    if (rc == 0) ::unlinkat(from.tmp_fd.get(), hex.c_str(), 0);
  }
  if (rc == 0) return Status::Ok();
  if (errno != EEXIST) return IoError(what, errno);
  // The name is taken since we decided to write it: by a concurrent ingest that stored the
  // same bytes (keep that file, which its manifest may name already, and record its MAC),
  // or by a file that is damaged or not ours (replace it).
  Worker& w = workers_[0];
  Status theirs = w.decoder.Read(chunks_fd_, target, id, nullptr, &w.root);
  if (theirs.ok()) {
    const Mac their_mac = w.decoder.mac();
    std::vector<uint8_t> ours;
    LAZARUS_RETURN_IF_ERROR(w.decoder.Read(from.tmp_fd.get(), hex, id, nullptr, &ours).Context(what));
    if (ours != w.root)
      return Status(Code::kFailedPrecondition, "new chunk " + hex + " has the id of a stored chunk (XXH3-128) but other "
                                               "content: a crafted hash collision? Refusing to share that chunk");
    adopted_[id] = their_mac;
    ::unlinkat(from.tmp_fd.get(), hex.c_str(), 0);
    return Status::Ok();
  }
  if (::renameat(from.tmp_fd.get(), hex.c_str(), chunks_fd_, target.c_str()) != 0) return IoError(what, errno);
  return Status::Ok();
}

std::optional<uint64_t> Ingestor::ChangedPages(const uint8_t* data, const Item& item, Worker& worker) {
  const size_t pages = item.extent.size / kPageBytes;
  uint64_t mask = 0;
  // Preferably from the root's page hashes: 8 bytes read per page instead of decompressing
  // (when the file is still the one the base recorded; the hashes only choose which pages
  // the patch holds, and the restore checks what it rebuilds against the piece's id).
  Mac claimed{};
  if (ChunkDecoder::ReadPageHashes(chunks_fd_, ChunkRelPath(item.root), item.root, &worker.root_hashes, &claimed).ok() &&
      MacEqual(claimed, item.root_mac)) {
    const int64_t root_pages = static_cast<int64_t>(worker.root_hashes.size());
    for (size_t j = 0; j < pages; ++j) {
      const int64_t k = item.root_first_page + static_cast<int64_t>(j);
      if (k < 0 || k >= root_pages || worker.root_hashes[static_cast<size_t>(k)] != PageHash(data + j * kPageBytes))
        mask |= uint64_t{1} << j;
    }
    return mask;
  }
  if (!worker.decoder.Read(chunks_fd_, ChunkRelPath(item.root), item.root, &item.root_mac, &worker.root).ok())
    return std::nullopt;
  const int64_t root_pages = static_cast<int64_t>(worker.root.size() / kPageBytes);
  for (size_t j = 0; j < pages; ++j) {
    const int64_t k = item.root_first_page + static_cast<int64_t>(j);
    if (k < 0 || k >= root_pages ||
        std::memcmp(data + j * kPageBytes, worker.root.data() + static_cast<size_t>(k) * kPageBytes, kPageBytes) != 0)
      mask |= uint64_t{1} << j;
  }
  return mask;
}

void Ingestor::Work(const MappedFile& map, Item& item, Worker& worker) {
  const uint8_t* data = map.data() + item.extent.offset;
  if (item.plan == Plan::kStored && !item.have_mac) {
    Status st = Adopt(item.id, data, item.extent.size, worker,
                      "piece of " + *file_name_ + " at offset " + std::to_string(item.extent.offset), &item.mac);
    if (st.ok()) return;
    if (st.code() != Code::kNotFound) {
      item.status = st;
      return;
    }
    item.plan = Plan::kWrite;  // unusable: ours replaces it (Place)
  }
  if (item.plan == Plan::kDiff) {
    // A damaged or missing root is no base: the piece is then written whole.
    if (auto mask = ChangedPages(data, item, worker)) {
      // A patch holds every page changed since its base, so it grows with each snapshot that
      // touches the piece; past half of the pages the piece is stored whole again and becomes
      // the next base. (Measured over 40 snapshots of 1% scattered rewrites, a quarter stores
      // about as much: more in the first ten, less after thirty.)
      if (static_cast<size_t>(__builtin_popcountll(*mask)) * 2 <= item.extent.size / kPageBytes) {
        item.patched = true;
        item.page_mask = *mask;
        return;
      }
    }
  }
  item.writer = static_cast<unsigned>(&worker - workers_.data());
  if (item.plan == Plan::kWrite || item.plan == Plan::kDiff)
    item.status = WriteChunk(item.id, data, item.extent.size, item.page_hashes, worker, &item.written_size,
                             &item.written_file_bytes, &item.mac);
}

Status Ingestor::BuildPieces(const MappedFile& map, std::vector<Item>& items, ImageFile* file) {
  for (size_t i = 0; i < items.size(); ++i) {
    Item& item = items[i];
    Piece* piece = file->add_pieces();
    auto fill = [&](const Piece& like) {
      *piece = like;
      piece->set_offset(item.extent.offset);
    };
    switch (item.plan) {
      case Plan::kSame: {
        const Piece& first = file->pieces(static_cast<int>(item.same_as));
        fill(first);
        // The first one's patch chunk may still be open: name it when it is flushed.
        if (first.has_patch() && first.patch().page_mask() != 0 && first.patch().chunk().empty())
          patch_pieces_.push_back(piece);
        stats_->reused_pieces += 1;
        continue;
      }
      case Plan::kKnown: {
        fill(known_.at(item.id));
        stats_->reused_pieces += 1;
        break;
      }
      case Plan::kStored: {
        piece->set_id(item.id.Raw());
        piece->set_size(static_cast<uint32_t>(item.extent.size));
        piece->set_offset(item.extent.offset);
        piece->set_stored_size(item.stored_size);
        piece->set_mac(MacRaw(item.mac));
        stats_->reused_pieces += 1;
        break;
      }
      case Plan::kReusePatch: {
        piece->set_id(item.id.Raw());
        piece->set_size(static_cast<uint32_t>(item.extent.size));
        piece->set_offset(item.extent.offset);
        *piece->mutable_patch() = item.reuse->patch();
        if (item.reuse->patch().page_mask() != 0) {
          const ChunkId chunk = *ChunkId::FromBytes(item.reuse->patch().chunk());
          patch_chunks_[chunk] = *base_.PatchChunk(chunk);
        }
        stats_->reused_pieces += 1;
        break;
      }
      case Plan::kWrite:
      case Plan::kDiff: {
        piece->set_id(item.id.Raw());
        piece->set_size(static_cast<uint32_t>(item.extent.size));
        piece->set_offset(item.extent.offset);
        if (!item.patched) {
          piece->set_stored_size(item.written_size);
          piece->set_mac(MacRaw(item.mac));
          written_.push_back({item.writer, item.id});
          stats_->new_chunks += 1;
          stats_->new_stored_bytes += item.written_file_bytes;
          break;
        }
        Patch* patch = piece->mutable_patch();
        patch->set_base(item.root.Raw());
        patch->set_base_mac(MacRaw(item.root_mac));
        patch->set_base_first_page(item.root_first_page);
        patch->set_page_mask(item.page_mask);
        const size_t pages = static_cast<size_t>(__builtin_popcountll(item.page_mask));
        if (pages > 0) {
          if (patch_.size() + pages * kPageBytes > kMaxPatchChunkBytes) LAZARUS_RETURN_IF_ERROR(FlushPatch());
          patch->set_chunk_offset(static_cast<uint32_t>(patch_.size()));
          const uint8_t* data = map.data() + item.extent.offset;
          for (size_t j = 0; j < kMaxPiecePages; ++j)
            if (item.page_mask & (uint64_t{1} << j)) patch_.insert(patch_.end(), data + j * kPageBytes, data + (j + 1) * kPageBytes);
          patch_pieces_.push_back(piece);
        }
        stats_->patched_pieces += 1;
        stats_->patch_pages += pages;
        break;
      }
    }
    known_.try_emplace(item.id, *piece);  // patched pieces are fixed up in FlushPatch
  }
  return Status::Ok();
}

Status Ingestor::FlushPatch() {
  if (patch_.empty()) return Status::Ok();
  const ChunkId id = ChunkId::Of(patch_.data(), patch_.size());
  uint32_t stored = 0;
  uint64_t file_bytes = 0;
  std::optional<uint32_t> existing;
  {
    // Decided like a piece: pinned and looked up under the lock (the same changed pages may
    // exist already, e.g. when a failed snapshot is ingested again).
    std::optional<StoreLock> lock;
    LAZARUS_RETURN_IF_ERROR(Lock(&lock));
    LAZARUS_RETURN_IF_ERROR(lease_->Pin({id}));
    existing = Exists(id);
  }
  Mac mac{};
  bool write = !existing;
  if (existing) {
    stored = *existing;
    if (auto known = base_.MacOf(id)) {
      mac = *known;
    } else {
      Status st = Adopt(id, patch_.data(), patch_.size(), workers_[0], "patch chunk of " + *file_name_, &mac);
      if (st.code() == Code::kNotFound) write = true;  // unusable: ours replaces it (Place)
      else if (!st.ok()) return st;
    }
  }
  if (write) {
    LAZARUS_RETURN_IF_ERROR(WriteChunk(id, patch_.data(), patch_.size(), false, workers_[0], &stored, &file_bytes, &mac));
    written_.push_back({0, id});
    stats_->new_chunks += 1;
    stats_->new_stored_bytes += file_bytes;
  }
  ChunkSize size;
  size.set_id(id.Raw());
  size.set_raw_size(static_cast<uint32_t>(patch_.size()));
  size.set_stored_size(stored);
  size.set_mac(MacRaw(mac));
  patch_chunks_[id] = size;
  for (Piece* piece : patch_pieces_) {
    piece->mutable_patch()->set_chunk(id.Raw());
    auto it = known_.find(*ChunkId::FromBytes(piece->id()));
    if (it != known_.end() && it->second.has_patch() && it->second.patch().chunk().empty())
      it->second.mutable_patch()->set_chunk(id.Raw());
  }
  patch_.clear();
  patch_pieces_.clear();
  return Status::Ok();
}

}  // namespace

StatusOr<PendingSnapshot> ChunkStore::Ingest(const std::string& images_dir, const IngestOptions& options) const {
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = ThreadCpuSeconds();
  PendingSnapshot pending;
  {
    auto lock = Lock(StoreLock::Mode::kShared);
    if (!lock.ok()) return lock.status().Context("ingest " + images_dir);
    auto lease = Lease::Create(root_ + "/" + kLeasesDir, root_ + "/" + kTmpDir);
    if (!lease.ok()) return lease.status().Context("ingest " + images_dir);
    pending.lease_ = std::move(lease).value();
  }
  CrashPoint("ingest.leased");
  Ingestor ingestor(*this, chunks_fd_.get(), options, &pending.lease_, &pending.manifest_, &pending.stats_);
  Status st = ingestor.Run(images_dir);
  if (!st.ok()) return st.Context("ingest " + images_dir);  // ~PendingSnapshot releases the lease
  pending.stats_.cpu_seconds = ThreadCpuSeconds() - cpu0 + ingestor.helper_cpu();
  pending.stats_.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return pending;
}

}  // namespace lazarus::store
