/* pool_pfor.c -- the OpenMP peer of pool.parallel_for in scripts/bench/
 * pool.sh: the sum of sqrt(a[i]) over 50,000,000 float64, static schedule,
 * OMP_NUM_THREADS threads (the driver sets it to parx's worker count).
 * Prints "c_omp.pfor <median seconds>". */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static double now(void) { return omp_get_wtime(); }

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  long n = 50000000;
  int reps = argc > 1 ? atoi(argv[1]) : 7;
  double *a = malloc(sizeof *a * (size_t)n);
  if (!a) return 1;
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) a[i] = i * 0.5;
  double ts[64], total = 0;
  if (reps > 64) reps = 64;
  for (int r = -1; r < reps; r++) {
    double t0 = now(), s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (long i = 0; i < n; i++) s += sqrt(a[i]);
    if (r >= 0) ts[r] = now() - t0;
    total = s;
  }
  qsort(ts, (size_t)reps, sizeof ts[0], cmp);
  fprintf(stderr, "c openmp sum: %.6e\n", total);
  printf("c_omp.pfor %.9g\n", ts[reps / 2]);
  free(a);
  return 0;
}
