/* host.c -- the main VM as its host drives it (runtime.h): a chunk runs
 * as a task of the main VM, the host drives the VM until that task ended,
 * a deadlock fails the task with a report of every VM's tasks, and the
 * outcome becomes the host's error message.  The embedding API (api.c)
 * maps all this to parx.h's codes; nothing here knows them.
 *
 * Everything done on the main VM's lua_State runs protected
 * (px_runtime_protect): a replaced standard global, a failing __tostring,
 * a __gc that errors during an allocation or running out of memory
 * becomes the last error, never a panic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "future.h"

typedef struct start_args {
  px_runtime *rt;
  px_future *f;
} start_args;

/* Protected: ud, fn, args... -> a task of the main VM running fn(args). */
static int start_task_p(lua_State *L) {
  start_args *a = lua_touserdata(L, 1);
  lua_remove(L, 1);
  int nargs = lua_gettop(L) - 1;
  lua_State *co = lua_newthread(L);
  lua_insert(L, 1);
  lua_xmove(L, co, nargs + 1);
  /* co alone on this frame: px_task_new takes it (luaL_ref pops it). */
  px_task *t = px_task_new(a->rt->main, co, a->f);
  if (!t) return px_oom(L, "starting a task");
  a->f->task = t;
  return 0;
}

px_future *px_host_start(px_runtime *rt, int nargs) {
  px_vm *vm = rt->main;
  lua_State *L = vm->L;
  px_future *f = px_future_new(rt, 1);
  if (!f) {
    lua_pop(L, nargs + 1);
    px_runtime_set_error(rt, "not enough memory");
    return NULL;
  }
  px_future_bind(f, vm);
  px_shared_retain(&f->hdr); /* the task's */
  start_args a = {rt, f};
  lua_pushcfunction(L, start_task_p);
  lua_insert(L, -(nargs + 2));
  lua_pushlightuserdata(L, &a);
  lua_insert(L, -(nargs + 2));
  int status = px_pcall(L, nargs + 2, 0);
  if (status != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "not enough memory");
    lua_pop(L, 1);
    if (!f->task) px_shared_release(&f->hdr); /* the task's, never started */
    px_shared_release(&f->hdr);
    return NULL;
  }
  return f;
}

static int future_ended(px_vm *vm, void *arg) {
  (void)vm;
  px_future *f = arg;
  return f->state >= PX_FUTURE_DONE;
}

/* The report's lines for the VMs of pools of their own, in the words
 * px_sched_report uses for the others.  They are made in C, under
 * rt->lock (px_runtime_each_pool_vm: no VM ends meanwhile, and no Lua may
 * run there), into a bounded buffer; a report longer than that ends in
 * "...". */
typedef struct pool_lines {
  char s[8192];
  size_t len;
} pool_lines;

static void pool_vm_lines(px_vm *vm, void *arg) {
  pool_lines *out = arg;
  pthread_mutex_lock(&vm->inbox_lock);
  for (px_task *t = vm->tasks; t; t = t->next) {
    const char *what = t->state != PX_TASK_PARKED ? "nothing (ready)"
                       : t->wait && t->wait->what ? t->wait->what
                                                  : "something";
    size_t room = sizeof out->s - out->len;
    int n = snprintf(out->s + out->len, room, "\n  task %ld on pool worker %d: waiting on %s",
                     t->future ? t->future->seq : 0L, vm->id, what);
    if (n < 0 || (size_t)n >= room) {
      memcpy(out->s + sizeof out->s - 7, "\n  ...", 7);
      out->len = sizeof out->s - 1;
      break;
    }
    out->len += (size_t)n;
  }
  pthread_mutex_unlock(&vm->inbox_lock);
}

/* Protected: fail the task of future ud with the deadlock report. */
static int deadlock_report_p(lua_State *L) {
  px_future *f = lua_touserdata(L, 1);
  px_runtime *rt = f->rt;
  pool_lines *pool = lua_newuserdata(L, sizeof *pool); /* collected, whatever raises */
  pool->len = 0;
  px_runtime_each_pool_vm(rt, pool_vm_lines, pool);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "deadlock: all tasks are asleep, nothing can wake them:");
  px_sched_report(rt->main, &b);
  if (atomic_load(&rt->workers_started))
    for (int i = 0; i < rt->nworkers; i++) px_sched_report(rt->workers[i], &b);
  luaL_addlstring(&b, pool->s, pool->len);
  luaL_pushresult(&b);
  lua_remove(L, -2); /* the lines' userdata */
  rt->deadlocked = 1;
  if (f->task) px_task_raise(f->task);
  return 0;
}

int px_host_report_deadlock(px_runtime *rt, px_future *f) {
  if (!rt->deadlock_check || f->state >= PX_FUTURE_DONE || !f->task) return 0;
  return px_runtime_protect(rt, deadlock_report_p, f) != 0 ? -1 : 1;
}

int px_host_wait(px_runtime *rt, px_future *f) {
  for (;;) {
    int quiet = px_vm_drive(rt->main, PX_DRIVE_UNTIL, future_ended, f);
    if (atomic_load(&rt->exit_requested) || f->state >= PX_FUTURE_DONE) return 0;
    if (quiet) {
      if (!rt->deadlock_check) continue;
      if (px_runtime_protect(rt, deadlock_report_p, f) != 0) return -1;
    }
  }
}

void px_host_drain(px_runtime *rt) { px_leftover_drain(rt); }

int px_host_step(px_runtime *rt, int nowait) {
  return px_vm_drive(rt->main, nowait ? PX_DRIVE_STEP_NOWAIT : PX_DRIVE_STEP, NULL, NULL);
}

/* Protected: the error of ended future ud (its coroutine's first value)
 * as the last error. */
static int error_message_p(lua_State *L) {
  px_future *f = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->co_ref);
  lua_State *co = lua_tothread(L, -1);
  if (!co) return luaL_error(L, "(error object is a nil value)");
  lua_settop(co, 1); /* the error value (px_future_finish left it alone) */
  lua_xmove(co, L, 1);
  lua_pushvalue(L, -1);
  lua_xmove(L, co, 1); /* put it back for joiners */
  int traced = 1;
  if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
    lua_tostring(L, -1);
  } else if (luaL_callmeta(L, -1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
    /* its __tostring */
  } else if (lua_isnil(L, -1)) {
    lua_pushliteral(L, "(error object is a nil value)");
  } else { /* as luajit reports it: no traceback (luajit.c's report) */
    lua_pushliteral(L, "(error object is not a string)");
    traced = 0;
  }
  if (f->traceback && traced) lua_pushfstring(L, "%s\n%s", lua_tostring(L, -1), f->traceback);
  px_runtime_set_error(f->rt, lua_tostring(L, -1));
  return 0;
}

int px_host_outcome(px_runtime *rt, px_future *f) {
  if (atomic_load(&rt->exit_requested)) return PX_OUTCOME_STOPPED;
  if (f->state == PX_FUTURE_DONE) return PX_OUTCOME_DONE;
  if (f->state == PX_FUTURE_CANCELLED) {
    px_runtime_set_error(rt, "the main task was cancelled");
    return PX_OUTCOME_CANCELLED;
  }
  if (px_runtime_protect(rt, error_message_p, f) != 0) {
    /* Its __tostring failed: say what the value was. */
    px_runtime_set_error(rt, "(error object cannot be converted to a string)");
  }
  f->retrieved = 1;
  int dead = rt->deadlocked;
  rt->deadlocked = 0;
  return dead ? PX_OUTCOME_DEADLOCK : PX_OUTCOME_FAILED;
}

int px_host_backend_fd(px_runtime *rt) { return uv_backend_fd(&rt->main->loop); }

int px_host_backend_timeout(px_runtime *rt) {
  px_vm *vm = rt->main;
  if (vm->ready_head || vm->wakes_head || __atomic_load_n(&vm->inbox_head, __ATOMIC_SEQ_CST)) return 0;
  uv_ref((uv_handle_t *)&vm->async); /* posts must wake the host's poll */
  uv_update_time(&vm->loop); /* from now: the cached time would not shrink */
  int t = uv_backend_timeout(&vm->loop);
  uv_unref((uv_handle_t *)&vm->async);
  return t;
}

/* exit_requested: 0 running, 1 stopped by os.exit (or a panic), 2 that
 * exit was reported to the host.  Every check reads it as a flag. */
void px_host_exit_reported(px_runtime *rt) {
  int one = 1;
  if (!atomic_load(&rt->panicked)) atomic_compare_exchange_strong(&rt->exit_requested, &one, 2);
}

void px_host_rearm(px_runtime *rt) {
  int two = 2;
  if (!atomic_load(&rt->panicked)) atomic_compare_exchange_strong(&rt->exit_requested, &two, 0);
}

/* Protected: push ok, results... (or false, err) of ended future ud. */
static int results_p(lua_State *L) {
  px_future *f = lua_touserdata(L, 1);
  lua_remove(L, 1);
  return px_future_push_outcome(L, f);
}

int px_host_results(px_runtime *rt, px_future *f, int *deadlocked) {
  lua_State *L = rt->main->L;
  /* A task that caught the deadlock report (pcall) ended DONE: the flag
   * px_host_outcome did not clear is its caller's to read. */
  *deadlocked = rt->deadlocked;
  rt->deadlocked = 0;
  int top = lua_gettop(L);
  if (px_cpcall(L, results_p, f, LUA_MULTRET) != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "not enough memory");
    lua_settop(L, top);
    return -1;
  }
  return lua_gettop(L) - top;
}
