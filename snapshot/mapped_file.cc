#include "snapshot/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common/unique_fd.h"

namespace lazarus::store {

StatusOr<MappedFile> MappedFile::Open(int dir_fd, const std::string& name) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoStatus("open image " + name);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat image " + name);
  if (!S_ISREG(st.st_mode)) return Status(Code::kInvalidArgument, "image " + name + " is not a regular file");
  if (st.st_size == 0) return MappedFile();
  const size_t size = static_cast<size_t>(st.st_size);
  // MAP_POPULATE: one pass that maps every page beats a fault per page while hashing.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd.get(), 0);
  if (p == MAP_FAILED) return ErrnoStatus("map image " + name);
  return MappedFile(static_cast<const uint8_t*>(p), size);
}

void MappedFile::Reset() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace lazarus::store
