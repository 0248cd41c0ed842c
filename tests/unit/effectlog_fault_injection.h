// A power cut for the effect log, after leveldb's db/fault_injection_test.cc: a SyncPolicy
// that remembers, for each segment, the bytes its last fdatasync covered, and which
// segments' directory entries an fsync of the directory covered. PowerCut() then puts
// every segment back to exactly that (and removes those never made durable), which is
// what a disk holds after the machine loses power with nothing else written back.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "effectlog/log_files.h"
#include "effectlog/sync_policy.h"
#include "effectlog_test_util.h"

namespace lazarus::effectlog::testing {

class FaultInjectionSync final : public SyncPolicy {
 public:
  explicit FaultInjectionSync(std::string dir) : dir_(std::move(dir)) {}

  int SyncSegment(int fd, uint64_t number) override {
    if (int err = fail_with_.load(); err != 0) return err;
    std::string image;
    char buf[65536];
    for (off_t off = 0;;) {
      ssize_t n = ::pread(fd, buf, sizeof buf, off);
      if (n < 0) return errno;
      if (n == 0) break;
      image.append(buf, static_cast<size_t>(n));
      off += n;
    }
    std::lock_guard lock(mu_);
    images_[number] = std::move(image);
    ++segment_syncs_;
    return 0;
  }

  int SyncDirectory(int) override {
    if (int err = fail_with_.load(); err != 0) return err;
    auto segments = ListSegments(dir_);
    if (!segments.ok()) return EIO;
    std::lock_guard lock(mu_);
    linked_.insert(segments->begin(), segments->end());
    return 0;
  }

  // Every later sync fails with `err` (0: they succeed again).
  void FailSyncsWith(int err) { fail_with_ = err; }
  uint64_t segment_syncs() {
    std::lock_guard lock(mu_);
    return segment_syncs_;
  }

  // The writers must be gone. Puts the log's segments back to what was durable.
  void PowerCut() {
    std::lock_guard lock(mu_);
    const std::vector<uint64_t> segments = ListSegments(dir_).value();
    for (uint64_t n : segments) {
      const std::string path = SegmentPath(dir_, n);
      auto it = images_.find(n);
      if (linked_.count(n) == 0 || it == images_.end()) {
        ::unlink(path.c_str());
      } else {
        WriteWholeFile(path, it->second);
      }
    }
  }

 private:
  const std::string dir_;
  std::mutex mu_;
  std::map<uint64_t, std::string> images_;
  std::set<uint64_t> linked_;
  uint64_t segment_syncs_ = 0;
  std::atomic<int> fail_with_{0};
};

}  // namespace lazarus::effectlog::testing
