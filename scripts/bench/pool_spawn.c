/* pool_spawn.c -- pthread_create + pthread_join of an empty function, the
 * C peer of parx.spawn(f):join() in scripts/bench/pool.sh.  Prints
 * "pthread.spawn <median seconds>". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *empty(void *arg) { return arg; }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(void) {
  enum { N = 3000 };
  static double ts[N];
  for (int i = 0; i < 100; i++) {
    pthread_t t;
    pthread_create(&t, NULL, empty, NULL);
    pthread_join(t, NULL);
  }
  for (int i = 0; i < N; i++) {
    double t0 = now();
    pthread_t t;
    if (pthread_create(&t, NULL, empty, NULL) != 0) return 1;
    pthread_join(t, NULL);
    ts[i] = now() - t0;
  }
  qsort(ts, N, sizeof ts[0], cmp);
  printf("pthread.spawn %.9g\n", ts[N / 2]);
  return 0;
}
