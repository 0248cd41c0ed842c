// Acceptance test 2 in small, with the C++ API: every request carries its effect's
// idempotency key, and the "ledger" (a file of "<key> <item>" lines, standing in for a
// service that deduplicates on the key) records each key once. Policy at_least_once: an
// effect left in doubt by a crash is performed again, and the ledger answers it from the
// key, so no item is counted twice and none is in doubt.
//
//   lzc-keyed LEDGER N [--die-after-perform K]
//
// Prints "item <i> key=<key> answer=<a> replayed=<0|1> in_doubt_seen=<0|1>" per item and
// "done performed=<p> replayed=<r> in_doubt=<d>".
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "lazarus/lazarus.hpp"

namespace {

// The ledger: answers a key it has seen with the item it recorded; records a new one.
std::string Ledger(const std::string& path, const std::string& key, const std::string& item) {
  std::ifstream in(path);
  std::string k, v;
  while (in >> k >> v) {
    if (k == key) return "dup:" + v;
  }
  const std::string line = key + " " + item + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
  ::close(fd);
  return "new:" + item;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const std::string ledger = argv[1];
  const int n = std::atoi(argv[2]);
  int die_after = -1;
  if (argc > 4 && std::strcmp(argv[3], "--die-after-perform") == 0) die_after = std::atoi(argv[4]);
  const uint32_t kind = lazarus::Kind("ledger.add");
  for (int i = 0; i < n; ++i) {
    const std::string item = "item" + std::to_string(i);
    bool in_doubt = false;
    lazarus::EffectResult r = lazarus::Effect(
        kind, item,
        [&](const lazarus::EffectContext& fx, std::string& answer) {
          in_doubt = fx.InDoubt();
          answer = Ledger(ledger, fx.Key(), item);
          if (i == die_after) ::_exit(9);  // performed, RESULT never logged
          return 0;
        },
        {lazarus::Policy::kAtLeastOnce});
    std::printf("item %d key=%s answer=%s replayed=%d in_doubt_seen=%d code=%d\n", i, r.key.c_str(), r.result.c_str(),
                r.replayed ? 1 : 0, in_doubt ? 1 : 0, r.code);
  }
  std::printf("done performed=%llu replayed=%llu in_doubt=%llu\n",
              static_cast<unsigned long long>(lazarus_counter(LAZARUS_COUNTER_PERFORMED)),
              static_cast<unsigned long long>(lazarus_counter(LAZARUS_COUNTER_REPLAYED)),
              static_cast<unsigned long long>(lazarus_counter(LAZARUS_COUNTER_IN_DOUBT)));
  return 0;
}
