/*
 * process.h -- private to parx.c.process.  Two files, one way:
 *
 *   process.c       children (spawn, exec, exit, timeout, kill) and the
 *                   module's Lua face; it owns three pipe_ends per child.
 *   process_pipe.c  one pipe to a child: its read-ahead buffer, the task
 *                   parked reading it, writes and shutdown.  It knows
 *                   nothing of processes: it tells its owner through two
 *                   hooks (closed, changed) set at px_pipe_init.
 */
#ifndef PX_PROCESS_H
#define PX_PROCESS_H

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bounds.h"
#include "signals.h"
#include "stream.h" /* px_write_req */

#define PROC_META "parx.process"
#define HIGH_WATER (64 * 1024)
#define READ_SIZE (64 * 1024)

enum { STDIO_IGNORE, STDIO_PIPE, STDIO_INHERIT };
enum { READ_CHUNK, READ_N, READ_LINE, READ_ALL };

typedef struct pipe_end pipe_end;

struct pipe_end {
  uv_pipe_t pipe; /* first member: a uv_stream_t * is a pipe_end * */
  void *owner;    /* the proc */
  /* The owner's hooks: the handle's close callback ran; something changed
   * (data or EOF arrived, a reader finished): the owner may complete or
   * free itself.  Called last, e is not touched after them. */
  void (*closed)(pipe_end *e);
  void (*changed)(pipe_end *e);
  int mode;       /* STDIO_* */
  int capture;    /* exec: read everything, no back-pressure */
  int open;       /* initialised and not (being) closed */
  int eof;        /* read side: no more data will come */
  int err;        /* read error (< 0) that ended the data */
  int too_big;    /* capture: the output passed the string limit; dropped */
  int reading;    /* uv_read_start is active */
  char *buf;
  size_t start, len, cap; /* unread data: buf[start, len) */
  px_req reader;  /* the task parked reading */
  int read_mode;
  size_t want;
};

/* process_pipe.c */
void px_pipe_init(pipe_end *e, uv_loop_t *loop, int mode, int capture, void *owner,
                  void (*closed)(pipe_end *), void (*changed)(pipe_end *));
/* Start reading (an output pipe, once the child runs). */
void px_pipe_start(pipe_end *e);
/* Close the pipe; a reader waiting on it sees the end of the data. */
void px_pipe_close(pipe_end *e);
/* The input pipe: close after the writes already queued (the child reads
 * everything, then EOF). */
void px_pipe_shutdown(pipe_end *e);
/* A task reads or writes or waits: the owner must stay. */
static inline int px_pipe_busy(const pipe_end *e) { return px_req_busy(&e->reader); }
size_t px_pipe_buffered(const pipe_end *e);
/* Lua: read with the format at fmt (nil, a size, "l" or "a"); write the
 * string at data.  Parks; the results are the methods' (process.c). */
int px_pipe_read(lua_State *L, pipe_end *e, int fmt);
int px_pipe_write(lua_State *L, pipe_end *e, int data);

#endif
