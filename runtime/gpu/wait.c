/*
 * wait.c -- parking a task until queued GPU (or thread-pool CPU) work is
 * done, and raising a failed GPU call (which waits for the stream first).
 *
 * Calls point one way through runtime/gpu (gpu.h): this file calls only
 * the backend (loader.c), never device arrays or the bindings.  An op's
 * result is whatever value its caller pushed (px_gpu_op_set_result), so
 * this file knows nothing of array types.
 *
 * A GPU operation queues its work on the module's stream, then asks the
 * module to call op_ready on a CUDA-owned thread once that work has run
 * (cudaLaunchHostFunc).  op_ready only calls px_wake, which reaches the
 * task's VM through its loop: no Lua and no CUDA call happen on the CUDA
 * thread.  The task resumes in op_deliver on its own thread.  Outside a task
 * (a plain coroutine in a host program) the calling thread waits for the
 * stream instead.
 *
 * The op holds a reference to each array the queued work touches, so a task
 * cancelled while parked cannot free memory the stream still uses: a cancel
 * never detaches a queued op (op_cancel returns 0) and the late wake is
 * discarded, dropping those references.
 */
#include <stdlib.h>
#include <string.h>

#include "gpu.h"

px_gpu_op *px_gpu_op_new(lua_State *L, const char *what) {
  /* Fail before anything is queued if this task cannot wait. */
  if (px_task_current(L)) px_check_can_park(L);
  px_gpu_op *op = calloc(1, sizeof *op);
  if (!op) px_oom(L, "gpu operation");
  op->result_ref = LUA_NOREF;
  op->wait.what = what;
  return op;
}

void px_gpu_op_hold(px_gpu_op *op, px_shared *obj) {
  /* An op that held fewer than it touches would let queued work use freed
   * memory: PX_GPU_MAXHOLD is sized for the largest caller. */
  PX_ASSERT(op->nholds < PX_GPU_MAXHOLD);
  px_shared_retain(obj);
  op->holds[op->nholds++] = obj;
}

void px_gpu_op_set_result(lua_State *L, px_gpu_op *op) {
  PX_ASSERT(op->result_ref == LUA_NOREF);
  op->vm_state = px_vm_state(px_vm_of(L));
  op->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int px_gpu_raise(lua_State *L, const char *what, px_gpu_op *op, int pxc_rc) {
  const pxc_api *cuda = px_gpu_backend_get()->cuda;
  /* Copy the message first: it is per thread, and a failed synchronize
   * would overwrite it.  Then wait for the stream, so that no queued work
   * still reads or writes what the op holds, and drop the op. */
  lua_pushfstring(L, "%s: ", what);
  px_push_error_message(L, cuda ? px_gpu_code(pxc_rc) : PX_ENODEV, cuda ? cuda->errmsg() : NULL);
  lua_concat(L, 2);
  if (cuda) cuda->synchronize();
  if (op) px_gpu_op_abandon(op);
  return lua_error(L);
}

/* VM thread (any state of the VM). */
void px_gpu_op_abandon(px_gpu_op *op) {
  for (int i = 0; i < op->nholds; i++) px_shared_release(op->holds[i]);
  if (op->result_ref != LUA_NOREF) luaL_unref(op->vm_state, LUA_REGISTRYINDEX, op->result_ref);
  free(op);
}

/* Push the op's result on L and free the op. */
static int push_result(lua_State *L, px_gpu_op *op) {
  int nresults = 0;
  if (op->result_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, op->result_ref);
    nresults = 1;
  } else if (op->has_number) {
    lua_pushnumber(L, op->number);
    nresults = 1;
  }
  px_gpu_op_abandon(op);
  return nresults;
}

/* The stream's error state, as (nil, message, code) results: an
 * asynchronous fault surfaces at the next wait, as in CUDA.  The Lua face
 * raises it. */
static int push_stream_error(lua_State *L, px_gpu_op *op) {
  const pxc_api *cuda = px_gpu_backend_get()->cuda;
  int rc = cuda ? cuda->status() : 0;
  if (rc == 0) return 0;
  px_gpu_op_abandon(op);
  return px_push_error(L, px_gpu_code(rc), cuda->errmsg());
}

static int op_deliver(lua_State *co, px_wait *w) {
  px_gpu_op *op = (px_gpu_op *)w;
  if (px_trace_on(w->vm)) px_trace_slice(w->vm, "gpu", w->what, op->t0, px_trace_now());
  if (op->err) {
    int err = op->err;
    px_gpu_op_abandon(op); /* free before pushing (px.h, deliver) */
    return px_push_error(co, err, NULL);
  }
  if (!op->work) {
    int n = push_stream_error(co, op);
    if (n) return n;
  }
  return push_result(co, op);
}

static void op_discard(px_wait *w) { px_gpu_op_abandon((px_gpu_op *)w); }

static int op_cancel(px_wait *w) {
  (void)w;
  return 0; /* queued work cannot be recalled; the wake will be discarded */
}

static void op_ready(void *arg) { px_wake(&((px_gpu_op *)arg)->wait); }

int px_gpu_op_finish(lua_State *L, px_gpu_op *op) {
  const pxc_api *cuda = px_gpu_backend_get()->cuda;
  if (!px_task_current(L)) {
    int rc = cuda->synchronize();
    if (rc) return px_gpu_raise(L, "gpu", op, rc);
    return push_result(L, op);
  }
  op->wait.deliver = op_deliver;
  op->wait.discard = op_discard;
  op->wait.cancel = op_cancel;
  op->wait.external = 1;
  px_wait_prepare(L, &op->wait);
  px_trace_wait_on(L, &op->wait, "op", op->wait.what + (strncmp(op->wait.what, "gpu ", 4) == 0 ? 4 : 0));
  op->t0 = px_trace_now();
  int rc = cuda->notify(op_ready, op);
  if (rc) {
    /* Not parked after all: undo the hold that prepare took. */
    px_vm_release(op->wait.vm);
    return px_gpu_raise(L, "gpu", op, rc);
  }
  return px_park(L, &op->wait);
}

/* ---- CPU work on the thread pool ------------------------------------------ */

static void cpu_work(uv_work_t *req) {
  px_gpu_op *op = req->data;
  op->work(op);
}

static void cpu_after(uv_work_t *req, int status) {
  (void)status;
  px_gpu_op *op = req->data;
  px_wake(&op->wait);
}

int px_gpu_op_run_inline(lua_State *L, px_gpu_op *op) {
  op->work(op);
  if (op->err) {
    int err = op->err;
    const char *what = op->wait.what;
    px_gpu_op_abandon(op);
    if (err == UV_ENOMEM) return px_oom(L, what);
    lua_pushfstring(L, "%s: ", what);
    px_push_error_message(L, err, NULL);
    lua_concat(L, 2);
    return lua_error(L);
  }
  return push_result(L, op);
}

int px_gpu_op_run_cpu(lua_State *L, px_gpu_op *op) {
  if (!px_task_current(L)) return px_gpu_op_run_inline(L, op);
  op->wait.deliver = op_deliver;
  op->wait.discard = op_discard;
  op->wait.cancel = op_cancel;
  op->wait.external = 0; /* a uv_work_t of this VM's loop keeps it alive */
  px_wait_prepare(L, &op->wait);
  px_trace_wait_on(L, &op->wait, "op", op->wait.what + (strncmp(op->wait.what, "gpu ", 4) == 0 ? 4 : 0));
  op->t0 = px_trace_now();
  op->req.data = op;
  int rc = uv_queue_work(px_vm_loop(px_vm_of(L)), &op->req, cpu_work, cpu_after);
  if (rc) {
    op->work(op); /* cannot happen with a valid loop; run it here */
    cpu_after(&op->req, 0);
  }
  return px_park(L, &op->wait);
}
