/*
 * marshal_shape.c -- the reader's records by shape: a table whose keys are
 * those of a template (the same short strings in the same order) is made
 * by copying the template's hash nodes and writing the values in place.
 *
 * Most messages are lists of records that share their keys.  Through the
 * C API each field costs a lua_rawset (~120 instructions: the key's hash,
 * a search, a new node) after the key was found in the key cache; with a
 * template the keys' places are known, so a record costs one
 * lua_createtable, one copy of its nodes and one store per field.
 *
 * That writes LuaJIT's GCtab and hash nodes, which are not part of its API,
 * so it is done only where the layout the writer reads (marshal_lj.c) was
 * verified and GC64 holds, after a check on real tables once per process
 * (shape_ok below) that copies, fills, reads back and grows a table.  When
 * the check fails the reader takes the C API (unmarshal.c).
 *
 * The collector: a table made by lua_createtable is white and stays so
 * until the collector runs again, which only an allocation can make it do.
 * px_shape_fill allocates nothing after lua_createtable (the value strings
 * are pushed before it), so no store needs a write barrier.  The template
 * is anchored by the reader for the whole message, and with it the keys.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"

_Atomic int px_shape_state;
static uint64_t bits_true, bits_false;
#define FREETOP_GC64 56 /* GCtab.freetop: after hmask in the GC64 layout */

static pthread_mutex_t shape_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t px_shape_bool(int b) { return b ? bits_true : bits_false; }

uint64_t px_shape_str(const char *data) {
  uintptr_t p = (uintptr_t)(data - px_marshal_layout.str_data);
  return (uint64_t)px_marshal_layout.tag_str << 47 | (uint64_t)p;
}

static uint64_t *freetop(const void *t) {
  return (uint64_t *)((char *)t + FREETOP_GC64);
}

int px_shape_init(lua_State *L, px_shape *s, int tmpl, int firstkey) {
  const void *t = lua_topointer(L, tmpl);
  uint32_t hmask;
  const tab_node *node = tab_nodes(t, &hmask);
  s->tmpl = t;
  s->node = node;
  s->hmask = hmask;
  for (uint32_t i = 0; i < s->nkeys; i++) {
    uint64_t k = px_shape_str(lua_tostring(L, firstkey + (int)i));
    uint32_t j = 0;
    while (j <= hmask && node[j].key != k) j++;
    if (j > hmask) return -1;
    s->slot[i] = j;
  }
  return 0;
}

void px_shape_fill(lua_State *L, const px_shape *s, const uint64_t *vals) {
  lua_createtable(L, 0, (int)s->nkeys);
  /* From here to the end nothing allocates (see the top of the file). */
  void *t = (void *)lua_topointer(L, -1);
  uint32_t hmask;
  tab_node *node = (tab_node *)tab_nodes(t, &hmask);
  memcpy(node, s->node, ((size_t)hmask + 1) * sizeof *node);
  uintptr_t from = (uintptr_t)s->node, to = (uintptr_t)node;
  for (uint32_t i = 0; i <= hmask; i++)
    if (node[i].next) node[i].next = node[i].next - from + to;
  uint64_t ft;
  memcpy(&ft, freetop(s->tmpl), 8);
  ft = ft - from + to;
  memcpy(freetop(t), &ft, 8);
  for (uint32_t i = 0; i < s->nkeys; i++) node[s->slot[i]].val = vals[i];
}

int px_shape_usable(const px_shape *s) {
  uint32_t hmask;
  const tab_node *node = tab_nodes(s->tmpl, &hmask);
  return node == s->node && hmask == s->hmask;
}

/* ---- the check, on real tables ------------------------------------------ */

static const char *const probe_keys[] = {"id", "name", "score", "a", "bb", "ccc",
                                         "x1", "x2", "x3", "x4", "x5", "x6"};
#define NPROBE (int)(sizeof probe_keys / sizeof *probe_keys)

/* Does t (at idx) hold exactly key i -> the value i describes (i even: the
 * number i + 0.5; i odd: the string of key i; 3: true), and `extra` keys
 * more? */
static int holds(lua_State *L, int idx, int n, int extra) {
  int ok = 1;
  for (int i = 0; i < n && ok; i++) {
    lua_getfield(L, idx, probe_keys[i]);
    if (i == 3) ok = lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
    else if (i & 1) ok = lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), probe_keys[i]);
    else ok = lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == i + 0.5;
    lua_pop(L, 1);
  }
  int count = 0;
  lua_pushnil(L);
  while (ok && lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
  }
  return ok && count == n + extra;
}

static int shape_ok(lua_State *L, uint64_t *btrue, uint64_t *bfalse) {
  int top = lua_gettop(L), ok = 1;
  if (!lua_checkstack(L, 2 * NPROBE + 8)) return 0;
  /* The bits of true and false, and freetop in a fresh table. */
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "t");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "f");
  uint32_t hmask;
  const void *bt = lua_topointer(L, -1);
  const tab_node *node = tab_nodes(bt, &hmask);
  lua_pushliteral(L, "t");
  uint64_t kt = px_shape_str(lua_tostring(L, -1));
  lua_pop(L, 1);
  for (uint32_t i = 0; i <= hmask; i++) {
    if (slot_is_nil(node[i].val)) continue;
    if (node[i].key == kt) *btrue = node[i].val;
    else *bfalse = node[i].val;
  }
  ok = hmask == 1 && tv_tag(*btrue) == px_marshal_layout.tag_true &&
       tv_tag(*bfalse) == px_marshal_layout.tag_false;
  lua_createtable(L, 0, 4);
  node = tab_nodes(lua_topointer(L, -1), &hmask);
  uint64_t ft;
  memcpy(&ft, freetop(lua_topointer(L, -1)), 8);
  ok = ok && hmask == 3 && ft == (uint64_t)(uintptr_t)(node + 4);
  lua_settop(L, top);

  /* Templates of 1 to NPROBE keys: fill a copy, read it back, grow it. */
  for (int n = 1; ok && n <= NPROBE; n++) {
    px_shape s = {.nkeys = (uint32_t)n};
    lua_createtable(L, 0, n);
    int tmpl = lua_gettop(L);
    for (int i = 0; i < n; i++) {
      lua_pushstring(L, probe_keys[i]);
      lua_pushboolean(L, 0);
      lua_rawset(L, tmpl);
    }
    for (int i = 0; i < n; i++) lua_pushstring(L, probe_keys[i]);
    ok = px_shape_init(L, &s, tmpl, tmpl + 1) == 0;
    uint64_t vals[NPROBE];
    for (int i = 0; ok && i < n; i++) {
      double d = i + 0.5;
      if (i == 3) vals[i] = *btrue;
      else if (i & 1) vals[i] = px_shape_str(lua_tostring(L, tmpl + 1 + i));
      else memcpy(&vals[i], &d, 8);
    }
    if (!ok) break;
    px_shape_fill(L, &s, vals);
    int t = lua_gettop(L);
    ok = holds(L, t, n, 0);
    /* New keys go into the free nodes below freetop, then a rehash. */
    for (int i = 0; ok && i < 6; i++) {
      lua_pushnumber(L, i + 1);
      lua_setfield(L, t, probe_keys[NPROBE - 1 - i]);
    }
    if (ok) {
      int extra = 0;
      for (int i = 0; i < 6; i++) extra += NPROBE - 1 - i >= n;
      lua_pushnil(L);
      int count = 0;
      while (lua_next(L, t)) {
        lua_pop(L, 1);
        count++;
      }
      ok = count == n + extra;
      for (int i = 0; ok && i < n && i < NPROBE - 6; i++) {
        lua_getfield(L, t, probe_keys[i]);
        ok = !lua_isnil(L, -1);
        lua_pop(L, 1);
      }
    }
    /* The template itself is untouched. */
    for (int i = 0; ok && i < n; i++) {
      lua_getfield(L, tmpl, probe_keys[i]);
      ok = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    lua_settop(L, top);
  }
  lua_settop(L, top);
  return ok;
}

void px_shape_probe(lua_State *L) {
  if (px_shape_state) return;
  uint64_t t = 0, f = 0;
  int ok = px_marshal_layout_state > 0 && px_marshal_flat_state > 0 &&
           px_marshal_layout.gc64 && shape_ok(L, &t, &f);
  pthread_mutex_lock(&shape_lock);
  if (!px_shape_state) {
    bits_true = t;
    bits_false = f;
    px_shape_state = ok ? 1 : -1; /* after the bits: readers test this */
  }
  pthread_mutex_unlock(&shape_lock);
}
