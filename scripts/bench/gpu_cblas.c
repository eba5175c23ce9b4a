/*
 * gpu_cblas.c -- the peer for gpu.matmul on the CPU: cblas_sgemm or
 * cblas_dgemm called directly from C, square row-major matrices of uniform
 * random data, C = A B, the call parx makes (cpu_blas.c).  OpenBLAS reads
 * the same environment as in parx (OPENBLAS_NUM_THREADS, _CORETYPE).
 *
 *   gpu_cblas DTYPE N REPS     DTYPE float32 or float64
 * After one warm-up call, prints "cblas DTYPE N SECONDS GFLOPS CPU", SECONDS
 * the median of REPS timed calls, CPU the process's CPU seconds (user +
 * system, all threads) per call over them (gpu_cpu.lua --one prints the
 * same for parx).
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: gpu_cblas float32|float64 N REPS\n");
    return 2;
  }
  int f64 = strcmp(argv[1], "float64") == 0, n = atoi(argv[2]), reps = atoi(argv[3]);
  if (n <= 0 || reps <= 0 || reps > 1000) return 2;
  size_t count = (size_t)n * (size_t)n, size = f64 ? sizeof(double) : sizeof(float);
  char *a = malloc(count * size), *b = malloc(count * size), *c = calloc(count, size);
  if (!a || !b || !c) return 1;
  srand(1);
  for (size_t i = 0; i < count; i++) {
    double x = rand() / (RAND_MAX + 1.0), y = rand() / (RAND_MAX + 1.0);
    if (f64) {
      ((double *)a)[i] = x;
      ((double *)b)[i] = y;
    } else {
      ((float *)a)[i] = (float)x;
      ((float *)b)[i] = (float)y;
    }
  }
  double t[1000], cpu0 = 0;
  for (int r = -1; r < reps; r++) {
    if (r == 0) cpu0 = cpu_seconds();
    double t0 = now();
    if (f64)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, (double *)a, n,
                  (double *)b, n, 0, (double *)c, n);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, (float *)a, n,
                  (float *)b, n, 0, (float *)c, n);
    if (r >= 0) t[r] = now() - t0;
  }
  double cpu = (cpu_seconds() - cpu0) / reps;
  qsort(t, (size_t)reps, sizeof t[0], by_value);
  double s = t[reps / 2];
  printf("cblas %s %d %.6f %.1f %.6f\n", argv[1], n, s, 2.0 * n * n * (double)n / s / 1e9, cpu);
  return 0;
}
