/*
 * udp.c -- UDP sockets ("parx.c.udp").  Names are resolved by the Lua layer
 * (lua/parx/udp.lua); the functions here take numeric addresses.
 *
 *   bind(ip, port) -> socket | nil, msg, code
 *   socket:sendto(data, ip, port) -> true | nil, msg, code
 *   socket:recv() -> data, ip, port | nil, msg, code (ECLOSED once closed)
 *   socket:close(), socket.port, socket.host
 *
 * Receiving starts with the first recv() and goes on in the background:
 * datagrams that arrive while nobody waits are queued, up to QUEUE_MAX
 * datagrams or QUEUE_BYTES bytes; beyond that they are dropped, as the
 * kernel would drop them.  The handle
 * is unreferenced except while a task is parked on recv(), so an idle
 * socket does not keep a script alive.
 */
#include "stream.h" /* px_io_scratch_alloc */

#include <stdlib.h>
#include <string.h>

#define QUEUE_MAX 4096
#define QUEUE_BYTES ((size_t)8 << 20)

enum { OP_PARKED, OP_WOKEN, OP_DETACHED };

typedef struct dgram {
  struct dgram *next;
  struct sockaddr_storage from;
  size_t len;
  char data[];
} dgram;

typedef struct udp_sock {
  uv_udp_t handle;
  px_vm *vm;
  dgram *head, *tail;
  int count;
  size_t bytes;
  int err;
  int receiving;
  px_wait wait; /* the receiver, while state != OP_DETACHED */
  int state;
  int ref;
  int port;
  int closing, closed, lua_gone;
  char host[64];
} udp_sock;

typedef struct send_op {
  uv_udp_send_t req;
  px_wait wait;
  int state;
  int status;
  char data[];
} send_op;

static int parse_addr(const char *ip, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL;
}

static int check_port(lua_State *L, int idx) {
  lua_Number p = luaL_checknumber(L, idx);
  luaL_argcheck(L, p >= 0 && p <= 65535 && p == (int)p, idx,
                "port must be an integer in 0..65535");
  return (int)p;
}

static void queue_free(udp_sock *u) {
  while (u->head) {
    dgram *d = u->head;
    u->head = d->next;
    free(d);
  }
  u->tail = NULL;
  u->count = 0;
  u->bytes = 0;
}

static void on_close(uv_handle_t *h) {
  udp_sock *u = h->data;
  u->closed = 1;
  queue_free(u);
  if (u->lua_gone) free(u);
}

static void receiver_wake(udp_sock *u) {
  if (u->state != OP_PARKED) return;
  u->state = OP_WOKEN;
  uv_unref((uv_handle_t *)&u->handle);
  px_wake(&u->wait);
}

static void start_close(udp_sock *u) {
  if (u->closing) return;
  u->closing = 1;
  uv_close((uv_handle_t *)&u->handle, on_close);
  receiver_wake(u);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags) {
  udp_sock *u = h->data;
  (void)flags;
  if (nread < 0) {
    u->err = (int)nread;
  } else if (addr && u->count < QUEUE_MAX && u->bytes + (size_t)nread <= QUEUE_BYTES) {
    dgram *d = malloc(sizeof *d + (size_t)nread);
    if (!d) {
      u->err = UV_ENOMEM;
    } else {
      d->next = NULL;
      d->len = (size_t)nread;
      memcpy(d->data, buf->base, (size_t)nread);
      memcpy(&d->from, addr,
             addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                         : sizeof(struct sockaddr_in));
      if (u->tail)
        u->tail->next = d;
      else
        u->head = d;
      u->tail = d;
      u->count++;
      u->bytes += (size_t)nread;
    }
  } else {
    return; /* nothing read (nread 0, no addr) or the queue is full */
  }
  receiver_wake(u);
}

/* Push the next datagram or the pending error. */
static int produce(lua_State *L, udp_sock *u) {
  if (u->closing) return px_push_error(L, PX_ECLOSED, NULL);
  dgram *d = u->head;
  if (!d) {
    int err = u->err;
    u->err = 0;
    return px_push_error(L, err ? err : UV_EAGAIN, NULL);
  }
  u->head = d->next;
  if (!u->head) u->tail = NULL;
  u->count--;
  u->bytes -= d->len;
  lua_pushlstring(L, d->data, d->len);
  char ip[64];
  int port;
  if (d->from.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&d->from;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&d->from;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  }
  free(d);
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 3;
}

static void receiver_release(lua_State *L, udp_sock *u) {
  u->state = OP_DETACHED;
  luaL_unref(L, LUA_REGISTRYINDEX, u->ref);
  u->ref = LUA_NOREF;
}

static int receiver_deliver(lua_State *co, px_wait *w) {
  udp_sock *u = (udp_sock *)((char *)w - offsetof(udp_sock, wait));
  receiver_release(co, u);
  return produce(co, u);
}

static void receiver_discard(px_wait *w) {
  udp_sock *u = (udp_sock *)((char *)w - offsetof(udp_sock, wait));
  receiver_release(px_vm_state(u->vm), u);
}

static int receiver_cancel(px_wait *w) {
  udp_sock *u = (udp_sock *)((char *)w - offsetof(udp_sock, wait));
  if (u->state == OP_WOKEN) return 0;
  uv_unref((uv_handle_t *)&u->handle);
  receiver_release(px_vm_state(u->vm), u);
  return 1;
}

static udp_sock *check_sock(lua_State *L, int open) {
  udp_sock **box = lua_touserdata(L, 1);
  if (!box || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    luaL_typerror(L, 1, "parx.udp.socket");
  lua_pop(L, 1);
  if (open && (!*box || (*box)->closing))
    luaL_error(L, "attempt to use a closed socket");
  return *box;
}

static int sock_recv(lua_State *L) {
  udp_sock *u = check_sock(L, 0);
  if (!u || u->closing) return px_push_error(L, PX_ECLOSED, NULL);
  if (u->state != OP_DETACHED)
    return luaL_error(L, "socket is already being received on by another task");
  if (u->head || u->err) return produce(L, u);
  if (!u->receiving) {
    int r = uv_udp_recv_start(&u->handle, px_io_scratch_alloc, on_recv);
    if (r < 0) return px_push_error(L, r, NULL);
    u->receiving = 1;
  }
  memset(&u->wait, 0, sizeof u->wait);
  u->wait.what = "udp recv";
  u->wait.deliver = receiver_deliver;
  u->wait.discard = receiver_discard;
  u->wait.cancel = receiver_cancel;
  px_wait_prepare(L, &u->wait); /* raises before anything is registered */
  lua_pushvalue(L, 1);
  u->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  u->state = OP_PARKED;
  uv_ref((uv_handle_t *)&u->handle);
  return px_park(L, &u->wait);
}

static int send_deliver(lua_State *co, px_wait *w) {
  send_op *op = (send_op *)((char *)w - offsetof(send_op, wait));
  int status = op->status;
  free(op);
  if (status < 0) return px_push_error(co, status, NULL);
  lua_pushboolean(co, 1);
  return 1;
}

static void send_discard(px_wait *w) { free((char *)w - offsetof(send_op, wait)); }

static int send_cancel(px_wait *w) {
  send_op *op = (send_op *)((char *)w - offsetof(send_op, wait));
  if (op->state == OP_WOKEN) return 0;
  op->state = OP_DETACHED;
  return 1;
}

static void on_send(uv_udp_send_t *req, int status) {
  send_op *op = (send_op *)req;
  op->status = status;
  if (op->state == OP_PARKED) {
    op->state = OP_WOKEN;
    px_wake(&op->wait);
  } else {
    free(op);
  }
}

/* socket:sendto(data, ip, port): the datagram goes out at once when the
 * kernel takes it; otherwise it is copied and the sender parks until
 * libuv has sent it. */
static int sock_sendto(lua_State *L) {
  udp_sock *u = check_sock(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *ip = luaL_checkstring(L, 3);
  int port = check_port(L, 4);
  struct sockaddr_storage ss;
  if (parse_addr(ip, port, &ss) < 0)
    return luaL_argerror(L, 3, "expected a numeric IPv4 or IPv6 address");
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_udp_try_send(&u->handle, &b, 1, (struct sockaddr *)&ss);
  if (r >= 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r != UV_EAGAIN && r != UV_ENOSYS) return px_push_error(L, r, NULL);
  /* Outside a task (a host call) the send finishes in the background. */
  int parks = px_task_current(L) != NULL;
  if (parks) px_check_can_park(L); /* raises with nothing allocated */
  send_op *op = malloc(sizeof *op + len);
  if (!op) return px_push_error(L, UV_ENOMEM, NULL);
  memset(op, 0, sizeof *op);
  memcpy(op->data, data, len);
  op->state = OP_DETACHED;
  if (parks) {
    op->wait.what = "udp send";
    op->wait.deliver = send_deliver;
    op->wait.discard = send_discard;
    op->wait.cancel = send_cancel;
    px_wait_prepare(L, &op->wait);
    op->state = OP_PARKED;
  }
  b = uv_buf_init(op->data, (unsigned)len);
  r = uv_udp_send(&op->req, &u->handle, &b, 1, (struct sockaddr *)&ss, on_send);
  if (r < 0) {
    free(op);
    return px_push_error(L, r, NULL);
  }
  if (!parks) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return px_park(L, &op->wait);
}

static int sock_close(lua_State *L) {
  udp_sock *u = check_sock(L, 0);
  if (u) start_close(u);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_gc(lua_State *L) {
  udp_sock **box = lua_touserdata(L, 1);
  udp_sock *u = *box;
  if (!u) return 0;
  *box = NULL;
  u->lua_gone = 1;
  if (!u->closing)
    start_close(u);
  else if (u->closed)
    free(u);
  return 0;
}

static int sock_tostring(lua_State *L) {
  udp_sock *u = check_sock(L, 0);
  if (!u || u->closing)
    lua_pushliteral(L, "parx.udp.socket (closed)");
  else
    lua_pushfstring(L, "parx.udp.socket (%s port %d)", u->host, u->port);
  return 1;
}

static int sock_index(lua_State *L) {
  udp_sock *u = check_sock(L, 0);
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  if (!lua_isnil(L, -1)) return 1;
  const char *k = lua_tostring(L, 2);
  if (!k) return 1;
  if (strcmp(k, "port") == 0)
    lua_pushinteger(L, u ? u->port : 0);
  else if (strcmp(k, "host") == 0)
    lua_pushstring(L, u ? u->host : "");
  else if (strcmp(k, "closed") == 0)
    lua_pushboolean(L, !u || u->closing);
  else
    lua_pushnil(L);
  return 1;
}

static const luaL_Reg sock_methods[] = {{"sendto", sock_sendto},
                                        {"recv", sock_recv},
                                        {"close", sock_close},
                                        {NULL, NULL}};

/* Leaves the metatable on the stack; its methods table is also stored as
 * metatable.methods so that the Lua layer can add methods. */
static void push_meta(lua_State *L) {
  if (!luaL_newmetatable(L, "parx.udp.socket")) return;
  lua_pushcfunction(L, sock_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, sock_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushvalue(L, -1); /* upvalue 1: the metatable */
  lua_newtable(L);      /* upvalue 2: the methods */
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "methods");
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, sock_methods, 1);
  lua_pushcclosure(L, sock_index, 2);
  lua_setfield(L, -2, "__index");
}

/* bind(ip, port) */
static int udp_bind(lua_State *L) {
  const char *ip = luaL_checkstring(L, 1);
  int port = check_port(L, 2);
  struct sockaddr_storage ss;
  if (parse_addr(ip, port, &ss) < 0)
    return luaL_argerror(L, 1, "expected a numeric IPv4 or IPv6 address");
  px_vm *vm = px_vm_of(L);
  udp_sock *u = calloc(1, sizeof *u);
  if (!u) return px_push_error(L, UV_ENOMEM, NULL);
  u->vm = vm;
  u->state = OP_DETACHED;
  u->ref = LUA_NOREF;
  int r = uv_udp_init(px_vm_loop(vm), &u->handle);
  if (r < 0) {
    free(u);
    return px_push_error(L, r, NULL);
  }
  u->handle.data = u;
  u->lua_gone = 1; /* until the userdata exists, closing frees */
  uv_unref((uv_handle_t *)&u->handle);
  r = uv_udp_bind(&u->handle, (struct sockaddr *)&ss, 0);
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  if (r == 0) r = uv_udp_getsockname(&u->handle, (struct sockaddr *)&bound, &blen);
  if (r < 0) {
    start_close(u);
    return px_push_error(L, r, NULL);
  }
  if (bound.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&bound;
    uv_ip6_name(a, u->host, sizeof u->host);
    u->port = ntohs(a->sin6_port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&bound;
    uv_ip4_name(a, u->host, sizeof u->host);
    u->port = ntohs(a->sin_port);
  }
  udp_sock **box = lua_newuserdata(L, sizeof *box);
  *box = u;
  u->lua_gone = 0;
  push_meta(L);
  lua_setmetatable(L, -2);
  return 1;
}

/* The socket methods table, for the Lua layer to extend. */
static int udp_methods(lua_State *L) {
  push_meta(L);
  lua_getfield(L, -1, "methods");
  return 1;
}

static const luaL_Reg udp_funcs[] = {
    {"bind", udp_bind}, {"methods", udp_methods}, {NULL, NULL}};

int px_open_udp(lua_State *L) {
  lua_newtable(L);
  luaL_setfuncs(L, udp_funcs, 0);
  return 1;
}
