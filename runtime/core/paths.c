/* paths.c -- workers search the same package.path and package.cpath as the
 * sender (DESIGN.md, "Crossing VMs").
 *
 * A VM that marshals code (a Lua function or a module by name) publishes
 * its search paths to the runtime when they differ from what it last saw;
 * a VM that unmarshals code adopts the runtime's paths first when they
 * changed since it last looked.  Data-only messages pay nothing, and code
 * messages pay a pointer compare while the paths stay the same.  When two
 * VMs set different paths the last one to send code wins.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* The key strings push_paths looks up, interned once per state (a
 * registry table under keys_key): lua_getfield interns its key on every
 * call, and every send of code reads these (issue 13). */
static const char keys_key = 0;
static const char *const key_names[] = {"_LOADED", "package", "path", "cpath"};

static int push_keys(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&keys_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) == LUA_TTABLE) return lua_gettop(L);
  lua_pop(L, 1);
  lua_createtable(L, 4, 0);
  for (int i = 0; i < 4; i++) {
    lua_pushstring(L, key_names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushlightuserdata(L, (void *)&keys_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return lua_gettop(L);
}

/* Push package.path and package.cpath (either may be nil): what
 * lua_getfield would read, with the keys from push_keys. */
static void push_paths(lua_State *L) {
  int keys = push_keys(L);
  lua_rawgeti(L, keys, 1);
  lua_rawget(L, LUA_REGISTRYINDEX); /* _LOADED */
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_rawgeti(L, keys, 2);
    lua_gettable(L, -2); /* package */
  }
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_settop(L, keys - 1);
    lua_pushnil(L);
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, keys, 3);
  lua_gettable(L, -2);
  lua_rawgeti(L, keys, 4);
  lua_gettable(L, -3);
  lua_replace(L, keys + 1);
  lua_replace(L, keys);
  lua_settop(L, keys + 1);
}

static int same(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

static void keep(char **slot, const char *s) {
  if (same(*slot, s)) return;
  free(*slot);
  *slot = s ? strdup(s) : NULL;
}

void px_paths_publish(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  if (!vm) return; /* a lua_State that is not a parx VM (tests, hosts) */
  push_paths(L);
  const char *path = lua_tostring(L, -2), *cpath = lua_tostring(L, -1);
  if (path == vm->seen_path_ptr && cpath == vm->seen_cpath_ptr) {
    lua_pop(L, 2);
    if (vm->rt->preload_publish) vm->rt->preload_publish(L, vm);
    return;
  }
  vm->seen_path_ptr = path;
  vm->seen_cpath_ptr = cpath;
  if (!same(path, vm->path) || !same(cpath, vm->cpath)) {
    keep(&vm->path, path);
    keep(&vm->cpath, cpath);
    px_runtime *rt = vm->rt;
    pthread_mutex_lock(&rt->lock);
    keep(&rt->path, path);
    keep(&rt->cpath, cpath);
    vm->paths_gen = atomic_fetch_add(&rt->paths_gen, 1) + 1;
    pthread_mutex_unlock(&rt->lock);
  }
  lua_pop(L, 2);
  /* package.preload travels the same way (marshal_preload.c) */
  if (vm->rt->preload_publish) vm->rt->preload_publish(L, vm);
}

void px_paths_sync(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  if (!vm) return;
  px_runtime *rt = vm->rt;
  if (atomic_load_explicit(&rt->paths_gen, memory_order_acquire) == vm->paths_gen) return;
  pthread_mutex_lock(&rt->lock);
  vm->paths_gen = atomic_load(&rt->paths_gen);
  keep(&vm->path, rt->path);
  keep(&vm->cpath, rt->cpath);
  pthread_mutex_unlock(&rt->lock);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "package");
  if (lua_type(L, -1) == LUA_TTABLE) {
    if (vm->path) {
      lua_pushstring(L, vm->path);
      lua_setfield(L, -2, "path");
    }
    if (vm->cpath) {
      lua_pushstring(L, vm->cpath);
      lua_setfield(L, -2, "cpath");
    }
  }
  lua_pop(L, 2);
  vm->seen_path_ptr = vm->seen_cpath_ptr = NULL;
  if (rt->preload_sync) rt->preload_sync(L, vm); /* package.preload too */
}

void px_paths_free(px_vm *vm) {
  free(vm->path);
  free(vm->cpath);
  vm->path = vm->cpath = NULL;
}
