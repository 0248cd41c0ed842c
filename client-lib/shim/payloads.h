// What the shim stores in the effect log for each intercepted call (calls.def). These bytes
// outlive the build that wrote them (a restored job may run a newer shim): fixed layouts,
// explicit padding, little-endian, fields only ever appended. A layout change that an
// older shim would misread takes a new call id.
//
// Every call is identified by its kind (0x80000000 + id) and the digest of a request struct
// (RequestDigest over the struct's bytes; structs are zero-filled first, so padding is 0).
// Requests hold the call's arguments and a 64-bit XXH3 of any data or address passed in.
//
// RESULT payload = CallResult, then `size` bytes:
//   clock_gettime        ClockReading
//   gettimeofday, time   ClockReading (clock = CLOCK_REALTIME)
//   getrandom, read, readv, recv      the bytes read (ret of them)
//   recvfrom             AddrHeader, address (min(addr_len, capacity) bytes), the bytes read
//   recvmsg              MsgHeader, name, control, the bytes read
//   write ... sendmsg, connect        nothing
//   accept, accept4      AddrHeader, address
//   poll, ppoll          revents, 2 bytes for each pollfd
//   select               the read, write and except sets that were passed, (nfds + 7) / 8
//                        bytes each, then the time left (2 x i64) when a timeout was passed
//   epoll_wait(_pwait)   ret x struct epoll_event (12 bytes each on x86-64)
//
// INTENT payload (output calls) = WriteSummary, then the first bytes of the data (reports).
#pragma once

#include <cstddef>
#include <cstdint>

namespace lazarus::shim {

struct CallResult {
  int64_t ret;    // the call's return value
  int32_t err;    // errno when the call failed, else 0
  uint32_t size;  // bytes that follow
};
static_assert(sizeof(CallResult) == 16);

struct ClockReading {
  int32_t clock;  // clockid_t
  uint32_t pad;
  int64_t sec;
  int64_t nsec;  // nanoseconds (gettimeofday's microseconds * 1000)
};
static_assert(sizeof(ClockReading) == 24);

struct AddrHeader {
  uint32_t addr_len;  // the length the call reported (may exceed what was stored)
  uint32_t pad;
};
static_assert(sizeof(AddrHeader) == 8);

struct MsgHeader {
  uint32_t name_len;     // msg_namelen after the call
  uint32_t control_len;  // msg_controllen after the call
  int32_t msg_flags;
  uint32_t pad;
};
static_assert(sizeof(MsgHeader) == 16);

// Where an output went: enough to tell, for a write to a regular file left in doubt by a
// crash, whether it reached the file.
struct WriteSummary {
  int32_t fd;
  uint8_t fd_class;  // FdClass
  uint8_t pad[3];
  uint64_t size;       // bytes the call was asked to write
  int64_t offset;      // regular files: where the data goes; -1 otherwise
  uint64_t data_hash;  // XXH3-64 of the data
};
static_assert(sizeof(WriteSummary) == 32);
inline constexpr uint32_t kPreviewBytes = 32;  // of the data, after the summary

// ---- requests (digested, never stored) ------------------------------------------------------
struct IoRequest {  // read, readv, recv*, write*, send*, getrandom
  int32_t fd;
  int32_t flags;
  uint64_t size;       // bytes asked for / offered
  uint64_t data_hash;  // outputs: XXH3-64 of the data
  uint64_t addr_hash;  // sendto/sendmsg: of the address; recvfrom/recvmsg: address capacity
  int64_t offset;      // pwrite: the offset; -1 otherwise
  uint64_t extra;      // recvmsg: control capacity; sendmsg: XXH3-64 of the control data
};

struct ClockRequest {
  int32_t clock;
  int32_t pad;
};

struct SocketRequest {  // connect, accept
  int32_t fd;
  int32_t flags;
  uint64_t addr_hash;  // connect: of the address; accept: the address capacity
};

struct ReadyRequest {  // poll, select, epoll
  int32_t nfds;        // poll: nfds; select: nfds; epoll: epfd
  int32_t max;         // epoll: maxevents; select: which sets were passed (bits 0..2)
  uint64_t set_hash;   // poll: of the (fd, events) pairs; select: of the sets passed
};

}  // namespace lazarus::shim
