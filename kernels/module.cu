/*
 * module.cu -- the entry point of build/parx_cuda.so: device set-up, error
 * messages, memory, staged copies, notifications.  See runtime/gpu/pxcuda.h
 * for the contract.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"

pxc_state pxc_g = {0, 0, 0, 0, 0, 0, 0, 0, 0, PTHREAD_MUTEX_INITIALIZER};

/* 32 MiB of cuBLAS workspace is what NVIDIA recommends on Hopper; the pinned
 * staging buffer moves host arrays in 32 MiB pieces. */
static const size_t WORKSPACE_BYTES = 32u << 20;
static const size_t STAGING_BYTES = 32u << 20;

static __thread char errbuf[512];

int pxc_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return code;
}

int pxc_cuda_error(cudaError_t err, const char *what) {
  int code = err == cudaErrorMemoryAllocation ? PXC_ENOMEM
           : (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver)
               ? PXC_ENODEV
               : PXC_ECUDA;
  return pxc_fail(code, "%s: %s (%s)", cudaGetErrorName(err), cudaGetErrorString(err),
                  what);
}

int pxc_cublas_error(cublasStatus_t st, const char *what) {
  int code = st == CUBLAS_STATUS_ALLOC_FAILED ? PXC_ENOMEM : PXC_ECUBLAS;
  return pxc_fail(code, "%s: %s (%s)", cublasGetStatusName(st), cublasGetStatusString(st),
                  what);
}

int pxc_check_launch(const char *what) {
  cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? 0 : pxc_cuda_error(err, what);
}

int pxc_enter(void) {
  if (!pxc_g.ready) return pxc_fail(PXC_ENODEV, "GPU module not initialised");
  pthread_mutex_lock(&pxc_g.lock);
  /* The current device is per host thread and parx calls from many; set
   * it once per thread rather than on every call. */
  static __thread int current = -1;
  if (current != pxc_g.device) {
    cudaError_t err = cudaSetDevice(pxc_g.device);
    if (err != cudaSuccess) {
      pthread_mutex_unlock(&pxc_g.lock);
      return pxc_cuda_error(err, "cudaSetDevice");
    }
    current = pxc_g.device;
  }
  return 0;
}

void pxc_leave(void) { pthread_mutex_unlock(&pxc_g.lock); }

int pxc_grid(int64_t n, int per_thread) {
  int64_t want = (n + 256LL * per_thread - 1) / (256LL * per_thread);
  int64_t cap = (int64_t)pxc_g.sm_count * 8;
  if (want < 1) want = 1;
  return (int)(want < cap ? want : cap);
}

/* ---- set-up ------------------------------------------------------------ */

static int init_locked(void) {
  int count = 0, device = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return pxc_cuda_error(err, "cudaGetDeviceCount");
  if (count == 0) return pxc_fail(PXC_ENODEV, "no CUDA device");
  const char *env = getenv("PARX_GPU_DEVICE");
  if (env && *env) device = atoi(env);
  if (device < 0 || device >= count)
    return pxc_fail(PXC_ENODEV, "PARX_GPU_DEVICE=%s but %d device(s)", env, count);
  if ((err = cudaSetDevice(device)) != cudaSuccess) return pxc_cuda_error(err, "cudaSetDevice");
  cudaDeviceProp prop;
  if ((err = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
    return pxc_cuda_error(err, "cudaGetDeviceProperties");
  pxc_g.device = device;
  pxc_g.sm_count = prop.multiProcessorCount;

  if ((err = cudaStreamCreateWithFlags(&pxc_g.stream, cudaStreamNonBlocking)) != cudaSuccess)
    return pxc_cuda_error(err, "cudaStreamCreate");
  /* Keep freed blocks in the stream-ordered pool instead of returning them
   * to the driver at every synchronisation: repeated same-size calls then
   * allocate nothing. */
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
    uint64_t threshold = UINT64_MAX;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
  }
  cublasStatus_t st = cublasCreate(&pxc_g.blas);
  if (st != CUBLAS_STATUS_SUCCESS) return pxc_cublas_error(st, "cublasCreate");
  cublasSetStream(pxc_g.blas, pxc_g.stream);
  if ((err = cudaMalloc(&pxc_g.workspace, WORKSPACE_BYTES)) != cudaSuccess)
    return pxc_cuda_error(err, "cudaMalloc workspace");
  pxc_g.workspace_bytes = WORKSPACE_BYTES;
  st = cublasSetWorkspace(pxc_g.blas, pxc_g.workspace, WORKSPACE_BYTES);
  if (st != CUBLAS_STATUS_SUCCESS) return pxc_cublas_error(st, "cublasSetWorkspace");
  if ((err = cudaMallocHost((void **)&pxc_g.staging, STAGING_BYTES)) != cudaSuccess)
    return pxc_cuda_error(err, "cudaMallocHost staging");
  pxc_g.staging_bytes = STAGING_BYTES;
  return 0;
}

static int api_init(void) {
  pthread_mutex_lock(&pxc_g.lock);
  int rc = pxc_g.ready ? 0 : init_locked();
  if (rc == 0) pxc_g.ready = 1;
  pthread_mutex_unlock(&pxc_g.lock);
  return rc;
}

static const char *api_errmsg(void) { return errbuf; }

static int api_device_info(pxc_device_info *out) {
  int rc = pxc_enter();
  if (rc) return rc;
  memset(out, 0, sizeof *out);
  cudaDeviceProp prop;
  cudaError_t err = cudaGetDeviceProperties(&prop, pxc_g.device);
  if (err != cudaSuccess) {
    pxc_leave();
    return pxc_cuda_error(err, "cudaGetDeviceProperties");
  }
  snprintf(out->name, sizeof out->name, "%s", prop.name);
  out->device = pxc_g.device;
  out->major = prop.major;
  out->minor = prop.minor;
  out->sm_count = prop.multiProcessorCount;
  out->l2_bytes = (size_t)prop.l2CacheSize;
  cudaMemGetInfo(&out->free_mem, &out->total_mem);
  cudaDriverGetVersion(&out->driver_version);
  cudaRuntimeGetVersion(&out->runtime_version);
  cublasGetVersion(pxc_g.blas, &out->cublas_version);
  pxc_leave();
  return 0;
}

/* ---- memory ------------------------------------------------------------ */

int pxc_alloc_locked(void **ptr, size_t bytes) {
  *ptr = NULL;
  if (bytes == 0) bytes = 1;
  cudaError_t err = cudaMallocAsync(ptr, bytes, pxc_g.stream);
  if (err == cudaErrorMemoryAllocation) {
    /* Blocks freed asynchronously may still be pending: let the stream
     * drain, hand cached blocks back, and try once more. */
    cudaGetLastError();
    cudaStreamSynchronize(pxc_g.stream);
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, pxc_g.device) == cudaSuccess)
      cudaMemPoolTrimTo(pool, 0);
    err = cudaMallocAsync(ptr, bytes, pxc_g.stream);
  }
  if (err != cudaSuccess) {
    cudaGetLastError(); /* out of memory is not sticky: clear it */
    *ptr = NULL;
    char what[64];
    snprintf(what, sizeof what, "allocating %zu bytes", bytes);
    return pxc_cuda_error(err, what);
  }
  return 0;
}

static int api_alloc(void **ptr, size_t bytes) {
  int rc = pxc_enter();
  if (rc) return rc;
  rc = pxc_alloc_locked(ptr, bytes);
  pxc_leave();
  return rc;
}

static void api_free(void *ptr) {
  if (!ptr || pxc_enter() != 0) return;
  /* Stream-ordered: work queued before uses ptr before it is reused.  At
   * process exit the runtime may already be unloading; nothing to do then. */
  if (cudaFreeAsync(ptr, pxc_g.stream) != cudaSuccess) cudaGetLastError();
  pxc_leave();
}

/* ---- staged copies ------------------------------------------------------ */

typedef struct stage_copy {
  void *dst;
  const void *src;
  size_t len;
} stage_copy;

/* Runs on a CUDA-owned thread in stream order: the staging buffer is ours
 * until the next operation in the stream. */
static void CUDART_CB stage_run(void *arg) {
  stage_copy *c = (stage_copy *)arg;
  memcpy(c->dst, c->src, c->len);
  free(c);
}

static int stage_host_fn(void *dst, const void *src, size_t len) {
  stage_copy *c = (stage_copy *)malloc(sizeof *c);
  if (!c) return pxc_fail(PXC_ENOMEM, "out of host memory");
  c->dst = dst;
  c->src = src;
  c->len = len;
  cudaError_t err = cudaLaunchHostFunc(pxc_g.stream, stage_run, c);
  if (err != cudaSuccess) {
    free(c);
    return pxc_cuda_error(err, "cudaLaunchHostFunc");
  }
  return 0;
}

static int upload_locked(void *dst, const void *src, size_t bytes) {
  for (size_t off = 0; off < bytes; off += pxc_g.staging_bytes) {
    size_t len = bytes - off < pxc_g.staging_bytes ? bytes - off : pxc_g.staging_bytes;
    int rc = stage_host_fn(pxc_g.staging, (const char *)src + off, len);
    if (rc) return rc;
    cudaError_t err = cudaMemcpyAsync((char *)dst + off, pxc_g.staging, len,
                                      cudaMemcpyHostToDevice, pxc_g.stream);
    if (err != cudaSuccess) return pxc_cuda_error(err, "cudaMemcpyAsync to device");
  }
  return 0;
}

int pxc_download_locked(void *dst, const void *src, size_t bytes) {
  for (size_t off = 0; off < bytes; off += pxc_g.staging_bytes) {
    size_t len = bytes - off < pxc_g.staging_bytes ? bytes - off : pxc_g.staging_bytes;
    cudaError_t err = cudaMemcpyAsync(pxc_g.staging, (const char *)src + off, len,
                                      cudaMemcpyDeviceToHost, pxc_g.stream);
    if (err != cudaSuccess) return pxc_cuda_error(err, "cudaMemcpyAsync to host");
    int rc = stage_host_fn((char *)dst + off, pxc_g.staging, len);
    if (rc) return rc;
  }
  return 0;
}

static int api_upload(void *dst, const void *src, size_t bytes) {
  int rc = pxc_enter();
  if (rc) return rc;
  rc = upload_locked(dst, src, bytes);
  pxc_leave();
  return rc;
}

static int api_download(void *dst, const void *src, size_t bytes) {
  int rc = pxc_enter();
  if (rc) return rc;
  rc = pxc_download_locked(dst, src, bytes);
  pxc_leave();
  return rc;
}

static int api_copy(void *dst, const void *src, size_t bytes) {
  int rc = pxc_enter();
  if (rc) return rc;
  cudaError_t err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, pxc_g.stream);
  pxc_leave();
  return err == cudaSuccess ? 0 : pxc_cuda_error(err, "cudaMemcpyAsync on device");
}

/* ---- completion --------------------------------------------------------- */

static int api_notify(void (*fn)(void *), void *arg) {
  int rc = pxc_enter();
  if (rc) return rc;
  cudaError_t err = cudaLaunchHostFunc(pxc_g.stream, fn, arg);
  pxc_leave();
  return err == cudaSuccess ? 0 : pxc_cuda_error(err, "cudaLaunchHostFunc");
}

static int api_synchronize(void) {
  if (!pxc_g.ready) return pxc_fail(PXC_ENODEV, "GPU module not initialised");
  /* Not under the lock: other threads keep queueing while this one waits. */
  cudaSetDevice(pxc_g.device);
  cudaError_t err = cudaStreamSynchronize(pxc_g.stream);
  return err == cudaSuccess ? 0 : pxc_cuda_error(err, "cudaStreamSynchronize");
}

static int api_status(void) {
  if (!pxc_g.ready) return pxc_fail(PXC_ENODEV, "GPU module not initialised");
  cudaSetDevice(pxc_g.device);
  cudaError_t err = cudaStreamQuery(pxc_g.stream);
  if (err == cudaSuccess || err == cudaErrorNotReady) return 0;
  return pxc_cuda_error(err, "asynchronous GPU work");
}

static const pxc_api api = {
    PXC_ABI_VERSION, api_init,     api_errmsg,      api_device_info, api_alloc,
    api_free,        api_upload,   api_download,    api_copy,        api_notify,
    api_synchronize, api_status,   pxc_fill,        pxc_rand,        pxc_cast,
    pxc_binary,      pxc_scale,    pxc_sum,         pxc_gemm_run,
};

extern "C" __attribute__((visibility("default"))) const pxc_api *pxc_get_api(int abi) {
  return abi == PXC_ABI_VERSION ? &api : NULL;
}
