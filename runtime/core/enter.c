/* enter.c -- entering Lua from C: the protected calls (px_pcall,
 * px_cpcall, with px_traceback as message handler) and the VM a lua_State
 * belongs to (px_vm_of).  At the bottom of the core: every file calls
 * these, they call nothing of parx. */
#include <stdlib.h>

#include "core.h"

static const char vm_key = 0;

void px_vm_bind(lua_State *L, px_vm *vm) {
  lua_pushlightuserdata(L, (void *)&vm_key);
  lua_pushlightuserdata(L, vm);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* px_vm_of runs several times per task (spawn, join, park, every check of
 * the current task), and the registry lookup it needs costs about 80
 * instructions.  Once a VM's state is set up (vm.c), its allocator is
 * wrapped by one that carries the VM: lua_getallocf is then two loads.
 * The wrapper adds one indirect call per allocation.  It is taken off
 * again before lua_close (LuaJIT frees its own arena only when it finds
 * its own allocator there). */
typedef struct bound {
  lua_Alloc alloc; /* LuaJIT's, and its argument */
  void *ud;
  px_vm *vm;
} bound;

static void *bound_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  bound *b = ud;
  return b->alloc(b->ud, ptr, osize, nsize);
}

int px_vm_bind_fast(lua_State *L, px_vm *vm) {
  bound *b = malloc(sizeof *b);
  if (!b) return UV_ENOMEM; /* px_vm_of keeps the registry lookup */
  b->alloc = lua_getallocf(L, &b->ud);
  b->vm = vm;
  lua_setallocf(L, bound_alloc, b);
  return 0;
}

void px_vm_unbind_fast(lua_State *L) {
  void *ud;
  if (lua_getallocf(L, &ud) != bound_alloc) return;
  bound *b = ud;
  lua_setallocf(L, b->alloc, b->ud);
  free(b);
}

px_vm *px_vm_of(lua_State *L) {
  void *ud;
  if (lua_getallocf(L, &ud) == bound_alloc) return ((bound *)ud)->vm;
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

/* ---- the scheduler's protected calls (sched.c, job.c) ------------------- */

typedef struct protect_call {
  int (*fn)(lua_State *L, void *ud);
  void *ud;
} protect_call;

static int protect_trampoline(lua_State *L) {
  protect_call *pc = lua_touserdata(L, 1);
  lua_remove(L, 1);
  return pc->fn(L, pc->ud);
}

/* The trampoline is anchored once per VM (px_sched_open): pushing a C
 * function allocates in LuaJIT, and this runs for every wake. */
void px_sched_protect_anchor(px_vm *vm) {
  lua_pushcfunction(vm->L, protect_trampoline);
  vm->call_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
}

int px_sched_protect(px_vm *vm, int (*fn)(lua_State *, void *), void *ud, int nargs) {
  lua_State *L = vm->L;
  protect_call pc = {fn, ud};
  if (vm->call_ref > 0) lua_rawgeti(L, LUA_REGISTRYINDEX, vm->call_ref);
  else lua_pushcfunction(L, protect_trampoline); /* start-up, before task.lua */
  lua_pushlightuserdata(L, &pc);
  if (nargs) {
    lua_insert(L, -(nargs + 2));
    lua_insert(L, -(nargs + 2));
  }
  return lua_pcall(L, nargs + 1, LUA_MULTRET, 0);
}
