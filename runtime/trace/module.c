/* module.c -- parx.c.trace, the C half of parx.trace (lua/parx/trace.lua):
 * start and stop a trace session, marks and labels, the events as Lua
 * tables, parx.stats(), and the dump of live tasks.  The recording itself
 * is the core's (core/trace.c); this file only binds it to Lua.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../core/px.h"

/* start([path]) -> true | nil, "cannot write trace: ...", code */
static int l_start(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  int r = px_trace_start(px_vm_runtime(px_vm_of(L)), path);
  if (r == -EALREADY) return luaL_error(L, "parx.trace.start: a trace is already running");
  if (r != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot write trace: %s: %s", path, strerror(-r));
    lua_pushstring(L, px_err_name(r));
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* stop() -> true | nil, "cannot write trace: ...", code (nothing running:
 * false) */
static int l_stop(lua_State *L) {
  int r = px_trace_stop(px_vm_runtime(px_vm_of(L)));
  if (r == -ENOENT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (r != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot write trace: %s", strerror(-r));
    lua_pushstring(L, px_err_name(r));
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_mark(lua_State *L) {
  px_trace_mark(L, luaL_checkstring(L, 1));
  return 0;
}

static int l_label(lua_State *L) {
  px_trace_label(L, luaL_checkstring(L, 1));
  return 0;
}

static int l_events(lua_State *L) {
  px_trace_push_events(L, px_vm_runtime(px_vm_of(L)));
  return 1;
}

static int l_stats(lua_State *L) {
  px_trace_push_stats(L, px_vm_runtime(px_vm_of(L)));
  return 1;
}

static int l_pid(lua_State *L) {
  lua_pushnumber(L, (lua_Number)getpid());
  return 1;
}

static int l_tracing(lua_State *L) {
  lua_pushboolean(L, px_trace_running(px_vm_runtime(px_vm_of(L))));
  return 1;
}

int px_open_trace(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"start", l_start},   {"stop", l_stop},   {"mark", l_mark},       {"label", l_label},
      {"events", l_events}, {"stats", l_stats}, {"tracing", l_tracing}, {"dump", px_trace_dump},
      {"pid", l_pid},       {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
