// The LD_PRELOAD shim on unmodified programs (lzc-ledger-client, lzc-shim-io link nothing
// of ours), without the daemon: run under the shim with a log, bump the incarnation as the
// daemon does before a restore, run again from the start (client_test_util.h).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "tests/client/client_test_util.h"

namespace lazarus::client_test {
namespace {

// The ledger of acceptance test 1: a TCP server on loopback, not under Lazarus, that
// counts requests by item and answers "OK <id> <value>".
class Ledger {
 public:
  Ledger() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      std::abort();
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~Ledger() {
    stop_ = true;
    acceptor_.join();
    for (auto& t : connections_) t.join();
    ::close(listener_);
  }
  [[nodiscard]] int port() const { return port_; }
  std::map<std::string, int> counts() {
    std::lock_guard lock(mu_);
    return counts_;
  }
  static long ValueOf(const std::string& id) { return std::stol(id) * 3 + 1; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) connections_.emplace_back([this, fd] { Serve(fd); });
    }
  }
  void Serve(int fd) {
    std::string in;
    char buf[256];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) == 0) {
        if (stop_) break;
        continue;
      }
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = in.find('\n')) != std::string::npos) {
        const std::string line = in.substr(0, nl);
        in.erase(0, nl + 1);
        if (line.rfind("ADD ", 0) != 0) continue;
        const std::string id = line.substr(4);
        {
          std::lock_guard lock(mu_);
          ++counts_[id];
        }
        const std::string reply = "OK " + id + " " + std::to_string(ValueOf(id)) + "\n";
        if (::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) break;
      }
    }
    ::close(fd);
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> connections_;
  std::mutex mu_;
  std::map<std::string, int> counts_;
};

class ShimTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeLog(log_); }
  RunResult Shim(const std::vector<std::string>& args, long monotonic_offset_s = 0) {
    RunOptions o;
    o.log = log_;
    o.shim = true;
    o.monotonic_offset_s = monotonic_offset_s;
    return RunProgram(args, o);
  }
  ScratchDir dir_;
  const std::string log_ = dir_ / "log";
};

TEST(ShimInert, ProgramRunsNormallyWithoutALog) {
  RunOptions o;
  o.shim = true;
  const RunResult r = RunProgram({"lzc-shim-io", "misc"}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("recvmsg=6 'dgram2'"), std::string::npos) << r.out;
}

class FileWriteTest : public ShimTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(FileWriteTest, WritesAreSkippedOnReplayWithTheOffsetAdvanced) {
  const std::string out = dir_ / "out";
  const RunResult first = Shim({"lzc-shim-io", "files", out, "5", GetParam()});
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_EQ(first.out, "offset=35\n");
  BumpIncarnation(log_);
  // The restored program writes 3 lines more: the first 5 are replayed (skipped), the file
  // offset is where the original writes left it, so the live ones land after them.
  const RunResult second = Shim({"lzc-shim-io", "files", out, "8", GetParam()});
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(second.out, "offset=56\n");
  std::string want;
  for (int i = 0; i < 8; ++i) want += "line " + std::to_string(i) + "\n";
  EXPECT_EQ(ReadText(out), want);
}

INSTANTIATE_TEST_SUITE_P(Calls, FileWriteTest, ::testing::Values("write", "append", "writev", "pwrite"));

class LedgerTest : public ShimTest {
 protected:
  void SetUp() override {
    ShimTest::SetUp();
    std::string items;
    for (int i = 0; i < kItems; ++i) items += std::to_string(100 + i) + "\n";
    WriteText(items_, items);
    for (int i = 0; i < kItems; ++i) {
      reference_ += std::to_string(100 + i) + " " + std::to_string(Ledger::ValueOf(std::to_string(100 + i))) + "\n";
      total_ += Ledger::ValueOf(std::to_string(100 + i));
    }
  }
  RunResult Client(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"lzc-ledger-client", std::to_string(ledger_.port()), items_, out_};
    args.insert(args.end(), extra.begin(), extra.end());
    return Shim(args);
  }
  static constexpr int kItems = 20;
  Ledger ledger_;
  const std::string items_ = dir_ / "items";
  const std::string out_ = dir_ / "out";
  std::string reference_;  // the output file of an uncrashed run
  long total_ = 0;
};

TEST_F(LedgerTest, ReplayAnswersEveryRequestFromTheLog) {
  const RunResult first = Client();
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_NE(first.out.find("total=" + std::to_string(total_) + " items=20 reconnects=0"), std::string::npos) << first.out;
  EXPECT_EQ(ReadText(out_), reference_);
  const auto counts = ledger_.counts();
  BumpIncarnation(log_);
  const RunResult second = Client();
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_NE(second.out.find("total=" + std::to_string(total_) + " items=20 reconnects=0"), std::string::npos)
      << second.out;
  EXPECT_EQ(ledger_.counts(), counts) << "the ledger saw requests again";
  EXPECT_EQ(ReadText(out_), reference_) << "output lines written twice";
}

TEST_F(LedgerTest, CrashMidwayReplaysThenReconnectsAndGoesOnLive) {
  ASSERT_EQ(Client({"--die-after", "8"}).status, 0);
  EXPECT_EQ(ledger_.counts().size(), 8u);
  BumpIncarnation(log_);
  const RunResult r = Client();
  ASSERT_EQ(r.status, 0) << r.err;
  // The replayed connect leaves the socket unconnected, as a restored connection comes back
  // closed: the first live send fails and the program's own reconnect logic runs.
  EXPECT_NE(r.out.find("total=" + std::to_string(total_) + " items=20 reconnects=1"), std::string::npos) << r.out;
  EXPECT_EQ(ReadText(out_), reference_);
  const auto counts = ledger_.counts();
  EXPECT_EQ(counts.size(), 20u);
  for (const auto& [id, n] : counts) EXPECT_EQ(n, 1) << "item " << id;
}

TEST_F(LedgerTest, OnlyTheRequestWhoseReplyWasLostIsSentTwice) {
  ASSERT_EQ(Client({"--die-after-send", "8"}).status, 0);  // item 108 sent, reply never read
  BumpIncarnation(log_);
  const RunResult r = Client();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("total=" + std::to_string(total_) + " items=20"), std::string::npos) << r.out;
  EXPECT_EQ(ReadText(out_), reference_);
  for (const auto& [id, n] : ledger_.counts()) EXPECT_EQ(n, id == "108" ? 2 : 1) << "item " << id;
}

TEST_F(ShimTest, ClocksNeverRunBackwardsAfterReplay) {
  // The first run's CLOCK_MONOTONIC is 1000 s ahead (a time namespace), as the readings a
  // crashed job logged are ahead of the restored job's clock (CRIU restarts it at the dump).
  const RunResult first = Shim({"lzc-shim-io", "clock", "5"}, /*monotonic_offset_s=*/1000);
  ASSERT_EQ(first.status, 0) << first.err;
  BumpIncarnation(log_);
  const RunResult second = Shim({"lzc-shim-io", "clock", "10"});
  ASSERT_EQ(second.status, 0) << second.err;
  const auto a = Lines(first.out), b = Lines(second.out);
  ASSERT_EQ(a.size(), 7u);  // mono 0, mono 1, real ..., mono 2..4, monotonic=1
  ASSERT_EQ(b.size(), 12u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b[i], a[i]) << "reading " << i << " was not replayed";
  EXPECT_EQ(b.back(), "monotonic=1") << second.out;
  // Live readings after the replay moved past the last replayed one, not back by 1000 s.
  const long long last_replayed = std::stoll(a[5].substr(a[5].rfind(' ') + 1));
  const long long first_live = std::stoll(b[6].substr(b[6].rfind(' ') + 1));
  EXPECT_GT(first_live, last_replayed);
  EXPECT_LT(first_live - last_replayed, 10'000'000'000LL);
}

TEST_F(ShimTest, SleepsReturnAtOnceWhileReplaying) {
  const std::string out = dir_ / "out";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(Shim({"lzc-shim-io", "ticks", out, "25"}).status, 0);  // 25 ticks, 20 ms apart
  const auto t1 = std::chrono::steady_clock::now();
  BumpIncarnation(log_);
  ASSERT_EQ(Shim({"lzc-shim-io", "ticks", out, "30"}).status, 0);
  const auto t2 = std::chrono::steady_clock::now();
  EXPECT_GE(t1 - t0, std::chrono::milliseconds(500));
  // 25 replayed ticks without their sleeps, then 5 live ones with theirs.
  EXPECT_LT(t2 - t1, std::chrono::milliseconds(400));
  const auto lines = Lines(ReadText(out));
  ASSERT_EQ(lines.size(), 30u);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(lines[i].rfind("tick " + std::to_string(i + 1) + " ", 0), 0u) << lines[i];
}

TEST_F(ShimTest, RandomnessPipesReadinessAndDatagramsAreReplayed) {
  const RunResult first = Shim({"lzc-shim-io", "misc"});
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_NE(first.out.find("pipe read=4 'ping'"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("epoll=1 data=1234"), std::string::npos) << first.out;
  std::set<uint32_t> kinds;
  for (const auto& rec : ReadLog(log_)) kinds.insert(rec.kind - 0x80000000u);
  for (uint32_t id : {4u, 5u, 6u, 7u, 8u, 9u, 10u, 11u, 12u, 14u, 19u, 21u, 22u}) EXPECT_EQ(kinds.count(id), 1u) << id;
  BumpIncarnation(log_);
  const RunResult second = Shim({"lzc-shim-io", "misc"});
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(second.out, first.out);  // the same random bytes, readiness, data
}

TEST_F(ShimTest, ChangedInputMakesReplayDivergeAtTheWrite) {
  const std::string in = dir_ / "in", out = dir_ / "out";
  WriteText(in, "hello\n");
  ASSERT_EQ(Shim({"lzc-shim-io", "copy", in, out}).status, 0);
  BumpIncarnation(log_);
  WriteText(in, "HELLO\n");  // reads of regular files are not recorded: the program takes another path
  const RunResult r = Shim({"lzc-shim-io", "copy", in, out});
  EXPECT_EQ(r.status, 86) << r.err;
  EXPECT_NE(r.err.find("channel 0, sequence 0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(write)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("data \"hello\\n\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\"HELLO\\n\""), std::string::npos) << r.err;
  EXPECT_EQ(ReadText(out), "hello\n");
}

TEST(ShimSegments, LogRollOversDoNotChangeTheProgramsDescriptorNumbers) {
  // 8 KiB segments: the log rolls over every couple of dozen writes while the program opens
  // files. The replay appends nothing, so it rolls over at other moments; the program must
  // get the same descriptor numbers all the same (they are part of what is recorded).
  ScratchDir dir;
  MakeLog(dir / "log", effectlog::kMinSegmentSize);
  RunOptions o;
  o.log = dir / "log";
  o.shim = true;
  const RunResult first = RunProgram({"lzc-shim-io", "fds", dir / "out", "20"}, o);
  ASSERT_EQ(first.status, 0) << first.err;
  auto segments = effectlog::ListSegments(dir / "log");
  ASSERT_TRUE(segments.ok());
  EXPECT_GT(segments->size(), 3u);
  BumpIncarnation(dir / "log");
  const RunResult second = RunProgram({"lzc-shim-io", "fds", dir / "out", "30"}, o);
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(second.out.substr(0, first.out.size()), first.out);
  EXPECT_EQ(Lines(ReadText(dir / "out")).size(), 150u);
}

TEST(ShimSegments, ProgramThatClosesEveryDescriptorKeepsItsLog) {
  // sync durability: every append fdatasyncs the segment through the library's descriptor.
  ScratchDir dir;
  MakeLog(dir / "log", effectlog::kDefaultSegmentSize, effectlog::DurabilityMode::kSync);
  RunOptions o;
  o.log = dir / "log";
  o.shim = true;
  const RunResult r = RunProgram({"lzc-shim-io", "closeall", dir / "out"}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(ReadText(dir / "out"), "a\nb\n");
  EXPECT_EQ(ReadLog(dir / "log").size(), 4u);
}

TEST_F(ShimTest, ForkedChildRunsInert) {
  const std::string out = dir_ / "out";
  const RunResult first = Shim({"lzc-shim-io", "fork", out});
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_EQ(ReadText(out), "child\nparent\n");
  for (const auto& rec : ReadLog(log_)) EXPECT_EQ(rec.channel, 0u);
  EXPECT_EQ(ReadLog(log_).size(), 2u);  // the parent's write: INTENT, RESULT
  BumpIncarnation(log_);
  ASSERT_EQ(Shim({"lzc-shim-io", "fork", out}).status, 0);
  // The child is not replayed (its write happens again); the parent's write is.
  EXPECT_EQ(ReadText(out), "child\nparent\nchild\n");
}

TEST_F(ShimTest, ExplicitEffectsAndTheShimShareOneEngine) {
  const std::string performed = dir_ / "performed";
  ASSERT_EQ(Shim({"lzc-effects", "3", "--performed", performed}).status, 0);
  // The perform functions' open/write/close are part of their effects: no shim records.
  const auto log = ReadLog(log_);
  ASSERT_EQ(log.size(), 6u);
  for (const auto& rec : log) EXPECT_LT(rec.kind, 0x80000000u);
  BumpIncarnation(log_);
  const RunResult r = Shim({"lzc-effects", "3", "--performed", performed});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(ReadText(performed), "0\n1\n2\n");
  EXPECT_NE(r.out.find("done performed=0 replayed=3"), std::string::npos) << r.out;
}

TEST(ShimTable, ReadmeListsEveryCallOfTheTable) {
  const std::string table = ReadText(std::string(LAZARUS_SOURCE_DIR) + "/client-lib/shim/calls.def");
  const std::string readme = ReadText(std::string(LAZARUS_SOURCE_DIR) + "/client-lib/README.md");
  ASSERT_FALSE(table.empty());
  const std::regex row(R"(LAZARUS_SHIM_(CALL|UNSUPPORTED)\(([A-Za-z0-9_-]+),)");
  int rows = 0;
  for (auto it = std::sregex_iterator(table.begin(), table.end(), row); it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[2];
    if (name == "name") continue;  // the comment that explains the columns
    ++rows;
    EXPECT_NE(readme.find("`" + name + "`"), std::string::npos) << name << " is not in client-lib/README.md";
  }
  EXPECT_GT(rows, 40);
}

}  // namespace
}  // namespace lazarus::client_test
