// lz-ledger: the ledger of the exactly-once tests and of the demo (scripts/demo_exactly_once.sh).
// A TCP server on 127.0.0.1, never under Lazarus, that counts requests by item:
//
//   lz-ledger PORTFILE [--delay-ms N]
//
// binds 127.0.0.1 on a free port, writes the port to PORTFILE (atomically: written beside it,
// then renamed) and serves any number of connections, one line per request:
//
//   ADD <id>          counts one request for item <id> (a number); answers "OK <id> <value>"
//   KADD <key> <id>   the same with an idempotency key: a key seen before is not counted
//                     again and gets the answer it got the first time ("resent" in STATS);
//                     a key reused for another item answers "ERR key reuse"
//   STATS             one line: "items=I requests=R duplicates=D resent_keys=K max=M"
//                     (I distinct items, R counted requests, D = R - I: requests for an item
//                     already counted, M: the most requests one item got)
//   DUMP              "<id> <count>" per item, then "END"
//
// <value> is 3 * id + 1: what a client appends to its output does not depend on how often
// the ledger saw an item, so the output of a crashed and restored run can be compared with
// an uncrashed one. --delay-ms N: the ledger answers each ADD/KADD N ms after it counted it
// (a slow service: a client killed at a random moment is most often waiting for a reply).
// SIGTERM/SIGINT: prints the STATS line on stdout and exits 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;

struct Ledger {
  std::map<long, long> counts;                 // item -> counted requests
  std::unordered_map<std::string, long> keys;  // idempotency key -> item
  long requests = 0;
  long resent_keys = 0;

  std::string Count(long id) {
    ++counts[id];
    ++requests;
    return "OK " + std::to_string(id) + " " + std::to_string(3 * id + 1) + "\n";
  }
  std::string Stats() const {
    long max = 0;
    for (const auto& [id, n] : counts) max = std::max(max, n);
    return "items=" + std::to_string(counts.size()) + " requests=" + std::to_string(requests) +
           " duplicates=" + std::to_string(requests - static_cast<long>(counts.size())) +
           " resent_keys=" + std::to_string(resent_keys) + " max=" + std::to_string(max) + "\n";
  }
  // One request line (without its newline) -> the answer (with its newline).
  std::string Handle(const std::string& line, bool* slow) {
    *slow = false;
    char* end = nullptr;
    if (line.rfind("ADD ", 0) == 0) {
      const long id = std::strtol(line.c_str() + 4, &end, 10);
      if (end == line.c_str() + 4 || *end != '\0') return "ERR bad id\n";
      *slow = true;
      return Count(id);
    }
    if (line.rfind("KADD ", 0) == 0) {
      const size_t sp = line.find(' ', 5);
      if (sp == std::string::npos) return "ERR bad request\n";
      const std::string key = line.substr(5, sp - 5);
      const long id = std::strtol(line.c_str() + sp + 1, &end, 10);
      if (key.empty() || end == line.c_str() + sp + 1 || *end != '\0') return "ERR bad request\n";
      *slow = true;
      auto it = keys.find(key);
      if (it != keys.end()) {
        if (it->second != id) return "ERR key reuse\n";
        ++resent_keys;
        return "OK " + std::to_string(id) + " " + std::to_string(3 * id + 1) + "\n";
      }
      keys.emplace(key, id);
      return Count(id);
    }
    if (line == "STATS") return Stats();
    if (line == "DUMP") {
      std::string out;
      for (const auto& [id, n] : counts) out += std::to_string(id) + " " + std::to_string(n) + "\n";
      return out + "END\n";
    }
    return "ERR unknown request\n";
  }
};

bool SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: lz-ledger PORTFILE [--delay-ms N]\n");
    return 2;
  }
  long delay_ms = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--delay-ms") == 0) delay_ms = std::atol(argv[i + 1]);
  }
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listener, 64) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::perror("lz-ledger: listen");
    return 1;
  }
  const std::string tmp = std::string(argv[1]) + ".tmp";
  FILE* pf = std::fopen(tmp.c_str(), "w");
  if (pf == nullptr || std::fprintf(pf, "%d\n", ntohs(a.sin_port)) < 0 || std::fclose(pf) != 0 ||
      std::rename(tmp.c_str(), argv[1]) != 0) {
    std::perror("lz-ledger: port file");
    return 1;
  }

  Ledger ledger;
  struct Conn {
    int fd;
    std::string in;
  };
  std::vector<Conn> conns;
  while (g_stop == 0) {
    std::vector<pollfd> fds;
    fds.push_back({listener, POLLIN, 0});
    for (const Conn& c : conns) fds.push_back({c.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 200) <= 0) continue;
    if (fds[0].revents & POLLIN) {
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) conns.push_back({fd, {}});
    }
    std::vector<Conn> kept;
    for (size_t i = 1; i < fds.size(); ++i) {
      Conn& c = conns[i - 1];
      bool alive = true;
      if (fds[i].revents != 0) {
        char buf[4096];
        const ssize_t n = ::read(c.fd, buf, sizeof buf);
        if (n <= 0) {
          alive = n < 0 && (errno == EINTR || errno == EAGAIN);
        } else {
          c.in.append(buf, static_cast<size_t>(n));
          size_t nl;
          while (alive && (nl = c.in.find('\n')) != std::string::npos) {
            const std::string line = c.in.substr(0, nl);
            c.in.erase(0, nl + 1);
            bool slow = false;
            const std::string answer = ledger.Handle(line, &slow);
            if (slow && delay_ms > 0) {
              timespec ts{delay_ms / 1000, (delay_ms % 1000) * 1000000L};
              while (::nanosleep(&ts, &ts) != 0 && errno == EINTR && g_stop == 0) {
              }
            }
            alive = SendAll(c.fd, answer);
          }
        }
      }
      if (alive) {
        kept.push_back(std::move(c));
      } else {
        ::close(c.fd);
      }
    }
    // Connections accepted in this round were appended after the polled ones.
    for (size_t i = fds.size() - 1; i < conns.size(); ++i) kept.push_back(std::move(conns[i]));
    conns = std::move(kept);
  }
  const std::string stats = ledger.Stats();
  std::fwrite(stats.data(), 1, stats.size(), stdout);
  return 0;
}
