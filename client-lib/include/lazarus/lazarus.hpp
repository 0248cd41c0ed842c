// A thin C++ layer over lazarus.h: the same library, the same semantics (read lazarus.h
// first), with owning handles and std::string results. Header-only: nothing here crosses
// the library boundary but the C ABI.
//
//   const uint32_t kAdd = lazarus::Kind("ledger.add");
//   lazarus::EffectResult r = lazarus::Effect(kAdd, item, [&](const lazarus::EffectContext& fx, std::string& reply) {
//     return ledger.Add(item, /*idempotency key=*/fx.Key(), &reply);   // performed at most once
//   });
//   if (r.code == LAZARUS_EINTERRUPTED) { /* in doubt: ask the ledger about r.key */ }
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "lazarus/lazarus.h"

namespace lazarus {

enum class Policy : int {
  kAtMostOnce = LAZARUS_AT_MOST_ONCE,
  kAtLeastOnce = LAZARUS_AT_LEAST_ONCE,
  kFail = LAZARUS_FAIL,
};

// An effect kind for a name (stable across runs and builds).
inline uint32_t Kind(const char* name) { return lazarus_kind(name); }

inline bool IsActive() { return lazarus_is_active() != 0; }
inline bool IsReplaying() { return lazarus_is_replaying() != 0; }
inline uint64_t Incarnation() { return lazarus_incarnation(); }
inline std::string JobId() { return lazarus_job_id(); }
// Asks for a snapshot; with wait_ms, waits for it. Returns a LAZARUS_* code.
inline int RequestSnapshot(uint32_t wait_ms = 0) { return lazarus_request_snapshot(wait_ms); }
inline int OnRestore(lazarus_restore_fn fn, void* arg) { return lazarus_on_restore(fn, arg); }
inline int SetThreadChannel(uint32_t channel) { return lazarus_thread_set_channel(channel); }
inline uint32_t ThreadChannel() { return lazarus_thread_channel(); }

// The key the calling thread's next effect gets.
inline std::string NextKey() {
  char buf[LAZARUS_KEY_MAX];
  lazarus_next_key(buf, sizeof buf);
  return buf;
}

// What a perform function sees of its effect.
class EffectContext {
 public:
  explicit EffectContext(lazarus_effect_t* effect) : effect_(effect) {}
  // The idempotency key "JOB:CHANNEL:SEQUENCE": hand it to the outside world.
  [[nodiscard]] std::string Key() const {
    char buf[LAZARUS_KEY_MAX];
    lazarus_effect_key(effect_, buf, sizeof buf);
    return buf;
  }
  [[nodiscard]] uint32_t Channel() const { return lazarus_effect_channel(effect_); }
  [[nodiscard]] uint64_t Sequence() const { return lazarus_effect_sequence(effect_); }
  // True when a previous incarnation may have performed it already (kAtLeastOnce, in doubt).
  [[nodiscard]] bool InDoubt() const { return lazarus_effect_in_doubt(effect_) != 0; }
  [[nodiscard]] std::string_view Request() const {
    size_t size = 0;
    const void* data = lazarus_effect_request(effect_, &size);
    return {static_cast<const char*>(data), size};
  }

 private:
  lazarus_effect_t* effect_;
};

struct EffectOptions {
  Policy policy = Policy::kAtMostOnce;
};

struct EffectResult {
  int code = LAZARUS_OK;  // LAZARUS_OK, LAZARUS_EINTERRUPTED (in doubt), LAZARUS_ELOG, ...
  int32_t status = 0;     // what the perform function returned (live or logged)
  std::string result;     // the result bytes (live or logged)
  bool replayed = false;  // answered from the log
  std::string key;        // the effect's idempotency key
  [[nodiscard]] bool ok() const { return code == LAZARUS_OK; }
  [[nodiscard]] const char* error() const { return lazarus_strerror(code); }
};

namespace detail {
struct OptionsDeleter {
  void operator()(lazarus_effect_options_t* o) const { lazarus_effect_options_destroy(o); }
};
struct OutcomeDeleter {
  void operator()(lazarus_outcome_t* o) const { lazarus_outcome_destroy(o); }
};
using Options = std::unique_ptr<lazarus_effect_options_t, OptionsDeleter>;
using Outcome = std::unique_ptr<lazarus_outcome_t, OutcomeDeleter>;

inline const lazarus_effect_options_t* OptionsFor(Policy policy) {
  if (policy == Policy::kAtMostOnce) return nullptr;  // the default
  static const Options at_least_once = [] {
    Options o(lazarus_effect_options_create());
    if (o) lazarus_effect_options_set_policy(o.get(), LAZARUS_AT_LEAST_ONCE);
    return o;
  }();
  static const Options fail = [] {
    Options o(lazarus_effect_options_create());
    if (o) lazarus_effect_options_set_policy(o.get(), LAZARUS_FAIL);
    return o;
  }();
  return policy == Policy::kFail ? fail.get() : at_least_once.get();
}

template <typename F>
struct Closure {
  F* perform;
  std::string* result;
  static int32_t Call(void* arg, lazarus_effect_t* effect) {
    auto* self = static_cast<Closure*>(arg);
    self->result->clear();
    const int32_t status = (*self->perform)(EffectContext(effect), *self->result);
    lazarus_effect_set_result(effect, self->result->data(), self->result->size());
    return status;
  }
};
}  // namespace detail

// Performs an effect exactly once across crashes (lazarus_effect). `perform` is called as
// int32_t perform(const EffectContext&, std::string& result) and only when the effect is
// not in the log. An exception it throws goes on to the caller; the effect is then
// recorded as ended unknown (a replay answers LAZARUS_EINTERRUPTED).
template <typename F>
EffectResult Effect(uint32_t kind, std::string_view request, F&& perform, const EffectOptions& options = {}) {
  EffectResult out;
  thread_local detail::Outcome outcome(lazarus_outcome_create());
  if (!outcome) {
    out.code = LAZARUS_ENOMEM;
    return out;
  }
  std::string result;
  detail::Closure<std::remove_reference_t<F>> closure{&perform, &result};
  out.code = lazarus_effect(kind, request.data(), request.size(), detail::OptionsFor(options.policy),
                            &detail::Closure<std::remove_reference_t<F>>::Call, &closure, outcome.get());
  size_t size = 0;
  const void* data = lazarus_outcome_result(outcome.get(), &size);
  out.result.assign(static_cast<const char*>(data), size);
  out.status = lazarus_outcome_status(outcome.get());
  out.replayed = lazarus_outcome_replayed(outcome.get()) != 0;
  char key[LAZARUS_KEY_MAX];
  lazarus_outcome_key(outcome.get(), key, sizeof key);
  out.key = key;
  return out;
}

}  // namespace lazarus
