/*
 * debug.c -- "parx.c.debug": hooks for specs and benchmarks that reach the
 * core without the scheduler.
 *
 *   roundtrip(...)        marshal the arguments and unmarshal them back into
 *                         the same VM; returns the copies.
 *   roundtrip_fresh(...)  the same through a fresh, separate lua_State (its
 *                         own standard libraries, this VM's package.path and
 *                         package.preload, no scheduler): there and back.
 *   call_fresh(fn, ...)   send fn and the arguments to a fresh lua_State,
 *                         call fn there and bring the results back; returns
 *                         true, results... or false, message (like pcall).
 *   marshal(...)          the message bytes as a string (no shared objects);
 *   unmarshal(s)          the values of such a string, data-only
 *                         (px_unmarshal_data): the bytes come from a script,
 *                         so functions, C functions and module references
 *                         are refused.  No entry here unmarshals bytes a
 *                         script chose in the trusted mode.
 *   bench(v, reps)        marshal v and unmarshal the message, reps times in
 *                         5 batches; returns the best batch's seconds per
 *                         marshal and per unmarshal, and the message size.
 *   fast_paths()          which of the marshaller's LuaJIT fast paths this
 *                         process uses: {layout = bool, factories = bool}
 *                         (both false under PARX_NO_LJ=1).
 *   lightuserdata(n)      the light userdata of address n (0: NULL, the
 *                         value cjson.null is), for specs of what crosses.
 *
 * Unsendable values raise the marshaller's message.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lualib.h>

#include "../core/px.h"
#include "../core/marshal.h"

static int raise_msg(lua_State *L, px_msg *m) {
  px_msg_free(m);
  return lua_error(L);
}

static int roundtrip(lua_State *L) {
  int n = lua_gettop(L);
  px_msg m;
  px_msg_init(&m);
  if (px_marshal(L, 1, n, &m) != 0) return raise_msg(L, &m);
  int got = px_unmarshal(L, &m);
  if (got < 0) return raise_msg(L, &m);
  px_msg_free(&m);
  return got;
}

/* Copy the string field `key` of package from one state to another. */
static void copy_package_field(lua_State *from, lua_State *to, const char *key) {
  lua_getglobal(from, "package");
  lua_getglobal(to, "package");
  if (lua_istable(from, -1) && lua_istable(to, -1)) {
    lua_getfield(from, -1, key);
    if (lua_isstring(from, -1)) {
      lua_pushstring(to, lua_tostring(from, -1));
      lua_setfield(to, -2, key);
    }
    lua_pop(from, 1);
  }
  lua_pop(from, 1);
  lua_pop(to, 1);
}

/* Copy package.preload's C functions (parx's own modules are preloaded as
 * C functions, the Lua layer as C closures over a light userdata), so that
 * shared objects and parx modules can be received there. */
static void copy_preload(lua_State *from, lua_State *to) {
  lua_getglobal(from, "package");
  lua_getglobal(to, "package");
  if (lua_istable(from, -1) && lua_istable(to, -1)) {
    lua_getfield(from, -1, "preload");
    lua_getfield(to, -1, "preload");
    if (lua_istable(from, -1) && lua_istable(to, -1)) {
      lua_pushnil(from);
      while (lua_next(from, -2)) {
        lua_CFunction fn = lua_tocfunction(from, -1);
        if (fn && lua_type(from, -2) == LUA_TSTRING) {
          int n = 0;
          while (n < 4 && lua_getupvalue(from, -1, n + 1)) {
            if (lua_type(from, -1) == LUA_TLIGHTUSERDATA)
              lua_pushlightuserdata(to, lua_touserdata(from, -1));
            else
              lua_pushnil(to);
            lua_pop(from, 1);
            n++;
          }
          lua_pushcclosure(to, fn, n);
          lua_setfield(to, -2, lua_tostring(from, -2));
        }
        lua_pop(from, 1);
      }
    }
    lua_pop(to, 1);
    lua_pop(from, 1);
  }
  lua_pop(to, 1);
  lua_pop(from, 1);
}

static lua_State *fresh_state(lua_State *L) {
  lua_State *F = luaL_newstate();
  if (!F) luaL_error(L, "cannot create a lua_State");
  luaL_openlibs(F);
  copy_package_field(L, F, "path");
  copy_package_field(L, F, "cpath");
  copy_preload(L, F);
  return F;
}

/* Move the error message on top of F to L, close F, free m, raise. */
static int raise_from(lua_State *L, lua_State *F, px_msg *m, const char *where) {
  lua_pushfstring(L, "%s: %s", where,
                  lua_isstring(F, -1) ? lua_tostring(F, -1) : "error");
  lua_close(F);
  px_msg_free(m);
  return lua_error(L);
}

/* Send the n values of m to F and run them there: with call = 0 the values
 * simply come back, with call = 1 the first is called with the others. */
static int through_fresh(lua_State *L, int call) {
  int n = lua_gettop(L);
  px_msg m;
  px_msg_init(&m);
  if (px_marshal(L, 1, n, &m) != 0) return raise_msg(L, &m);
  lua_State *F = fresh_state(L);
  int got = px_unmarshal(F, &m);
  px_msg_free(&m);
  px_msg_init(&m);
  if (got < 0) return raise_from(L, F, &m, "unmarshal in the fresh state");
  int ok = 1;
  if (call) {
    if (got < 1 || lua_pcall(F, got - 1, LUA_MULTRET, 0) != 0) ok = 0;
    if (!ok && got < 1) lua_pushliteral(F, "nothing to call");
    lua_pushboolean(F, ok);
    lua_insert(F, 1);
    got = lua_gettop(F);
  }
  if (px_marshal(F, 1, got, &m) != 0) return raise_from(L, F, &m, "marshal in the fresh state");
  lua_close(F);
  int back = px_unmarshal(L, &m);
  if (back < 0) return raise_msg(L, &m);
  px_msg_free(&m);
  return back;
}

static int roundtrip_fresh(lua_State *L) { return through_fresh(L, 0); }

static int call_fresh(lua_State *L) {
  luaL_checkany(L, 1);
  return through_fresh(L, 1);
}

static int marshal_lua(lua_State *L) {
  int n = lua_gettop(L);
  px_msg m;
  px_msg_init(&m);
  if (px_marshal(L, 1, n, &m) != 0) return raise_msg(L, &m);
  if (m.nrefs) {
    px_msg_free(&m);
    return luaL_error(L, "shared objects cannot be marshalled to a string");
  }
  lua_pushlstring(L, m.data, m.len);
  px_msg_free(&m);
  return 1;
}

static int unmarshal_lua(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  px_msg m;
  px_msg_init(&m);
  m.data = len ? malloc(len) : NULL;
  if (len && !m.data) return px_oom(L, "unmarshal");
  if (len) memcpy(m.data, s, len);
  m.len = m.cap = len;
  lua_settop(L, 0);
  int got = px_unmarshal_data(L, &m);
  if (got < 0) return raise_msg(L, &m);
  px_msg_free(&m);
  return got;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best of 5 batches: the machine may be shared. */
static int bench(lua_State *L) {
  luaL_checkany(L, 1);
  int reps = (int)luaL_optinteger(L, 2, 10);
  int batch = reps >= 5 ? reps / 5 : 1;
  lua_settop(L, 1);
  px_msg m;
  px_msg_init(&m);
  double best_m = 1e30, best_u = 1e30;
  for (int b = 0; b < 5; b++) {
    double t0 = now();
    for (int i = 0; i < batch; i++) {
      m.len = 0;
      if (px_marshal(L, 1, 1, &m) != 0) return raise_msg(L, &m);
      if (m.nrefs) {
        px_msg_free(&m);
        return luaL_error(L, "bench: shared objects are not supported");
      }
    }
    double t1 = now();
    if ((t1 - t0) / batch < best_m) best_m = (t1 - t0) / batch;
    t0 = now();
    for (int i = 0; i < batch; i++) {
      int got = px_unmarshal(L, &m);
      if (got < 0) return raise_msg(L, &m);
      lua_settop(L, 1);
    }
    t1 = now();
    if ((t1 - t0) / batch < best_u) best_u = (t1 - t0) / batch;
  }
  size_t bytes = m.len;
  px_msg_free(&m);
  lua_pushnumber(L, best_m);
  lua_pushnumber(L, best_u);
  lua_pushnumber(L, (double)bytes);
  return 3;
}

static int fast_paths(lua_State *L) {
  px_marshal_state(L); /* the probes run on first use */
  lua_pop(L, 1);
  int f = px_marshal_fast_paths();
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, f & 1);
  lua_setfield(L, -2, "layout");
  lua_pushboolean(L, (f & 2) != 0);
  lua_setfield(L, -2, "factories");
  lua_pushboolean(L, px_shape_state > 0);
  lua_setfield(L, -2, "shapes");
  return 1;
}

static int lightuserdata(lua_State *L) {
  lua_pushlightuserdata(L, (void *)(uintptr_t)luaL_checknumber(L, 1));
  return 1;
}

static const luaL_Reg debug_funcs[] = {
  {"lightuserdata", lightuserdata},
  {"fast_paths", fast_paths},
  {"roundtrip", roundtrip},
  {"roundtrip_fresh", roundtrip_fresh},
  {"call_fresh", call_fresh},
  {"marshal", marshal_lua},
  {"unmarshal", unmarshal_lua},
  {"bench", bench},
  {NULL, NULL}};

int px_open_debug(lua_State *L) {
  lua_newtable(L);
  luaL_register(L, NULL, debug_funcs);
  return 1;
}
