/* lz-config-ticker: the job of acceptance test 4 (divergence). An ordinary C program:
 *
 *   lz-config-ticker CONFIG OUT
 *
 * every 20 ms it reads CONFIG (a regular file: read live, never recorded) and appends
 * "tick <n> <first line of CONFIG>\n" to OUT with one write(2), which the shim records.
 * When CONFIG changes between the original run and a replay, the restored program asks to
 * write other bytes than the log holds at that point: replay stops it with status 86 and a
 * report naming the channel and the sequence. */
#include <fcntl.h>

#include "../jobs/lz_common.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: lz-config-ticker CONFIG OUT\n");
    return 2;
  }
  int out = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) lz_die(argv[2]);
  for (long n = 1;; n++) {
    char config[128] = "";
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t r = read(fd, config, sizeof config - 1);
      config[r > 0 ? r : 0] = '\0';
      close(fd);
    }
    config[strcspn(config, "\n")] = '\0';
    char line[192];
    int len = snprintf(line, sizeof line, "tick %ld %s\n", n, config);
    if (write(out, line, (size_t)len) != len) lz_die(argv[2]);
    lz_sleep_ms(20);
  }
}
