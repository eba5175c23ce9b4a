/* inet.c -- see inet.h. */
#include "inet.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

int px_inet_check_port(lua_State *L, int idx) {
  lua_Number p = luaL_checknumber(L, idx);
  luaL_argcheck(L, p >= 0 && p <= 65535 && p == (int)p, idx,
                "port must be an integer in 0..65535");
  return (int)p;
}

void px_inet_check_addr(lua_State *L, int ip_idx, int port, struct sockaddr_storage *ss) {
  const char *ip = luaL_checkstring(L, ip_idx);
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0) return;
  if (uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss) == 0) return;
  luaL_argerror(L, ip_idx, "expected a numeric IPv4 or IPv6 address");
}

/* ss's host into ip; returns the port. */
static int inet_name(const struct sockaddr_storage *ss, char *ip, size_t len) {
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)ss;
    uv_ip6_name(a, ip, len);
    return ntohs(a->sin6_port);
  }
  const struct sockaddr_in *a = (const void *)ss;
  uv_ip4_name(a, ip, len);
  return ntohs(a->sin_port);
}

int px_inet_push(lua_State *L, const struct sockaddr_storage *ss) {
  char ip[64];
  int port = inet_name(ss, ip, sizeof ip);
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

int px_socket_bound(lua_State *L, px_socket *s, uv_handle_t *handle, int r) {
  struct sockaddr_storage bound;
  socklen_t len = sizeof bound;
  uv_os_fd_t fd;
  if (r == 0) r = uv_fileno(handle, &fd);
  if (r == 0 && getsockname(fd, (struct sockaddr *)&bound, &len) != 0)
    r = uv_translate_sys_error(errno);
  if (r < 0) {
    px_iohandle_close(&s->h);
    return px_push_error(L, r, NULL);
  }
  s->port = inet_name(&bound, s->host, sizeof s->host);
  px_iohandle_push(L, &s->h);
  return 1;
}

void px_socket_describe(lua_State *L, px_iohandle *h) {
  px_socket *s = px_container_of(h, px_socket, h);
  lua_pushfstring(L, "%s port %d", s->host, s->port);
}

/* host and port stay readable after close; "" and 0 once collected. */
void px_socket_field(lua_State *L, px_iohandle *h, const char *key) {
  px_socket *s = h ? px_container_of(h, px_socket, h) : NULL;
  if (strcmp(key, "port") == 0)
    lua_pushinteger(L, s ? s->port : 0);
  else if (strcmp(key, "host") == 0)
    lua_pushstring(L, s ? s->host : "");
  else if (strcmp(key, "closed") == 0)
    lua_pushboolean(L, !px_iohandle_is_open(h));
  else
    lua_pushnil(L);
}
