/* gpu_stub_module.c -- a parx GPU module (pxcuda.h's ABI) with no GPU
 * behind it, whose calls fail the way CUDA's do, so that
 * spec/gpu_errors_spec.lua can check, on any machine, how parx reports a
 * GPU failure.  Built by that spec with cc -shared and loaded through
 * $PARX_CUDA_MODULE.  "Device" memory is host memory.
 *   alloc      fails with PXC_ENOMEM above 1 MiB
 *   device_info, gemm fail at once (PXC_ECUDA, PXC_ECUBLAS)
 *   binary     succeeds but leaves a sticky error, as a faulting kernel
 *              launch does: the next synchronize or notify reports it
 */
#include <stdlib.h>
#include <string.h>

#include "gpu/pxcuda.h"

static int sticky;
static const char *message = "";

static int fail(int rc, const char *msg) {
  message = msg;
  return rc;
}

static int init(void) { return 0; }
static const char *errmsg(void) { return message; }
static int device_info(pxc_device_info *out) {
  (void)out;
  return fail(PXC_ECUDA, "stubErrorNoDevice: device_info is not available");
}
static int alloc(void **ptr, size_t bytes) {
  if (bytes > (1u << 20)) return fail(PXC_ENOMEM, "stubErrorMemoryAllocation: out of memory");
  *ptr = calloc(1, bytes ? bytes : 1);
  return *ptr ? 0 : fail(PXC_ENOMEM, "stubErrorMemoryAllocation: out of memory");
}
static void release(void *ptr) { free(ptr); }
static int copy(void *dst, const void *src, size_t bytes) {
  memcpy(dst, src, bytes);
  return 0;
}
static int notify(void (*fn)(void *arg), void *arg) {
  fn(arg);
  return 0;
}
static int synchronize(void) {
  return sticky ? fail(sticky, "stubErrorLaunchFailure: unspecified launch failure") : 0;
}
static int status(void) { return synchronize(); }
static int fill(void *dst, int dtype, int64_t n, double value) {
  (void)dst, (void)dtype, (void)n, (void)value;
  return 0;
}
static int rand_(void *dst, int dtype, int64_t n, uint64_t seed, int normal) {
  (void)dst, (void)dtype, (void)n, (void)seed, (void)normal;
  return 0;
}
static int cast(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n) {
  (void)dst, (void)dst_dtype, (void)src, (void)src_dtype, (void)n;
  return 0;
}
static int binary(int op, void *dst, const void *a, const void *b, int dtype, int64_t n) {
  (void)op, (void)dst, (void)a, (void)b, (void)dtype, (void)n;
  sticky = PXC_ECUDA;
  return 0;
}
static int scale(void *dst, const void *src, double s, int dtype, int64_t n) {
  (void)dst, (void)src, (void)s, (void)dtype, (void)n;
  return 0;
}
static int sum(const void *src, int dtype, int64_t n, double *result) {
  (void)src, (void)dtype, (void)n;
  *result = 0;
  return 0;
}
static int gemm(const pxc_gemm *g) {
  (void)g;
  return fail(PXC_ECUBLAS, "CUBLAS_STATUS_EXECUTION_FAILED");
}

static const pxc_api api = {
    .abi = PXC_ABI_VERSION, .init = init, .errmsg = errmsg, .device_info = device_info,
    .alloc = alloc, .free = release, .upload = copy, .download = copy, .copy = copy,
    .notify = notify, .synchronize = synchronize, .status = status, .fill = fill,
    .rand = rand_, .cast = cast, .binary = binary, .scale = scale, .sum = sum, .gemm = gemm,
};

__attribute__((visibility("default"))) const pxc_api *pxc_get_api(int abi) {
  return abi == PXC_ABI_VERSION ? &api : NULL;
}
