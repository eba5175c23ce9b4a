/*
 * dict.c -- parx.dict(): a concurrent hash map shared by reference across
 * VMs, like channels (module "parx.c.dict"; the Lua face is
 * lua/parx/dict.lua).
 *
 * Keys are strings, numbers and booleans, stored as bytes (a tag and the
 * string, the double or nothing), so a key means the same in every VM.
 * Values are copies: numbers and booleans in the entry, strings as one
 * malloc'd copy, anything else marshalled (px_marshal, trusted: a table, a
 * function with its upvalues, a channel or another dict by reference).
 * Reading a marshalled value unmarshals a fresh copy.
 *
 * The map is SHARDS independent shards (a mutex and a chained hash table
 * each), chosen by the key's hash, so tasks on different workers touching
 * different keys rarely meet on a lock.  A lock is held only to find an
 * entry and copy or swap a value: encoding happens before it is taken,
 * decoding and freeing after it is released, and no Lua code runs under
 * it (no error can unwind through a held pthread mutex).
 *
 * Every write gives the entry a fresh version (the shard's clock, which
 * only grows), 0 meaning absent; d:update is a compare-and-swap loop on
 * it (dict.lua).  Every new entry gets a sequence number from the dict, so
 * keys() lists keys in insertion order, as a Python dict does.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sync.h" /* px_sync_push_face */

#define SHARDS 16
#define SMALL 64 /* values up to this many bytes are copied on the stack */

enum { K_STR = 1, K_NUM, K_BOOL };
enum { V_NONE = 0, V_NUM, V_TRUE, V_FALSE, V_STR, V_MSG };

/* A value outside the map: what an encode produced or a read copied. */
typedef struct dval {
  int tag;
  double num;
  size_t len;
  char *str;   /* V_STR: malloc'd, or `small` */
  px_msg *msg; /* V_MSG: malloc'd */
  char small[SMALL];
} dval;

typedef struct entry {
  struct entry *next;
  uint64_t hash, version, seq;
  int vtag;
  double num;
  size_t vlen;
  char *vstr;
  px_msg *msg;
  int ktag;
  size_t klen;
  char key[]; /* klen bytes */
} entry;

typedef struct shard {
  pthread_mutex_t lock; /* guards everything below */
  entry **buckets;
  size_t nbuckets, count;
  uint64_t clock;
  char pad[64];
} shard;

typedef struct px_dict {
  px_shared hdr; /* first: shared-object header */
  _Atomic uint64_t seq;
  atomic_long count;
  shard shards[SHARDS];
} px_dict;

static void dict_push(lua_State *L, px_shared *obj);

static void entry_value_free(entry *e) {
  if (e->vtag == V_STR) free(e->vstr);
  if (e->vtag == V_MSG) {
    px_msg_free(e->msg); /* releases the shared references it holds */
    free(e->msg);
  }
  e->vtag = V_NONE;
}

static void dict_free(px_shared *obj) {
  px_dict *d = (px_dict *)obj;
  for (int i = 0; i < SHARDS; i++) {
    shard *s = &d->shards[i];
    for (size_t b = 0; b < s->nbuckets; b++) {
      entry *e = s->buckets[b];
      while (e) {
        entry *next = e->next;
        entry_value_free(e);
        free(e);
        e = next;
      }
    }
    free(s->buckets);
    pthread_mutex_destroy(&s->lock);
  }
  free(d);
}

static px_shared_type dict_type = {"parx.dict", dict_free, dict_push, 0};

/* Objects arriving through the marshaller in a VM that never loaded
 * parx.dict: load it (it installs the Lua methods), then push the proxy. */
static void dict_push(lua_State *L, px_shared *obj) { px_sync_push_face(L, obj, "parx.dict"); }

/* Methods are closures with the metatable as upvalue 1: one comparison. */
static px_dict *check_dict(lua_State *L) {
  void *p = lua_touserdata(L, 1);
  if (p && lua_getmetatable(L, 1)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (same && *(px_shared **)p) return *(px_dict **)p;
  }
  return (px_dict *)px_shared_check(L, 1, &dict_type);
}

/* ---- keys ------------------------------------------------------------------ */

typedef struct dkey {
  int tag;
  size_t len;
  const char *bytes;
  double num; /* K_NUM: the bytes */
  char b;     /* K_BOOL: the byte */
  uint64_t hash;
} dkey;

static uint64_t hash_bytes(int tag, const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull ^ (uint64_t)tag;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* The key at idx, or raise. */
static void check_key(lua_State *L, int idx, dkey *k) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    k->tag = K_STR;
    k->bytes = lua_tolstring(L, idx, &k->len);
    break;
  case LUA_TNUMBER:
    k->tag = K_NUM;
    k->num = lua_tonumber(L, idx);
    if (k->num != k->num) luaL_argerror(L, idx, "dict key is NaN");
    if (k->num == 0) k->num = 0; /* -0 and 0 are one key, as in a table */
    k->bytes = (const char *)&k->num;
    k->len = sizeof k->num;
    break;
  case LUA_TBOOLEAN:
    k->tag = K_BOOL;
    k->b = (char)lua_toboolean(L, idx);
    k->bytes = &k->b;
    k->len = 1;
    break;
  default:
    luaL_argerror(L, idx, lua_pushfstring(L, "dict keys are strings, numbers or booleans, got %s",
                                          luaL_typename(L, idx)));
  }
  k->hash = hash_bytes(k->tag, k->bytes, k->len);
}

static void push_key(lua_State *L, int tag, const char *bytes, size_t len) {
  if (tag == K_STR) {
    lua_pushlstring(L, bytes, len);
  } else if (tag == K_NUM) {
    double n;
    memcpy(&n, bytes, sizeof n);
    lua_pushnumber(L, n);
  } else {
    lua_pushboolean(L, bytes[0]);
  }
}

static shard *shard_of(px_dict *d, const dkey *k) { return &d->shards[k->hash >> 60]; }

/* The entry for k and the link that points at it (lock held). */
static entry **find(shard *s, const dkey *k) {
  if (!s->nbuckets) return NULL;
  entry **link = &s->buckets[k->hash & (s->nbuckets - 1)];
  for (; *link; link = &(*link)->next) {
    entry *e = *link;
    if (e->hash == k->hash && e->ktag == k->tag && e->klen == k->len &&
        memcmp(e->key, k->bytes, k->len) == 0)
      return link;
  }
  return NULL;
}

/* Double the buckets when the load passes 1 (lock held); -1 out of memory
 * (the table stays as it is, only slower). */
static int grow(shard *s) {
  size_t n = s->nbuckets ? s->nbuckets * 2 : 8;
  entry **b = calloc(n, sizeof *b);
  if (!b) return -1;
  for (size_t i = 0; i < s->nbuckets; i++) {
    entry *e = s->buckets[i];
    while (e) {
      entry *next = e->next;
      entry **slot = &b[e->hash & (n - 1)];
      e->next = *slot;
      *slot = e;
      e = next;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = n;
  return 0;
}

/* ---- values ------------------------------------------------------------ */

/* Encode the value at idx into v (no lock held); 0, or -1 with a message
 * pushed.  nil becomes V_NONE (delete). */
static int encode(lua_State *L, int idx, dval *v) {
  v->msg = NULL;
  v->str = NULL;
  switch (lua_type(L, idx)) {
  case LUA_TNONE:
  case LUA_TNIL: v->tag = V_NONE; return 0;
  case LUA_TBOOLEAN: v->tag = lua_toboolean(L, idx) ? V_TRUE : V_FALSE; return 0;
  case LUA_TNUMBER:
    v->tag = V_NUM;
    v->num = lua_tonumber(L, idx);
    return 0;
  case LUA_TSTRING: {
    const char *p = lua_tolstring(L, idx, &v->len);
    v->str = malloc(v->len ? v->len : 1);
    if (!v->str) break;
    memcpy(v->str, p, v->len);
    v->tag = V_STR;
    return 0;
  }
  default:
    v->msg = malloc(sizeof *v->msg);
    if (!v->msg) break;
    px_msg_init(v->msg);
    if (px_marshal(L, idx, 1, v->msg) != 0) {
      px_msg_free(v->msg);
      free(v->msg);
      return -1;
    }
    v->tag = V_MSG;
    return 0;
  }
  lua_pushliteral(L, "dict: not enough memory");
  return -1;
}

static void dval_free(dval *v) {
  if (v->tag == V_STR && v->str != v->small) free(v->str);
  if (v->tag == V_MSG) {
    px_msg_free(v->msg);
    free(v->msg);
  }
  v->tag = V_NONE;
}

/* Copy e's value into out (lock held: allocates, never raises); -1 out of
 * memory. */
static int copy_value(const entry *e, dval *out) {
  out->tag = e->vtag;
  out->num = e->num;
  if (e->vtag == V_STR) {
    out->len = e->vlen;
    out->str = e->vlen <= SMALL ? out->small : malloc(e->vlen);
    if (!out->str) return -1;
    memcpy(out->str, e->vstr, e->vlen);
  } else if (e->vtag == V_MSG) {
    px_msg *m = malloc(sizeof *m);
    if (!m) return -1;
    if (px_msg_copy(m, e->msg) != 0) {
      free(m);
      return -1;
    }
    out->msg = m;
  }
  return 0;
}

/* Push a copied value; raises only out of memory or on a failed unmarshal
 * (run it protected when v holds memory: push_protected). */
static int push_value(lua_State *L) {
  dval *v = lua_touserdata(L, 1);
  switch (v->tag) {
  case V_NUM: lua_pushnumber(L, v->num); break;
  case V_TRUE: lua_pushboolean(L, 1); break;
  case V_FALSE: lua_pushboolean(L, 0); break;
  case V_STR: lua_pushlstring(L, v->str, v->len); break;
  case V_MSG: {
    int n = px_unmarshal(L, v->msg);
    if (n < 0) return lua_error(L);
    if (n == 0) lua_pushnil(L);
    else if (n > 1) lua_pop(L, n - 1);
    break;
  }
  default: lua_pushnil(L); break;
  }
  return 1;
}

/* Push v and free it, or free it and raise. */
static void push_dval(lua_State *L, dval *v) {
  if (v->tag != V_MSG && (v->tag != V_STR || v->str == v->small)) {
    switch (v->tag) {
    case V_NUM: lua_pushnumber(L, v->num); return;
    case V_TRUE: lua_pushboolean(L, 1); return;
    case V_FALSE: lua_pushboolean(L, 0); return;
    case V_STR: lua_pushlstring(L, v->str, v->len); return;
    default: lua_pushnil(L); return;
    }
  }
  int status = px_cpcall(L, push_value, v, 1);
  dval_free(v);
  if (status != 0) lua_error(L);
}

/* Read k's value into out with its version (0, V_NONE: absent). */
static int read_entry(px_dict *d, const dkey *k, dval *out, uint64_t *version) {
  shard *s = shard_of(d, k);
  pthread_mutex_lock(&s->lock);
  entry **link = find(s, k);
  int rc = 0;
  if (link) {
    rc = copy_value(*link, out);
    *version = (*link)->version;
  } else {
    out->tag = V_NONE;
    *version = 0;
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* Store v under k (V_NONE: delete) if k's version is `expect` (or always,
 * when check is 0).  v is consumed: what the entry held before, or v when
 * the swap did not happen, is freed after the lock is released.  Returns
 * 1 swapped, 0 version mismatch, -1 out of memory. */
static int write_entry(px_dict *d, const dkey *k, dval *v, int check, uint64_t expect) {
  shard *s = shard_of(d, k);
  entry *dead = NULL;
  entry *fresh = NULL;
  int rc = 1;
  if (v->tag != V_NONE) { /* allocated before the lock, used if k is new */
    fresh = malloc(sizeof *fresh + k->len);
    if (!fresh) {
      dval_free(v);
      return -1;
    }
  }
  pthread_mutex_lock(&s->lock);
  entry **link = find(s, k);
  entry *e = link ? *link : NULL;
  if (check && (e ? e->version : 0) != expect) {
    rc = 0;
  } else if (v->tag == V_NONE) {
    if (e) {
      *link = e->next;
      s->count--;
      atomic_fetch_sub(&d->count, 1);
      dead = e;
    }
  } else {
    if (!e) {
      if (s->count >= s->nbuckets) grow(s);
      if (!s->nbuckets) {
        rc = -1;
        goto out;
      }
      e = fresh;
      fresh = NULL;
      e->hash = k->hash;
      e->ktag = k->tag;
      e->klen = k->len;
      memcpy(e->key, k->bytes, k->len);
      e->vtag = V_NONE;
      e->seq = atomic_fetch_add(&d->seq, 1);
      entry **slot = &s->buckets[k->hash & (s->nbuckets - 1)];
      e->next = *slot;
      *slot = e;
      s->count++;
      atomic_fetch_add(&d->count, 1);
    }
    /* swap the values: the old one leaves in v */
    dval old = {.tag = e->vtag, .num = e->num, .len = e->vlen, .str = e->vstr, .msg = e->msg};
    e->vtag = v->tag;
    e->num = v->num;
    e->vlen = v->len;
    e->vstr = v->str;
    e->msg = v->msg;
    e->version = ++s->clock;
    *v = old;
  }
out:
  pthread_mutex_unlock(&s->lock);
  dval_free(v);
  free(fresh);
  if (dead) {
    entry_value_free(dead);
    free(dead);
  }
  return rc;
}

/* ---- methods ------------------------------------------------------------- */

static int raise_encode(lua_State *L) {
  return luaL_error(L, "cannot store value in dict: %s", lua_tostring(L, -1));
}

static void check_write(lua_State *L, int rc) {
  if (rc < 0) px_oom(L, "dict");
}

/* The dict at 1 and a copy of the value of key 2, or raise. */
static px_dict *read_arg(lua_State *L, dkey *k, dval *v, uint64_t *version) {
  px_dict *d = check_dict(L);
  check_key(L, 2, k);
  if (read_entry(d, k, v, version) != 0) px_oom(L, "dict");
  return d;
}

/* d:get(k[, default]): k's value (a copy), or default (nil) when absent. */
static int l_get(lua_State *L) {
  dkey k;
  dval v;
  uint64_t version;
  read_arg(L, &k, &v, &version);
  if (v.tag == V_NONE) {
    lua_settop(L, 3);
    return 1;
  }
  push_dval(L, &v);
  return 1;
}

/* d[k]: a method when k names one (upvalue 2: the methods), else d:get(k). */
static int l_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2));
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  return l_get(L);
}

/* d:set(k, v), d[k] = v: store a copy of v; nil deletes k. */
static int l_set(lua_State *L) {
  px_dict *d = check_dict(L);
  dkey k;
  check_key(L, 2, &k);
  dval v;
  if (encode(L, 3, &v) != 0) return raise_encode(L);
  check_write(L, write_entry(d, &k, &v, 0, 0));
  return 0;
}

/* d:pop(k[, default]): remove k and return its value (default if absent). */
static int l_pop(lua_State *L) {
  for (;;) {
    dkey k;
    dval v;
    uint64_t version;
    px_dict *d = read_arg(L, &k, &v, &version);
    if (v.tag == V_NONE) {
      lua_settop(L, 3);
      return 1;
    }
    dval none = {.tag = V_NONE};
    int rc = write_entry(d, &k, &none, 1, version);
    if (rc == 1) {
      push_dval(L, &v);
      return 1;
    }
    dval_free(&v); /* changed in between: read again */
  }
}

/* _getv(d, k) -> value (nil: absent), version: the read half of update. */
static int l_getv(lua_State *L) {
  dkey k;
  dval v;
  uint64_t version;
  read_arg(L, &k, &v, &version);
  push_dval(L, &v);
  lua_pushnumber(L, (lua_Number)version); /* < 2^53 writes per shard */
  return 2;
}

/* _cas(d, k, version, v) -> whether v was stored (k still had version). */
static int l_cas(lua_State *L) {
  px_dict *d = check_dict(L);
  dkey k;
  check_key(L, 2, &k);
  uint64_t expect = (uint64_t)luaL_checknumber(L, 3);
  dval v;
  if (encode(L, 4, &v) != 0) return raise_encode(L);
  int rc = write_entry(d, &k, &v, 1, expect);
  check_write(L, rc);
  lua_pushboolean(L, rc == 1);
  return 1;
}

static int l_len(lua_State *L) {
  px_dict *d = check_dict(L);
  lua_pushinteger(L, (lua_Integer)atomic_load(&d->count));
  return 1;
}

/* d:clear(): remove every key. */
static int l_clear(lua_State *L) {
  px_dict *d = check_dict(L);
  for (int i = 0; i < SHARDS; i++) {
    shard *s = &d->shards[i];
    pthread_mutex_lock(&s->lock);
    entry **b = s->buckets;
    size_t n = s->nbuckets;
    atomic_fetch_sub(&d->count, (long)s->count);
    s->buckets = NULL;
    s->nbuckets = s->count = 0;
    pthread_mutex_unlock(&s->lock);
    for (size_t j = 0; j < n; j++) {
      entry *e = b[j];
      while (e) {
        entry *next = e->next;
        entry_value_free(e);
        free(e);
        e = next;
      }
    }
    free(b);
  }
  return 0;
}

/* A snapshot of the keys: records (seq, tag, len, bytes) copied shard by
 * shard under each lock, then sorted by seq and pushed with no lock held. */
typedef struct krec {
  uint64_t seq;
  int tag;
  size_t len;
  char *bytes;
} krec;

typedef struct keyset {
  krec *recs;
  size_t n;
  char **blocks; /* one malloc'd byte block per shard */
} keyset;

static int by_seq(const void *a, const void *b) {
  uint64_t x = ((const krec *)a)->seq, y = ((const krec *)b)->seq;
  return x < y ? -1 : x > y;
}

static void keyset_free(keyset *ks) {
  if (ks->blocks)
    for (int i = 0; i < SHARDS; i++) free(ks->blocks[i]);
  free(ks->blocks);
  free(ks->recs);
}

static int collect(px_dict *d, keyset *ks) {
  size_t cap = 0;
  ks->recs = NULL;
  ks->n = 0;
  ks->blocks = calloc(SHARDS, sizeof *ks->blocks);
  if (!ks->blocks) return -1;
  for (int i = 0; i < SHARDS; i++) {
    shard *s = &d->shards[i];
    pthread_mutex_lock(&s->lock);
    size_t bytes = 0;
    for (size_t b = 0; b < s->nbuckets; b++)
      for (entry *e = s->buckets[b]; e; e = e->next) bytes += e->klen;
    int rc = 0;
    if (ks->n + s->count > cap) {
      size_t ncap = (ks->n + s->count) * 2;
      krec *r = realloc(ks->recs, ncap * sizeof *r);
      if (r) {
        ks->recs = r;
        cap = ncap;
      } else {
        rc = -1;
      }
    }
    char *block = rc == 0 ? malloc(bytes ? bytes : 1) : NULL;
    if (block) {
      ks->blocks[i] = block;
      for (size_t b = 0; b < s->nbuckets; b++)
        for (entry *e = s->buckets[b]; e; e = e->next) {
          krec *r = &ks->recs[ks->n++];
          r->seq = e->seq;
          r->tag = e->ktag;
          r->len = e->klen;
          r->bytes = block;
          memcpy(block, e->key, e->klen);
          block += e->klen;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (!block) return -1;
  }
  if (ks->n) qsort(ks->recs, ks->n, sizeof *ks->recs, by_seq);
  return 0;
}

static int push_keys(lua_State *L) {
  keyset *ks = lua_touserdata(L, 1);
  lua_createtable(L, (int)ks->n, 0);
  for (size_t i = 0; i < ks->n; i++) {
    push_key(L, ks->recs[i].tag, ks->recs[i].bytes, ks->recs[i].len);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

/* d:keys() -> a list of the keys, in the order they were first inserted
 * (a snapshot: keys added or removed afterwards do not change it). */
static int l_keys(lua_State *L) {
  px_dict *d = check_dict(L);
  keyset ks;
  if (collect(d, &ks) != 0) {
    keyset_free(&ks);
    return px_oom(L, "dict");
  }
  int status = px_cpcall(L, push_keys, &ks, 1);
  keyset_free(&ks);
  if (status != 0) return lua_error(L);
  return 1;
}

static int l_tostring(lua_State *L) {
  px_dict *d = (px_dict *)px_shared_check(L, 1, &dict_type);
  lua_pushfstring(L, "parx.dict(%d): %p", (int)atomic_load(&d->count), (void *)d);
  return 1;
}

static int l_new(lua_State *L) {
  px_dict *d = calloc(1, sizeof *d);
  if (!d) return px_oom(L, "dict");
  px_shared_init(&d->hdr, &dict_type);
  for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&d->shards[i].lock, NULL);
  atomic_init(&d->seq, 1);
  atomic_init(&d->count, 0);
  px_shared_push(L, &d->hdr);
  return 1;
}

/* parx.c.dict: new, metatable and methods (where dict.lua adds its own and
 * sets __parx_ready on the metatable). */
int px_open_dict(lua_State *L) {
  static const luaL_Reg methods[] = {{"get", l_get}, {"set", l_set}, {"pop", l_pop},
    {"keys", l_keys}, {"clear", l_clear}, {"len", l_len}, {"_getv", l_getv},
    {"_cas", l_cas}, {NULL, NULL}};
  px_shared_register(&dict_type);
  lua_newtable(L);              /* module */
  px_shared_meta(L, &dict_type); /* module, mt */
  lua_newtable(L);              /* module, mt, methods */
  for (const luaL_Reg *r = methods; r->name; r++) {
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -2, r->name);
  }
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_index, 2);
  lua_setfield(L, -3, "__index");
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_set, 1);
  lua_setfield(L, -3, "__newindex");
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_len, 1);
  lua_setfield(L, -3, "__len");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -3, "__tostring");
  lua_setfield(L, -3, "methods");
  lua_setfield(L, -2, "metatable");
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "new");
  return 1;
}
