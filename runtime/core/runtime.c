/* runtime.c -- the runtime: the main VM, the worker threads (started on the
 * first spawn), the queue of spawned functions waiting for a worker, and
 * shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"

int px_runtime_protect(px_runtime *rt, lua_CFunction fn, void *ud) {
  lua_State *L = rt->main->L;
  int top = lua_gettop(L);
  int status = px_cpcall(L, fn, ud, 0);
  if (status != 0) {
    px_runtime_set_error(rt, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                             : status == LUA_ERRMEM ? "not enough memory"
                                                    : "error in the runtime's bookkeeping");
  }
  lua_settop(L, top);
  return status;
}

typedef struct register_args {
  const char *name;
  lua_CFunction fn;
  const luaL_Reg *lib;
} register_args;

static int register_p(lua_State *L) {
  register_args *a = lua_touserdata(L, 1);
  if (a->lib) {
    luaL_register(L, a->name, a->lib); /* the global and package.loaded */
    return 0;
  }
  lua_pushcfunction(L, a->fn);
  lua_setglobal(L, a->name);
  return 0;
}

/* Registered before any worker exists, so no lock: the list no longer
 * changes once workers read it (state.c). */
int px_runtime_register(px_runtime *rt, const char *name, lua_CFunction fn,
                        const luaL_Reg *lib) {
  if (atomic_load(&rt->workers_started)) return UV_EBUSY;
  void *p = realloc(rt->cfuncs, sizeof *rt->cfuncs * (size_t)(rt->ncfuncs + 1));
  if (!p) return UV_ENOMEM;
  rt->cfuncs = p;
  char *copy = strdup(name);
  if (!copy) return UV_ENOMEM;
  register_args a = {name, fn, lib};
  if (px_runtime_protect(rt, register_p, &a) != 0) {
    free(copy);
    return UV_EINVAL;
  }
  rt->cfuncs[rt->ncfuncs].name = copy;
  rt->cfuncs[rt->ncfuncs].fn = fn;
  rt->cfuncs[rt->ncfuncs].lib = lib;
  rt->ncfuncs++;
  return 0;
}

/* ---- shutdown rendezvous -------------------------------------------
 *
 * Shutdown has two phases that every VM passes together: 1. quiesce
 * (detach parked tasks, so nothing posts any more), 2. free the tasks
 * (their handles' joiners may point into other VMs).  A barrier would do,
 * but the main thread must be able to stop waiting: a worker inside a
 * JIT-compiled loop reaches no point where it could be told to stop, and
 * after os.exit the process must end anyway (px_runtime_close with a
 * timeout).  So: a count per phase and a condition variable, rt->lock
 * held throughout. */
enum { PHASE_QUIET = 0, PHASE_FREED = 1 };

/* Worker: arrived at phase; wait until the main thread releases it.
 * Returns 1 when the runtime was abandoned instead: touch nothing. */
static int arrive(px_runtime *rt, int phase) {
  pthread_mutex_lock(&rt->lock);
  rt->arrived[phase]++;
  pthread_cond_broadcast(&rt->down_cond);
  while (rt->released <= phase && !rt->abandoned) pthread_cond_wait(&rt->down_cond, &rt->lock);
  int abandoned = rt->released <= phase;
  pthread_mutex_unlock(&rt->lock);
  return abandoned;
}

/* The VMs that take part: the workers once started, and the VMs of pools
 * of their own (group.c).  rt->lock held. */
static int parties(px_runtime *rt) {
  return (atomic_load(&rt->workers_started) ? rt->nworkers : 0) + rt->group_vms;
}

/* Main: wait until every VM arrived at phase (at most timeout_ms when
 * >= 0), then release them.  Returns 1 on a timeout: the workers are then
 * abandoned (detached; they stop touching anything at their next
 * arrive()). */
static int gather(px_runtime *rt, int phase, int timeout_ms) {
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  if (timeout_ms > 0) {
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
  }
  int late = 0;
  pthread_mutex_lock(&rt->lock);
  while (rt->arrived[phase] < parties(rt)) {
    if (timeout_ms < 0) {
      pthread_cond_wait(&rt->down_cond, &rt->lock);
    } else if (pthread_cond_timedwait(&rt->down_cond, &rt->lock, &deadline) == ETIMEDOUT &&
               rt->arrived[phase] < parties(rt)) {
      late = 1;
      break;
    }
  }
  if (late) rt->abandoned = 1;
  else rt->released = phase + 1;
  pthread_cond_broadcast(&rt->down_cond);
  pthread_mutex_unlock(&rt->lock);
  return late;
}

int px_runtime_vm_stop(px_vm *vm) {
  px_runtime *rt = vm->rt;
  px_vm_quiesce(vm);
  if (arrive(rt, PHASE_QUIET)) return 1;
  if (!vm->dead) px_sched_free_tasks(vm);
  if (arrive(rt, PHASE_FREED)) return 1;
  px_vm_free(vm);
  return 0;
}

int px_runtime_vm_join(px_vm *vm) {
  px_runtime *rt = vm->rt;
  pthread_mutex_lock(&rt->lock);
  int stopping = atomic_load(&rt->stopping);
  if (!stopping) {
    vm->extra_prev = NULL;
    vm->extra_next = rt->extra_vms;
    if (rt->extra_vms) rt->extra_vms->extra_prev = vm;
    rt->extra_vms = vm;
    rt->group_vms++;
  }
  pthread_mutex_unlock(&rt->lock);
  return stopping;
}

int px_runtime_vm_leave(px_vm *vm) {
  px_runtime *rt = vm->rt;
  pthread_mutex_lock(&rt->lock);
  int stopping = atomic_load(&rt->stopping);
  if (!stopping) {
    if (vm->extra_prev) vm->extra_prev->extra_next = vm->extra_next;
    else rt->extra_vms = vm->extra_next;
    if (vm->extra_next) vm->extra_next->extra_prev = vm->extra_prev;
    rt->group_vms--;
    pthread_cond_broadcast(&rt->down_cond);
  }
  pthread_mutex_unlock(&rt->lock);
  return stopping;
}

int px_runtime_each_pool_vm(px_runtime *rt, void (*fn)(px_vm *vm, void *arg), void *arg) {
  int n = 0;
  pthread_mutex_lock(&rt->lock);
  if (!atomic_load(&rt->stopping)) {
    px_vm *last = rt->extra_vms;
    while (last && last->extra_next) last = last->extra_next;
    for (px_vm *vm = last; vm; vm = vm->extra_prev, n++)
      if (fn) fn(vm, arg);
  }
  pthread_mutex_unlock(&rt->lock);
  return n;
}

/* Starting the workers.  Each builds its own lua_State (px_vm_setup) on
 * its own thread, so that N workers start in about the time of one
 * (measured on 16 cores, first spawn + join: 4 workers 1.58 -> 1.17 ms,
 * 8 workers 2.45 -> 1.52 ms; on 2 cores no difference);
 * the starting thread waits for every outcome at the gate, then lets the
 * first `keep` run (those before the first failure: workers are numbered
 * without gaps) and has the rest discard their VMs. */
typedef struct start_gate {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int *errs;    /* each worker's px_vm_setup result */
  int reported; /* how many have set theirs */
  int keep;     /* once decided: workers below this index run */
  int decided;
  int refs;     /* the starting thread and each worker until it decides */
} start_gate;

typedef struct worker_arg {
  px_vm *vm;
  start_gate *gate;
  int index;
} worker_arg;

static void gate_release(start_gate *g) {
  pthread_mutex_lock(&g->lock);
  int last = --g->refs == 0;
  pthread_mutex_unlock(&g->lock);
  if (!last) return;
  pthread_cond_destroy(&g->cond);
  pthread_mutex_destroy(&g->lock);
  free(g->errs);
  free(g);
}

static void *worker_main(void *arg) {
  worker_arg a = *(worker_arg *)arg;
  free(arg);
  px_vm *vm = a.vm;
  start_gate *g = a.gate;
  int err = px_vm_setup(vm);
  pthread_mutex_lock(&g->lock);
  g->errs[a.index] = err;
  g->reported++;
  pthread_cond_broadcast(&g->cond);
  while (!g->decided) pthread_cond_wait(&g->cond, &g->lock);
  int run = a.index < g->keep;
  pthread_mutex_unlock(&g->lock);
  gate_release(g);
  if (!run) {
    px_vm_discard(vm);
    return NULL;
  }
  px_vm_drive(vm, PX_DRIVE_WORKER, NULL, NULL);
  px_runtime_vm_stop(vm);
  return NULL;
}

/* Start the workers; idempotent, any VM thread (under rt->lock).  Returns
 * 0, or the error that kept every worker from starting (UV_EMFILE when no
 * file descriptor is left for a worker's loop, UV_EAGAIN when no thread
 * can be created, UV_ENOMEM); the runtime then has no workers yet and the
 * next call tries again.  When only some start, the runtime goes on with
 * those (parx.pool.size() says how many). */
int px_runtime_start_workers(px_runtime *rt) {
  if (atomic_load(&rt->workers_started)) return 0;
  int err = 0;
  pthread_mutex_lock(&rt->lock);
  /* Once closing, the rendezvous must not meet workers it did not count. */
  if (atomic_load(&rt->stopping)) err = UV_ECANCELED;
  else if (!atomic_load(&rt->workers_started)) {
    int want = rt->nworkers;
    px_vm **workers = calloc((size_t)want, sizeof *workers);
    pthread_t *threads = calloc((size_t)want, sizeof *threads);
    start_gate *g = calloc(1, sizeof *g);
    int *errs = calloc((size_t)want, sizeof *errs);
    int n = 0;
    if (!workers || !threads || !g || !errs) {
      err = UV_ENOMEM;
      free(g);
      free(errs);
      g = NULL;
    } else {
      pthread_mutex_init(&g->lock, NULL);
      pthread_cond_init(&g->cond, NULL);
      g->errs = errs;
      g->refs = 1;
    }
    for (int i = 0; i < want && !err; i++) {
      px_vm *vm;
      worker_arg *a = malloc(sizeof *a);
      err = a ? px_vm_make(rt, i + 1, &vm) : UV_ENOMEM;
      if (err) {
        free(a);
        break;
      }
      *a = (worker_arg){vm, g, i};
      pthread_mutex_lock(&g->lock);
      g->refs++;
      pthread_mutex_unlock(&g->lock);
      int e = pthread_create(&vm->os_thread, NULL, worker_main, a);
      if (e != 0) {
        err = -e;
        free(a);
        gate_release(g);
        px_vm_discard(vm); /* no other thread has seen it */
        break;
      }
      threads[n] = vm->os_thread;
      workers[n++] = vm;
    }
    int keep = n;
    if (g) {
      pthread_mutex_lock(&g->lock);
      while (g->reported < n) pthread_cond_wait(&g->cond, &g->lock);
      for (int i = 0; i < n; i++)
        if (errs[i]) {
          keep = i;
          if (i == 0) err = errs[0];
          break;
        }
      /* Published before the workers go: a running worker reads
       * rt->workers (px_job_wake). */
      if (keep > 0) {
        rt->workers = workers;
        rt->threads = threads;
        rt->nworkers = keep;
        atomic_store(&rt->workers_started, 1);
        err = 0;
      }
      g->keep = keep;
      g->decided = 1;
      pthread_cond_broadcast(&g->cond);
      pthread_mutex_unlock(&g->lock);
      for (int i = keep; i < n; i++) pthread_join(threads[i], NULL);
      gate_release(g);
    }
    if (keep == 0) {
      free(workers);
      free(threads);
    }
  }
  pthread_mutex_unlock(&rt->lock);
  return err;
}

static int cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

px_runtime *px_runtime_new(int workers, int deadlock_check, const char *trace_path,
                           const px_module *modules) {
  px_runtime *rt = calloc(1, sizeof *rt);
  if (!rt) return NULL;
  if (workers <= 0) {
    const char *env = getenv("PARX_WORKERS");
    workers = env ? atoi(env) : 0;
  }
  if (workers <= 0) workers = cpu_count();
  if (workers > 1024) workers = 1024;
  rt->nworkers = workers;
  rt->last_vm_id = workers; /* pools' own VMs are numbered after the workers */
  rt->deadlock_check = deadlock_check;
  /* Go's scheduler lets at most half its processors spin for work; so
   * does parx, and at least two (a main VM and one worker, ping-ponging),
   * so that spinning never takes a core a thread with work needs. */
  int half = cpu_count() / 2;
  rt->spin_cap = half > 2 ? half : 2;
  rt->modules = modules;
  rt->preload_publish = px_preload_publish;
  rt->preload_sync = px_preload_sync;
  /* A peer that goes away (a closed socket, a child that stopped reading)
   * must give EPIPE to the writer, not kill the process.  Only when the
   * host left SIGPIPE at its default. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  pthread_mutex_init(&rt->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&rt->down_cond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&rt->trace_lock, NULL);
  int err = trace_path ? px_trace_start(rt, *trace_path ? trace_path : NULL) : 0;
  if (err == 0) err = px_vm_new(rt, 0, &rt->main);
  if (err != 0) {
    px_trace_close(rt);
    pthread_cond_destroy(&rt->down_cond);
    pthread_mutex_destroy(&rt->lock);
    free(rt->last_error);
    free(rt);
    errno = -err; /* libuv's codes are negated errno values on Unix */
    return NULL;
  }
  return rt;
}

/* Stop every VM and free everything.  timeout_ms < 0 waits for every
 * worker to stop; >= 0 waits at most that long for the workers to reach a
 * point where they can stop (a task running JIT-compiled code reaches none
 * until it parks or ends) and then abandons them: their threads are
 * detached and stop at their next chance, and nothing is freed (they may
 * still touch the runtime).  Returns 1 when workers were abandoned, else 0.
 * The main VM's thread. */
int px_runtime_close(px_runtime *rt, int timeout_ms) {
  pthread_mutex_lock(&rt->lock); /* px_runtime_start_workers decides under it */
  atomic_store(&rt->stopping, 1);
  int started = atomic_load(&rt->workers_started);
  /* The pools' VMs no longer join or leave: wake them to stop. */
  for (px_vm *vm = rt->extra_vms; vm; vm = vm->extra_next) px_vm_poke(vm);
  pthread_mutex_unlock(&rt->lock);
  if (started) {
    for (int i = 0; i < rt->nworkers; i++) px_vm_poke(rt->workers[i]);
  }
  px_vm_quiesce(rt->main);
  if (gather(rt, PHASE_QUIET, timeout_ms)) {
    if (started)
      for (int i = 0; i < rt->nworkers; i++) pthread_detach(rt->threads[i]);
    return 1;
  }
  if (!rt->main->dead) px_sched_free_tasks(rt->main);
  gather(rt, PHASE_FREED, -1);
  /* Jobs nobody took: their futures end as cancelled. */
  px_job *job;
  while ((job = px_job_take(rt))) {
    atomic_fetch_sub(&rt->pending, 1);
    px_job_discard(job);
  }
  if (started) {
    /* Each worker frees its own VM as its last act: join by saved ids. */
    for (int i = 0; i < rt->nworkers; i++) pthread_join(rt->threads[i], NULL);
    free(rt->threads);
    free(rt->workers);
  }
  /* The pools' threads: each frees its VM and lets go of the runtime. */
  pthread_mutex_lock(&rt->lock);
  while (rt->group_threads > 0) pthread_cond_wait(&rt->down_cond, &rt->lock);
  pthread_mutex_unlock(&rt->lock);
  px_vm_free(rt->main);
  px_trace_close(rt);
  free(rt->path);
  free(rt->cpath);
  px_preload_free(rt);
  for (int i = 0; i < rt->ncfuncs; i++) free(rt->cfuncs[i].name);
  free(rt->cfuncs);
  free(rt->last_error);
  free(atomic_load(&rt->panic_msg));
  pthread_cond_destroy(&rt->down_cond);
  pthread_mutex_destroy(&rt->lock);
  free(rt);
  return 0;
}

