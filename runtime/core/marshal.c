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
 *   The reader stores them as globals of the receiving VM (last one wins).
 *   Values are read from the function's environment with rawget, then
 *   through its __index chain (see get_global).
 * - The writer caches the dump and the global names of each function in a
 *   weak table.  The reader caches, per distinct bytecode, a factory that
 *   makes fresh closures without reloading (see push_closure).
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
 * - Unsendable: coroutines, light userdata, userdata that are not parx
 *   shared objects, cdata the array hook does not claim, C functions not in
 *   a loaded module, nesting deeper than MAX_DEPTH.  The error names the
 *   path: "cannot send field 'x.y' of upvalue 'f' of argument #1 (a
 *   coroutine) to another VM".
 * - Numbers keep their bits; NaNs arrive as LuaJIT's canonical NaN (LuaJIT
 *   cannot hold others).  Strings are not deduplicated.
 * - Arrays of numbers are copied straight out of and into LuaJIT's table
 *   array part.  That reads the layout of LuaJIT's GCtab, which is not part
 *   of its API, so the layout is verified on real tables once per process
 *   (probe_layout); if the check fails every table goes through the API.
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

#include "px.h"

const char px_cdata_hook_key = 0;

#define FORMAT_VERSION 1
#define SEG_MAGIC 0xB7
#define SEG_BACKREFS 1
#define MAX_DEPTH 200
#define RUN_MIN 8 /* shortest run of numbers worth a DOUBLES block */
#define LUA_TCDATA_ 10 /* LuaJIT's type number for FFI cdata */

enum {
  T_NIL = 0x00, T_FALSE = 0x01, T_TRUE = 0x02,
  T_INT16 = 0x03, T_INT32 = 0x04, T_DOUBLE = 0x05,
  T_STR = 0x06, T_TABLE = 0x07, T_TABLE_MT = 0x08, T_DOUBLES = 0x09,
  T_REF = 0x0a, T_FUNC = 0x0b, T_UPJOIN = 0x0c, T_CFUNC = 0x0d,
  T_MODULE = 0x0e, T_SHARED = 0x0f,
  T_SHORTSTR = 0x40, T_TINYINT = 0x80
};

/* ------------------------------------------------------------------------
 * LuaJIT table internals (array part), verified at run time.
 * ---------------------------------------------------------------------- */

/* Offsets of GCtab.array, .asize and .hmask; 0 = unusable. */
typedef struct tab_layout { int array, asize, hmask; } tab_layout;
static tab_layout g_layout;
static _Atomic int g_layout_state; /* 0 unknown, 1 usable, -1 unusable */

/* A slot holds a plain number iff its bits are not a tagged value.  Tagged
 * values live in the NaN space above 0xfff98...; LuaJIT's canonical NaN
 * (0xfff8...) is below, so every number passes.  Holds in both GC64 and the
 * 32-bit-reference layout. */
static inline int slot_is_num(uint64_t v) { return v < 0xfff9800000000000ull; }
static inline int slot_is_nil(uint64_t v) { return (v >> 32) == 0xffffffffu; }

static inline uint64_t *layout_array(const tab_layout *lay, const void *t,
                                     uint32_t *asize) {
  const char *p = t;
  uint64_t *arr;
  memcpy(asize, p + lay->asize, sizeof *asize);
  if (lay->array == 16) {
    uint64_t ref;
    memcpy(&ref, p + 16, 8);
    arr = (uint64_t *)(uintptr_t)ref;
  } else {
    uint32_t ref;
    memcpy(&ref, p + lay->array, 4);
    arr = (uint64_t *)(uintptr_t)ref;
  }
  return arr;
}

/* The array part of the table t and its size, with the verified layout
 * (only when g_layout_state > 0). */
static inline uint64_t *tab_array(const void *t, uint32_t *asize) {
  return layout_array(&g_layout, t, asize);
}

/* Probes run in every VM's first use of the marshaller, possibly on several
 * threads at once; each computes on its own and publishes under this lock
 * (no Lua call is made while it is held). */
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

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

static void probe_layout(lua_State *L) {
  if (g_layout_state) return;
  static const tab_layout candidates[] = {{16, 48, 52}, {8, 24, 28}};
  const tab_layout *found = NULL;
  for (size_t i = 0; i < sizeof candidates / sizeof *candidates && !found; i++)
    if (layout_ok(L, &candidates[i])) found = &candidates[i];
  pthread_mutex_lock(&probe_lock);
  if (!g_layout_state) {
    if (found) g_layout = *found;
    g_layout_state = found ? 1 : -1; /* after g_layout: readers test this */
  }
  pthread_mutex_unlock(&probe_lock);
}

/* ------------------------------------------------------------------------
 * Bytecode scanning: the names of the globals a function reads (GGET).
 * ---------------------------------------------------------------------- */

static _Atomic int g_gget_op = -1; /* -2: scanning unavailable */

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

static int skip_ktabk(bcr *r) {
  uint32_t tp, v;
  if (uleb(r, &tp)) return -1;
  if (tp >= 5) return skip(r, tp - 5);            /* string */
  if (tp == 3) return uleb(r, &v);                /* int */
  if (tp == 4) return uleb(r, &v) || uleb(r, &v); /* num: lo, hi */
  return 0;                                       /* nil, false, true */
}

/* Calls found(name, len, ud) for every GGET of every prototype of a dump
 * made by lua_dump (not stripped or stripped).  `op` is the GGET opcode;
 * op < 0 reports the first instruction's opcode through *first instead.
 * Returns 0, or -1 if the dump is not understood. */
static int scan_dump(const uint8_t *bc, size_t len, int op, int *first,
                     void (*found)(const char *, size_t, void *), void *ud) {
  bcr r = {bc, bc + len};
  uint32_t flags, v;
  if (len < 5 || bc[0] != 0x1b || bc[1] != 'L' || bc[2] != 'J') return -1;
  r.p += 4;
  if (uleb(&r, &flags) || (flags & 1)) return -1; /* big-endian: not ours */
  int strip = (flags & 2) != 0;
  if (!strip && (uleb(&r, &v) || skip(&r, v))) return -1;
  for (;;) {
    uint32_t plen;
    if (uleb(&r, &plen)) return -1;
    if (plen == 0) return 0;
    if ((size_t)(r.end - r.p) < plen) return -1;
    bcr p = {r.p, r.p + plen};
    r.p += plen;
    uint32_t sizeuv, sizekgc, sizekn, sizebc, sizedbg = 0;
    if (skip(&p, 3)) return -1;
    sizeuv = *p.p++;
    if (uleb(&p, &sizekgc) || uleb(&p, &sizekn) || uleb(&p, &sizebc)) return -1;
    if (!strip) {
      if (uleb(&p, &sizedbg)) return -1;
      if (sizedbg && (uleb(&p, &v) || uleb(&p, &v))) return -1;
    }
    const uint8_t *ins = p.p;
    if (skip(&p, (size_t)sizebc * 4) || skip(&p, (size_t)sizeuv * 2)) return -1;
    if (op < 0) {
      if (sizebc == 0) return -1;
      *first = ins[0];
      return 0;
    }
    for (uint32_t i = 0; i < sizekgc; i++) {
      uint32_t tp;
      if (uleb(&p, &tp)) return -1;
      if (tp >= 5) { /* string constant: which GGETs name it? */
        uint32_t slen = tp - 5;
        const char *s = (const char *)p.p;
        if (skip(&p, slen)) return -1;
        uint32_t d = sizekgc - 1 - i;
        for (uint32_t k = 0; k < sizebc; k++) {
          const uint8_t *in = ins + 4 * k;
          if (in[0] == op && (uint32_t)(in[2] | in[3] << 8) == d) {
            found(s, slen, ud);
            break;
          }
        }
      } else if (tp == 1) { /* table template */
        uint32_t na, nh;
        if (uleb(&p, &na) || uleb(&p, &nh)) return -1;
        for (uint64_t k = 0; k < (uint64_t)na + 2 * (uint64_t)nh; k++)
          if (skip_ktabk(&p)) return -1;
      } else if (tp == 2 || tp == 3) { /* int64 / uint64 cdata */
        if (uleb(&p, &v) || uleb(&p, &v)) return -1;
      } else if (tp == 4) { /* complex */
        for (int k = 0; k < 4; k++)
          if (uleb(&p, &v)) return -1;
      } /* tp == 0: child prototype, nothing stored */
    }
  }
}

typedef struct probe_names { int n, ok; } probe_names;
static void probe_found(const char *s, size_t len, void *ud) {
  probe_names *pn = ud;
  if (len == 10 && !memcmp(s, "px_probe_a", 10)) pn->ok++;
  pn->n++;
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  luaL_addlstring((luaL_Buffer *)ud, p, sz);
  return 0;
}

/* Dump the Lua function on top of the stack; pushes the bytecode string. */
static void dump_function(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_dump(L, dump_writer, &b);
  luaL_pushresult(&b);
}

/* Find GGET's opcode by compiling a probe, and check that the scanner maps
 * its operands to the right names (the string constant must not be taken
 * for a global); otherwise globals are not scanned. */
static void probe_gget(lua_State *L) {
  if (g_gget_op != -1) return;
  int top = lua_gettop(L), op = -2, first = -1;
  if (luaL_loadstring(L, "return px_probe_a") == 0) {
    dump_function(L);
    size_t len;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    if (scan_dump(bc, len, -1, &first, NULL, NULL) != 0) first = -1;
  }
  lua_settop(L, top);
  if (first >= 0 &&
      luaL_loadstring(L, "local s = 'px_probe_s' return s, px_probe_a") == 0) {
    dump_function(L);
    size_t len;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    probe_names pn = {0, 0};
    if (scan_dump(bc, len, first, NULL, probe_found, &pn) == 0 && pn.n == 1 &&
        pn.ok == 1)
      op = first;
  }
  lua_settop(L, top);
  pthread_mutex_lock(&probe_lock);
  if (g_gget_op == -1) g_gget_op = op;
  pthread_mutex_unlock(&probe_lock);
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
  /* The opcodes, from what this LuaJIT's parser emits for a factory. */
  if (luaL_loadstring(L, "local a, b return function() return a, b end") == 0) {
    dump_function(L);
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
    dump_function(L);
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

/* ------------------------------------------------------------------------
 * Per-VM state: a registry table with the caches below.
 * ---------------------------------------------------------------------- */

static const char state_key = 0;
enum {
  S_CFUNCS = 1,  /* C function -> "module.field" (sender) */
  S_MODULES,     /* module value -> package.loaded name (sender) */
  S_FCACHE,      /* Lua function -> {bytecode, global names...} (weak keys) */
  S_BYNAME,      /* "module.field" -> C function (receiver) */
  S_DIRTY,       /* true: package.loaded may have new modules since the last
                    refresh of S_MODULES */
  S_TRACKED,     /* true: package.loaded's __newindex sets S_DIRTY */
  S_MODPTRS,     /* userdata modset: the addresses of S_MODULES' keys */
  S_PROTOS,      /* bytecode hash -> {factory, bytecode} (receiver) */
  S_NPROTOS,     /* entries in S_PROTOS */
  S_NSLOTS
};

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
static int push_state(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&state_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_type(L, -1) == LUA_TTABLE) return lua_gettop(L);
  lua_pop(L, 1);
  probe_layout(L);
  probe_gget(L);
  probe_factory(L);
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
  if (reserve(w, 9)) return -1;
  if (d >= -2147483648.0 && d <= 2147483647.0) {
    int32_t i = (int32_t)d;
    if ((double)i == d && !(i == 0 && signbit(d))) {
      if (i >= 0 && i < 128) {
        put_u8(w, T_TINYINT + (unsigned)i);
      } else if (i >= -32768 && i <= 32767) {
        int16_t s = (int16_t)i;
        put_u8(w, T_INT16);
        put_raw(w, &s, 2);
      } else {
        put_u8(w, T_INT32);
        put_raw(w, &i, 4);
      }
      return 0;
    }
  }
  put_u8(w, T_DOUBLE);
  put_raw(w, &d, 8);
  return 0;
}

static int put_string(writer *w, const char *s, size_t len) {
  if (reserve(w, len + 11)) return -1;
  if (len < 64) {
    put_u8(w, T_SHORTSTR + (unsigned)len);
  } else {
    put_u8(w, T_STR);
    put_varint(w, len);
  }
  put_raw(w, s, len);
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
    if (g_layout_state > 0) {
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
    int rc = reserve(w, 1) ? -1 : (put_u8(w, T_MODULE), encode(w, lua_gettop(L)));
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
  if (g_layout_state > 0) {
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
  dump_function(L);
  lua_rawseti(L, entry, 1);
  lua_pop(L, 1);
  if (g_gget_op >= 0) {
    lua_rawgeti(L, entry, 1);
    size_t len;
    const uint8_t *bc = (const uint8_t *)lua_tolstring(L, -1, &len);
    lua_getfenv(L, idx);
    lua_newtable(L);
    names_ctx c = {w, lua_gettop(L) - 1, lua_gettop(L), entry, 0};
    if (lua_type(L, c.env) == LUA_TTABLE)
      scan_dump(bc, len, g_gget_op, NULL, add_global, &c);
    lua_pop(L, 3);
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
  lua_settop(L, top);
  return 0;
}

static int encode_function(writer *w, int idx) {
  lua_State *L = w->L;
  const void *ptr = lua_topointer(L, idx);
  int64_t id = seen_get(w, ptr);
  if (id) return put_ref(w, id & 0xffffffff);
  if (module_name(w, idx)) {
    int rc = reserve(w, 1) ? -1 : (put_u8(w, T_MODULE), encode(w, lua_gettop(L)));
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
  lua_rawgeti(L, entry, 1);
  size_t len;
  const char *bc = lua_tolstring(L, -1, &len);
  int64_t bcid = seen_get(w, bc);
  if (reserve(w, 1 + 10 + 10 + len)) goto done;
  put_u8(w, T_FUNC);
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
      int rc = reserve(w, 1) ? -1 : (put_u8(w, T_MODULE), encode(w, lua_gettop(L)));
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
    }
    lua_pop(L, 1);
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
  w->state = push_state(L);
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
  lua_settop(L, base);
  if (rc) {
    for (int i = nrefs0; i < m->nrefs; i++) px_shared_release(m->refs[i]);
    m->nrefs = nrefs0;
    m->len = len0;
    lua_pushstring(L, w->err[0] ? w->err : "cannot send a value to another VM");
  }
  return rc;
}

/* ------------------------------------------------------------------------
 * Reader.
 * ---------------------------------------------------------------------- */

typedef struct reader {
  lua_State *L;
  px_msg *m;
  const uint8_t *base, *p, *end;
  int state;
  int refs; /* stack slot of the id table; 0 when the segment needs none */
  int nobj, nbc, depth, next_ref;
  char err[512];
} reader;

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

/* Decode a value that must be a string; leaves it on the stack. */
static int decode_string(reader *r) {
  if (decode(r)) return -1;
  if (lua_type(r->L, -1) != LUA_TSTRING) return bad(r, "expected a name");
  return 0;
}

/* Push package.loaded[name] (the name is on top, replaced), requiring the
 * module if needed. */
static int resolve_module(reader *r) {
  lua_State *L = r->L;
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
      uint32_t asize = 0;
      uint64_t *arr = g_layout_state > 0 ? tab_array(lua_topointer(L, t), &asize) : NULL;
      if (arr && i + run <= asize) {
        for (uint32_t k = 0; k < run; k++) {
          uint64_t v;
          double d;
          memcpy(&v, r->p + 8 * k, 8);
          memcpy(&d, &v, 8);
          if (d != d) v = 0xfff8000000000000ull; /* LuaJIT's canonical NaN */
          arr[i + k] = v;
        }
      } else {
        for (uint32_t k = 0; k < run; k++) {
          double d;
          memcpy(&d, r->p + 8 * k, 8);
          lua_pushnumber(L, d);
          lua_rawseti(L, t, (int)(i + k));
        }
      }
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

static int decode_table(reader *r, int with_mt) {
  lua_State *L = r->L;
  int top = lua_gettop(L);
  if (with_mt) {
    if (decode_string(r) || resolve_module(r)) return -1;
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
  /* Size hints only: LuaJIT raises above 2^27 array slots or 2^26 hash
   * slots, and the fast path below checks the real array size. */
  lua_createtable(L, narr > (1 << 26) ? 1 << 26 : (int)narr,
                  nhash > (1 << 24) ? 1 << 24 : (int)nhash);
  int t = lua_gettop(L);
  reg(r, t);
  if (decode_items(r, t, narr)) return -1;
  for (uint32_t i = 0; i < nhash; i++) {
    if (decode(r) || decode(r)) return -1;
    int kt = lua_type(L, -2);
    if (kt == LUA_TNIL || (kt == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2)))
      return bad(r, "bad table key");
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

#define MAX_PROTOS 256 /* factories kept per VM; the cache restarts when full */

/* Push a fresh closure for bytecode bc from the VM's factory cache, making
 * the factory on first use; 0 if there is no factory (load bc instead). */
static int push_closure(reader *r, const uint8_t *bc, size_t len) {
  lua_State *L = r->L;
  if (g_factory_state <= 0) return 0;
  lua_Number key = (lua_Number)(bc_hash(bc, len) >> 11);
  lua_rawgeti(L, r->state, S_PROTOS);
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
  lua_rawgeti(L, r->state, S_NPROTOS);
  lua_Number n = lua_tonumber(L, -1) + 1;
  lua_pop(L, 1);
  if (n > MAX_PROTOS) {
    lua_newtable(L);
    lua_replace(L, cache);
    lua_pushvalue(L, cache);
    lua_rawseti(L, r->state, S_PROTOS);
    n = 1;
  }
  lua_pushnumber(L, n);
  lua_rawseti(L, r->state, S_NPROTOS);
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

static int decode_function(reader *r) {
  lua_State *L = r->L;
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
  if (push_closure(r, bc, (size_t)len)) {
    /* a fresh closure from the cached factory */
  } else if (luaL_loadbuffer(L, (const char *)bc, (size_t)len, "=?") != 0) {
    snprintf(r->err, sizeof r->err, "cannot load a function here: %s",
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    return -1;
  }
  int f = lua_gettop(L);
  reg(r, f);

  NEED(r, 2);
  uint16_t nglobals;
  memcpy(&nglobals, r->p, 2);
  r->p += 2;
  if (nglobals) {
    lua_getfenv(L, f);
    int env = f + 1;
    for (int i = 0; i < nglobals; i++) {
      if (decode_string(r) || decode(r)) return -1;
      if (lua_type(L, env) == LUA_TTABLE) lua_rawset(L, env);
      else lua_pop(L, 2);
    }
    lua_pop(L, 1);
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
  unsigned tag = *r->p++;
  if (tag >= T_TINYINT) {
    lua_pushnumber(L, (double)(tag - T_TINYINT));
    return 0;
  }
  if (tag >= T_SHORTSTR) {
    size_t len = tag - T_SHORTSTR;
    NEED(r, len);
    lua_pushlstring(L, (const char *)r->p, len);
    r->p += len;
    return 0;
  }
  switch (tag) {
  case T_NIL: lua_pushnil(L); return 0;
  case T_FALSE: lua_pushboolean(L, 0); return 0;
  case T_TRUE: lua_pushboolean(L, 1); return 0;
  case T_INT16: {
    int16_t v;
    NEED(r, 2);
    memcpy(&v, r->p, 2);
    r->p += 2;
    lua_pushnumber(L, v);
    return 0;
  }
  case T_INT32: {
    int32_t v;
    NEED(r, 4);
    memcpy(&v, r->p, 4);
    r->p += 4;
    lua_pushnumber(L, v);
    return 0;
  }
  case T_DOUBLE: {
    double v;
    NEED(r, 8);
    memcpy(&v, r->p, 8);
    r->p += 8;
    lua_pushnumber(L, v);
    return 0;
  }
  case T_STR: {
    uint64_t len;
    if (get_varint(r, &len)) return -1;
    NEED(r, len);
    lua_pushlstring(L, (const char *)r->p, (size_t)len);
    r->p += len;
    return 0;
  }
  case T_REF: {
    uint64_t id;
    if (get_varint(r, &id)) return -1;
    if (!r->refs || id == 0 || id > (uint64_t)r->nobj) return bad(r, "bad reference");
    lua_rawgeti(L, r->refs, (int)id);
    return 0;
  }
  case T_CFUNC:
    if (!lua_checkstack(L, 8)) return bad(r, "stack overflow");
    return decode_string(r) || resolve_cfunc(r) ? -1 : 0;
  case T_MODULE:
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

int px_unmarshal(lua_State *L, px_msg *m) {
  int base = lua_gettop(L), total = 0, rc = 0;
  reader rd, *r = &rd;
  memset(r, 0, sizeof *r);
  r->L = L;
  r->m = m;
  r->base = (const uint8_t *)m->data;
  r->p = r->base;
  r->end = r->base + m->len;
  r->state = push_state(L);
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
    int seg = lua_gettop(L);
    if (flags & SEG_BACKREFS) {
      lua_newtable(L);
      r->refs = lua_gettop(L);
    }
    for (uint64_t i = 0; i < n && !rc; i++) rc = decode(r);
    if (rc) break;
    if (r->refs) lua_remove(L, r->refs);
    (void)seg;
    total += (int)n;
  }
  if (!rc && r->next_ref != m->nrefs) rc = bad(r, "unused shared references");
  if (rc) {
    lua_settop(L, base);
    lua_pushstring(L, r->err[0] ? r->err : "cannot receive a value");
  } else {
    /* The state table sits below the values. */
    lua_remove(L, base + 1);
  }
  /* Every reference not handed to a proxy is dropped. */
  for (int i = r->next_ref; i < m->nrefs; i++) px_shared_release(m->refs[i]);
  m->nrefs = 0;
  return rc ? -1 : total;
}
