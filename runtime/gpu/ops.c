/*
 * ops.c -- the kernels' operations from Lua: gpu.fill, add, mul, scale,
 * cast, sum, synchronize.  Device arrays run the CUDA kernels (or, on the CPU
 * path, their C equivalents); host parx.arrays always run the C versions,
 * which is also how specs compare the two.  Element-wise results are new
 * arrays of the inputs' kind unless `out` is given (it may alias an input).
 * Kernel launches return at once in stream order; only sum, which returns a
 * number to Lua, and synchronize park the task.
 */
#include <string.h>

#include "gpu.h"

static int is_float(int dtype) {
  return dtype == PX_FLOAT16 || dtype == PX_BFLOAT16 || dtype == PX_FLOAT32 ||
         dtype == PX_FLOAT64;
}

static void check_float_operand(lua_State *L, int idx, px_gpu_operand *o) {
  px_gpu_check_operand(L, idx, o);
  if (!is_float(o->dtype))
    luaL_argerror(L, idx, lua_pushfstring(L, "float array expected, got %s",
                                          px_dtype_name(o->dtype)));
}

/* The result array: `out` at idx when given (checked against like), else a
 * new array of like's kind and shape, of dtype.  Pushes it. */
static void result_operand(lua_State *L, int idx, const px_gpu_operand *like, int dtype,
                           px_gpu_operand *out) {
  if (!lua_isnoneornil(L, idx)) {
    check_float_operand(L, idx, out);
    if (out->is_device != like->is_device || out->dtype != dtype || out->n != like->n)
      luaL_argerror(L, idx, "out: an array of the same kind, dtype and size expected");
    lua_pushvalue(L, idx);
    return;
  }
  if (like->is_device) {
    px_devarray_push(L, px_devarray_new(L, dtype, like->ndim, like->shape));
  } else {
    /* Every op writes its result whole: no need to zero it first. */
    px_array *a = px_array_new_uninit(dtype, like->ndim, like->shape);
    if (!a) px_oom(L, "gpu result");
    px_array_push(L, a);
  }
  px_gpu_check_operand(L, lua_gettop(L), out);
}

static int on_gpu(const px_gpu_operand *o) { return o->is_device && !o->on_host; }

static const pxc_api *cuda(void) { return px_gpu_backend_get()->cuda; }

/* gpu.add(a, b [, out]), gpu.mul(a, b [, out]) */
static int binary(lua_State *L, int op) {
  px_gpu_operand a, b, out;
  check_float_operand(L, 1, &a);
  check_float_operand(L, 2, &b);
  if (a.is_device != b.is_device || a.dtype != b.dtype || a.n != b.n)
    return luaL_error(L, "%s: a and b must be arrays of the same kind, dtype and size",
                      op == PXC_ADD ? "add" : "mul");
  result_operand(L, 3, &a, a.dtype, &out);
  if (on_gpu(&a)) {
    int rc = cuda()->binary(op, out.ptr, a.ptr, b.ptr, a.dtype, a.n);
    if (rc) return px_gpu_raise(L, op == PXC_ADD ? "add" : "mul", NULL, rc);
  } else {
    px_cpu_binary(op, out.ptr, a.ptr, b.ptr, a.dtype, a.n);
  }
  return 1;
}

static int gpu_add(lua_State *L) { return binary(L, PXC_ADD); }
static int gpu_mul(lua_State *L) { return binary(L, PXC_MUL); }

/* gpu.scale(a, s [, out]) -> s * a */
static int gpu_scale(lua_State *L) {
  px_gpu_operand a, out;
  check_float_operand(L, 1, &a);
  double s = luaL_checknumber(L, 2);
  result_operand(L, 3, &a, a.dtype, &out);
  if (on_gpu(&a)) {
    int rc = cuda()->scale(out.ptr, a.ptr, s, a.dtype, a.n);
    if (rc) return px_gpu_raise(L, "scale", NULL, rc);
  } else {
    px_cpu_scale(out.ptr, a.ptr, s, a.dtype, a.n);
  }
  return 1;
}

/* gpu.cast(a, dtype [, out]) */
static int gpu_cast(lua_State *L) {
  px_gpu_operand a, out;
  check_float_operand(L, 1, &a);
  int dtype = px_gpu_check_float_dtype(L, 2);
  result_operand(L, 3, &a, dtype, &out);
  if (on_gpu(&a)) {
    int rc = cuda()->cast(out.ptr, dtype, a.ptr, a.dtype, a.n);
    if (rc) return px_gpu_raise(L, "cast", NULL, rc);
  } else {
    px_cpu_cast(out.ptr, dtype, a.ptr, a.dtype, a.n);
  }
  return 1;
}

/* gpu.fill(a, v) -> a */
static int gpu_fill(lua_State *L) {
  px_gpu_operand a;
  check_float_operand(L, 1, &a);
  double v = luaL_checknumber(L, 2);
  if (on_gpu(&a)) {
    int rc = cuda()->fill(a.ptr, a.dtype, a.n, v);
    if (rc) return px_gpu_raise(L, "fill", NULL, rc);
  } else {
    px_cpu_fill(a.ptr, a.dtype, a.n, v);
  }
  lua_settop(L, 1);
  return 1;
}

/* gpu.sum(a) -> number (float64 accumulation) */
static int gpu_sum(lua_State *L) {
  px_gpu_operand a;
  check_float_operand(L, 1, &a);
  if (!on_gpu(&a)) {
    lua_pushnumber(L, px_cpu_sum(a.ptr, a.dtype, a.n));
    return 1;
  }
  px_gpu_op *op = px_gpu_op_new(L, "gpu sum");
  op->has_number = 1;
  px_gpu_op_hold(op, a.obj);
  int rc = cuda()->sum(a.ptr, a.dtype, a.n, &op->number);
  if (rc) return px_gpu_raise(L, "sum", op, rc);
  return px_gpu_op_finish(L, op);
}

/* gpu.synchronize(): parks until every queued GPU operation has run, and
 * raises the error an asynchronous launch left, if any. */
static int gpu_synchronize(lua_State *L) {
  if (!cuda()) return 0;
  px_gpu_op *op = px_gpu_op_new(L, "gpu synchronize");
  return px_gpu_op_finish(L, op);
}

static const luaL_Reg funcs[] = {
    {"add", gpu_add},   {"mul", gpu_mul}, {"scale", gpu_scale},
    {"cast", gpu_cast}, {"fill", gpu_fill}, {"sum", gpu_sum},
    {"synchronize", gpu_synchronize}, {NULL, NULL}};

void px_gpu_ops_register(lua_State *L) { luaL_register(L, NULL, funcs); }
