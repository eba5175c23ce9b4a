/*
 * repl.c -- the interactive loop of the parx command line.
 *
 * One loop serves two masters: the terminal and the runtime.  Between
 * prompts it polls standard input and the main VM's backend descriptor
 * together, feeding keystrokes to libedit (its readline-compatible
 * callback interface, so no call blocks) and calling parx_step whenever the
 * runtime has work, so spawned and async tasks keep running while the user
 * types.  Each complete chunk runs as a task of the main VM; its results are
 * printed by lua/parx/repl.lua, which also decides when a chunk is
 * incomplete and pretty-prints tables.
 *
 * Ctrl-C at the prompt abandons the line; while code runs it interrupts the
 * Lua code (a hook, as lua.c does), and a chunk parked in a wait is
 * cancelled at once (parx.repl.interrupt); a second Ctrl-C stops waiting
 * for a chunk that still has not finished, which then carries on in the
 * background, and a third ends parx (for JIT-compiled loops, which hooks
 * cannot reach).  Ctrl-D leaves, after waiting for pending work unless it
 * is pressed twice.  Tab completes global names, fields and methods.
 * Output of background tasks is printed above the line being typed, which
 * is drawn again.  When standard input is not a terminal, lines are read
 * plainly and no prompt is shown, so tests can pipe input in.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "cli.h"

#define PROMPT "> "
#define PROMPT_MORE ">> "
#define PROMPT_MAX 256

typedef struct repl {
  parx_runtime *rt;
  lua_State *L;
  int module_ref;       /* registry reference to the parx.repl table */
  int completions_ref;  /* the candidates of the current completion */
  char *chunk;          /* lines of an incomplete chunk so far */
  size_t len, cap;
  int tty;
  char *history;        /* history file, NULL for none */
  int leave;            /* Ctrl-D or end of input */
  int ending;           /* Ctrl-D once, waiting for pending work */
  int more;             /* the next prompt continues a chunk */
  int busy;             /* parx_step's last answer: 1 while work is left */
  char prompt[PROMPT_MAX];
  int exit_code;        /* >= 0 once os.exit was called */
  int backoff;          /* ms to poll when the runtime says 0, see poll_timeout */
} repl;

/* libedit's line callback has no context pointer; the one REPL lives here. */
static repl *current;
static const px_editline *ed; /* libedit, on a terminal (editline.c) */
static volatile sig_atomic_t interrupted;
static volatile sig_atomic_t running_code;
static volatile sig_atomic_t interrupts_while_running;
static lua_State *hook_state;
static struct sigaction sigint_before; /* the command line's (exit.c) */

/* ------------------------------------------------------------------------
 * Ctrl-C
 * ---------------------------------------------------------------------- */

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  /* Only Lua code is interrupted: the runtime's own protected calls into
   * C functions (parx_step's bookkeeping) must not fail for it. */
  if (ar->event != LUA_HOOKCOUNT && lua_getinfo(L, "S", ar) && ar->what[0] == 'C') return;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* While code runs, stop the Lua code that runs next, as lua.c does: setting
 * a hook is what a signal handler may do to a lua_State.  LuaJIT never calls
 * hooks from compiled traces, so a hot loop like `while true do end` cannot
 * be stopped that way; the third Ctrl-C while code runs therefore ends the
 * process the default way (history is already saved line by line). */
static void on_sigint(int sig) {
  interrupted = 1;
  if (!running_code) return;
  if (++interrupts_while_running >= 3) {
    /* Die by the signal through the command line's handler, which
     * flushes stdout first (exit.c), or by the default action. */
    if (sigint_before.sa_handler == SIG_IGN) signal(sig, SIG_DFL);
    else sigaction(sig, &sigint_before, NULL);
    raise(sig);
    return;
  }
  if (hook_state != NULL)
    lua_sethook(hook_state, interrupt_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* ------------------------------------------------------------------------
 * The Lua half: lua/parx/repl.lua
 * ---------------------------------------------------------------------- */

/* Protected: the parx.repl table, taken from the registry's copies of
 * package.loaded and package.preload rather than through the global
 * `require`, which code run by -e or the script may have replaced. */
static int open_module(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "parx.repl");
    if (lua_istable(L, -1)) return 1;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "_PRELOAD");
  if (lua_istable(L, -1)) lua_getfield(L, -1, "parx.repl");
  if (!lua_isfunction(L, -1)) return luaL_error(L, "module 'parx.repl' is missing");
  lua_pushliteral(L, "parx.repl");
  lua_call(L, 1, 1);
  if (!lua_istable(L, -1)) return luaL_error(L, "module 'parx.repl' did not load");
  return 1;
}

/* The module, loaded by px_repl_load before any user code ran. */
static int module_ref = LUA_NOREF;

int px_repl_load(parx_runtime *rt) {
  if (module_ref != LUA_NOREF) return 0;
  lua_State *L = parx_state(rt);
  lua_pushcfunction(L, open_module);
  if (lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "parx: cannot load the REPL: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)");
    lua_pop(L, 1);
    return -1;
  }
  module_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int load_module(repl *r) {
  if (px_repl_load(r->rt) != 0) return -1;
  r->module_ref = module_ref;
  return 0;
}

/* repl.prepare(chunk): "ok", "incomplete", or "error" with the message
 * printed. */
static const char *prepare(repl *r) {
  lua_State *L = r->L;
  static const char *answers[] = {"ok", "incomplete", "error"};
  const char *answer = "error";
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
  lua_getfield(L, -1, "prepare");
  lua_pushlstring(L, r->chunk, r->len);
  if (lua_pcall(L, 1, 2, 0) != 0) {
    fprintf(stderr, "parx: %s\n", lua_tostring(L, -1));
  } else {
    const char *s = lua_tostring(L, -2);
    for (int i = 0; i < 3; i++)
      if (s != NULL && strcmp(s, answers[i]) == 0) answer = answers[i];
    if (answer == answers[2]) {
      const char *msg = lua_tostring(L, -1);
      fprintf(stderr, "%s\n", msg ? msg : "syntax error");
    }
  }
  lua_settop(L, top);
  return answer;
}

static int finished(repl *r) {
  lua_State *L = r->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
  lua_pushliteral(L, "finished");
  lua_rawget(L, -2);
  int done = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return done;
}

static void set_unfinished(repl *r) {
  lua_State *L = r->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
  lua_pushliteral(L, "finished");
  lua_pushboolean(L, 0);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Call the module's function name with no arguments, protected; its
 * nresults results are left on the stack.  0, or -1 with nothing pushed
 * (the error is reported). */
static int call_module(repl *r, const char *name, int nresults) {
  lua_State *L = r->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  if (lua_pcall(L, 0, nresults, 0) != 0) {
    fprintf(stderr, "parx: %s\n", lua_isstring(L, -1) ? lua_tostring(L, -1) : "error in the REPL");
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* The prompt to show: the global _PROMPT (or _PROMPT2 inside a chunk) when
 * it is a string or a number, as lua.c does; read raw, so a strict _G
 * cannot fail here. */
static const char *prompt(repl *r) {
  lua_State *L = r->L;
  lua_pushstring(L, r->more ? "_PROMPT2" : "_PROMPT");
  lua_rawget(L, LUA_GLOBALSINDEX);
  const char *p = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  snprintf(r->prompt, sizeof r->prompt, "%s", p != NULL ? p : r->more ? PROMPT_MORE : PROMPT);
  lua_pop(L, 1);
  return r->prompt;
}

/* Report an error of a chunk without the REPL's own frames: the traceback
 * ends at the chunk, which shows as "in main chunk" as it would in lua. */
static void report_chunk_error(repl *r, int result) {
  const char *msg = parx_last_error(r->rt);
  const char *own = msg != NULL ? strstr(msg, "parx/repl.lua:") : NULL;
  if (result != PARX_ERRRUN || own == NULL) {
    px_cli_report(r->rt, result);
    return;
  }
  while (own > msg && own[-1] != '\n') own--; /* start of that line */
  int len = (int)(own - msg);
  if (len > 0 && msg[len - 1] == '\n') len--;
  static const char fn[] = "in function 'fn'";
  const char *last = msg + len;
  while (last > msg && last[-1] != '\n') last--; /* the chunk's line */
  const char *name = strstr(last, fn);
  if (name != NULL && name < msg + len) {
    fprintf(stderr, "parx: %.*sin main chunk%.*s\n", (int)(name - msg), msg,
            (int)(msg + len - (name + sizeof fn - 1)), name + sizeof fn - 1);
  } else {
    fprintf(stderr, "parx: %.*s\n", len, msg);
  }
}

/* How long to poll, given parx_backend_timeout's answer.  It can say 0
 * while nothing is ready (a task parked on a worker, a loop with no live
 * handle), and polling with 0 again and again would spin a core; so after a
 * zero-time poll that found nothing, the wait grows 1, 2, 4 ... 16 ms.  Any
 * event resets it, and wake-ups still arrive through the descriptor. */
static int poll_timeout(repl *r, int timeout) {
  if (timeout != 0) {
    r->backoff = 0;
    return timeout;
  }
  int t = r->backoff;
  r->backoff = t == 0 ? 1 : (t >= 8 ? 16 : t * 2);
  return t;
}

/* Wait for the runtime's descriptor (or its timer). */
static void wait_backend(repl *r) {
  struct pollfd fd = {.fd = parx_backend_fd(r->rt), .events = POLLIN};
  if (fd.fd < 0) return;
  if (poll(&fd, 1, poll_timeout(r, parx_backend_timeout(r->rt))) > 0)
    r->backoff = 0;
}

/* Run the prepared chunk as a task of the main VM and drive the runtime
 * until it finishes.  We drive with parx_step(nowait) and our own poll so a
 * Ctrl-C (EINTR) reaches us even when the task is parked. */
static void evaluate(repl *r) {
  int interrupted_by_cancel = 0;
  set_unfinished(r);
  /* The chunk runs through the module's run_pending, started as a
   * function: no global (require, table ...) that the user may have
   * replaced stands between the REPL and its own code. */
  lua_State *L = r->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
  lua_pushliteral(L, "run_pending");
  lua_rawget(L, -2);
  lua_remove(L, -2);
  int result = parx_start_function(r->rt, 0);
  if (result == PARX_OK) {
    interrupted = 0;
    interrupts_while_running = 0;
    running_code = 1;
    int asked = 0, cancelled = 0;
    for (;;) {
      int s = parx_step(r->rt, 1);
      if (s < 0) { result = s; break; }
      if (finished(r)) break;
      if (interrupted) {
        interrupted = 0;
        if (asked) {
          fputs("parx: stopped waiting; the task goes on in the background\n",
                stderr);
          break;
        }
        asked = 1;
        /* Here, between two steps, the chunk's task is not running Lua:
         * it is parked (a sleep, a recv, a join) or about to run.  Cancel
         * it, so the wait ends now rather than when the sleep would; the
         * hook the signal set is not needed for that. */
        lua_sethook(r->L, NULL, 0, 0);
        if (call_module(r, "interrupt", 1) == 0) {
          cancelled = lua_toboolean(r->L, -1);
          lua_pop(r->L, 1);
        }
      }
      if (s == 0) {
        /* Idle with our task unfinished: nothing can wake it. */
        fputs("parx: the chunk is waiting with nothing left to wake it\n",
              stderr);
        break;
      }
      wait_backend(r);
    }
    running_code = 0;
    interrupted_by_cancel = cancelled;
    lua_sethook(r->L, NULL, 0, 0);
    /* A Ctrl-C that arrived while the chunk ran was spent on it: it must
     * not also abandon the next line (that reset raced with type-ahead
     * and could leave libedit mid-line, so a later Ctrl-D was not EOF). */
    interrupted = 0;
  }
  if (result == PARX_EXIT) {
    r->exit_code = parx_exit_code(r->rt);
    r->leave = 1;
  } else if (result == PARX_ERRPANIC) {
    /* Reported by the runtime; its main VM is gone. */
    r->exit_code = 1;
    r->leave = 1;
  } else if (result != PARX_OK && interrupted_by_cancel) {
    fputs(r->tty ? "\nparx: interrupted\n" : "parx: interrupted\n", stderr);
  } else if (result != PARX_OK) {
    report_chunk_error(r, result);
  }
  fflush(stdout);
  fflush(stderr);
}

/* ------------------------------------------------------------------------
 * Tab completion: parx.repl.complete(word) gives the candidates.
 * ---------------------------------------------------------------------- */

static char *next_completion(const char *text, int state) {
  repl *r = current;
  lua_State *L = r->L;
  static int index;
  if (state == 0) {
    index = 0;
    if (r->completions_ref != LUA_NOREF)
      luaL_unref(L, LUA_REGISTRYINDEX, r->completions_ref);
    r->completions_ref = LUA_NOREF;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
    lua_getfield(L, -1, "complete");
    lua_pushstring(L, text);
    if (lua_pcall(L, 1, 1, 0) != 0 || !lua_istable(L, -1)) {
      lua_pop(L, 2);
      return NULL;
    }
    r->completions_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
  }
  if (r->completions_ref == LUA_NOREF) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->completions_ref);
  lua_rawgeti(L, -1, ++index);
  const char *word = lua_tostring(L, -1);
  char *copy = word != NULL ? strdup(word) : NULL;
  lua_pop(L, 2);
  return copy;
}

static char **complete(const char *text, int start, int end) {
  (void)start;
  (void)end;
  *ed->attempted_completion_over = 1; /* no file names */
  return ed->completion_matches(text, next_completion);
}

/* ------------------------------------------------------------------------
 * Lines
 * ---------------------------------------------------------------------- */

static void reset_chunk(repl *r) { r->len = 0; }

static int append_line(repl *r, const char *line) {
  size_t n = strlen(line);
  if (r->len + n + 2 > r->cap) {
    size_t cap = (r->len + n + 2) * 2;
    char *p = realloc(r->chunk, cap);
    if (p == NULL) return -1;
    r->chunk = p;
    r->cap = cap;
  }
  if (r->len > 0) r->chunk[r->len++] = '\n';
  memcpy(r->chunk + r->len, line, n);
  r->len += n;
  r->chunk[r->len] = '\0';
  return 0;
}

/* Ctrl-D, or the end of input, on a terminal: with work pending (tasks,
 * timers, IO), say what and wait for it as a script would; a second Ctrl-D
 * leaves at once.  Returns whether to leave now. */
static int leave_now(repl *r) {
  if (!r->tty || r->ending || r->busy <= 0) return 1;
  const char *what = NULL;
  if (call_module(r, "pending_tasks", 1) == 0) {
    what = lua_tostring(r->L, -1);
    fprintf(stdout, "parx: waiting for %s to finish (Ctrl-D again leaves now)\n",
            what != NULL ? what : "timers and IO");
    lua_pop(r->L, 1);
  }
  fflush(stdout);
  r->ending = 1;
  return 0;
}

/* One line typed (NULL at end of input); r->more says which prompt
 * comes next. */
static void take_line(repl *r, const char *line) {
  if (line == NULL) {
    if (r->len > 0) fputs("parx: input ended inside an unfinished chunk\n", stderr);
    reset_chunk(r);
    r->more = 0;
    if (leave_now(r)) r->leave = 1;
    return;
  }
  r->more = 0;
  if (r->len == 0 && line[strspn(line, " \t\r\n")] == '\0') return;
  if (r->tty && r->history != NULL && line[0] != '\0') {
    ed->add_history(line);
    ed->write_history(r->history);
  }
  if (append_line(r, line) != 0) {
    fputs("parx: not enough memory\n", stderr);
    reset_chunk(r);
    return;
  }
  const char *answer = prepare(r);
  if (strcmp(answer, "incomplete") == 0) { r->more = 1; return; }
  reset_chunk(r);
  if (strcmp(answer, "ok") == 0) evaluate(r);
}

/* Tasks started at the prompt that failed since the last look: reported
 * now, not when their handles are collected. */
static void report_failed(repl *r) {
  if (call_module(r, "report_failed", 0) != 0) return;
}

static void on_line(char *line) {
  repl *r = current;
  if (line != NULL) {
    size_t n = strlen(line);
    if (n > 0 && line[n - 1] == '\n') line[n - 1] = '\0';
  } else {
    fputc('\n', stdout);
  }
  /* Leave the terminal to the code while it runs. */
  ed->callback_handler_remove();
  take_line(r, line);
  free(line);
  report_failed(r);
  fflush(stdout);
  if (!r->leave) ed->callback_handler_install(r->ending ? "" : prompt(r), on_line);
}

/* ------------------------------------------------------------------------
 * The loops
 * ---------------------------------------------------------------------- */

/* Step the runtime while the user edits a line.  What background tasks
 * print would land in the middle of that line, so the line is erased
 * first and drawn again (prompt and text, cursor where it was) after. */
static void step_under_line(repl *r) {
  if (r->ending) {
    r->busy = parx_step(r->rt, 1);
    report_failed(r);
    return;
  }
  fputs("\r\033[K", stdout);
  fflush(stdout);
  r->busy = parx_step(r->rt, 1);
  report_failed(r);
  fflush(stdout);
  fflush(stderr);
  ed->forced_update_display();
}

/* A terminal: libedit in callback mode, the runtime stepped in between. */
static void run_tty(repl *r) {
  *ed->readline_name = "parx";
  /* '.' and ':' stay inside a word so "string.fo<Tab>" completes fields. */
  static char breaks[] = " \t\n\"\\'`><=;+-*/%^~#&|{}()[],";
  *ed->basic_word_break_characters = breaks;
  *ed->completer_word_break_characters = breaks;
  *ed->attempted_completion_function = complete;
  *ed->completion_append_character = '\0';
  ed->using_history();
  ed->stifle_history(1000);
  if (r->history != NULL) ed->read_history(r->history);
  ed->callback_handler_install(prompt(r), on_line);
  r->busy = parx_step(r->rt, 1);
  while (!r->leave) {
    if (r->ending && r->busy == 0) break; /* what Ctrl-D waited for is done */
    struct pollfd fds[2] = {
      {.fd = STDIN_FILENO, .events = POLLIN},
      {.fd = parx_backend_fd(r->rt), .events = POLLIN},
    };
    /* When the runtime is idle its loop may report a zero timeout; then
     * only a wake-up on its descriptor can give it work. */
    int timeout = r->busy > 0 ? poll_timeout(r, parx_backend_timeout(r->rt)) : -1;
    int n = poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout);
    if (n < 0 && errno != EINTR) break;
    if (n > 0) r->backoff = 0;
    if (interrupted) {
      interrupted = 0;
      /* Abandon the line and any incomplete chunk. */
      fputs("^C\n", stdout);
      reset_chunk(r);
      r->more = 0;
      r->ending = 0;
      ed->replace_line("", 0);
      ed->callback_handler_remove();
      ed->callback_handler_install(prompt(r), on_line);
      continue;
    }
    if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
      ed->callback_read_char();
    if (r->leave) break;
    /* The runtime has work when its descriptor is readable or its timer
     * is due; keystrokes alone need no step (nor a redraw). */
    int work = n == 0 || (n > 0 && fds[1].revents != 0);
    if (work) step_under_line(r);
    else r->busy = parx_step(r->rt, 1);
    if (r->busy < 0) {
      if (r->busy == PARX_EXIT || r->busy == PARX_ERRPANIC) {
        r->exit_code = r->busy == PARX_EXIT ? parx_exit_code(r->rt) : 1;
        break;
      }
      px_cli_report(r->rt, r->busy);
      r->busy = 1;
      ed->forced_update_display();
    }
  }
  ed->callback_handler_remove();
}

/* Not a terminal: plain lines, no prompt. */
static void run_plain(repl *r) {
  char *line = NULL;
  size_t cap = 0;
  while (!r->leave) {
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) { take_line(r, NULL); break; }
    if (n > 0 && line[n - 1] == '\n') line[n - 1] = '\0';
    take_line(r, line);
    if (!r->leave) {
      int s = parx_step(r->rt, 1);
      if (s == PARX_EXIT) { r->exit_code = parx_exit_code(r->rt); break; }
      if (s == PARX_ERRPANIC) { r->exit_code = 1; break; }
      if (s < 0) px_cli_report(r->rt, s);
      report_failed(r);
    }
  }
  free(line);
}

static char *history_path(void) {
  const char *env = getenv("PARX_HISTORY");
  if (env != NULL) return *env ? strdup(env) : NULL;
  const char *home = getenv("HOME");
  if (home == NULL || *home == '\0') return NULL;
  size_t n = strlen(home) + sizeof("/.parx_history");
  char *p = malloc(n);
  if (p != NULL) snprintf(p, n, "%s/.parx_history", home);
  return p;
}

int px_repl_run(parx_runtime *rt) {
  repl r = {.rt = rt, .L = parx_state(rt), .exit_code = -1,
            .completions_ref = LUA_NOREF};
  r.tty = isatty(STDIN_FILENO);
  if (r.tty) {
    char why[256];
    ed = px_editline_open(why, sizeof why);
    if (!ed) {
      fprintf(stderr, "parx: no line editing (%s): reading plain lines\n", why);
      r.tty = 0;
    }
  }
  if (load_module(&r) != 0) return 1;
  if (call_module(&r, "start", 0) != 0) return 1;
  r.history = r.tty ? history_path() : NULL;
  current = &r;
  hook_state = r.L;

  struct sigaction sa = {0};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &sigint_before); /* no SA_RESTART: poll must see EINTR */

  if (r.tty) run_tty(&r);
  else run_plain(&r);
  fflush(stdout);

  sigaction(SIGINT, &sigint_before, NULL);
  hook_state = NULL;
  current = NULL;
  luaL_unref(r.L, LUA_REGISTRYINDEX, module_ref);
  module_ref = LUA_NOREF;
  if (r.completions_ref != LUA_NOREF)
    luaL_unref(r.L, LUA_REGISTRYINDEX, r.completions_ref);
  free(r.chunk);
  free(r.history);
  return r.exit_code;
}
