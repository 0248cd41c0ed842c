#include "snapshot/snapshot_store.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/fs_util.h"
#include "common/record_file.h"

namespace lazarus::snapshot {
namespace fs = std::filesystem;

namespace {
constexpr const char* kStagingPrefix = ".staging-";
constexpr const char* kRecordName = "snapshot.rec";
}  // namespace

StatusOr<SnapshotStore::Staged> SnapshotStore::Stage(uint32_t id) const {
  Staged staged{id, dir_ + "/" + kStagingPrefix + std::to_string(id), ""};
  staged.images_dir = staged.dir + "/images";
  LAZARUS_RETURN_IF_ERROR(RemoveTree(staged.dir));
  LAZARUS_RETURN_IF_ERROR(MakeDirs(staged.images_dir, 0700));
  return staged;
}

Status SnapshotStore::Commit(const Staged& staged, records::SnapshotRecord record) const {
  record.set_size_bytes(TreeSize(staged.images_dir));
  LAZARUS_RETURN_IF_ERROR(WriteRecordFile(staged.dir + "/" + kRecordName, record));
  LAZARUS_RETURN_IF_ERROR(FsyncTree(staged.dir));
  const std::string final_dir = Dir(staged.id);
  if (std::rename(staged.dir.c_str(), final_dir.c_str()) != 0)
    return ErrnoStatus("rename " + staged.dir + " to " + final_dir);
  return FsyncPath(dir_);
}

void SnapshotStore::Discard(const Staged& staged) const { (void)RemoveTree(staged.dir); }

void SnapshotStore::RemoveStaging() const {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec))
    if (entry.path().filename().string().rfind(kStagingPrefix, 0) == 0) (void)RemoveTree(entry.path().string());
}

std::vector<records::SnapshotRecord> SnapshotStore::List(std::vector<std::string>* errors) const {
  std::vector<records::SnapshotRecord> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    records::SnapshotRecord record;
    Status st = ReadRecordFile(entry.path().string() + "/" + kRecordName, &record);
    if (!st.ok()) {
      if (errors) errors->push_back(st.message());
      continue;
    }
    out.push_back(std::move(record));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
  return out;
}

StatusOr<records::SnapshotRecord> SnapshotStore::Get(uint32_t id) const {
  records::SnapshotRecord record;
  Status st = ReadRecordFile(Dir(id) + "/" + kRecordName, &record);
  if (st.code() == Code::kNotFound) return Status(Code::kNotFound, "no snapshot " + std::to_string(id));
  if (!st.ok()) return st;
  return record;
}

}  // namespace lazarus::snapshot
