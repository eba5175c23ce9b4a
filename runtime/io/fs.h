/*
 * fs.h -- private to parx.c.fs: fs.c (operations, file objects, the module)
 * and fs_whole.c (readfile and writefile, one park for a whole file).
 */
#ifndef PX_IO_FS_H
#define PX_IO_FS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/ioreq.h"
#include "bounds.h"

/* ------------------------------------------------------------------------
 * File objects.  The userdata holds a pointer to an fs_file so that the file
 * can outlive its userdata while operations on it are still in flight (a
 * task cancelled while parked on a read, then the file collected).
 * ---------------------------------------------------------------------- */
typedef struct fs_file {
  uv_file fd;          /* -1 once really closed */
  int pending;         /* operations in flight on fd */
  int closed;          /* close() was called: Lua may not use it any more */
  int orphaned;        /* the userdata was collected: free when idle */
  int poll_reads;      /* a FIFO, socket or device: reads wait on the loop */
  int polling;         /* a read is waiting on the loop (one at a time) */
  char *path;          /* for error messages */
} fs_file;

enum fs_op_kind {
  FS_SIMPLE,    /* one request; results depend on req.fs_type */
  FS_OPEN,      /* open: deliver makes a file object */
  FS_READ,      /* file:read */
  FS_WRITE,     /* file:write */
  FS_READFILE,  /* open, fstat, read..., close */
  FS_WRITEFILE  /* open, write..., [fsync], close, [rename] */
};

typedef struct fs_op {
  px_req wait;  /* the task's; IDLE once the task was cancelled */
  uv_fs_t req;
  uv_loop_t *loop;
  int kind;
  int result;   /* final result: >= 0, or a negative libuv error */
  fs_file *file; /* file ops: the file, whose pending count we hold */
  char *path;   /* readfile/writefile target, for errors and rename */
  char *tmp;    /* atomic writefile: the temporary file (NULL when gone) */
  uv_file fd;   /* readfile/writefile: our own descriptor, -1 if none */
  char *buf;
  size_t len, cap;
  uv_poll_t *poll; /* readfile of a FIFO, socket or device: read on the loop */
  int64_t offset;
  int flags, mode, atomic;
} fs_op;

/* The task was cancelled: a callback undoes what the op did and frees it. */
static inline int px_fs_op_abandoned(const fs_op *op) { return !px_req_active(&op->wait); }

/* fs.c */
void px_fs_close_now(uv_file fd);
fs_op *px_fs_op_new(lua_State *L, int kind, const char *what);
void px_fs_op_free(fs_op *op);
void px_fs_op_done(fs_op *op, int result);
int px_fs_op_park(lua_State *L, fs_op *op);
int px_fs_op_fail(lua_State *L, fs_op *op, int err, const char *detail);
int px_fs_op_submit(lua_State *L, fs_op *op, int rc, const char *path);
int px_fs_poll_start(fs_op *op, uv_file fd, uv_poll_cb cb);
void px_fs_poll_stop(fs_op *op);

/* fs_whole.c */
int px_fs_readfile(lua_State *L);
int px_fs_writefile(lua_State *L);

#endif
