/* sched.c -- tasks: coroutines of one VM, parked and woken.
 *
 * A parked task yields the park marker up to px_sched_run_ready, which
 * resumes it when its px_wait is delivered.  deliver() runs protected, on
 * the VM's main state (a suspended coroutine has no protected frame: an
 * error thrown on it, by a failing __gc during an allocation or by running
 * out of memory, would reach the panic handler); its results are then
 * moved to the task, and an error there becomes the task's error.
 *
 * Every task runs under LuaJIT's own xpcall with a message handler
 * (task_msgh), so the traceback of an uncaught error is built where it was
 * raised and names the faulting line.
 *
 * A task that parks inside a coroutine of its own (coroutine.resume and
 * wrap in lib_base.c) forwards the park: each resumer between it and the
 * task yields [child, wrap, forward marker], and the scheduler resumes the
 * innermost coroutine directly when the wait ends, handing what it yields,
 * returns or raises back to its resumer (run_chain).
 *
 * Errors are injected into a parked task (cancellation, deadlock) with a
 * one-instruction count hook: the hook fires on the first Lua instruction
 * after the resume and raises the error there, so the task unwinds through
 * its own pcalls and finalisers like any other error.  LuaJIT's hooks are
 * per VM, which is what we want: exactly one coroutine runs next.  The
 * user's own hook (luacov, a debugger) is saved when the injection is
 * armed and put back when it fires, so it keeps running.  One case is
 * treated apart: a C function that pcall or xpcall called itself
 * (pcall(parx.sleep, 1)) returns straight out of pcall when resumed, so
 * the first instruction is already in pcall's caller; there the hook
 * rewrites pcall's results to false and the error (arm_inject).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "future.h"

static void make_ready(px_vm *vm, px_task *t) {
  t->state = PX_TASK_READY;
  t->next_ready = NULL;
  t->prev_ready = vm->ready_tail;
  if (vm->ready_tail) vm->ready_tail->next_ready = t;
  else vm->ready_head = t;
  vm->ready_tail = t;
}

static void unlink_ready(px_vm *vm, px_task *t) {
  if (t->prev_ready) t->prev_ready->next_ready = t->next_ready;
  else vm->ready_head = t->next_ready;
  if (t->next_ready) t->next_ready->prev_ready = t->prev_ready;
  else vm->ready_tail = t->prev_ready;
  t->next_ready = t->prev_ready = NULL;
}

static px_task *pop_ready(px_vm *vm) {
  px_task *t = vm->ready_head;
  if (t) unlink_ready(vm, t);
  return t;
}

px_task *px_task_new_from(px_vm *vm, lua_State *L, lua_State *co, px_future *h, int guarded) {
  /* The reference first: it may raise (memory), and nothing is owned yet.
   * Every state of the VM shares its registry. */
  int co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops co from L */
  return px_task_new_ref(vm, co, co_ref, h, guarded);
}

px_task *px_task_new_ref(px_vm *vm, lua_State *co, int co_ref, px_future *h, int guarded) {
  px_task *t = malloc(sizeof *t); /* not calloc: it skips glibc's thread cache */
  if (t) memset(t, 0, sizeof *t);
  if (!t) {
    luaL_unref(vm->L, LUA_REGISTRYINDEX, co_ref);
    return NULL;
  }
  t->msgh = guarded;
  t->vm = vm;
  t->co = co;
  t->co_ref = co_ref;
  t->inject_ref = LUA_NOREF;
  t->future = h;
  t->nargs = lua_gettop(co) - 1;
  pthread_mutex_lock(&vm->inbox_lock);
  t->next = vm->tasks;
  if (vm->tasks) vm->tasks->prev = t;
  vm->tasks = t;
  vm->ntasks++;
  pthread_mutex_unlock(&vm->inbox_lock);
  make_ready(vm, t);
  return t;
}

px_task *px_task_new(px_vm *vm, lua_State *co, px_future *h) {
  return px_task_new_from(vm, vm->L, co, h, 0);
}

static void task_free(px_vm *vm, px_task *t) {
  pthread_mutex_lock(&vm->inbox_lock);
  if (t->prev) t->prev->next = t->next;
  else vm->tasks = t->next;
  if (t->next) t->next->prev = t->prev;
  vm->ntasks--;
  pthread_mutex_unlock(&vm->inbox_lock);
  if (t->co_ref != LUA_NOREF) px_copool_put(vm, t->co, t->co_ref);
  t->co_ref = LUA_NOREF;
  if (t->inject_ref != LUA_NOREF) luaL_unref(vm->L, LUA_REGISTRYINDEX, t->inject_ref);
  t->inject_ref = LUA_NOREF;
  if (t->stale_wakes > 0) {
    /* A wake of a failed park still points here: px_sched_deliver frees
     * the struct when the last one came. */
    t->state = PX_TASK_DONE;
    t->co = NULL;
    t->future = NULL;
    return;
  }
  px_trace_task_free(&t->trace);
  free(t);
}

/* A park that never happened.  px_park's lua_yield raises when the task
 * waits where LuaJIT cannot yield (inside a C call: a table.sort
 * comparator, a string.gsub callback, a metamethod or __gc called from C),
 * after the wait was registered with its source: the error unwinds into
 * the task, which runs on (or ends) with t->wait still set.  Detach that
 * wait as a cancel would; a wake already on its way is dropped when it
 * comes (px_sched_deliver), and the task's struct waits for it. */
static void drop_failed_park(px_vm *vm, px_task *t) {
  px_wait *w = t->wait;
  t->wait = NULL;
  int armed = w->armed, external = w->external, detached = 0;
  if (armed != 2 && w->cancel) {
    w->armed = 0;
    detached = w->cancel(w); /* may free w */
    if (!detached) w->armed = armed;
  }
  if (detached) {
    if (external) px_vm_release(vm);
  } else {
    t->stale_wakes++;
    vm->stale_wakes++;
  }
}

/* ---- parking ------------------------------------------------------- */

px_task *px_task_current(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  return vm ? vm->current : NULL;
}

static int raise_cancelled(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->cancelled_ref);
  return lua_error(L);
}

void px_check_can_park(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  px_task *t = vm ? vm->current : NULL;
  if (!t) luaL_error(L, "cannot wait here: not inside a parx task");
  if (t->future && atomic_load(&t->future->cancel_requested)) raise_cancelled(L);
}

int px_wait_try_prepare(lua_State *L, px_wait *w) {
  px_vm *vm = px_vm_of(L);
  px_task *t = vm ? vm->current : NULL;
  if (!t || (t->future && atomic_load(&t->future->cancel_requested))) return -1;
  if (t->wait) drop_failed_park(vm, t);
  w->task = vm->current;
  w->vm = vm;
  w->armed = 1;
  if (w->external) px_vm_hold(vm);
  return 0;
}

void px_wait_prepare(lua_State *L, px_wait *w) {
  px_check_can_park(L);
  if (px_wait_try_prepare(L, w) != 0) px_check_can_park(L); /* cancelled meanwhile: raises */
}

/* A park inside a coroutine of the task (lib_base.c's resume saw child
 * yield the park marker, or forward one): L yields [child, wrap, marker]
 * in turn, up to the task's own coroutine.  deliver() pushes the results
 * onto the innermost coroutine, which run_chain resumes directly. */
static const char forward_marker = 0;

int px_sched_is_forwarding(lua_State *co) {
  return lua_status(co) == LUA_YIELD && lua_gettop(co) >= 3 &&
         lua_touserdata(co, -1) == (void *)&forward_marker;
}

static lua_State *innermost(lua_State *co) {
  while (px_sched_is_forwarding(co)) co = lua_tothread(co, -3);
  return co;
}

int px_sched_forward(lua_State *L, lua_State *child, int wrap) {
  if (!px_sched_is_forwarding(child)) lua_settop(child, 0); /* the park marker */
  lua_settop(L, 0);
  lua_pushthread(child);
  lua_xmove(child, L, 1);
  lua_pushboolean(L, wrap);
  lua_pushlightuserdata(L, (void *)&forward_marker);
  return lua_yield(L, 3);
}

int px_park(lua_State *L, px_wait *w) {
  if (!w->armed) px_wait_prepare(L, w);
  w->task->wait = w;
  lua_pushlightuserdata(L, (void *)&px_park_marker);
  return lua_yield(L, 1);
}

/* ---- delivery ------------------------------------------------------ */

static int deliver_call(lua_State *L, void *ud) {
  px_wait *w = ud;
  return w->deliver(L, w);
}

static int control_call(lua_State *L, void *ud) {
  px_wait *w = ud;
  w->deliver(L, w);
  return 0;
}

static void set_inject(px_vm *vm, px_task *t);

void px_sched_deliver(px_vm *vm, px_wait *w) {
  if (!w->task) {
    /* A control message (cancel request, poke): run it on this thread.
     * Nobody waits for it: a failure is a line on stderr. */
    int base = lua_gettop(vm->L);
    if (px_sched_protect(vm, control_call, w, 0) != 0) {
      const char *msg = lua_tostring(vm->L, -1);
      fprintf(stderr, "parx: a control message failed on VM %d: %s\n", vm->id, msg ? msg : "?");
    }
    lua_settop(vm->L, base);
    return;
  }
  px_task *t = w->task;
  w->armed = 0;
  if (w->external) px_vm_release(vm);
  if (t->stale_wakes > 0 && t->wait != w) {
    /* The wake of a park that failed (drop_failed_park). */
    if (w->discard) w->discard(w);
    vm->stale_wakes--;
    if (vm->expect_wakes > 0) vm->expect_wakes--;
    if (--t->stale_wakes == 0 && t->state == PX_TASK_DONE && !t->co) {
      px_trace_task_free(&t->trace);
      free(t);
    }
    return;
  }
  if (t->wake_in_flight || t->state != PX_TASK_PARKED || t->wait != w) {
    /* Cancelled while the wake was on its way: drop the results. */
    t->wake_in_flight = 0;
    if (w->discard) w->discard(w);
    if (t->state == PX_TASK_PARKED && t->wait == w) {
      t->wait = NULL;
      vm->nparked--;
      make_ready(vm, t);
    }
    if (vm->expect_wakes > 0) vm->expect_wakes--;
    return;
  }
  t->wait = NULL;
  vm->nparked--;
  px_trace_woken(vm, t, w);
  t->nargs = 0;
  if (w->deliver) {
    /* deliver() pushes its results onto the VM's own state, never onto
     * the parked coroutine: Lua code it runs (the unmarshaller's FFI
     * helper, a require) must not run on a suspended coroutine.  Any
     * error thrown there, even one caught at once (LuaJIT's trace
     * recorder throws and catches its own aborts), sets that coroutine's
     * status to "not suspended" (lj_err_throw), and its next resume then
     * calls the first value on its stack ("attempt to call a number
     * value", seen under load). */
    lua_State *L = vm->L;
    int base = lua_gettop(L), ok = 1;
    if (vm->gc_threshold) {
      /* The fast way (sched_lj.c): no GC step, so no __gc, can run while
       * deliver() pushes, unprotected. */
      uint64_t threshold = *vm->gc_threshold;
      *vm->gc_threshold = vm->gc_stopped;
      /* The LUA_MINSTACK slots a C function's frame would have: the
       * API's pushes do not check (growing fails only for want of
       * memory, unprotected, as above). */
      lua_checkstack(L, LUA_MINSTACK);
      int n = w->deliver(L, w);
      *vm->gc_threshold = threshold;
      while (lua_gettop(L) - base > n) lua_remove(L, base + 1);
    } else {
      ok = px_sched_protect(vm, deliver_call, w, 0) == 0;
    }
    if (ok) {
      int n = lua_gettop(L) - base;
      /* The parked C function's frame guarantees LUA_MINSTACK slots; only
       * more than that needs growing co's stack (which can fail only for
       * want of memory, unprotected: a known limit). */
      lua_State *target = innermost(t->co);
      if (n >= LUA_MINSTACK && !lua_checkstack(target, n + 1)) {
        lua_settop(L, base);
        lua_pushliteral(L, "parx: too many results to resume a task with");
        set_inject(vm, t);
      } else {
        lua_xmove(L, target, n);
        t->nargs = n;
      }
    } else {
      /* The task resumes with the error (a failing __gc, no memory). */
      set_inject(vm, t);
    }
  }
  make_ready(vm, t);
}

/* ---- error injection ------------------------------------------------ */

static void restore_hook(px_vm *vm) {
  lua_sethook(vm->L, vm->saved_hook, vm->saved_mask, vm->saved_count);
  vm->saved_hook = NULL;
  vm->saved_mask = vm->saved_count = 0;
}

static void save_hook(px_vm *vm, lua_Hook mine) {
  lua_Hook h = lua_gethook(vm->L);
  if (h == mine) return; /* already saved */
  vm->saved_hook = h;
  vm->saved_mask = h ? lua_gethookmask(vm->L) : 0;
  vm->saved_count = h ? lua_gethookcount(vm->L) : 0;
}

/* The pcall'd-C-function case (arm_inject): in pcall's caller, register
 * slot holds pcall's status (true, as the C function "returned") and the
 * next one its first result.  Anything else (the caller was not the
 * function we looked at) and the error is raised here instead. */
static int fix_pcall_results(px_vm *vm, lua_State *L, lua_Debug *ar) {
  int slot = vm->inject_slot;
  lua_State *co = vm->inject_co;
  vm->inject_slot = 0;
  vm->inject_co = NULL;
  if (!slot || L != co || !lua_getlocal(L, ar, slot)) return 0;
  int was_true = lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!was_true) return 0;
  lua_pushboolean(L, 0);
  if (!lua_setlocal(L, ar, slot)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushvalue(L, -1); /* the error, under this hook's frame */
  if (!lua_setlocal(L, ar, slot + 1)) lua_pop(L, 1);
  return 1;
}

static void inject_hook(lua_State *L, lua_Debug *ar) {
  px_vm *vm = px_vm_of(L);
  restore_hook(vm);
  int ref = vm->hook_ref;
  vm->hook_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  if (fix_pcall_results(vm, L, ar)) {
    lua_pop(L, 1);
    return;
  }
  lua_error(L);
}

/* The register of the Lua function that called pcall/xpcall, which called
 * the C function parked at the top of co, where pcall's results go: its
 * own slot, the first one above the caller's visible registers (LuaJIT's
 * lua_getlocal names every register up to the next frame).  0 when that
 * is not the shape of co's stack. */
static int pcall_result_slot(px_vm *vm, lua_State *co) {
  lua_Debug ar;
  if (vm->base_ref <= 0 || !lua_getstack(co, 0, &ar) || !lua_getinfo(co, "S", &ar) ||
      ar.what[0] != 'C' || !lua_getstack(co, 1, &ar) || !lua_getinfo(co, "f", &ar))
    return 0;
  lua_rawgeti(co, LUA_REGISTRYINDEX, vm->base_ref);
  lua_rawgeti(co, -1, 1); /* pcall */
  lua_rawgeti(co, -2, 2); /* xpcall */
  int is_pcall = lua_rawequal(co, -1, -4) || lua_rawequal(co, -2, -4);
  lua_pop(co, 4);
  if (!is_pcall || !lua_getstack(co, 2, &ar) || !lua_getinfo(co, "S", &ar) || ar.what[0] == 'C')
    return 0;
  int n = 0;
  while (lua_getlocal(co, &ar, n + 1)) {
    lua_pop(co, 1);
    n++;
  }
  return n + 1;
}

/* Arm the pending error of t for run, the coroutine about to resume.  When
 * run's top is a C function that pcall called itself, the resume carries
 * one value (so pcall "returns" two) and the hook rewrites them. */
static int arm_inject(px_vm *vm, px_task *t, lua_State *run, int nargs) {
  vm->hook_ref = t->inject_ref;
  t->inject_ref = LUA_NOREF;
  vm->inject_slot = lua_status(run) == LUA_YIELD ? pcall_result_slot(vm, run) : 0;
  vm->inject_co = run;
  if (vm->inject_slot) {
    lua_pop(run, nargs);
    lua_pushboolean(run, 0);
    nargs = 1;
  }
  save_hook(vm, inject_hook);
  lua_sethook(vm->L, inject_hook, LUA_MASKCOUNT, 1);
  return nargs;
}

/* os.exit: every Lua instruction raises the exit marker from now until the
 * task's resume returns (resume), so no pcall, xpcall handler or
 * coroutine.resume in the task can keep it. */
static void exit_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_pushlightuserdata(L, (void *)&px_exit_marker);
  lua_error(L);
}

void px_sched_exit(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  if (!vm) return;
  if (lua_gethook(vm->L) != inject_hook) save_hook(vm, exit_hook);
  vm->hook_ref = LUA_NOREF; /* never armed: os.exit ran Lua code */
  lua_sethook(vm->L, exit_hook, LUA_MASKCOUNT, 1);
}

/* The message handler of every task.  The error value stays as it was
 * raised (join re-raises it: a string error stays "file:line: boom", a
 * table the same table); the traceback, built here at the point of error
 * (a dead coroutine's top frame has lost its line), is kept apart in the
 * task's future (t:traceback(), and the uncaught-error report), without
 * the task's own xpcall at the bottom (LuaJIT names it "[builtin#21]" or
 * "[C]").  Not for the cancellation or os.exit's marker: neither is a
 * failure. */
static int task_msgh(lua_State *L) {
  lua_settop(L, 1);
  px_vm *vm = px_vm_of(L);
  px_task *t = vm ? vm->current : NULL;
  if (!t || !t->future || t->future->traceback || t->co != L ||
      lua_touserdata(L, 1) == (void *)&px_exit_marker)
    return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->cancelled_ref);
  int cancelled = lua_rawequal(L, 1, 2);
  lua_pop(L, 1);
  if (cancelled) return 1;
  luaL_traceback(L, L, NULL, 1);
  size_t len;
  const char *tb = lua_tolstring(L, -1, &len);
  const char *last = tb + len;
  while (last > tb && last[-1] != '\n') last--;
  if (last > tb && (strncmp(last, "\t[C]: ", 6) == 0 || strncmp(last, "\t[builtin#", 10) == 0))
    len = (size_t)(last - tb - 1);
  char *copy = malloc(len + 1);
  if (copy) {
    memcpy(copy, tb, len);
    copy[len] = 0;
    t->future->traceback = copy; /* read once the future has ended */
  }
  lua_settop(L, 1);
  return 1;
}

/* Once per VM, at its start-up (vm.c, through px_state_setup, protected),
 * after the standard libraries and before any script: LuaJIT's own pcall
 * and xpcall and the tasks' message handler (guard), the protected-call
 * trampoline of deliver(), the GC threshold.  The cancellation object is
 * state.c's (make_cancelled). */
int px_sched_open(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  if (!vm) return 0;
  if (vm->base_ref <= 0) {
    /* LuaJIT's own, as they are before any script ran. */
    lua_createtable(L, 3, 0);
    lua_getglobal(L, "pcall");
    lua_rawseti(L, -2, 1);
    lua_getglobal(L, "xpcall");
    lua_rawseti(L, -2, 2);
    lua_pushcfunction(L, task_msgh);
    lua_rawseti(L, -2, 3);
    vm->base_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (vm->call_ref <= 0) {
    px_sched_protect_anchor(vm);
    vm->gc_threshold = px_sched_lj_threshold(vm->L, &vm->gc_stopped);
    if (getenv("PARX_DEBUG")) fprintf(stderr, "parx: VM %d GC threshold %s\n", vm->id, vm->gc_threshold ? "found" : "not found (deliver() uses a protected call)");
  }
  return 0;
}

/* Make t raise the value on top of vm->L (popped) when it next runs. */
static void set_inject(px_vm *vm, px_task *t) {
  if (t->inject_ref != LUA_NOREF) {
    lua_pop(vm->L, 1); /* the first error wins */
    return;
  }
  t->inject_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
}

/* Detach parked t from its wait source.  Returns 1 if it no longer waits,
 * 0 if a wake is already on its way (t->wake_in_flight is then set and the
 * wake will be discarded).  A cancel() that returns 1 may free w (px.h):
 * what is needed afterwards is read before calling it. */
static int detach_wait(px_vm *vm, px_task *t) {
  px_wait *w = t->wait;
  int armed = w->armed, external = w->external, detached = 0;
  if (armed != 2 && w->cancel) {
    w->armed = 0;
    detached = w->cancel(w);
    if (!detached) w->armed = armed;
  }
  if (!detached) {
    t->wake_in_flight = 1;
    return 0;
  }
  if (external) px_vm_release(vm);
  t->wait = NULL;
  vm->nparked--;
  return 1;
}

/* VM thread.  The error value is on top of vm->L (popped).  A task that
 * never ran ends at once with it, without running a line. */
void px_task_raise(px_task *t) {
  px_vm *vm = t->vm;
  if (t->state == PX_TASK_READY && t->inject_ref == LUA_NOREF && vm->current != t &&
      lua_status(t->co) == 0) {
    unlink_ready(vm, t);
    lua_settop(t->co, 0);
    lua_xmove(vm->L, t->co, 1);
    t->state = PX_TASK_DONE;
    px_future_finish(t->future, t, LUA_ERRRUN);
    task_free(vm, t);
    return;
  }
  set_inject(vm, t);
  if (t->state == PX_TASK_PARKED && !t->wake_in_flight && detach_wait(vm, t))
    make_ready(vm, t);
}

/* ---- running ------------------------------------------------------- */

int px_sched_guard_values(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  if (!vm || vm->base_ref <= 0) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->base_ref);
  lua_rawgeti(L, -1, 2);
  lua_rawgeti(L, -2, 3);
  lua_remove(L, -3);
  return 1;
}

/* A task's first resume: run its function under xpcall with the message
 * handler.  Its stack is [fn, args...]; becomes [xpcall, fn, msgh, args...]. */
static int guard(px_vm *vm, px_task *t, int nargs) {
  lua_State *co = t->co;
  if (vm->base_ref <= 0 || !lua_checkstack(co, 3)) return nargs;
  lua_rawgeti(co, LUA_REGISTRYINDEX, vm->base_ref);
  lua_rawgeti(co, -1, 2);
  lua_insert(co, 1);
  lua_rawgeti(co, -1, 3);
  lua_insert(co, 3);
  lua_pop(co, 1);
  t->msgh = 1;
  return nargs + 2;
}

/* luaL_where(co, 1) pushed onto L: nothing may allocate on co, a
 * suspended coroutine (px_sched_deliver says why). */
static void push_where(lua_State *L, lua_State *co) {
  lua_Debug ar;
  if (lua_getstack(co, 1, &ar) && lua_getinfo(co, "Sl", &ar) && ar.currentline > 0)
    lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
  else
    lua_pushliteral(L, "");
}

/* What a coroutine of the task yielded, returned or raised (status), moved
 * to its resumer as the results of that coroutine.resume or wrap call;
 * returns how many.  A wrap's error is raised in the resumer.  Strings
 * are made on the VM's state and moved: parent is suspended. */
static int hand_back(px_vm *vm, px_task *t, lua_State *parent, lua_State *child, int status, int wrap) {
  lua_settop(parent, 0);
  if (status == 0 || status == LUA_YIELD) {
    int n = lua_gettop(child);
    if (!lua_checkstack(parent, n + 1)) {
      lua_settop(child, 0);
      lua_pushboolean(parent, 0);
      lua_pushliteral(vm->L, "too many results to resume");
      lua_xmove(vm->L, parent, 1);
      return 2;
    }
    if (!wrap) lua_pushboolean(parent, 1);
    lua_xmove(child, parent, n);
    return n + !wrap;
  }
  if (!wrap) {
    lua_pushboolean(parent, 0);
    lua_xmove(child, parent, 1);
    return 2;
  }
  if (lua_gethook(vm->L) == exit_hook) return 0; /* raises anyway */
  lua_xmove(child, vm->L, 1);
  if (lua_type(vm->L, -1) == LUA_TSTRING) {
    push_where(vm->L, parent);
    lua_insert(vm->L, -2);
    lua_concat(vm->L, 2);
  }
  set_inject(vm, t);
  return 0;
}

/* Resume the task's innermost coroutine and, each time one ends its turn
 * without parking, its resumer, up to the task's own coroutine; returns
 * that one's status (LUA_YIELD also when the task parked deeper). */
static int run_chain(px_vm *vm, px_task *t, int nargs) {
  lua_State *co = t->co;
  lua_State *run = co;
  while (px_sched_is_forwarding(run)) run = lua_tothread(run, -3);
  for (;;) {
    if (t->inject_ref != LUA_NOREF && lua_gethook(vm->L) != exit_hook)
      nargs = arm_inject(vm, t, run, nargs);
    int status = lua_resume(run, nargs);
    if (run == co) return status;
    if (status == LUA_YIELD && lua_gettop(run) >= 1 && t->wait &&
        (lua_touserdata(run, -1) == (void *)&px_park_marker || px_sched_is_forwarding(run))) {
      if (!px_sched_is_forwarding(run)) lua_settop(run, 0);
      return LUA_YIELD; /* parked again: co still forwards down to it */
    }
    if (vm->hook_ref != LUA_NOREF) {
      /* run ran no Lua instruction: the error is for its resumer. */
      restore_hook(vm);
      vm->inject_slot = 0;
      vm->inject_co = NULL;
      if (t->inject_ref == LUA_NOREF) t->inject_ref = vm->hook_ref;
      else luaL_unref(vm->L, LUA_REGISTRYINDEX, vm->hook_ref);
      vm->hook_ref = LUA_NOREF;
    }
    lua_State *parent = co;
    while (lua_tothread(parent, -3) != run) parent = lua_tothread(parent, -3);
    nargs = hand_back(vm, t, parent, run, status, lua_toboolean(parent, -2));
    run = parent;
  }
}

static void resume(px_vm *vm, px_task *t) {
  lua_State *co = t->co;
  int nargs = t->nargs;
  t->nargs = 0;
  if (lua_status(co) == 0 && !t->msgh) nargs = guard(vm, t, nargs);
  t->state = PX_TASK_RUNNING;
  vm->current = t;
  uint64_t t0 = px_trace_run_begin(vm, t);
  int status = run_chain(vm, t, nargs);
  vm->current = NULL;
  px_trace_run_end(vm, t, t0);
  if (lua_gethook(vm->L) == exit_hook) {
    /* os.exit ran in this task: it ends with the exit marker, whatever
     * it did after (a pcall returned it, the function returned). */
    restore_hook(vm);
    if (status != LUA_YIELD) {
      lua_settop(co, 0);
      lua_pushlightuserdata(co, (void *)&px_exit_marker);
      status = LUA_ERRRUN;
      t->msgh = 0;
    }
  }
  if (vm->hook_ref != LUA_NOREF) {
    /* The task ran no Lua instruction (its body is a C function): the
     * error was not raised; end the task with it. */
    restore_hook(vm);
    vm->inject_slot = 0;
    vm->inject_co = NULL;
    lua_settop(co, 0);
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->hook_ref);
    luaL_unref(vm->L, LUA_REGISTRYINDEX, vm->hook_ref);
    vm->hook_ref = LUA_NOREF;
    status = LUA_ERRRUN;
    t->msgh = 0;
  }
  int forwarding = status == LUA_YIELD && px_sched_is_forwarding(co);
  int parked = status == LUA_YIELD && t->wait &&
               (forwarding || (lua_gettop(co) >= 1 && lua_touserdata(co, -1) == (void *)&px_park_marker));
  if (!parked && t->wait) drop_failed_park(vm, t);
  if (status == LUA_YIELD) {
    if (parked) {
      if (!forwarding) lua_settop(co, 0);
      t->state = PX_TASK_PARKED;
      vm->nparked++;
    } else {
      /* coroutine.yield() at a task's top level: let others run.  It is a
       * park point too: a cancelled task gets the cancellation back. */
      lua_settop(co, 0);
      make_ready(vm, t);
      if (t->future && t->inject_ref == LUA_NOREF && atomic_load(&t->future->cancel_requested)) {
        lua_rawgeti(vm->L, LUA_REGISTRYINDEX, vm->cancelled_ref);
        set_inject(vm, t);
      }
    }
    return;
  }
  if (status == 0 && t->msgh) {
    /* xpcall's status first: false, the error (with its traceback). */
    if (!lua_toboolean(co, 1)) {
      lua_settop(co, 2);
      status = LUA_ERRRUN;
    }
    lua_remove(co, 1);
  }
  if (status == 0 && t->future && atomic_load(&t->future->cancel_requested)) {
    /* Asked to cancel, and it returned anyway (it caught the cancellation,
     * or never reached a park point): it ends cancelled all the same. */
    lua_settop(co, 0);
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->cancelled_ref);
    status = LUA_ERRRUN;
  }
  t->state = PX_TASK_DONE;
  px_trace_task_end(vm, t);
  px_future_finish(t->future, t, status);
  task_free(vm, t);
}

/* Run ready task t right now, from inside another task of the same VM that
 * is about to wait for it (join): the joiner would park and the scheduler
 * would run t next anyway; running it inline saves the park, the wake and
 * two trips through the run queue, and most `parx.async(f):join()` tasks
 * finish without ever parking.  Depth-limited: each level is a C frame. */
int px_sched_run_inline(px_vm *vm, px_task *t) {
  if (t->state != PX_TASK_READY || t->vm != vm || vm->inline_depth >= 8) return 0;
  unlink_ready(vm, t);
  px_task *saved = vm->current;
  vm->inline_depth++;
  resume(vm, t);
  vm->inline_depth--;
  vm->current = saved;
  return 1;
}

int px_sched_run_ready(px_vm *vm) {
  int ran = 0;
  for (int budget = 4096; budget > 0; budget--) {
    while (vm->wakes_head) {
      px_wait *w = vm->wakes_head;
      vm->wakes_head = w->next;
      if (!vm->wakes_head) vm->wakes_tail = NULL;
      px_sched_deliver(vm, w);
    }
    px_task *t = pop_ready(vm);
    if (!t) break;
    resume(vm, t);
    ran++;
  }
  return ran;
}

/* ---- reports and teardown ------------------------------------------ */

void px_sched_report(px_vm *vm, luaL_Buffer *b) {
  pthread_mutex_lock(&vm->inbox_lock);
  for (px_task *t = vm->tasks; t; t = t->next) {
    char line[160];
    const char *what = t->state == PX_TASK_PARKED && t->wait && t->wait->what
                           ? t->wait->what
                           : (t->state == PX_TASK_PARKED ? "something" : "nothing (ready)");
    snprintf(line, sizeof line, "\n  task %ld on %s %d: waiting on %s",
             t->future ? t->future->seq : 0L, vm->id == 0 ? "main VM" : "worker",
             vm->id, what);
    luaL_addstring(b, line);
  }
  pthread_mutex_unlock(&vm->inbox_lock);
}

/* Detach every parked task from its wait source so nothing can wake this
 * VM any more; then free the tasks.  VM thread, at shutdown. */
void px_sched_teardown(px_vm *vm) {
  for (px_task *t = vm->tasks; t; t = t->next)
    if (t->state == PX_TASK_PARKED && t->wait && !t->wake_in_flight && !detach_wait(vm, t))
      vm->expect_wakes++;
  vm->expect_wakes += vm->stale_wakes; /* failed parks' wakes on their way */
}

void px_sched_free_tasks(px_vm *vm) {
  while (vm->tasks) {
    px_task *t = vm->tasks;
    if (t->future) {
      lua_pushnil(t->co);
      px_future_finish(t->future, t, -1);
    }
    task_free(vm, t);
  }
  vm->ready_head = vm->ready_tail = NULL;
}
