/* group.c -- VM groups (group.h): the worker VMs of one pool object, each
 * on a thread of its own, with a queue of jobs only they take.
 *
 * A slot's thread drives one VM at a time: the group's initializer first
 * (driven until it ended, before any job), then jobs until the runtime
 * stops, or until the VM ends on its own (its group closed and drained, or
 * it retired after max_tasks); a retired VM is freed and a fresh one takes
 * its place under the same id and with the same flight recorder, so a
 * pool that replaces VMs often does not grow the runtime's list of
 * recorders.  At the runtime's close the group VMs take part in its
 * rendezvous like the workers (px_runtime_vm_join); the runtime waits
 * for their threads to end (rt->group_threads) before it frees anything.
 */
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "runtime.h"

struct px_group {
  px_runtime *rt;
  atomic_long refs;       /* the owner's and one per thread */
  pthread_mutex_t lock;   /* guards what follows (head is also peeked) */
  px_job *head, *tail;
  px_vm **vms;            /* per slot: its VM now, NULL between two */
  int size, live;
  atomic_int closed;
  long max_tasks;
  px_msg init;            /* the initializer's call; empty: none */
};

/* ---- the group ------------------------------------------------------- */

static void group_free(px_group *g) {
  px_msg_free(&g->init);
  pthread_mutex_destroy(&g->lock);
  free(g->vms);
  free(g);
}

void px_group_release(px_group *g) {
  if (g && atomic_fetch_sub(&g->refs, 1) == 1) group_free(g);
}

static void set_slot(px_group *g, int slot, px_vm *vm) {
  pthread_mutex_lock(&g->lock);
  g->vms[slot] = vm;
  pthread_mutex_unlock(&g->lock);
}

/* Wake every VM of g (lock held). */
static void poke_all(px_group *g) {
  for (int i = 0; i < g->size; i++)
    if (g->vms[i]) px_vm_poke(g->vms[i]);
}

void px_group_close(px_group *g) {
  pthread_mutex_lock(&g->lock);
  atomic_store(&g->closed, 1);
  poke_all(g);
  pthread_mutex_unlock(&g->lock);
}

int px_group_live(px_group *g) {
  pthread_mutex_lock(&g->lock);
  int n = g->live;
  pthread_mutex_unlock(&g->lock);
  return n;
}

int px_group_size(px_group *g) { return g->size; }

px_group *px_vm_group(px_vm *vm) { return vm->group; }

/* ---- the queue ------------------------------------------------------- */

int px_group_push(px_group *g, px_future *f, int force) {
  px_job *job = &f->job_store;
  pthread_mutex_lock(&g->lock);
  if ((atomic_load(&g->closed) && !force) || g->live == 0) {
    pthread_mutex_unlock(&g->lock);
    return UV_ECANCELED;
  }
  atomic_fetch_add(&g->rt->pending, 1); /* taken over by the VM that takes it */
  job->next = NULL;
  job->prev = g->tail;
  if (g->tail) g->tail->next = job;
  else __atomic_store_n(&g->head, job, __ATOMIC_RELEASE);
  g->tail = job;
  /* Pairs with the VM's store of `sleeping` and its second look at the
   * queue (vm.c), as px_job_push does.  A VM is freed only after it left
   * its slot under this lock: the pointers are good here. */
  atomic_thread_fence(memory_order_seq_cst);
  px_vm *wake = NULL;
  for (int i = 0; i < g->size && !wake; i++)
    if (g->vms[i] && atomic_load(&g->vms[i]->idle_flag)) wake = g->vms[i];
  for (int i = 0; i < g->size && !wake; i++)
    if (g->vms[i] && atomic_load(&g->vms[i]->sleeping)) wake = g->vms[i];
  for (int i = 0; i < g->size && !wake; i++) wake = g->vms[i];
  if (wake) px_vm_poke(wake);
  pthread_mutex_unlock(&g->lock);
  return 0;
}

/* One of the pool's tasks at a time per VM, as in Python's pools: a pool
 * of n runs n at once.  (Without this, a VM whose task parked would take
 * the next job before an idle sibling woke: both runners of a map whose
 * items sleep would share one VM.) */
static px_job *take(px_vm *vm) {
  px_group *g = vm->group;
  if (vm->retiring || vm->ntasks > 0 || !__atomic_load_n(&g->head, __ATOMIC_ACQUIRE)) return NULL;
  pthread_mutex_lock(&g->lock);
  px_job *job = g->head;
  if (job) {
    __atomic_store_n(&g->head, job->next, __ATOMIC_RELAXED);
    if (!g->head) g->tail = NULL;
    job->next = job->prev = NULL;
  }
  /* Quick pushes may all have poked this VM: pass the rest on. */
  if (g->head) {
    for (int i = 0; i < g->size; i++) {
      px_vm *other = g->vms[i];
      if (other && other != vm && (atomic_load(&other->idle_flag) || atomic_load(&other->sleeping))) {
        px_vm_poke(other);
        break;
      }
    }
  }
  pthread_mutex_unlock(&g->lock);
  return job;
}

static int peek(px_vm *vm) {
  return !vm->retiring && vm->ntasks == 0 && __atomic_load_n(&vm->group->head, __ATOMIC_SEQ_CST) != NULL;
}

/* Only a retiring VM pushes while its group is closed (a map's runner
 * handing on its work), and it renews when the queue is not empty: so a
 * VM that sees closed and empty may end. */
static int vm_ends(px_vm *vm) {
  if (vm->ntasks > 0) return 0;
  if (vm->retiring) return 1;
  return atomic_load(&vm->group->closed) && !__atomic_load_n(&vm->group->head, __ATOMIC_ACQUIRE);
}

/* The drive loop's way to the queue (vm->source). */
static const px_job_source source = {take, peek, vm_ends};

int px_group_count_task(px_vm *vm) {
  px_group *g = vm->group;
  if (!g || g->max_tasks <= 0) return 0;
  if (++vm->group_tasks >= g->max_tasks) vm->retiring = 1;
  return vm->retiring;
}

/* ---- a slot's thread ------------------------------------------------- */

static int future_ended(px_vm *vm, void *f) {
  (void)vm;
  return px_future_done(f);
}

/* The initializer as vm's first task (a daemon: one that never ends does
 * not keep the process alive), driven until it ended.  Without memory it
 * is skipped; the pool's Lua side then finds no state and says so. */
static void run_init(px_vm *vm) {
  px_group *g = vm->group;
  if (!g->init.len) return;
  px_future *f = px_future_new(vm->rt, 0);
  if (!f) return;
  px_job *job = &f->job_store;
  if (px_future_set_options(f, 1, "pool initializer") != 0 || px_msg_copy(&job->msg, &g->init) != 0) {
    px_future_release(f);
    return;
  }
  px_shared_retain(&f->hdr); /* the job's reference */
  job->future = f;
  f->job = job;
  px_job_run(vm, job);
  px_vm_drive(vm, PX_DRIVE_UNTIL, future_ended, f);
  px_future_release(f);
}

/* The thread has no VM any more: the last one out drops what is queued
 * (nobody would take it), then the thread lets go of the group and of the
 * runtime.  After the runtime's lock is released nothing is touched. */
static void thread_end(px_group *g) {
  px_runtime *rt = g->rt;
  pthread_mutex_lock(&g->lock);
  px_job *left = --g->live == 0 ? g->head : NULL;
  if (left) g->head = g->tail = NULL;
  pthread_mutex_unlock(&g->lock);
  while (left) {
    px_job *next = left->next;
    atomic_fetch_sub(&rt->pending, 1);
    px_job_discard(left);
    left = next;
  }
  px_group_release(g);
  pthread_mutex_lock(&rt->lock);
  rt->group_threads--;
  pthread_cond_broadcast(&rt->down_cond);
  pthread_mutex_unlock(&rt->lock);
}

/* vm becomes slot's VM of g. */
static void adopt(px_group *g, int slot, px_vm *vm) {
  vm->group = g;
  vm->group_slot = slot;
  vm->source = &source;
}

static void *slot_main(void *arg) {
  px_vm *vm = arg;
  px_group *g = vm->group;
  int slot = vm->group_slot;
  for (;;) {
    px_vm_set_thread(vm);
    run_init(vm);
    px_vm_drive(vm, PX_DRIVE_WORKER, NULL, NULL);
    set_slot(g, slot, NULL);
    if (px_runtime_vm_leave(vm)) {
      if (px_runtime_vm_stop(vm)) return NULL; /* abandoned: touch nothing */
      break;
    }
    /* It ended on its own: nothing of it is parked or queued. */
    px_vm_quiesce(vm);
    if (!vm->dead) px_sched_free_tasks(vm);
    px_vm_count_out(vm);
    int renew = vm->retiring && !vm->dead &&
                (!atomic_load(&g->closed) || __atomic_load_n(&g->head, __ATOMIC_ACQUIRE));
    if (!renew) {
      px_vm_free(vm);
      break;
    }
    if (px_vm_renew(&vm) != 0) break;
    adopt(g, slot, vm);
    if (px_runtime_vm_join(vm)) {
      px_vm_discard(vm);
      break;
    }
    set_slot(g, slot, vm);
  }
  thread_end(g);
  return NULL;
}

/* Start slot i's VM and thread. */
static int start_slot(px_group *g, int i) {
  px_runtime *rt = g->rt;
  pthread_mutex_lock(&rt->lock);
  int id = ++rt->last_vm_id;
  pthread_mutex_unlock(&rt->lock);
  px_vm *vm;
  int err = px_vm_new(rt, id, &vm);
  if (err) return err;
  adopt(g, i, vm);
  if (px_runtime_vm_join(vm)) {
    px_vm_discard(vm);
    return UV_ECANCELED;
  }
  atomic_fetch_add(&g->refs, 1); /* the thread's */
  pthread_mutex_lock(&g->lock);
  g->vms[i] = vm;
  g->live++;
  pthread_mutex_unlock(&g->lock);
  pthread_mutex_lock(&rt->lock);
  rt->group_threads++;
  pthread_mutex_unlock(&rt->lock);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  err = -pthread_create(&vm->os_thread, &attr, slot_main, vm);
  pthread_attr_destroy(&attr);
  if (err) {
    pthread_mutex_lock(&g->lock);
    g->vms[i] = NULL;
    g->live--;
    pthread_mutex_unlock(&g->lock);
    atomic_fetch_sub(&g->refs, 1);
    pthread_mutex_lock(&rt->lock);
    rt->group_threads--;
    pthread_mutex_unlock(&rt->lock);
    px_runtime_vm_leave(vm);
    px_vm_discard(vm);
  }
  return err;
}

int px_group_new(px_runtime *rt, int n, long max_tasks, px_msg *init, px_group **out) {
  *out = NULL;
  px_group *g = n > 0 ? calloc(1, sizeof *g) : NULL;
  px_vm **vms = n > 0 ? calloc((size_t)n, sizeof *vms) : NULL;
  if (!g || !vms) {
    free(g);
    free(vms);
    if (init) px_msg_free(init);
    return n > 0 ? UV_ENOMEM : UV_EINVAL;
  }
  *g = (px_group){.rt = rt, .refs = 1, .vms = vms, .size = n, .max_tasks = max_tasks};
  pthread_mutex_init(&g->lock, NULL);
  if (init) {
    g->init = *init;
    px_msg_init(init);
  }
  int err = 0, started = 0;
  for (int i = 0; i < n; i++) {
    err = start_slot(g, i);
    if (err) break;
    started++;
  }
  if (started == 0) {
    px_group_release(g);
    return err;
  }
  /* Fewer than asked (no descriptor or thread left): it goes on with
   * those, as the runtime does with its workers. */
  *out = g;
  return 0;
}
