/*
 * devarray.c -- device arrays (parx.gpu arrays): the px_shared type, its
 * methods, and the functions that make one (upload, empty, zeros, rand).
 *
 * On the CPU path a device array is 64-byte aligned host memory and every
 * operation runs the C equivalent of its kernel, so a script written for the
 * GPU runs unchanged without one.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu.h"

static void devarray_free(px_shared *obj) {
  px_devarray *d = (px_devarray *)obj;
  if (d->on_host) {
    free(d->ptr);
  } else {
    /* Any thread: the module's free is stream-ordered and locked. */
    const px_gpu_backend *b = px_gpu_backend_get();
    if (b->cuda) b->cuda->free(d->ptr);
  }
  free(d);
}

static void devarray_push_any(lua_State *L, px_shared *obj);

px_shared_type px_devarray_type = {"parx.gpu.array", devarray_free, devarray_push_any, 0};

size_t px_devarray_bytes(const px_devarray *d) {
  return (size_t)d->n * px_dtype_size(d->dtype);
}

int px_gpu_check_float_dtype(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  int dtype = px_dtype_from_name(name);
  if (dtype != PX_FLOAT16 && dtype != PX_BFLOAT16 && dtype != PX_FLOAT32 && dtype != PX_FLOAT64)
    return luaL_argerror(L, idx,
                         lua_pushfstring(L, "dtype float16, bfloat16, float32 or float64 "
                                            "expected, got '%s'", name));
  return dtype;
}

int px_gpu_check_shape(lua_State *L, int idx, int64_t *shape) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Number v = lua_tonumber(L, idx);
    if (!(v >= 0 && v <= 4e18) || v != floor(v))
      luaL_argerror(L, idx, "shape: non-negative integers expected");
    shape[0] = (int64_t)v;
    return 1;
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  int ndim = (int)lua_objlen(L, idx);
  if (ndim < 1 || ndim > PX_ARRAY_MAXDIM)
    luaL_argerror(L, idx, lua_pushfstring(L, "shape: 1 to %d dimensions expected",
                                          PX_ARRAY_MAXDIM));
  for (int i = 0; i < ndim; i++) {
    lua_rawgeti(L, idx, i + 1);
    lua_Number v = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(v >= 0 && v <= 4e18) || v != floor(v))
      luaL_argerror(L, idx, "shape: non-negative integers expected");
    shape[i] = (int64_t)v;
    lua_pop(L, 1);
  }
  return ndim;
}

px_devarray *px_devarray_new(lua_State *L, int dtype, int ndim, const int64_t *shape) {
  const px_gpu_backend *b = px_gpu_backend_get();
  if (!b->cuda && b->require) luaL_error(L, "PARX_GPU=require but no GPU: %s", b->reason);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] != 0 && n > ((int64_t)1 << 58) / shape[i]) luaL_error(L, "array too large");
    n *= shape[i];
  }
  px_devarray *d = calloc(1, sizeof *d);
  if (!d) px_oom(L, "gpu array");
  px_shared_init(&d->hdr, &px_devarray_type);
  d->dtype = dtype;
  d->ndim = ndim;
  d->n = n;
  memcpy(d->shape, shape, sizeof(int64_t) * ndim);
  size_t bytes = px_devarray_bytes(d);
  if (b->cuda) {
    int rc = b->cuda->alloc(&d->ptr, bytes);
    if (rc == PXC_ENOMEM) {
      /* Lua's collector does not know how much device memory a proxy
       * holds, so garbage arrays may be what fills the GPU: collect this
       * VM's garbage (their frees are queued) and try once more. */
      lua_gc(L, LUA_GCCOLLECT, 0);
      rc = b->cuda->alloc(&d->ptr, bytes);
    }
    if (rc) {
      free(d);
      px_gpu_raise(L, "gpu array", NULL, rc);
    }
  } else {
    d->on_host = 1;
    d->ptr = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!d->ptr) {
      free(d);
      px_oom(L, "gpu array");
    }
  }
  return d;
}

px_devarray *px_devarray_test(lua_State *L, int idx) {
  return (px_devarray *)px_shared_test(L, idx, &px_devarray_type);
}

static px_devarray *check_devarray(lua_State *L, int idx) {
  return (px_devarray *)px_shared_check(L, idx, &px_devarray_type);
}

void px_gpu_check_operand(lua_State *L, int idx, px_gpu_operand *o) {
  px_devarray *d = px_devarray_test(L, idx);
  if (d) {
    o->obj = &d->hdr;
    o->ptr = d->ptr;
    o->dtype = d->dtype;
    o->ndim = d->ndim;
    o->n = d->n;
    o->on_host = d->on_host;
    o->is_device = 1;
    o->shape = d->shape;
    return;
  }
  px_array *a = px_array_test(L, idx);
  if (!a) luaL_argerror(L, idx, "parx.array or parx.gpu array expected");
  o->obj = &a->hdr;
  o->ptr = a->data;
  o->dtype = a->dtype;
  o->ndim = a->ndim;
  o->n = a->n;
  o->on_host = 1;
  o->is_device = 0;
  o->shape = a->shape;
}

/* ---- methods ------------------------------------------------------------ */

static int devarray_shape(lua_State *L) {
  px_devarray *d = check_devarray(L, 1);
  lua_createtable(L, d->ndim, 0);
  for (int i = 0; i < d->ndim; i++) {
    lua_pushnumber(L, (lua_Number)d->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int devarray_dtype(lua_State *L) {
  lua_pushstring(L, px_dtype_name(check_devarray(L, 1)->dtype));
  return 1;
}

static int devarray_len(lua_State *L) {
  lua_pushnumber(L, (lua_Number)check_devarray(L, 1)->n);
  return 1;
}

static int devarray_ondevice(lua_State *L) {
  lua_pushboolean(L, !check_devarray(L, 1)->on_host);
  return 1;
}

static int devarray_tostring(lua_State *L) {
  px_devarray *d = check_devarray(L, 1);
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  lua_pushfstring(L, "parx.gpu.array(%s, {", px_dtype_name(d->dtype));
  luaL_addvalue(&buf);
  for (int i = 0; i < d->ndim; i++) {
    lua_pushfstring(L, i ? ", %d" : "%d", (int)d->shape[i]);
    luaL_addvalue(&buf);
  }
  lua_pushfstring(L, "}, %s)", d->on_host ? "cpu" : "gpu");
  luaL_addvalue(&buf);
  luaL_pushresult(&buf);
  return 1;
}

/* Copy between the device array d and host memory (download: to host),
 * and return the value on top of L (the array being filled).  On a GPU the
 * copy is queued: held (the source) stays alive until it has run and the
 * task parks until then; the result was pushed before the op is made, so a
 * task that cannot park leaks nothing. */
static int copy_array(lua_State *L, px_devarray *d, void *host, int download, px_shared *held) {
  size_t bytes = px_devarray_bytes(d);
  if (d->on_host) {
    if (download) memcpy(host, d->ptr, bytes);
    else memcpy(d->ptr, host, bytes);
    return 1;
  }
  const pxc_api *cuda = px_gpu_backend_get()->cuda;
  px_gpu_op *op = px_gpu_op_new(L, download ? "gpu download" : "gpu upload");
  px_gpu_op_set_result(L, op);
  px_gpu_op_hold(op, held);
  int rc = download ? cuda->download(host, d->ptr, bytes) : cuda->upload(d->ptr, host, bytes);
  if (rc) return px_gpu_raise(L, download ? "download" : "upload", op, rc);
  return px_gpu_op_finish(L, op);
}

/* d:download([out]) -> host parx.array with the same dtype and shape (out
 * itself when given). */
static int devarray_download(lua_State *L) {
  px_devarray *d = check_devarray(L, 1);
  px_array *out;
  if (!lua_isnoneornil(L, 2)) {
    out = px_array_check(L, 2);
    if (out->dtype != d->dtype || out->n != d->n)
      luaL_argerror(L, 2, "out: same dtype and element count expected");
    lua_settop(L, 2);
  } else {
    /* Written whole by the copy: no need to zero it first. */
    out = px_array_new_uninit(d->dtype, d->ndim, d->shape);
    if (!out) return px_oom(L, "download");
    px_array_push(L, out);
  }
  return copy_array(L, d, out->data, 1, &d->hdr);
}

static int devarray_fill(lua_State *L) {
  px_devarray *d = check_devarray(L, 1);
  double v = luaL_checknumber(L, 2);
  if (d->on_host) {
    px_cpu_fill(d->ptr, d->dtype, d->n, v);
  } else {
    int rc = px_gpu_backend_get()->cuda->fill(d->ptr, d->dtype, d->n, v);
    if (rc) return px_gpu_raise(L, "fill", NULL, rc);
  }
  lua_settop(L, 1);
  return 1;
}

static const luaL_Reg devarray_methods[] = {
    {"shape", devarray_shape},       {"dtype", devarray_dtype},
    {"download", devarray_download}, {"fill", devarray_fill},
    {"numel", devarray_len},         {"on_device", devarray_ondevice},
    {"__len", devarray_len},         {"__tostring", devarray_tostring},
    {NULL, NULL}};

void px_devarray_open(lua_State *L) {
  px_shared_meta(L, &px_devarray_type);
  lua_getfield(L, -1, "download");
  int done = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!done) luaL_register(L, NULL, devarray_methods);
  lua_pop(L, 1);
}

static void devarray_push_any(lua_State *L, px_shared *obj) {
  /* A device array can arrive through the marshaller in a VM that never
   * opened parx.gpu: make sure its methods exist there. */
  px_devarray_open(L);
  px_shared_push(L, obj);
}

void px_devarray_push(lua_State *L, px_devarray *d) { devarray_push_any(L, &d->hdr); }

/* ---- constructors --------------------------------------------------------- */

/* gpu.upload(a) -> device array with a's dtype, shape and contents. */
static int gpu_upload(lua_State *L) {
  px_array *a = px_array_check(L, 1);
  if (px_task_current(L)) px_check_can_park(L); /* before allocating */
  if (a->dtype != PX_FLOAT16 && a->dtype != PX_BFLOAT16 && a->dtype != PX_FLOAT32 &&
      a->dtype != PX_FLOAT64)
    return luaL_argerror(L, 1, "float16, bfloat16, float32 or float64 array expected");
  px_devarray *d = px_devarray_new(L, a->dtype, a->ndim, a->shape);
  px_devarray_push(L, d);
  return copy_array(L, d, a->data, 0, &a->hdr);
}

static int gpu_empty(lua_State *L) {
  int dtype = px_gpu_check_float_dtype(L, 1);
  int64_t shape[PX_ARRAY_MAXDIM];
  int ndim = px_gpu_check_shape(L, 2, shape);
  px_devarray_push(L, px_devarray_new(L, dtype, ndim, shape));
  return 1;
}

static int gpu_zeros(lua_State *L) {
  gpu_empty(L);
  lua_replace(L, 1);
  lua_settop(L, 1);
  lua_pushnumber(L, 0);
  return devarray_fill(L);
}

static uint64_t next_seed(void) {
  static atomic_uint_fast64_t counter;
  uint64_t c = atomic_fetch_add(&counter, 1);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t x = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (c << 40);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static const char *const rand_options[] = {"dist", "host", "seed", NULL};

/* Reads opts at idx: seed (integer), dist ("uniform" or "normal"), host
 * (return a host parx.array computed on the CPU). */
static void rand_opts(lua_State *L, int idx, uint64_t *seed, int *normal, int *host) {
  *seed = next_seed();
  *normal = 0;
  *host = 0;
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  px_check_options(L, idx, "gpu.rand", rand_options);
  lua_getfield(L, idx, "seed");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_argerror(L, idx, "opts.seed: integer expected");
    lua_Number s = lua_tonumber(L, -1);
    if (!(s >= 0 && s < 18446744073709551616.0) || s != floor(s))
      luaL_argerror(L, idx, "opts.seed: non-negative integer expected");
    *seed = (uint64_t)s;
  }
  lua_getfield(L, idx, "dist");
  if (!lua_isnil(L, -1)) {
    const char *dist = lua_tostring(L, -1);
    if (dist && strcmp(dist, "normal") == 0) *normal = 1;
    else if (!dist || strcmp(dist, "uniform") != 0)
      luaL_argerror(L, idx, "opts.dist: \"uniform\" or \"normal\" expected");
  }
  lua_getfield(L, idx, "host");
  *host = lua_toboolean(L, -1);
  lua_pop(L, 3);
}

/* gpu.rand(dtype, shape, {seed=, dist=, host=}) -> device array (or, with
 * host = true, a host parx.array filled by the CPU generator). */
static int gpu_rand(lua_State *L) {
  int dtype = px_gpu_check_float_dtype(L, 1);
  int64_t shape[PX_ARRAY_MAXDIM];
  int ndim = px_gpu_check_shape(L, 2, shape);
  uint64_t seed;
  int normal, host;
  rand_opts(L, 3, &seed, &normal, &host);
  if (host) {
    /* The generator writes it whole: no need to zero it first. */
    px_array *a = px_array_new_uninit(dtype, ndim, shape);
    if (!a) return px_oom(L, "rand");
    px_cpu_rand(a->data, dtype, a->n, seed, normal);
    px_array_push(L, a);
    return 1;
  }
  px_devarray *d = px_devarray_new(L, dtype, ndim, shape);
  if (d->on_host) {
    px_cpu_rand(d->ptr, dtype, d->n, seed, normal);
  } else {
    int rc = px_gpu_backend_get()->cuda->rand(d->ptr, dtype, d->n, seed, normal);
    if (rc) {
      px_shared_release(&d->hdr);
      return px_gpu_raise(L, "rand", NULL, rc);
    }
  }
  px_devarray_push(L, d);
  return 1;
}

static const luaL_Reg constructors[] = {
    {"upload", gpu_upload}, {"empty", gpu_empty}, {"zeros", gpu_zeros},
    {"rand", gpu_rand},     {NULL, NULL}};

void px_gpu_devarray_register(lua_State *L) { luaL_register(L, NULL, constructors); }
