/* trace.c -- what every VM records about itself: the flight recorder, the
 * log of a trace, the counters of parx.stats() (trace.h says how they are
 * laid out and who may read them).  Writing a trace out is trace_json.c's;
 * the dump of live tasks trace_dump.c's.
 *
 * Costs.  Off (no trace running) a run slice costs two reads of the clock
 * (rdtsc, ~10 ns each in a KVM guest), a few counter stores and one event
 * into the ring; a wait one more event and no clock read; a pool chunk two
 * stores.  On, each event is also copied into the log, chunks read the
 * clock, and a task's name is looked up once, at its first slice.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "future.h"

__thread px_trace *px_trace_self;

/* ---- the clock ---------------------------------------------------------- */

static pthread_once_t clock_once = PTHREAD_ONCE_INIT;
static uint64_t clock_ticks0, clock_ns0;

static void clock_init(void) {
  clock_ns0 = uv_hrtime();
  clock_ticks0 = px_trace_now();
}

/* Nanoseconds per tick, measured over the life of the process so far (the
 * time-stamp counter runs at a constant rate on every x86 of the last
 * fifteen years). */
static double ns_per_tick(void) {
  pthread_once(&clock_once, clock_init);
#if defined(__x86_64__) || defined(__i386__)
  uint64_t ns = uv_hrtime(), ticks = px_trace_now();
  if (ns - clock_ns0 < 2000000) {
    /* Too soon to tell: measure a millisecond. */
    uv_sleep(1);
    ns = uv_hrtime();
    ticks = px_trace_now();
  }
  return (double)(ns - clock_ns0) / (double)(ticks - clock_ticks0);
#else
  return 1.0;
#endif
}

static _Atomic double ratio_cache;

double px_trace_seconds(uint64_t ticks) {
  double r = atomic_load_explicit(&ratio_cache, memory_order_relaxed);
  if (r == 0) {
    r = ns_per_tick();
    atomic_store_explicit(&ratio_cache, r, memory_order_relaxed);
  }
  return (double)ticks * r / 1e9;
}

/* A fresh ratio (trace_json.c, stats): the longer the run, the better. */
double px_trace_ratio(void) {
  double r = ns_per_tick();
  atomic_store_explicit(&ratio_cache, r, memory_order_relaxed);
  return r;
}

/* ---- strings ---------------------------------------------------------------
 * Names that must outlive what they came from (a task's function, a
 * label, a mark) are copied once into the VM's table; events point at the
 * copies, which live until the runtime closes. */

typedef struct strtab_entry {
  char *key;
  const char *val; /* key itself for a plain interned string */
} strtab_entry;

struct px_strtab {
  strtab_entry *slot;
  size_t cap, n;
};

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static strtab_entry *lookup(px_strtab *t, const char *key) {
  if (!t->cap) return NULL;
  size_t j = hash(key) & (t->cap - 1);
  while (t->slot[j].key) {
    if (strcmp(t->slot[j].key, key) == 0) return &t->slot[j];
    j = (j + 1) & (t->cap - 1);
  }
  return NULL;
}

/* Map key to val (a copy of each; val NULL: the key itself).  Returns the
 * stored value, NULL when out of memory. */
static const char *insert(px_strtab *t, const char *key, const char *val) {
  if (2 * (t->n + 1) > t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 64;
    strtab_entry *slot = calloc(cap, sizeof *slot);
    if (!slot) return NULL;
    for (size_t i = 0; i < t->cap; i++) {
      if (!t->slot[i].key) continue;
      size_t j = hash(t->slot[i].key) & (cap - 1);
      while (slot[j].key) j = (j + 1) & (cap - 1);
      slot[j] = t->slot[i];
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
  }
  char *k = strdup(key);
  char *v = val ? strdup(val) : k;
  if (!k || !v) {
    free(k);
    if (v != k) free(v);
    return NULL;
  }
  size_t j = hash(key) & (t->cap - 1);
  while (t->slot[j].key) j = (j + 1) & (t->cap - 1);
  t->slot[j].key = k;
  t->slot[j].val = v;
  t->n++;
  return v;
}

const char *px_trace_intern(px_trace *tr, const char *s) {
  if (!tr || !s) return NULL;
  strtab_entry *e = lookup(tr->strings, s);
  return e ? e->val : insert(tr->strings, s, NULL);
}

size_t px_trace_strings(const px_trace *tr) { return tr && tr->strings ? tr->strings->n : 0; }

static void strtab_free(px_strtab *t) {
  for (size_t i = 0; i < t->cap; i++) {
    if (t->slot[i].val != t->slot[i].key) free((char *)t->slot[i].val);
    free(t->slot[i].key);
  }
  free(t->slot);
  free(t);
}

/* ---- the runtime's side ------------------------------------------------- */

px_trace *px_trace_new(px_runtime *rt, int vm_id) {
  px_trace *tr = calloc(1, sizeof *tr);
  if (!tr) return NULL;
  tr->ring = calloc(PX_TRACE_RING, sizeof *tr->ring);
  tr->strings = calloc(1, sizeof *tr->strings);
  if (!tr->ring || !tr->strings) {
    free(tr->ring);
    free(tr->strings);
    free(tr);
    return NULL;
  }
  tr->rt = rt;
  tr->vm_id = vm_id;
  tr->tracing = &rt->tracing;
  tr->born = px_trace_now();
  tr->max_len = (256u << 20) / sizeof(px_event);
  pthread_mutex_lock(&rt->trace_lock);
  void *p = realloc(rt->traces, sizeof *rt->traces * (size_t)(rt->ntraces + 1));
  if (p) {
    rt->traces = p;
    rt->traces[rt->ntraces++] = tr;
  }
  pthread_mutex_unlock(&rt->trace_lock);
  if (!p) {
    px_trace_free(tr);
    return NULL;
  }
  return tr;
}

/* At the runtime's close, after every VM is gone. */
void px_trace_free(px_trace *tr) {
  if (!tr) return;
  for (px_trace_block *b = tr->first_block; b;) {
    px_trace_block *next = atomic_load(&b->next);
    free(b);
    b = next;
  }
  if (tr->strings) strtab_free(tr->strings);
  free(tr->ring);
  free(tr);
}

/* ---- the log ---------------------------------------------------------- */

void px_trace_log(px_trace *tr, const px_event *e) {
  uint64_t n = atomic_load_explicit(&tr->len, memory_order_relaxed);
  if (n >= tr->max_len) {
    atomic_store_explicit(&tr->truncated, 1, memory_order_relaxed);
    return;
  }
  size_t at = (size_t)(n % PX_TRACE_BLOCK);
  if (at == 0 && (n > 0 || !tr->first_block)) {
    px_trace_block *b = malloc(sizeof *b);
    if (!b) {
      atomic_store_explicit(&tr->truncated, 1, memory_order_relaxed);
      return;
    }
    atomic_init(&b->next, NULL);
    if (tr->last_block) atomic_store_explicit(&tr->last_block->next, b, memory_order_release);
    else tr->first_block = b;
    tr->last_block = b;
  }
  tr->last_block->ev[at] = *e;
  atomic_store_explicit(&tr->len, n + 1, memory_order_release);
}

/* The runtime's tracing flag changed: follow it.  A VM that starts
 * logging names itself (a thread_name in the JSON comes from the VM id). */
void px_trace_check(px_trace *tr) {
  int on = atomic_load_explicit(tr->tracing, memory_order_relaxed) != 0;
  if (on && !tr->logging) tr->runnable_shown = -1; /* a new session shows the first */
  tr->logging = on;
}

static long seq_of(px_task *t) { return t->future ? t->future->seq : 0; }

/* ---- names -------------------------------------------------------------- */

#ifndef PX_NO_RECORDER /* else trace.h has no-op hooks */

/* The name a line of source gives the function defined on it: `download`
 * in "local function download(url)", "function M.get(u)", "fetch =
 * function(...)"; "" when it gives none. */
static void name_from_line(const char *line, char *out, size_t size) {
  out[0] = 0;
  const char *f = strstr(line, "function");
  if (!f) return;
  const char *p = f + 8;
  while (*p == ' ' || *p == '\t') p++;
  size_t n = 0;
  if (*p != '(') {
    while ((isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == ':') && n + 1 < size) out[n++] = *p++;
    out[n] = 0;
    return;
  }
  /* "name = function(": the identifier before the '='. */
  const char *eq = f;
  while (eq > line && (eq[-1] == ' ' || eq[-1] == '\t')) eq--;
  if (eq == line || eq[-1] != '=') return;
  eq--;
  while (eq > line && (eq[-1] == ' ' || eq[-1] == '\t')) eq--;
  const char *end = eq;
  while (eq > line && (isalnum((unsigned char)eq[-1]) || eq[-1] == '_' || eq[-1] == '.' || eq[-1] == ':' ||
                       eq[-1] == '[' || eq[-1] == ']' || eq[-1] == '"'))
    eq--;
  n = (size_t)(end - eq) < size - 1 ? (size_t)(end - eq) : size - 1;
  memcpy(out, eq, n);
  out[n] = 0;
}

/* Line `line` of the file a chunk named "@path" came from. */
static int source_line(const char *source, int line, char *buf, size_t size) {
  if (source[0] != '@' || line <= 0) return 0;
  FILE *f = fopen(source + 1, "r");
  if (!f) return 0;
  int at = 1, ok = 0;
  while (fgets(buf, (int)size, f)) {
    if (at == line) {
      ok = 1;
      break;
    }
    if (strchr(buf, '\n')) at++;
  }
  fclose(f);
  return ok;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* "fn@file.lua:12" for the function at idx of co, interned; tracing only.
 * Cached by source and line: the file is read once per function. */
static const char *task_name(px_trace *tr, lua_State *co, int idx) {
  lua_Debug ar;
  lua_pushvalue(co, idx);
  if (!lua_getinfo(co, ">S", &ar)) return NULL;
  if (ar.what && ar.what[0] == 'C') return px_trace_intern(tr, "[C function]");
  char key[320];
  snprintf(key, sizeof key, "\x01%s:%d", ar.source ? ar.source : "?", ar.linedefined);
  strtab_entry *e = lookup(tr->strings, key);
  if (e) return e->val;
  char line[512], fn[96], name[400];
  fn[0] = 0;
  if (ar.linedefined == 0) snprintf(fn, sizeof fn, "main chunk");
  else if (ar.source && source_line(ar.source, ar.linedefined, line, sizeof line))
    name_from_line(line, fn, sizeof fn);
  snprintf(name, sizeof name, "%s%s%s:%d", fn, fn[0] ? "@" : "", base_name(ar.short_src), ar.linedefined);
  return insert(tr->strings, key, name);
}

/* ---- the scheduler's hooks -------------------------------------------- */

/* The waits that ended since the last slice began end now. */
static void flush_waits(px_trace *tr, uint64_t now) {
  for (int i = 0; i < tr->npend; i++) {
    struct px_trace_pend *p = &tr->pend[i];
    if (p->cat == PX_CAT_GPU) px_stat_add(&tr->stats.gpu, now - p->t0);
    else if (p->cat == PX_CAT_MPI) px_stat_add(&tr->stats.mpi, now - p->t0);
    px_trace_add(tr, PX_EV_WAIT, (uint32_t)p->cat, p->t0, now, p->what, p->task, p->on_id,
                 (int64_t)(intptr_t)p->detail);
  }
  tr->npend = 0;
}

uint64_t px_trace_run_begin(px_vm *vm, px_task *t) {
  px_trace *tr = vm->trace;
  uint64_t now = px_trace_now();
  px_trace_self = tr;
  if (tr->depth++ == 0) {
    if (tr->last_end) if (vm->nparked > 0) px_stat_add(&tr->stats.parked, now - tr->last_end);
    if ((atomic_load_explicit(tr->tracing, memory_order_relaxed) != 0) != tr->logging) px_trace_check(tr);
  }
  if (tr->npend) flush_waits(tr, now);
  if (!t->trace.first) {
    t->trace.first = now;
    if (!t->trace.name && t->future && t->future->name) /* spawn{name = ...} */
      t->trace.name = px_trace_intern(tr, t->future->name);
    if (tr->logging) {
      if (!t->trace.name && lua_status(t->co) == 0) t->trace.name = task_name(tr, t->co, t->msgh ? 2 : 1);
      px_trace_add(tr, PX_EV_FLOW_IN, PX_CAT_RUN, now, 0, "spawn", seq_of(t), seq_of(t), 1);
    }
  }
  if (t->trace.chunk && t->trace.chunk->lo && tr->logging) t->trace.chunk->t0 = now;
  return now;
}

void px_trace_run_end(px_vm *vm, px_task *t, uint64_t t0) {
  px_trace *tr = vm->trace;
  uint64_t now = px_trace_now();
  long seq = seq_of(t);
  tr->now_end = now;
  px_trace_chunk *c = t->trace.chunk;
  if (c && c->lo && c->t0 && tr->logging)
    px_trace_add(tr, PX_EV_CHUNK, PX_CAT_CHUNK, c->t0, now, NULL, seq, c->lo, c->hi);
  px_trace_add(tr, PX_EV_RUN, PX_CAT_RUN, t0, now, t->trace.name, seq, t->trace.first == t0, 0);
  if (t->wait) t->trace.park_ts = now;
  if (--tr->depth == 0) {
    px_stat_add(&tr->stats.busy, now - t0);
    tr->last_end = now;
    /* A counter holds its value until the next sample: one per change. */
    long runnable = vm->ntasks - vm->nparked;
    if (tr->logging && runnable != tr->runnable_shown) {
      px_trace_add(tr, PX_EV_COUNTER, PX_CAT_RUN, now, now, "runnable tasks", 0, runnable, 0);
      tr->runnable_shown = runnable;
    }
  }
}

#endif

/* The category of a wait, from its phrase (px_wait.what): a few literals
 * that every module uses, cached by address. */
int px_trace_classify(const char *what) {
  if (!what) return PX_CAT_OTHER;
  static const struct { const char *prefix; int cat; } table[] = {
      {"channel", PX_CAT_CHAN}, {"select", PX_CAT_CHAN},  {"host", PX_CAT_CHAN},
      {"sleep", PX_CAT_SLEEP},  {"a task", PX_CAT_TASK},  {"tasks", PX_CAT_TASK},
      {"pool", PX_CAT_TASK},    {"other VMs", PX_CAT_TASK}, {"gpu", PX_CAT_GPU},      {"cpu matmul", PX_CAT_GPU},
      {"mpi", PX_CAT_MPI},      {"mutex", PX_CAT_LOCK},   {"semaphore", PX_CAT_LOCK},
      {"barrier", PX_CAT_LOCK}, {"waitgroup", PX_CAT_LOCK}, {"event", PX_CAT_LOCK},
      {"condition", PX_CAT_LOCK}, {"sync", PX_CAT_LOCK},  {"lock", PX_CAT_LOCK},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strncmp(what, table[i].prefix, strlen(table[i].prefix)) == 0) return table[i].cat;
  return PX_CAT_IO;
}

#ifndef PX_NO_RECORDER
/* The wait is recorded when the VM next begins a slice (flush_waits), with
 * that slice's clock reading as its end: the wake itself reads no clock.
 * A VM that delivers more wakes than pend holds before it runs anything
 * records the older ones now. */
void px_trace_woken(px_vm *vm, px_task *t, px_wait *w) {
  px_trace *tr = vm->trace;
  if (tr->npend == (int)(sizeof tr->pend / sizeof tr->pend[0])) flush_waits(tr, px_trace_now());
  unsigned slot = (unsigned)(((uintptr_t)w->what * 0x9E3779B97F4A7C15ull) >> 61); /* literals sit bytes apart */
  if (w->what != tr->cls_what[slot] || !w->what) {
    tr->cls_cat[slot] = px_trace_classify(w->what);
    tr->cls_what[slot] = w->what;
  }
  tr->pend[tr->npend++] = (struct px_trace_pend){w->what, seq_of(t), w->on_id, t->trace.park_ts, tr->cls_cat[slot],
                                                 px_trace_wait_detail(&t->trace, w)};
  t->trace.on_wait = NULL;
}

/* Task durations: a histogram of log2 buckets split in quarters, so p50
 * and p99 cost nothing per task and come within 19% of the truth. */
static int bucket(uint64_t d) {
  if (d < 4) return (int)d;
  int lg = 63 - __builtin_clzll(d);
  int quarter = (int)((d >> (lg - 2)) & 3);
  int b = lg * 4 + quarter;
  return b < 64 * 4 ? b : 64 * 4 - 1;
}

void px_trace_task_end(px_vm *vm, px_task *t) {
  px_trace *tr = vm->trace;
  px_stat_add(&tr->stats.tasks, 1);
  /* It ends just after its last slice (resume calls this after run_end). */
  if (t->trace.first) px_stat_add(&tr->stats.hist[bucket(tr->now_end - t->trace.first)], 1);
}

#endif /* PX_NO_RECORDER */

/* ---- modules' hooks ---------------------------------------------------- */

static px_trace *trace_of(lua_State *L, px_task **t) {
  px_vm *vm = px_vm_of(L);
  *t = vm ? vm->current : NULL;
  if (vm) px_trace_check(vm->trace); /* a session started in this very slice */
  return vm ? vm->trace : NULL;
}

int px_trace_on(px_vm *vm) { return vm && vm->trace && vm->trace->logging; }

/* A module's slice on the VM's track would overlap the slices of the
 * other tasks that ran meanwhile: its wait (px_trace_woken) already shows
 * it, on the task's track.  Kept for the modules that call it. */
void px_trace_slice(px_vm *vm, const char *cat, const char *name, uint64_t t0, uint64_t t1) {
  (void)vm, (void)cat, (void)name, (void)t0, (void)t1;
}

void px_trace_chunk_begin(lua_State *L, int64_t first, int64_t count, int64_t queued) {
  px_task *t;
  px_trace *tr = trace_of(L, &t);
  if (!t) return;
  px_trace_chunk *c = t->trace.chunk;
  if (!c) { /* the task's first chunk: kept for the next (px_trace_task_free) */
    c = t->trace.chunk = malloc(sizeof *c);
    if (!c) return; /* the trace goes without this chunk's slice */
  }
  c->lo = first;
  c->hi = first + count - 1;
  c->t0 = 0;
  /* Chunks are the trace's: the flight recorder keeps the run slices that
   * ran them, and no clock is read per item. */
  if (!tr->logging) return;
  c->t0 = px_trace_now();
  px_trace_add(tr, PX_EV_COUNTER, PX_CAT_CHUNK, c->t0, 0, "pool queue", 0, queued, 0);
}

void px_trace_chunk_end(lua_State *L) {
  px_task *t;
  px_trace *tr = trace_of(L, &t);
  px_trace_chunk *c = t ? t->trace.chunk : NULL;
  if (!c || !c->lo) return;
  if (c->t0 && tr->logging)
    px_trace_add(tr, PX_EV_CHUNK, PX_CAT_CHUNK, c->t0, px_trace_now(), NULL, seq_of(t), c->lo, c->hi);
  c->lo = c->hi = 0;
}

void px_trace_spawn(lua_State *L, long seq) {
  px_task *t;
  px_trace *tr = trace_of(L, &t);
  if (tr && tr->logging) {
    uint64_t now = px_trace_now();
    px_trace_add(tr, PX_EV_FLOW_OUT, PX_CAT_RUN, now, now, "spawn", t ? seq_of(t) : 0, seq, 0);
  }
}

static atomic_llong next_id;

int64_t px_trace_new_id(void) { return atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed) + 1; }

/* A flow's id: the channel's number and the value's; JSON keeps 53 bits. */
void px_trace_flow(int kind, int64_t id, uint64_t n, px_vm *to) {
  px_trace *tr = px_trace_self;
  int64_t flow = (id << 28) | (int64_t)(n & 0xfffffff);
  uint64_t now = px_trace_now();
  /* The receiver's own slice is running when it took the value itself;
   * a parked one shows it at its next slice. */
  px_trace_add(tr, (uint32_t)kind, PX_CAT_CHAN, now, to ? (uint64_t)px_vm_id(to) + 1 : 0, "send", 0, flow,
               kind == PX_EV_FLOW_IN && !to);
}

void px_trace_mark(lua_State *L, const char *name) {
  px_task *t;
  px_trace *tr = trace_of(L, &t);
  if (!tr || !tr->logging) return;
  uint64_t now = px_trace_now();
  px_trace_add(tr, PX_EV_MARK, PX_CAT_MARK, now, now, px_trace_intern(tr, name), t ? seq_of(t) : 0, 0, 0);
}

/* The running task's name in traces and dumps from now on. */
void px_trace_label(lua_State *L, const char *name) {
  px_task *t;
  px_trace *tr = trace_of(L, &t);
  if (t) t->trace.name = px_trace_intern(tr, name);
}

/* ---- VMs ------------------------------------------------------------------ */

int px_trace_vm_start(px_vm *vm) {
  vm->trace = px_trace_new(vm->rt, vm->id);
  if (!vm->trace) return UV_ENOMEM;
  px_trace_check(vm->trace);
  return 0;
}

/* The recorder outlives its VM (the runtime frees it at close, after the
 * trace is written); the thread forgets it. */
void px_trace_vm_end(px_vm *vm) {
  if (px_trace_self == vm->trace) px_trace_self = NULL;
}

