// Exactly-once recovery end to end (issue 5, acceptance tests 1-4) with the real daemon,
// real CRIU, real processes and real sockets: jobs run under `lazarus run` with the
// LD_PRELOAD shim, are SIGKILLed from outside at random moments and brought back with
// `lazarus restore`; what they did between their snapshot and the kill is answered from the
// effect log instead of being done again.
//
//   1. an unmodified C ledger client (tests/client/lzc_ledger_client.c), 2,000 items, 20 kills
//   2. the same job written with the explicit C++ API and idempotency keys (lz_keyed_client.cc)
//   3. an epoll key-value server with several clients (lz_kvserver.c)
//   4. a program whose output depends on a file the test changes: divergence, exit 86
//
// Set LAZARUS_IT_SEED to replay the random kill moments of a failed run (the seed is printed).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

using Clock = std::chrono::steady_clock;

// ---- small TCP helpers ------------------------------------------------------------------

int ConnectLoopback(int port, Millis timeout = 5s) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

bool SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

// Reads from fd into *buf until it ends with `until` (or the connection ends / times out).
bool ReadUntil(int fd, std::string* buf, const std::string& until) {
  char tmp[4096];
  while (buf->size() < until.size() || buf->compare(buf->size() - until.size(), until.size(), until) != 0) {
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf->append(tmp, static_cast<size_t>(n));
  }
  return true;
}

// One request on a new connection; the answer ends with `until`.
std::optional<std::string> Ask(int port, const std::string& request, const std::string& until = "\n") {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return std::nullopt;
  std::string answer;
  const bool ok = SendAll(fd, request) && ReadUntil(fd, &answer, until);
  ::close(fd);
  if (!ok) return std::nullopt;
  return answer;
}

size_t CountLines(const std::string& path) {
  const std::string text = ReadFile(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

uint64_t Seed() {
  const char* env = std::getenv("LAZARUS_IT_SEED");
  if (env != nullptr && *env != '\0') return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

// Sums N over the shim's "lazarus: incarnation I: replaying N records ..." lines (the job
// runs with LAZARUS_VERBOSE=1); *restores = how many such lines.
long RecordsReplayed(const std::string& stderr_text, int* restores, std::vector<long>* each = nullptr) {
  static const std::regex re("lazarus: incarnation [0-9]+: replaying ([0-9]+) records");
  long sum = 0;
  *restores = 0;
  for (auto it = std::sregex_iterator(stderr_text.begin(), stderr_text.end(), re); it != std::sregex_iterator(); ++it) {
    const long n = std::stol((*it)[1].str());
    sum += n;
    ++*restores;
    if (each != nullptr) each->push_back(n);
  }
  return sum;
}

// ---- the ledger (lz-ledger), a child process of the test, not under Lazarus -------------

struct LedgerStats {
  long items = -1, requests = -1, duplicates = -1, resent_keys = -1, max = -1;
  std::string line;
};

class LedgerProcess {
 public:
  // Starts build/bin/lz-ledger through `spawn` (the fixture's SpawnDetached: killed on
  // teardown) and waits for its port file.
  ::testing::AssertionResult Start(const std::function<pid_t(const std::vector<std::string>&)>& spawn,
                                   const std::string& port_file, int delay_ms) {
    pid_ = spawn({BinPath("lz-ledger"), port_file, "--delay-ms", std::to_string(delay_ms)});
    if (pid_ <= 0) return ::testing::AssertionFailure() << "cannot start lz-ledger";
    if (!WaitUntil([&] { return !Trim(ReadFile(port_file)).empty(); }, 10s))
      return ::testing::AssertionFailure() << "lz-ledger wrote no port file " << port_file;
    port_ = std::stoi(Trim(ReadFile(port_file)));
    return ::testing::AssertionSuccess();
  }
  [[nodiscard]] int port() const { return port_; }
  ::testing::AssertionResult Stats(LedgerStats* s) const {
    auto answer = Ask(port_, "STATS\n");
    if (!answer) return ::testing::AssertionFailure() << "the ledger does not answer STATS";
    s->line = Trim(*answer);
    if (std::sscanf(s->line.c_str(), "items=%ld requests=%ld duplicates=%ld resent_keys=%ld max=%ld", &s->items,
                    &s->requests, &s->duplicates, &s->resent_keys, &s->max) != 5)
      return ::testing::AssertionFailure() << "bad STATS answer: " << *answer;
    return ::testing::AssertionSuccess();
  }
  // item -> requests counted.
  std::map<long, long> Dump() const {
    std::map<long, long> counts;
    auto answer = Ask(port_, "DUMP\n", "END\n");
    if (!answer) return counts;
    for (const std::string& line : SplitLines(*answer)) {
      long id = 0, n = 0;
      if (std::sscanf(line.c_str(), "%ld %ld", &id, &n) == 2) counts[id] = n;
    }
    return counts;
  }

 private:
  pid_t pid_ = -1;
  int port_ = -1;
};

// ---- the fixture -----------------------------------------------------------------------

class ExactlyOnce : public LazarusTest {
 protected:
  static constexpr int kItems = 2000;
  static constexpr int kKills = 20;
  static constexpr int kLedgerDelayMs = 15;  // ~30 s of live work for 2,000 items

  void SetUp() override {
    LazarusTest::SetUp();
    items_ = WorkPath("items.txt");
    std::string items;
    for (int i = 0; i < kItems; ++i) {
      const long id = 10000 + i;
      items += std::to_string(id) + "\n";
      total_ += 3 * id + 1;
    }
    ASSERT_TRUE(WriteFile(items_, items));
  }

  LedgerProcess StartLedger(const std::string& name, int delay_ms) {
    LedgerProcess ledger;
    EXPECT_TRUE(ledger.Start([this](const std::vector<std::string>& argv) { return SpawnDetached(argv); },
                             WorkPath(name + ".port"), delay_ms));
    return ledger;
  }

  // The output file of an uncrashed run: `client` run directly (not under Lazarus) against a
  // ledger of its own.
  std::string UncrashedOutput(const std::string& client) {
    LedgerProcess ledger = StartLedger("reference-ledger", 0);
    const std::string out = WorkPath("reference-" + client + ".txt");
    CmdResult r = RunCommand({BinPath(client), std::to_string(ledger.port()), items_, out}, WithTimeout(60s));
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    EXPECT_NE(r.out.find("total=" + std::to_string(total_) + " items=" + std::to_string(kItems)), std::string::npos)
        << r.Describe();
    return ReadFile(out);
  }

  struct KillFigures {
    int kills = 0;
    int restores = 0;
    int replay_lines = 0;       // "replaying N records" lines on the job's stderr
    long records_replayed = 0;  // sum of N
    std::vector<long> replayed_each;
    int restored_from_same_snapshot = 0;  // restores from a snapshot an earlier restore used
    int kills_during_dump = 0;            // periodic snapshots that failed (a kill during the dump)
    double seconds = 0;
    api::JobInfo end;
  };

  // Runs `cmd` under `lazarus run --interval 1` with the shim (and LAZARUS_VERBOSE=1), and
  // SIGKILLs it `kills` times, each when its output file `out` has reached a random number
  // of lines (at least 40 apart, so that the job runs for a while between two kills) plus a
  // random 0-30 ms, each followed by `lazarus restore`. Returns when the job has exited.
  void RunWithKills(const std::vector<std::string>& cmd, const std::string& out, int kills, KillFigures* f) {
    const uint64_t seed = Seed();
    std::printf("[ seed     ] LAZARUS_IT_SEED=%llu\n", static_cast<unsigned long long>(seed));
    std::mt19937_64 rng(seed);
    // Kill k when the output holds threshold[k] lines: one random point in each of `kills`
    // equal slots between 5% and 95% of the items.
    std::vector<size_t> thresholds;
    const double lo = kItems * 0.05, slot = kItems * 0.9 / kills;
    for (int k = 0; k < kills; ++k) {
      std::uniform_int_distribution<int> in_slot(0, static_cast<int>(slot) - 40);
      thresholds.push_back(static_cast<size_t>(lo + slot * k + in_slot(rng)));
    }
    std::uniform_int_distribution<int> jitter_ms(0, 30);

    const auto t0 = Clock::now();
    std::vector<std::string> args{"run", "--interval", "1", "--"};
    args.insert(args.end(), cmd.begin(), cmd.end());
    CmdResult r = Cli(args, 60s, {"LAZARUS_VERBOSE=1"});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    const std::string id = Trim(r.out);
    id_ = id;
    api::JobInfo info;
    ASSERT_TRUE(WaitForState(id, "running", &info));
    EXPECT_TRUE(info.shim()) << info.ShortDebugString();

    std::set<std::string> snapshots_used;
    for (int k = 0; k < kills; ++k) {
      const bool reached = WaitUntil([&] { return CountLines(out) >= thresholds[k]; }, 60s, 5ms);
      ASSERT_TRUE(reached) << "kill " << k + 1 << ": the job never wrote " << thresholds[k] << " lines; it has "
                           << CountLines(out);
      // A restore needs a snapshot: the first one comes a second after the start. The kill
      // may come while the daemon takes a periodic snapshot (that dump then fails).
      ASSERT_TRUE(WaitUntil(
          [&] {
            return Status(id, &info) && info.snapshot_count() > 0 &&
                   (info.state() == "running" || info.state() == "snapshotting");
          },
          20s))
          << info.ShortDebugString();
      std::this_thread::sleep_for(Millis(jitter_ms(rng)));
      ASSERT_TRUE(KillJobProcesses(id)) << "kill " << k + 1;
      ++f->kills;
      ASSERT_TRUE(WaitForState(id, "crashed", &info, 20s)) << "kill " << k + 1;
      // (The job's init reports its child killed by SIGKILL as "exited 137" when it sees
      // the child die before it is killed itself.)
      EXPECT_TRUE(info.exit_status() == "killed by SIGKILL" || info.exit_status() == "exited 137")
          << info.ShortDebugString();
      CmdResult rr = Cli({"restore", id});
      ASSERT_EQ(rr.exit_code, 0) << "restore after kill " << k + 1 << ": " << rr.Describe();
      ++f->restores;
      ASSERT_TRUE(WaitForState(id, "running", &info, 20s)) << "restore after kill " << k + 1;
      EXPECT_EQ(info.incarnation(), static_cast<uint32_t>(k + 2)) << info.ShortDebugString();
      if (!snapshots_used.insert(info.restored_from()).second) ++f->restored_from_same_snapshot;
    }
    ASSERT_TRUE(WaitForState(id, "exited", &f->end, 90s)) << "the job did not finish";
    f->seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    f->records_replayed = RecordsReplayed(ReadFile(f->end.stderr_path()), &f->replay_lines, &f->replayed_each);
    // Kills that came while a periodic snapshot was being taken: that dump failed.
    const std::string daemon_log = ReadFile(daemon_->log_path());
    for (size_t at = 0; (at = daemon_log.find("periodic snapshot:", at)) != std::string::npos; ++at)
      ++f->kills_during_dump;
  }

  // The effect log at the end: markers, in-doubt intents and how it ends.
  void CheckLog(const std::string& id, int kills, int* in_doubt, size_t* records) {
    CmdResult r = Cli({"log", id, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.Describe().substr(0, 2000);
    api::LogInfo log;
    ASSERT_TRUE(ParseJson(r.out, &log));
    EXPECT_EQ(log.end(), "clean") << log.end_position() << " " << log.problem();
    int began = 0;
    *in_doubt = 0;
    for (const auto& rec : log.records()) {
      if (rec.type() == "incarnation-began") ++began;
      if (rec.state() == "in doubt") ++*in_doubt;
    }
    *records = static_cast<size_t>(log.records_size());
    EXPECT_EQ(began, kills) << "one incarnation-began marker per restore";
    // Every effect a kill left in doubt was resolved by the replay that reached it.
    EXPECT_EQ(*in_doubt, 0) << "intents without a result in the log";
  }

  std::string items_;
  long total_ = 0;
  std::string id_;
};

// Acceptance 1: an unmodified program (it links nothing of ours; the shim records its libc
// calls), killed 20 times.
TEST_F(ExactlyOnce, UnmodifiedLedgerClientSurvives20KillsExactlyOnce) {
  const std::string reference = UncrashedOutput("lzc-ledger-client");
  ASSERT_FALSE(reference.empty());

  LedgerProcess ledger = StartLedger("ledger", kLedgerDelayMs);
  const std::string out = WorkPath("out.txt");
  KillFigures f;
  ASSERT_NO_FATAL_FAILURE(RunWithKills(
      {BinPath("lzc-ledger-client"), std::to_string(ledger.port()), items_, out}, out, kKills, &f));

  EXPECT_EQ(f.end.exit_status(), "exited 0") << f.end.ShortDebugString();
  // The output file equals that of an uncrashed run: no line twice, none missing.
  const std::string got = ReadFile(out);
  EXPECT_EQ(got.size(), reference.size());
  EXPECT_TRUE(got == reference) << "the output differs from an uncrashed run's";
  // The running total (process memory, rebuilt by the replay) is right.
  const std::string stdout_text = ReadFile(f.end.stdout_path());
  long total = -1, items = -1, reconnects = -1;
  const size_t at = stdout_text.rfind("total=");
  ASSERT_NE(at, std::string::npos) << stdout_text;
  ASSERT_EQ(std::sscanf(stdout_text.c_str() + at, "total=%ld items=%ld reconnects=%ld", &total, &items, &reconnects),
            3)
      << stdout_text;
  EXPECT_EQ(total, total_);
  EXPECT_EQ(items, kItems);
  // After each restore its TCP connection came back closed and the program reconnected.
  EXPECT_EQ(reconnects, f.kills) << stdout_text;

  // The ledger saw every item; the only duplicates are requests whose reply was lost with
  // the connection at a kill: at most one per kill, never an item three times.
  LedgerStats s;
  ASSERT_TRUE(ledger.Stats(&s));
  EXPECT_EQ(s.items, kItems) << s.line;
  EXPECT_LE(s.duplicates, f.kills) << s.line;
  EXPECT_LE(s.max, 2) << s.line;
  const auto counts = ledger.Dump();
  EXPECT_EQ(counts.size(), static_cast<size_t>(kItems));
  EXPECT_EQ(counts.begin()->first, 10000);
  EXPECT_EQ(counts.rbegin()->first, 10000 + kItems - 1);

  // What the job did between its snapshot and each kill was replayed: one replay per
  // restore, and the requests in it never reached the ledger again (above).
  EXPECT_EQ(f.replay_lines, f.restores) << ReadFile(f.end.stderr_path()).substr(0, 4000);
  EXPECT_GT(f.records_replayed, 0);
  int in_doubt = 0;
  size_t records = 0;
  ASSERT_NO_FATAL_FAILURE(CheckLog(id_, f.kills, &in_doubt, &records));

  std::printf(
      "[ figures  ] unmodified client: %d items, %d kills (%d during a snapshot), %d restores (%d from a snapshot used before), "
      "%ld records replayed (per restore: min %ld, max %ld), %ld duplicates at the ledger (replies lost at a kill), "
      "%d reconnects, %zu log records, %d intents in doubt, %.1f s\n",
      kItems, f.kills, f.kills_during_dump, f.restores, f.restored_from_same_snapshot, f.records_replayed,
      f.replayed_each.empty() ? 0 : *std::min_element(f.replayed_each.begin(), f.replayed_each.end()),
      f.replayed_each.empty() ? 0 : *std::max_element(f.replayed_each.begin(), f.replayed_each.end()), s.duplicates,
      static_cast<int>(reconnects), records, in_doubt, f.seconds);
  std::printf("[ ledger   ] %s\n", s.line.c_str());
}

// Acceptance 2: the same job with the explicit C++ API; each request carries its effect's
// idempotency key and the ledger deduplicates on it: no duplicate, no item in doubt.
TEST_F(ExactlyOnce, ExplicitApiWithIdempotencyKeysHasNoDuplicates) {
  const std::string reference = UncrashedOutput("lz-keyed-client");
  ASSERT_FALSE(reference.empty());

  LedgerProcess ledger = StartLedger("ledger", kLedgerDelayMs);
  const std::string out = WorkPath("out.txt");
  KillFigures f;
  ASSERT_NO_FATAL_FAILURE(
      RunWithKills({BinPath("lz-keyed-client"), std::to_string(ledger.port()), items_, out}, out, kKills, &f));

  EXPECT_EQ(f.end.exit_status(), "exited 0") << f.end.ShortDebugString();
  const std::string got = ReadFile(out);
  EXPECT_EQ(got.size(), reference.size());
  EXPECT_TRUE(got == reference) << "the output differs from an uncrashed run's";
  const std::string stdout_text = ReadFile(f.end.stdout_path());
  EXPECT_NE(stdout_text.find("total=" + std::to_string(total_) + " items=" + std::to_string(kItems) + " errors=0"),
            std::string::npos)
      << stdout_text << ReadFile(f.end.stderr_path()).substr(0, 4000);

  LedgerStats s;
  ASSERT_TRUE(ledger.Stats(&s));
  EXPECT_EQ(s.items, kItems) << s.line;
  EXPECT_EQ(s.duplicates, 0) << s.line;
  EXPECT_EQ(s.max, 1) << s.line;
  // Requests resent with a key the ledger knew, all answered from the key: at most two per
  // kill. The effect in doubt at the kill (INTENT logged, no RESULT), performed again
  // (at_least_once); and the effect the snapshot froze in the middle of its perform function
  // (most likely, the job spends its time waiting for the ledger): the restored process goes
  // on inside that function, finds its connection closed and resends, then the library
  // answers from the RESULT the earlier incarnation logged.
  EXPECT_LE(s.resent_keys, 2 * f.kills) << s.line;

  EXPECT_EQ(f.replay_lines, f.restores);
  EXPECT_GT(f.records_replayed, 0);
  int in_doubt = 0;
  size_t records = 0;
  ASSERT_NO_FATAL_FAILURE(CheckLog(id_, f.kills, &in_doubt, &records));

  std::printf(
      "[ figures  ] explicit API + keys: %d items, %d kills (%d during a snapshot), %d restores (%d from a snapshot used before), "
      "%ld records replayed, %ld duplicates at the ledger, %ld requests resent and answered from their key, "
      "0 items in doubt, %zu log records, %.1f s\n",
      kItems, f.kills, f.kills_during_dump, f.restores, f.restored_from_same_snapshot, f.records_replayed, s.duplicates,
      s.resent_keys,
      records, f.seconds);
  std::printf("[ ledger   ] %s\n", s.line.c_str());
}

// Acceptance 3: an epoll server under Lazarus with several clients. Every write it
// acknowledged before a kill is there after the restore (its memory is rebuilt by replaying
// its epoll_wait/accept/read calls), and its data file holds each write once.
TEST_F(ExactlyOnce, EventLoopServerKeepsAcknowledgedWrites) {
  constexpr int kClients = 4;
  constexpr int kRounds = 3;
  const int port = PickFreePort();
  ASSERT_GT(port, 0);
  const std::string data = WorkPath("kv-data.txt");
  CmdResult r = Cli({"run", "--", BinPath("lz-kvserver"), std::to_string(port), data}, 60s, {"LAZARUS_VERBOSE=1"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::string id = Trim(r.out);
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitUntil([&] { return Ask(port, "COUNT\n").has_value(); }, 10s)) << "the server does not answer";

  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> acked;  // in the order of their ACKs
  std::set<std::string> unacked;                           // sent, connection lost before the ACK
  std::atomic<bool> stop{false};
  std::atomic<long> failures{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      int fd = -1;
      for (long j = 0; !stop; ++j) {
        const std::string key = "c" + std::to_string(c) + "k" + std::to_string(j);
        const std::string value = "v" + std::to_string(c) + "x" + std::to_string(j * 7919 % 100003);
        while (fd < 0 && !stop) {
          fd = ConnectLoopback(port);
          if (fd < 0) std::this_thread::sleep_for(20ms);
        }
        if (stop) break;
        std::string answer;
        if (SendAll(fd, "SET " + key + " " + value + "\n") && ReadUntil(fd, &answer, "\n")) {
          if (answer != "ACK " + key + "\n") {
            ++failures;
            break;
          }
          std::lock_guard lock(mu);
          acked.emplace_back(key, value);
        } else {
          std::lock_guard lock(mu);
          unacked.insert(key);
          ::close(fd);
          fd = -1;
        }
        std::this_thread::sleep_for(2ms);
      }
      if (fd >= 0) ::close(fd);
    });
  }
  auto acked_count = [&] {
    std::lock_guard lock(mu);
    return acked.size();
  };

  std::mt19937_64 rng(Seed());
  std::vector<size_t> after_snapshot;  // writes acknowledged after the snapshot, before the kill
  for (int round = 0; round < kRounds; ++round) {
    std::this_thread::sleep_for(400ms);
    uint32_t snap = 0;
    ASSERT_TRUE(Checkpoint(id, &snap));
    const size_t at_snapshot = acked_count();  // acknowledged after this: after the freeze
    std::this_thread::sleep_for(Millis(300 + std::uniform_int_distribution<int>(0, 400)(rng)));
    const size_t at_kill = acked_count();  // acknowledged before the kill
    ASSERT_TRUE(KillJobProcesses(id));
    after_snapshot.push_back(at_kill - at_snapshot);
    ASSERT_GT(at_kill, at_snapshot) << "round " << round << ": no write acknowledged between snapshot and kill";
    ASSERT_TRUE(WaitForState(id, "crashed"));
    CmdResult rr = Cli({"restore", id});
    ASSERT_EQ(rr.exit_code, 0) << rr.Describe();
    ASSERT_TRUE(WaitForState(id, "running"));
    // Every write acknowledged before the kill is there, asked over a new connection.
    std::vector<std::pair<std::string, std::string>> want;
    {
      std::lock_guard lock(mu);
      want.assign(acked.begin(), acked.begin() + static_cast<long>(at_kill));
    }
    const int q = ConnectLoopback(port);
    ASSERT_GE(q, 0);
    size_t missing = 0;
    for (size_t i = 0; i < want.size(); i += 100) {
      std::string batch, answer;
      const size_t n = std::min<size_t>(100, want.size() - i);
      for (size_t k = i; k < i + n; ++k) batch += "GET " + want[k].first + "\n";
      ASSERT_TRUE(SendAll(q, batch));
      while (static_cast<size_t>(std::count(answer.begin(), answer.end(), '\n')) < n) {
        std::string more;
        ASSERT_TRUE(ReadUntil(q, &more, "\n")) << "the restored server stopped answering";
        answer += more;
      }
      const auto lines = SplitLines(answer);
      for (size_t k = 0; k < n; ++k) {
        const std::string expect = "VAL " + want[i + k].first + " " + want[i + k].second;
        if (lines[k] != expect) {
          if (++missing <= 5) ADD_FAILURE() << "round " << round << ": got '" << lines[k] << "', want '" << expect << "'";
        }
      }
    }
    ::close(q);
    EXPECT_EQ(missing, 0u) << "round " << round << ": acknowledged writes lost";
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);

  // The data file holds each stored write once: the replayed server skipped the appends it
  // had made, and wrote those it had not.
  std::map<std::string, int> lines;
  for (const std::string& line : SplitLines(ReadFile(data))) ++lines[line];
  size_t twice = 0;
  for (const auto& [line, n] : lines) twice += n > 1 ? 1 : 0;
  EXPECT_EQ(twice, 0u) << "lines written twice to the server's data file";
  for (const auto& [key, value] : acked) EXPECT_EQ(lines.count(key + " " + value), 1u) << key;
  // Its memory and its file agree, also on the writes whose ACK was lost at a kill.
  auto count = Ask(port, "COUNT\n");
  ASSERT_TRUE(count.has_value());
  EXPECT_EQ(Trim(*count), "COUNT " + std::to_string(lines.size()));

  api::JobInfo info;
  ASSERT_TRUE(Status(id, &info));
  int replays = 0;
  std::vector<long> each;
  const long replayed = RecordsReplayed(ReadFile(info.stderr_path()), &replays, &each);
  EXPECT_EQ(replays, kRounds);
  for (long n : each) EXPECT_GT(n, 0);
  std::string per_round;
  for (int i = 0; i < kRounds; ++i)
    per_round += (i ? ", " : "") + std::to_string(after_snapshot[static_cast<size_t>(i)]) + "/" +
                 std::to_string(i < static_cast<int>(each.size()) ? each[static_cast<size_t>(i)] : -1);
  std::printf(
      "[ figures  ] epoll server, %d clients: %zu writes acknowledged, %zu unacknowledged at a kill, %d kills; "
      "per kill, writes acknowledged after the snapshot / records replayed: %s; %ld records replayed in all\n",
      kClients, acked.size(), unacked.size(), kRounds, per_round.c_str(), replayed);
}

// Acceptance 4: a restored program that takes another path than the one its log records
// (it reads a file the test changed) is stopped with a report naming channel and sequence.
TEST_F(ExactlyOnce, DivergenceStopsTheJobWithAReport) {
  const std::string config = WorkPath("config.txt"), out = WorkPath("ticks.txt");
  ASSERT_TRUE(WriteFile(config, "alpha\n"));
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-config-ticker"), config, out}, &id, "", /*shim=*/true));
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitUntil([&] { return CountLines(out) >= 10; }, 10s));
  const size_t a = CountLines(out);
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(id, &snap));
  const size_t b = CountLines(out);
  ASSERT_TRUE(WaitUntil([&] { return CountLines(out) >= b + 10; }, 10s));
  // The input changes; the job is killed and restored: it re-executes from the snapshot,
  // reads "beta" where its log says it wrote "alpha".
  ASSERT_TRUE(WriteFile(config, "beta\n"));
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  const std::string at_kill = ReadFile(out);
  CmdResult r = Cli({"restore", id});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();

  api::JobInfo info;
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Status(id, &info) && info.incarnation() == 2 && (info.state() == "crashed" || info.state() == "exited");
      },
      15s))
      << info.ShortDebugString();
  EXPECT_NE(info.exit_status().find("86"), std::string::npos) << info.ShortDebugString();
  const std::string err = ReadFile(info.stderr_path());
  EXPECT_NE(err.find("lazarus: replay diverged from the effect log"), std::string::npos) << err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(err, m, std::regex("job [^ ]+, incarnation 2, channel ([0-9]+), sequence ([0-9]+)")))
      << err;
  EXPECT_EQ(m[1].str(), "0") << err;
  // The sequence is that of the first write after the snapshot: the tick the log holds
  // with "alpha" and the program asked to write with "beta".
  std::smatch tick;
  ASSERT_TRUE(std::regex_search(err, tick, std::regex("\"tick ([0-9]+) alpha\\\\n\""))) << err;
  const long n = std::stol(tick[1].str());
  EXPECT_GT(n, static_cast<long>(a)) << err;
  EXPECT_LE(n, static_cast<long>(b) + 1) << err;
  EXPECT_NE(err.find("\"tick " + std::to_string(n) + " beta\\n\""), std::string::npos) << err;
  EXPECT_NE(err.find("exit status 86"), std::string::npos) << err;
  // It stopped before performing the diverging write.
  EXPECT_EQ(ReadFile(out), at_kill);

  // Restoring it again stops it the same way.
  CmdResult again = Cli({"restore", id});
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Status(id, &info) && info.incarnation() == 3 && (info.state() == "crashed" || info.state() == "exited");
      },
      15s))
      << info.ShortDebugString();
  EXPECT_NE(info.exit_status().find("86"), std::string::npos) << info.ShortDebugString();
  EXPECT_EQ(ReadFile(out), at_kill);
  std::printf("[ figures  ] divergence: %s; report:\n%s", info.exit_status().c_str(),
              ReadFile(info.stderr_path()).substr(0, 1500).c_str());
}

// `lazarus log` tells an effect left in doubt (its INTENT without a RESULT) from one done.
// lzc-keyed (tests/client) dies inside the perform function of its third effect.
TEST_F(ExactlyOnce, LogShowsTheEffectLeftInDoubt) {
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lzc-keyed"), WorkPath("keyed-ledger.txt"), "5", "--die-after-perform", "2"}, &id, "",
                     /*shim=*/true));
  api::JobInfo info;
  ASSERT_TRUE(WaitForState(id, "crashed", &info)) << info.ShortDebugString();
  EXPECT_EQ(info.exit_status(), "exited 9");
  CmdResult r = Cli({"log", id, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  api::LogInfo log;
  ASSERT_TRUE(ParseJson(r.out, &log));
  std::vector<std::string> intents;
  for (const auto& rec : log.records()) {
    if (rec.type() == "intent" && rec.channel() == 0) {
      intents.push_back(std::to_string(rec.sequence()) + " " + rec.state());
    }
  }
  EXPECT_EQ(intents, (std::vector<std::string>{"0 done", "2 done", "4 in doubt"})) << r.out;
}

}  // namespace
}  // namespace lztest
