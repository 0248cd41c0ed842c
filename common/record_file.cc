#include "common/record_file.h"

#include <xxhash.h>

#include <cstring>

#include "common/fs_util.h"

namespace lazarus {
namespace {

constexpr char kMagic[8] = {'L', 'Z', 'R', 'E', 'C', 0, 0, 1};
constexpr size_t kHeaderBytes = kRecordHeaderBytes;
constexpr size_t kMaxPayloadBytes = kMaxRecordPayloadBytes;

template <typename T>
void Put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // x86-64 and arm64 are little-endian
  out.append(bytes, sizeof(T));
}

}  // namespace

StatusOr<std::string> EncodeRecord(const google::protobuf::MessageLite& message) {
  std::string payload;
  if (!message.SerializeToString(&payload)) return Status(Code::kInternal, "cannot serialize a record");
  if (payload.size() > kMaxPayloadBytes)
    return Status(Code::kInternal, "record of " + std::to_string(payload.size()) + " bytes is larger than the " +
                                       std::to_string(kMaxPayloadBytes) + " bytes readers accept");
  std::string out(kMagic, sizeof kMagic);
  Put<uint32_t>(out, static_cast<uint32_t>(payload.size()));
  Put<uint64_t>(out, XXH3_64bits(payload.data(), payload.size()));
  out += payload;
  return out;
}

Status WriteRecordFile(const std::string& path, const google::protobuf::MessageLite& message) {
  auto out = EncodeRecord(message);
  if (!out.ok()) return out.status().Context(path);
  return WriteFileAtomic(path, *out);
}

Status ReadRecordFile(const std::string& path, google::protobuf::MessageLite* message) {
  auto data = ReadFile(path, kHeaderBytes + kMaxPayloadBytes);
  if (!data.ok()) return data.status();
  return ParseRecord(*data, path, message);
}

Status ParseRecord(std::string_view d, const std::string& path, google::protobuf::MessageLite* message) {
  if (d.size() < kHeaderBytes || std::memcmp(d.data(), kMagic, sizeof kMagic) != 0)
    return Status(Code::kDataLoss, path + ": not a Lazarus record (bad magic)");
  uint32_t length;
  uint64_t checksum;
  std::memcpy(&length, d.data() + 8, 4);
  std::memcpy(&checksum, d.data() + 12, 8);
  if (d.size() != kHeaderBytes + length)
    return Status(Code::kDataLoss, path + ": truncated record (" + std::to_string(d.size() - kHeaderBytes) +
                                       " of " + std::to_string(length) + " payload bytes)");
  const char* payload = d.data() + kHeaderBytes;
  if (XXH3_64bits(payload, length) != checksum) return Status(Code::kDataLoss, path + ": checksum mismatch");
  if (!message->ParseFromArray(payload, static_cast<int>(length)))
    return Status(Code::kDataLoss, path + ": unparsable record");
  return Status::Ok();
}

}  // namespace lazarus
