/* lz-memhog MIB FILE [--gaps GAPFILE]
 *
 * Allocates MIB MiB and fills every page with a pattern that is a function of (page index,
 * generation of the page). Then, every 10 ms: appends "n\n" to FILE (O_APPEND), rewrites a
 * few pages with their next generation, and every 100 steps verifies the whole memory
 * against the pattern: on a mismatch it appends "BAD ..." to FILE and exits with status 3.
 *
 * With --gaps GAPFILE, a second thread reads CLOCK_MONOTONIC every 1 ms and keeps the
 * largest gap between consecutive readings, in microseconds; whenever the maximum grows it
 * rewrites GAPFILE in place (pwrite at offset 0) as one fixed-width decimal line. A
 * snapshot's freeze shows up there as a gap. */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#include "lz_common.h"

#define PAGE 4096u
#define WORDS_PER_PAGE (PAGE / sizeof(uint64_t))
#define PAGES_PER_STEP 4
#define VERIFY_EVERY 100

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static uint64_t page_seed(uint64_t page, uint32_t gen) {
  return mix64(page * 0x9e3779b97f4a7c15ULL + ((uint64_t)gen << 32) + 0x1234567ULL);
}

static void fill_page(uint64_t* words, uint64_t page, uint32_t gen) {
  uint64_t seed = page_seed(page, gen);
  for (size_t i = 0; i < WORDS_PER_PAGE; i++) words[i] = seed + i * 0x100000001b3ULL;
}

/* Returns the index of the first bad word, or -1. */
static long check_page(const uint64_t* words, uint64_t page, uint32_t gen) {
  uint64_t seed = page_seed(page, gen);
  for (size_t i = 0; i < WORDS_PER_PAGE; i++)
    if (words[i] != seed + i * 0x100000001b3ULL) return (long)i;
  return -1;
}

static const char* gap_path = NULL;

static void* gap_thread(void* arg) {
  (void)arg;
  int fd = open(gap_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) lz_die(gap_path);
  char line[32];
  int64_t max_us = 0;
  snprintf(line, sizeof line, "%20" PRId64 "\n", max_us);
  if (pwrite(fd, line, 21, 0) != 21) lz_die("pwrite");
  struct timespec prev;
  clock_gettime(CLOCK_MONOTONIC, &prev);
  for (;;) {
    lz_sleep_ms(1);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t gap_us = (int64_t)(now.tv_sec - prev.tv_sec) * 1000000 + (now.tv_nsec - prev.tv_nsec) / 1000;
    prev = now;
    if (gap_us > max_us) {
      max_us = gap_us;
      snprintf(line, sizeof line, "%20" PRId64 "\n", max_us);
      if (pwrite(fd, line, 21, 0) != 21) lz_die("pwrite");
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--gaps") == 0)) {
    fprintf(stderr, "usage: lz-memhog MIB FILE [--gaps GAPFILE]\n");
    return 2;
  }
  long mib = lz_parse_long(argv[1], "MIB");
  if (mib <= 0 || mib > (1L << 20)) {
    fprintf(stderr, "bad MIB: %s\n", argv[1]);
    return 2;
  }
  int fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) lz_die(argv[2]);

  uint64_t pages = (uint64_t)mib * (1024 * 1024 / PAGE);
  uint64_t* mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) lz_die("mmap");
  uint32_t* gen = calloc(pages, sizeof *gen);
  if (gen == NULL) lz_die("calloc");
  for (uint64_t p = 0; p < pages; p++) fill_page(mem + p * WORDS_PER_PAGE, p, 0);

  if (argc == 5) {
    gap_path = argv[4];
    pthread_t t;
    int rc = pthread_create(&t, NULL, gap_thread, NULL);
    if (rc != 0) {
      errno = rc;
      lz_die("pthread_create");
    }
  }

  uint64_t rng = 0x243f6a8885a308d3ULL;
  for (long n = 1;; n++) {
    if (lz_write_value(fd, n) != 0) lz_die("write");
    for (int k = 0; k < PAGES_PER_STEP; k++) {
      rng = mix64(rng + 0x9e3779b97f4a7c15ULL);
      uint64_t p = rng % pages;
      gen[p]++;
      fill_page(mem + p * WORDS_PER_PAGE, p, gen[p]);
    }
    if (n % VERIFY_EVERY == 0) {
      for (uint64_t p = 0; p < pages; p++) {
        long bad = check_page(mem + p * WORDS_PER_PAGE, p, gen[p]);
        if (bad >= 0) {
          char msg[128];
          int len = snprintf(msg, sizeof msg, "BAD page=%" PRIu64 " word=%ld gen=%" PRIu32 "\n", p, bad, gen[p]);
          ssize_t w = write(fd, msg, (size_t)len);
          (void)w;
          fprintf(stderr, "lz-memhog: %s", msg);
          exit(3);
        }
      }
    }
    lz_sleep_ms(10);
  }
}
