/*
 * main.c -- the parx command line: a lua-compatible interpreter.
 *
 *   parx [options] [script [args...]]
 *
 * Options are handled in order like lua.c: every -e and -l runs before the
 * script, then the script, then the REPL when -i was given (or when nothing
 * was given and standard input is a terminal).  The whole program is a thin
 * face over parx.h; it never reaches into the core.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
  "usage: parx [options] [script [args...]]\n"
  "Available options are:\n"
  "  -e stat       execute string 'stat'\n"
  "  -l name       require library 'name' into global 'name'\n"
  "  -i            enter interactive mode after executing 'script'\n"
  "  -v            show version information\n"
  "  --workers N   run N worker threads (default: $PARX_WORKERS, else the CPU count)\n"
  "  --trace FILE  write a Chrome trace-event JSON of tasks, waits, pool chunks\n"
  "                and GPU work to FILE at exit (open it in Perfetto)\n"
  "  -h, --help    show this help\n"
  "  --            stop handling options\n"
  "  -             execute stdin and stop handling options\n"
  "With no script and a terminal on stdin, parx starts its REPL.\n";

/* One -e or -l, kept in command-line order. */
typedef struct action {
  char kind; /* 'e' or 'l' */
  const char *value;
} action;

typedef struct cli {
  int script;      /* argv index of the script ("-" = stdin), 0 if none */
  int interactive; /* -i */
  int version;     /* -v */
  int has_exec;    /* some -e was given */
  int workers;     /* --workers, 0 = runtime default */
  const char *trace; /* --trace FILE */
  action *actions;
  int nactions;
} cli;

/* A one-line complaint about the command line itself. */
static int bad_usage(const char *fmt, const char *what) {
  fputs("parx: ", stderr);
  fprintf(stderr, fmt, what);
  fputs(" (try 'parx --help')\n", stderr);
  return 0;
}

/* A positive worker count, or 0 when s is not one. */
static int parse_workers(const char *s) {
  char *end;
  errno = 0;
  long n = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || n < 1 || n > 4096) return 0;
  return (int)n;
}

/* Parse argv into c.  Returns 1 to go on, 0 on a usage error (reported),
 * -1 when the command was fully served (--help). */
static int parse_args(int argc, char **argv, cli *c) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') { c->script = i; return 1; }
    if (strcmp(a, "-") == 0) { c->script = i; return 1; }
    if (strcmp(a, "--") == 0) {
      if (i + 1 < argc) c->script = i + 1;
      return 1;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage_text, stdout);
      return -1;
    }
    if (strcmp(a, "-i") == 0) { c->interactive = 1; c->version = 1; continue; }
    if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      c->version = 1;
      continue;
    }
    if (strcmp(a, "-E") == 0) continue; /* lua's "ignore LUA_INIT": parx reads none */
    if (strncmp(a, "--workers", 9) == 0 && (a[9] == '\0' || a[9] == '=')) {
      const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
      if (v == NULL) return bad_usage("'%s' needs a number", "--workers");
      c->workers = parse_workers(v);
      if (c->workers == 0)
        return bad_usage("--workers needs a positive integer, not '%s'", v);
      continue;
    }
    if (strncmp(a, "--trace", 7) == 0 && (a[7] == '\0' || a[7] == '=')) {
      const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
      if (v == NULL || *v == '\0') return bad_usage("'%s' needs a file name", "--trace");
      c->trace = v;
      continue;
    }
    if ((a[1] == 'e' || a[1] == 'l') && a[0] == '-') {
      const char *v = a[2] != '\0' ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (v == NULL) return bad_usage("'%s' needs an argument", a);
      if (a[1] == 'e') c->has_exec = 1;
      c->actions[c->nactions].kind = a[1];
      c->actions[c->nactions].value = v;
      c->nactions++;
      continue;
    }
    return bad_usage("unrecognized option '%s'", a);
  }
  return 1;
}

/* Append s to buf as a Lua string literal; buf has room for 4*len+3. */
static void quote_lua(char *buf, const char *s) {
  char *p = buf;
  *p++ = '"';
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') { *p++ = '\\'; *p++ = (char)ch; }
    else if (ch < 32 || ch == 127) p += sprintf(p, "\\%03u", ch);
    else *p++ = (char)ch;
  }
  *p++ = '"';
  *p = '\0';
}

/* -l name: require it and, when name is an identifier, set the global. */
static int require_module(parx_runtime *rt, const char *name) {
  size_t n = strlen(name);
  char *q = malloc(4 * n + 3);
  char *code = malloc(4 * n + 200);
  if (q == NULL || code == NULL) { free(q); free(code); return PARX_ERRMEM; }
  quote_lua(q, name);
  snprintf(code, 4 * n + 200,
           "local n = %s local m = require(n) "
           "if n:match('^[%%a_][%%w_]*$') then _G[n] = m end", q);
  int r = parx_run_string(rt, code, "=(command line)", 0);
  free(code);
  free(q);
  if (r == PARX_ERRRUN) {
    /* "module 'x' not found:" is followed by every path tried; the first
     * line names the problem. */
    const char *msg = parx_last_error(rt);
    int len = (int)strcspn(msg, "\n");
    const char *m = strstr(msg, "module '");
    const char *nf = strstr(msg, "' not found");
    if (m != NULL && nf != NULL && nf < msg + len) {
      len -= (int)(m - msg);
      if (len > 0 && m[len - 1] == ':') len--;
      fprintf(stderr, "parx: %.*s\n", len, m);
      return PARX_ERRFILE; /* already reported */
    }
  }
  if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) { px_cli_report(rt, r); return PARX_ERRFILE; }
  return r;
}

/* Whether the runtime's first loop can get its descriptors: libuv aborts
 * the process when the first uv_loop_init cannot make its signal pipe
 * (after the epoll descriptor), so with three descriptors or fewer left
 * parx_open would not fail but abort. */
static int descriptors_left(void) {
  int p[2];
  if (pipe(p) != 0) return 0;
  int d = dup(p[0]);
  close(p[0]);
  close(p[1]);
  if (d < 0) return 0;
  close(d);
  return 1;
}

/* The status to exit with after result r (already reported unless EXIT;
 * a panic was reported by the runtime). */
static int finish(parx_runtime *rt, int r) {
  if (r == PARX_EXIT) return parx_exit_code(rt);
  return r == PARX_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  cli c = {0};
  c.actions = calloc((size_t)argc + 1, sizeof(action));
  if (c.actions == NULL) { fputs("parx: not enough memory\n", stderr); return 1; }
  int p = parse_args(argc, argv, &c);
  if (p <= 0) { free(c.actions); return p < 0 ? 0 : 1; }

  const char *env = getenv("PARX_WORKERS");
  if (c.workers == 0 && env != NULL && *env != '\0' && parse_workers(env) == 0) {
    fprintf(stderr, "parx: PARX_WORKERS must be a positive integer, not '%s'\n", env);
    free(c.actions);
    return 1;
  }

  px_cli_signals_init();
  if (!descriptors_left()) {
    fprintf(stderr, "parx: cannot start the runtime: %s\n", strerror(EMFILE));
    free(c.actions);
    return 1;
  }
  parx_options o;
  parx_options_init(&o);
  if (c.workers > 0) o.workers = c.workers;
  o.trace = c.trace;
  parx_runtime *rt = parx_open(&o);
  if (rt == NULL) {
    fprintf(stderr, "parx: cannot start the runtime: %s\n", strerror(errno));
    free(c.actions);
    return 1;
  }
  parx_set_args(rt, argc, argv, c.script);

  int interactive_default = c.script == 0 && !c.has_exec && !c.version;
  if ((c.interactive || interactive_default) && (c.interactive || isatty(0)) &&
      px_repl_load(rt) != 0) {
    px_cli_exit(rt, 1);
    free(c.actions);
    return 1;
  }
  if (c.version && !(c.interactive && !isatty(0))) px_cli_version(stdout);
  fflush(stdout);

  int r = PARX_OK;
  for (int i = 0; i < c.nactions && r == PARX_OK; i++) {
    if (c.actions[i].kind == 'l') {
      r = require_module(rt, c.actions[i].value);
    } else {
      r = parx_run_string(rt, c.actions[i].value, "=(command line)", 0);
      if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) px_cli_report(rt, r);
    }
  }

  if (r == PARX_OK && c.script > 0) {
    const char *path = strcmp(argv[c.script], "-") == 0 ? NULL : argv[c.script];
    r = parx_run_file(rt, path, 0);
    if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) px_cli_report(rt, r);
  }

  if (r == PARX_OK && (c.interactive || interactive_default)) {
    if (c.interactive || isatty(0)) {
      if (interactive_default) px_cli_version(stdout);
      int code = px_repl_run(rt);
      if (code >= 0) {
        px_cli_exit(rt, code);
        free(c.actions);
        return code;
      }
    } else {
      r = parx_run_file(rt, NULL, 0); /* `parx < script.lua` */
      if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) px_cli_report(rt, r);
    }
  } else if (r == PARX_OK) {
    /* Let tasks the code left behind (async IO, timers) finish. */
    r = parx_run(rt);
    if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) px_cli_report(rt, r);
  }

  int status = finish(rt, r);
  px_cli_exit(rt, status);
  free(c.actions);
  return status;
}
