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
 * - Metatables: a table keeps its metatable when the receiver can find
 *   its own by name: a module (a value of package.loaded, which includes
 *   types registered with parx.register_type), or a table reachable from
 *   one ("\2module\0key..."); any other metatable fails the send
 *   (marshal_names.c).
 * - Globals: the writer reads each function's bytecode (and its nested
 *   functions') through jit.util for GGET (marshal_globals.c) and sends
 *   the values of the globals it reads,
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
 *   cannot hold others).  Strings are not deduplicated on the wire; the
 *   reader interns a message's repeated short keys once (unmarshal.c).
 * - Arrays of numbers are copied straight out of and into LuaJIT's table
 *   array part.  That reads the layout of LuaJIT's GCtab, which is not part
 *   of its API, so the layout is verified on real tables once per process
 *   (marshal_lj.c); if the check fails every table goes through the API.
 *
 * - Flat tables (no metatable; string keys and an array part without
 *   holes, holding only numbers, strings and booleans: records and rows)
 *   are written straight from LuaJIT's hash nodes and array part, with the
 *   same bytes (encode_flat); the layout of GCtab, its nodes and GCstr is
 *   verified once per process like the array part's.
 *
 * - Records by shape: the reader makes a table whose keys repeat an
 *   earlier record's (short strings, in the same order; scalar values) by
 *   copying a template's hash nodes (marshal_shape.c), verified like the
 *   layouts above.
 *
 * Known cost: other tables go through the Lua C API, about 30 calls per
 * small table.  Per 3-field record the reader still spends ~2,000
 * instructions (callgrind): lua_createtable ~420 and interning the string
 * value ~570, both with the collector's steps they trigger, the rest its
 * own parsing; LuaJIT's allocator maps fresh pages for the records of each
 * message (page faults are a large part of the wall time on a VM).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"

/* ------------------------------------------------------------------------
 * Writer (its state in marshal.h; the per-VM caches in marshal_state.c,
 * error paths in marshal_path.c, functions' globals in marshal_globals.c).
 * ---------------------------------------------------------------------- */

#define SEEN_SPARE_MAX (1 << 20)

static int64_t seen_get(writer *w, const void *p) {
  size_t mask = w->seen_cap - 1, i = ptr_hash(p) >> 32 & mask;
  for (;; i = (i + 1) & mask) {
    if (w->seen[i].ptr == p) return w->seen[i].val;
    if (!w->seen[i].ptr) return 0;
  }
}

static void seen_put(writer *w, const void *p, int64_t val);

/* Make room for n more entries at once (a list of n tables is about to
 * be written), so that the table is not rehashed at every doubling. */
static void seen_grow(writer *w, size_t n) {
  size_t cap = w->seen_cap;
  while ((w->seen_len + n) * 2 > cap && cap < ((size_t)1 << 40)) cap *= 2;
  if (cap > w->seen_cap) {
    seen_slot *old = w->seen;
    size_t oldcap = w->seen_cap;
    /* Grow into a userdata so an out-of-memory error cannot leak it: the
     * VM's spare one when it is large enough (a fresh one of a few hundred
     * KB is a fresh mapping, page faults included, on every send of a
     * long list of tables), else a new one. */
    seen_slot *s = NULL;
    lua_rawgeti(w->L, w->state, S_SEEN);
    if (lua_type(w->L, -1) == LUA_TUSERDATA && lua_objlen(w->L, -1) >= cap * sizeof *s) {
      cap = lua_objlen(w->L, -1) / sizeof *s;
      s = lua_touserdata(w->L, -1);
      /* Taken: a send made meanwhile (by a finalizer) makes its own. */
      lua_pushnil(w->L);
      lua_rawseti(w->L, w->state, S_SEEN);
    } else {
      lua_pop(w->L, 1);
      s = lua_newuserdata(w->L, cap * sizeof *s);
    }
    memset(s, 0, cap * sizeof *s);
    lua_replace(w->L, w->seen_ud); /* the old one, if any, becomes garbage */
    w->seen = s;
    w->seen_cap = cap;
    w->seen_len = 0;
    for (size_t i = 0; i < oldcap; i++)
      if (old[i].ptr) seen_put(w, old[i].ptr, old[i].val);
  }
}

static void seen_put(writer *w, const void *p, int64_t val) {
  if ((w->seen_len + 1) * 2 > w->seen_cap) seen_grow(w, 1);
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
  if (w->depth >= MAX_DEPTH) return px_marshal_unsendable(w, idx, "nested too deeply");
  if (!lua_checkstack(w->L, 12)) return px_marshal_unsendable(w, idx, "stack overflow");
  w->depth++;
  return 0;
}

/* ---- flat tables -------------------------------------------------------
 * A table without a metatable whose array part (1..n then only empty
 * slots; no run of RUN_MIN numbers: those go in bulk) and hash part (string keys only) hold
 * only numbers, strings and booleans: the
 * records and rows that most messages are made of.  With LuaJIT's layout
 * verified (marshal_lj.c) it is written straight from its GCtab, with no
 * Lua API call and no stack traffic, as the very bytes encode_table would
 * write (the reader cannot tell).  A 3-field record took ~30 API calls. */

/* Bytes the slot v takes at most; 0 if it is not a number, string or
 * boolean. */
static inline size_t flat_size(const tab_layout *lay, uint64_t v) {
  if (slot_is_num(v)) return PX_SCALAR_NUM_MAX;
  uint32_t tag = lay_tag(lay, v);
  if (tag == lay->tag_str) {
    size_t len;
    lay_str(lay, v, &len);
    return len + PX_SCALAR_STR_EXTRA;
  }
  return tag == lay->tag_true || tag == lay->tag_false;
}

/* Write the slot v (flat_size(v) > 0; room reserved). */
static inline void flat_put(writer *w, const tab_layout *lay, uint64_t v) {
  uint8_t *p = (uint8_t *)w->m->data + w->m->len;
  if (slot_is_num(v)) {
    double d;
    memcpy(&d, &v, 8);
    w->m->len += px_scalar_put_number(p, d);
    return;
  }
  uint32_t tag = lay_tag(lay, v);
  if (tag == lay->tag_str) {
    size_t len;
    const char *s = lay_str(lay, v, &len);
    w->m->len += px_scalar_put_string(p, s, len);
    return;
  }
  p[0] = tag == lay->tag_true ? T_TRUE : T_FALSE;
  w->m->len++;
}

/* Write the table t if it is flat: 1 written, 0 not flat (nothing
 * written, the caller takes encode_table), -1 error.  Only when
 * px_marshal_flat_state > 0. */
static int encode_flat(writer *w, const void *t) {
  const tab_layout *lay = &px_marshal_layout;
  if (w->depth >= MAX_DEPTH || tab_has_meta(t)) return 0;
  /* Room for t in `seen` first: growing it allocates, and an allocation
   * may run finalizers (Lua code) that could change t between the sizes
   * counted below and the bytes written. */
  if ((w->seen_len + 1) * 2 > w->seen_cap) seen_grow(w, 1);
  /* t's slot in `seen` (there is room): the one that holds it, or the
   * empty one it goes in; nothing else writes `seen` meanwhile.  Whether t
   * is a module is asked first too: that may refresh the module map, which
   * allocates. */
  size_t mask = w->seen_cap - 1, at = ptr_hash(t) >> 32 & mask;
  while (w->seen[at].ptr && w->seen[at].ptr != t) at = (at + 1) & mask;
  if (w->seen[at].ptr || px_marshal_maybe_module(w, t)) return 0;
  uint32_t asize, hmask;
  const uint64_t *arr = tab_array(t, &asize);
  const tab_node *node = tab_nodes(t, &hmask);
  /* No number key in the hash part: encode_table would write the array
   * part as items, the rest as pairs. */
  size_t bytes = 16, run = 0;
  if (asize > 0 && !slot_is_nil(arr[0])) return 0;
  /* Slots 1..narr filled, the slack after them empty (a table grown by
   * appends): lua_objlen is narr, the one border. */
  uint32_t narr = 0;
  for (uint32_t i = 1; i < asize; i++) {
    if (slot_is_nil(arr[i])) {
      for (uint32_t j = i + 1; j < asize; j++)
        if (!slot_is_nil(arr[j])) return 0;
      break;
    }
    size_t n = flat_size(lay, arr[i]);
    if (!n) return 0;
    /* A run of numbers is copied in bulk by encode_items (DOUBLES). */
    run = slot_is_num(arr[i]) ? run + 1 : 0;
    if (run >= RUN_MIN) return 0;
    bytes += n;
    narr = i;
  }
  uint32_t count = 0;
  for (uint32_t i = 0; i <= hmask; i++) {
    if (slot_is_nil(node[i].val)) continue;
    if (lay_tag(lay, node[i].key) != lay->tag_str) return 0;
    size_t n = flat_size(lay, node[i].val), klen;
    if (!n) return 0;
    lay_str(lay, node[i].key, &klen);
    bytes += n + klen + PX_SCALAR_STR_EXTRA;
    count++;
  }
  if (reserve(w, bytes)) return -1;
  w->seen[at].ptr = t;
  w->seen[at].val = (int64_t)K_OBJ << 32 | ++w->nobj;
  w->seen_len++;
  put_u8(w, T_TABLE);
  put_varint(w, narr);
  put_raw(w, &count, 4);
  for (uint32_t i = 1; i <= narr; i++) flat_put(w, lay, arr[i]);
  for (uint32_t i = 0; i <= hmask; i++) {
    if (slot_is_nil(node[i].val)) continue;
    size_t klen;
    const char *k = lay_str(lay, node[i].key, &klen);
    w->m->len += px_scalar_put_string((uint8_t *)w->m->data + w->m->len, k, klen);
    flat_put(w, lay, node[i].val);
  }
  return 1;
}

/* Encode t[i] for i = from..to (array items), copying runs of numbers
 * straight from the array part when the layout is known, strings and flat
 * tables straight from their slots when the flat layout is. */
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
      if (i < asize && px_marshal_flat_state > 0) {
        uint64_t v = arr[i];
        uint32_t tag = tv_tag(v);
        if (tag == px_marshal_layout.tag_str) {
          size_t len;
          const char *str = tv_str(v, &len);
          if (put_string(w, str, len)) return -1;
          i++;
          continue;
        }
        if (tag == px_marshal_layout.tag_tab) {
          /* A list of tables: room for all of them in `seen` at once. */
          if (i == 1 && narr > 64) seen_grow(w, narr);
          int rc = encode_flat(w, tv_gc(v));
          if (rc < 0) return -1;
          if (rc) {
            i++;
            continue;
          }
        }
      }
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

/* The table or function at idx (ptr) written before (a REF) or a loaded
 * module (by name): 1 with the result in *rc.  0: write it in full. */
static int put_known(writer *w, int idx, const void *ptr, int *rc) {
  int64_t id = seen_get(w, ptr);
  if (id) {
    *rc = put_ref(w, id & 0xffffffff);
    return 1;
  }
  if (!px_marshal_module_name(w, idx)) return 0;
  *rc = reserve(w, 1) ? -1 : (put_u8(w, T_MODULE), w->code = 1, encode(w, lua_gettop(w->L)));
  lua_pop(w->L, 1);
  return 1;
}

static int encode_table(writer *w, int idx) {
  lua_State *L = w->L;
  const void *ptr = lua_topointer(L, idx);
  int known;
  if (put_known(w, idx, ptr, &known)) return known;
  if (enter(w, idx)) return -1;
  seen_put(w, ptr, (int64_t)K_OBJ << 32 | ++w->nobj);
  int top = lua_gettop(L), rc = -1;
  /* A metatable crosses by name, or the send fails (marshal_names.c). */
  int named = lua_getmetatable(L, idx) ? px_marshal_mt_name(w, top + 1) : 0;
  if (named < 0) goto done;
  if (named) {
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
    px_marshal_get_global(L, env, nameidx);
    int t = lua_type(L, -1);
    int skip = t == LUA_TNIL || (std && px_marshal_is_std_value(w));
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
  int known;
  if (put_known(w, idx, ptr, &known)) return known;
  if (lua_iscfunction(L, idx)) {
    if (!px_marshal_cfunc_name(w, idx)) return px_marshal_unsendable(w, idx, NULL);
    int rc = reserve(w, 1) ? -1 : (put_u8(w, T_CFUNC), encode(w, lua_gettop(L)));
    lua_pop(L, 1);
    return rc;
  }
  if (enter(w, idx)) return -1;
  int fid = ++w->nobj, top = lua_gettop(L), rc = -1;
  seen_put(w, ptr, (int64_t)K_OBJ << 32 | fid);
  px_marshal_function_entry(w, idx);
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
    px_marshal_unsendable(w, idx, "a function with too many upvalues");
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
    if (px_marshal_module_name(w, idx)) {
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
  if (!obj) return px_marshal_unsendable(w, idx, NULL);
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
  case LUA_TTABLE:
    if (px_marshal_layout_state > 0 && px_marshal_flat_state > 0) {
      int rc = encode_flat(w, lua_topointer(L, idx));
      if (rc) return rc < 0 ? -1 : 0;
    }
    return encode_table(w, idx);
  case LUA_TFUNCTION: return encode_function(w, idx);
  case LUA_TUSERDATA:
  case LUA_TCDATA_: return encode_shared(w, idx);
  case LUA_TLIGHTUSERDATA:
    /* NULL (cjson.null, the FFI's nil pointer as a light userdata) means
     * the same in every VM; any other address does not. */
    if (lua_touserdata(L, idx) != NULL) return px_marshal_unsendable(w, idx, NULL);
    if (reserve(w, 1)) return -1;
    put_u8(w, T_NULL);
    return 0;
  default: return px_marshal_unsendable(w, idx, NULL);
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
  /* The grown `seen` is the VM's spare for the next send, up to 1 MB. */
  if (w->seen != w->inline_seen && w->seen_cap * sizeof *w->seen <= SEEN_SPARE_MAX) {
    lua_pushvalue(L, w->seen_ud);
    lua_rawseti(L, w->state, S_SEEN);
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
  if (!rc) px_trace_marshalled(m->len - len0);
  return rc;
}
