/*
 * reduce.c -- element-wise reductions of arrays (mpi.reduce, allreduce):
 * acc[i] = acc[i] op x[i], in C, for every dtype.  float16 and bfloat16
 * are combined as floats and rounded back (as numpy does).  land and lor
 * give 1 or 0 in the array's dtype.
 */
#define PX_MPI_INTERNAL 1
#include "../core/array.h"
#include "mpi.h"

#define LOOP(T, EXPR)                                                         \
  do {                                                                        \
    T *a = acc;                                                               \
    const T *b = x;                                                           \
    for (int64_t i = 0; i < n; i++) {                                         \
      T u = a[i], v = b[i];                                                   \
      a[i] = (T)(EXPR);                                                       \
    }                                                                         \
  } while (0)

#define ALL_OPS(T)                                                            \
  switch (op) {                                                               \
  case PX_OP_SUM: LOOP(T, u + v); break;                                      \
  case PX_OP_PROD: LOOP(T, u * v); break;                                     \
  case PX_OP_MIN: LOOP(T, v < u ? v : u); break;                              \
  case PX_OP_MAX: LOOP(T, v > u ? v : u); break;                              \
  case PX_OP_LAND: LOOP(T, (u != 0) && (v != 0)); break;                      \
  case PX_OP_LOR: LOOP(T, (u != 0) || (v != 0)); break;                       \
  default: return -1;                                                         \
  }

static float apply(int op, float u, float v) {
  switch (op) {
  case PX_OP_SUM: return u + v;
  case PX_OP_PROD: return u * v;
  case PX_OP_MIN: return v < u ? v : u;
  case PX_OP_MAX: return v > u ? v : u;
  case PX_OP_LAND: return (u != 0) && (v != 0);
  default: return (u != 0) || (v != 0);
  }
}

static void half(int bf, int op, uint16_t *a, const uint16_t *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float u = bf ? px_bf16_to_f32(a[i]) : px_f16_to_f32(a[i]);
    float v = bf ? px_bf16_to_f32(b[i]) : px_f16_to_f32(b[i]);
    float r = apply(op, u, v);
    a[i] = bf ? px_f32_to_bf16(r) : px_f32_to_f16(r);
  }
}

int px_mpi_reduce(int dtype, int op, void *acc, const void *x, int64_t n) {
  if (op < PX_OP_SUM || op > PX_OP_LOR) return -1;
  switch (dtype) {
  case PX_INT8: ALL_OPS(int8_t); break;
  case PX_INT16: ALL_OPS(int16_t); break;
  case PX_INT32: ALL_OPS(int32_t); break;
  case PX_INT64: ALL_OPS(int64_t); break;
  case PX_UINT8: ALL_OPS(uint8_t); break;
  case PX_UINT16: ALL_OPS(uint16_t); break;
  case PX_UINT32: ALL_OPS(uint32_t); break;
  case PX_UINT64: ALL_OPS(uint64_t); break;
  case PX_FLOAT32: ALL_OPS(float); break;
  case PX_FLOAT64: ALL_OPS(double); break;
  case PX_FLOAT16: half(0, op, acc, x, n); break;
  case PX_BFLOAT16: half(1, op, acc, x, n); break;
  default: return -1;
  }
  return 0;
}
