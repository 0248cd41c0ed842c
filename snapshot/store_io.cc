#include "snapshot/store_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.h"

namespace lazarus::store {

Status IoError(const std::string& what, int err) {
  if (err == ENOSPC || err == EDQUOT) return ErrnoStatus("out of space: " + what, err);
  return ErrnoStatus(what, err);
}

Status WriteAll(int fd, const void* data, size_t size, const std::string& what) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(what, errno);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status PwriteAll(int fd, const void* data, size_t size, off_t offset, const std::string& what) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(what, errno);
    }
    p += n;
    offset += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status ReadWholeFile(int dir_fd, const std::string& rel_path, size_t max_bytes, std::vector<uint8_t>* out) {
  UniqueFd fd(::openat(dir_fd, rel_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open " + rel_path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + rel_path);
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    return Status(Code::kDataLoss, rel_path + ": " + std::to_string(st.st_size) + " bytes, more than a store file can hold");
  out->resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out->size()) {
    ssize_t n = ::pread(fd.get(), out->data() + done, out->size() - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + rel_path);
    }
    if (n == 0) break;  // shrank while we read: the size check below reports it
    done += static_cast<size_t>(n);
  }
  out->resize(done);
  return Status::Ok();
}

}  // namespace lazarus::store
