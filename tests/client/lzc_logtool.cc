// A small tool for the client-library tests and for looking at a log by hand:
//   lzc-logtool create DIR [SEGMENT_SIZE]   an empty log, as `lazarus run` makes one
//   lzc-logtool bump DIR                    what the daemon does before a restore
//   lzc-logtool dump DIR                    one line per record
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "effectlog/log_files.h"
#include "effectlog/reader.h"

using namespace lazarus::effectlog;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: lzc-logtool create|bump|dump DIR\n");
    return 2;
  }
  const std::string cmd = argv[1], dir = argv[2];
  if (cmd == "create") {
    LogOptions o;
    if (argc > 3) o.segment_size = static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 0));
    const auto st = CreateLog(dir, o);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.message().c_str());
      return 1;
    }
    return 0;
  }
  if (cmd == "bump") {
    auto c = ControlFile::Open(dir, true);
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", c.status().message().c_str());
      return 1;
    }
    std::printf("%" PRIu64 "\n", c->BeginIncarnation());
    return 0;
  }
  if (cmd == "dump") {
    auto r = Reader::Open(dir);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().message().c_str());
      return 1;
    }
    RecordView v;
    while ((*r)->Next(&v)) {
      std::printf("%" PRIu64 ":%" PRIu64 " type=%u ch=%u seq=%" PRIu64 " kind=0x%x size=%u\n", v.position.segment,
                  v.position.offset, v.type, v.channel, v.sequence, v.kind, v.payload_size);
    }
    std::printf("end: %s %s\n", EndKindName((*r)->end().kind), (*r)->end().problem.c_str());
    return 0;
  }
  return 2;
}
