/*
 * poll_host.c -- a host with its own poll() loop (lines.h says what it
 * does).  One poll() waits for both standard input and parx: parx's
 * backend descriptor becomes readable when parx_step has work, and
 * parx_backend_timeout says how long the host may sleep before stepping
 * anyway (a timer coming due).  The host never blocks inside parx.
 *
 *   make embed-poll-host && printf 'a bb ccc\nfail\n' | build/embed-poll-host
 */
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "lines.h"

int main(void) {
  lines ls;
  if (lines_open(&ls) != 0) return 1;
  char buf[4096];
  size_t have = 0;
  int eof = 0, steps = 0;
  for (;;) {
    int pending = lines_collect(&ls);
    if (eof && pending == 0) break;
    struct pollfd fds[2] = {{.fd = parx_backend_fd(ls.rt), .events = POLLIN},
                            {.fd = eof ? -1 : 0, .events = POLLIN}};
    int timeout = parx_backend_timeout(ls.rt);
    if (poll(fds, 2, timeout) < 0 && errno != EINTR) return 1;
    if (fds[1].revents) {
      ssize_t n = read(0, buf + have, sizeof buf - have);
      if (n <= 0) eof = 1;
      else have += (size_t)n;
      char *nl;
      while ((nl = memchr(buf, '\n', have))) {
        if (lines_submit(&ls, buf, (size_t)(nl - buf)) != 0) return 1;
        have -= (size_t)(nl + 1 - buf);
        memmove(buf, nl + 1, have);
      }
    }
    /* Readable, timed out, or new tasks to start: one step, never
     * blocking (the poll above was the wait). */
    if (parx_step(ls.rt, 1) < 0) {
      fprintf(stderr, "host: %s\n", parx_last_error(ls.rt));
      return 1;
    }
    steps++;
  }
  printf("poll host: %d lines, stepped from its own loop\n", ls.printed);
  parx_close(ls.rt);
  return steps > 0 ? 0 : 1;
}
