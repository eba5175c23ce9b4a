/*
 * unmarshal.c -- rebuild values marshalled by marshal.c (format at its
 * top) in the receiving VM.
 *
 * The reader is safe on any byte string: every read is bounds-checked,
 * nesting is bounded (MAX_DEPTH tables and functions; names are plain
 * strings, never nested values), and what it allocates is bounded by the
 * input: a table is presized from its declared counts only while the
 * message's allocation budget (ALLOC_FACTOR bytes per input byte) lasts,
 * after that it grows from what is actually read.
 *
 * Two modes (px.h):
 * - trusted (px_unmarshal): messages made by px_marshal in a VM of this
 *   process.  Lua functions (bytecode, which LuaJIT never verifies), C
 *   functions and modules by name (`require`d when absent) are accepted.
 * - data-only (px_unmarshal_data): anything read from a file, a socket or
 *   a script.  Functions, C functions, module references and metatables by
 *   module name are rejected with an error; nothing is required, nothing
 *   is loaded, no Lua code runs.
 *
 * Received functions: the globals sent with them, and any global they
 * assign, live in one environment per message (shared by every function of
 * that message, so they see each other's globals), whose __index is the
 * receiving VM's globals.  Nothing is written into the receiver's _G, so two
 * tasks on one worker never see each other's globals.  The writer flags
 * (SEG_ENV) the segments that need it: when no function reads a sent global
 * or assigns one (no GSET in its bytecode, nested functions included; most
 * spawns), the functions keep the receiver's globals, which reads the same,
 * and the message costs no table.
 */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"
#include "numbers.h"

/* ------------------------------------------------------------------------
 * Reader.
 * ---------------------------------------------------------------------- */

/* Keys repeat: every record of a list has the same ones.  A short string
 * key is interned once per message (lua_pushlstring hashes it and searches
 * the string table: ~230 instructions) and pushed from a cache after that,
 * in messages of at least KEY_CACHE_MIN bytes. */
#define KEY_CACHE 64
#define KEY_MAX 40
#define KEY_CACHE_MIN 256
#define SHAPES 4 /* templates per message (marshal_shape.c), kept in the
                    key cache's table after its KEY_CACHE strings */

typedef struct reader {
  lua_State *L;
  px_msg *m;
  const uint8_t *base, *p, *end;
  int state;
  int refs; /* stack slot of the id table; 0 when the segment needs none */
  int nobj, nbc, depth, next_ref;
  int trusted; /* functions and module references allowed (px_unmarshal) */
  int seg_env; /* this segment's functions get the environment (SEG_ENV) */
  int env;     /* stack slot of the received functions' environment, 0: none yet */
  size_t budget; /* bytes of presized table slots still allowed */
  int keyslot;   /* stack slot of the key cache's strings (see decode_key) */
  int keys;      /* the key cache is made (keys[] initialised) */
  struct { const uint8_t *bytes; uint32_t len; } key[KEY_CACHE];
  char err[512];
  int nshapes, last_shape; /* records by shape (decode_shaped) */
  px_shape shape[SHAPES];
} reader;

/* Presized table slots may cost at most this many bytes per message byte
 * (an array slot is 8 bytes, a hash node 24 to 40).  Beyond the budget a
 * table grows from what is actually read, which costs at most about as much
 * again: each slot filled consumes at least one byte of input. */
#define ALLOC_FACTOR 16
#define HASH_NODE_BYTES 40

static int bad(reader *r, const char *what) {
  snprintf(r->err, sizeof r->err, "cannot receive a value: %s", what);
  return -1;
}
#define NEED(r, n) \
  if ((size_t)((r)->end - (r)->p) < (size_t)(n)) return bad(r, "truncated message")

static int get_varint(reader *r, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    NEED(r, 1);
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return 0;
    }
  }
  return bad(r, "bad varint");
}

static int decode(reader *r);

static void reg(reader *r, int idx) {
  r->nobj++;
  if (r->refs) {
    lua_pushvalue(r->L, idx);
    lua_rawseti(r->L, r->refs, r->nobj);
  }
}

/* Read a name (a module, a C function, a global): always a string value,
 * never a nested one, so names cannot recurse.  Leaves it on the stack. */
static int decode_string(reader *r) {
  NEED(r, 1);
  unsigned tag = *r->p;
  if (tag == T_STR || (tag >= T_SHORTSTR && tag < T_TINYINT)) return decode(r);
  return bad(r, "expected a name");
}

static int untrusted(reader *r, const char *what) {
  snprintf(r->err, sizeof r->err,
           "cannot receive a value: %s in a data-only message", what);
  return -1;
}

/* Push package.loaded[name] (the name is on top, replaced), requiring the
 * module if needed. */
static int resolve_module(reader *r) {
  lua_State *L = r->L;
  px_paths_sync(L);
  int nameidx = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_pushvalue(L, nameidx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_getfield(L, LUA_GLOBALSINDEX, "require");
    lua_pushvalue(L, nameidx);
    if (lua_pcall(L, 1, 1, 0) != 0) {
      snprintf(r->err, sizeof r->err, "cannot load module '%s' here: %s",
               lua_tostring(L, nameidx),
               lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
      return -1;
    }
  }
  lua_replace(L, nameidx);
  return 0;
}

static int resolve_cfunc(reader *r) {
  lua_State *L = r->L;
  int nameidx = lua_gettop(L);
  lua_rawgeti(L, r->state, S_BYNAME);
  lua_pushvalue(L, nameidx);
  lua_rawget(L, -2);
  if (lua_isfunction(L, -1)) {
    lua_replace(L, nameidx);
    lua_settop(L, nameidx);
    return 0;
  }
  lua_pop(L, 1);
  size_t len;
  const char *name = lua_tolstring(L, nameidx, &len);
  const char *dot = NULL;
  for (const char *s = name; s < name + len; s++)
    if (*s == '.') dot = s;
  if (!dot) return bad(r, "bad C function name");
  lua_pushlstring(L, name, (size_t)(dot - name));
  if (resolve_module(r)) return -1;
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, -1, dot + 1);
  } else {
    lua_pushnil(L);
  }
  if (!lua_isfunction(L, -1)) {
    snprintf(r->err, sizeof r->err, "cannot find function '%s' here", name);
    return -1;
  }
  lua_pushvalue(L, nameidx);
  lua_pushvalue(L, -2);
  lua_rawset(L, nameidx + 1);
  lua_replace(L, nameidx);
  lua_settop(L, nameidx);
  return 0;
}

static void make_keys(reader *r) {
  if (r->keys) return;
  lua_createtable(r->L, KEY_CACHE + SHAPES, 0);
  lua_replace(r->L, r->keyslot);
  memset(r->key, 0, sizeof r->key);
  r->keys = 1;
}

/* Push a table key: a short string through the key cache (returns 1: a
 * string, no need to check it), anything else through decode (0, or -1 on
 * error). */
static int decode_key(reader *r) {
  lua_State *L = r->L;
  NEED(r, 1);
  unsigned tag = *r->p;
  if (tag <= T_SHORTSTR || tag > T_SHORTSTR + KEY_MAX || !r->keyslot) return decode(r) ? -1 : 0;
  size_t len = tag - T_SHORTSTR;
  NEED(r, 1 + len);
  const uint8_t *s = r->p + 1;
  unsigned h = (unsigned)(len * 31 + s[0] * 7 + s[len - 1] * 3 + s[len / 2]) & (KEY_CACHE - 1);
  make_keys(r);
  r->p += 1 + len;
  if (r->key[h].len == len && r->key[h].bytes && !memcmp(r->key[h].bytes, s, len)) {
    lua_rawgeti(L, r->keyslot, (int)h + 1);
    return 1;
  }
  lua_pushlstring(L, (const char *)s, len);
  lua_pushvalue(L, -1);
  lua_rawseti(L, r->keyslot, (int)h + 1);
  r->key[h].bytes = s;
  r->key[h].len = (uint32_t)len;
  return 1;
}

static int decode_items(reader *r, int t, uint64_t narr) {
  lua_State *L = r->L;
  uint64_t i = 1;
  while (i <= narr) {
    NEED(r, 1);
    if (*r->p == T_DOUBLES) {
      r->p++;
      NEED(r, 4);
      uint32_t run;
      memcpy(&run, r->p, 4);
      r->p += 4;
      while ((size_t)(r->p - r->base) & 7) {
        NEED(r, 1);
        r->p++;
      }
      if (run > narr - i + 1) return bad(r, "bad array run");
      NEED(r, (size_t)run * 8);
      px_numbers_set(L, t, (size_t)i, run, r->p);
      r->p += (size_t)run * 8;
      i += run;
      continue;
    }
    if (*r->p == T_NIL) {
      r->p++;
    } else {
      if (decode(r)) return -1;
      lua_rawseti(L, t, (int)i);
    }
    i++;
  }
  return 0;
}

/* The value at q (end: the message's) of a record by shape: a number or a
 * boolean as its slot bits in *bits, a short string as its bytes in *str
 * and *len; returns the bytes it took, 0 for anything else (the record
 * then takes the C API). */
static inline size_t shaped_value(const uint8_t *q, const uint8_t *end, uint64_t *bits,
                                  const uint8_t **str, uint32_t *len) {
  if (q >= end) return 0;
  unsigned tag = *q;
  double d;
  size_t n = 1;
  if (tag >= T_TINYINT) {
    d = (double)(tag - T_TINYINT);
  } else if (tag >= T_SHORTSTR) {
    *len = tag - T_SHORTSTR;
    if ((size_t)(end - q) <= *len) return 0;
    *str = q + 1;
    return 1 + (size_t)*len;
  } else if (tag == T_TRUE || tag == T_FALSE) {
    *bits = px_shape_bool(tag == T_TRUE);
    return 1;
  } else if (tag == T_INT16 && end - q >= 3) {
    int16_t i;
    memcpy(&i, q + 1, 2);
    d = i;
    n = 3;
  } else if (tag == T_INT32 && end - q >= 5) {
    int32_t i;
    memcpy(&i, q + 1, 4);
    d = i;
    n = 5;
  } else if (tag == T_DOUBLE && end - q >= 9) {
    memcpy(&d, q + 1, 8);
    n = 9;
  } else {
    return 0;
  }
  memcpy(bits, &d, 8);
  /* LuaJIT's one NaN, as lua_pushnumber makes it: other NaN bits may be
   * tags. */
  if (d != d) *bits = 0xfff8000000000000ull;
  return n;
}

/* The table of nkeys pairs at r->p as a record by shape: keys the short
 * strings of a template, in its order, and values numbers, short strings
 * or booleans.  1: pushed (and registered); 0: not such a table (nothing
 * read, nothing pushed: the caller takes the C API); -1: error.  Called
 * with room for 12 values on the stack (decode). */
static int decode_shaped(reader *r, uint32_t nkeys) {
  lua_State *L = r->L;
  const uint8_t *q = r->p, *end = r->end, *key[SHAPE_KEYS], *str[SHAPE_KEYS];
  uint64_t vals[SHAPE_KEYS];
  uint32_t len[SHAPE_KEYS], strs = 0;
  int nstr = 0;
  for (uint32_t i = 0; i < nkeys; i++) {
    if (q >= end) return 0;
    unsigned tag = *q;
    if (tag <= T_SHORTSTR || tag > T_SHORTSTR + KEY_MAX) return 0;
    size_t klen = tag - T_SHORTSTR;
    if ((size_t)(end - q) <= klen) return 0;
    key[i] = q;
    q += 1 + klen;
    str[i] = NULL;
    size_t n = shaped_value(q, end, &vals[i], &str[i], &len[i]);
    if (!n) return 0;
    if (str[i]) {
      strs |= 1u << i;
      nstr++;
    }
    q += n;
  }
  if (r->budget < nkeys * HASH_NODE_BYTES) return 0;
  px_shape *s = NULL;
  for (int j = 0; j < r->nshapes && !s; j++) {
    px_shape *c = &r->shape[(r->last_shape + j) % r->nshapes];
    if (c->nkeys != nkeys) continue;
    uint32_t i = 0;
    while (i < nkeys && c->key[i][0] == key[i][0] &&
           !memcmp(c->key[i] + 1, key[i] + 1, key[i][0] - T_SHORTSTR))
      i++;
    if (i == nkeys) {
      s = c;
      r->last_shape = (int)(c - r->shape);
    }
  }
  if (nstr + 1 > 12 && !lua_checkstack(L, SHAPE_KEYS + 8)) return bad(r, "stack overflow");
  int base = lua_gettop(L);
  if (!s) {
    /* A new shape: its template, keys in this table's order. */
    if (r->nshapes == SHAPES || !lua_checkstack(L, 2 * SHAPE_KEYS + 8)) return 0;
    make_keys(r);
    lua_createtable(L, 0, (int)nkeys);
    for (uint32_t i = 0; i < nkeys; i++) {
      lua_pushlstring(L, (const char *)key[i] + 1, key[i][0] - T_SHORTSTR);
      lua_pushvalue(L, -1);
      lua_pushboolean(L, 0);
      lua_rawset(L, base + 1);
    }
    s = &r->shape[r->nshapes];
    s->nkeys = nkeys;
    if (px_shape_init(L, s, base + 1, base + 2)) {
      lua_settop(L, base);
      return 0;
    }
    memcpy(s->key, key, nkeys * sizeof *key);
    lua_settop(L, base + 1);
    lua_rawseti(L, r->keyslot, KEY_CACHE + 1 + r->nshapes);
    r->last_shape = r->nshapes++;
  }
  if (!px_shape_usable(s)) return 0;
  r->budget -= nkeys * HASH_NODE_BYTES;
  if (nstr) {
    /* The strings first: they may allocate, the table's fill must not. */
    for (uint32_t i = 0; i < nkeys; i++)
      if (strs >> i & 1) lua_pushlstring(L, (const char *)str[i], len[i]);
    int at = base + 1;
    for (uint32_t i = 0; i < nkeys; i++)
      if (strs >> i & 1) vals[i] = px_shape_str(lua_tostring(L, at++));
  }
  px_shape_fill(L, s, vals);
  if (nstr) {
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
  }
  r->p = q;
  reg(r, base + 1);
  return 1;
}

static int decode_table(reader *r, int with_mt) {
  lua_State *L = r->L;
  int top = lua_gettop(L);
  if (with_mt) {
    if (!r->trusted) return untrusted(r, "a metatable by module name");
    if (decode_string(r) || px_marshal_mt_split(L) || resolve_module(r) ||
        px_marshal_mt_walk(L, r->err, sizeof r->err))
      return -1; /* a module, or a path from one (marshal_names.c) */
  }
  uint64_t narr;
  uint32_t nhash;
  if (get_varint(r, &narr)) return -1;
  NEED(r, 4);
  memcpy(&nhash, r->p, 4);
  r->p += 4;
  size_t left = (size_t)(r->end - r->p);
  if (narr > left || nhash > left / 2 || narr > INT32_MAX)
    return bad(r, "bad table size");
  /* Size hints only, and only while the budget lasts: every nested table
   * may claim the bytes that remain, so counts are not trusted beyond it.
   * LuaJIT raises above 2^27 array slots or 2^26 hash slots, and the fast
   * path in decode_items checks the real array size. */
  if (narr == 0 && nhash && nhash <= SHAPE_KEYS && !with_mt && r->keyslot &&
      px_shape_state > 0) {
    int rc = decode_shaped(r, nhash);
    if (rc) return rc < 0 ? -1 : 0;
  }
  size_t hint_arr = narr, hint_hash = nhash;
  if (hint_arr > r->budget / 8) hint_arr = r->budget / 8;
  r->budget -= hint_arr * 8;
  if (hint_hash > r->budget / HASH_NODE_BYTES) hint_hash = r->budget / HASH_NODE_BYTES;
  r->budget -= hint_hash * HASH_NODE_BYTES;
  lua_createtable(L, hint_arr > (1 << 26) ? 1 << 26 : (int)hint_arr,
                  hint_hash > (1 << 24) ? 1 << 24 : (int)hint_hash);
  int t = lua_gettop(L);
  reg(r, t);
  if (decode_items(r, t, narr)) return -1;
  for (uint32_t i = 0; i < nhash; i++) {
    int str = decode_key(r);
    if (str < 0 || decode(r)) return -1;
    if (!str) {
      int kt = lua_type(L, -2);
      if (kt == LUA_TNIL || (kt == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2)))
        return bad(r, "bad table key");
    }
    lua_rawset(L, t);
  }
  if (with_mt) {
    if (lua_type(L, top + 1) == LUA_TTABLE) {
      lua_pushvalue(L, top + 1);
      lua_setmetatable(L, t);
    }
    lua_replace(L, top + 1);
  }
  return 0;
}

/* The environment of the functions of this message (made on first use):
 * the globals sent with them, then the receiving VM's globals through
 * __index.  Assignments land in it too, so nothing leaks into _G. */
static int push_env(reader *r, int nglobals) {
  lua_State *L = r->L;
  if (!r->env) return bad(r, "no environment slot");
  if (lua_type(L, r->env) != LUA_TTABLE) {
    /* Sized for the first function's globals, within the budget (the
     * count is the message's word, see decode_table). */
    size_t hint = (size_t)nglobals;
    if (hint > r->budget / HASH_NODE_BYTES) hint = r->budget / HASH_NODE_BYTES;
    r->budget -= hint * HASH_NODE_BYTES;
    lua_createtable(L, 0, (int)hint);
    lua_rawgeti(L, r->state, S_ENVMT);
    if (lua_type(L, -1) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_createtable(L, 0, 1);
      lua_pushvalue(L, LUA_GLOBALSINDEX);
      lua_setfield(L, -2, "__index");
      lua_pushvalue(L, -1);
      lua_rawseti(L, r->state, S_ENVMT);
    }
    lua_setmetatable(L, -2);
    lua_replace(L, r->env);
  }
  return 0;
}

static int decode_function(reader *r) {
  lua_State *L = r->L;
  if (!r->trusted) return untrusted(r, "a function");
  px_paths_sync(L);
  uint64_t bcid, len;
  const uint8_t *bc;
  if (get_varint(r, &bcid)) return -1;
  if (bcid == 0) {
    size_t at = (size_t)(r->p - r->base);
    if (get_varint(r, &len)) return -1;
    NEED(r, len);
    bc = r->p;
    r->p += len;
    r->nbc++;
    if (r->refs) {
      lua_pushnumber(L, (double)at);
      lua_rawseti(L, r->refs, -r->nbc);
    }
  } else {
    if (!r->refs || bcid > (uint64_t)r->nbc) return bad(r, "bad bytecode reference");
    lua_rawgeti(L, r->refs, -(int)bcid);
    size_t at = (size_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    reader sub = *r;
    sub.p = r->base + at;
    if (get_varint(&sub, &len)) return -1;
    bc = sub.p;
  }
  if (len < 4 || bc[0] != 0x1b) return bad(r, "bad bytecode");
  if (px_marshal_load_function(L, r->state, bc, (size_t)len, r->err, sizeof r->err))
    return -1;
  int f = lua_gettop(L);
  reg(r, f);

  NEED(r, 2);
  uint16_t nglobals;
  memcpy(&nglobals, r->p, 2);
  r->p += 2;
  if (r->seg_env) {
    if (push_env(r, nglobals)) return -1;
    lua_pushvalue(L, r->env);
    lua_setfenv(L, f);
  } else if (nglobals) {
    return bad(r, "globals without an environment");
  }
  for (int i = 0; i < nglobals; i++) {
    if (decode_string(r) || decode(r)) return -1;
    lua_rawset(L, r->env);
  }

  NEED(r, 1);
  int nups = *r->p++;
  for (int i = 1; i <= nups; i++) {
    NEED(r, 1);
    if (*r->p == T_UPJOIN) {
      r->p++;
      uint64_t other;
      if (get_varint(r, &other)) return -1;
      NEED(r, 1);
      int n = *r->p++;
      if (!r->refs || other == 0 || other > (uint64_t)r->nobj) return bad(r, "bad upvalue reference");
      lua_rawgeti(L, r->refs, (int)other);
      if (!lua_isfunction(L, -1) || lua_iscfunction(L, -1) ||
          !lua_getupvalue(L, -1, n))
        return bad(r, "bad upvalue reference");
      lua_pop(L, 1);
      if (!lua_getupvalue(L, f, i)) return bad(r, "bad upvalue index");
      lua_pop(L, 1);
      lua_upvaluejoin(L, f, i, lua_gettop(L), n);
      lua_pop(L, 1);
    } else {
      if (decode(r)) return -1;
      if (!lua_setupvalue(L, f, i)) return bad(r, "bad upvalue index");
    }
  }
  return 0;
}

static int push_shared_cf(lua_State *L) {
  px_shared *obj = lua_touserdata(L, 1);
  lua_settop(L, 0);
  if (obj->type->push) obj->type->push(L, obj);
  else px_shared_push(L, obj);
  return 1;
}

static int decode_shared(reader *r) {
  lua_State *L = r->L;
  if (r->next_ref >= r->m->nrefs) return bad(r, "missing shared reference");
  px_shared *obj = r->m->refs[r->next_ref++];
  /* The push takes over the reference, also when it fails (a failed push
   * leaks one reference rather than risk a double release). */
  lua_pushcfunction(L, push_shared_cf);
  lua_pushlightuserdata(L, obj);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    snprintf(r->err, sizeof r->err, "cannot receive a %s: %s", obj->type->name,
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    return -1;
  }
  reg(r, lua_gettop(L));
  return 0;
}

static int decode(reader *r) {
  lua_State *L = r->L;
  NEED(r, 1);
  unsigned tag = *r->p;
  size_t n = px_scalar_get(L, r->p, (size_t)(r->end - r->p));
  if (n) {
    r->p += n;
    return 0;
  }
  if (px_scalar_tag(tag))
    return bad(r, (tag == T_INT64 || tag == T_UINT64) && r->end - r->p >= 9
                      ? "a 64-bit integer needs LuaJIT's FFI" : "truncated message");
  r->p++;
  switch (tag) {
  case T_REF: {
    uint64_t id;
    if (get_varint(r, &id)) return -1;
    if (!r->refs || id == 0 || id > (uint64_t)r->nobj) return bad(r, "bad reference");
    lua_rawgeti(L, r->refs, (int)id);
    return 0;
  }
  case T_CFUNC:
    if (!r->trusted) return untrusted(r, "a C function");
    if (!lua_checkstack(L, 8)) return bad(r, "stack overflow");
    return decode_string(r) || resolve_cfunc(r) ? -1 : 0;
  case T_MODULE:
    if (!r->trusted) return untrusted(r, "a module reference");
    if (!lua_checkstack(L, 8)) return bad(r, "stack overflow");
    return decode_string(r) || resolve_module(r) ? -1 : 0;
  case T_SHARED:
    if (!lua_checkstack(L, 8)) return bad(r, "stack overflow");
    return decode_shared(r);
  case T_TABLE:
  case T_TABLE_MT:
  case T_FUNC: {
    if (r->depth >= MAX_DEPTH + 2) return bad(r, "nested too deeply");
    if (!lua_checkstack(L, 12)) return bad(r, "stack overflow");
    r->depth++;
    int rc = tag == T_FUNC ? decode_function(r) : decode_table(r, tag == T_TABLE_MT);
    r->depth--;
    return rc;
  }
  default: return bad(r, "unknown tag");
  }
}

static int unmarshal(lua_State *L, px_msg *m, int trusted) {
  int base = lua_gettop(L), total = 0, rc = 0;
  if (!lua_checkstack(L, 24)) {
    for (int i = 0; i < m->nrefs; i++) px_shared_release(m->refs[i]);
    m->nrefs = 0;
    lua_pushliteral(L, "cannot receive a value: stack overflow");
    return -1;
  }
  reader rd, *r = &rd;
  memset(r, 0, offsetof(reader, key));
  r->err[0] = 0;
  r->nshapes = r->last_shape = 0;
  r->L = L;
  r->m = m;
  r->trusted = trusted;
  r->base = (const uint8_t *)m->data;
  r->p = r->base;
  r->end = r->base + m->len;
  r->budget = m->len < SIZE_MAX / ALLOC_FACTOR ? m->len * ALLOC_FACTOR : SIZE_MAX;
  r->state = px_marshal_state(L);
  lua_pushnil(L); /* the environment of received functions, made on demand */
  r->env = lua_gettop(L);
  if (m->len >= KEY_CACHE_MIN) {
    lua_pushnil(L); /* the key cache, made on demand */
    r->keyslot = lua_gettop(L);
  }
  while (r->p < r->end && !rc) {
    if ((size_t)(r->end - r->p) < 4 || r->p[0] != SEG_MAGIC) {
      rc = bad(r, "not a parx message");
      break;
    }
    if (r->p[1] != FORMAT_VERSION) {
      rc = bad(r, "unsupported message version");
      break;
    }
    int flags = r->p[2];
    r->p += 3;
    uint64_t n;
    if (get_varint(r, &n)) {
      rc = -1;
      break;
    }
    if (n > (uint64_t)(r->end - r->p) || !lua_checkstack(L, (int)n + 16)) {
      rc = bad(r, "too many values");
      break;
    }
    r->refs = 0;
    r->nobj = r->nbc = 0;
    r->seg_env = (flags & SEG_ENV) != 0;
    if (flags & SEG_BACKREFS) {
      lua_newtable(L);
      r->refs = lua_gettop(L);
    }
    for (uint64_t i = 0; i < n && !rc; i++) rc = decode(r);
    if (rc) break;
    if (r->refs) lua_remove(L, r->refs);
    total += (int)n;
  }
  if (!rc && r->next_ref != m->nrefs) rc = bad(r, "unused shared references");
  if (rc) {
    lua_settop(L, base);
    lua_pushstring(L, r->err[0] ? r->err : "cannot receive a value");
  } else {
    /* The state table, the environment and the key cache sit below the
     * values. */
    lua_remove(L, base + 1);
    lua_remove(L, base + 1);
    if (r->keyslot) lua_remove(L, base + 1);
  }
  /* Every reference not handed to a proxy is dropped. */
  for (int i = r->next_ref; i < m->nrefs; i++) px_shared_release(m->refs[i]);
  m->nrefs = 0;
  return rc ? -1 : total;
}

int px_unmarshal(lua_State *L, px_msg *m) { return unmarshal(L, m, 1); }

int px_unmarshal_data(lua_State *L, px_msg *m) { return unmarshal(L, m, 0); }
