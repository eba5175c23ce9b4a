/*
 * marshal_lj.c -- the marshaller's use of LuaJIT internals: the array part
 * of tables (copied as raw doubles) and closure factories (a fresh closure
 * of a prototype without reloading its bytecode).  What LuaJIT's public
 * jit.util tells (the globals a function reads) is read through it
 * instead (marshal_globals.c).  Each is checked on real objects once
 * per process; when a check fails, marshal.c and unmarshal.c use the plain
 * C API instead.
 *
 * PARX_NO_LJ=1 in the environment makes every check fail, so that the
 * plain paths, which no LuaJIT build takes otherwise, can be tested: `make
 * test` runs the marshal, channel and pool specs again that way
 * (spec/marshal_plain_spec.lua).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"

tab_layout px_marshal_layout;
_Atomic int px_marshal_layout_state;
_Atomic int px_marshal_flat_state;

/* ------------------------------------------------------------------------
 * LuaJIT table internals (array part), verified at run time.
 * ---------------------------------------------------------------------- */

/* Probes run in every VM's first use of the marshaller, possibly on several
 * threads at once; each computes on its own and publishes under this lock
 * (no Lua call is made while it is held). */
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

/* PARX_NO_LJ set (and not "0" or empty): take every plain path. */
static int plain_forced(void) {
  const char *v = getenv("PARX_NO_LJ");
  return v && *v && strcmp(v, "0") != 0;
}

static int layout_ok(lua_State *L, const tab_layout *lay) {
  int top = lua_gettop(L), ok = 1;
  uint32_t asize, hmask;
  double d15 = 1.5, dm2 = -2.0;
  uint64_t b15, bm2;
  memcpy(&b15, &d15, 8);
  memcpy(&bm2, &dm2, 8);

  lua_createtable(L, 7, 0);
  lua_pushnumber(L, 1.5); lua_rawseti(L, -2, 1);
  lua_pushliteral(L, "x"); lua_rawseti(L, -2, 2);
  lua_pushnumber(L, -2.0); lua_rawseti(L, -2, 3);
  lua_pushboolean(L, 1); lua_rawseti(L, -2, 4);
  const void *t = lua_topointer(L, -1);
  memcpy(&hmask, (const char *)t + lay->hmask, 4);
  uint64_t *a = layout_array(lay, t, &asize);
  ok = ok && asize == 8 && hmask == 0 && a;
  ok = ok && a[1] == b15 && a[3] == bm2 && slot_is_num(a[1]) &&
       !slot_is_num(a[2]) && !slot_is_num(a[4]) && slot_is_nil(a[5]) &&
       !slot_is_nil(a[1]) && !slot_is_nil(a[2]);
  lua_createtable(L, 0, 5);
  t = lua_topointer(L, -1);
  memcpy(&hmask, (const char *)t + lay->hmask, 4);
  layout_array(lay, t, &asize);
  ok = ok && asize == 0 && hmask == 7;
  /* lua_next from the last array slot (nil) goes on with the hash part;
   * encode_table relies on it to skip the array part. */
  lua_createtable(L, 4, 1);
  lua_pushnumber(L, 1); lua_rawseti(L, -2, 1);
  lua_pushnumber(L, 2); lua_setfield(L, -2, "k");
  int tk = lua_gettop(L);
  t = lua_topointer(L, tk);
  layout_array(lay, t, &asize);
  if (ok && asize == 5) {
    lua_pushnumber(L, 4);
    ok = lua_next(L, tk) && lua_type(L, -2) == LUA_TSTRING && lua_tonumber(L, -1) == 2;
    if (ok) {
      lua_pop(L, 1);
      ok = !lua_next(L, tk); /* and that was the last key */
    }
    lua_settop(L, tk);
  } else {
    ok = 0;
  }
  lua_createtable(L, 100, 0);
  t = lua_topointer(L, -1);
  a = layout_array(lay, t, &asize);
  if (ok && asize == 101 && a) {
    double d = 42.0;
    memcpy(&a[50], &d, 8);
    lua_rawgeti(L, -1, 50);
    ok = lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == 42.0;
  } else {
    ok = 0;
  }
  lua_settop(L, top);
  return ok;
}

/* The flat-table fields of lay (its array layout verified): fills in the
 * tags, GCstr's offsets, and checks the node and metatable offsets on real
 * tables.  1 if every one holds. */
static int flat_ok(lua_State *L, tab_layout *lay) {
  static const char long_str[] = "a string of thirty-seven bytes, exact";
  int top = lua_gettop(L), ok = 1;
  uint32_t asize, hmask;
  lay->gc64 = lay->array == 16;
  lay->node = lay->gc64 ? 40 : 20;
  lay->meta = lay->gc64 ? 32 : 16;

  /* Tags and GC references, from an array of one of each. */
  lua_createtable(L, 6, 0);
  int arr_t = lua_gettop(L);
  lua_pushliteral(L, "x"); lua_rawseti(L, arr_t, 1);
  lua_pushstring(L, long_str); lua_rawseti(L, arr_t, 2);
  lua_pushboolean(L, 1); lua_rawseti(L, arr_t, 3);
  lua_pushboolean(L, 0); lua_rawseti(L, arr_t, 4);
  lua_createtable(L, 0, 0); lua_rawseti(L, arr_t, 5);
  lua_pushstring(L, long_str + 10); lua_rawseti(L, arr_t, 6);
  uint64_t *a = layout_array(lay, lua_topointer(L, arr_t), &asize);
  if (!a || asize != 7) {
    ok = 0;
    goto done;
  }
  lay->tag_str = lay_tag(lay, a[1]);
  lay->tag_true = lay_tag(lay, a[3]);
  lay->tag_false = lay_tag(lay, a[4]);
  lay->tag_tab = lay_tag(lay, a[5]);
  ok = lay_tag(lay, a[2]) == lay->tag_str && lay_tag(lay, a[6]) == lay->tag_str &&
       lay->tag_str != lay->tag_tab && lay->tag_true != lay->tag_false &&
       lay->tag_str != lay->tag_true && lay->tag_tab != lay->tag_true &&
       lay->tag_str != lay->tag_false && lay->tag_tab != lay->tag_false;
  for (int i = 1; ok && i <= 6; i++) ok = !slot_is_num(a[i]) && !slot_is_nil(a[i]);
  lua_rawgeti(L, arr_t, 5);
  ok = ok && lay_gc(lay, a[5]) == lua_topointer(L, -1);
  lua_pop(L, 1);
  if (!ok) goto done;
  /* GCstr: the data follows the header (lua_tolstring points at it); the
   * length is the last header word that holds each string's length. */
  const char *sx = lay_gc(lay, a[1]), *sl = lay_gc(lay, a[2]), *s6 = lay_gc(lay, a[6]);
  lua_rawgeti(L, arr_t, 2);
  const char *data = lua_tostring(L, -1);
  lua_pop(L, 1);
  ok = data > sl && data - sl <= 32;
  if (!ok) goto done;
  lay->str_data = (int)(data - sl);
  lay->str_len = 0;
  for (int off = 4; off + 4 <= lay->str_data; off += 4) {
    uint32_t n1, n2, n3;
    memcpy(&n1, sx + off, 4);
    memcpy(&n2, sl + off, 4);
    memcpy(&n3, s6 + off, 4);
    if (n1 == 1 && n2 == sizeof long_str - 1 && n3 == sizeof long_str - 11) lay->str_len = off;
  }
  ok = lay->str_len > 0 && !memcmp(sx + lay->str_data, "x", 2) &&
       !memcmp(sl + lay->str_data, long_str, sizeof long_str) &&
       !memcmp(s6 + lay->str_data, long_str + 10, sizeof long_str - 10);
  if (!ok) goto done;

  /* Hash nodes: two string keys in a table of four nodes. */
  lua_createtable(L, 0, 4);
  int hash_t = lua_gettop(L);
  lua_pushnumber(L, 1.5); lua_setfield(L, hash_t, "a");
  lua_pushliteral(L, "x"); lua_setfield(L, hash_t, "bb");
  const tab_node *node = lay_nodes(lay, lua_topointer(L, hash_t), &hmask);
  double d15 = 1.5;
  uint64_t b15;
  memcpy(&b15, &d15, 8);
  int found_a = 0, found_b = 0, used = 0;
  ok = node && hmask == 3 && !lay_ref(lay, lua_topointer(L, hash_t), lay->meta);
  for (uint32_t i = 0; ok && i <= hmask; i++) {
    if (slot_is_nil(node[i].val)) continue;
    used++;
    if (lay_tag(lay, node[i].key) != lay->tag_str) { ok = 0; break; }
    size_t klen;
    const char *k = lay_str(lay, node[i].key, &klen);
    if (klen == 1 && k[0] == 'a' && node[i].val == b15) found_a = 1;
    if (klen == 2 && !memcmp(k, "bb", 2) && node[i].val == a[1]) found_b = 1;
  }
  ok = ok && used == 2 && found_a && found_b;
  /* The metatable slot. */
  lua_createtable(L, 0, 0);
  lua_pushvalue(L, hash_t);
  lua_setmetatable(L, -2);
  ok = ok && lay_ref(lay, lua_topointer(L, -1), lay->meta);
done:
  lua_settop(L, top);
  return ok;
}

static void probe_layout(lua_State *L) {
  if (px_marshal_layout_state) return;
  static const tab_layout candidates[] = {{.array = 16, .asize = 48, .hmask = 52},
                                          {.array = 8, .asize = 24, .hmask = 28}};
  tab_layout found = {0};
  int have = 0, flat = 0;
  for (size_t i = 0; i < sizeof candidates / sizeof *candidates && !have && !plain_forced(); i++)
    if (layout_ok(L, &candidates[i])) {
      found = candidates[i];
      have = 1;
    }
  if (have) flat = flat_ok(L, &found);
  pthread_mutex_lock(&probe_lock);
  if (!px_marshal_layout_state) {
    if (have) px_marshal_layout = found;
    px_marshal_flat_state = flat ? 1 : -1;
    px_marshal_layout_state = have ? 1 : -1; /* after px_marshal_layout: readers test this */
  }
  pthread_mutex_unlock(&probe_lock);
}

/* ------------------------------------------------------------------------
 * Reading a bytecode dump (for the closure factories below).
 * ---------------------------------------------------------------------- */

typedef struct bcr { const uint8_t *p, *end; } bcr;

static int uleb(bcr *r, uint32_t *out) {
  uint32_t v = 0;
  int shift = 0;
  while (r->p < r->end) {
    uint8_t b = *r->p++;
    if (shift < 32) v |= (uint32_t)(b & 0x7f) << shift;
    shift += 7;
    if (!(b & 0x80)) {
      *out = v;
      return 0;
    }
  }
  return -1;
}

static int skip(bcr *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) return -1;
  r->p += n;
  return 0;
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  luaL_addlstring((luaL_Buffer *)ud, p, sz);
  return 0;
}

/* Dump the Lua function on top of the stack; pushes the bytecode string. */
void px_marshal_dump_function(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_dump(L, dump_writer, &b);
  luaL_pushresult(&b);
}

/* ------------------------------------------------------------------------
 * Fresh closures without reloading: a factory per received prototype.
 *
 * A received function must be a new closure with new upvalues every time,
 * and LuaJIT's API makes closures only by loading bytecode (about 250 ns for
 * a small function, more for a big one).  So the reader loads, once per
 * distinct bytecode, a factory: the same dump with one more prototype
 * appended as its main function,
 *     KNIL 0, n-1;  FNEW n, <the function>;  UCLO 0;  RET1 n, 2
 * whose n locals become the function's upvalues (its upvalue descriptors are
 * rewritten to point at them).  Each call of the factory returns a new
 * closure with n new upvalues, as loading would.  The opcodes are read from
 * a probe compiled by this LuaJIT, and the whole scheme is checked once per
 * process (probe_factory); if anything differs the reader loads bytecode
 * every time instead.
 * ---------------------------------------------------------------------- */

typedef struct fac_ops { uint32_t knil, fnew, uclo, ret1; } fac_ops;
static _Atomic int g_factory_state; /* 0 unknown, 1 usable, -1 unusable */
static fac_ops g_fac;

/* Where the prototypes of a dump are: the end of the header, and for the
 * last (main) prototype the offset of its upvalue descriptors and their
 * count.  Returns the offset of the terminating 0, or 0 if not understood. */
static size_t dump_main(const uint8_t *bc, size_t len, size_t *uv_off,
                        uint32_t *sizeuv, int *strip, const uint8_t **ins,
                        uint32_t *nins) {
  bcr r = {bc, bc + len};
  uint32_t flags, v;
  if (len < 5 || bc[0] != 0x1b || bc[1] != 'L' || bc[2] != 'J') return 0;
  r.p += 4;
  if (uleb(&r, &flags) || (flags & 1)) return 0;
  *strip = (flags & 2) != 0;
  if (!*strip && (uleb(&r, &v) || skip(&r, v))) return 0;
  int found = 0;
  for (;;) {
    uint32_t plen;
    size_t at = (size_t)(r.p - bc);
    if (uleb(&r, &plen)) return 0;
    if (plen == 0) return found && r.p == r.end ? at : 0;
    if ((size_t)(r.end - r.p) < plen) return 0;
    bcr p = {r.p, r.p + plen};
    r.p += plen;
    uint32_t sizekgc, sizekn, sizebc, sizedbg = 0;
    if (skip(&p, 3)) return 0;
    *sizeuv = *p.p++;
    if (uleb(&p, &sizekgc) || uleb(&p, &sizekn) || uleb(&p, &sizebc)) return 0;
    if (!*strip) {
      if (uleb(&p, &sizedbg)) return 0;
      if (sizedbg && (uleb(&p, &v) || uleb(&p, &v))) return 0;
    }
    *ins = p.p;
    *nins = sizebc;
    if (skip(&p, (size_t)sizebc * 4)) return 0;
    *uv_off = (size_t)(p.p - bc);
    if (skip(&p, (size_t)*sizeuv * 2)) return 0;
    found = 1;
  }
}

static uint32_t ins_ad(uint32_t op, uint32_t a, uint32_t d) {
  return op | a << 8 | d << 16;
}

/* Push the factory's bytecode for the dump bc (a string), or return 0. */
static int push_factory_code(lua_State *L, const fac_ops *ops, const uint8_t *bc,
                             size_t len) {
  size_t uv_off;
  uint32_t nuv, nins;
  int strip;
  const uint8_t *ins;
  size_t end = dump_main(bc, len, &uv_off, &nuv, &strip, &ins, &nins);
  if (!end || nuv > 200) return 0;
  uint32_t code[4];
  int n = 0;
  if (nuv) code[n++] = ins_ad(ops->knil, 0, nuv - 1);
  code[n++] = ins_ad(ops->fnew, nuv, 0);
  code[n++] = ops->uclo;
  code[n++] = ins_ad(ops->ret1, nuv, 2);
  uint8_t body[64];
  size_t b = 0;
  body[b++] = 0x01;           /* PROTO_CHILD */
  body[b++] = 0;              /* numparams */
  body[b++] = (uint8_t)(nuv + 1); /* framesize */
  body[b++] = 0;              /* sizeuv */
  body[b++] = 1;              /* sizekgc: the function */
  body[b++] = 0;              /* sizekn */
  body[b++] = (uint8_t)n;     /* sizebc (without the header instruction) */
  if (!strip) body[b++] = 0;  /* sizedbg */
  memcpy(body + b, code, (size_t)n * 4);
  b += (size_t)n * 4;
  body[b++] = 0;              /* kgc 0: BCDUMP_KGC_CHILD */
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  luaL_addlstring(&buf, (const char *)bc, uv_off);
  for (uint32_t i = 0; i < nuv; i++) {
    uint16_t ref;
    memcpy(&ref, bc + uv_off + 2 * i, 2);
    ref = (uint16_t)(0x8000 | (ref & 0x4000) | i); /* local slot i */
    luaL_addlstring(&buf, (const char *)&ref, 2);
  }
  luaL_addlstring(&buf, (const char *)bc + uv_off + 2 * nuv, end - uv_off - 2 * nuv);
  char blen = (char)b; /* < 128: a one-byte uleb */
  luaL_addlstring(&buf, &blen, 1);
  luaL_addlstring(&buf, (const char *)body, b);
  luaL_addchar(&buf, 0);
  luaL_pushresult(&buf);
  return 1;
}

/* Push the factory for the dump bc, or return 0 (then load bc itself). */
static int load_factory(lua_State *L, const fac_ops *ops, const uint8_t *bc,
                        size_t len) {
  if (!push_factory_code(L, ops, bc, len)) return 0;
  size_t flen;
  const char *f = lua_tolstring(L, -1, &flen);
  int rc = luaL_loadbuffer(L, f, flen, "=?");
  lua_remove(L, -2);
  if (rc != 0) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static void probe_factory(lua_State *L) {
  if (g_factory_state) return;
  int top = lua_gettop(L), ok = 0;
  fac_ops ops;
  if (plain_forced()) goto publish;
  /* The opcodes, from what this LuaJIT's parser emits for a factory. */
  if (luaL_loadstring(L, "local a, b return function() return a, b end") == 0) {
    px_marshal_dump_function(L);
    size_t len, uv_off;
    uint32_t nuv, nins;
    int strip;
    const uint8_t *ins;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    if (dump_main(bc, len, &uv_off, &nuv, &strip, &ins, &nins) && nins == 4 && nuv == 0) {
      uint32_t w[4];
      memcpy(w, ins, 16);
      ops.knil = w[0] & 0xff;
      ops.fnew = w[1] & 0xff;
      ops.uclo = w[2];
      ops.ret1 = w[3] & 0xff;
      ok = w[0] == ins_ad(ops.knil, 0, 1) && w[1] == ins_ad(ops.fnew, 2, 0) &&
           (w[2] & 0xff00) == 0 && w[3] == ins_ad(ops.ret1, 2, 2);
    }
  }
  lua_settop(L, top);
  /* The scheme, end to end: two closures from one factory are distinct,
   * with upvalues of their own. */
  if (ok && luaL_loadstring(L, "local x, y = 1, 2 return function(a) x = x + a return x * 10 + y end") == 0) {
    lua_call(L, 0, 1);
    px_marshal_dump_function(L);
    size_t len;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    ok = 0;
    if (load_factory(L, &ops, bc, len)) {
      int fac = lua_gettop(L);
      lua_pushvalue(L, fac);
      lua_call(L, 0, 1);
      lua_pushvalue(L, fac);
      lua_call(L, 0, 1);
      int f1 = fac + 1, f2 = fac + 2;
      lua_pushnumber(L, 3); lua_setupvalue(L, f1, 1);
      lua_pushnumber(L, 4); lua_setupvalue(L, f1, 2);
      lua_pushnumber(L, 5); lua_setupvalue(L, f2, 1);
      lua_pushnumber(L, 6); lua_setupvalue(L, f2, 2);
      lua_pushvalue(L, f1); lua_pushnumber(L, 1); lua_call(L, 1, 1);
      lua_pushvalue(L, f2); lua_pushnumber(L, 2); lua_call(L, 1, 1);
      lua_pushvalue(L, f1); lua_pushnumber(L, 1); lua_call(L, 1, 1);
      ok = !lua_rawequal(L, f1, f2) && lua_upvalueid(L, f1, 1) != lua_upvalueid(L, f2, 1) &&
           lua_tonumber(L, -3) == 44 && lua_tonumber(L, -2) == 76 && lua_tonumber(L, -1) == 54;
    }
  }
  lua_settop(L, top);
publish:
  pthread_mutex_lock(&probe_lock);
  if (!g_factory_state) {
    if (ok) g_fac = ops;
    g_factory_state = ok ? 1 : -1;
  }
  pthread_mutex_unlock(&probe_lock);
}

/* A cheap 64-bit hash of the bytecode: its length and at most 32 words
 * spread over it.  A collision only costs a reload: the cache compares the
 * whole bytecode before it uses a factory. */
static uint64_t bc_hash(const uint8_t *p, size_t len) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ len;
  if (len < 8) {
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
  }
  size_t step = len / 32 > 8 ? len / 32 : 8;
  for (size_t i = 0; i + 8 <= len; i += step) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    h = (h ^ v) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  uint64_t last;
  memcpy(&last, p + len - 8, 8);
  h = (h ^ last) * 0xff51afd7ed558ccdull;
  return h ^ (h >> 29);
}

#define MAX_PROTOS 256 /* factories kept per VM; the cache restarts when full */

/* Push a fresh closure for bytecode bc from the VM's factory cache, making
 * the factory on first use; 0 if there is no factory (load bc instead). */
int px_marshal_push_closure(lua_State *L, int state, const uint8_t *bc, size_t len) {
  if (g_factory_state <= 0) return 0;
  lua_Number key = (lua_Number)(bc_hash(bc, len) >> 11);
  lua_rawgeti(L, state, S_PROTOS);
  int cache = lua_gettop(L);
  lua_pushnumber(L, key);
  lua_rawget(L, cache);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 2);
    size_t clen;
    const char *cbc = lua_tolstring(L, -1, &clen);
    int same = cbc && clen == len && !memcmp(cbc, bc, len);
    lua_pop(L, 1);
    if (same) {
      lua_rawgeti(L, -1, 1);
      lua_call(L, 0, 1);
      lua_replace(L, cache);
      lua_settop(L, cache);
      return 1;
    }
  }
  lua_pop(L, 1);
  if (!load_factory(L, &g_fac, bc, len)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_rawgeti(L, state, S_NPROTOS);
  lua_Number n = lua_tonumber(L, -1) + 1;
  lua_pop(L, 1);
  if (n > MAX_PROTOS) {
    lua_newtable(L);
    lua_replace(L, cache);
    lua_pushvalue(L, cache);
    lua_rawseti(L, state, S_PROTOS);
    n = 1;
  }
  lua_pushnumber(L, n);
  lua_rawseti(L, state, S_NPROTOS);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 1);
  lua_pushlstring(L, (const char *)bc, len);
  lua_rawseti(L, -2, 2);
  lua_pushnumber(L, key);
  lua_insert(L, -2);
  lua_rawset(L, cache);
  lua_call(L, 0, 1);
  lua_replace(L, cache);
  lua_settop(L, cache);
  return 1;
}


int px_marshal_fast_paths(void) {
  return (px_marshal_layout_state > 0 ? 1 : 0) | (g_factory_state > 0 ? 2 : 0) |
         (px_marshal_layout_state > 0 && px_marshal_flat_state > 0 ? 4 : 0);
}

/* Run the one-time checks of LuaJIT internals this VM's marshaller relies
 * on (table layout, closure factories). */
void px_marshal_probe(lua_State *L) {
  probe_layout(L);
  probe_factory(L);
}

