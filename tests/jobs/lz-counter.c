/* lz-counter FILE: every 10 ms appends "n\n" (n = 1, 2, ...) to FILE with one write(2). */
#include <fcntl.h>

#include "lz_common.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: lz-counter FILE\n");
    return 2;
  }
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) lz_die(argv[1]);
  for (long n = 1;; n++) {
    if (lz_write_value(fd, n) != 0) lz_die("write");
    lz_sleep_ms(10);
  }
}
