// The shared format header on its own. This file is compiled the way the LD_PRELOAD shim
// is (-fvisibility=hidden -fno-exceptions, see CMakeLists.txt): format.h must work there.
#include "effectlog/format.h"

#include <gtest/gtest.h>

#include <cstring>

namespace lazarus::effectlog {
namespace {

TEST(EffectLogFormat, FrameWordRoundTrips) {
  for (uint16_t state : {kFrameClaimed, kFrameCommitted, kFramePad}) {
    for (uint32_t length : {8u, 56u, 120u, 4096u, 1u << 30}) {
      const uint64_t f = MakeFrame(length, state);
      EXPECT_TRUE(FrameWellFormed(f));
      EXPECT_EQ(FrameLength(f), length);
      EXPECT_EQ(FrameState(f), state);
    }
  }
  EXPECT_FALSE(FrameWellFormed(0));
  EXPECT_FALSE(FrameWellFormed(MakeFrame(12, kFrameCommitted)));  // not a multiple of 8
}

TEST(EffectLogFormat, EveryDamagedByteOfAFrameWordIsDetected) {
  for (uint16_t state : {kFrameClaimed, kFrameCommitted, kFramePad}) {
    for (uint32_t length : {64u, 120u, 4040u, 65536u}) {
      const uint64_t good = MakeFrame(length, state);
      for (int byte = 0; byte < 8; ++byte) {
        for (int v = 1; v < 256; ++v) {
          const uint64_t bad = good ^ (uint64_t(v) << (8 * byte));
          EXPECT_FALSE(FrameWellFormed(bad)) << "byte " << byte << " xor " << v;
        }
      }
    }
  }
}

TEST(EffectLogFormat, RecordChecksumCoversLengthHeaderAndPayload) {
  alignas(8) uint8_t rec[RecordLength(5)] = {};
  RecordHeader h{};
  h.type = 2;
  h.channel = 3;
  h.sequence = 4;
  h.payload_size = 5;
  std::memcpy(rec, &h, sizeof h);
  std::memcpy(rec + kRecordHeaderSize, "hello", 5);
  const uint64_t sum = RecordChecksum(rec, sizeof rec, 5);
  EXPECT_NE(RecordChecksum(rec, sizeof rec + 8, 5), sum);  // the length is in the seed
  for (size_t i = kChecksumFrom; i < kRecordHeaderSize + 5; ++i) {
    rec[i] ^= 1;
    EXPECT_NE(RecordChecksum(rec, sizeof rec, 5), sum) << "byte " << i;
    rec[i] ^= 1;
  }
}

TEST(EffectLogFormat, PositionsPackInLogOrder) {
  const LogPosition a{3, 4096}, b{3, 8192}, c{4, 4096};
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_LT(a.Packed(), b.Packed());
  EXPECT_LT(b.Packed(), c.Packed());
  EXPECT_EQ(LogPosition::Unpack(c.Packed()), c);
}

TEST(EffectLogFormat, RequestDigestIsXxh3_128) {
  const Digest128 d = RequestDigest("abc", 3);
  const XXH128_hash_t h = XXH3_128bits("abc", 3);
  EXPECT_EQ(d.low, h.low64);
  EXPECT_EQ(d.high, h.high64);
}

}  // namespace
}  // namespace lazarus::effectlog
