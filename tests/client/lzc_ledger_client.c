/* An ordinary C program, linked against nothing of Lazarus: the job of acceptance test 1 in
 * small. It reads item ids from a file, sends each to a ledger server over one TCP
 * connection ("ADD <id>\n"), reads the reply ("OK <id> <value>\n"), appends "<id> <value>\n"
 * to an output file and keeps a running total in memory. Like any robust client, when its
 * connection fails it reconnects and resends the current request.
 *
 *   lzc-ledger-client PORT ITEMS OUT [--die-after K] [--die-after-send K]
 *
 * --die-after K: exit right after the K-th item's line is written (a crash after it).
 * --die-after-send K: exit right after sending item K's request (its reply is lost).
 * At the end: "total=<t> items=<n> reconnects=<r>" on stdout (stdio: not recorded).
 * Everything it does goes through plain libc calls: the shim records and replays them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int g_port;
static char g_inbuf[256];
static size_t g_inlen;

static int connect_ledger(void) {
  for (int attempt = 0; attempt < 500; attempt++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)g_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr*)&a, sizeof a) == 0) return fd;
    close(fd);
    struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  return -1;
}

static int send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* One reply line (without the newline) into line; -1 when the connection failed. */
static int read_line(int fd, char* line, size_t cap) {
  for (;;) {
    char* nl = memchr(g_inbuf, '\n', g_inlen);
    if (nl != NULL) {
      size_t len = (size_t)(nl - g_inbuf);
      if (len >= cap) return -1;
      memcpy(line, g_inbuf, len);
      line[len] = '\0';
      memmove(g_inbuf, nl + 1, g_inlen - len - 1);
      g_inlen -= len + 1;
      return 0;
    }
    if (g_inlen == sizeof g_inbuf) return -1;
    ssize_t r = read(fd, g_inbuf + g_inlen, sizeof g_inbuf - g_inlen);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    g_inlen += (size_t)r;
  }
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: lzc-ledger-client PORT ITEMS OUT [--die-after K] [--die-after-send K]\n");
    return 2;
  }
  g_port = atoi(argv[1]);
  long die_after = -1, die_after_send = -1;
  for (int i = 4; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--die-after") == 0) die_after = atol(argv[i + 1]);
    if (strcmp(argv[i], "--die-after-send") == 0) die_after_send = atol(argv[i + 1]);
  }
  signal(SIGPIPE, SIG_IGN);
  FILE* items = fopen(argv[2], "r");
  int out = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (items == NULL || out < 0) {
    perror("lzc-ledger-client: open");
    return 1;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long total = 0, count = 0, reconnects = 0;
  int fd = -1;
  char id[64];
  while (fgets(id, sizeof id, items) != NULL) {
    id[strcspn(id, "\n")] = '\0';
    if (id[0] == '\0') continue;
    char request[96], reply[128];
    int n = snprintf(request, sizeof request, "ADD %s\n", id);
    for (;;) {
      if (fd < 0) {
        fd = connect_ledger();
        if (fd < 0) {
          fprintf(stderr, "lzc-ledger-client: cannot connect\n");
          return 1;
        }
        g_inlen = 0;
      }
      if (send_all(fd, request, (size_t)n) == 0) {
        if (count == die_after_send) _exit(0);
        if (read_line(fd, reply, sizeof reply) == 0) break;
      }
      close(fd);
      fd = -1;
      reconnects++;
    }
    char rid[64];
    long value = 0;
    if (sscanf(reply, "OK %63s %ld", rid, &value) != 2 || strcmp(rid, id) != 0) {
      fprintf(stderr, "lzc-ledger-client: bad reply '%s' to %s\n", reply, id);
      return 1;
    }
    total += value;
    count++;
    char line[128];
    int len = snprintf(line, sizeof line, "%s %ld\n", id, value);
    if (write(out, line, (size_t)len) != len) {
      perror("lzc-ledger-client: write");
      return 1;
    }
    if (count == die_after) _exit(0);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
  printf("total=%ld items=%ld reconnects=%ld elapsed_ms=%ld\n", total, count, reconnects, ms);
  return 0;
}
