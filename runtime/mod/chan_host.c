/*
 * chan_host.c -- channels from the host (the "Channels from the host"
 * section of parx.h).
 *
 * A host thread uses the same queue operations as a task.  When it must
 * wait, its px_sel (kind SEL_HOST, on its own stack) carries a mutex and a
 * condition variable instead of a px_wait: the party that fires it signals
 * the condition (px_chan_wake_all), and nothing touches the sel after that,
 * so it may live on the stack.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../parx.h"
#include "chan.h"

struct parx_channel; /* is a px_chan */

static px_chan *CH(parx_channel *ch) { return (px_chan *)ch; }

parx_channel *parx_channel_new(long capacity) {
  return (parx_channel *)px_chan_new(capacity < 0 ? -1 : capacity);
}

void parx_channel_retain(parx_channel *ch) { px_shared_retain(&CH(ch)->hdr); }
void parx_channel_release(parx_channel *ch) { px_shared_release(&CH(ch)->hdr); }
int parx_channel_close(parx_channel *ch) { return px_chan_close(CH(ch)); }

long parx_channel_len(parx_channel *ch) {
  px_chan_lock(CH(ch));
  long n = (long)px_chan_len_locked(CH(ch));
  px_chan_unlock(CH(ch));
  return n;
}

void parx_value_clear(parx_value *v) {
  if (v->type == PARX_VALUE_STRING) free(v->string);
  memset(v, 0, sizeof *v);
}

/* One operation; block: wait on a condition variable when it would park. */
static int host_op(px_chan *ch, int is_send, px_slot *v, px_slot *got, int block) {
  px_sel *wake = NULL;
  px_chan_lock(ch);
  int r = is_send ? px_chan_send_locked(ch, v, &wake) : px_chan_recv_locked(ch, got, &wake);
  if (r != 0 || !block) {
    px_chan_unlock(ch);
    px_chan_wake_all(wake);
    if (r == -2) return PARX_CHAN_ERRMEM;
    if (r == 1) return PARX_CHAN_OK;
    if (r == -1) return PARX_CHAN_CLOSED;
    return is_send ? PARX_CHAN_FULL : PARX_CHAN_EMPTY;
  }
  /* Park this thread: a sel of one case on the stack. */
  _Alignas(max_align_t) char rec[sizeof(px_sel) + sizeof(px_entry)];
  memset(rec, 0, sizeof rec);
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
  px_sel *sel = (px_sel *)rec;
  atomic_init(&sel->fired, 0);
  sel->kind = SEL_HOST;
  sel->index = -2;
  sel->n = 1;
  sel->host_lock = &lock;
  sel->host_cond = &cond;
  px_entry *e = &sel->cases[0];
  e->sel = sel;
  e->ch = ch;
  e->is_send = is_send;
  if (is_send) {
    e->val = *v;
    v->tag = SLOT_NIL;
  }
  px_chan_enqueue_locked(ch, e, &wake); /* may fire sel itself */
  px_chan_unlock(ch);
  px_chan_wake_all(wake);

  pthread_mutex_lock(&lock);
  while (!sel->host_done) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  pthread_cond_destroy(&cond);
  pthread_mutex_destroy(&lock);
  if (is_send) {
    if (!sel->ok) px_slot_free(&e->val);
  } else if (sel->ok) {
    *got = sel->got;
  }
  return sel->ok ? PARX_CHAN_OK : PARX_CHAN_CLOSED;
}

static int send_value(parx_channel *ch, const parx_value *v, int block) {
  px_slot s;
  if (px_slot_from_host(v, &s) != 0) return PARX_CHAN_ERRMEM;
  int r = host_op(CH(ch), 1, &s, NULL, block);
  if (r != PARX_CHAN_OK) px_slot_free(&s);
  return r;
}

static int recv_value(parx_channel *ch, parx_value *out, int block) {
  px_slot got = {0};
  memset(out, 0, sizeof *out);
  int r = host_op(CH(ch), 0, NULL, &got, block);
  if (r != PARX_CHAN_OK) return r;
  return px_slot_to_host(&got, out);
}

int parx_channel_send(parx_channel *ch, const parx_value *v) { return send_value(ch, v, 1); }
int parx_channel_try_send(parx_channel *ch, const parx_value *v) { return send_value(ch, v, 0); }
int parx_channel_recv(parx_channel *ch, parx_value *out) { return recv_value(ch, out, 1); }
int parx_channel_try_recv(parx_channel *ch, parx_value *out) { return recv_value(ch, out, 0); }

void parx_channel_push(lua_State *L, parx_channel *ch) {
  px_shared_retain(&CH(ch)->hdr);
  px_chan_push(L, &CH(ch)->hdr);
}

parx_channel *parx_channel_get(lua_State *L, int idx) {
  px_shared *obj = px_shared_test(L, idx, &px_chan_type);
  if (!obj) return NULL;
  px_shared_retain(obj);
  return (parx_channel *)obj;
}

/* Lua values through the marshaller, for a host holding a state of the
 * runtime (parx.h: parx_channel_send_lua).  Both ends run protected: a
 * value that cannot cross leaves its message on L. */
static int encode_p(lua_State *L) {
  return px_slot_encode(L, 1, lua_touserdata(L, 2)) != 0 ? lua_error(L) : 0;
}

static int decode_p(lua_State *L) {
  return px_slot_decode(L, lua_touserdata(L, 1)) != 0 ? lua_error(L) : 1;
}

static int send_lua(parx_channel *ch, lua_State *L, int idx, int block) {
  px_slot s = {0};
  lua_pushvalue(L, idx);
  lua_pushcfunction(L, encode_p);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, &s);
  if (lua_pcall(L, 2, 0, 0) != 0) return PARX_CHAN_ERRVALUE; /* the message alone */
  int r = host_op(CH(ch), 1, &s, NULL, block);
  if (r != PARX_CHAN_OK) px_slot_free(&s);
  return r;
}

static int recv_lua(parx_channel *ch, lua_State *L, int block) {
  px_slot got = {0};
  int r = host_op(CH(ch), 0, NULL, &got, block);
  if (r != PARX_CHAN_OK) return r;
  lua_pushcfunction(L, decode_p);
  lua_pushlightuserdata(L, &got);
  return lua_pcall(L, 1, 1, 0) != 0 ? PARX_CHAN_ERRVALUE : PARX_CHAN_OK;
}

int parx_channel_send_lua(parx_channel *ch, lua_State *L, int idx) { return send_lua(ch, L, idx, 1); }
int parx_channel_try_send_lua(parx_channel *ch, lua_State *L, int idx) { return send_lua(ch, L, idx, 0); }
int parx_channel_recv_lua(parx_channel *ch, lua_State *L) { return recv_lua(ch, L, 1); }
int parx_channel_try_recv_lua(parx_channel *ch, lua_State *L) { return recv_lua(ch, L, 0); }
