// Who sent a request: the peer credentials of the API connection (SO_PEERCRED), which the
// kernel vouches for. Root manages every job; any other user only the jobs it started.
#pragma once

#include <sys/types.h>

namespace lazarus {

struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  [[nodiscard]] bool is_root() const { return uid == 0; }
};

}  // namespace lazarus
