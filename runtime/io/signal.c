/*
 * signal.c -- parx.c.signal: Unix signals delivered to Lua handlers.
 *
 * Same shape as timer.c: a handler is Lua code that runs as a new task, and a
 * libuv callback may not call Lua, so the uv_signal callback queues the
 * handler on the VM's fired queue and wakes the VM's dispatcher task
 * (lua/parx/signal.lua), which starts one task per delivery.  The dispatcher
 * exists only while handlers are installed.
 *
 * The signal handles are unreferenced: an installed handler does not keep a
 * script running (like Node's process.on('SIGINT')).  Signals that arrive
 * while an earlier one is still queued are merged into one delivery.
 * Without any handler the process keeps the default action (SIGINT and
 * SIGTERM end it); libuv restores the default when the last handle of a
 * signal stops.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/px.h"
#include "signals.h"

#define SIGNAL_META "parx.signal"

/* ------------------------------------------------------------------------
 * Names.
 * ---------------------------------------------------------------------- */
static const struct {
  const char *name;
  int num;
} signal_names[] = {
  {"int", SIGINT},   {"term", SIGTERM}, {"hup", SIGHUP},     {"quit", SIGQUIT},
  {"usr1", SIGUSR1}, {"usr2", SIGUSR2}, {"alrm", SIGALRM},   {"chld", SIGCHLD},
  {"pipe", SIGPIPE}, {"winch", SIGWINCH}, {"cont", SIGCONT}, {"tstp", SIGTSTP},
  {"ttin", SIGTTIN}, {"ttou", SIGTTOU}, {"kill", SIGKILL},   {"stop", SIGSTOP},
  {"abrt", SIGABRT}, {"xcpu", SIGXCPU}, {"xfsz", SIGXFSZ},   {"vtalrm", SIGVTALRM},
  {"prof", SIGPROF}, {"io", SIGIO},     {"sys", SIGSYS},     {"trap", SIGTRAP},
  {NULL, 0}};

const char *px_signal_name(int signum) {
  for (int i = 0; signal_names[i].name; i++)
    if (signal_names[i].num == signum) return signal_names[i].name;
  return NULL;
}

int px_signal_check(lua_State *L, int idx, int dflt) {
  if (lua_isnoneornil(L, idx) && dflt) return dflt;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, idx);
    luaL_argcheck(L, n > 0 && n < 65, idx, "invalid signal number");
    return (int)n;
  }
  const char *s = luaL_checkstring(L, idx);
  if (strncasecmp(s, "sig", 3) == 0) s += 3;
  for (int i = 0; signal_names[i].name; i++)
    if (strcasecmp(s, signal_names[i].name) == 0) return signal_names[i].num;
  return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", lua_tostring(L, idx)));
}

/* ------------------------------------------------------------------------
 * Handlers.
 * ---------------------------------------------------------------------- */
typedef struct px_sig px_sig;

typedef struct signal_vm {
  px_sig *head, *tail; /* delivered, not yet dispatched */
  long active;         /* installed handlers */
  px_wait wait;        /* the dispatcher's park */
  int parked, woken;
  double next_id;
  uv_loop_t *loop;
} signal_vm;

struct px_sig {
  uv_signal_t handle;
  signal_vm *svm;
  px_sig *prev, *next;
  double id;
  int signum;
  int queued, active, closed, close_done, orphaned;
};

static void queue_push(signal_vm *svm, px_sig *s) {
  s->queued = 1;
  s->next = NULL;
  s->prev = svm->tail;
  if (svm->tail) svm->tail->next = s;
  else svm->head = s;
  svm->tail = s;
}

static void queue_remove(signal_vm *svm, px_sig *s) {
  if (s->prev) s->prev->next = s->next;
  else svm->head = s->next;
  if (s->next) s->next->prev = s->prev;
  else svm->tail = s->prev;
  s->prev = s->next = NULL;
  s->queued = 0;
}

static void close_cb(uv_handle_t *h) {
  px_sig *s = h->data;
  s->close_done = 1;
  if (s->orphaned) free(s);
}

static void sig_close(px_sig *s) {
  if (s->closed) return;
  s->closed = 1;
  uv_close((uv_handle_t *)&s->handle, close_cb);
}

static void dispatcher_poke(signal_vm *svm) {
  if (!svm->parked || svm->woken) return;
  if (svm->head == NULL && svm->active > 0) return;
  svm->woken = 1;
  px_wake(&svm->wait);
}

static void signal_cb(uv_signal_t *h, int signum) {
  px_sig *s = h->data;
  if (!s->queued) queue_push(s->svm, s);
  dispatcher_poke(s->svm);
}

static int take(lua_State *L, signal_vm *svm) {
  px_sig *s = svm->head;
  if (s != NULL) {
    queue_remove(svm, s);
    lua_pushnumber(L, s->id);
    return 1;
  }
  if (svm->active > 0) lua_pushboolean(L, 0);
  else lua_pushnil(L);
  return 1;
}

#define SVM_OF(w) ((signal_vm *)((char *)(w) - offsetof(signal_vm, wait)))

static int dispatcher_deliver(lua_State *co, px_wait *w) {
  signal_vm *svm = SVM_OF(w);
  svm->parked = svm->woken = 0;
  return take(co, svm);
}

static void dispatcher_discard(px_wait *w) {
  signal_vm *svm = SVM_OF(w);
  svm->parked = svm->woken = 0;
}

static int dispatcher_cancel(px_wait *w) {
  signal_vm *svm = SVM_OF(w);
  if (svm->woken) return 0;
  svm->parked = 0;
  return 1;
}

static signal_vm *check_svm(lua_State *L) {
  return *(signal_vm **)lua_touserdata(L, lua_upvalueindex(1));
}

/* next() -> id | false | nil, like timer.c's. */
static int signal_next(lua_State *L) {
  signal_vm *svm = check_svm(L);
  if (svm->head != NULL || svm->active == 0) return take(L, svm);
  if (svm->parked) return luaL_error(L, "signal dispatcher already running");
  memset(&svm->wait, 0, sizeof svm->wait);
  svm->wait.what = "signal dispatch";
  svm->wait.deliver = dispatcher_deliver;
  svm->wait.discard = dispatcher_discard;
  svm->wait.cancel = dispatcher_cancel;
  px_wait_prepare(L, &svm->wait);
  svm->parked = 1;
  svm->woken = 0;
  return px_park(L, &svm->wait);
}

/* new(sig) -> handler userdata, id, name; or nil, err, code. */
static int signal_new(lua_State *L) {
  signal_vm *svm = check_svm(L);
  int signum = px_signal_check(L, 1, 0);
  if (signum == SIGKILL || signum == SIGSTOP)
    return luaL_argerror(L, 1, "SIGKILL and SIGSTOP cannot be handled");
  px_sig **box = lua_newuserdata(L, sizeof *box);
  *box = NULL;
  luaL_getmetatable(L, SIGNAL_META);
  lua_setmetatable(L, -2);
  px_sig *s = calloc(1, sizeof *s);
  if (s == NULL) return px_oom(L, "signal");
  int rc = uv_signal_init(svm->loop, &s->handle);
  if (rc < 0) {
    free(s);
    return px_push_error(L, rc, NULL);
  }
  s->handle.data = s;
  s->svm = svm;
  s->signum = signum;
  *box = s;
  rc = uv_signal_start(&s->handle, signal_cb, signum);
  if (rc < 0) {
    sig_close(s);
    return px_push_error(L, rc, px_signal_name(signum));
  }
  uv_unref((uv_handle_t *)&s->handle);
  s->id = ++svm->next_id;
  s->active = 1;
  svm->active++;
  lua_pushnumber(L, s->id);
  const char *name = px_signal_name(signum);
  if (name) lua_pushstring(L, name);
  else lua_pushinteger(L, signum);
  return 3;
}

static px_sig *check_sig(lua_State *L) {
  px_sig **box = luaL_checkudata(L, 1, SIGNAL_META);
  if (*box == NULL) luaL_argerror(L, 1, "signal handler is not initialised");
  return *box;
}

/* handler:stop() -> true if it was installed. */
static int signal_stop(lua_State *L) {
  px_sig *s = check_sig(L);
  signal_vm *svm = s->svm;
  int was = s->active;
  if (s->queued) queue_remove(svm, s);
  if (s->active) {
    s->active = 0;
    svm->active--;
  }
  sig_close(s);
  dispatcher_poke(svm);
  lua_pushboolean(L, was);
  return 1;
}

static int signal_is_active(lua_State *L) {
  px_sig *s = check_sig(L);
  lua_pushboolean(L, s->active);
  return 1;
}

static int signal_id(lua_State *L) {
  px_sig *s = check_sig(L);
  lua_pushnumber(L, s->id);
  return 1;
}

static int signal_gc(lua_State *L) {
  px_sig **box = luaL_checkudata(L, 1, SIGNAL_META);
  px_sig *s = *box;
  if (s == NULL) return 0;
  *box = NULL;
  s->orphaned = 1;
  if (!s->closed) sig_close(s);
  else if (s->close_done) free(s);
  return 0;
}

static int svm_gc(lua_State *L) {
  signal_vm **box = lua_touserdata(L, 1);
  free(*box);
  *box = NULL;
  return 0;
}

static const luaL_Reg signal_methods[] = {
  {"stop", signal_stop}, {"active", signal_is_active}, {"id", signal_id}, {NULL, NULL}};

static const luaL_Reg signal_funcs[] = {
  {"new", signal_new}, {"next", signal_next}, {NULL, NULL}};

int px_open_signal(lua_State *L) {
  lua_newtable(L);
  if (luaL_newmetatable(L, SIGNAL_META)) {
    lua_pushcfunction(L, signal_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    luaL_register(L, NULL, signal_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "methods");
  lua_pop(L, 1);

  signal_vm **box = lua_newuserdata(L, sizeof *box);
  *box = calloc(1, sizeof **box);
  if (*box == NULL) return px_oom(L, "signal");
  (*box)->loop = px_vm_loop(px_vm_of(L));
  lua_newtable(L);
  lua_pushcfunction(L, svm_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  for (const luaL_Reg *r = signal_funcs; r->name; r++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -3, r->name);
  }
  lua_pop(L, 1);
  return 1;
}
