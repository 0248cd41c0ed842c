// What each descriptor is, as far as the shim cares: the class decides whether a read or
// a write on it is recorded (calls.def). Looked up on every intercepted read and write, so
// it is a flat table of bytes indexed by descriptor, filled at the descriptor's first use
// (one fstat) and forgotten when the descriptor is closed through a call the shim sees
// (close, dup2, dup3, close_range, fclose, freopen, pclose). A descriptor closed inside libc
// without those (closedir, internal resolver sockets) was never classified: the shim only
// classifies descriptors the program reads or writes itself.
#pragma once

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <atomic>
#include <cstdint>

namespace lazarus::shim {

enum FdClass : uint8_t {
  kUnknown = 0,  // not looked at yet
  kOther,        // not recorded: directories, /dev/null and other devices, eventfd, epoll...
  kSocket,
  kPipe,         // pipes and FIFOs
  kTty,          // terminals
  kRandom,       // /dev/random, /dev/urandom (reads are inputs)
  kFile,         // regular files: writes are recorded, reads are not
  kFileAppend,   // regular files opened with O_APPEND
};

inline bool IsStream(FdClass c) { return c == kSocket || c == kPipe || c == kTty; }
inline bool IsFile(FdClass c) { return c == kFile || c == kFileAppend; }
inline bool RecordsInput(FdClass c) { return IsStream(c) || c == kRandom; }

inline constexpr int kFdTableSize = 1 << 16;  // larger descriptors are classified at each use

class FdTable {
 public:
  // `fstat_fn`/`getfl_fn` bypass the shim (the real functions).
  template <typename Fstat, typename GetFl>
  FdClass Get(int fd, Fstat fstat_fn, GetFl getfl_fn) {
    if (fd < 0) return kOther;
    if (fd < kFdTableSize) {
      const auto c = static_cast<FdClass>(table_[fd].load(std::memory_order_relaxed));
      if (c != kUnknown) return c;
    }
    struct stat st {};
    if (fstat_fn(fd, &st) != 0) return kOther;  // EBADF: the call fails live; not cached
    FdClass c = kOther;
    switch (st.st_mode & S_IFMT) {
      case S_IFSOCK: c = kSocket; break;
      case S_IFIFO: c = kPipe; break;
      case S_IFREG: c = (getfl_fn(fd) & O_APPEND) != 0 ? kFileAppend : kFile; break;
      case S_IFCHR: {
        const unsigned maj = major(st.st_rdev), min = minor(st.st_rdev);
        if (maj == 1 && (min == 8 || min == 9)) c = kRandom;                  // random, urandom
        else if (maj == 4 || maj == 5 || (maj >= 136 && maj <= 143)) c = kTty;  // tty*, /dev/tty, pts
        break;
      }
      default: break;
    }
    Set(fd, c);
    return c;
  }
  void Set(int fd, FdClass c) {
    if (fd >= 0 && fd < kFdTableSize) table_[fd].store(c, std::memory_order_relaxed);
  }
  void Forget(int fd) { Set(fd, kUnknown); }
  void ForgetRange(unsigned first, unsigned last) {
    for (unsigned fd = first; fd <= last && fd < static_cast<unsigned>(kFdTableSize); ++fd)
      table_[fd].store(kUnknown, std::memory_order_relaxed);
  }

 private:
  std::atomic<uint8_t> table_[kFdTableSize] = {};
};

}  // namespace lazarus::shim
