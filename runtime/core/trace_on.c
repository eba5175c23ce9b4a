/* trace_on.c -- what a wait is on: the path of a file operation, the host
 * of a lookup, a connect or an HTTP request, the GPU op, the MPI peer and
 * tag.  A module says it before it parks (px_trace_wait_on, trace.h); the
 * wait slice of a trace carries it in its args ({"path": "/tmp/x"}) and a
 * dump prints it after the wait's name ("parked on fs.readfile (path
 * /tmp/x)").
 *
 * The text lives on the running task (px_trace_task.on), tied to the wait
 * it describes (on_wait): a wait that was not described (a channel's) is
 * never shown another's text.  It is interned in the VM's string table,
 * so the flight recorder's events can point at it for as long as the
 * runtime lives.  Without a trace running a VM interns at most ON_STRINGS
 * strings (a program that opens a million files keeps bounded memory):
 * past that its waits keep their names but lose what they were on.
 */
#include <stdio.h>
#include <string.h>

#include "core.h"

#define ON_MAX 256
#define ON_STRINGS 16384

/* Append "key=val\n" to buf (n bytes used of ON_MAX); a newline in val
 * becomes a space, a value too long is cut. */
static size_t append(char *buf, size_t n, const char *key, const char *val) {
  for (const char *p = key; *p && n < ON_MAX - 3; p++) buf[n++] = *p;
  buf[n++] = '=';
  for (const char *p = val; *p && n < ON_MAX - 2; p++) buf[n++] = *p == '\n' ? ' ' : *p;
  buf[n++] = '\n';
  buf[n] = 0;
  return n;
}

/* 1 when the pair at buf + from is one of the pairs before it (a wait
 * that a module describes again: a stream's read after a cancelled one). */
static int repeated(const char *buf, size_t from) {
  size_t len = strlen(buf + from);
  for (size_t i = 0; i + len <= from; i = (size_t)(strchr(buf + i, '\n') - buf) + 1)
    if (memcmp(buf + i, buf + from, len) == 0) return 1;
  return 0;
}

void px_trace_wait_on(lua_State *L, const px_wait *w, const char *key, const char *val) {
  px_vm *vm = val ? px_vm_of(L) : NULL;
  px_task *t = vm ? vm->current : NULL;
  px_trace *tr = vm ? vm->trace : NULL;
  if (!t || !tr) return;
  char buf[ON_MAX];
  size_t n = 0;
  buf[0] = 0;
  if (t->trace.on_wait == w && t->trace.on) {
    n = strlen(t->trace.on);
    if (n >= ON_MAX / 2) n = 0; /* cannot happen with the keys modules use */
    memcpy(buf, t->trace.on, n);
  }
  if (append(buf, n, key, val) > n && n > 0 && repeated(buf, n)) return;
  const char *s = NULL;
  if (tr->logging || px_trace_strings(tr) < ON_STRINGS) s = px_trace_intern(tr, buf);
  t->trace.on = s;
  t->trace.on_wait = s ? w : NULL;
}

void px_trace_wait_on_int(lua_State *L, const px_wait *w, const char *key, int64_t val) {
  char k[32], v[32];
  snprintf(k, sizeof k, "#%s", key);
  snprintf(v, sizeof v, "%lld", (long long)val);
  px_trace_wait_on(L, w, k, v);
}

void px_trace_wait_on_url(lua_State *L, const px_wait *w, const char *url) {
  if (!url) return;
  const char *p = strstr(url, "://");
  p = p ? p + 3 : url;
  const char *end = p + strcspn(p, "/?#");
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at) p = at + 1;
  char host[200];
  size_t len = (size_t)(end - p) < sizeof host - 1 ? (size_t)(end - p) : sizeof host - 1;
  memcpy(host, p, len);
  host[len] = 0;
  px_trace_wait_on(L, w, "host", host);
}


void px_trace_each_pair(const char *d, px_trace_pair_fn *f, void *arg) {
  while (d && *d) {
    const char *eq = strchr(d, '='), *nl = strchr(d, '\n');
    if (!eq || !nl || eq > nl) return;
    int num = *d == '#';
    f(d + num, (size_t)(eq - d) - (size_t)num, eq + 1, (size_t)(nl - eq - 1), num, arg);
    d = nl + 1;
  }
}
