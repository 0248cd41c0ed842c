// Process set-up: who records (the environment contract with the daemon), the channel
// table, fork, keys, and stopping the job. See client-lib/README.md, "Environment".
#include "client-lib/src/runtime.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "effectlog/log_files.h"
#include "lazarus/lazarus.h"

namespace lazarus::client {

Globals g_lazarus;
__thread ThreadState t_lazarus;
Runtime g_runtime;

namespace {

// Executables of Lazarus itself: they may inherit a job's environment (the keeper and
// init start the job) but are never part of its replay.
bool IsLazarusHelper() {
  char exe[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return false;
  exe[n] = '\0';
  const char* base = std::strrchr(exe, '/');
  base = base != nullptr ? base + 1 : exe;
  for (const char* helper : {"lazarusd", "lazarus", "lazarus-keeper", "lazarus-init"}) {
    if (std::strcmp(base, helper) == 0) return true;
  }
  return false;
}

void ChildAfterFork() {
  // The child shares the log's mappings but not the parent's channels: it runs inert
  // (client-lib/README.md, "Processes").
  g_lazarus.mode.store(kInert, std::memory_order_relaxed);
}

// Decides whether this process records, and claims the log for it. Returns false to stay
// inert. The claim is written into the environment, which the process's children and the
// programs it execs inherit: a process with another pid is a descendant (inert); the same
// pid means this process exec'd a new program, which continues on channels of its own.
bool ClaimLog(const char* log_dir) {
  if (IsLazarusHelper()) return false;
  const pid_t pid = ::getpid();
  uint32_t image = 0;
  if (const char* owner = std::getenv("LAZARUS_LOG_OWNER"); owner != nullptr && *owner != '\0') {
    if (std::strtol(owner, nullptr, 10) != pid) return false;
    const char* img = std::getenv("LAZARUS_IMAGE");
    image = img != nullptr ? static_cast<uint32_t>(std::strtoul(img, nullptr, 10)) : 1;
  }
  if (image >= kMaxImages) return false;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d", pid);
  ::setenv("LAZARUS_LOG_OWNER", buf, 1);
  std::snprintf(buf, sizeof buf, "%u", image + 1);
  ::setenv("LAZARUS_IMAGE", buf, 1);
  g_runtime.image = image;
  std::snprintf(g_runtime.log_dir, sizeof g_runtime.log_dir, "%s", log_dir);
  return true;
}

// Where the library keeps the descriptors it holds (log segments): high, out of the way of
// the program, whose descriptor numbers must come out the same on every run (they are part
// of what the shim records). Below the soft limit, and not so high that the kernel grows the
// descriptor table to a large size.
int HighFd() {
  struct rlimit lim {};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return 16384;
  const rlim_t soft = lim.rlim_cur;
  if (soft <= 128) return 0;
  return static_cast<int>(std::min<rlim_t>(soft - 64, 16384));
}

[[noreturn]] void FailInit(const std::string& what) {
  std::string text = "lazarus: cannot use the effect log " + std::string(g_runtime.log_dir) + ": " + what +
                     "\nlazarus: the job is stopped (exit status 88)\n";
  WriteStderr(text.c_str());
  ::_exit(88);
}

__attribute__((constructor)) void Init() {
  ScopedGuard guard;
  ::pthread_atfork(nullptr, nullptr, ChildAfterFork);
  g_runtime.verbose = std::getenv("LAZARUS_VERBOSE") != nullptr;
  void* table = ::mmap(nullptr, sizeof(Channel) * kMaxChannels, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (table != MAP_FAILED) g_runtime.channels = static_cast<Channel*>(table);

  const char* log_dir = std::getenv("LAZARUS_LOG");
  if (log_dir == nullptr || *log_dir == '\0') return;
  if (const char* job = std::getenv("LAZARUS_JOB")) std::snprintf(g_runtime.job, sizeof g_runtime.job, "%s", job);
  if (!ClaimLog(log_dir)) return;
  if (g_runtime.channels == nullptr) FailInit("no memory for the channel table");
  effectlog::WriterOptions options;
  options.min_fd = g_runtime.fd_base = HighFd();
  auto writer = effectlog::Writer::Open(g_runtime.log_dir, options);
  if (!writer.ok()) FailInit(writer.status().message());
  g_runtime.writer = writer->release();
  g_lazarus.control = g_runtime.writer->control().block();
  // A process starts as incarnation 1. Seeing a later one at its first call means it runs
  // again over a log its earlier run wrote (a restore, or a restart from the beginning):
  // it replays from its channels' current sequences (0 for a fresh start).
  g_lazarus.seen_incarnation.store(1, std::memory_order_release);
  g_lazarus.mode.store(kActive, std::memory_order_release);
  if (g_runtime.verbose) {
    char line[PATH_MAX + 512];
    std::snprintf(line, sizeof line, "lazarus: recording effects of job %s (pid %d, program image %u) in %s\n",
                  g_runtime.job, ::getpid(), g_runtime.image, g_runtime.log_dir);
    WriteStderr(line);
  }
}

}  // namespace

void WriteStderr(const char* text) noexcept {
  size_t left = std::strlen(text);
  while (left > 0) {
    const long n = ::syscall(SYS_write, 2, text, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text += n;
    left -= static_cast<size_t>(n);
  }
}

Channel* AttachThreadChannel(uint32_t id) noexcept {
  static Channel overflow;  // only reached by an inert process with more threads than slots
  const uint32_t slot = g_runtime.next_slot.fetch_add(1, std::memory_order_relaxed);
  Channel* ch;
  if (g_runtime.channels == nullptr || slot >= kMaxChannels) {
    if (IsActive()) StopJob(LAZARUS_EXIT_NO_LOG, "lazarus: too many threads for the channel table\n");
    ch = &overflow;
  } else {
    ch = &g_runtime.channels[slot];
  }
  ch->id = id;
  effectlog::Atomic(ch->next_seq).store(0, std::memory_order_relaxed);
  ch->generation = 0;
  ch->replay = nullptr;
  ch->cursor = 0;
  t_lazarus.channel = ch;
  return ch;
}

Channel* CurrentChannel() noexcept {
  if (Channel* ch = t_lazarus.channel) return ch;
  const uint32_t ordinal = g_runtime.next_ordinal.fetch_add(1, std::memory_order_relaxed);
  if (ordinal >= kImageChannelStride && IsActive())
    StopJob(LAZARUS_EXIT_NO_LOG, "lazarus: more threads than one program image may number\n");
  return AttachThreadChannel(g_runtime.image * kImageChannelStride + ordinal);
}

int LibraryFdBase() noexcept { return IsActive() ? g_runtime.fd_base : 0; }

bool IsLibraryFd(int fd) noexcept {
  if (!IsActive() || g_runtime.fd_base <= 0 || fd < g_runtime.fd_base) return false;
  char link[64], target[PATH_MAX];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n <= 0) return false;
  target[n] = '\0';
  const size_t dir = std::strlen(g_runtime.log_dir);
  return std::strncmp(target, g_runtime.log_dir, dir) == 0 && target[dir] == '/';
}

uint32_t MaxPayload() noexcept {
  return g_runtime.writer != nullptr ? g_runtime.writer->max_payload() : effectlog::MaxPayload(effectlog::kDefaultSegmentSize);
}

size_t FormatKey(char* buf, size_t size, uint32_t channel, uint64_t seq) noexcept {
  const char* job = g_runtime.job[0] != '\0' ? g_runtime.job : "-";
  const int n = std::snprintf(buf, size, "%s:%" PRIu32 ":%" PRIu64, job, channel, seq);
  return n < 0 ? 0 : static_cast<size_t>(n);
}

const char* KindNameOf(uint32_t kind) noexcept {
  if (kind >= kShimKindBase) return g_runtime.shim.kind_name != nullptr ? g_runtime.shim.kind_name(kind) : nullptr;
  const int n = std::min(g_runtime.kind_name_count.load(std::memory_order_acquire), kMaxKindNames);
  for (int i = 0; i < n; ++i) {
    if (g_runtime.kind_names[i].kind == kind) return g_runtime.kind_names[i].name;
  }
  return nullptr;
}

void RegisterShim(const ShimPlugin& plugin) noexcept { g_runtime.shim = plugin; }

void StopJob(int status, const char* report) noexcept {
  WriteStderr(report);
  char line[256];
  std::snprintf(line, sizeof line, "lazarus: job %s stopped by Lazarus (pid %d, exit status %d)\n",
                g_runtime.job[0] != '\0' ? g_runtime.job : "-", ::getpid(), status);
  WriteStderr(line);
  ::_exit(status);
}

}  // namespace lazarus::client
