/* job.c -- jobs: a spawned function's way to a worker (job.h). */
#include <stdio.h>
#include <stdlib.h>

#include "job.h"

static void job_free(px_job *job) {
  px_msg_free(&job->msg);
  free(job);
}

px_future *px_job_spawn(lua_State *L, int idx, int n) {
  px_runtime *rt = px_vm_of(L)->rt;
  px_job *job = calloc(1, sizeof *job);
  if (!job) px_oom(L, "spawn");
  px_msg_init(&job->msg);
  if (px_marshal(L, idx, n, &job->msg) != 0) {
    job_free(job);
    lua_error(L);
  }
  px_future *f = px_future_new(rt, 0);
  if (!f) {
    job_free(job);
    px_oom(L, "spawn");
  }
  px_shared_retain(&f->hdr); /* the job's reference */
  job->future = f;
  f->job = job;
  int err = px_runtime_push_job(rt, job);
  if (err) {
    /* No worker could start (no file descriptor or thread left): the job
     * was not queued; fail the spawn rather than wait forever. */
    f->job = NULL;
    px_shared_release(&f->hdr); /* the job's */
    px_shared_release(&f->hdr);
    job_free(job);
    luaL_error(L, "%s: %s (cannot start a worker)", px_err_name(err), px_strerror(err));
  }
  return f;
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
  lua_State *co = lua_newthread(L);
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
      fprintf(stderr, "parx: task %ld could not start: %s\n", f->seq, msg ? msg : "?");
      if (px_future_end_cancelled(f)) px_shared_release(&f->hdr);
    }
    lua_settop(L, base);
    job_free(job);
    return;
  }
  lua_settop(L, base);
  job_free(job);
  px_task *t = s.task;
  pthread_mutex_lock(&f->lock);
  f->task = t;
  pthread_mutex_unlock(&f->lock);
  if (atomic_load(&f->cancel_requested)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->cancelled_ref);
    px_task_raise(t);
  }
}
