#include "common/fs_util.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "temp_dir.h"

namespace lazarus {
namespace {

using testing::TempDir;

TEST(FsUtil, MakeDirsCreatesNestedDirectoriesWithMode) {
  TempDir dir;
  ASSERT_TRUE(MakeDirs(dir / "a/b/c", 0700).ok());
  struct stat st {};
  ASSERT_EQ(::stat((dir / "a/b/c").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(MakeDirs(dir / "a/b/c").ok()) << "existing directories are fine";
}

TEST(FsUtil, MakeDirsOverAFileFails) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir / "file", "x").ok());
  EXPECT_FALSE(MakeDirs(dir / "file").ok());
  EXPECT_FALSE(MakeDirs(dir / "file/sub").ok());
}

TEST(FsUtil, WriteIntoMissingDirectoryNamesThePath) {
  TempDir dir;
  Status st = WriteFileAtomic(dir / "missing/job.rec", "x");
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_NE(st.message().find("missing/job.rec"), std::string::npos) << st.message();
}

TEST(FsUtil, ReadFileRefusesFilesOverTheLimit) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir / "big", std::string(100, 'x')).ok());
  EXPECT_EQ(ReadFile(dir / "big", 99).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ReadFile(dir / "big", 100).value().size(), 100u);
}

TEST(FsUtil, TreeSizeAddsUpRegularFiles) {
  TempDir dir;
  ASSERT_TRUE(MakeDirs(dir / "d").ok());
  ASSERT_TRUE(WriteFileAtomic(dir / "a", std::string(10, 'x')).ok());
  ASSERT_TRUE(WriteFileAtomic(dir / "d/b", std::string(32, 'y')).ok());
  EXPECT_EQ(TreeSize(dir.path()), 42u);
  EXPECT_TRUE(FsyncTree(dir.path()).ok());
}

TEST(FsUtil, RemoveTreeOfMissingPathIsFine) {
  TempDir dir;
  EXPECT_TRUE(RemoveTree(dir / "nothing-here").ok());
}

}  // namespace
}  // namespace lazarus
