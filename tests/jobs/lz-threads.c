/* lz-threads FILE: 4 threads share a counter under a mutex; each, every 10 ms, takes the
 * lock, increments and appends "n\n" to FILE. The file holds a strictly increasing,
 * consecutive sequence. */
#include <fcntl.h>
#include <pthread.h>

#include "lz_common.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter = 0;
static int fd = -1;

static void* worker(void* arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&lock);
    counter++;
    if (lz_write_value(fd, counter) != 0) lz_die("write");
    pthread_mutex_unlock(&lock);
    lz_sleep_ms(10);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: lz-threads FILE\n");
    return 2;
  }
  fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) lz_die(argv[1]);
  pthread_t threads[4];
  for (int i = 0; i < 4; i++) {
    int rc = pthread_create(&threads[i], NULL, worker, NULL);
    if (rc != 0) {
      errno = rc;
      lz_die("pthread_create");
    }
  }
  for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
  return 0;
}
