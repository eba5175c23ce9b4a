/*
 * exit.c -- how the parx command line ends: output flushed on every path.
 *
 * stdout is fully buffered when it is a pipe or a file, so output a script
 * wrote sits in the buffer until exit() flushes it.  Three paths would lose
 * it:
 *
 *   - SIGINT, SIGTERM, SIGHUP at their default disposition kill the process
 *     without flushing.  We catch them (only those still at SIG_DFL: a
 *     signal the parent ignored stays ignored); the handler writes out what
 *     the stdout and stderr buffers hold and then dies by the same signal
 *     with the default action restored, so the parent sees the status it
 *     expects (a shell's 128+n, WIFSIGNALED).  It calls no stdio function
 *     (none is async-signal-safe, and the interrupted code may be inside
 *     one): it waits at most FLUSH_WAIT_MS for another thread to leave the
 *     stream (ftrylockfile), then writes the bytes between the buffer's
 *     start and its write pointer with write(2).  glibc moves that pointer
 *     only after the bytes are in the buffer, so what it writes is always
 *     output the script produced, even when the handler interrupted an
 *     fwrite on its own thread; a signal landing inside a flush's write(2),
 *     before the pointer is reset, can repeat those bytes (the window is one
 *     system call).  No thread waits for signals: one made every start-up
 *     about 1 ms slower.  A second signal while the handler waits kills at
 *     once.  A script that handles one of these signals itself (parx.signal)
 *     replaces our handler for that signal.
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
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define FLUSH_WAIT_MS 500

static volatile sig_atomic_t caught;
static const int flushed_signals[] = {SIGINT, SIGTERM, SIGHUP};

/* Write n bytes of p to fd, waiting at most FLUSH_WAIT_MS in all for room
 * (a reader that stopped reading must not keep the process alive).  Pieces
 * of PIPE_BUF: after POLLOUT a pipe takes that much without blocking. */
static void write_bounded(int fd, const char *p, size_t n) {
  int left_ms = FLUSH_WAIT_MS;
  while (n > 0) {
    struct pollfd pfd = {fd, POLLOUT, 0};
    int r = poll(&pfd, 1, left_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || (pfd.revents & (POLLERR | POLLNVAL))) return;
    ssize_t w = write(fd, p, n < PIPE_BUF ? n : PIPE_BUF);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* Write out what f's buffer holds to fd, without stdio (see the top). */
static void flush_raw(FILE *f, int fd) {
  int locked = 0;
  for (int i = 0; i < FLUSH_WAIT_MS && !locked; i++) {
    locked = ftrylockfile(f) == 0;
    if (!locked) {
      struct timespec ms = {0, 1000000L};
      nanosleep(&ms, NULL);
    }
  }
  const char *base = f->_IO_write_base, *ptr = f->_IO_write_ptr;
  if (base != NULL && ptr > base) write_bounded(fd, base, (size_t)(ptr - base));
  /* Left locked: the process dies next, and no other thread may write
   * these bytes again in the meantime. */
}

static void on_signal(int sig) {
  if (!caught) {
    caught = sig;
    int saved = errno;
    flush_raw(stdout, STDOUT_FILENO);
    flush_raw(stderr, STDERR_FILENO);
    errno = saved;
  }
  /* The first signal after flushing, or a second one while the first
   * waits: die by it. */
  signal(sig, SIG_DFL);
  raise(sig);
}

void px_cli_signals_init(void) {
  for (size_t i = 0; i < sizeof flushed_signals / sizeof flushed_signals[0]; i++) {
    struct sigaction sa, prev;
    if (sigaction(flushed_signals[i], NULL, &prev) != 0 || prev.sa_handler != SIG_DFL) continue;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_NODEFER: the raise at the end, and a second signal while the
     * first waits, are delivered at once. */
    sa.sa_flags = SA_RESTART | SA_NODEFER;
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
