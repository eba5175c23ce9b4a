/* job.c -- jobs: a spawned function's way to a worker (job.h): made by
 * parx.spawn, queued on the runtime, taken by an idle worker's drive loop
 * (vm.c) and turned into a task there.  Below the drive loop and the
 * runtime (which discards what is left at close): it calls neither, and
 * wakes a worker by poking its loop directly. */
#include <stdio.h>
#include <stdlib.h>

#include "job.h"

/* The job lives inside its future (future.h), which its reference keeps:
 * only the message is freed here. */
static void job_free(px_job *job) { px_msg_free(&job->msg); }

px_future *px_job_new(lua_State *L, int idx, int n, int daemon, const char *name) {
  px_runtime *rt = px_vm_of(L)->rt;
  px_future *f = px_future_new(rt, 0);
  if (!f) px_oom(L, "spawn");
  if ((daemon || name) && px_future_set_options(f, daemon, name) != 0) {
    px_shared_release(&f->hdr);
    px_oom(L, "spawn");
  }
  px_job *job = &f->job_store;
  px_msg_init(&job->msg);
  if (px_marshal(L, idx, n, &job->msg) != 0) {
    job_free(job);
    px_shared_release(&f->hdr);
    lua_error(L);
  }
  px_shared_retain(&f->hdr); /* the job's reference */
  job->future = f;
  f->job = job;
  return f;
}

px_future *px_job_spawn(lua_State *L, int idx, int n, int daemon, const char *name) {
  px_future *f = px_job_new(L, idx, n, daemon, name);
  px_job_push(px_vm_of(L)->rt, &f->job_store);
  return f;
}

/* ---- the queue (rt->jobs_head/tail under rt->lock) ------------------- */

void px_job_push(px_runtime *rt, px_job *job) {
  atomic_fetch_add(&rt->pending, 1);
  pthread_mutex_lock(&rt->lock);
  job->next = NULL;
  job->prev = rt->jobs_tail;
  if (rt->jobs_tail) rt->jobs_tail->next = job;
  else __atomic_store_n(&rt->jobs_head, job, __ATOMIC_RELEASE);
  rt->jobs_tail = job;
  rt->njobs++;
  pthread_mutex_unlock(&rt->lock);
  /* Pairs with the worker's store of `sleeping` (or `spinning`) and its
   * second look at the queue (vm.c): one of the two sees the other. */
  atomic_thread_fence(memory_order_seq_cst);
  /* A worker polling for work takes the job within microseconds: waking
   * another costs a syscall here and a thread that spins in vain (Go's
   * scheduler does the same). */
  for (int i = 0; i < rt->nworkers; i++)
    if (atomic_load(&rt->workers[i]->spinning)) return;
  px_job_wake(rt, NULL);
}

void px_job_wake(px_runtime *rt, px_vm *except) {
  /* Wake an idle worker if there is one, else one blocked in its loop (it
   * has timers or IO, so it is not flagged idle), else the next in turn: a
   * worker busy with a task takes the job when it runs out of tasks. */
  unsigned start = atomic_fetch_add(&rt->next_worker, 1);
  for (int i = 0; i < rt->nworkers; i++) {
    px_vm *w = rt->workers[(start + i) % rt->nworkers];
    if (w != except && atomic_load(&w->idle_flag)) {
      uv_async_send(&w->async);
      return;
    }
  }
  for (int i = 0; i < rt->nworkers; i++) {
    px_vm *w = rt->workers[(start + i) % rt->nworkers];
    if (w != except && atomic_load(&w->sleeping)) {
      uv_async_send(&w->async);
      return;
    }
  }
  if (!except) uv_async_send(&rt->workers[start % rt->nworkers]->async);
}

void px_job_took(px_runtime *rt, px_vm *self) {
  if (!__atomic_load_n(&rt->jobs_head, __ATOMIC_ACQUIRE)) return;
  for (int i = 0; i < rt->nworkers; i++)
    if (rt->workers[i] != self && atomic_load(&rt->workers[i]->spinning)) return;
  px_job_wake(rt, self);
}

px_job *px_job_take(px_runtime *rt) {
  if (!__atomic_load_n(&rt->jobs_head, __ATOMIC_ACQUIRE)) return NULL; /* peek; the lock decides */
  pthread_mutex_lock(&rt->lock);
  px_job *job = rt->jobs_head;
  if (job) {
    __atomic_store_n(&rt->jobs_head, job->next, __ATOMIC_RELAXED);
    if (rt->jobs_head) rt->jobs_head->prev = NULL;
    else rt->jobs_tail = NULL;
    rt->njobs--;
    job->next = job->prev = NULL;
  }
  pthread_mutex_unlock(&rt->lock);
  return job;
}

/* Remove a job that no worker took yet; 1 if it was still queued.  The
 * caller then owns it. */
int px_job_unqueue(px_runtime *rt, px_job *job) {
  int found = 0;
  pthread_mutex_lock(&rt->lock);
  for (px_job *j = rt->jobs_head; j; j = j->next) {
    if (j == job) {
      if (j->prev) j->prev->next = j->next;
      else __atomic_store_n(&rt->jobs_head, j->next, __ATOMIC_RELAXED);
      if (j->next) j->next->prev = j->prev;
      else rt->jobs_tail = j->prev;
      rt->njobs--;
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&rt->lock);
  if (found) atomic_fetch_sub(&rt->pending, 1);
  return found;
}


void px_job_discard(px_job *job) {
  px_future *f = job->future;
  px_future_end_cancelled(f);
  job_free(job);
  px_shared_release(&f->hdr);
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
  int co_ref = LUA_NOREF;
  lua_State *co = px_copool_take(L, s->vm, &co_ref); /* a finished one (copool.c) */
  if (co && n < LUA_MINSTACK) { /* fits in any coroutine's stack */
    lua_xmove(L, co, n);
    s->task = px_task_new_ref(s->vm, co, co_ref, s->job->future, 0);
    if (!s->task) return px_oom(L, "starting a task");
    return 0;
  }
  if (co) px_copool_put(s->vm, co, co_ref);
  co = lua_newthread(L);
  lua_insert(L, base + 1);
  if (n >= LUA_MINSTACK && !lua_checkstack(co, n + 1))
    return luaL_error(L, "too many arguments to start a task with");
  lua_xmove(L, co, n);
  s->task = px_task_new(s->vm, co, s->job->future); /* pops co */
  if (!s->task) return px_oom(L, "starting a task");
  return 0;
}

/* Protected: the job's future ends failed with the error at 1. */
static int job_fail_call(lua_State *L, void *ud) {
  job_start *s = ud;
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  px_task fake = {.vm = s->vm, .co = co};
  px_future_finish(s->job->future, &fake, LUA_ERRRUN);
  return 0;
}

void px_job_run(px_vm *vm, px_job *job) {
  px_future *f = job->future;
  lua_State *L = vm->L;
  pthread_mutex_lock(&f->lock);
  f->job = NULL;
  f->vm = vm;
  f->state = PX_FUTURE_RUNNING;
  pthread_mutex_unlock(&f->lock);
  job_start s = {vm, job, NULL};
  int base = lua_gettop(L);
  int failed_start = px_sched_protect(vm, job_start_call, &s, 0) != 0;
  job_free(job); /* before anything drops the job's reference to f */
  if (failed_start) {
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
      fprintf(stderr, "parx: task %ld could not start: %s\n", f->seq, msg ? msg : "?");
      if (px_future_end_cancelled(f)) px_shared_release(&f->hdr);
    }
    lua_settop(L, base);
    return;
  }
  lua_settop(L, base);
  px_task *t = s.task;
  pthread_mutex_lock(&f->lock);
  f->task = t;
  pthread_mutex_unlock(&f->lock);
  if (atomic_load(&f->cancel_requested)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->cancelled_ref);
    px_task_raise(t);
  }
}
