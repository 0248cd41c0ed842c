// One protobuf message per file, written atomically and read back only when intact.
// Layout (little-endian):
//   magic    8 bytes  "LZREC" 0 0 1   (format version in the last byte)
//   length   u32      payload bytes
//   checksum u64      XXH3-64 of the payload
//   payload  length bytes, a serialized protobuf message
#pragma once

#include <google/protobuf/message_lite.h>

#include <string>

#include "common/status.h"

namespace lazarus {

Status WriteRecordFile(const std::string& path, const google::protobuf::MessageLite& message);

// kNotFound when missing, kDataLoss when damaged (bad magic, size or checksum).
Status ReadRecordFile(const std::string& path, google::protobuf::MessageLite* message);

}  // namespace lazarus
