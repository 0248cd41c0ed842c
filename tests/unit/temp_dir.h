// A scratch directory for one test, removed with everything in it at the end.
#pragma once

#include <stdlib.h>

#include <string>

#include "common/fs_util.h"

namespace lazarus::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lazarus-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { (void)RemoveTree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace lazarus::testing
