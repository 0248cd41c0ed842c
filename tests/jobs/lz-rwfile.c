/* lz-rwfile FILE: opens FILE with O_WRONLY|O_CREAT|O_TRUNC (not append) and every 10 ms
 * writes "n\n" at the current offset. The file grows after every snapshot: CRIU's
 * file-size check refuses to restore that unless Lazarus handles it. */
#include <fcntl.h>

#include "lz_common.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: lz-rwfile FILE\n");
    return 2;
  }
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) lz_die(argv[1]);
  for (long n = 1;; n++) {
    if (lz_write_value(fd, n) != 0) lz_die("write");
    lz_sleep_ms(10);
  }
}
