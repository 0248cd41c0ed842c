#include "snapshot/parallel.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>
#include <vector>

namespace lazarus::store {

double ThreadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

unsigned ResolveThreads(unsigned requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

unsigned ResolveIoThreads(unsigned requested) {
  if (requested > 0) return requested;
  return std::max(8u, 4 * std::max(1u, std::thread::hardware_concurrency()));
}

double ParallelFor(size_t items, unsigned threads, const std::function<void(size_t, unsigned)>& fn) {
  threads = static_cast<unsigned>(std::clamp<size_t>(threads, 1, std::max<size_t>(items, 1)));
  std::atomic<size_t> next{0};
  std::atomic<double> cpu{0};
  auto worker = [&](unsigned w) {
    const double start = ThreadCpuSeconds();
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < items;) fn(i, w);
    if (w != 0) cpu.fetch_add(ThreadCpuSeconds() - start);
  };
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < threads; ++w) {
    try {
      pool.emplace_back(worker, w);
    } catch (const std::system_error&) {
      break;  // out of threads: the others take its items
    }
  }
  worker(0);
  for (auto& t : pool) t.join();
  return cpu.load();
}

}  // namespace lazarus::store
