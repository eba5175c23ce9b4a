/*
 * module.h -- state and helpers shared by the files of build/parx_cuda.so.
 *
 * The module is process-wide (one CUDA context per process): one device,
 * one stream, one cuBLAS handle with its workspace, one pinned staging
 * buffer.  Every entry point takes `lock` while it enqueues, so any thread
 * (any parx VM, a finaliser) may call in; the work itself runs
 * asynchronously in stream order.
 */
#ifndef PXC_MODULE_H
#define PXC_MODULE_H

#include <pthread.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include "../runtime/gpu/pxcuda.h"

struct pxc_state {
  int ready;
  int device;
  int sm_count;
  cudaStream_t stream;
  cublasHandle_t blas;
  void *workspace;
  size_t workspace_bytes;
  char *staging; /* pinned, staging_bytes */
  size_t staging_bytes;
  pthread_mutex_t lock;
};

extern pxc_state pxc_g;

/* Record a failure for the calling thread; returns the PXC_E* code. */
int pxc_cuda_error(cudaError_t err, const char *what);
int pxc_cublas_error(cublasStatus_t st, const char *what);
int pxc_fail(int code, const char *fmt, ...);

/* Checks the last launch (configuration errors are reported at once). */
int pxc_check_launch(const char *what);

/* RAII-free lock helpers: enter() takes the lock and makes the module's
 * device current on this thread. */
int pxc_enter(void);
void pxc_leave(void);

/* Grid size for a grid-stride loop over n items, 256 threads a block. */
int pxc_grid(int64_t n, int per_thread);

/* Implementations behind pxc_api (one file each in kernels/). */
int pxc_fill(void *dst, int dtype, int64_t n, double value);
int pxc_rand(void *dst, int dtype, int64_t n, uint64_t seed, int normal);
int pxc_cast(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n);
int pxc_binary(int op, void *dst, const void *a, const void *b, int dtype, int64_t n);
int pxc_scale(void *dst, const void *src, double s, int dtype, int64_t n);
int pxc_sum(const void *src, int dtype, int64_t n, double *result);
int pxc_gemm_run(const pxc_gemm *g);

/* Unlocked versions for use inside an entered section. */
int pxc_alloc_locked(void **ptr, size_t bytes);
int pxc_download_locked(void *dst_host, const void *src_dev, size_t bytes);

#endif
