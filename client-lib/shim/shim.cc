// liblazarus-preload.so: the LD_PRELOAD shim. Each row of calls.def becomes an exported
// function of the same name that either passes the call through to libc (not under Lazarus,
// inside Lazarus itself, inside an explicit effect, or a descriptor whose calls are not
// recorded) or runs it as an effect through the replay engine of liblazarus.so (engine.h).
//
// Rules every hook keeps (STYLE.md): no allocation on the hot path (a readv or poll over
// very many buffers or descriptors may take one malloc), no exceptions, libc's functions
// resolved once with dlsym(RTLD_NEXT), errno as the real call left it, and the guard held
// while the engine works, so the library's own I/O never comes back here.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdlib>
#include <cstring>

#include "client-lib/shim/fd_table.h"
#include "client-lib/shim/payloads.h"
#include "client-lib/src/engine.h"
#include "lazarus/lazarus.h"

// The _FORTIFY_SOURCE entry points are declared by glibc only when fortifying.
extern "C" {
ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen);
ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags, struct sockaddr* addr,
                       socklen_t* addrlen);
int __poll_chk(struct pollfd* fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd* fds, nfds_t n, const struct timespec* timeout, const sigset_t* mask, size_t fdslen);
[[noreturn]] void __chk_fail(void);
}

namespace lazarus::shim {
namespace {

using client::Effect;
using client::Finish;
using client::Policy;
using client::ScopedGuard;
using client::Start;
using client::t_lazarus;
using effectlog::Digest128;
using effectlog::PayloadPiece;

// ---- the real functions ---------------------------------------------------------------------
namespace real {
#define LAZARUS_SHIM_CALL(name, id, ret, params, args, effect, on_replay) \
  using name##_fn = ret(*) params;                                        \
  std::atomic<name##_fn> name{nullptr};
#include "client-lib/shim/calls.def"
}  // namespace real

template <typename F>
F Resolve(std::atomic<F>& slot, const char* name) {
  F f = slot.load(std::memory_order_relaxed);
  if (f == nullptr) {  // before the constructor ran (another library's constructor called us)
    f = reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
    slot.store(f, std::memory_order_relaxed);
  }
  return f;
}
#define REAL(name) (::lazarus::shim::Resolve(real::name, #name))

// ---- kinds ----------------------------------------------------------------------------------
enum CallId : uint32_t {
#define LAZARUS_SHIM_CALL(name, id, ret, params, args, effect, on_replay) kId_##name = id,
#include "client-lib/shim/calls.def"
};
constexpr uint32_t KindOf(uint32_t id) { return client::kShimKindBase + id; }

const char* KindName(uint32_t kind) {
  const uint32_t id = kind - client::kShimKindBase;
#define LAZARUS_SHIM_CALL(name, cid, ret, params, args, effect, on_replay) \
  if ((cid) != 0 && (cid) == id) return #name;
#include "client-lib/shim/calls.def"
  return nullptr;
}

const char* ClassName(uint8_t c) {
  switch (c) {
    case kSocket: return "socket";
    case kPipe: return "pipe";
    case kTty: return "terminal";
    case kRandom: return "random device";
    case kFile: return "file";
    case kFileAppend: return "file, O_APPEND";
    default: return "other";
  }
}

// For divergence reports: what a logged INTENT or RESULT of a shim call says.
void Describe(uint32_t, uint16_t type, const uint8_t* payload, uint32_t size, char* out, size_t cap) {
  out[0] = '\0';
  if (type == static_cast<uint16_t>(effectlog::RecordType::kIntent) && size >= sizeof(WriteSummary)) {
    WriteSummary s{};
    std::memcpy(&s, payload, sizeof s);
    std::snprintf(out, cap, "fd %d (%s), %" PRIu64 " bytes at offset %" PRId64 ", data ", s.fd, ClassName(s.fd_class),
                  s.size, s.offset);
    client::AppendPreview(out, cap, payload + sizeof s, size - sizeof s, kPreviewBytes);
    return;
  }
  if (size >= sizeof(CallResult)) {
    CallResult h{};
    std::memcpy(&h, payload, sizeof h);
    std::snprintf(out, cap, "returned %" PRId64 " (errno %d), %u more bytes ", h.ret, h.err, h.size);
    client::AppendPreview(out, cap, payload + sizeof h, size - sizeof h, kPreviewBytes);
    return;
  }
  client::AppendPreview(out, cap, payload, size, kPreviewBytes);
}

// ---- state ----------------------------------------------------------------------------------
constinit FdTable g_fds;
// What an output left in doubt by a crash does (LAZARUS_SHIM_IN_DOUBT); regular-file
// writes are first checked against the file (see FileOutput).
Policy g_stream_policy = Policy::kAtLeastOnce;

int RealFstat(int fd, struct stat* st) { return ::fstat(fd, st); }
int RealGetFl(int fd) { return ::fcntl(fd, F_GETFL); }
FdClass ClassOf(int fd) { return g_fds.Get(fd, RealFstat, RealGetFl); }

inline bool Recording() { return client::IsActive() && t_lazarus.guard == 0; }

uint64_t Hash64(const void* data, size_t size) { return XXH3_64bits(data, size); }

uint64_t HashIov(const struct iovec* iov, int count) {
  if (count == 1) return Hash64(iov[0].iov_base, iov[0].iov_len);
  alignas(64) XXH3_state_t state;
  XXH3_64bits_reset(&state);
  for (int i = 0; i < count; ++i) XXH3_64bits_update(&state, iov[i].iov_base, iov[i].iov_len);
  return XXH3_64bits_digest(&state);
}

size_t IovTotal(const struct iovec* iov, int count) {
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  return total;
}

// The most an input call may read so that its result fits in one record.
size_t InputCap() { return client::MaxPayload() - 4096; }

// ---- stopping ----------------------------------------------------------------------------------
[[noreturn]] void Stop(int status, const char* what, const Effect& fx) {
  char report[512];
  std::snprintf(report, sizeof report,
                "lazarus: %s\nlazarus:   call %s, channel %" PRIu32 ", sequence %" PRIu64 "\n", what,
                KindName(fx.spec.kind) != nullptr ? KindName(fx.spec.kind) : "?",
                fx.channel != nullptr ? fx.channel->id : 0, fx.seq);
  client::StopJob(status, report);
}

[[noreturn]] void LogFailed(const Effect& fx) {
  const char* why = "the effect log cannot record (it is stopped: a full disk, a failed sync or damage)";
  if (fx.log_error == effectlog::AppendCode::kTooLarge) why = "a record larger than an effect log segment";
  char what[256];
  std::snprintf(what, sizeof what, "%s; the job stops rather than run on unrecorded", why);
  Stop(LAZARUS_EXIT_NO_LOG, what, fx);
}

// ---- one recorded call --------------------------------------------------------------------------
// Wraps the engine's Effect for a shim call: its kind and request digest, and the decoding
// of a logged RESULT (CallResult, then call-specific bytes).
class Call {
 public:
  Call(uint32_t id, const void* request, size_t request_size, bool output, Policy policy) {
    fx_.spec.kind = KindOf(id);
    fx_.spec.digest = effectlog::RequestDigest(request, request_size);
    fx_.spec.output = output;
    fx_.spec.policy = policy;
    fx_.spec.interrupted = &kInterrupted;
    fx_.spec.interrupted_size = sizeof kInterrupted;
  }
  // INTENT payload and what a divergence report shows as the request.
  void Summarize(const PayloadPiece* summary, uint32_t count, const void* preview, uint32_t preview_size) {
    fx_.spec.summary = summary;
    fx_.spec.summary_count = count;
    fx_.spec.request = preview;
    fx_.spec.request_size = preview_size;
  }

  Start Begin() {
    const Start s = client::BeginEffect(&fx_);
    if (s == Start::kLogFailed) LogFailed(fx_);
    if (s == Start::kReplayed) Decode();
    return s;
  }
  // Records the RESULT (pieces[0] must be the CallResult). True when the log already held
  // one (restored while performing): the caller must return that one (result()/data()).
  bool Finish(const PayloadPiece* pieces, uint32_t count) {
    uint64_t size = 0;
    for (uint32_t i = 0; i < count; ++i) size += pieces[i].size;
    if (size > client::MaxPayload()) {
      fx_.log_error = effectlog::AppendCode::kTooLarge;
      LogFailed(fx_);
    }
    const client::Finish f = client::FinishEffect(&fx_, pieces, count, static_cast<uint32_t>(size));
    if (f == client::Finish::kLogFailed) LogFailed(fx_);
    if (f == client::Finish::kReplayed) {
      Decode();
      return true;
    }
    return false;
  }

  const CallResult& result() const { return result_; }
  const uint8_t* data() const { return fx_.result + sizeof(CallResult); }
  const Effect& fx() const { return fx_; }
  [[noreturn]] void Malformed() const {
    Stop(LAZARUS_EXIT_DIVERGED, "replay diverged from the effect log: a logged RESULT does not fit the call", fx_);
  }
  // Sets errno the way the logged call left it and returns its value.
  int64_t Return() const {
    if (result_.ret < 0) errno = result_.err;
    return result_.ret;
  }

 private:
  void Decode() {
    if (fx_.result_size < sizeof(CallResult)) Malformed();
    std::memcpy(&result_, fx_.result, sizeof result_);
    if (sizeof(CallResult) + uint64_t{result_.size} != fx_.result_size) Malformed();
  }

  static constexpr CallResult kInterrupted{-1, EINTR, 0};
  Effect fx_;
  CallResult result_{};
};

CallResult Outcome(int64_t ret, int err, uint64_t size) {
  return {ret, ret < 0 ? err : 0, static_cast<uint32_t>(size)};
}

// ---- inputs ---------------------------------------------------------------------------------------
// Copies logged bytes over the caller's buffers.
void Scatter(const uint8_t* data, size_t size, const struct iovec* iov, int count) {
  for (int i = 0; i < count && size > 0; ++i) {
    const size_t n = std::min(size, iov[i].iov_len);
    std::memcpy(iov[i].iov_base, data, n);
    data += n;
    size -= n;
  }
}

// Pieces for the first `bytes` bytes of the buffers, after `head` pieces already in `out`.
uint32_t Gather(PayloadPiece* out, uint32_t head, const struct iovec* iov, int count, size_t bytes) {
  uint32_t n = head;
  for (int i = 0; i < count && bytes > 0; ++i) {
    const size_t take = std::min(bytes, iov[i].iov_len);
    if (take > 0) out[n++] = {iov[i].iov_base, static_cast<uint32_t>(take)};
    bytes -= take;
  }
  return n;
}

// A small array on the stack, or on the heap when a call passes many buffers.
template <typename T, size_t kInline>
class SmallArray {
 public:
  explicit SmallArray(size_t n) : data_(n <= kInline ? inline_ : static_cast<T*>(std::malloc(n * sizeof(T)))) {}
  ~SmallArray() {
    if (data_ != inline_) std::free(data_);
  }
  SmallArray(const SmallArray&) = delete;
  SmallArray& operator=(const SmallArray&) = delete;
  T* get() { return data_; }
  bool ok() const { return data_ != nullptr; }

 private:
  T inline_[kInline];
  T* data_;
};

// read, readv, recv, getrandom: bytes into buffers. `perform(iov, count)` does the real call.
template <typename Perform>
ssize_t BufferInput(uint32_t id, int fd, int flags, const struct iovec* iov_in, int count, Perform perform) {
  ScopedGuard guard;
  // Cap what one call may read so that its result fits in a record (a short read is legal).
  SmallArray<struct iovec, 16> capped(static_cast<size_t>(count));
  SmallArray<PayloadPiece, 17> pieces(static_cast<size_t>(count) + 1);
  if (!capped.ok() || !pieces.ok()) {
    errno = ENOMEM;
    return -1;
  }
  size_t room = InputCap();
  int n = 0;
  for (int i = 0; i < count && room > 0; ++i, ++n) {
    capped.get()[i] = iov_in[i];
    capped.get()[i].iov_len = std::min(iov_in[i].iov_len, room);
    room -= capped.get()[i].iov_len;
  }
  const struct iovec* iov = capped.get();
  IoRequest req{};
  req.fd = fd;
  req.flags = flags;
  req.size = IovTotal(iov_in, count);
  req.offset = -1;
  Call call(id, &req, sizeof req, /*output=*/false, Policy::kAtLeastOnce);
  auto replay = [&]() -> ssize_t {
    const CallResult& h = call.result();
    if (h.ret > static_cast<int64_t>(req.size) || h.size != static_cast<uint64_t>(std::max<int64_t>(h.ret, 0)))
      call.Malformed();
    Scatter(call.data(), h.size, iov_in, count);
    return call.Return();
  };
  if (call.Begin() == Start::kReplayed) return replay();
  const ssize_t ret = perform(iov, n);
  const int err = errno;
  const CallResult h = Outcome(ret, err, ret > 0 ? static_cast<uint64_t>(ret) : 0);
  pieces.get()[0] = {&h, sizeof h};
  const uint32_t np = Gather(pieces.get(), 1, iov, n, h.size);
  if (call.Finish(pieces.get(), np)) return replay();
  errno = err;
  return ret;
}

ssize_t ReadLike(uint32_t id, int fd, void* buf, size_t n, int flags, ssize_t (*one)(int, void*, size_t, int)) {
  const struct iovec v{buf, n};
  return BufferInput(id, fd, flags, &v, 1, [&](const struct iovec* iov, int count) -> ssize_t {
    return count == 0 ? 0 : one(fd, iov[0].iov_base, iov[0].iov_len, flags);
  });
}

ssize_t PlainRead(int fd, void* buf, size_t n, int) { return REAL(read)(fd, buf, n); }
ssize_t PlainRecv(int fd, void* buf, size_t n, int flags) { return REAL(recv)(fd, buf, n, flags); }

ssize_t Hook_read(int fd, void* buf, size_t n) {
  if (!Recording()) return REAL(read)(fd, buf, n);
  if (!RecordsInput(ClassOf(fd))) return REAL(read)(fd, buf, n);
  return ReadLike(kId_read, fd, buf, n, 0, PlainRead);
}

ssize_t Hook___read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __chk_fail();
  return Hook_read(fd, buf, n);
}

ssize_t Hook_readv(int fd, const struct iovec* iov, int count) {
  if (!Recording() || count < 0 || count > IOV_MAX) return REAL(readv)(fd, iov, count);
  if (!RecordsInput(ClassOf(fd))) return REAL(readv)(fd, iov, count);
  return BufferInput(kId_readv, fd, 0, iov, count,
                     [&](const struct iovec* v, int c) -> ssize_t { return REAL(readv)(fd, v, c); });
}

ssize_t Hook_recv(int fd, void* buf, size_t n, int flags) {
  if (!Recording()) return REAL(recv)(fd, buf, n, flags);
  if (ClassOf(fd) != kSocket) return REAL(recv)(fd, buf, n, flags);
  return ReadLike(kId_recv, fd, buf, n, flags, PlainRecv);
}

ssize_t Hook___recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) __chk_fail();
  return Hook_recv(fd, buf, n, flags);
}

ssize_t Hook_getrandom(void* buf, size_t n, unsigned flags) {
  if (!Recording()) return REAL(getrandom)(buf, n, flags);
  const struct iovec v{buf, n};
  return BufferInput(kId_getrandom, -1, static_cast<int>(flags), &v, 1, [&](const struct iovec* iov, int c) -> ssize_t {
    return c == 0 ? 0 : REAL(getrandom)(iov[0].iov_base, iov[0].iov_len, flags);
  });
}

// recvfrom and recvmsg: data plus an address (and control data).
ssize_t Hook_recvfrom(int fd, void* buf, size_t n, int flags, struct sockaddr* addr, socklen_t* addrlen) {
  if (!Recording()) return REAL(recvfrom)(fd, buf, n, flags, addr, addrlen);
  if (ClassOf(fd) != kSocket) return REAL(recvfrom)(fd, buf, n, flags, addr, addrlen);
  ScopedGuard guard;
  const socklen_t cap = (addr != nullptr && addrlen != nullptr) ? *addrlen : 0;
  n = std::min(n, InputCap());
  IoRequest req{};
  req.fd = fd;
  req.flags = flags;
  req.size = n;
  req.addr_hash = cap;
  req.offset = -1;
  Call call(kId_recvfrom, &req, sizeof req, false, Policy::kAtLeastOnce);
  auto replay = [&]() -> ssize_t {
    const CallResult& h = call.result();
    AddrHeader ah{};
    if (h.size < sizeof ah) call.Malformed();
    std::memcpy(&ah, call.data(), sizeof ah);
    const uint32_t stored = h.ret >= 0 ? std::min<uint32_t>(ah.addr_len, cap) : 0;
    const uint64_t data = h.ret > 0 ? static_cast<uint64_t>(h.ret) : 0;
    if (h.ret > static_cast<int64_t>(n) || h.size != sizeof ah + stored + data) call.Malformed();
    if (h.ret >= 0 && addrlen != nullptr) {
      if (stored > 0) std::memcpy(addr, call.data() + sizeof ah, stored);
      *addrlen = ah.addr_len;
    }
    if (data > 0) std::memcpy(buf, call.data() + sizeof ah + stored, data);
    return call.Return();
  };
  if (call.Begin() == Start::kReplayed) return replay();
  const ssize_t ret = REAL(recvfrom)(fd, buf, n, flags, addr, addrlen);
  const int err = errno;
  AddrHeader ah{};
  uint32_t stored = 0;
  if (ret >= 0 && addrlen != nullptr) {
    ah.addr_len = *addrlen;
    stored = std::min<uint32_t>(ah.addr_len, cap);
  }
  const uint64_t data = ret > 0 ? static_cast<uint64_t>(ret) : 0;
  const CallResult h = Outcome(ret, err, sizeof ah + stored + data);
  const PayloadPiece pieces[4] = {{&h, sizeof h}, {&ah, sizeof ah}, {addr, stored}, {buf, static_cast<uint32_t>(data)}};
  if (call.Finish(pieces, 4)) return replay();
  errno = err;
  return ret;
}

ssize_t Hook___recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags, struct sockaddr* addr,
                            socklen_t* addrlen) {
  if (n > buflen) __chk_fail();
  return Hook_recvfrom(fd, buf, n, flags, addr, addrlen);
}

ssize_t Hook_recvmsg(int fd, struct msghdr* msg, int flags) {
  if (!Recording() || msg == nullptr || msg->msg_iovlen > IOV_MAX) return REAL(recvmsg)(fd, msg, flags);
  if (ClassOf(fd) != kSocket) return REAL(recvmsg)(fd, msg, flags);
  ScopedGuard guard;
  const int count = static_cast<int>(msg->msg_iovlen);
  const uint32_t name_cap = msg->msg_name != nullptr ? msg->msg_namelen : 0;
  const uint32_t control_cap = msg->msg_control != nullptr ? static_cast<uint32_t>(msg->msg_controllen) : 0;
  const size_t total = IovTotal(msg->msg_iov, count);
  if (total + name_cap + control_cap > InputCap()) return REAL(recvmsg)(fd, msg, flags);  // too big to record
  IoRequest req{};
  req.fd = fd;
  req.flags = flags;
  req.size = total;
  req.addr_hash = name_cap;
  req.offset = -1;
  req.extra = control_cap;
  Call call(kId_recvmsg, &req, sizeof req, false, Policy::kAtLeastOnce);
  auto replay = [&]() -> ssize_t {
    const CallResult& h = call.result();
    MsgHeader mh{};
    if (h.size < sizeof mh) call.Malformed();
    std::memcpy(&mh, call.data(), sizeof mh);
    const uint32_t name = h.ret >= 0 ? std::min(mh.name_len, name_cap) : 0;
    const uint32_t control = h.ret >= 0 ? std::min(mh.control_len, control_cap) : 0;
    const uint64_t data = h.ret > 0 ? static_cast<uint64_t>(h.ret) : 0;
    if (h.ret > static_cast<int64_t>(total) || h.size != sizeof mh + name + control + data) call.Malformed();
    const uint8_t* p = call.data() + sizeof mh;
    if (h.ret >= 0) {
      if (name > 0) std::memcpy(msg->msg_name, p, name);
      if (msg->msg_name != nullptr) msg->msg_namelen = mh.name_len;
      if (control > 0) std::memcpy(msg->msg_control, p + name, control);
      msg->msg_controllen = mh.control_len;
      msg->msg_flags = mh.msg_flags;
    }
    Scatter(p + name + control, data, msg->msg_iov, count);
    return call.Return();
  };
  if (call.Begin() == Start::kReplayed) return replay();
  const ssize_t ret = REAL(recvmsg)(fd, msg, flags);
  const int err = errno;
  MsgHeader mh{};
  uint32_t name = 0, control = 0;
  if (ret >= 0) {
    mh.name_len = msg->msg_name != nullptr ? msg->msg_namelen : 0;
    mh.control_len = static_cast<uint32_t>(msg->msg_controllen);
    mh.msg_flags = msg->msg_flags;
    name = std::min(mh.name_len, name_cap);
    control = std::min(mh.control_len, control_cap);
  }
  const uint64_t data = ret > 0 ? static_cast<uint64_t>(ret) : 0;
  const CallResult h = Outcome(ret, err, sizeof mh + name + control + data);
  SmallArray<PayloadPiece, 20> pieces(static_cast<size_t>(count) + 4);
  if (!pieces.ok()) {
    errno = ENOMEM;
    return -1;
  }
  pieces.get()[0] = {&h, sizeof h};
  pieces.get()[1] = {&mh, sizeof mh};
  pieces.get()[2] = {msg->msg_name, name};
  pieces.get()[3] = {msg->msg_control, control};
  const uint32_t np = Gather(pieces.get(), 4, msg->msg_iov, count, data);
  if (call.Finish(pieces.get(), np)) return replay();
  errno = err;
  return ret;
}

// ---- outputs --------------------------------------------------------------------------------------
// Whether outputs to sockets, pipes and terminals (and connect) log an INTENT first. With
// the default in-doubt policy (perform again) an INTENT changes nothing at replay: an output
// whose INTENT is logged and whose RESULT is not is performed again, exactly as one with no
// record at all. So the shim records only the RESULT then (one append instead of two), and
// the INTENT only when the policy must tell "in doubt" apart (interrupt, fail).
bool StreamIntent() { return g_stream_policy != Policy::kAtLeastOnce; }

// A write to a socket, pipe or terminal: [INTENT,] perform, RESULT; skipped on replay.
template <typename Perform>
ssize_t StreamOutput(uint32_t id, int fd, FdClass cls, IoRequest req, const struct iovec* iov, int count,
                     Perform perform) {
  ScopedGuard guard;
  req.fd = fd;
  req.size = IovTotal(iov, count);
  req.data_hash = HashIov(iov, count);
  req.offset = -1;
  WriteSummary sum{};
  sum.fd = fd;
  sum.fd_class = cls;
  sum.size = req.size;
  sum.offset = -1;
  sum.data_hash = req.data_hash;
  const uint32_t preview = count > 0 ? static_cast<uint32_t>(std::min<size_t>(iov[0].iov_len, kPreviewBytes)) : 0;
  const PayloadPiece summary[2] = {{&sum, sizeof sum}, {count > 0 ? iov[0].iov_base : nullptr, preview}};
  Call call(id, &req, sizeof req, /*output=*/StreamIntent(), g_stream_policy);
  call.Summarize(summary, 2, summary[1].data, preview);
  auto replay = [&]() -> ssize_t {
    if (call.result().size != 0 || call.result().ret > static_cast<int64_t>(req.size)) call.Malformed();
    return call.Return();
  };
  switch (call.Begin()) {
    case Start::kReplayed: return replay();
    case Start::kInterrupted: errno = EINTR; return -1;
    default: break;
  }
  const ssize_t ret = perform();
  const int err = errno;
  const CallResult h = Outcome(ret, err, 0);
  const PayloadPiece piece{&h, sizeof h};
  if (call.Finish(&piece, 1)) return replay();
  errno = err;
  return ret;
}

// True when the file already holds `sum.size` bytes hashing to `sum.data_hash` at
// `sum.offset`: the write left in doubt by a crash did reach the file.
bool AlreadyWritten(int fd, const WriteSummary& sum) {
  if (sum.offset < 0) return false;
  alignas(64) XXH3_state_t state;
  XXH3_64bits_reset(&state);
  uint8_t buf[4096];
  uint64_t done = 0;
  while (done < sum.size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof buf, sum.size - done));
    const ssize_t n = ::pread(fd, buf, want, static_cast<off_t>(sum.offset + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // the file ends before the data would
    XXH3_64bits_update(&state, buf, static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
  }
  return XXH3_64bits_digest(&state) == sum.data_hash;
}

bool LoggedSummary(const Call& call, WriteSummary* sum) {
  if (call.fx().logged_intent == nullptr || call.fx().logged_intent_size < sizeof *sum) return false;
  std::memcpy(sum, call.fx().logged_intent, sizeof *sum);
  return true;
}

// A write to a regular file: INTENT (with where the data goes), perform, RESULT. On replay
// it is skipped and the file offset set to where the original write left it. In doubt it
// is checked against the file: performed only when the data is not there.
template <typename Perform>
ssize_t FileOutput(uint32_t id, int fd, FdClass cls, const struct iovec* iov, int count, int64_t explicit_offset,
                   Perform perform) {
  ScopedGuard guard;
  IoRequest req{};
  req.fd = fd;
  req.size = IovTotal(iov, count);
  req.data_hash = HashIov(iov, count);
  req.offset = explicit_offset;
  WriteSummary sum{};
  sum.fd = fd;
  sum.fd_class = cls;
  sum.size = req.size;
  sum.data_hash = req.data_hash;
  if (explicit_offset >= 0) {
    sum.offset = explicit_offset;
  } else if (cls == kFileAppend) {
    struct stat st {};
    sum.offset = ::fstat(fd, &st) == 0 ? st.st_size : -1;
  } else {
    sum.offset = ::lseek(fd, 0, SEEK_CUR);
  }
  const uint32_t preview = count > 0 ? static_cast<uint32_t>(std::min<size_t>(iov[0].iov_len, kPreviewBytes)) : 0;
  const PayloadPiece summary[2] = {{&sum, sizeof sum}, {count > 0 ? iov[0].iov_base : nullptr, preview}};
  Call call(id, &req, sizeof req, /*output=*/true, Policy::kAtLeastOnce);
  call.Summarize(summary, 2, summary[1].data, preview);
  // The offset as the original write left it (writes that name their offset leave it alone).
  auto advance = [&](int64_t ret) {
    WriteSummary logged{};
    if (explicit_offset >= 0 || ret <= 0 || !LoggedSummary(call, &logged) || logged.offset < 0) return;
    ::lseek(fd, static_cast<off_t>(logged.offset + ret), SEEK_SET);
  };
  auto replay = [&]() -> ssize_t {
    if (call.result().size != 0 || call.result().ret > static_cast<int64_t>(req.size)) call.Malformed();
    advance(call.result().ret);
    return call.Return();
  };
  if (call.Begin() == Start::kReplayed) return replay();
  WriteSummary logged{};
  if (call.fx().in_doubt && LoggedSummary(call, &logged)) {
    if (AlreadyWritten(fd, logged)) {
      const CallResult h{static_cast<int64_t>(req.size), 0, 0};
      const PayloadPiece piece{&h, sizeof h};
      if (call.Finish(&piece, 1)) return replay();
      advance(h.ret);
      return static_cast<ssize_t>(h.ret);
    }
    // Not there: write it where the original would have.
    if (explicit_offset < 0 && cls == kFile && logged.offset >= 0) ::lseek(fd, static_cast<off_t>(logged.offset), SEEK_SET);
  }
  const ssize_t ret = perform();
  const int err = errno;
  const CallResult h = Outcome(ret, err, 0);
  const PayloadPiece piece{&h, sizeof h};
  if (call.Finish(&piece, 1)) return replay();
  errno = err;
  return ret;
}

ssize_t Hook_write(int fd, const void* buf, size_t n) {
  if (!Recording()) return REAL(write)(fd, buf, n);
  const FdClass cls = ClassOf(fd);
  const struct iovec v{const_cast<void*>(buf), n};
  auto perform = [&] { return REAL(write)(fd, buf, n); };
  if (IsStream(cls)) return StreamOutput(kId_write, fd, cls, IoRequest{}, &v, 1, perform);
  if (IsFile(cls)) return FileOutput(kId_write, fd, cls, &v, 1, -1, perform);
  return REAL(write)(fd, buf, n);
}

ssize_t Hook_writev(int fd, const struct iovec* iov, int count) {
  if (!Recording() || count < 0 || count > IOV_MAX) return REAL(writev)(fd, iov, count);
  const FdClass cls = ClassOf(fd);
  auto perform = [&] { return REAL(writev)(fd, iov, count); };
  if (IsStream(cls)) return StreamOutput(kId_writev, fd, cls, IoRequest{}, iov, count, perform);
  if (IsFile(cls)) return FileOutput(kId_writev, fd, cls, iov, count, -1, perform);
  return REAL(writev)(fd, iov, count);
}

ssize_t Hook_pwrite(int fd, const void* buf, size_t n, off_t off) {
  if (!Recording() || off < 0) return REAL(pwrite)(fd, buf, n, off);
  const FdClass cls = ClassOf(fd);
  if (!IsFile(cls)) return REAL(pwrite)(fd, buf, n, off);
  const struct iovec v{const_cast<void*>(buf), n};
  return FileOutput(kId_pwrite, fd, cls, &v, 1, off, [&] { return REAL(pwrite)(fd, buf, n, off); });
}

ssize_t Hook_pwrite64(int fd, const void* buf, size_t n, off64_t off) {
  if (!Recording() || off < 0) return REAL(pwrite64)(fd, buf, n, off);
  const FdClass cls = ClassOf(fd);
  if (!IsFile(cls)) return REAL(pwrite64)(fd, buf, n, off);
  const struct iovec v{const_cast<void*>(buf), n};
  return FileOutput(kId_pwrite64, fd, cls, &v, 1, off, [&] { return REAL(pwrite64)(fd, buf, n, off); });
}

ssize_t Hook_send(int fd, const void* buf, size_t n, int flags) {
  if (!Recording() || ClassOf(fd) != kSocket) return REAL(send)(fd, buf, n, flags);
  const struct iovec v{const_cast<void*>(buf), n};
  IoRequest req{};
  req.flags = flags;
  return StreamOutput(kId_send, fd, kSocket, req, &v, 1, [&] { return REAL(send)(fd, buf, n, flags); });
}

ssize_t Hook_sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* addr, socklen_t addrlen) {
  if (!Recording() || ClassOf(fd) != kSocket) return REAL(sendto)(fd, buf, n, flags, addr, addrlen);
  const struct iovec v{const_cast<void*>(buf), n};
  IoRequest req{};
  req.flags = flags;
  req.addr_hash = addr != nullptr ? Hash64(addr, addrlen) : 0;
  return StreamOutput(kId_sendto, fd, kSocket, req, &v, 1,
                      [&] { return REAL(sendto)(fd, buf, n, flags, addr, addrlen); });
}

ssize_t Hook_sendmsg(int fd, const struct msghdr* msg, int flags) {
  if (!Recording() || msg == nullptr || msg->msg_iovlen > IOV_MAX || ClassOf(fd) != kSocket)
    return REAL(sendmsg)(fd, msg, flags);
  IoRequest req{};
  req.flags = flags;
  req.addr_hash = msg->msg_name != nullptr ? Hash64(msg->msg_name, msg->msg_namelen) : 0;
  req.extra = msg->msg_control != nullptr ? Hash64(msg->msg_control, msg->msg_controllen) : 0;
  return StreamOutput(kId_sendmsg, fd, kSocket, req, msg->msg_iov, static_cast<int>(msg->msg_iovlen),
                      [&] { return REAL(sendmsg)(fd, msg, flags); });
}

// ---- connections ------------------------------------------------------------------------------------
int Hook_connect(int fd, const struct sockaddr* addr, socklen_t len) {
  if (!Recording() || ClassOf(fd) != kSocket) return REAL(connect)(fd, addr, len);
  ScopedGuard guard;
  SocketRequest req{};
  req.fd = fd;
  req.addr_hash = addr != nullptr ? Hash64(addr, len) : 0;
  WriteSummary sum{};
  sum.fd = fd;
  sum.fd_class = kSocket;
  sum.size = len;
  sum.offset = -1;
  sum.data_hash = req.addr_hash;
  const uint32_t preview = addr != nullptr ? std::min<uint32_t>(len, kPreviewBytes) : 0;
  const PayloadPiece summary[2] = {{&sum, sizeof sum}, {addr, preview}};
  Call call(kId_connect, &req, sizeof req, /*output=*/StreamIntent(), g_stream_policy);
  call.Summarize(summary, 2, addr, preview);
  auto replay = [&]() -> int {
    if (call.result().size != 0) call.Malformed();
    return static_cast<int>(call.Return());
  };
  switch (call.Begin()) {
    case Start::kReplayed: return replay();
    case Start::kInterrupted: errno = EINTR; return -1;
    default: break;
  }
  const int ret = REAL(connect)(fd, addr, len);
  const int err = errno;
  const CallResult h = Outcome(ret, err, 0);
  const PayloadPiece piece{&h, sizeof h};
  if (call.Finish(&piece, 1)) return replay();
  errno = err;
  return ret;
}

// A replayed accept's descriptor: the connection died with the crash, so the program gets
// an unconnected socket of the listener's family at the number it had (reads fail with
// ENOTCONN, writes with EPIPE, as on a connection that broke).
void Placeholder(const Call& call, int listener, int want, int flags) {
  int domain = AF_INET, type = SOCK_STREAM;
  socklen_t l = sizeof domain;
  ::getsockopt(listener, SOL_SOCKET, SO_DOMAIN, &domain, &l);
  l = sizeof type;
  ::getsockopt(listener, SOL_SOCKET, SO_TYPE, &type, &l);
  const int s = REAL(socket)(domain, type | (flags & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0);
  if (s < 0) Stop(LAZARUS_EXIT_NO_LOG, "cannot make a socket to replay an accepted connection", call.fx());
  if (s != want) {
    if (::fcntl(want, F_GETFD) != -1)
      Stop(LAZARUS_EXIT_DIVERGED, "replay diverged: the descriptor a replayed accept returned is in use", call.fx());
    if (REAL(dup3)(s, want, (flags & SOCK_CLOEXEC) != 0 ? O_CLOEXEC : 0) < 0)
      Stop(LAZARUS_EXIT_NO_LOG, "cannot place a replayed accepted connection at its descriptor", call.fx());
    REAL(close)(s);
  }
  g_fds.Set(want, kSocket);
}

template <typename Perform>
int AcceptCommon(uint32_t id, int fd, struct sockaddr* addr, socklen_t* len, int flags, Perform perform) {
  ScopedGuard guard;
  const socklen_t cap = (addr != nullptr && len != nullptr) ? *len : 0;
  SocketRequest req{};
  req.fd = fd;
  req.flags = flags;
  req.addr_hash = cap;
  Call call(id, &req, sizeof req, /*output=*/false, Policy::kAtLeastOnce);
  auto replay = [&]() -> int {
    const CallResult& h = call.result();
    AddrHeader ah{};
    if (h.size < sizeof ah) call.Malformed();
    std::memcpy(&ah, call.data(), sizeof ah);
    const uint32_t stored = h.ret >= 0 ? std::min<uint32_t>(ah.addr_len, cap) : 0;
    if (h.size != sizeof ah + stored || h.ret > INT32_MAX) call.Malformed();
    if (h.ret >= 0) {
      Placeholder(call, fd, static_cast<int>(h.ret), flags);
      if (len != nullptr) {
        if (stored > 0) std::memcpy(addr, call.data() + sizeof ah, stored);
        *len = ah.addr_len;
      }
    }
    return static_cast<int>(call.Return());
  };
  if (call.Begin() == Start::kReplayed) return replay();
  const int ret = perform();
  const int err = errno;
  if (ret >= 0) g_fds.Set(ret, kSocket);
  AddrHeader ah{};
  uint32_t stored = 0;
  if (ret >= 0 && len != nullptr) {
    ah.addr_len = *len;
    stored = std::min<uint32_t>(ah.addr_len, cap);
  }
  const CallResult h = Outcome(ret, err, sizeof ah + stored);
  const PayloadPiece pieces[3] = {{&h, sizeof h}, {&ah, sizeof ah}, {addr, stored}};
  if (call.Finish(pieces, 3)) {
    // The log already answered this accept: ours is not the connection the program saw.
    if (ret >= 0 && call.result().ret != ret) REAL(close)(ret);
    if (call.result().ret == ret) return ret;
    return replay();
  }
  errno = err;
  return ret;
}

int Hook_accept(int fd, struct sockaddr* addr, socklen_t* len) {
  if (!Recording() || ClassOf(fd) != kSocket) return REAL(accept)(fd, addr, len);
  return AcceptCommon(kId_accept, fd, addr, len, 0, [&] { return REAL(accept)(fd, addr, len); });
}

int Hook_accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags) {
  if (!Recording() || ClassOf(fd) != kSocket) return REAL(accept4)(fd, addr, len, flags);
  return AcceptCommon(kId_accept4, fd, addr, len, flags, [&] { return REAL(accept4)(fd, addr, len, flags); });
}

// ---- readiness --------------------------------------------------------------------------------------
// poll and ppoll: the pollfd array after the call is the result (revents are read back).
template <typename Perform>
int PollCommon(uint32_t id, struct pollfd* fds, nfds_t n, Perform perform) {
  if (n > 1u << 20) return perform();
  ScopedGuard guard;
  ReadyRequest req{};
  req.nfds = static_cast<int32_t>(n);
  {
    alignas(64) XXH3_state_t state;
    XXH3_64bits_reset(&state);
    for (nfds_t i = 0; i < n; ++i) {
      const int32_t pair[2] = {fds[i].fd, fds[i].events};
      XXH3_64bits_update(&state, pair, sizeof pair);
    }
    req.set_hash = XXH3_64bits_digest(&state);
  }
  Call call(id, &req, sizeof req, /*output=*/false, Policy::kAtLeastOnce);
  const uint64_t bytes = sizeof(struct pollfd) * uint64_t{n};
  auto replay = [&]() -> int {
    const CallResult& h = call.result();
    if (h.size != (h.ret >= 0 ? bytes : 0)) call.Malformed();
    for (nfds_t i = 0; h.ret >= 0 && i < n; ++i) {
      struct pollfd logged;
      std::memcpy(&logged, call.data() + i * sizeof logged, sizeof logged);
      fds[i].revents = logged.revents;
    }
    return static_cast<int>(call.Return());
  };
  if (call.Begin() == Start::kReplayed) return replay();
  const int ret = perform();
  const int err = errno;
  const CallResult h = Outcome(ret, err, ret >= 0 ? bytes : 0);
  const PayloadPiece pieces[2] = {{&h, sizeof h}, {fds, static_cast<uint32_t>(h.size)}};
  if (call.Finish(pieces, 2)) return replay();
  errno = err;
  return ret;
}

int Hook_poll(struct pollfd* fds, nfds_t n, int timeout) {
  if (!Recording()) return REAL(poll)(fds, n, timeout);
  return PollCommon(kId_poll, fds, n, [&] { return REAL(poll)(fds, n, timeout); });
}

int Hook___poll_chk(struct pollfd* fds, nfds_t n, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __chk_fail();
  return Hook_poll(fds, n, timeout);
}

int Hook_ppoll(struct pollfd* fds, nfds_t n, const struct timespec* timeout, const sigset_t* mask) {
  if (!Recording()) return REAL(ppoll)(fds, n, timeout, mask);
  return PollCommon(kId_ppoll, fds, n, [&] { return REAL(ppoll)(fds, n, timeout, mask); });
}

int Hook___ppoll_chk(struct pollfd* fds, nfds_t n, const struct timespec* timeout, const sigset_t* mask,
                     size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __chk_fail();
  return Hook_ppoll(fds, n, timeout, mask);
}

int Hook_select(int nfds, fd_set* rfds, fd_set* wfds, fd_set* efds, struct timeval* timeout) {
  if (!Recording() || nfds < 0 || nfds > FD_SETSIZE) return REAL(select)(nfds, rfds, wfds, efds, timeout);
  ScopedGuard guard;
  const uint32_t set_bytes = static_cast<uint32_t>(nfds + 7) / 8;
  fd_set* sets[3] = {rfds, wfds, efds};
  ReadyRequest req{};
  req.nfds = nfds;
  {
    alignas(64) XXH3_state_t state;
    XXH3_64bits_reset(&state);
    for (int i = 0; i < 3; ++i) {
      if (sets[i] == nullptr) continue;
      req.max |= 1 << i;
      XXH3_64bits_update(&state, sets[i], set_bytes);
    }
    req.set_hash = XXH3_64bits_digest(&state);
  }
  Call call(kId_select, &req, sizeof req, /*output=*/false, Policy::kAtLeastOnce);
  const uint32_t nsets = static_cast<uint32_t>(__builtin_popcount(static_cast<unsigned>(req.max)));
  int64_t left[2] = {0, 0};
  const uint32_t bytes = nsets * set_bytes + (timeout != nullptr ? sizeof left : 0);
  auto replay = [&]() -> int {
    const CallResult& h = call.result();
    if (h.size != (h.ret >= 0 ? bytes : 0)) call.Malformed();
    if (h.ret >= 0) {
      const uint8_t* p = call.data();
      for (fd_set* s : sets) {
        if (s == nullptr) continue;
        std::memcpy(s, p, set_bytes);
        p += set_bytes;
      }
      if (timeout != nullptr) {
        std::memcpy(left, p, sizeof left);
        timeout->tv_sec = left[0];
        timeout->tv_usec = left[1];
      }
    }
    return static_cast<int>(call.Return());
  };
  if (call.Begin() == Start::kReplayed) return replay();
  const int ret = REAL(select)(nfds, rfds, wfds, efds, timeout);
  const int err = errno;
  if (timeout != nullptr) {
    left[0] = timeout->tv_sec;
    left[1] = timeout->tv_usec;
  }
  const CallResult h = Outcome(ret, err, ret >= 0 ? bytes : 0);
  PayloadPiece pieces[5] = {{&h, sizeof h}};
  uint32_t np = 1;
  if (ret >= 0) {
    for (fd_set* s : sets) {
      if (s != nullptr) pieces[np++] = {s, set_bytes};
    }
    if (timeout != nullptr) pieces[np++] = {left, sizeof left};
  }
  if (call.Finish(pieces, np)) return replay();
  errno = err;
  return ret;
}

template <typename Perform>
int EpollCommon(uint32_t id, int epfd, struct epoll_event* events, int max, Perform perform) {
  if (max <= 0 || max > (1 << 20)) return perform();
  ScopedGuard guard;
  ReadyRequest req{};
  req.nfds = epfd;
  req.max = max;
  Call call(id, &req, sizeof req, /*output=*/false, Policy::kAtLeastOnce);
  auto replay = [&]() -> int {
    const CallResult& h = call.result();
    if (h.ret > max || h.size != (h.ret > 0 ? static_cast<uint64_t>(h.ret) * sizeof(struct epoll_event) : 0))
      call.Malformed();
    if (h.size > 0) std::memcpy(events, call.data(), h.size);
    return static_cast<int>(call.Return());
  };
  if (call.Begin() == Start::kReplayed) return replay();
  const int ret = perform();
  const int err = errno;
  const CallResult h = Outcome(ret, err, ret > 0 ? static_cast<uint64_t>(ret) * sizeof(struct epoll_event) : 0);
  const PayloadPiece pieces[2] = {{&h, sizeof h}, {events, h.size}};
  if (call.Finish(pieces, 2)) return replay();
  errno = err;
  return ret;
}

int Hook_epoll_wait(int epfd, struct epoll_event* events, int max, int timeout) {
  if (!Recording()) return REAL(epoll_wait)(epfd, events, max, timeout);
  return EpollCommon(kId_epoll_wait, epfd, events, max, [&] { return REAL(epoll_wait)(epfd, events, max, timeout); });
}

int Hook_epoll_pwait(int epfd, struct epoll_event* events, int max, int timeout, const sigset_t* mask) {
  if (!Recording()) return REAL(epoll_pwait)(epfd, events, max, timeout, mask);
  return EpollCommon(kId_epoll_pwait, epfd, events, max,
                     [&] { return REAL(epoll_pwait)(epfd, events, max, timeout, mask); });
}

// ---- time -----------------------------------------------------------------------------------------
// Clocks never run backwards for the job: after a restore, live readings of the wall and
// monotonic clocks get an offset that puts them past every reading the log replays (CRIU's
// time namespace restarts CLOCK_MONOTONIC at the moment of the dump, while the replayed
// readings reach the moment of the crash). The offsets live in process memory, so a
// snapshot keeps them, and they only grow.
constexpr int kClocks = 12;
std::atomic<int64_t> g_clock_offset[kClocks];  // nanoseconds added to live readings
int64_t g_replayed_max[kClocks];                // while an index is built (engine lock held)
bool g_replayed_any[kClocks];

constexpr int64_t kNs = 1000000000;

bool Adjustable(clockid_t c) {
  return c >= 0 && c < kClocks && c != CLOCK_PROCESS_CPUTIME_ID && c != CLOCK_THREAD_CPUTIME_ID;
}

void AddOffset(clockid_t c, struct timespec* ts) {
  if (!Adjustable(c)) return;
  const int64_t off = g_clock_offset[c].load(std::memory_order_relaxed);
  if (off == 0) return;
  int64_t ns = ts->tv_sec * kNs + ts->tv_nsec + off;
  ts->tv_sec = ns / kNs;
  ts->tv_nsec = ns % kNs;
}

void ObserveResult(uint32_t kind, const uint8_t* payload, uint32_t size) {
  if (kind != KindOf(kId_clock_gettime) && kind != KindOf(kId_gettimeofday) && kind != KindOf(kId_time)) return;
  CallResult h{};
  ClockReading r{};
  if (size != sizeof h + sizeof r) return;
  std::memcpy(&h, payload, sizeof h);
  std::memcpy(&r, payload + sizeof h, sizeof r);
  if (h.ret < 0 || !Adjustable(r.clock)) return;
  const int64_t ns = r.sec * kNs + r.nsec;
  if (!g_replayed_any[r.clock] || ns > g_replayed_max[r.clock]) g_replayed_max[r.clock] = ns;
  g_replayed_any[r.clock] = true;
}

void IndexBuilt() {
  for (int c = 0; c < kClocks; ++c) {
    if (!g_replayed_any[c]) continue;
    g_replayed_any[c] = false;
    struct timespec now {};
    if (REAL(clock_gettime)(c, &now) != 0) continue;
    const int64_t live = now.tv_sec * kNs + now.tv_nsec + g_clock_offset[c].load(std::memory_order_relaxed);
    if (live <= g_replayed_max[c]) g_clock_offset[c].fetch_add(g_replayed_max[c] - live + 1, std::memory_order_relaxed);
  }
}

// One clock reading as an input effect. `read(ts)` takes the live reading (offset applied).
template <typename Read>
int ClockInput(uint32_t id, clockid_t clk, struct timespec* ts, Read read) {
  ScopedGuard guard;
  ClockRequest req{};
  req.clock = clk;
  Call call(id, &req, sizeof req, /*output=*/false, Policy::kAtLeastOnce);
  auto replay = [&]() -> int {
    const CallResult& h = call.result();
    ClockReading r{};
    if (h.size != sizeof r) call.Malformed();
    std::memcpy(&r, call.data(), sizeof r);
    ts->tv_sec = r.sec;
    ts->tv_nsec = r.nsec;
    return static_cast<int>(call.Return());
  };
  if (call.Begin() == Start::kReplayed) return replay();
  const int ret = read(ts);
  const int err = errno;
  ClockReading r{};
  r.clock = clk;
  r.sec = ts->tv_sec;
  r.nsec = ts->tv_nsec;
  const CallResult h = Outcome(ret, err, sizeof r);
  const PayloadPiece pieces[2] = {{&h, sizeof h}, {&r, sizeof r}};
  if (call.Finish(pieces, 2)) return replay();
  errno = err;
  return ret;
}

int LiveClock(clockid_t clk, struct timespec* ts) {
  const int ret = REAL(clock_gettime)(clk, ts);
  if (ret == 0) AddOffset(clk, ts);
  return ret;
}

int Hook_clock_gettime(clockid_t clk, struct timespec* ts) {
  if (!client::IsActive() || ts == nullptr) return REAL(clock_gettime)(clk, ts);
  if (t_lazarus.guard > 0) return LiveClock(clk, ts);  // unrecorded, but never backwards
  return ClockInput(kId_clock_gettime, clk, ts, [&](struct timespec* out) { return LiveClock(clk, out); });
}

int Hook_gettimeofday(struct timeval* tv, void* tz) {
  if (!client::IsActive() || tv == nullptr) return REAL(gettimeofday)(tv, tz);
  if (tz != nullptr) REAL(gettimeofday)(nullptr, tz);  // obsolete; never recorded
  struct timespec ts {};
  int ret;
  if (t_lazarus.guard > 0) {
    ret = LiveClock(CLOCK_REALTIME, &ts);
  } else {
    ret = ClockInput(kId_gettimeofday, CLOCK_REALTIME, &ts, [](struct timespec* out) {
      struct timeval now {};
      const int r = REAL(gettimeofday)(&now, nullptr);
      out->tv_sec = now.tv_sec;
      out->tv_nsec = now.tv_usec * 1000;
      if (r == 0) AddOffset(CLOCK_REALTIME, out);
      out->tv_nsec -= out->tv_nsec % 1000;
      return r;
    });
  }
  if (ret == 0) {
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
  }
  return ret;
}

time_t Hook_time(time_t* t) {
  if (!client::IsActive()) return REAL(time)(t);
  struct timespec ts {};
  auto read = [](struct timespec* out) {
    if (g_clock_offset[CLOCK_REALTIME].load(std::memory_order_relaxed) != 0) {
      const int r = LiveClock(CLOCK_REALTIME, out);
      out->tv_nsec = 0;
      return r;
    }
    out->tv_sec = REAL(time)(nullptr);
    out->tv_nsec = 0;
    return 0;
  };
  if (t_lazarus.guard > 0) {
    read(&ts);
  } else {
    ClockInput(kId_time, CLOCK_REALTIME, &ts, read);
  }
  if (t != nullptr) *t = ts.tv_sec;
  return ts.tv_sec;
}

// ---- waiting ----------------------------------------------------------------------------------------
bool SkipSleep() { return Recording() && client::ThreadIsReplaying(); }

int Hook_nanosleep(const struct timespec* req, struct timespec* rem) {
  return SkipSleep() ? 0 : REAL(nanosleep)(req, rem);
}

int Hook_clock_nanosleep(clockid_t clk, int flags, const struct timespec* req, struct timespec* rem) {
  return SkipSleep() ? 0 : REAL(clock_nanosleep)(clk, flags, req, rem);
}

int Hook_usleep(useconds_t usec) { return SkipSleep() ? 0 : REAL(usleep)(usec); }

unsigned Hook_sleep(unsigned seconds) { return SkipSleep() ? 0 : REAL(sleep)(seconds); }

// ---- bookkeeping ------------------------------------------------------------------------------------
// The log's own descriptors (high numbers, see LibraryFdBase) survive a program that closes
// every descriptor: close() of one pretends to succeed, close_range() goes around them.
int Hook_close(int fd) {
  if (fd >= 0 && fd >= client::LibraryFdBase() && client::LibraryFdBase() > 0 && client::IsLibraryFd(fd)) return 0;
  g_fds.Forget(fd);
  return REAL(close)(fd);
}

int Hook_close_range(unsigned first, unsigned last, int flags) {
  const auto fn = REAL(close_range);
  if (fn == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  if ((flags & CLOSE_RANGE_CLOEXEC) == 0) g_fds.ForgetRange(first, last);
  const int base = client::LibraryFdBase();
  constexpr unsigned kLibraryFds = 64;  // the log's descriptors lie in [base, base + 64)
  if (base <= 0 || last < static_cast<unsigned>(base) || first >= static_cast<unsigned>(base) + kLibraryFds)
    return fn(first, last, flags);
  const unsigned lo = static_cast<unsigned>(base), hi = lo + kLibraryFds - 1;
  int ret = 0;
  if (first < lo) ret = fn(first, lo - 1, flags);
  for (unsigned fd = std::max(first, lo); fd <= std::min(last, hi) && ret == 0; ++fd) {
    if (client::IsLibraryFd(static_cast<int>(fd))) continue;
    if ((flags & CLOSE_RANGE_CLOEXEC) != 0) {
      const int fdflags = ::fcntl(static_cast<int>(fd), F_GETFD);
      if (fdflags >= 0) ::fcntl(static_cast<int>(fd), F_SETFD, fdflags | FD_CLOEXEC);
    } else {
      REAL(close)(static_cast<int>(fd));
    }
  }
  if (ret == 0 && last > hi) ret = fn(hi + 1, last, flags);
  return ret;
}

void Hook_closefrom(int first) {
  if (first < 0) first = 0;
  if (Hook_close_range(static_cast<unsigned>(first), ~0U, 0) != 0 && REAL(closefrom) != nullptr && client::LibraryFdBase() == 0)
    REAL(closefrom)(first);
}

int Hook_dup2(int from, int to) {
  g_fds.Forget(to);
  return REAL(dup2)(from, to);
}

int Hook_dup3(int from, int to, int flags) {
  g_fds.Forget(to);
  return REAL(dup3)(from, to, flags);
}

int Hook_fclose(FILE* stream) {
  if (stream != nullptr) g_fds.Forget(::fileno(stream));
  return REAL(fclose)(stream);
}

FILE* Hook_freopen(const char* path, const char* mode, FILE* stream) {
  if (stream != nullptr) g_fds.Forget(::fileno(stream));
  FILE* f = REAL(freopen)(path, mode, stream);
  if (f != nullptr) g_fds.Forget(::fileno(f));
  return f;
}

int Hook_pclose(FILE* stream) {
  if (stream != nullptr) g_fds.Forget(::fileno(stream));
  return REAL(pclose)(stream);
}

int Hook_socket(int domain, int type, int protocol) {
  const int fd = REAL(socket)(domain, type, protocol);
  if (fd >= 0) g_fds.Set(fd, kSocket);
  return fd;
}

// ---- set-up -----------------------------------------------------------------------------------------
__attribute__((constructor)) void InitShim() {
  ScopedGuard guard;
#define LAZARUS_SHIM_CALL(name, id, ret, params, args, effect, on_replay) (void)REAL(name);
#include "client-lib/shim/calls.def"
  if (const char* p = std::getenv("LAZARUS_SHIM_IN_DOUBT")) {
    if (std::strcmp(p, "interrupt") == 0) g_stream_policy = Policy::kAtMostOnce;
    else if (std::strcmp(p, "fail") == 0) g_stream_policy = Policy::kFail;
  }
  client::ShimPlugin plugin;
  plugin.kind_name = KindName;
  plugin.describe = Describe;
  plugin.observe_result = ObserveResult;
  plugin.index_built = IndexBuilt;
  client::RegisterShim(plugin);
}

}  // namespace
}  // namespace lazarus::shim

// ---- the exported entry points, one per row of calls.def ------------------------------------------------
#define LAZARUS_SHIM_EXPORT __attribute__((visibility("default")))
#define LAZARUS_SHIM_CALL(name, id, ret, params, args, effect, on_replay)                          \
  extern "C" LAZARUS_SHIM_EXPORT ret name params noexcept(noexcept(::name args)) {                 \
    return ::lazarus::shim::Hook_##name args;                                                      \
  }
#include "client-lib/shim/calls.def"
