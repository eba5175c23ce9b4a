/* trace_json.c -- trace sessions and what is made of the recorded events:
 * the Chrome trace-event JSON file (Perfetto, chrome://tracing), the same
 * events as Lua tables (parx.trace.events(), which --timeline draws), and
 * parx.stats().
 *
 * Tracks.  pid 1 is the process; each VM is a thread track (tid = the VM's
 * id: 0 "main", 1 "worker 1", ...; the VMs of pools of their own,
 * parx.pool.new, are numbered after the workers: "pool worker 5") holding the run slices of its tasks and
 * the pool chunks they ran (one slice per run slice a chunk spans, so
 * slices on a VM's track never overlap: one task runs at a time).  A
 * task's waits overlap other tasks' slices on the same VM, so they go on
 * the task's own track (tid = TASK_TID + its number, named "task 7
 * download@fetch.lua:12"): one row per task that ever waited.  Every event
 * carries args.task and args.vm, so a consumer can regroup them.  Flows
 * join a spawn to the task's first slice and a channel send to the
 * receive that took the value.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

#define TASK_TID 1000000

/* The rank of this process in an MPI job, from what the launcher exports
 * (Open MPI, MPICH and PMIx launchers), or -1.  A rank's trace is the
 * process rank + 1 (Perfetto takes pid 0 for the kernel's idle task), so
 * the traces of a job's ranks merge into one view (parx.trace.merge). */
static int mpi_rank(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return atoi(v);
  }
  return -1;
}

/* ---- sessions ---------------------------------------------------------- */

int px_trace_start(px_runtime *rt, const char *path) {
  FILE *f = NULL;
  if (path) {
    f = fopen(path, "w"); /* fail now, not at exit, when it cannot be written */
    if (!f) return -errno;
    fclose(f);
  }
  pthread_mutex_lock(&rt->trace_lock);
  int on = atomic_load(&rt->tracing);
  if (!on) {
    free(rt->trace_path);
    rt->trace_path = path ? strdup(path) : NULL;
    rt->trace_from = px_trace_now();
    rt->trace_to = 0;
    atomic_store(&rt->tracing, 1);
  }
  pthread_mutex_unlock(&rt->trace_lock);
  return on ? -EALREADY : 0;
}

static int write_json(px_runtime *rt, const char *path);

int px_trace_running(px_runtime *rt) { return atomic_load(&rt->tracing); }

int px_trace_stop(px_runtime *rt) {
  pthread_mutex_lock(&rt->trace_lock);
  int on = atomic_load(&rt->tracing);
  if (on) {
    atomic_store(&rt->tracing, 0);
    rt->trace_to = px_trace_now();
  }
  char *path = on ? rt->trace_path : NULL;
  rt->trace_path = NULL;
  pthread_mutex_unlock(&rt->trace_lock);
  if (!on) return -ENOENT;
  int r = path ? write_json(rt, path) : 0;
  free(path);
  return r;
}

void px_trace_close(px_runtime *rt) {
  if (atomic_load(&rt->tracing)) {
    char *path = rt->trace_path ? strdup(rt->trace_path) : NULL;
    int r = px_trace_stop(rt);
    if (r != 0 && path) fprintf(stderr, "parx: cannot write trace: %s: %s\n", path, strerror(-r));
    free(path);
  }
  for (int i = 0; i < rt->ntraces; i++) px_trace_free(rt->traces[i]);
  free(rt->traces);
  rt->traces = NULL;
  rt->ntraces = 0;
  free(rt->trace_path);
  rt->trace_path = NULL;
  pthread_mutex_destroy(&rt->trace_lock);
}

/* ---- reading the logs ------------------------------------------------------ */

/* One event as both writers see it. */
typedef struct out_ev {
  char ph;          /* X, i, C, s, f, M */
  const char *name;
  const char *cat;
  double ts, dur;   /* µs */
  long tid;
  int64_t id;
  int bp_enclosing; /* f: binds to the enclosing slice */
  long task;        /* args.task (0: none) */
  int vm;           /* args.vm */
  const char *on_key; /* args[on_key] = on */
  int64_t on;
  const char *detail; /* what a wait was on: px_trace_wait_on's pairs */
  int64_t first, last; /* chunks: args.first, args.last (items) */
  int64_t value;    /* C: args.value; M: args.sort_index */
  const char *meta; /* M: args.name */
} out_ev;

/* Where events come from: a VM's log, or a copy of its ring (a dump). */
typedef struct source {
  int vm_id;
  px_trace *tr;
  const px_event *ev;
  size_t n;
} source;

typedef struct reader {
  px_runtime *rt;
  source *src;
  int n;
  uint64_t from, to;
  double us_per_tick;
  /* Task names by number, for the task tracks' names. */
  struct { long seq; const char *name; } *names;
  size_t names_cap;
  void (*emit)(struct reader *r, const out_ev *e);
  void *out; /* FILE * or lua_State * */
  int count;
  int pid;
  int nworkers; /* VMs above it are pools' own */
} reader;

static const char *const cat_names[PX_CAT_N] = {
    "run", "wait.chan", "wait.lock", "wait.io", "wait.gpu", "wait.mpi", "wait.sleep", "wait.task",
    "pool.chunk", "mark", "wait.io"};

static void name_put(reader *r, long seq, const char *name) {
  if (!r->names || !name || seq <= 0) return;
  size_t j = (size_t)seq & (r->names_cap - 1);
  while (r->names[j].seq && r->names[j].seq != seq) j = (j + 1) & (r->names_cap - 1);
  r->names[j].seq = seq;
  r->names[j].name = name;
}

static const char *name_get(reader *r, long seq) {
  if (!r->names) return NULL;
  size_t j = (size_t)seq & (r->names_cap - 1);
  while (r->names[j].seq && r->names[j].seq != seq) j = (j + 1) & (r->names_cap - 1);
  return r->names[j].seq == seq ? r->names[j].name : NULL;
}

/* Reads the first `len` events of a log (those published), while its VM
 * may append more. */
typedef struct cursor {
  px_trace_block *block;
  const px_event *ev;
  uint64_t i, len;
} cursor;

static void cursor_init(cursor *c, const source *s) {
  c->i = 0;
  c->ev = s->ev;
  c->block = NULL;
  if (s->tr) {
    c->len = atomic_load_explicit(&s->tr->len, memory_order_acquire);
    c->block = s->tr->first_block;
  } else {
    c->len = s->n;
  }
}

static const px_event *cursor_next(cursor *c) {
  if (c->i >= c->len) return NULL;
  if (c->ev) return &c->ev[c->i++];
  if (!c->block) return NULL;
  const px_event *e = &c->block->ev[c->i % PX_TRACE_BLOCK];
  if (++c->i % PX_TRACE_BLOCK == 0) c->block = atomic_load_explicit(&c->block->next, memory_order_acquire);
  return e;
}

static int in_window(reader *r, const px_event *e) {
  int slice = e->kind == PX_EV_RUN || e->kind == PX_EV_WAIT || e->kind == PX_EV_CHUNK;
  return (slice ? e->t1 : e->t0) >= r->from && (r->to == 0 || e->t0 <= r->to);
}

static double us(reader *r, uint64_t t) { return t <= r->from ? 0 : (double)(t - r->from) * r->us_per_tick; }

/* "main", "worker 2", or "pool worker 5" for a VM of a pool of its own
 * (numbered after the runtime's nworkers). */
static void vm_name(int id, int nworkers, char *buf, size_t size) {
  if (id == 0) snprintf(buf, size, "main");
  else snprintf(buf, size, "%sworker %d", id > nworkers ? "pool " : "", id);
}

/* The runtime's worker count (it shrinks once, under rt->lock, when
 * fewer workers could start than asked; pools' VM ids stay above it). */
static int workers_of(px_runtime *rt) {
  pthread_mutex_lock(&rt->lock);
  int n = rt->nworkers;
  pthread_mutex_unlock(&rt->lock);
  return n;
}

static void read_all(reader *r) {
  /* Pass 1: task names, and which tasks waited (their tracks). */
  size_t runs = 0;
  for (int k = 0; k < r->n; k++) runs += r->src[k].tr ? atomic_load(&r->src[k].tr->len) : r->src[k].n;
  r->names_cap = 64;
  while (r->names_cap < 2 * runs) r->names_cap *= 2;
  r->names = calloc(r->names_cap, sizeof *r->names);
  for (int k = 0; k < r->n; k++) {
    cursor cur;
    cursor_init(&cur, &r->src[k]);
    for (const px_event *e; (e = cursor_next(&cur));)
      if (e->kind == PX_EV_RUN && e->name) name_put(r, e->task, e->name);
  }
  /* Track names: the VMs, then the tasks that waited (once each). */
  for (int k = 0; k < r->n; k++) {
    int id = r->src[k].vm_id;
    char name[32];
    vm_name(id, r->nworkers, name, sizeof name);
    out_ev m = {.ph = 'M', .name = "thread_name", .tid = id, .vm = id, .meta = name};
    r->emit(r, &m);
    out_ev s = {.ph = 'M', .name = "thread_sort_index", .tid = id, .vm = id, .value = id};
    r->emit(r, &s);
  }
  struct { long seq; int done; } *seen = calloc(r->names_cap, sizeof *seen);
  for (int k = 0; k < r->n; k++) {
    int vm = r->src[k].vm_id;
    cursor cur;
    cursor_init(&cur, &r->src[k]);
    for (const px_event *e; (e = cursor_next(&cur));) {
      if (e->kind == PX_EV_WAIT && e->task > 0 && in_window(r, e) && seen) {
        size_t j = (size_t)e->task & (r->names_cap - 1);
        while (seen[j].seq && seen[j].seq != e->task) j = (j + 1) & (r->names_cap - 1);
        if (!seen[j].seq) {
          seen[j].seq = e->task;
          char name[300];
          const char *fn = name_get(r, e->task);
          snprintf(name, sizeof name, "task %ld%s%s", e->task, fn ? " " : "", fn ? fn : "");
          out_ev m = {.ph = 'M', .name = "thread_name", .tid = TASK_TID + e->task, .task = e->task,
                      .vm = vm, .meta = name};
          r->emit(r, &m);
          out_ev s = {.ph = 'M', .name = "thread_sort_index", .tid = TASK_TID + e->task, .task = e->task,
                      .vm = vm, .value = 1000 + e->task};
          r->emit(r, &s);
        }
      }
    }
  }
  free(seen);
  /* Pass 2: the events. */
  for (int k = 0; k < r->n; k++) {
    int vm = r->src[k].vm_id;
    cursor cur;
    cursor_init(&cur, &r->src[k]);
    for (const px_event *e; (e = cursor_next(&cur));) {
      if (!in_window(r, e)) continue;
      out_ev o = {.tid = vm, .vm = vm, .task = e->task, .ts = us(r, e->t0), .cat = cat_names[e->cat]};
      char buf[96];
      switch (e->kind) {
      case PX_EV_RUN:
        o.ph = 'X';
        o.dur = us(r, e->t1) - o.ts;
        if (e->name) o.name = e->name;
        else {
          snprintf(buf, sizeof buf, "task %ld", e->task);
          o.name = buf;
        }
        break;
      case PX_EV_WAIT:
        o.ph = 'X';
        o.dur = us(r, e->t1) - o.ts;
        o.name = e->name ? e->name : "wait";
        o.tid = TASK_TID + e->task;
        o.on = e->a;
        o.on_key = !e->a ? NULL : e->cat == PX_CAT_CHAN ? "channel" : e->cat == PX_CAT_TASK ? "waits_for" : "on";
        o.detail = (const char *)(intptr_t)e->b;
        break;
      case PX_EV_CHUNK:
        o.ph = 'X';
        o.dur = us(r, e->t1) - o.ts;
        snprintf(buf, sizeof buf, "pool chunk: items %lld-%lld", (long long)e->a, (long long)e->b);
        o.name = buf;
        o.first = e->a;
        o.last = e->b;
        break;
      case PX_EV_MARK:
        o.ph = 'i';
        o.name = e->name ? e->name : "mark";
        break;
      case PX_EV_FLOW_OUT:
      case PX_EV_FLOW_IN:
        o.ph = e->kind == PX_EV_FLOW_OUT ? 's' : 'f';
        o.name = e->name;
        o.cat = e->name; /* "spawn" or "send" */
        o.id = e->a * 2 + (e->cat == PX_CAT_CHAN);
        o.bp_enclosing = e->b != 0;
        if (e->kind == PX_EV_FLOW_IN && e->t1) o.tid = (long)e->t1 - 1;
        break;
      case PX_EV_COUNTER: {
        o.ph = 'C';
        char track[32];
        vm_name(vm, r->nworkers, track, sizeof track);
        snprintf(buf, sizeof buf, "%s (%s)", e->name, track);
        o.name = buf;
        o.cat = e->name;
        o.value = e->a;
        o.task = 0;
        break;
      }
      default:
        continue;
      }
      r->emit(r, &o);
    }
  }
  free(r->names);
  r->names = NULL;
}

/* The runtime's recorders and the session's window, for reading. */
static void reader_init(reader *r, px_runtime *rt) {
  memset(r, 0, sizeof *r);
  r->rt = rt;
  r->nworkers = workers_of(rt);
  r->us_per_tick = px_trace_ratio() / 1000.0;
  pthread_mutex_lock(&rt->trace_lock);
  r->n = rt->ntraces;
  r->src = calloc((size_t)(r->n ? r->n : 1), sizeof *r->src);
  if (!r->src) r->n = 0;
  for (int k = 0; k < r->n; k++) {
    r->src[k].tr = rt->traces[k];
    r->src[k].vm_id = rt->traces[k]->vm_id;
  }
  r->from = rt->trace_from;
  r->to = atomic_load(&rt->tracing) ? 0 : rt->trace_to;
  pthread_mutex_unlock(&rt->trace_lock);
}

/* ---- JSON --------------------------------------------------------------- */

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void json_pair(const char *k, size_t klen, const char *v, size_t vlen, int num, void *arg) {
  FILE *f = arg;
  fprintf(f, ",\"%.*s\":", (int)klen, k);
  if (num) {
    fprintf(f, "%.*s", (int)vlen, v);
    return;
  }
  char buf[260];
  snprintf(buf, sizeof buf, "%.*s", (int)vlen, v);
  json_string(f, buf);
}

static void emit_json(reader *r, const out_ev *e) {
  FILE *f = r->out;
  fputs(r->count++ ? ",\n{" : "{", f);
  fprintf(f, "\"ph\":\"%c\",\"pid\":%d,\"tid\":%ld,\"name\":", e->ph, r->pid, e->tid);
  json_string(f, e->name);
  if (e->ph == 'M') {
    if (e->meta) {
      fputs(",\"args\":{\"name\":", f);
      json_string(f, e->meta);
      fputs("}}", f);
    } else {
      fprintf(f, ",\"args\":{\"sort_index\":%lld}}", (long long)e->value);
    }
    return;
  }
  fputs(",\"cat\":", f);
  json_string(f, e->cat);
  fprintf(f, ",\"ts\":%.3f", e->ts);
  if (e->ph == 'X') fprintf(f, ",\"dur\":%.3f", e->dur);
  if (e->ph == 's' || e->ph == 'f') fprintf(f, ",\"id\":%lld", (long long)e->id);
  if (e->ph == 'f' && e->bp_enclosing) fputs(",\"bp\":\"e\"", f);
  if (e->ph == 'i') fputs(",\"s\":\"g\"", f);
  if (e->ph == 'C') {
    fprintf(f, ",\"args\":{\"value\":%lld}}", (long long)e->value);
    return;
  }
  fprintf(f, ",\"args\":{\"vm\":%d", e->vm);
  if (e->task) fprintf(f, ",\"task\":%ld", e->task);
  if (e->on_key) fprintf(f, ",\"%s\":%lld", e->on_key, (long long)e->on);
  if (e->first) fprintf(f, ",\"first\":%lld,\"last\":%lld", (long long)e->first, (long long)e->last);
  px_trace_each_pair(e->detail, json_pair, f);
  fputs("}}", f);
}

/* Write r's events to path. */
static int write_file(reader *r, const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) return -errno;
  r->emit = emit_json;
  r->out = f;
  int rank = mpi_rank();
  r->pid = rank >= 0 ? rank + 1 : 1;
  fputs("{\"traceEvents\":[\n", f);
  read_all(r);
  int truncated = 0;
  for (int k = 0; k < r->n; k++) truncated |= r->src[k].tr && atomic_load(&r->src[k].tr->truncated);
  char name[48] = "parx";
  if (rank >= 0) snprintf(name, sizeof name, "parx rank %d", rank);
  fprintf(f, "%s{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_name\",\"args\":{\"name\":\"%s%s\"}}", r->count ? ",\n" : "",
          r->pid, name, truncated ? " (trace truncated)" : "");
  fprintf(f, ",\n{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_sort_index\",\"args\":{\"sort_index\":%d}}", r->pid, r->pid);
  /* Where ts 0 is on the system clock (µs since 1970), for merging the
   * traces of several processes (parx.trace.merge). */
  uv_timeval64_t tv;
  double origin = 0;
  if (uv_gettimeofday(&tv) == 0)
    origin = (double)tv.tv_sec * 1e6 + (double)tv.tv_usec - us(r, px_trace_now());
  fprintf(f, "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"clock_origin_us\":%.3f,\"rank\":%d}}\n", origin, rank);
  int err = ferror(f) ? -EIO : 0;
  if (fclose(f) != 0 && !err) err = -errno;
  return err;
}

static int write_json(px_runtime *rt, const char *path) {
  reader r;
  reader_init(&r, rt);
  int err = write_file(&r, path);
  free(r.src);
  return err;
}

/* A dump's recent timeline: n VMs' copies of their rings. */
int px_trace_write_events(const char *path, px_event **ev, size_t *n, const int *vm_ids, int nvms, int nworkers) {
  reader r;
  memset(&r, 0, sizeof r);
  r.nworkers = nworkers;
  r.us_per_tick = px_trace_ratio() / 1000.0;
  r.src = calloc((size_t)(nvms ? nvms : 1), sizeof *r.src);
  if (!r.src) return -ENOMEM;
  r.n = nvms;
  r.from = UINT64_MAX;
  for (int k = 0; k < nvms; k++) {
    r.src[k].vm_id = vm_ids[k];
    r.src[k].ev = ev[k];
    r.src[k].n = ev[k] ? n[k] : 0;
    for (size_t i = 0; i < r.src[k].n; i++)
      if (ev[k][i].t0 && ev[k][i].t0 < r.from) r.from = ev[k][i].t0;
  }
  if (r.from == UINT64_MAX) r.from = 0;
  int err = write_file(&r, path);
  free(r.src);
  return err;
}

/* ---- Lua tables ------------------------------------------------------------ */

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void lua_pair(const char *k, size_t klen, const char *v, size_t vlen, int num, void *arg) {
  lua_State *L = arg;
  lua_pushlstring(L, k, klen);
  if (num) lua_pushnumber(L, strtod(v, NULL));
  else lua_pushlstring(L, v, vlen);
  lua_rawset(L, -3);
}

static void emit_lua(reader *r, const out_ev *e) {
  lua_State *L = r->out;
  char ph[2] = {e->ph, 0};
  lua_createtable(L, 0, 10);
  set_str(L, "ph", ph);
  set_str(L, "name", e->name ? e->name : "");
  set_num(L, "pid", 1);
  set_num(L, "tid", (double)e->tid);
  lua_createtable(L, 0, 4);
  if (e->ph == 'M') {
    if (e->meta) set_str(L, "name", e->meta);
    else set_num(L, "sort_index", (double)e->value);
  } else if (e->ph == 'C') {
    set_num(L, "value", (double)e->value);
  } else {
    set_num(L, "vm", e->vm);
    if (e->task) set_num(L, "task", (double)e->task);
    if (e->on_key) set_num(L, e->on_key, (double)e->on);
    if (e->first) {
      set_num(L, "first", (double)e->first);
      set_num(L, "last", (double)e->last);
    }
    px_trace_each_pair(e->detail, lua_pair, L);
  }
  lua_setfield(L, -2, "args");
  if (e->ph != 'M') {
    set_str(L, "cat", e->cat ? e->cat : "");
    set_num(L, "ts", e->ts);
  }
  if (e->ph == 'X') set_num(L, "dur", e->dur);
  if (e->ph == 's' || e->ph == 'f') set_num(L, "id", (double)e->id);
  if (e->ph == 'f' && e->bp_enclosing) set_str(L, "bp", "e");
  lua_rawseti(L, -2, ++r->count);
}

void px_trace_push_events(lua_State *L, px_runtime *rt) {
  reader r;
  reader_init(&r, rt);
  r.emit = emit_lua;
  r.out = L;
  lua_newtable(L);
  if (r.from) read_all(&r);
  free(r.src);
}

/* ---- parx.stats() ---------------------------------------------------------- */

static uint64_t load(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

/* The duration below which a fraction q of the tasks ended (histogram). */
static double percentile(px_trace_stats *s, double q, uint64_t n, double sec_per_tick) {
  if (n == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)n + 0.5), seen = 0;
  if (want < 1) want = 1;
  for (int b = 0; b < 64 * 4; b++) {
    seen += load(&s->hist[b]);
    if (seen >= want) {
      uint64_t lo = b < 4 ? (uint64_t)b : ((uint64_t)(4 + b % 4) << (b / 4 - 2));
      uint64_t hi = b < 4 ? (uint64_t)b + 1 : ((uint64_t)(5 + b % 4) << (b / 4 - 2));
      return (double)(lo + hi) / 2 * sec_per_tick;
    }
  }
  return 0;
}

/* CPU seconds VM id's thread has used, or -1 when it cannot be read.  The
 * busy time of a VM is wall time in its run slices: on a machine whose
 * cores other processes hold, a thread waiting for a core still counts as
 * busy, and only its CPU time says how much work got done.  A worker's
 * own thread lives until the runtime closes; the main VM's is the thread
 * driving it now.  A pool's own VM (id above nworkers) gives none: its
 * thread may end at any time. */
static double thread_cpu(px_runtime *rt, int id, int nworkers) {
  px_vm *vm = id == 0 ? rt->main : atomic_load(&rt->workers_started) && id <= nworkers ? rt->workers[id - 1] : NULL;
  if (!vm || vm->dead) return -1;
  clockid_t clock;
  struct timespec ts;
  if (pthread_getcpuclockid(id == 0 ? vm->thread : vm->os_thread, &clock) != 0 || clock_gettime(clock, &ts) != 0)
    return -1;
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Recorders in the order of their VMs' ids, the first made first. */
typedef struct by_id {
  int id, k;
} by_id;

static int compare_ids(const void *a, const void *b) {
  const by_id *x = a, *y = b;
  return x->id != y->id ? (x->id > y->id) - (x->id < y->id) : (x->k > y->k) - (x->k < y->k);
}

void px_trace_push_stats(lua_State *L, px_runtime *rt) {
  double sec = px_trace_ratio() / 1e9;
  uint64_t now = px_trace_now();
  pthread_mutex_lock(&rt->trace_lock);
  int n = rt->ntraces;
  px_trace **traces = malloc(sizeof *traces * (size_t)(n ? n : 1));
  by_id *order = malloc(sizeof *order * (size_t)(n ? n : 1));
  if (traces && order) memcpy(traces, rt->traces, sizeof *traces * (size_t)n);
  else n = 0;
  pthread_mutex_unlock(&rt->trace_lock);
  for (int k = 0; k < n; k++) order[k] = (by_id){traces[k]->vm_id, k};
  qsort(order, (size_t)n, sizeof *order, compare_ids);
  int nworkers = workers_of(rt), pool = 0;
  uint64_t start = now;
  for (int k = 0; k < n; k++)
    if (traces[k]->born < start) start = traces[k]->born;
  uint64_t messages = 0, bytes = 0, ops = 0, gpu = 0, mpi = 0;
  lua_createtable(L, 0, 8);
  set_num(L, "wall", (double)(now - start) * sec);
  set_num(L, "workers", nworkers);
  lua_createtable(L, n, 0);
  int row = 0;
  /* main, the workers, then the pools' own VMs, in the order of their ids
   * (each id once: a VM that failed to start may have left a recorder
   * behind). */
  for (int j = 0; j < n; j++) {
    int id = order[j].id;
    px_trace *tr = traces[order[j].k];
    if (j > 0 && order[j - 1].id == id) continue;
    px_trace_stats *s = &tr->stats;
    double life = (double)(now - tr->born) * sec;
    double busy = (double)load(&s->busy) * sec, parked = (double)load(&s->parked) * sec;
    double idle = life - busy - parked;
    uint64_t tasks = load(&s->tasks);
    char name[32];
    vm_name(id, nworkers, name, sizeof name);
    lua_createtable(L, 0, 8);
    set_str(L, "name", name);
    if (id > nworkers) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "pool");
      pool++;
    }
    set_num(L, "busy", busy);
    double cpu = thread_cpu(rt, id, nworkers);
    if (cpu >= 0) set_num(L, "cpu", cpu);
    set_num(L, "parked", parked);
    set_num(L, "idle", idle > 0 ? idle : 0);
    set_num(L, "tasks", (double)tasks);
    set_num(L, "task_p50", percentile(s, 0.5, tasks, sec));
    set_num(L, "task_p99", percentile(s, 0.99, tasks, sec));
    lua_rawseti(L, -2, ++row);
  }
  for (int k = 0; k < n; k++) {
    px_trace_stats *s = &traces[k]->stats;
    messages += load(&s->messages);
    bytes += load(&s->bytes);
    ops += load(&s->chan_ops);
    gpu += load(&s->gpu);
    mpi += load(&s->mpi);
  }
  lua_setfield(L, -2, "vms");
  set_num(L, "pool_workers", pool);
  set_num(L, "messages", (double)messages);
  set_num(L, "bytes_marshalled", (double)bytes);
  set_num(L, "channel_ops", (double)ops);
  set_num(L, "gpu_time", (double)gpu * sec);
  set_num(L, "mpi_time", (double)mpi * sec);
  free(traces);
  free(order);
}
