/*
 * stream.h -- buffered, parking streams over libuv's uv_stream_t: TCP
 * connections, a child process's pipes, standard input.
 *
 * A px_stream is a px_iohandle (core/iohandle.h) owning its libuv handle.
 * Its Lua face is a userdata holding a pointer to it, metatable
 * "parx.stream", with the methods read([n | "a" | "l"]), readline(),
 * lines(), write(data), shutdown(), close(), closed(), peername(),
 * sockname().  The object lives
 * until both the handle's close callback has run and the userdata has been
 * collected (or the creator discarded it without ever pushing it).
 */
#ifndef PX_IO_STREAM_H
#define PX_IO_STREAM_H

#include "inet.h"

typedef struct px_stream px_stream;

/* Allocate a stream for vm; its handle is not initialised: call
 * uv_tcp_init / uv_pipe_init on px_stream_handle() next.  NULL when out of
 * memory. */
px_stream *px_stream_new(px_vm *vm);
uv_stream_t *px_stream_handle(px_stream *s);
/* A stream over an open descriptor (a pipe, a terminal or a socket; 0 for
 * standard input), or ENOTSUP for what libuv cannot watch (a regular file,
 * which never blocks long: read it with io.read).  libuv makes the
 * descriptor non-blocking; closing the stream never closes 0, 1 or 2. */
int px_stream_open_fd(px_vm *vm, int fd, px_stream **out);
uv_tcp_t *px_stream_tcp(px_stream *s);

/* Push the Lua userdata for s (once per stream); from then on Lua owns it. */
void px_stream_push(lua_State *L, px_stream *s);

/* Close and free a stream that was never pushed (its on_end hook does not
 * run any more).  The handle must have been initialised. */
void px_stream_discard(px_stream *s);

/* For a C owner (process.exec's output pipes): read everything to the end,
 * with no reader and no high water, and call on_end(s, arg) once when the
 * data ends: EOF, a read error, or more than one Lua string can hold (the
 * data is dropped and reading stops: discard the stream then, so that the
 * writer sees EPIPE).  Never pushed to Lua; px_stream_discard() it when
 * done. */
void px_stream_collect(px_stream *s, void (*on_end)(px_stream *s, void *arg), void *arg);
/* What was collected (the unread bytes) and how it ended: 0, UV_EFBIG or a
 * read error. */
int px_stream_result(px_stream *s, const char **data, size_t *len);

/* A write-like request: a stream's write or shutdown, a UDP send.  The
 * bytes still to send are copied after the struct (they must not depend on
 * a Lua string that a cancelled task no longer anchors).  Inside a task the
 * task parks until libuv is done and gets true or nil, msg, code; outside
 * one (a host call) the request runs in the background and the caller gets
 * true at once. */
typedef struct px_write_req {
  px_req req;
  union {
    uv_write_t write;
    uv_shutdown_t shutdown;
    uv_udp_send_t send;
  } uv;
  int status;
  const char *detail; /* for an error message ("stdin"), or NULL */
  char data[];
} px_write_req;

/* NULL when out of memory.  Raises, with nothing allocated, when the task is
 * being cancelled. */
px_write_req *px_write_req_new(lua_State *L, size_t extra, const char *what);
/* The same with a copy of data[0..len) in w->data, and *buf set to it. */
px_write_req *px_write_req_copy(lua_State *L, const char *data, size_t len, const char *what,
                                uv_buf_t *buf);
/* From the libuv callback. */
void px_write_req_done(px_write_req *w, int status);
/* return px_write_req_park(L, w, uv_xxx(&w->uv.xxx, ...)): started is what
 * the libuv call that was given the request returned.  If it refused the
 * request, w is freed and the error returned (nil, msg, code); otherwise
 * the caller parks until the request is done (or gets true at once when it
 * is not in a task). */
int px_write_req_park(lua_State *L, px_write_req *w, int started);

/* A scratch buffer for libuv alloc callbacks of this thread: each VM runs
 * on its own thread, and libuv calls read_cb right after alloc_cb, so one
 * buffer per thread is enough.  Readers copy out what they keep. */
void px_io_scratch_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

#endif
