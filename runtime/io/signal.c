/*
 * signal.c -- parx.c.signal: Unix signals delivered to Lua handlers.
 *
 A handler is Lua code that runs as a task; the uv_signal callback fires it
 * onto the VM's fired queue and wakes the dispatcher task (dispatch.h, as
 * for timers) that lua/parx/signal.lua runs while handlers are installed.
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

#include "../core/iohandle.h"
#include "dispatch.h"
#include "signals.h"


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
    /* 5.5 is no signal: checked as a number before any conversion. */
    lua_Number n = lua_tonumber(L, idx);
    luaL_argcheck(L, n >= 1 && n <= 64 && n == (int)n, idx, "invalid signal number");
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
typedef struct vm_signals {
  px_dispatcher dispatcher; /* first; active: installed handlers */
  uv_loop_t *loop;
} vm_signals;

/* An installed handler: a px_iohandle over its uv_signal_t. */
typedef struct px_sig {
  px_iohandle base; /* first: the userdata's pointer is the handler's */
  px_source source; /* id, and the link on the fired queue */
  uv_signal_t handle;
  vm_signals *signals;
  int active;
} px_sig;

static void on_close(uv_handle_t *h) {
  px_sig *s = h->data;
  px_iohandle_closed(&s->base);
}

/* Only the handle: __gc at lua_close may come after the VM's state. */
static void sig_close(px_iohandle *h) {
  px_sig *s = (px_sig *)h;
  uv_close((uv_handle_t *)&s->handle, on_close);
}

static void signal_cb(uv_signal_t *h, int signum) {
  (void)signum;
  px_sig *s = h->data;
  px_dispatcher_fire(&s->signals->dispatcher, &s->source);
}

static int push_fired(lua_State *L, px_source *src) {
  lua_pushnumber(L, src->id);
  return 1;
}

static vm_signals *check_signals(lua_State *L) { return (vm_signals *)px_dispatcher_state(L); }


/* handler:stop() -> true if it was installed. */
static int signal_stop(lua_State *L) {
  px_sig *s = (px_sig *)px_iohandle_get(L);
  int was = s != NULL && s->active;
  if (was) {
    s->active = 0;
    s->signals->dispatcher.active--;
    px_dispatcher_unqueue(&s->source);
    px_dispatcher_poke(&s->signals->dispatcher);
    px_iohandle_close(&s->base);
  }
  lua_pushboolean(L, was);
  return 1;
}

static int signal_is_active(lua_State *L) {
  px_sig *s = (px_sig *)px_iohandle_get(L);
  lua_pushboolean(L, s != NULL && s->active);
  return 1;
}

static int signal_id(lua_State *L) {
  px_sig *s = (px_sig *)px_iohandle_get(L);
  lua_pushnumber(L, s ? s->source.id : 0);
  return 1;
}

static const luaL_Reg signal_methods[] = {
  {"stop", signal_stop}, {"active", signal_is_active}, {"id", signal_id}, {NULL, NULL}};

static const px_iohandle_type signal_type = {
  .name = "parx.signal", .methods = signal_methods, .close = sig_close};

/* new(sig) -> handler userdata, id, name; or nil, err, code. */
static int signal_new(lua_State *L) {
  vm_signals *signals = check_signals(L);
  int signum = px_signal_check(L, 1, 0);
  if (signum == SIGKILL || signum == SIGSTOP)
    return luaL_argerror(L, 1, "SIGKILL and SIGSTOP cannot be handled");
  px_iohandle_meta(L, &signal_type); /* may raise: before anything exists */
  px_sig *s = calloc(1, sizeof *s);
  if (s == NULL) return px_oom(L, "signal");
  px_iohandle_init(&s->base, &signal_type);
  int rc = uv_signal_init(signals->loop, &s->handle);
  if (rc < 0) {
    free(s);
    return px_push_error(L, rc, NULL);
  }
  s->handle.data = s;
  s->signals = signals;
  rc = uv_signal_start(&s->handle, signal_cb, signum);
  if (rc < 0) {
    px_iohandle_close(&s->base);
    return px_push_error(L, rc, px_signal_name(signum));
  }
  uv_unref((uv_handle_t *)&s->handle);
  px_source_init(&signals->dispatcher, &s->source);
  s->active = 1;
  signals->dispatcher.active++;
  px_iohandle_push(L, &s->base);
  lua_pushnumber(L, s->source.id);
  const char *name = px_signal_name(signum);
  if (name) lua_pushstring(L, name);
  else lua_pushinteger(L, signum);
  return 3;
}

static int signals_gc(lua_State *L) {
  vm_signals **box = lua_touserdata(L, 1);
  free(*box);
  *box = NULL;
  return 0;
}

static const luaL_Reg signal_funcs[] = {
  {"new", signal_new}, {NULL, NULL}};

int px_open_signal(lua_State *L) {
  vm_signals *signals = (vm_signals *)px_dispatcher_open(L, sizeof(vm_signals), "signal dispatch",
                                                   push_fired, signal_funcs, signals_gc);
  signals->loop = px_vm_loop(px_vm_of(L));
  px_iohandle_meta(L, &signal_type);
  lua_getfield(L, -1, "methods");
  lua_setfield(L, -3, "methods");
  lua_pop(L, 1);
  return 1;
}
