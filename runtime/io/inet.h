/*
 * inet.h -- what TCP and UDP sockets share: ports and numeric addresses
 * from Lua, and a bound socket's Lua face (its host and port).
 *
 * A listening TCP server and a UDP socket are both a px_socket: a
 * px_iohandle (core/iohandle.h) that knows the address it is bound to, with
 * the fields `host`, `port` and `closed` and __tostring
 * "parx.udp.socket (127.0.0.1 port 5000)".  Their types use
 * px_socket_describe and px_socket_field.
 */
#ifndef PX_IO_INET_H
#define PX_IO_INET_H

#include "../core/iohandle.h"

typedef struct px_socket {
  px_iohandle h;
  int port;
  char host[64];
} px_socket;

/* The port at idx: an integer in 0..65535, or raises. */
int px_inet_check_port(lua_State *L, int idx);

/* ip (the string at ip_idx) and port as a socket address, or raises "expected
 * a numeric IPv4 or IPv6 address" for argument ip_idx. */
void px_inet_check_addr(lua_State *L, int ip_idx, int port, struct sockaddr_storage *ss);

/* Push ss's numeric host and port (2 values). */
int px_inet_push(lua_State *L, const struct sockaddr_storage *ss);

/* The end of bind or listen, whose result is r (0 or a libuv error) on
 * handle, s's libuv handle: pushes s's userdata, with the address it is
 * bound to, and returns 1; or closes s and pushes nil, msg, code (3). */
int px_socket_bound(lua_State *L, px_socket *s, uv_handle_t *handle, int r);

void px_socket_describe(lua_State *L, px_iohandle *h);
void px_socket_field(lua_State *L, px_iohandle *h, const char *key);

#endif
