/* vm.c -- a VM: one lua_State, one libuv loop, one scheduler, one inbox.
 *
 * Only the VM's thread touches its state and loop.  Other threads reach it
 * by appending to the inbox under inbox_lock and calling uv_async_send; the
 * loop's async callback does nothing itself: the drive loop drains the inbox
 * after every uv_run, so no Lua ever runs inside a libuv callback.
 *
 * Quiescence (for deadlock detection and for knowing when a program is
 * over) is one counter, rt->pending: the VMs that could still make progress
 * on their own plus the posts and jobs not yet taken.  A VM counts itself
 * out when it has nothing ready, nothing on its loop and no external holds.
 * A post adds one before it is enqueued; the VM that drains it either keeps
 * that unit as its own (it was idle and becomes busy) or drops it.  So
 * pending reaches 0 exactly when nothing anywhere can wake anyone, and stays
 * there: only a busy VM (or a host thread) can post.  The main VM judges.
 * How other threads post to the inbox, wake a task or poke a VM: wake.c.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

const char px_park_marker = 0;

static void async_cb(uv_async_t *h) { (void)h; }
static void tsan_loop_closing(uv_loop_t *loop);

/* Build VM `id` on the calling thread.  Returns 0 with *out set, or a
 * negative error code (UV_EMFILE when no file descriptor is left for the
 * loop or its wake-up eventfd, UV_ENOMEM) with nothing left behind: every
 * step that can fail is checked, so a runtime out of descriptors reports it
 * instead of counting a VM that will never run. */
/* What the layers above the VM's state add to each new lua_State, after
 * the standard libraries and before any script (px_state_setup calls it,
 * protected): coroutine.resume/wrap/status and os.exit in C (lib_base.c),
 * the scheduler's per-VM entries (sched.c).  Passed down, so that state.c
 * calls nothing above it. */
static int open_libs(lua_State *L) {
  px_base_open(L);
  lua_settop(L, 0);
  px_sched_open(L);
  return 0;
}

/* A VM is made in two halves.  px_vm_make, on the calling thread: the
 * loop, its wake-up handle, the inbox and the flight recorder, what other
 * threads reach and what runs out of descriptors.  px_vm_setup, on the
 * thread that will drive it: the lua_State, with the libraries and parx
 * loaded, the costly half (about 0.5 ms), which the workers build in
 * parallel (runtime.c).  trace: the recorder to adopt (px_vm_renew), or
 * NULL for a new one. */
static int vm_make(px_runtime *rt, int id, px_trace *trace, px_vm **out) {
  *out = NULL;
  px_vm *vm = calloc(1, sizeof *vm);
  if (!vm) return UV_ENOMEM;
  vm->life = malloc(sizeof *vm->life);
  if (!vm->life) {
    free(vm);
    return UV_ENOMEM;
  }
  atomic_init(&vm->life->refs, 1);
  atomic_init(&vm->life->vm, vm);
  vm->rt = rt;
  vm->id = id;
  vm->hook_ref = LUA_NOREF;
  vm->cancelled_ref = LUA_NOREF;
  atomic_init(&vm->holds, 0);
  atomic_init(&vm->idle_flag, 0);
  int err = uv_loop_init(&vm->loop);
  if (err != 0) {
    free(vm->life);
    free(vm);
    return err;
  }
  vm->loop.data = vm;
  err = uv_async_init(&vm->loop, &vm->async, async_cb);
  if (err != 0) {
    uv_loop_close(&vm->loop);
    free(vm->life);
    free(vm);
    return err;
  }
  uv_unref((uv_handle_t *)&vm->async);
  pthread_mutex_init(&vm->inbox_lock, NULL);
  px_vm_set_thread(vm);
  atomic_fetch_add(&rt->pending, 1); /* a new VM is busy until it idles */
  vm->trace = trace;
  err = trace ? 0 : px_trace_vm_start(vm);
  if (err != 0) {
    px_vm_discard(vm);
    return err;
  }
  *out = vm;
  return 0;
}

int px_vm_make(px_runtime *rt, int id, px_vm **out) { return vm_make(rt, id, NULL, out); }

int px_vm_setup(px_vm *vm) {
  px_vm_set_thread(vm);
  int err = px_state_setup(vm, open_libs);
  if (err == 0) px_vm_bind_fast(vm->L, vm); /* out of memory: px_vm_of stays on the slow path */
  return err;
}

/* Undo px_vm_make (and px_vm_setup) of a VM that never ran: on the thread
 * that owns it, taking no runtime lock (the starting thread may hold
 * rt->lock).  It was counted busy (rt->pending) from its making; the VM
 * that made it is busy too, so the count does not fall to 0 here and no
 * one need be woken to judge (the main VM may not exist yet). */
void px_vm_discard(px_vm *vm) {
  atomic_fetch_sub(&vm->rt->pending, 1);
  px_vm_free(vm);
}

static int vm_new(px_runtime *rt, int id, px_trace *trace, px_vm **out) {
  px_vm *vm;
  int err = vm_make(rt, id, trace, &vm);
  if (err == 0 && (err = px_vm_setup(vm)) != 0) px_vm_discard(vm);
  *out = err == 0 ? vm : NULL;
  return err;
}

int px_vm_new(px_runtime *rt, int id, px_vm **out) { return vm_new(rt, id, NULL, out); }

int px_vm_renew(px_vm **vm) {
  px_vm *old = *vm;
  px_runtime *rt = old->rt;
  int id = old->id;
  px_trace *trace = old->trace;
  px_vm_free(old); /* the recorder outlives it (trace.c) */
  int err = vm_new(rt, id, trace, vm);
  if (err == 0) px_trace_check(trace);
  return err;
}

/* Under ThreadSanitizer: libuv (Debian's, not instrumented) closes the
 * loop's epoll and eventfd descriptors with a raw syscall(SYS_close) that
 * TSan never sees, so when this thread's VM ends before the runtime does
 * (a pool's VM) and another thread gets the same number back, TSan takes
 * that thread's close for a race with this one's old epoll_wait.  Tell it
 * of the close, on this thread, as its own close interceptor would. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PX_TSAN 1
#endif
#endif
#ifdef PX_TSAN
#include <sanitizer/linux_syscall_hooks.h>
static void tsan_loop_closing(uv_loop_t *loop) {
  int fds[] = {uv_backend_fd(loop), loop->async_io_watcher.fd, loop->async_wfd};
  for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
    if (fds[i] > 2) __sanitizer_syscall_pre_close(fds[i]);
}
#else
static void tsan_loop_closing(uv_loop_t *loop) { (void)loop; }
#endif

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void px_vm_free(px_vm *vm) {
  atomic_store(&vm->life->vm, NULL); /* future.c: owner_vm */
  px_vm_life_release(vm->life);
  if (vm->dead) {
    /* Its state panicked (state.c): neither the lua_State nor the loop
     * (left inside uv_run by the jump) can be closed safely.  Abandon
     * them, and the VM with them. */
    px_trace_vm_end(vm);
    return;
  }
  if (vm->L) {
    px_vm_unbind_fast(vm->L);
    lua_close(vm->L);
  }
  px_trace_vm_end(vm);
  px_paths_free(vm);
  vm->L = NULL;
  /* Handles of modules were closed by their __gc; close what is left. */
  uv_walk(&vm->loop, close_walk, NULL);
  uv_run(&vm->loop, UV_RUN_DEFAULT);
  tsan_loop_closing(&vm->loop);
  uv_loop_close(&vm->loop);
  pthread_mutex_destroy(&vm->inbox_lock);
  free(vm);
}

/* Take over n units of rt->pending (posts or jobs just taken). */
static void take_pending(px_vm *vm, long n) {
  long drop = n;
  if (atomic_load_explicit(&vm->idle_flag, memory_order_relaxed)) {
    atomic_store(&vm->idle_flag, 0);
    drop--; /* keep one unit as this VM's own */
  }
  if (drop) atomic_fetch_sub(&vm->rt->pending, drop);
}

/* Returns 1 on the main VM when the runtime is quiescent. */
static int become_idle(px_vm *vm);

void px_vm_count_out(px_vm *vm) { become_idle(vm); }

static int become_idle(px_vm *vm) {
  px_runtime *rt = vm->rt;
  if (!atomic_load_explicit(&vm->idle_flag, memory_order_relaxed)) {
    atomic_store(&vm->idle_flag, 1);
    if (atomic_fetch_sub(&rt->pending, 1) == 1 && vm != rt->main) {
      /* Let the main VM judge: it is idle too, so wake it. */
      px_vm_poke(rt->main);
    }
  }
  return vm == rt->main && atomic_load(&rt->pending) == 0;
}

static void drain_inbox(px_vm *vm) {
  pthread_mutex_lock(&vm->inbox_lock);
  px_wait *w = vm->inbox_head;
  __atomic_store_n(&vm->inbox_head, NULL, __ATOMIC_RELAXED);
  vm->inbox_tail = NULL;
  pthread_mutex_unlock(&vm->inbox_lock);
  if (!w) return;
  long n = 0;
  for (px_wait *p = w; p; p = p->next) n++;
  take_pending(vm, n);
  while (w) {
    px_wait *next = w->next;
    px_sched_deliver(vm, w);
    w = next;
  }
}

static int has_work(px_vm *vm) {
  return vm->ready_head || vm->wakes_head;
}

static int loop_busy(px_vm *vm) {
  return uv_loop_alive(&vm->loop) || atomic_load(&vm->holds) > 0;
}

/* Before a thread sleeps, it polls briefly for a post or a job: a futex or
 * eventfd wake-up costs tens of microseconds on a VM, a spawn + join round
 * trip needs two of them, and most wake-ups in a busy runtime come within
 * a few microseconds.  Go's scheduler spins for the same reason.  The cost:
 * up to SPIN_NS of CPU each time a thread runs out of work; sched_yield
 * keeps it from stealing a core from a thread that has work, and at most
 * rt->spin_cap threads spin at once (half the CPUs, as Go's scheduler
 * allows; one run on a 16-core VM, 16 workers: a CPU-bound pool.map 0.075 s
 * against 0.104 s with every idle thread spinning, spawn + join 8.0 us
 * against 8.6). */
#define SPIN_NS 50000

static int spin_poll(px_vm *vm, int worker) {
  px_runtime *rt = vm->rt;
  /* Relaxed: a count, not a hand-over (it orders nothing, and as a
   * seq_cst read-modify-write every VM shares it would order each VM's
   * accesses after the others' for ThreadSanitizer, hiding real races). */
  if (atomic_fetch_add_explicit(&rt->nspinning, 1, memory_order_relaxed) >= rt->spin_cap) {
    atomic_fetch_sub_explicit(&rt->nspinning, 1, memory_order_relaxed);
    return 0;
  }
  int r = 0;
  uint64_t until = uv_hrtime() + SPIN_NS;
  do {
    for (int i = 0; i < 200 && !r; i++) {
      if (worker && !vm->source && __atomic_load_n(&rt->jobs_head, __ATOMIC_ACQUIRE)) r = 2;
      else if (__atomic_load_n(&vm->inbox_head, __ATOMIC_ACQUIRE)) r = 1;
      else if (worker && vm->source && vm->source->peek(vm)) r = 1;
      else if (atomic_load_explicit(&rt->stopping, memory_order_relaxed)) r = 1;
      else __builtin_ia32_pause();
    }
    if (r) break;
    sched_yield();
  } while (uv_hrtime() < until);
  atomic_fetch_sub_explicit(&rt->nspinning, 1, memory_order_relaxed);
  return r;
}

/* A worker spins flagged `spinning`: px_job_push wakes nobody while one
 * does (job.c).  One that stops for a post hands a job queued meanwhile
 * to another worker. */
static int spin_for_work(px_vm *vm) {
  int worker = vm != vm->rt->main;
  if (!worker || vm->source) return spin_poll(vm, worker) != 0; /* a group's VM: its own queue */
  atomic_store(&vm->spinning, 1);
  int r = spin_poll(vm, 1);
  atomic_store(&vm->spinning, 0);
  if (r != 2 && __atomic_load_n(&vm->rt->jobs_head, __ATOMIC_SEQ_CST)) px_job_wake(vm->rt, vm);
  return r != 0;
}

/* Block until the loop has something: IO, a timer, or a post. */
static void run_loop(px_vm *vm, uv_run_mode mode) {
  vm->in_uv_run = 1;
  uv_run(&vm->loop, mode);
  vm->in_uv_run = 0;
}

static void block(px_vm *vm) {
  atomic_store(&vm->asleep, 1);
  if (__atomic_load_n(&vm->inbox_head, __ATOMIC_SEQ_CST)) {
    atomic_store(&vm->asleep, 0);
    return;
  }
  if (!uv_loop_alive(&vm->loop)) {
    uv_ref((uv_handle_t *)&vm->async);
    run_loop(vm, UV_RUN_ONCE);
    uv_unref((uv_handle_t *)&vm->async);
  } else {
    run_loop(vm, UV_RUN_ONCE);
  }
  atomic_store(&vm->asleep, 0);
}

/* One step for a host driving the main VM (parx_step). */
static int step(px_vm *vm, int mode) {
  px_runtime *rt = vm->rt;
  drain_inbox(vm);
  px_sched_run_ready(vm);
  if (mode == PX_DRIVE_STEP && !has_work(vm) && uv_loop_alive(&vm->loop)) {
    atomic_store(&vm->asleep, 1); /* it may block: posts must wake it */
    if (!__atomic_load_n(&vm->inbox_head, __ATOMIC_SEQ_CST)) run_loop(vm, UV_RUN_ONCE);
    atomic_store(&vm->asleep, 0);
  } else {
    run_loop(vm, UV_RUN_NOWAIT);
  }
  drain_inbox(vm);
  px_sched_run_ready(vm);
  if (has_work(vm) || loop_busy(vm)) return 1;
  /* Nothing here can progress on its own: count this VM out so the host
   * can wait on the backend fd for a post.  If that makes the whole
   * runtime quiet, parked tasks can never wake: say so with -1. */
  if (become_idle(vm)) {
    atomic_store(&vm->idle_flag, 0);
    atomic_fetch_add(&rt->pending, 1);
    return vm->ntasks > 0 ? -1 : 0;
  }
  return 1;
}

/*
 * The one drive loop of every VM.
 *   PX_DRIVE_WORKER: until the runtime stops; takes jobs when nothing is ready.
 *   PX_DRIVE_UNTIL: until done(vm, arg) is true, os.exit was called, or the
 *     runtime is quiescent (returns 1 then, 0 otherwise; the caller decides
 *     whether that is a deadlock).
 *   PX_DRIVE_STEP / _NOWAIT: ready tasks, one loop iteration (blocking or
 *     not), ready tasks again; returns 1 if more work may come, 0 if
 *     nothing is left anywhere, -1 if tasks of this VM are parked and the
 *     runtime is quiescent (nothing can wake them).
 */
static int drive(px_vm *vm, int mode, int (*done)(px_vm *, void *), void *arg) {
  px_runtime *rt = vm->rt;
  px_vm_set_thread(vm);
  if (atomic_load(&vm->idle_flag)) {
    atomic_store(&vm->idle_flag, 0);
    atomic_fetch_add(&rt->pending, 1);
  }
  if (mode == PX_DRIVE_STEP || mode == PX_DRIVE_STEP_NOWAIT) {
    /* Between steps the host, not this VM, waits: posts must write the
     * eventfd it polls (asleep stays set outside parx_step). */
    atomic_store(&vm->asleep, 0);
    int more = step(vm, mode);
    atomic_store(&vm->asleep, 1);
    if (__atomic_load_n(&vm->inbox_head, __ATOMIC_SEQ_CST) && more == 0) more = 1;
    return more;
  }
  atomic_store(&vm->asleep, 0);
  for (;;) {
    drain_inbox(vm);
    px_sched_run_ready(vm);
    if (mode == PX_DRIVE_WORKER) {
      if (atomic_load(&rt->stopping)) return 0;
    } else {
      if (rt->exit_requested || atomic_load(&rt->stopping)) return 0;
      if (done && done(vm, arg)) return 0;
    }
    if (has_work(vm)) {
      /* Keep IO flowing while tasks are busy. */
      run_loop(vm, UV_RUN_NOWAIT);
      continue;
    }
    if (mode == PX_DRIVE_WORKER) {
      /* A pool's own VM (group.c) takes its group's jobs only, and ends
       * once its group is done with it. */
      px_job *job = vm->source ? vm->source->take(vm) : px_job_take(rt);
      if (job) {
        take_pending(vm, 1);
        if (!vm->source) px_job_took(rt, vm); /* more queued: another worker comes */
        px_job_run(vm, job);
        continue;
      }
      if (vm->source && !loop_busy(vm) && vm->source->ends(vm)) return 0;
    }
    if (!loop_busy(vm)) {
      if (spin_for_work(vm)) continue;
      int quiet = become_idle(vm);
      if (quiet && mode == PX_DRIVE_UNTIL) {
        /* Nothing anywhere can make progress. */
        atomic_store(&vm->idle_flag, 0);
        atomic_fetch_add(&rt->pending, 1);
        return 1;
      }
    }
    if (mode == PX_DRIVE_WORKER) {
      /* px_job_push pokes an idle or a sleeping worker.  A job
       * pushed before the flag was set found none to poke: look again
       * after setting it, or the job would wait for the next poke. */
      atomic_store(&vm->sleeping, 1);
      if (vm->source ? vm->source->peek(vm) : __atomic_load_n(&rt->jobs_head, __ATOMIC_SEQ_CST) != NULL) {
        atomic_store(&vm->sleeping, 0);
        continue;
      }
      block(vm);
      atomic_store(&vm->sleeping, 0);
      continue;
    }
    block(vm);
  }
}

/* Every drive is a recovery point for a panic of this VM (state.c): the
 * handler marks the VM dead and jumps back here, and the drive returns as
 * if the runtime had stopped (px_runtime_panic stopped it).  A dead VM is
 * never driven again.  sigsetjmp without the signal mask: no syscall. */
int px_vm_drive(px_vm *vm, int mode, int (*done)(px_vm *, void *), void *arg) {
  if (vm->dead) return 0;
  px_rescue rescue;
  if (sigsetjmp(rescue.buf, 0)) return 0;
  px_rescue_push(&rescue);
  int r = drive(vm, mode, done, arg);
  px_rescue_pop(&rescue);
  return r;
}

/* Shutdown, phase 1: detach every parked task from its wait source and take
 * the wakes already on their way, so that no thread will post to this VM
 * again.  Phase 2 (freeing) starts once every VM has done this. */
void px_vm_quiesce(px_vm *vm) {
  px_vm_set_thread(vm);
  if (vm->dead) return; /* abandoned: nothing of it runs again */
  px_sched_teardown(vm);
  for (;;) {
    while (vm->wakes_head) {
      px_wait *w = vm->wakes_head;
      vm->wakes_head = w->next;
      if (!vm->wakes_head) vm->wakes_tail = NULL;
      px_sched_deliver(vm, w);
    }
    drain_inbox(vm);
    if (vm->expect_wakes <= 0 && !vm->wakes_head) break;
    block(vm);
  }
}
