/* An ordinary C program (nothing of Lazarus linked) that exercises the shim's calls, for
 * the replay tests. It reports with printf: stdio writes are not recorded (calls.def), so
 * every run's report is complete.
 *
 *   lzc-shim-io files OUT N [write|append|writev|pwrite]
 *       writes "line <i>\n" N times to OUT (opened without O_TRUNC), then prints the file
 *       offset ("offset=<o>")
 *   lzc-shim-io clock N
 *       N readings of CLOCK_MONOTONIC ("mono <i> <ns>"), after the second also one of
 *       CLOCK_REALTIME, gettimeofday and time ("real ..."); then "monotonic=<1|0>" (never
 *       decreasing). A run with a larger N follows the same path as one with a smaller N.
 *   lzc-shim-io misc
 *       randomness (getrandom, /dev/urandom), a pipe (write, read, poll, select, epoll_wait,
 *       readv, writev), a datagram socket pair (sendto, recvfrom, sendmsg, recvmsg); prints
 *       what each returned
 *   lzc-shim-io copy IN OUT
 *       copies the regular file IN (reads: not recorded) to OUT with write (recorded)
 *   lzc-shim-io fds OUT N
 *       N times: opens OUT, writes 5 lines, prints the descriptor number ("fd <n>"), closes it
 *   lzc-shim-io ticks OUT N
 *       N ticks, 20 ms apart: reads CLOCK_MONOTONIC, appends "tick <i> <ms since start>\n" to OUT
 *       (opened for each tick, so no file is open between ticks)
 *   lzc-shim-io closeall OUT
 *       writes "a\n" to OUT, closes every descriptor from 3 up (close_range, closefrom, close),
 *       then writes "b\n"
 *   lzc-shim-io fork OUT
 *       a forked child appends "child\n" to OUT and exits; then the parent appends "parent\n"
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void hex(const char* what, const unsigned char* p, long n) {
  printf("%s", what);
  for (long i = 0; i < n; i++) printf("%02x", p[i]);
  printf("\n");
}

static int files(const char* path, int n, const char* mode) {
  int append = strcmp(mode, "append") == 0;
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : 0), 0644);
  if (fd < 0) return 1;
  for (int i = 0; i < n; i++) {
    char line[32];
    int len = snprintf(line, sizeof line, "line %d\n", i);
    ssize_t w;
    if (strcmp(mode, "writev") == 0) {
      struct iovec v[2] = {{line, 5}, {line + 5, (size_t)len - 5}};
      w = writev(fd, v, 2);
    } else if (strcmp(mode, "pwrite") == 0) {
      off_t at = lseek(fd, 0, SEEK_CUR);
      w = pwrite(fd, line, (size_t)len, at);
      if (w > 0) lseek(fd, at + w, SEEK_SET);
    } else {
      w = write(fd, line, (size_t)len);
    }
    if (w != len) {
      printf("short write %zd\n", w);
      return 1;
    }
  }
  printf("offset=%lld\n", (long long)lseek(fd, 0, SEEK_CUR));
  return 0;
}

static long long ns_of(struct timespec t) { return (long long)t.tv_sec * 1000000000LL + t.tv_nsec; }

static int clocks(int n) {
  int monotonic = 1;
  long long last = 0;
  for (int i = 0; i < n; i++) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    printf("mono %d %lld\n", i, ns_of(t));
    if (ns_of(t) < last) monotonic = 0;
    last = ns_of(t);
    if (i == 1) {
      struct timespec rt;
      clock_gettime(CLOCK_REALTIME, &rt);
      struct timeval tv;
      gettimeofday(&tv, NULL);
      time_t now = time(NULL);
      printf("real %lld tod %lld.%06ld time %lld\n", ns_of(rt), (long long)tv.tv_sec, (long)tv.tv_usec, (long long)now);
    }
  }
  printf("monotonic=%d\n", monotonic);
  return 0;
}

static int misc(void) {
  unsigned char rnd[16];
  printf("getrandom=%zd\n", getrandom(rnd, sizeof rnd, 0));
  hex("random ", rnd, sizeof rnd);
  int u = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  printf("urandom read=%zd\n", read(u, rnd, sizeof rnd));
  hex("urandom ", rnd, sizeof rnd);
  close(u);

  int p[2];
  if (pipe(p) != 0) return 1;
  struct pollfd pf = {p[0], POLLIN, 0};
  printf("poll empty=%d revents=%d\n", poll(&pf, 1, 0), pf.revents);
  printf("pipe write=%zd\n", write(p[1], "ping", 4));
  pf.revents = 0;
  printf("poll ready=%d revents=%d\n", poll(&pf, 1, 1000), pf.revents);
  fd_set r;
  FD_ZERO(&r);
  FD_SET(p[0], &r);
  struct timeval tmo = {1, 0};
  int sel = select(p[0] + 1, &r, NULL, NULL, &tmo);
  printf("select=%d isset=%d\n", sel, FD_ISSET(p[0], &r) ? 1 : 0);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
  struct epoll_event out[4];
  memset(out, 0, sizeof out);
  int ne = epoll_wait(ep, out, 4, 1000);
  printf("epoll=%d data=%llx events=%x\n", ne, (unsigned long long)out[0].data.u64, out[0].events);
  char buf[16] = {0};
  printf("pipe read=%zd '%s'\n", read(p[0], buf, sizeof buf - 1), buf);
  struct iovec wv[2] = {{"ab", 2}, {"cdef", 4}};
  printf("writev=%zd\n", writev(p[1], wv, 2));
  char a[3] = {0}, b[8] = {0};
  struct iovec rv[2] = {{a, 2}, {b, 7}};
  printf("readv=%zd '%s' '%s'\n", readv(p[0], rv, 2), a, b);
  close(ep);
  close(p[0]);
  close(p[1]);

  int s[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, s) != 0) return 1;
  printf("send=%zd\n", send(s[0], "dgram1", 6, 0));
  memset(buf, 0, sizeof buf);
  struct sockaddr_storage from;
  socklen_t fromlen = sizeof from;
  printf("recvfrom=%zd '%s' family=%d\n", recvfrom(s[1], buf, sizeof buf - 1, 0, (struct sockaddr*)&from, &fromlen), buf,
         fromlen > 0 ? from.ss_family : -1);
  struct iovec mv = {"dgram2", 6};
  struct msghdr m = {.msg_iov = &mv, .msg_iovlen = 1};
  printf("sendmsg=%zd\n", sendmsg(s[0], &m, 0));
  memset(buf, 0, sizeof buf);
  struct iovec rmv = {buf, sizeof buf - 1};
  struct msghdr rm = {.msg_iov = &rmv, .msg_iovlen = 1};
  printf("recvmsg=%zd '%s' flags=%d\n", recvmsg(s[1], &rm, 0), buf, rm.msg_flags);
  memset(buf, 0, sizeof buf);
  printf("recv nothing=%zd errno=%d\n", recv(s[1], buf, sizeof buf, MSG_DONTWAIT), errno);
  close(s[0]);
  close(s[1]);
  return 0;
}

static int copy(const char* in, const char* out) {
  int i = open(in, O_RDONLY | O_CLOEXEC);
  int o = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (i < 0 || o < 0) return 1;
  char buf[256];
  ssize_t n;
  while ((n = read(i, buf, sizeof buf)) > 0) {
    if (write(o, buf, (size_t)n) != n) return 1;
  }
  printf("copied\n");
  return 0;
}

static int fds(const char* out, int n) {
  for (int i = 0; i < n; i++) {
    int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    for (int j = 0; j < 5; j++) {
      char line[32];
      int len = snprintf(line, sizeof line, "%d.%d\n", i, j);
      if (write(fd, line, (size_t)len) != len) return 1;
    }
    printf("fd %d\n", fd);
    close(fd);
  }
  return 0;
}

static int ticks(const char* out, int n) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 1; i <= n; i++) {
    struct timespec pause = {0, 20 * 1000 * 1000}, t;
    nanosleep(&pause, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t);
    int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    char line[64];
    int len = snprintf(line, sizeof line, "tick %d %lld\n", i, (ns_of(t) - ns_of(t0)) / 1000000);
    if (fd < 0 || write(fd, line, (size_t)len) != len) return 1;
    close(fd);
  }
  return 0;
}

static int closeall(const char* out) {
  int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, "a\n", 2) != 2) return 1;
  close_range(3, ~0U, 0);
  closefrom(3);
  for (int i = 3; i < 70000; i++) close(i);
  fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, "b\n", 2) != 2) return 1;
  printf("ok\n");
  return 0;
}

static int forks(const char* out) {
  pid_t child = fork();
  if (child == 0) {
    int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    _exit(fd >= 0 && write(fd, "child\n", 6) == 6 ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, "parent\n", 7) != 7) return 1;
  printf("child status=%d\n", status);
  return 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 4 && strcmp(argv[1], "files") == 0) return files(argv[2], atoi(argv[3]), argc > 4 ? argv[4] : "write");
  if (argc >= 3 && strcmp(argv[1], "clock") == 0) return clocks(atoi(argv[2]));
  if (argc >= 2 && strcmp(argv[1], "misc") == 0) return misc();
  if (argc >= 4 && strcmp(argv[1], "copy") == 0) return copy(argv[2], argv[3]);
  if (argc >= 3 && strcmp(argv[1], "fork") == 0) return forks(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "closeall") == 0) return closeall(argv[2]);
  if (argc >= 4 && strcmp(argv[1], "ticks") == 0) return ticks(argv[2], atoi(argv[3]));
  if (argc >= 4 && strcmp(argv[1], "fds") == 0) return fds(argv[2], atoi(argv[3]));
  fprintf(stderr, "usage: see the comment at the top of lzc_shim_io.c\n");
  return 2;
}
