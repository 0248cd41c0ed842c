// Writer processes SIGKILLed in the middle of appending, hundreds of times, in `process`
// mode: the log must stay valid (no damage, at most abandoned claims) and every append
// that returned — reported to the parent through a pipe right after it returned — must be
// in the log with its exact content.
//
// Each round starts two writer processes on the same log (as the job and the daemon share
// one), each with two appending threads, lets them run for a random few milliseconds and
// kills both. Segments are small so that kills land inside roll-overs too.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "effectlog/repair.h"
#include "effectlog_test_util.h"
#include "temp_dir.h"

namespace lazarus::effectlog {
namespace {

using lazarus::testing::TempDir;
using namespace lazarus::effectlog::testing;
using Clock = std::chrono::steady_clock;

constexpr int kProcesses = 2;
constexpr int kThreadsPerProcess = 2;
constexpr int kMaxRounds = 1500;
constexpr auto kTimeBudget = std::chrono::seconds(20);
constexpr uint64_t kAckEvery = 16;

struct Ack {
  uint32_t channel;
  uint32_t pad;
  uint64_t sequence;
};
static_assert(sizeof(Ack) <= PIPE_BUF);  // one write(2) per ack: never interleaved

// The child: appends on its channels until killed, acknowledging each returned append.
[[noreturn]] void RunWriter(const std::string& dir, uint32_t first_channel, int ack_fd) {
  auto w = Writer::Open(dir);
  if (!w.ok()) _exit(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreadsPerProcess; ++t) {
    threads.emplace_back([&, channel = first_channel + static_cast<uint32_t>(t)] {
      for (uint64_t seq = 0;; ++seq) {
        const std::string p = PayloadFor(channel, seq, 16 + seq % 120);
        if (!(*w)->Append(ArgsFor(channel, seq, p)).ok()) _exit(3);
        // Acknowledged in batches (the highest sequence that returned), so that most of
        // the time goes to appending and most kills land inside an append.
        if (seq % kAckEvery == 0) {
          const Ack ack{channel, 0, seq};
          if (::write(ack_fd, &ack, sizeof ack) != sizeof ack) _exit(4);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  _exit(0);
}

TEST(EffectLogCrash, SigkilledWritersLoseNoReturnedAppend) {
  TempDir tmp;
  const std::string dir = tmp / "log";
  LogOptions o;
  o.segment_size = 64 * 1024;
  ASSERT_TRUE(CreateLog(dir, o).ok());

  std::mt19937 rng(12345);
  LogPosition round_start{0, kSegmentHeaderSize};
  const auto t0 = Clock::now();
  int rounds = 0;
  uint64_t total_acked = 0, total_abandoned = 0, total_records = 0;
  for (; rounds < kMaxRounds && Clock::now() - t0 < kTimeBudget; ++rounds) {
    // What the daemon does before every restore; after a SIGKILL there is nothing to cut.
    auto rep = RepairTornTail(dir);
    ASSERT_TRUE(rep.ok()) << "round " << rounds << ": " << rep.status().message();
    ASSERT_FALSE(rep->changed) << "round " << rounds << ": found " << EndKindName(rep->found.kind) << " at "
                               << rep->found.position.segment << ":" << rep->found.position.offset << " ("
                               << rep->found.problem << ")";

    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    std::vector<pid_t> children;
    const uint32_t base = static_cast<uint32_t>(rounds * kProcesses * kThreadsPerProcess);
    for (int p = 0; p < kProcesses; ++p) {
      const pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        ::close(fds[0]);
        RunWriter(dir, base + static_cast<uint32_t>(p * kThreadsPerProcess), fds[1]);
      }
      children.push_back(pid);
    }
    ::close(fds[1]);

    // Let them run (a random while, sometimes barely started), then kill, reading acks.
    const auto kill_at = Clock::now() + std::chrono::microseconds(std::uniform_int_distribution<int>(0, 8000)(rng));
    std::map<uint32_t, uint64_t> acked;  // channel -> appends known to have returned (sequences 0..n-1)
    bool killed = false;
    for (;;) {
      if (!killed && Clock::now() >= kill_at) {
        for (pid_t pid : children) ::kill(pid, SIGKILL);
        killed = true;
      }
      pollfd pfd{fds[0], POLLIN, 0};
      ::poll(&pfd, 1, killed ? 1000 : 1);
      Ack buf[256];
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n == 0) break;  // every writer is gone
      if (n < 0) continue;
      ASSERT_EQ(n % static_cast<ssize_t>(sizeof(Ack)), 0);
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(Ack)); ++i) {
        ASSERT_GE(buf[i].sequence + 1, acked[buf[i].channel]) << "acks of a channel arrive in order";
        acked[buf[i].channel] = buf[i].sequence + 1;
      }
    }
    ::close(fds[0]);
    for (pid_t pid : children) {
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "a writer failed: status " << status;
    }

    // Validate this round's part of the log.
    ReaderOptions from;
    from.from = round_start;
    ReadBack rb = ReadAll(dir, from);
    ASSERT_EQ(rb.end.kind, EndKind::kClean) << "round " << rounds << ": " << rb.end.problem << " at "
                                            << rb.end.position.segment << ":" << rb.end.position.offset;
    std::map<uint32_t, uint64_t> present;
    for (size_t i = 0; i < rb.records.size(); ++i) {
      const RecordView& r = rb.records[i];
      ASSERT_GE(r.channel, base);
      ASSERT_EQ(r.sequence, present[r.channel]) << "channel " << r.channel << ": a gap";
      ++present[r.channel];
      ASSERT_TRUE(RecordIsIntact(r, rb.payloads[i], 16 + r.sequence % 120)) << "channel " << r.channel;
    }
    for (const auto& [channel, n] : acked) {
      ASSERT_GE(present[channel], n) << "round " << rounds << ", channel " << channel
                                     << ": an append that returned is missing";
      // At most the appends since the last ack and the one in flight are there without one.
      ASSERT_LE(present[channel], n + kAckEvery) << "channel " << channel;
      total_acked += n;
    }
    total_records += rb.records.size();
    total_abandoned += rb.abandoned;
    round_start = rb.end.position;
    // Keep the directory small: earlier rounds are checked already.
    ASSERT_TRUE(Compact(dir, round_start).ok());
  }
  std::printf("%d rounds of SIGKILL: %llu acknowledged appends, %llu records, %llu abandoned claims\n", rounds,
              static_cast<unsigned long long>(total_acked), static_cast<unsigned long long>(total_records),
              static_cast<unsigned long long>(total_abandoned));
  EXPECT_GE(rounds, 100) << "too few rounds in the time budget to mean much";
}

}  // namespace
}  // namespace lazarus::effectlog
