/*
 * marshal_path.c -- the writer's error messages, which name where the
 * unsendable value sits: "cannot send field 'x.y' of upvalue 'f' of
 * argument #1 (a coroutine) to another VM".  The writer keeps the path as
 * a stack of segments (path_push in marshal.h); only an error reads it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marshal.h"

static int ident_like(const char *s, size_t len) {
  if (!len || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

typedef struct sbuf { char *p; size_t len, cap; } sbuf;
static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->len + 1 >= b->cap) return;
  if (n > b->cap - 1 - b->len) n = b->cap - 1 - b->len;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_field(lua_State *L, sbuf *b, const path_seg *seg, int first) {
  char num[64];
  path_seg resolved = *seg, *s = &resolved;
  if (s->keyidx) {
    s->keytype = lua_type(L, s->keyidx);
    if (s->keytype == LUA_TSTRING) s->name = lua_tolstring(L, s->keyidx, &s->len);
    else if (s->keytype == LUA_TNUMBER) s->num = lua_tonumber(L, s->keyidx);
  }
  if (s->keytype == LUA_TSTRING && ident_like(s->name, s->len)) {
    if (!first) sb_str(b, ".");
    sb_add(b, s->name, s->len > 60 ? 60 : s->len);
  } else if (s->keytype == LUA_TSTRING) {
    sb_str(b, "[\"");
    sb_add(b, s->name, s->len > 40 ? 40 : s->len);
    sb_str(b, "\"]");
  } else if (s->keytype == LUA_TNUMBER) {
    snprintf(num, sizeof num, "[%.14g]", s->num);
    sb_str(b, num);
  } else {
    sb_str(b, "[?]");
  }
}

static const char *what_of(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TTHREAD: return "a coroutine";
  case LUA_TUSERDATA: return "a userdata";
  case LUA_TLIGHTUSERDATA: return "a light userdata";
  case LUA_TFUNCTION: return "a C function";
  case LUA_TCDATA_: return "a cdata";
  default: return lua_typename(L, lua_type(L, idx));
  }
}

/* Describe the current path, innermost first: "field 'x.y' of upvalue 'f'
 * of argument #1". */
static void describe_path(writer *w, sbuf *b) {
  int i = w->npath - 1;
  int firstpart = 1;
  while (i >= 0) {
    if (!firstpart) sb_str(b, " of ");
    firstpart = 0;
    const path_seg *s = &w->path[i];
    char num[32];
    switch (s->kind) {
    case P_FIELD: {
      int j = i;
      while (j > 0 && w->path[j - 1].kind == P_FIELD) j--;
      sb_str(b, "field '");
      for (int k = j; k <= i; k++) {
        if (i - j > 12 && k == j + 4) { /* a long chain: the ends tell most */
          sb_str(b, "...");
          k = i - 4;
        }
        sb_field(w->L, b, &w->path[k], k == j);
      }
      sb_str(b, "'");
      i = j - 1;
      continue;
    }
    case P_KEY: sb_str(b, "a key"); break;
    case P_UPVAL:
      sb_str(b, "upvalue '");
      sb_add(b, s->name, s->len > 60 ? 60 : s->len);
      sb_str(b, "'");
      break;
    case P_GLOBAL:
      sb_str(b, "global '");
      sb_add(b, s->name, s->len > 60 ? 60 : s->len);
      sb_str(b, "'");
      break;
    case P_ARG:
      snprintf(num, sizeof num, "argument #%d", (int)s->num);
      sb_str(b, num);
      break;
    }
    i--;
  }
}

int px_marshal_unsendable(writer *w, int idx, const char *why) {
  sbuf b = {w->err, 0, sizeof w->err};
  w->err[0] = 0;
  sb_str(&b, "cannot send ");
  describe_path(w, &b);
  sb_str(&b, " (");
  sb_str(&b, why ? why : what_of(w->L, idx));
  sb_str(&b, ") to another VM");
  return -1;
}
