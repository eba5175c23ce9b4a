/*
 * glib_host.c -- a host driven by a GLib main loop (lines.h says what it
 * does): parx's backend descriptor is one more source of the loop
 * (g_unix_fd_add), standard input another, and a timeout source re-armed
 * after every step from parx_backend_timeout covers parx's timers.  The
 * loop quits once standard input has ended and every task was printed.
 *
 *   make embed-glib-host   (when pkg-config finds glib-2.0: libglib2.0-dev)
 */
#include <glib-unix.h>
#include <glib.h>
#include <unistd.h>

#include "lines.h"

typedef struct app {
  lines ls;
  GMainLoop *loop;
  guint timer;
  int eof, steps;
  GString *buf;
} app;

static gboolean on_parx(gint fd, GIOCondition cond, gpointer data);

/* One step of parx, then re-arm the timer for parx's next deadline. */
static void step(app *a) {
  if (parx_step(a->ls.rt, 1) < 0) {
    fprintf(stderr, "host: %s\n", parx_last_error(a->ls.rt));
    g_main_loop_quit(a->loop);
    return;
  }
  a->steps++;
  if (lines_collect(&a->ls) == 0 && a->eof) g_main_loop_quit(a->loop);
}

static gboolean on_timer(gpointer data);

static void arm(app *a) {
  if (a->timer) g_source_remove(a->timer);
  a->timer = 0;
  int ms = parx_backend_timeout(a->ls.rt);
  if (ms >= 0) a->timer = g_timeout_add(ms, on_timer, a);
}

static gboolean on_timer(gpointer data) {
  app *a = data;
  a->timer = 0;
  step(a);
  arm(a);
  return G_SOURCE_REMOVE;
}

static gboolean on_parx(gint fd, GIOCondition cond, gpointer data) {
  (void)fd;
  (void)cond;
  app *a = data;
  step(a);
  arm(a);
  return G_SOURCE_CONTINUE;
}

static gboolean on_stdin(gint fd, GIOCondition cond, gpointer data) {
  (void)cond;
  app *a = data;
  char chunk[4096];
  ssize_t n = read(fd, chunk, sizeof chunk);
  if (n > 0) g_string_append_len(a->buf, chunk, n);
  char *nl;
  while ((nl = memchr(a->buf->str, '\n', a->buf->len))) {
    lines_submit(&a->ls, a->buf->str, (size_t)(nl - a->buf->str));
    g_string_erase(a->buf, 0, nl + 1 - a->buf->str);
  }
  if (n <= 0) a->eof = 1;
  step(a); /* start the new tasks */
  arm(a);
  return n > 0 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

int main(void) {
  app a = {0};
  if (lines_open(&a.ls) != 0) return 1;
  a.loop = g_main_loop_new(NULL, FALSE);
  a.buf = g_string_new(NULL);
  guint parx_src = g_unix_fd_add(parx_backend_fd(a.ls.rt), G_IO_IN, on_parx, &a);
  g_unix_fd_add(0, G_IO_IN | G_IO_HUP, on_stdin, &a);
  arm(&a);
  g_main_loop_run(a.loop);
  g_source_remove(parx_src);
  if (a.timer) g_source_remove(a.timer);
  printf("glib host: %d lines, stepped from a GLib main loop\n", a.ls.printed);
  parx_close(a.ls.rt);
  g_string_free(a.buf, TRUE);
  g_main_loop_unref(a.loop);
  return a.steps > 0 ? 0 : 1;
}
