/*
 * mpi.c -- parx.c.mpi: point-to-point messages, probes, barriers and
 * communicators, each a px_mpi_op handed to the communication thread
 * (comm.c) while the calling task parks.  The collectives and mpi.map are
 * built on these in lua/parx/mpi.lua.
 *
 * What travels.  A parx array travels as its raw bytes with its dtype and
 * shape in the envelope (no marshalling, no copy on either side for a
 * payload above PX_MPI_INLINE); any other value through the marshaller in
 * its trusted mode (the ranks of a job run the same code and may send
 * functions).  A message whose bytes are not a parx message, or do not
 * unmarshal, is a Lua error on the receiving side, never a crash.
 *
 * A parked operation cannot raise when it resumes, so the C functions
 * return nil and a message on failure and the Lua layer raises.
 */
#define PX_MPI_INTERNAL 1
#include <stdlib.h>
#include <string.h>

#include "../core/array.h"
#include "mpi.h"

#define BOX_META "parx.mpi.box"

/* The bytes of a received value, until the Lua side unmarshals them (in
 * its own protected frame, not inside a wait's deliver). */
typedef struct box {
  char *data;
  size_t len;
  px_array *array; /* or a received array (one reference) */
} box;

static int box_gc(lua_State *L) {
  box *b = luaL_checkudata(L, 1, BOX_META);
  free(b->data);
  b->data = NULL;
  if (b->array) px_array_release(b->array);
  b->array = NULL;
  return 0;
}

static px_mpi_comm *check_comm(lua_State *L, int idx) {
  return (px_mpi_comm *)px_shared_check(L, idx, &px_mpi_comm_type);
}

static px_mpi_op *op_new(lua_State *L, px_mpi_comm *c, int kind, const char *what) {
  char deferred[256];
  if (px_mpi_take_deferred(deferred, sizeof deferred)) luaL_error(L, "%s", deferred);
  px_mpi_op *op = calloc(1, sizeof *op);
  if (!op) luaL_error(L, "not enough memory");
  op->kind = kind;
  op->comm = c;
  px_shared_retain(&c->hdr);
  op->wait.what = what;
  px_msg_init(&op->msg);
  return op;
}

static void op_discard(px_wait *w) { px_mpi_op_free((px_mpi_op *)w); }

static int op_cancel(px_wait *w) {
  px_mpi_op *op = (px_mpi_op *)w;
  if (px_mpi_cancel(op)) {
    px_mpi_op_free(op);
    return 1;
  }
  return 0;
}

/* nil, message: the op failed (freed). */
static int deliver_error(lua_State *co, px_mpi_op *op) {
  char msg[sizeof op->errmsg];
  memcpy(msg, op->errmsg, sizeof msg);
  px_mpi_op_free(op);
  lua_pushnil(co);
  lua_pushstring(co, msg);
  return 2;
}

static int park(lua_State *L, px_mpi_op *op, int (*deliver)(lua_State *, px_wait *)) {
  op->wait.deliver = deliver;
  op->wait.discard = op_discard;
  op->wait.cancel = op_cancel;
  op->wait.external = 1;
  px_wait_prepare(L, &op->wait);
  px_mpi_submit(op);
  return px_park(L, &op->wait);
}

static int check_rank(lua_State *L, px_mpi_comm *c, int idx, int any) {
  lua_Integer r = luaL_checkinteger(L, idx);
  if ((any && r == MPI_ANY_SOURCE) || (r >= 0 && r < c->size)) return (int)r;
  return luaL_argerror(L, idx, lua_pushfstring(L, "rank %d out of range (0..%d)", (int)r, c->size - 1));
}

static int check_tag(lua_State *L, int idx, int any) {
  lua_Integer t = luaL_optinteger(L, idx, any ? MPI_ANY_TAG : 0);
  if ((any && t == MPI_ANY_TAG) || (t >= 0 && t <= 32767)) return (int)t;
  return luaL_argerror(L, idx, "tag out of range (0..32767)");
}

/* The op of a call (comm, [value,] peer, tag[, coll]) whose peer is at
 * peer_idx; any: receives and probes take ANY_SOURCE and ANY_TAG. */
static px_mpi_op *peer_op(lua_State *L, int kind, const char *what, int peer_idx, int any) {
  px_mpi_comm *c = check_comm(L, 1);
  int peer = check_rank(L, c, peer_idx, any);
  int tag = check_tag(L, peer_idx + 1, any);
  int coll = lua_toboolean(L, peer_idx + 2);
  px_check_can_park(L);
  px_mpi_op *op = op_new(L, c, kind, what);
  op->peer = peer;
  op->tag = tag;
  op->coll = coll;
  if (peer >= 0) px_trace_wait_on_int(L, &op->wait, "peer", peer);
  else px_trace_wait_on(L, &op->wait, "peer", "any");
  if (tag >= 0) px_trace_wait_on_int(L, &op->wait, "tag", tag);
  else px_trace_wait_on(L, &op->wait, "tag", "any");
  return op;
}

/* ------------------------------------------------------------------------
 * send(comm, v, dest, tag, coll) -> true | nil, message
 * ---------------------------------------------------------------------- */
static int deliver_send(lua_State *co, px_wait *w) {
  px_mpi_op *op = (px_mpi_op *)w;
  if (op->err) return deliver_error(co, op);
  px_mpi_op_free(op);
  lua_pushboolean(co, 1);
  return 1;
}

/* The envelope for a payload of len bytes (inlined when small). */
static int make_env(px_mpi_op *op, px_mpi_env *env, const void *payload, size_t len) {
  env->magic = PX_MPI_MAGIC;
  env->paylen = len;
  env->inlined = len <= PX_MPI_INLINE;
  op->envlen = sizeof *env + (env->inlined ? len : 0);
  op->env = malloc(op->envlen);
  if (!op->env) return -1;
  memcpy(op->env, env, sizeof *env);
  if (env->inlined) memcpy(op->env + sizeof *env, payload, len);
  op->payload = payload;
  op->paylen = len;
  return 0;
}

static int l_send(lua_State *L) {
  px_array *a = px_array_test(L, 2);
  px_mpi_op *op = peer_op(L, PX_MPI_SEND, "mpi send", 3, 0);
  px_mpi_env env;
  memset(&env, 0, sizeof env);
  int rc;
  if (a) {
    env.kind = PX_MPI_ARRAY;
    env.dtype = (uint8_t)a->dtype;
    env.ndim = (uint8_t)a->ndim;
    for (int i = 0; i < a->ndim; i++) env.shape[i] = a->shape[i];
    px_shared_retain(&a->hdr);
    op->hold = &a->hdr;
    rc = make_env(op, &env, a->data, (size_t)a->n * px_dtype_size(a->dtype));
  } else {
    env.kind = PX_MPI_VALUE;
    if (px_marshal(L, 2, 1, &op->msg) != 0) {
      px_mpi_op_free(op);
      return lua_error(L);
    }
    if (op->msg.nrefs > 0) {
      px_mpi_op_free(op);
      return luaL_error(L, "cannot send a shared object (channel, array, task...) inside a value "
                           "to another rank: send arrays on their own");
    }
    rc = make_env(op, &env, op->msg.data, op->msg.len);
  }
  if (rc != 0) {
    px_mpi_op_free(op);
    return luaL_error(L, "not enough memory");
  }
  if (((px_mpi_env *)op->env)->inlined) {
    /* The whole message is in the envelope: buffered, nobody waits (a
     * failure is raised by this process's next parx.mpi call). */
    px_msg_free(&op->msg);
    if (op->hold) px_shared_release(op->hold);
    op->hold = NULL;
    op->payload = NULL;
    if (px_mpi_submit_buffered(op) == 0) {
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  return park(L, op, deliver_send);
}

/* send_raw(comm, bytes, dest, tag): bytes as they are, for the specs that
 * check what a receiver does with a message that is not parx's. */
static int l_send_raw(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_settop(L, 4); /* never on `coll` */
  px_mpi_op *op = peer_op(L, PX_MPI_SEND, "mpi send", 3, 0);
  op->env = malloc(len + 1);
  if (!op->env) {
    px_mpi_op_free(op);
    return luaL_error(L, "not enough memory");
  }
  memcpy(op->env, s, len);
  op->envlen = len;
  op->raw = 1;
  return park(L, op, deliver_send);
}

/* ------------------------------------------------------------------------
 * recv(comm, source, tag, coll) -> kind, payload, source, tag
 *                                | nil, message
 * kind "value": payload is a box for decode(); "array": the array.
 * ---------------------------------------------------------------------- */
/* Push "array" or "value" and a box taking op's received array or bytes;
 * op is freed.  The array's Lua face is made by Lua code, which cannot run
 * on co here: the Lua side unboxes it (decode). */
static void push_box(lua_State *co, px_mpi_op *op) {
  if (op->rarray) lua_pushliteral(co, "array");
  else lua_pushliteral(co, "value");
  box *b = lua_newuserdata(co, sizeof *b);
  b->data = op->rpay;
  b->len = op->paylen;
  b->array = (px_array *)op->rarray;
  op->rpay = NULL;
  op->rarray = NULL;
  px_mpi_op_free(op);
  luaL_getmetatable(co, BOX_META);
  lua_setmetatable(co, -2);
}

static int deliver_recv(lua_State *co, px_wait *w) {
  px_mpi_op *op = (px_mpi_op *)w;
  if (op->err) return deliver_error(co, op);
  int source = op->source, tag = op->rtag;
  push_box(co, op);
  lua_pushinteger(co, source);
  lua_pushinteger(co, tag);
  return 4;
}

static int l_recv(lua_State *L) {
  return park(L, peer_op(L, PX_MPI_RECV, "mpi recv", 2, 1), deliver_recv);
}

/* recv_into(comm, array, source, tag) -> source, tag | nil, message: the
 * payload lands in the array's own memory (posted straight into it, no
 * allocation), which must have the message's dtype and element count. */
static int deliver_status(lua_State *co, px_wait *w);

static int l_recv_into(lua_State *L) {
  px_array *a = px_array_check(L, 2);
  lua_settop(L, 4); /* never on `coll` */
  px_mpi_op *op = peer_op(L, PX_MPI_RECV, "mpi recv", 3, 1);
  px_shared_retain(&a->hdr);
  op->hold = &a->hdr;
  return park(L, op, deliver_status);
}

/* decode(box) -> true, value | nil, message */
static int l_decode(lua_State *L) {
  box *b = luaL_checkudata(L, 1, BOX_META);
  if (b->array) {
    px_array *a = b->array;
    b->array = NULL;
    lua_pushboolean(L, 1);
    px_array_push(L, a);
    return 2;
  }
  if (!b->data) return luaL_error(L, "message already decoded");
  px_msg m;
  px_msg_init(&m);
  m.data = b->data;
  m.len = m.cap = b->len;
  b->data = NULL;
  int top = lua_gettop(L);
  int n = px_unmarshal(L, &m);
  px_msg_free(&m);
  if (n < 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (n != 1) {
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushfstring(L, "a message of %d values, not one", n);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -2);
  return 2;
}

/* ------------------------------------------------------------------------
 * probe(comm, source, tag) -> source, tag | nil, message
 * barrier(comm) -> true | nil, message
 * split(comm, color, key) -> comm | false (color < 0) | nil, message
 * ---------------------------------------------------------------------- */
/* source, tag: what probe and recv_into deliver */
static int deliver_status(lua_State *co, px_wait *w) {
  px_mpi_op *op = (px_mpi_op *)w;
  if (op->err) return deliver_error(co, op);
  lua_pushinteger(co, op->source);
  lua_pushinteger(co, op->rtag);
  px_mpi_op_free(op);
  return 2;
}

static int l_probe(lua_State *L) {
  lua_settop(L, 3);
  return park(L, peer_op(L, PX_MPI_PROBE, "mpi probe", 2, 1), deliver_status);
}

static int l_barrier(lua_State *L) {
  px_mpi_comm *c = check_comm(L, 1);
  px_check_can_park(L);
  px_mpi_op *op = op_new(L, c, PX_MPI_BARRIER, "mpi barrier");
  return park(L, op, deliver_send);
}

static int deliver_split(lua_State *co, px_wait *w) {
  px_mpi_op *op = (px_mpi_op *)w;
  if (op->err) return deliver_error(co, op);
  px_mpi_comm *nc = op->newcomm;
  op->newcomm = NULL;
  px_mpi_op_free(op);
  if (!nc) {
    lua_pushboolean(co, 0);
    return 1;
  }
  px_shared_push(co, &nc->hdr);
  return 1;
}

static int l_split(lua_State *L) {
  px_mpi_comm *c = check_comm(L, 1);
  lua_Integer color = luaL_checkinteger(L, 2);
  lua_Integer key = luaL_optinteger(L, 3, c->rank);
  if (color > 0x7fffffff) luaL_argerror(L, 2, "color too large");
  if (key < -0x7fffffff || key > 0x7fffffff) luaL_argerror(L, 3, "key out of range");
  px_check_can_park(L);
  px_mpi_op *op = op_new(L, c, PX_MPI_SPLIT, "mpi split");
  op->color = color < 0 ? -1 : (int)color;
  op->key = (int)key;
  return park(L, op, deliver_split);
}

/* ------------------------------------------------------------------------
 * allreduce(comm, v, op, kind, code, n[, out]) -> "number", x
 *                                 | "array", box | false | nil, message
 * MPI's own allreduce, for the values it can reduce.  Every rank first
 * says what it passes (kind, code, n: mpi.lua's mpi_codes; kind 0 when v
 * is not one MPI reduces): when all agree on a kind other than 0, MPI
 * reduces v, a number (as a double) or an array of a dtype MPI has, by op
 * (sum, prod, min or max), into out when given (out may be v: in place);
 * otherwise false, and mpi.lua takes the way of reduce and bcast.  One op,
 * so one hand-off each way with the thread.
 * ---------------------------------------------------------------------- */
/* reduce_into's and allreduce's op names, in PX_OP_ order (MPI's own
 * allreduce takes the first four). */
static const char *const op_names[] = {"sum", "prod", "min", "max", "land", "lor", NULL};

static int deliver_allreduce(lua_State *co, px_wait *w) {
  px_mpi_op *op = (px_mpi_op *)w;
  if (op->err) return deliver_error(co, op);
  if (!op->agreed || op->count == 0) {
    px_mpi_op_free(op);
    lua_pushboolean(co, 0);
    return 1;
  }
  if (op->rarray) {
    push_box(co, op);
    return 2;
  }
  double x = op->num[1];
  px_mpi_op_free(op);
  lua_pushliteral(co, "number");
  lua_pushnumber(co, x);
  return 2;
}

static int l_allreduce(lua_State *L) {
  px_mpi_comm *c = check_comm(L, 1);
  int64_t codes[3];
  for (int i = 0; i < 3; i++) {
    lua_Number x = luaL_checknumber(L, i + 4);
    if (!(x > -9007199254740992.0 && x < 9007199254740992.0) || x != (int64_t)x)
      return luaL_argerror(L, i + 4, "an integer below 2^53 expected");
    codes[i] = (int64_t)x;
  }
  const char *err = NULL;
  const px_mpi_lib *lib = px_mpi_lib_load(&err);
  if (!lib) return luaL_error(L, "parx.mpi: %s", err);
  px_array *a = NULL;
  int which = 0;
  if (codes[0] != 0) {
    a = px_array_test(L, 2);
    if (!a) luaL_checktype(L, 2, LUA_TNUMBER);
    which = luaL_checkoption(L, 3, NULL, op_names);
    if (which > PX_OP_MAX) return luaL_argerror(L, 3, "MPI reduces by sum, prod, min or max");
    if (a && (!lib->dtype[a->dtype] || a->n > 0x7fffffff))
      return luaL_argerror(L, 2, "an array MPI cannot reduce (float16, bfloat16, or 2^31 elements)");
  }
  /* out: the caller's array for the result (mpi.lua checked its dtype and
   * size), or a new one. */
  px_array *out = a && !lua_isnoneornil(L, 7) ? px_array_check(L, 7) : NULL;
  if (out && (out->dtype != a->dtype || out->n != a->n))
    return luaL_argerror(L, 7, "out must have the array's dtype and size");
  px_check_can_park(L);
  if (out) px_shared_retain(&out->hdr);
  else if (a && !(out = px_array_new_uninit(a->dtype, a->ndim, a->shape)))
    return px_oom(L, "mpi allreduce");
  px_mpi_op *op = op_new(L, c, PX_MPI_ALLREDUCE, "mpi allreduce");
  for (int i = 0; i < 3; i++) {
    op->codes[2 * i] = codes[i];
    op->codes[2 * i + 1] = -codes[i];
  }
  if (codes[0] != 0) {
    op->mop = lib->op[which];
    op->count = 1;
    op->type = lib->dtype[PX_FLOAT64];
    op->in = &op->num[0];
    op->out = &op->num[1];
    op->num[0] = a ? 0 : lua_tonumber(L, 2);
  }
  if (a) {
    px_shared_retain(&a->hdr);
    op->hold = &a->hdr; /* both arrays live until MPI is done with them */
    op->rarray = &out->hdr;
    op->in = out == a ? MPI_IN_PLACE : a->data;
    op->out = out->data;
    op->count = (int)a->n;
    op->type = lib->dtype[a->dtype];
  }
  return park(L, op, deliver_allreduce);
}

/* ------------------------------------------------------------------------
 * The rest: facts, sequence numbers, element-wise reductions.
 * ---------------------------------------------------------------------- */
static int l_rank(lua_State *L) {
  lua_pushinteger(L, check_comm(L, 1)->rank);
  return 1;
}

static int l_size(lua_State *L) {
  lua_pushinteger(L, check_comm(L, 1)->size);
  return 1;
}

/* The tag of this rank's next collective on comm (every rank calls the
 * collectives of a communicator in the same order, as in MPI). */
static int l_next_tag(lua_State *L) {
  px_mpi_comm *c = check_comm(L, 1);
  unsigned seq = atomic_fetch_add(&c->seq, 1);
  lua_pushinteger(L, (lua_Integer)(seq % 32768));
  return 1;
}


/* reduce_into(acc, x, op): acc[i] = acc[i] op x[i]. */
static int l_reduce_into(lua_State *L) {
  px_array *acc = px_array_check(L, 1);
  px_array *x = px_array_check(L, 2);
  int op = luaL_checkoption(L, 3, NULL, op_names);
  if (acc->dtype != x->dtype || acc->n != x->n)
    return luaL_error(L, "cannot reduce a %s array of %d elements with a %s array of %d",
                      px_dtype_name(acc->dtype), (int)acc->n, px_dtype_name(x->dtype), (int)x->n);
  if (px_mpi_reduce(acc->dtype, op, acc->data, x->data, acc->n) != 0)
    return luaL_error(L, "cannot reduce %s arrays", px_dtype_name(acc->dtype));
  return 0;
}

/* init() -> rank, size, host: starts MPI (once per process). */
static int l_init(lua_State *L) {
  const char *err = NULL;
  if (px_mpi_start(&err) != 0) return luaL_error(L, "parx.mpi: %s", err);
  lua_pushinteger(L, px_mpi_world_rank());
  lua_pushinteger(L, px_mpi_world_size());
  lua_pushstring(L, px_mpi_host());
  return 3;
}

static int l_world(lua_State *L) {
  px_mpi_comm *w = px_mpi_world();
  px_shared_retain(&w->hdr);
  px_shared_push(L, &w->hdr);
  return 1;
}

static const luaL_Reg comm_methods[] = {
    {"rank", l_rank},       {"size", l_size},       {"_send", l_send},
    {"_send_raw", l_send_raw}, {"_recv", l_recv},   {"_recv_into", l_recv_into},
    {"_probe", l_probe},    {"_allreduce", l_allreduce},
    {"_barrier", l_barrier}, {"_split", l_split},   {"_next_tag", l_next_tag},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"init", l_init}, {"world", l_world}, {"decode", l_decode},
    {"reduce_into", l_reduce_into}, {NULL, NULL}};

int px_open_mpi(lua_State *L) {
  px_shared_register(&px_mpi_comm_type);
  if (luaL_newmetatable(L, BOX_META)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, funcs);
  px_shared_meta(L, &px_mpi_comm_type);
  luaL_register(L, NULL, comm_methods);
  lua_setfield(L, -2, "metatable");
  static const struct {
    const char *name;
    int value;
  } wildcards[] = {{"ANY_SOURCE", MPI_ANY_SOURCE}, {"ANY_TAG", MPI_ANY_TAG}};
  for (size_t i = 0; i < sizeof wildcards / sizeof wildcards[0]; i++) {
    lua_pushinteger(L, wildcards[i].value);
    lua_setfield(L, -2, wildcards[i].name);
  }
  return 1;
}
