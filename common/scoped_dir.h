// A directory owned by one operation (a staging area): removed with everything in it when
// the owner goes out of scope.
#pragma once

#include <string>
#include <utility>

#include "common/fs_util.h"

namespace lazarus {

class ScopedDir {
 public:
  ScopedDir() = default;
  explicit ScopedDir(std::string path) : path_(std::move(path)) {}
  ScopedDir(ScopedDir&& other) noexcept : path_(std::exchange(other.path_, "")) {}
  ScopedDir& operator=(ScopedDir&& other) noexcept {
    if (this != &other) {
      Remove();
      path_ = std::exchange(other.path_, "");
    }
    return *this;
  }
  ScopedDir(const ScopedDir&) = delete;
  ScopedDir& operator=(const ScopedDir&) = delete;
  ~ScopedDir() { Remove(); }

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  void Remove() {
    if (!path_.empty()) (void)RemoveTree(path_);
  }
  std::string path_;
};

}  // namespace lazarus
