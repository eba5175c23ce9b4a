/*
 * dtype.cuh -- element types for the kernels: storage type T and compute
 * type C (float for the half types and float32, double for float64), with
 * the same conversions as the CPU path (runtime/gpu/numeric.h), so results
 * agree bit for bit.
 */
#ifndef PXC_DTYPE_CUH
#define PXC_DTYPE_CUH

#include "../runtime/gpu/numeric.h"
#include "../runtime/gpu/pxcuda.h"

template <int D> struct pxc_dt;

template <> struct pxc_dt<PXC_F16> {
  typedef uint16_t T;
  typedef float C;
  static __device__ __forceinline__ C load(T x) { return px_half_to_float(x); }
  static __device__ __forceinline__ T store(C v) { return px_half_from_float(v); }
};
template <> struct pxc_dt<PXC_BF16> {
  typedef uint16_t T;
  typedef float C;
  static __device__ __forceinline__ C load(T x) { return px_bf16_to_float(x); }
  static __device__ __forceinline__ T store(C v) { return px_bf16_from_float(v); }
};
template <> struct pxc_dt<PXC_F32> {
  typedef float T;
  typedef float C;
  static __device__ __forceinline__ C load(T x) { return x; }
  static __device__ __forceinline__ T store(C v) { return v; }
};
template <> struct pxc_dt<PXC_F64> {
  typedef double T;
  typedef double C;
  static __device__ __forceinline__ C load(T x) { return x; }
  static __device__ __forceinline__ T store(C v) { return v; }
};

/* Runs the statements with D bound to a runtime dtype as a constant; the
 * caller has checked the dtype with pxc_dtype_ok first. */
#define PXC_DISPATCH(dtype, D, ...)                                           \
  switch (dtype) {                                                           \
  case PXC_F16: { const int D = PXC_F16; __VA_ARGS__; } break;               \
  case PXC_BF16: { const int D = PXC_BF16; __VA_ARGS__; } break;             \
  case PXC_F32: { const int D = PXC_F32; __VA_ARGS__; } break;               \
  case PXC_F64: { const int D = PXC_F64; __VA_ARGS__; } break;               \
  default: break;                                                            \
  }

static inline int pxc_dtype_ok(int dtype) {
  return dtype == PXC_F16 || dtype == PXC_BF16 || dtype == PXC_F32 || dtype == PXC_F64;
}

#endif
