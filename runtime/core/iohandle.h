/*
 * iohandle.h -- the IO object model: the Lua face of a libuv handle (luv's
 * lhandle.c), and the recipe for a new IO type.
 *
 * Two objects make every IO module:
 *
 *   px_iohandle  a long-lived object with a Lua userdata (a socket, a
 *                stream, a server): malloc'd by the module, it embeds a
 *                px_iohandle that gives it __gc, close(), a check that
 *                rejects closed objects, __index (methods, then fields) and
 *                __tostring.  The userdata holds only a pointer, so the
 *                object outlives it while libuv still owns its handle.
 *   px_req       one task parked on one operation (ioreq.h): park, done,
 *                cancel.  Embedded in the handle (its one reader) or
 *                allocated per operation (a write, a lookup).
 *
 * Recipe for a new IO type (a file of its own, runtime/io/<name>.c):
 *
 *   1. The object: embed px_iohandle (any member; px_container_of gets the
 *      object back) and the libuv handle; handle.data points at the object.
 *   2. One static px_iohandle_type: name ("parx.<module>.<thing>"),
 *      methods, close (start
 *      uv_close; wake waiting tasks: they get ECLOSED), free, and optionally
 *      describe (for __tostring) and field (extra __index keys).
 *   3. The close callback calls px_iohandle_closed(h); the object is freed
 *      (type->free) once that has run and the userdata is gone.
 *   4. Methods start with px_iohandle_check (open objects) or
 *      px_iohandle_get (also closed ones: close() is idempotent, a read on
 *      a closed socket returns ECLOSED).
 *   5. Each wait: a px_req with a px_req_type {done, drop, abandon}; the
 *      libuv callback records its result and calls px_req_done; done turns
 *      the result into Lua values on the task's side.
 *   6. Add px_open_<name> to the one module list, runtime/modules.c, and
 *      write lua/parx/<name>.lua for the friendly API.
 *
 * The IO types built this way (runtime/io/): stream.c (TCP connections,
 * pipes, standard input), tcp.c (connect, the listening server), udp.c,
 * signal.c, inet.c (what TCP and UDP sockets share); requests only: dns.c,
 * http.c, fs.c, process.c; dispatch.c (timers and signals share one
 * dispatcher task).
 *
 * All of this runs on the VM's thread; nothing here calls Lua from a libuv
 * callback.
 */
#ifndef PX_CORE_IOHANDLE_H
#define PX_CORE_IOHANDLE_H

#include "ioreq.h"

typedef struct px_iohandle px_iohandle;

typedef struct px_iohandle_type {
  /* Metatable name, "parx.tcp.server"; its last part names the object in
   * errors: "attempt to use a closed server". */
  const char *name;
  const luaL_Reg *methods;  /* called with the metatable as upvalue 1 */
  /* Start closing (uv_close, wake waiting tasks); called once.  The close
   * callback must end in px_iohandle_closed(h). */
  void (*close)(px_iohandle *h);
  /* Closed and no userdata left: free the object.  NULL: free(h), for
   * objects that embed px_iohandle first and own nothing else. */
  void (*free)(px_iohandle *h);
  /* Optional.  Push the detail of an open object's __tostring, e.g.
   * "127.0.0.1 port 80"; NULL: its address. */
  void (*describe)(lua_State *L, px_iohandle *h);
  /* Optional.  __index for keys that are not methods: push the value of
   * key (h is NULL once the object was collected). */
  void (*field)(lua_State *L, px_iohandle *h, const char *key);
} px_iohandle_type;

struct px_iohandle {
  const px_iohandle_type *type;
  unsigned char closing; /* close started: Lua may not use it any more */
  unsigned char closed;  /* the close callback ran */
  unsigned char lua_owned, lua_gone; /* a userdata was pushed / collected */
};

void px_iohandle_init(px_iohandle *h, const px_iohandle_type *type);

/* Push the userdata for h (once per object); from then on Lua owns it. */
void px_iohandle_push(lua_State *L, px_iohandle *h);

/* Start closing h (idempotent). */
void px_iohandle_close(px_iohandle *h);
/* From the close callback: h's libuv side is gone. */
void px_iohandle_closed(px_iohandle *h);

static inline int px_iohandle_is_open(const px_iohandle *h) { return h && !h->closing; }

/* In a method: argument 1 as a handle of the method's type (upvalue 1 is
 * its metatable), or NULL once collected; raises a type error for
 * anything else.  px_iohandle_check also raises for a closed one. */
px_iohandle *px_iohandle_get(lua_State *L);
px_iohandle *px_iohandle_check(lua_State *L);

/* Anywhere: the value at idx as an open handle of type (raises otherwise). */
px_iohandle *px_iohandle_check_type(lua_State *L, int idx, const px_iohandle_type *type);

/* Leave type's metatable (made once per VM) on the stack.  Its `methods`
 * field is the methods table, for the Lua layer to extend.  getmetatable()
 * in scripts gives type->name (__metatable). */
void px_iohandle_meta(lua_State *L, const px_iohandle_type *type);

/* In a method (argument 1 the handle's userdata): park the calling task on
 * req, a request of the handle's own (its reader, its acceptor), with the
 * userdata anchored until the task resumes.  ref, unless NULL, is the
 * libuv handle to keep the loop alive with while the task waits (the
 * module unrefs it when it wakes the task and in type->abandon).  Raises,
 * with nothing registered, where the task cannot wait. */
int px_iohandle_wait(lua_State *L, px_req *req, const px_req_type *type, const char *what,
                     uv_handle_t *ref);

/* Methods every handle type may list: close() -> true, closed() -> bool. */
int px_iohandle_close_method(lua_State *L);
int px_iohandle_closed_method(lua_State *L);

#endif
