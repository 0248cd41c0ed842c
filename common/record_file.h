// One protobuf message per file, written atomically and read back only when intact.
// Layout (little-endian):
//   magic    8 bytes  "LZREC" 0 0 1   (format version in the last byte)
//   length   u32      payload bytes
//   checksum u64      XXH3-64 of the payload
//   payload  length bytes, a serialized protobuf message
#pragma once

#include <google/protobuf/message_lite.h>

#include <string>
#include <string_view>

#include "common/status.h"

namespace lazarus {

// Readers refuse larger payloads (a record file that large is damaged); writers never write one.
inline constexpr size_t kMaxRecordPayloadBytes = 16u << 20;
inline constexpr size_t kRecordHeaderBytes = 8 + 4 + 8;

Status WriteRecordFile(const std::string& path, const google::protobuf::MessageLite& message);

// kNotFound when missing, kDataLoss when damaged (bad magic, size or checksum).
Status ReadRecordFile(const std::string& path, google::protobuf::MessageLite* message);

// What ReadRecordFile does with the file's bytes (`name` goes into messages); for callers
// that have the bytes already, and fuzzing.
Status ParseRecord(std::string_view data, const std::string& name, google::protobuf::MessageLite* message);
// The bytes WriteRecordFile writes.
StatusOr<std::string> EncodeRecord(const google::protobuf::MessageLite& message);

}  // namespace lazarus
