/*
 * gpu.h -- what the files of runtime/gpu share: the backend (the dlopen'ed
 * CUDA module or the CPU), device arrays, and the CPU equivalents of the
 * kernels.  Calls point one way: the module (gpu.c) -> its functions
 * (ops.c, matmul.c) -> device arrays (devarray.c) -> waiting and raising
 * (wait.c) -> the backend (loader.c); the CPU kernels (cpu_*.c) are leaves.
 *
 * The backend is process-wide: one CUDA context per process, chosen once
 * (px_gpu_backend) the first time any VM opens parx.c.gpu.
 */
#ifndef PX_GPU_H
#define PX_GPU_H

#include "../core/px.h"
#include "../core/array.h"
#include "pxcuda.h"

/* ---- backend (loader.c) ------------------------------------------------ */

typedef struct px_gpu_backend {
  const pxc_api *cuda; /* NULL: CPU path */
  int require;         /* PARX_GPU=require: no GPU is an error */
  char reason[512];    /* why cuda is NULL */
  char module_path[4096];
} px_gpu_backend;

const px_gpu_backend *px_gpu_backend_get(void);

typedef struct px_gpu_op px_gpu_op;

/* The error table's code (px.h) for a CUDA module result (pxcuda.h's
 * PXC_E*): PX_ENODEV, PX_ECUDA, PX_ECUBLAS (named "NODEV", "CUDA", "CUBLAS"), UV_ENOMEM, UV_EINVAL. */
int px_gpu_code(int pxc_rc);


/* ---- device arrays (devarray.c) --------------------------------------- */

/* A device array: device memory from the CUDA module, or, on the CPU path,
 * 64-byte aligned host memory (on_host), so scripts run unchanged without a
 * GPU.  px_shared, so it crosses VMs by reference; the memory is freed
 * (stream-ordered cudaFreeAsync, safe from any thread) when the last
 * reference goes. */
typedef struct px_devarray {
  px_shared hdr;
  void *ptr;
  int on_host;
  int32_t dtype;
  int32_t ndim;
  int64_t n;
  int64_t shape[PX_ARRAY_MAXDIM];
} px_devarray;

extern px_shared_type px_devarray_type;

/* New device array of the shape; raises on bad arguments or out of memory. */
px_devarray *px_devarray_new(lua_State *L, int dtype, int ndim, const int64_t *shape);
void px_devarray_push(lua_State *L, px_devarray *d); /* takes the reference */
px_devarray *px_devarray_test(lua_State *L, int idx);
size_t px_devarray_bytes(const px_devarray *d);
void px_devarray_open(lua_State *L); /* metatable in this VM */

/* An argument that is either a host parx.array or a device array. */
typedef struct px_gpu_operand {
  px_shared *obj;
  void *ptr;
  int dtype, ndim, on_host, is_device;
  int64_t n;
  const int64_t *shape;
} px_gpu_operand;

/* Raises unless the value at idx is a host or device array. */
void px_gpu_check_operand(lua_State *L, int idx, px_gpu_operand *o);

/* Read a shape: a table {d1, d2, ...} at idx.  Returns ndim. */
int px_gpu_check_shape(lua_State *L, int idx, int64_t *shape);
/* A float dtype name at idx (float16, bfloat16, float32, float64). */
int px_gpu_check_float_dtype(lua_State *L, int idx);

/* ---- waiting for the stream (wait.c) ----------------------------------- */

/* A queued GPU operation the calling task parks on.  The op holds one
 * reference to every host or device array its queued work touches until the
 * work has run; deliver pushes the results. */
#define PX_GPU_MAXHOLD 6
struct px_gpu_op {
  px_wait wait;
  px_shared *holds[PX_GPU_MAXHOLD];
  int nholds;
  /* The result value, made before parking (px_gpu_op_set_result) and
   * anchored in the registry: delivery only moves it onto the task's
   * stack, since nothing may be called on a suspended coroutine. */
  int result_ref;         /* LUA_NOREF: none */
  lua_State *vm_state;    /* whose registry holds result_ref */
  double number;          /* pushed when there is no result and has_number */
  int has_number;
  /* CPU work for the libuv thread pool (NULL for GPU ops); it may set
   * err (a code of the error table), which the task then gets as nil,
   * message, code. */
  void (*work)(px_gpu_op *op);
  pxc_gemm gemm;
  int err;
  uint64_t t0; /* px_trace_now() when parked, for the --trace slice */
  uv_work_t req;
};

/* what: the wait's name in deadlock reports and --trace slices. */
px_gpu_op *px_gpu_op_new(lua_State *L, const char *what);
void px_gpu_op_hold(px_gpu_op *op, px_shared *obj);
/* Make the value on top of L (popped: an array proxy, say) the op's
 * result; at most once per op. */
void px_gpu_op_set_result(lua_State *L, px_gpu_op *op);
/* Queue the completion after the GPU work queued so far and park the
 * calling task (or block the thread when not inside a task).  Returns the
 * number of results for the C function to return. */
int px_gpu_op_finish(lua_State *L, px_gpu_op *op);
/* Run op->work on the libuv thread pool and park until it is done (inline
 * when not inside a task); px_gpu_op_run_inline always runs it here. */
int px_gpu_op_run_cpu(lua_State *L, px_gpu_op *op);
int px_gpu_op_run_inline(lua_State *L, px_gpu_op *op);
/* Drop an op whose work was never queued (on an error path). */
void px_gpu_op_abandon(px_gpu_op *op);
/* Raise (a Lua error) "what: NAME: message: <the module's message>" for a
 * call that returned pxc_rc, after making sure no queued work still uses
 * memory the caller will free; op (may be NULL) is abandoned first. */
int px_gpu_raise(lua_State *L, const char *what, px_gpu_op *op, int pxc_rc);

/* ---- CPU equivalents of the kernels (cpu_ops.c, cpu_blas.c) ------------ */

void px_cpu_fill(void *dst, int dtype, int64_t n, double value);
void px_cpu_rand(void *dst, int dtype, int64_t n, uint64_t seed, int normal);
void px_cpu_cast(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n);
void px_cpu_binary(int op, void *dst, const void *a, const void *b, int dtype, int64_t n);
void px_cpu_scale(void *dst, const void *src, double s, int dtype, int64_t n);
double px_cpu_sum(const void *src, int dtype, int64_t n);
/* Same contract as pxc_gemm; returns 0 or -1 when out of memory. */
int px_cpu_gemm(const pxc_gemm *g);

/* ---- Lua bindings (ops.c, matmul.c) ------------------------------------- */

void px_gpu_devarray_register(lua_State *L); /* adds to the table on top */
void px_gpu_ops_register(lua_State *L);      /* adds to the table on top */
void px_gpu_matmul_register(lua_State *L); /* adds to the table on top */

#endif
