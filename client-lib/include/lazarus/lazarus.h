/* liblazarus: the C ABI of Lazarus's client library.
 *
 * A job that runs under Lazarus (`lazarus run -- CMD`) records its side effects in an
 * effect log. After a crash the daemon restores the job's latest snapshot; the restored
 * process re-executes from there, and every effect it had already performed is answered
 * from the log instead of being performed again ("replay"). When its records are used up,
 * the job goes on live.
 *
 * This header is for programs that name their effects explicitly: `lazarus_effect` takes
 * the effect's kind, its request bytes and a function that performs it. Unmodified
 * programs get the same for libc calls from the preloaded shim (liblazarus-preload.so);
 * see client-lib/README.md.
 *
 * Conventions (as leveldb's c.h):
 *  - Opaque handles with _create/_destroy pairs; nothing in this header is generated.
 *  - Every function that can fail returns an int: LAZARUS_OK (0) or a negative
 *    LAZARUS_E* code; lazarus_strerror() names it. No function throws or aborts, except
 *    that replay stops the whole job on a divergence (see LAZARUS_EXIT_DIVERGED).
 *  - Fixed-width integer types; strings are NUL-terminated UTF-8 unless a size is given.
 *  - A program that is not running under Lazarus (no LAZARUS_LOG in its environment) may
 *    call everything: effects are then performed and not recorded.
 *
 * Thread safety: every function may be called from any thread. A thread's effects form
 * its own ordered "channel" in the log (see lazarus_thread_set_channel).
 */
#ifndef LAZARUS_LAZARUS_H_
#define LAZARUS_LAZARUS_H_

#include <stddef.h>
#include <stdint.h>

#if defined(LAZARUS_BUILDING_LIBRARY)
#define LAZARUS_EXPORT __attribute__((visibility("default")))
#else
#define LAZARUS_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a function's meaning changes; functions are only ever added. */
#define LAZARUS_ABI_VERSION 1
LAZARUS_EXPORT int lazarus_abi_version(void);

/* ---- results ------------------------------------------------------------------------- */
#define LAZARUS_OK 0
/* The effect is in doubt: a previous incarnation logged that it was about to perform it,
 * and crashed before logging its result, so it may or may not have happened. Returned
 * for effects with policy LAZARUS_AT_MOST_ONCE (the default); the program decides (e.g.
 * asks the other side, using the effect's idempotency key). The outcome is recorded, so
 * a later replay returns LAZARUS_EINTERRUPTED again at the same point. */
#define LAZARUS_EINTERRUPTED (-1)
#define LAZARUS_EINVAL (-2)      /* a bad argument */
#define LAZARUS_EINACTIVE (-3)   /* not running under Lazarus (no effect log) */
#define LAZARUS_ELOG (-4)        /* the effect log cannot record (stopped: disk full, sync
                                    failed, damaged): the effect was NOT performed, or, when
                                    the outcome has a result, performed and not recorded */
#define LAZARUS_ETOOLARGE (-5)   /* a result larger than a log record can hold */
#define LAZARUS_ENOMEM (-6)
#define LAZARUS_ETIMEDOUT (-7)   /* lazarus_request_snapshot: no snapshot within the wait */
#define LAZARUS_EBUSY (-8)       /* the calling thread already has a channel */
LAZARUS_EXPORT const char* lazarus_strerror(int code);

/* Exit statuses of a job that replay stopped. A report naming the channel, the sequence
 * number, what the log holds and what the program asked for goes to stderr first. */
#define LAZARUS_EXIT_DIVERGED 86  /* re-execution asked for a different effect than the log holds */
#define LAZARUS_EXIT_IN_DOUBT 87  /* an in-doubt effect with policy LAZARUS_FAIL */
#define LAZARUS_EXIT_NO_LOG 88    /* LAZARUS_LOG is set but the log cannot be used */

/* ---- the job --------------------------------------------------------------------------- */
/* 1 when this process records its effects in a job's log, 0 when it runs without Lazarus
 * (or is a process the job forked: see client-lib/README.md, "Processes"). */
LAZARUS_EXPORT int lazarus_is_active(void);
/* 1 while some channel still has logged effects to replay, 0 once every thread went live. */
LAZARUS_EXPORT int lazarus_is_replaying(void);
/* The job's incarnation: 1 for the first run, +1 for each restore. 0 when inactive. */
LAZARUS_EXPORT uint64_t lazarus_incarnation(void);
/* The job id (LAZARUS_JOB), or "" when not running under Lazarus. Static storage. */
LAZARUS_EXPORT const char* lazarus_job_id(void);

/* Asks the daemon for a snapshot now. With wait_ms > 0, waits up to that long until the
 * daemon reports one more snapshot taken (LAZARUS_ETIMEDOUT otherwise). */
LAZARUS_EXPORT int lazarus_request_snapshot(uint32_t wait_ms);

/* Registers a function that runs once after each restore, on the first thread that calls
 * into Lazarus in the new incarnation, before that call proceeds. It must not perform
 * effects: calls it makes are neither recorded nor replayed. At most 16 hooks. */
typedef void (*lazarus_restore_fn)(void* arg, uint64_t incarnation);
LAZARUS_EXPORT int lazarus_on_restore(lazarus_restore_fn fn, void* arg);

/* ---- channels -------------------------------------------------------------------------- */
/* A thread gets its channel at its first effect: an ordinal in order of first use within
 * the process, so threads that start their effects in the same order on re-execution get
 * the same channels. A program whose threads race to their first effect should name its
 * channels instead: call this before the thread's first effect, with a number that is the
 * same on every run (e.g. the worker's index). Returns LAZARUS_EBUSY when the thread
 * already has a channel, LAZARUS_EINVAL for channel >= LAZARUS_MAX_USER_CHANNEL. */
#define LAZARUS_MAX_USER_CHANNEL 0x3fffffffu
LAZARUS_EXPORT int lazarus_thread_set_channel(uint32_t channel);
/* The calling thread's channel (assigned now if it has none yet). */
LAZARUS_EXPORT uint32_t lazarus_thread_channel(void);

/* ---- explicit effects ------------------------------------------------------------------ */
typedef enum lazarus_policy_t {
  /* In doubt after a crash: return LAZARUS_EINTERRUPTED, do not perform. The default. */
  LAZARUS_AT_MOST_ONCE = 0,
  /* In doubt: perform again (for idempotent effects, or ones keyed by the idempotency key). */
  LAZARUS_AT_LEAST_ONCE = 1,
  /* In doubt: stop the job with a report (exit status LAZARUS_EXIT_IN_DOUBT). */
  LAZARUS_FAIL = 2,
} lazarus_policy_t;

/* An effect kind: a number below 0x80000000 chosen by the program (numbers from
 * 0x80000000 on are the shim's). lazarus_kind() hashes a name to one and remembers the
 * name for divergence reports. */
LAZARUS_EXPORT uint32_t lazarus_kind(const char* name);

typedef struct lazarus_effect_options_t lazarus_effect_options_t;
LAZARUS_EXPORT lazarus_effect_options_t* lazarus_effect_options_create(void);
LAZARUS_EXPORT void lazarus_effect_options_destroy(lazarus_effect_options_t* options);
LAZARUS_EXPORT int lazarus_effect_options_set_policy(lazarus_effect_options_t* options, lazarus_policy_t policy);

/* The effect being performed, as the perform function sees it. Valid during the call. */
typedef struct lazarus_effect_t lazarus_effect_t;
/* Its idempotency key "JOB:CHANNEL:SEQUENCE": the same on every re-execution, different
 * for every effect of the job. Writes at most `size` bytes including the NUL (snprintf
 * semantics) and returns the key's length. LAZARUS_KEY_MAX bytes always suffice. */
#define LAZARUS_KEY_MAX 96
LAZARUS_EXPORT size_t lazarus_effect_key(const lazarus_effect_t* effect, char* buf, size_t size);
LAZARUS_EXPORT uint32_t lazarus_effect_channel(const lazarus_effect_t* effect);
LAZARUS_EXPORT uint64_t lazarus_effect_sequence(const lazarus_effect_t* effect);
LAZARUS_EXPORT const void* lazarus_effect_request(const lazarus_effect_t* effect, size_t* size);
/* 1 when a previous incarnation may already have performed this effect (policy
 * LAZARUS_AT_LEAST_ONCE, re-performed in doubt). */
LAZARUS_EXPORT int lazarus_effect_in_doubt(const lazarus_effect_t* effect);
/* The effect's result bytes (recorded, and returned on replay). Set, or append in parts. */
LAZARUS_EXPORT int lazarus_effect_set_result(lazarus_effect_t* effect, const void* data, size_t size);
LAZARUS_EXPORT int lazarus_effect_append_result(lazarus_effect_t* effect, const void* data, size_t size);

/* Performs the effect: returns a status of the program's choosing (recorded and returned
 * through lazarus_outcome_status on replay too) and sets the result bytes. It runs on the
 * calling thread. Effects it performs itself (nested lazarus_effect calls, libc calls the
 * shim would otherwise record) are part of this effect: performed, not recorded. */
typedef int32_t (*lazarus_perform_fn)(void* arg, lazarus_effect_t* effect);

/* What an effect came to: result bytes, the perform function's status, whether it was
 * replayed from the log, and its key. Reusable from call to call (keeps its buffer). */
typedef struct lazarus_outcome_t lazarus_outcome_t;
LAZARUS_EXPORT lazarus_outcome_t* lazarus_outcome_create(void);
LAZARUS_EXPORT void lazarus_outcome_destroy(lazarus_outcome_t* outcome);
LAZARUS_EXPORT const void* lazarus_outcome_result(const lazarus_outcome_t* outcome, size_t* size);
LAZARUS_EXPORT int32_t lazarus_outcome_status(const lazarus_outcome_t* outcome);
LAZARUS_EXPORT int lazarus_outcome_replayed(const lazarus_outcome_t* outcome);
LAZARUS_EXPORT size_t lazarus_outcome_key(const lazarus_outcome_t* outcome, char* buf, size_t size);

/* Performs an effect exactly once across crashes.
 *
 * Live: records INTENT (kind, digest of the request), calls perform, records RESULT (its
 * status and result bytes), fills `outcome`, returns LAZARUS_OK.
 * Replaying: returns the logged RESULT without calling perform (outcome->replayed is 1).
 * The kind and the request must be those the log holds for this thread's next effect, or
 * the job stops (LAZARUS_EXIT_DIVERGED). In doubt (INTENT logged, no RESULT): the policy
 * decides (LAZARUS_EINTERRUPTED by default).
 *
 * options: NULL for the defaults. outcome: NULL to discard the result. The result must fit
 * in one log record (the segment size less 4 KiB; segments are 16 MiB by default), or the
 * call returns LAZARUS_ETOOLARGE (performed, its result not recorded: a replay answers
 * LAZARUS_ETOOLARGE too). Requests may be any size: only their digest and first 64 bytes
 * are recorded. */
LAZARUS_EXPORT int lazarus_effect(uint32_t kind, const void* request, size_t request_size,
                                  const lazarus_effect_options_t* options, lazarus_perform_fn perform, void* arg,
                                  lazarus_outcome_t* outcome);

/* The key the calling thread's next effect will get (see lazarus_effect_key). */
LAZARUS_EXPORT size_t lazarus_next_key(char* buf, size_t size);

/* ---- counters: this process's, kept in its memory (a restore brings back their values at
 * the snapshot, then they go on) ---------------------------------------------------------- */
typedef enum lazarus_counter_t {
  LAZARUS_COUNTER_PERFORMED = 0,   /* effects performed live and recorded */
  LAZARUS_COUNTER_REPLAYED = 1,    /* effects answered from the log */
  LAZARUS_COUNTER_IN_DOUBT = 2,    /* in-doubt effects met during replay */
  LAZARUS_COUNTER_UNRECORDED = 3,  /* effects performed without recording (inactive, nested) */
  LAZARUS_COUNTER_REPLAY_PENDING = 4, /* logged effects (records) not replayed yet */
} lazarus_counter_t;
/* The counter's value, or 0 for an unknown counter. */
LAZARUS_EXPORT uint64_t lazarus_counter(lazarus_counter_t counter);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* LAZARUS_LAZARUS_H_ */
