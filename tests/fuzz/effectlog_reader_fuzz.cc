// libFuzzer target for the effect-log reader. The reader must never crash or read outside
// what it was given, and what it returns must be true: only records that were written, in
// log order, a prefix of them when the log was damaged, all of them when it was not.
//
// The first input byte picks the mode:
//  - raw: the rest is split into 1-3 segment files as they are (headers included);
//  - built: the rest is a program that builds a log the way writers do (records with
//    valid checksums, claims of dead writers, roll-overs) and then damages it (flipped
//    bytes, a cut file), so that the fuzzer reaches the record paths a checksum would
//    otherwise hide, and the oracle knows which records must come back.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "effectlog/log_files.h"
#include "effectlog/reader.h"
#include "effectlog/segment_parser.h"

namespace {

using namespace lazarus::effectlog;

constexpr uint32_t kSegment = 2 * kPageSize;
constexpr size_t kMaxSegments = 3;

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "oracle: %s\n", why);
  std::abort();
}

const std::string& LogDir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/lazarus-fuzz-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (d == nullptr) std::abort();
    std::string path = std::string(d) + "/log";
    LogOptions o;
    o.segment_size = kSegment;
    if (!CreateLog(path, o).ok()) std::abort();
    return path;
  }();
  return dir;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  if (!bytes.empty() && ::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) std::abort();
  ::close(fd);
}

std::string FreshSegment(uint64_t number) {
  std::string seg(kSegment, '\0');
  SegmentHeader h{};
  std::memcpy(h.magic, kSegmentMagic, sizeof h.magic);
  h.format_version = kFormatVersion;
  h.min_reader_version = kMinReaderVersion;
  h.segment_number = number;
  h.segment_size = kSegment;
  h.header_size = kSegmentHeaderSize;
  h.header_checksum = XXH3_64bits(&h, kSegmentChecksummed);
  h.tail = kSegmentHeaderSize;
  std::memcpy(seg.data(), &h, sizeof h);
  return seg;
}

struct Written {
  LogPosition position;
  uint32_t channel;
  uint64_t sequence;
  std::string payload;
};

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool empty() const { return p_ == end_; }
  uint8_t Byte() { return p_ == end_ ? 0 : *p_++; }
  uint16_t U16() { return static_cast<uint16_t>(Byte() | Byte() << 8); }
  std::string Bytes(size_t n) {
    n = std::min<size_t>(n, static_cast<size_t>(end_ - p_));
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Replaces the log's segments with `files` and reads it back.
std::vector<Written> ReadBack(const std::vector<std::string>& files, ReadEnd* end) {
  const std::string& dir = LogDir();
  const std::vector<uint64_t> old = ListSegments(dir).value();
  for (uint64_t n : old) ::unlink(SegmentPath(dir, n).c_str());
  for (size_t i = 0; i < files.size(); ++i) WriteFile(SegmentPath(dir, i), files[i]);
  std::vector<Written> out;
  auto reader = Reader::Open(dir);
  if (!reader.ok()) {
    end->kind = EndKind::kCorrupt;
    return out;
  }
  RecordView r;
  while ((*reader)->Next(&r)) {
    if (!out.empty() && r.position <= out.back().position) Fail("records out of log order");
    out.push_back({r.position, r.channel, r.sequence, std::string(reinterpret_cast<const char*>(r.payload), r.payload_size)});
  }
  *end = (*reader)->end();
  if (end->kind == EndKind::kPending) Fail("pending slot without live writers");
  if (end->kind != EndKind::kClean && end->problem.empty()) Fail("damage without a description");
  return out;
}

void FuzzRaw(Input in) {
  const size_t pieces = 1 + in.Byte() % kMaxSegments;
  std::vector<std::string> files;
  for (size_t i = 0; i < pieces && !in.empty(); ++i) files.push_back(in.Bytes(in.Byte() % 2 ? kSegment : in.U16()));
  ReadEnd end;
  (void)ReadBack(files, &end);
}

void FuzzBuilt(Input in) {
  std::vector<std::string> files{FreshSegment(0)};
  std::vector<Written> written;
  uint32_t off = kSegmentHeaderSize;
  bool damaged = false;
  const auto roll = [&] {
    if (off < kSegment) {
      const uint64_t pad = MakeFrame(kSegment - off, kFramePad);
      std::memcpy(files.back().data() + off, &pad, sizeof pad);
    }
    files.push_back(FreshSegment(files.size()));
    off = kSegmentHeaderSize;
  };
  for (int ops = 0; ops < 200 && !in.empty(); ++ops) {
    switch (in.Byte() % 5) {
      case 0: {  // a record, as Writer::Append makes it
        const uint32_t channel = in.Byte();
        const uint64_t sequence = in.Byte();
        const std::string payload = in.Bytes(in.Byte());
        const uint32_t length = RecordLength(static_cast<uint32_t>(payload.size()));
        if (off + length > kSegment) {
          if (files.size() == kMaxSegments) break;
          roll();
        }
        uint8_t* rec = reinterpret_cast<uint8_t*>(files.back().data()) + off;
        RecordHeader h{};
        h.type = static_cast<uint16_t>(RecordType::kResult);
        h.channel = channel;
        h.sequence = sequence;
        h.payload_size = static_cast<uint32_t>(payload.size());
        std::memcpy(rec, &h, sizeof h);
        std::memcpy(rec + kRecordHeaderSize, payload.data(), payload.size());
        const uint64_t sum = RecordChecksum(rec, length, h.payload_size);
        std::memcpy(rec + 8, &sum, sizeof sum);
        const uint64_t frame = MakeFrame(length, kFrameCommitted);
        std::memcpy(rec, &frame, sizeof frame);
        written.push_back({{files.size() - 1, off}, channel, sequence, payload});
        off += length;
        break;
      }
      case 1: {  // a claim whose writer died
        const uint32_t length = RecordLength(in.Byte());
        if (off + length > kSegment) break;
        const uint64_t frame = MakeFrame(length, kFrameClaimed);
        std::memcpy(files.back().data() + off, &frame, sizeof frame);
        off += length;
        break;
      }
      case 2:  // roll-over
        if (files.size() < kMaxSegments) roll();
        break;
      case 3: {  // a damaged byte anywhere
        std::string& f = files[in.Byte() % files.size()];
        const size_t at = in.U16() % kSegment;
        const uint8_t x = in.Byte();
        if (at < f.size() && x != 0) {
          f[at] = static_cast<char>(f[at] ^ x);
          damaged = true;
        }
        break;
      }
      case 4: {  // a file cut short
        std::string& f = files[in.Byte() % files.size()];
        f.resize(std::min<size_t>(f.size(), in.U16() % (kSegment + 1)));
        damaged = true;
        break;
      }
    }
  }
  ReadEnd end;
  const std::vector<Written> got = ReadBack(files, &end);
  if (got.size() > written.size()) Fail("more records than were written");
  for (size_t i = 0; i < got.size(); ++i) {
    const Written& a = got[i];
    const Written& b = written[i];
    if (a.position != b.position || a.channel != b.channel || a.sequence != b.sequence || a.payload != b.payload)
      Fail("a record that was not written (or not in its place)");
  }
  if (!damaged && (got.size() != written.size() || end.kind != EndKind::kClean))
    Fail("an undamaged log did not read back whole");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Input in(data + 1, size - 1);
  if (data[0] & 1) FuzzRaw(in);
  else FuzzBuilt(in);
  return 0;
}
