/* errors.c -- one table of error codes: parx's own plus libuv's (which are
 * negated errno values on Unix), see PX_ERRNO_MAP in px.h; and the one
 * out-of-memory path. */
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

void px_assert_fail(const char *cond, const char *file, int line) {
  fprintf(stderr, "parx: assertion failed: %s (%s:%d)\n", cond, file, line);
  fflush(stderr);
  abort();
}
