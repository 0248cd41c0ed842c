#include "daemon/wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "daemon/api.pb.h"

namespace lazarus {
namespace {

struct SocketPair {
  SocketPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
  UniqueFd a, b;
};

void SendRaw(int fd, const std::string& bytes) { ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), (ssize_t)bytes.size()); }

std::string Header(uint32_t length) {
  char h[4];
  std::memcpy(h, &length, 4);
  return std::string(h, 4);
}

TEST(Wire, RequestRoundTrips) {
  SocketPair s;
  api::Request req;
  req.mutable_run()->add_argv("/bin/true");
  req.mutable_run()->set_name("t");
  ASSERT_TRUE(wire::WriteMessage(s.a.get(), req).ok());
  api::Request back;
  ASSERT_TRUE(wire::ReadMessage(s.b.get(), &back).ok());
  EXPECT_EQ(back.run().argv(0), "/bin/true");
  EXPECT_EQ(back.run().name(), "t");
}

TEST(Wire, ClosedConnectionIsNotFound) {
  SocketPair s;
  s.a.reset();
  api::Request back;
  EXPECT_EQ(wire::ReadMessage(s.b.get(), &back).code(), Code::kNotFound);
}

TEST(Wire, OversizedLengthIsRefusedWithoutReadingIt) {
  SocketPair s;
  SendRaw(s.a.get(), Header(wire::kMaxMessageBytes + 1));
  api::Request back;
  Status st = wire::ReadMessage(s.b.get(), &back);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("exceeds the limit"), std::string::npos) << st.message();
}

TEST(Wire, TruncatedMessageIsRefused) {
  SocketPair s;
  SendRaw(s.a.get(), Header(10) + "abc");
  s.a.reset();
  api::Request back;
  EXPECT_EQ(wire::ReadMessage(s.b.get(), &back).code(), Code::kInvalidArgument);
}

TEST(Wire, GarbagePayloadIsRefused) {
  SocketPair s;
  SendRaw(s.a.get(), Header(4) + std::string("\xff\xff\xff\xff", 4));
  api::Request back;
  EXPECT_EQ(wire::ReadMessage(s.b.get(), &back).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace lazarus
