// The client library's benchmark (issue 5). In one run:
//  1. a syscall-heavy loop, native and under the shim (goal: at most 1.3x native):
//     1M small writes to a pipe (16 bytes each), 1M clock_gettime, 100k round trips of 32
//     bytes over loopback TCP to an echo server;
//  2. the cost of one explicit effect (lazarus_effect with a no-op perform function),
//     recorded and not under Lazarus;
//  3. replay speed: a run that replays 100,000 logged effects (goal: under 100 ms), for
//     explicit effects and for the shim's clock readings.
//
//   lazarus-bench-client [--quick]     (--quick: a tenth of the counts, for a smoke test)
//
// Each measurement runs in a child process (this program again, in --worker mode) with the
// environment `lazarus run` gives a job: LAZARUS_LOG naming a fresh log, and for the shim
// LD_PRELOAD. The worker times itself with raw clock_gettime system calls (not recorded).
// While a recording worker runs, this process plays the daemon's part that matters for
// speed: it prepares the next log segment ahead of time (PrepareNextSegment), as the daemon
// does every few milliseconds, so that appends never create files.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "effectlog/log_files.h"
#include "effectlog/prepare.h"
#include "lazarus/lazarus.h"

namespace {

int64_t NowNs() {
  timespec ts{};
  ::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);  // raw: never recorded by the shim
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// ---- workers (child processes) ----------------------------------------------------------------
void Report(int64_t ns) { std::printf("elapsed_ns=%" PRId64 "\n", ns); }

// The pipe is drained by this thread with raw read system calls (not recorded) every 32 KiB:
// a reader process would add scheduler wake-ups whose number depends on the writer's speed.
int WorkerPipe(long n) {
  int p[2];
  if (::pipe(p) != 0) return 1;
  const char msg[16] = "0123456789abcde";
  char drain[65536];
  const int64_t t0 = NowNs();
  for (long i = 0; i < n; ++i) {
    if (::write(p[1], msg, sizeof msg) != sizeof msg) return 1;
    if (i % 2048 == 2047 && ::syscall(SYS_read, p[0], drain, sizeof drain) <= 0) return 1;
  }
  const int64_t t1 = NowNs();
  Report(t1 - t0);
  return 0;
}

int WorkerClock(long n) {
  timespec ts{};
  int64_t sink = 0;
  const int64_t t0 = NowNs();
  for (long i = 0; i < n; ++i) {
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    sink += ts.tv_nsec;
  }
  const int64_t t1 = NowNs();
  Report(t1 - t0);
  return sink == 42 ? 1 : 0;
}

int WorkerSocket(long n) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return 1;
  const pid_t server = ::fork();
  if (server == 0) {  // the echo server: a forked child, not recorded
    const int c = ::accept(listener, nullptr, nullptr);
    char buf[64];
    ssize_t r;
    while ((r = ::recv(c, buf, sizeof buf, 0)) > 0) {
      if (::send(c, buf, static_cast<size_t>(r), 0) != r) break;
    }
    ::_exit(0);
  }
  ::close(listener);
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 1;
  char msg[32] = "request-request-request-request";
  char buf[32];
  const int64_t t0 = NowNs();
  for (long i = 0; i < n; ++i) {
    if (::send(s, msg, sizeof msg, 0) != sizeof msg) return 1;
    size_t got = 0;
    while (got < sizeof buf) {
      const ssize_t r = ::recv(s, buf + got, sizeof buf - got, 0);
      if (r <= 0) return 1;
      got += static_cast<size_t>(r);
    }
  }
  const int64_t t1 = NowNs();
  ::close(s);
  ::waitpid(server, nullptr, 0);
  Report(t1 - t0);
  return 0;
}

int32_t Noop(void*, lazarus_effect_t* effect) {
  lazarus_effect_set_result(effect, "ok", 2);
  return 0;
}

int WorkerExplicit(long n) {
  lazarus_outcome_t* outcome = lazarus_outcome_create();
  const uint32_t kind = lazarus_kind("bench.noop");
  char request[16] = "request-0000000";
  const int64_t t0 = NowNs();
  for (long i = 0; i < n; ++i) {
    std::memcpy(request + 8, &i, sizeof i);
    if (lazarus_effect(kind, request, sizeof request, nullptr, Noop, nullptr, outcome) != LAZARUS_OK) return 1;
  }
  const int64_t t1 = NowNs();
  Report(t1 - t0);
  std::printf("replayed=%" PRIu64 "\n", lazarus_counter(LAZARUS_COUNTER_REPLAYED));
  lazarus_outcome_destroy(outcome);
  return 0;
}

int Worker(const std::string& what, long n) {
  if (what == "pipe") return WorkerPipe(n);
  if (what == "clock") return WorkerClock(n);
  if (what == "socket") return WorkerSocket(n);
  if (what == "explicit") return WorkerExplicit(n);
  return 2;
}

// ---- the driver ----------------------------------------------------------------------------------
std::string BinDir() {
  return std::filesystem::canonical("/proc/self/exe").parent_path().string();
}

struct Run {
  bool ok = false;
  int64_t ns = 0;
  uint64_t replayed = 0;
};

// Runs a worker; `log` non-empty: under Lazarus with that log (and the shim when `shim`).
Run RunWorker(const std::string& what, long n, const std::string& log, bool shim) {
  int out[2];
  if (::pipe(out) != 0) return {};
  std::atomic<bool> done{false};
  std::thread preparer;
  if (!log.empty()) {
    preparer = std::thread([&] {
      auto control = lazarus::effectlog::ControlFile::Open(log, /*writable=*/true);
      if (!control.ok()) return;
      while (!done.load()) {
        (void)lazarus::effectlog::PrepareNextSegment(log, *control);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    if (!log.empty()) {
      ::setenv("LAZARUS_LOG", log.c_str(), 1);
      ::setenv("LAZARUS_JOB", "bench", 1);
    } else {
      ::unsetenv("LAZARUS_LOG");
    }
    ::unsetenv("LAZARUS_LOG_OWNER");
    if (shim) ::setenv("LD_PRELOAD", (BinDir() + "/liblazarus-preload.so").c_str(), 1);
    const std::string self = BinDir() + "/lazarus-bench-client";
    const std::string count = std::to_string(n);
    ::execl(self.c_str(), self.c_str(), "--worker", what.c_str(), count.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[256];
  ssize_t r;
  while ((r = ::read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(r));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  done = true;
  if (preparer.joinable()) preparer.join();
  Run run;
  const size_t e = text.find("elapsed_ns=");
  run.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && e != std::string::npos;
  if (run.ok) run.ns = std::strtoll(text.c_str() + e + 11, nullptr, 10);
  const size_t p = text.find("replayed=");
  if (p != std::string::npos) run.replayed = std::strtoull(text.c_str() + p + 9, nullptr, 10);
  if (!run.ok) std::fprintf(stderr, "bench worker %s failed (status %d): %s\n", what.c_str(), status, text.c_str());
  return run;
}

class ScratchLog {
 public:
  ScratchLog() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lzc-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir_ = tmpl;
    const auto st = lazarus::effectlog::CreateLog(dir_ + "/log", {});
    if (!st.ok()) {
      std::fprintf(stderr, "create log: %s\n", st.message().c_str());
      std::exit(1);
    }
  }
  ~ScratchLog() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string log() const { return dir_ + "/log"; }
  void Bump() const {
    auto c = lazarus::effectlog::ControlFile::Open(log(), true);
    if (c.ok()) c->BeginIncarnation();
  }

 private:
  std::string dir_;
};

// The best of `runs` runs (each with a fresh log). Other work on the machine only ever
// slows a run down, so the fastest is the closest to the cost itself.
Run Best(const std::string& what, long n, bool recorded, bool shim) {
  ScratchLog scratch;
  return RunWorker(what, n, recorded ? scratch.log() : "", shim);
}

void KeepBest(Run* best, const Run& r) {
  if (!r.ok) {
    best->ok = false;
    return;
  }
  if (best->ns == 0 || r.ns < best->ns) *best = r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::strcmp(argv[1], "--worker") == 0) return Worker(argv[2], std::atol(argv[3]));
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const long scale = quick ? 10 : 1;
  const int runs = quick ? 2 : 5;
  const long n_pipe = 1000000 / scale, n_clock = 1000000 / scale, n_socket = 100000 / scale;
  const long n_explicit = 200000 / scale, n_replay = 100000 / scale;
  bool ok = true;

  std::printf("lazarus client benchmark%s (best of %d runs, native and shim interleaved; a fresh log per run)\n\n",
              quick ? " --quick" : "", runs);
  std::printf("1. syscall-heavy loop, native vs under the shim (process durability)\n");
  std::printf("   %-34s %12s %12s %8s\n", "", "native", "shim", "ratio");
  int64_t native_total = 0, shim_total = 0;
  struct Part {
    const char* what;
    const char* label;
    long n;
  } parts[] = {{"pipe", "small writes to a pipe", n_pipe},
               {"clock", "clock_gettime(CLOCK_MONOTONIC)", n_clock},
               {"socket", "loopback TCP round trips", n_socket}};
  for (const Part& p : parts) {
    Run native{true}, shim{true};
    for (int i = 0; i < runs; ++i) {  // interleaved, so both see the same conditions
      KeepBest(&native, Best(p.what, p.n, false, false));
      KeepBest(&shim, Best(p.what, p.n, true, true));
    }
    if (!native.ok || !shim.ok) {
      ok = false;
      continue;
    }
    native_total += native.ns;
    shim_total += shim.ns;
    char label[64];
    std::snprintf(label, sizeof label, "%ldk %s", p.n / 1000, p.label);
    std::printf("   %-34s %9.0f ns %9.0f ns %7.2fx   (per call; total %.0f ms vs %.0f ms)\n", label,
                static_cast<double>(native.ns) / p.n, static_cast<double>(shim.ns) / p.n,
                static_cast<double>(shim.ns) / static_cast<double>(native.ns), native.ns / 1e6, shim.ns / 1e6);
  }
  if (native_total > 0) {
    std::printf("   %-34s %9.0f ms %9.0f ms %7.2fx   (goal: at most 1.30x)\n", "the whole loop", native_total / 1e6,
                shim_total / 1e6, static_cast<double>(shim_total) / static_cast<double>(native_total));
  }

  std::printf("\n2. explicit effect (lazarus_effect, no-op perform), per call\n");
  Run inert{true}, recorded{true};
  for (int i = 0; i < runs; ++i) {
    KeepBest(&inert, Best("explicit", n_explicit, false, false));
    KeepBest(&recorded, Best("explicit", n_explicit, true, false));
  }
  if (inert.ok && recorded.ok) {
    std::printf("   not under Lazarus (performed only)  %8.0f ns\n", static_cast<double>(inert.ns) / n_explicit);
    std::printf("   recorded (INTENT + RESULT)          %8.0f ns   overhead %.0f ns\n",
                static_cast<double>(recorded.ns) / n_explicit,
                static_cast<double>(recorded.ns - inert.ns) / n_explicit);
  } else {
    ok = false;
  }

  std::printf("\n3. replay: a restored run answering %ldk logged effects from the log (goal: under 100 ms)\n",
              n_replay / 1000);
  for (const char* what : {"explicit", "clock"}) {
    std::vector<int64_t> times;
    uint64_t replayed = 0;
    for (int i = 0; i < runs; ++i) {
      ScratchLog scratch;
      const bool shim = std::strcmp(what, "clock") == 0;
      if (!RunWorker(what, n_replay, scratch.log(), shim).ok) {
        ok = false;
        break;
      }
      scratch.Bump();
      const Run replay = RunWorker(what, n_replay, scratch.log(), shim);
      if (!replay.ok) {
        ok = false;
        break;
      }
      times.push_back(replay.ns);
      replayed = replay.replayed;
    }
    if (times.empty()) continue;
    std::sort(times.begin(), times.end());
    std::printf("   %-34s %8.1f ms  (%.0f ns per effect, index build included)%s\n",
                std::strcmp(what, "clock") == 0 ? "shim: clock_gettime readings" : "explicit effects",
                times.front() / 1e6, static_cast<double>(times.front()) / n_replay,
                std::strcmp(what, "explicit") == 0 && replayed != static_cast<uint64_t>(n_replay) ? "  NOT ALL REPLAYED"
                                                                                                  : "");
  }
  return ok ? 0 : 1;
}
