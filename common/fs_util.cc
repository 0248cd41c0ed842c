#include "common/fs_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "common/unique_fd.h"

namespace lazarus {
namespace fs = std::filesystem;

std::string Dirname(const std::string& path) {
  auto parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

Status FsyncPath(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open " + path + " for fsync");
  if (::fsync(fd.get()) != 0) return ErrnoStatus("fsync " + path);
  return Status::Ok();
}

static Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write " + path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) return ErrnoStatus("create " + tmp);
    Status st = WriteAll(fd.get(), data, tmp);
    if (st.ok() && ::fsync(fd.get()) != 0) st = ErrnoStatus("fsync " + tmp);
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = ErrnoStatus("rename " + tmp + " to " + path);
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncPath(Dirname(path));
}

StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus("open " + path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + path);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes)
      return Status(Code::kInvalidArgument, path + " is larger than " + std::to_string(max_bytes) + " bytes");
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status MakeDirs(const std::string& path, mode_t mode) {
  std::string partial;
  for (const auto& part : fs::path(path)) {
    partial = (fs::path(partial) / part).string();
    if (partial == "/") continue;
    if (::mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) return ErrnoStatus("mkdir " + partial);
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat " + path);
  if (!S_ISDIR(st.st_mode)) return Status(Code::kFailedPrecondition, path + " exists and is not a directory");
  return Status::Ok();
}

Status RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return Status(Code::kIo, "remove " + path + ": " + ec.message());
  return Status::Ok();
}

Status FsyncTree(const std::string& root) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_symlink()) continue;
    LAZARUS_RETURN_IF_ERROR(FsyncPath(it->path().string()));
  }
  if (ec) return Status(Code::kIo, "walk " + root + ": " + ec.message());
  return FsyncPath(root);
}

uint64_t TreeSize(const std::string& root) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

}  // namespace lazarus
