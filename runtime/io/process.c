/*
 * process.c -- parx.c.process: child processes on libuv's uv_spawn.
 *
 * One malloc'd proc per child: the uv_process_t and an optional timeout
 * timer.  The child's pipes are streams (stream.h), like TCP connections:
 *
 *   exec  both output streams collect everything to the end
 *         (px_stream_collect), the stdin string is written and its stream
 *         closed; the task parks once and wakes when the child has exited
 *         and both outputs have ended.  No Lua object exists; the proc
 *         discards the streams and frees itself once its handles are closed
 *         and the result was delivered.
 *   spawn a userdata owns the proc (wait, kill); the pipes are handed to
 *         Lua as parx.stream objects of their own (p.stdin, p.stdout,
 *         p.stderr), read ahead and back-pressured as streams are.
 *
 * The libuv callbacks only record and wake.  Each handle's close callback
 * counts down open_handles; the proc is freed when no handle is open, no
 * task waits and no userdata refers to it.
 *
 * Timeout (opts.timeout seconds; math.huge means none): the child gets
 * SIGKILL and the wait returns nil, "ETIMEDOUT: ...", "ETIMEDOUT".
 *
 * A child killed by a signal has no exit status: status is nil, and the
 * signal's number and name come with it (never status 0, which would read
 * as success).  exec output over the Lua string limit (bounds.h) closes
 * that pipe, drops what it held and ends in nil, "EFBIG: ...", "EFBIG".  A task cancelled while parked
 * in exec kills the child the same way; one cancelled in spawn's wait or
 * read only stops waiting.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounds.h"
#include "signals.h"
#include "stream.h"

#define PROC_META "parx.process"

enum { STDIO_IGNORE, STDIO_PIPE, STDIO_INHERIT };

extern char **environ;

typedef struct proc {
  uv_process_t handle;
  uv_timer_t timer;
  px_stream *io[3];  /* the pipes the proc still owns (exec's; spawn's until pushed) */
  int ended[3];      /* exec: that output stream has ended */
  int too_big;       /* exec: 1 or 2 when stdout or stderr passed the string limit */
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
  px_req exit;       /* the task waiting for the exit (exec or wait) */
  char *cmd;
} proc;

/* ------------------------------------------------------------------------
 * Lifetime.
 * ---------------------------------------------------------------------- */
static void drop_stream(proc *p, int i) {
  if (p->io[i] == NULL) return;
  px_stream_discard(p->io[i]);
  p->io[i] = NULL;
  p->ended[i] = 1;
}

static void maybe_free(proc *p) {
  if (!p->lua_gone || p->open_handles > 0 || px_req_busy(&p->exit)) return;
  for (int i = 0; i < 3; i++) drop_stream(p, i);
  free(p->cmd);
  free(p);
}

static void close_cb(uv_handle_t *h) {
  proc *p = h->data;
  p->open_handles--;
  maybe_free(p);
}

static void timer_close(proc *p) {
  if (!p->timer_open) return;
  p->timer_open = 0;
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, close_cb);
}

/* exec completes when the child is gone and its output is complete. */
static void check_exit(proc *p) {
  if (!p->exited || !px_req_active(&p->exit)) return;
  if (p->capture && !p->timed_out && !(p->ended[1] && p->ended[2])) return;
  px_req_done(&p->exit);
}

/* exec: an output stream has all there is (px_stream_collect). */
static void output_end(px_stream *s, void *arg) {
  proc *p = arg;
  int i = s == p->io[1] ? 1 : 2;
  const char *data;
  size_t len;
  if (px_stream_result(s, &data, &len) == UV_EFBIG) {
    /* No Lua string can hold it: close the pipe, the child sees EPIPE. */
    p->too_big = i;
    drop_stream(p, i);
  }
  p->ended[i] = 1;
  check_exit(p);
}

/* ------------------------------------------------------------------------
 * Exit and timeout.
 * ---------------------------------------------------------------------- */
static void exit_cb(uv_process_t *h, int64_t status, int term_signal) {
  proc *p = h->data;
  p->exited = 1;
  p->status = status;
  p->term_signal = term_signal;
  uv_close((uv_handle_t *)&p->handle, close_cb);
  timer_close(p);
  check_exit(p);
}

static void timeout_cb(uv_timer_t *t) {
  proc *p = t->data;
  timer_close(p);
  if (p->exited) return;
  p->timed_out = 1;
  uv_process_kill(&p->handle, SIGKILL);
  if (p->capture) {
    /* A grandchild may hold the pipes open; the output is discarded. */
    drop_stream(p, 1);
    drop_stream(p, 2);
  }
}

/* The exit as Lua values: status (nil when a signal killed the child),
 * signal number (nil when it exited by itself), signal name. */
static int push_exit(lua_State *L, proc *p) {
  if (p->term_signal) {
    const char *name = px_signal_name(p->term_signal);
    lua_pushnil(L);
    lua_pushinteger(L, p->term_signal);
    if (name) lua_pushstring(L, name);
    else lua_pushnil(L);
  } else {
    lua_pushnumber(L, (double)p->status);
    lua_pushnil(L);
    lua_pushnil(L);
  }
  return 3;
}

static int push_timeout(lua_State *L, proc *p) {
  char detail[256];
  snprintf(detail, sizeof detail, "%s killed after %g s", p->cmd ? p->cmd : "process",
           p->timeout);
  return px_push_error(L, UV_ETIMEDOUT, detail);
}

static int exec_done(lua_State *co, px_req *req) {
  proc *p = px_container_of(req, proc, exit);
  int n;
  if (p->timed_out) {
    n = push_timeout(co, p);
  } else {
    const char *data[3];
    size_t len[3];
    for (int i = 1; i <= 2; i++) {
      data[i] = "";
      len[i] = 0;
      /* A read error ends the data: exec returns what came before it. */
      if (p->io[i]) px_stream_result(p->io[i], &data[i], &len[i]);
    }
    if (p->too_big) {
      char detail[256];
      snprintf(detail, sizeof detail, "%s of %s", p->too_big == 1 ? "stdout" : "stderr",
               p->cmd ? p->cmd : "process");
      n = px_push_error(co, UV_EFBIG, detail);
    } else {
      lua_createtable(co, 0, 5);
      push_exit(co, p);
      lua_setfield(co, -4, "signame");
      lua_setfield(co, -3, "signal");
      lua_setfield(co, -2, "status");
      for (int i = 1; i <= 2; i++) {
        lua_pushlstring(co, data[i], len[i]);
        lua_setfield(co, -2, i == 1 ? "stdout" : "stderr");
      }
      n = 1;
    }
  }
  for (int i = 0; i < 3; i++) drop_stream(p, i);
  maybe_free(p);
  return n;
}

static int wait_done(lua_State *co, px_req *req) {
  proc *p = px_container_of(req, proc, exit);
  if (p->timed_out) return push_timeout(co, p);
  return push_exit(co, p);
}

static void exit_drop(px_req *req) { maybe_free(px_container_of(req, proc, exit)); }

/* exec's task was cancelled: the child is not wanted any more. */
static void exec_abandon(px_req *req) {
  proc *p = px_container_of(req, proc, exit);
  if (!p->exited) uv_process_kill(&p->handle, SIGKILL);
  timer_close(p);
  for (int i = 0; i < 3; i++) drop_stream(p, i);
}

/* A task cancelled in wait() only stops waiting. */
static const px_req_type wait_type = {.done = wait_done, .drop = exit_drop};
static const px_req_type exec_type = {.done = exec_done, .drop = exit_drop, .abandon = exec_abandon};

/* ------------------------------------------------------------------------
 * Starting a child: shared by exec and spawn.
 * ---------------------------------------------------------------------- */
static int check_stdio(lua_State *L, int opts, const char *key, int dflt) {
  if (opts == 0) return dflt;
  lua_getfield(L, opts, key);
  int mode = dflt;
  if (!lua_isnil(L, -1)) {
    const char *s = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING) s = NULL;
    if (s && strcmp(s, "pipe") == 0) mode = STDIO_PIPE;
    else if (s && strcmp(s, "inherit") == 0) mode = STDIO_INHERIT;
    else if (s && strcmp(s, "ignore") == 0) mode = STDIO_IGNORE;
    else px_error_user(L, "bad option '%s' (expected \"pipe\", \"inherit\" or \"ignore\")", key);
  }
  lua_pop(L, 1);
  return mode;
}

/* A string that goes to exec(2) as a C string: an embedded NUL would cut
 * it short without a word, so it raises with message. */
static const char *check_cstring(lua_State *L, int idx, const char *message) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (s != NULL && strlen(s) != len) px_error_user(L, "%s", message);
  return s;
}

/* argv (cmd, args...) as a NULL-terminated array in a userdata left on the
 * stack, pointing into strings the caller's stack keeps alive. */
static char **build_argv(lua_State *L, const char *cmd, int args) {
  int n = args ? (int)lua_objlen(L, args) : 0;
  char **argv = lua_newuserdata(L, sizeof(char *) * (size_t)(n + 2));
  argv[0] = (char *)cmd;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, args, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      px_error_user(L, "bad argument #2 (args[%d] must be a string, got %s)", i,
                 luaL_typename(L, -1));
    lua_tostring(L, -1); /* numbers become strings, in the table too */
    lua_rawseti(L, args, i);
    lua_rawgeti(L, args, i);
    if (strlen(lua_tostring(L, -1)) != lua_objlen(L, -1))
      px_error_user(L, "bad argument #2 (args[%d] contains a NUL byte)", i);
    argv[i] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1); /* the table anchors the string */
  }
  argv[n + 1] = NULL;
  return argv;
}

/* The environment: the current one with opts.env's entries replacing or
 * (value false) removing variables.  Left on the stack as a userdata plus a
 * table anchoring the new "K=V" strings. */
static char **build_env(lua_State *L, int env) {
  size_t nenv = 0;
  while (environ[nenv]) nenv++;
  size_t extra = 0;
  lua_pushnil(L);
  while (lua_next(L, env)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      px_error_user(L, "bad option 'env' (keys must be strings)");
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER && !(t == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
      px_error_user(L, "bad option 'env' (value of '%s' must be a string or false)",
                 lua_tostring(L, -2));
    size_t klen;
    const char *k = lua_tolstring(L, -2, &klen);
    if (klen == 0 || strlen(k) != klen || strchr(k, '=') != NULL)
      px_error_user(L, "bad option 'env' (name '%s' is empty or contains '=' or a NUL byte)", k);
    if (t == LUA_TSTRING && strlen(lua_tostring(L, -1)) != lua_objlen(L, -1))
      px_error_user(L, "bad option 'env' (value of '%s' contains a NUL byte)", k);
    extra++;
    lua_pop(L, 1);
  }
  char **out = lua_newuserdata(L, sizeof(char *) * (nenv + extra + 1));
  lua_newtable(L); /* anchors */
  int anchors = lua_gettop(L);
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    lua_pushlstring(L, environ[i], klen);
    lua_rawget(L, env);
    int overridden = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!overridden) out[k++] = environ[i];
  }
  lua_pushnil(L);
  while (lua_next(L, env)) {
    if (lua_type(L, -1) != LUA_TBOOLEAN) {
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      out[k++] = (char *)lua_tostring(L, -1);
      lua_rawseti(L, anchors, (int)k);
    }
    lua_pop(L, 1);
  }
  out[k] = NULL;
  return out;
}

/* uv_spawn reports a child that could not chdir to cwd with the same
 * errno as a command that could not be found.  Only after a failure (the
 * fast path stays one uv_spawn) the cwd is looked at: when it is what is
 * wrong, the error says so. */
static int push_spawn_error(lua_State *L, int rc, const char *cmd, const char *cwd) {
  int cwd_err = 0;
  if (cwd != NULL && (rc == UV_ENOENT || rc == UV_ENOTDIR || rc == UV_EACCES)) {
    struct stat st;
    if (stat(cwd, &st) != 0) cwd_err = -errno;
    else if (!S_ISDIR(st.st_mode)) cwd_err = UV_ENOTDIR;
    else if (access(cwd, X_OK) != 0) cwd_err = -errno;
  }
  if (cwd_err == 0) return px_push_error(L, rc, cmd);
  lua_pushfstring(L, "cwd '%s' (for %s)", cwd, cmd);
  int n = px_push_error(L, cwd_err, lua_tostring(L, -1));
  lua_remove(L, -n - 1);
  return n;
}

/* exec captures stdout and stderr itself: only spawn reads those two. */
static const char *const exec_options[] = {"cwd", "env", "stdin", "timeout", NULL};
static const char *const spawn_options[] = {"cwd", "env", "stderr", "stdin", "stdout", "timeout", NULL};

/* Spawn cmd with args (table or nil) and opts (table or nil).  Returns the
 * proc, or NULL with an error pushed (nil, msg, code: 3 values). */
static proc *start(lua_State *L, int capture, const char **stdin_data, size_t *stdin_len) {
  const char *fname = capture ? "exec" : "spawn";
  /* Raised at the user's line: process.spawn reaches here through
   * lua/parx/process.lua. */
  if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER)
    px_error_user(L, "bad argument #1 to '%s' (string expected, got %s)", fname, luaL_typename(L, 1));
  const char *cmd = lua_tostring(L, 1);
  check_cstring(L, 1, "bad argument #1 (the command contains a NUL byte)");
  int args = 0, opts = 0;
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_istable(L, 2))
      px_error_user(L, "bad argument #2 to '%s' (table expected, got %s)", fname, luaL_typename(L, 2));
    args = 2;
  }
  if (!lua_isnoneornil(L, 3)) {
    if (!lua_istable(L, 3))
      px_error_user(L, "bad argument #3 to '%s' (table expected, got %s)", fname, luaL_typename(L, 3));
    opts = 3;
    if (capture) px_check_options(L, 3, "process.exec", exec_options);
    else px_check_options(L, 3, "process.spawn", spawn_options);
  }
  lua_settop(L, 3);

  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = cmd;
  o.args = build_argv(L, cmd, args);
  double timeout = 0;
  uint64_t timeout_ms = 0;
  int modes[3];
  *stdin_data = NULL;
  if (opts) {
    lua_getfield(L, opts, "cwd");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING) px_error_user(L, "bad option 'cwd' (string expected)");
      o.cwd = check_cstring(L, -1, "bad option 'cwd' (contains a NUL byte)"); /* anchored by opts */
    }
    lua_pop(L, 1);
    lua_getfield(L, opts, "env");
    if (!lua_isnil(L, -1)) {
      if (!lua_istable(L, -1)) px_error_user(L, "bad option 'env' (table expected)");
      o.env = build_env(L, lua_gettop(L)); /* leaves its anchors on the stack */
    }
    lua_getfield(L, opts, "timeout");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0))
        px_error_user(L, "bad option 'timeout' (positive number of seconds expected)");
      timeout = lua_tonumber(L, -1);
      if (px_seconds_to_ms(timeout, &timeout_ms) == 0) timeout = 0; /* math.huge: no limit */
    }
    lua_pop(L, 1);
  }
  if (capture) {
    modes[0] = STDIO_IGNORE;
    if (opts) {
      lua_getfield(L, opts, "stdin");
      if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strcmp(s, "inherit") == 0) {
          modes[0] = STDIO_INHERIT;
        } else {
          *stdin_data = s; /* anchored by opts */
          *stdin_len = len;
          modes[0] = STDIO_PIPE;
        }
      } else if (!lua_isnil(L, -1)) {
        px_error_user(L, "bad option 'stdin' (string expected)");
      }
      lua_pop(L, 1);
    }
    modes[1] = modes[2] = STDIO_PIPE;
  } else {
    modes[0] = check_stdio(L, opts, "stdin", STDIO_PIPE);
    modes[1] = check_stdio(L, opts, "stdout", STDIO_PIPE);
    modes[2] = check_stdio(L, opts, "stderr", STDIO_PIPE);
  }

  proc *p = calloc(1, sizeof *p);
  if (p == NULL) px_oom(L, "process");
  px_vm *vm = px_vm_of(L);
  p->loop = px_vm_loop(vm);
  p->capture = capture;
  p->timeout = timeout;
  p->lua_gone = 1; /* until a userdata takes it */
  for (int i = 0; i < 3; i++) {
    if (modes[i] != STDIO_PIPE) continue;
    if ((p->io[i] = px_stream_new(vm)) == NULL) {
      for (int j = 0; j < i; j++) drop_stream(p, j);
      free(p);
      px_oom(L, "process");
    }
    uv_pipe_init(p->loop, (uv_pipe_t *)px_stream_handle(p->io[i]), 0);
  }
  p->cmd = strdup(cmd);
  uv_stdio_container_t stdio[3];
  for (int i = 0; i < 3; i++) {
    if (modes[i] == STDIO_PIPE) {
      stdio[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      stdio[i].data.stream = px_stream_handle(p->io[i]);
    } else if (modes[i] == STDIO_INHERIT) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    } else {
      stdio[i].flags = UV_IGNORE;
    }
  }
  o.stdio = stdio;
  o.stdio_count = 3;
  o.exit_cb = exit_cb;
  p->handle.data = p;
  int rc = uv_spawn(p->loop, &p->handle, &o);
  p->open_handles++; /* uv_spawn initialised the handle even on failure */
  if (rc < 0) {
    uv_close((uv_handle_t *)&p->handle, close_cb);
    for (int i = 0; i < 3; i++) drop_stream(p, i);
    push_spawn_error(L, rc, cmd, o.cwd);
    return NULL;
  }
  if (timeout > 0) {
    uv_timer_init(p->loop, &p->timer);
    p->timer.data = p;
    p->timer_open = 1;
    p->open_handles++;
    uv_timer_start(&p->timer, timeout_cb, timeout_ms, 0);
  }
  if (capture)
    for (int i = 1; i <= 2; i++) px_stream_collect(p->io[i], output_end, p);
  return p;
}

/* ------------------------------------------------------------------------
 * exec(cmd [, args [, opts]]) -> {status, signal, stdout, stderr}
 * ---------------------------------------------------------------------- */
/* The stdin string is written (or the child would not take it): close the
 * stream, so the child sees the end of its input.  The write owns the
 * stream from its start. */
static void exec_stdin_cb(uv_write_t *req, int status) {
  (void)status;
  px_stream *s = req->data;
  free(req);
  px_stream_discard(s);
}

static int proc_exec(lua_State *L) {
  px_check_can_park(L); /* before anything is started */
  const char *data;
  size_t len = 0;
  proc *p = start(L, 1, &data, &len);
  if (p == NULL) return 3;
  px_req_init(&p->exit, &exec_type, "process exec");
  px_req_start(L, &p->exit); /* cannot raise: checked above */
  px_trace_wait_on(L, &p->exit.wait, "cmd", lua_tostring(L, 1));
  if (data != NULL) {
    /* The child may not read all of it: SIGPIPE is ignored (see
     * px_open_process), the write just fails and the pipe closes. */
    uv_write_t *req = malloc(sizeof *req + len);
    int rc = -1;
    if (req != NULL) {
      memcpy((char *)(req + 1), data, len);
      req->data = p->io[0];
      uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)len);
      rc = uv_write(req, px_stream_handle(p->io[0]), &b, 1, exec_stdin_cb);
      if (rc < 0) free(req);
    }
    if (rc < 0) drop_stream(p, 0);
    else p->io[0] = NULL; /* the write's now */
  }
  return px_req_park(L, &p->exit);
}

/* ------------------------------------------------------------------------
 * spawn(cmd [, args [, opts]]) -> process userdata, then its stdin, stdout
 * and stderr streams (nil where not a pipe); the Lua layer puts them
 * together.
 * ---------------------------------------------------------------------- */
static int proc_spawn(lua_State *L) {
  const char *data;
  size_t len;
  proc **box = NULL;
  proc *p = start(L, 0, &data, &len);
  if (p == NULL) return 3;
  box = lua_newuserdata(L, sizeof *box);
  *box = p;
  p->lua_gone = 0;
  luaL_getmetatable(L, PROC_META);
  lua_setmetatable(L, -2);
  for (int i = 0; i < 3; i++) {
    if (p->io[i]) px_stream_push(L, p->io[i]);
    else lua_pushnil(L);
    p->io[i] = NULL; /* Lua's now */
  }
  return 4;
}

static proc *check_proc(lua_State *L) {
  proc **box = luaL_checkudata(L, 1, PROC_META);
  if (*box == NULL) luaL_argerror(L, 1, "process object is gone");
  return *box;
}

static int proc_wait(lua_State *L) {
  proc *p = check_proc(L);
  if (p->exited) {
    if (p->timed_out) return push_timeout(L, p);
    return push_exit(L, p);
  }
  if (px_req_busy(&p->exit)) luaL_error(L, "another task is already waiting for this process");
  px_req_init(&p->exit, &wait_type, "process wait");
  px_req_start(L, &p->exit);
  px_trace_wait_on_int(L, &p->exit.wait, "pid", p->handle.pid);
  return px_req_park(L, &p->exit);
}

/* p:kill([sig = "term"]) -> true, or nil, "ESRCH: ..." once it exited. */
static int proc_kill(lua_State *L) {
  proc *p = check_proc(L);
  int sig = px_signal_check(L, 2, SIGTERM);
  if (p->exited) return px_push_error(L, UV_ESRCH, p->cmd);
  int rc = uv_process_kill(&p->handle, sig);
  if (rc < 0) return px_push_error(L, rc, p->cmd);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_pid(lua_State *L) {
  proc *p = check_proc(L);
  lua_pushinteger(L, p->handle.pid);
  return 1;
}

static int proc_exited(lua_State *L) {
  proc *p = check_proc(L);
  lua_pushboolean(L, p->exited);
  return 1;
}

/* Collected: let the child run (its timeout still applies); its handle
 * closes itself at exit, which frees the proc.  Its pipes are streams of
 * their own, closed when they are collected. */
static int proc_gc(lua_State *L) {
  proc **box = luaL_checkudata(L, 1, PROC_META);
  proc *p = *box;
  if (p == NULL) return 0;
  *box = NULL;
  p->lua_gone = 1;
  maybe_free(p);
  return 0;
}

static const luaL_Reg proc_methods[] = {
  {"wait", proc_wait}, {"kill", proc_kill}, {"pid", proc_pid},
  {"exited", proc_exited}, {NULL, NULL}};

/* kill(pid [, sig = "term"]) -> true: signal any process.  pid must be a
 * positive integer that fits a pid_t, checked before anything is sent: a
 * plain cast made 2^40 into 0 (our own process group) and 2^32-1 into -1
 * (every process we may signal). */
static int proc_kill_pid(lua_State *L) {
  lua_Number n = luaL_checknumber(L, 1);
  luaL_argcheck(L, n >= 1 && n <= (lua_Number)INT_MAX && n == (lua_Number)(int)n, 1,
                "pid must be a positive integer that fits a pid_t");
  int pid = (int)n;
  int sig = px_signal_check(L, 2, SIGTERM);
  int rc = uv_kill(pid, sig);
  if (rc < 0) return px_push_error(L, rc, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_getpid(lua_State *L) {
  lua_pushinteger(L, uv_os_getpid());
  return 1;
}

/* stdin() -> a stream over standard input, or nil, msg, code (ENOTSUP when
 * it is a regular file).  The Lua layer makes one per VM, on first use. */
static int proc_stdin(lua_State *L) {
  px_stream *s;
  int r = px_stream_open_fd(px_vm_of(L), 0, &s);
  if (r < 0) return px_push_error(L, r, "standard input");
  px_stream_push(L, s);
  return 1;
}

static const luaL_Reg proc_funcs[] = {
  {"exec", proc_exec}, {"spawn", proc_spawn}, {"kill", proc_kill_pid},
  {"pid", proc_getpid}, {"stdin", proc_stdin}, {NULL, NULL}};

int px_open_process(lua_State *L) {
  /* A child that exits before reading its stdin must not kill us with
   * SIGPIPE; the write fails with EPIPE instead.  Only the default action
   * is replaced, so an embedder's own handler stays. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
  if (luaL_newmetatable(L, PROC_META)) {
    lua_pushcfunction(L, proc_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    luaL_register(L, NULL, proc_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, proc_funcs);
  return 1;
}

