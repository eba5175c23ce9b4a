/* cancel.c -- cancelling a task from any VM (t:cancel(), and the daemon
 * tasks when the process ends).  Above futures, jobs and the scheduler: a
 * queued job is taken off the queue and ends cancelled, a task on this VM
 * gets parx.CANCELLED raised at its park point (px_task_raise), one on
 * another VM through a control message posted to that VM. */
#include <stdlib.h>

#include "job.h"

/* Control message: cancel the task of f on its VM. */
typedef struct cancel_msg {
  px_wait w;
  px_future *future;
} cancel_msg;

static void cancel_on_vm(px_vm *vm, px_future *f) {
  px_task *t = NULL;
  pthread_mutex_lock(&f->lock);
  if (f->state == PX_FUTURE_RUNNING && f->vm == vm) t = f->task;
  pthread_mutex_unlock(&f->lock);
  if (t && t->state != PX_TASK_RUNNING) {
    lua_rawgeti(vm->L, LUA_REGISTRYINDEX, vm->cancelled_ref);
    px_task_raise(t);
  }
}

static int cancel_deliver(lua_State *L, px_wait *w) {
  cancel_msg *m = (cancel_msg *)w;
  cancel_on_vm(px_vm_of(L), m->future);
  px_shared_release(&m->future->hdr);
  free(m);
  return 0;
}

int px_future_cancel(px_vm *from, px_future *f) {
  pthread_mutex_lock(&f->lock);
  int state = f->state;
  px_job *job = f->job;
  px_vm *target = f->vm;
  if (state < PX_FUTURE_DONE) atomic_store(&f->cancel_requested, 1);
  pthread_mutex_unlock(&f->lock);
  if (state >= PX_FUTURE_DONE) return 0;
  if (state == PX_FUTURE_QUEUED && job && px_job_unqueue(from->rt, job)) {
    px_job_discard(job);
    return 1;
  }
  /* Running (or just taken by a worker, which checks cancel_requested). */
  if (target == from) {
    cancel_on_vm(from, f);
  } else if (target) {
    cancel_msg *m = calloc(1, sizeof *m);
    if (!m) return UV_ENOMEM;
    m->w.deliver = cancel_deliver;
    m->future = f;
    px_shared_retain(&f->hdr);
    px_vm_post(target, &m->w);
  }
  return 1;
}

int px_runtime_cancel_daemons(px_runtime *rt) {
  /* Taken under rt->lock, cancelled outside it (cancelling takes each
   * future's lock, and ending one takes rt->lock under it). */
  int n = 0, cap = 0;
  px_future **list = NULL;
  pthread_mutex_lock(&rt->lock);
  for (px_future *f = rt->daemons; f; f = f->dnext) cap++;
  if (cap) list = malloc(sizeof *list * (size_t)cap);
  for (px_future *f = rt->daemons; f && list; f = f->dnext) {
    px_shared_retain(&f->hdr);
    list[n++] = f;
  }
  pthread_mutex_unlock(&rt->lock);
  int asked = 0;
  for (int i = 0; i < n; i++) {
    if (px_future_cancel(rt->main, list[i]) > 0) asked++;
    px_shared_release(&list[i]->hdr);
  }
  free(list);
  return asked;
}
