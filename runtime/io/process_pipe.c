/*
 * process_pipe.c -- one pipe to a child process (see process.h): output is
 * read ahead into a buffer up to HIGH_WATER bytes, then left in the pipe
 * until a task reads (back-pressure); readers and writers park until their
 * data is there or written.  In capture mode (exec) everything is read.
 */
#include "process.h"

/* ------------------------------------------------------------------------
 * Reading.
 * ---------------------------------------------------------------------- */
size_t px_pipe_buffered(const pipe_end *e) { return e->len - e->start; }

static int satisfied(const pipe_end *e) {
  if (e->eof) return 1;
  switch (e->read_mode) {
  case READ_CHUNK: return px_pipe_buffered(e) > 0;
  case READ_N: return px_pipe_buffered(e) >= e->want;
  case READ_LINE:
    return px_pipe_buffered(e) > px_io_max_string() ||
           (px_pipe_buffered(e) > 0 && memchr(e->buf + e->start, '\n', px_pipe_buffered(e)) != NULL);
  default: return px_pipe_buffered(e) > px_io_max_string(); /* READ_ALL: EOF, or too much */
  }
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  pipe_end *e = (pipe_end *)h;
  if (e->start == e->len) e->start = e->len = 0;
  if (e->cap - e->len < READ_SIZE && e->start > 0) {
    memmove(e->buf, e->buf + e->start, e->len - e->start);
    e->len -= e->start;
    e->start = 0;
  }
  if (e->cap - e->len < READ_SIZE) {
    size_t cap = e->cap * 2 > e->len + READ_SIZE ? e->cap * 2 : e->len + READ_SIZE;
    /* Doubling stops near the string limit: one chunk past it is enough
     * to know that no Lua string can hold the data. */
    size_t limit = px_io_max_string() + 2 * READ_SIZE;
    if (cap > limit && limit >= e->len + READ_SIZE) cap = limit;
    char *nb = realloc(e->buf, cap);
    if (nb == NULL) {
      *b = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
      return;
    }
    e->buf = nb;
    e->cap = cap;
  }
  *b = uv_buf_init(e->buf + e->len, (unsigned)(e->cap - e->len));
}

static void pipe_update(pipe_end *e);
static void close_cb(uv_handle_t *h);

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  pipe_end *e = (pipe_end *)s;
  if (n > 0) {
    e->len += (size_t)n;
    if (e->capture && px_pipe_buffered(e) > px_io_max_string()) {
      /* exec cannot return it: drop it, and let the child see EPIPE. */
      e->too_big = 1;
      free(e->buf);
      e->buf = NULL;
      e->start = e->len = e->cap = 0;
      px_pipe_close(e);
    }
  } else if (n < 0) {
    if (n != UV_EOF) e->err = (int)n;
    px_pipe_close(e); /* sets eof, wakes a reader */
  }
  pipe_update(e);
  e->changed(e);
}

/* Wake a reader whose condition holds; read only while someone wants the
 * data (capture mode, a parked reader, or less than HIGH_WATER buffered). */
static void pipe_update(pipe_end *e) {
  if (px_req_active(&e->reader) && satisfied(e)) px_req_done(&e->reader);
  if (!e->open) return;
  int want = e->capture || px_req_active(&e->reader) || px_pipe_buffered(e) < HIGH_WATER;
  if (want && !e->reading) {
    if (uv_read_start((uv_stream_t *)&e->pipe, alloc_cb, read_cb) == 0) e->reading = 1;
  } else if (!want && e->reading) {
    uv_read_stop((uv_stream_t *)&e->pipe);
    e->reading = 0;
  }
}

/* Cut the result of a read in mode/want out of the buffer onto L. */
static int take_data(lua_State *L, pipe_end *e, int mode, size_t want) {
  size_t have = px_pipe_buffered(e);
  const char *data = e->buf ? e->buf + e->start : "";
  size_t n = 0, skip = 0;
  switch (mode) {
  case READ_CHUNK: n = have < px_io_max_string() ? have : px_io_max_string(); break;
  case READ_N: n = have < want ? have : want; break;
  case READ_LINE: {
    const char *nl = memchr(data, '\n', have);
    if (nl) {
      n = (size_t)(nl - data);
      skip = 1;
    } else {
      n = have;
    }
    break;
  }
  default: /* READ_ALL: everything, "" at the end like io.read("a") */
    if (have > px_io_max_string()) /* the data stays for smaller reads */
      return px_push_error(L, UV_EFBIG, "more than one Lua string can hold");
    lua_pushlstring(L, data, have);
    e->start = e->len;
    return 1;
  }
  if (n > px_io_max_string()) return px_push_error(L, UV_EFBIG, "more than one Lua string can hold");
  if (n == 0 && skip == 0) {
    if (e->err < 0 && have == 0) return px_push_error(L, e->err, NULL);
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, data, n);
  e->start += n + skip;
  return 1;
}

static int reader_done(lua_State *co, px_req *req) {
  pipe_end *e = px_container_of(req, pipe_end, reader);
  int n = take_data(co, e, e->read_mode, e->want);
  pipe_update(e);
  e->changed(e);
  return n;
}

static void reader_drop(px_req *req) {
  pipe_end *e = px_container_of(req, pipe_end, reader);
  pipe_update(e);
  e->changed(e);
}

static void reader_abandon(px_req *req) { pipe_update(px_container_of(req, pipe_end, reader)); }

static const px_req_type reader_type = {
    .done = reader_done, .drop = reader_drop, .abandon = reader_abandon};

/* read(what): what is nil (whatever is available), a byte count, "l" (a
 * line without its "\n") or "a" (all until EOF).  nil at EOF. */
int px_pipe_read(lua_State *L, pipe_end *e, int fmt) {
  int mode = READ_CHUNK;
  size_t want = 0;
  if (lua_type(L, fmt) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, fmt);
    luaL_argcheck(L, n >= 1 && n <= (lua_Number)(1u << 31), fmt, "size must be between 1 and 2^31");
    mode = READ_N;
    want = (size_t)n;
    /* One byte past the string limit is enough to say EFBIG. */
    if (want > px_io_max_string()) want = px_io_max_string() + 1;
  } else if (lua_type(L, fmt) == LUA_TSTRING) {
    const char *s = lua_tostring(L, fmt);
    if (*s == '*') s++;
    if (*s == 'l') mode = READ_LINE;
    else if (*s == 'a') mode = READ_ALL;
    else luaL_argerror(L, fmt, "invalid format (expected a size, \"l\" or \"a\")");
  } else if (!lua_isnoneornil(L, fmt)) {
    luaL_argerror(L, fmt, "invalid format (expected a size, \"l\" or \"a\")");
  }
  if (px_pipe_busy(e)) luaL_error(L, "another task is already reading this pipe");
  e->read_mode = mode;
  e->want = want;
  if (satisfied(e)) {
    int n = take_data(L, e, mode, want);
    pipe_update(e);
    return n;
  }
  px_req_init(&e->reader, &reader_type, "process pipe read");
  px_req_start(L, &e->reader);
  pipe_update(e);
  return px_req_park(L, &e->reader);
}

static void write_cb(uv_write_t *req, int status) {
  px_write_req_done(px_container_of(req, px_write_req, uv.write), status);
}

/* write(data) -> true: parks until the child's pipe took all of it. */
int px_pipe_write(lua_State *L, pipe_end *e, int data_idx) {
  size_t len;
  const char *data = luaL_checklstring(L, data_idx, &len);
  if (e->mode != STDIO_PIPE) luaL_error(L, "stdin is not a pipe (opts.stdin was not \"pipe\")");
  if (!e->open) return px_push_error(L, UV_EPIPE, "stdin is closed");
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* Most writes fit in the pipe: no park, no copy. */
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int n = uv_try_write((uv_stream_t *)&e->pipe, &b, 1);
  if (n == (int)len) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (n < 0 && n != UV_EAGAIN) return px_push_error(L, n, "stdin");
  size_t done = n > 0 ? (size_t)n : 0;
  px_check_can_park(L); /* a host call outside a task raises, as it did */
  px_write_req *w = px_write_req_new(L, len - done, "process stdin write");
  if (w == NULL) return px_oom(L, "process");
  w->detail = "stdin";
  memcpy(w->data, data + done, len - done);
  b = uv_buf_init(w->data, (unsigned)(len - done));
  int rc = uv_write(&w->uv.write, (uv_stream_t *)&e->pipe, &b, 1, write_cb);
  if (rc < 0) {
    free(w);
    return px_push_error(L, rc, "stdin");
  }
  return px_write_req_park(L, w);
}

static void close_cb(uv_handle_t *h) {
  pipe_end *e = (pipe_end *)h;
  e->closed(e);
}

void px_pipe_close(pipe_end *e) {
  if (!e->open) return;
  e->open = 0;
  e->eof = 1;
  e->reading = 0;
  uv_close((uv_handle_t *)&e->pipe, close_cb);
  pipe_update(e);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  (void)status;
  pipe_end *e = req->data;
  free(req);
  if (!uv_is_closing((uv_handle_t *)&e->pipe)) uv_close((uv_handle_t *)&e->pipe, close_cb);
}

void px_pipe_shutdown(pipe_end *e) {
  if (!e->open) return;
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req != NULL) {
    req->data = e;
    if (uv_shutdown(req, (uv_stream_t *)&e->pipe, shutdown_cb) == 0) {
      e->open = 0; /* the shutdown callback closes the handle */
      e->eof = 1;
      return;
    }
    free(req);
  }
  px_pipe_close(e);
}

void px_pipe_init(pipe_end *e, uv_loop_t *loop, int mode, int capture, void *owner,
                  void (*closed)(pipe_end *), void (*changed)(pipe_end *)) {
  e->owner = owner;
  e->closed = closed;
  e->changed = changed;
  e->mode = mode;
  e->capture = capture;
  px_req_init(&e->reader, &reader_type, "process pipe read");
  if (mode != STDIO_PIPE) return;
  uv_pipe_init(loop, &e->pipe, 0);
  e->open = 1;
}

void px_pipe_start(pipe_end *e) { pipe_update(e); }
