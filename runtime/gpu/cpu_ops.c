/*
 * cpu_ops.c -- the kernels' operations in C, for host arrays and for the
 * CPU path.  The arithmetic matches kernels/ bit for bit (same compute
 * types, same conversions from numeric.h, same Philox mapping), except the
 * order of additions in sum.
 */
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "numeric.h"

/* Element i of a float-typed buffer as the dtype's compute value (float64
 * holds float32 exactly, so one signature serves both). */
static inline double load(const void *p, int dtype, int64_t i) {
  switch (dtype) {
  case PX_FLOAT16: return px_half_to_float(((const uint16_t *)p)[i]);
  case PX_BFLOAT16: return px_bf16_to_float(((const uint16_t *)p)[i]);
  case PX_FLOAT32: return ((const float *)p)[i];
  default: return ((const double *)p)[i];
  }
}

/* Store v, already rounded to the compute type (float for all but
 * float64), into element i. */
static inline void store(void *p, int dtype, int64_t i, double v) {
  switch (dtype) {
  case PX_FLOAT16: ((uint16_t *)p)[i] = px_half_from_float((float)v); break;
  case PX_BFLOAT16: ((uint16_t *)p)[i] = px_bf16_from_float((float)v); break;
  case PX_FLOAT32: ((float *)p)[i] = (float)v; break;
  default: ((double *)p)[i] = v; break;
  }
}

void px_cpu_fill(void *dst, int dtype, int64_t n, double value) {
  if (n <= 0) return;
  store(dst, dtype, 0, dtype == PX_FLOAT64 ? value : (double)(float)value);
  size_t size = px_dtype_size(dtype);
  /* Doubling copies: memcpy speed without a per-dtype loop. */
  int64_t done = 1;
  while (done < n) {
    int64_t chunk = done < n - done ? done : n - done;
    memcpy((char *)dst + done * size, dst, (size_t)chunk * size);
    done += chunk;
  }
}

void px_cpu_rand(void *dst, int dtype, int64_t n, uint64_t seed, int normal) {
  if (normal) {
    for (int64_t j = 0; j * 4 < n; j++) {
      px_philox_block r = px_philox((uint64_t)j, seed);
      for (int e = 0; e < 4 && j * 4 + e < n; e++) {
        int p = e / 2;
        double z = px_normal_from(r.w[2 * p], r.w[2 * p + 1], e & 1);
        store(dst, dtype, j * 4 + e, dtype == PX_FLOAT64 ? z : (double)(float)z);
      }
    }
    return;
  }
  if (dtype == PX_FLOAT64) {
    double *out = dst;
    for (int64_t j = 0; j * 2 < n; j++) {
      px_philox_block r = px_philox((uint64_t)j, seed);
      for (int e = 0; e < 2 && j * 2 + e < n; e++)
        out[j * 2 + e] = ((double)(r.w[2 * e] >> 5) * 67108864.0 + (double)(r.w[2 * e + 1] >> 6)) *
                         (1.0 / 9007199254740992.0);
    }
    return;
  }
  for (int64_t j = 0; j * 4 < n; j++) {
    px_philox_block r = px_philox((uint64_t)j, seed);
    for (int e = 0; e < 4 && j * 4 + e < n; e++) {
      int64_t i = j * 4 + e;
      if (dtype == PX_FLOAT32)
        ((float *)dst)[i] = (float)(r.w[e] >> 8) * (1.0f / 16777216.0f);
      else if (dtype == PX_FLOAT16)
        ((uint16_t *)dst)[i] = px_half_from_float((float)(r.w[e] >> 21) * (1.0f / 2048.0f));
      else
        ((uint16_t *)dst)[i] = px_bf16_from_float((float)(r.w[e] >> 24) * (1.0f / 256.0f));
    }
  }
}

void px_cpu_cast(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n) {
  if (dst_dtype == PX_FLOAT32 && src_dtype == PX_FLOAT16) {
    /* The common case of the half matmul path: keep it tight. */
    for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = px_half_to_float(((const uint16_t *)src)[i]);
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    double v = load(src, src_dtype, i);
    store(dst, dst_dtype, i, dst_dtype == PX_FLOAT64 ? v : (double)(float)v);
  }
}

/* The loops of the two native float types, written once for both (C's
 * way to a template): binary_float/binary_double, z = x + y or x * y, and
 * sum4_float/sum4_double, which add p[i..end) in fours into acc and
 * return where they stopped. */
#define TYPED_LOOPS(T)                                                          \
  static void binary_##T(int op, T *z, const T *x, const T *y, int64_t n) {    \
    if (op == PXC_ADD)                                                         \
      for (int64_t i = 0; i < n; i++) z[i] = x[i] + y[i];                      \
    else                                                                       \
      for (int64_t i = 0; i < n; i++) z[i] = x[i] * y[i];                      \
  }                                                                            \
  static int64_t sum4_##T(const T *p, int64_t i, int64_t end, double acc[4]) {  \
    for (; i + 4 <= end; i += 4) {                                             \
      acc[0] += p[i];                                                          \
      acc[1] += p[i + 1];                                                      \
      acc[2] += p[i + 2];                                                      \
      acc[3] += p[i + 3];                                                      \
    }                                                                          \
    return i;                                                                  \
  }
TYPED_LOOPS(float)
TYPED_LOOPS(double)

void px_cpu_binary(int op, void *dst, const void *a, const void *b, int dtype, int64_t n) {
  if (dtype == PX_FLOAT64) {
    binary_double(op, dst, a, b, n);
    return;
  }
  if (dtype == PX_FLOAT32) {
    binary_float(op, dst, a, b, n);
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    float x = (float)load(a, dtype, i), y = (float)load(b, dtype, i);
    store(dst, dtype, i, op == PXC_ADD ? x + y : x * y);
  }
}

void px_cpu_scale(void *dst, const void *src, double s, int dtype, int64_t n) {
  if (dtype == PX_FLOAT64) {
    for (int64_t i = 0; i < n; i++) ((double *)dst)[i] = ((const double *)src)[i] * s;
    return;
  }
  float fs = (float)s;
  for (int64_t i = 0; i < n; i++) store(dst, dtype, i, (float)load(src, dtype, i) * fs);
}

double px_cpu_sum(const void *src, int dtype, int64_t n) {
  /* Four float64 accumulators over blocks: fast, and far more accurate
   * than the data's own precision needs. */
  double total = 0.0;
  for (int64_t base = 0; base < n; base += 4096) {
    int64_t end = base + 4096 < n ? base + 4096 : n;
    double acc[4] = {0, 0, 0, 0};
    int64_t i = base;
    if (dtype == PX_FLOAT32)
      i = sum4_float(src, i, end, acc);
    else if (dtype == PX_FLOAT64)
      i = sum4_double(src, i, end, acc);
    for (; i < end; i++) acc[i & 3] += load(src, dtype, i);
    total += (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
  return total;
}
