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

/* Up to `max` tasks that keep the process alive, as "task 5 on worker 1
 * (waiting on sleep)"; how many there are in all.  Reads each VM's task
 * list under its inbox_lock (as the deadlock report does). */
static long describe(px_runtime *rt, char *buf, size_t size, int max) {
  long n = 0;
  size_t used = 0;
  buf[0] = 0;
  int nvms = atomic_load(&rt->workers_started) ? rt->nworkers + 1 : 1;
  for (int i = 0; i < nvms; i++) {
    px_vm *vm = i == 0 ? rt->main : rt->workers[i - 1];
    if (!vm || vm->dead) continue;
    pthread_mutex_lock(&vm->inbox_lock);
    for (px_task *t = vm->tasks; t; t = t->next) {
      px_future *f = t->future;
      if (!f || f->daemon || t->state == PX_TASK_DONE) continue;
      if (n++ >= max || used >= size) continue;
      const char *what = t->state == PX_TASK_PARKED && t->wait && t->wait->what ? t->wait->what
                         : t->state == PX_TASK_PARKED                          ? "something"
                                                                              : "running";
      int w = snprintf(buf + used, size - used, "%stask %ld%s%s%s on %s%.0d (%s%s)",
                       used ? ", " : "", f->seq, f->name ? " '" : "", f->name ? f->name : "",
                       f->name ? "'" : "", vm->id == 0 ? "the main VM" : "worker ", vm->id,
                       t->state == PX_TASK_PARKED ? "waiting on " : "", what);
      if (w > 0) used += (size_t)w;
    }
    pthread_mutex_unlock(&vm->inbox_lock);
  }
  return n;
}

static void note_cb(uv_timer_t *timer) {
  px_runtime *rt = timer->data;
  if (atomic_load(&rt->live_tasks) <= 0) return;
  char tasks[400];
  long n = describe(rt, tasks, sizeof tasks, 3);
  long queued = atomic_load(&rt->live_tasks) - n;
  fprintf(stderr,
          "parx: the script has returned; waiting for %ld task%s%s%s%s (Ctrl-C stops; start "
          "tasks that should not be waited for with {daemon = true})\n",
          n + (queued > 0 ? queued : 0), n + (queued > 0 ? queued : 0) == 1 ? "" : "s",
          n ? ": " : "", tasks, n > 3 ? ", ..." : "");
  fflush(stderr);
}

static void note_close_cb(uv_handle_t *h) { free(h); }

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
  uv_timer_t *note = NULL;
  if (isatty(2) && (note = malloc(sizeof *note)) && uv_timer_init(&rt->main->loop, note) == 0) {
    note->data = rt;
    uv_unref((uv_handle_t *)note); /* the note keeps nothing alive */
    uv_timer_start(note, note_cb, NOTE_MS, 0);
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
  if (note) uv_close((uv_handle_t *)note, note_close_cb);
}
