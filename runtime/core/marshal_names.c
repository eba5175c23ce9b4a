/*
 * marshal_names.c -- which of a module's names the writer sends.
 *
 * A module loaded under several names (md5 as "md5" and "md5.core",
 * luasocket as "socket" and "socket.core": the Lua part requires the C
 * part and returns the same table, with functions added) crosses under
 * the most public one: the fewest dots, then the shortest, then the first
 * in byte order.  Requiring that name on the receiver loads what the
 * script loaded (the Lua part, which loads the C part); requiring
 * "md5.core" would give the bare C part.  The choice depends only on the
 * names, never on the order package.loaded is walked in.
 */
#include <string.h>

#include "marshal.h"

static int dots(const char *s, size_t len) {
  int n = 0;
  for (size_t i = 0; i < len; i++) n += s[i] == '.';
  return n;
}

int px_marshal_better_name(lua_State *L, int a, int b) {
  size_t la, lb;
  const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
  if (!sa || !sb) return sa != NULL;
  int da = dots(sa, la), db = dots(sb, lb);
  if (da != db) return da < db;
  if (la != lb) return la < lb;
  return memcmp(sa, sb, la) < 0;
}
