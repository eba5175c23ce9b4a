/* leftover.c -- what the process waits for after the main chunk returned
 * (px_host_drain): tasks that are not daemons, as Node.js waits for its
 * pending work.  Once none is left (or nothing can make progress any
 * more), the daemon tasks are cancelled and the main VM drives on until
 * their cleanup has run.  On a terminal, a wait longer than NOTE_MS gets a
 * one-line note on stderr: which tasks, and how not to wait for them.
 *
 * A daemon that never reaches a park point (a loop with no parx call)
 * cannot be cancelled and still holds the exit up; os.exit ends it. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "future.h"

#define NOTE_MS 3000

/* The note is written from each VM's own thread: a task's state and wait
 * are its VM's to read (sched.c writes them without a lock), so note_cb
 * lists the main VM's tasks itself and posts a control message to every
 * worker, which adds its own; the last to answer prints the line.  A
 * worker that does not answer within ASK_MS (a task in a compiled loop
 * that never parks) is left out of the list and only counted, from
 * rt->live_tasks, when the timer prints what has come. */
#define ASK_MS 500
#define NOTE_MAX 3

typedef struct note_req {
  atomic_int refs;      /* the timer's, each message's */
  pthread_mutex_t lock; /* guards everything below */
  int pending, printed;
  long n; /* tasks listed (or counted past NOTE_MAX) */
  size_t used;
  char buf[400];
  px_runtime *rt;
} note_req;

typedef struct note_msg {
  px_wait w; /* a control message: no task */
  note_req *req;
} note_msg;

typedef struct note_timer {
  uv_timer_t timer;
  px_runtime *rt;
  note_req *req; /* NULL until the workers were asked */
} note_timer;

static void req_release(note_req *req) {
  if (atomic_fetch_sub(&req->refs, 1) != 1) return;
  pthread_mutex_destroy(&req->lock);
  free(req);
}

/* vm's tasks that keep the process alive, as "task 5 on worker 1
 * (waiting on sleep)", added to req (vm's own thread). */
static void describe(note_req *req, px_vm *vm) {
  pthread_mutex_lock(&req->lock);
  for (px_task *t = vm->tasks; t; t = t->next) {
    px_future *f = t->future;
    if (!f || f->daemon || t->state == PX_TASK_DONE) continue;
    if (req->n++ >= NOTE_MAX || req->used >= sizeof req->buf) continue;
    const char *what = t->state == PX_TASK_PARKED && t->wait && t->wait->what ? t->wait->what
                       : t->state == PX_TASK_PARKED                          ? "something"
                                                                            : "running";
    int w = snprintf(req->buf + req->used, sizeof req->buf - req->used,
                     "%stask %ld%s%s%s on %s%.0d (%s%s)", req->used ? ", " : "", f->seq,
                     f->name ? " '" : "", f->name ? f->name : "", f->name ? "'" : "",
                     vm->id == 0 ? "the main VM" : "worker ", vm->id,
                     t->state == PX_TASK_PARKED ? "waiting on " : "", what);
    if (w > 0) req->used += (size_t)w;
  }
  if (req->used >= sizeof req->buf) req->used = sizeof req->buf - 1;
  pthread_mutex_unlock(&req->lock);
}

/* The line, once (req->lock held). */
static void print_note(note_req *req) {
  if (req->printed || atomic_load(&req->rt->live_tasks) <= 0) return;
  req->printed = 1;
  long queued = atomic_load(&req->rt->live_tasks) - req->n;
  long all = req->n + (queued > 0 ? queued : 0);
  fprintf(stderr,
          "parx: the script has returned; waiting for %ld task%s%s%s%s (Ctrl-C stops; start "
          "tasks that should not be waited for with {daemon = true})\n",
          all, all == 1 ? "" : "s", req->n ? ": " : "", req->buf, req->n > NOTE_MAX ? ", ..." : "");
  fflush(stderr);
}

static void answered(note_req *req) {
  pthread_mutex_lock(&req->lock);
  if (--req->pending == 0) print_note(req);
  pthread_mutex_unlock(&req->lock);
}

/* The control message, on the answering worker's thread. */
static int note_answer(lua_State *L, px_wait *w) {
  note_msg *m = (note_msg *)w;
  note_req *req = m->req;
  describe(req, px_vm_of(L));
  answered(req);
  free(m);
  req_release(req);
  return 0;
}

/* First (NOTE_MS): list the main VM's tasks, ask the workers for theirs.
 * Then (ASK_MS later): print what has come, if the last answer did not. */
static void note_cb(uv_timer_t *timer) {
  note_timer *nt = (note_timer *)timer;
  px_runtime *rt = nt->rt;
  if (nt->req) {
    pthread_mutex_lock(&nt->req->lock);
    print_note(nt->req);
    pthread_mutex_unlock(&nt->req->lock);
    return;
  }
  if (atomic_load(&rt->live_tasks) <= 0) return;
  note_req *req = calloc(1, sizeof *req);
  if (!req) return;
  pthread_mutex_init(&req->lock, NULL);
  atomic_init(&req->refs, 1);
  req->rt = rt;
  req->pending = 1; /* the main VM's, below */
  nt->req = req;
  int nworkers = atomic_load(&rt->workers_started) ? rt->nworkers : 0;
  for (int i = 0; i < nworkers; i++) {
    px_vm *vm = rt->workers[i];
    if (!vm || vm->dead) continue;
    note_msg *m = calloc(1, sizeof *m);
    if (!m) continue; /* counted, not listed */
    m->req = req;
    m->w.deliver = note_answer;
    m->w.what = "a note of what the process waits for";
    atomic_fetch_add(&req->refs, 1);
    pthread_mutex_lock(&req->lock);
    req->pending++;
    pthread_mutex_unlock(&req->lock);
    px_vm_post(vm, &m->w);
  }
  describe(req, rt->main);
  answered(req);
  uv_timer_start(timer, note_cb, ASK_MS, 0);
}

static void note_close_cb(uv_handle_t *h) {
  note_timer *nt = (note_timer *)h;
  if (nt->req) req_release(nt->req);
  free(nt);
}

/* The drive's test (vm.c PX_DRIVE_UNTIL): never done by itself; once no
 * task but daemons is left, cancel those (they end, their cleanup runs,
 * and the drive ends when everything is quiet). */
static int check(px_vm *vm, void *arg) {
  int *cancelled = arg;
  px_runtime *rt = vm->rt;
  if (!*cancelled && atomic_load(&rt->live_tasks) <= 0) {
    *cancelled = 1;
    px_runtime_cancel_daemons(rt);
  }
  return 0;
}

void px_leftover_drain(px_runtime *rt) {
  if (atomic_load(&rt->exit_requested)) return;
  note_timer *note = NULL;
  if (isatty(2) && (note = calloc(1, sizeof *note)) && uv_timer_init(&rt->main->loop, &note->timer) == 0) {
    note->rt = rt;
    uv_unref((uv_handle_t *)&note->timer); /* the note keeps nothing alive */
    uv_timer_start(&note->timer, note_cb, NOTE_MS, 0);
  } else {
    free(note);
    note = NULL;
  }
  int cancelled = 0;
  px_vm_drive(rt->main, PX_DRIVE_UNTIL, check, &cancelled);
  /* Quiet with daemons still parked (on a channel nobody will send to):
   * cancel them too, so that their cleanup runs before the runtime
   * closes. */
  if (!atomic_load(&rt->exit_requested) && px_runtime_cancel_daemons(rt) > 0)
    px_vm_drive(rt->main, PX_DRIVE_UNTIL, check, &cancelled);
  if (note) uv_close((uv_handle_t *)&note->timer, note_close_cb);
}
