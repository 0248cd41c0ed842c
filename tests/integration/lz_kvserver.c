/* lz-kvserver: the event-loop server of acceptance test 3. An ordinary C program (read,
 * write, accept4, epoll only; links nothing of Lazarus), one thread, any number of clients:
 *
 *   lz-kvserver PORT DATAFILE
 *
 * listens on 127.0.0.1:PORT and answers one line per request:
 *
 *   SET <key> <value>   stores the pair in memory, appends "<key> <value>\n" to DATAFILE,
 *                       then answers "ACK <key>"
 *   GET <key>           "VAL <key> <value>", or "NONE <key>"
 *   COUNT               "COUNT <number of keys>"
 *
 * Its state lives in its memory: after a SIGKILL and a restore from a snapshot, what the
 * clients wrote after the snapshot is there again only because the shim replays the
 * server's epoll_wait, accept and read calls from the effect log (and skips the DATAFILE
 * appends and the ACKs it already made). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "../jobs/lz_common.h"

#define MAX_FDS 1024
#define TABLE_SIZE (1 << 17) /* open addressing; at most half full */
#define FIELD 64

struct entry {
  char key[FIELD];
  char value[FIELD];
};

static struct entry* g_table;
static long g_count;
static char* g_inbuf[MAX_FDS];
static size_t g_inlen[MAX_FDS];
#define INBUF 4096

static uint64_t hash(const char* s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static struct entry* slot(const char* key) {
  for (uint64_t i = hash(key) & (TABLE_SIZE - 1);; i = (i + 1) & (TABLE_SIZE - 1)) {
    if (g_table[i].key[0] == '\0' || strcmp(g_table[i].key, key) == 0) return &g_table[i];
  }
}

static int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Handles one request line; returns -1 when the client must be dropped. */
static int handle(int fd, int data, char* line) {
  char reply[3 * FIELD];
  int len;
  char key[FIELD], value[FIELD];
  if (sscanf(line, "SET %63s %63s", key, value) == 2) {
    if (g_count >= TABLE_SIZE / 2) {
      len = snprintf(reply, sizeof reply, "FULL %s\n", key);
    } else {
      struct entry* e = slot(key);
      if (e->key[0] == '\0') {
        snprintf(e->key, FIELD, "%s", key);
        g_count++;
      }
      snprintf(e->value, FIELD, "%s", value);
      char rec[2 * FIELD + 2];
      int rlen = snprintf(rec, sizeof rec, "%s %s\n", key, value);
      if (write_all(data, rec, (size_t)rlen) != 0) lz_die("lz-kvserver: DATAFILE");
      len = snprintf(reply, sizeof reply, "ACK %s\n", key);
    }
  } else if (sscanf(line, "GET %63s", key) == 1) {
    struct entry* e = slot(key);
    if (e->key[0] != '\0') {
      len = snprintf(reply, sizeof reply, "VAL %s %s\n", key, e->value);
    } else {
      len = snprintf(reply, sizeof reply, "NONE %s\n", key);
    }
  } else if (strcmp(line, "COUNT") == 0) {
    len = snprintf(reply, sizeof reply, "COUNT %ld\n", g_count);
  } else {
    len = snprintf(reply, sizeof reply, "ERR\n");
  }
  return write_all(fd, reply, (size_t)len);
}

static void drop(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(g_inbuf[fd]);
  g_inbuf[fd] = NULL;
  g_inlen[fd] = 0;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: lz-kvserver PORT DATAFILE\n");
    return 2;
  }
  long port = lz_parse_long(argv[1], "PORT");
  signal(SIGPIPE, SIG_IGN);
  g_table = calloc(TABLE_SIZE, sizeof *g_table);
  int data = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (g_table == NULL || data < 0) lz_die("lz-kvserver: DATAFILE");

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(listener, 64) != 0)
    lz_die("lz-kvserver: listen");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0) lz_die("lz-kvserver: epoll");

  for (;;) {
    struct epoll_event events[32];
    int n = epoll_wait(ep, events, 32, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      lz_die("lz-kvserver: epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == listener) {
        int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        if (c >= MAX_FDS) {
          close(c);
          continue;
        }
        g_inbuf[c] = malloc(INBUF);
        g_inlen[c] = 0;
        struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
        if (g_inbuf[c] == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0) {
          free(g_inbuf[c]);
          g_inbuf[c] = NULL;
          close(c);
        }
        continue;
      }
      if (fd < 0 || fd >= MAX_FDS || g_inbuf[fd] == NULL) continue;
      ssize_t r = read(fd, g_inbuf[fd] + g_inlen[fd], INBUF - g_inlen[fd]);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) {
        drop(ep, fd);
        continue;
      }
      g_inlen[fd] += (size_t)r;
      int bad = 0;
      char* nl;
      while (!bad && (nl = memchr(g_inbuf[fd], '\n', g_inlen[fd])) != NULL) {
        *nl = '\0';
        size_t used = (size_t)(nl - g_inbuf[fd]) + 1;
        bad = handle(fd, data, g_inbuf[fd]) != 0;
        memmove(g_inbuf[fd], g_inbuf[fd] + used, g_inlen[fd] - used);
        g_inlen[fd] -= used;
      }
      if (bad || g_inlen[fd] == INBUF) drop(ep, fd);
    }
  }
}
