/* state.c -- a VM's lua_State: standard libraries, the C modules and the
 * bytecode of the Lua layer preloaded, host-registered functions, and the
 * global `parx`. */
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "core.h"
#include "luamods.h"

static const char vm_key = 0;

px_vm *px_vm_of(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&vm_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  px_vm *vm = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return vm;
}

int px_traceback(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
  }
  return 1; /* non-string error objects pass through untouched */
}

int px_pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs; /* the function's slot */
  lua_pushcfunction(L, px_traceback);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

int px_cpcall(lua_State *L, lua_CFunction fn, void *ud, int nresults) {
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  return px_pcall(L, 1, nresults);
}

static int load_luamod(lua_State *L) {
  const px_luamod *m = lua_touserdata(L, lua_upvalueindex(1));
  char chunkname[128];
  snprintf(chunkname, sizeof chunkname, "=[parx] %s", m->name);
  if (luaL_loadbuffer(L, (const char *)m->code, m->size, chunkname))
    return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

static const struct {
  const char *name;
  lua_CFunction open;
} cmods[] = {
#define XX(name) {"parx.c." #name, px_open_##name},
    PX_MODULES(XX)
#undef XX
};

static int setup(lua_State *L) {
  px_vm *vm = lua_touserdata(L, 1);
  luaL_openlibs(L);

  lua_pushlightuserdata(L, (void *)&vm_key);
  lua_pushlightuserdata(L, vm);
  lua_rawset(L, LUA_REGISTRYINDEX);

  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (size_t i = 0; i < sizeof cmods / sizeof cmods[0]; i++) {
    lua_pushcfunction(L, cmods[i].open);
    lua_setfield(L, -2, cmods[i].name);
  }
  for (const px_luamod *m = px_luamods; m->name; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, load_luamod, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);

  /* Registered before any code ran (parx_register), so no lock: the
   * list no longer changes once workers exist. */
  px_runtime *rt = vm->rt;
  for (int i = 0; i < rt->ncfuncs; i++) {
    lua_pushcfunction(L, rt->cfuncs[i].fn);
    lua_setglobal(L, rt->cfuncs[i].name);
  }

  lua_getglobal(L, "require");
  lua_pushstring(L, "parx");
  lua_call(L, 1, 1);
  lua_setglobal(L, "parx");
  return 0;
}

int px_state_setup(px_vm *vm) {
  lua_State *L = luaL_newstate();
  if (!L) return -1;
  vm->L = L;
  lua_pushcfunction(L, px_traceback);
  lua_pushcfunction(L, setup);
  lua_pushlightuserdata(L, vm);
  if (lua_pcall(L, 1, 0, 1) != 0) {
    px_runtime_set_error(vm->rt, lua_tostring(L, -1));
    if (getenv("PARX_DEBUG")) fprintf(stderr, "parx: VM start-up failed: %s\n", lua_tostring(L, -1));
    lua_close(L);
    vm->L = NULL;
    return -1;
  }
  lua_pop(L, 1);
  return 0;
}
