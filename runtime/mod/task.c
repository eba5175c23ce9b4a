/* task.c -- parx.spawn, parx.async, Task handles, sleep and multi-waits.
 *
 * A Task object (in any VM) points to a px_future.  A spawned function
 * travels to a worker as a marshalled job; its results come back marshalled
 * in the handle, and every joiner unmarshals its own copy.  An async task
 * runs on the calling VM; its results stay on its finished coroutine and are
 * copied to joiners of that VM directly.
 *
 * Joins and parx.wait park on "joiners": one wait record linked into every
 * handle it waits on.  The first handle to finish claims it with a CAS on
 * `fired` while holding its own lock, so the record cannot be freed under
 * it; the woken side then unlinks the record from the other handles.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define TASK_MT "parx.task"

static void handle_free(px_shared *s);
/* Initialised statically: every VM's px_open_task registers it, and a
 * store there while other threads read the type would be a data race. */
px_shared_type px_future_type = {.name = TASK_MT, .free = handle_free};

/* ---- handles ------------------------------------------------------- */

typedef struct px_jlink {
  struct px_jlink *next;
  px_joiner *jw;
  px_future *h;
  int index;
} px_jlink;

struct px_joiner {
  px_wait wait;
  atomic_int fired;
  int index;      /* 1-based index of the handle that fired; 0 = timeout */
  int mode;       /* JOIN_ONE: push the results; JOIN_ANY: push the index */
  int n;
  uv_timer_t timer;
  int has_timer;
  px_jlink links[];
};

enum { JOIN_ONE, JOIN_ANY };

static void handle_free(px_shared *s) {
  px_future *h = (px_future *)s;
  if (h->state == PX_FUTURE_FAILED && !h->retrieved && h->errmsg)
    fprintf(stderr, "parx: task %ld failed and nobody joined it: %s\n", h->seq, h->errmsg);
  if (h->local && h->co_ref != LUA_NOREF && h->vm && px_vm_on_thread(h->vm) && h->vm->L)
    luaL_unref(h->vm->L, LUA_REGISTRYINDEX, h->co_ref);
  px_msg_free(&h->result);
  free(h->errmsg);
  pthread_mutex_destroy(&h->lock);
  free(h);
}

px_future *px_future_new(px_runtime *rt, int local) {
  px_future *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  px_shared_init(&h->hdr, &px_future_type);
  pthread_mutex_init(&h->lock, NULL);
  h->rt = rt;
  h->local = local;
  h->co_ref = LUA_NOREF;
  h->state = PX_FUTURE_QUEUED;
  px_msg_init(&h->result);
  h->seq = atomic_fetch_add(&rt->seq, 1) + 1;
  return h;
}

/* Wake every joiner of h.  h->lock held. */
static void wake_joiners(px_future *h) {
  px_jlink *l = h->joiners;
  h->joiners = NULL;
  while (l) {
    px_jlink *next = l->next;
    l->next = NULL;
    int expect = 0;
    if (atomic_compare_exchange_strong(&l->jw->fired, &expect, 1)) {
      l->jw->index = l->index;
      px_wake(&l->jw->wait);
    }
    l = next;
  }
}

/* The task t of h ended (VM thread).  status: 0 returned, LUA_ERR* raised
 * (error value on top of t->co), -1 abandoned at shutdown. */
void px_future_finish(px_future *h, px_task *t, int status) {
  if (!h) return;
  px_vm *vm = t->vm;
  lua_State *co = t->co;
  int state = PX_FUTURE_DONE;
  if (status == -1) {
    state = PX_FUTURE_CANCELLED;
  } else if (status != 0) {
    state = PX_FUTURE_FAILED;
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->cancelled_ref);
    if (lua_rawequal(co, -1, -2)) state = PX_FUTURE_CANCELLED;
    lua_pop(co, 1);
    /* os.exit unwinding the task: the process is ending, not a failure. */
    if (lua_touserdata(co, -1) == (void *)&px_exit_marker) state = PX_FUTURE_CANCELLED;
    /* insert, not replace: after error(v, 0) or a table error LuaJIT
     * leaves the value alone at index 1, where lua_replace would pop it. */
    lua_insert(co, 1);
    lua_settop(co, 1);
  }
  if (state == PX_FUTURE_FAILED && !h->errmsg) {
    /* Kept to report a failure nobody ever looked at (handle_free). */
    const char *msg = lua_tostring(co, -1);
    h->errmsg = strdup(msg ? msg : luaL_typename(co, -1));
  }
  if (h->local) {
    if (state != PX_FUTURE_CANCELLED) {
      lua_pushthread(co);
      lua_xmove(co, vm->L, 1);
      h->co_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
      h->nresults = lua_gettop(co);
    }
  } else if (state != PX_FUTURE_CANCELLED) {
    int n = lua_gettop(co);
    if (px_marshal(co, 1, n, &h->result) != 0) {
      /* The results (or the error value) cannot cross: report that. */
      const char *why = lua_tostring(co, -1);
      if (!why) why = "?";
      /* The marshaller names what it was given ("argument #1"): say what
       * that was here. */
      if (state == PX_FUTURE_FAILED)
        lua_pushfstring(co, "task failed and its error cannot be sent back: %s",
                        luaL_gsub(co, why, "argument #1", "the error value"));
      else
        lua_pushfstring(co, "task results cannot be sent back: %s",
                        luaL_gsub(co, why, "argument #", "result #"));
      px_msg_free(&h->result);
      px_msg_init(&h->result);
      px_marshal(co, -1, 1, &h->result);
      state = PX_FUTURE_FAILED;
    }
    if (state == PX_FUTURE_FAILED && !h->errmsg) {
      const char *msg = lua_tostring(co, -1);
      h->errmsg = strdup(msg ? msg : luaL_typename(co, -1));
    }
  }
  pthread_mutex_lock(&h->lock);
  h->state = state;
  h->task = NULL;
  wake_joiners(h);
  pthread_mutex_unlock(&h->lock);
  t->future = NULL;
  px_shared_release(&h->hdr);
}

static px_future *check_handle(lua_State *L, int idx) {
  return (px_future *)px_shared_check(L, idx, &px_future_type);
}

/* Push the outcome of finished h onto co: true, results... or false, err. */
static int push_outcome(lua_State *co, px_future *h) {
  h->retrieved = 1;
  if (h->state == PX_FUTURE_CANCELLED) {
    lua_pushboolean(co, 0);
    px_vm *vm = px_vm_of(co);
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->cancelled_ref);
    return 2;
  }
  int ok = h->state == PX_FUTURE_DONE;
  lua_pushboolean(co, ok);
  if (h->local) {
    if (!h->vm || !px_vm_on_thread(h->vm)) {
      lua_pushboolean(co, 0);
      lua_replace(co, -2);
      lua_pushliteral(co, "cannot read the results of a parx.async task from another VM (use parx.spawn)");
      return 2;
    }
    lua_rawgeti(co, LUA_REGISTRYINDEX, h->co_ref);
    lua_State *rco = lua_tothread(co, -1);
    lua_pop(co, 1);
    int n = h->nresults;
    luaL_checkstack(co, n + 2, "too many results");
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(rco, i);
      lua_xmove(rco, co, 1);
    }
    return n + 1;
  }
  /* Each joiner unmarshals its own copy: the bytes are shared, the
   * references are retained for it. */
  px_msg copy = h->result;
  copy.refs = NULL;
  copy.refcap = 0;
  if (h->result.nrefs) {
    copy.refs = malloc(sizeof *copy.refs * h->result.nrefs);
    copy.refcap = h->result.nrefs;
    for (int i = 0; i < h->result.nrefs; i++) {
      copy.refs[i] = h->result.refs[i];
      px_shared_retain(copy.refs[i]);
    }
  }
  int n = px_unmarshal(co, &copy);
  for (int i = 0; i < copy.nrefs; i++) px_shared_release(copy.refs[i]);
  free(copy.refs);
  if (n < 0) {
    lua_pushboolean(co, 0);
    lua_replace(co, -3);
    return 2;
  }
  return n + 1;
}

/* ---- joiners --------------------------------------------------------- */

static void joiner_free_cb(uv_handle_t *t) { free(t->data); }

static void joiner_release(px_joiner *jw) {
  /* Unlink from every handle that may still list it. */
  for (int i = 0; i < jw->n; i++) {
    px_future *h = jw->links[i].h;
    pthread_mutex_lock(&h->lock);
    px_jlink **pp = &h->joiners;
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
  px_joiner *jw = (px_joiner *)w;
  int n;
  if (jw->mode == JOIN_ONE) {
    n = push_outcome(co, jw->links[0].h);
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

static void joiner_discard(px_wait *w) { joiner_release((px_joiner *)w); }

static int joiner_cancel(px_wait *w) {
  px_joiner *jw = (px_joiner *)w;
  int expect = 0;
  if (!atomic_compare_exchange_strong(&jw->fired, &expect, 1)) return 0;
  joiner_release(jw);
  return 1;
}

static void joiner_timeout(uv_timer_t *t) {
  px_joiner *jw = t->data;
  int expect = 0;
  if (atomic_compare_exchange_strong(&jw->fired, &expect, 1)) {
    jw->index = 0;
    px_wake(&jw->wait);
  }
}

/* Park until one of the n handles hs finishes, or for ms milliseconds
 * when limited (px_timeout_ms). */
static int join_park(lua_State *L, px_future **hs, int n, int mode, int limited, uint64_t ms) {
  px_vm *vm = px_vm_of(L);
  px_check_can_park(L); /* raise before anything is allocated */
  px_joiner *jw = calloc(1, sizeof *jw + sizeof(px_jlink) * (size_t)n);
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
    jw->links[i].jw = jw;
    jw->links[i].h = hs[i];
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
      int expect = 0;
      if (atomic_compare_exchange_strong(&jw->fired, &expect, 1)) {
        jw->index = i + 1;
        px_wake(&jw->wait);
      }
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
  px_vm *vm = px_vm_of(L);
  px_runtime *rt = vm->rt;
  int n = lua_gettop(L);
  px_job *job = calloc(1, sizeof *job);
  if (!job) return px_oom(L, "spawn");
  px_msg_init(&job->msg);
  if (px_marshal(L, 1, n, &job->msg) != 0) {
    px_msg_free(&job->msg);
    free(job);
    return lua_error(L);
  }
  px_future *h = px_future_new(rt, 0);
  if (!h) {
    px_msg_free(&job->msg);
    free(job);
    return px_oom(L, "spawn");
  }
  px_shared_retain(&h->hdr); /* the job's reference */
  job->future = h;
  h->job = job;
  int err = px_runtime_push_job(rt, job);
  if (err) {
    /* No worker could start (no file descriptor or thread left): the job
     * was not queued; fail the spawn rather than wait forever. */
    h->job = NULL;
    px_shared_release(&h->hdr); /* the job's */
    px_shared_release(&h->hdr);
    px_msg_free(&job->msg);
    free(job);
    return luaL_error(L, "%s: %s (cannot start a worker)", px_err_name(err), px_strerror(err));
  }
  px_shared_push(L, &h->hdr);
  return 1;
}

/* The job's handle ends cancelled without having run.  Any thread. */
void px_job_discard(px_job *job) {
  px_future *h = job->future;
  pthread_mutex_lock(&h->lock);
  h->state = PX_FUTURE_CANCELLED;
  h->job = NULL;
  wake_joiners(h);
  pthread_mutex_unlock(&h->lock);
  px_msg_free(&job->msg);
  free(job);
  px_shared_release(&h->hdr);
}

/* The body of a job whose function or arguments cannot be rebuilt: it
 * raises its one argument as it is (the marshaller's message). */
static int raise_value(lua_State *L) {
  lua_settop(L, 1);
  return lua_error(L);
}

typedef struct job_start {
  px_vm *vm;
  px_job *job;
  px_task *task;
} job_start;

/* Protected (px_sched_protect): rebuild the job's function and arguments on
 * the VM's main state, where an error (a failing __gc run by one of the
 * allocations, no memory) is caught, then move them to a new coroutine and
 * make it a task. */
static int job_start_call(lua_State *L, void *ud) {
  job_start *s = ud;
  int base = lua_gettop(L);
  int n = px_unmarshal(L, &s->job->msg);
  if (n < 0) {
    lua_insert(L, base + 1); /* the message; drop what was rebuilt */
    lua_settop(L, base + 1);
    lua_pushcfunction(L, raise_value);
    lua_insert(L, base + 1);
    n = 2;
  }
  lua_State *co = lua_newthread(L);
  lua_insert(L, base + 1);
  if (n >= LUA_MINSTACK && !lua_checkstack(co, n + 1))
    return luaL_error(L, "too many arguments to start a task with");
  lua_xmove(L, co, n);
  s->task = px_task_new(s->vm, co, s->job->future); /* pops co */
  if (!s->task) return px_oom(L, "starting a task");
  return 0;
}

/* Protected: the job's handle ends failed with the error at 1. */
static int job_fail_call(lua_State *L, void *ud) {
  job_start *s = ud;
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  px_task fake = {.vm = s->vm, .co = co};
  px_future_finish(s->job->future, &fake, LUA_ERRRUN);
  return 0;
}

/* Worker VM thread: turn a job into a task.  Whatever fails here becomes
 * the job's error (its joiners see it); the worker carries on. */
void px_job_run(px_vm *vm, px_job *job) {
  px_future *h = job->future;
  lua_State *L = vm->L;
  pthread_mutex_lock(&h->lock);
  h->job = NULL;
  h->vm = vm;
  h->state = PX_FUTURE_RUNNING;
  pthread_mutex_unlock(&h->lock);
  job_start s = {vm, job, NULL};
  int base = lua_gettop(L);
  if (px_sched_protect(vm, job_start_call, &s, 0) != 0) {
    /* Keeping the error allocates too, and another failing __gc may run
     * then: each failure uses one up, so try a few times. */
    int failed = 1;
    for (int tries = 0; failed && tries < 8; tries++) {
      lua_pushvalue(L, -1); /* the first error is the one kept */
      failed = px_sched_protect(vm, job_fail_call, &s, 1) != 0;
      if (failed) lua_pop(L, 1);
    }
    if (failed) {
      /* Not even the error can be kept (no memory): end it cancelled. */
      const char *msg = lua_tostring(L, -1);
      fprintf(stderr, "parx: task %ld could not start: %s\n", h->seq, msg ? msg : "?");
      pthread_mutex_lock(&h->lock);
      int finished = h->state >= PX_FUTURE_DONE;
      if (!finished) {
        h->state = PX_FUTURE_CANCELLED;
        h->task = NULL;
        wake_joiners(h);
      }
      pthread_mutex_unlock(&h->lock);
      if (!finished) px_shared_release(&h->hdr);
    }
    lua_settop(L, base);
    px_msg_free(&job->msg);
    free(job);
    return;
  }
  lua_settop(L, base);
  px_msg_free(&job->msg);
  free(job);
  px_task *t = s.task;
  pthread_mutex_lock(&h->lock);
  h->task = t;
  pthread_mutex_unlock(&h->lock);
  if (atomic_load(&h->cancel_requested)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->cancelled_ref);
    px_task_raise(t);
  }
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
  px_future *h = check_handle(L, 1);
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
  if (state == PX_FUTURE_QUEUED && job && px_runtime_unqueue_job(vm->rt, job)) {
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
  px_future *h = check_handle(L, 1);
  pthread_mutex_lock(&h->lock);
  int done = h->state >= PX_FUTURE_DONE;
  pthread_mutex_unlock(&h->lock);
  if (done) return push_outcome(L, h);
  px_vm *vm = px_vm_of(L);
  if (h->local && h->vm == vm && vm->current && h->task == vm->current)
    return luaL_error(L, "a task cannot join itself");
  if (h->local && h->vm == vm && h->task && L == vm->current->co &&
      px_sched_run_inline(vm, h->task) && h->state >= PX_FUTURE_DONE)
    return push_outcome(L, h);
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
  px_future *h = check_handle(L, 1);
  pthread_mutex_lock(&h->lock);
  int done = h->state >= PX_FUTURE_DONE;
  pthread_mutex_unlock(&h->lock);
  lua_pushboolean(L, done);
  return 1;
}

static int l_status(lua_State *L) {
  px_future *h = check_handle(L, 1);
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
  px_future *h = check_handle(L, 1);
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


const char px_exit_marker = 0;

/* os.exit replacement: record the status, stop the runtime from the main
 * VM, and unwind the calling task with the exit marker (task.lua's pcall
 * does not catch it). */
static int l_exit(lua_State *L) {
  px_vm *vm = px_vm_of(L);
  int code;
  if (lua_isnoneornil(L, 1)) code = 0;
  else if (lua_isboolean(L, 1)) code = lua_toboolean(L, 1) ? 0 : 1;
  else code = (int)luaL_checkinteger(L, 1);
  atomic_store(&vm->rt->exit_code, code);
  atomic_store(&vm->rt->exit_requested, 1);
  if (vm != vm->rt->main) px_vm_poke(vm->rt->main);
  lua_pushlightuserdata(L, (void *)&px_exit_marker);
  return lua_error(L);
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
    {"is_task", l_is_task},   {"exit", l_exit},         {"workers", l_workers},     {"vm_id", l_vm_id},
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
