/*
 * job.h -- a job: a spawned function (marshalled with its arguments) on
 * its way to a worker, where it becomes a task.  Core: the runtime queues
 * jobs (runtime.c), a worker's drive loop runs them (vm.c); parx.spawn
 * (mod/task.c) makes them.  Not to be confused with the pool's work items
 * (mod/pool*), which travel on channels, not on this queue.
 */
#ifndef PX_JOB_H
#define PX_JOB_H

#include "future.h"

struct px_job {
  px_job *next, *prev; /* the runtime's queue (runtime.c), under rt->lock */
  px_future *future;   /* one reference */
  px_msg msg;          /* function and arguments */
};

/* parx.spawn: marshal the n values at idx (a function and its arguments)
 * into a job and queue it for a worker.  Returns its future (one
 * reference); on failure raises (the marshaller's message, no memory, no
 * worker could start). */
px_future *px_job_spawn(lua_State *L, int idx, int n);
/* Worker VM thread: turn a job taken off the queue into a task; whatever
 * fails becomes the job's error (its joiners see it).  Frees the job. */
void px_job_run(px_vm *vm, px_job *job);
/* The job's future ends cancelled without having run.  Frees the job.
 * Any thread. */
void px_job_discard(px_job *job);

#endif
