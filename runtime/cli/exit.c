/*
 * exit.c -- how the parx command line ends: output flushed on every path.
 *
 * stdout is fully buffered when it is a pipe or a file, so output a script
 * wrote sits in the buffer until exit() flushes it.  Three paths would lose
 * it:
 *
 *   - SIGINT, SIGTERM, SIGHUP at their default disposition kill the process
 *     without flushing.  We catch them (only those still at SIG_DFL: a
 *     signal the parent ignored stays ignored), and a small thread flushes
 *     stdout and stderr and then dies by the same signal with the default
 *     action restored, so the parent sees the status it expects (a shell's
 *     128+n, WIFSIGNALED).  The handler itself only writes the signal's
 *     number to a pipe (async-signal-safe); flushing needs the stdio locks,
 *     which the interrupted thread may hold, so it happens on the thread,
 *     which waits for a lock at most FLUSH_WAIT_MS (a writer blocked on a
 *     full pipe holds it for ever) and then dies anyway.  A second signal
 *     while that happens kills at once.  A script that handles one of these
 *     signals itself (parx.signal) replaces our handler for that signal.
 *
 *   - os.exit or an uncaught error while a worker runs a JIT-compiled loop:
 *     the runtime cannot stop that worker (it reaches no point where it
 *     could be told to), so the command line closes the runtime with a
 *     timeout (parx_close_timeout) and, when workers had to be abandoned,
 *     flushes every stream and ends with _exit: exit() would run atexit
 *     handlers (libuv's joins its thread pool) while those threads run.
 *
 *   - the normal end: exit() flushes.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define FLUSH_WAIT_MS 500

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t caught;
static const int flushed_signals[] = {SIGINT, SIGTERM, SIGHUP};

static void on_signal(int sig) {
  if (caught) {
    /* The flush is stuck or slow: die now. */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  caught = sig;
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  if (write(sig_pipe[1], &b, 1) != 1) {
    signal(sig, SIG_DFL);
    raise(sig);
  }
  errno = saved;
}

/* Flush f if its lock can be had within FLUSH_WAIT_MS. */
static void flush_bounded(FILE *f) {
  for (int i = 0; i < FLUSH_WAIT_MS; i++) {
    if (ftrylockfile(f) == 0) {
      fflush(f);
      funlockfile(f);
      return;
    }
    struct timespec ms = {0, 1000000L};
    nanosleep(&ms, NULL);
  }
}

static void *flusher(void *arg) {
  (void)arg;
  unsigned char b;
  ssize_t n;
  while ((n = read(sig_pipe[0], &b, 1)) < 0 && errno == EINTR) {
  }
  if (n != 1) return NULL;
  int sig = b;
  flush_bounded(stdout);
  flush_bounded(stderr);
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  raise(sig);
  _exit(128 + sig); /* not reached: the default action ends the process */
}

void px_cli_signals_init(void) {
  /* Close-on-exec: child processes (parx.process, io.popen) must not
   * inherit it. */
  if (pipe2(sig_pipe, O_CLOEXEC) != 0) return;
  /* The flusher must not take these signals itself while it waits, nor
   * any other: a signal the kernel hands to a thread blocked in read() is
   * run there, and under ThreadSanitizer only at that thread's next
   * intercepted call, which never comes (libuv's SIGCHLD was lost and
   * process.exec hung in make tsan).  It unblocks its own before raise. */
  sigset_t set, old;
  sigfillset(&set);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  /* A small stack: the flusher only reads a byte and flushes, and a
   * default 8 MiB stack made every start-up measurably slower. */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int started = pthread_create(&t, &attr, flusher, NULL) == 0;
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (!started) return;
  for (size_t i = 0; i < sizeof flushed_signals / sizeof flushed_signals[0]; i++) {
    struct sigaction sa, prev;
    if (sigaction(flushed_signals[i], NULL, &prev) != 0 || prev.sa_handler != SIG_DFL) continue;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(flushed_signals[i], &sa, NULL);
  }
}

/* How long the command line waits for workers to stop before abandoning
 * them (a JIT-compiled loop never stops by itself). */
#define CLOSE_WAIT_MS 200

void px_cli_exit(parx_runtime *rt, int status) {
  if (parx_close_timeout(rt, CLOSE_WAIT_MS) == 0) {
    fflush(NULL);
    return; /* closed: main returns status, exit() does the rest */
  }
  fflush(NULL);
  _exit(status);
}
