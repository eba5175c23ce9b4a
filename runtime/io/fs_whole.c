/*
 * fs_whole.c -- fs.readfile and fs.writefile (see fs.c): a whole file in
 * one park, as a chain of uv_fs requests driven from their callbacks.
 */
#include "fs.h"

/* Every step's callback starts here: it cleans up req and gives the step's
 * result.  When the step failed or the task went away (cancelled), the op
 * is finished -- with the error, or ECANCELED -- and NULL comes back: the
 * chain stops there.  A descriptor an open returned belongs to the op
 * either way (freeing the op closes it). */
static fs_op *step_done(uv_fs_t *req, ssize_t *result) {
  fs_op *op = req->data;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  if (r >= 0 && req->fs_type == UV_FS_OPEN) op->fd = (uv_file)r;
  if (!px_fs_op_abandoned(op) && r >= 0) {
    *result = r;
    return op;
  }
  px_fs_op_done(op, r < 0 ? (int)r : UV_ECANCELED);
  return NULL;
}

/* ------------------------------------------------------------------------
 * readfile(path): open, fstat, read until EOF, close -- one park.
 * ---------------------------------------------------------------------- */
static void readfile_step(fs_op *op);

static void readfile_close_cb(uv_fs_t *req) {
  fs_op *op = req->data;
  uv_fs_req_cleanup(req);
  px_fs_op_done(op, 0);
}

static void readfile_read_cb(uv_fs_t *req) {
  ssize_t n;
  fs_op *op = step_done(req, &n);
  if (op == NULL) return;
  if (n == 0) {
    uv_file fd = op->fd;
    op->fd = -1;
    if (uv_fs_close(op->loop, req, fd, readfile_close_cb) < 0) px_fs_op_done(op, 0);
    return;
  }
  op->len += (size_t)n;
  if (op->len > px_io_max_string()) {
    px_fs_op_done(op, UV_EFBIG);
    return;
  }
  readfile_step(op);
}

/* Make room for at least 4096 more bytes.  Never grows past the string
 * limit plus that margin: one byte over the limit is enough to know. */
static int readfile_grow(fs_op *op) {
  if (op->cap - op->len >= 4096) return 0;
  size_t limit = px_io_max_string() + 4096;
  size_t cap = op->cap < 65536 ? 65536 : op->cap * 2;
  if (cap > limit) cap = limit;
  char *nb = realloc(op->buf, cap);
  if (nb == NULL) return UV_ENOMEM;
  op->buf = nb;
  op->cap = cap;
  return 0;
}

/* Read the next piece; grow the buffer when full (sizes from fstat are a
 * hint only: /proc files report 0, files may grow). */
static void readfile_step(fs_op *op) {
  int err = readfile_grow(op);
  if (err < 0) {
    px_fs_op_done(op, err);
    return;
  }
  size_t want = op->cap - op->len;
  if (want > (1u << 30)) want = 1u << 30;
  uv_buf_t b = uv_buf_init(op->buf + op->len, (unsigned)want);
  int rc = uv_fs_read(op->loop, &op->req, op->fd, &b, 1, (int64_t)op->len, readfile_read_cb);
  if (rc < 0) px_fs_op_done(op, rc);
}

/* The descriptor is readable (or at its end): read what is there without
 * blocking.  At most 1 MiB per call, so that a fast device does not hold
 * the loop; epoll is level-triggered and calls again. */
static void readfile_poll_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  fs_op *op = h->data;
  int err = status;
  size_t budget = (size_t)1 << 20;
  while (err == 0) {
    if ((err = readfile_grow(op)) < 0) break;
    ssize_t n = read(op->fd, op->buf + op->len, op->cap - op->len);
    if (n > 0) {
      op->len += (size_t)n;
      if (op->len > px_io_max_string()) err = UV_EFBIG;
      else if ((size_t)n >= budget) return;
      else budget -= (size_t)n;
    } else if (n == 0) {
      break; /* end of file: every writer is gone */
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return; /* wait for more */
    } else if (errno != EINTR) {
      err = -errno;
    }
  }
  px_fs_poll_stop(op);
  px_fs_op_done(op, err);
}


static void readfile_fstat_cb(uv_fs_t *req) {
  ssize_t r;
  fs_op *op = step_done(req, &r);
  if (op == NULL) return;
  uint64_t size = req->statbuf.st_size;
  uint64_t mode = req->statbuf.st_mode;
  if (size > px_io_max_string()) {
    px_fs_op_done(op, UV_EFBIG);
    return;
  }
  if ((S_ISFIFO(mode) || S_ISSOCK(mode) || S_ISCHR(mode)) &&
      px_fs_poll_start(op, op->fd, readfile_poll_cb) == 0)
    return;
  /* One spare byte lets a file of exactly the stat'ed size finish with a
   * single read plus the read that sees EOF, without growing. */
  if (size > 0) {
    op->buf = malloc((size_t)size + 4096);
    if (op->buf == NULL) {
      px_fs_op_done(op, UV_ENOMEM);
      return;
    }
    op->cap = (size_t)size + 4096;
  }
  readfile_step(op);
}

static void readfile_open_cb(uv_fs_t *req) {
  ssize_t r;
  fs_op *op = step_done(req, &r);
  if (op == NULL) return;
  int rc = uv_fs_fstat(op->loop, req, op->fd, readfile_fstat_cb);
  if (rc < 0) px_fs_op_done(op, rc);
}

int px_fs_readfile(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fs_op *op = px_fs_op_new(L, FS_READFILE, "fs.readfile");
  op->path = strdup(path);
  if (op->path == NULL) return px_fs_op_fail(L, op, UV_ENOMEM, path);
  return px_fs_op_submit(L, op, uv_fs_open(op->loop, &op->req, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0, readfile_open_cb), path);
}

/* ------------------------------------------------------------------------
 * writefile(path, data, append, atomic, mode): open, write..., [fsync],
 * close, [rename] -- one park.  atomic writes a temporary file next to the
 * target and renames it over the target, so readers see the old or the new
 * contents, never a mix; a failure removes the temporary file.
 * ---------------------------------------------------------------------- */
static void writefile_rename_cb(uv_fs_t *req) {
  fs_op *op = req->data;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  if (r >= 0) {
    free(op->tmp); /* renamed: nothing to remove any more */
    op->tmp = NULL;
  }
  px_fs_op_done(op, (int)r);
}

static void writefile_close_cb(uv_fs_t *req) {
  ssize_t r;
  fs_op *op = step_done(req, &r);
  if (op == NULL) return;
  if (op->tmp == NULL) {
    px_fs_op_done(op, 0);
    return;
  }
  int rc = uv_fs_rename(op->loop, req, op->tmp, op->path, writefile_rename_cb);
  if (rc < 0) px_fs_op_done(op, rc);
}

static void writefile_close(fs_op *op) {
  uv_file fd = op->fd;
  op->fd = -1;
  int rc = uv_fs_close(op->loop, &op->req, fd, writefile_close_cb);
  if (rc < 0) px_fs_op_done(op, rc);
}

static void writefile_fsync_cb(uv_fs_t *req) {
  ssize_t r;
  fs_op *op = step_done(req, &r);
  if (op == NULL) return;
  writefile_close(op);
}

static void writefile_step(fs_op *op);

/* The open or a write finished: write what is left. */
static void writefile_next_cb(uv_fs_t *req) {
  ssize_t r;
  fs_op *op = step_done(req, &r);
  if (op == NULL) return;
  if (req->fs_type == UV_FS_WRITE) op->offset += r;
  writefile_step(op);
}

static void writefile_step(fs_op *op) {
  size_t left = op->len - (size_t)op->offset;
  if (left == 0) {
    if (op->tmp != NULL) {
      int rc = uv_fs_fsync(op->loop, &op->req, op->fd, writefile_fsync_cb);
      if (rc < 0) px_fs_op_done(op, rc);
    } else {
      writefile_close(op);
    }
    return;
  }
  if (left > (1u << 30)) left = 1u << 30;
  uv_buf_t b = uv_buf_init(op->buf + op->offset, (unsigned)left);
  int rc = uv_fs_write(op->loop, &op->req, op->fd, &b, 1, -1, writefile_next_cb);
  if (rc < 0) px_fs_op_done(op, rc);
}

int px_fs_writefile(lua_State *L) {
  static atomic_uint counter;
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int append = lua_toboolean(L, 3);
  int is_atomic = lua_toboolean(L, 4);
  int mode = (int)luaL_optinteger(L, 5, 0666);
  luaL_argcheck(L, !(append && is_atomic), 4, "append and atomic cannot be combined");
  fs_op *op = px_fs_op_new(L, FS_WRITEFILE, "fs.writefile");
  op->path = strdup(path);
  op->buf = malloc(len ? len : 1);
  if (op->path == NULL || op->buf == NULL) return px_fs_op_fail(L, op, UV_ENOMEM, path);
  memcpy(op->buf, data, len);
  op->len = len;
  const char *target = path;
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
  if (is_atomic) {
    size_t n = strlen(path) + 64;
    op->tmp = malloc(n);
    if (op->tmp == NULL) return px_fs_op_fail(L, op, UV_ENOMEM, path);
    snprintf(op->tmp, n, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    target = op->tmp;
    flags |= O_EXCL;
  }
  int rc = uv_fs_open(op->loop, &op->req, target, flags, mode, writefile_next_cb);
  if (rc < 0) {
    free(op->tmp); /* never created */
    op->tmp = NULL;
    return px_fs_op_fail(L, op, rc, path);
  }
  return px_fs_op_park(L, op);
}
