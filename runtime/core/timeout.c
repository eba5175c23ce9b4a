/*
 * timeout.c -- the one rule for seconds from Lua as a limit in
 * milliseconds (px.h): NaN raises, zero or less is 0, math.huge and
 * anything from 2^53 ms up is no limit.  Every timeout, sleep and timer
 * reads its seconds through it.
 */
#include <math.h>

#include "px.h"

int px_seconds_to_ms(double secs, uint64_t *ms) {
  if (secs != secs) return -1;
  if (secs <= 0) {
    *ms = 0;
    return 1;
  }
  /* Compared in double before any conversion: 2^53 ms is exact there, and
   * everything at or above it (math.huge included) is "no limit". */
  double m = ceil(secs * 1000.0);
  if (!(m < 9007199254740992.0)) {
    *ms = UINT64_MAX;
    return 0;
  }
  *ms = (uint64_t)m;
  return 1;
}

int px_timeout_ms(lua_State *L, int idx, uint64_t *ms) {
  if (lua_isnoneornil(L, idx)) {
    *ms = UINT64_MAX;
    return 0;
  }
  int r = px_seconds_to_ms(luaL_checknumber(L, idx), ms);
  if (r < 0) {
    if (idx > 0) luaL_argerror(L, idx, "timeout is NaN (use math.huge for no limit)");
    luaL_error(L, "bad timeout: NaN (use math.huge for no limit)");
  }
  return r;
}
