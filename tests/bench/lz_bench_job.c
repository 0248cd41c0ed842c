// lz-bench-job: the process lazarus-bench-checkpoint snapshots. It holds MIB MiB of
// resident memory with non-zero content (so CRIU must write every page) and measures, from
// the inside, how long it was stopped: every millisecond it reads CLOCK_MONOTONIC, keeps
// the largest gap between two consecutive readings and adds up how long it was stalled.
//
//   lz-bench-job [--init] [--content random|text] [--churn PAGES_PER_S] MIB GAPFILE
//
// GAPFILE holds one fixed-width line, rewritten in place (pwrite at offset 0, so its size
// never changes and CRIU restores it) after every reading:
//   "gap_us %12llu resets %10u gen %10u ticks %14llu stall_us %14llu stalls %10u since_us %14llu\n"
// gap_us    the largest gap (microseconds) since the last reset
// resets    how many resets were done: the reader sends a reset and waits until it counts
// gen       how many times the memory was (re)filled; 1 once the job is ready
// ticks     readings taken: the reader waits for it to advance to know that the job has run
//           (and so recorded the gap of a freeze) after a dump
// stall_us  since the last reset, the sum over gaps longer than 2 ms of their excess over
//           2 ms: the time the job was kept from running (frozen, or starved of CPU)
// stalls    how many gaps were longer than 2 ms since the last reset
// since_us  time since the last reset, by the same clock
// Signals: SIGUSR1 resets the maximum, the stall sum and its count; SIGUSR2 refills all
// memory with new content (so a snapshot cannot reuse chunks of an earlier one), then
// resets them.
//
// --churn PAGES_PER_S keeps rewriting that many pages a second (spread evenly over time,
// each a page chosen at random, with content never seen before), like a program that
// dirties part of its heap between two periodic snapshots.
//
// --init makes the process the PID 1 of a tree shaped like a Lazarus job: it becomes a
// session leader, forks the measuring job and reaps children until the job exits.
//
// Clock, sleep and write use raw syscalls: under Lazarus the LD_PRELOAD shim would log
// 1000 clock readings a second into the effect log, which is not what this measures.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_reset_requested;
static volatile sig_atomic_t g_refill_requested;

static void on_signal(int sig) {
  if (sig == SIGUSR1) g_reset_requested = 1;
  if (sig == SIGUSR2) g_refill_requested = 1;
}

static uint64_t monotonic_ns(void) {
  struct timespec ts;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_1ms(void) {
  struct timespec ts = {0, 1000000};
  // EINTR (a signal arrived) just ends this sleep early.
  syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL);
}

static uint64_t xorshift64(uint64_t* s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

#define PAGE_WORDS (4096u / 8)
#define STALL_THRESHOLD_NS 2000000ull

// Fills `words` words from a generator seeded with `seed`. "random" is incompressible;
// "text" draws 8-byte words from a 16-word vocabulary (compresses well).
static void fill_words(uint64_t* mem, size_t words, uint64_t seed, int text) {
  static const char vocab[16][9] = {"process ", "durable ", "snapshot", "restore ",
                                    "effect  ", "journal ", "kernel  ", "memory  ",
                                    "chunk   ", "replay  ", "freeze  ", "thread  ",
                                    "daemon  ", "lazarus ", "signal  ", "namespac"};
  uint64_t state = seed;
  for (size_t i = 0; i < words; ++i) {
    uint64_t r = xorshift64(&state);
    if (text)
      memcpy(&mem[i], vocab[r >> 60], 8);
    else
      mem[i] = r;
  }
}

// Every page different from every other and from the previous generation's.
static void fill(uint64_t* mem, size_t words, unsigned gen, int text) {
  fill_words(mem, words, 0x9E3779B97F4A7C15ull * (gen + 1), text);
}

// One page rewritten by --churn: the n-th rewrite gets a seed no fill() uses.
static void churn_page(uint64_t* page, uint64_t n, int text) {
  fill_words(page, PAGE_WORDS, 0xD1B54A32D192ED03ull * (n + 1) ^ 0x5555555555555555ull, text);
}

struct stats {
  uint64_t max_gap_ns, stall_ns, since_ns, ticks;
  unsigned resets, gen, stalls;
};

static void write_line(int fd, const struct stats* st) {
  char line[192];
  int n = snprintf(line, sizeof line,
                   "gap_us %12llu resets %10u gen %10u ticks %14llu stall_us %14llu stalls %10u since_us %14llu\n",
                   (unsigned long long)(st->max_gap_ns / 1000), st->resets, st->gen, (unsigned long long)st->ticks,
                   (unsigned long long)(st->stall_ns / 1000), st->stalls, (unsigned long long)(st->since_ns / 1000));
  syscall(SYS_pwrite64, fd, line, (size_t)n, (off_t)0);
}

// PID 1 of the job's namespace: reaps everything, leaves with the job's status.
static int run_init(pid_t job) {
  for (;;) {
    int status;
    pid_t p = wait(&status);
    if (p < 0 && errno == EINTR) continue;
    if (p < 0) return 1;
    if (p == job) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

static int usage(void) {
  fprintf(stderr, "usage: lz-bench-job [--init] [--content random|text] [--churn PAGES_PER_S] MIB GAPFILE\n");
  return 2;
}

int main(int argc, char** argv) {
  int as_init = 0, text = 0, i = 1;
  double churn_per_s = 0;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; ++i) {
    if (strcmp(argv[i], "--init") == 0) {
      as_init = 1;
    } else if (strcmp(argv[i], "--content") == 0 && i + 1 < argc) {
      ++i;
      if (strcmp(argv[i], "text") == 0) text = 1;
      else if (strcmp(argv[i], "random") != 0) return usage();
    } else if (strcmp(argv[i], "--churn") == 0 && i + 1 < argc) {
      char* e;
      churn_per_s = strtod(argv[++i], &e);
      if (*e != '\0' || churn_per_s < 0) return usage();
    } else {
      return usage();
    }
  }
  if (argc - i != 2) return usage();
  char* end;
  unsigned long mib = strtoul(argv[i], &end, 10);
  if (*end != '\0' || mib == 0) return usage();
  const char* gap_path = argv[i + 1];

  if (as_init) {
    if (setsid() < 0) perror("lz-bench-job: setsid");
    pid_t job = fork();
    if (job < 0) {
      perror("lz-bench-job: fork");
      return 1;
    }
    if (job > 0) return run_init(job);
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;  // no SA_RESTART: a signal ends the current sleep
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);

  size_t bytes = (size_t)mib << 20;
  uint64_t* mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror("lz-bench-job: mmap");
    return 1;
  }
  // Not O_APPEND: pwrite on an O_APPEND fd would append.
  int fd = open(gap_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "lz-bench-job: open %s: %s\n", gap_path, strerror(errno));
    return 1;
  }

  struct stats st;
  memset(&st, 0, sizeof st);
  write_line(fd, &st);
  size_t pages = bytes / 4096;
  fill(mem, bytes / 8, st.gen++, text);
  uint64_t prev = monotonic_ns();
  uint64_t reset_at = prev;
  uint64_t churn_start = prev, churn_done = 0, pick = 0x2545F4914F6CDD1Dull;
  for (;;) {
    sleep_1ms();
    uint64_t now = monotonic_ns();
    uint64_t gap = now - prev;
    prev = now;
    if (gap > st.max_gap_ns) st.max_gap_ns = gap;
    if (gap > STALL_THRESHOLD_NS) {
      st.stall_ns += gap - STALL_THRESHOLD_NS;
      ++st.stalls;
    }
    if (churn_per_s > 0) {
      uint64_t owed = (uint64_t)((double)(now - churn_start) * churn_per_s / 1e9);
      for (; churn_done < owed; ++churn_done)
        churn_page(mem + (xorshift64(&pick) % pages) * PAGE_WORDS, churn_done, text);
    }
    if (g_refill_requested) {
      g_refill_requested = 0;
      fill(mem, bytes / 8, st.gen++, text);
      g_reset_requested = 1;
      prev = monotonic_ns();
    }
    if (g_reset_requested) {
      g_reset_requested = 0;
      st.max_gap_ns = 0;
      st.stall_ns = 0;
      st.stalls = 0;
      reset_at = prev;
      ++st.resets;
    }
    ++st.ticks;
    st.since_ns = prev - reset_at;
    write_line(fd, &st);
  }
}
