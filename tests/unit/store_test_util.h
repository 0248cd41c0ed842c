// Helpers for the snapshot store's tests: image directories with known content, and reading
// them back for comparison.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/fs_util.h"
#include "snapshot/chunk_store.h"

namespace lazarus::store::testing {

constexpr size_t kPage = 4096;

// `pages` pages of content that is different in every page and compresses like text
// (half of each page is words, half is random bytes).
inline std::string Pages(size_t pages, uint64_t seed) {
  static const char* kWords[] = {"process ", "durable ", "snapshot", "restore ", "effect  ", "journal ", "kernel  ",
                                 "memory  "};
  std::mt19937_64 rng(seed);
  std::string out(pages * kPage, '\0');
  for (size_t w = 0; w < out.size() / 8; ++w) {
    uint64_t r = rng();
    if (w % 2 == 0)
      std::memcpy(&out[w * 8], kWords[r & 7], 8);
    else
      std::memcpy(&out[w * 8], &r, 8);
  }
  return out;
}

// Incompressible bytes.
inline std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t r = rng();
    std::memcpy(&out[i], &r, 8);
  }
  return out;
}

using Images = std::map<std::string, std::string>;  // file name -> content

inline void WriteImages(const std::string& dir, const Images& images) {
  (void)RemoveTree(dir);
  if (!MakeDirs(dir).ok()) std::abort();
  for (const auto& [name, content] : images)
    if (!WriteFileAtomic(dir + "/" + name, content, 0600).ok()) std::abort();
}

// "" when equal, else what differs first (without dumping megabytes of bytes on failure).
inline std::string DiffImages(const Images& got, const Images& want) {
  for (const auto& [name, content] : want) {
    auto it = got.find(name);
    if (it == got.end()) return name + " is missing";
    if (it->second.size() != content.size())
      return name + " has " + std::to_string(it->second.size()) + " bytes, want " + std::to_string(content.size());
    for (size_t i = 0; i < content.size(); ++i)
      if (it->second[i] != content[i]) return name + " differs at byte " + std::to_string(i);
  }
  for (const auto& [name, content] : got)
    if (!want.count(name)) return name + " is extra";
  return "";
}

inline Images ReadImages(const std::string& dir) {
  Images out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    auto content = ReadFile(dir + "/" + name, size_t{1} << 32);
    out[name] = content.ok() ? *content : "<unreadable>";
  }
  ::closedir(d);
  return out;
}

// A small CRIU-like image directory: one page image and a few small files.
inline Images SampleImages(size_t pages, uint64_t seed) {
  return {{"pages-1.img", Pages(pages, seed)},
          {"pagemap-42.img", std::string("pagemap") + std::to_string(seed)},
          {"core-42.img", RandomBytes(3000, seed + 1)},
          {"inventory.img", "inventory"},
          {"empty.img", ""}};
}

// Rewrites `every`-th page of a page image with new content (a "job" writing its memory).
inline void RewritePages(std::string& image, size_t every, size_t first, uint64_t seed) {
  for (size_t p = first; p < image.size() / kPage; p += every) image.replace(p * kPage, kPage, Pages(1, seed + p));
}

// Ingests `dir` and commits it as job/id.
inline Status IngestAndCommit(const ChunkStore& store, const std::string& dir, const std::string& job, uint32_t id,
                              const Manifest* base = nullptr, IngestStats* stats = nullptr) {
  IngestOptions options;
  options.threads = 2;
  options.base = base;
  auto pending = store.Ingest(dir, options);
  if (!pending.ok()) return pending.status();
  if (stats) *stats = pending->stats();
  return store.Commit(job, id, std::move(pending).value());
}

// Number of entries in a directory (0 when missing).
inline size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  while (dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++n;
  ::closedir(d);
  return n;
}

inline size_t CountChunkFiles(const std::string& store_root) {
  size_t n = 0;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) n += CountEntries(store_root + "/chunks/" + kHex[i >> 4] + kHex[i & 15]);
  return n;
}

// Flips one bit of the byte at `offset` of a file.
inline void FlipByte(const std::string& path, size_t offset) {
  auto content = ReadFile(path, size_t{1} << 30);
  if (!content.ok() || offset >= content->size()) std::abort();
  (*content)[offset] ^= 0x20;
  if (!WriteFileAtomic(path, *content, 0600).ok()) std::abort();
}

}  // namespace lazarus::store::testing
