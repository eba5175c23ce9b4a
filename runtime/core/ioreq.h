/*
 * ioreq.h -- a request: one task parked on one IO operation (luv's lreq.c,
 * libuv's uv_req_t).  The other half of the IO object model, the Lua face
 * of a libuv handle, is iohandle.h; its top comment is the recipe for a new
 * IO type.
 *
 * A px_req wraps the scheduler's px_wait (px.h) in the life cycle every IO
 * operation shares, so that an IO module writes what is particular to it
 * (what to push, what to free, how to stop its source) and nothing else:
 *
 *          px_req_start            px_req_done (source's callback)
 *   IDLE ---------------> ACTIVE ----------------------------> DONE
 *    ^                      | cancel: type->abandon              | deliver:
 *    |                      v                                    | type->done
 *    +----------------------+------------------------------------+ (or, when the
 *                                                                   task went away,
 *                                                                   type->drop)
 *
 *   IDLE    no task waits: never started, delivered, dropped, or abandoned
 *           (the task was cancelled; the operation may still be running).
 *   ACTIVE  a task is parked (or about to park) and the source has not
 *           finished: the source's callback must call px_req_done.
 *   DONE    px_req_done woke the task; deliver is on its way.  A cancel
 *           that comes now is too late (the scheduler then drops instead).
 *
 * The source's callback calls px_req_done(req): it returns 1 when it woke
 * the task (the request now belongs to the scheduler until done or drop
 * runs), 0 when no task waits (IDLE: the operation was abandoned, or ran
 * in the background outside a task): the callback then cleans up itself.
 *
 * A request is either embedded in a long-lived object (a stream's reader,
 * a server's acceptor: px_req_init once per wait) or is the first thing a
 * one-shot operation allocates (a write, a lookup: freed in done/drop, or
 * by the source's callback after an abandon).
 *
 * Everything here runs on the VM's thread except px_req_done's px_wake,
 * which any thread may cause (a pool thread's uv_work callback runs on the
 * loop thread anyway).
 */
#ifndef PX_CORE_IOREQ_H
#define PX_CORE_IOREQ_H

#include "px.h"
#include "queue.h"

typedef struct px_req px_req;

typedef struct px_req_type {
  /* The task resumes: push its results onto co and return how many.  The
   * request is IDLE already: done may free it or start it again.  Runs
   * with GC steps held off (px.h, deliver): free before pushing. */
  int (*done)(lua_State *co, px_req *req);
  /* The task went away after px_req_done woke it (cancelled, or its VM is
   * closing): free what done would have consumed.  NULL: nothing to do. */
  void (*drop)(px_req *req);
  /* The task is cancelled while the operation runs: detach from the source
   * (uv_cancel, stop a timer, kill a child).  The request is IDLE: the
   * source's later px_req_done returns 0 and its callback cleans up.  NULL:
   * the operation just runs on without a waiter. */
  void (*abandon)(px_req *req);
} px_req_type;

typedef enum { PX_REQ_IDLE, PX_REQ_ACTIVE, PX_REQ_DONE } px_req_state;

struct px_req {
  px_wait wait;             /* the scheduler's; do not touch */
  const px_req_type *type;
  px_req_state state;
  int anchor;               /* registry ref held while a task waits */
};

/* Reset req for a new wait (IDLE, no anchor).  what names the wait in
 * deadlock reports ("tcp read"). */
void px_req_init(px_req *req, const px_req_type *type, const char *what);

/* Bind req to the calling task and make it ACTIVE.  Raises, with nothing
 * registered, outside a task or when the task is being cancelled: call it
 * before the source can see req, or call px_check_can_park first (then it
 * cannot raise).  Then hand req to the source and end with px_req_park. */
void px_req_start(lua_State *L, px_req *req);

/* Keep the Lua value at idx (the object's userdata) alive while the task
 * waits; released when the request goes back to IDLE. */
void px_req_anchor(lua_State *L, px_req *req, int idx);

/* return px_req_park(L, req): park the task until done. */
int px_req_park(lua_State *L, px_req *req);

/* The source finished: wake the task (1), or 0 when none waits. */
int px_req_done(px_req *req);

/* ACTIVE: a task waits and the source has not finished. */
static inline int px_req_active(const px_req *req) { return req->state == PX_REQ_ACTIVE; }
/* Not IDLE: some task holds the request (waiting, or being woken). */
static inline int px_req_busy(const px_req *req) { return req->state != PX_REQ_IDLE; }

#endif
