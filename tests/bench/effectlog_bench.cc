// lazarus-bench-effectlog: appends per second and append latency of the effect log in each
// durability mode, with 1 and 4 threads, and in the same run the same records inserted
// into SQLite (WAL, one transaction per record, synchronous=NORMAL and FULL) and written
// with one write(2) per record (and one write(2)+fdatasync(2)). Prints figures; never
// fails because something was slow.
//
// Every configuration runs for a fixed time per run (appending as fast as it can), R runs
// each; the figures are the medians over the runs of appends/s and of the median latency.
// Latency is timed around single appends with steady_clock (every 16th append for the
// fast configurations), so it includes the clock read itself (~20 ns, printed).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/fs_util.h"
#include "effectlog/group_syncer.h"
#include "effectlog/log_files.h"
#include "effectlog/prepare.h"
#include "effectlog/writer.h"

namespace lazarus::bench {
namespace {

using namespace lazarus::effectlog;
using Clock = std::chrono::steady_clock;

constexpr size_t kPayload = 64;

struct Options {
  int runs = 5;
  double seconds = 1.0;  // per run
  std::string dir = "/var/tmp";
  bool quick = false;
  bool prepare = true;  // a daemon thread prepares segments ahead (as lazarusd does)
};

struct RunResult {
  double per_second = 0;
  double median_ns = 0;
};

struct Figures {
  std::string name;
  int threads = 1;
  double per_second = 0;  // median over runs
  double median_ns = 0;   // median over runs
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// One appender: called with (thread, sequence); returns false on failure.
using AppendFn = std::function<bool(int thread, uint64_t seq)>;

// Runs `threads` threads calling `append` for `seconds`; times every `sample_every`-th call.
RunResult Drive(int threads, double seconds, int sample_every, const AppendFn& append) {
  std::atomic<bool> go{false}, stop{false}, failed{false};
  std::vector<uint64_t> counts(threads, 0);
  std::vector<std::vector<double>> lat(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      lat[t].reserve(1 << 20);
      while (!go.load(std::memory_order_acquire)) {
      }
      uint64_t i = 0;
      for (; !stop.load(std::memory_order_relaxed); ++i) {
        if (i % sample_every == 0) {
          const auto a = Clock::now();
          if (!append(t, i)) failed = true;
          const auto b = Clock::now();
          if (lat[t].size() < lat[t].capacity()) lat[t].push_back(std::chrono::duration<double, std::nano>(b - a).count());
        } else if (!append(t, i)) {
          failed = true;
        }
        if (failed.load(std::memory_order_relaxed)) break;
      }
      counts[t] = i;
    });
  }
  const auto t0 = Clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  if (failed) {
    std::fprintf(stderr, "bench: an append failed\n");
    return {};
  }
  uint64_t total = 0;
  std::vector<double> all;
  for (int t = 0; t < threads; ++t) {
    total += counts[t];
    all.insert(all.end(), lat[t].begin(), lat[t].end());
  }
  return {static_cast<double>(total) / elapsed, Median(all)};
}

std::string ScratchDir(const Options& o) {
  std::string tmpl = o.dir + "/lazarus-bench-effectlog-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  return tmpl;
}

// The same record content for every contender: 64 bytes of payload and its digest.
struct Record {
  char payload[kPayload];
  Digest128 digest;
};
Record MakeRecord(int thread, uint64_t seq) {
  Record r;
  for (size_t i = 0; i < kPayload; ++i) r.payload[i] = static_cast<char>(seq * 31 + i + thread);
  r.digest = RequestDigest(r.payload, kPayload);
  return r;
}

RunResult RunEffectLog(const Options& o, DurabilityMode mode, int threads) {
  const std::string dir = ScratchDir(o) + "/log";
  LogOptions lo;
  lo.durability = mode;
  if (Status st = CreateLog(dir, lo); !st.ok()) {
    std::fprintf(stderr, "bench: %s\n", st.message().c_str());
    std::exit(1);
  }
  auto writer = Writer::Open(dir);
  if (!writer.ok()) {
    std::fprintf(stderr, "bench: %s\n", writer.status().message().c_str());
    std::exit(1);
  }
  // The daemon's part: group-mode rounds, and segments prepared ahead (which the
  // group syncer's rounds do too).
  std::unique_ptr<GroupSyncer> syncer;
  std::jthread daemon_thread;
  if (mode == DurabilityMode::kGroup) {
    syncer = GroupSyncer::Open(dir).value();
    daemon_thread = std::jthread([&](std::stop_token stop) { (void)syncer->Run(stop); });
  } else if (o.prepare) {
    daemon_thread = std::jthread([&](std::stop_token stop) {
      auto control = ControlFile::Open(dir, true).value();
      while (!stop.stop_requested()) {
        (void)PrepareNextSegment(dir, control);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  Writer* w = writer->get();
  const Record rec = MakeRecord(0, 0);
  RunResult r = Drive(threads, o.seconds, mode == DurabilityMode::kSync ? 1 : 16, [&](int t, uint64_t seq) {
    AppendArgs a;
    a.type = RecordType::kResult;
    a.channel = static_cast<uint32_t>(t);
    a.sequence = seq;
    a.kind = 1;
    a.digest = rec.digest;
    a.payload = rec.payload;
    a.payload_size = kPayload;
    return w->Append(a).ok();
  });
  if (daemon_thread.joinable()) {
    daemon_thread.request_stop();
    daemon_thread.join();
  }
  writer->reset();
  (void)RemoveTree(Dirname(dir));
  return r;
}

RunResult RunSqlite(const Options& o, bool full, int threads) {
  const std::string dir = ScratchDir(o);
  const std::string db = dir + "/log.db";
  std::vector<sqlite3*> conns(threads, nullptr);
  std::vector<sqlite3_stmt*> stmts(threads, nullptr);
  for (int t = 0; t < threads; ++t) {
    if (sqlite3_open(db.c_str(), &conns[t]) != SQLITE_OK) {
      std::fprintf(stderr, "bench: sqlite3_open %s\n", db.c_str());
      std::exit(1);
    }
    sqlite3_busy_timeout(conns[t], 10000);
    const std::string pragmas = std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") + (full ? "FULL" : "NORMAL") +
                                "; CREATE TABLE IF NOT EXISTS log(channel INTEGER, seq INTEGER, kind INTEGER,"
                                " digest BLOB, payload BLOB);";
    char* err = nullptr;
    if (sqlite3_exec(conns[t], pragmas.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::fprintf(stderr, "bench: sqlite: %s\n", err ? err : "?");
      std::exit(1);
    }
    sqlite3_prepare_v2(conns[t], "INSERT INTO log VALUES(?,?,?,?,?)", -1, &stmts[t], nullptr);
  }
  const Record rec = MakeRecord(0, 0);
  // Autocommit: one transaction per record.
  RunResult r = Drive(threads, o.seconds, 1, [&](int t, uint64_t seq) {
    sqlite3_stmt* s = stmts[t];
    sqlite3_bind_int(s, 1, t);
    sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(seq));
    sqlite3_bind_int(s, 3, 1);
    sqlite3_bind_blob(s, 4, &rec.digest, sizeof rec.digest, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, rec.payload, kPayload, SQLITE_STATIC);
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  });
  for (int t = 0; t < threads; ++t) {
    sqlite3_finalize(stmts[t]);
    sqlite3_close(conns[t]);
  }
  (void)RemoveTree(dir);
  return r;
}

RunResult RunWrite(const Options& o, bool fdatasync, int threads) {
  const std::string dir = ScratchDir(o);
  const std::string path = dir + "/log";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror("open");
    std::exit(1);
  }
  // The same bytes as an effect-log record: header fields, digest, payload.
  RunResult r = Drive(threads, o.seconds, fdatasync ? 1 : 16, [&](int t, uint64_t seq) {
    Record rec = MakeRecord(t, seq);
    char buf[kRecordHeaderSize + kPayload];
    RecordHeader h{};
    h.channel = static_cast<uint32_t>(t);
    h.sequence = seq;
    h.payload_size = kPayload;
    std::memcpy(h.digest, &rec.digest, sizeof h.digest);
    std::memcpy(buf, &h, sizeof h);
    std::memcpy(buf + sizeof h, rec.payload, kPayload);
    if (::write(fd, buf, sizeof buf) != static_cast<ssize_t>(sizeof buf)) return false;
    return !fdatasync || ::fdatasync(fd) == 0;
  });
  ::close(fd);
  (void)RemoveTree(dir);
  return r;
}

Figures Measure(const Options& o, const std::string& name, int threads, const std::function<RunResult()>& run) {
  std::vector<double> rates, lats;
  for (int i = 0; i < o.runs; ++i) {
    RunResult r = run();
    rates.push_back(r.per_second);
    lats.push_back(r.median_ns);
  }
  Figures f{name, threads, Median(rates), Median(lats)};
  std::printf("  %-34s %2d   %14.0f   %12.0f\n", name.c_str(), threads, f.per_second, f.median_ns);
  std::fflush(stdout);
  return f;
}

double ClockOverheadNs() {
  std::vector<double> v;
  for (int i = 0; i < 100000; ++i) {
    const auto a = Clock::now();
    const auto b = Clock::now();
    v.push_back(std::chrono::duration<double, std::nano>(b - a).count());
  }
  return Median(v);
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      o.quick = true;
      o.runs = 1;
      o.seconds = 0.2;
    } else if (a == "--runs" && i + 1 < argc) {
      o.runs = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--seconds" && i + 1 < argc) {
      o.seconds = std::max(0.05, std::atof(argv[++i]));
    } else if (a == "--no-prepare") {
      o.prepare = false;
    } else if (a == "--dir" && i + 1 < argc) {
      o.dir = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: lazarus-bench-effectlog [--quick] [--runs N] [--seconds S] [--dir DIR] [--no-prepare]\n"
                   "  --quick     one short run of each configuration (a few seconds)\n"
                   "  --runs N    runs per configuration, figures are medians (default 5)\n"
                   "  --seconds S length of each run (default 1)\n"
                   "  --dir DIR   where the scratch logs and databases go (default /var/tmp)\n"
                   "  --no-prepare  no daemon thread preparing segments ahead (process and sync modes)\n");
      return 2;
    }
  }
  utsname u{};
  ::uname(&u);
  std::printf("lazarus-bench-effectlog: %zu-byte payloads (%u-byte records), %d run(s) of %.1f s per line, medians\n",
              kPayload, RecordLength(kPayload), o.runs, o.seconds);
  std::printf("  machine: %s %s, %u cpus; scratch in %s; sqlite %s; steady_clock read: %.0f ns\n", u.sysname,
              u.release, std::thread::hardware_concurrency(), o.dir.c_str(), sqlite3_libversion(), ClockOverheadNs());
  std::printf("  segments of %u MiB%s\n", kDefaultSegmentSize >> 20,
              o.prepare ? ", prepared ahead by a daemon thread (group: by its syncer)" : ", created by the writer");
  std::printf("\n  %-34s %s   %14s   %12s\n", "configuration", "thr", "appends/s", "median ns");

  std::vector<Figures> f;
  auto el = [&](DurabilityMode m, int t) {
    return Measure(o, std::string("effect log, ") + DurabilityModeName(m), t, [&] { return RunEffectLog(o, m, t); });
  };
  auto sq = [&](bool full, int t) {
    return Measure(o, std::string("sqlite WAL, synchronous=") + (full ? "FULL" : "NORMAL"), t,
                   [&] { return RunSqlite(o, full, t); });
  };
  auto wr = [&](bool sync, int t) {
    return Measure(o, sync ? "write(2)+fdatasync per record" : "write(2) per record", t,
                   [&] { return RunWrite(o, sync, t); });
  };
  const Figures p1 = el(DurabilityMode::kProcess, 1), p4 = el(DurabilityMode::kProcess, 4);
  const Figures g1 = el(DurabilityMode::kGroup, 1), g4 = el(DurabilityMode::kGroup, 4);
  const Figures s1 = el(DurabilityMode::kSync, 1), s4 = el(DurabilityMode::kSync, 4);
  const Figures qn1 = sq(false, 1), qn4 = sq(false, 4);
  const Figures qf1 = sq(true, 1), qf4 = sq(true, 4);
  const Figures w1 = wr(false, 1), w4 = wr(false, 4);
  const Figures ws1 = wr(true, 1), ws4 = wr(true, 4);

  auto verdict = [](bool ok) { return ok ? "met" : "NOT met"; };
  std::printf("\n  goals\n");
  std::printf("  process, 1 thread >= 10M appends/s:            %.1fM  %s\n", p1.per_second / 1e6,
              verdict(p1.per_second >= 10e6));
  std::printf("  process, 1 thread median latency <= 100 ns:    %.0f ns  %s\n", p1.median_ns, verdict(p1.median_ns <= 100));
  std::printf("  sync, 4 threads >= 3x sync, 1 thread:          %.2fx  %s\n", s4.per_second / std::max(1.0, s1.per_second),
              verdict(s4.per_second >= 3 * s1.per_second));
  // Same durability: process and group survive a crash of the process, not a power cut
  // (group: not the last few ms), like WAL with synchronous=NORMAL; sync is FULL.
  const struct {
    const char* what;
    const Figures& ours;
    const Figures& theirs;
  } pairs[] = {{"process vs sqlite NORMAL, 1 thread", p1, qn1}, {"process vs sqlite NORMAL, 4 threads", p4, qn4},
               {"group vs sqlite NORMAL, 1 thread", g1, qn1},   {"group vs sqlite NORMAL, 4 threads", g4, qn4},
               {"sync vs sqlite FULL, 1 thread", s1, qf1},      {"sync vs sqlite FULL, 4 threads", s4, qf4}};
  for (const auto& p : pairs) {
    std::printf("  %-44s %.1fx  %s\n", (std::string(p.what) + ":").c_str(),
                p.ours.per_second / std::max(1.0, p.theirs.per_second), verdict(p.ours.per_second >= p.theirs.per_second));
  }
  (void)w1;
  (void)w4;
  (void)ws1;
  (void)ws4;
  return 0;
}

}  // namespace
}  // namespace lazarus::bench

int main(int argc, char** argv) { return lazarus::bench::Main(argc, argv); }
