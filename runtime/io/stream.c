/*
 * stream.c -- buffered, parking streams over uv_stream_t (see stream.h).
 *
 * Reading.  The first read starts libuv reading; from then on whatever the
 * peer sends is appended to the stream's buffer, whether or not a task is
 * waiting, until READ_HIGH_WATER unread bytes are buffered with no reader
 * parked: then reading stops and TCP's window pushes back on the peer.  A
 * read that the buffer can satisfy returns at once without parking, so a
 * chatty protocol costs one park per network round trip, not per call.
 * Keeping the read watcher on avoids two epoll_ctl calls per round trip
 * that a stop/start per read would cost.
 *
 * Loop liveness.  A stream's handle is unreferenced (uv_unref) except while
 * a task is parked reading it: an idle open connection never keeps a script
 * alive, a parked reader does.  Pending writes and shutdowns are libuv
 * requests and keep the loop alive by themselves.
 *
 * Ownership (STYLE 9).  The userdata holds a pointer to the malloc'd stream.
 * The stream is freed once the handle's close callback has run and the
 * userdata is gone.  A parked reader holds a registry reference to the
 * userdata so that the stream cannot be collected under it.  Write and
 * shutdown requests are separate allocations that never touch the stream
 * after libuv completes them, so collecting a stream with a write in flight
 * is safe: closing the handle completes the write with ECANCELED.
 */
#include "stream.h"
#include "bounds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stop reading from the socket while this many unread bytes are buffered
 * and nobody is parked on a read. */
#define READ_HIGH_WATER ((size_t)1 << 20)
/* A drained buffer larger than this is released rather than kept. */
#define BUF_KEEP ((size_t)64 << 10)
#define SCRATCH_SIZE (64 * 1024)
/* readline() gives up (ENOBUFS) on a line longer than this rather than
 * buffer without bound for a peer that never sends "\n"; the bytes stay
 * buffered for read(). */
#define LINE_MAX_BYTES ((size_t)8 << 20)

enum { READ_ANY, READ_N, READ_LINE, READ_ALL };

struct px_stream {
  px_iohandle base; /* first: the userdata's pointer is the stream's */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
  } h;
  px_vm *vm;
  char *buf;      /* unread bytes are buf[off .. off+len) */
  size_t off, len, cap;
  size_t scanned; /* bytes after off known to hold no '\n' */
  int eof;        /* the peer sent EOF */
  int err;        /* a read error (negative), 0 if none */
  int reading;    /* uv_read_start is active */
  /* The one task reading, while rd is busy; what it asked for. */
  px_req rd;
  int rd_mode;
  size_t rd_n;
  /* px_stream_collect: read to the end with no reader and no high water;
   * on_end runs once when the data ends (EOF, an error, or too much). */
  void (*on_end)(px_stream *s, void *arg);
  void *on_end_arg;
  int collect;
  char peer[72];  /* a TCP stream's "ip:port", once a wait asked (peer_host) */
};

static _Thread_local char scratch[SCRATCH_SIZE];

void px_io_scratch_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(scratch, sizeof scratch);
}

/* ---- life cycle ------------------------------------------------------ */

static const px_iohandle_type stream_type; /* at the end, with the methods */

px_stream *px_stream_new(px_vm *vm) {
  px_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  px_iohandle_init(&s->base, &stream_type);
  s->vm = vm;
  s->rd.state = PX_REQ_IDLE;
  s->h.handle.data = s;
  return s;
}

uv_stream_t *px_stream_handle(px_stream *s) { return &s->h.stream; }

int px_stream_open_fd(px_vm *vm, int fd, px_stream **out) {
  uv_loop_t *loop = px_vm_loop(vm);
  uv_handle_type type = uv_guess_handle(fd);
  if (type != UV_TTY && type != UV_NAMED_PIPE && type != UV_TCP) return UV_ENOTSUP;
  px_stream *s = px_stream_new(vm);
  if (!s) return UV_ENOMEM;
  int r;
  if (type == UV_TTY) {
    r = uv_tty_init(loop, &s->h.tty, fd, 0);
  } else if (type == UV_TCP) {
    r = uv_tcp_init(loop, &s->h.tcp);
    if (r == 0 && (r = uv_tcp_open(&s->h.tcp, fd)) < 0) {
      px_stream_discard(s);
      return r;
    }
  } else {
    r = uv_pipe_init(loop, &s->h.pipe, 0);
    if (r == 0 && (r = uv_pipe_open(&s->h.pipe, fd)) < 0) {
      px_stream_discard(s);
      return r;
    }
  }
  if (r < 0) {
    free(s);
    return r;
  }
  *out = s;
  return 0;
}
uv_tcp_t *px_stream_tcp(px_stream *s) { return &s->h.tcp; }

static void stream_free(px_iohandle *h) {
  px_stream *s = (px_stream *)h;
  free(s->buf);
  free(s);
}

static void on_close(uv_handle_t *h) {
  px_stream *s = h->data;
  px_iohandle_closed(&s->base);
}

/* A parked reader is due: its handle no longer keeps the loop alive. */
static void reader_wake(px_stream *s) {
  if (!px_req_active(&s->rd)) return;
  uv_unref(&s->h.handle);
  px_req_done(&s->rd);
}

static void stream_close(px_iohandle *h) {
  px_stream *s = (px_stream *)h;
  s->h.handle.data = s; /* uv_*_init does not touch data, but be explicit */
  uv_close(&s->h.handle, on_close);
  reader_wake(s); /* delivers ECLOSED */
}

void px_stream_discard(px_stream *s) {
  s->on_end = NULL;
  px_iohandle_close(&s->base);
}

/* ---- the read buffer ------------------------------------------------- */

static int buf_append(px_stream *s, const char *data, size_t n) {
  if (s->off + s->len + n > s->cap) {
    if (s->off > 0) {
      memmove(s->buf, s->buf + s->off, s->len);
      s->off = 0;
    }
    if (s->len + n > s->cap) {
      size_t cap = s->cap ? s->cap * 2 : 4096;
      while (cap < s->len + n) cap *= 2;
      char *nb = realloc(s->buf, cap);
      if (!nb) return UV_ENOMEM;
      s->buf = nb;
      s->cap = cap;
    }
  }
  memcpy(s->buf + s->off + s->len, data, n);
  s->len += n;
  return 0;
}

static void buf_consume(px_stream *s, size_t n) {
  s->off += n;
  s->len -= n;
  s->scanned = s->scanned > n ? s->scanned - n : 0;
  if (s->len == 0) {
    s->off = 0;
    if (s->cap > BUF_KEEP) {
      free(s->buf);
      s->buf = NULL;
      s->cap = 0;
    }
  }
}

/* The position of the first '\n' among the unread bytes, or NULL.  Scans
 * each byte once however often it is asked. */
static const char *line_end(px_stream *s) {
  if (s->scanned < s->len) {
    const char *start = s->buf + s->off + s->scanned;
    const char *p = memchr(start, '\n', s->len - s->scanned);
    if (p) return p;
    s->scanned = s->len;
  }
  return NULL;
}

static int reader_ready(px_stream *s) {
  if (s->base.closing || s->err || s->eof) return 1;
  switch (s->rd_mode) {
  case READ_ANY: return s->len > 0;
  case READ_N: return s->len >= s->rd_n;
  case READ_ALL: return s->len > px_io_max_string();
  default: return line_end(s) != NULL || s->len >= LINE_MAX_BYTES;
  }
}

/* Push the result of the reader's request (the buffer can satisfy it, or
 * the stream ended).  Data comes before the end: a stream that ended with
 * bytes still buffered returns them first, then nil (or the error). */
static int produce(lua_State *L, px_stream *s) {
  if (s->base.closing) return px_push_error(L, PX_ECLOSED, NULL);
  const char *start = s->len ? s->buf + s->off : "";
  size_t take = 0;
  int ended = s->eof || s->err;
  switch (s->rd_mode) {
  case READ_ANY:
    take = s->len < px_io_max_string() ? s->len : px_io_max_string();
    break;
  case READ_N:
    take = s->len >= s->rd_n ? s->rd_n : (ended ? s->len : 0);
    if (take > px_io_max_string()) /* the bytes stay for smaller reads */
      return px_push_error(L, UV_EFBIG, "more than one Lua string can hold");
    break;
  case READ_ALL: /* everything to the end, "" when nothing is left (io.read("a")) */
    if (s->len > px_io_max_string()) /* the bytes stay for smaller reads */
      return px_push_error(L, UV_EFBIG, "more than one Lua string can hold");
    if (s->err && s->len == 0) return px_push_error(L, s->err, NULL);
    lua_pushlstring(L, start, s->len);
    buf_consume(s, s->len);
    return 1;
  default: {
    const char *nl = line_end(s);
    if (nl) {
      size_t k = (size_t)(nl - start);
      size_t keep = (k > 0 && start[k - 1] == '\r') ? k - 1 : k;
      lua_pushlstring(L, start, keep);
      buf_consume(s, k + 1);
      return 1;
    }
    if (!ended && s->len >= LINE_MAX_BYTES)
      return px_push_error(L, UV_ENOBUFS, "line longer than 8 MiB");
    take = ended ? s->len : 0;
  }
  }
  if (take > 0) {
    lua_pushlstring(L, start, take);
    buf_consume(s, take);
    return 1;
  }
  if (s->err) return px_push_error(L, s->err, NULL);
  lua_pushnil(L);
  return 1;
}

static void stop_reading(px_stream *s) {
  if (s->reading) {
    uv_read_stop(&s->h.stream);
    s->reading = 0;
  }
}

/* Collecting: the data ended; tell the owner, once. */
static void collect_end(px_stream *s) {
  void (*on_end)(px_stream *, void *) = s->on_end;
  s->on_end = NULL;
  if (on_end) on_end(s, s->on_end_arg);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  px_stream *s = stream->data;
  if (nread > 0) {
    int r = buf_append(s, buf->base, (size_t)nread);
    if (r < 0) {
      s->err = r;
      stop_reading(s);
    } else if (s->collect && s->len > px_io_max_string()) {
      /* No Lua string can hold it: drop it and stop; the owner discards
       * the stream, so the writer sees EPIPE instead of filling our memory. */
      free(s->buf);
      s->buf = NULL;
      s->off = s->len = s->cap = s->scanned = 0;
      s->err = UV_EFBIG;
      stop_reading(s);
      collect_end(s);
      return;
    } else if (!s->collect && s->len >= READ_HIGH_WATER && !px_req_active(&s->rd)) {
      stop_reading(s);
    }
  } else if (nread == UV_EOF) {
    s->eof = 1;
    stop_reading(s);
  } else if (nread < 0) {
    s->err = (int)nread;
    stop_reading(s);
  }
  if (s->collect && (s->eof || s->err)) collect_end(s);
  if (px_req_active(&s->rd) && reader_ready(s)) reader_wake(s);
}

static void start_reading(px_stream *s) {
  if (s->reading || s->eof || s->err) return;
  int r = uv_read_start(&s->h.stream, px_io_scratch_alloc, on_read);
  if (r < 0)
    s->err = r;
  else
    s->reading = 1;
}

static int reader_done(lua_State *co, px_req *req) {
  return produce(co, px_container_of(req, px_stream, rd));
}

/* Cancelled: the buffered data stays for the next reader. */
static void reader_abandon(px_req *req) {
  uv_unref(&px_container_of(req, px_stream, rd)->h.handle);
}

static const px_req_type reader_type = {.done = reader_done, .abandon = reader_abandon};

void px_stream_collect(px_stream *s, void (*on_end)(px_stream *s, void *arg), void *arg) {
  s->collect = 1;
  s->on_end = on_end;
  s->on_end_arg = arg;
  start_reading(s);
  if (s->err) collect_end(s);
}

int px_stream_result(px_stream *s, const char **data, size_t *len) {
  *data = s->len ? s->buf + s->off : "";
  *len = s->len;
  return s->err;
}

/* ---- Lua methods ----------------------------------------------------- */

/* What a TCP stream's reads and writes wait on, as connect says it
 * (trace_on.c: "host", "ip:port"): the peer, looked up at the first wait;
 * NULL for other streams and an unknown peer. */
static const char *peer_host(lua_State *L, px_stream *s) {
  if (s->h.handle.type != UV_TCP) return NULL;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (!s->peer[0] && uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
    px_inet_push(L, &ss);
    snprintf(s->peer, sizeof s->peer, "%s:%d", lua_tostring(L, -2), (int)lua_tointeger(L, -1));
    lua_pop(L, 2);
  }
  return s->peer[0] ? s->peer : NULL;
}

static int read_common(lua_State *L, px_stream *s, int mode, size_t n) {
  if (px_req_busy(&s->rd))
    return luaL_error(L, "stream is already being read by another task");
  s->rd_mode = mode;
  s->rd_n = n;
  if (reader_ready(s)) return produce(L, s);
  start_reading(s);
  if (reader_ready(s)) return produce(L, s);
  px_trace_wait_on(L, &s->rd.wait, "host", peer_host(L, s));
  return px_iohandle_wait(L, &s->rd, &reader_type,
                          s->h.handle.type == UV_TCP ? "tcp read" : "stream read", &s->h.handle);
}

/* stream:read([n | "a" | "l"]): with n, n bytes (fewer only when the
 * stream ends); "a", everything to the end ("" when nothing is left); "l",
 * a line (as readline()); without, whatever is available (at least one
 * byte).  nil at the end. */
static int stream_read(lua_State *L) {
  px_stream *s = (px_stream *)px_iohandle_check(L);
  if (lua_isnoneornil(L, 2)) return read_common(L, s, READ_ANY, 0);
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *f = lua_tostring(L, 2);
    if (*f == '*') f++; /* Lua 5.1's "*a", "*l" */
    if (*f == 'a') return read_common(L, s, READ_ALL, 0);
    if (*f == 'l') return read_common(L, s, READ_LINE, 0);
    return luaL_argerror(L, 2, "invalid format (expected a size, \"a\" or \"l\")");
  }
  lua_Number n = luaL_checknumber(L, 2);
  luaL_argcheck(L, n >= 0 && n < 0x1p63 && n == (lua_Number)(size_t)n, 2,
                "expected a non-negative integer");
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  /* One byte past the string limit is enough to say EFBIG. */
  size_t want = n > (lua_Number)px_io_max_string() ? px_io_max_string() + 1 : (size_t)n;
  return read_common(L, s, READ_N, want);
}

/* stream:readline(): the next line without "\n" (or "\r\n"); the last line
 * may lack one; nil at the end; ENOBUFS past LINE_MAX_BYTES. */
static int stream_readline(lua_State *L) {
  px_stream *s = (px_stream *)px_iohandle_check(L);
  return read_common(L, s, READ_LINE, 0);
}

static int write_done(lua_State *co, px_req *req) {
  px_write_req *w = px_container_of(req, px_write_req, req);
  int status = w->status;
  const char *detail = w->detail;
  free(w);
  if (status < 0) return px_push_error(co, status, detail);
  lua_pushboolean(co, 1);
  return 1;
}

static void write_drop(px_req *req) { free(px_container_of(req, px_write_req, req)); }

/* Cancelled: the request stays with libuv; its callback frees it. */
static const px_req_type write_type = {.done = write_done, .drop = write_drop};

px_write_req *px_write_req_new(lua_State *L, size_t extra, const char *what) {
  int parks = px_task_current(L) != NULL;
  if (parks) px_check_can_park(L);
  px_write_req *w = malloc(sizeof *w + extra);
  if (!w) return NULL;
  memset(w, 0, sizeof *w);
  px_req_init(&w->req, &write_type, what);
  if (parks) px_req_start(L, &w->req); /* cannot raise: checked above */
  return w;
}

px_write_req *px_write_req_copy(lua_State *L, const char *data, size_t len, const char *what,
                                uv_buf_t *buf) {
  px_write_req *w = px_write_req_new(L, len, what);
  if (!w) return NULL;
  memcpy(w->data, data, len);
  *buf = uv_buf_init(w->data, (unsigned)len);
  return w;
}

void px_write_req_done(px_write_req *w, int status) {
  w->status = status;
  if (!px_req_done(&w->req)) free(w);
}

int px_write_req_park(lua_State *L, px_write_req *w, int started) {
  if (started < 0) {
    free(w);
    return px_push_error(L, started, NULL);
  }
  if (!px_req_active(&w->req)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return px_req_park(L, &w->req);
}

static void on_write(uv_write_t *req, int status) {
  px_write_req_done(px_container_of(req, px_write_req, uv.write), status);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  px_write_req_done(px_container_of(req, px_write_req, uv.shutdown), status);
}

/* stream:write(data): true once the data is handed to the kernel.  What
 * the kernel takes at once returns without parking; the rest is copied and
 * queued, and the writer parks until it has been sent: that is the
 * back-pressure a fast writer feels from a slow peer. */
static int stream_write(lua_State *L) {
  px_stream *s = (px_stream *)px_iohandle_check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  uv_buf_t b = uv_buf_init((char *)data, len > INT32_MAX ? INT32_MAX : (unsigned)len);
  int r = uv_try_write(&s->h.stream, &b, 1);
  if (r >= 0 && (size_t)r == len) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
  if (r < 0) return px_push_error(L, r, NULL);
  size_t rest = len - (size_t)r;
  const char *peer = peer_host(L, s);
  px_write_req *w = px_write_req_copy(L, data + r, rest, "stream write", &b);
  if (!w) return px_push_error(L, UV_ENOMEM, NULL);
  if (px_req_active(&w->req)) px_trace_wait_on(L, &w->req.wait, "host", peer);
  return px_write_req_park(L, w, uv_write(&w->uv.write, &s->h.stream, &b, 1, on_write));
}

/* stream:shutdown(): send EOF after the queued writes; reading goes on. */
static int stream_shutdown(lua_State *L) {
  px_stream *s = (px_stream *)px_iohandle_check(L);
  px_write_req *w = px_write_req_new(L, 0, "stream shutdown");
  if (!w) return px_push_error(L, UV_ENOMEM, NULL);
  return px_write_req_park(L, w, uv_shutdown(&w->uv.shutdown, &s->h.stream, on_shutdown));
}

/* stream:peername() / stream:sockname() -> ip, port (TCP streams). */
static int sock_name(lua_State *L, int peer) {
  px_stream *s = (px_stream *)px_iohandle_check(L);
  if (s->h.handle.type != UV_TCP) return luaL_error(L, "not a TCP stream");
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = peer ? uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len)
               : uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&ss, &len);
  if (r < 0) return px_push_error(L, r, NULL);
  return px_inet_push(L, &ss);
}
static int stream_peername(lua_State *L) { return sock_name(L, 1); }
static int stream_sockname(lua_State *L) { return sock_name(L, 0); }

/* stream:lines() -> an iterator over readline(): for line in s:lines(). */
static int stream_lines(lua_State *L) {
  px_iohandle_check(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, stream_readline, 1);
  lua_pushvalue(L, 1);
  return 2;
}

/* stream:close(): idempotent.  A task parked reading gets ECLOSED; queued
 * writes fail with ECANCELED. */
static const luaL_Reg stream_methods[] = {
    {"read", stream_read},
    {"readline", stream_readline},
    {"lines", stream_lines},
    {"write", stream_write},
    {"shutdown", stream_shutdown},
    {"close", px_iohandle_close_method},
    {"closed", px_iohandle_closed_method},
    {"peername", stream_peername},
    {"sockname", stream_sockname},
    {NULL, NULL}};

static const px_iohandle_type stream_type = {
    .name = "parx.stream",
    .methods = stream_methods,
    .close = stream_close,
    .free = stream_free,
};

void px_stream_push(lua_State *L, px_stream *s) {
  uv_unref(&s->h.handle);
  px_iohandle_push(L, &s->base);
}
