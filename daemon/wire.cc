#include "daemon/wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace lazarus::wire {
namespace {

Status SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("send on API socket");
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Returns the bytes read: less than size only at end of stream.
StatusOr<size_t> RecvAll(int fd, char* data, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::recv(fd, data + got, size - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("receive on API socket");
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

}  // namespace

Status WriteMessage(int fd, const google::protobuf::MessageLite& message) {
  std::string payload;
  if (!message.SerializeToString(&payload)) return Status(Code::kInternal, "serialize API message");
  if (payload.size() > kMaxMessageBytes) return Status(Code::kInvalidArgument, "API message too large");
  uint32_t length = static_cast<uint32_t>(payload.size());
  char header[4];
  std::memcpy(header, &length, 4);
  LAZARUS_RETURN_IF_ERROR(SendAll(fd, header, 4));
  return SendAll(fd, payload.data(), payload.size());
}

Status ReadMessage(int fd, google::protobuf::MessageLite* message) {
  char header[4];
  auto got = RecvAll(fd, header, 4);
  if (!got.ok()) return got.status();
  if (*got == 0) return Status(Code::kNotFound, "connection closed");
  if (*got < 4) return Status(Code::kInvalidArgument, "truncated API message header");
  uint32_t length;
  std::memcpy(&length, header, 4);
  if (length > kMaxMessageBytes)
    return Status(Code::kInvalidArgument, "API message of " + std::to_string(length) + " bytes exceeds the limit");
  std::string payload(length, '\0');
  got = RecvAll(fd, payload.data(), length);
  if (!got.ok()) return got.status();
  if (*got < length) return Status(Code::kInvalidArgument, "truncated API message");
  if (!message->ParseFromString(payload)) return Status(Code::kInvalidArgument, "unparsable API message");
  return Status::Ok();
}

}  // namespace lazarus::wire
