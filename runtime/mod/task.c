/* task.c -- the task module's Lua binding: parx.spawn, parx.async, Task
 * objects (join, cancel, status), parx.wait's wait_any, sleep, and the
 * few runtime facts scripts read (workers, vm_id, os.exit).
 *
 * A Task object (in any VM) points to a px_future (core/future.h); a
 * spawned function travels to a worker as a job (core/job.h).  Joins and
 * waits park on one px_join linked into every future they wait on. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

enum { JOIN_ONE = PX_JOIN_ONE, JOIN_ANY = PX_JOIN_ANY };

/* The functions that take a Task have its metatable as upvalue 1
 * (px_open_task): one compare instead of a registry lookup. */
static px_future *check_future(lua_State *L, int idx) {
  px_future *f = (px_future *)px_shared_test_mt(L, idx, lua_upvalueindex(1));
  return f ? f : (px_future *)px_shared_check(L, idx, &px_future_type);
}

/* ---- joiners --------------------------------------------------------- */

static void joiner_free_cb(uv_handle_t *t) { free(t->data); }

static void joiner_release(px_join *join) {
  /* Unlink from every handle that may still list it. */
  for (int i = 0; i < join->n; i++) {
    px_future *f = join->links[i].future;
    pthread_mutex_lock(&f->lock);
    px_join_link **pp = &f->joiners;
    while (*pp && *pp != &join->links[i]) pp = &(*pp)->next;
    if (*pp) *pp = join->links[i].next;
    pthread_mutex_unlock(&f->lock);
    px_shared_release(&f->hdr);
  }
  if (join->has_timer) {
    uv_timer_stop(&join->timer);
    join->timer.data = join;
    uv_close((uv_handle_t *)&join->timer, joiner_free_cb);
  } else {
    free(join);
  }
}

static int joiner_deliver(lua_State *co, px_wait *w) {
  px_join *join = (px_join *)w;
  int n;
  if (join->mode == JOIN_ONE) {
    n = px_future_push_outcome(co, join->links[0].future);
  } else if (join->index > 0) {
    lua_pushinteger(co, join->index);
    n = 1;
  } else {
    lua_pushnil(co);
    n = 1;
  }
  joiner_release(join);
  return n;
}

static void joiner_discard(px_wait *w) { joiner_release((px_join *)w); }

static int joiner_cancel(px_wait *w) {
  px_join *join = (px_join *)w;
  int expect = 0;
  if (!atomic_compare_exchange_strong(&join->fired, &expect, 1)) return 0;
  joiner_release(join);
  return 1;
}

static void joiner_timeout(uv_timer_t *t) { px_join_fire(t->data, 0); }

/* Park until one of the n handles fs finishes, or for ms milliseconds
 * when limited (px_timeout_ms). */
static int join_park(lua_State *L, px_future **fs, int n, int mode, int limited, uint64_t ms) {
  px_vm *vm = px_vm_of(L);
  px_check_can_park(L); /* raise before anything is allocated */
  size_t size = sizeof(px_join) + sizeof(px_join_link) * (size_t)n;
  px_join *join = malloc(size); /* not calloc: it skips glibc's thread cache */
  if (!join) return px_oom(L, "join");
  memset(join, 0, size);
  join->wait.what = mode == JOIN_ONE ? "a task to finish (join)" : "tasks to finish (wait)";
  join->wait.on_id = n == 1 ? fs[0]->seq : 0;
  join->wait.deliver = joiner_deliver;
  join->wait.discard = joiner_discard;
  join->wait.cancel = joiner_cancel;
  join->mode = mode;
  join->n = n;
  atomic_init(&join->fired, 0);
  px_wait_prepare(L, &join->wait);
  for (int i = 0; i < n; i++) {
    join->links[i].join = join;
    join->links[i].future = fs[i];
    join->links[i].index = i + 1;
    px_shared_retain(&fs[i]->hdr);
  }
  if (limited) {
    uv_timer_init(px_vm_loop(vm), &join->timer);
    join->timer.data = join;
    join->has_timer = 1;
    uv_timer_start(&join->timer, joiner_timeout, ms, 0);
  }
  for (int i = 0; i < n; i++) {
    px_future *f = fs[i];
    pthread_mutex_lock(&f->lock);
    if (f->state >= PX_FUTURE_DONE) {
      px_join_fire(join, i + 1);
      pthread_mutex_unlock(&f->lock);
      break;
    }
    join->links[i].next = f->joiners;
    f->joiners = &join->links[i];
    pthread_mutex_unlock(&f->lock);
  }
  return px_park(L, &join->wait);
}

/* ---- Lua functions ------------------------------------------------- */

/* The options of parx.spawn and parx.async (DESIGN.md): a plain table
 * (no metatable, so not a callable) before the function.  Removed from
 * the stack; unknown names raise, listing the known ones. */
typedef struct task_opts {
  int daemon;
  const char *name; /* valid while the caller's frame lives */
} task_opts;

static const char *const task_options[] = {"daemon", "name", NULL};

static int take_options(lua_State *L, const char *fname, task_opts *o) {
  o->daemon = 0;
  o->name = NULL;
  if (lua_type(L, 1) != LUA_TTABLE) return 0;
  if (lua_getmetatable(L, 1)) {
    lua_pop(L, 1);
    return 0;
  }
  px_check_options(L, 1, fname, task_options);
  lua_getfield(L, 1, "daemon");
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1)) px_error_user(L, "%s: option 'daemon' must be a boolean", fname);
    o->daemon = lua_toboolean(L, -1);
  }
  lua_getfield(L, 1, "name");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) px_error_user(L, "%s: option 'name' must be a string", fname);
    o->name = lua_tostring(L, -1); /* the table at 1 keeps it */
  }
  lua_pop(L, 2);
  return 1;
}

static int l_spawn(lua_State *L) {
  task_opts o;
  int first = 1 + take_options(L, "parx.spawn", &o);
  luaL_checkany(L, first);
  if (!lua_isfunction(L, first) && !luaL_getmetafield(L, first, "__call"))
    luaL_typerror(L, first, "function");
  int err = px_runtime_start_workers(px_vm_of(L)->rt);
  if (err) /* no file descriptor or thread left: fail rather than wait forever */
    return luaL_error(L, "%s: %s (cannot start a worker)", px_err_name(err), px_strerror(err));
  px_future *f = px_job_spawn(L, first, lua_gettop(L) - first + 1, o.daemon, o.name);
  px_trace_spawn(L, f->seq);
  px_shared_push(L, &f->hdr);
  return 1;
}

/* parx.async(fn, ...).  Its upvalues are LuaJIT's xpcall and the tasks'
 * message handler (px_open_task): the new coroutine's stack is built as
 * [xpcall, fn, handler, args...] here, cheaper than the scheduler's
 * guard() at the first resume. */
static int l_async(lua_State *L) {
  task_opts o = {0, NULL};
  int has_opts = lua_type(L, 1) == LUA_TTABLE && take_options(L, "parx.async", &o);
  luaL_checkany(L, 1 + has_opts);
  if (!lua_isfunction(L, 1 + has_opts) && !luaL_getmetafield(L, 1 + has_opts, "__call"))
    luaL_typerror(L, 1 + has_opts, "function");
  px_vm *vm = px_vm_of(L);
  /* A finished coroutine of this VM if one is kept (copool.c); taken
   * first, while a raise (the pool's first allocation) owns nothing. */
  int co_ref = LUA_NOREF;
  lua_State *co = px_copool_take(L, vm, &co_ref);
  px_future *f = px_future_new(vm->rt, 1);
  if (f && has_opts && px_future_set_options(f, o.daemon, o.name) != 0) {
    px_shared_release(&f->hdr);
    f = NULL;
  }
  if (!f) {
    if (co) px_copool_put(vm, co, co_ref);
    return px_oom(L, "async");
  }
  if (has_opts) lua_remove(L, 1);
  int guarded = !lua_isnone(L, lua_upvalueindex(2));
  if (guarded) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 3);
  }
  int n = lua_gettop(L);
  if (co && n >= LUA_MINSTACK) { /* a long argument list: a fresh one */
    px_copool_put(vm, co, co_ref);
    co = NULL;
  }
  px_future_bind(f, vm);
  f->state = PX_FUTURE_RUNNING;
  px_task *t;
  if (co) {
    lua_xmove(L, co, n); /* fn and args move to co */
    px_shared_retain(&f->hdr); /* the task's reference */
    t = px_task_new_ref(vm, co, co_ref, f, guarded);
  } else {
    co = lua_newthread(L);
    lua_insert(L, 1);
    lua_xmove(L, co, n); /* fn and args move to co; co stays at 1 */
    px_shared_retain(&f->hdr); /* the task's reference */
    t = px_task_new_from(vm, L, co, f, guarded); /* pops co */
  }
  if (!t) {
    px_shared_release(&f->hdr);
    px_shared_release(&f->hdr);
    return px_oom(L, "async");
  }
  f->task = t;
  px_trace_spawn(L, f->seq);
  px_shared_push(L, &f->hdr);
  return 1;
}

static int l_cancel(lua_State *L) {
  px_future *f = check_future(L, 1);
  int r = px_future_cancel(px_vm_of(L), f);
  if (r < 0) return px_oom(L, "cancel");
  lua_pushboolean(L, r);
  return 1;
}

/* join(t) -> true, results... | false, err (task.lua raises) */
static int l_join(lua_State *L) {
  px_future *f = check_future(L, 1);
  pthread_mutex_lock(&f->lock);
  int done = f->state >= PX_FUTURE_DONE;
  pthread_mutex_unlock(&f->lock);
  if (done) return px_future_push_outcome(L, f);
  px_vm *vm = px_vm_of(L);
  if (f->local && f->vm == vm && vm->current && f->task == vm->current)
    return luaL_error(L, "a task cannot join itself");
  if (f->local && f->vm == vm && f->task && L == vm->current->co &&
      px_sched_run_inline(vm, f->task) && f->state >= PX_FUTURE_DONE)
    return px_future_push_outcome(L, f);
  return join_park(L, &f, 1, JOIN_ONE, 0, 0);
}

/* wait_any(list, timeout) -> index of a finished task, or nil on timeout */
static int l_wait_any(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  uint64_t ms;
  int limited = px_timeout_ms(L, 2, &ms);
  int n = (int)lua_objlen(L, 1);
  if (n == 0) return luaL_argerror(L, 1, "no tasks to wait for");
  px_future *stackbuf[16];
  px_future **fs = n <= 16 ? stackbuf : malloc(sizeof *fs * (size_t)n);
  if (!fs) return px_oom(L, "wait");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    fs[i] = (px_future *)px_shared_test(L, -1, &px_future_type);
    lua_pop(L, 1);
    if (!fs[i]) {
      if (fs != stackbuf) free(fs);
      return luaL_error(L, "bad argument #1 (item %d is not a task)", i + 1);
    }
  }
  for (int i = 0; i < n; i++) {
    pthread_mutex_lock(&fs[i]->lock);
    int done = fs[i]->state >= PX_FUTURE_DONE;
    pthread_mutex_unlock(&fs[i]->lock);
    if (done) {
      if (fs != stackbuf) free(fs);
      lua_pushinteger(L, i + 1);
      return 1;
    }
  }
  if (limited && ms == 0) {
    if (fs != stackbuf) free(fs);
    lua_pushnil(L);
    return 1;
  }
  /* join_park copies what it needs before parking. */
  px_future *copy[16];
  px_future **use = fs;
  if (fs == stackbuf) {
    memcpy(copy, fs, sizeof(px_future *) * (size_t)n);
    use = copy;
  }
  int r = join_park(L, use, n, JOIN_ANY, limited, ms);
  if (fs != stackbuf) free(fs);
  return r;
}

static int l_done(lua_State *L) {
  px_future *f = check_future(L, 1);
  pthread_mutex_lock(&f->lock);
  int done = f->state >= PX_FUTURE_DONE;
  pthread_mutex_unlock(&f->lock);
  lua_pushboolean(L, done);
  return 1;
}

static int l_status(lua_State *L) {
  px_future *f = check_future(L, 1);
  static const char *const names[] = {"queued", "running", "done", "failed", "cancelled"};
  pthread_mutex_lock(&f->lock);
  int st = f->state;
  pthread_mutex_unlock(&f->lock);
  lua_pushstring(L, names[st]);
  return 1;
}

/* t:traceback() -> where a failed task raised its error ("stack
 * traceback:\n..."), or nil (not failed, or no traceback kept). */
static int l_traceback(lua_State *L) {
  px_future *f = check_future(L, 1);
  pthread_mutex_lock(&f->lock);
  const char *tb = f->state == PX_FUTURE_FAILED ? f->traceback : NULL;
  pthread_mutex_unlock(&f->lock);
  if (!tb) return 0;
  lua_pushstring(L, tb);
  return 1;
}

/* is_task(v): whether v is a Task (C-side: metatables may be protected). */
static int l_is_task(lua_State *L) {
  lua_pushboolean(L, px_shared_test(L, 1, &px_future_type) != NULL);
  return 1;
}

static int l_tostring(lua_State *L) {
  px_future *f = check_future(L, 1);
  if (f->name)
    lua_pushfstring(L, "parx.task %d '%s' (%s)", (int)f->seq, f->name, f->local ? "async" : "spawned");
  else
    lua_pushfstring(L, "parx.task %d (%s)", (int)f->seq, f->local ? "async" : "spawned");
  return 1;
}

static int l_eq(lua_State *L) {
  lua_pushboolean(L, px_shared_test(L, 1, &px_future_type) == px_shared_test(L, 2, &px_future_type));
  return 1;
}

/* ---- sleep --------------------------------------------------------- */

typedef struct sleeper {
  px_wait w;
  uv_timer_t timer;
} sleeper;

static void sleeper_close(uv_handle_t *h) { free(h->data); }

static void sleeper_fire(uv_timer_t *t) {
  sleeper *s = t->data;
  px_wake(&s->w);
}

static int sleeper_deliver(lua_State *co, px_wait *w) {
  sleeper *s = (sleeper *)w;
  uv_close((uv_handle_t *)&s->timer, sleeper_close);
  return 0;
}

static void sleeper_discard(px_wait *w) {
  sleeper *s = (sleeper *)w;
  uv_close((uv_handle_t *)&s->timer, sleeper_close);
}

static int sleeper_cancel(px_wait *w) {
  sleeper *s = (sleeper *)w;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, sleeper_close);
  return 1;
}

/* sleep(seconds): nil is 0, math.huge parks with no timer (until
 * cancelled); px_timeout_ms has the rule for NaN and negatives. */
static int l_sleep(lua_State *L) {
  uint64_t ms = 0;
  int limited = lua_isnoneornil(L, 1) ? 1 : px_timeout_ms(L, 1, &ms);
  px_vm *vm = px_vm_of(L);
  if (!vm->current) return luaL_error(L, "cannot sleep here: not inside a parx task");
  /* Before the allocation: a cancelled task raises here, and s would leak
   * (the ~230 bytes per cancelled-then-sleeping task of issue 9). */
  px_check_can_park(L);
  sleeper *s = calloc(1, sizeof *s);
  if (!s) return px_oom(L, "sleep");
  s->w.what = "sleep";
  s->w.deliver = sleeper_deliver;
  s->w.discard = sleeper_discard;
  s->w.cancel = sleeper_cancel;
  uv_timer_init(px_vm_loop(vm), &s->timer);
  s->timer.data = s;
  if (limited) {
    uv_update_time(px_vm_loop(vm));
    uv_timer_start(&s->timer, sleeper_fire, ms, 0);
  }
  return px_park(L, &s->w);
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

/* ---- misc ---------------------------------------------------------- */

static int l_current(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  if (!vm->current || !vm->current->future) return 0;
  px_shared_retain(&vm->current->future->hdr);
  px_shared_push(L, &vm->current->future->hdr);
  return 1;
}

static int l_cancelling(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  px_task *t = vm->current;
  lua_pushboolean(L, t && t->future && atomic_load(&t->future->cancel_requested));
  return 1;
}

static int l_workers(lua_State *L) {
  lua_pushinteger(L, px_vm_runtime(px_vm_of(L))->nworkers);
  return 1;
}

static int l_vm_id(lua_State *L) {
  lua_pushinteger(L, px_vm_of(L)->id);
  return 1;
}

static const luaL_Reg task_methods[] = {
    {"join", l_join},     {"done", l_done},         {"cancel", l_cancel},
    {"status", l_status}, {"traceback", l_traceback},
    {"__tostring", l_tostring}, {"__eq", l_eq},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"spawn", l_spawn},       {"async", l_async},         {"join", l_join},
    {"wait_any", l_wait_any}, {"sleep", l_sleep},         {"now", l_now},
    {"current", l_current},   {"cancelling", l_cancelling},
    {"is_task", l_is_task},   {"workers", l_workers},     {"vm_id", l_vm_id},
    {"register_type", px_marshal_register_type},
    {NULL, NULL}};

int px_open_task(lua_State *L) {
  px_shared_register(&px_future_type);
  px_shared_meta(L, &px_future_type); /* mt: every function's upvalue 1 */
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  if (px_sched_guard_values(L)) {
    lua_pushcclosure(L, l_async, 2);
    lua_setfield(L, -2, "async");
  }
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -1);
  luaL_setfuncs(L, task_methods, 1);
  lua_setfield(L, -2, "Task");
  lua_remove(L, -2); /* mt */
  lua_pushlightuserdata(L, (void *)&px_park_marker);
  lua_setfield(L, -2, "PARK");
  lua_pushlightuserdata(L, (void *)&px_exit_marker);
  lua_setfield(L, -2, "EXIT");
  lua_rawgeti(L, LUA_REGISTRYINDEX, px_vm_of(L)->cancelled_ref); /* state.c made it */
  lua_setfield(L, -2, "CANCELLED");
  return 1;
}
