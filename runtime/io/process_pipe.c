/*
 * process_pipe.c -- the pipes of a child process (see process.c): output is
 * read ahead into a buffer up to HIGH_WATER bytes, then left in the pipe
 * until a task reads (back-pressure); readers and writers park until their
 * data is there or written.
 */
#include "process.h"

/* ------------------------------------------------------------------------
 * Reading.
 * ---------------------------------------------------------------------- */
size_t px_proc_buffered(const pipe_end *e) { return e->len - e->start; }

static int satisfied(const pipe_end *e) {
  if (e->eof) return 1;
  switch (e->read_mode) {
  case READ_CHUNK: return px_proc_buffered(e) > 0;
  case READ_N: return px_proc_buffered(e) >= e->want;
  case READ_LINE:
    return px_proc_buffered(e) > px_io_max_string() ||
           (px_proc_buffered(e) > 0 && memchr(e->buf + e->start, '\n', px_proc_buffered(e)) != NULL);
  default: return px_proc_buffered(e) > px_io_max_string(); /* READ_ALL: EOF, or too much */
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

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  pipe_end *e = (pipe_end *)s;
  proc *p = e->p;
  if (n > 0) {
    e->len += (size_t)n;
    if (p->capture && px_proc_buffered(e) > px_io_max_string()) {
      /* exec cannot return it: drop it, and let the child see EPIPE. */
      e->too_big = 1;
      free(e->buf);
      e->buf = NULL;
      e->start = e->len = e->cap = 0;
      px_proc_pipe_close(e);
    }
  } else if (n < 0) {
    if (n != UV_EOF) e->err = (int)n;
    px_proc_pipe_close(e); /* sets eof, wakes a reader */
  }
  px_proc_pipe_update(e);
  if (p->capture) px_proc_check_exit(p);
}

/* Wake a reader whose condition holds; read only while someone wants the
 * data (capture mode, a parked reader, or less than HIGH_WATER px_proc_buffered). */
void px_proc_pipe_update(pipe_end *e) {
  if (e->waiting && !e->woken && satisfied(e)) {
    e->woken = 1;
    px_wake(&e->wait);
  }
  if (!e->open) return;
  int want = e->p->capture || (e->waiting && !e->woken) || px_proc_buffered(e) < HIGH_WATER;
  if (want && !e->reading) {
    if (uv_read_start((uv_stream_t *)&e->pipe, alloc_cb, read_cb) == 0) e->reading = 1;
  } else if (!want && e->reading) {
    uv_read_stop((uv_stream_t *)&e->pipe);
    e->reading = 0;
  }
}

/* Cut the result of a read in mode/want out of the buffer onto L. */
static int take_data(lua_State *L, pipe_end *e, int mode, size_t want) {
  size_t have = px_proc_buffered(e);
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

static int reader_deliver(lua_State *co, px_wait *w) {
  pipe_end *e = (pipe_end *)((char *)w - offsetof(pipe_end, wait));
  int n = take_data(co, e, e->read_mode, e->want);
  e->waiting = e->woken = 0;
  px_proc_pipe_update(e);
  px_proc_maybe_free(e->p);
  return n;
}

static void reader_discard(px_wait *w) {
  pipe_end *e = (pipe_end *)((char *)w - offsetof(pipe_end, wait));
  e->waiting = e->woken = 0;
  px_proc_pipe_update(e);
  px_proc_maybe_free(e->p);
}

static int reader_cancel(px_wait *w) {
  pipe_end *e = (pipe_end *)((char *)w - offsetof(pipe_end, wait));
  if (e->woken) return 0;
  e->waiting = 0;
  px_proc_pipe_update(e);
  return 1;
}

static pipe_end *check_pipe(lua_State *L, proc *p, int idx, int want_read) {
  int i = (int)luaL_checkinteger(L, idx);
  luaL_argcheck(L, i >= 0 && i <= 2 && (i == 0) != want_read, idx, "bad stream index");
  pipe_end *e = &p->io[i];
  if (e->mode != STDIO_PIPE)
    luaL_error(L, "%s is not a pipe (opts.%s was not \"pipe\")",
               i == 0 ? "stdin" : i == 1 ? "stdout" : "stderr",
               i == 0 ? "stdin" : i == 1 ? "stdout" : "stderr");
  return e;
}

/* p:read(i, what): what is nil (whatever is available), a byte count,
 * "l" (a line without its "\n") or "a" (all until EOF).  nil at EOF. */
int px_proc_read(lua_State *L) {
  proc *p = px_proc_check(L);
  pipe_end *e = check_pipe(L, p, 2, 1);
  int mode = READ_CHUNK;
  size_t want = 0;
  if (lua_type(L, 3) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, 3);
    luaL_argcheck(L, n >= 1 && n <= (lua_Number)(1u << 31), 3, "size must be between 1 and 2^31");
    mode = READ_N;
    want = (size_t)n;
    /* One byte past the string limit is enough to say EFBIG. */
    if (want > px_io_max_string()) want = px_io_max_string() + 1;
  } else if (lua_type(L, 3) == LUA_TSTRING) {
    const char *s = lua_tostring(L, 3);
    if (*s == '*') s++;
    if (*s == 'l') mode = READ_LINE;
    else if (*s == 'a') mode = READ_ALL;
    else luaL_argerror(L, 3, "invalid format (expected a size, \"l\" or \"a\")");
  } else if (!lua_isnoneornil(L, 3)) {
    luaL_argerror(L, 3, "invalid format (expected a size, \"l\" or \"a\")");
  }
  if (e->waiting) luaL_error(L, "another task is already reading this pipe");
  e->read_mode = mode;
  e->want = want;
  if (satisfied(e)) {
    int n = take_data(L, e, mode, want);
    px_proc_pipe_update(e);
    return n;
  }
  memset(&e->wait, 0, sizeof e->wait);
  e->wait.what = "process pipe read";
  e->wait.deliver = reader_deliver;
  e->wait.discard = reader_discard;
  e->wait.cancel = reader_cancel;
  px_wait_prepare(L, &e->wait);
  e->waiting = 1;
  e->woken = 0;
  px_proc_pipe_update(e);
  return px_park(L, &e->wait);
}

static void write_cb(uv_write_t *req, int status) {
  write_op *op = req->data;
  if (op->state == 2) {
    free(op);
    return;
  }
  op->status = status;
  op->state = 1;
  px_wake(&op->wait);
}

static int write_deliver(lua_State *co, px_wait *w) {
  write_op *op = (write_op *)w;
  int n;
  if (op->status < 0) {
    n = px_push_error(co, op->status, "stdin");
  } else {
    lua_pushboolean(co, 1);
    n = 1;
  }
  free(op);
  return n;
}

static void write_discard(px_wait *w) { free(w); }

static int write_cancel(px_wait *w) {
  write_op *op = (write_op *)w;
  if (op->state == 1) return 0;
  op->state = 2; /* the write goes on; write_cb frees */
  return 1;
}

/* p:write(data) -> true: parks until the child's pipe took all of it. */
int px_proc_write(lua_State *L) {
  proc *p = px_proc_check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  pipe_end *e = &p->io[0];
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
  px_wait bound;
  memset(&bound, 0, sizeof bound);
  px_wait_prepare(L, &bound);
  write_op *op = malloc(sizeof *op + (len - done));
  if (op == NULL) return px_oom(L, "process write");
  memset(op, 0, sizeof *op);
  op->wait = bound;
  op->wait.what = "process stdin write";
  op->wait.deliver = write_deliver;
  op->wait.discard = write_discard;
  op->wait.cancel = write_cancel;
  memcpy(op->data, data + done, len - done);
  op->req.data = op;
  b = uv_buf_init(op->data, (unsigned)(len - done));
  int rc = uv_write(&op->req, (uv_stream_t *)&e->pipe, &b, 1, write_cb);
  if (rc < 0) {
    free(op);
    return px_push_error(L, rc, "stdin");
  }
  return px_park(L, &op->wait);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  pipe_end *e = req->data;
  free(req);
  if (!uv_is_closing((uv_handle_t *)&e->pipe))
    uv_close((uv_handle_t *)&e->pipe, px_proc_close_cb);
}

/* p:close(i) -> true: closes one pipe.  stdin is closed after the writes
 * already queued, so the child reads everything and then EOF. */
int px_proc_close_pipe(lua_State *L) {
  proc *p = px_proc_check(L);
  int i = (int)luaL_checkinteger(L, 2);
  luaL_argcheck(L, i >= 0 && i <= 2, 2, "bad stream index");
  pipe_end *e = &p->io[i];
  if (e->open && i == 0) {
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req != NULL) {
      req->data = e;
      if (uv_shutdown(req, (uv_stream_t *)&e->pipe, shutdown_cb) == 0) {
        e->open = 0; /* the shutdown callback closes the handle */
        e->eof = 1;
        lua_pushboolean(L, 1);
        return 1;
      }
      free(req);
    }
  }
  px_proc_pipe_close(e);
  lua_pushboolean(L, 1);
  return 1;
}

/* p:wait() -> status, signal (nil when it exited by itself). */
