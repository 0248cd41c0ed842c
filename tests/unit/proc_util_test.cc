#include "common/proc_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

namespace lazarus {
namespace {

TEST(ProcUtil, SelfIsAliveWithItsStartTime) {
  auto start = ProcessStartTime(::getpid());
  ASSERT_TRUE(start.has_value());
  EXPECT_TRUE(ProcessAlive(::getpid(), *start));
  EXPECT_FALSE(ProcessAlive(::getpid(), *start + 1)) << "a different start time is a different process";
}

TEST(ProcUtil, ZombieIsNotAlive) {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  // Wait until it is a zombie, without reaping it.
  for (int i = 0; i < 200; ++i) {
    auto st = ReadProcStat(child);
    if (st && st->state == 'Z') break;
    ::usleep(10000);
  }
  EXPECT_FALSE(ProcessAlive(child, 0));
  ::waitpid(child, nullptr, 0);
}

TEST(ProcUtil, TreeListsChildren) {
  pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  auto tree = ProcessTree(::getpid());
  EXPECT_NE(std::find(tree.begin(), tree.end(), child), tree.end());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
}

TEST(ProcUtil, DescribesWaitStatus) {
  EXPECT_EQ(DescribeWaitStatus(3 << 8), "exited 3");
  EXPECT_EQ(DescribeWaitStatus(SIGKILL), "killed by SIGKILL");
}

}  // namespace
}  // namespace lazarus
