/* lazarus-init: PID 1 of a job's PID namespace.
 *
 * Usage: lazarus-init -- CMD ARGS...
 * Starts CMD in a new session, reaps every orphan of the namespace, and exits with CMD's
 * status (128+N when CMD died of signal N); when it exits the kernel ends the namespace.
 * Kept tiny and in C: it is part of every snapshot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int first = 1;
  if (first < argc && strcmp(argv[first], "--") == 0) first++;
  if (first >= argc) {
    fprintf(stderr, "usage: lazarus-init -- CMD ARGS...\n");
    return 2;
  }
  /* A session of our own: the job's sid and pgid lie inside the dumped tree. */
  setsid();
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "lazarus-init: fork: %s\n", strerror(errno));
    return 126;
  }
  if (child == 0) {
    execvp(argv[first], argv + first);
    fprintf(stderr, "lazarus-init: cannot run %s: %s\n", argv[first], strerror(errno));
    _exit(127);
  }
  for (;;) {
    int status;
    pid_t pid = wait(&status);
    if (pid < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    if (pid == child) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return 1;
    }
  }
}
