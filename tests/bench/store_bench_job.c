// store-bench-job: the process lazarus-bench-store dumps again and again. It holds MIB MiB
// of resident memory whose content looks like a program's heap (words of text, pointer-like
// values, counters and random bytes, so zstd compresses it about 2.5x), every page different.
// On SIGUSR1 it rewrites 1% of its pages, chosen at random, with new content, then reports
// the new generation. Status line in STATUSFILE, rewritten in place (fixed width):
//   "gen %10u\n"   1 once memory is filled, +1 after each rewrite
//
//   store-bench-job [--content heap|random] MIB STATUSFILE
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u

static volatile sig_atomic_t g_rewrite;
static void on_signal(int sig) { (void)sig; g_rewrite = 1; }

static uint64_t xorshift64(uint64_t* s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void fill_page(uint64_t* page, uint64_t seed, int random_only) {
  static const char vocab[16][9] = {"process ", "durable ", "snapshot", "restore ", "effect  ", "journal ",
                                    "kernel  ", "memory  ", "chunk   ", "replay  ", "freeze  ", "thread  ",
                                    "daemon  ", "lazarus ", "signal  ", "namespac"};
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (unsigned i = 0; i < PAGE / 8; ++i) {
    uint64_t r = xorshift64(&state);
    if (random_only) {
      page[i] = r;
      continue;
    }
    switch (r & 3) {
      case 0:
      case 1: memcpy(&page[i], vocab[r >> 60], 8); break;          // text
      case 2: page[i] = 0x00007f0000000000ull | (r >> 40 << 4); break;  // pointer-like
      default: page[i] = (r >> 8) & ((r & 4) ? 0xffffffffffffull : 0xffff); break;  // numbers
    }
  }
}

static void write_status(int fd, unsigned gen) {
  char line[32];
  int n = snprintf(line, sizeof line, "gen %10u\n", gen);
  if (pwrite(fd, line, (size_t)n, 0) != n) _exit(3);
}

int main(int argc, char** argv) {
  int random_only = 0, i = 1;
  if (i + 1 < argc && strcmp(argv[i], "--content") == 0) {
    random_only = strcmp(argv[i + 1], "random") == 0;
    i += 2;
  }
  if (argc - i != 2) {
    fprintf(stderr, "usage: store-bench-job [--content heap|random] MIB STATUSFILE\n");
    return 2;
  }
  size_t pages = (size_t)strtoul(argv[i], NULL, 10) * (1u << 20) / PAGE;
  if (pages == 0) return 2;
  int fd = open(argv[i + 1], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    perror("store-bench-job: open status file");
    return 1;
  }
  uint8_t* mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror("store-bench-job: mmap");
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_BLOCK, &block, &old);

  uint64_t seed = 1;
  for (size_t p = 0; p < pages; ++p) fill_page((uint64_t*)(mem + p * PAGE), seed++, random_only);
  unsigned gen = 1;
  write_status(fd, gen);
  uint64_t pick = 0x2545F4914F6CDD1Dull;
  for (;;) {
    while (!g_rewrite) sigsuspend(&old);  // no busy loop: the job is idle between dumps
    g_rewrite = 0;
    // Exactly 1% distinct pages: a bitmap of the ones already picked this round.
    uint8_t* picked = calloc(pages / 8 + 1, 1);
    if (!picked) _exit(4);
    for (size_t n = 0; n < pages / 100;) {
      size_t p = (size_t)(xorshift64(&pick) % pages);
      if (picked[p / 8] & (1u << (p % 8))) continue;
      picked[p / 8] |= (uint8_t)(1u << (p % 8));
      fill_page((uint64_t*)(mem + p * PAGE), seed++, random_only);
      ++n;
    }
    free(picked);
    write_status(fd, ++gen);
  }
}
