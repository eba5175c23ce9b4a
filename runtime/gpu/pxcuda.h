/*
 * pxcuda.h -- the ABI between the parx runtime and build/parx_cuda.so.
 *
 * The parx binary never links CUDA.  The GPU module (kernels/, built by
 * nvcc) exports one symbol, pxc_get_api, that returns a table of plain C
 * functions; runtime/gpu/loader.c finds the module with dlopen and checks the
 * ABI version.  This header is plain C so both sides include it; it must not
 * include px.h (nvcc builds the module without Lua or libuv headers).
 *
 * Every function that can fail returns 0 or a negative PXC_E* code and leaves
 * a message ("cudaErrorMemoryAllocation: out of memory") for the calling
 * thread in errmsg().  All work goes to the module's one stream per device in
 * submission order, so operations are ordered among themselves: memory freed
 * with free() is reused only after work queued before the free has run.
 * Every function may be called from any thread; the module serialises the
 * enqueueing under one mutex (cuBLAS handles are not thread-safe).
 *
 * Dtype numbers are px_dtype's (runtime/core/array.h): 8 float16,
 * 9 bfloat16, 10 float32, 11 float64; the module handles those four.
 */
#ifndef PX_PXCUDA_H
#define PX_PXCUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PXC_ABI_VERSION 3

enum {
  PXC_F16 = 8,
  PXC_BF16 = 9,
  PXC_F32 = 10,
  PXC_F64 = 11,
};

enum {
  PXC_OK = 0,
  PXC_ENODEV = -1, /* no driver, no device, or init failed */
  PXC_ECUDA = -2,  /* a CUDA runtime error; see errmsg() */
  PXC_ECUBLAS = -3,
  PXC_ENOMEM = -4, /* device or pinned memory exhausted */
  PXC_EINVAL = -5, /* a dtype or size the module does not handle */
};

enum { PXC_ADD = 0, PXC_MUL = 1 };

typedef struct pxc_device_info {
  char name[256];
  int device;             /* CUDA ordinal */
  int major, minor;       /* compute capability */
  int sm_count;
  size_t total_mem, free_mem;
  size_t l2_bytes;
  int driver_version;     /* e.g. 13000 */
  int runtime_version;
  int cublas_version;
} pxc_device_info;

/* C = alpha * op(A) * op(B) + beta * C for row-major matrices in device
 * memory.  op(A) is m x k (A is stored k x m when transa), op(B) is k x n,
 * C is m x n.  batch >= 1 matrices, each stride_* elements after the last;
 * a stride of 0 reuses one matrix for every batch entry.  Half types
 * accumulate in float32; tf32 selects CUBLAS_COMPUTE_32F_FAST_TF32. */
typedef struct pxc_gemm {
  int dtype;
  int transa, transb;
  int tf32;
  int64_t m, n, k, batch;
  int64_t stride_a, stride_b, stride_c;
  double alpha, beta;
  const void *a, *b;
  void *c;
} pxc_gemm;

typedef struct pxc_api {
  int abi; /* PXC_ABI_VERSION */

  /* Opens the device (ordinal from $PARX_GPU_DEVICE, default 0): context,
   * stream, cuBLAS handle and workspace, pinned staging buffer.  Idempotent;
   * the runtime calls it once. */
  int (*init)(void);
  const char *(*errmsg)(void); /* the calling thread's last failure */
  int (*device_info)(pxc_device_info *out);

  /* Device memory, stream-ordered (cudaMallocAsync / cudaFreeAsync). */
  int (*alloc)(void **ptr, size_t bytes);
  void (*free)(void *ptr); /* NULL is fine; errors are ignored */

  /* Copies between any host memory (pageable is fine) and device memory.
   * They are queued: the host side is read or written by the module's
   * staging (pinned buffer + host function) in stream order, so the host
   * buffer must stay alive and untouched until a later notify() fires or
   * synchronize() returns. */
  int (*upload)(void *dst_dev, const void *src_host, size_t bytes);
  int (*download)(void *dst_host, const void *src_dev, size_t bytes);
  int (*copy)(void *dst_dev, const void *src_dev, size_t bytes);

  /* Calls fn(arg) on a CUDA-owned thread once the work queued so far has
   * run.  fn must not call CUDA (nor Lua); parx uses it to px_wake a task. */
  int (*notify)(void (*fn)(void *arg), void *arg);
  /* Blocks the calling thread until the stream is idle; reports an error
   * an earlier asynchronous launch left behind. */
  int (*synchronize)(void);
  /* Non-blocking: 0, or the sticky error of an earlier launch. */
  int (*status)(void);

  /* Kernels (kernels/); n elements, dtype one of PXC_F*. */
  int (*fill)(void *dst, int dtype, int64_t n, double value);
  /* Philox4x32-10 counter-based numbers, see runtime/gpu/philox.h for the
   * exact mapping of (seed, element index) to a value. */
  int (*rand)(void *dst, int dtype, int64_t n, uint64_t seed, int normal);
  int (*cast)(void *dst, int dst_dtype, const void *src, int src_dtype,
              int64_t n);
  int (*binary)(int op, void *dst, const void *a, const void *b, int dtype,
                int64_t n);
  int (*scale)(void *dst, const void *src, double s, int dtype, int64_t n);
  /* Sum in float64 accumulation; *result (host memory) is written in stream
   * order, like download(). */
  int (*sum)(const void *src, int dtype, int64_t n, double *result);

  int (*gemm)(const pxc_gemm *g);
} pxc_api;

typedef const pxc_api *(*pxc_get_api_fn)(int abi);

#ifdef __cplusplus
}
#endif
#endif
