// The C ABI of lazarus.h over the replay engine.
#include <time.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "client-lib/src/runtime.h"
#include "lazarus/lazarus.h"

using lazarus::client::Channel;
using lazarus::client::Effect;
using lazarus::client::EffectSpec;
using lazarus::client::Finish;
using lazarus::client::g_lazarus;
using lazarus::client::g_runtime;
using lazarus::client::IsActive;
using lazarus::client::Policy;
using lazarus::client::ScopedGuard;
using lazarus::client::Start;
using lazarus::client::t_lazarus;
using lazarus::effectlog::PayloadPiece;

struct lazarus_effect_options_t {
  lazarus_policy_t policy = LAZARUS_AT_MOST_ONCE;
};

struct lazarus_effect_t {
  uint32_t kind = 0;
  const void* request = nullptr;
  size_t request_size = 0;
  uint32_t channel = 0;
  uint64_t sequence = 0;
  uint32_t nested = 0;  // > 0: an effect nested in another one (part of it, not recorded)
  uint32_t nested_count = 0;
  bool in_doubt = false;
  std::string* result = nullptr;
};

struct lazarus_outcome_t {
  std::string result;
  int32_t status = 0;
  bool replayed = false;
  uint32_t channel = 0;
  uint64_t sequence = 0;
  uint32_t nested = 0;
};

namespace {

thread_local lazarus_effect_t* t_current = nullptr;  // the explicit effect this thread performs

// The RESULT payload of an explicit effect: this header, then the result bytes.
struct ResultHeader {
  uint32_t outcome;  // Outcome
  int32_t status;    // what the perform function returned
};
static_assert(sizeof(ResultHeader) == 8);
enum Outcome : uint32_t {
  kPerformed = 0,
  kInterrupted = 1,  // in doubt, answered LAZARUS_EINTERRUPTED
  kTooLarge = 2,     // performed; the result did not fit in a record (LAZARUS_ETOOLARGE)
  kAborted = 3,      // the perform function threw: performed or not, nobody knows (replays
                     // as LAZARUS_EINTERRUPTED)
};

// Restores the thread's current effect however the perform function returns.
class CurrentEffect {
 public:
  explicit CurrentEffect(lazarus_effect_t* e) : outer_(t_current) { t_current = e; }
  ~CurrentEffect() { t_current = outer_; }
  CurrentEffect(const CurrentEffect&) = delete;
  CurrentEffect& operator=(const CurrentEffect&) = delete;

 private:
  lazarus_effect_t* outer_;
};
constexpr uint32_t kSummaryBytes = 64;  // of the request, in the INTENT (reports only)


size_t Key(char* buf, size_t size, uint32_t channel, uint64_t seq, uint32_t nested) {
  size_t n = lazarus::client::FormatKey(buf, size, channel, seq);
  if (nested > 0) {
    char tail[24];
    const int t = std::snprintf(tail, sizeof tail, "/%u", nested);
    if (buf != nullptr && n + 1 < size) std::snprintf(buf + n, size - n, "%s", tail);
    n += static_cast<size_t>(t);
  }
  return n;
}

void Fill(lazarus_outcome_t* o, const lazarus_effect_t& e, int32_t status, bool replayed) {
  if (o == nullptr) return;
  o->status = status;
  o->replayed = replayed;
  o->channel = e.channel;
  o->sequence = e.sequence;
  o->nested = e.nested;
}

// Runs perform without recording it: not under Lazarus, or nested in another effect.
int PerformUnrecorded(lazarus_effect_t& e, lazarus_perform_fn perform, void* arg, lazarus_outcome_t* outcome,
                      std::string& scratch) {
  e.result = outcome != nullptr ? &outcome->result : &scratch;
  e.result->clear();
  int32_t status;
  {
    CurrentEffect current(&e);
    status = perform(arg, &e);
  }
  g_lazarus.counters.unrecorded.fetch_add(1, std::memory_order_relaxed);
  Fill(outcome, e, status, false);
  return LAZARUS_OK;
}

// Decodes a logged RESULT into the outcome; returns lazarus_effect's result code.
int FromLog(const Effect& fx, const lazarus_effect_t& e, lazarus_outcome_t* outcome) {
  ResultHeader h{};
  if (fx.result_size < sizeof h) {
    lazarus::client::StopJob(LAZARUS_EXIT_DIVERGED,
                             "lazarus: replay diverged from the effect log: a logged RESULT of an explicit effect is "
                             "shorter than its header (the effect kind is used by another program?)\n");
  }
  std::memcpy(&h, fx.result, sizeof h);
  if (outcome != nullptr) {
    outcome->result.assign(reinterpret_cast<const char*>(fx.result) + sizeof h, fx.result_size - sizeof h);
  }
  Fill(outcome, e, h.status, true);
  switch (h.outcome) {
    case kInterrupted:
    case kAborted: return LAZARUS_EINTERRUPTED;
    case kTooLarge: return LAZARUS_ETOOLARGE;
    default: return LAZARUS_OK;
  }
}

std::mutex g_api_mu;  // registrations (hooks, kind names, named channels)

}  // namespace

extern "C" {

int lazarus_abi_version(void) { return LAZARUS_ABI_VERSION; }

const char* lazarus_strerror(int code) {
  switch (code) {
    case LAZARUS_OK: return "ok";
    case LAZARUS_EINTERRUPTED: return "effect in doubt: a previous incarnation may have performed it (interrupted)";
    case LAZARUS_EINVAL: return "invalid argument";
    case LAZARUS_EINACTIVE: return "not running under Lazarus";
    case LAZARUS_ELOG: return "the effect log cannot record";
    case LAZARUS_ETOOLARGE: return "larger than an effect log record can hold";
    case LAZARUS_ENOMEM: return "out of memory";
    case LAZARUS_ETIMEDOUT: return "timed out";
    case LAZARUS_EBUSY: return "the thread already has a channel";
  }
  return "unknown lazarus error";
}

int lazarus_is_active(void) { return IsActive() ? 1 : 0; }

int lazarus_is_replaying(void) {
  if (!IsActive()) return 0;
  ScopedGuard guard;
  lazarus::client::SyncIncarnation();
  return g_lazarus.counters.replay_pending.load(std::memory_order_relaxed) > 0 ? 1 : 0;
}

uint64_t lazarus_incarnation(void) {
  if (!IsActive()) return 0;
  return lazarus::effectlog::Atomic(g_lazarus.control->incarnation).load(std::memory_order_acquire);
}

const char* lazarus_job_id(void) { return IsActive() ? g_runtime.job : ""; }

int lazarus_request_snapshot(uint32_t wait_ms) {
  if (!IsActive()) return LAZARUS_EINACTIVE;
  ScopedGuard guard;
  // A replay re-executes the request the original run made and got its snapshot for.
  if (lazarus_is_replaying()) return LAZARUS_OK;
  auto taken = lazarus::effectlog::Atomic(g_lazarus.control->snapshots_taken);
  const uint64_t before = taken.load(std::memory_order_acquire);
  g_runtime.writer->control().RequestSnapshot();
  if (wait_ms == 0) return LAZARUS_OK;
  timespec start{};
  ::clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    if (taken.load(std::memory_order_acquire) > before) return LAZARUS_OK;
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const int64_t ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (ms >= wait_ms) return LAZARUS_ETIMEDOUT;
    const timespec pause{0, 2 * 1000 * 1000};
    ::nanosleep(&pause, nullptr);
  }
}

int lazarus_on_restore(lazarus_restore_fn fn, void* arg) {
  if (fn == nullptr) return LAZARUS_EINVAL;
  std::lock_guard lock(g_api_mu);
  const int n = g_runtime.hook_count.load(std::memory_order_relaxed);
  if (n >= lazarus::client::kMaxRestoreHooks) return LAZARUS_ENOMEM;
  g_runtime.hooks[n] = {fn, arg};
  g_runtime.hook_count.store(n + 1, std::memory_order_release);
  return LAZARUS_OK;
}

int lazarus_thread_set_channel(uint32_t channel) {
  if (channel >= LAZARUS_MAX_USER_CHANNEL) return LAZARUS_EINVAL;
  if (t_lazarus.channel != nullptr) return LAZARUS_EBUSY;
  const uint32_t id = lazarus::client::kUserChannelBase + channel;
  std::lock_guard lock(g_api_mu);
  const uint32_t slots = std::min(g_runtime.next_slot.load(), lazarus::client::kMaxChannels);
  for (uint32_t i = 0; i < slots && g_runtime.channels != nullptr; ++i) {
    if (g_runtime.channels[i].id == id) return LAZARUS_EBUSY;  // another thread has it
  }
  lazarus::client::AttachThreadChannel(id);
  return LAZARUS_OK;
}

uint32_t lazarus_thread_channel(void) { return lazarus::client::CurrentChannel()->id; }

uint32_t lazarus_kind(const char* name) {
  if (name == nullptr) return 0;
  uint32_t kind = static_cast<uint32_t>(XXH3_64bits(name, std::strlen(name))) & 0x7fffffffu;
  if (kind == 0) kind = 1;
  std::lock_guard lock(g_api_mu);
  const int n = g_runtime.kind_name_count.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i) {
    if (g_runtime.kind_names[i].kind == kind) return kind;
  }
  if (n < lazarus::client::kMaxKindNames) {
    g_runtime.kind_names[n].kind = kind;
    std::snprintf(g_runtime.kind_names[n].name, sizeof g_runtime.kind_names[n].name, "%s", name);
    g_runtime.kind_name_count.store(n + 1, std::memory_order_release);
  }
  return kind;
}

lazarus_effect_options_t* lazarus_effect_options_create(void) { return new (std::nothrow) lazarus_effect_options_t; }
void lazarus_effect_options_destroy(lazarus_effect_options_t* options) { delete options; }
int lazarus_effect_options_set_policy(lazarus_effect_options_t* options, lazarus_policy_t policy) {
  if (options == nullptr || (policy != LAZARUS_AT_MOST_ONCE && policy != LAZARUS_AT_LEAST_ONCE && policy != LAZARUS_FAIL))
    return LAZARUS_EINVAL;
  options->policy = policy;
  return LAZARUS_OK;
}

size_t lazarus_effect_key(const lazarus_effect_t* effect, char* buf, size_t size) {
  if (effect == nullptr) return 0;
  return Key(buf, size, effect->channel, effect->sequence, effect->nested);
}
uint32_t lazarus_effect_channel(const lazarus_effect_t* effect) { return effect != nullptr ? effect->channel : 0; }
uint64_t lazarus_effect_sequence(const lazarus_effect_t* effect) { return effect != nullptr ? effect->sequence : 0; }
const void* lazarus_effect_request(const lazarus_effect_t* effect, size_t* size) {
  if (effect == nullptr) return nullptr;
  if (size != nullptr) *size = effect->request_size;
  return effect->request;
}
int lazarus_effect_in_doubt(const lazarus_effect_t* effect) { return effect != nullptr && effect->in_doubt ? 1 : 0; }

int lazarus_effect_set_result(lazarus_effect_t* effect, const void* data, size_t size) {
  if (effect == nullptr || effect->result == nullptr || (data == nullptr && size > 0)) return LAZARUS_EINVAL;
  try {
    effect->result->assign(static_cast<const char*>(data), size);
  } catch (const std::bad_alloc&) {
    return LAZARUS_ENOMEM;
  }
  return LAZARUS_OK;
}

int lazarus_effect_append_result(lazarus_effect_t* effect, const void* data, size_t size) {
  if (effect == nullptr || effect->result == nullptr || (data == nullptr && size > 0)) return LAZARUS_EINVAL;
  try {
    effect->result->append(static_cast<const char*>(data), size);
  } catch (const std::bad_alloc&) {
    return LAZARUS_ENOMEM;
  }
  return LAZARUS_OK;
}

lazarus_outcome_t* lazarus_outcome_create(void) { return new (std::nothrow) lazarus_outcome_t; }
void lazarus_outcome_destroy(lazarus_outcome_t* outcome) { delete outcome; }
const void* lazarus_outcome_result(const lazarus_outcome_t* outcome, size_t* size) {
  if (outcome == nullptr) return nullptr;
  if (size != nullptr) *size = outcome->result.size();
  return outcome->result.data();
}
int32_t lazarus_outcome_status(const lazarus_outcome_t* outcome) { return outcome != nullptr ? outcome->status : 0; }
int lazarus_outcome_replayed(const lazarus_outcome_t* outcome) { return outcome != nullptr && outcome->replayed ? 1 : 0; }
size_t lazarus_outcome_key(const lazarus_outcome_t* outcome, char* buf, size_t size) {
  if (outcome == nullptr) return 0;
  return Key(buf, size, outcome->channel, outcome->sequence, outcome->nested);
}

size_t lazarus_next_key(char* buf, size_t size) {
  const Channel* ch = lazarus::client::CurrentChannel();
  return Key(buf, size, ch->id, ch->next_seq, 0);
}

int lazarus_effect(uint32_t kind, const void* request, size_t request_size, const lazarus_effect_options_t* options,
                   lazarus_perform_fn perform, void* arg, lazarus_outcome_t* outcome) {
  if (perform == nullptr || (request == nullptr && request_size > 0) || kind >= lazarus::client::kShimKindBase)
    return LAZARUS_EINVAL;
  std::string scratch;  // the result, when the caller gave no outcome
  lazarus_effect_t e;
  e.kind = kind;
  e.request = request;
  e.request_size = request_size;

  if (t_current != nullptr || t_lazarus.guard > 0) {
    // Inside another effect (or a restore hook): part of it, neither recorded nor replayed.
    if (t_current != nullptr) {
      e.channel = t_current->channel;
      e.sequence = t_current->sequence;
      e.nested = ++t_current->nested_count;
    } else {
      const Channel* ch = lazarus::client::CurrentChannel();
      e.channel = ch->id;
      e.sequence = ch->next_seq;
      e.nested = ++t_lazarus.nested;
    }
    ScopedGuard guard;
    return PerformUnrecorded(e, perform, arg, outcome, scratch);
  }
  ScopedGuard guard;  // the perform function's own libc calls are part of this effect
  Channel* ch = lazarus::client::CurrentChannel();
  if (!IsActive()) {
    // Not under Lazarus: sequences still advance as they would, so keys look alike.
    e.channel = ch->id;
    e.sequence = ch->next_seq;
    ch->next_seq += 2;
    return PerformUnrecorded(e, perform, arg, outcome, scratch);
  }

  EffectSpec spec;
  spec.kind = kind;
  spec.digest = lazarus::effectlog::RequestDigest(request, request_size);
  spec.output = true;
  switch (options != nullptr ? options->policy : LAZARUS_AT_MOST_ONCE) {
    case LAZARUS_AT_LEAST_ONCE: spec.policy = Policy::kAtLeastOnce; break;
    case LAZARUS_FAIL: spec.policy = Policy::kFail; break;
    default: spec.policy = Policy::kAtMostOnce; break;
  }
  const PayloadPiece summary{request, static_cast<uint32_t>(std::min<size_t>(request_size, kSummaryBytes))};
  spec.summary = &summary;
  spec.summary_count = 1;
  const ResultHeader interrupted{kInterrupted, 0};
  spec.interrupted = &interrupted;
  spec.interrupted_size = sizeof interrupted;
  spec.request = request;
  spec.request_size = static_cast<uint32_t>(std::min<size_t>(request_size, UINT32_MAX));

  Effect fx;
  fx.spec = spec;
  const Start start = lazarus::client::BeginEffect(&fx);
  e.channel = fx.channel->id;
  e.sequence = fx.seq;
  switch (start) {
    case Start::kReplayed: return FromLog(fx, e, outcome);
    case Start::kInterrupted:
      if (outcome != nullptr) outcome->result.clear();
      Fill(outcome, e, 0, false);
      return LAZARUS_EINTERRUPTED;
    case Start::kLogFailed: return LAZARUS_ELOG;
    case Start::kLive: break;
  }

  e.in_doubt = fx.in_doubt;
  e.result = outcome != nullptr ? &outcome->result : &scratch;
  e.result->clear();
  int32_t status = 0;
  try {
    CurrentEffect current(&e);
    status = perform(arg, &e);
  } catch (...) {
    // A C++ perform function threw through us: record that the effect ended unknown, so
    // the channel's sequence stays whole, and let the exception go on.
    const ResultHeader aborted{kAborted, 0};
    const PayloadPiece piece{&aborted, sizeof aborted};
    (void)lazarus::client::FinishEffect(&fx, &piece, 1, sizeof aborted);
    throw;
  }

  const std::string& result = *e.result;
  ResultHeader header{kPerformed, status};
  uint32_t size = sizeof header + static_cast<uint32_t>(std::min<size_t>(result.size(), UINT32_MAX));
  if (result.size() > lazarus::client::MaxPayload() - sizeof header) {
    header.outcome = kTooLarge;
    size = sizeof header;
  }
  const PayloadPiece pieces[2] = {{&header, sizeof header}, {result.data(), size - static_cast<uint32_t>(sizeof header)}};
  switch (lazarus::client::FinishEffect(&fx, pieces, 2, size)) {
    case Finish::kReplayed: return FromLog(fx, e, outcome);
    case Finish::kLogFailed:
      Fill(outcome, e, status, false);
      return LAZARUS_ELOG;
    case Finish::kRecorded: break;
  }
  Fill(outcome, e, status, false);
  return header.outcome == kTooLarge ? LAZARUS_ETOOLARGE : LAZARUS_OK;
}

uint64_t lazarus_counter(lazarus_counter_t counter) {
  const auto& c = g_lazarus.counters;
  switch (counter) {
    case LAZARUS_COUNTER_PERFORMED: return c.performed.load();
    case LAZARUS_COUNTER_REPLAYED: return c.replayed.load();
    case LAZARUS_COUNTER_IN_DOUBT: return c.in_doubt.load();
    case LAZARUS_COUNTER_UNRECORDED: return c.unrecorded.load();
    case LAZARUS_COUNTER_REPLAY_PENDING: return static_cast<uint64_t>(std::max<int64_t>(0, c.replay_pending.load()));
  }
  return 0;
}

}  // extern "C"
