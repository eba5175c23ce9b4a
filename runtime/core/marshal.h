/*
 * marshal.h -- private to the marshaller (marshal.c writes, unmarshal.c
 * reads, marshal_lj.c holds what depends on LuaJIT's internals).  The wire
 * format is documented at the top of marshal.c.
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
  S_NSLOTS
};

/* Push this VM's state table (made on first use) and return its index. */
int px_marshal_state(lua_State *L);

/* ---- marshal_lj.c: LuaJIT internals, each verified once per process --- */

/* Offsets of GCtab.array, .asize and .hmask; 0 = unusable. */
typedef struct tab_layout { int array, asize, hmask; } tab_layout;
extern tab_layout px_marshal_layout;
extern _Atomic int px_marshal_layout_state; /* 0 unknown, 1 usable, -1 unusable */

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

void px_marshal_probe(lua_State *L);
/* The GGET opcode number: -1 not probed yet, -2 bytecode scanning unusable. */
extern _Atomic int px_marshal_gget_op;
/* The GSET opcode number, the same way (-2: assume every function assigns). */
extern _Atomic int px_marshal_gset_op;
/* Call found(name) for the operand of every `op` instruction in the dumped
 * bytecode (nested prototypes included); -1 if the dump cannot be parsed. */
int px_marshal_scan_dump(const uint8_t *bc, size_t len, int op, int *first,
                    void (*found)(const char *, size_t, void *), void *ud);
/* Replace the function on top of L with its string.dump. */
void px_marshal_dump_function(lua_State *L);
/* Push a fresh closure of bytecode bc from the VM's factory cache (state:
 * the state table's index); 0, with nothing pushed, if factories are not
 * usable here (load bc instead). */
int px_marshal_push_closure(lua_State *L, int state, const uint8_t *bc, size_t len);

/* ---- marshal_load.c (replaced by fuzz/load_stub.c in the fuzz build) -- */

/* Push a closure of the received bytecode bc (trusted messages only:
 * LuaJIT does not verify bytecode).  Returns 0, or -1 with a message in
 * err and nothing pushed. */
int px_marshal_load_function(lua_State *L, int state, const uint8_t *bc, size_t len,
                        char *err, size_t errlen);

#endif
