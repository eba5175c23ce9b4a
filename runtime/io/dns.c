/*
 * dns.c -- name resolution on libuv's thread pool ("parx.c.dns").
 *
 *   resolve(host [, family]) -> {"127.0.0.1", "::1", ...} | nil, msg, code
 *
 * family is 0 (any), 4 or 6.  A numeric address comes back at once, without
 * parking or touching the resolver.  Addresses keep getaddrinfo's order
 * (RFC 6724 preference) with duplicates removed.
 */
#include "../core/ioreq.h"

#include <stdlib.h>
#include <string.h>

typedef struct resolve_op {
  px_req req;
  uv_getaddrinfo_t getaddrinfo;
  struct addrinfo *res;
  char *host;
  int status;
} resolve_op;

static void op_free(resolve_op *op) {
  if (op->res) uv_freeaddrinfo(op->res);
  free(op->host);
  free(op);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  resolve_op *op = req->data;
  op->status = status;
  op->res = res;
  if (!px_req_done(&op->req)) op_free(op); /* abandoned */
}

/* Push the list of distinct addresses in res. */
static void push_addresses(lua_State *L, const struct addrinfo *res) {
  lua_newtable(L);
  int n = 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    char ip[64];
    if (ai->ai_family == AF_INET)
      uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
    else if (ai->ai_family == AF_INET6)
      uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
    else
      continue;
    int dup = 0;
    for (int i = 1; i <= n && !dup; i++) {
      lua_rawgeti(L, -1, i);
      dup = strcmp(lua_tostring(L, -1), ip) == 0;
      lua_pop(L, 1);
    }
    if (dup) continue;
    lua_pushstring(L, ip);
    lua_rawseti(L, -2, ++n);
  }
}

static int resolve_done(lua_State *co, px_req *req) {
  resolve_op *op = px_container_of(req, resolve_op, req);
  int n;
  if (op->status < 0) {
    n = px_push_error(co, op->status, op->host);
  } else {
    push_addresses(co, op->res);
    n = 1;
  }
  op_free(op);
  return n;
}

static void resolve_drop(px_req *req) { op_free(px_container_of(req, resolve_op, req)); }

/* The lookup may already run on a pool thread; then its callback frees. */
static void resolve_abandon(px_req *req) {
  uv_cancel((uv_req_t *)&px_container_of(req, resolve_op, req)->getaddrinfo);
}

static const px_req_type resolve_type = {
    .done = resolve_done, .drop = resolve_drop, .abandon = resolve_abandon};

/* Is s a numeric address of the family asked for?  Brackets around an IPv6
 * address ("[::1]") are accepted and dropped. */
static int numeric(const char *s, size_t len, int family, char *out, size_t outlen) {
  if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
    s++;
    len -= 2;
  }
  if (len == 0 || len >= outlen) return 0;
  memcpy(out, s, len);
  out[len] = 0;
  unsigned char tmp[16];
  if (family != 6 && uv_inet_pton(AF_INET, out, tmp) == 0) return 1;
  if (family != 4 && uv_inet_pton(AF_INET6, out, tmp) == 0) return 1;
  return 0;
}

static int dns_resolve(lua_State *L) {
  size_t len;
  const char *host = luaL_checklstring(L, 1, &len);
  int family = (int)luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, family == 0 || family == 4 || family == 6, 2,
                "family must be 0, 4 or 6");
  luaL_argcheck(L, len > 0 && strlen(host) == len, 1, "expected a host name");
  char ip[64];
  if (numeric(host, len, family, ip, sizeof ip)) {
    lua_createtable(L, 1, 0);
    lua_pushstring(L, ip);
    lua_rawseti(L, -2, 1);
    return 1;
  }
  px_check_can_park(L);
  resolve_op *op = calloc(1, sizeof *op);
  char *copy = op ? strdup(host) : NULL;
  if (!copy) {
    free(op);
    return px_push_error(L, UV_ENOMEM, NULL);
  }
  op->host = copy;
  op->getaddrinfo.data = op;
  px_req_init(&op->req, &resolve_type, "dns resolve");
  px_req_start(L, &op->req); /* cannot raise: checked above */
  px_trace_wait_on(L, &op->req.wait, "host", op->host);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM; /* one entry per address, not per type */
  int r = uv_getaddrinfo(px_vm_loop(px_vm_of(L)), &op->getaddrinfo, on_resolved, host,
                         NULL, &hints);
  if (r < 0) {
    op_free(op);
    return px_push_error(L, r, host);
  }
  return px_req_park(L, &op->req);
}

static const luaL_Reg dns_funcs[] = {{"resolve", dns_resolve}, {NULL, NULL}};

int px_open_dns(lua_State *L) {
  lua_newtable(L);
  luaL_setfuncs(L, dns_funcs, 0);
  return 1;
}
