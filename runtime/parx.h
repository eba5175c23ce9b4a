/*
 * parx.h -- embedding API of libparx, the parallel Lua runtime.
 *
 * A host opens a runtime, runs Lua code as tasks of the runtime's main VM,
 * drives the main VM's loop (to completion, or one step at a time from the
 * host's own event loop), and closes the runtime, which joins every worker
 * thread and frees every resource.  All functions taking a parx_runtime must
 * be called from the thread that opened it, except where noted.
 *
 * Link with `pkg-config --cflags --libs parx`.
 */
#ifndef PARX_H
#define PARX_H

#include <stddef.h>

#include <lua.h>
#include <lauxlib.h> /* luaL_Reg */

#ifdef __cplusplus
extern "C" {
#endif

/* libparx is built with -fvisibility=hidden and an export list
 * (runtime/parx.map): what this header declares is all a host can link to.
 * Everything declared between here and the matching pop is exported. */
#pragma GCC visibility push(default)

#define PARX_VERSION "0.1.0"

/* ======================================================================
 * Types and results
 * ==================================================================== */

typedef struct parx_runtime parx_runtime;

/* Results of the functions that run or drive code; parx_strerror gives
 * each one's message. */
enum {
  PARX_OK = 0,        /* finished normally */
  PARX_ERRRUN = -1,   /* a Lua error escaped the code; see parx_last_error */
  PARX_ERRSYNTAX = -2, /* the code does not compile */
  PARX_ERRFILE = -3,  /* the file cannot be read */
  PARX_ERRMEM = -4,
  PARX_EXIT = -5,     /* the code called os.exit; see parx_exit_code.  The
                         runtime stops until this has been returned once:
                         the next call that runs or drives code runs
                         again (tasks still parked stay, and go on) */
  PARX_ERRDEADLOCK = -6, /* every task was parked with nothing to wake it */
  PARX_ERRPANIC = -7  /* a VM hit an error no protected call could catch (a
                         bug in parx or in a C function): the message went
                         to stderr and parx_last_error, the runtime stopped,
                         and every later call returns this; close it */
};

typedef struct parx_options {
  int workers;       /* worker threads; 0 = $PARX_WORKERS, else the CPU count */
  const char *trace; /* write a Chrome trace-event JSON file here at close
                        (tasks per VM, waits, pool chunks, GPU work), or NULL;
                        "": record without a file (parx.trace.events()) */
  int deadlock_check; /* 1 (default): report a deadlock instead of hanging.
                        Set 0 when host threads feed channels. */
} parx_options;

/* ======================================================================
 * Lifecycle
 * ==================================================================== */

/* Fill o with the defaults. */
void parx_options_init(parx_options *o);

/* Open a runtime (o may be NULL for the defaults).  Worker threads start
 * lazily, at the first spawn or pool call.  Returns NULL when out of memory
 * or when the loop cannot be created, with errno saying why (ENOMEM,
 * EMFILE when no file descriptor is left). */
parx_runtime *parx_open(const parx_options *o);

/* Cancel what is still running, join every thread and free everything.
 * Waits for tasks that are running on workers: a task only stops at a
 * point where it parks (or ends), and a JIT-compiled loop has none. */
void parx_close(parx_runtime *rt);

/* Like parx_close, but waits at most timeout_ms for the workers to stop.
 * Workers still running Lua code then are abandoned: their threads are
 * detached and stop on their own at their next park point, and the
 * runtime's memory is left allocated (they may still touch it), as is
 * the --trace file unwritten.  Returns 0 when everything was joined and
 * freed, 1 when workers were abandoned.  For a host that is about to end
 * its process (after PARX_EXIT, or an error it will not recover from):
 * the parx command line calls it with 100 ms so that os.exit and an
 * uncaught error end the process at once.  A host that goes on should use
 * parx_close. */
int parx_close_timeout(parx_runtime *rt, int timeout_ms);

/* From now on SIGUSR1 prints every task (its state, what it waits on and
 * since when, its traceback) on stderr and writes the recent timeline to
 * $TMPDIR; the process goes on (the parx command line does this; see
 * docs/trace.md).  PARX_OK, or PARX_ERRMEM. */
int parx_dump_on_sigusr1(parx_runtime *rt);

/* The main VM's lua_State, for pushing globals or reading results.  Do not
 * keep Lua values across parx calls without a registry reference. */
lua_State *parx_state(parx_runtime *rt);

/* Register a C function that every VM (the main VM and every worker) gets
 * as the global `name` when it starts.  Call before running code. */
int parx_register(parx_runtime *rt, const char *name, lua_CFunction fn);

/* Register a C module every VM gets at start: luaL_register(L, name, funcs)
 * runs on each (the global `name`, and package.loaded[name], so
 * `require(name)` returns it; a dotted name nests).  funcs (ended by
 * {NULL, NULL}) and the functions are kept, not copied.  Call before
 * running code: once workers run it fails (PARX_ERRRUN, with the reason
 * as the last error). */
int parx_register_module(parx_runtime *rt, const char *name, const luaL_Reg *funcs);

/* Set the script's `arg` table like the lua interpreter: argv[script] is
 * arg[0], the ones after it arg[1..], the ones before it negative. */
void parx_set_args(parx_runtime *rt, int argc, char **argv, int script);

/* ======================================================================
 * Running code.  Each of these starts the code as a task of the main VM;
 * the parx_run_* ones then drive the loop until that task has finished
 * (other tasks keep running while it waits) and until nothing is left
 * (tasks, timers, IO) when `drain` is set.
 * ==================================================================== */

int parx_run_string(parx_runtime *rt, const char *code, const char *chunkname,
                    int drain);
/* path NULL reads standard input.  A first line starting with '#' is
 * skipped (shebang). */
int parx_run_file(parx_runtime *rt, const char *path, int drain);

/* Start code as a task without driving the loop; drive it with
 * parx_step. */
int parx_start_string(parx_runtime *rt, const char *code, const char *chunkname);

/* The same for a function: pushed on parx_state(rt), then its nargs
 * arguments (as for lua_pcall); all popped.  It runs as a task of the main
 * VM; its failure surfaces in parx_step. */
int parx_start_function(parx_runtime *rt, int nargs);

/* ======================================================================
 * Calling a Lua function as a task, from C
 *
 * Push the function on parx_state(rt), then its nargs arguments (as for
 * lua_pcall); parx_spawn pops them all and starts the task:
 *   PARX_ON_MAIN    a task of the main VM (as parx.async: it sees the main
 *                   VM's globals and upvalues as they are);
 *   PARX_ON_WORKER  a task on a worker (as parx.spawn: the function and its
 *                   arguments are copied there, its results copied back;
 *                   what cannot cross fails the task with the reason).
 * The task runs while the host drives the loop: parx_task_wait,
 * parx_step (poll parx_task_done between steps) or any parx_run_*.
 * ==================================================================== */

typedef struct parx_task parx_task;
enum { PARX_ON_MAIN = 0, PARX_ON_WORKER = 1 };

/* The task's handle (one reference: parx_task_release), or NULL with the
 * reason as the last error (not a function, out of memory, a panic). */
parx_task *parx_spawn(parx_runtime *rt, int nargs, int where);
/* 1 once the task ended (returned, failed or was cancelled), else 0.
 * Never drives the loop.  Any thread. */
int parx_task_done(parx_task *t);
/* Drive the main VM (other tasks run too) until the task ended: PARX_OK,
 * PARX_ERRRUN (it failed or was cancelled; parx_last_error says why),
 * PARX_ERRDEADLOCK, PARX_EXIT or PARX_ERRPANIC. */
int parx_task_wait(parx_runtime *rt, parx_task *t);
/* After it ended: push its results onto parx_state(rt) and return how many
 * (>= 0); if it failed, push its error value (the value given to error,
 * as lua_pcall does; from a worker, what join raises: an equal copy)
 * and return PARX_ERRRUN
 * (PARX_ERRDEADLOCK for the deadlock report) with its message as the last
 * error.  Other results (PARX_EXIT, PARX_ERRMEM, PARX_ERRPANIC) push
 * nothing.  May be called again (each call pushes them again). */
int parx_task_results(parx_runtime *rt, parx_task *t);
void parx_task_release(parx_task *t);

/* parx_spawn, parx_task_wait and parx_task_results in one call: the
 * results pushed and their count, or a PARX_* code < 0 (after
 * PARX_ERRRUN or PARX_ERRDEADLOCK the error value is pushed, as lua_pcall
 * leaves it). */
int parx_call(parx_runtime *rt, int nargs, int where);

/* ======================================================================
 * Driving the loop from a host
 * ==================================================================== */

/* Drive until nothing is left to run. */
int parx_run(parx_runtime *rt);

/* Run ready tasks and one loop iteration.  nowait=1 never blocks.
 * Returns 1 while there is more to do, 0 when idle, <0 on an error (a task
 * started with parx_start_string failed). */
int parx_step(parx_runtime *rt, int nowait);

/* A file descriptor that becomes readable when parx_step has work, and how
 * long (ms, -1 = forever) the host may wait before calling it anyway,
 * counted from the moment of the call (asked again, it has shrunk). */
int parx_backend_fd(parx_runtime *rt);
int parx_backend_timeout(parx_runtime *rt);

/* ======================================================================
 * Errors
 * ==================================================================== */

/* The message (with traceback) of the last failure; "" if none.  Valid
 * until the next parx call. */
const char *parx_last_error(parx_runtime *rt);

/* The status passed to os.exit after a PARX_EXIT result. */
int parx_exit_code(parx_runtime *rt);

/* A short message for a result of the functions above (PARX_OK, PARX_ERR*,
 * PARX_EXIT): "no error", "a Lua error escaped the code", "not enough
 * memory", ...; "unknown result" for any other number.  Never NULL, static.
 * The PARX_* numbers are stable; their messages come from the runtime's one
 * error table (the same text its Lua errors use).  Not for the channel
 * results (PARX_CHAN_*), whose numbers overlap.  Any thread. */
const char *parx_strerror(int result);

/* ======================================================================
 * Channels from the host
 *
 * The same channels as parx.channel: a host thread (any thread that is not
 * running a VM) sends and receives while tasks in every VM do.  A host
 * thread that must wait blocks on a condition variable; calling the
 * blocking functions from a C function that Lua called would block that
 * VM's thread, so don't.  With host threads feeding channels, open the
 * runtime with deadlock_check = 0 (tasks waiting for the host would
 * otherwise look deadlocked).
 *
 * A parx_value holds nil, a boolean, a number or a string: other values
 * (tables, functions, channels) sent by Lua arrive as PARX_VALUE_OTHER and
 * are dropped.  For those, the *_lua functions below move any value that
 * parx.spawn could pass (tables with their nesting, functions, shared
 * objects) between a channel and a Lua state of the runtime.
 * ==================================================================== */

typedef struct parx_channel parx_channel;

enum { PARX_VALUE_NIL, PARX_VALUE_BOOLEAN, PARX_VALUE_NUMBER, PARX_VALUE_STRING,
       PARX_VALUE_OTHER };

typedef struct parx_value {
  int type;         /* PARX_VALUE_* */
  int boolean;
  double number;
  char *string;     /* received strings: malloc'd, NUL-terminated, freed by
                       parx_value_clear; sent strings: borrowed */
  size_t len;
} parx_value;

/* Results of the channel functions. */
enum { PARX_CHAN_OK = 1, PARX_CHAN_CLOSED = 0, PARX_CHAN_EMPTY = -1, PARX_CHAN_FULL = -2,
       PARX_CHAN_ERRMEM = -3,
       PARX_CHAN_ERRVALUE = -4 /* *_lua: the value cannot cross (a coroutine,
                                  a foreign userdata...): the message is
                                  pushed on L */ };

/* capacity < 0: unbounded; 0: rendezvous.  One reference; NULL if out of
 * memory.  Any thread, no runtime needed. */
parx_channel *parx_channel_new(long capacity);
void parx_channel_retain(parx_channel *ch);
void parx_channel_release(parx_channel *ch);

/* Blocking send and receive: PARX_CHAN_OK, or PARX_CHAN_CLOSED (send on a
 * closed channel; receive on a closed and drained one). */
int parx_channel_send(parx_channel *ch, const parx_value *v);
int parx_channel_recv(parx_channel *ch, parx_value *out);
/* Never block: PARX_CHAN_FULL / PARX_CHAN_EMPTY when they would. */
int parx_channel_try_send(parx_channel *ch, const parx_value *v);
int parx_channel_try_recv(parx_channel *ch, parx_value *out);
/* 1 if this call closed it, 0 if it was closed already.  Wakes every
 * waiter (tasks and host threads). */
int parx_channel_close(parx_channel *ch);
long parx_channel_len(parx_channel *ch);
void parx_value_clear(parx_value *v);

/* Any value, through the marshaller that parx.spawn uses: L is a state of
 * a runtime (parx_state(rt)) on its own thread, outside any parx call.
 * send_lua copies the value at idx (left in place); recv_lua pushes the
 * value received (nothing is pushed unless PARX_CHAN_OK or
 * PARX_CHAN_ERRVALUE).  Results as above.  The blocking ones block the
 * calling thread, and with it the main VM when L is its state: use them
 * when a worker or another thread is at the other end, else the try_
 * forms between parx_step calls. */
int parx_channel_send_lua(parx_channel *ch, lua_State *L, int idx);
int parx_channel_try_send_lua(parx_channel *ch, lua_State *L, int idx);
int parx_channel_recv_lua(parx_channel *ch, lua_State *L);
int parx_channel_try_recv_lua(parx_channel *ch, lua_State *L);

/* Hand a channel to Lua: push it onto L (a state of the runtime, e.g.
 * parx_state(rt), on its thread); the proxy takes its own reference. */
void parx_channel_push(lua_State *L, parx_channel *ch);
/* Take one from Lua: the channel at idx with a new reference (release it),
 * or NULL if the value is not a channel. */
parx_channel *parx_channel_get(lua_State *L, int idx);

/* ======================================================================
 * The Lua C module: libparx installed as parx.so (LUA_CMODDIR) makes
 * `require "parx"` work from a plain LuaJIT.  It opens a runtime of its
 * own and returns a bridge to it (run, map, start, step, fd, timeout,
 * close: runtime/luaopen_parx.c and docs/embedding.md).
 * ==================================================================== */
int luaopen_parx(lua_State *L);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
