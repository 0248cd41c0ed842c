/* Shared helpers of the test job programs (header only, plain C11). */
#ifndef LZ_COMMON_H
#define LZ_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Sleeps `ms` milliseconds; an interrupted sleep (a restore, a signal) just ends early. */
static inline void lz_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Writes "n\n" with one write(2); retries on EINTR. Returns 0 or -1. */
static inline int lz_write_value(int fd, long n) {
  char buf[32];
  int len = snprintf(buf, sizeof buf, "%ld\n", n);
  for (;;) {
    ssize_t w = write(fd, buf, (size_t)len);
    if (w == len) return 0;
    if (w < 0 && errno == EINTR) continue;
    return -1;
  }
}

static inline void lz_die(const char* what) {
  fprintf(stderr, "%s: %s\n", what, strerror(errno));
  exit(1);
}

static inline long lz_parse_long(const char* s, const char* what) {
  char* end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') {
    fprintf(stderr, "bad %s: %s\n", what, s);
    exit(2);
  }
  return v;
}

#endif
