/*
 * matmul.c -- gpu.matmul(A, B, opts): argument checks (all before any
 * launch), then one of three paths:
 *   device arrays on a GPU  -> cuBLAS on the stream; the result is a device
 *                              array, returned at once (stream order makes
 *                              it safe to use); opts.sync parks until done;
 *   host arrays on a GPU    -> staged upload, cuBLAS, staged download into a
 *                              new host array; the task parks until done;
 *   either, without a GPU   -> OpenBLAS on the libuv thread pool, the task
 *                              parks (small products run inline).
 */
#include <stdlib.h>
#include <string.h>

#include "gpu.h"

static double opt_number(lua_State *L, int idx, const char *key, double def) {
  lua_getfield(L, idx, key);
  double v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, idx, lua_pushfstring(L, "opts.%s: number expected", key));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int idx, const char *key) {
  lua_getfield(L, idx, key);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* On a libuv pool thread (or inline): no Lua here. */
static void cpu_gemm_work(px_gpu_op *op) {
  if (px_cpu_gemm(&op->gemm) != 0) op->err = UV_ENOMEM;
}

/* Push obj's proxy (taking its reference): a device array or a host one. */
static void push_array(lua_State *L, px_shared *obj, int is_device) {
  if (is_device)
    px_devarray_push(L, (px_devarray *)obj);
  else
    px_array_push(L, (px_array *)obj);
}

static const char *const matmul_options[] = {"alpha", "beta", "out", "sync", "tf32", "transa", "transb", NULL};

static int gpu_matmul(lua_State *L) {
  px_gpu_operand A, B;
  px_gpu_check_operand(L, 1, &A);
  px_gpu_check_operand(L, 2, &B);
  int has_opts = !lua_isnoneornil(L, 3);
  if (has_opts) {
    luaL_checktype(L, 3, LUA_TTABLE);
    px_check_options(L, 3, "gpu.matmul", matmul_options); /* before any device work */
  }
  if (A.is_device != B.is_device)
    return luaL_error(L, "matmul: A and B must both be host arrays or both device arrays "
                         "(use gpu.upload or d:download)");
  if (A.dtype != B.dtype)
    return luaL_error(L, "matmul: dtype mismatch (%s and %s)", px_dtype_name(A.dtype),
                      px_dtype_name(B.dtype));
  int dtype = A.dtype;
  if (dtype != PX_FLOAT16 && dtype != PX_BFLOAT16 && dtype != PX_FLOAT32 && dtype != PX_FLOAT64)
    return luaL_error(L, "matmul: dtype %s not supported (float16, bfloat16, float32, "
                         "float64)", px_dtype_name(dtype));
  if (A.ndim < 2 || A.ndim > 3 || B.ndim < 2 || B.ndim > 3)
    return luaL_error(L, "matmul: 2-D or 3-D arrays expected (got %dD and %dD)", A.ndim, B.ndim);

  pxc_gemm g;
  memset(&g, 0, sizeof g);
  g.dtype = dtype;
  g.alpha = 1.0;
  int sync = 0;
  if (has_opts) {
    g.transa = opt_bool(L, 3, "transa");
    g.transb = opt_bool(L, 3, "transb");
    g.tf32 = opt_bool(L, 3, "tf32") && dtype == PX_FLOAT32;
    g.alpha = opt_number(L, 3, "alpha", 1.0);
    g.beta = opt_number(L, 3, "beta", 0.0);
    sync = opt_bool(L, 3, "sync");
  }
  int64_t a_rows = A.shape[A.ndim - 2], a_cols = A.shape[A.ndim - 1];
  int64_t b_rows = B.shape[B.ndim - 2], b_cols = B.shape[B.ndim - 1];
  g.m = g.transa ? a_cols : a_rows;
  g.k = g.transa ? a_rows : a_cols;
  int64_t kb = g.transb ? b_cols : b_rows;
  g.n = g.transb ? b_rows : b_cols;
  if (kb != g.k)
    return luaL_error(L, "matmul: inner dimensions differ (A is %dx%d%s, B is %dx%d%s)",
                      (int)a_rows, (int)a_cols, g.transa ? " transposed" : "", (int)b_rows,
                      (int)b_cols, g.transb ? " transposed" : "");
  int64_t batch_a = A.ndim == 3 ? A.shape[0] : 1, batch_b = B.ndim == 3 ? B.shape[0] : 1;
  if (A.ndim == 3 && B.ndim == 3 && batch_a != batch_b)
    return luaL_error(L, "matmul: batch sizes differ (%d and %d)", (int)batch_a, (int)batch_b);
  g.batch = A.ndim == 3 ? batch_a : batch_b;
  g.stride_a = A.ndim == 3 ? g.m * g.k : 0;
  g.stride_b = B.ndim == 3 ? g.k * g.n : 0;
  g.stride_c = g.m * g.n;
  int out_ndim = (A.ndim == 3 || B.ndim == 3) ? 3 : 2;
  int64_t out_shape[3];
  if (out_ndim == 3) {
    out_shape[0] = g.batch;
    out_shape[1] = g.m;
    out_shape[2] = g.n;
  } else {
    out_shape[0] = g.m;
    out_shape[1] = g.n;
  }

  /* opts.out: same kind, dtype and shape as the result would have. */
  px_gpu_operand C;
  memset(&C, 0, sizeof C);
  int have_out = 0, out_idx = 0;
  if (has_opts) {
    lua_getfield(L, 3, "out");
    if (!lua_isnil(L, -1)) {
      out_idx = lua_gettop(L); /* stays on the stack: returned as is */
      px_gpu_check_operand(L, out_idx, &C);
      int ok = C.is_device == A.is_device && C.dtype == dtype && C.ndim == out_ndim;
      for (int i = 0; ok && i < out_ndim; i++) ok = C.shape[i] == out_shape[i];
      if (!ok)
        return luaL_error(L, "matmul: opts.out must be a %s %s array of the result's shape",
                          A.is_device ? "device" : "host", px_dtype_name(dtype));
      if (C.ptr == A.ptr || C.ptr == B.ptr)
        return luaL_error(L, "matmul: opts.out must not be A or B");
      have_out = 1;
    } else {
      lua_pop(L, 1);
    }
  }
  if (g.beta != 0.0 && !have_out) return luaL_error(L, "matmul: opts.beta needs opts.out");
  int64_t dims[4] = {g.m, g.n, g.k, g.batch};
  for (int i = 0; i < 4; i++)
    if (dims[i] > 2147483647) return luaL_error(L, "matmul: dimension over 2^31-1");

  const px_gpu_backend *backend = px_gpu_backend_get();
  const pxc_api *cuda = backend->cuda;
  if (!cuda && backend->require)
    return luaL_error(L, "matmul: PARX_GPU=require but no GPU: %s", backend->reason);
  /* Everything that can raise has been checked: allocate from here on
   * (px_gpu_op_new then raises only when out of memory). */
  if (px_task_current(L)) px_check_can_park(L);

  /* The output object, one reference owned here until pushed or handed to
   * an op. */
  px_shared *out;
  void *out_ptr;
  if (have_out) {
    out = C.obj;
    out_ptr = C.ptr;
    px_shared_retain(out);
  } else if (A.is_device) {
    px_devarray *d = px_devarray_new(L, dtype, out_ndim, out_shape);
    out = &d->hdr;
    out_ptr = d->ptr;
  } else {
    px_array *a = px_array_new(dtype, out_ndim, out_shape);
    if (!a) return px_oom(L, "matmul");
    out = &a->hdr;
    out_ptr = a->data;
  }

  /* ---- on the CPU: no GPU (device arrays are then host memory too) ---- */
  if (!cuda) {
    g.a = A.ptr;
    g.b = B.ptr;
    g.c = out_ptr;
    px_gpu_op *op = px_gpu_op_new(L, "cpu matmul");
    push_array(L, out, A.is_device);
    px_gpu_op_set_result(L, op);
    op->work = cpu_gemm_work;
    op->gemm = g;
    px_gpu_op_hold(op, A.obj);
    px_gpu_op_hold(op, B.obj);
    /* Small products are cheaper inline than a trip through the pool. */
    double flops = 2.0 * (double)g.m * (double)g.n * (double)g.k * (double)g.batch;
    if (flops < 4e6) return px_gpu_op_run_inline(L, op);
    return px_gpu_op_run_cpu(L, op);
  }

  /* ---- device arrays on the GPU ---- */
  if (A.is_device) {
    g.a = A.ptr;
    g.b = B.ptr;
    g.c = out_ptr;
    int rc = cuda->gemm(&g);
    if (rc) {
      px_shared_release(out);
      return px_gpu_raise(L, "matmul", NULL, rc);
    }
    if (!sync) {
      /* No new proxy per call: back-to-back products on the same out make
       * no garbage. */
      if (have_out) {
        px_shared_release(out);
        lua_pushvalue(L, out_idx);
      } else {
        px_devarray_push(L, (px_devarray *)out);
      }
      return 1;
    }
    px_gpu_op *op = px_gpu_op_new(L, "gpu matmul");
    px_devarray_push(L, (px_devarray *)out);
    px_gpu_op_set_result(L, op);
    return px_gpu_op_finish(L, op);
  }

  /* ---- host arrays on the GPU: staged through device temporaries ---- */
  px_gpu_op *op = px_gpu_op_new(L, "gpu matmul (host arrays)");
  px_array_push(L, (px_array *)out);
  px_gpu_op_set_result(L, op);
  px_gpu_op_hold(op, A.obj);
  px_gpu_op_hold(op, B.obj);
  size_t esize = px_dtype_size(dtype);
  size_t bytes_a = (size_t)(g.stride_a ? g.batch * g.stride_a : g.m * g.k) * esize;
  size_t bytes_b = (size_t)(g.stride_b ? g.batch * g.stride_b : g.k * g.n) * esize;
  size_t bytes_c = (size_t)(g.batch * g.m * g.n) * esize;
  void *da = NULL, *db = NULL, *dc = NULL;
  int rc = cuda->alloc(&da, bytes_a);
  if (!rc) rc = cuda->alloc(&db, bytes_b);
  if (!rc) rc = cuda->alloc(&dc, bytes_c);
  if (!rc) rc = cuda->upload(da, A.ptr, bytes_a);
  if (!rc) rc = cuda->upload(db, B.ptr, bytes_b);
  if (!rc && g.beta != 0.0) rc = cuda->upload(dc, out_ptr, bytes_c);
  if (!rc) {
    g.a = da;
    g.b = db;
    g.c = dc;
    rc = cuda->gemm(&g);
  }
  if (!rc) rc = cuda->download(out_ptr, dc, bytes_c);
  /* Stream-ordered frees: the memory is reused only after the work above. */
  cuda->free(da);
  cuda->free(db);
  cuda->free(dc);
  if (rc) return px_gpu_raise(L, "matmul", op, rc);
  return px_gpu_op_finish(L, op);
}

static const luaL_Reg funcs[] = {{"matmul", gpu_matmul}, {NULL, NULL}};

void px_gpu_matmul_register(lua_State *L) { luaL_register(L, NULL, funcs); }
