/*
 * px.h -- the core's internal API, shared by every module in runtime/.
 *
 * Nothing here is public: the embedding API is runtime/parx.h.  Layers point
 * down only: modules (runtime/mod, runtime/io, runtime/gpu) include this file;
 * the core never includes a module's header.
 *
 * Threading model in one paragraph.  A px_runtime owns one main VM (the thread
 * that opened it) and N worker VMs (one pthread each).  A VM is a lua_State, a
 * libuv loop and a scheduler of tasks (coroutines).  Only the VM's own thread
 * touches its lua_State or its loop.  Another thread reaches a VM only through
 * px_wake() (an inbox under a mutex plus uv_async_send).  Objects that several
 * VMs use (channels, arrays, task handles, sync primitives) are px_shared:
 * malloc'd C objects with an atomic reference count, one Lua proxy per VM.
 */
#ifndef PX_CORE_H
#define PX_CORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

typedef struct px_runtime px_runtime;
typedef struct px_vm px_vm;
typedef struct px_task px_task;
typedef struct px_wait px_wait;

/* ------------------------------------------------------------------------
 * Errors.  One table of negative codes: libuv's are reused as they are
 * (UV_ENOENT ..., the negated errno values on Unix), parx adds its own
 * below libuv's range.  Each code has a name (parx's: "CLOSED"; libuv's:
 * "ENOENT") and a message.
 *   - IO, HTTP and GPU operations that fail give Lua nil, "NAME: message[:
 *     detail]", "NAME" (px_push_error) or raise that string with the
 *     operation in front ("matmul: CUDA: CUDA error: ...");
 *   - the embedding API's results (parx.h, PARX_ERR*) are entries of this
 *     table too, under stable public numbers: parx_strerror(PARX_ERRRUN) is
 *     px_strerror(PX_ERUN) (runtime/errors_api.c holds the mapping).
 * A code is here because something returns it; remove the ones that stop
 * being used.
 * ---------------------------------------------------------------------- */
#define PX_ERRNO_MAP(XX)                                                      \
  XX(CLOSED, "channel or object is closed")                                  \
  XX(DEADLOCK, "all tasks are asleep: deadlock")                             \
  XX(NODEV, "no GPU device")                                                 \
  XX(CUDA, "CUDA error")                                                     \
  XX(CUBLAS, "cuBLAS error")                                                 \
  XX(HTTP, "HTTP transfer failed")                                           \
  XX(RUN, "a Lua error escaped the code")                                    \
  XX(SYNTAX, "the code does not compile")                                    \
  XX(FILE, "the file cannot be read")                                        \
  XX(EXIT, "the code called os.exit")                                        \
  XX(PANIC, "a VM hit an error no protected call could catch")

enum {
  PX__ERR_BASE = -5000,
#define XX(code, _) PX_E##code,
  PX_ERRNO_MAP(XX)
#undef XX
  PX__ERR_END
};

/* Message and symbolic name for any error code (parx's, libuv's, errno's
 * negated).  Never NULL. */
const char *px_strerror(int err);
const char *px_err_name(int err);

/* The one boundary where a failed operation becomes a Lua value: pushes
 * nil, "NAME: message[: detail]", "NAME" and returns 3.  detail may be NULL.
 * Misuse (wrong argument types) raises instead, through luaL_argerror. */
int px_push_error(lua_State *L, int err, const char *detail);
/* Push only the string "NAME: message[: detail]" and return it; for an
 * error raised with its code in it (the GPU's). */
const char *px_push_error_message(lua_State *L, int err, const char *detail);

/* ------------------------------------------------------------------------
 * Invariants.  PX_ASSERT(cond) states what must hold whatever a script
 * does: a queue's or a wait's state, a reference count.  It stays in
 * release builds (a compare and a branch the CPU predicts; keep the
 * condition that cheap): a failure prints "parx: assertion failed: cond
 * (file:line)" on stderr and aborts, as libuv's asserts do, since memory
 * the runtime can no longer trust is worse than a stopped process.
 * PX_ASSERT_DEBUG is for costly checks (a walk of a list), compiled only
 * without NDEBUG.  Never for what a script can cause: that raises.
 * ---------------------------------------------------------------------- */
__attribute__((noreturn, cold)) void px_assert_fail(const char *cond, const char *file, int line);
#define PX_ASSERT(cond)                                                       \
  (__builtin_expect(!(cond), 0) ? px_assert_fail(#cond, __FILE__, __LINE__) : (void)0)
#ifdef NDEBUG
#define PX_ASSERT_DEBUG(cond) ((void)0)
#else
#define PX_ASSERT_DEBUG(cond) PX_ASSERT(cond)
#endif

/* The one out-of-memory path for a C function called from Lua: raises the
 * string "<what>: not enough memory" (what names the operation or object,
 * e.g. "channel"; NULL: "not enough memory", Lua's own message).  Never
 * returns; written `return px_oom(L, "channel")` like luaL_error.  An IO
 * operation whose libuv request reports UV_ENOMEM returns it like any other
 * code through px_push_error instead. */
__attribute__((noreturn)) int px_oom(lua_State *L, const char *what);

/* Misuse raised at the user's line.  px_error_user is luaL_error with the
 * location of the innermost frame that is neither a C function nor one of
 * parx's own Lua modules (lua/parx/x.lua): the script's line that called
 * into parx, however deep the check sits.  px_check_options raises
 * "fname: unknown option 'x' (known: a, b, c)" that way for a key of the
 * table at idx missing from known (a NULL-terminated list, in the order to
 * print, sorted); anything else at idx is left to the caller.  Run it once
 * per call, never per item.  Lua code has the same pair in parx.opts. */
__attribute__((noreturn)) int px_error_user(lua_State *L, const char *fmt, ...);
void px_check_options(lua_State *L, int idx, const char *fname, const char *const known[]);

/* ------------------------------------------------------------------------
 * Protected entry into Lua.  Every call from C into Lua that is not already
 * inside a protected frame (a loop callback, a wait's deliver, a job's
 * unmarshal, the embedding API, the REPL) goes through one of these, never
 * a bare lua_call: an error there (a failing __gc, out of memory, a
 * replaced standard global) comes back as a status, never unwinds through
 * C frames of libuv or pthreads and never reaches the panic handler.
 * ---------------------------------------------------------------------- */
/* lua_pcall of the function below its nargs arguments, with px_traceback
 * as message handler (a string error gets the traceback appended).
 * Returns 0, or a LUA_ERR* status with the error value in place of the
 * function and its arguments. */
int px_pcall(lua_State *L, int nargs, int nresults);
/* Run fn(L) protected, with ud as its one (light userdata) argument;
 * returns 0 with fn's nresults results on the stack (LUA_MULTRET: all),
 * or a LUA_ERR* status with the error value on top. */
int px_cpcall(lua_State *L, lua_CFunction fn, void *ud, int nresults);

/* ------------------------------------------------------------------------
 * VMs.  px_vm_of(L) works for the VM's main state and every coroutine in it.
 * ---------------------------------------------------------------------- */
px_vm *px_vm_of(lua_State *L);
px_runtime *px_vm_runtime(px_vm *vm);
uv_loop_t *px_vm_loop(px_vm *vm);
lua_State *px_vm_state(px_vm *vm); /* the VM's main lua_State */
int px_vm_id(px_vm *vm);           /* 0 = main VM, 1..N = workers */
int px_vm_on_thread(px_vm *vm);    /* 1 if the calling thread runs vm */
/* 1 if vm has another task to run or a wake to deliver (its thread only):
 * a task that waits by spinning would hold them up. */
int px_vm_has_work(px_vm *vm);

/* External work (a GPU stream, a host thread) that will px_wake() a task of
 * vm later, but holds no libuv handle, must be counted so the VM is not
 * thought idle (deadlock detection, process exit).  Balanced calls; any
 * thread. */
void px_vm_hold(px_vm *vm);
void px_vm_release(px_vm *vm);

/* ------------------------------------------------------------------------
 * Tasks, parking and waking.
 *
 * A C function called from Lua inside a task parks the task by ending with
 *     return px_park(L, &obj->wait);
 * Before that it fills in w->what (a short phrase for deadlock reports, e.g.
 * "channel recv") and the callbacks below.  Later, exactly once, some thread
 * calls px_wake(w).  The scheduler then runs, on the VM's thread:
 *   deliver(L, w):  push the wait's results onto L (the VM's main state,
 *                   never the parked coroutine: no Lua code may run on a
 *                   suspended coroutine) and return how many; the
 *                   scheduler moves them to the task, where they become
 *                   the C function's return values.  NULL means no
 *                   results.  It runs with GC steps held off (no __gc can
 *                   run in it), or, where LuaJIT's layout is not the one
 *                   known (sched_lj.c), in a protected call; an error in it
 *                   (out of memory) becomes the task's error, and what w
 *                   still held then is lost: free before pushing.
 * If the task is cancelled (or the runtime reports a deadlock) while parked,
 * the scheduler calls cancel(w) on the VM's thread:
 *   cancel(w) -> 1: w was detached from its source and will never be woken;
 *                   the task resumes at once with the cancellation error.
 *   cancel(w) -> 0: a px_wake(w) is already under way; when it arrives the
 *                   scheduler calls discard(w) instead of deliver(w).
 * After deliver, discard or a cancel that returned 1, the scheduler never
 * touches w again: the module may free it inside those callbacks.
 *
 * px_park raises a Lua error instead of parking when L is not inside a task,
 * and raises the cancellation error at once when the task was already asked
 * to cancel.  A px_wait may be reused (embedded in a long-lived object) once
 * its previous wait was delivered, discarded or detached.  Zero it first.
 * Waits inside coroutines a task created with coroutine.create/wrap work:
 * the task's resume forwards the park outwards.
 * ---------------------------------------------------------------------- */
struct px_wait {
  px_wait *next;  /* scheduler's link while posted; do not touch */
  px_task *task;  /* set by px_park */
  px_vm *vm;      /* set by px_park */
  const char *what;
  int (*deliver)(lua_State *co, px_wait *w);
  void (*discard)(px_wait *w);
  int (*cancel)(px_wait *w);
  int external; /* 1: the waker is not a libuv handle of this VM nor another
                   VM's task (GPU callback, host thread): counts as px_vm_hold */
  int armed;    /* scheduler's: set by px_wait_prepare, cleared on delivery */
  int64_t on_id; /* traces and dumps: the id of what it waits on (a channel's,
                    a task's number), 0 when none */
};

/* Bind w to the calling task (sets w->task and w->vm) before the wait is
 * made visible to any waker: call it first, then register w with the source
 * (a channel's queue, a handle), then `return px_park(L, w)`.  A wake that
 * arrives before the task has yielded is simply delivered after it.  Raises
 * (nothing registered yet) when L is not inside a task or when the task was
 * asked to cancel. */
void px_wait_prepare(lua_State *L, px_wait *w);
/* The same without raising: 0, or -1 (nothing done) where px_wait_prepare
 * would raise; the caller frees what it holds, then px_check_can_park(L)
 * raises the error. */
int px_wait_try_prepare(lua_State *L, px_wait *w);
int px_park(lua_State *L, px_wait *w);   /* calls px_wait_prepare if needed */
void px_wake(px_wait *w); /* any thread; exactly once per park */

/* The task whose coroutine L is, or NULL. */
px_task *px_task_current(lua_State *L);

/* Raise if L cannot park (not inside a task); used by functions that want
 * to fail early, before they allocate. */
void px_check_can_park(lua_State *L);

/* ------------------------------------------------------------------------
 * Timeouts.  Every API that takes a timeout in seconds turns it into whole
 * milliseconds for a libuv timer with these, never with a bare cast (a
 * double -> uint64_t conversion out of range is undefined: math.huge and
 * 1e300 used to end at once).  The rule, the same everywhere:
 *   - NaN is an error;
 *   - a negative number counts as 0 (-math.huge too);
 *   - math.huge, or any finite value too large for a timer (2^53 ms or
 *     more, about 285,000 years), means no limit;
 *   - otherwise the milliseconds rounded up (0.0001 s waits 1 ms).
 * px_seconds_to_ms returns 1 with *ms set (a limit), 0 for no limit (*ms
 * is then UINT64_MAX), or -1 for NaN (*ms untouched).  px_timeout_ms reads
 * the argument at idx the same way: nil or none means no limit, NaN or a
 * non-number raises luaL_argerror naming the argument.  A caller whose
 * default is not "no limit" checks lua_isnoneornil first; an options
 * field (opts.timeout) is pushed and read at -1.
 * ---------------------------------------------------------------------- */
int px_seconds_to_ms(double secs, uint64_t *ms);
int px_timeout_ms(lua_State *L, int idx, uint64_t *ms);

/* ------------------------------------------------------------------------
 * Shared objects: cross VMs by reference.
 *
 * A module embeds px_shared as the FIRST member of its object, registers its
 * type once with px_shared_register (at process start, from its open
 * function; idempotent), and makes Lua proxies with px_shared_push.  The
 * proxy is a full userdata holding one reference; its __gc drops it.  The
 * marshaller sends the pointer plus a reference and calls type->push on the
 * other side.
 *
 * Types whose Lua face is not a px_shared_push userdata (arrays are FFI
 * cdata) set `to_shared` in the VM registry instead, see px_marshal.
 * ---------------------------------------------------------------------- */
typedef struct px_shared px_shared;
typedef struct px_shared_type {
  const char *name;               /* metatable name, e.g. "parx.channel" */
  void (*free)(px_shared *obj);   /* last reference dropped; any thread */
  /* push a Lua value for obj onto L, taking over one reference the caller
   * already holds.  NULL means: px_shared_push (userdata + metatable `name`,
   * which the module must have created in this VM, see px_shared_meta). */
  void (*push)(lua_State *L, px_shared *obj);
  int id; /* set by px_shared_register */
} px_shared_type;

struct px_shared {
  const px_shared_type *type;
  atomic_long refs;
};

void px_shared_register(px_shared_type *type);
/* Types whose Lua face is not a px_shared_push userdata (arrays are FFI
 * cdata) register `holds`: 1 if p is a live object of the type, decided
 * without reading *p (a lookup in the type's own set of live objects).
 * The marshaller accepts a pointer from the cdata hook only if some type
 * holds it (px_shared_known).  After px_shared_register. */
void px_shared_register_holds(const px_shared_type *type, int (*holds)(const void *p));
void px_shared_init(px_shared *obj, const px_shared_type *type); /* refs=1 */
void px_shared_retain(px_shared *obj);
void px_shared_release(px_shared *obj);
/* For a __gc that must act once: the pointer the userdata at idx holds as
 * its first field, taken out (the field set to NULL); NULL if none. */
void *px_udata_take(lua_State *L, int idx);

/* Push a userdata proxy for obj with metatable type->name; takes over one
 * reference.  The metatable must exist (px_shared_meta). */
void px_shared_push(lua_State *L, px_shared *obj);
/* Create (or fetch) the metatable for type in this VM and leave it on the
 * stack; it gets __gc (release), __index (itself) and __metatable (the type
 * name: scripts cannot get or change it through getmetatable; the Lua layer
 * gets it from its C module).  Proxies are recognised by this metatable's
 * identity (px_shared_test), never by a field.  Add methods to it. */
void px_shared_meta(lua_State *L, const px_shared_type *type);
/* The object behind the proxy at idx if it is of `type` (NULL: any shared
 * type); NULL if it is not one. */
px_shared *px_shared_test(lua_State *L, int idx, const px_shared_type *type);
/* The same for a caller that holds its type's metatable of this VM at mt
 * (an upvalue, say; not a negative index): one compare, no registry
 * lookup.  NULL if the value at idx has another metatable or none. */
px_shared *px_shared_test_mt(lua_State *L, int idx, int mt);
/* 1 if a registered `holds` vouches for obj; for pointers that came through
 * Lua (obj is never dereferenced). */
int px_shared_known(const px_shared *obj);
/* Like px_shared_test but raises a type error naming type->name. */
px_shared *px_shared_check(lua_State *L, int idx, const px_shared_type *type);

/* ------------------------------------------------------------------------
 * Messages: values marshalled for another VM.
 *
 * Bytes plus the shared references they hold.  A message that is freed
 * without being unmarshalled releases its references.
 * ---------------------------------------------------------------------- */
typedef struct px_msg {
  char *data;
  size_t len, cap;
  px_shared **refs;
  int nrefs, refcap;
} px_msg;

void px_msg_init(px_msg *m);
void px_msg_free(px_msg *m);
/* A copy of src into dst (overwritten) whose references are its own: 0, or
 * -1 (no memory) with dst empty (shared.c). */
int px_msg_copy(px_msg *dst, const px_msg *src);
/* Marshal the n values at idx..idx+n-1 (appending to m).  Returns 0, or -1
 * with an error message pushed on L that names the value's path, e.g.
 * "cannot send upvalue 'co' of argument #1 (a coroutine) to another VM".
 * Never raises except on out-of-memory. */
int px_marshal(lua_State *L, int idx, int n, px_msg *m);
/* Push the values of m; returns their count, or -1 with an error message
 * pushed.  Takes over the references (m->nrefs becomes 0).  m still needs
 * px_msg_free for its bytes.  Both are safe on any bytes (bounded nesting
 * and allocation); they differ in what they accept:
 *   px_unmarshal       trusted: only for messages px_marshal made in this
 *                      process (another VM's task, result, channel message).
 *                      Lua functions (raw bytecode, which LuaJIT never
 *                      verifies), C functions and modules by name (required
 *                      when absent) are accepted.
 *   px_unmarshal_data  data-only: for bytes from a file, a socket or a
 *                      script.  Functions, C functions, module references
 *                      and metatables by module name raise "... in a
 *                      data-only message"; nothing is loaded or required.
 * Out of memory raises (call them in a protected frame). */
int px_unmarshal(lua_State *L, px_msg *m);
int px_unmarshal_data(lua_State *L, px_msg *m);

/* The marshaller keeps every VM's package.path/cpath in step with the VM
 * that sends code (paths.c): publish after marshalling a function or a
 * module reference, sync before unmarshalling one. */
void px_paths_publish(lua_State *L);
/* parx.register_type(name, mt): mt crosses VMs as the type `name`, which
 * every VM resolves to its own copy (marshal_names.c). */
int px_marshal_register_type(lua_State *L);
void px_paths_sync(lua_State *L);

/* Registry key (a light userdata address) under which a VM may store a
 * function cdata -> lightuserdata(px_shared*) or nil; the marshaller calls it
 * for every cdata value (arrays are FFI cdata). */
extern const char px_cdata_hook_key;

/* ------------------------------------------------------------------------
 * Modules.  Each C module has `int px_open_<name>(lua_State *L)` which
 * pushes its table and returns 1 (luaopen style).  The core knows none of
 * them: the faces list them (runtime/modules.c, as Lua's linit.c lists its
 * libraries) and pass the list to px_runtime_new (runtime.h); every VM
 * preloads each as "parx.c.<name>".  A new module is a file of its own and
 * one line there.
 * ---------------------------------------------------------------------- */

/* Tracing, the flight recorder and parx.stats(): the hooks modules call
 * (px_trace_chunk_begin, px_trace_chan_op ...) are in trace.h. */
#include "trace.h"
int px_trace_on(px_vm *vm); /* a trace session is recording this VM */

/* Runtime facts modules may need. */
int px_runtime_workers(px_runtime *rt); /* configured worker count */
px_vm *px_runtime_main(px_runtime *rt);

#endif
