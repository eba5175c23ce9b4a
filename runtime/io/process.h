/*
 * process.h -- private to parx.c.process: process.c (children, exit,
 * exec/spawn, the module) and process_pipe.c (the pipes: read-ahead
 * buffers, parked readers and writers).
 */
#ifndef PX_PROCESS_H
#define PX_PROCESS_H

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/px.h"
#include "bounds.h"
#include "signals.h"

#define PROC_META "parx.process"
#define HIGH_WATER (64 * 1024)
#define READ_SIZE (64 * 1024)

enum { STDIO_IGNORE, STDIO_PIPE, STDIO_INHERIT };
enum { READ_CHUNK, READ_N, READ_LINE, READ_ALL };

typedef struct proc proc;

typedef struct pipe_end {
  uv_pipe_t pipe; /* first member: a uv_stream_t * is a pipe_end * */
  proc *p;
  int mode;       /* STDIO_* */
  int open;       /* initialised and not (being) closed */
  int eof;        /* read side: no more data will come */
  int err;        /* read error (< 0) that ended the data */
  int too_big;    /* exec: the output passed the string limit; dropped */
  int reading;    /* uv_read_start is active */
  char *buf;
  size_t start, len, cap; /* unread data: buf[start, len) */
  px_wait wait;   /* the parked reader */
  int waiting;    /* a reader is parked, or woken and not yet delivered */
  int woken;
  int read_mode;
  size_t want;
} pipe_end;

struct proc {
  uv_process_t handle;
  uv_timer_t timer;
  pipe_end io[3];
  uv_loop_t *loop;
  int open_handles;  /* handles whose close callback has not run yet */
  int timer_open;
  int exited;
  int64_t status;
  int term_signal;
  int timed_out;
  double timeout;
  int capture;       /* exec: read all, complete on exit + EOFs */
  int lua_gone;      /* no userdata refers to it (exec, or collected) */
  px_wait exit_wait;
  int exit_waiting;  /* a task is parked on exit, or woken, not delivered */
  int exit_woken;
  char *cmd;
};

typedef struct write_op {
  px_wait wait; /* first member */
  uv_write_t req;
  int state;    /* 0 running, 1 woken, 2 cancelled */
  int status;
  char data[];
} write_op;

/* process.c */
void px_proc_maybe_free(proc *p);
void px_proc_close_cb(uv_handle_t *h);
void px_proc_pipe_close(pipe_end *e);
void px_proc_check_exit(proc *p);
proc *px_proc_check(lua_State *L);

/* process_pipe.c */
size_t px_proc_buffered(const pipe_end *e);
void px_proc_pipe_update(pipe_end *e);
int px_proc_read(lua_State *L);
int px_proc_write(lua_State *L);
int px_proc_close_pipe(lua_State *L);

#endif
