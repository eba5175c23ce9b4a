/*
 * marshal.h -- private to the marshaller, one concern per file:
 *   marshal.c          the writer (px_marshal) and the wire format's description
 *   marshal_state.c    the per-VM state table, modules and C functions by name
 *   marshal_path.c     error messages that name the unsendable value's path
 *   marshal_names.c    which of a module's names crosses
 *   marshal_mt.c       metatables by name (a module, a path from one)
 *   marshal_globals.c  the globals a function takes along
 *   unmarshal.c        the reader (px_unmarshal, px_unmarshal_data)
 *   marshal_lj.c       what depends on LuaJIT's internals, each with a fallback
 *   marshal_load.c     loading received bytecode (a stub in the fuzz build)
 *   marshal_shape.c    the reader's records by shape (template tables)
 *   scalar.h/.c        the encoding of scalars, shared with channels and the pool
 */
#ifndef PX_MARSHAL_H
#define PX_MARSHAL_H

#include <stdint.h>
#include <string.h>

#include "px.h"
#include "scalar.h"

#define FORMAT_VERSION 1
#define SEG_MAGIC 0xB7
#define SEG_BACKREFS 1
#define SEG_ENV 2 /* functions here read sent globals or assign globals */
#define MAX_DEPTH 200
#define RUN_MIN 8 /* shortest run of numbers worth a DOUBLES block */
/* Slots of the per-VM state table (a registry table, px_marshal_state). */
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
  S_ENVMT,       /* {__index = _G}: metatable of received functions' envs */
  S_SCAN,        /* scan(fn) -> global names read, assigns? (jit.util);
                    false: jit.util is not usable here */
  S_SEEN,        /* a spare userdata for the writer's `seen` (marshal.c) */
  S_NSLOTS
};


/* ---- the writer's state, shared by its files -------------------------- */

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

static inline uint64_t ptr_hash(const void *p) {
  return ((uint64_t)(uintptr_t)p >> 3) * 0x9E3779B97F4A7C15ull;
}

static inline void path_push(writer *w, int kind) {
  path_seg *s = &w->path[w->npath++];
  s->kind = kind;
  s->keytype = LUA_TNIL;
  s->keyidx = 0;
}

static inline void path_key(writer *w, int kind, int keyidx) {
  path_push(w, kind);
  w->path[w->npath - 1].keyidx = keyidx;
}

/* ---- marshal_state.c: the per-VM state, modules and C functions by name */

/* Push this VM's state table (made on first use) and return its index. */
int px_marshal_state(lua_State *L);
/* Is name one of the standard globals (base functions, libraries, parx)? */
int px_marshal_is_std_global(const char *name);
/* If the value at idx is a module (a value of package.loaded), push its
 * name and return 1; else 0. */
int px_marshal_module_name(writer *w, int idx);
/* Might the object at p be a module?  0: it is not (no Lua is touched);
 * 1: px_marshal_module_name decides. */
int px_marshal_maybe_module(writer *w, const void *p);
/* If the C function at idx is a field of a loaded module, push its
 * "module.field" name and return 1; else 0. */
int px_marshal_cfunc_name(writer *w, int idx);

/* ---- marshal_names.c: the names values cross by ----------------------- */

/* Is the module name at a a better name to send than the one at b (the
 * same module under two names)?  Fewest dots, shortest, byte order. */
int px_marshal_better_name(lua_State *L, int a, int b);
/* ---- marshal_mt.c: metatables by name ---------------------------------- */

/* The name the metatable at mt crosses by, pushed: 1; or -1 (w->err
 * says why: it has none). */
int px_marshal_mt_name(writer *w, int mt);
/* The receiver, around resolving a metatable's module (unmarshal.c): the
 * name on top becomes the path (or nil) and the module's name; after
 * that module replaced its name, walk leaves the metatable (0), or -1
 * with err set. */
int px_marshal_mt_split(lua_State *L);
int px_marshal_mt_walk(lua_State *L, char *err, size_t errlen);

/* ---- marshal_path.c: errors that name the value's path ---------------- */

/* Write "cannot send <path> (<why, or what the value at idx is>) to
 * another VM" into w->err; returns -1. */
int px_marshal_unsendable(writer *w, int idx, const char *why);

/* ---- marshal_globals.c: the globals a function takes along ------------ */

/* Push env[name] (name at nameidx): rawget, then along __index. */
void px_marshal_get_global(lua_State *L, int env, int nameidx);
/* Is the value on top a standard library's?  (pops a pushed name) */
int px_marshal_is_std_value(writer *w);
/* Push the cache entry {bytecode, global names...} of the Lua function at
 * idx, making it on first use ([0] = true: it assigns globals). */
void px_marshal_function_entry(writer *w, int idx);

/* ---- marshal_lj.c: LuaJIT internals, each verified once per process --- */

/* Offsets of GCtab.array, .asize and .hmask; 0 = unusable.  The rest is
 * the layout of flat tables (see px_marshal_flat_state): GCtab.node and
 * .metatable, GCstr's length and data, how a slot holds a GC object, and
 * the type tags of strings, tables and booleans as tv_tag returns them. */
typedef struct tab_layout {
  int array, asize, hmask;
  int node, meta, str_len, str_data, gc64;
  uint32_t tag_str, tag_tab, tag_true, tag_false;
} tab_layout;
extern tab_layout px_marshal_layout;
extern _Atomic int px_marshal_layout_state; /* 0 unknown, 1 usable, -1 unusable */
/* The flat-table fields of px_marshal_layout: 1 verified, -1 unusable (read
 * only once px_marshal_layout_state > 0). */
extern _Atomic int px_marshal_flat_state;

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
 * (only when px_marshal_layout_state > 0). */
static inline uint64_t *tab_array(const void *t, uint32_t *asize) {
  return layout_array(&px_marshal_layout, t, asize);
}

/* ---- flat tables: slots read straight from LuaJIT's GCtab and GCstr.
 * A hash node is {TValue val; TValue key; next (and freetop)}: 24 bytes
 * in both layouts. */
typedef struct tab_node { uint64_t val, key, next; } tab_node;

static inline uint32_t lay_tag(const tab_layout *lay, uint64_t v) {
  return lay->gc64 ? (uint32_t)(v >> 47) : (uint32_t)(v >> 32);
}
static inline const char *lay_gc(const tab_layout *lay, uint64_t v) {
  return (const char *)(uintptr_t)(lay->gc64 ? v & 0x7fffffffffffull : v & 0xffffffffull);
}
/* The bytes of the string slot v (its tag is tag_str). */
static inline const char *lay_str(const tab_layout *lay, uint64_t v, size_t *len) {
  const char *s = lay_gc(lay, v);
  uint32_t n;
  memcpy(&n, s + lay->str_len, 4);
  *len = n;
  return s + lay->str_data;
}
static inline uint64_t lay_ref(const tab_layout *lay, const void *t, int off) {
  const char *p = (const char *)t + off;
  if (lay->gc64) {
    uint64_t ref;
    memcpy(&ref, p, 8);
    return ref;
  }
  uint32_t ref;
  memcpy(&ref, p, 4);
  return ref;
}
static inline const tab_node *lay_nodes(const tab_layout *lay, const void *t, uint32_t *hmask) {
  memcpy(hmask, (const char *)t + lay->hmask, 4);
  return (const tab_node *)(uintptr_t)lay_ref(lay, t, lay->node);
}

/* The same with the verified layout (px_marshal_flat_state > 0). */
static inline uint32_t tv_tag(uint64_t v) { return lay_tag(&px_marshal_layout, v); }
static inline const char *tv_gc(uint64_t v) { return lay_gc(&px_marshal_layout, v); }
static inline const char *tv_str(uint64_t v, size_t *len) {
  return lay_str(&px_marshal_layout, v, len);
}
static inline const tab_node *tab_nodes(const void *t, uint32_t *hmask) {
  return lay_nodes(&px_marshal_layout, t, hmask);
}
static inline int tab_has_meta(const void *t) {
  return lay_ref(&px_marshal_layout, t, px_marshal_layout.meta) != 0;
}

void px_marshal_probe(lua_State *L);
/* Which fast paths the probes found usable: 1 the table layout, 2 closure
 * factories. */
int px_marshal_fast_paths(void);
/* Replace the function on top of L with its string.dump. */
void px_marshal_dump_function(lua_State *L);
/* Push a fresh closure of bytecode bc from the VM's factory cache (state:
 * the state table's index); 0, with nothing pushed, if factories are not
 * usable here (load bc instead). */
int px_marshal_push_closure(lua_State *L, int state, const uint8_t *bc, size_t len);

/* ---- marshal_shape.c: records by shape (LuaJIT's hash nodes, verified) */

#define SHAPE_KEYS 16 /* most keys a shape holds */
/* A template: a table with the keys of a shape, made by the reader and
 * anchored by it for the message; slot[i]: the node of the i-th key. */
typedef struct px_shape {
  const void *tmpl;
  const tab_node *node;
  uint32_t hmask, nkeys;
  uint32_t slot[SHAPE_KEYS];
  const uint8_t *key[SHAPE_KEYS]; /* the keys in the message: tag, bytes */
} px_shape;
/* 1 usable, -1 not (the reader takes the C API), 0 not checked yet. */
extern _Atomic int px_shape_state;
/* Check once per process (after px_marshal_probe). */
void px_shape_probe(lua_State *L);
/* s->nkeys set, the template at tmpl (made with lua_createtable(L, 0,
 * nkeys) and the keys rawset in order), its keys at firstkey...: fill in
 * the rest of s.  0, or -1 if a key is not found. */
int px_shape_init(lua_State *L, px_shape *s, int tmpl, int firstkey);
/* Has the template kept its nodes since px_shape_init? */
int px_shape_usable(const px_shape *s);
/* Push a new table of shape s holding vals[i] (slot bits, below) at its
 * i-th key.  Allocates nothing after the table: vals' strings must be
 * anchored (on the stack) before the call. */
void px_shape_fill(lua_State *L, const px_shape *s, const uint64_t *vals);
/* The slot bits of a boolean, and of the string whose lua_tolstring is
 * data. */
uint64_t px_shape_bool(int b);
uint64_t px_shape_str(const char *data);

/* ---- marshal_load.c (replaced by fuzz/load_stub.c in the fuzz build) -- */

/* Push a closure of the received bytecode bc (trusted messages only:
 * LuaJIT does not verify bytecode).  Returns 0, or -1 with a message in
 * err and nothing pushed. */
int px_marshal_load_function(lua_State *L, int state, const uint8_t *bc, size_t len,
                        char *err, size_t errlen);

#endif
