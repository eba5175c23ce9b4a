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
  "  -E            ignore environment variables (LUA_INIT, LUA_INIT_5_1)\n"
  "  -j cmd        perform LuaJIT control command (-jon, -joff, -jv, -jdump...)\n"
  "  -O[opt]       control LuaJIT optimizations (-O3, -O-fold, -Ohotloop=10)\n"
  "  -b ...        save or list bytecode (luajit's -b; -b alone for its help)\n"
  "  --workers N   run N worker threads (default: $PARX_WORKERS, else the CPU count)\n"
  "  --trace FILE  write a Chrome trace-event JSON of tasks, waits, pool chunks\n"
  "                and flows to FILE at exit (open it in Perfetto); a FILE\n"
  "                ending in .svg gets the picture --timeline draws instead\n"
  "  --timeline FILE.svg  draw the run as an SVG Gantt chart at exit\n"
  "  --timeline-by vm|task  one row per VM (default) or per task\n"
  "  --stats       print busy, parked and idle time per VM, the speedup and\n"
  "                the parallel fraction on stderr at exit\n"
  "  -h, --help    show this help\n"
  "  --            stop handling options\n"
  "  -             execute stdin and stop handling options\n"
  "With no script and a terminal on stdin, parx starts its REPL.\n";

/* One -e, -l, -j or -O, kept in command-line order. */
typedef struct action {
  char kind; /* 'e', 'l', 'j' or 'O' */
  const char *value;
} action;

typedef struct cli {
  int script;      /* argv index of the script ("-" = stdin), 0 if none */
  int interactive; /* -i */
  int version;     /* -v */
  int has_exec;    /* some -e was given */
  int bytecode;    /* argv index of -b: the rest goes to jit.bcsave */
  int noenv;       /* -E */
  int workers;     /* --workers, 0 = runtime default */
  const char *trace; /* --trace FILE (JSON) */
  const char *svg;   /* --timeline FILE, or --trace FILE.svg */
  const char *by;    /* --timeline-by */
  int stats;         /* --stats */
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
    if (strcmp(a, "-E") == 0) { c->noenv = 1; continue; }
    if (a[1] == 'b') { c->bytecode = i; return 1; } /* luajit: the rest is -b's */
    if (a[1] == 'O') {
      c->actions[c->nactions].kind = 'O';
      c->actions[c->nactions].value = a + 2;
      c->nactions++;
      continue;
    }
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
      size_t n = strlen(v);
      if (n > 4 && strcmp(v + n - 4, ".svg") == 0) c->svg = v;
      else c->trace = v;
      continue;
    }
    if (strncmp(a, "--timeline-by", 13) == 0 && (a[13] == '\0' || a[13] == '=')) {
      const char *v = a[13] == '=' ? a + 14 : (i + 1 < argc ? argv[++i] : NULL);
      if (v == NULL || (strcmp(v, "vm") != 0 && strcmp(v, "task") != 0))
        return bad_usage("--timeline-by needs 'vm' or 'task'%s", "");
      c->by = v;
      continue;
    }
    if (strncmp(a, "--timeline", 10) == 0 && (a[10] == '\0' || a[10] == '=')) {
      const char *v = a[10] == '=' ? a + 11 : (i + 1 < argc ? argv[++i] : NULL);
      if (v == NULL || *v == '\0') return bad_usage("'%s' needs a file name", "--timeline");
      c->svg = v;
      continue;
    }
    if (strcmp(a, "--stats") == 0) { c->stats = 1; continue; }
    if (a[1] == 'e' || a[1] == 'l' || a[1] == 'j') {
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
    /* "module 'x' not found:" is followed by every path tried, as luajit
     * prints them; the traceback (the command line's own frames) is not
     * worth showing. */
    const char *msg = parx_last_error(rt);
    const char *m = strstr(msg, "module '");
    const char *tb = strstr(msg, "\nstack traceback:");
    if (m != NULL && strstr(m, "' not found") != NULL) {
      int len = tb != NULL && tb > m ? (int)(tb - m) : (int)strlen(m);
      fprintf(stderr, "parx: %.*s\n", len, m);
      return PARX_ERRFILE; /* already reported */
    }
  }
  if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) { px_cli_report(rt, r); return PARX_ERRFILE; }
  return r;
}

/* Run code as the command line's chunk; report a failure.  The result. */
static int run_code(parx_runtime *rt, const char *code, const char *chunkname) {
  int r = parx_run_string(rt, code, chunkname, 0);
  if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) px_cli_report(rt, r);
  return r;
}

/* A Lua expression for the list of strings: "a", "b", ... ("" for none). */
static char *quote_list(char **v, int n) {
  size_t len = 1;
  for (int i = 0; i < n; i++) len += 4 * strlen(v[i]) + 4;
  char *out = malloc(len), *p = out;
  if (out == NULL) return NULL;
  *p = '\0';
  for (int i = 0; i < n; i++) {
    if (i > 0) { strcpy(p, ", "); p += 2; }
    quote_lua(p, v[i]);
    p += strlen(p);
  }
  return out;
}

/* Call the Lua function that the expression fn gives with the strings v
 * (luajit's dojitcmd, dojitopt and dobytecode in Lua). */
static int call_with(parx_runtime *rt, const char *fn, char **v, int n) {
  char *args = quote_list(v, n);
  char *code = args != NULL ? malloc(strlen(fn) + strlen(args) + 64) : NULL;
  if (code == NULL) { free(args); return run_code(rt, "error('not enough memory', 0)", "=(command line)"); }
  sprintf(code, "local f = %s\nreturn f(%s)", fn, args);
  int r = run_code(rt, code, "=(command line)");
  free(code);
  free(args);
  return r;
}

/* -j cmd[=arg[,arg...]]: jit.cmd(args) (on, off, flush) or
 * require("jit." .. cmd).start(args) (v, dump, p), as luajit does; -O[opt,...]:
 * jit.opt.start(opts).  Both act on the main VM. */
static int jit_command(parx_runtime *rt, char kind, const char *value) {
  char *copy = strdup(value);
  char **parts = calloc(strlen(value) + 2, sizeof *parts);
  int n = 0, r;
  if (copy == NULL || parts == NULL) { free(copy); free(parts); return PARX_ERRMEM; }
  char *opt = kind == 'j' ? strchr(copy, '=') : copy;
  if (kind == 'j' && opt != NULL) *opt++ = '\0';
  for (char *p = opt; p != NULL && *p != '\0';) {
    parts[n++] = p;
    p = strchr(p, ',');
    if (p != NULL) *p++ = '\0';
  }
  if (kind == 'O') {
    r = call_with(rt, "require('jit.opt').start", parts, n);
  } else {
    static const char pick[] =
      "(function(cmd) local jit = require('jit') "
      "if type(jit[cmd]) == 'function' then return jit[cmd] end "
      "local ok, m = pcall(require, 'jit.' .. cmd) "
      "if not ok or type(m) ~= 'table' or type(m.start) ~= 'function' then "
      "error('unknown luaJIT command or jit.* modules not installed', 0) end "
      "return m.start end)(%s)";
    size_t len = sizeof pick + 4 * strlen(copy) + 3;
    char *fn = malloc(len), *q = malloc(4 * strlen(copy) + 3);
    if (fn == NULL || q == NULL) { free(fn); free(q); free(copy); free(parts); return PARX_ERRMEM; }
    quote_lua(q, copy);
    snprintf(fn, len, pick, q);
    r = call_with(rt, fn, parts, n);
    free(fn);
    free(q);
  }
  free(copy);
  free(parts);
  return r;
}

/* LUA_INIT_5_1, else LUA_INIT, as lua 5.1 and luajit read them (unless
 * -E): "@file" runs the file, anything else runs as code. */
static int run_init(parx_runtime *rt) {
  const char *name = "LUA_INIT_5_1";
  const char *init = getenv(name);
  if (init == NULL) init = getenv(name = "LUA_INIT");
  if (init == NULL) return PARX_OK;
  int r;
  if (init[0] == '@') {
    r = parx_run_file(rt, init + 1, 0);
    if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) px_cli_report(rt, r);
  } else {
    char chunkname[16];
    snprintf(chunkname, sizeof chunkname, "=%s", name);
    r = run_code(rt, init, chunkname);
  }
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

/* Under an MPI launcher (Open MPI, MPICH, PMIx export the rank), each rank
 * writes its own trace: out.json becomes out.rank3.json (docs/trace.md).
 * path itself when not a rank, else a malloc'd copy (NULL: no memory). */
static char *rank_path(const char *path) {
  const char *rank = getenv("OMPI_COMM_WORLD_RANK");
  if (rank == NULL) rank = getenv("PMI_RANK");
  if (rank == NULL) rank = getenv("PMIX_RANK");
  if (path == NULL || rank == NULL || *rank == '\0') return (char *)path;
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  size_t stem = dot != NULL && dot > (slash ? slash + 1 : path) ? (size_t)(dot - path) : strlen(path);
  size_t len = strlen(path) + strlen(rank) + 8;
  char *out = malloc(len);
  if (out != NULL) snprintf(out, len, "%.*s.rank%s%s", (int)stem, path, rank, path + stem);
  return out;
}

/* --trace and --timeline: a path that cannot be written fails now, not at
 * exit.  1 if path is NULL or writable (it is created). */
static int writable(const char *path) {
  if (path == NULL) return 1;
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "parx: cannot write trace: %s: %s\n", path, strerror(errno));
    return 0;
  }
  fclose(f);
  return 1;
}

/* At the end of a run with --timeline or --stats: draw the session and
 * print the report (lua/parx/trace.lua _cli_finish, which never raises
 * and says itself what went wrong).  The status to exit with. */
static int finish_report(parx_runtime *rt, const cli *c, int status) {
  if (c->svg == NULL && !c->stats) return status;
  char *svg = NULL;
  if (c->svg != NULL && (svg = malloc(4 * strlen(c->svg) + 3)) != NULL) quote_lua(svg, c->svg);
  char code[256 + 4 * PATH_MAX];
  snprintf(code, sizeof code,
           "if not require('parx.trace')._cli_finish(%s, '%s', %s) then error('', 0) end",
           svg != NULL ? svg : "nil", c->by != NULL ? c->by : "vm", c->stats ? "true" : "false");
  free(svg);
  int r = parx_run_string(rt, code, "=(command line)", 0);
  return r != PARX_OK && status == 0 ? 1 : status;
}

/* After a deadlock report or an uncaught error that ends the run (already
 * reported): every task still alive, with its wait and traceback, and the
 * flight recorder's recent timeline (lua/parx/trace.lua _cli_crash, which
 * prints nothing when no other task is left and never raises). */
static void crash_dump(parx_runtime *rt, int r) {
  if (r != PARX_ERRRUN && r != PARX_ERRDEADLOCK) return;
  char code[128];
  snprintf(code, sizeof code, "require('parx.trace')._cli_crash(%s)", r == PARX_ERRDEADLOCK ? "'deadlock'" : "'error'");
  parx_run_string(rt, code, "=(command line)", 0);
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
  static char *trace, *svg; /* reachable to the end (leak checkers) */
  trace = rank_path(c.trace);
  svg = rank_path(c.svg);
  if ((c.trace != NULL && trace == NULL) || (c.svg != NULL && svg == NULL)) {
    fputs("parx: not enough memory\n", stderr);
    return 1;
  }
  c.trace = trace;
  c.svg = svg;
  if (!writable(c.trace) || !writable(c.svg)) {
    free(c.actions);
    return 1;
  }
  parx_options o;
  parx_options_init(&o);
  if (c.workers > 0) o.workers = c.workers;
  o.trace = c.trace != NULL ? c.trace : c.svg != NULL ? "" : NULL; /* "": events, no file */
  parx_runtime *rt = parx_open(&o);
  if (rt == NULL) {
    fprintf(stderr, "parx: cannot start the runtime: %s\n", strerror(errno));
    free(c.actions);
    return 1;
  }
  /* With no script, every argument is before it, as in luajit: with -e
   * only, arg[-1] is the last argument and arg[0] is nil. */
  parx_set_args(rt, argc, argv, c.script > 0 ? c.script : argc);
  parx_dump_on_sigusr1(rt); /* SIGUSR1 prints every task (docs/trace.md) */

  if (c.bytecode > 0) {
    /* luajit -b: jit.bcsave.start with the rest of the command line ("-b"
     * followed by more letters passes them on as an option). */
    char *dash = NULL;
    char **rest = argv + c.bytecode + 1;
    int n = argc - c.bytecode - 1, r;
    if (argv[c.bytecode][2] != '\0' && (dash = strdup(argv[c.bytecode] + 1)) != NULL) {
      dash[0] = '-';
      char **all = malloc(((size_t)n + 1) * sizeof *all);
      if (all != NULL) {
        all[0] = dash;
        memcpy(all + 1, rest, (size_t)n * sizeof *all);
        r = call_with(rt, "require('jit.bcsave').start", all, n + 1);
        free(all);
      } else {
        r = PARX_ERRMEM;
      }
      free(dash);
    } else {
      r = call_with(rt, "require('jit.bcsave').start", rest, n);
    }
    int status = finish(rt, r);
    px_cli_exit(rt, status);
    free(c.actions);
    return status;
  }

  int interactive_default = c.script == 0 && !c.has_exec && !c.version;
  if ((c.interactive || interactive_default) && (c.interactive || isatty(0)) &&
      px_repl_load(rt) != 0) {
    px_cli_exit(rt, 1);
    free(c.actions);
    return 1;
  }
  if (c.version && !(c.interactive && !isatty(0))) px_cli_version(stdout);
  fflush(stdout);

  int r = c.noenv ? PARX_OK : run_init(rt);
  for (int i = 0; i < c.nactions && r == PARX_OK; i++) {
    char kind = c.actions[i].kind;
    if (kind == 'l') r = require_module(rt, c.actions[i].value);
    else if (kind == 'e') r = run_code(rt, c.actions[i].value, "=(command line)");
    else r = jit_command(rt, kind, c.actions[i].value);
    if (r == PARX_ERRMEM) px_cli_report(rt, r);
  }

  if (r == PARX_OK && c.script > 0) {
    const char *path = strcmp(argv[c.script], "-") == 0 ? NULL : argv[c.script];
    r = parx_run_file(rt, path, 0);
    if (r != PARX_OK && r != PARX_EXIT && r != PARX_ERRPANIC) px_cli_report(rt, r);
    crash_dump(rt, r);
  }

  if (r == PARX_OK && (c.interactive || interactive_default)) {
    if (c.interactive || isatty(0)) {
      if (interactive_default) px_cli_version(stdout);
      int code = px_repl_run(rt);
      if (code >= 0) {
        code = finish_report(rt, &c, code);
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
    crash_dump(rt, r);
  }

  int status = finish_report(rt, &c, finish(rt, r));
  px_cli_exit(rt, status);
  free(c.actions);
  return status;
}
