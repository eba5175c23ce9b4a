/*
 * gpu.c -- the parx.c.gpu module: registration, gpu.available(),
 * gpu.device().  The other functions live in devarray.c, ops.c and
 * matmul.c; lua/parx/gpu.lua is the Lua face.
 */
#include <stdio.h>

#include "gpu.h"
#include "platform/blas.h"

static int gpu_available(lua_State *L) {
  const px_gpu_backend *b = px_gpu_backend_get();
  lua_pushboolean(L, b->cuda != NULL);
  if (b->cuda) return 1;
  lua_pushstring(L, b->reason);
  return 2;
}

static void set_string(lua_State *L, const char *key, const char *value) {
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void set_number(lua_State *L, const char *key, double value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

static void version_string(char *out, size_t len, int v) {
  snprintf(out, len, "%d.%d", v / 1000, (v % 1000) / 10);
}

/* gpu.device() -> {name, memory, free_memory, compute_capability = "9.0",
 * multiprocessors, l2_cache, driver, runtime, cublas, index, backend =
 * "cuda"}, or on the CPU path {name, backend = "cpu", threads, reason}. */
static int gpu_device(lua_State *L) {
  const px_gpu_backend *b = px_gpu_backend_get();
  lua_newtable(L);
  if (!b->cuda) {
    char name[64];
    snprintf(name, sizeof name, "CPU (OpenBLAS, %d threads)", px_blas_threads());
    set_string(L, "name", name);
    set_string(L, "backend", "cpu");
    set_number(L, "threads", px_blas_threads());
    set_string(L, "reason", b->reason);
    return 1;
  }
  pxc_device_info info;
  int rc = b->cuda->device_info(&info);
  if (rc != 0) return px_gpu_raise(L, "device", NULL, rc);
  char buf[32];
  set_string(L, "name", info.name);
  set_string(L, "backend", "cuda");
  set_number(L, "index", info.device);
  set_number(L, "memory", (double)info.total_mem);
  set_number(L, "free_memory", (double)info.free_mem);
  snprintf(buf, sizeof buf, "%d.%d", info.major, info.minor);
  set_string(L, "compute_capability", buf);
  set_number(L, "multiprocessors", info.sm_count);
  set_number(L, "l2_cache", (double)info.l2_bytes);
  version_string(buf, sizeof buf, info.driver_version);
  set_string(L, "driver", buf);
  version_string(buf, sizeof buf, info.runtime_version);
  set_string(L, "runtime", buf);
  snprintf(buf, sizeof buf, "%d", info.cublas_version);
  set_string(L, "cublas", buf);
  set_string(L, "module", b->module_path);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"available", gpu_available}, {"device", gpu_device}, {NULL, NULL}};

int px_open_gpu(lua_State *L) {
  px_shared_register(&px_devarray_type);
  px_devarray_open(L);
  lua_newtable(L);
  luaL_register(L, NULL, funcs);
  px_gpu_devarray_register(L);
  px_gpu_ops_register(L);
  px_gpu_matmul_register(L);
  return 1;
}
