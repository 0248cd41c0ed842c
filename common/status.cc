#include "common/status.h"

#include <cerrno>
#include <cstring>

namespace lazarus {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kFailedPrecondition: return "failed precondition";
    case Code::kAlreadyExists: return "already exists";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kIo: return "i/o error";
    case Code::kCriu: return "criu error";
    case Code::kDataLoss: return "data loss";
    case Code::kInternal: return "internal error";
  }
  return "unknown";
}

Status ErrnoStatus(const std::string& what, int err) {
  Code code = Code::kIo;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EACCES || err == EPERM) code = Code::kPermissionDenied;
  return Status(code, what + ": " + std::strerror(err));
}

Status ErrnoStatus(const std::string& what) { return ErrnoStatus(what, errno); }

}  // namespace lazarus
