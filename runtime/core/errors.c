/* errors.c -- one table of error codes: parx's own plus libuv's (which are
 * negated errno values on Unix), see PX_ERRNO_MAP in px.h; and the one
 * out-of-memory path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "px.h"

const char *px_strerror(int err) {
  switch (err) {
#define XX(code, msg) case PX_E##code: return msg;
    PX_ERRNO_MAP(XX)
#undef XX
  default:
    break;
  }
  if (err < 0 && err > PX__ERR_BASE) return uv_strerror(err);
  return "unknown error";
}

const char *px_err_name(int err) {
  switch (err) {
#define XX(code, _) case PX_E##code: return #code;
    PX_ERRNO_MAP(XX)
#undef XX
  default:
    break;
  }
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

void px_assert_fail(const char *cond, const char *file, int line) {
  fprintf(stderr, "parx: assertion failed: %s (%s:%d)\n", cond, file, line);
  fflush(stderr);
  abort();
}
