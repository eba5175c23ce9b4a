/*
 * numbers.h -- runs of numbers between a Lua table's items and a C array
 * of doubles, the bulk path of everything that moves numbers between VMs:
 * the marshaller's DOUBLES blocks (unmarshal.c) and the pool's numeric
 * lane (mod/pool.c), which copies a map's items and results through
 * shared arrays of doubles without a message.
 *
 * With LuaJIT's table layout verified (marshal_lj.c) they read and write
 * the table's array part directly, about a nanosecond an item; otherwise,
 * and for items beyond the array part, through lua_rawgeti/lua_rawseti.
 */
#ifndef PX_NUMBERS_H
#define PX_NUMBERS_H

#include <stddef.h>

#include "px.h"

/* Copy t[from], t[from + 1], ... into out[0 .. n) while they are numbers
 * (t at stack index t, a table).  Returns how many were copied: n when
 * every one was a number. */
size_t px_numbers_get(lua_State *L, int t, size_t from, size_t n, double *out);

/* t[from + k] = in[k] for k in [0, n) (NaNs stored as LuaJIT's canonical
 * NaN).  in need not be aligned. */
void px_numbers_set(lua_State *L, int t, size_t from, size_t n, const void *in);

#endif
