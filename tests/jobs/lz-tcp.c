/* lz-tcp FILE PORT: listens on 127.0.0.1:PORT, connects to itself (one established
 * loopback connection), then every 10 ms
 *   - appends "n\n" to FILE;
 *   - best effort, sends a byte over the established connection and reads it at the other
 *     end (after a restore with tcp_close the connection comes back closed: on the first
 *     error the connection is dropped and never used again);
 *   - accepts (non-blocking) further connections on the listening socket and answers each
 *     with "lz-tcp n=<n>\n", then closes it: a client that gets that line proves the
 *     listening socket survived a restore. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include "lz_common.h"

static void answer_clients(int listener, long n) {
  for (;;) {
    int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return; /* EAGAIN: nobody waiting; any other error: try again next step */
    char line[64];
    int len = snprintf(line, sizeof line, "lz-tcp n=%ld\n", n);
    ssize_t w = send(c, line, (size_t)len, MSG_NOSIGNAL);
    (void)w;
    close(c);
  }
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: lz-tcp FILE PORT\n");
    return 2;
  }
  long port = lz_parse_long(argv[2], "PORT");
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "bad PORT: %s\n", argv[2]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) lz_die(argv[1]);

  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) lz_die("socket");
  int one = 1;
  if (setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) lz_die("SO_REUSEADDR");
  if (bind(listener, (struct sockaddr*)&addr, sizeof addr) != 0) lz_die("bind");
  if (listen(listener, 16) != 0) lz_die("listen");

  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (client < 0) lz_die("socket");
  if (connect(client, (struct sockaddr*)&addr, sizeof addr) != 0) lz_die("connect");
  int server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  if (server < 0) lz_die("accept");
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK) != 0) lz_die("fcntl");
  if (fcntl(server, F_SETFL, fcntl(server, F_GETFL) | O_NONBLOCK) != 0) lz_die("fcntl");
  if (fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK) != 0) lz_die("fcntl");
  int connected = 1;

  for (long n = 1;; n++) {
    if (lz_write_value(fd, n) != 0) lz_die("write");
    if (connected) {
      char b = (char)('a' + n % 26);
      ssize_t s = send(client, &b, 1, MSG_NOSIGNAL);
      if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        connected = 0;
      } else {
        char buf[256];
        ssize_t r = recv(server, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
          connected = 0;
      }
      if (!connected) {
        fprintf(stderr, "lz-tcp: loopback connection lost at n=%ld (%s); going on without it\n", n,
                strerror(errno));
        close(client);
        close(server);
      }
    }
    answer_clients(listener, n);
    lz_sleep_ms(10);
  }
}
