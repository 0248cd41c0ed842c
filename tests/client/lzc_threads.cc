// A multi-threaded program using the C++ API (lazarus.hpp), for the replay tests.
//
//   lzc-threads THREADS EFFECTS [--named] [--performed FILE] [--stop-after K]
//
// Each thread performs EFFECTS effects of kind "test.thread", request "t<thread>-<i>"; the
// perform function appends "<thread> <i> <key>\n" to the --performed file and returns the
// result "<thread>:<i>:<key>". Threads get their channels in order of first use (each thread
// waits for the previous one's first effect, so the order is the same on every run), or,
// with --named, name their channel (lazarus::SetThreadChannel(thread)). After all threads
// are done, one line per effect goes to stdout, in thread order, then a "done" line with
// the counters. --stop-after K: every thread stops (and the process exits) after K effects.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "lazarus/lazarus.hpp"

namespace {

const char* g_performed = nullptr;

void MarkPerformed(const std::string& line) {
  if (g_performed == nullptr) return;
  const int fd = ::open(g_performed, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) ::_exit(3);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: lzc-threads THREADS EFFECTS [--named] [--performed FILE] [--stop-after K]\n");
    return 2;
  }
  const int threads = std::atoi(argv[1]);
  const int effects = std::atoi(argv[2]);
  bool named = false;
  int stop_after = -1;
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--named") == 0) named = true;
    else if (std::strcmp(argv[i], "--performed") == 0 && i + 1 < argc) g_performed = argv[++i];
    else if (std::strcmp(argv[i], "--stop-after") == 0 && i + 1 < argc) stop_after = std::atoi(argv[++i]);
  }
  const uint32_t kind = lazarus::Kind("test.thread");
  std::vector<std::vector<std::string>> lines(threads);
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      if (named) {
        if (lazarus::SetThreadChannel(static_cast<uint32_t>(t)) != LAZARUS_OK) std::abort();
      } else {
        while (started.load() != t) std::this_thread::yield();  // first effects in thread order
      }
      for (int i = 0; i < effects; ++i) {
        if (i == stop_after) break;
        const std::string request = "t" + std::to_string(t) + "-" + std::to_string(i);
        lazarus::EffectResult r = lazarus::Effect(kind, request, [&](const lazarus::EffectContext& fx, std::string& out) {
          out = std::to_string(t) + ":" + std::to_string(i) + ":" + fx.Key();
          MarkPerformed(std::to_string(t) + " " + std::to_string(i) + " " + fx.Key() + "\n");
          return 0;
        });
        if (i == 0) started.fetch_add(1);
        lines[t].push_back("thread " + std::to_string(t) + " effect " + std::to_string(i) + " code=" +
                           std::to_string(r.code) + " result=" + r.result + " replayed=" + (r.replayed ? "1" : "0") +
                           " key=" + r.key + " channel=" + std::to_string(lazarus::ThreadChannel()));
      }
      stopped.fetch_add(1);
    });
  }
  for (auto& th : pool) th.join();
  if (stop_after >= 0) ::_exit(0);
  for (const auto& v : lines) {
    for (const auto& l : v) std::printf("%s\n", l.c_str());
  }
  std::printf("done performed=%llu replayed=%llu\n",
              static_cast<unsigned long long>(lazarus_counter(LAZARUS_COUNTER_PERFORMED)),
              static_cast<unsigned long long>(lazarus_counter(LAZARUS_COUNTER_REPLAYED)));
  return 0;
}
