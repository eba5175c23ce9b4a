/* spare.c -- coroutines of finished tasks, reused.
 *
 * A task costs a coroutine: a GC object with its own stack, allocated
 * and then collected, and a registry reference to anchor it, about a
 * third of an async + join.  A coroutine whose function returned (every
 * task's does: its xpcall catches errors) can run another function, so
 * finished ones are kept, anchored, for the next tasks, as LuaJIT-based
 * servers keep their coroutines.  One rule follows: a script must not
 * resume a finished task's coroutine (from coroutine.running()), which
 * may belong to another task by then.
 *
 * Below the scheduler and futures (sched.c, future.c, job.c and the task
 * module take and give back): calls nothing of parx. */
#include "core.h"

lua_State *px_spare_take(px_vm *vm, int *co_ref) {
  if (vm->nspare == 0) return NULL;
  vm->nspare--;
  *co_ref = vm->spare_ref[vm->nspare];
  return vm->spare_co[vm->nspare];
}

void px_spare_give(px_vm *vm, lua_State *co, int co_ref) {
  /* Status 0 is also a running coroutine's: never the current task's. */
  if (vm->nspare < PX_SPARE_COS && lua_status(co) == 0 && !(vm->current && vm->current->co == co)) {
    lua_settop(co, 0);
    vm->spare_co[vm->nspare] = co;
    vm->spare_ref[vm->nspare] = co_ref;
    vm->nspare++;
    return;
  }
  luaL_unref(vm->L, LUA_REGISTRYINDEX, co_ref);
}
