/*
 * job.h -- a job: a spawned function (marshalled with its arguments) on
 * its way to a worker, where it becomes a task.  Core: parx.spawn
 * (mod/task.c) makes and queues them, a worker's drive loop (vm.c) takes
 * and runs them, the runtime discards what is left at close.  Not to be confused with the pool's work items
 * (mod/pool*), which travel on channels, not on this queue.
 */
#ifndef PX_JOB_H
#define PX_JOB_H

#include "future.h"

/* struct px_job is in future.h: a spawned task's future holds its job
 * (one allocation for both). */

/* parx.spawn: marshal the n values at idx (a function and its arguments)
 * into a job and queue it for a worker; the workers must have been
 * started (px_runtime_start_workers).  daemon, name: the task's options
 * (px_future_set_options).  Returns its future (one reference); raises
 * the marshaller's message or out of memory. */
px_future *px_job_spawn(lua_State *L, int idx, int n, int daemon, const char *name);
/* The same job, not queued: for a queue of its own (group.c). */
px_future *px_job_new(lua_State *L, int idx, int n, int daemon, const char *name);
/* The queue: push wakes an idle (else a sleeping, else the next) worker;
 * take is the worker's (NULL when empty); unqueue removes a job no worker
 * took yet (1: it was there, the caller owns it now).  Any thread. */
void px_job_push(px_runtime *rt, px_job *job);
px_job *px_job_take(px_runtime *rt);
/* Wake a worker other than except (NULL: any) to look at the queue: an
 * idle one, else a sleeping one, else (except NULL) the next in turn. */
void px_job_wake(px_runtime *rt, px_vm *except);
/* Worker self took a job: if more are queued and no other worker spins
 * for work, wake one for them (px_job_push woke nobody while self spun,
 * so a burst of jobs would otherwise run one after another on self). */
void px_job_took(px_runtime *rt, px_vm *self);
int px_job_unqueue(px_runtime *rt, px_job *job);
/* Worker VM thread: turn a job taken off the queue into a task; whatever
 * fails becomes the job's error (its joiners see it).  Frees the job. */
void px_job_run(px_vm *vm, px_job *job);
/* The job's future ends cancelled without having run.  Frees the job.
 * Any thread. */
void px_job_discard(px_job *job);

#endif
