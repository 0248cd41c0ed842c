/* A program that performs explicit effects through lazarus.h, for the replay tests.
 *
 *   lzc-effects N [options]
 *
 * Effect i (0 <= i < N) has kind "test.add", request "item-<i>"; its perform function
 * appends "<i>\n" to the --performed file (so the test counts performed callbacks across
 * runs), sets the result "result-<i>" and returns status 10 * i. One line per effect goes to
 * stdout: "effect <i> code=<c> status=<s> result=<r> replayed=<0|1> key=<k>". A restore hook
 * prints "restore hook incarnation=<n>"; the first line says whether the run replays.
 *
 *   --performed FILE        where perform functions leave their mark (default: none)
 *   --policy most|least|fail
 *   --stop-after K          exit(0) after K effects (the log then holds K effects)
 *   --die-before-perform K  effect K's perform exits at once (INTENT logged, not performed)
 *   --die-after-perform K   effect K's perform does its work, then exits (no RESULT)
 *   --diverge-from K        effects from K on ask "other-<i>" instead (a different path)
 *   --kind-from K NAME      effects from K on have kind NAME
 *   --results FILE          each effect's line is also appended to FILE (opened per line)
 *   --pause K POINT FILE    at POINT of effect K, creates FILE.paused and waits until
 *                           FILE.go exists (a test snapshots the process meanwhile). POINT:
 *                           before (lazarus_effect not called yet), intent (in perform, before
 *                           its work: INTENT logged), performed (in perform, after its work:
 *                           no RESULT yet), after (lazarus_effect returned: RESULT logged)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lazarus/lazarus.h"

static const char* g_performed = NULL;
static long g_die_before = -1, g_die_after = -1;
static long g_pause_at = -1;
static const char* g_pause_point = "";
static const char* g_pause_file = NULL;

static void pause_if(long i, const char* point) {
  if (i != g_pause_at || strcmp(point, g_pause_point) != 0) return;
  char paused[4096], go[4096];
  snprintf(paused, sizeof paused, "%s.paused", g_pause_file);
  snprintf(go, sizeof go, "%s.go", g_pause_file);
  int fd = open(paused, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
  while (access(go, F_OK) != 0) {
    struct timespec pause = {0, 2 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
}

static void append_line(const char* path, const char* line) {
  if (path == NULL) return;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (write(fd, line, strlen(line)) < 0) _exit(3);
  close(fd);
}

struct effect_arg {
  long i;
};

static void mark_performed(long i) {
  if (g_performed == NULL) return;
  int fd = open(g_performed, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  char line[32];
  int n = snprintf(line, sizeof line, "%ld\n", i);
  if (write(fd, line, (size_t)n) != n) _exit(3);
  close(fd);
}

static int32_t perform(void* arg, lazarus_effect_t* effect) {
  const struct effect_arg* a = arg;
  if (a->i == g_die_before) _exit(9);
  pause_if(a->i, "intent");
  mark_performed(a->i);
  pause_if(a->i, "performed");
  if (a->i == g_die_after) _exit(9);
  char result[32];
  int n = snprintf(result, sizeof result, "result-%ld", a->i);
  lazarus_effect_set_result(effect, result, (size_t)n);
  return (int32_t)(10 * a->i);
}

static void on_restore(void* arg, uint64_t incarnation) {
  (void)arg;
  printf("restore hook incarnation=%llu\n", (unsigned long long)incarnation);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: lzc-effects N [options]\n");
    return 2;
  }
  long n = atol(argv[1]), stop_after = -1, diverge_from = -1, kind_from = -1;
  const char* other_kind = NULL;
  const char* results = NULL;
  lazarus_policy_t policy = LAZARUS_AT_MOST_ONCE;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--performed") == 0 && i + 1 < argc) g_performed = argv[++i];
    else if (strcmp(argv[i], "--stop-after") == 0 && i + 1 < argc) stop_after = atol(argv[++i]);
    else if (strcmp(argv[i], "--die-before-perform") == 0 && i + 1 < argc) g_die_before = atol(argv[++i]);
    else if (strcmp(argv[i], "--die-after-perform") == 0 && i + 1 < argc) g_die_after = atol(argv[++i]);
    else if (strcmp(argv[i], "--diverge-from") == 0 && i + 1 < argc) diverge_from = atol(argv[++i]);
    else if (strcmp(argv[i], "--results") == 0 && i + 1 < argc) results = argv[++i];
    else if (strcmp(argv[i], "--pause") == 0 && i + 3 < argc) {
      g_pause_at = atol(argv[++i]);
      g_pause_point = argv[++i];
      g_pause_file = argv[++i];
    } else if (strcmp(argv[i], "--kind-from") == 0 && i + 2 < argc) {
      kind_from = atol(argv[++i]);
      other_kind = argv[++i];
    } else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc) {
      const char* p = argv[++i];
      policy = strcmp(p, "least") == 0 ? LAZARUS_AT_LEAST_ONCE : strcmp(p, "fail") == 0 ? LAZARUS_FAIL : LAZARUS_AT_MOST_ONCE;
    } else {
      fprintf(stderr, "lzc-effects: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  lazarus_on_restore(on_restore, NULL);
  printf("start replaying=%d incarnation=%llu\n", lazarus_is_replaying(), (unsigned long long)lazarus_incarnation());
  lazarus_effect_options_t* options = lazarus_effect_options_create();
  lazarus_effect_options_set_policy(options, policy);
  lazarus_outcome_t* outcome = lazarus_outcome_create();
  const uint32_t kind = lazarus_kind("test.add");
  const uint32_t kind2 = other_kind != NULL ? lazarus_kind(other_kind) : kind;
  for (long i = 0; i < n; i++) {
    if (i == stop_after) _exit(0);
    char request[32];
    int len = snprintf(request, sizeof request, "%s-%ld", diverge_from >= 0 && i >= diverge_from ? "other" : "item", i);
    struct effect_arg arg = {i};
    pause_if(i, "before");
    int code = lazarus_effect(kind_from >= 0 && i >= kind_from ? kind2 : kind, request, (size_t)len, options, perform,
                              &arg, outcome);
    size_t size = 0;
    const char* result = lazarus_outcome_result(outcome, &size);
    char key[LAZARUS_KEY_MAX];
    lazarus_outcome_key(outcome, key, sizeof key);
    char line[256];
    snprintf(line, sizeof line, "effect %ld code=%d status=%d result=%.*s replayed=%d key=%s\n", i, code,
             lazarus_outcome_status(outcome), (int)size, result, lazarus_outcome_replayed(outcome), key);
    fputs(line, stdout);
    append_line(results, line);
    pause_if(i, "after");
  }
  printf("done performed=%llu replayed=%llu in_doubt=%llu pending=%llu active=%d\n",
         (unsigned long long)lazarus_counter(LAZARUS_COUNTER_PERFORMED),
         (unsigned long long)lazarus_counter(LAZARUS_COUNTER_REPLAYED),
         (unsigned long long)lazarus_counter(LAZARUS_COUNTER_IN_DOUBT),
         (unsigned long long)lazarus_counter(LAZARUS_COUNTER_REPLAY_PENDING), lazarus_is_active());
  lazarus_outcome_destroy(outcome);
  lazarus_effect_options_destroy(options);
  return 0;
}
