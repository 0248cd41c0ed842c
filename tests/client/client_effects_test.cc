// The replay engine through the explicit-effects API (lazarus.h, lazarus.hpp), without the
// daemon: a test program runs with LAZARUS_LOG, the test bumps the incarnation as the daemon
// does before a restore, and the program runs again from the start (client_test_util.h).
// Performed callbacks leave a line in a file, so "replayed, not redone" is counted.
#include <set>
#include <string>

#include "effectlog/format.h"
#include "tests/client/client_test_util.h"

namespace lazarus::client_test {
namespace {

using effectlog::RecordType;

std::vector<std::string> EffectLines(const std::string& out) {
  std::vector<std::string> v;
  for (const auto& l : Lines(out)) {
    if (l.rfind("effect ", 0) == 0) v.push_back(l);
  }
  return v;
}

class EffectsTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeLog(log_); }
  RunResult Effects(std::vector<std::string> args) {
    args.insert(args.begin(), "lzc-effects");
    args.push_back("--performed");
    args.push_back(performed_);
    RunOptions o;
    o.log = log_;
    return RunProgram(args, o);
  }
  std::string Performed() const { return ReadText(performed_); }

  ScratchDir dir_;
  const std::string log_ = dir_ / "log";
  const std::string performed_ = dir_ / "performed";
};

TEST(NotUnderLazarus, EffectsArePerformedAndNothingIsRecorded) {
  ScratchDir dir;
  const RunResult r = RunProgram({"lzc-effects", "3", "--performed", dir / "performed"}, RunOptions{});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(ReadText(dir / "performed"), "0\n1\n2\n");
  EXPECT_NE(r.out.find("effect 1 code=0 status=10 result=result-1 replayed=0 key=-:0:2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("active=0"), std::string::npos) << r.out;
}

TEST_F(EffectsTest, EachEffectIsAnIntentThenAResult) {
  const RunResult r = Effects({"2"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto log = ReadLog(log_);
  ASSERT_EQ(log.size(), 4u);
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].channel, 0u);
    EXPECT_EQ(log[i].sequence, i);
    EXPECT_EQ(log[i].type, static_cast<uint16_t>(i % 2 == 0 ? RecordType::kIntent : RecordType::kResult));
    EXPECT_LT(log[i].kind, 0x80000000u);
  }
  EXPECT_EQ(log[0].payload, "item-0");  // the INTENT's request summary
  EXPECT_EQ(log[3].payload.substr(8), "result-1");  // after the 8-byte result header
}

TEST_F(EffectsTest, RestoredRunReplaysEffectsWithoutPerformingThem) {
  const RunResult first = Effects({"5"});
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_NE(first.out.find("start replaying=0 incarnation=1"), std::string::npos) << first.out;
  EXPECT_EQ(BumpIncarnation(log_), 2u);
  const RunResult second = Effects({"5"});
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(Performed(), "0\n1\n2\n3\n4\n") << "performed again on replay";
  const auto a = EffectLines(first.out), b = EffectLines(second.out);
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    std::string replayed = a[i];
    replayed.replace(replayed.find("replayed=0"), 10, "replayed=1");
    EXPECT_EQ(b[i], replayed);  // same code, status, result and key
  }
  EXPECT_NE(second.out.find("start replaying=1 incarnation=2"), std::string::npos) << second.out;
  EXPECT_EQ(CountLines(second.out, "restore hook incarnation=2"), 1) << second.out;
  EXPECT_NE(second.out.find("done performed=0 replayed=5 in_doubt=0 pending=0"), std::string::npos) << second.out;
  EXPECT_EQ(ReadLog(log_).size(), 10u) << "replay appended records";
}

TEST_F(EffectsTest, ExhaustedChannelGoesLiveAndAppendsAfterTheLastRecord) {
  ASSERT_EQ(Effects({"6", "--stop-after", "3"}).status, 0);
  BumpIncarnation(log_);
  const RunResult r = Effects({"6"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(Performed(), "0\n1\n2\n3\n4\n5\n");
  const auto lines = EffectLines(r.out);
  ASSERT_EQ(lines.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_NE(lines[i].find(i < 3 ? "replayed=1" : "replayed=0"), std::string::npos) << lines[i];
  EXPECT_NE(r.out.find("done performed=3 replayed=3"), std::string::npos) << r.out;
  const auto log = ReadLog(log_);
  ASSERT_EQ(log.size(), 12u);
  for (size_t i = 0; i < log.size(); ++i) EXPECT_EQ(log[i].sequence, i) << "record " << i;
}

TEST_F(EffectsTest, KeysAreTheSameOnEveryRunAndUniquePerEffect) {
  const RunResult first = Effects({"4"});
  BumpIncarnation(log_);
  const RunResult second = Effects({"4"});
  std::set<std::string> keys;
  for (const auto& l : EffectLines(first.out)) keys.insert(l.substr(l.find("key=")));
  EXPECT_EQ(keys, (std::set<std::string>{"key=testjob:0:0", "key=testjob:0:2", "key=testjob:0:4", "key=testjob:0:6"}));
  for (const auto& l : EffectLines(second.out)) EXPECT_EQ(keys.count(l.substr(l.find("key="))), 1u) << l;
}

TEST_F(EffectsTest, DifferentRequestOnReplayStopsTheJobWithAReport) {
  ASSERT_EQ(Effects({"4"}).status, 0);
  BumpIncarnation(log_);
  const RunResult r = Effects({"4", "--diverge-from", "2"});
  EXPECT_EQ(r.status, 86) << r.err;
  EXPECT_NE(r.err.find("replay diverged"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("channel 0, sequence 4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the log holds:       INTENT kind"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(test.add)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\"item-2\""), std::string::npos) << r.err;   // what the log holds
  EXPECT_NE(r.err.find("\"other-2\""), std::string::npos) << r.err;  // what the program asked
  EXPECT_NE(r.err.find("request differs"), std::string::npos) << r.err;
  EXPECT_EQ(Performed(), "0\n1\n2\n3\n") << "a diverging effect was performed";
}

TEST_F(EffectsTest, DifferentKindOnReplayStopsTheJob) {
  ASSERT_EQ(Effects({"3"}).status, 0);
  BumpIncarnation(log_);
  const RunResult r = Effects({"3", "--kind-from", "1", "other.kind"});
  EXPECT_EQ(r.status, 86) << r.err;
  EXPECT_NE(r.err.find("channel 0, sequence 2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(other.kind)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("effect kind differs"), std::string::npos) << r.err;
}

TEST_F(EffectsTest, InDoubtAtMostOnceIsInterruptedAndNotPerformed) {
  EXPECT_EQ(Effects({"3", "--die-before-perform", "1"}).status, 9);  // INTENT 2 logged, never performed
  BumpIncarnation(log_);
  const RunResult r = Effects({"3"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto lines = EffectLines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find("code=0 status=0 result=result-0 replayed=1"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("code=-1 "), std::string::npos) << lines[1];  // LAZARUS_EINTERRUPTED
  EXPECT_NE(lines[1].find("key=testjob:0:2"), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("code=0 status=20 result=result-2 replayed=0"), std::string::npos) << lines[2];
  EXPECT_NE(r.out.find("in_doubt=1"), std::string::npos) << r.out;
  EXPECT_EQ(Performed(), "0\n2\n");

  // The answer is recorded: a later replay gives the in-doubt effect the same answer.
  BumpIncarnation(log_);
  const RunResult again = Effects({"3"});
  ASSERT_EQ(again.status, 0) << again.err;
  const auto l2 = EffectLines(again.out);
  ASSERT_EQ(l2.size(), 3u);
  EXPECT_NE(l2[1].find("code=-1 "), std::string::npos) << l2[1];
  EXPECT_NE(l2[1].find("replayed=1"), std::string::npos) << l2[1];
  EXPECT_NE(l2[2].find("replayed=1"), std::string::npos) << l2[2];
  EXPECT_EQ(Performed(), "0\n2\n");
}

TEST_F(EffectsTest, InDoubtAtLeastOnceIsPerformedAgain) {
  EXPECT_EQ(Effects({"3", "--policy", "least", "--die-after-perform", "1"}).status, 9);
  EXPECT_EQ(Performed(), "0\n1\n");
  BumpIncarnation(log_);
  const RunResult r = Effects({"3", "--policy", "least"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(Performed(), "0\n1\n1\n2\n");
  const auto lines = EffectLines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[1].find("code=0 status=10 result=result-1 replayed=0"), std::string::npos) << lines[1];
  EXPECT_NE(r.out.find("in_doubt=1"), std::string::npos) << r.out;
}

TEST_F(EffectsTest, InDoubtWithPolicyFailStopsTheJob) {
  EXPECT_EQ(Effects({"3", "--policy", "fail", "--die-after-perform", "1"}).status, 9);
  BumpIncarnation(log_);
  const RunResult r = Effects({"3", "--policy", "fail"});
  EXPECT_EQ(r.status, 87) << r.err;
  EXPECT_NE(r.err.find("in doubt"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("channel 0, sequence 2"), std::string::npos) << r.err;
  EXPECT_EQ(Performed(), "0\n1\n");
}

TEST(Startup, UnusableLogStopsTheJobWithStatus88) {
  ScratchDir dir;
  RunOptions o;
  o.log = dir / "no-such-log";
  const RunResult r = RunProgram({"lzc-effects", "1"}, o);
  EXPECT_EQ(r.status, 88) << r.err;
  EXPECT_NE(r.err.find("cannot use the effect log"), std::string::npos) << r.err;
}

class ThreadsTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { MakeLog(log_); }
  RunResult Threads(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"lzc-threads", "4", "25", "--performed", performed_};
    if (GetParam()) args.push_back("--named");
    args.insert(args.end(), extra.begin(), extra.end());
    RunOptions o;
    o.log = log_;
    return RunProgram(args, o);
  }
  ScratchDir dir_;
  const std::string log_ = dir_ / "log";
  const std::string performed_ = dir_ / "performed";
};

TEST_P(ThreadsTest, EachThreadReplaysItsOwnChannel) {
  const RunResult first = Threads();
  ASSERT_EQ(first.status, 0) << first.err;
  const std::string performed = ReadText(performed_);
  EXPECT_EQ(Lines(performed).size(), 100u);
  std::set<uint32_t> channels;
  for (const auto& rec : ReadLog(log_)) channels.insert(rec.channel);
  const uint32_t base = GetParam() ? 0x40000000u : 0;
  EXPECT_EQ(channels, (std::set<uint32_t>{base, base + 1, base + 2, base + 3}));

  BumpIncarnation(log_);
  const RunResult second = Threads();
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(ReadText(performed_), performed) << "an effect was performed again";
  const auto a = Lines(first.out), b = Lines(second.out);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    std::string want = a[i];
    want.replace(want.find("replayed=0"), 10, "replayed=1");
    EXPECT_EQ(b[i], want);
  }
  EXPECT_EQ(b.back(), "done performed=0 replayed=100");
}

TEST_P(ThreadsTest, ThreadsGoLiveWhereTheirRecordsEnd) {
  ASSERT_EQ(Threads({"--stop-after", "10"}).status, 0);
  BumpIncarnation(log_);
  const RunResult r = Threads();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(Lines(r.out).back(), "done performed=60 replayed=40");
  std::multiset<std::string> done;
  for (const auto& l : Lines(ReadText(performed_))) done.insert(l.substr(0, l.find(' ', l.find(' ') + 1)));
  EXPECT_EQ(done.size(), 100u);
  for (const auto& d : done) EXPECT_EQ(done.count(d), 1u) << d << " performed twice";
}

INSTANTIATE_TEST_SUITE_P(ByFirstUseOrNamed, ThreadsTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Named" : "FirstUse"; });

TEST(CppApi, IdempotencyKeyLetsTheServiceDeduplicateAnEffectInDoubt) {
  ScratchDir dir;
  MakeLog(dir / "log");
  RunOptions o;
  o.log = dir / "log";
  const std::string ledger = dir / "ledger";
  EXPECT_EQ(RunProgram({"lzc-keyed", ledger, "5", "--die-after-perform", "2"}, o).status, 9);
  EXPECT_EQ(Lines(ReadText(ledger)).size(), 3u);  // item2 reached the ledger; its RESULT did not reach the log
  BumpIncarnation(dir / "log");
  const RunResult r = RunProgram({"lzc-keyed", ledger, "5"}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("item 0 key=testjob:0:0 answer=new:item0 replayed=1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("item 2 key=testjob:0:4 answer=dup:item2 replayed=0 in_doubt_seen=1 code=0"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("item 4 key=testjob:0:8 answer=new:item4 replayed=0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("done performed=3 replayed=2 in_doubt=1"), std::string::npos) << r.out;
  const auto lines = Lines(ReadText(ledger));
  EXPECT_EQ(lines, (std::vector<std::string>{"testjob:0:0 item0", "testjob:0:2 item1", "testjob:0:4 item2",
                                             "testjob:0:6 item3", "testjob:0:8 item4"}));
}

}  // namespace
}  // namespace lazarus::client_test
