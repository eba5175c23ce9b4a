/* errors.c -- one table of error codes: parx's own plus libuv's (which are
 * negated errno values on Unix), see PX_ERRNO_MAP in px.h; the one
 * out-of-memory path; and misuse raised at the user's line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "px.h"

/* parx's own codes run from PX__ERR_BASE + 1 to PX__ERR_END - 1 in the
 * order of PX_ERRNO_MAP, so the table is indexed by err - PX__ERR_BASE - 1;
 * any other negative code above the base is libuv's. */
static const struct {
  const char *name, *msg;
} own_errors[] = {
#define XX(code, msg) {#code, msg},
    PX_ERRNO_MAP(XX)
#undef XX
};

static int is_own(int err) { return err > PX__ERR_BASE && err < PX__ERR_END; }

const char *px_strerror(int err) {
  if (is_own(err)) return own_errors[err - PX__ERR_BASE - 1].msg;
  if (err < 0 && err > PX__ERR_BASE) return uv_strerror(err);
  return "unknown error";
}

const char *px_err_name(int err) {
  if (is_own(err)) return own_errors[err - PX__ERR_BASE - 1].name;
  if (err < 0 && err > PX__ERR_BASE) return uv_err_name(err);
  return "EUNKNOWN";
}

const char *px_push_error_message(lua_State *L, int err, const char *detail) {
  if (detail && *detail)
    return lua_pushfstring(L, "%s: %s: %s", px_err_name(err), px_strerror(err), detail);
  return lua_pushfstring(L, "%s: %s", px_err_name(err), px_strerror(err));
}

int px_push_error(lua_State *L, int err, const char *detail) {
  lua_pushnil(L);
  px_push_error_message(L, err, detail);
  lua_pushstring(L, px_err_name(err));
  return 3;
}

int px_oom(lua_State *L, const char *what) {
  if (what)
    lua_pushfstring(L, "%s: %s", what, px_strerror(UV_ENOMEM));
  else
    lua_pushstring(L, px_strerror(UV_ENOMEM));
  lua_error(L);
  __builtin_unreachable();
}

/* parx's own Lua modules are compiled with the chunk name of their file
 * (Makefile: luajit -b lua/parx/x.lua), wherever the library is installed. */
#define PARX_LUA_SOURCE "@lua/parx/"

/* Pushes "file:line: " of the innermost frame that is neither C nor parx's
 * own Lua, or "" when there is none (a C host calling in). */
static void where_user(lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline <= 0) continue; /* a C function */
    if (strncmp(ar.source, PARX_LUA_SOURCE, sizeof PARX_LUA_SOURCE - 1) == 0) continue;
    lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    return;
  }
  lua_pushliteral(L, "");
}

int px_error_user(lua_State *L, const char *fmt, ...) {
  va_list ap;
  where_user(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  lua_error(L);
  __builtin_unreachable();
}

void px_check_options(lua_State *L, int idx, const char *fname, const char *const known[]) {
  idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int found = 0;
    for (int i = 0; k && known[i] && !found; i++) found = strcmp(k, known[i]) == 0;
    if (found) continue;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; known[i]; i++) {
      if (i) luaL_addstring(&b, ", ");
      luaL_addstring(&b, known[i]);
    }
    luaL_pushresult(&b); /* key, known */
    const char *list = lua_tostring(L, -1);
    const char *name = k;
    if (!name && lua_type(L, -2) == LUA_TNUMBER) {
      lua_pushvalue(L, -2);
      name = lua_tostring(L, -1); /* a copy: the key itself stays a number */
    } else if (!name) {
      name = luaL_typename(L, -2);
    }
    px_error_user(L, "%s: unknown option '%s' (known: %s)", fname, name, list);
  }
}

void px_assert_fail(const char *cond, const char *file, int line) {
  fprintf(stderr, "parx: assertion failed: %s (%s:%d)\n", cond, file, line);
  fflush(stderr);
  abort();
}
