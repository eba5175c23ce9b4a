/*
 * group.h -- VM groups: worker VMs of their own, on threads of their own,
 * for one pool object (parx.pool.new).  A group has its own queue of jobs
 * (made by px_job_new, as parx.spawn makes them), which only its VMs take;
 * the runtime's workers never see them, and the group's VMs never take the
 * runtime's jobs.
 *
 * Each VM of a group runs the group's initializer (a marshalled call) as
 * its first task, before it takes any job.  With max_tasks > 0, a VM that
 * counted that many tasks (px_group_count_task) takes no more jobs and,
 * once its tasks have ended, is replaced by a fresh VM (a new lua_State:
 * the initializer runs again) on the same thread, under the same id.
 * A closed group takes no new jobs from its owner; its VMs end once its
 * queue is empty and they are idle.  At the runtime's close, its VMs stop
 * with the workers (runtime.c's rendezvous counts them).
 */
#ifndef PX_GROUP_H
#define PX_GROUP_H

#include "job.h"

typedef struct px_group px_group;

/* Start n VMs (built on the calling thread, so a failure is reported
 * here).  init: the initializer's message (a function and its arguments),
 * taken (emptied) whether or not this succeeds; NULL or empty: none.
 * max_tasks: 0 for no limit.  Returns 0 with *out holding one reference,
 * or UV_ENOMEM, UV_EMFILE, UV_EAGAIN (no VM could start) or UV_ECANCELED
 * (the runtime is stopping). */
int px_group_new(px_runtime *rt, int n, long max_tasks, px_msg *init, px_group **out);
/* No more jobs from the owner (px_group_push with force still queues:
 * a running map hands its work on); idle VMs end.  Any thread. */
void px_group_close(px_group *g);
void px_group_release(px_group *g);
/* Queue f's job (px_job_new) for g's VMs and wake one.  0, or
 * UV_ECANCELED when g is closed (unless force) or has no VM left: the job
 * was then not queued and is the caller's (px_job_discard). */
int px_group_push(px_group *g, px_future *f, int force);
/* vm's group, or NULL for the main VM and the runtime's workers. */
px_group *px_vm_group(px_vm *vm);
/* VMs alive now (started and not ended); its size as asked. */
int px_group_live(px_group *g);
int px_group_size(px_group *g);

/* vm counted one more task; 1 if that used up its max_tasks (it retires). */
int px_group_count_task(px_vm *vm);

#endif
