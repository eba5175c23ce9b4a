/*
 * runtime.h -- the core as the faces see it.  The embedding API (api.c)
 * and, through it, the CLI open a runtime, run chunks on its main VM as
 * tasks, drive that VM and read what came of it with these functions and
 * opaque types only; the structures behind them (core.h) are the core's.
 *
 * Layers (DESIGN.md "Layers"; scripts/tools/layers checks them): the faces
 * (cli/, api.c, modules.c: the list of C modules) > the modules (mod/, io/,
 * gpu/, mpi/) > the core (core/) > the platform shims (platform/).  A file
 * includes headers of, and calls functions defined in, its own layer and
 * those below only.  The core learns which modules exist from the list
 * the faces pass to px_runtime_new, as Lua's lualib learns its libraries
 * from linit.c.
 */
#ifndef PX_RUNTIME_H
#define PX_RUNTIME_H

#include "px.h"

typedef struct px_future px_future; /* a task's outcome (future.h) */

/* ------------------------------------------------------------------------
 * Lifetime.
 * ---------------------------------------------------------------------- */
/* A C module: preloaded as package.preload[name] in every VM. */
typedef struct px_module {
  const char *name; /* "parx.c.task" */
  lua_CFunction open;
} px_module;

/* Open a runtime on the calling thread (its main VM).  workers <= 0:
 * $PARX_WORKERS, else the CPU count.  modules: the C modules every VM
 * preloads, ended by {NULL, NULL}; kept, not copied.  NULL with errno set
 * on failure (the message, if any, is lost with the runtime). */
px_runtime *px_runtime_new(int workers, int deadlock_check, const char *trace_path,
                           const px_module *modules);
/* Stop and free; timeout_ms >= 0: abandon workers still busy after that
 * long (returns 1, nothing freed).  See parx_close_timeout. */
int px_runtime_close(px_runtime *rt, int timeout_ms);
/* The main VM's lua_State. */
lua_State *px_runtime_state(px_runtime *rt);

/* ------------------------------------------------------------------------
 * Errors, exit and host functions.
 * ---------------------------------------------------------------------- */
void px_runtime_set_error(px_runtime *rt, const char *msg);
/* The last error; after a panic, the panic's message.  Never NULL. */
const char *px_runtime_last_error(px_runtime *rt);
/* 1 once a VM panicked (state.c): the main VM is dead, touch nothing. */
int px_runtime_panicked(px_runtime *rt);
/* 1 once os.exit was called (or a panic stopped the runtime). */
int px_runtime_stopped(px_runtime *rt);
int px_runtime_exit_code(px_runtime *rt);
/* Run fn(L) on the main VM's state, protected, with ud as its argument;
 * an error becomes the last error.  Returns the Lua status; the stack is
 * left as it was. */
int px_runtime_protect(px_runtime *rt, lua_CFunction fn, void *ud);
/* A C function every VM gets as the global `name` (the main VM at once,
 * workers as they start); with lib (fn unused), the module luaL_register
 * makes of it (the global and package.loaded[name]).  0, UV_EBUSY once
 * workers run, UV_ENOMEM, or UV_EINVAL when the global could not be set
 * (the last error says why). */
int px_runtime_register(px_runtime *rt, const char *name, lua_CFunction fn,
                        const luaL_Reg *lib);

/* ------------------------------------------------------------------------
 * The main VM driven by its host (host.c).
 * ---------------------------------------------------------------------- */
/* Start the function on top of the main state (below it nargs arguments;
 * all popped) as a task of the main VM.  Returns its future (one
 * reference, px_future_release), or NULL with the last error set. */
px_future *px_host_start(px_runtime *rt, int nargs);
/* Drive the main VM until f's task ended or the runtime stopped; when
 * everything is asleep, f's task fails with the deadlock report (unless
 * deadlock checks are off).  0, or -1 when the report itself failed. */
int px_host_wait(px_runtime *rt, px_future *f);
/* Drive the main VM until nothing is left anywhere or the runtime
 * stopped. */
void px_host_drain(px_runtime *rt);
/* One step for a host loop: 1 if more work may come, 0 if nothing is
 * left, -1 if tasks of the main VM are parked and nothing can wake them. */
int px_host_step(px_runtime *rt, int nowait);
/* Fail f's still running task with the deadlock report; 1 if it had one,
 * 0 if not (or deadlock checks are off), -1 when the report failed. */
int px_host_report_deadlock(px_runtime *rt, px_future *f);
/* An exit (os.exit) stops the runtime until it has been reported once:
 * px_host_exit_reported marks it so, px_host_rearm (at the next run)
 * forgets a reported one.  A panic is never forgotten. */
void px_host_exit_reported(px_runtime *rt);
void px_host_rearm(px_runtime *rt);

/* What came of a finished main-VM task.  FAILED and DEADLOCK set the last
 * error to the error's message; CANCELLED sets it too. */
enum { PX_OUTCOME_DONE, PX_OUTCOME_FAILED, PX_OUTCOME_DEADLOCK, PX_OUTCOME_CANCELLED,
       PX_OUTCOME_STOPPED };
int px_host_outcome(px_runtime *rt, px_future *f);
/* Push what ended f gave onto the main state: true, its results... or
 * false, its error value; returns how many were pushed, or -1 with the
 * last error set and nothing pushed (out of memory).  *deadlocked: the
 * task was sent the deadlock report since the last outcome (it may have
 * caught it). */
int px_host_results(px_runtime *rt, px_future *f, int *deadlocked);

/* For a host's own poll: the loop's fd, and how long it may block. */
int px_host_backend_fd(px_runtime *rt);
int px_host_backend_timeout(px_runtime *rt);

/* ------------------------------------------------------------------------
 * Futures, as the host holds them.
 * ---------------------------------------------------------------------- */
int px_future_done(px_future *f);         /* ended: done, failed or cancelled */
void px_future_release(px_future *f);
void px_future_push(lua_State *L, px_future *f); /* a Task for f; adds a reference */
px_future *px_future_test(lua_State *L, int idx); /* the Task's future, or NULL */

#endif
