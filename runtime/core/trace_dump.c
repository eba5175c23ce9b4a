/* trace_dump.c -- the dump of every live task, in the spirit of Go's
 * SIGQUIT dump and py-spy dump: each task's state, what it waits on and
 * since when, and its Lua traceback; with it, the flight recorder's recent
 * timeline (parx.trace.dump, SIGUSR1 from the command line).
 *
 * A VM's tasks and its ring are read only on the VM's own thread: the
 * dumping task posts a control message to every other VM, which answers
 * with its section of the text and a copy of its ring when its loop next
 * turns, and parks until all have answered or DUMP_WAIT_MS passed.  A VM
 * that has not answered by then (a task in a compiled loop that never
 * parks) is listed from its task list, each task "running, no traceback"
 * or with its wait: nothing stops it to ask.
 *
 * The VMs of pools of their own (parx.pool.new) are asked too, while
 * runtime.c's list holds them (px_runtime_each_pool_vm, under rt->lock):
 * one that ends after it was asked answers first (it drains its inbox as
 * it stops), and one that did not answer is read under that lock again,
 * if it is still there, since it may have ended since.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "future.h"

#define DUMP_WAIT_MS 1000

typedef struct dump_req dump_req;

typedef struct dump_msg {
  px_wait w; /* a control message: no task */
  dump_req *req;
  int index;
} dump_msg;

struct dump_req {
  px_wait w;         /* the dumping task's park */
  atomic_int refs;   /* the task, each message, the timer */
  pthread_mutex_t lock; /* guards text, ring, answered, woken */
  int n, cap;        /* VMs: main, the workers, then the pools' own */
  int fixed;         /* vms[0 .. fixed) live as long as the runtime */
  px_vm **vms;       /* a pool's VM only while its answer is due */
  int *ids;
  char **text;       /* each VM's section, NULL until it answered */
  px_event **ring;   /* each VM's ring, oldest first */
  size_t *nring;
  int pending, woken;
  uv_timer_t timer;
  char *path;        /* where the recent timeline goes, or NULL */
};

static void req_release(dump_req *req) {
  if (atomic_fetch_sub(&req->refs, 1) != 1) return;
  for (int i = 0; i < req->n; i++) {
    free(req->text[i]);
    free(req->ring[i]);
  }
  free(req->text);
  free(req->ring);
  free(req->nring);
  free(req->vms);
  free(req->ids);
  free(req->path);
  pthread_mutex_destroy(&req->lock);
  free(req);
}

/* ---- one VM's section, on its thread --------------------------------------- */

typedef struct text {
  char *s;
  size_t len, cap;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(text *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char line[1024];
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  if (t->len + (size_t)n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    while (cap < t->len + (size_t)n + 1) cap *= 2;
    char *p = realloc(t->s, cap);
    if (!p) return;
    t->s = p;
    t->cap = cap;
  }
  memcpy(t->s + t->len, line, (size_t)n + 1);
  t->len += (size_t)n;
}

static void vm_title(text *out, px_vm *vm) {
  if (vm->id == 0) add(out, "main VM:\n");
  else add(out, "%sworker %d:\n", vm->group ? "pool " : "", vm->id);
}

static void task_head(text *out, px_task *t) {
  const char *name = t->trace.name ? t->trace.name
                     : t->future && t->future->name ? t->future->name /* not run yet */
                                                    : NULL;
  add(out, "  task %ld%s%s%s: ", t->future ? t->future->seq : 0L, name ? " (" : "", name ? name : "",
      name ? ")" : "");
}

/* ", path /tmp/x" for each pair of a wait's detail. */
static void text_pair(const char *k, size_t klen, const char *v, size_t vlen, int num, void *arg) {
  (void)num;
  text *out = arg;
  add(out, "%s%.*s %.*s", out->s[out->len - 1] == '(' ? "" : ", ", (int)klen, k, (int)vlen, v);
}

static void wait_text(text *out, px_task *t, uint64_t now) {
  px_wait *w = t->wait;
  add(out, "parked on %s", w && w->what ? w->what : "something");
  const char *detail = px_trace_wait_detail(&t->trace, w);
  if ((w && w->on_id) || detail) add(out, " (");
  if (w && w->on_id) {
    const char *key = w->what && strncmp(w->what, "channel", 7) == 0 ? "channel"
                      : w->what && strstr(w->what, "task") ? "task" : "object";
    add(out, "%s %lld", key, (long long)w->on_id);
  }
  if (detail) px_trace_each_pair(detail, text_pair, out);
  if ((w && w->on_id) || detail) add(out, ")");
  if (t->trace.park_ts && now > t->trace.park_ts) add(out, " for %.3f s", px_trace_seconds(now - t->trace.park_ts));
  add(out, "\n");
}

/* Lua's traceback of co, indented; L allocates (a protected frame). */
static void traceback(text *out, lua_State *L, lua_State *co, int level) {
  luaL_traceback(L, co, NULL, level);
  const char *tb = lua_tostring(L, -1);
  for (const char *p = tb; p && *p;) {
    const char *nl = strchr(p, '\n');
    int len = nl ? (int)(nl - p) : (int)strlen(p);
    /* Not the task's own xpcall at the bottom (sched.c guard). */
    if (!(nl == NULL && strncmp(p, "\t[builtin#", 10) == 0)) add(out, "    %.*s\n", len, p);
    p = nl ? nl + 1 : p + len;
  }
  lua_pop(L, 1);
}

/* The section of vm (its thread).  self: the dumping task, or NULL. */
static char *collect(px_vm *vm, lua_State *L, px_task *self, int hide_self) {
  text out = {0};
  uint64_t now = px_trace_now();
  vm_title(&out, vm);
  int n = 0;
  for (px_task *t = vm->tasks; t; t = t->next) {
    n++;
    size_t mark = out.len;
    task_head(&out, t);
    if (t == self && hide_self) {
      n--;
      out.len = mark;
      out.s[mark] = 0;
    } else if (t == self) {
      add(&out, "running (this dump)\n");
      traceback(&out, L, L, 1);
    } else if (t->state == PX_TASK_PARKED) {
      wait_text(&out, t, now);
      traceback(&out, L, t->co, 0);
    } else if (t->state == PX_TASK_RUNNING) {
      add(&out, "running\n");
    } else {
      add(&out, "ready\n");
      if (lua_status(t->co) == LUA_YIELD) traceback(&out, L, t->co, 0);
    }
  }
  if (n == 0) add(&out, "  no tasks\n");
  return out.s;
}

/* A copy of vm's ring, oldest first, and the waits still going on up to
 * now (its thread). */
static px_event *snapshot(px_vm *vm, size_t *n) {
  px_trace *tr = vm->trace;
  uint64_t pos = atomic_load_explicit(&tr->ring_pos, memory_order_relaxed);
  size_t count = pos < PX_TRACE_RING ? (size_t)pos : PX_TRACE_RING;
  px_event *copy = malloc(sizeof *copy * (count + (size_t)vm->nparked + 1));
  *n = 0;
  if (!copy) return NULL;
  for (size_t i = 0; i < count; i++) copy[i] = tr->ring[(pos - count + i) & (PX_TRACE_RING - 1)];
  uint64_t now = px_trace_now();
  long parked = 0;
  for (px_task *t = vm->tasks; t && parked < vm->nparked; t = t->next) {
    if (t->state != PX_TASK_PARKED || !t->trace.park_ts) continue;
    const char *what = t->wait ? t->wait->what : NULL;
    copy[count++] = (px_event){.t0 = t->trace.park_ts, .t1 = now, .name = what,
                               .task = t->future ? t->future->seq : 0, .a = t->wait ? t->wait->on_id : 0,
                               .b = (int64_t)(intptr_t)px_trace_wait_detail(&t->trace, t->wait),
                               .kind = PX_EV_WAIT, .cat = (uint32_t)px_trace_classify(what)};
    parked++;
  }
  *n = count;
  return copy;
}

static void store(dump_req *req, int i, char *s, px_event *ring, size_t nring) {
  pthread_mutex_lock(&req->lock);
  if (req->text[i]) {
    /* Too late: the dump went out with "did not answer" in its place
     * (dump_deliver), which the request frees. */
    free(s);
    free(ring);
  } else {
    req->text[i] = s;
    req->ring[i] = ring;
    req->nring[i] = nring;
  }
  int wake = --req->pending == 0 && !req->woken;
  if (wake) req->woken = 1;
  pthread_mutex_unlock(&req->lock);
  if (wake) px_wake(&req->w);
}

/* The control message, on the answering VM's thread (protected). */
static int answer(lua_State *L, px_wait *w) {
  dump_msg *m = (dump_msg *)w;
  dump_req *req = m->req;
  px_vm *vm = px_vm_of(L);
  size_t n;
  px_event *ring = snapshot(vm, &n);
  store(req, m->index, collect(vm, L, NULL, 0), ring, n);
  free(m);
  req_release(req);
  return 0;
}

/* ---- the dumping task ------------------------------------------------------ */

/* A VM that did not answer: its task list, read under its inbox lock. */
static char *unanswered(px_vm *vm) {
  text out = {0};
  vm_title(&out, vm);
  add(&out, "  (did not answer within %d ms: busy in compiled code?)\n", DUMP_WAIT_MS);
  uint64_t now = px_trace_now();
  pthread_mutex_lock(&vm->inbox_lock);
  for (px_task *t = vm->tasks; t; t = t->next) {
    task_head(&out, t);
    if (t->state == PX_TASK_PARKED) wait_text(&out, t, now);
    else if (t->state == PX_TASK_RUNNING) add(&out, "running, no traceback\n");
    else add(&out, "ready\n");
  }
  pthread_mutex_unlock(&vm->inbox_lock);
  return out.s;
}

/* A pool's VM that did not answer, if it is still there (req->lock and
 * rt->lock held). */
static void pool_unanswered(px_vm *vm, void *arg) {
  dump_req *req = arg;
  for (int i = req->fixed; i < req->n; i++)
    if (req->ids[i] == vm->id && !req->text[i]) req->text[i] = unanswered(vm);
}

static void timer_closed(uv_handle_t *h) { req_release(h->data); }

static void timed_out(uv_timer_t *timer) {
  dump_req *req = timer->data;
  pthread_mutex_lock(&req->lock);
  int wake = !req->woken;
  req->woken = 1;
  pthread_mutex_unlock(&req->lock);
  if (wake) px_wake(&req->w);
}

static int dump_cancel(px_wait *w) {
  dump_req *req = (dump_req *)w;
  pthread_mutex_lock(&req->lock);
  int detached = !req->woken;
  req->woken = 1;
  pthread_mutex_unlock(&req->lock);
  if (!detached) return 0;
  uv_close((uv_handle_t *)&req->timer, timer_closed);
  req_release(req);
  return 1;
}

static void dump_discard(px_wait *w) {
  dump_req *req = (dump_req *)w;
  uv_close((uv_handle_t *)&req->timer, timer_closed);
  req_release(req);
}

/* The dump's text, and the recent timeline written to req->path. */
static int dump_deliver(lua_State *co, px_wait *w) {
  dump_req *req = (dump_req *)w;
  text out = {0};
  pthread_mutex_lock(&req->lock);
  for (int i = 0; i < req->fixed; i++)
    if (!req->text[i]) req->text[i] = unanswered(req->vms[i]);
  if (req->n > req->fixed) px_runtime_each_pool_vm(req->vms[0]->rt, pool_unanswered, req);
  for (int i = 0; i < req->n; i++) {
    if (!req->text[i]) {
      text gone = {0};
      add(&gone, "pool worker %d:\n  (ended before it answered)\n", req->ids[i]);
      req->text[i] = gone.s;
    }
    add(&out, "%s", req->text[i] ? req->text[i] : "");
  }
  int err = 0;
  if (req->path) err = px_trace_write_events(req->path, req->ring, req->nring, req->ids, req->n, req->fixed - 1);
  pthread_mutex_unlock(&req->lock);
  uv_close((uv_handle_t *)&req->timer, timer_closed);
  req_release(req);
  lua_pushstring(co, out.s ? out.s : "");
  free(out.s);
  if (err == 0) return 1;
  lua_pushstring(co, px_strerror(err));
  return 2;
}

/* Ask vm, the i-th VM, for its section (req->lock held). */
static void ask(dump_req *req, int i, px_vm *vm) {
  dump_msg *m = calloc(1, sizeof *m);
  if (!m) return; /* listed as not answering */
  m->req = req;
  m->index = i;
  m->w.deliver = answer;
  m->w.what = "dump";
  atomic_fetch_add(&req->refs, 1);
  req->pending++;
  px_vm_post(vm, &m->w);
}

typedef struct asking {
  dump_req *req;
  px_vm *self;
  int mine; /* self's index, -1: none */
} asking;

/* A pool's VM, listed and asked (rt->lock and req->lock held). */
static void ask_pool_vm(px_vm *vm, void *arg) {
  asking *a = arg;
  dump_req *req = a->req;
  if (req->n == req->cap) return; /* it started since they were counted */
  int i = req->n++;
  req->vms[i] = vm;
  req->ids[i] = vm->id;
  if (vm == a->self) a->mine = i;
  else ask(req, i, vm);
}

/* dump([path [, hide_self]]) -> text [, error writing path]: every live
 * task of every VM (but the calling one when hide_self); the recent
 * timeline to path (Chrome JSON).  Parks while the other VMs answer. */
int px_trace_dump(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  int hide_self = lua_toboolean(L, 2);
  px_check_can_park(L);
  px_vm *self = px_vm_of(L);
  px_runtime *rt = self->rt;
  int nworkers = atomic_load(&rt->workers_started) ? rt->nworkers : 0;
  dump_req *req = calloc(1, sizeof *req);
  if (!req) return px_oom(L, "dump");
  req->n = req->fixed = 1 + nworkers;
  req->cap = req->n + px_runtime_each_pool_vm(rt, NULL, NULL);
  req->vms = calloc((size_t)req->cap, sizeof *req->vms);
  req->ids = calloc((size_t)req->cap, sizeof *req->ids);
  req->text = calloc((size_t)req->cap, sizeof *req->text);
  req->ring = calloc((size_t)req->cap, sizeof *req->ring);
  req->nring = calloc((size_t)req->cap, sizeof *req->nring);
  req->path = path ? strdup(path) : NULL;
  pthread_mutex_init(&req->lock, NULL);
  atomic_init(&req->refs, 1);
  if (!req->vms || !req->ids || !req->text || !req->ring || !req->nring || (path && !req->path)) {
    req_release(req);
    return px_oom(L, "dump");
  }
  /* Bound to this task before any other VM can answer (and wake it). */
  req->w.what = "other VMs to answer a dump";
  req->w.deliver = dump_deliver;
  req->w.discard = dump_discard;
  req->w.cancel = dump_cancel;
  px_wait_prepare(L, &req->w);
  req->vms[0] = rt->main;
  for (int i = 0; i < nworkers; i++) req->vms[i + 1] = rt->workers[i];
  for (int i = 0; i < req->fixed; i++) req->ids[i] = req->vms[i]->id;
  /* Ask the others first, then write this VM's own section meanwhile. */
  asking a = {req, self, -1};
  pthread_mutex_lock(&req->lock);
  for (int i = 0; i < req->fixed; i++) {
    if (req->vms[i] == self) a.mine = i;
    else ask(req, i, req->vms[i]);
  }
  px_runtime_each_pool_vm(rt, ask_pool_vm, &a);
  pthread_mutex_unlock(&req->lock);
  int mine = a.mine;
  size_t n;
  px_event *ring = snapshot(self, &n);
  pthread_mutex_lock(&req->lock);
  req->pending++;
  pthread_mutex_unlock(&req->lock);
  if (mine >= 0) store(req, mine, collect(self, L, self->current, hide_self), ring, n);
  else free(ring);
  /* Park until the last answer or the timer. */
  uv_timer_init(&self->loop, &req->timer);
  req->timer.data = req;
  atomic_fetch_add(&req->refs, 1); /* the timer's, dropped when it is closed */
  uv_unref((uv_handle_t *)&req->timer);
  uv_timer_start(&req->timer, timed_out, DUMP_WAIT_MS, 0);
  pthread_mutex_lock(&req->lock);
  int done = req->pending == 0 && !req->woken;
  if (done) req->woken = 1;
  pthread_mutex_unlock(&req->lock);
  if (done) px_wake(&req->w);
  return px_park(L, &req->w);
}

/* ---- SIGUSR1 ---------------------------------------------------------------
 * The command line dumps on SIGUSR1.  libuv's signal handle turns the
 * signal into a callback on the loop (never in the handler itself); the
 * callback only posts a control message to the VM, whose drive loop runs
 * package.loaded["parx.trace"]._usr1() protected: that starts the dump in
 * a task of its own (it parks while the other VMs answer).  The handle is
 * unreferenced (it keeps no process alive) and lives in the VM's recorder. */

static int usr1_deliver(lua_State *L, px_wait *w) {
  px_vm *vm = px_vm_of(L);
  (void)w;
  vm->trace->usr1_posted = 0;
  /* In a coroutine of its own: parx.async starts tasks from a coroutine,
   * never from the VM's main state. */
  lua_State *co = lua_newthread(L);
  if (luaL_loadstring(co, "require('parx.trace')._usr1()") != 0 || lua_resume(co, 0) != 0) {
    lua_xmove(co, L, 1);
    return lua_error(L);
  }
  return 0;
}

static void on_usr1(uv_signal_t *h, int signum) {
  (void)signum;
  px_vm *vm = h->data;
  px_trace *tr = vm->trace;
  if (tr->usr1_posted) return; /* one dump at a time */
  tr->usr1_posted = 1;
  memset(&tr->usr1_msg, 0, sizeof tr->usr1_msg);
  tr->usr1_msg.deliver = usr1_deliver;
  tr->usr1_msg.what = "SIGUSR1";
  px_vm_post(vm, &tr->usr1_msg);
}

/* SIGUSR1 dumps from now on, on vm's loop (its thread). */
int px_trace_watch_usr1(px_vm *vm) {
  px_trace *tr = vm->trace;
  if (tr->usr1_on) return 0;
  int err = uv_signal_init(&vm->loop, &tr->usr1);
  if (err) return err;
  tr->usr1.data = vm;
  uv_unref((uv_handle_t *)&tr->usr1);
  tr->usr1_on = 1;
  return uv_signal_start(&tr->usr1, on_usr1, SIGUSR1);
}
