#include "snapshot/open_files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common/fs_util.h"
#include "temp_dir.h"

namespace lazarus::snapshot {
namespace {

using testing::TempDir;

// A child that holds FILE open for writing at a known offset, then waits to be killed.
class FileHolder {
 public:
  FileHolder(const std::string& path, int flags, off_t pos) {
    int ready[2];
    EXPECT_EQ(::pipe(ready), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(path.c_str(), flags, 0644);
      if (fd < 0 || ::lseek(fd, pos, SEEK_SET) < 0) ::_exit(1);
      char c = 'r';
      (void)!::write(ready[1], &c, 1);
      ::pause();
      ::_exit(0);
    }
    ::close(ready[1]);
    char c;
    EXPECT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
  }
  ~FileHolder() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

const records::OpenFile* FindFile(const std::vector<records::OpenFile>& files, const std::string& path) {
  for (const auto& f : files)
    if (f.path() == path) return &f;
  return nullptr;
}

TEST(OpenFiles, CollectsPathFlagsAndOffsetOfAWritableFile) {
  TempDir dir;
  const std::string path = dir / "data";
  ASSERT_TRUE(WriteFileAtomic(path, std::string(100, 'x')).ok());
  FileHolder holder(path, O_WRONLY, 42);
  auto files = CollectOpenRegularFiles(holder.pid());
  const auto* f = FindFile(files, path);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->pos(), 42);
  EXPECT_EQ(f->flags() & O_ACCMODE, O_WRONLY);
}

TEST(OpenFiles, LeavesDeletedFilesToCriu) {
  TempDir dir;
  const std::string path = dir / "gone";
  ASSERT_TRUE(WriteFileAtomic(path, "x").ok());
  FileHolder holder(path, O_RDONLY, 0);
  ::unlink(path.c_str());
  auto files = CollectOpenRegularFiles(holder.pid());
  for (const auto& f : files) EXPECT_EQ(f.path().find("gone"), std::string::npos) << f.path();
}

TEST(OpenFiles, ReopensAtTheRecordedOffsetEvenAfterTheFileGrew) {
  TempDir dir;
  const std::string path = dir / "data";
  ASSERT_TRUE(WriteFileAtomic(path, std::string(100, 'x')).ok());
  google::protobuf::RepeatedPtrField<records::OpenFile> files;
  auto* f = files.Add();
  f->set_path(path);
  f->set_flags(O_WRONLY);
  f->set_pos(42);
  ASSERT_TRUE(WriteFileAtomic(path, std::string(500, 'y')).ok());
  auto reopened = ReopenForRestore(files, {});
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  ASSERT_EQ(reopened->size(), 1u);
  EXPECT_EQ((*reopened)[0].key, path.substr(1)) << "CRIU names files without the leading slash";
  EXPECT_EQ(::lseek((*reopened)[0].fd.get(), 0, SEEK_CUR), 42);
  EXPECT_EQ(ReadFile(path).value().size(), 500u) << "reopening never truncates";
}

TEST(OpenFiles, RedirectOpensAnotherPath) {
  TempDir dir;
  google::protobuf::RepeatedPtrField<records::OpenFile> files;
  auto* f = files.Add();
  f->set_path("/old/job/stdout.log");
  f->set_flags(O_WRONLY | O_APPEND);
  auto reopened = ReopenForRestore(files, {{"/old/job/stdout.log", dir / "stdout.log"}});
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  EXPECT_EQ((*reopened)[0].key, "old/job/stdout.log");
  EXPECT_TRUE(ReadFile(dir / "stdout.log").ok()) << "the redirected file is created";
}

TEST(OpenFiles, MissingFileFailsNamingIt) {
  google::protobuf::RepeatedPtrField<records::OpenFile> files;
  auto* f = files.Add();
  f->set_path("/nonexistent/lazarus/file");
  f->set_flags(O_RDONLY);
  auto reopened = ReopenForRestore(files, {});
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.status().message().find("/nonexistent/lazarus/file"), std::string::npos);
}

}  // namespace
}  // namespace lazarus::snapshot
