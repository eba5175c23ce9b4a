/*
 * future.h -- a task's future: its outcome, shared by every Task object
 * (in any VM) that points to it, and the waits on it (join, parx.wait).
 * Core: the scheduler finishes futures (px_future_finish), the runtime
 * discards the jobs of futures nobody ran (job.c); the task module binds
 * them to Lua (mod/task.c) and the host reads them (runtime.h).
 */
#ifndef PX_FUTURE_H
#define PX_FUTURE_H

#include <pthread.h>

#include "core.h"

/* QUEUED (a job waiting for a worker) -> RUNNING -> one of the three
 * ends.  An async task's future starts RUNNING. */
enum { PX_FUTURE_QUEUED, PX_FUTURE_RUNNING, PX_FUTURE_DONE, PX_FUTURE_FAILED, PX_FUTURE_CANCELLED };

typedef struct px_join px_join;
typedef struct px_join_link px_join_link;

/* A spawned function and its arguments on the way to a worker (job.h). */
struct px_job {
  px_job *next, *prev; /* the runtime's queue (job.c), under rt->lock */
  px_future *future;   /* one reference */
  px_msg msg;          /* function and arguments */
};

/* A px_shared: Task objects in any VM hold references. */
struct px_future {
  px_shared hdr;
  pthread_mutex_t lock;  /* guards state, result, joiners, job, task */
  int state;
  atomic_int cancel_requested;
  px_runtime *rt;
  px_vm *vm;             /* the VM running the task (NULL while queued) */
  px_vm_life *life;      /* a local future's: vm's life (px_future_bind) */
  px_task *task;         /* valid on vm's thread while running */
  px_job *job;           /* while queued: &job_store */
  int local;             /* parx.async: results stay on the coroutine */
  int co_ref;            /* local: registry ref of the finished coroutine */
  int nresults;          /* local: values on that coroutine's stack */
  int retrieved;         /* someone read the outcome */
  px_join_link *joiners; /* parked joiners (any VM) */
  long seq;              /* creation order, for reports */
  char *name;            /* opts.name, or NULL */
  int daemon;            /* opts.daemon: does not keep the process alive */
  int counted;           /* in rt->live_tasks until it ends (or is freed) */
  px_future *dnext, *dprev; /* daemon: rt->daemons, under rt->lock, until it ends */
  char *errmsg;          /* failed: message and traceback, for an unjoined report */
  char *traceback;       /* failed: "stack traceback:\n..." where it was raised
                          * (sched.c's message handler), or NULL */
  /* Spawned futures only, last: a local one (parx.async, the most numerous)
   * is allocated without them (px_future_new): 184 bytes, not 288. */
  px_msg result;         /* results, or the error value */
  px_job job_store;      /* the job, inside its future */
};

extern px_shared_type px_future_type; /* "parx.task" */

/* A wait on futures (join, parx.wait): linked into each future's joiners
 * list by one link per future; the first to end fires it. */
struct px_join_link {
  px_join_link *next;
  px_join *join;
  px_future *future;
  int index;
};
struct px_join {
  px_wait wait;
  atomic_int fired;
  int index;      /* 1-based index of the future that fired; 0 = timeout */
  int mode;       /* PX_JOIN_ONE: push the outcome; PX_JOIN_ANY: the index */
  int n;
  uv_timer_t timer;
  int has_timer;
  px_join_link links[];
};
enum { PX_JOIN_ONE, PX_JOIN_ANY };

/* Claim j for the future at index (0: its timeout) and wake its task, if
 * nothing claimed it first.  Any thread. */
void px_join_fire(px_join *j, int index);

/* A new future (one reference).  local: parx.async (RUNNING on the
 * caller's VM), else a spawned job's (QUEUED).  NULL when out of memory. */
px_future *px_future_new(px_runtime *rt, int local);
/* f's task runs on vm from now on; a local future keeps vm's life, so
 * that it never reads a VM that has ended (its results, its __gc). */
void px_future_bind(px_future *f, px_vm *vm);
/* The task t of f ended (VM thread).  status: 0 returned, LUA_ERR*
 * raised (error value on top of t->co), -1 abandoned at shutdown.  Drops
 * the task's reference. */
void px_future_finish(px_future *f, px_task *t, int status);
/* Before its task or job starts: f does not keep the process alive; name
 * (copied, may be NULL) shows in reports.  UV_ENOMEM or 0. */
int px_future_set_options(px_future *f, int daemon, const char *name);
/* End f cancelled without a task having run it (a job discarded); wakes
 * its joiners.  0 if f had already ended. Any thread, f->lock not held. */
int px_future_end_cancelled(px_future *f);
/* Push the outcome of ended f onto L: true, results... or false, err;
 * returns their count. */
int px_future_push_outcome(lua_State *L, px_future *f);

#endif
