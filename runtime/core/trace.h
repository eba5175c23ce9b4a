/*
 * trace.h -- what every VM records about itself (core/trace.c): the
 * flight recorder, the full trace and the counters behind parx.stats().
 *
 * Each VM owns one px_trace, written only by its own thread, never locked:
 *   - the flight recorder: a ring of the last PX_TRACE_RING events, always
 *     on; a dump (SIGUSR1, parx.trace.dump) reads it;
 *   - the log: every event since tracing started (--trace,
 *     parx.trace.start), in blocks that are never moved or freed before
 *     the runtime closes, so another thread may read the first `len`
 *     events (published with a release store) while this one appends;
 *   - the counters of parx.stats(), plain numbers written with relaxed
 *     atomic stores (no read-modify-write: only this thread writes them).
 * Events are binary (px_event): times in clock ticks (px_trace_now), names
 * as pointers to strings that live as long as the runtime (literals, or
 * copies interned in the VM's string table).  JSON is made only when a
 * trace is written (trace_json.c).
 *
 * The scheduler and the modules record through the one-line calls below
 * (px_trace_run_begin ... px_trace_chunk_end); with tracing off a run
 * slice costs two clock reads and one 56-byte store (a px_event, on a
 * 64-bit target: checked below) into the ring, a wait
 * one more store and no clock read (it ends when its VM next runs a
 * slice), and pool chunks nothing but two stores (their events are the
 * trace's only).
 */
#ifndef PX_TRACE_H
#define PX_TRACE_H

#include <stdatomic.h>
#include <stdlib.h>
#include <stdint.h>

#include <lua.h>
#include <uv.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

typedef struct px_vm px_vm;
typedef struct px_task px_task;
typedef struct px_wait px_wait;
typedef struct px_runtime px_runtime;

/* Event kinds.  Categories of a slice are the PX_CAT_* (trace.c names them
 * "run", "wait.chan", ...). */
enum {
  PX_EV_RUN,      /* a task ran from t0 to t1 (a = its first slice) */
  PX_EV_WAIT,     /* a task waited from t0 to t1 on name (a = object id,
                     b = what it waited on: px_trace_wait_on's string) */
  PX_EV_CHUNK,    /* a pool chunk, or the part of it inside one run slice:
                     items a..b (1-based) */
  PX_EV_SLICE,    /* a module's slice (GPU work): name */
  PX_EV_MARK,     /* parx.trace.mark(name): an instant */
  PX_EV_FLOW_OUT, /* a flow starts here: a = its id, name "spawn"/"send" */
  PX_EV_FLOW_IN,  /* a flow ends here (b = 1: inside the running slice;
                     t1 > 0: on VM t1 - 1's track, at its next slice) */
  PX_EV_COUNTER   /* counter `name` is a from now on */
};
enum {
  PX_CAT_RUN, PX_CAT_CHAN, PX_CAT_LOCK, PX_CAT_IO, PX_CAT_GPU, PX_CAT_MPI,
  PX_CAT_SLEEP, PX_CAT_TASK, PX_CAT_CHUNK, PX_CAT_MARK, PX_CAT_OTHER, PX_CAT_N
};

typedef struct px_event {
  uint64_t t0, t1;
  const char *name;
  long task;       /* the task's number (its future's seq), 0: none */
  int64_t a, b;
  uint32_t kind, cat;
} px_event;
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(px_event) == 56, "px_event: the size trace.h's cost notes and PX_TRACE_RING's memory assume");
#endif

/* Flight recorder size: events per VM (a power of two). */
#define PX_TRACE_RING 4096

/* Log blocks. */
#define PX_TRACE_BLOCK 4096
typedef struct px_trace_block {
  px_event ev[PX_TRACE_BLOCK];
  struct px_trace_block *_Atomic next;
} px_trace_block;

typedef struct px_trace_chunk {
  int64_t lo, hi;      /* the items it runs, lo 0 when none */
  uint64_t t0;         /* start of its slice in this run slice */
} px_trace_chunk;

/* Per-task bookkeeping, inside px_task: kept small, since every task
 * (100,000 sleeping asyncs) carries it. */
typedef struct px_trace_task {
  uint64_t first;      /* when it first ran (0: not yet) */
  uint64_t park_ts;    /* when it parked (the dump's "since") */
  /* Interned, or NULL: the user's label (parx.trace.label, spawn{name=}),
   * else "fn@file.lua:12" (named at its first traced slice). */
  const char *name;
  px_trace_chunk *chunk; /* a pool task's chunk (px_trace_chunk_begin), or NULL */
  const px_wait *on_wait; /* px_trace_wait_on: the wait `on` describes */
  const char *on;
} px_trace_task;

/* When the task's struct is freed. */
static inline void px_trace_task_free(px_trace_task *tt) { free(tt->chunk); }

/* Counters of parx.stats() (ticks for times). */
typedef struct px_trace_stats {
  _Atomic uint64_t busy, parked, tasks, chan_ops, messages, bytes, gpu, mpi;
  _Atomic uint64_t hist[64 * 4]; /* task durations, log2 buckets in quarters */
} px_trace_stats;

typedef struct px_strtab px_strtab;

typedef struct px_trace {
  px_runtime *rt;
  int vm_id;
  const atomic_int *tracing;   /* the runtime's flag */
  px_event *ring;              /* PX_TRACE_RING events */
  _Atomic uint64_t ring_pos;   /* events ever put in the ring */
  /* The log (tracing on); blocks are appended, never moved. */
  int logging;
  px_trace_block *first_block, *last_block;
  _Atomic uint64_t len;        /* events in the log */
  uint64_t max_len;
  atomic_int truncated;
  /* Scheduling state for the counters. */
  uint64_t born;               /* when the VM started */
  uint64_t last_end;           /* end of the last run slice */
  int depth;                   /* nested resumes (px_sched_run_inline) */
  uint64_t now_end;            /* the clock at the last run_end */
  long runnable_shown;         /* the last "runnable tasks" sample, -1: none */
  /* Waits that ended (px_trace_woken) since the last run slice began:
   * recorded then, with its clock reading as their end, so a wake reads
   * no clock of its own. */
  struct px_trace_pend {
    const char *what;
    long task;
    int64_t on_id;
    uint64_t t0;
    int cat;
    const char *detail; /* px_trace_wait_detail */
  } pend[16];
  int npend;
  /* px_trace_classify's recent phrases and their categories, by the
   * phrase's address: a rendezvous alternates two, a pipeline more. */
  const char *cls_what[8];
  int cls_cat[8];
  px_trace_stats stats;
  px_strtab *strings;
  /* SIGUSR1 (trace_dump.c; the command line's main VM only). */
  uv_signal_t usr1;
  int usr1_on, usr1_posted;
  struct px_wait usr1_msg;
} px_trace;

/* The VM whose task runs on this thread (set at every run slice): for
 * modules' hooks that have no VM at hand (channel counters).  Hidden: the
 * library's own, so a dlopen'd libparx reaches it without a lookup
 * (initial-exec would not load in a plain luajit: no static TLS left). */
extern __thread px_trace *px_trace_self __attribute__((visibility("hidden")));

/* ---- the clock ----------------------------------------------------------
 * Ticks: the CPU's time-stamp counter where there is one (a few
 * nanoseconds to read, against ~20 for clock_gettime), else nanoseconds.
 * px_trace_ns converts (calibrated against uv_hrtime). */
static inline uint64_t px_trace_now(void) {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#else
  extern uint64_t uv_hrtime(void);
  return uv_hrtime();
#endif
}
double px_trace_seconds(uint64_t ticks);
double px_trace_ratio(void); /* nanoseconds per tick, measured afresh */

/* ---- recording (VM thread) --------------------------------------------- */

static inline px_event *px_trace_slot(px_trace *tr) {
  uint64_t pos = atomic_load_explicit(&tr->ring_pos, memory_order_relaxed);
  atomic_store_explicit(&tr->ring_pos, pos + 1, memory_order_release);
  return &tr->ring[pos & (PX_TRACE_RING - 1)];
}
void px_trace_log(px_trace *tr, const px_event *e);  /* the log's slow path */
void px_trace_check(px_trace *tr);                   /* tracing turned on or off */

static inline void px_trace_add(px_trace *tr, uint32_t kind, uint32_t cat, uint64_t t0, uint64_t t1,
                                const char *name, long task, int64_t a, int64_t b) {
  px_event *e = px_trace_slot(tr);
  *e = (px_event){t0, t1, name, task, a, b, kind, cat};
  if (tr->logging) px_trace_log(tr, e);
}

static inline void px_stat_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* The scheduler (sched.c), around each resume of task t:
 *     uint64_t t0 = px_trace_run_begin(vm, t);  ...run...  px_trace_run_end(vm, t, t0);
 * when a parked task is woken by w: px_trace_woken(vm, t, w);
 * when it ends: px_trace_task_end(vm, t). */
#ifndef PX_NO_RECORDER
uint64_t px_trace_run_begin(px_vm *vm, px_task *t);
void px_trace_run_end(px_vm *vm, px_task *t, uint64_t t0);
void px_trace_woken(px_vm *vm, px_task *t, px_wait *w);
void px_trace_task_end(px_vm *vm, px_task *t);
#else
/* A build with the recorder compiled out of the scheduler and the channels
 * (`make BUILD=build-norec EXTRA_CFLAGS=-DPX_NO_RECORDER`): what
 * scripts/bench/trace.sh measures the always-on recorder against.  It
 * records nothing: no --stats, no events in dumps, no trace. */
static inline uint64_t px_trace_run_begin(px_vm *vm, px_task *t) { (void)vm, (void)t; return 0; }
static inline void px_trace_run_end(px_vm *vm, px_task *t, uint64_t t0) { (void)vm, (void)t, (void)t0; }
static inline void px_trace_woken(px_vm *vm, px_task *t, px_wait *w) { (void)vm, (void)t, (void)w; }
static inline void px_trace_task_end(px_vm *vm, px_task *t) { (void)vm, (void)t; }
#endif
int px_trace_classify(const char *what); /* a wait's PX_CAT_*, from its phrase */

/* ---- modules' hooks (any module; no-ops off a VM thread) ----------------- */

/* A slice of the VM's own work (GPU): on L's VM track. */
void px_trace_slice(px_vm *vm, const char *cat, const char *name, uint64_t t0, uint64_t t1);
/* Pool: the running task took `count` items from `first` (1-based; queued:
 * chunks left after it) / finished them. */
void px_trace_chunk_begin(lua_State *L, int64_t first, int64_t count, int64_t queued);
void px_trace_chunk_end(lua_State *L);
/* A spawn (the flow from here to the new task's first slice): seq is its
 * number. */
void px_trace_spawn(lua_State *L, long seq);
/* Channels, under the channel's lock (chan_queue.c): the n-th value into
 * channel `id` (sent), the n-th out (received), or one handed straight to
 * a receiver parked on VM `to` (handoff).  A channel is FIFO, so the n-th
 * in is the n-th out: the pair is a flow from the send to the receive.
 * Each counts a channel operation of the running VM.  Flows are kept for
 * the first PX_TRACE_FLOWS values of a channel and every PX_TRACE_FLOWS-th
 * after: one arrow per message would double the trace of a busy channel
 * (and cost tracing a third of a 3-million-message-a-second channel's
 * throughput) for arrows no one can tell apart. */
#define PX_TRACE_FLOWS 64
#ifdef PX_NO_RECORDER
#define PX_RECORDER_OFF 1
#else
#define PX_RECORDER_OFF 0
#endif
/* (n 0: a value without a number, no flow) */
static inline int px_trace_flow_kept(uint64_t n) {
  return n && (n <= PX_TRACE_FLOWS || n % PX_TRACE_FLOWS == 0);
}
int64_t px_trace_new_id(void); /* a channel's number */
void px_trace_flow(int kind, int64_t id, uint64_t n, px_vm *to);
static inline void px_trace_chan_sent(int64_t id, uint64_t n) {
  px_trace *tr = px_trace_self;
  if (PX_RECORDER_OFF || !tr) return;
  px_stat_add(&tr->stats.chan_ops, 1);
  if (tr->logging && px_trace_flow_kept(n)) px_trace_flow(PX_EV_FLOW_OUT, id, n, NULL);
}
static inline void px_trace_chan_received(int64_t id, uint64_t n) {
  px_trace *tr = px_trace_self;
  if (PX_RECORDER_OFF || !tr) return;
  px_stat_add(&tr->stats.chan_ops, 1);
  if (tr->logging && px_trace_flow_kept(n)) px_trace_flow(PX_EV_FLOW_IN, id, n, NULL);
}
static inline void px_trace_chan_handoff(int64_t id, uint64_t n, uint64_t n_out, px_vm *to) {
  (void)n_out;
  px_trace *tr = px_trace_self;
  if (PX_RECORDER_OFF || !tr) return;
  px_stat_add(&tr->stats.chan_ops, 1);
  if (tr->logging && to && px_trace_flow_kept(n)) {
    px_trace_flow(PX_EV_FLOW_OUT, id, n, NULL);
    px_trace_flow(PX_EV_FLOW_IN, id, n, to);
  }
}
/* Marshalling: one message of n bytes made on this thread. */
static inline void px_trace_marshalled(uint64_t n) {
  px_trace *tr = px_trace_self;
  if (!PX_RECORDER_OFF && tr) {
    px_stat_add(&tr->stats.messages, 1);
    px_stat_add(&tr->stats.bytes, n);
  }
}

/* A copy of s that lives as long as the runtime (NULL when out of memory). */
const char *px_trace_intern(px_trace *tr, const char *s);

/* ---- sessions (trace_json.c) --------------------------------------------
 * One trace session at a time: from start (the embedding option, --trace,
 * parx.trace.start) to stop, which writes the file when a path was given;
 * the runtime's close stops one still on.  Returns 0 or a negative errno
 * (an unwritable path fails at start). */
int px_trace_start(px_runtime *rt, const char *path);
int px_trace_stop(px_runtime *rt);
void px_trace_close(px_runtime *rt); /* at close: stop (a failure on stderr), free */
int px_trace_running(px_runtime *rt); /* a session is on */
/* parx.trace.events(): the session's events (while on, or the last one)
 * as a list of Chrome trace-event tables; parx.stats(): the counters. */
void px_trace_push_events(lua_State *L, px_runtime *rt);
void px_trace_push_stats(lua_State *L, px_runtime *rt);
/* parx.trace.dump([path]) (trace_dump.c): a lua_CFunction that parks. */
int px_trace_dump(lua_State *L);
int px_trace_watch_usr1(px_vm *vm); /* SIGUSR1 dumps from now on: 0 or UV_E* */
/* Chrome JSON of copies of n VMs' rings (trace_json.c, for a dump); ids
 * above nworkers are pools' own VMs. */
int px_trace_write_events(const char *path, px_event **ev, size_t *n, const int *vm_ids, int nvms, int nworkers);
/* parx.trace.mark(name), parx.trace.label(name) from L's task. */
void px_trace_mark(lua_State *L, const char *name);
void px_trace_label(lua_State *L, const char *name);

/* ---- what a wait is on (trace_on.c) --------------------------------------
 * A module names what w waits on before it parks on w: a path, a host, a
 * GPU op, an MPI peer and tag.  Traces show it in the wait slice's args,
 * dumps after the wait's name.  key: a literal ("path", "host", "op",
 * "peer", "tag"); another call for the same w adds a pair; val NULL does
 * nothing.  On L's running task only (no-op outside a task). */
void px_trace_wait_on(lua_State *L, const px_wait *w, const char *key, const char *val);
void px_trace_wait_on_int(lua_State *L, const px_wait *w, const char *key, int64_t val);
/* "host:port" of a URL, as px_trace_wait_on(L, w, "host", ...). */
void px_trace_wait_on_url(lua_State *L, const px_wait *w, const char *url);
/* What t's wait w is on (interned: "key=value" pairs, each ended by '\n';
 * a key starting '#' has a number for value), or NULL. */
static inline const char *px_trace_wait_detail(const px_trace_task *tt, const px_wait *w) {
  return w && tt->on_wait == w ? tt->on : NULL;
}
typedef void px_trace_pair_fn(const char *key, size_t klen, const char *val, size_t vlen, int is_number,
                              void *arg);
void px_trace_each_pair(const char *detail, px_trace_pair_fn *f, void *arg); /* key without '#' */
size_t px_trace_strings(const px_trace *tr); /* strings interned so far */

/* ---- the VMs' recorders (trace.c) ---------------------------------------- */
px_trace *px_trace_new(px_runtime *rt, int vm_id);
void px_trace_free(px_trace *tr);

#endif
