/* copool.c -- finished task coroutines kept for the next task of the VM.
 *
 * A task needs a coroutine and a registry reference anchoring it; making
 * both (lua_newthread, luaL_ref) and collecting them later is a good part
 * of what a task costs.  A coroutine whose function returned is as good
 * as a new one (LuaJIT's lua_resume starts it again from its emptied
 * stack), so the scheduler hands it back here with its reference when its
 * task is freed, and the next task of that VM takes it, as Go reuses a
 * finished goroutine's stack.  An async task's coroutine holds its results
 * until its future is collected and is not handed back then (future.c).
 *
 * Only a coroutine that returned comes back (status 0: not one that
 * raised, nor one parked at shutdown), with its stack emptied, and only
 * if its globals are the VM's (a task that called setfenv(0, t) keeps its
 * own and is dropped); a taker whose globals differ makes a fresh one.
 * At most POOL_MAX wait per VM.  The pool is a userdata in the registry,
 * so it goes with the lua_State; its __gc detaches it from the VM first.
 */
#include "core.h"

#define POOL_MAX 256

struct px_copool {
  px_vm *vm;
  int n;
  struct {
    lua_State *co;
    int ref;
  } slot[POOL_MAX];
};

static int pool_gc(lua_State *L) {
  px_copool *p = lua_touserdata(L, 1);
  if (p->vm && p->vm->copool == p) p->vm->copool = NULL;
  p->n = 0; /* the coroutines and their references go with the registry */
  return 0;
}

/* Make vm's pool (may raise: memory). */
static void make_pool(lua_State *L, px_vm *vm) {
  px_copool *p = lua_newuserdata(L, sizeof *p);
  p->vm = vm;
  p->n = 0;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, pool_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  luaL_ref(L, LUA_REGISTRYINDEX); /* anchored until the state closes */
  vm->copool = p;
}

lua_State *px_copool_take(lua_State *L, px_vm *vm, int *ref) {
  px_copool *p = vm->copool;
  if (!p) {
    make_pool(L, vm);
    return NULL;
  }
  if (p->n == 0) return NULL;
  lua_State *co = p->slot[p->n - 1].co;
  /* lua_newthread would give it L's globals: reuse only when those are
   * the ones it has. */
  if (lua_topointer(L, LUA_GLOBALSINDEX) != lua_topointer(co, LUA_GLOBALSINDEX)) return NULL;
  p->n--;
  *ref = p->slot[p->n].ref;
  return co;
}

void px_copool_put(px_vm *vm, lua_State *co, int ref) {
  px_copool *p = vm->copool;
  if (p && p->n < POOL_MAX && co && co != vm->L && lua_status(co) == 0 &&
      lua_topointer(co, LUA_GLOBALSINDEX) == lua_topointer(vm->L, LUA_GLOBALSINDEX)) {
    lua_settop(co, 0);
    p->slot[p->n].co = co;
    p->slot[p->n].ref = ref;
    p->n++;
    return;
  }
  luaL_unref(vm->L, LUA_REGISTRYINDEX, ref);
}
