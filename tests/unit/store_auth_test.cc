// Authentication of the snapshot store (STORE.md, "Authentication"): someone who can write
// the store but does not hold the daemon's key cannot make a restore accept anything the
// daemon did not write, even when every checksum (XXH3) is made to match; a manifest or a
// chunk written under another key is refused and the message says why; the key file itself
// is created once and never silently replaced; and a job cannot plant content under another
// job's chunk id (XXH3-128 collisions are easy to make, as these tests show).
#define XXH_INLINE_ALL  // XXH3_kSecret, to build colliding inputs
#include <xxhash.h>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "common/record_file.h"
#include "snapshot/chunk_file.h"
#include "snapshot/chunk_store.h"
#include "snapshot/manifest_file.h"
#include "store_test_util.h"
#include "temp_dir.h"

namespace lazarus::store {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::store::testing;

uint64_t Word(const std::string& s, size_t at) {
  uint64_t v;
  std::memcpy(&v, s.data() + at, 8);
  return v;
}
void SetWord(std::string& s, size_t at, uint64_t v) { std::memcpy(s.data() + at, &v, 8); }
uint64_t SecretWord(int n) {
  uint64_t v;
  std::memcpy(&v, XXH3_kSecret + 8 * n, 8);
  return v;
}

// Two different byte strings with the same XXH3-128 (so the same chunk id). XXH3 adds, per
// 64-byte stripe and lane, the input word to one accumulator and the product of the two
// 32-bit halves of (word ^ secret) to the other; the default secret is public. Words whose
// low half equals the secret's make that product 0, and then only their sum counts: move
// an amount from the high half of one such word to another and the hash stays the same.
// Returns {a, b}; both `size` bytes (> 240, the long-input path), seeded by `seed`.
std::pair<std::string, std::string> CollidingPair(size_t size, uint64_t seed) {
  std::string a = RandomBytes(size, seed);
  for (int stripe : {0, 1})  // lane 0 of stripes 0 and 1 of the first block
    SetWord(a, 64 * stripe, (Word(a, 64 * stripe) & ~uint64_t{0xffffffff}) | (SecretWord(stripe) & 0xffffffff));
  std::string b = a;
  SetWord(b, 0, Word(a, 0) + (uint64_t{0x5eed} << 32));
  SetWord(b, 64, Word(a, 64) - (uint64_t{0x5eed} << 32));
  return {a, b};
}

// A chunk file for `id` holding `content`, with every checksum right, made with `key`.
std::string ChunkFileFor(const ChunkId& id, const std::string& content, const StoreKey& key, int level = 1) {
  ChunkEncoder encoder(level, key);
  std::vector<uint8_t> file;
  Mac mac;
  EXPECT_TRUE(encoder.Encode(id, reinterpret_cast<const uint8_t*>(content.data()), content.size(), false, &file, &mac).ok());
  return std::string(file.begin(), file.end());
}

StoreKey OtherKey() {
  uint8_t bytes[kKeyBytes];
  for (size_t i = 0; i < kKeyBytes; ++i) bytes[i] = static_cast<uint8_t>(0xa5 ^ i);
  return StoreKey::FromBytes(bytes, sizeof bytes);
}

class StoreAuth : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ChunkStore::Open(dir_ / "store");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_.emplace(std::move(s).value());
  }

  // Snapshot job/1 of `images`.
  void Commit(const Images& images, const std::string& job = "job", uint32_t id = 1) {
    WriteImages(dir_ / "in", images);
    Status st = IngestAndCommit(*store_, dir_ / "in", job, id);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  Status Restore(const std::string& job, uint32_t id, const std::string& out) {
    auto m = store_->Load(job, id);
    if (!m.ok()) return m.status();
    return store_->Materialize(*m, out);
  }
  // Rewrites a manifest file as a forger would: `edit` changes the manifest; the record's
  // magic, length and XXH3 checksum are made right again; the MAC stays (it cannot be made).
  static void Forge(const std::string& path, const std::function<void(Manifest&)>& edit) {
    SignedManifest signed_manifest;
    ASSERT_TRUE(ReadRecordFile(path, &signed_manifest).ok());
    Manifest m;
    ASSERT_TRUE(m.ParseFromString(signed_manifest.manifest()));
    edit(m);
    signed_manifest.set_manifest(m.SerializeAsString());
    ASSERT_TRUE(WriteRecordFile(path, signed_manifest).ok());
  }

  TempDir dir_;
  std::optional<ChunkStore> store_;
};

// ---- manifests ----------------------------------------------------------------------------

TEST_F(StoreAuth, ForgedManifestIsRefused) {
  const Images images = SampleImages(100, 1);
  Commit(images);
  ASSERT_TRUE(Restore("job", 1, dir_ / "ok").ok());
  const std::string path = store_->ManifestPath("job", 1);
  // What a forger wants: the restore to run something else. Here, an image file's bytes
  // swapped for another's (its piece now names core-42.img's chunk), and a new mode.
  Forge(path, [](Manifest& m) {
    ImageFile* inventory = nullptr;
    const ImageFile* core = nullptr;
    for (auto& f : *m.mutable_files()) {
      if (f.name() == "inventory.img") inventory = &f;
      if (f.name() == "core-42.img") core = &f;
    }
    ASSERT_TRUE(inventory && core);
    *inventory->mutable_pieces(0) = core->pieces(0);
    inventory->set_size(core->size());
    inventory->set_mode(04755);
  });
  // The record file itself is intact (it reads back): only the MAC tells.
  SignedManifest any;
  ASSERT_TRUE(ReadRecordFile(path, &any).ok());

  auto loaded = store_->Load("job", 1);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), Code::kDataLoss);
  EXPECT_NE(loaded.status().message().find("manifest job/1"), std::string::npos) << loaded.status().message();
  EXPECT_NE(loaded.status().message().find("not authenticated by this daemon's key"), std::string::npos)
      << loaded.status().message();

  // Everything that reads manifests refuses it the same way.
  std::vector<std::string> errors;
  EXPECT_TRUE(store_->List("job", &errors).empty());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("not authenticated"), std::string::npos);
  auto report = store_->Verify();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->bad_manifests.size(), 1u);
  EXPECT_NE(report->bad_manifests[0].find("1.manifest"), std::string::npos);
  EXPECT_EQ(store_->CollectGarbage().status().code(), Code::kDataLoss);  // its chunks are unknown
}

TEST_F(StoreAuth, ManifestWithAlteredMacOrEnvelopeIsRefused) {
  Commit(SampleImages(20, 2));
  const std::string path = store_->ManifestPath("job", 1);
  auto original = ReadFile(path);
  ASSERT_TRUE(original.ok());
  // Every byte of the MAC, flipped, with the record checksum recomputed.
  SignedManifest signed_manifest;
  ASSERT_TRUE(ReadRecordFile(path, &signed_manifest).ok());
  for (size_t i = 0; i < kMacBytes; ++i) {
    SignedManifest bad = signed_manifest;
    bad.mutable_mac()->at(i) ^= 1;
    ASSERT_TRUE(WriteRecordFile(path, bad).ok());
    EXPECT_EQ(store_->Load("job", 1).status().code(), Code::kDataLoss) << "MAC byte " << i;
  }
  // No MAC at all.
  SignedManifest bare = signed_manifest;
  bare.clear_mac();
  ASSERT_TRUE(WriteRecordFile(path, bare).ok());
  EXPECT_EQ(store_->Load("job", 1).status().code(), Code::kDataLoss);
  // A plain Manifest record, as format 1 wrote them.
  Manifest plain;
  ASSERT_TRUE(plain.ParseFromString(signed_manifest.manifest()));
  ASSERT_TRUE(WriteRecordFile(path, plain).ok());
  EXPECT_EQ(store_->Load("job", 1).status().code(), Code::kDataLoss);
  // Put back, it loads again.
  ASSERT_TRUE(WriteFileAtomic(path, *original).ok());
  EXPECT_TRUE(store_->Load("job", 1).ok());
}

// A manifest moved to another snapshot's name is authentic, but names another snapshot.
TEST_F(StoreAuth, ManifestMovedToAnotherNameIsRefused) {
  Commit(SampleImages(20, 3), "job", 1);
  Commit(SampleImages(20, 4), "other", 5);
  ASSERT_EQ(::rename(store_->ManifestPath("job", 1).c_str(), store_->ManifestPath("other", 5).c_str()), 0);
  auto loaded = store_->Load("other", 5);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), Code::kDataLoss);
  EXPECT_NE(loaded.status().message().find("belongs to job/1"), std::string::npos) << loaded.status().message();
}

TEST_F(StoreAuth, ManifestFromAnotherKeyIsRefused) {
  const Images images = SampleImages(50, 5);
  Commit(images);
  // Another daemon (another key) with a store of its own, holding the same content.
  auto theirs = ChunkStore::Open(dir_ / "theirs/store");
  ASSERT_TRUE(theirs.ok()) << theirs.status().message();
  EXPECT_NE(theirs->key().id(), store_->key().id());
  WriteImages(dir_ / "in", images);
  ASSERT_TRUE(IngestAndCommit(*theirs, dir_ / "in", "job", 2).ok());
  // Their manifest, copied into our store under a name that matches its content.
  namespace fs = std::filesystem;
  fs::copy_file(theirs->ManifestPath("job", 2), store_->ManifestPath("job", 2));
  auto loaded = store_->Load("job", 2);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), Code::kDataLoss);
  const std::string& msg = loaded.status().message();
  EXPECT_NE(msg.find("manifest job/2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not authenticated by this daemon's key"), std::string::npos) << msg;
  EXPECT_NE(msg.find(theirs->key().id()), std::string::npos) << msg;   // names their key
  EXPECT_NE(msg.find(store_->key().id()), std::string::npos) << msg;  // and ours
  // Their chunks are no better: their manifest (loaded by them) does not restore from ours.
  for (const auto& entry : fs::recursive_directory_iterator(dir_ / "theirs/store/chunks"))
    if (entry.is_regular_file())
      fs::copy_file(entry.path(), dir_ / "store/chunks" / entry.path().parent_path().filename() / entry.path().filename(),
                    fs::copy_options::overwrite_existing);
  auto their_manifest = theirs->Load("job", 2);
  ASSERT_TRUE(their_manifest.ok());
  Status st = store_->Materialize(*their_manifest, dir_ / "out");
  EXPECT_EQ(st.code(), Code::kDataLoss);
  EXPECT_NE(st.message().find("not authenticated by this daemon's key"), std::string::npos) << st.message();
  // And our own snapshot, whose chunks they just overwrote, is refused too, naming the chunk.
  Status ours = Restore("job", 1, dir_ / "out1");
  EXPECT_EQ(ours.code(), Code::kDataLoss);
  EXPECT_NE(ours.message().find("chunk "), std::string::npos) << ours.message();
}

// Found by manifest_reader_fuzz: protobuf serializes string fields that are not UTF-8 (a
// file path is any bytes) but refuses to parse them back; such a manifest would make a
// snapshot that cannot be restored. Commit refuses it, and writes nothing.
TEST_F(StoreAuth, CommitRefusesAManifestThatWouldNotReadBack) {
  WriteImages(dir_ / "in", SampleImages(10, 13));
  auto pending = store_->Ingest(dir_ / "in");
  ASSERT_TRUE(pending.ok());
  pending->manifest().mutable_record()->add_open_files()->set_path("/tmp/\xff\xfe-not-utf8");
  Status st = store_->Commit("job", 1, std::move(pending).value());
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("would not read back"), std::string::npos) << st.message();
  EXPECT_EQ(store_->ListIds("job"), std::vector<uint32_t>{});
  EXPECT_EQ(CountEntries(dir_ / "store/manifests/job"), 0u);
}

// ---- chunks -------------------------------------------------------------------------------

TEST_F(StoreAuth, ForgedChunkIsRefused) {
  // core-42.img is one piece (a small file): content `real`, and `fake` has the same XXH3-128.
  auto [real, fake] = CollidingPair(3000, 11);
  ASSERT_NE(real, fake);
  const ChunkId id = ChunkId::Of(real.data(), real.size());
  ASSERT_EQ(ChunkId::Of(fake.data(), fake.size()), id) << "the collision construction broke";
  Images images = SampleImages(40, 6);
  images["core-42.img"] = real;
  Commit(images);
  ASSERT_TRUE(Restore("job", 1, dir_ / "ok").ok());

  // The forger's chunk file: the fake content under the real id; header checksum, payload
  // checksum and the content-vs-id check all pass. Two kinds: made under another key (the
  // MAC of another daemon), and with the real file's MAC copied in.
  const std::string path = store_->ChunkPath(id);
  auto real_file = ReadFile(path);
  ASSERT_TRUE(real_file.ok());
  std::string under_other_key = ChunkFileFor(id, fake, OtherKey());
  std::string with_copied_mac = under_other_key;
  std::memcpy(with_copied_mac.data() + 44, real_file->data() + 44, kMacBytes);
  const uint32_t header_checksum = static_cast<uint32_t>(XXH3_64bits(with_copied_mac.data(), 60));
  std::memcpy(with_copied_mac.data() + 60, &header_checksum, 4);
  ChunkHeader header;
  ASSERT_TRUE(ParseChunkHeader(reinterpret_cast<const uint8_t*>(with_copied_mac.data()), with_copied_mac.size(), id, &header).ok());

  for (const std::string& forged : {under_other_key, with_copied_mac}) {
    ASSERT_TRUE(WriteFileAtomic(path, forged, 0600).ok());
    Status st = Restore("job", 1, dir_ / "out");
    EXPECT_EQ(st.code(), Code::kDataLoss);  // so the daemon's restore falls back to an older snapshot
    EXPECT_NE(st.message().find("chunk " + id.Hex()), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("not authenticated by this daemon's key"), std::string::npos) << st.message();
    EXPECT_EQ(CountEntries(dir_ / "out"), 0u);  // nothing of it written

    auto report = store_->Verify();
    ASSERT_TRUE(report.ok());
    ASSERT_EQ(report->bad_chunks.size(), 1u);
    EXPECT_EQ(report->bad_chunks[0].id, id);
    EXPECT_NE(report->bad_chunks[0].problem.find("not authenticated"), std::string::npos) << report->bad_chunks[0].problem;
    EXPECT_EQ(report->damaged_snapshots, (std::vector<SnapshotKey>{{"job", 1}}));
  }
  ASSERT_TRUE(WriteFileAtomic(path, *real_file, 0600).ok());
  EXPECT_TRUE(Restore("job", 1, dir_ / "again").ok());
}

// An intact chunk file this daemon wrote, but not the one the snapshot recorded (the same
// content compressed otherwise, as after a quarantine and a rewrite): the manifest's MAC
// pins the file, so it is refused, and Verify says so without quarantining it.
TEST_F(StoreAuth, ChunkReplacedByAnotherAuthenticFileIsNamed) {
  Images images = SampleImages(40, 7);
  Commit(images);
  auto m = store_->Load("job", 1);
  ASSERT_TRUE(m.ok());
  const ImageFile* pages = nullptr;
  for (const auto& f : m->files())
    if (f.name() == "pages-1.img") pages = &f;
  ASSERT_NE(pages, nullptr);
  const ChunkId id = *ChunkId::FromBytes(pages->pieces(0).id());
  const std::string content = images["pages-1.img"].substr(0, pages->pieces(0).size());
  ASSERT_TRUE(WriteFileAtomic(store_->ChunkPath(id), ChunkFileFor(id, content, store_->key(), 9), 0600).ok());

  Status st = store_->Materialize(*m, dir_ / "out");
  EXPECT_EQ(st.code(), Code::kDataLoss);
  EXPECT_NE(st.message().find("chunk " + id.Hex() + " is not the file the snapshot was taken with"), std::string::npos)
      << st.message();
  VerifyOptions options;
  options.quarantine = true;
  auto report = store_->Verify(options);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->bad_chunks.size(), 1u);
  EXPECT_FALSE(report->bad_chunks[0].file_damaged) << report->bad_chunks[0].problem;
  EXPECT_EQ(report->quarantined, 0u);
}

// A job cannot plant bytes in another job's snapshot by storing content with the same
// XXH3-128 first: the ingest that meets an existing chunk it has not itself stored before
// compares the bytes and refuses to share them.
TEST_F(StoreAuth, ChunkWithACollidingIdIsNotShared) {
  auto [victim, planted] = CollidingPair(3000, 12);
  Images evil = SampleImages(10, 8);
  evil["core-42.img"] = planted;
  Commit(evil, "evil", 1);

  Images images = SampleImages(10, 9);
  images["core-42.img"] = victim;
  WriteImages(dir_ / "in", images);
  auto pending = store_->Ingest(dir_ / "in");
  ASSERT_FALSE(pending.ok());
  EXPECT_EQ(pending.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(pending.status().message().find("collision"), std::string::npos) << pending.status().message();
  EXPECT_NE(pending.status().message().find("core-42.img"), std::string::npos) << pending.status().message();
  // The planted chunk is still the evil job's, intact.
  ASSERT_TRUE(Restore("evil", 1, dir_ / "evil-out").ok());
  EXPECT_EQ(ReadImages(dir_ / "evil-out")["core-42.img"], planted);

  // Identical content is shared as before (and restores).
  Images same = SampleImages(10, 8);
  same["core-42.img"] = planted;
  WriteImages(dir_ / "in2", same);
  IngestStats stats;
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in2", "copy", 1, nullptr, &stats).ok());
  EXPECT_EQ(stats.new_chunks, 0u);
  ASSERT_TRUE(Restore("copy", 1, dir_ / "copy-out").ok());
  EXPECT_EQ(DiffImages(ReadImages(dir_ / "copy-out"), same), "");
}

// A file that is not ours already holds the name of a chunk an ingest needs: it is not
// trusted, the ingest writes its own in its place, and the snapshot restores.
TEST_F(StoreAuth, ForeignFileUnderAChunkNameIsReplaced) {
  Images images = SampleImages(10, 10);
  const std::string& core = images["core-42.img"];
  const ChunkId id = ChunkId::Of(core.data(), core.size());
  ASSERT_TRUE(WriteFileAtomic(store_->ChunkPath(id), ChunkFileFor(id, core, OtherKey()), 0600).ok());
  Commit(images);
  ASSERT_TRUE(Restore("job", 1, dir_ / "out").ok());
  EXPECT_EQ(DiffImages(ReadImages(dir_ / "out"), images), "");
  auto report = store_->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
}

// ---- the key file -------------------------------------------------------------------------

TEST_F(StoreAuth, KeyIsMadeWithTheStoreOnlyReadableByItsOwner) {
  const std::string key = dir_ / "secret.key";
  EXPECT_EQ(ChunkStore::DefaultKeyPath(dir_ / "store"), key);
  EXPECT_EQ(ChunkStore::DefaultKeyPath(dir_ / "store/"), key);
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_size, static_cast<off_t>(kKeyBytes));
  // Opened again, the same key.
  auto again = ChunkStore::Open(dir_ / "store");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->key().id(), store_->key().id());
  EXPECT_EQ(store_->key().id().size(), 16u);
}

TEST_F(StoreAuth, MissingKeyOfAStoreWithSnapshotsIsAnErrorNotANewKey) {
  Commit(SampleImages(10, 11));
  const std::string key = dir_ / "secret.key";
  ASSERT_EQ(::rename(key.c_str(), (dir_ / "saved.key").c_str()), 0);
  auto opened = ChunkStore::Open(dir_ / "store");
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kFailedPrecondition);
  const std::string& msg = opened.status().message();
  EXPECT_NE(msg.find(key), std::string::npos) << msg;
  EXPECT_NE(msg.find("is missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 snapshots"), std::string::npos) << msg;
  EXPECT_NE(::access(key.c_str(), F_OK), 0) << "a new key was made";
  // Put back, everything restores.
  ASSERT_EQ(::rename((dir_ / "saved.key").c_str(), key.c_str()), 0);
  auto back = ChunkStore::Open(dir_ / "store");
  ASSERT_TRUE(back.ok()) << back.status().message();
  auto m = back->Load("job", 1);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_TRUE(back->Materialize(*m, dir_ / "out").ok());
}

TEST_F(StoreAuth, DamagedOrExposedKeyFileIsRefused) {
  const std::string key = dir_ / "secret.key";
  auto bytes = ReadFile(key);
  ASSERT_TRUE(bytes.ok());
  // Short.
  ASSERT_TRUE(WriteFileAtomic(key, bytes->substr(0, 16), 0600).ok());
  auto opened = ChunkStore::Open(dir_ / "store");
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("holds 16 bytes, a key has 32"), std::string::npos) << opened.status().message();
  // Readable by others.
  ASSERT_TRUE(WriteFileAtomic(key, *bytes, 0644).ok());
  opened = ChunkStore::Open(dir_ / "store");
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("mode 0644"), std::string::npos) << opened.status().message();
  // A symbolic link.
  ASSERT_TRUE(WriteFileAtomic(dir_ / "elsewhere.key", *bytes, 0600).ok());
  ASSERT_EQ(::unlink(key.c_str()), 0);
  ASSERT_EQ(::symlink((dir_ / "elsewhere.key").c_str(), key.c_str()), 0);
  opened = ChunkStore::Open(dir_ / "store");
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("symbolic link"), std::string::npos) << opened.status().message();
  // Whole again, fine; and the key's bytes never appear in any message.
  ASSERT_EQ(::unlink(key.c_str()), 0);
  ASSERT_TRUE(WriteFileAtomic(key, *bytes, 0600).ok());
  EXPECT_TRUE(ChunkStore::Open(dir_ / "store").ok());
}

// A store without snapshots or chunks may get its key made (e.g. a crash between FORMAT and
// the key); a store opened with another key file is another daemon's view.
TEST_F(StoreAuth, KeyIsMadeForAnEmptyStoreAndAnotherKeyFileIsAnotherDaemon) {
  ASSERT_EQ(::unlink((dir_ / "secret.key").c_str()), 0);
  auto opened = ChunkStore::Open(dir_ / "store");
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  Commit(SampleImages(10, 12));  // with store_, whose key is gone: written under the old key
  auto fresh = ChunkStore::Open(dir_ / "store");
  ASSERT_TRUE(fresh.ok());
  auto loaded = fresh->Load("job", 1);
  EXPECT_EQ(loaded.status().code(), Code::kDataLoss);
  EXPECT_NE(loaded.status().message().find("not authenticated"), std::string::npos) << loaded.status().message();
  // An explicit key path that does not exist, for a store with data: refused, not made.
  auto other = ChunkStore::Open(dir_ / "store", dir_ / "other.key");
  EXPECT_EQ(other.status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace lazarus::store
