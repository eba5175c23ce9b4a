/* array_sum.c -- the C peer of array_sum.lua: sum of a 10,000,000-element
 * double array, the same loop, built with cc -O2 (no -ffast-math, so the
 * compiler keeps the sequential sum just as LuaJIT does).
 * Prints: array_sum c <best seconds> <sum> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 10000000
#define RUNS 7

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((noinline)) static double sum(const double *d, long n) {
  double s = 0;
  for (long i = 0; i < n; i++) s += d[i];
  return s;
}

int main(void) {
  double *d = aligned_alloc(64, N * sizeof *d);
  if (!d) return 1;
  for (long i = 0; i < N; i++) d[i] = (i % 1000) * 0.25;
  double best = 1e30, s = 0;
  for (int r = 0; r < RUNS; r++) {
    double t0 = now();
    s = sum(d, N);
    double t = now() - t0;
    if (t < best) best = t;
  }
  printf("array_sum c %.6f %.17g\n", best, s);
  free(d);
  return 0;
}
