// The daemon's request decoder: bytes from a client go through the framing (wire.h) and
// CheckRequest(). Neither may crash, hang or accept a request CheckRequest refuses.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/unique_fd.h"
#include "daemon/api.pb.h"
#include "daemon/request_check.h"
#include "daemon/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Straight protobuf decoding of the payload.
  lazarus::api::Request request;
  if (request.ParseFromArray(data, static_cast<int>(size))) (void)lazarus::CheckRequest(request);

  // The same bytes as a stream on a socket, framing included.
  if (size > 1 << 16) return 0;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 0;
  lazarus::UniqueFd a(sv[0]), b(sv[1]);
  if (size > 0 && ::write(a.get(), data, size) != static_cast<ssize_t>(size)) return 0;
  a.reset();
  lazarus::api::Request framed;
  if (lazarus::wire::ReadMessage(b.get(), &framed).ok()) (void)lazarus::CheckRequest(framed);
  return 0;
}
