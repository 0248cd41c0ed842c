// Framing of the API on the unix socket: a 4-byte little-endian length, then the
// serialized protobuf message. Shared by the daemon and the command line.
#pragma once

#include <google/protobuf/message_lite.h>

#include "common/status.h"

namespace lazarus::wire {

constexpr uint32_t kMaxMessageBytes = 4u << 20;

Status WriteMessage(int fd, const google::protobuf::MessageLite& message);
// kNotFound when the peer closed before sending anything.
Status ReadMessage(int fd, google::protobuf::MessageLite* message);

}  // namespace lazarus::wire
