/*
 * core.h -- structures private to the core (runtime/core): the VM, the
 * task, the runtime.  The task module (mod/task.c) reads a VM's current
 * task through it; other modules use px.h only, the faces runtime.h.
 */
#ifndef PX_CORE_PRIVATE_H
#define PX_CORE_PRIVATE_H

#include <pthread.h>
#include <setjmp.h>

#include "px.h"
#include "runtime.h"

typedef struct px_future px_future;
typedef struct px_job px_job;
typedef struct px_copool px_copool;

/* Task states. */
enum { PX_TASK_READY, PX_TASK_RUNNING, PX_TASK_PARKED, PX_TASK_DONE };

/* A coroutine scheduled by one VM.  Touched only by that VM's thread. */
struct px_task {
  px_vm *vm;
  lua_State *co;
  px_wait *wait;       /* current wait while parked */
  px_future *future;   /* one reference, dropped when the task ends */
  px_task *next_ready, *prev_ready;
  px_task *prev, *next; /* all tasks of the VM (deadlock reports) */
  int co_ref;          /* registry reference anchoring co */
  int inject_ref;      /* error to raise at the next resume, or LUA_NOREF */
  int nargs;           /* values on co's stack for the next resume */
  int stale_wakes;     /* wakes still to come for parks that failed; the
                          struct outlives the task until they came */
  unsigned char state; /* PX_TASK_* */
  unsigned char wake_in_flight; /* cancel() returned 0: discard the wake when it comes */
  unsigned char msgh;  /* started under xpcall with sched.c's message handler */
  px_trace_task trace; /* what trace.c records about it */
};

/* What outlives a VM for those that must know whether it still runs (a
 * local future freed after its VM ended or was renewed): vm is cleared, on
 * the VM's own thread, before its state is closed. */
typedef struct px_vm_life {
  atomic_int refs;
  _Atomic(px_vm *) vm;
} px_vm_life;
static inline void px_vm_life_release(px_vm_life *life) {
  if (atomic_fetch_sub(&life->refs, 1) == 1) free(life);
}

struct px_vm {
  px_runtime *rt;
  px_vm_life *life;   /* vm.c: one per lua_State; futures retain it */
  int id;
  lua_State *L;
  lua_CFunction open_libs; /* vm.c's, run by px_state_setup after the libraries */
  uv_loop_t loop;
  uv_async_t async;   /* unreferenced; wakes the loop for the inbox */
  pthread_t thread;       /* the thread driving this VM now */
  pthread_t os_thread;    /* a worker's own thread, for joining */

  /* Scheduler (VM thread only). */
  px_task *ready_head, *ready_tail;
  px_wait *wakes_head, *wakes_tail; /* local wakes not yet delivered */
  px_task *current;
  px_task *tasks;         /* all live tasks */
  long ntasks, nparked;
  int inline_depth;       /* nested px_sched_run_inline calls */
  int in_uv_run;          /* inside uv_run: local wakes uv_stop it */
  atomic_int idle_flag;   /* 1: counted out of rt->pending (vm.c) */
  atomic_int asleep;      /* blocked in its loop (or its host polls): posts
                             must uv_async_send (vm.c) */
  atomic_int sleeping;    /* worker about to block or blocked in its loop */
  atomic_int spinning;    /* worker polling for a post or a job (vm.c) */
  int hook_ref;           /* pending injected error for the count hook */
  int dead;               /* its lua_State panicked: never touched again
                             (state.c on_panic) */
  int cancelled_ref;      /* the CANCELLED error object (state.c) */
  /* Error injection (sched.c): the user's hook, put back when the
   * injection fires; where it rewrites pcall's results instead of raising
   * (inject_co's register inject_slot, 0: raise); the base functions
   * (pcall, xpcall, the message handler) and the protected trampoline for
   * deliver() and job start-up.  Refs are 0 until task.lua ran. */
  lua_Hook saved_hook;
  int saved_mask, saved_count;
  int inject_slot;
  lua_State *inject_co;
  int base_ref, call_ref;
  uint64_t *gc_threshold;  /* sched_lj.c: LuaJIT's gc.threshold, or NULL */
  uint64_t gc_stopped;     /* its value that holds off GC steps */

  /* Cross-thread inbox. */
  pthread_mutex_t inbox_lock; /* guards inbox_head/tail, tasks list reads */
  px_wait *inbox_head, *inbox_tail;

  atomic_long holds;      /* px_vm_hold */
  long expect_wakes;      /* teardown: cancels that returned 0 */
  long stale_wakes;       /* sum of the tasks' stale_wakes (teardown) */
  px_trace *trace;        /* its flight recorder, trace log, counters (trace.h) */

  /* A VM of a pool's own (group.c): where it takes jobs (NULL: the
   * runtime's queue), its group, its slot there, the tasks it counted, and
   * whether it takes no more jobs (VM thread only); its links in the
   * runtime's list of such VMs (under rt->lock). */
  const struct px_job_source *source;
  struct px_group *group;
  int group_slot;
  long group_tasks;
  int retiring;
  px_vm *extra_next, *extra_prev;

  /* Search paths last published or adopted (paths.c). */
  const char *seen_path_ptr, *seen_cpath_ptr;
  char *path, *cpath;
  long paths_gen;
  px_copool *copool;      /* finished coroutines for the next tasks (copool.c) */
};

struct px_runtime {
  int nworkers;
  int deadlock_check;
  px_vm *main;
  px_vm **workers;
  pthread_t *threads;
  atomic_int workers_started;
  atomic_int stopping;
  /* Shutdown rendezvous (runtime.c), under `lock`. */
  pthread_cond_t down_cond;
  int arrived[2], released, abandoned;
  /* VMs of pools (group.c), under `lock`: those that take part in the
   * rendezvous (listed, and counted in group_vms); their threads still
   * running; the last VM id handed out (workers have 1..nworkers). */
  px_vm *extra_vms;
  int group_vms, group_threads;
  int last_vm_id;

  pthread_mutex_t lock;   /* guards jobs, worker start-up, cfuncs */
  px_job *jobs_head, *jobs_tail;
  long njobs;
  atomic_uint next_worker;
  atomic_int nspinning;       /* threads in spin_poll now (vm.c) */
  int spin_cap;               /* at most this many at once */

  /* Quiescence: busy VMs plus posts and jobs not yet taken (vm.c). */
  atomic_long pending;
  /* What the process waits for after the main chunk (leftover.c): tasks
   * not ended and not daemons (future.c counts them); the daemons' futures,
   * under `lock` (cancel.c cancels them at exit). */
  atomic_long live_tasks;
  px_future *daemons;

  const px_module *modules; /* preloaded in every VM (state.c); the faces' list */
  struct { char *name; lua_CFunction fn; const luaL_Reg *lib; } *cfuncs;
  int ncfuncs;

  /* Results of the embedding API. */
  char *last_error;
  atomic_int exit_code;
  atomic_int exit_requested;
  int deadlocked;
  atomic_long seq;
  atomic_int panicked;    /* a VM panicked: the runtime stopped (state.c) */
  char *_Atomic panic_msg;

  /* The search paths of the last VM that sent code (paths.c). */
  char *path, *cpath;
  atomic_long paths_gen;
  /* package.preload entries published by VMs that sent code
   * (marshal_preload.c), newest first; under `lock`. */
  struct px_preload *preloads;
  long preloads_gen;
  /* paths.c calls these around code crossing (set by runtime.c: the
   * marshaller is below marshal_preload.c, which calls it). */
  void (*preload_publish)(lua_State *L, px_vm *vm);
  void (*preload_sync)(lua_State *L, px_vm *vm);

  /* Tracing (trace.c, trace_json.c).  trace_lock guards the list of
   * every VM's recorder (kept until close) and the session below. */
  pthread_mutex_t trace_lock;
  px_trace **traces;
  int ntraces;
  atomic_int tracing;         /* a trace session is on: VMs log */
  char *trace_path;           /* where the session writes, or NULL */
  uint64_t trace_from, trace_to; /* the session's window (ticks; to 0: open) */
};

/* ---- vm.c (px_vm_post, px_vm_poke: wake.c) ---- */
int px_vm_new(px_runtime *rt, int id, px_vm **out); /* 0 or UV_E* */
/* px_vm_new in two halves: make (loop, inbox, recorder) on any thread,
 * then setup (the lua_State) on the thread that drives the VM; discard
 * undoes either on the VM's owner, taking no runtime lock. */
int px_vm_make(px_runtime *rt, int id, px_vm **out); /* 0 or UV_E* */
int px_vm_setup(px_vm *vm);                          /* 0 or UV_E* */
void px_vm_discard(px_vm *vm);
void px_vm_free(px_vm *vm);
void px_vm_set_thread(px_vm *vm); /* wake.c: vm is driven by this thread now */
void px_vm_post(px_vm *vm, px_wait *w);   /* any thread */
/* Drive until done(arg) says so, the runtime stops, or (once) a step. */
enum { PX_DRIVE_UNTIL, PX_DRIVE_STEP, PX_DRIVE_STEP_NOWAIT, PX_DRIVE_WORKER };
int px_vm_drive(px_vm *vm, int mode, int (*done)(px_vm *, void *), void *arg);
void px_vm_poke(px_vm *vm);                /* any thread */
void px_vm_quiesce(px_vm *vm);             /* shutdown phase 1, VM thread */
/* Where the drive loop of a VM with vm->source takes its jobs (a pool's
 * own VMs, group.c) instead of the runtime's queue. */
typedef struct px_job_source {
  px_job *(*take)(px_vm *vm); /* the next job, or NULL */
  int (*peek)(px_vm *vm);     /* whether one may be waiting (no lock) */
  int (*ends)(px_vm *vm);     /* idle, without tasks: 1 ends the drive */
} px_job_source;
/* A fresh VM in *vm's place, with its id and flight recorder; the old one
 * (without tasks, quiesced, counted out) is freed.  0, or an error with
 * *vm freed and NULL. */
int px_vm_renew(px_vm **vm);
/* The VM stops counting itself busy (rt->pending) before it ends on its own. */
void px_vm_count_out(px_vm *vm);

/* ---- runtime.c: VMs of pools in the shutdown rendezvous ---- */
/* vm takes part (counted, poked at close); 1 instead when the runtime is
 * stopping (then it does not). */
int px_runtime_vm_join(px_vm *vm);
/* vm leaves to end on its own; 1 instead when the runtime is stopping: it
 * is still counted and must stop with the others (px_runtime_vm_stop). */
int px_runtime_vm_leave(px_vm *vm);
/* A VM thread at the runtime's close: the rendezvous, then its VM freed.
 * 1 when the runtime abandoned it instead (touch nothing). */
int px_runtime_vm_stop(px_vm *vm);
/* fn(vm, arg) for each VM of the pools of their own that takes part now,
 * the oldest first, under rt->lock: none of them ends while fn runs (a VM
 * leaves the list under that lock before it stops).  fn may not take
 * rt->lock nor run Lua (a __gc might take it).  None once the runtime is
 * stopping.  Returns how many; fn NULL only counts. */
int px_runtime_each_pool_vm(px_runtime *rt, void (*fn)(px_vm *vm, void *arg), void *arg);
extern const char px_park_marker;

/* ---- cancel.c, leftover.c ---- */
/* Cancel f's task from VM `from` (any VM, its thread): a queued job ends
 * cancelled at once, a running task gets parx.CANCELLED at its park
 * point.  1 if asked, 0 if f had ended, UV_ENOMEM. */
int px_future_cancel(px_vm *from, px_future *f);
/* Cancel every daemon task; how many were asked.  The main VM's thread. */
int px_runtime_cancel_daemons(px_runtime *rt);
/* After the main chunk: drive the main VM while non-daemon tasks are left,
 * then cancel the daemons and let their cleanup run (px_host_drain). */
void px_leftover_drain(px_runtime *rt);

/* ---- sched.c ---- */
px_task *px_task_new(px_vm *vm, lua_State *co, px_future *h); /* co on top of vm->L; popped */
/* The same with co on top of L, any state of vm (popped); guarded: co
 * holds [xpcall, fn, handler, args...] already (px_sched_guard_values). */
px_task *px_task_new_from(px_vm *vm, lua_State *L, lua_State *co, px_future *h, int guarded);
/* Push LuaJIT's xpcall and the tasks' message handler (for a module that
 * builds task stacks itself); 0 if the VM has none yet (nothing pushed). */
int px_sched_guard_values(lua_State *L);
/* The same as px_task_new_from with co already anchored by the registry
 * reference co_ref (not on any stack; the task owns co_ref from here,
 * and on failure too). */
px_task *px_task_new_ref(px_vm *vm, lua_State *co, int co_ref, px_future *h, int guarded);

/* ---- copool.c: finished coroutines kept for reuse ---- */
/* A coroutine of vm (empty stack, L's globals) with its registry reference
 * in *ref, or NULL: make one (lua_newthread).  May raise (memory) the first
 * time.  VM thread. */
lua_State *px_copool_take(lua_State *L, px_vm *vm, int *ref);
/* Keep co (anchored by ref) for a later task if it returned, else release
 * ref.  Never raises or allocates (safe in __gc).  VM thread. */
void px_copool_put(px_vm *vm, lua_State *co, int ref);
int px_sched_run_ready(px_vm *vm);        /* returns tasks resumed */
int px_sched_run_inline(px_vm *vm, px_task *t); /* 1 if t ran now */
void px_sched_deliver(px_vm *vm, px_wait *w);
void px_task_raise(px_task *t); /* VM thread; error value on top of vm->L */
/* enter.c: run fn(vm->L, ud) protected through the VM's anchored trampoline (no
 * allocation per call), with the nargs values on top of vm->L as its
 * stack; 0, or a LUA_ERR* status with the error on top of vm->L.  fn
 * returns how many values it leaves (kept on vm->L on success). */
int px_sched_protect(px_vm *vm, int (*fn)(lua_State *L, void *ud), void *ud, int nargs);
void px_sched_protect_anchor(px_vm *vm); /* enter.c: once per VM, px_sched_open */
int px_sched_open(lua_State *L);  /* per VM at start-up, after the libraries (vm.c) */
int px_sched_forward(lua_State *L, lua_State *child, int wrap); /* lib_base.c */
void px_sched_exit(lua_State *L);  /* os.exit: nothing more runs in this VM's tasks */
int px_sched_is_forwarding(lua_State *co);
int px_base_open(lua_State *L);    /* lib_base.c: coroutine.resume/wrap/status, os.exit */
/* sched_lj.c: the address of L's GC threshold (L a main state) and the
 * value that holds off GC steps, or NULL when the probe fails. */
uint64_t *px_sched_lj_threshold(lua_State *L, uint64_t *stopped);
void px_sched_free_tasks(px_vm *vm);
void px_sched_teardown(px_vm *vm);
void px_sched_report(px_vm *vm, luaL_Buffer *b);

/* ---- runtime.c (and runtime.h) ---- */
int px_runtime_start_workers(px_runtime *rt);        /* 0 or UV_E* */
/* ---- status.c ---- */
void px_runtime_panic(px_runtime *rt, const char *msg); /* any thread */
/* os.exit(code) from any VM: record it and stop the runtime. */
void px_runtime_exit(px_runtime *rt, int code);
/* What a task unwinds with after os.exit (no pcall catches it). */
extern const char px_exit_marker;

/* ---- future.c (future.h), job.c (job.h) ---- */
void px_future_finish(px_future *f, px_task *t, int status); /* VM thread */
void px_job_run(px_vm *vm, px_job *job);
void px_job_discard(px_job *job);

/* ---- paths.c ---- */
void px_paths_free(px_vm *vm);
/* ---- marshal_preload.c (called by paths.c through the runtime's hooks) ---- */
typedef struct px_preload px_preload;
void px_preload_publish(lua_State *L, px_vm *vm); /* after sending code */
void px_preload_sync(lua_State *L, px_vm *vm);    /* before reading code */
void px_preload_free(px_runtime *rt);
/* Publish the function at fn as package.preload[name] now, and set it
 * here: 0, or -1 with a message pushed (it cannot cross). */
int px_preload_put(lua_State *L, px_vm *vm, const char *name, int fn);

/* ---- trace.c ---- */
int px_trace_vm_start(px_vm *vm);     /* 0 or UV_ENOMEM */
void px_trace_vm_end(px_vm *vm);

/* ---- enter.c (px_pcall, px_cpcall, px_vm_of: px.h) ---- */
void px_vm_bind(lua_State *L, px_vm *vm); /* px_vm_of(L) finds vm from now on */
int px_vm_bind_fast(lua_State *L, px_vm *vm); /* vm.c: after set-up; faster px_vm_of */
void px_vm_unbind_fast(lua_State *L);         /* vm.c: before lua_close */

/* ---- state.c ---- */
int px_state_setup(px_vm *vm, lua_CFunction open); /* libs, then open(L) (the layers above), preloads, parx global; 0 or UV_E* */
/* A recovery point for the panic handler on this thread: set up with
 *   px_rescue r; if (sigsetjmp(r.buf, 0)) { ...the VM died... } px_rescue_push(&r);
 *   ... px_rescue_pop(&r);
 * The handler pops it itself before jumping back. */
typedef struct px_rescue {
  sigjmp_buf buf;
  struct px_rescue *prev;
} px_rescue;
void px_rescue_push(px_rescue *r);
void px_rescue_pop(px_rescue *r);
int px_traceback(lua_State *L);  /* message handler (enter.c) */

#endif
