// Helpers shared by the effect-log tests: a log in a scratch directory, records with
// payloads derived from (channel, sequence) so that any record can be checked on its own,
// and reading a whole log back.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/fs_util.h"
#include "effectlog/log_files.h"
#include "effectlog/reader.h"
#include "effectlog/writer.h"

namespace lazarus::effectlog::testing {

// The payload of record (channel, sequence): `size` bytes that depend on both.
inline std::string PayloadFor(uint32_t channel, uint64_t sequence, size_t size = 64) {
  std::string p(size, '\0');
  uint64_t x = (uint64_t{channel} << 40) ^ sequence ^ 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < size; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = static_cast<char>(x >> 56);
  }
  return p;
}

inline AppendArgs ArgsFor(uint32_t channel, uint64_t sequence, const std::string& payload,
                          RecordType type = RecordType::kResult) {
  AppendArgs a;
  a.type = type;
  a.channel = channel;
  a.sequence = sequence;
  a.kind = 7;
  a.digest = RequestDigest(payload.data(), payload.size());
  a.payload = payload.data();
  a.payload_size = static_cast<uint32_t>(payload.size());
  return a;
}

struct ReadBack {
  std::vector<RecordView> records;  // payload pointers are NOT kept valid: see payloads
  std::vector<std::string> payloads;
  ReadEnd end;
  uint64_t abandoned = 0;
};

inline ReadBack ReadAll(const std::string& dir, const ReaderOptions& options = {}) {
  ReadBack out;
  auto reader = Reader::Open(dir, options);
  if (!reader.ok()) {
    out.end.kind = EndKind::kCorrupt;
    out.end.problem = "open: " + reader.status().message();
    return out;
  }
  RecordView r;
  while ((*reader)->Next(&r)) {
    out.payloads.emplace_back(reinterpret_cast<const char*>(r.payload), r.payload_size);
    r.payload = nullptr;
    out.records.push_back(r);
  }
  out.end = (*reader)->end();
  out.abandoned = (*reader)->abandoned();
  return out;
}

// True when the record is exactly what ArgsFor/PayloadFor made for its channel and sequence.
inline bool RecordIsIntact(const RecordView& r, const std::string& payload, size_t size = 64) {
  const std::string want = PayloadFor(r.channel, r.sequence, size);
  return payload == want && r.digest == RequestDigest(want.data(), want.size()) && r.kind == 7;
}

inline std::string ReadWholeFile(const std::string& path) { return ReadFile(path, 1u << 30).value(); }

inline void WriteWholeFile(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace lazarus::effectlog::testing
