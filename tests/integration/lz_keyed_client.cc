// lz-keyed-client: the ledger client of acceptance test 2, written with the explicit C++ API.
// The same job as tests/client/lzc_ledger_client.c (item ids from a file, one request per
// item over one TCP connection to lz-ledger, a line "<id> <value>" appended to an output
// file per reply, a running total in memory, reconnect and resend when the connection
// fails), except that each request is an explicit effect whose idempotency key goes along
// with it ("KADD <key> <id>"), and the ledger deduplicates on the key:
//
//   lz-keyed-client PORT ITEMS OUT
//
// Policy at_least_once: an effect left in doubt by a crash (its INTENT is in the log, its
// RESULT is not: the job was killed while waiting for the reply) is performed again after
// the restore with the same key, and the ledger answers it from the key instead of counting
// it twice. Everything else (the output file, the final line) goes through plain libc calls
// that the shim records. At the end: "total=<t> items=<n> errors=<e>" on stdout.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "lazarus/lazarus.hpp"

namespace {

int g_port = 0;
int g_fd = -1;  // the connection to the ledger
std::string g_in;

int ConnectLedger() {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(g_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
    ::close(fd);
    timespec pause{0, 10 * 1000 * 1000};
    ::nanosleep(&pause, nullptr);
  }
  return -1;
}

bool SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

bool ReadLine(int fd, std::string* line) {
  for (;;) {
    const size_t nl = g_in.find('\n');
    if (nl != std::string::npos) {
      *line = g_in.substr(0, nl);
      g_in.erase(0, nl + 1);
      return true;
    }
    char buf[256];
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    g_in.append(buf, static_cast<size_t>(r));
  }
}

// One request with its key, resent on a new connection until a reply comes.
int32_t Request(const std::string& key, const std::string& id, std::string* reply) {
  const std::string request = "KADD " + key + " " + id + "\n";
  for (;;) {
    if (g_fd < 0) {
      g_fd = ConnectLedger();
      if (g_fd < 0) return -1;
      g_in.clear();
    }
    if (SendAll(g_fd, request) && ReadLine(g_fd, reply)) return 0;
    ::close(g_fd);
    g_fd = -1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: lz-keyed-client PORT ITEMS OUT\n");
    return 2;
  }
  g_port = std::atoi(argv[1]);
  signal(SIGPIPE, SIG_IGN);
  FILE* items = std::fopen(argv[2], "r");
  const int out = ::open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (items == nullptr || out < 0) {
    std::perror("lz-keyed-client: open");
    return 1;
  }
  const uint32_t kind = lazarus::Kind("ledger.add");
  long total = 0, count = 0, errors = 0;
  char id[64];
  while (std::fgets(id, sizeof id, items) != nullptr) {
    id[std::strcspn(id, "\n")] = '\0';
    if (id[0] == '\0') continue;
    const std::string item = id;
    lazarus::EffectResult r = lazarus::Effect(
        kind, item,
        [&](const lazarus::EffectContext& fx, std::string& reply) { return Request(fx.Key(), item, &reply); },
        {lazarus::Policy::kAtLeastOnce});
    char rid[64];
    long value = 0;
    if (!r.ok() || r.status != 0 || std::sscanf(r.result.c_str(), "OK %63s %ld", rid, &value) != 2 ||
        item != rid) {
      const std::string msg = "lz-keyed-client: item " + item + ": " + r.error() + " status " +
                              std::to_string(r.status) + " reply '" + r.result + "' key " + r.key + "\n";
      (void)!::write(2, msg.data(), msg.size());
      ++errors;
      continue;
    }
    total += value;
    ++count;
    const std::string line = item + " " + std::to_string(value) + "\n";
    if (::write(out, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      std::perror("lz-keyed-client: write");
      return 1;
    }
  }
  const std::string end =
      "total=" + std::to_string(total) + " items=" + std::to_string(count) + " errors=" + std::to_string(errors) + "\n";
  (void)!::write(1, end.data(), end.size());
  return errors == 0 ? 0 : 1;
}
