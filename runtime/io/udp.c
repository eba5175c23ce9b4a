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

typedef struct dgram {
  px_queue link;
  struct sockaddr_storage from;
  size_t len;
  char data[];
} dgram;

typedef struct udp_sock {
  px_socket sock; /* first: the userdata's pointer is the socket's */
  uv_udp_t handle;
  px_queue queue; /* dgrams received, not yet taken */
  int count;
  size_t bytes;
  int err;
  int receiving;
  px_req receiver; /* the one task waiting in recv() */
} udp_sock;

static void queue_free(udp_sock *u) {
  while (!px_queue_empty(&u->queue)) {
    px_queue *q = px_queue_head(&u->queue);
    px_queue_remove(q);
    free(px_container_of(q, dgram, link));
  }
  u->count = 0;
  u->bytes = 0;
}

static void on_close(uv_handle_t *h) {
  udp_sock *u = h->data;
  queue_free(u);
  px_iohandle_closed(&u->sock.h);
}

static void receiver_wake(udp_sock *u) {
  if (!px_req_active(&u->receiver)) return;
  uv_unref((uv_handle_t *)&u->handle);
  px_req_done(&u->receiver);
}

static void sock_close(px_iohandle *h) {
  udp_sock *u = (udp_sock *)h;
  uv_close((uv_handle_t *)&u->handle, on_close);
  receiver_wake(u); /* delivers ECLOSED */
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
      d->len = (size_t)nread;
      memcpy(d->data, buf->base, (size_t)nread);
      memcpy(&d->from, addr,
             addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                         : sizeof(struct sockaddr_in));
      px_queue_insert_tail(&u->queue, &d->link);
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
  if (u->sock.h.closing) return px_push_error(L, PX_ECLOSED, NULL);
  if (px_queue_empty(&u->queue)) {
    int err = u->err;
    u->err = 0;
    return px_push_error(L, err ? err : UV_EAGAIN, NULL);
  }
  px_queue *q = px_queue_head(&u->queue);
  px_queue_remove(q);
  dgram *d = px_container_of(q, dgram, link);
  u->count--;
  u->bytes -= d->len;
  lua_pushlstring(L, d->data, d->len);
  struct sockaddr_storage from = d->from;
  free(d);
  px_inet_push(L, &from);
  return 3;
}

static int receiver_done(lua_State *co, px_req *req) {
  return produce(co, px_container_of(req, udp_sock, receiver));
}

/* Cancelled: datagrams go on queueing for the next recv(). */
static void receiver_abandon(px_req *req) {
  uv_unref((uv_handle_t *)&px_container_of(req, udp_sock, receiver)->handle);
}

static const px_req_type receiver_type = {.done = receiver_done, .abandon = receiver_abandon};

static int sock_recv(lua_State *L) {
  px_iohandle *h = px_iohandle_get(L);
  if (!px_iohandle_is_open(h)) return px_push_error(L, PX_ECLOSED, NULL);
  udp_sock *u = (udp_sock *)h;
  if (px_req_busy(&u->receiver))
    return luaL_error(L, "socket is already being received on by another task");
  if (!px_queue_empty(&u->queue) || u->err) return produce(L, u);
  if (!u->receiving) {
    int r = uv_udp_recv_start(&u->handle, px_io_scratch_alloc, on_recv);
    if (r < 0) return px_push_error(L, r, NULL);
    u->receiving = 1;
  }
  return px_iohandle_wait(L, &u->receiver, &receiver_type, "udp recv",
                          (uv_handle_t *)&u->handle);
}

static void on_send(uv_udp_send_t *req, int status) {
  px_write_req_done(px_container_of(req, px_write_req, uv.send), status);
}

/* socket:sendto(data, ip, port): the datagram goes out at once when the
 * kernel takes it; otherwise it is copied and the sender parks until
 * libuv has sent it. */
static int sock_sendto(lua_State *L) {
  udp_sock *u = (udp_sock *)px_iohandle_check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int port = px_inet_check_port(L, 4);
  struct sockaddr_storage ss;
  px_inet_check_addr(L, 3, port, &ss);
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_udp_try_send(&u->handle, &b, 1, (struct sockaddr *)&ss);
  if (r >= 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r != UV_EAGAIN && r != UV_ENOSYS) return px_push_error(L, r, NULL);
  px_write_req *w = px_write_req_copy(L, data, len, "udp send", &b);
  if (!w) return px_push_error(L, UV_ENOMEM, NULL);
  return px_write_req_park(L, w,
                           uv_udp_send(&w->uv.send, &u->handle, &b, 1, (struct sockaddr *)&ss, on_send));
}

static const luaL_Reg sock_methods[] = {{"sendto", sock_sendto},
                                        {"recv", sock_recv},
                                        {"close", px_iohandle_close_method},
                                        {NULL, NULL}};

static const px_iohandle_type sock_type = {
    .name = "parx.udp.socket", .methods = sock_methods, .close = sock_close,
    .describe = px_socket_describe, .field = px_socket_field};

/* bind(ip, port) */
static int udp_bind(lua_State *L) {
  int port = px_inet_check_port(L, 2);
  struct sockaddr_storage ss;
  px_inet_check_addr(L, 1, port, &ss);
  udp_sock *u = calloc(1, sizeof *u);
  if (!u) return px_push_error(L, UV_ENOMEM, NULL);
  px_iohandle_init(&u->sock.h, &sock_type);
  px_queue_init(&u->queue);
  int r = uv_udp_init(px_vm_loop(px_vm_of(L)), &u->handle);
  if (r < 0) {
    free(u);
    return px_push_error(L, r, NULL);
  }
  u->handle.data = u; /* until the userdata exists, closing frees */
  uv_unref((uv_handle_t *)&u->handle);
  r = uv_udp_bind(&u->handle, (struct sockaddr *)&ss, 0);
  return px_socket_bound(L, &u->sock, (uv_handle_t *)&u->handle, r);
}

/* The socket methods table, for the Lua layer to extend. */
static int udp_methods(lua_State *L) {
  px_iohandle_meta(L, &sock_type);
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
