#include "daemon/request_check.h"

#include <gtest/gtest.h>

namespace lazarus {
namespace {

api::Request RunRequest(std::vector<std::string> argv, std::string cwd = "/tmp") {
  api::Request r;
  for (auto& a : argv) r.mutable_run()->add_argv(a);
  r.mutable_run()->set_cwd(cwd);
  return r;
}

TEST(CheckRequest, EmptyRequestIsRefused) {
  EXPECT_EQ(CheckRequest(api::Request()).code(), Code::kInvalidArgument);
}

TEST(CheckRequest, OrdinaryRunPasses) { EXPECT_TRUE(CheckRequest(RunRequest({"/bin/sleep", "10"})).ok()); }

TEST(CheckRequest, RunWithoutCommandOrWithRelativeCwdIsRefused) {
  EXPECT_FALSE(CheckRequest(RunRequest({})).ok());
  EXPECT_FALSE(CheckRequest(RunRequest({""})).ok());
  EXPECT_FALSE(CheckRequest(RunRequest({"/bin/true"}, "relative/dir")).ok());
}

TEST(CheckRequest, OversizedOrNulArgumentsAreRefused) {
  EXPECT_FALSE(CheckRequest(RunRequest({"/bin/echo", std::string(kMaxArgBytes + 1, 'x')})).ok());
  EXPECT_FALSE(CheckRequest(RunRequest({"/bin/echo", std::string("a\0b", 3)})).ok());
  std::vector<std::string> many(kMaxArgs + 1, "x");
  many[0] = "/bin/echo";
  EXPECT_FALSE(CheckRequest(RunRequest(many)).ok());
}

TEST(CheckRequest, EnvironmentEntriesNeedANameAndEquals) {
  auto r = RunRequest({"/bin/true"});
  r.mutable_run()->add_env("NOEQUALS");
  EXPECT_FALSE(CheckRequest(r).ok());
  r.mutable_run()->clear_env();
  r.mutable_run()->add_env("=value");
  EXPECT_FALSE(CheckRequest(r).ok());
  r.mutable_run()->clear_env();
  r.mutable_run()->add_env("HOME=/root");
  EXPECT_TRUE(CheckRequest(r).ok());
}

TEST(CheckRequest, JobReferencesAreShortWords) {
  api::Request r;
  r.mutable_status()->set_job("0badcafe");
  EXPECT_TRUE(CheckRequest(r).ok());
  r.mutable_status()->set_job("../../etc/passwd");
  EXPECT_FALSE(CheckRequest(r).ok());
  r.mutable_status()->set_job(std::string(kMaxNameBytes + 1, 'a'));
  EXPECT_FALSE(CheckRequest(r).ok());
  r.mutable_status()->set_job("");
  EXPECT_FALSE(CheckRequest(r).ok());
}

TEST(CheckRequest, AttachOfInitOrNegativePidIsRefused) {
  api::Request r;
  r.mutable_attach()->set_pid(1);
  EXPECT_FALSE(CheckRequest(r).ok());
  r.mutable_attach()->set_pid(-5);
  EXPECT_FALSE(CheckRequest(r).ok());
  r.mutable_attach()->set_pid(1234);
  EXPECT_TRUE(CheckRequest(r).ok());
}

}  // namespace
}  // namespace lazarus
