/*
 * array.c -- the array, a core type (array.h): dtypes, allocation,
 * reference counting, the set of live arrays, half-precision conversions,
 * and its Lua face pushed, tested and checked for modules (the GPU module
 * reads and writes host arrays through this).  The binding that makes
 * parx.array (the FFI function table, the constructor's registration) is
 * mod/array.c.
 *
 * The Lua face (lua/parx/array.lua) is FFI cdata: a pointer to px_array
 * with an ffi.metatype, finalized by px_array_release.
 */
#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "array.h"

static const struct {
  const char *name;
  size_t size;
} dtypes[PX_NDTYPES] = {
  [PX_INT8] = {"int8", 1},       [PX_INT16] = {"int16", 2},
  [PX_INT32] = {"int32", 4},     [PX_INT64] = {"int64", 8},
  [PX_UINT8] = {"uint8", 1},     [PX_UINT16] = {"uint16", 2},
  [PX_UINT32] = {"uint32", 4},   [PX_UINT64] = {"uint64", 8},
  [PX_FLOAT16] = {"float16", 2}, [PX_BFLOAT16] = {"bfloat16", 2},
  [PX_FLOAT32] = {"float32", 4}, [PX_FLOAT64] = {"float64", 8},
};

size_t px_dtype_size(int dtype) {
  return dtype >= 0 && dtype < PX_NDTYPES ? dtypes[dtype].size : 0;
}

const char *px_dtype_name(int dtype) {
  return dtype >= 0 && dtype < PX_NDTYPES ? dtypes[dtype].name : "?";
}

int px_dtype_from_name(const char *name) {
  if (!name) return -1;
  for (int i = 0; i < PX_NDTYPES; i++)
    if (strcmp(name, dtypes[i].name) == 0) return i;
  return -1;
}

/* ------------------------------------------------------------------------
 * Allocation and lifetime.
 * ---------------------------------------------------------------------- */

static atomic_long live_arrays;

/* Arrays made zero-filled (px_array_new), for the tests that check that
 * the constructors which write every element skip the zeroing. */
static atomic_long zero_filled_arrays;

long px_array_zero_filled(void) {
  return atomic_load_explicit(&zero_filled_arrays, memory_order_relaxed);
}

long px_array_live(void) {
  return atomic_load_explicit(&live_arrays, memory_order_relaxed);
}

/* The set of live arrays (their addresses), so that a pointer handed to
 * the marshaller by the cdata hook is checked against what this file
 * allocated: the FFI can cast any memory to an array's type (a forged
 * struct of the same layout, a dangling copy of a freed array), and
 * sending that would hand garbage to another VM.  An open-addressing hash
 * set with linear probing and backward-shift deletion, under one mutex;
 * touched once per allocation, free and send of an array. */
static pthread_mutex_t set_lock = PTHREAD_MUTEX_INITIALIZER;
static px_array **set_slots; /* set_cap slots, NULL = empty */
static size_t set_cap, set_count;

static size_t set_hash(const px_array *a, size_t mask) {
  uint64_t h = (uint64_t)(uintptr_t)a;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return (size_t)h & mask;
}

/* set_lock held.  Returns -1 when out of memory. */
static int set_grow(void) {
  size_t cap = set_cap ? set_cap * 2 : 64;
  px_array **slots = calloc(cap, sizeof *slots);
  if (!slots) return -1;
  for (size_t i = 0; i < set_cap; i++) {
    px_array *a = set_slots[i];
    if (!a) continue;
    size_t j = set_hash(a, cap - 1);
    while (slots[j]) j = (j + 1) & (cap - 1);
    slots[j] = a;
  }
  free(set_slots);
  set_slots = slots;
  set_cap = cap;
  return 0;
}

static int set_add(px_array *a) {
  pthread_mutex_lock(&set_lock);
  /* mutex held from here: the load factor stays at most 1/2 */
  if ((set_count + 1) * 2 > set_cap && set_grow() != 0) {
    pthread_mutex_unlock(&set_lock);
    return -1;
  }
  size_t mask = set_cap - 1, i = set_hash(a, mask);
  while (set_slots[i]) i = (i + 1) & mask;
  set_slots[i] = a;
  set_count++;
  pthread_mutex_unlock(&set_lock);
  return 0;
}

/* set_lock held: the slot of a, or SIZE_MAX. */
static size_t set_find(const px_array *a) {
  if (!set_cap) return SIZE_MAX;
  size_t mask = set_cap - 1;
  for (size_t i = set_hash(a, mask); set_slots[i]; i = (i + 1) & mask)
    if (set_slots[i] == a) return i;
  return SIZE_MAX;
}

static void set_remove(px_array *a) {
  pthread_mutex_lock(&set_lock);
  size_t i = set_find(a);
  assert(i != SIZE_MAX);
  if (i != SIZE_MAX) {
    /* Backward-shift deletion: move up every later entry of the probe run
     * whose home slot is not cyclically within (i, j]. */
    size_t mask = set_cap - 1;
    set_slots[i] = NULL;
    for (size_t j = (i + 1) & mask; set_slots[j]; j = (j + 1) & mask) {
      size_t home = set_hash(set_slots[j], mask);
      int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (stays) continue;
      set_slots[i] = set_slots[j];
      set_slots[j] = NULL;
      i = j;
    }
    set_count--;
  }
  pthread_mutex_unlock(&set_lock);
}

/* Whether p is an array allocated here and still referenced. */
int px_array_holds(const void *p) {
  pthread_mutex_lock(&set_lock);
  const px_array *a = p;
  int live = set_find(a) != SIZE_MAX &&
             atomic_load_explicit(&a->hdr.refs, memory_order_acquire) > 0;
  pthread_mutex_unlock(&set_lock);
  return live;
}

static void array_free(px_shared *obj) {
  px_array *a = (px_array *)obj;
  set_remove(a);
  free(a->data);
  free(a);
  atomic_fetch_sub_explicit(&live_arrays, 1, memory_order_relaxed);
}

static void array_push_shared(lua_State *L, px_shared *obj);

static px_shared_type array_type = {
  .name = "parx.array",
  .free = array_free,
  .push = array_push_shared,
};

/* Arrays can be made in C (the GPU module) before any VM opened this
 * module, so registration happens on first use too. */
static pthread_once_t array_type_once = PTHREAD_ONCE_INIT;
static void register_array_type_once(void);

void px_array_register_type(void) { pthread_once(&array_type_once, register_array_type_once); }

static void register_array_type_once(void) {
  px_shared_register(&array_type);
  px_shared_register_holds(&array_type, px_array_holds); /* checks the cdata hook */
}

/* Lua numbers index elements exactly only below 2^53; the Lua face refuses
 * larger shapes with a clear message, this is the last line of defence. */
#define MAX_ELEMENTS ((int64_t)1 << 53)

/* A fresh buffer of len bytes about to be filled: a page fault costs tens
 * of microseconds on some virtual machines (64 MB of fresh 4 KB pages took
 * 400 ms on the machine of docs/mpi.md's figures, 35 ms in 2 MB pages; an
 * 8 MB allreduce result 50 ms), so ask for huge pages when it is large. */
void px_advise_huge(void *p, size_t len) {
#ifdef MADV_HUGEPAGE
  if (!p || len < ((size_t)4 << 20)) return;
  uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
  uintptr_t hi = ((uintptr_t)p + len) & ~(uintptr_t)4095;
  if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
  (void)p;
  (void)len;
#endif
}

static px_array *array_new(int dtype, int ndim, const int64_t *shape, int zero) {
  size_t size = px_dtype_size(dtype);
  if (size == 0 || ndim < 1 || ndim > PX_ARRAY_MAXDIM || !shape) return NULL;
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return NULL;
    if (shape[d] != 0 && n > MAX_ELEMENTS / shape[d]) return NULL;
    n *= shape[d];
  }
  /* Nothing beyond a 47-bit user address space can succeed; refusing it
   * here also keeps sanitizer allocators from aborting on absurd sizes. */
  if ((uint64_t)n > (((uint64_t)1 << 47) - 64) / size) return NULL;
  /* Round up to the alignment (aligned_alloc wants a multiple) and never
   * allocate 0 bytes, so data is a valid pointer even for empty arrays. */
  size_t bytes = ((size_t)n * size + 63) & ~(size_t)63;
  if (bytes == 0) bytes = 64;

  px_array *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->data = aligned_alloc(64, bytes);
  if (!a->data) {
    free(a);
    return NULL;
  }
  px_advise_huge(a->data, bytes);
  if (zero) {
    memset(a->data, 0, bytes);
    atomic_fetch_add_explicit(&zero_filled_arrays, 1, memory_order_relaxed);
  }
  a->n = n;
  a->dtype = dtype;
  a->ndim = ndim;
  for (int d = 0; d < ndim; d++) a->shape[d] = shape[d];
  px_array_register_type();
  px_shared_init(&a->hdr, &array_type);
  if (set_add(a) != 0) {
    free(a->data);
    free(a);
    return NULL;
  }
  atomic_fetch_add_explicit(&live_arrays, 1, memory_order_relaxed);
  return a;
}

px_array *px_array_new(int dtype, int ndim, const int64_t *shape) {
  return array_new(dtype, ndim, shape, 1);
}

px_array *px_array_new_uninit(int dtype, int ndim, const int64_t *shape) {
  return array_new(dtype, ndim, shape, 0);
}

void px_array_release(px_array *a) {
  if (a) px_shared_release(&a->hdr);
}

/* One more reference: what anchors a.data (lua/parx/array.lua). */
void px_array_retain(px_array *a) { px_shared_retain(&a->hdr); }

/* Every element set to the bytes at elem: the first element is copied in,
 * then the filled prefix is doubled with memcpy until it covers the array,
 * which works for any element size in O(log n) calls. */
void px_array_fill_bytes(px_array *a, const void *elem) {
  size_t size = px_dtype_size(a->dtype), total = size * (size_t)a->n;
  char *p = a->data;
  if (total == 0) return;
  memcpy(p, elem, size);
  for (size_t done = size; done < total; done *= 2)
    memcpy(p + done, p, done < total - done ? done : total - done);
}

/* Atomic add on an integer element (0-based offset, checked by the caller);
 * returns the new value, sign-extended for the signed dtypes (integer
 * dtypes only: the Lua face offers atomics on those).  Two's
 * complement wrap-around on overflow, like Go's sync/atomic; the GCC
 * builtins are atomic on plain aligned integers. */
int64_t px_array_atomic_add(px_array *a, int64_t off, int64_t delta) {
#define ADD_AS(T) __atomic_add_fetch((T *)a->data + off, (T)delta, __ATOMIC_SEQ_CST)
  int bits = 8 * (int)px_dtype_size(a->dtype);
  uint64_t v;
  switch (bits) {
  case 8: v = ADD_AS(uint8_t); break;
  case 16: v = ADD_AS(uint16_t); break;
  case 32: v = ADD_AS(uint32_t); break;
  default: v = ADD_AS(uint64_t); break;
  }
#undef ADD_AS
  int is_signed = a->dtype == PX_INT8 || a->dtype == PX_INT16 || a->dtype == PX_INT32;
  if (is_signed) return (int64_t)(v << (64 - bits)) >> (64 - bits);
  return (int64_t)v;
}

/* Atomic compare-and-swap on an integer element: stores desired if the
 * element equals expected (both as the element's bit pattern, truncated
 * from int64); returns 1 if it swapped. */
int px_array_atomic_cas(px_array *a, int64_t off, int64_t expected,
                        int64_t desired) {
#define CAS_AS(T)                                                              \
  __atomic_compare_exchange_n((T *)a->data + off, &(T){(T)expected}, (T)desired, 0, \
                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)
  switch (px_dtype_size(a->dtype)) {
  case 1: return CAS_AS(uint8_t);
  case 2: return CAS_AS(uint16_t);
  case 4: return CAS_AS(uint32_t);
  case 8: return CAS_AS(uint64_t);
  }
#undef CAS_AS
  return 0;
}

/* Atomic load of an integer element, as int64 (sign- or zero-extended). */
int64_t px_array_atomic_get(px_array *a, int64_t off) {
  return px_array_atomic_add(a, off, 0);
}

/* ------------------------------------------------------------------------
 * Half precision.  One rounding routine for both 16-bit formats: take the
 * double apart, shift its 53-bit significand down to the target's precision
 * (fewer bits for subnormals) and round to nearest, ties to even.  A carry
 * out of the significand ripples into the exponent field, which also turns
 * the largest finite value plus half an ulp into infinity.
 * ---------------------------------------------------------------------- */

static uint16_t round_small(double d, int mant_bits, int exp_bits) {
  uint64_t x;
  memcpy(&x, &d, sizeof x);
  uint16_t sign = (uint16_t)((x >> 63) << 15);
  uint64_t ax = x & ~((uint64_t)1 << 63);
  uint16_t inf = (uint16_t)(((1u << exp_bits) - 1) << mant_bits);
  if (ax >= (uint64_t)0x7ff << 52) {
    if (ax == (uint64_t)0x7ff << 52) return sign | inf;
    /* NaN: keep it quiet (top significand bit set) and keep the sign. */
    return sign | inf | (uint16_t)(1u << (mant_bits - 1));
  }
  int bias = (1 << (exp_bits - 1)) - 1;
  int emin = 1 - bias; /* exponent of the smallest normal */
  int e = (int)(ax >> 52) - 1023;
  if (e > bias) return sign | inf;
  uint64_t m = (ax & (((uint64_t)1 << 52) - 1)) | ((uint64_t)1 << 52);
  int shift = 52 - mant_bits + (e < emin ? emin - e : 0);
  if (shift > 60) return sign; /* far below half the smallest subnormal */
  uint64_t q = m >> shift;
  uint64_t rem = m & (((uint64_t)1 << shift) - 1);
  uint64_t half = (uint64_t)1 << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) q++;
  uint64_t bits = e < emin ? q : ((uint64_t)(e - emin) << mant_bits) + q;
  return sign | (uint16_t)bits;
}

static double expand_small(uint16_t h, int mant_bits, int exp_bits) {
  int bias = (1 << (exp_bits - 1)) - 1;
  int emax_field = (1 << exp_bits) - 1;
  int e = (h >> mant_bits) & emax_field;
  uint64_t m = h & ((1u << mant_bits) - 1);
  uint64_t bits = (uint64_t)(h >> 15) << 63;
  if (e == emax_field) {
    bits |= (uint64_t)0x7ff << 52 | m << (52 - mant_bits);
  } else if (e != 0) {
    bits |= (uint64_t)(e - bias + 1023) << 52 | m << (52 - mant_bits);
  } else if (m != 0) {
    /* Subnormal: normalize; every one is a normal double. */
    int shift = 0;
    while (!(m & (1u << mant_bits))) {
      m <<= 1;
      shift++;
    }
    m &= (1u << mant_bits) - 1;
    bits |= (uint64_t)(1 - bias - shift + 1023) << 52 | m << (52 - mant_bits);
  }
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

uint16_t px_f64_to_f16(double d) { return round_small(d, 10, 5); }
double px_f16_to_f64(uint16_t h) { return expand_small(h, 10, 5); }
uint16_t px_f64_to_bf16(double d) { return round_small(d, 7, 8); }
double px_bf16_to_f64(uint16_t h) { return expand_small(h, 7, 8); }

/* float widens to double exactly, and every half value is a float. */
uint16_t px_f32_to_f16(float f) { return px_f64_to_f16(f); }
float px_f16_to_f32(uint16_t h) { return (float)px_f16_to_f64(h); }
uint16_t px_f32_to_bf16(float f) { return px_f64_to_bf16(f); }
float px_bf16_to_f32(uint16_t h) { return (float)px_bf16_to_f64(h); }

/* Decoding tables, built once per process on first use: the Lua face reads
 * a stored half as table[bits], a plain load, which measured about four
 * times faster than a call per element (0.8 vs 3.3 ns).  Every float16 and
 * bfloat16 value, NaN payloads aside, is exactly a float. */
static float f16_table[65536], bf16_table[65536];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
  for (uint32_t h = 0; h < 65536; h++) {
    f16_table[h] = (float)px_f16_to_f64((uint16_t)h);
    bf16_table[h] = (float)px_bf16_to_f64((uint16_t)h);
  }
}

/* which: 0 = float16, 1 = bfloat16. */
const float *px_half_table(int which) {
  pthread_once(&tables_once, build_tables);
  return which ? bf16_table : f16_table;
}

/* ------------------------------------------------------------------------
 * Crossing VMs.  The Lua face hands us, once per VM, its constructor
 * (light userdata -> array cdata holding the reference) and the marshaller's
 * hook (cdata -> light userdata or nil), see init_lua.
 * ---------------------------------------------------------------------- */

static const char ctor_key;

static void push_ctor(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&ctor_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/* require "parx.array" in a VM that has not loaded it yet; it registers the
 * constructor.  Protected: returns the status, error message on the stack. */
static int require_face(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "parx.array");
  int status = lua_pcall(L, 1, 0, 0);
  return status;
}

void px_array_push(lua_State *L, px_array *a) {
  push_ctor(L);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (require_face(L) != 0) {
      px_array_release(a);
      lua_error(L);
    }
    push_ctor(L);
    if (lua_isnil(L, -1)) {
      px_array_release(a);
      luaL_error(L, "parx.array: the Lua face did not register itself");
    }
  }
  lua_pushlightuserdata(L, a);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    /* The constructor failed (out of memory): nobody owns the reference. */
    px_array_release(a);
    lua_error(L);
  }
}

static void array_push_shared(lua_State *L, px_shared *obj) {
  px_array_push(L, (px_array *)obj);
}

px_array *px_array_test(lua_State *L, int idx) {
  if (lua_type(L, idx) != PX_LUA_TCDATA) return NULL;
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  lua_pushlightuserdata(L, (void *)&px_cdata_hook_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  px_shared *obj = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return obj && obj->type == &array_type ? (px_array *)obj : NULL;
}

px_array *px_array_check(lua_State *L, int idx) {
  px_array *a = px_array_test(L, idx);
  if (!a) {
    const char *msg =
        lua_pushfstring(L, "parx.array expected, got %s", luaL_typename(L, idx));
    luaL_argerror(L, idx, msg);
  }
  return a;
}

void px_array_set_ctor(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&ctor_key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}
