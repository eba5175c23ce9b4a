/*
 * marshal.c -- copy Lua values from one VM to another as bytes.
 *
 * VMs never share Lua objects, so everything that crosses (task arguments
 * and results, channel messages, pool chunks) is written by px_marshal into
 * a px_msg and rebuilt by px_unmarshal in the receiving VM.  All of it is C:
 * no Lua code runs on either side except the cdata hook that arrays install
 * and `require` for a module the receiver has not loaded yet.
 *
 * Wire format, version 1.  Little-endian, varint = unsigned LEB128.
 *
 *   message  = segment*               (one per px_marshal call)
 *   segment  = 0xB7 version:u8 flags:u8 count:varint value*count
 *              flags bit 0: the segment holds back-references (REF, UPJOIN
 *              or a bytecode ref); without it the reader keeps no id table.
 *              bit 1: a function here reads sent globals or assigns
 *              globals: the reader gives the segment's functions an
 *              environment of their own (see unmarshal.c).
 *   value    = tag:u8 payload
 *     0x00 nil   0x01 false   0x02 true
 *     0x80..0xff        integer 0..127 (tag - 0x80)
 *     0x03 i16 / 0x04 i32   other integral numbers that fit (not -0.0)
 *     0x05 f64          any other number, its exact IEEE bits
 *     0x40..0x7f        string of length tag - 0x40, then the bytes
 *     0x06 len:varint bytes     longer string (binary-safe)
 *     0x07 TABLE  narr:varint nhash:u32 item*narr (key value)*nhash
 *     0x08 TABLE_MT name:value(string) then as TABLE; the metatable is the
 *          module `name` of the receiver (see Choices below)
 *          item = value (nil = hole) | 0x09 DOUBLES count:u32 pad f64*count
 *          (DOUBLES fills `count` consecutive array slots; pad aligns the
 *          doubles to 8 bytes from the start of the message)
 *     0x0a REF id:varint        the id-th table/function/shared object of
 *          this segment again (shared sub-tables, cycles)
 *     0x0b FUNC bc:varint [len:varint bytecode] nglobals:u16
 *          (name:value value)*nglobals nups:u8 upvalue*nups
 *          bc = 0: the bytecode follows; bc = k: the k-th bytecode of this
 *          segment again.  upvalue = value | 0x0c UPJOIN id:varint n:u8 (the
 *          upvalue is shared with upvalue n of function id)
 *     0x0d CFUNC name:value     a C function of a loaded module by
 *          "module.field" ("math.sqrt", "_G.print")
 *     0x0e MODULE name:value    package.loaded[name] (required if absent)
 *     0x0f SHARED               the next entry of px_msg.refs
 *     0x10 INT64 i64 / 0x11 UINT64 u64   an int64_t / uint64_t cdata
 *          (1LL, 0ULL), its 8 bytes
 *     0x12 NULL                 the NULL light userdata (cjson.null)
 *   Scalars (nil to strings, INT64, UINT64, NULL) are written and read by
 *   scalar.h/scalar.c, which channels and the pool use as well.
 *
 * Ids: tables, Lua functions and shared objects get ids 1, 2, ... in the
 * order the writer meets them; the reader registers each one before it reads
 * its contents, so cycles resolve.
 *
 * Choices:
 * - Metatables: a table whose metatable is a module (a value of
 *   package.loaded) keeps it, by name.  Any other metatable is dropped: the
 *   receiver gets a plain table.
 * - Globals: the writer scans each function's bytecode (and its nested
 *   functions') for GGET and sends the values of the globals it reads,
 *   except the standard ones (base functions, standard libraries, `parx`).
 *   The reader stores them in an environment of the message's own, never
 *   in the receiving VM's _G (unmarshal.c).
 *   Values are read from the function's environment with rawget, then
 *   through its __index chain (see get_global).
 * - The writer caches the dump and the global names of each function in a
 *   weak table.  The reader caches, per distinct bytecode, a factory that
 *   makes fresh closures without reloading (see px_marshal_push_closure in marshal_lj.c).
 * - Modules: any table, function or userdata that is a value of
 *   package.loaded crosses as its name and the receiver takes its own
 *   (requiring it if needed).  The sender keeps a map value -> name that it
 *   refreshes when package.loaded got a new key (a __newindex it installs
 *   on package.loaded, unless that already has a metatable; then the map is
 *   refreshed on each send).  A module replaced in place under an existing
 *   name is not noticed until some new module is loaded.
 * - C functions cross by name when they are a field of a loaded module
 *   (math.sqrt, string.format, _G.print, cjson.encode...); any other C
 *   function (a C closure such as a gmatch iterator) cannot be sent.
 *   Lua functions that are module fields are sent by value, not by name:
 *   scripts add functions to standard tables that workers do not have.
 * - Unsendable: coroutines, light userdata other than NULL, userdata that
 *   are not parx shared objects, cdata the array hook does not claim other
 *   than 64-bit integers, C functions not in
 *   a loaded module, nesting deeper than MAX_DEPTH.  The error names the
 *   path: "cannot send field 'x.y' of upvalue 'f' of argument #1 (a
 *   coroutine) to another VM".
 * - Numbers keep their bits; NaNs arrive as LuaJIT's canonical NaN (LuaJIT
 *   cannot hold others).  Strings are not deduplicated.
 * - Arrays of numbers are copied straight out of and into LuaJIT's table
 *   array part.  That reads the layout of LuaJIT's GCtab, which is not part
 *   of its API, so the layout is verified on real tables once per process
 *   (marshal_lj.c); if the check fails every table goes through the API.
 *
 * Known cost: everything else goes through the Lua C API, about 30 calls
 * per small table (a 3-field record costs ~250 ns to marshal, twice
 * pickle's); walking LuaJIT's hash nodes directly, as the array part is,
 * would remove most of them.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"

const char px_cdata_hook_key = 0;

/* ------------------------------------------------------------------------
 * Per-VM state: a registry table with the caches below.
 * ---------------------------------------------------------------------- */

static const char state_key = 0;


static const char *const std_globals[] = {
  "assert", "collectgarbage", "dofile", "error", "gcinfo", "getfenv",
  "getmetatable", "ipairs", "load", "loadfile", "loadstring", "module",
  "newproxy", "next", "pairs", "pcall", "print", "rawequal", "rawget",
  "rawlen", "rawset", "require", "select", "setfenv", "setmetatable",
  "tonumber", "tostring", "type", "unpack", "xpcall", "_G", "_VERSION",
  "bit", "coroutine", "debug", "ffi", "io", "jit", "math", "os", "package",
  "string", "table", "parx", NULL};

static int is_std_global(const char *name) {
  for (const char *const *p = std_globals; *p; p++)
    if (!strcmp(*p, name)) return 1;
  return 0;
}

/* Rebuild S_CFUNCS: every C function that is a field of a loaded module
 * (standard libraries included).  Done once per VM and again when a C
 * function is not found (a module loaded since). */
static void build_cfuncs(lua_State *L, int state) {
  lua_newtable(L);
  int map = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  int loaded = lua_gettop(L);
  if (lua_type(L, loaded) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
        const char *mod = lua_tostring(L, -2);
        int t = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, t)) {
          if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
            const char *field = lua_tostring(L, -2);
            lua_pushvalue(L, -1);
            lua_rawget(L, map);
            /* Prefer the standard library's name for functions that
             * several modules re-export. */
            int have = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (!have && !strchr(field, '.')) {
              lua_pushvalue(L, -1);
              lua_pushfstring(L, "%s.%s", mod, field);
              lua_rawset(L, map);
            }
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_rawseti(L, state, S_CFUNCS);
}

/* __newindex of package.loaded (upvalue 1: the state): a new module makes
 * the sender refresh its map of modules.  require() first stores a sentinel
 * under a new name (which lands here) and overwrites it when the module has
 * loaded; refresh_modules keeps S_DIRTY set while a sentinel is present. */
static int loaded_newindex(lua_State *L) {
  lua_settop(L, 3);
  lua_rawset(L, 1);
  lua_pushboolean(L, 1);
  lua_rawseti(L, lua_upvalueindex(1), S_DIRTY);
  return 0;
}

/* Push the marshal state of L's VM, creating it on first use. */
int px_marshal_state(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&state_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) == LUA_TTABLE) return lua_gettop(L);
  lua_pop(L, 1);
  px_marshal_probe(L);
  lua_createtable(L, S_NSLOTS, 0);
  int state = lua_gettop(L);
  lua_newtable(L);
  lua_rawseti(L, state, S_MODULES);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawseti(L, state, S_FCACHE);
  lua_newtable(L);
  lua_rawseti(L, state, S_BYNAME);
  lua_newtable(L);
  lua_rawseti(L, state, S_PROTOS);
  lua_pushnumber(L, 0);
  lua_rawseti(L, state, S_NPROTOS);
  build_cfuncs(L, state);
  lua_pushboolean(L, 1);
  lua_rawseti(L, state, S_DIRTY);
  /* Watch package.loaded for new modules, unless someone else already gave
   * it a metatable (then the map is refreshed on every send that needs it). */
  int tracked = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_type(L, -1) == LUA_TTABLE && !lua_getmetatable(L, -1)) {
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, state);
    lua_pushcclosure(L, loaded_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    tracked = 1;
  }
  lua_settop(L, state);
  lua_pushboolean(L, tracked);
  lua_rawseti(L, state, S_TRACKED);
  lua_pushlightuserdata(L, (void *)&state_key);
  lua_pushvalue(L, state);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return state;
}

/* ------------------------------------------------------------------------
 * Messages.
 * ---------------------------------------------------------------------- */

void px_msg_init(px_msg *m) { memset(m, 0, sizeof *m); }

void px_msg_free(px_msg *m) {
  for (int i = 0; i < m->nrefs; i++) px_shared_release(m->refs[i]);
  free(m->refs);
  free(m->data);
  memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------
 * Writer.
 * ---------------------------------------------------------------------- */

enum { P_ARG, P_FIELD, P_KEY, P_UPVAL, P_GLOBAL };

typedef struct path_seg {
  int kind;
  int keytype;      /* P_FIELD: LUA_TSTRING, LUA_TNUMBER or other */
  int keyidx;       /* P_FIELD/P_KEY: stack slot of the key, read only when
                       an error is described (0: keytype/num are set) */
  const char *name; /* string key, upvalue or global name */
  size_t len;
  double num;       /* number key, argument index */
} path_seg;

/* Objects already written in this segment: pointer -> value, open
 * addressing.  Values: (kind << 32) | payload. */
enum { K_OBJ = 1, K_UPVAL = 2, K_BC = 3 };
typedef struct seen_slot { const void *ptr; int64_t val; } seen_slot;

typedef struct writer {
  lua_State *L;
  px_msg *m;
  int state;
  int modules_fresh; /* S_MODULES checked for new modules during this call */
  struct modset *modptrs;
  int cfuncs_fresh;  /* S_CFUNCS rebuilt during this call */
  int nobj, nbc, backrefs, depth;
  int code; /* a function or a module reference was written (paths.c) */
  int env;  /* a function reads sent globals or assigns globals (SEG_ENV) */
  seen_slot *seen;
  size_t seen_cap, seen_len;
  int seen_ud; /* stack slot reserved for the userdata that holds `seen`
                 once it outgrows inline_seen */
  seen_slot inline_seen[32];
  int npath;
  path_seg path[MAX_DEPTH + 4];
  char err[512];
} writer;

static uint64_t ptr_hash(const void *p) {
  return ((uint64_t)(uintptr_t)p >> 3) * 0x9E3779B97F4A7C15ull;
}

static int64_t seen_get(writer *w, const void *p) {
  size_t mask = w->seen_cap - 1, i = ptr_hash(p) >> 32 & mask;
  for (;; i = (i + 1) & mask) {
    if (w->seen[i].ptr == p) return w->seen[i].val;
    if (!w->seen[i].ptr) return 0;
  }
}

static void seen_put(writer *w, const void *p, int64_t val) {
  if ((w->seen_len + 1) * 2 > w->seen_cap) {
    /* Grow into a userdata so an out-of-memory error cannot leak it. */
    size_t cap = w->seen_cap * 2;
    seen_slot *old = w->seen;
    size_t oldcap = w->seen_cap;
    seen_slot *s = lua_newuserdata(w->L, cap * sizeof *s);
    memset(s, 0, cap * sizeof *s);
    lua_replace(w->L, w->seen_ud); /* the old one, if any, becomes garbage */
    w->seen = s;
    w->seen_cap = cap;
    w->seen_len = 0;
    for (size_t i = 0; i < oldcap; i++)
      if (old[i].ptr) seen_put(w, old[i].ptr, old[i].val);
  }
  size_t mask = w->seen_cap - 1, i = ptr_hash(p) >> 32 & mask;
  while (w->seen[i].ptr) i = (i + 1) & mask;
  w->seen[i].ptr = p;
  w->seen[i].val = val;
  w->seen_len++;
}

static int oom(writer *w) {
  snprintf(w->err, sizeof w->err, "not enough memory to send a value");
  return -1;
}

static int reserve(writer *w, size_t n) {
  px_msg *m = w->m;
  if (m->cap - m->len >= n) return 0;
  size_t cap = m->cap ? m->cap : 256;
  while (cap - m->len < n) {
    if (cap > SIZE_MAX / 2) return oom(w);
    cap *= 2;
  }
  char *d = realloc(m->data, cap);
  if (!d) return oom(w);
  m->data = d;
  m->cap = cap;
  return 0;
}

static inline void put_u8(writer *w, unsigned v) {
  w->m->data[w->m->len++] = (char)v;
}
static inline void put_raw(writer *w, const void *p, size_t n) {
  memcpy(w->m->data + w->m->len, p, n);
  w->m->len += n;
}
static inline void put_varint(writer *w, uint64_t v) {
  while (v >= 0x80) {
    put_u8(w, (unsigned)(v & 0x7f) | 0x80);
    v >>= 7;
  }
  put_u8(w, (unsigned)v);
}

static int put_number(writer *w, double d) {
  if (reserve(w, PX_SCALAR_NUM_MAX)) return -1;
  w->m->len += px_scalar_put_number((uint8_t *)w->m->data + w->m->len, d);
  return 0;
}

static int put_string(writer *w, const char *s, size_t len) {
  if (reserve(w, len + PX_SCALAR_STR_EXTRA)) return -1;
  w->m->len += px_scalar_put_string((uint8_t *)w->m->data + w->m->len, s, len);
  return 0;
}

/* ---- error messages naming the path ---------------------------------- */

static int ident_like(const char *s, size_t len) {
  if (!len || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

typedef struct sbuf { char *p; size_t len, cap; } sbuf;
static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->len + 1 >= b->cap) return;
  if (n > b->cap - 1 - b->len) n = b->cap - 1 - b->len;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_field(lua_State *L, sbuf *b, const path_seg *seg, int first) {
  char num[64];
  path_seg resolved = *seg, *s = &resolved;
  if (s->keyidx) {
    s->keytype = lua_type(L, s->keyidx);
    if (s->keytype == LUA_TSTRING) s->name = lua_tolstring(L, s->keyidx, &s->len);
    else if (s->keytype == LUA_TNUMBER) s->num = lua_tonumber(L, s->keyidx);
  }
  if (s->keytype == LUA_TSTRING && ident_like(s->name, s->len)) {
    if (!first) sb_str(b, ".");
    sb_add(b, s->name, s->len > 60 ? 60 : s->len);
  } else if (s->keytype == LUA_TSTRING) {
    sb_str(b, "[\"");
    sb_add(b, s->name, s->len > 40 ? 40 : s->len);
    sb_str(b, "\"]");
  } else if (s->keytype == LUA_TNUMBER) {
    snprintf(num, sizeof num, "[%.14g]", s->num);
    sb_str(b, num);
  } else {
    sb_str(b, "[?]");
  }
}

static const char *what_of(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TTHREAD: return "a coroutine";
  case LUA_TUSERDATA: return "a userdata";
  case LUA_TLIGHTUSERDATA: return "a light userdata";
  case LUA_TFUNCTION: return "a C function";
  case LUA_TCDATA_: return "a cdata";
  default: return lua_typename(L, lua_type(L, idx));
  }
}

/* Describe the current path, innermost first: "field 'x.y' of upvalue 'f'
 * of argument #1". */
static void describe_path(writer *w, sbuf *b) {
  int i = w->npath - 1;
  int firstpart = 1;
  while (i >= 0) {
    if (!firstpart) sb_str(b, " of ");
    firstpart = 0;
    const path_seg *s = &w->path[i];
    char num[32];
    switch (s->kind) {
    case P_FIELD: {
      int j = i;
      while (j > 0 && w->path[j - 1].kind == P_FIELD) j--;
      sb_str(b, "field '");
      for (int k = j; k <= i; k++) {
        if (i - j > 12 && k == j + 4) { /* a long chain: the ends tell most */
          sb_str(b, "...");
          k = i - 4;
        }
        sb_field(w->L, b, &w->path[k], k == j);
      }
      sb_str(b, "'");
      i = j - 1;
      continue;
    }
    case P_KEY: sb_str(b, "a key"); break;
    case P_UPVAL:
      sb_str(b, "upvalue '");
      sb_add(b, s->name, s->len > 60 ? 60 : s->len);
      sb_str(b, "'");
      break;
    case P_GLOBAL:
      sb_str(b, "global '");
      sb_add(b, s->name, s->len > 60 ? 60 : s->len);
      sb_str(b, "'");
      break;
    case P_ARG:
      snprintf(num, sizeof num, "argument #%d", (int)s->num);
      sb_str(b, num);
      break;
    }
    i--;
  }
}

static int unsendable(writer *w, int idx, const char *why) {
  sbuf b = {w->err, 0, sizeof w->err};
  w->err[0] = 0;
  sb_str(&b, "cannot send ");
  describe_path(w, &b);
  sb_str(&b, " (");
  sb_str(&b, why ? why : what_of(w->L, idx));
  sb_str(&b, ") to another VM");
  return -1;
}

static inline void path_push(writer *w, int kind) {
  path_seg *s = &w->path[w->npath++];
  s->kind = kind;
  s->keytype = LUA_TNIL;
  s->keyidx = 0;
}

static void path_key(writer *w, int kind, int keyidx) {
  path_push(w, kind);
  w->path[w->npath - 1].keyidx = keyidx;
}

/* ---- modules and C functions by name --------------------------------- */

/* The addresses of the values in S_MODULES, open addressing. */
typedef struct modset { size_t cap; const void *p[]; } modset;

static int modset_has(const modset *set, const void *p) {
  if (!set || !set->cap) return 0;
  size_t mask = set->cap - 1, i = ptr_hash(p) >> 32 & mask;
  for (;; i = (i + 1) & mask) {
    if (set->p[i] == p) return 1;
    if (!set->p[i]) return 0;
  }
}

static modset *build_modset(lua_State *L, int state) {
  lua_rawgeti(L, state, S_MODULES);
  size_t n = 0, cap = 8;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    n++;
    lua_pop(L, 1);
  }
  while (cap < 2 * n + 2) cap *= 2;
  modset *set = lua_newuserdata(L, sizeof *set + cap * sizeof set->p[0]);
  set->cap = cap;
  memset(set->p, 0, cap * sizeof set->p[0]);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    lua_pop(L, 1);
    const void *p = lua_topointer(L, -1);
    size_t i = ptr_hash(p) >> 32 & (cap - 1);
    while (set->p[i]) i = (i + 1) & (cap - 1);
    set->p[i] = p;
  }
  lua_rawseti(L, state, S_MODPTRS);
  lua_pop(L, 1);
  return set;
}

static void refresh_modules(writer *w) {
  lua_State *L = w->L;
  int loading = 0;
  w->modules_fresh = 1; /* at most once per px_marshal */
  lua_rawgeti(L, w->state, S_TRACKED);
  lua_rawgeti(L, w->state, S_DIRTY);
  int skip = lua_toboolean(L, -2) && !lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (skip) return;
  lua_rawgeti(L, w->state, S_MODULES);
  int map = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  int loaded = lua_gettop(L);
  if (lua_type(L, loaded) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      int t = lua_type(L, -1);
      if (t == LUA_TLIGHTUSERDATA) loading = 1;
      if (lua_type(L, -2) == LUA_TSTRING &&
          (t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TUSERDATA)) {
        lua_pushvalue(L, -1);
        lua_rawget(L, map);
        int have = lua_type(L, -1) == LUA_TSTRING;
        lua_pop(L, 1);
        if (!have) {
          lua_pushvalue(L, -1);
          lua_pushvalue(L, -3);
          lua_rawset(L, map);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, map - 1);
  lua_pushboolean(L, loading);
  lua_rawseti(L, w->state, S_DIRTY);
  build_modset(L, w->state);
}

/* If the value at idx is a module (a value of package.loaded), push its
 * name and return 1. */
/* If the value at idx is a module (a value of package.loaded), push its
 * name and return 1.  Most values are not: a C set of the modules' addresses
 * (S_MODPTRS) answers that without touching Lua tables. */
static int module_name(writer *w, int idx) {
  lua_State *L = w->L;
  if (!w->modules_fresh) {
    refresh_modules(w);
    lua_rawgeti(L, w->state, S_MODPTRS);
    w->modptrs = lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  const void *p = lua_topointer(L, idx);
  if (!modset_has(w->modptrs, p)) return 0;
  lua_rawgeti(L, w->state, S_MODULES);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TSTRING) {
    /* Still loaded under that name?  (modules can be unloaded) */
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);
    int same = lua_rawequal(L, -1, idx);
    lua_pop(L, 2);
    if (same) {
      lua_remove(L, -2);
      return 1;
    }
  }
  /* Stale: forget it. */
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  w->modptrs = build_modset(L, w->state);
  return 0;
}

static int cfunc_name(writer *w, int idx) {
  lua_State *L = w->L;
  for (;;) {
    lua_rawgeti(L, w->state, S_CFUNCS);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING) return 1;
    lua_pop(L, 1);
    if (w->cfuncs_fresh) return 0;
    build_cfuncs(L, w->state);
    w->cfuncs_fresh = 1;
  }
}

/* ---- values ------------------------------------------------------------ */

static int encode(writer *w, int idx);

static int put_ref(writer *w, int64_t id) {
  if (reserve(w, 11)) return -1;
  put_u8(w, T_REF);
  put_varint(w, (uint64_t)id);
  w->backrefs = 1;
  return 0;
}

static int enter(writer *w, int idx) {
  if (w->depth >= MAX_DEPTH) return unsendable(w, idx, "nested too deeply");
  if (!lua_checkstack(w->L, 12)) return unsendable(w, idx, "stack overflow");
  w->depth++;
  return 0;
}

/* Encode t[i] for i = from..to (array items), copying runs of numbers
 * straight from the array part when the layout is known. */
static int encode_items(writer *w, int idx, size_t narr) {
  lua_State *L = w->L;
  size_t i = 1;
  while (i <= narr) {
    if (px_marshal_layout_state > 0) {
      uint32_t asize;
      uint64_t *arr = tab_array(lua_topointer(L, idx), &asize);
      size_t lim = narr + 1 < asize ? narr + 1 : asize, j = i;
      while (j < lim && slot_is_num(arr[j])) j++;
      if (j - i >= RUN_MIN) {
        size_t run = j - i;
        if (run > UINT32_MAX) run = UINT32_MAX;
        if (reserve(w, 13 + run * 8)) return -1;
        put_u8(w, T_DOUBLES);
        uint32_t n32 = (uint32_t)run;
        put_raw(w, &n32, 4);
        while (w->m->len & 7) put_u8(w, 0);
        arr = tab_array(lua_topointer(L, idx), &asize); /* unchanged */
        put_raw(w, arr + i, run * 8);
        i += run;
        continue;
      }
      for (; i < j; i++) {
        double d;
        memcpy(&d, &arr[i], 8);
        if (put_number(w, d)) return -1;
      }
      if (i > narr) break;
    }
    lua_rawgeti(L, idx, (int)i);
    int t = lua_type(L, -1);
    int rc;
    if (t == LUA_TNUMBER) {
      rc = put_number(w, lua_tonumber(L, -1));
    } else if (t == LUA_TSTRING) {
      size_t len;
      const char *str = lua_tolstring(L, -1, &len);
      rc = put_string(w, str, len);
    } else {
      path_push(w, P_FIELD);
      w->path[w->npath - 1].keytype = LUA_TNUMBER;
      w->path[w->npath - 1].num = (double)i;
      rc = encode(w, lua_gettop(L));
      w->npath--;
    }
    lua_pop(L, 1);
    if (rc) return rc;
    i++;
  }
  return 0;
}

static int encode_pair(writer *w, int k, int v) {
  path_key(w, P_KEY, k);
  int rc = encode(w, k);
  w->npath--;
  if (rc) return rc;
  path_key(w, P_FIELD, k);
  rc = encode(w, v);
  w->npath--;
  return rc;
}

static int encode_table(writer *w, int idx) {
  lua_State *L = w->L;
  const void *ptr = lua_topointer(L, idx);
  int64_t id = seen_get(w, ptr);
  if (id) return put_ref(w, id & 0xffffffff);
  if (module_name(w, idx)) {
    int rc = reserve(w, 1) ? -1 : (put_u8(w, T_MODULE), w->code = 1, encode(w, lua_gettop(L)));
    lua_pop(L, 1);
    return rc;
  }
  if (enter(w, idx)) return -1;
  seen_put(w, ptr, (int64_t)K_OBJ << 32 | ++w->nobj);
  int top = lua_gettop(L), rc = -1;
  if (lua_getmetatable(L, idx) && module_name(w, top + 1)) {
    if (reserve(w, 1)) goto done;
    put_u8(w, T_TABLE_MT);
    if (encode(w, lua_gettop(L))) goto done;
  } else {
    if (reserve(w, 1)) goto done;
    put_u8(w, T_TABLE);
  }
  lua_settop(L, top);
  size_t narr = lua_objlen(L, idx);
  if (reserve(w, 15)) goto done;
  put_varint(w, narr);
  size_t count_at = w->m->len;
  put_raw(w, &(uint32_t){0}, 4);
  if (encode_items(w, idx, narr)) goto done;

  /* The hash part, and array slots outside 1..narr.  With the layout known
   * the traversal starts after the array part, so a long array is not
   * walked twice. */
  uint32_t count = 0;
  if (px_marshal_layout_state > 0) {
    uint32_t asize;
    uint64_t *arr = tab_array(lua_topointer(L, idx), &asize);
    for (size_t k = 0; k < asize; k++) {
      if (k == 1) k = narr + 1;
      if (k >= asize) break;
      if (slot_is_nil(arr[k])) continue;
      lua_pushnumber(L, (double)k);
      lua_rawgeti(L, idx, (int)k);
      if (encode_pair(w, top + 1, top + 2)) goto done;
      lua_settop(L, top);
      count++;
      /* Encoding may run Lua (the cdata hook), which may resize t. */
      arr = tab_array(lua_topointer(L, idx), &asize);
    }
    if (asize > 0) lua_pushnumber(L, (double)(asize - 1));
    else lua_pushnil(L);
  } else {
    lua_pushnil(L);
  }
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TNUMBER) {
      double k = lua_tonumber(L, -2);
      if (k >= 1 && k <= (double)narr && k == floor(k)) {
        lua_pop(L, 1);
        continue;
      }
    }
    if (encode_pair(w, top + 1, top + 2)) goto done;
    lua_settop(L, top + 1);
    count++;
  }
  memcpy(w->m->data + count_at, &count, 4);
  rc = 0;
done:
  lua_settop(L, top);
  w->depth--;
  return rc;
}

static int gettable_cf(lua_State *L) {
  lua_gettable(L, 1);
  return 1;
}

/* Push env[name]: rawget, then along a chain of __index tables (sandboxed
 * environments such as setmetatable(env, {__index = _G})).  An __index
 * function (busted's environments, strict mode) is called in a protected
 * call; an error there counts as nil. */
static void get_global(lua_State *L, int env, int nameidx) {
  lua_pushvalue(L, env);
  for (int hops = 0;; hops++) {
    lua_pushvalue(L, nameidx);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1) || hops == 16 || !lua_getmetatable(L, -2)) break;
    lua_getfield(L, -1, "__index");
    if (lua_type(L, -1) != LUA_TTABLE) {
      int call = lua_isfunction(L, -1);
      lua_pop(L, 3);
      if (call) {
        lua_pushcfunction(L, gettable_cf);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, nameidx);
        if (lua_pcall(L, 2, 1, 0) != 0) {
          lua_pop(L, 1);
          lua_pushnil(L);
        }
      } else {
        lua_pushnil(L);
      }
      break;
    }
    lua_replace(L, -4); /* the __index table replaces the table searched */
    lua_pop(L, 2);
  }
  lua_remove(L, -2);
}

typedef struct names_ctx { writer *w; int env, set, list, n; } names_ctx;

/* Is the value on top a standard library's: a C function or a module? */
static int is_std_value(writer *w) {
  lua_State *L = w->L;
  if (lua_iscfunction(L, -1)) return 1;
  int t = lua_type(L, -1);
  if ((t == LUA_TTABLE || t == LUA_TFUNCTION) && module_name(w, lua_gettop(L))) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

static void add_global(const char *s, size_t len, void *ud) {
  names_ctx *c = ud;
  lua_State *L = c->w->L;
  lua_pushlstring(L, s, len);
  lua_pushvalue(L, -1);
  lua_rawget(L, c->set);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, c->set);
  if (is_std_global(lua_tostring(L, -1))) {
    /* A standard name is left out if it holds its standard value now (a
     * script that replaces print later keeps the worker's own), else it is
     * flagged with a leading '\1' and checked again at send time. */
    get_global(L, c->env, lua_gettop(L));
    int std = is_std_value(c->w);
    lua_pop(L, 1);
    if (std) {
      lua_pop(L, 1);
      return;
    }
    lua_pushfstring(L, "\1%s", lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  lua_rawseti(L, c->list, 2 + c->n++);
}

static void found_gset(const char *s, size_t len, void *ud) { *(int *)ud = 1; }

/* Push the cache entry {bytecode, global names...} of the Lua function at
 * idx, making it on first use. */
static void function_entry(writer *w, int idx) {
  lua_State *L = w->L;
  lua_rawgeti(L, w->state, S_FCACHE);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lua_newtable(L);
  int entry = lua_gettop(L);
  lua_pushvalue(L, idx);
  px_marshal_dump_function(L);
  lua_rawseti(L, entry, 1);
  lua_pop(L, 1);
  if (px_marshal_gget_op >= 0) {
    lua_rawgeti(L, entry, 1);
    size_t len;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    lua_getfenv(L, idx);
    lua_newtable(L);
    names_ctx c = {w, lua_gettop(L) - 1, lua_gettop(L), entry, 0};
    if (lua_type(L, c.env) == LUA_TTABLE)
      px_marshal_scan_dump(bc, len, px_marshal_gget_op, NULL, add_global, &c);
    lua_pop(L, 3);
  }
  /* entry[0] = true: the function (or one nested in it) assigns globals,
   * so the receiver gives it an environment of its own. */
  int assigns = 1;
  if (px_marshal_gset_op >= 0) {
    lua_rawgeti(L, entry, 1);
    size_t len;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    assigns = 0;
    if (px_marshal_scan_dump(bc, len, px_marshal_gset_op, NULL, found_gset, &assigns) != 0) assigns = 1;
    lua_pop(L, 1);
  }
  if (assigns) {
    lua_pushboolean(L, 1);
    lua_rawseti(L, entry, 0);
  }
  lua_pushvalue(L, idx);
  lua_pushvalue(L, entry);
  lua_rawset(L, entry - 1);
  lua_remove(L, entry - 1);
}

static int encode_globals(writer *w, int fidx, int entry) {
  lua_State *L = w->L;
  int top = lua_gettop(L);
  if (reserve(w, 2)) return -1;
  size_t count_at = w->m->len;
  put_raw(w, &(uint16_t){0}, 2);
  uint16_t count = 0;
  lua_getfenv(L, fidx);
  int env = top + 1;
  if (lua_type(L, env) != LUA_TTABLE) {
    lua_settop(L, top);
    return 0;
  }
  for (int i = 2;; i++) {
    lua_rawgeti(L, entry, i);
    if (lua_type(L, -1) != LUA_TSTRING) break;
    size_t len;
    const char *name = lua_tolstring(L, -1, &len);
    int std = name[0] == '\1';
    if (std) {
      lua_pushlstring(L, name + 1, len - 1);
      lua_replace(L, -2);
      name = lua_tolstring(L, -1, &len);
    }
    int nameidx = lua_gettop(L);
    get_global(L, env, nameidx);
    int t = lua_type(L, -1);
    int skip = t == LUA_TNIL || (std && is_std_value(w));
    if (!skip) {
      if (count == UINT16_MAX) break;
      if (put_string(w, name, len)) return -1;
      path_push(w, P_GLOBAL);
      w->path[w->npath - 1].name = name;
      w->path[w->npath - 1].len = len;
      int rc = encode(w, lua_gettop(L));
      w->npath--;
      if (rc) return rc;
      count++;
    }
    lua_settop(L, env);
  }
  memcpy(w->m->data + count_at, &count, 2);
  if (count) w->env = 1;
  lua_settop(L, top);
  return 0;
}

static int encode_function(writer *w, int idx) {
  lua_State *L = w->L;
  const void *ptr = lua_topointer(L, idx);
  int64_t id = seen_get(w, ptr);
  if (id) return put_ref(w, id & 0xffffffff);
  if (module_name(w, idx)) {
    int rc = reserve(w, 1) ? -1 : (put_u8(w, T_MODULE), w->code = 1, encode(w, lua_gettop(L)));
    lua_pop(L, 1);
    return rc;
  }
  if (lua_iscfunction(L, idx)) {
    if (!cfunc_name(w, idx)) return unsendable(w, idx, NULL);
    int rc = reserve(w, 1) ? -1 : (put_u8(w, T_CFUNC), encode(w, lua_gettop(L)));
    lua_pop(L, 1);
    return rc;
  }
  if (enter(w, idx)) return -1;
  int fid = ++w->nobj, top = lua_gettop(L), rc = -1;
  seen_put(w, ptr, (int64_t)K_OBJ << 32 | fid);
  function_entry(w, idx);
  int entry = top + 1;
  lua_rawgeti(L, entry, 0);
  if (lua_toboolean(L, -1)) w->env = 1;
  lua_pop(L, 1);
  lua_rawgeti(L, entry, 1);
  size_t len;
  const char *bc = lua_tolstring(L, -1, &len);
  int64_t bcid = seen_get(w, bc);
  if (reserve(w, 1 + 10 + 10 + len)) goto done;
  put_u8(w, T_FUNC);
  w->code = 1;
  if (bcid) {
    put_varint(w, (uint64_t)(bcid & 0xffffffff));
    w->backrefs = 1;
  } else {
    put_varint(w, 0);
    put_varint(w, len);
    put_raw(w, bc, len);
    seen_put(w, bc, (int64_t)K_BC << 32 | ++w->nbc);
  }
  lua_pop(L, 1);
  if (encode_globals(w, idx, entry)) goto done;

  if (reserve(w, 1)) goto done;
  size_t nups_at = w->m->len;
  put_u8(w, 0);
  int n = 0;
  const char *name;
  while ((name = lua_getupvalue(L, idx, n + 1)) != NULL) {
    n++;
    void *uid = lua_upvalueid(L, idx, n);
    int64_t joined = uid ? seen_get(w, uid) : 0;
    if (joined) {
      if (reserve(w, 12)) goto done;
      put_u8(w, T_UPJOIN);
      put_varint(w, (uint64_t)(joined >> 8 & 0xffffff));
      put_u8(w, (unsigned)(joined & 0xff));
      w->backrefs = 1;
    } else {
      if (uid) seen_put(w, uid, (int64_t)K_UPVAL << 32 | (int64_t)fid << 8 | n);
      path_push(w, P_UPVAL);
      w->path[w->npath - 1].name = *name ? name : "?";
      w->path[w->npath - 1].len = *name ? strlen(name) : 1;
      int r = encode(w, lua_gettop(L));
      w->npath--;
      if (r) goto done;
    }
    lua_pop(L, 1);
  }
  if (n > 255) {
    unsendable(w, idx, "a function with too many upvalues");
    goto done;
  }
  w->m->data[nups_at] = (char)n;
  rc = 0;
done:
  lua_settop(L, top);
  w->depth--;
  return rc;
}

static int add_ref(writer *w, px_shared *obj) {
  px_msg *m = w->m;
  if (m->nrefs == m->refcap) {
    int cap = m->refcap ? m->refcap * 2 : 4;
    px_shared **r = realloc(m->refs, (size_t)cap * sizeof *r);
    if (!r) return oom(w);
    m->refs = r;
    m->refcap = cap;
  }
  if (reserve(w, 1)) return -1;
  px_shared_retain(obj);
  m->refs[m->nrefs++] = obj;
  put_u8(w, T_SHARED);
  return 0;
}

static int encode_shared(writer *w, int idx) {
  lua_State *L = w->L;
  const void *ptr = lua_topointer(L, idx);
  int64_t id = seen_get(w, ptr);
  if (id) return put_ref(w, id & 0xffffffff);
  px_shared *obj = NULL;
  if (lua_type(L, idx) == LUA_TUSERDATA) {
    if (module_name(w, idx)) {
      int rc = reserve(w, 1) ? -1 : (put_u8(w, T_MODULE), w->code = 1, encode(w, lua_gettop(L)));
      lua_pop(L, 1);
      return rc;
    }
    obj = px_shared_test(L, idx, NULL);
  } else {
    lua_pushlightuserdata(L, (void *)&px_cdata_hook_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isfunction(L, -1)) {
      lua_pushvalue(L, idx);
      if (lua_pcall(L, 1, 1, 0) == 0 && lua_type(L, -1) == LUA_TLIGHTUSERDATA)
        obj = lua_touserdata(L, -1);
      /* The hook is Lua, and replaceable: check what it hands over. */
      if (obj && !px_shared_known(obj)) obj = NULL;
    }
    lua_pop(L, 1);
    /* Not an array: a 64-bit integer (1LL, 0ULL) crosses by value. */
    if (!obj) {
      if (reserve(w, PX_SCALAR_NUM_MAX)) return -1;
      size_t n = px_scalar_put_cdata(L, idx, (uint8_t *)w->m->data + w->m->len);
      if (n) {
        w->m->len += n;
        return 0;
      }
    }
  }
  if (!obj) return unsendable(w, idx, NULL);
  seen_put(w, ptr, (int64_t)K_OBJ << 32 | ++w->nobj);
  return add_ref(w, obj);
}

static int encode(writer *w, int idx) {
  lua_State *L = w->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    if (reserve(w, 1)) return -1;
    put_u8(w, T_NIL);
    return 0;
  case LUA_TBOOLEAN:
    if (reserve(w, 1)) return -1;
    put_u8(w, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    return 0;
  case LUA_TNUMBER: return put_number(w, lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return put_string(w, s, len);
  }
  case LUA_TTABLE: return encode_table(w, idx);
  case LUA_TFUNCTION: return encode_function(w, idx);
  case LUA_TUSERDATA:
  case LUA_TCDATA_: return encode_shared(w, idx);
  case LUA_TLIGHTUSERDATA:
    /* NULL (cjson.null, the FFI's nil pointer as a light userdata) means
     * the same in every VM; any other address does not. */
    if (lua_touserdata(L, idx) != NULL) return unsendable(w, idx, NULL);
    if (reserve(w, 1)) return -1;
    put_u8(w, T_NULL);
    return 0;
  default: return unsendable(w, idx, NULL);
  }
}

int px_marshal(lua_State *L, int idx, int n, px_msg *m) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  size_t len0 = m->len;
  int nrefs0 = m->nrefs;
  int base = lua_gettop(L);
  /* On the C stack (about 9 KB): nothing to free if a Lua error (out of
   * memory) unwinds through here. */
  writer wr, *w = &wr;
  memset(w, 0, offsetof(writer, inline_seen));
  w->L = L;
  w->m = m;
  w->seen = w->inline_seen;
  w->seen_cap = sizeof w->inline_seen / sizeof *w->inline_seen;
  memset(w->inline_seen, 0, sizeof w->inline_seen);
  w->err[0] = 0;
  w->state = px_marshal_state(L);
  lua_pushnil(L);
  w->seen_ud = lua_gettop(L);

  int rc = reserve(w, 13);
  size_t flags_at = 0;
  if (!rc) {
    put_u8(w, SEG_MAGIC);
    put_u8(w, FORMAT_VERSION);
    flags_at = m->len;
    put_u8(w, 0);
    put_varint(w, (uint64_t)(n > 0 ? n : 0));
  }
  for (int i = 0; i < n && !rc; i++) {
    w->npath = 0;
    path_push(w, P_ARG);
    w->path[0].num = i + 1;
    rc = encode(w, idx + i);
  }
  if (!rc && w->backrefs) m->data[flags_at] |= SEG_BACKREFS;
  if (!rc && w->env) m->data[flags_at] |= SEG_ENV;
  lua_settop(L, base);
  if (!rc && w->code) px_paths_publish(L);
  if (rc) {
    for (int i = nrefs0; i < m->nrefs; i++) px_shared_release(m->refs[i]);
    m->nrefs = nrefs0;
    m->len = len0;
    lua_pushstring(L, w->err[0] ? w->err : "cannot send a value to another VM");
  }
  return rc;
}

