/* runtime.c -- the runtime: the main VM, the worker threads (started on the
 * first spawn), the queue of spawned functions waiting for a worker, and
 * shutdown. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

int px_runtime_workers(px_runtime *rt) { return rt->nworkers; }
px_vm *px_runtime_main(px_runtime *rt) { return rt->main; }

void px_runtime_set_error(px_runtime *rt, const char *msg) {
  free(rt->last_error);
  rt->last_error = strdup(msg ? msg : "");
}

static void *worker_main(void *arg) {
  px_vm *vm = arg;
  px_runtime *rt = vm->rt;
  vm->thread = pthread_self();
  px_vm_drive(vm, PX_DRIVE_WORKER, NULL, NULL);
  px_vm_quiesce(vm);
  pthread_barrier_wait(&rt->down);
  px_sched_free_tasks(vm);
  /* Wait until every VM has freed its tasks: their handles' joiners may
   * point into other VMs. */
  pthread_barrier_wait(&rt->down);
  px_vm_free(vm);
  return NULL;
}

/* Start the workers; idempotent, any VM thread (under rt->lock). */
void px_runtime_start_workers(px_runtime *rt) {
  if (atomic_load(&rt->workers_started)) return;
  pthread_mutex_lock(&rt->lock);
  if (!atomic_load(&rt->workers_started)) {
    rt->workers = calloc(rt->nworkers, sizeof *rt->workers);
    rt->threads = calloc(rt->nworkers, sizeof *rt->threads);
    int n = 0;
    for (int i = 0; i < rt->nworkers; i++) {
      /* The VM is built here and handed to its thread, which from then on
       * is the only one to touch it. */
      px_vm *vm = px_vm_new(rt, i + 1);
      if (!vm) break;
      if (pthread_create(&vm->os_thread, NULL, worker_main, vm) != 0) {
        px_vm_free(vm);
        atomic_fetch_sub(&rt->pending, 1);
        break;
      }
      rt->threads[n] = vm->os_thread;
      rt->workers[n++] = vm;
    }
    rt->nworkers = n;
    pthread_barrier_init(&rt->down, NULL, (unsigned)n + 1);
    atomic_store(&rt->workers_started, 1);
  }
  pthread_mutex_unlock(&rt->lock);
}

void px_runtime_push_job(px_runtime *rt, px_job *job) {
  px_runtime_start_workers(rt);
  atomic_fetch_add(&rt->pending, 1);
  pthread_mutex_lock(&rt->lock);
  job->next = NULL;
  job->prev = rt->jobs_tail;
  if (rt->jobs_tail) rt->jobs_tail->next = job;
  else __atomic_store_n(&rt->jobs_head, job, __ATOMIC_RELEASE);
  rt->jobs_tail = job;
  rt->njobs++;
  pthread_mutex_unlock(&rt->lock);
  if (rt->nworkers == 0) return;
  /* Pairs with the worker's store of `sleeping` and its second look at
   * the queue (vm.c): one of the two sees the other. */
  atomic_thread_fence(memory_order_seq_cst);
  /* Wake an idle worker if there is one, else one blocked in its loop (it
   * has timers or IO, so it is not flagged idle), else the next in turn: a
   * worker busy with a task takes the job when it runs out of tasks. */
  unsigned start = atomic_fetch_add(&rt->next_worker, 1);
  for (int i = 0; i < rt->nworkers; i++) {
    px_vm *w = rt->workers[(start + i) % rt->nworkers];
    if (atomic_load(&w->idle_flag)) {
      px_vm_poke(w);
      return;
    }
  }
  for (int i = 0; i < rt->nworkers; i++) {
    px_vm *w = rt->workers[(start + i) % rt->nworkers];
    if (atomic_load(&w->sleeping)) {
      px_vm_poke(w);
      return;
    }
  }
  px_vm_poke(rt->workers[start % rt->nworkers]);
}

px_job *px_runtime_take_job(px_runtime *rt) {
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
int px_runtime_unqueue_job(px_runtime *rt, px_job *job) {
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

static int cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

px_runtime *px_runtime_new(int workers, int deadlock_check, const char *trace_path) {
  px_runtime *rt = calloc(1, sizeof *rt);
  if (!rt) return NULL;
  if (workers <= 0) {
    const char *env = getenv("PARX_WORKERS");
    workers = env ? atoi(env) : 0;
  }
  if (workers <= 0) workers = cpu_count();
  if (workers > 1024) workers = 1024;
  rt->nworkers = workers;
  rt->deadlock_check = deadlock_check;
  /* A peer that goes away (a closed socket, a child that stopped reading)
   * must give EPIPE to the writer, not kill the process.  Only when the
   * host left SIGPIPE at its default. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  pthread_mutex_init(&rt->lock, NULL);
  if (trace_path && *trace_path) {
    rt->trace_path = strdup(trace_path);
    rt->trace_t0 = uv_hrtime();
  }
  rt->main = px_vm_new(rt, 0);
  if (!rt->main) {
    free(rt->trace_path);
    pthread_mutex_destroy(&rt->lock);
    free(rt->last_error);
    free(rt);
    return NULL;
  }
  return rt;
}

void px_runtime_free(px_runtime *rt) {
  atomic_store(&rt->stopping, 1);
  int started = atomic_load(&rt->workers_started);
  if (started) {
    for (int i = 0; i < rt->nworkers; i++) px_vm_poke(rt->workers[i]);
  }
  px_vm_quiesce(rt->main);
  if (started) pthread_barrier_wait(&rt->down);
  px_sched_free_tasks(rt->main);
  if (started) pthread_barrier_wait(&rt->down);
  /* Jobs nobody took: their handles end as cancelled. */
  px_job *job;
  while ((job = px_runtime_take_job(rt))) {
    atomic_fetch_sub(&rt->pending, 1);
    px_job_discard(job);
  }
  if (started) {
    /* Each worker frees its own VM as its last act: join by saved ids. */
    for (int i = 0; i < rt->nworkers; i++) pthread_join(rt->threads[i], NULL);
    free(rt->threads);
    pthread_barrier_destroy(&rt->down);
    free(rt->workers);
  }
  px_vm_free(rt->main);
  if (px_trace_write(rt) != 0) perror(rt->trace_path);
  free(rt->trace_path);
  free(rt->path);
  free(rt->cpath);
  for (int i = 0; i < rt->ncfuncs; i++) free(rt->cfuncs[i].name);
  free(rt->cfuncs);
  free(rt->last_error);
  pthread_mutex_destroy(&rt->lock);
  free(rt);
}
