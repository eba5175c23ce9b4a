/*
 * fs.c -- parx.c.fs: files and directories on libuv's uv_fs_* requests.
 *
 * Every operation runs on the calling VM's loop with a callback (the work
 * itself happens on libuv's thread pool) while the calling task is parked.
 * One malloc'd fs_op carries a request from start to finish: the request,
 * the wait the task parks on and whatever buffer the operation needs.  The
 * libuv callback never touches Lua; it records the result and px_wake()s the
 * task, and deliver() turns the result into Lua values on the task's thread.
 *
 * readfile and writefile (fs_whole.c) are small state machines (open, fstat,
 * read..., close and open, write..., fsync, close, rename) driven from the
 * callbacks, so a whole file costs one park and no Lua in between.
 *
 * Cancellation: cancel() marks the op cancelled and asks libuv to cancel the
 * request (which only works while it still waits for a pool thread).  Either
 * way the callback arrives later; it sees the mark, undoes what the op did
 * (closes a file it opened, removes an atomic write's temporary file) and
 * frees the op.  Nothing is leaked and the task resumes at once.
 *
 * FIFOs, sockets and character devices.  A read (or a blocking open) of a
 * FIFO waits for a writer for as long as it likes; on the pool it would hold
 * one of libuv's few threads the whole time, and four such readers stop every
 * fs call and DNS lookup of the process.  So readfile opens with O_NONBLOCK
 * (an open that never waits), and when fstat says the file is one of these
 * and the kernel can poll it, reads it on the loop through a uv_poll_t
 * instead of the pool.  Cancelling such a read closes the descriptor at once.
 * Devices that cannot be polled (/dev/zero) never block and use the pool.
 * fs.open does the same for read-only opens: file:read on such a file waits
 * on the loop until there is data, then reads it there.
 */
#include <stddef.h>

#include "fs.h"

#define FILE_META "parx.fs.file"

/* ------------------------------------------------------------------------
 * File objects.  The userdata holds a pointer to an fs_file so that the file
 * can outlive its userdata while operations on it are still in flight (a
 * task cancelled while parked on a read, then the file collected).
 * ---------------------------------------------------------------------- */

/* Close fd synchronously: used from __gc and from completion callbacks,
 * where nobody waits for the result; close(2) of a file is cheap. */
void px_fs_close_now(uv_file fd) {
  uv_fs_t req;
  uv_fs_close(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
}

/* Called whenever an operation on f finished (or f lost its last user):
 * performs the close that had to wait, frees f once nobody refers to it. */
static void file_settle(fs_file *f) {
  if (f->pending > 0) return;
  if (f->closed && f->fd >= 0) {
    px_fs_close_now(f->fd);
    f->fd = -1;
  }
  if (f->orphaned) {
    free(f->path);
    free(f);
  }
}

/* ------------------------------------------------------------------------
 * Operations.
 * ---------------------------------------------------------------------- */

/* Binds the wait to the calling task first (raises, with nothing
 * allocated, outside a task or when the task is being cancelled), so that
 * once the request is started the park cannot fail. */
static const px_req_type fs_op_type;

fs_op *px_fs_op_new(lua_State *L, int kind, const char *what) {
  px_check_can_park(L);
  fs_op *op = calloc(1, sizeof *op);
  if (op == NULL) px_oom(L, "fs");
  px_req_init(&op->wait, &fs_op_type, what);
  px_req_start(L, &op->wait); /* cannot raise: checked above */
  op->loop = px_vm_loop(px_vm_of(L));
  op->kind = kind;
  op->fd = -1;
  op->req.data = op;
  return op;
}

static void poll_closed(uv_handle_t *h) { free(h); }

/* Stop reading on the loop; uv_close takes the descriptor out of epoll at
 * once, so the descriptor may be closed right after. */
void px_fs_poll_stop(fs_op *op) {
  if (op->poll == NULL) return;
  uv_close((uv_handle_t *)op->poll, poll_closed);
  op->poll = NULL;
}

/* A FIFO, socket or character device that epoll can watch is read on the
 * loop; returns 0 when it is, < 0 when the pool must read it. */
int px_fs_poll_start(fs_op *op, uv_file fd, uv_poll_cb cb) {
  uv_poll_t *p = malloc(sizeof *p);
  if (p == NULL) return UV_ENOMEM;
  int rc = uv_poll_init(op->loop, p, fd);
  if (rc < 0) {
    free(p); /* not pollable (/dev/zero, /dev/null): reads never block */
    return rc;
  }
  p->data = op;
  op->poll = p;
  rc = uv_poll_start(p, UV_READABLE, cb);
  if (rc < 0) px_fs_poll_stop(op);
  return rc;
}

void px_fs_op_free(fs_op *op) {
  if (op->poll != NULL && op->file != NULL) op->file->polling = 0;
  px_fs_poll_stop(op);
  uv_fs_req_cleanup(&op->req);
  if (op->fd >= 0) px_fs_close_now(op->fd);
  if (op->tmp != NULL) {
    uv_fs_t req;
    uv_fs_unlink(NULL, &req, op->tmp, NULL);
    uv_fs_req_cleanup(&req);
  }
  if (op->file != NULL) {
    op->file->pending--;
    file_settle(op->file);
  }
  free(op->tmp);
  free(op->path);
  free(op->buf);
  free(op);
}

/* The op's work is over: wake the task, or free the op if nobody waits. */
void px_fs_op_done(fs_op *op, int result) {
  op->result = result;
  if (!px_req_done(&op->wait)) px_fs_op_free(op);
}

static void op_abandon(px_req *req) {
  fs_op *op = px_container_of(req, fs_op, wait);
  if (op->poll != NULL) {
    /* Reading on the loop: no request is in flight, nothing will call
     * back; the descriptor and the buffer go now. */
    px_fs_op_free(op);
    return;
  }
  /* Best effort; on success the callback runs with UV_ECANCELED. */
  uv_cancel((uv_req_t *)&op->req);
}

static void op_drop(px_req *req) { px_fs_op_free(px_container_of(req, fs_op, wait)); }

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  case S_IFIFO: return "fifo";
  case S_IFSOCK: return "socket";
  case S_IFCHR: return "char";
  case S_IFBLK: return "block";
  default: return "unknown";
  }
}

/* The integer and time fields of stat's table, by name and offset (every
 * integer in uv_stat_t is a uint64_t, every time a uv_timespec_t). */
static const struct {
  const char *name;
  size_t offset;
} stat_ints[] = {
    {"size", offsetof(uv_stat_t, st_size)},   {"uid", offsetof(uv_stat_t, st_uid)},
    {"gid", offsetof(uv_stat_t, st_gid)},     {"nlink", offsetof(uv_stat_t, st_nlink)},
    {"ino", offsetof(uv_stat_t, st_ino)},     {"dev", offsetof(uv_stat_t, st_dev)},
    {"rdev", offsetof(uv_stat_t, st_rdev)},   {"blksize", offsetof(uv_stat_t, st_blksize)},
    {"blocks", offsetof(uv_stat_t, st_blocks)},
}, stat_times[] = {
    {"mtime", offsetof(uv_stat_t, st_mtim)},
    {"atime", offsetof(uv_stat_t, st_atim)},
    {"ctime", offsetof(uv_stat_t, st_ctim)},
    {"birthtime", offsetof(uv_stat_t, st_birthtim)},
};

static void push_stat(lua_State *L, const uv_stat_t *s) {
  lua_createtable(L, 0, 16);
  const char *base = (const char *)s;
  for (size_t i = 0; i < sizeof stat_ints / sizeof stat_ints[0]; i++) {
    const uint64_t *v = (const uint64_t *)(base + stat_ints[i].offset);
    lua_pushnumber(L, (double)*v);
    lua_setfield(L, -2, stat_ints[i].name);
  }
  for (size_t i = 0; i < sizeof stat_times / sizeof stat_times[0]; i++) {
    const uv_timespec_t *t = (const uv_timespec_t *)(base + stat_times[i].offset);
    lua_pushnumber(L, (double)t->tv_sec + (double)t->tv_nsec * 1e-9);
    lua_setfield(L, -2, stat_times[i].name);
  }
  lua_pushnumber(L, (double)(s->st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushstring(L, type_name(s->st_mode));
  lua_setfield(L, -2, "type");
}

static int push_file(lua_State *L, uv_file fd, const char *path);

/* Results of an op that succeeded, pushed on the task's coroutine. */
static int deliver_ok(lua_State *co, fs_op *op) {
  uv_fs_t *req = &op->req;
  switch (op->kind) {
  case FS_OPEN: {
    uv_file fd = op->fd;
    op->fd = -1; /* the file object owns it now */
    return push_file(co, fd, op->path);
  }
  case FS_READ:
  case FS_READFILE:
    if (op->kind == FS_READ && op->len == 0 && op->cap > 0) {
      lua_pushnil(co); /* end of file, like io.read(n) */
      return 1;
    }
    if (op->len > px_io_max_string()) return px_push_error(co, UV_EFBIG, op->path);
    lua_pushlstring(co, op->buf ? op->buf : "", op->len);
    return 1;
  case FS_WRITE:
    lua_pushnumber(co, (double)op->len);
    return 1;
  case FS_WRITEFILE:
    lua_pushboolean(co, 1);
    return 1;
  default:
    break;
  }
  switch (req->fs_type) {
  case UV_FS_STAT:
  case UV_FS_LSTAT:
  case UV_FS_FSTAT:
    push_stat(co, &req->statbuf);
    return 1;
  case UV_FS_SCANDIR: {
    uv_dirent_t ent;
    int i = 0;
    lua_newtable(co);
    while (uv_fs_scandir_next(req, &ent) != UV_EOF) {
      lua_pushstring(co, ent.name);
      lua_rawseti(co, -2, ++i);
    }
    return 1;
  }
  case UV_FS_MKDTEMP:
    lua_pushstring(co, req->path);
    return 1;
  case UV_FS_REALPATH:
    lua_pushstring(co, (const char *)req->ptr);
    return 1;
  default:
    lua_pushboolean(co, 1);
    return 1;
  }
}

static int op_done(lua_State *co, px_req *req) {
  fs_op *op = px_container_of(req, fs_op, wait);
  int n;
  if (op->result < 0) {
    const char *detail = op->path;
    if (detail == NULL && op->file != NULL) detail = op->file->path;
    if (detail == NULL) detail = op->req.path;
    n = px_push_error(co, op->result, detail);
  } else {
    n = deliver_ok(co, op);
  }
  px_fs_op_free(op);
  return n;
}

static const px_req_type fs_op_type = {.done = op_done, .drop = op_drop, .abandon = op_abandon};

int px_fs_op_park(lua_State *L, fs_op *op) {
  px_trace_wait_on(L, &op->wait.wait, "path", op->path ? op->path : op->file ? op->file->path : NULL);
  return px_req_park(L, &op->wait);
}

/* A request could not even be started: report it now, nothing is parked. */
int px_fs_op_fail(lua_State *L, fs_op *op, int err, const char *detail) {
  int n = px_push_error(L, err, detail);
  px_fs_op_free(op);
  return n;
}

/* The tail of every request: park on it, or fail at once if libuv refused
 * to start it (rc < 0). */
int px_fs_op_submit(lua_State *L, fs_op *op, int rc, const char *path) {
  if (rc < 0) return px_fs_op_fail(L, op, rc, path);
  if (!op->path && !op->file) px_trace_wait_on(L, &op->wait.wait, "path", path);
  return px_fs_op_park(L, op);
}

/* ------------------------------------------------------------------------
 * Single-request operations.
 * ---------------------------------------------------------------------- */
static void simple_cb(uv_fs_t *req) {
  fs_op *op = req->data;
  px_fs_op_done(op, (int)req->result);
}

/* The operations on one path and nothing else: one function, with the
 * libuv call (and the wait's name) as its upvalue. */
typedef struct path_op {
  const char *name, *what;
  int (*start)(uv_loop_t *loop, uv_fs_t *req, const char *path, uv_fs_cb cb);
} path_op;

static const path_op path_ops[] = {
  {"stat", "fs.stat", uv_fs_stat},          {"lstat", "fs.lstat", uv_fs_lstat},
  {"rmdir", "fs.rmdir", uv_fs_rmdir},       {"unlink", "fs.unlink", uv_fs_unlink},
  /* mkdtemp(template): template ends in XXXXXX; returns the created path. */
  {"mkdtemp", "fs.mkdtemp", uv_fs_mkdtemp}, {"realpath", "fs.realpath", uv_fs_realpath},
  {NULL, NULL, NULL}};

static int fs_path_op(lua_State *L) {
  const path_op *po = lua_touserdata(L, lua_upvalueindex(1));
  const char *path = luaL_checkstring(L, 1);
  fs_op *op = px_fs_op_new(L, FS_SIMPLE, po->what);
  return px_fs_op_submit(L, op, po->start(op->loop, &op->req, path, simple_cb), path);
}

/* mkdir(path [, mode = 0777]): one level; parents are the Lua layer's. */
static int fs_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int mode = (int)luaL_optinteger(L, 2, 0777);
  fs_op *op = px_fs_op_new(L, FS_SIMPLE, "fs.mkdir");
  return px_fs_op_submit(L, op, uv_fs_mkdir(op->loop, &op->req, path, mode, simple_cb), path);
}

/* rename(from, to) and copyfile(from, to); errors name `from`. */
static int two_paths(lua_State *L, const char *what, int copy) {
  const char *from = luaL_checkstring(L, 1);
  const char *to = luaL_checkstring(L, 2);
  fs_op *op = px_fs_op_new(L, FS_SIMPLE, what);
  op->path = strdup(from);
  int rc = copy ? uv_fs_copyfile(op->loop, &op->req, from, to, 0, simple_cb)
                : uv_fs_rename(op->loop, &op->req, from, to, simple_cb);
  return px_fs_op_submit(L, op, rc, from);
}

static int fs_rename(lua_State *L) { return two_paths(L, "fs.rename", 0); }
static int fs_copyfile(lua_State *L) { return two_paths(L, "fs.copyfile", 1); }

/* readdir(path) -> list of names, sorted, without "." and "..". */
static int fs_readdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  fs_op *op = px_fs_op_new(L, FS_SIMPLE, "fs.readdir");
  return px_fs_op_submit(L, op, uv_fs_scandir(op->loop, &op->req, path, 0, simple_cb), path);
}

/* The new descriptor belongs to the op until deliver hands it to a file
 * object; an op freed before that (cancelled, discarded) closes it. */
static void open_cb(uv_fs_t *req) {
  fs_op *op = req->data;
  if (req->result >= 0) op->fd = (uv_file)req->result;
  px_fs_op_done(op, (int)req->result);
}

/* ------------------------------------------------------------------------
 * open flags: an fopen-style string ("r", "w", "a", "r+", "w+", "a+", with
 * "x" for exclusive creation) or the raw integer flags.
 * ---------------------------------------------------------------------- */
static int check_flags(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) return (int)lua_tointeger(L, idx);
  const char *s = luaL_optstring(L, idx, "r");
  int flags, plus = strchr(s, '+') != NULL;
  switch (s[0]) {
  case 'r': flags = plus ? O_RDWR : O_RDONLY; break;
  case 'w': flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC; break;
  case 'a': flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND; break;
  default:
    return luaL_argerror(L, idx, "invalid mode (expected r, w, a, r+, w+, a+, x)");
  }
  for (const char *p = s + 1; *p; p++) {
    if (*p == 'x') flags |= O_EXCL;
    else if (*p != '+' && *p != 'b')
      return luaL_argerror(L, idx, "invalid mode (expected r, w, a, r+, w+, a+, x)");
  }
  return flags;
}

/* open(path [, flags = "r" [, mode = 0666]]) -> file */
static int fs_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int flags = check_flags(L, 2);
  int mode = (int)luaL_optinteger(L, 3, 0666);
  fs_op *op = px_fs_op_new(L, FS_OPEN, "fs.open");
  op->path = strdup(path);
  if (op->path == NULL) return px_fs_op_fail(L, op, UV_ENOMEM, path);
  /* Read-only: an open of a FIFO must not wait for a writer on the pool. */
  if ((flags & O_ACCMODE) == O_RDONLY) flags |= O_NONBLOCK;
  return px_fs_op_submit(L, op, uv_fs_open(op->loop, &op->req, path, flags | O_CLOEXEC, mode, open_cb), path);
}

/* ------------------------------------------------------------------------
 * File object methods.
 * ---------------------------------------------------------------------- */
static int push_file(lua_State *L, uv_file fd, const char *path) {
  fs_file *f = calloc(1, sizeof *f);
  if (f == NULL) {
    px_fs_close_now(fd);
    return px_oom(L, "fs file");
  }
  f->fd = fd;
  f->path = path ? strdup(path) : NULL;
  /* fstat never blocks: decide once how this file is read. */
  struct stat st;
  if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode)))
    f->poll_reads = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
  fs_file **box = lua_newuserdata(L, sizeof *box);
  *box = f;
  luaL_getmetatable(L, FILE_META);
  lua_setmetatable(L, -2);
  return 1;
}

static fs_file *check_file(lua_State *L) {
  fs_file **box = luaL_checkudata(L, 1, FILE_META);
  if (*box == NULL || (*box)->closed) luaL_error(L, "attempt to use a closed file");
  return *box;
}

static int64_t opt_offset(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return -1;
  lua_Number n = luaL_checknumber(L, idx);
  luaL_argcheck(L, n >= 0 && n < 0x1p63, idx, "offset must be >= 0 and below 2^63");
  return (int64_t)n;
}

static void rw_cb(uv_fs_t *req) {
  fs_op *op = req->data;
  if (req->result >= 0) op->len = (size_t)req->result;
  px_fs_op_done(op, (int)req->result);
}

/* A file read waiting on the loop: the descriptor is readable (or at its
 * end, or in error); read without blocking. */
static void file_read_poll_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  fs_op *op = h->data;
  uv_file fd = op->file->fd;
  ssize_t n = status;
  if (status == 0) {
    do {
      n = op->offset >= 0 ? pread(fd, op->buf, op->cap, op->offset) : read(fd, op->buf, op->cap);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return; /* not yet */
    if (n < 0) n = -errno;
  }
  op->file->polling = 0;
  px_fs_poll_stop(op);
  if (n >= 0) op->len = (size_t)n;
  px_fs_op_done(op, (int)n);
}

static fs_op *file_op(lua_State *L, fs_file *f, int kind, const char *what) {
  fs_op *op = px_fs_op_new(L, kind, what);
  op->file = f;
  f->pending++;
  return op;
}

/* file:read(n [, offset]) -> up to n bytes, or nil at the end of the file.
 * Without offset it reads at (and advances) the current position. */
static int file_read(lua_State *L) {
  fs_file *f = check_file(L);
  lua_Number n = luaL_checknumber(L, 2);
  luaL_argcheck(L, n >= 1 && n <= (lua_Number)(1u << 31), 2, "size must be between 1 and 2^31");
  int64_t offset = opt_offset(L, 3);
  if (f->polling) return luaL_error(L, "another task is already reading this file");
  fs_op *op = file_op(L, f, FS_READ, "file read");
  op->cap = (size_t)n;
  op->buf = malloc(op->cap);
  if (op->buf == NULL) return px_fs_op_fail(L, op, UV_ENOMEM, f->path);
  op->offset = offset;
  if (f->poll_reads && px_fs_poll_start(op, f->fd, file_read_poll_cb) == 0) {
    f->polling = 1;
    return px_fs_op_park(L, op);
  }
  uv_buf_t b = uv_buf_init(op->buf, (unsigned)op->cap);
  int rc = uv_fs_read(op->loop, &op->req, f->fd, &b, 1, offset, rw_cb);
  return px_fs_op_submit(L, op, rc, f->path);
}

/* file:write(data [, offset]) -> bytes written.  The data is copied so the
 * request does not depend on the Lua string staying alive (a cancelled
 * task's stack is gone while the pool thread may still be writing).
 * Known cost: one memcpy per write; a registry anchor would avoid it. */
static int file_write(lua_State *L) {
  fs_file *f = check_file(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int64_t offset = opt_offset(L, 3);
  fs_op *op = file_op(L, f, FS_WRITE, "file write");
  op->buf = malloc(len ? len : 1);
  if (op->buf == NULL) return px_fs_op_fail(L, op, UV_ENOMEM, f->path);
  memcpy(op->buf, data, len);
  uv_buf_t b = uv_buf_init(op->buf, (unsigned)len);
  int rc = uv_fs_write(op->loop, &op->req, f->fd, &b, 1, offset, rw_cb);
  return px_fs_op_submit(L, op, rc, f->path);
}

static int file_stat(lua_State *L) {
  fs_file *f = check_file(L);
  fs_op *op = file_op(L, f, FS_SIMPLE, "file stat");
  int rc = uv_fs_fstat(op->loop, &op->req, f->fd, simple_cb);
  return px_fs_op_submit(L, op, rc, f->path);
}

static int file_sync(lua_State *L) {
  fs_file *f = check_file(L);
  fs_op *op = file_op(L, f, FS_SIMPLE, "file sync");
  int rc = uv_fs_fsync(op->loop, &op->req, f->fd, simple_cb);
  return px_fs_op_submit(L, op, rc, f->path);
}

static int file_truncate(lua_State *L) {
  fs_file *f = check_file(L);
  lua_Number n = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, n >= 0 && n < 0x1p63, 2, "size must be >= 0 and below 2^63");
  fs_op *op = file_op(L, f, FS_SIMPLE, "file truncate");
  int rc = uv_fs_ftruncate(op->loop, &op->req, f->fd, (int64_t)n, simple_cb);
  return px_fs_op_submit(L, op, rc, f->path);
}

/* file:close() -> true.  With operations of other tasks still in flight the
 * descriptor is closed when the last one completes. */
static int file_close(lua_State *L) {
  fs_file *f = check_file(L);
  if (f->pending > 0) {
    f->closed = 1;
    lua_pushboolean(L, 1);
    return 1;
  }
  fs_op *op = px_fs_op_new(L, FS_SIMPLE, "file close");
  f->closed = 1;
  uv_file fd = f->fd;
  f->fd = -1;
  int rc = uv_fs_close(op->loop, &op->req, fd, simple_cb);
  return px_fs_op_submit(L, op, rc, f->path);
}

static int file_fileno(lua_State *L) {
  fs_file *f = check_file(L);
  lua_pushinteger(L, f->fd);
  return 1;
}

static int file_gc(lua_State *L) {
  fs_file **box = luaL_checkudata(L, 1, FILE_META);
  fs_file *f = *box;
  if (f == NULL) return 0;
  *box = NULL;
  f->closed = 1;
  f->orphaned = 1;
  file_settle(f);
  return 0;
}

static int file_tostring(lua_State *L) {
  fs_file **box = luaL_checkudata(L, 1, FILE_META);
  fs_file *f = *box;
  if (f == NULL || f->closed)
    lua_pushstring(L, "parx.fs.file (closed)");
  else
    lua_pushfstring(L, "parx.fs.file (%s, fd %d)", f->path ? f->path : "?", f->fd);
  return 1;
}

/* ------------------------------------------------------------------------
 * Registration.
 * ---------------------------------------------------------------------- */
static const luaL_Reg file_methods[] = {
  {"read", file_read},   {"write", file_write}, {"stat", file_stat},
  {"sync", file_sync},   {"truncate", file_truncate}, {"close", file_close},
  {"fileno", file_fileno}, {NULL, NULL}};

static const luaL_Reg file_meta[] = {
  {"__gc", file_gc}, {"__tostring", file_tostring}, {NULL, NULL}};

static const luaL_Reg fs_funcs[] = {
  {"mkdir", fs_mkdir},       {"rename", fs_rename},     {"copyfile", fs_copyfile},
  {"readdir", fs_readdir},   {"open", fs_open},         {"readfile", px_fs_readfile},
  {"writefile", px_fs_writefile}, {NULL, NULL}};

int px_open_fs(lua_State *L) {
  if (luaL_newmetatable(L, FILE_META)) {
    luaL_register(L, NULL, file_meta);
    lua_newtable(L);
    luaL_register(L, NULL, file_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, fs_funcs);
  for (const path_op *po = path_ops; po->name; po++) {
    lua_pushlightuserdata(L, (void *)po);
    lua_pushcclosure(L, fs_path_op, 1);
    lua_setfield(L, -2, po->name);
  }
  return 1;
}
