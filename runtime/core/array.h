/*
 * array.h -- shared typed arrays, a core type: what parx.array
 * (mod/array.c and lua/parx/array.lua) binds to Lua and what other modules
 * use (the GPU module reads and writes host arrays through this).
 *
 * An array is a px_shared object: a malloc'd header plus a 64-byte aligned
 * buffer of n elements, row-major.  Lua sees it as an FFI cdata (see
 * lua/parx/array.lua); the marshaller sends it by reference.
 */
#ifndef PX_ARRAY_H
#define PX_ARRAY_H

#include "px.h"

#define PX_ARRAY_MAXDIM 8

/* lua.h of LuaJIT has no name for it, but lua_type() returns 10 for cdata. */
#define PX_LUA_TCDATA 10

/* The order is part of the FFI declaration in lua/parx/array.lua. */
typedef enum px_dtype {
  PX_INT8, PX_INT16, PX_INT32, PX_INT64,
  PX_UINT8, PX_UINT16, PX_UINT32, PX_UINT64,
  PX_FLOAT16, PX_BFLOAT16, PX_FLOAT32, PX_FLOAT64,
  PX_NDTYPES
} px_dtype;

typedef struct px_array {
  px_shared hdr;   /* first: shared-object header (type, refs) */
  void *data;      /* 64-byte aligned, n * px_dtype_size(dtype) bytes */
  int64_t n;       /* element count (product of shape) */
  int32_t dtype;   /* px_dtype */
  int32_t ndim;    /* 1..PX_ARRAY_MAXDIM */
  int64_t shape[PX_ARRAY_MAXDIM];
} px_array;

size_t px_dtype_size(int dtype);
const char *px_dtype_name(int dtype);
int px_dtype_from_name(const char *name); /* -1 if unknown */

/* A zero-filled array; NULL if out of memory or the shape is invalid
 * (checked by the caller). */
px_array *px_array_new(int dtype, int ndim, const int64_t *shape);
/* The same with its bytes left as they are, for internal use where every
 * element is written before anyone reads it (a received message, a copy, a
 * download, gpu.rand); parx.array() stays zero-filled, as documented. */
px_array *px_array_new_uninit(int dtype, int ndim, const int64_t *shape);
/* Ask for huge pages for a fresh buffer of len bytes (from 4 MB): both
 * constructors do for an array's data. */
void px_advise_huge(void *p, size_t len);

/* Push the Lua face of a (takes over one reference).  Loads parx.array in
 * L's VM if needed; may raise (out of memory), releasing the reference
 * first. */
void px_array_push(lua_State *L, px_array *a);
/* The array at idx (raises a type error if it is not one); no new ref.
 * Both call the Lua cdata hook of L's VM, so use them from Lua C functions
 * on the VM's thread (not from callbacks). */
px_array *px_array_check(lua_State *L, int idx);
px_array *px_array_test(lua_State *L, int idx); /* NULL if not an array */

/* float16 / bfloat16 <-> float, round to nearest even. */
uint16_t px_f32_to_f16(float f);
float px_f16_to_f32(uint16_t h);
uint16_t px_f32_to_bf16(float f);
float px_bf16_to_f32(uint16_t h);

/* Number of live arrays in the process (tests check frees). */
long px_array_live(void);
/* Number of arrays made zero-filled so far, in the process (tests check
 * that the fill-everything constructors skip the zeroing). */
long px_array_zero_filled(void);
/* 1 if p is a live array (decided without reading *p). */
int px_array_holds(const void *p);
/* Register the array type (px_shared_register); once per process, any
 * thread, idempotent.  The binding's open function calls it. */
void px_array_register_type(void);
/* Pop the Lua face's constructor (light userdata -> array cdata holding
 * the reference) and keep it for px_array_push in L's VM. */
void px_array_set_ctor(lua_State *L);

/* ---- for the Lua face (lua/parx/array.lua calls these through the FFI,
 * by the function table that mod/array.c exports) -------------------- */

/* Lua numbers are doubles: converting through float first would round
 * twice, so the Lua face uses these direct, correctly rounded ones. */
uint16_t px_f64_to_f16(double d);
double px_f16_to_f64(uint16_t h);
uint16_t px_f64_to_bf16(double d);
double px_bf16_to_f64(uint16_t h);
/* 65536-entry decoding table (0: float16, 1: bfloat16), value = table[bits];
 * built once per process, never freed. */
const float *px_half_table(int which);

/* Drop one reference (the finalizer of every Lua cdata); take one. */
void px_array_release(px_array *a);
void px_array_retain(px_array *a);
/* Set every element to the element-sized bit pattern at elem. */
void px_array_fill_bytes(px_array *a, const void *elem);

/* Atomic operations on integer elements (0-based off, checked by the
 * caller).  add returns the new value and wraps on overflow; cas compares
 * and stores bit patterns truncated to the element size, 1 if it swapped;
 * get is an atomic load (sign- or zero-extended). */
int64_t px_array_atomic_add(px_array *a, int64_t off, int64_t delta);
int px_array_atomic_cas(px_array *a, int64_t off, int64_t expected,
                        int64_t desired);
int64_t px_array_atomic_get(px_array *a, int64_t off);

#endif
