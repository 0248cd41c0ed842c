#include "snapshot/open_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/proc_util.h"

namespace lazarus::snapshot {
namespace {

bool LeftToCriu(const std::string& path) {
  static const char* const kPrefixes[] = {"/proc/", "/sys/", "/dev/"};
  if (path.empty() || path[0] != '/') return true;  // sockets, pipes, anon inodes
  for (const char* prefix : kPrefixes)
    if (path.rfind(prefix, 0) == 0) return true;
  return path.size() > 10 && path.compare(path.size() - 10, 10, " (deleted)") == 0;
}

// "pos:" and "flags:" of /proc/PID/fdinfo/FD.
bool ReadFdInfo(const std::string& fdinfo, int64_t* pos, int* flags) {
  std::ifstream in(fdinfo);
  std::string key;
  bool have_pos = false, have_flags = false;
  while (in >> key) {
    if (key == "pos:") {
      have_pos = static_cast<bool>(in >> *pos);
    } else if (key == "flags:") {
      in >> std::oct >> *flags >> std::dec;
      have_flags = static_cast<bool>(in);
    } else {
      std::string rest;
      std::getline(in, rest);
    }
  }
  return have_pos && have_flags;
}

}  // namespace

std::vector<records::OpenFile> CollectOpenRegularFiles(pid_t root) {
  std::map<std::string, records::OpenFile> by_path;
  std::set<std::string> ambiguous;
  for (pid_t pid : ProcessTree(root)) {
    const std::string proc = "/proc/" + std::to_string(pid);
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd", ec)) {
      const std::string fd = entry.path().filename().string();
      std::error_code link_ec;
      std::string path = std::filesystem::read_symlink(entry.path(), link_ec).string();
      if (link_ec || LeftToCriu(path)) continue;
      struct stat st {};
      if (::stat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      records::OpenFile file;
      int64_t pos = 0;
      int flags = 0;
      if (!ReadFdInfo(proc + "/fdinfo/" + fd, &pos, &flags)) continue;
      file.set_path(path);
      file.set_flags(flags & ~O_CLOEXEC);  // CRIU restores the fd flags itself
      file.set_pos(pos);
      auto [it, inserted] = by_path.emplace(path, file);
      // The same open file seen through fork or dup has the same flags and offset; two
      // separate opens of one path cannot share a single inherited fd.
      if (!inserted && (it->second.flags() != file.flags() || it->second.pos() != file.pos()))
        ambiguous.insert(path);
    }
  }
  std::vector<records::OpenFile> out;
  for (auto& [path, file] : by_path)
    if (!ambiguous.count(path)) out.push_back(std::move(file));
  return out;
}

StatusOr<std::vector<InheritedFile>> ReopenForRestore(
    const google::protobuf::RepeatedPtrField<records::OpenFile>& files,
    const std::map<std::string, std::string>& redirect) {
  std::vector<InheritedFile> out;
  for (const auto& file : files) {
    auto target = redirect.find(file.path());
    const std::string& path = target == redirect.end() ? file.path() : target->second;
    // Never create or truncate: the job's file must be the one it had.
    int flags = file.flags() & ~(O_CREAT | O_TRUNC | O_EXCL | O_CLOEXEC);
    if (target != redirect.end()) flags |= O_CREAT;
    UniqueFd fd(::open(path.c_str(), flags, 0644));
    if (!fd) return ErrnoStatus("reopen " + path + ", which the job had open at the snapshot");
    if (!(flags & O_APPEND) && ::lseek(fd.get(), file.pos(), SEEK_SET) < 0)
      return ErrnoStatus("seek " + path + " to offset " + std::to_string(file.pos()));
    out.push_back({file.path().substr(1), std::move(fd)});
  }
  return out;
}

}  // namespace lazarus::snapshot
