/* sched.c -- tasks: coroutines of one VM, parked and woken.
 *
 * A parked task yields the park marker up to px_sched_run_ready, which
 * resumes it when its px_wait is delivered.  deliver() runs protected, on
 * the VM's main state (a suspended coroutine has no protected frame: an
 * error thrown on it, by a failing __gc during an allocation or by running
 * out of memory, would reach the panic handler); its results are then
 * moved to the task, and an error there becomes the task's error.
 *
 * Errors are injected into a parked task (cancellation, deadlock) with a
 * one-instruction count hook: the hook fires on the first Lua instruction
 * after the resume and raises the error there, so the task unwinds through
 * its own pcalls and finalisers like any other error.  LuaJIT's hooks are
 * per VM, which is what we want: exactly one coroutine runs next.  The
 * user's own hook (luacov, a debugger) is saved when the injection is
 * armed and put back when it fires, so it keeps running.  Two of
 * task.lua's wrappers are treated apart (px_sched_setup): in the
 * coroutine forwarder the hook waits, so the error reaches the innermost
 * coroutine, where the task really parked; in the pcall/xpcall wrappers,
 * just after pcall returned (it called the parking C function itself:
 * pcall(parx.sleep, 1)), the error is left in a table the wrapper reads,
 * so pcall returns false and the error as if it had been raised inside.
 */
#include <math.h>
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

px_task *px_task_new(px_vm *vm, lua_State *co, px_future *h) {
  /* The reference first: it may raise (memory), and nothing is owned yet. */
  int co_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX); /* pops co from vm->L */
  px_task *t = calloc(1, sizeof *t);
  if (!t) {
    luaL_unref(vm->L, LUA_REGISTRYINDEX, co_ref);
    return NULL;
  }
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

static void task_free(px_vm *vm, px_task *t) {
  pthread_mutex_lock(&vm->inbox_lock);
  if (t->prev) t->prev->next = t->next;
  else vm->tasks = t->next;
  if (t->next) t->next->prev = t->prev;
  vm->ntasks--;
  pthread_mutex_unlock(&vm->inbox_lock);
  luaL_unref(vm->L, LUA_REGISTRYINDEX, t->co_ref);
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

void px_wait_prepare(lua_State *L, px_wait *w) {
  px_check_can_park(L);
  px_vm *vm = px_vm_of(L);
  if (vm->current->wait) drop_failed_park(vm, vm->current);
  w->task = vm->current;
  w->vm = vm;
  w->armed = 1;
  if (w->external) px_vm_hold(vm);
}

int px_park(lua_State *L, px_wait *w) {
  if (!w->armed) px_wait_prepare(L, w);
  w->task->wait = w;
  lua_pushlightuserdata(L, (void *)&px_park_marker);
  return lua_yield(L, 1);
}

/* ---- protected calls ------------------------------------------------ */

typedef struct protect_call {
  int (*fn)(lua_State *L, void *ud);
  void *ud;
} protect_call;

static int protect_trampoline(lua_State *L) {
  protect_call *pc = lua_touserdata(L, 1);
  lua_remove(L, 1);
  return pc->fn(L, pc->ud);
}

/* The trampoline is anchored once per VM (px_sched_setup): pushing a C
 * function allocates in LuaJIT, and this runs for every wake. */
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
    if (--t->stale_wakes == 0 && t->state == PX_TASK_DONE && !t->co) free(t);
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
  if (vm->trace) px_trace_wait(vm, t->future ? t->future->seq : 0, t->park_what, t->park_ts, uv_hrtime());
  t->nargs = 0;
  if (w->deliver && vm->gc_threshold) {
    /* The fast way (sched_lj.c): no GC step, so no __gc, can run while
     * deliver() pushes onto the suspended coroutine. */
    uint64_t threshold = *vm->gc_threshold;
    *vm->gc_threshold = vm->gc_stopped;
    t->nargs = w->deliver(t->co, w);
    *vm->gc_threshold = threshold;
  } else if (w->deliver) {
    lua_State *L = vm->L;
    int base = lua_gettop(L);
    if (px_sched_protect(vm, deliver_call, w, 0) == 0) {
      int n = lua_gettop(L) - base;
      /* The parked C function's frame guarantees LUA_MINSTACK slots; only
       * more than that needs growing co's stack (which can fail only for
       * want of memory, unprotected: a known limit). */
      if (n >= LUA_MINSTACK && !lua_checkstack(t->co, n + 1)) {
        lua_settop(L, base);
        lua_pushliteral(L, "parx: too many results to resume a task with");
        set_inject(vm, t);
      } else {
        lua_xmove(L, t->co, n);
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

enum { WRAP_NONE, WRAP_SKIP, WRAP_CATCH };

/* What the hook does in the function running at ar: task.lua registers
 * its coroutine forwarder (WRAP_SKIP) and pcall/xpcall (WRAP_CATCH). */
static int wrapper_kind(px_vm *vm, lua_State *L, lua_Debug *ar) {
  if (vm->wrappers_ref <= 0 || !lua_getinfo(L, "f", ar)) return WRAP_NONE;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->wrappers_ref);
  lua_insert(L, -2);
  lua_rawget(L, -2);
  int kind = (int)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return kind;
}

static void restore_hook(px_vm *vm) {
  lua_sethook(vm->L, vm->saved_hook, vm->saved_mask, vm->saved_count);
  vm->saved_hook = NULL;
  vm->saved_mask = vm->saved_count = 0;
}

static void inject_hook(lua_State *L, lua_Debug *ar) {
  px_vm *vm = px_vm_of(L);
  int kind = wrapper_kind(vm, L, ar);
  if (kind == WRAP_SKIP) return; /* stay armed: the next instruction */
  restore_hook(vm);
  int ref = vm->hook_ref;
  vm->hook_ref = LUA_NOREF;
  if (kind == WRAP_CATCH) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->caught_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_rawseti(L, -2, 1);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  lua_error(L);
}

static void arm_inject(px_vm *vm, px_task *t) {
  lua_State *L = vm->L;
  vm->hook_ref = t->inject_ref;
  t->inject_ref = LUA_NOREF;
  lua_Hook h = lua_gethook(L);
  if (h == inject_hook) h = NULL; /* never: disarmed before any resume */
  vm->saved_hook = h;
  vm->saved_mask = h ? lua_gethookmask(L) : 0;
  vm->saved_count = h ? lua_gethookcount(L) : 0;
  lua_sethook(L, inject_hook, LUA_MASKCOUNT, 1);
}

/* task.lua, once per VM: set_cancelled(CANCELLED, wrappers, caught). */
int px_sched_setup(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  if (!vm) return 0;
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (vm->caught_ref > 0) luaL_unref(L, LUA_REGISTRYINDEX, vm->caught_ref);
    vm->caught_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (vm->wrappers_ref > 0) luaL_unref(L, LUA_REGISTRYINDEX, vm->wrappers_ref);
    vm->wrappers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_settop(L, 1);
  if (vm->cancelled_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, vm->cancelled_ref);
  vm->cancelled_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (vm->call_ref <= 0) {
    lua_pushcfunction(L, protect_trampoline);
    vm->call_ref = luaL_ref(L, LUA_REGISTRYINDEX);
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

static int traceback_call(lua_State *L, void *ud) {
  lua_State *co = ud;
  luaL_traceback(L, co, lua_tostring(co, -1), 0);
  return 1;
}

static void resume(px_vm *vm, px_task *t) {
  lua_State *co = t->co;
  int nargs = t->nargs;
  t->nargs = 0;
  if (t->inject_ref != LUA_NOREF) arm_inject(vm, t);
  t->state = PX_TASK_RUNNING;
  vm->current = t;
  uint64_t t0 = vm->trace ? uv_hrtime() : 0;
  int status = lua_resume(co, nargs);
  vm->current = NULL;
  if (vm->trace) {
    uint64_t t1 = uv_hrtime();
    char name[48];
    snprintf(name, sizeof name, "task %ld", t->future ? t->future->seq : 0L);
    px_trace_slice(vm, "task", name, t0, t1);
    t->park_ts = t1;
    t->park_what = t->wait ? t->wait->what : NULL;
  }
  if (vm->hook_ref != LUA_NOREF) {
    /* The task ran no Lua instruction outside parx's forwarder (its body
     * is a C function): the error was not raised; end the task with it. */
    restore_hook(vm);
    lua_settop(co, 0);
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->hook_ref);
    luaL_unref(vm->L, LUA_REGISTRYINDEX, vm->hook_ref);
    vm->hook_ref = LUA_NOREF;
    status = LUA_ERRRUN;
  }
  int parked = status == LUA_YIELD && lua_gettop(co) >= 1 &&
               lua_touserdata(co, -1) == (void *)&px_park_marker && t->wait;
  if (!parked && t->wait) drop_failed_park(vm, t);
  if (status == LUA_YIELD) {
    if (parked) {
      lua_settop(co, 0);
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
  if (status == 0 && t->future && atomic_load(&t->future->cancel_requested)) {
    /* Asked to cancel, and it returned anyway (it caught the cancellation,
     * or never reached a park point): it ends cancelled all the same. */
    lua_settop(co, 0);
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->cancelled_ref);
    status = LUA_ERRRUN;
  }
  t->state = PX_TASK_DONE;
  if (status != 0 && lua_type(co, -1) == LUA_TSTRING) {
    /* Attach the task's traceback while its stack is still there.  Built
     * on the VM's main state, protected: the dead coroutine may have no
     * free stack slot (a stack overflow), and building the
     * string allocates (a failing __gc, no memory).  On failure the
     * message stays as it was. */
    lua_State *L = vm->L;
    int base = lua_gettop(L);
    if (px_sched_protect(vm, traceback_call, co, 0) == 0 && lua_gettop(L) == base + 1) {
      /* Into the message's own slot: no stack growth on co, which throws
       * when co died of a stack overflow. */
      lua_pop(co, 1);
      lua_xmove(L, co, 1);
    }
    lua_settop(L, base);
  }
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

/* ---- timeouts (px.h) ------------------------------------------------ */

int px_seconds_to_ms(double secs, uint64_t *ms) {
  if (secs != secs) return -1;
  if (secs <= 0) {
    *ms = 0;
    return 1;
  }
  /* Compared in double before any conversion: 2^53 ms is exact there, and
   * everything at or above it (math.huge included) is "no limit". */
  double m = ceil(secs * 1000.0);
  if (!(m < 9007199254740992.0)) {
    *ms = UINT64_MAX;
    return 0;
  }
  *ms = (uint64_t)m;
  return 1;
}

int px_timeout_ms(lua_State *L, int idx, uint64_t *ms) {
  if (lua_isnoneornil(L, idx)) {
    *ms = UINT64_MAX;
    return 0;
  }
  int r = px_seconds_to_ms(luaL_checknumber(L, idx), ms);
  if (r < 0) {
    if (idx > 0) luaL_argerror(L, idx, "timeout is NaN (use math.huge for no limit)");
    luaL_error(L, "bad timeout: NaN (use math.huge for no limit)");
  }
  return r;
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
