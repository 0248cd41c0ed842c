// Every subcommand given wrong, missing or extra arguments prints its usage and exits 2,
// before it reaches the daemon.
#include "tests/integration/harness.h"

namespace lztest {
namespace {

TEST(CliUsage, WrongMissingOrExtraArgumentsPrintUsageAndExit2) {
  const std::vector<std::vector<std::string>> cases = {
      {"status"}, {"status", "a", "b"}, {"checkpoint"}, {"checkpoint", "--bogus", "x"},
      {"snapshots"}, {"snapshots", "a", "b"}, {"run"}, {"run", "--interval", "-1", "--", "/bin/true"},
      {"run", "--keep", "0", "--", "/bin/true"}, {"restore"}, {"restore", "x", "--snapshot", "abc"},
      {"restore", "x", "--snapshot", "0"}, {"restore", "x", "--name", "n"}, {"kill"}, {"kill", "a", "b"},
      {"rm"}, {"rm", "a", "b"}, {"attach"}, {"attach", "abc"}, {"log"}, {"log", "x", "--from", "no"},
      {"verify"}, {"verify", "a", "--all"}, {"policy"}, {"policy", "a", "--keep-every", "-5"},
      {"list", "extra"}, {"frobnicate"}, {}};
  for (const auto& args : cases) {
    std::vector<std::string> argv{BinPath("lazarus"), "--socket", "/nonexistent/lazarus.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    CmdResult r = RunCommand(argv);
    std::string shown;
    for (const auto& a : args) shown += a + " ";
    EXPECT_EQ(r.exit_code, 2) << "lazarus " << shown << "\n" << r.Describe();
    EXPECT_NE(r.err.find("lazarus"), std::string::npos) << shown;
    EXPECT_TRUE(r.err.find("Usage: lazarus") != std::string::npos || r.err.find("--help") != std::string::npos)
        << "lazarus " << shown << " did not show its usage:\n" << r.err;
  }
}

TEST(CliUsage, EveryCommandHasHelp) {
  for (const char* cmd : {"run", "list", "status", "checkpoint", "snapshots", "restore", "kill", "rm", "attach",
                          "policy", "log", "verify"}) {
    CmdResult r = RunCommand({BinPath("lazarus"), cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.Describe();
    EXPECT_NE(r.out.find(std::string("Usage: lazarus ") + cmd), std::string::npos) << r.out;
  }
  CmdResult r = RunCommand({BinPath("lazarusd"), "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("--state-dir"), std::string::npos);
}

}  // namespace
}  // namespace lztest
