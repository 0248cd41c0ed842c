// The snapshot store (issue 3's acceptance list), with a real daemon, real CRIU and
// lz-memhog, a job that checks its whole memory against its pattern every 100 steps and
// writes "BAD ..." to its counter file (then exits 3) on a mismatch:
// - ten periodic snapshots of a 256 MiB job take far less than ten images, and every one
//   of them restores and goes on with intact memory;
// - a daemon SIGKILLed at 30 moments of snapshots being taken leaves every listed snapshot
//   verified and restorable;
// - a flipped byte in a chunk is named by verify, and restore falls back past it;
// - a full file system fails one snapshot cleanly, and the next succeeds once space is back;
// - removing a job frees its chunks; retention keeps the last N.
#include <fcntl.h>
#include <glob.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"

namespace lztest {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double SecondsSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string MiB(uint64_t bytes) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(1);
  o << static_cast<double>(bytes) / (1024.0 * 1024.0) << " MiB";
  return o.str();
}

// Bytes a directory tree takes on disk (allocated blocks, as du counts them).
uint64_t DiskUsage(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

// The names of the entries of `dir` (empty when it is missing).
std::set<std::string> Entries(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    out.insert(it->path().filename().string());
  return out;
}

// The state of every process of the tree under `root`, one line each: pid, comm, the State
// line of /proc/PID/status and the kernel function it waits in.
std::string DescribeProcesses(pid_t root) {
  std::string out;
  for (pid_t p : ProcessTree(root)) {
    const std::string proc = "/proc/" + std::to_string(p);
    std::string state = "State: ?";
    std::string tracer;
    for (const auto& line : SplitLines(ReadFile(proc + "/status"))) {
      if (line.rfind("State:", 0) == 0) state = line;
      if (line.rfind("TracerPid:", 0) == 0) tracer = line;
    }
    out += "  pid " + std::to_string(p) + " (" + ProcessComm(p) + ") " + state + ", " + tracer +
           ", wchan " + Trim(ReadFile(proc + "/wchan")) + "\n";
  }
  return out.empty() ? "  (no process)\n" : out;
}

// Every process named criu on the host, with its parent and state.
std::string CriuProcesses() {
  std::string out;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    if (ProcessComm(std::stoi(name)) != "criu") continue;
    std::string state, ppid;
    for (const auto& line : SplitLines(ReadFile("/proc/" + name + "/status"))) {
      if (line.rfind("State:", 0) == 0) state = line;
      if (line.rfind("PPid:", 0) == 0) ppid = line;
    }
    out += "  criu pid " + name + ": " + state + ", " + ppid + "\n";
  }
  return out;
}

// Samples the last value of a counter file every few milliseconds with the wall-clock
// times of the read, so that the value a snapshot holds can be bounded by the times the
// snapshots were created.
class ValueSampler {
 public:
  explicit ValueSampler(std::string path) : path_(std::move(path)), thread_([this] { Loop(); }) {}
  ~ValueSampler() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // A value the file had at time `ms` or later (0 when nothing was sampled that early).
  long AtMost(int64_t ms) const {
    std::lock_guard lock(mu_);
    long v = 0;
    for (const auto& s : samples_)
      if (s.end_ms <= ms) v = std::max(v, s.value);
    return v;
  }
  // A value the file had at time `ms` or earlier (-1 when nothing was sampled that late).
  long AtLeast(int64_t ms) const {
    std::lock_guard lock(mu_);
    for (const auto& s : samples_)
      if (s.begin_ms >= ms) return s.value;
    return -1;
  }

 private:
  struct Sample {
    int64_t begin_ms, end_ms;
    long value;
  };
  void Loop() {
    while (!stop_) {
      int64_t begin = WallMs();
      auto v = ReadValues(path_);
      int64_t end = WallMs();
      if (!v.empty()) {
        std::lock_guard lock(mu_);
        samples_.push_back({begin, end, v.back()});
      }
      std::this_thread::sleep_for(5ms);
    }
  }
  std::string path_;
  mutable std::mutex mu_;
  std::vector<Sample> samples_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class Store : public LazarusTest {
 protected:
  void TearDown() override {
    LazarusTest::TearDown();  // kills the jobs and the daemon, removes what it can
    if (!mounted_.empty()) {
      // The daemon and the jobs are gone: nothing should hold the file system any more.
      if (::umount2(mounted_.c_str(), 0) != 0) {
        std::cerr << "[store] umount " << mounted_ << ": " << strerror(errno) << "; detaching it\n";
        ::umount2(mounted_.c_str(), MNT_DETACH);
      }
      std::error_code ec;
      const char* keep = getenv("LAZARUS_IT_KEEP");
      if (keep == nullptr || *keep == '\0' || std::string(keep) == "0") fs::remove_all(tmp_dir_, ec);
      mounted_.clear();
    }
  }

  std::string StoreDir() const { return state_dir_ + "/store"; }

  // The chunk files of the store: "ab/abcdef..." -> size.
  std::map<std::string, off_t> ChunkFiles() const {
    std::map<std::string, off_t> out;
    for (const auto& fan : Entries(StoreDir() + "/chunks"))
      for (const auto& name : Entries(StoreDir() + "/chunks/" + fan))
        out[fan + "/" + name] = FileSize(StoreDir() + "/chunks/" + fan + "/" + name);
    return out;
  }

  // `lazarus run --no-shim [flags] -- cmd...`; *id = the printed job id.
  ::testing::AssertionResult RunWith(const std::vector<std::string>& flags, const std::vector<std::string>& cmd,
                                     std::string* id) {
    // Without the shim: these tests check the store through the counter each restored
    // job writes again (with the shim those writes would be replayed, not redone).
    std::vector<std::string> args{"run", "--no-shim"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("--");
    args.insert(args.end(), cmd.begin(), cmd.end());
    CmdResult r = Cli(args);
    if (r.exit_code != 0) return ::testing::AssertionFailure() << r.Describe();
    *id = Trim(r.out);
    if (id->empty() || id->find_first_of(" \n") != std::string::npos)
      return ::testing::AssertionFailure() << "run should print the job id: " << r.Describe();
    return ::testing::AssertionSuccess();
  }

  // Stops the periodic snapshots of `job` and waits for one in progress to end.
  void StopPeriodicSnapshots(const std::string& job, api::JobInfo* info) {
    CmdResult r = Cli({"policy", job, "--interval", "0"});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    ASSERT_TRUE(WaitForState(job, "running", info, 60s));
  }

  // The lz-memhog writing `file` is the only writer of it now (its job's processes are gone
  // or stopped). Restores snapshot `snap` of `job` into a clone and checks that the clone
  // resumes right after a value S with lo <= S <= hi, writes S+1, S+2, ... with nothing
  // skipped, and runs past S+100: lz-memhog then checked its whole memory at least once
  // (at the multiple of 100 in (S, S+100]) and found it intact. Then kills the clone.
  void CloneResumesWithIntactMemory(const std::string& job, uint32_t snap, const std::string& file, long lo,
                                    long hi, long* resumed = nullptr, std::string* clone_id = nullptr) {
    const size_t n0 = ReadValues(file).size();
    const off_t size0 = FileSize(file);
    const auto t0 = SteadyClock::now();
    CmdResult r = Cli({"restore", job, "--clone", "--snapshot", std::to_string(snap)}, 120s);
    ASSERT_EQ(r.exit_code, 0) << "restore of snapshot " << snap << " failed: " << r.Describe();
    const double restore_s = SecondsSince(t0);
    const std::string clone = Trim(r.out);
    if (clone_id != nullptr) *clone_id = clone;
    api::JobInfo info;
    ASSERT_TRUE(WaitForState(clone, "running", &info, 30s));
    EXPECT_EQ(info.restored_from(), job + "/" + std::to_string(snap)) << info.ShortDebugString();

    std::vector<long> v;
    ASSERT_TRUE(WaitUntil([&] { return (v = ReadValues(file)).size() > n0; }, 30s))
        << "the clone of snapshot " << snap << " wrote nothing within 30 s: " << DescribeProcesses(info.pid());
    const long s = v[n0] - 1;
    const long target = s + 101;
    bool ran = WaitUntil(
        [&] {
          v = ReadValues(file);
          return v.back() >= target || v.back() < 0 || !ProcessAlive(info.pid());
        },
        60s);
    const std::string written = ReadFile(file).substr(static_cast<size_t>(std::max<off_t>(size0, 0)));
    ASSERT_EQ(written.find("BAD"), std::string::npos)
        << "the clone of snapshot " << snap << " found its memory damaged: " << Tail(written, 3);
    ASSERT_TRUE(ran) << "the clone of snapshot " << snap << " did not reach " << target << " within 60 s: "
                     << DescribeValues(std::vector<long>(v.begin() + static_cast<long>(n0), v.end())) << "\n"
                     << DescribeProcesses(info.pid());
    std::vector<long> mine(v.begin() + static_cast<long>(n0), v.end());
    for (size_t i = 1; i < mine.size(); i++)
      ASSERT_EQ(mine[i], mine[i - 1] + 1) << "the clone of snapshot " << snap << " skipped values: "
                                          << DescribeValues(mine);
    EXPECT_GE(mine.back(), target) << "the clone of snapshot " << snap << " stopped: " << DescribeValues(mine);
    EXPECT_GE(s, lo) << "the clone of snapshot " << snap << " resumed after " << s << ", before the snapshot was taken";
    EXPECT_LE(s, hi) << "the clone of snapshot " << snap << " resumed after " << s << ", after the snapshot was taken";
    EXPECT_GE(s, 1) << "the clone of snapshot " << snap << " started from the beginning";
    api::JobInfo now;
    ASSERT_TRUE(Status(clone, &now));
    EXPECT_EQ(now.state(), "running") << now.ShortDebugString();
    EXPECT_EQ(now.pid(), info.pid()) << now.ShortDebugString();
    CmdResult k = Cli({"kill", clone});
    ASSERT_EQ(k.exit_code, 0) << k.Describe();
    ASSERT_TRUE(WaitForState(clone, "exited"));
    std::cerr << "[store] snapshot " << snap << ": restored in " << restore_s << " s, resumed after " << s
              << " (bounds " << lo << ".." << hi << "), memory checked intact up to " << mine.back() << "\n";
    if (resumed != nullptr) *resumed = s;
  }

  std::string mounted_;  // a tmpfs mounted on the state directory (unmounted on teardown)
};

// Acceptance 1. lz-memhog rewrites 4 of its 65536 pages every 10 ms: between snapshots a
// second apart about 1% of its memory changes, so each snapshot after the first should add
// about 1% of an image to the store.
TEST_F(Store, TenPeriodicSnapshotsOfA256MiBJobStoreFarLessThanTenImagesAndAllRestore) {
  const auto t0 = SteadyClock::now();
  const std::string file = WorkPath("memhog.txt");
  std::string id;
  ASSERT_TRUE(RunWith({"--interval", "1", "--keep", "10"}, {BinPath("lz-memhog"), "256", file}, &id));
  ValueSampler sampler(file);
  api::JobInfo info;
  ASSERT_TRUE(WaitForState(id, "running", &info));
  const pid_t pid = info.pid();
  EXPECT_EQ(info.policy().interval_s(), 1u) << info.ShortDebugString();
  EXPECT_EQ(info.policy().keep_last(), 10u) << info.ShortDebugString();

  bool ten = WaitUntil([&] { return Status(id, &info) && info.snapshot_count() >= 10; }, 150s, 100ms);
  ASSERT_TRUE(ten) << "10 periodic snapshots were not taken within 150 s: " << info.ShortDebugString();
  const double snapshots_s = SecondsSince(t0);
  ASSERT_NO_FATAL_FAILURE(StopPeriodicSnapshots(id, &info));
  EXPECT_EQ(info.pid(), pid) << "the job must run on in the same process: " << info.ShortDebugString();
  EXPECT_EQ(info.last_error(), "") << info.ShortDebugString();
  EXPECT_EQ(ReadFile(file).find("BAD"), std::string::npos) << "the job's memory was damaged while it ran";

  api::SnapshotList snaps;
  ASSERT_TRUE(Snapshots(id, &snaps));
  ASSERT_EQ(snaps.snapshots_size(), 10) << "--keep 10 keeps the last 10: " << snaps.ShortDebugString();

  // Only the clones write the counter file from now on.
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  std::this_thread::sleep_for(50ms);
  const long killed_at = ReadValues(file).back();
  sampler.Stop();

  uint64_t raw = 0, stored = 0;
  for (const auto& s : snaps.snapshots()) {
    raw = std::max<uint64_t>(raw, s.size_bytes());
    stored += s.stored_bytes();
  }
  const uint64_t on_disk = DiskUsage(StoreDir());
  std::cerr << "[figures] 10 snapshots of a 256 MiB lz-memhog, one per second (" << snapshots_s << " s): image "
            << MiB(raw) << " each, 10 images " << MiB(10 * raw) << "; store on disk " << MiB(on_disk) << " ("
            << 100.0 * static_cast<double>(on_disk) / static_cast<double>(10 * raw) << "% of 10 images, "
            << static_cast<double>(on_disk) / static_cast<double>(raw) << " images); stored_bytes: ";
  for (const auto& s : snaps.snapshots()) std::cerr << s.id() << ":" << MiB(s.stored_bytes()) << " ";
  std::cerr << "sum " << MiB(stored) << "\n";
  EXPECT_GE(raw, 256ull << 20) << "an image of a job with 256 MiB resident should hold 256 MiB";
  EXPECT_LT(on_disk, 3 * raw) << "the store holds " << MiB(on_disk) << " for 10 snapshots of " << MiB(raw);
  EXPECT_LT(stored, 3 * raw) << "the snapshots say they added " << MiB(stored);

  // Every snapshot restores and goes on from its own value with intact memory.
  long previous = 0;
  for (int i = 0; i < snaps.snapshots_size(); i++) {
    const auto& s = snaps.snapshots(i);
    // The job was frozen for snapshot i after it was created and before snapshot i+1 was.
    const long lo = sampler.AtMost(s.created_unix_ms());
    const long hi = i + 1 < snaps.snapshots_size() ? sampler.AtLeast(snaps.snapshots(i + 1).created_unix_ms())
                                                   : killed_at;
    long resumed = 0;
    ASSERT_NO_FATAL_FAILURE(CloneResumesWithIntactMemory(id, s.id(), file, lo, hi < 0 ? killed_at : hi, &resumed));
    EXPECT_GT(resumed, previous) << "snapshot " << s.id() << " resumed no later than the one before it";
    previous = resumed;
  }
  std::cerr << "[store] test took " << SecondsSince(t0) << " s\n";
}

// Acceptance 2. The daemon is SIGKILLed 30 times: twice out of three while a snapshot's
// images are being ingested into the store (from the moment the ingest's lease appears, at a
// random moment within as long as the last ingest took), once out of three from the moment
// the dump's staging directory appears (at a random moment within the last dump and ingest).
// Before every other kill one snapshot completes, so that the killed ingests build on
// snapshots listed by earlier daemons. The job itself runs on through all of it.
TEST_F(Store, DaemonSigkilledDuringIngestLeavesEveryListedSnapshotRestorable) {
  const auto t0 = SteadyClock::now();
  const std::string file = WorkPath("memhog.txt");
  std::string id;
  ASSERT_TRUE(RunWith({"--interval", "1", "--keep", "4"}, {BinPath("lz-memhog"), "128", file}, &id));
  api::JobInfo info;
  ASSERT_TRUE(WaitForState(id, "running", &info));
  const pid_t pid = info.pid();
  ASSERT_TRUE(WaitForValues(file, 5));

  unsigned seed = static_cast<unsigned>(WallMs());
  if (const char* s = getenv("LAZARUS_IT_SEED")) seed = static_cast<unsigned>(std::stoul(s));
  std::cerr << "[store] seed " << seed << " (LAZARUS_IT_SEED)\n";
  std::mt19937 rng(seed);

  const std::string leases = StoreDir() + "/leases";
  auto dumping = [&] {
    glob_t g{};
    int rc = glob((daemon_->StagingDir() + "/" + id + "-dump-*").c_str(), GLOB_NOSORT, nullptr, &g);
    bool found = rc == 0 && g.gl_pathc > 0;
    globfree(&g);
    return found;
  };
  // How long the last snapshot's dump and ingest took, from the daemon's logs
  // ("snapshot N taken: dump X ms, ingest Y ms").
  auto last_times = [&](long* dump_ms, long* ingest_ms) {
    *dump_ms = *ingest_ms = 150;
    for (const auto& log : daemon_logs_)
      for (const auto& line : SplitLines(ReadFile(log))) {
        auto at = line.find(" taken: dump ");
        if (at == std::string::npos) continue;
        long d = 0, i = 0;
        if (std::sscanf(line.c_str() + at, " taken: dump %ld ms, ingest %ld ms", &d, &i) == 2) {
          *dump_ms = d;
          *ingest_ms = i;
        }
      }
  };
  const std::string manifests = StoreDir() + "/manifests/" + id;
  auto snapshot_completes = [&](Millis timeout) {
    const auto listed = Entries(manifests);
    return WaitUntil(
        [&] {
          for (const auto& m : Entries(manifests))
            if (!listed.count(m) && m.find(".tmp") == std::string::npos) return true;
          return false;
        },
        timeout, 5ms);
  };
  ASSERT_TRUE(WaitUntil([&] { return Entries(manifests).size() >= 2; }, 30s)) << "no 2 periodic snapshots in 30 s";
  int kills_in_ingest = 0, kills_in_staging = 0, kills_after = 0;
  std::string criu_left;
  for (int i = 0; i < 30; i++) {
    // The job still makes progress: a daemon killed during a dump must not leave it frozen.
    size_t n = ReadValues(file).size();
    if (!WaitUntil([&] { return ReadValues(file).size() >= n + 5; }, 10s)) {
      FAIL() << "after " << i << " daemon kills the job (pid " << pid << ") no longer runs: "
             << DescribeValues(ReadValues(file)) << "\n"
             << DescribeProcesses(pid) << "criu processes:\n" << CriuProcesses();
    }
    if (i % 2 == 1) {
      ASSERT_TRUE(snapshot_completes(20s)) << "no snapshot completed within 20 s after kill " << i - 1 << "; job:\n"
                                           << DescribeProcesses(pid);
    }
    const bool in_ingest = i % 3 != 0;
    const std::set<std::string> stale = Entries(leases);  // left by killed daemons until the next GC
    auto ingesting = [&] {
      for (const auto& l : Entries(leases))
        if (!stale.count(l)) return true;
      return false;
    };
    bool caught = WaitUntil([&] { return in_ingest ? ingesting() : dumping(); }, 20s, 1ms);
    ASSERT_TRUE(caught) << "kill " << i << ": no snapshot " << (in_ingest ? "ingest" : "dump")
                        << " began within 20 s; job:\n" << DescribeProcesses(pid);
    long dump_ms = 0, ingest_ms = 0;
    last_times(&dump_ms, &ingest_ms);
    std::uniform_int_distribution<long> delay(0, in_ingest ? ingest_ms : dump_ms + ingest_ms);
    std::this_thread::sleep_for(Millis(delay(rng)));
    const bool lease_now = ingesting();
    const bool staging_now = dumping();
    daemon_->Kill();
    (lease_now ? kills_in_ingest : staging_now ? kills_in_staging : kills_after)++;
    std::string criu = CriuProcesses();
    if (!criu.empty()) criu_left += "after kill " + std::to_string(i) + ":\n" + criu;
    ASSERT_TRUE(RestartDaemon()) << "after kill " << i;
  }
  const double kills_s = SecondsSince(t0);
  std::cerr << "[store] 30 daemon kills in " << kills_s << " s: " << kills_in_ingest
            << " during an ingest (its lease existed), " << kills_in_staging
            << " during the dump or the end of the snapshot (staging, no lease), " << kills_after
            << " after the snapshot\n";
  if (!criu_left.empty()) std::cerr << "[store] criu processes seen right after a daemon kill:\n" << criu_left;

  // The last daemon takes snapshots as before; the job ran on in the same process through
  // all of it, and its memory is intact.
  ASSERT_TRUE(snapshot_completes(20s)) << "the last daemon completed no snapshot within 20 s";
  ASSERT_NO_FATAL_FAILURE(StopPeriodicSnapshots(id, &info));
  EXPECT_EQ(info.pid(), pid) << info.ShortDebugString();
  size_t n = ReadValues(file).size();
  ASSERT_TRUE(WaitUntil([&] { return ReadValues(file).size() >= n + 20; }, 10s))
      << "the job no longer runs:\n" << DescribeProcesses(pid);
  EXPECT_EQ(ReadFile(file).find("BAD"), std::string::npos) << Tail(ReadFile(file), 3);

  CmdResult v = Cli({"verify", "--all", "--json"}, 120s);
  EXPECT_EQ(v.exit_code, 0) << v.Describe();
  api::VerifyReport report;
  ASSERT_TRUE(ParseJson(v.out, &report));
  EXPECT_TRUE(report.ok()) << report.ShortDebugString();
  EXPECT_EQ(report.bad_chunks_size(), 0) << report.ShortDebugString();
  EXPECT_EQ(report.bad_manifests_size(), 0) << report.ShortDebugString();
  api::SnapshotList snaps;
  ASSERT_TRUE(Snapshots(id, &snaps));
  ASSERT_GE(snaps.snapshots_size(), 1) << "no snapshot survived";
  EXPECT_EQ(report.snapshots_checked(), static_cast<uint64_t>(snaps.snapshots_size())) << report.ShortDebugString();
  std::cerr << "[store] listed snapshots:";
  for (const auto& s : snaps.snapshots()) std::cerr << " " << s.id();
  std::cerr << "; verify: " << report.ShortDebugString() << "\n";

  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  std::this_thread::sleep_for(50ms);
  const long killed_at = ReadValues(file).back();
  std::string last_clone;
  for (const auto& s : snaps.snapshots())
    ASSERT_NO_FATAL_FAILURE(CloneResumesWithIntactMemory(id, s.id(), file, 1, killed_at, nullptr, &last_clone));

  // What the killed ingests left behind is garbage that GC reclaims: removing a job runs it.
  CmdResult rm = Cli({"rm", last_clone});
  ASSERT_EQ(rm.exit_code, 0) << rm.Describe();
  EXPECT_EQ(Entries(leases).size(), 0u) << "stale leases after GC";
  EXPECT_EQ(Entries(StoreDir() + "/tmp").size(), 0u) << "temporary files of killed ingests after GC";
  CmdResult v2 = Cli({"verify", "--all"}, 120s);
  EXPECT_EQ(v2.exit_code, 0) << "GC removed chunks a listed snapshot needs: " << v2.Describe();
  std::cerr << "[store] test took " << SecondsSince(t0) << " s\n";
}

// Acceptance 3. A chunk that only the newest snapshot needs (it appeared with it) gets one
// byte flipped.
TEST_F(Store, FlippedByteInAChunkIsNamedByVerifyAndRestoreFallsBack) {
  const std::string file = WorkPath("memhog.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-memhog"), "32", file}, &id));
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitForValues(file, 20));
  uint32_t s1 = 0, s2 = 0, s3 = 0;
  ASSERT_TRUE(Checkpoint(id, &s1));
  std::this_thread::sleep_for(300ms);
  const long a2 = ReadValues(file).back();
  ASSERT_TRUE(Checkpoint(id, &s2));
  const long b2 = ReadValues(file).back();
  std::this_thread::sleep_for(500ms);  // ~200 pages change
  const auto before = ChunkFiles();
  ASSERT_TRUE(Checkpoint(id, &s3));
  const auto after = ChunkFiles();
  std::string victim;  // "ab/abcdef..."
  for (const auto& [name, size] : after)
    if (!before.count(name) && (victim.empty() || size > after.at(victim))) victim = name;
  ASSERT_FALSE(victim.empty()) << "snapshot " << s3 << " added no chunk file to the store (" << after.size()
                               << " chunk files)";
  const std::string chunk_id = Lower(victim.substr(victim.find('/') + 1));
  const std::string path = StoreDir() + "/chunks/" + victim;
  const off_t size = FileSize(path);
  ASSERT_GT(size, 41) << path;
  const off_t at = 40 + (size - 40) / 2;  // in the payload, after the 40-byte header
  {
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
    unsigned char c = 0;
    ASSERT_EQ(::pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    ASSERT_EQ(::pwrite(fd, &c, 1, at), 1);
    ::close(fd);
  }
  std::cerr << "[store] flipped byte " << at << " of " << size << " in chunk " << chunk_id << "\n";
  const std::string newest = id + "/" + std::to_string(s3);

  // verify names the chunk and the snapshot that needs it, and only that one.
  CmdResult v = Cli({"verify", id}, 120s);
  EXPECT_EQ(v.exit_code, 1) << "verify of a damaged store must exit 1: " << v.Describe();
  EXPECT_NE(Lower(v.out).find(chunk_id), std::string::npos) << "verify does not name chunk " << chunk_id << ": "
                                                             << v.Describe();
  EXPECT_NE(v.out.find(newest), std::string::npos) << "verify does not name snapshot " << newest << ": " << v.Describe();
  std::cerr << "[store] verify said:\n" << v.out;
  CmdResult vj = Cli({"verify", id, "--json"}, 120s);
  EXPECT_EQ(vj.exit_code, 1) << vj.Describe();
  api::VerifyReport report;
  ASSERT_TRUE(ParseJson(vj.out, &report));
  EXPECT_FALSE(report.ok());
  ASSERT_EQ(report.bad_chunks_size(), 1) << report.ShortDebugString();
  EXPECT_EQ(Lower(report.bad_chunks(0).id()), chunk_id) << report.ShortDebugString();
  EXPECT_FALSE(report.bad_chunks(0).problem().empty()) << report.ShortDebugString();
  ASSERT_EQ(report.bad_chunks(0).needed_by_size(), 1) << report.ShortDebugString();
  EXPECT_EQ(report.bad_chunks(0).needed_by(0), newest) << report.ShortDebugString();
  ASSERT_EQ(report.damaged_snapshots_size(), 1) << report.ShortDebugString();
  EXPECT_EQ(report.damaged_snapshots(0), newest) << report.ShortDebugString();
  EXPECT_EQ(report.snapshots_checked(), 3u) << report.ShortDebugString();

  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  std::this_thread::sleep_for(50ms);
  const long killed_at = ReadValues(file).back();

  // The damaged snapshot, asked for by name: refused, naming the chunk; nothing changes.
  CmdResult bad = Cli({"restore", id, "--snapshot", std::to_string(s3)}, 120s);
  EXPECT_EQ(bad.exit_code, 1) << bad.Describe();
  EXPECT_TRUE(IsOneLineCliError(bad));
  EXPECT_NE(Lower(bad.err).find(chunk_id), std::string::npos) << "the error does not name chunk " << chunk_id << ": "
                                                               << bad.Describe();
  api::JobInfo info;
  ASSERT_TRUE(Status(id, &info));
  EXPECT_EQ(info.state(), "crashed") << info.ShortDebugString();

  // Without --snapshot: the newest intact one, snapshot 2, with a warning naming snapshot 3.
  const size_t n = ReadValues(file).size();
  CmdResult r = Cli({"restore", id}, 120s);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("lazarus: warning: "), std::string::npos) << "no warning: " << r.Describe();
  EXPECT_NE(r.err.find("snapshot " + std::to_string(s3) + " "), std::string::npos)
      << "the warning does not name the damaged snapshot " << s3 << ": " << r.Describe();
  std::cerr << "[store] restore --snapshot " << s3 << " said: " << Trim(bad.err) << "\n[store] restore said: " << Trim(r.err) << "\n";
  ASSERT_TRUE(WaitForState(id, "running", &info));
  EXPECT_EQ(info.restored_from(), id + "/" + std::to_string(s2)) << info.ShortDebugString();
  ASSERT_TRUE(WaitForValues(file, n + 101, 30s));
  EXPECT_EQ(ReadFile(file).find("BAD"), std::string::npos) << Tail(ReadFile(file), 3);
  EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(ReadValues(file), a2, b2, killed_at, 101))
      << "the job should go on from snapshot " << s2;
}

// Acceptance 4. The state directory is a 160 MiB tmpfs. After a first snapshot, a ballast
// file fills it up to the last 64 KiB: enough for the job record, not for the pages the
// job changed since.
TEST_F(Store, FullDiskFailsTheSnapshotCleanlyAndTheNextOneSucceedsOnceSpaceIsBack) {
  daemon_->Kill();
  std::error_code ec;
  fs::remove_all(state_dir_, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(::mkdir(state_dir_.c_str(), 0700), 0) << strerror(errno);
  ASSERT_EQ(::mount("tmpfs", state_dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=160m,mode=0700"), 0)
      << "mount a tmpfs on " << state_dir_ << ": " << strerror(errno);
  mounted_ = state_dir_;
  ASSERT_TRUE(RestartDaemon());

  const std::string file = WorkPath("memhog.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-memhog"), "64", file}, &id));
  api::JobInfo info;
  ASSERT_TRUE(WaitForState(id, "running", &info));
  const pid_t pid = info.pid();
  ASSERT_TRUE(WaitForValues(file, 20));
  const long a1 = ReadValues(file).back();
  uint32_t s1 = 0;
  ASSERT_TRUE(Checkpoint(id, &s1));
  const long b1 = ReadValues(file).back();

  // Fill the file system.
  const std::string ballast = state_dir_ + "/ballast";
  {
    int fd = ::open(ballast.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << strerror(errno);
    std::vector<char> buf(1 << 20, 'x');
    off_t written = 0;
    for (size_t chunk : {size_t{1} << 20, size_t{4096}}) {
      for (;;) {
        ssize_t w = ::write(fd, buf.data(), chunk);
        if (w <= 0) break;
        written += w;
      }
    }
    ASSERT_EQ(errno, ENOSPC) << strerror(errno);
    ASSERT_EQ(::ftruncate(fd, written - 64 * 1024), 0) << strerror(errno);
    ::close(fd);
  }
  struct statvfs vfs;
  ASSERT_EQ(::statvfs(state_dir_.c_str(), &vfs), 0);
  std::cerr << "[store] " << vfs.f_bavail * vfs.f_frsize << " bytes free on the state directory's tmpfs\n";
  std::this_thread::sleep_for(1s);  // ~400 pages (1.6 MiB) change

  CmdResult full = Cli({"checkpoint", id}, 120s);
  EXPECT_EQ(full.exit_code, 1) << "a checkpoint on a full file system must fail: " << full.Describe();
  EXPECT_TRUE(IsOneLineCliError(full));
  EXPECT_TRUE(full.err.find("No space left on device") != std::string::npos ||
              Lower(full.err).find("out of space") != std::string::npos)
      << "the error does not say that space ran out: " << full.Describe();
  std::cerr << "[store] the full checkpoint said: " << Trim(full.err) << "\n";

  // The job runs on in the same process; status says what failed.
  ASSERT_TRUE(Status(id, &info));
  EXPECT_EQ(info.state(), "running") << info.ShortDebugString();
  EXPECT_EQ(info.pid(), pid) << info.ShortDebugString();
  EXPECT_TRUE(ProcessAlive(pid));
  EXPECT_TRUE(info.last_error().find("No space left on device") != std::string::npos ||
              Lower(info.last_error()).find("out of space") != std::string::npos)
      << "status should report the failed snapshot: " << info.ShortDebugString();
  size_t n = ReadValues(file).size();
  EXPECT_TRUE(WaitForValues(file, n + 20)) << DescribeProcesses(pid);
  // Nothing of the failed snapshot is listed or left in the store's temporaries; the first
  // snapshot is intact.
  api::SnapshotList snaps;
  ASSERT_TRUE(Snapshots(id, &snaps));
  ASSERT_EQ(snaps.snapshots_size(), 1) << snaps.ShortDebugString();
  EXPECT_EQ(snaps.snapshots(0).id(), s1);
  EXPECT_EQ(Entries(StoreDir() + "/tmp").size(), 0u) << "the failed ingest left temporary files";
  EXPECT_EQ(Entries(StoreDir() + "/leases").size(), 0u) << "the failed ingest left its lease";
  CmdResult v = Cli({"verify", id}, 120s);
  EXPECT_EQ(v.exit_code, 0) << "the older snapshot was harmed: " << v.Describe();

  // Space is back: the next snapshot succeeds.
  ASSERT_EQ(::unlink(ballast.c_str()), 0) << strerror(errno);
  uint32_t s2 = 0;
  ASSERT_TRUE(Checkpoint(id, &s2));
  EXPECT_GT(s2, s1);
  ASSERT_TRUE(Status(id, &info));
  EXPECT_EQ(info.state(), "running") << info.ShortDebugString();
  EXPECT_EQ(info.pid(), pid) << info.ShortDebugString();
  EXPECT_EQ(info.last_error(), "") << "a successful snapshot should clear the error: " << info.ShortDebugString();
  ASSERT_TRUE(Snapshots(id, &snaps));
  ASSERT_EQ(snaps.snapshots_size(), 2) << snaps.ShortDebugString();
  v = Cli({"verify", id, "--json"}, 120s);
  EXPECT_EQ(v.exit_code, 0) << v.Describe();
  api::VerifyReport report;
  ASSERT_TRUE(ParseJson(v.out, &report));
  EXPECT_TRUE(report.ok()) << report.ShortDebugString();
  EXPECT_EQ(report.snapshots_checked(), 2u) << report.ShortDebugString();

  // The first snapshot still restores, with intact memory.
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  std::this_thread::sleep_for(50ms);
  const long killed_at = ReadValues(file).back();
  n = ReadValues(file).size();
  CmdResult r = Cli({"restore", id, "--snapshot", std::to_string(s1)}, 120s);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitForValues(file, n + 101, 30s));
  EXPECT_EQ(ReadFile(file).find("BAD"), std::string::npos) << Tail(ReadFile(file), 3);
  EXPECT_TRUE(IsTwoRunsResumingFromSnapshot(ReadValues(file), a1, b1, killed_at, 101));
}

// `rm` deletes a job's snapshots and GC frees the chunks no other snapshot needs: exactly
// the chunks of another job's snapshot are left, and they still verify.
TEST_F(Store, RemovingAJobFreesItsChunks) {
  auto bytes = [](const std::map<std::string, off_t>& chunks) {
    uint64_t total = 0;
    for (const auto& [name, size] : chunks) total += static_cast<uint64_t>(std::max<off_t>(size, 0));
    return total;
  };
  const std::string other_file = WorkPath("counter.txt");
  std::string other;
  ASSERT_TRUE(RunJob({BinPath("lz-counter"), other_file}, &other));
  ASSERT_TRUE(WaitForState(other, "running"));
  ASSERT_TRUE(WaitForValues(other_file, 5));
  uint32_t snap = 0;
  ASSERT_TRUE(Checkpoint(other, &snap));
  const auto other_chunks = ChunkFiles();
  ASSERT_FALSE(other_chunks.empty());

  const std::string file = WorkPath("memhog.txt");
  std::string id;
  ASSERT_TRUE(RunJob({BinPath("lz-memhog"), "32", file}, &id));
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitForValues(file, 20));
  ASSERT_TRUE(Checkpoint(id, &snap));
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(Checkpoint(id, &snap));
  const auto both = ChunkFiles();
  const uint64_t du_both = DiskUsage(StoreDir());
  ASSERT_GT(bytes(both), bytes(other_chunks) + (16ull << 20))
      << "two snapshots of a 32 MiB job should add at least 16 MiB of chunks";

  CmdResult r = Cli({"rm", "--force", id});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const auto left = ChunkFiles();
  std::cerr << "[figures] chunks: " << other_chunks.size() << " (" << MiB(bytes(other_chunks))
            << ") for a counter's snapshot; " << both.size() << " (" << MiB(bytes(both)) << ", store on disk "
            << MiB(du_both) << ") with two snapshots of a 32 MiB job too; " << left.size() << " ("
            << MiB(bytes(left)) << ", store on disk " << MiB(DiskUsage(StoreDir())) << ") after rm of that job\n";
  EXPECT_FALSE(fs::exists(StoreDir() + "/manifests/" + id)) << "the removed job's manifests are still there";
  for (const auto& [name, size] : other_chunks)
    EXPECT_TRUE(left.count(name)) << "GC removed chunk " << name << ", which the other job needs";
  for (const auto& [name, size] : left)
    EXPECT_TRUE(other_chunks.count(name)) << "chunk " << name << " of the removed job is still there";
  CmdResult v = Cli({"verify", "--all"}, 120s);
  EXPECT_EQ(v.exit_code, 0) << v.Describe();
}

// --keep 2: after 5 snapshots the last 2 are listed and only their manifests are stored.
TEST_F(Store, RetentionKeepsTheLastN) {
  const std::string file = WorkPath("counter.txt");
  std::string id;
  ASSERT_TRUE(RunWith({"--keep", "2"}, {BinPath("lz-counter"), file}, &id));
  ASSERT_TRUE(WaitForState(id, "running"));
  ASSERT_TRUE(WaitForValues(file, 5));
  std::vector<uint32_t> taken;
  for (int i = 0; i < 5; i++) {
    uint32_t s = 0;
    ASSERT_TRUE(Checkpoint(id, &s));
    taken.push_back(s);
  }
  api::SnapshotList snaps;
  ASSERT_TRUE(Snapshots(id, &snaps));
  ASSERT_EQ(snaps.snapshots_size(), 2) << snaps.ShortDebugString();
  EXPECT_EQ(snaps.snapshots(0).id(), taken[3]) << snaps.ShortDebugString();
  EXPECT_EQ(snaps.snapshots(1).id(), taken[4]) << snaps.ShortDebugString();
  EXPECT_EQ(Entries(StoreDir() + "/manifests/" + id).size(), 2u)
      << "manifests left: " << ::testing::PrintToString(Entries(StoreDir() + "/manifests/" + id));
  api::JobInfo info;
  ASSERT_TRUE(Status(id, &info));
  EXPECT_EQ(info.snapshot_count(), 2u) << info.ShortDebugString();
  EXPECT_EQ(info.latest_snapshot(), taken[4]) << info.ShortDebugString();
  EXPECT_EQ(info.policy().keep_last(), 2u) << info.ShortDebugString();
  // A dropped snapshot is gone for restore too.
  ASSERT_TRUE(KillJobProcesses(id));
  ASSERT_TRUE(WaitForState(id, "crashed"));
  CmdResult r = Cli({"restore", id, "--snapshot", std::to_string(taken[0])});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  r = Cli({"restore", id, "--snapshot", std::to_string(taken[3])});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

}  // namespace
}  // namespace lztest
