/* lz-forker FILE: forks a child that runs the counter loop on FILE; the parent waits for
 * it and exits with the child's status if it dies. The job tree has two processes. */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "lz_common.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: lz-forker FILE\n");
    return 2;
  }
  pid_t child = fork();
  if (child < 0) lz_die("fork");
  if (child == 0) {
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) lz_die(argv[1]);
    for (long n = 1;; n++) {
      if (lz_write_value(fd, n) != 0) lz_die("write");
      lz_sleep_ms(10);
    }
  }
  for (;;) {
    int status = 0;
    pid_t r = waitpid(child, &status, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      lz_die("waitpid");
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  }
}
