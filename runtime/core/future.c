/* future.c -- a task's future: created with its task (or its job), ended
 * by the scheduler (px_future_finish), read by joiners in any VM.
 *
 * A spawned task's results come back marshalled in the future, and every
 * joiner unmarshals its own copy.  An async task's results stay on its
 * finished coroutine and are copied to joiners of that VM directly.
 *
 * Joins and parx.wait park on a px_join: one wait record linked into every
 * future it waits on.  The first future to end claims it with a CAS on
 * `fired` while holding its own lock, so the record cannot be freed under
 * it; the woken side then unlinks the record from the other futures
 * (join.c).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "future.h"

static void future_free(px_shared *s);
/* Initialised statically: every VM's task module registers it, and a
 * store there while other threads read the type would be a data race. */
px_shared_type px_future_type = {.name = "parx.task", .free = future_free};

/* f no longer keeps the process alive: it ended, or is freed unstarted.
 * When that leaves nothing, the main VM looks again (leftover.c).  Any
 * thread; f->lock held or f unshared. */
static void uncount(px_future *f) {
  px_runtime *rt = f->rt;
  if (f->daemon) {
    f->daemon = 0;
    pthread_mutex_lock(&rt->lock);
    if (f->dprev) f->dprev->dnext = f->dnext;
    else if (rt->daemons == f) rt->daemons = f->dnext;
    if (f->dnext) f->dnext->dprev = f->dprev;
    f->dnext = f->dprev = NULL;
    pthread_mutex_unlock(&rt->lock);
  }
  if (!f->counted) return;
  f->counted = 0;
  if (atomic_fetch_sub(&rt->live_tasks, 1) == 1 && rt->main) px_vm_poke(rt->main);
}

int px_future_set_options(px_future *f, int daemon, const char *name) {
  if (name && !(f->name = strdup(name))) return UV_ENOMEM;
  if (daemon && !f->daemon) {
    px_runtime *rt = f->rt;
    f->counted = 0;
    atomic_fetch_sub(&rt->live_tasks, 1);
    f->daemon = 1;
    pthread_mutex_lock(&rt->lock);
    f->dnext = rt->daemons;
    if (rt->daemons) rt->daemons->dprev = f;
    rt->daemons = f;
    pthread_mutex_unlock(&rt->lock);
  }
  return 0;
}

void px_future_bind(px_future *f, px_vm *vm) {
  f->vm = vm;
  if (f->local && !f->life) {
    f->life = vm->life;
    atomic_fetch_add(&vm->life->refs, 1);
  }
}

/* The VM of local future f if it still runs and this is its thread; else
 * NULL.  A VM that ended or was renewed (max_tasks_per_worker) has cleared
 * its life first (vm.c), on its own thread: a future freed afterwards (by
 * the main VM's lua_close, holding a worker's future in a message) must
 * not read it.  A VM ending on another thread at this very moment is the
 * one case left (the runtime's close, VMs ending together). */
static px_vm *owner_vm(px_future *f) {
  px_vm *vm = f->life ? atomic_load(&f->life->vm) : NULL;
  return vm && px_vm_on_thread(vm) ? vm : NULL;
}

static void future_free(px_shared *s) {
  px_future *f = (px_future *)s;
  uncount(f);
  if (f->state == PX_FUTURE_FAILED && !f->retrieved && f->errmsg)
    fprintf(stderr, "parx: task %ld failed and nobody joined it: %s\n", f->seq, f->errmsg);
  px_vm *vm = owner_vm(f);
  if (f->local && f->co_ref != LUA_NOREF && vm && vm->L)
    /* Not back to the pool (copool.c): handed back from this __gc, the
     * coroutines kept LuaJIT's incremental GC from keeping up with an
     * async loop (its heap grew without bound). */
    luaL_unref(vm->L, LUA_REGISTRYINDEX, f->co_ref);
  if (f->life) px_vm_life_release(f->life);
  if (!f->local) px_msg_free(&f->result);
  free(f->errmsg);
  free(f->traceback);
  free(f->name);
  pthread_mutex_destroy(&f->lock);
  free(f);
}

px_future *px_future_new(px_runtime *rt, int local) {
  /* malloc, not calloc: glibc's calloc skips the per-thread cache. */
  size_t size = local ? offsetof(px_future, result) : sizeof(px_future);
  px_future *f = malloc(size);
  if (!f) return NULL;
  memset(f, 0, size);
  px_shared_init(&f->hdr, &px_future_type);
  pthread_mutex_init(&f->lock, NULL);
  f->rt = rt;
  f->local = local;
  f->co_ref = LUA_NOREF;
  f->state = local ? PX_FUTURE_RUNNING : PX_FUTURE_QUEUED;
  if (!local) px_msg_init(&f->result);
  f->seq = atomic_fetch_add(&rt->seq, 1) + 1;
  f->counted = 1;
  atomic_fetch_add(&rt->live_tasks, 1);
  return f;
}

void px_join_fire(px_join *j, int index) {
  int expect = 0;
  if (atomic_compare_exchange_strong(&j->fired, &expect, 1)) {
    j->index = index;
    px_wake(&j->wait);
  }
}

/* Wake every joiner of f.  f->lock held. */
static void wake_joiners(px_future *f) {
  px_join_link *l = f->joiners;
  f->joiners = NULL;
  while (l) {
    px_join_link *next = l->next;
    l->next = NULL;
    px_join_fire(l->join, l->index);
    l = next;
  }
}

/* Keep the message of a failure nobody may ever look at (future_free). */
static void keep_errmsg(px_future *f, lua_State *co) {
  if (f->errmsg) return;
  char num[64];
  const char *msg = luaL_typename(co, -1);
  if (lua_type(co, -1) == LUA_TSTRING) {
    msg = lua_tostring(co, -1);
  } else if (lua_type(co, -1) == LUA_TNUMBER) { /* lua_tostring would change the value */
    snprintf(num, sizeof num, "%.14g", lua_tonumber(co, -1));
    msg = num;
  }
  size_t n = strlen(msg), tn = f->traceback ? strlen(f->traceback) : 0;
  f->errmsg = malloc(n + tn + 2);
  if (!f->errmsg) return;
  memcpy(f->errmsg, msg, n);
  if (tn) {
    f->errmsg[n] = '\n';
    memcpy(f->errmsg + n + 1, f->traceback, tn + 1);
  } else {
    f->errmsg[n] = 0;
  }
}

void px_future_finish(px_future *f, px_task *t, int status) {
  if (!f) return;
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
  if (state == PX_FUTURE_FAILED) keep_errmsg(f, co);
  if (f->local) {
    if (state != PX_FUTURE_CANCELLED) {
      /* The task's anchor of its coroutine becomes the future's. */
      f->co_ref = t->co_ref;
      t->co_ref = LUA_NOREF;
      if (f->co_ref == LUA_NOREF) { /* a job that failed to start (job.c) */
        lua_pushthread(co);
        lua_xmove(co, vm->L, 1);
        f->co_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
      }
      f->nresults = lua_gettop(co);
    }
  } else if (state != PX_FUTURE_CANCELLED) {
    int n = lua_gettop(co);
    /* No results (a task run for its effects): nothing to marshal, and
     * joiners push none (px_future_push_outcome). */
    if (n > 0 && px_marshal(co, 1, n, &f->result) != 0) {
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
      px_msg_free(&f->result);
      px_msg_init(&f->result);
      px_marshal(co, -1, 1, &f->result);
      state = PX_FUTURE_FAILED;
    }
    if (state == PX_FUTURE_FAILED) keep_errmsg(f, co);
  }
  pthread_mutex_lock(&f->lock);
  f->state = state;
  f->task = NULL;
  wake_joiners(f);
  uncount(f);
  pthread_mutex_unlock(&f->lock);
  t->future = NULL;
  px_shared_release(&f->hdr);
}

int px_future_end_cancelled(px_future *f) {
  pthread_mutex_lock(&f->lock);
  int ended = f->state >= PX_FUTURE_DONE;
  if (!ended) {
    f->state = PX_FUTURE_CANCELLED;
    f->job = NULL;
    f->task = NULL;
    wake_joiners(f);
    uncount(f);
  }
  pthread_mutex_unlock(&f->lock);
  return !ended;
}

int px_future_push_outcome(lua_State *co, px_future *f) {
  f->retrieved = 1;
  if (f->state == PX_FUTURE_CANCELLED) {
    lua_pushboolean(co, 0);
    px_vm *vm = px_vm_of(co);
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->cancelled_ref);
    return 2;
  }
  int ok = f->state == PX_FUTURE_DONE;
  lua_pushboolean(co, ok);
  if (f->local) {
    if (!owner_vm(f)) {
      lua_pushboolean(co, 0);
      lua_replace(co, -2);
      lua_pushliteral(co, "cannot read the results of a parx.async task from another VM (use parx.spawn)");
      return 2;
    }
    lua_rawgeti(co, LUA_REGISTRYINDEX, f->co_ref);
    lua_State *rco = lua_tothread(co, -1);
    lua_pop(co, 1);
    int n = f->nresults;
    luaL_checkstack(co, n + 2, "too many results");
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(rco, i);
      lua_xmove(rco, co, 1);
    }
    return n + 1;
  }
  if (f->result.len == 0) return 1; /* it returned nothing (px_future_finish) */
  /* Each joiner unmarshals its own copy: the bytes are shared, the
   * references are retained for it. */
  px_msg copy = f->result;
  copy.refs = NULL;
  copy.refcap = 0;
  if (f->result.nrefs) {
    copy.refs = malloc(sizeof *copy.refs * f->result.nrefs);
    copy.refcap = f->result.nrefs;
    for (int i = 0; i < f->result.nrefs; i++) {
      copy.refs[i] = f->result.refs[i];
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

/* ---- as the host holds them (runtime.h) ------------------------------ */

int px_future_done(px_future *f) {
  pthread_mutex_lock(&f->lock);
  int done = f->state >= PX_FUTURE_DONE;
  pthread_mutex_unlock(&f->lock);
  return done;
}

void px_future_release(px_future *f) { px_shared_release(&f->hdr); }

void px_future_push(lua_State *L, px_future *f) {
  px_shared_retain(&f->hdr);
  px_shared_push(L, &f->hdr);
}

px_future *px_future_test(lua_State *L, int idx) {
  return (px_future *)px_shared_test(L, idx, &px_future_type);
}
