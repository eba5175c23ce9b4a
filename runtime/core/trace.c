/* trace.c -- Chrome trace-event JSON (viewable in Perfetto) of what every VM
 * did: task run slices, waits (what a parked task waited on, from park to
 * wake), and slices modules add (pool chunks, GPU work).
 *
 * Each VM appends to its own buffer with no lock (only its thread writes);
 * the runtime writes them all out when it closes.  Off by default: the cost
 * then is one branch per resume.  A VM stops recording after TRACE_MAX
 * bytes so a long run cannot eat memory; the file says so.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define TRACE_MAX (256u << 20)

struct px_trace {
  char *buf;
  size_t len, cap;
  int truncated;
};

int px_trace_on(px_vm *vm) { return vm->trace != NULL; }

uint64_t px_trace_now(void) { return uv_hrtime(); }

static void append(px_vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void append(px_vm *vm, const char *fmt, ...) {
  px_trace *tr = vm->trace;
  if (tr->truncated) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  if (tr->len + (size_t)n + 2 > TRACE_MAX) {
    tr->truncated = 1;
    return;
  }
  if (tr->len + (size_t)n + 2 > tr->cap) {
    size_t cap = tr->cap ? tr->cap * 2 : 1 << 16;
    while (cap < tr->len + (size_t)n + 2) cap *= 2;
    char *p = realloc(tr->buf, cap);
    if (!p) {
      tr->truncated = 1;
      return;
    }
    tr->buf = p;
    tr->cap = cap;
  }
  memcpy(tr->buf + tr->len, line, (size_t)n);
  tr->len += (size_t)n;
  tr->buf[tr->len++] = ',';
  tr->buf[tr->len++] = '\n';
}

/* Names come from C string literals of modules ("channel recv") and task
 * numbers; nothing user-controlled needs JSON escaping except what a module
 * passes, so quotes and backslashes are dropped. */
static void clean(char *dst, size_t size, const char *src) {
  size_t i = 0;
  for (; src && *src && i + 1 < size; src++)
    if (*src != '"' && *src != '\\' && (unsigned char)*src >= 0x20) dst[i++] = *src;
  dst[i] = 0;
}

static double us(px_vm *vm, uint64_t t) { return (double)(t - vm->rt->trace_t0) / 1000.0; }

void px_trace_slice(px_vm *vm, const char *cat, const char *name, uint64_t t0, uint64_t t1) {
  if (!vm->trace) return;
  char n[128], c[32];
  clean(n, sizeof n, name);
  clean(c, sizeof c, cat);
  append(vm, "{\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"cat\":\"%s\",\"name\":\"%s\"}",
         vm->id, us(vm, t0), (double)(t1 - t0) / 1000.0, c, n);
}

/* A wait of task `seq` from t0 to t1 on `what`, as an async span. */
void px_trace_wait(px_vm *vm, long seq, const char *what, uint64_t t0, uint64_t t1) {
  if (!vm->trace) return;
  char n[128];
  clean(n, sizeof n, what ? what : "wait");
  append(vm, "{\"ph\":\"b\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"cat\":\"wait\",\"id\":%ld,\"name\":\"%s\"}",
         vm->id, us(vm, t0), seq, n);
  append(vm, "{\"ph\":\"e\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"cat\":\"wait\",\"id\":%ld,\"name\":\"%s\"}",
         vm->id, us(vm, t1), seq, n);
}

void px_trace_vm_start(px_vm *vm) {
  if (!vm->rt->trace_path) return;
  vm->trace = calloc(1, sizeof *vm->trace);
  if (!vm->trace) return;
  append(vm, "{\"ph\":\"M\",\"pid\":1,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":\"%s %d\"}}",
         vm->id, vm->id == 0 ? "main VM" : "worker", vm->id);
}

/* Move vm's events into the runtime's list (any thread, at VM free). */
void px_trace_vm_end(px_vm *vm) {
  px_trace *tr = vm->trace;
  if (!tr) return;
  vm->trace = NULL;
  px_runtime *rt = vm->rt;
  pthread_mutex_lock(&rt->lock);
  if (tr->truncated) rt->trace_truncated = 1;
  void *p = realloc(rt->trace_bufs, sizeof *rt->trace_bufs * (size_t)(rt->ntrace + 1));
  if (p) {
    rt->trace_bufs = p;
    rt->trace_bufs[rt->ntrace++] = tr;
    tr = NULL;
  }
  pthread_mutex_unlock(&rt->lock);
  if (tr) {
    free(tr->buf);
    free(tr);
  }
}

void px_trace_vm_discard(px_vm *vm) {
  px_trace *tr = vm->trace;
  vm->trace = NULL;
  if (tr) {
    free(tr->buf);
    free(tr);
  }
}

/* Write the file; returns 0 or -1 (errno set). */
int px_trace_write(px_runtime *rt) {
  if (!rt->trace_path) return 0;
  FILE *f = fopen(rt->trace_path, "w");
  int r = f ? 0 : -1;
  if (f) {
    fputs("{\"traceEvents\":[\n", f);
    for (int i = 0; i < rt->ntrace; i++) fwrite(rt->trace_bufs[i]->buf, 1, rt->trace_bufs[i]->len, f);
    fprintf(f, "{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"parx%s\"}}\n]}\n",
            rt->trace_truncated ? " (trace truncated)" : "");
    if (fclose(f) != 0) r = -1;
  }
  for (int i = 0; i < rt->ntrace; i++) {
    free(rt->trace_bufs[i]->buf);
    free(rt->trace_bufs[i]);
  }
  free(rt->trace_bufs);
  rt->trace_bufs = NULL;
  rt->ntrace = 0;
  return r;
}
