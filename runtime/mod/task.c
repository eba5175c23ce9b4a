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

static px_future *check_future(lua_State *L, int idx) {
  return (px_future *)px_shared_check(L, idx, &px_future_type);
}

/* ---- joiners --------------------------------------------------------- */

static void joiner_free_cb(uv_handle_t *t) { free(t->data); }

static void joiner_release(px_join *jw) {
  /* Unlink from every handle that may still list it. */
  for (int i = 0; i < jw->n; i++) {
    px_future *h = jw->links[i].future;
    pthread_mutex_lock(&h->lock);
    px_join_link **pp = &h->joiners;
    while (*pp && *pp != &jw->links[i]) pp = &(*pp)->next;
    if (*pp) *pp = jw->links[i].next;
    pthread_mutex_unlock(&h->lock);
    px_shared_release(&h->hdr);
  }
  if (jw->has_timer) {
    uv_timer_stop(&jw->timer);
    jw->timer.data = jw;
    uv_close((uv_handle_t *)&jw->timer, joiner_free_cb);
  } else {
    free(jw);
  }
}

static int joiner_deliver(lua_State *co, px_wait *w) {
  px_join *jw = (px_join *)w;
  int n;
  if (jw->mode == JOIN_ONE) {
    n = px_future_push_outcome(co, jw->links[0].future);
  } else if (jw->index > 0) {
    lua_pushinteger(co, jw->index);
    n = 1;
  } else {
    lua_pushnil(co);
    n = 1;
  }
  joiner_release(jw);
  return n;
}

static void joiner_discard(px_wait *w) { joiner_release((px_join *)w); }

static int joiner_cancel(px_wait *w) {
  px_join *jw = (px_join *)w;
  int expect = 0;
  if (!atomic_compare_exchange_strong(&jw->fired, &expect, 1)) return 0;
  joiner_release(jw);
  return 1;
}

static void joiner_timeout(uv_timer_t *t) { px_join_fire(t->data, 0); }

/* Park until one of the n handles hs finishes, or for ms milliseconds
 * when limited (px_timeout_ms). */
static int join_park(lua_State *L, px_future **hs, int n, int mode, int limited, uint64_t ms) {
  px_vm *vm = px_vm_of(L);
  px_check_can_park(L); /* raise before anything is allocated */
  px_join *jw = calloc(1, sizeof *jw + sizeof(px_join_link) * (size_t)n);
  if (!jw) return px_oom(L, "join");
  jw->wait.what = mode == JOIN_ONE ? "a task to finish (join)" : "tasks to finish (wait)";
  jw->wait.deliver = joiner_deliver;
  jw->wait.discard = joiner_discard;
  jw->wait.cancel = joiner_cancel;
  jw->mode = mode;
  jw->n = n;
  atomic_init(&jw->fired, 0);
  px_wait_prepare(L, &jw->wait);
  for (int i = 0; i < n; i++) {
    jw->links[i].join = jw;
    jw->links[i].future = hs[i];
    jw->links[i].index = i + 1;
    px_shared_retain(&hs[i]->hdr);
  }
  if (limited) {
    uv_timer_init(px_vm_loop(vm), &jw->timer);
    jw->timer.data = jw;
    jw->has_timer = 1;
    uv_timer_start(&jw->timer, joiner_timeout, ms, 0);
  }
  for (int i = 0; i < n; i++) {
    px_future *h = hs[i];
    pthread_mutex_lock(&h->lock);
    if (h->state >= PX_FUTURE_DONE) {
      px_join_fire(jw, i + 1);
      pthread_mutex_unlock(&h->lock);
      break;
    }
    jw->links[i].next = h->joiners;
    h->joiners = &jw->links[i];
    pthread_mutex_unlock(&h->lock);
  }
  return px_park(L, &jw->wait);
}

/* ---- Lua functions ------------------------------------------------- */

static int l_spawn(lua_State *L) {
  luaL_checkany(L, 1);
  if (!lua_isfunction(L, 1) && !luaL_getmetafield(L, 1, "__call"))
    luaL_typerror(L, 1, "function");
  int err = px_runtime_start_workers(px_vm_of(L)->rt);
  if (err) /* no file descriptor or thread left: fail rather than wait forever */
    return luaL_error(L, "%s: %s (cannot start a worker)", px_err_name(err), px_strerror(err));
  px_future *f = px_job_spawn(L, 1, lua_gettop(L));
  px_shared_push(L, &f->hdr);
  return 1;
}

static int l_async(lua_State *L) {
  luaL_checkany(L, 1);
  if (!lua_isfunction(L, 1) && !luaL_getmetafield(L, 1, "__call"))
    luaL_typerror(L, 1, "function");
  px_vm *vm = px_vm_of(L);
  int n = lua_gettop(L);
  px_future *h = px_future_new(vm->rt, 1);
  if (!h) return px_oom(L, "async");
  lua_State *co = lua_newthread(L);
  lua_insert(L, 1);
  lua_xmove(L, co, n); /* fn and args move to co; co stays at 1 */
  h->vm = vm;
  h->state = PX_FUTURE_RUNNING;
  px_shared_retain(&h->hdr); /* the task's reference */
  /* px_task_new pops co from vm->L: move it there. */
  lua_pushvalue(L, 1);
  lua_xmove(L, vm->L, 1);
  lua_settop(L, 0);
  px_task *t = px_task_new(vm, co, h);
  if (!t) {
    px_shared_release(&h->hdr);
    px_shared_release(&h->hdr);
    return px_oom(L, "async");
  }
  h->task = t;
  px_shared_push(L, &h->hdr);
  return 1;
}

/* Control message: cancel the task of h on its VM. */
typedef struct cancel_msg {
  px_wait w;
  px_future *h;
} cancel_msg;

static void cancel_on_vm(px_vm *vm, px_future *h) {
  px_task *t = NULL;
  pthread_mutex_lock(&h->lock);
  if (h->state == PX_FUTURE_RUNNING && h->vm == vm) t = h->task;
  pthread_mutex_unlock(&h->lock);
  if (t && t->state != PX_TASK_RUNNING) {
    lua_rawgeti(vm->L, LUA_REGISTRYINDEX, vm->cancelled_ref);
    px_task_raise(t);
  }
}

static int cancel_deliver(lua_State *L, px_wait *w) {
  cancel_msg *m = (cancel_msg *)w;
  cancel_on_vm(px_vm_of(L), m->h);
  px_shared_release(&m->h->hdr);
  free(m);
  return 0;
}

static int l_cancel(lua_State *L) {
  px_future *h = check_future(L, 1);
  px_vm *vm = px_vm_of(L);
  pthread_mutex_lock(&h->lock);
  int state = h->state;
  px_job *job = h->job;
  px_vm *target = h->vm;
  if (state < PX_FUTURE_DONE) atomic_store(&h->cancel_requested, 1);
  pthread_mutex_unlock(&h->lock);
  if (state >= PX_FUTURE_DONE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (state == PX_FUTURE_QUEUED && job && px_job_unqueue(vm->rt, job)) {
    px_job_discard(job);
    lua_pushboolean(L, 1);
    return 1;
  }
  /* Running (or just taken by a worker, which checks cancel_requested). */
  if (target == vm) {
    cancel_on_vm(vm, h);
  } else if (target) {
    cancel_msg *m = calloc(1, sizeof *m);
    if (!m) return px_oom(L, "cancel");
    m->w.deliver = cancel_deliver;
    m->h = h;
    px_shared_retain(&h->hdr);
    px_vm_post(target, &m->w);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* join(t) -> true, results... | false, err (task.lua raises) */
static int l_join(lua_State *L) {
  px_future *h = check_future(L, 1);
  pthread_mutex_lock(&h->lock);
  int done = h->state >= PX_FUTURE_DONE;
  pthread_mutex_unlock(&h->lock);
  if (done) return px_future_push_outcome(L, h);
  px_vm *vm = px_vm_of(L);
  if (h->local && h->vm == vm && vm->current && h->task == vm->current)
    return luaL_error(L, "a task cannot join itself");
  if (h->local && h->vm == vm && h->task && L == vm->current->co &&
      px_sched_run_inline(vm, h->task) && h->state >= PX_FUTURE_DONE)
    return px_future_push_outcome(L, h);
  return join_park(L, &h, 1, JOIN_ONE, 0, 0);
}

/* wait_any(list, timeout) -> index of a finished task, or nil on timeout */
static int l_wait_any(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  uint64_t ms;
  int limited = px_timeout_ms(L, 2, &ms);
  int n = (int)lua_objlen(L, 1);
  if (n == 0) return luaL_argerror(L, 1, "no tasks to wait for");
  px_future *stackbuf[16];
  px_future **hs = n <= 16 ? stackbuf : malloc(sizeof *hs * (size_t)n);
  if (!hs) return px_oom(L, "wait");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    hs[i] = (px_future *)px_shared_test(L, -1, &px_future_type);
    lua_pop(L, 1);
    if (!hs[i]) {
      if (hs != stackbuf) free(hs);
      return luaL_error(L, "bad argument #1 (item %d is not a task)", i + 1);
    }
  }
  for (int i = 0; i < n; i++) {
    pthread_mutex_lock(&hs[i]->lock);
    int done = hs[i]->state >= PX_FUTURE_DONE;
    pthread_mutex_unlock(&hs[i]->lock);
    if (done) {
      if (hs != stackbuf) free(hs);
      lua_pushinteger(L, i + 1);
      return 1;
    }
  }
  if (limited && ms == 0) {
    if (hs != stackbuf) free(hs);
    lua_pushnil(L);
    return 1;
  }
  /* join_park copies what it needs before parking. */
  px_future *copy[16];
  px_future **use = hs;
  if (hs == stackbuf) {
    memcpy(copy, hs, sizeof(px_future *) * (size_t)n);
    use = copy;
  }
  int r = join_park(L, use, n, JOIN_ANY, limited, ms);
  if (hs != stackbuf) free(hs);
  return r;
}

static int l_done(lua_State *L) {
  px_future *h = check_future(L, 1);
  pthread_mutex_lock(&h->lock);
  int done = h->state >= PX_FUTURE_DONE;
  pthread_mutex_unlock(&h->lock);
  lua_pushboolean(L, done);
  return 1;
}

static int l_status(lua_State *L) {
  px_future *h = check_future(L, 1);
  static const char *const names[] = {"queued", "running", "done", "failed", "cancelled"};
  pthread_mutex_lock(&h->lock);
  int st = h->state;
  pthread_mutex_unlock(&h->lock);
  lua_pushstring(L, names[st]);
  return 1;
}

/* is_task(v): whether v is a Task (C-side: metatables may be protected). */
static int l_is_task(lua_State *L) {
  lua_pushboolean(L, px_shared_test(L, 1, &px_future_type) != NULL);
  return 1;
}

static int l_tostring(lua_State *L) {
  px_future *h = check_future(L, 1);
  lua_pushfstring(L, "parx.task %d (%s)", (int)h->seq, h->local ? "async" : "spawned");
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
    {"status", l_status}, {"__tostring", l_tostring}, {"__eq", l_eq},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"spawn", l_spawn},       {"async", l_async},         {"join", l_join},
    {"wait_any", l_wait_any}, {"sleep", l_sleep},         {"now", l_now},
    {"current", l_current},   {"cancelling", l_cancelling}, {"set_cancelled", px_sched_setup},
    {"is_task", l_is_task},   {"workers", l_workers},     {"vm_id", l_vm_id},
    {NULL, NULL}};

int px_open_task(lua_State *L) {
  px_shared_register(&px_future_type);
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  px_shared_meta(L, &px_future_type);
  luaL_setfuncs(L, task_methods, 0);
  lua_setfield(L, -2, "Task");
  lua_pushlightuserdata(L, (void *)&px_park_marker);
  lua_setfield(L, -2, "PARK");
  lua_pushlightuserdata(L, (void *)&px_exit_marker);
  lua_setfield(L, -2, "EXIT");
  return 1;
}
