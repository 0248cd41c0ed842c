// Ingest -> commit -> materialize gives back CRIU's image files byte for byte, for
// synthetic images, for snapshots stored as patches of earlier ones, and for real CRIU dumps.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "snapshot/chunk_store.h"
#include "store_test_util.h"
#include "temp_dir.h"

namespace lazarus::store {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::store::testing;

class StoreRoundTrip : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ChunkStore::Open(dir_ / "store");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_.emplace(std::move(s).value());
  }
  // Materializes job/id and returns what came out.
  Images RoundTrip(uint32_t id, const std::string& job = "job") {
    auto m = store_->Load(job, id);
    EXPECT_TRUE(m.ok()) << m.status().message();
    if (!m.ok()) return {};
    const std::string out = dir_ / ("out-" + std::to_string(id));
    Status st = store_->Materialize(*m, out);
    EXPECT_TRUE(st.ok()) << st.message();
    return ReadImages(out);
  }

  TempDir dir_;
  std::optional<ChunkStore> store_;
};

TEST_F(StoreRoundTrip, MaterializedImagesAreByteIdentical) {
  const Images images = SampleImages(700, 1);
  WriteImages(dir_ / "in", images);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  EXPECT_EQ(DiffImages(RoundTrip(1), images), "");
}

TEST_F(StoreRoundTrip, FileModesAreKept) {
  WriteImages(dir_ / "in", SampleImages(10, 2));
  ASSERT_EQ(::chmod((dir_ / "in/core-42.img").c_str(), 0644), 0);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  ASSERT_EQ(RoundTrip(1).size(), 5u);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "out-1/core-42.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_EQ(::stat((dir_ / "out-1/pages-1.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(StoreRoundTrip, UnchangedSnapshotStoresNothingNew) {
  WriteImages(dir_ / "in", SampleImages(500, 3));
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  IngestStats stats;
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 2, nullptr, &stats).ok());
  EXPECT_EQ(stats.new_chunks, 0u);
  EXPECT_EQ(stats.new_stored_bytes, 0u);
  EXPECT_EQ(stats.reused_pieces, stats.pieces);
}

// 1% of the pages rewritten: with the previous snapshot as base, only about those pages are
// stored, and every generation of patches (patch of a patched piece) reads back exactly.
TEST_F(StoreRoundTrip, ChangedPagesAreStoredAsPatchesOfTheBase) {
  Images images = SampleImages(6400, 4);
  WriteImages(dir_ / "in", images);
  IngestStats first;
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1, nullptr, &first).ok());
  for (uint32_t id = 2; id <= 4; ++id) {
    RewritePages(images["pages-1.img"], 100, id * 7, 1000 * id);
    WriteImages(dir_ / "in", images);
    auto base = store_->Load("job", id - 1);
    ASSERT_TRUE(base.ok());
    IngestStats stats;
    ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", id, &*base, &stats).ok());
    EXPECT_GT(stats.patched_pieces, 0u);
    const double fraction = static_cast<double>(stats.new_stored_bytes) / static_cast<double>(stats.raw_bytes);
    EXPECT_LT(fraction, 0.03) << "snapshot " << id << ": " << stats.new_stored_bytes << " of " << stats.raw_bytes;
    EXPECT_EQ(DiffImages(RoundTrip(id), images), "") << "snapshot " << id;
  }
  // The older snapshots still read back as they were.
  EXPECT_EQ(DiffImages(RoundTrip(1), SampleImages(6400, 4)), "");
}

TEST_F(StoreRoundTrip, PatchesFollowPagesThatMovedInTheImage) {
  Images images = SampleImages(2000, 5);
  WriteImages(dir_ / "in", images);
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  // A mapping grew by 3 pages near the front (everything after moves) and pages changed after it.
  images["pages-1.img"].insert(50 * kPage, Pages(3, 55));
  RewritePages(images["pages-1.img"], 97, 300, 66);
  WriteImages(dir_ / "in", images);
  auto base = store_->Load("job", 1);
  ASSERT_TRUE(base.ok());
  IngestStats stats;
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 2, &*base, &stats).ok());
  EXPECT_GT(stats.patched_pieces, 10u);
  EXPECT_EQ(DiffImages(RoundTrip(2), images), "");
}

TEST_F(StoreRoundTrip, CommitRefusesAnExistingSnapshotId) {
  WriteImages(dir_ / "in", SampleImages(10, 6));
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", 1).ok());
  EXPECT_EQ(IngestAndCommit(*store_, dir_ / "in", "job", 1).code(), Code::kAlreadyExists);
  EXPECT_EQ(IngestAndCommit(*store_, dir_ / "in", "../x", 2).code(), Code::kInvalidArgument);
}

TEST_F(StoreRoundTrip, ListLoadAndDelete) {
  WriteImages(dir_ / "in", SampleImages(10, 7));
  for (uint32_t id : {3u, 1u, 2u}) ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "job", id).ok());
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "in", "other", 1).ok());
  auto list = store_->List("job");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].snapshot_id, 1u);
  EXPECT_EQ(list[2].snapshot_id, 3u);
  uint64_t raw = 0;
  for (const auto& [name, content] : SampleImages(10, 7)) raw += content.size();
  EXPECT_EQ(list[0].raw_bytes, raw);
  EXPECT_GT(list[0].created_unix_ms, 0);
  EXPECT_EQ(store_->ListJobs(), (std::vector<std::string>{"job", "other"}));
  ASSERT_TRUE(store_->Delete("job", 2).ok());
  EXPECT_EQ(store_->ListIds("job"), (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(store_->Delete("job", 2).code(), Code::kNotFound);
  EXPECT_EQ(store_->Load("job", 2).status().code(), Code::kNotFound);
  ASSERT_TRUE(store_->DeleteJob("other").ok());
  EXPECT_EQ(store_->ListJobs(), (std::vector<std::string>{"job"}));
}

TEST_F(StoreRoundTrip, ManifestCarriesWhatTheDaemonFillsIn) {
  WriteImages(dir_ / "in", SampleImages(10, 8));
  auto pending = store_->Ingest(dir_ / "in");
  ASSERT_TRUE(pending.ok());
  pending->manifest().set_criu_version("4.2.1");
  pending->manifest().set_effectlog_position(12345);
  pending->manifest().mutable_record()->set_dump_ms(42);
  ASSERT_TRUE(store_->Commit("job", 1, std::move(pending).value()).ok());
  auto m = store_->Load("job", 1);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->criu_version(), "4.2.1");
  EXPECT_EQ(m->effectlog_position(), 12345u);
  EXPECT_EQ(m->record().dump_ms(), 42u);
  EXPECT_EQ(m->format(), kManifestFormat);
  EXPECT_EQ(m->chunker().avg_pages(), Chunking{}.avg_pages);
}

TEST_F(StoreRoundTrip, ImageDirectoryWithASubdirectoryIsRefused) {
  WriteImages(dir_ / "in", SampleImages(1, 9));
  ASSERT_TRUE(MakeDirs(dir_ / "in/sub").ok());
  auto pending = store_->Ingest(dir_ / "in");
  ASSERT_FALSE(pending.ok());
  EXPECT_EQ(pending.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CountEntries(dir_ / "store/leases"), 0u);
  EXPECT_EQ(CountEntries(dir_ / "store/tmp"), 0u);
}

// ---- real CRIU images -------------------------------------------------------------------

// A real process tree (a shell holding ~3 MB of text in a variable, and its `sleep` child)
// that CRIU can dump. Killed at the end.
class ShellJob {
 public:
  ShellJob() {
    pid_ = ::fork();
    if (pid_ == 0) {
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::setsid();
      ::execl("/bin/sh", "sh", "-c", "x=$(head -c 1500000 /dev/urandom | od -x); sleep 1000; echo \"$x\"", nullptr);
      ::_exit(127);
    }
  }
  ~ShellJob() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

std::string Criu() {
  for (const char* path : {"/usr/local/sbin/criu", "/usr/sbin/criu"})
    if (::access(path, X_OK) == 0) return path;
  return "";
}

bool CriuDump(pid_t pid, const std::string& dir) {
  (void)MakeDirs(dir);
  const std::string cmd = Criu() + " dump -t " + std::to_string(pid) + " -D " + dir +
                          " --leave-running --shell-job -o " + dir + "/../dump.log >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

TEST_F(StoreRoundTrip, RealCriuDumpsRoundTrip) {
  ASSERT_FALSE(Criu().empty()) << "CRIU is missing: scripts/setup.sh installs it";
  ASSERT_EQ(::geteuid(), 0u) << "CRIU needs root: run this test as root (CI does)";
  ShellJob job;
  ::usleep(800 * 1000);  // the shell fills its variable and starts sleep
  ASSERT_TRUE(CriuDump(job.pid(), dir_ / "dump1/images")) << "criu dump failed: see " << (dir_ / "dump1/dump.log");
  ASSERT_TRUE(CriuDump(job.pid(), dir_ / "dump2/images"));
  const Images first = ReadImages(dir_ / "dump1/images");
  ASSERT_TRUE(first.count("inventory.img"));
  ASSERT_TRUE(first.count("pages-1.img"));
  IngestStats s1, s2;
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "dump1/images", "real", 1, nullptr, &s1).ok());
  auto base = store_->Load("real", 1);
  ASSERT_TRUE(base.ok());
  ASSERT_TRUE(IngestAndCommit(*store_, dir_ / "dump2/images", "real", 2, &*base, &s2).ok());
  EXPECT_EQ(DiffImages(RoundTrip(1, "real"), first), "");
  EXPECT_EQ(DiffImages(RoundTrip(2, "real"), ReadImages(dir_ / "dump2/images")), "");
  // The second dump of an idle process is mostly the first one again.
  EXPECT_LT(s2.new_stored_bytes * 4, s1.new_stored_bytes) << s2.new_stored_bytes << " vs " << s1.new_stored_bytes;
}

}  // namespace
}  // namespace lazarus::store
