/* lazarus-init: PID 1 of a job's PID namespace.
 *
 * Usage: lazarus-init [--uid UID --gid GID] [--cwd DIR] -- CMD ARGS...
 * Starts CMD in a new session, as UID/GID (with that user's supplementary groups) in DIR,
 * reaps every orphan of the namespace, and exits with CMD's status (128+N when CMD died
 * of signal N); when it exits the kernel ends the namespace.
 *
 * It stays root itself: CRIU's parasite in the root task of a PID namespace mounts that
 * namespace's /proc to dump it, which an unprivileged task may not do. It runs nothing
 * but CMD, and CMD only after dropping to the job owner's ids.
 * Kept tiny and in C: it is part of every snapshot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int drop_privileges(uid_t uid, gid_t gid) {
  gid_t groups[64];
  int count = 64;
  struct passwd* pw;
  if (uid == 0) return 0;
  pw = getpwuid(uid);
  if (pw == NULL || getgrouplist(pw->pw_name, gid, groups, &count) < 0) {
    groups[0] = gid;
    count = 1;
  }
  if (setgroups((size_t)count, groups) != 0 || setgid(gid) != 0 || setuid(uid) != 0) return -1;
  return 0;
}

int main(int argc, char** argv) {
  uid_t uid = 0;
  gid_t gid = 0;
  const char* cwd = NULL;
  int first = 1;
  while (first < argc && strcmp(argv[first], "--") != 0) {
    if (first + 1 >= argc) break;
    if (strcmp(argv[first], "--uid") == 0) uid = (uid_t)strtoul(argv[first + 1], NULL, 10);
    else if (strcmp(argv[first], "--gid") == 0) gid = (gid_t)strtoul(argv[first + 1], NULL, 10);
    else if (strcmp(argv[first], "--cwd") == 0) cwd = argv[first + 1];
    else break;
    first += 2;
  }
  if (first < argc && strcmp(argv[first], "--") == 0) first++;
  if (first >= argc) {
    fprintf(stderr, "usage: lazarus-init [--uid UID --gid GID] [--cwd DIR] -- CMD ARGS...\n");
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
    if (drop_privileges(uid, gid) != 0) {
      fprintf(stderr, "lazarus: cannot switch to uid %u gid %u: %s\n", (unsigned)uid, (unsigned)gid, strerror(errno));
      _exit(126);
    }
    /* After dropping privileges: the job enters its directory with its owner's rights. */
    if (cwd != NULL && chdir(cwd) != 0) {
      fprintf(stderr, "lazarus: cannot enter %s: %s\n", cwd, strerror(errno));
      _exit(126);
    }
    execvp(argv[first], argv + first);
    fprintf(stderr, "lazarus: cannot run %s: %s\n", argv[first], strerror(errno));
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
