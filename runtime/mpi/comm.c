/*
 * comm.c -- the communication thread: the one thread of the process that
 * calls MPI.
 *
 * OpenMPI 4.1's MPI_THREAD_MULTIPLE serialises every call on a lock and its
 * progress is not asynchronous, so parx funnels instead (MPI_THREAD_FUNNELED,
 * the thread that called MPI_Init_thread makes every call): a VM that wants
 * MPI work done fills a px_mpi_op, queues it here and parks its task.  This
 * thread posts the non-blocking operations, polls them with MPI_Testsome
 * (and MPI_Improbe for receives, whose size is unknown until a message
 * matches), and wakes the task through its VM's loop (px_wake).  So a wait
 * never blocks a VM thread: the rank's other tasks, timers and IO go on.
 *
 * Progress.  OpenMPI 4.1 cannot block until a message arrives: its
 * transports move bytes only inside MPI calls, so something outstanding
 * must be polled.  Polling costs a core, which a two-core machine cannot
 * give away, so the thread
 *   - spins for SPIN_US after its last progress (a reply often comes within
 *     microseconds), then polls yielding the core between calls (sched_yield:
 *     a runnable worker gets it) up to YIELD_US.  That window must exceed a
 *     round trip: a thread that sleeps sooner makes the next round trip
 *     slower than its sleep, and a ping-pong falls into a slow regime for
 *     good (measured: 32 us per small round trip with a 1 ms window, 400 us
 *     with 50 us);
 *   - while a payload is moving (pieces posted on `data`: the transport
 *     needs calls to push its fragments, and over TCP every fragment does;
 *     or an allreduce, whose every step waits for a call)
 *     keeps polling, yielding the core between calls, for up to
 *     MOVING_SPIN_US without progress;
 *   - then sleeps between polls for 1/BACKOFF_RATIO of the time it has been
 *     quiet, from MIN_SLEEP_US up to MAX_SLEEP_US.  So a message that ends
 *     a quiet wait of w is seen at most w/50 (and 10 ms) late: 2% of the
 *     wait, and a rank waiting in recv polls at most 100 times a second
 *     (measured: about 0.1% of a core);
 *   - with nothing outstanding, blocks on its condition variable until a
 *     VM queues work: an idle rank costs no CPU at all.
 *
 * Exit.  MPI_Init registers an on_exit handler: a process that ends with
 * status 0 finalises MPI (every rank waits there for the others, as in any
 * MPI program); one that ends with another status aborts the whole job
 * (MPI_Abort), because the other ranks may be waiting for it and would
 * otherwise hang.  px_mpi_fatal does the same for an uncaught error, after
 * printing it with the rank and host.
 */
#define _GNU_SOURCE /* on_exit */
#define PX_MPI_INTERNAL 1
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../core/array.h"
#include "mpi.h"

#define SPIN_US 50.0
#define YIELD_US 1000.0
#define MOVING_SPIN_US 20000.0
#define BACKOFF_RATIO 50.0
#define MIN_SLEEP_US 20
#define MAX_SLEEP_US 10000

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

enum { ST_NONE, ST_STARTING, ST_RUNNING, ST_FAILED, ST_ENDED };
enum { STOP_NONE, STOP_FINALIZE, STOP_ABORT };

/* Shared between the VMs and the thread, under `mu`. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t work;    /* the thread waits here for ops (or a stop) */
  pthread_cond_t changed; /* starters wait here for the state to change */
  int state;
  char error[256];
  px_mpi_op *head, *tail; /* queued by VMs, not yet taken */
  int stop, abort_code;
  int sleeping;
  char deferred[256];     /* a buffered send's failure, until taken */
  pthread_t thread;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
       .changed = PTHREAD_COND_INITIALIZER};

/* Written by the thread before it reports ST_RUNNING, read-only after. */
static const px_mpi_lib *M;
static int world_rank, world_size, tag_ub;
static char host[MPI_MAX_PROCESSOR_NAME + 1];
static px_mpi_comm world;

/* The thread's own: posted requests (slot i belongs to owner[i]; a free
 * slot holds MPI_REQUEST_NULL, which MPI_Testsome skips) and the receives
 * and probes that wait for a message to match. */
static MPI_Request *reqs;
static px_mpi_op **owner;
static int nslots, capslots;
static int *indices;
static MPI_Status *statuses;
static px_mpi_op *probing;
static long outstanding; /* ops posted or probing, not finished */
static long moving;      /* of those, ops whose payload pieces are posted */
static atomic_size_t buffered; /* bytes of buffered sends not yet done */
static atomic_int queued;      /* S.head != NULL, read without the lock */
static long ndetached;         /* buffered sends posted, not finished */
static int finalizing;         /* the process exits: finalise when ndetached is 0 */

int px_mpi_world_rank(void) { return world_rank; }
int px_mpi_world_size(void) { return world_size; }
const char *px_mpi_host(void) { return host; }
px_mpi_comm *px_mpi_world(void) { return &world; }

/* ------------------------------------------------------------------------
 * Communicators.
 * ---------------------------------------------------------------------- */
static void comm_free(px_shared *obj) {
  px_mpi_comm *c = (px_mpi_comm *)obj;
  if (c->world) return;
  /* MPI_Comm_free is for the thread: queue it.  After the end of MPI the
   * handles are gone with it. */
  px_mpi_op *op = calloc(1, sizeof *op);
  if (!op) return; /* leaks three handles rather than fail a finaliser */
  op->kind = PX_MPI_FREE;
  op->comm = c;
  /* Queued under the same lock as the check: the thread, once stopping,
   * takes what is queued for the last time (free_leftover). */
  pthread_mutex_lock(&S.mu);
  int running = S.state == ST_RUNNING && S.stop == STOP_NONE;
  if (running) {
    op->next = NULL;
    if (S.tail) S.tail->next = op;
    else S.head = op;
    S.tail = op;
    atomic_store_explicit(&queued, 1, memory_order_release);
    if (S.sleeping) pthread_cond_signal(&S.work);
  }
  pthread_mutex_unlock(&S.mu);
  if (!running) {
    free(op);
    free(c);
  }
}

px_shared_type px_mpi_comm_type = {"parx.mpi.comm", comm_free, NULL, 0};

/* Dup user twice (data, coll) and set MPI_ERRORS_RETURN on all three. */
static int comm_setup(px_mpi_comm *c) {
  int rc;
  if ((rc = PX_MPI_OWN(M->Comm_set_errhandler(c->user, M->errors_return))) != MPI_SUCCESS) return rc;
  if ((rc = PX_MPI_OWN(M->Comm_dup(c->user, &c->data))) != MPI_SUCCESS) return rc;
  if ((rc = PX_MPI_OWN(M->Comm_dup(c->user, &c->coll))) != MPI_SUCCESS) return rc;
  PX_MPI_OWN(M->Comm_set_errhandler(c->data, M->errors_return));
  PX_MPI_OWN(M->Comm_set_errhandler(c->coll, M->errors_return));
  PX_MPI_OWN(M->Comm_rank(c->user, &c->rank));
  PX_MPI_OWN(M->Comm_size(c->user, &c->size));
  return MPI_SUCCESS;
}

/* ------------------------------------------------------------------------
 * Posting and completing.
 * ---------------------------------------------------------------------- */
static void set_error(px_mpi_op *op, int rc) {
  if (op->err) return;
  op->err = rc ? rc : -1;
  char msg[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (rc == 0 || PX_MPI_OWN(M->Error_string(rc, msg, &len)) != MPI_SUCCESS) len = 0;
  msg[len] = '\0';
  snprintf(op->errmsg, sizeof op->errmsg, "MPI error: %s", len ? msg : "unknown error");
}

static int add_req(px_mpi_op *op, MPI_Request r) {
  int i = 0;
  while (i < nslots && owner[i]) i++;
  if (i == nslots) {
    if (nslots == capslots) {
      int cap = capslots ? capslots * 2 : 64;
      MPI_Request *nr = realloc(reqs, cap * sizeof *nr);
      if (nr) reqs = nr;
      px_mpi_op **no = realloc(owner, cap * sizeof *no);
      if (no) owner = no;
      int *ni = realloc(indices, cap * sizeof *ni);
      if (ni) indices = ni;
      MPI_Status *ns = realloc(statuses, cap * sizeof *ns);
      if (ns) statuses = ns;
      if (!nr || !no || !ni || !ns) return -1;
      capslots = cap;
    }
    nslots++;
  }
  reqs[i] = r;
  owner[i] = op;
  op->nreq++;
  return 0;
}

static void finish(px_mpi_op *op) {
  outstanding--;
  if (op->moving) moving--;
  op->moving = 0;
  if (op->detached) {
    ndetached--;
    atomic_fetch_sub(&buffered, op->envlen);
    if (op->err) {
      pthread_mutex_lock(&S.mu);
      if (!S.deferred[0])
        snprintf(S.deferred, sizeof S.deferred, "an earlier send to rank %d (tag %d) failed: %s",
                 op->peer, op->tag, op->errmsg);
      pthread_mutex_unlock(&S.mu);
    }
  }
  if (op->kind == PX_MPI_FREE || op->detached) {
    px_mpi_op_free(op);
    return;
  }
  px_wake(&op->wait);
}

/* Post len bytes from (or into) buf in pieces of at most PX_MPI_PIECE. */
static int post_pieces(px_mpi_op *op, int send, char *buf, size_t len, int peer, int tag,
                       MPI_Comm comm) {
  for (size_t off = 0; off < len; off += PX_MPI_PIECE) {
    size_t n = len - off < PX_MPI_PIECE ? len - off : PX_MPI_PIECE;
    MPI_Request r;
    int rc = send ? PX_MPI_OWN(M->Isend(buf + off, (int)n, M->byte, peer, tag, comm, &r))
                  : PX_MPI_OWN(M->Irecv(buf + off, (int)n, M->byte, peer, tag, comm, &r));
    if (rc != MPI_SUCCESS) return rc;
    if (add_req(op, r) < 0) return MPI_ERR_NO_MEM;
  }
  return MPI_SUCCESS;
}

static void post_send(px_mpi_op *op) {
  px_mpi_comm *c = op->comm;
  px_mpi_env *env = (px_mpi_env *)op->env;
  int pieces = !op->raw && !env->inlined;
  if (pieces) {
    env->data_tag = c->data_tag;
    c->data_tag = c->data_tag >= (unsigned)tag_ub ? 0 : c->data_tag + 1;
  }
  MPI_Request r;
  int rc = PX_MPI_OWN(M->Isend(op->env, (int)op->envlen, M->byte, op->peer, op->tag,
                    op->coll ? c->coll : c->user, &r));
  if (rc == MPI_SUCCESS && add_req(op, r) < 0) rc = MPI_ERR_NO_MEM;
  if (rc == MPI_SUCCESS && pieces) {
    op->moving = 1;
    moving++;
    rc = post_pieces(op, 1, (char *)op->payload, op->paylen, op->peer, env->data_tag, c->data);
  }
  if (rc != MPI_SUCCESS) set_error(op, rc);
}

static void post_allreduce(px_mpi_op *op, const void *in, void *out, int count, MPI_Datatype type,
                           MPI_Op mop) {
  MPI_Request r;
  int rc = PX_MPI_OWN(M->Iallreduce(in, out, count, type, mop, op->comm->coll, &r));
  if (rc == MPI_SUCCESS && add_req(op, r) < 0) rc = MPI_ERR_NO_MEM;
  if (rc != MPI_SUCCESS) set_error(op, rc);
}

/* The ranks' codes are in: each x went as x and -x reduced by min, so they
 * agree on every rank exactly when min(x) == -min(-x).  Then the values,
 * when this rank has some to reduce (count > 0: every rank has, then). */
static void allreduce_values(px_mpi_op *op) {
  op->agreed = 1;
  for (int i = 0; i < 3; i++) op->agreed &= op->codes[6 + 2 * i] == -op->codes[6 + 2 * i + 1];
  op->stage = 1;
  if (op->agreed && op->count > 0) post_allreduce(op, op->in, op->out, op->count, op->type, op->mop);
  if (op->nreq == op->ndone) finish(op);
}

static void post(px_mpi_op *op) {
  outstanding++;
  if (op->detached) ndetached++;
  switch (op->kind) {
  case PX_MPI_SEND:
    post_send(op);
    break;
  case PX_MPI_RECV:
  case PX_MPI_PROBE:
    op->next = probing;
    probing = op;
    return;
  case PX_MPI_ALLREDUCE:
    /* First what every rank passes (allreduce_values follows when all
     * agree).  A non-blocking collective moves one step per MPI call:
     * polled as a moving payload, not as a quiet wait. */
    op->moving = 1;
    moving++;
    post_allreduce(op, op->codes, op->codes + 6, 6, M->dtype[PX_INT64], M->op[PX_OP_MIN]);
    break;
  case PX_MPI_BARRIER: {
    MPI_Request r;
    int rc = PX_MPI_OWN(M->Ibarrier(op->comm->coll, &r));
    if (rc == MPI_SUCCESS && add_req(op, r) < 0) rc = MPI_ERR_NO_MEM;
    if (rc != MPI_SUCCESS) set_error(op, rc);
    break;
  }
  case PX_MPI_SPLIT: {
    /* MPI has no non-blocking split: this one call blocks the thread
     * until every rank of the communicator reaches it (the Lua side
     * passes a barrier first, so they are all there). */
    px_mpi_comm *c = calloc(1, sizeof *c);
    if (!c) {
      set_error(op, MPI_ERR_NO_MEM);
      break;
    }
    px_shared_init(&c->hdr, &px_mpi_comm_type);
    int color = op->color < 0 ? MPI_UNDEFINED : op->color;
    int rc = PX_MPI_OWN(M->Comm_split(op->comm->user, color, op->key, &c->user));
    if (rc == MPI_SUCCESS && color != MPI_UNDEFINED) rc = comm_setup(c);
    if (rc != MPI_SUCCESS || color == MPI_UNDEFINED) {
      if (rc != MPI_SUCCESS) set_error(op, rc);
      free(c);
    } else {
      op->newcomm = c;
    }
    break;
  }
  case PX_MPI_FREE: {
    px_mpi_comm *c = op->comm;
    PX_MPI_OWN(M->Comm_free(&c->user));
    PX_MPI_OWN(M->Comm_free(&c->data));
    PX_MPI_OWN(M->Comm_free(&c->coll));
    free(c);
    op->comm = NULL;
    break;
  }
  }
  if (op->nreq == 0) finish(op);
}

/* An envelope arrived for receive op: check it, then post its payload
 * (or finish, when the payload came inside). */
static void got_envelope(px_mpi_op *op) {
  px_mpi_env env;
  int ok = op->rlen >= (int)sizeof env;
  if (ok) memcpy(&env, op->rbuf, sizeof env);
  ok = ok && env.magic == PX_MPI_MAGIC && (env.kind == PX_MPI_VALUE || env.kind == PX_MPI_ARRAY);
  if (ok && env.inlined) ok = env.paylen == (uint64_t)op->rlen - sizeof env;
  else if (ok) ok = op->rlen == (int)sizeof env && env.paylen > 0;
  if (ok && env.kind == PX_MPI_ARRAY) {
    ok = env.dtype < PX_NDTYPES && env.ndim >= 1 && env.ndim <= PX_ARRAY_MAXDIM;
    uint64_t n = 1;
    for (int i = 0; ok && i < env.ndim; i++) {
      ok = env.shape[i] >= 0 && (env.shape[i] == 0 || n <= UINT64_MAX / (uint64_t)env.shape[i]);
      if (ok) n *= (uint64_t)env.shape[i];
    }
    ok = ok && n <= UINT64_MAX / 16 && n * px_dtype_size(env.dtype) == env.paylen;
  }
  if (!ok) {
    op->err = -1;
    snprintf(op->errmsg, sizeof op->errmsg,
             "received %d bytes from rank %d (tag %d) that are not a parx.mpi message",
             op->rlen, op->source, op->rtag);
    finish(op);
    return;
  }
  char *dst = NULL;
  px_array *into = op->hold ? (px_array *)op->hold : NULL;
  if (into) {
    /* recv_into: the message must fit the array exactly. */
    if (env.kind != PX_MPI_ARRAY || env.dtype != into->dtype ||
        env.paylen != (uint64_t)into->n * px_dtype_size(into->dtype)) {
      op->err = -1;
      if (env.kind != PX_MPI_ARRAY)
        snprintf(op->errmsg, sizeof op->errmsg,
                 "recv_into: rank %d sent a Lua value (tag %d), not an array", op->source, op->rtag);
      else
        snprintf(op->errmsg, sizeof op->errmsg,
                 "recv_into: rank %d sent a %s array of %llu bytes (tag %d), not %s of %llu",
                 op->source, px_dtype_name(env.dtype), (unsigned long long)env.paylen, op->rtag,
                 px_dtype_name(into->dtype),
                 (unsigned long long)into->n * px_dtype_size(into->dtype));
    } else {
      dst = into->data;
    }
  } else if (env.kind == PX_MPI_ARRAY) {
    /* Written whole by the receive: no zeroing pass over it first. */
    px_array *a = px_array_new_uninit(env.dtype, env.ndim, env.shape);
    if (!a) {
      set_error(op, MPI_ERR_NO_MEM);
      snprintf(op->errmsg, sizeof op->errmsg, "not enough memory for a received array of %llu bytes",
               (unsigned long long)env.paylen);
    }
    op->rarray = a ? &a->hdr : NULL;
    dst = a ? a->data : NULL; /* in huge pages when large (array.c) */
  } else {
    op->rpay = malloc(env.paylen ? env.paylen : 1);
    if (!op->rpay) {
      set_error(op, MPI_ERR_NO_MEM);
      snprintf(op->errmsg, sizeof op->errmsg, "not enough memory for a received message of %llu bytes",
               (unsigned long long)env.paylen);
    }
    dst = op->rpay;
    px_advise_huge(dst, env.paylen);
  }
  op->paylen = env.paylen;
  op->stage = 2;
  if (env.inlined) {
    if (dst) memcpy(dst, op->rbuf + sizeof env, env.paylen);
    finish(op);
    return;
  }
  /* The payload follows on `data`: into dst, or, when it does not fit,
   * into a scratch buffer dropped with the op, so the sender's send still
   * completes.  (A shorter receive cannot drop it: OpenMPI 4.1's
   * single-copy path reads the whole message into the buffer given.)
   * Only when even that is impossible is the payload left unreceived. */
  if (!dst && !op->rarray && !op->rpay) dst = op->rpay = malloc(env.paylen);
  if (!dst) {
    finish(op);
    return;
  }
  op->moving = 1;
  moving++;
  int rc = post_pieces(op, 0, dst, env.paylen, op->source, (int)env.data_tag, op->comm->data);
  if (rc != MPI_SUCCESS) set_error(op, rc);
  if (op->nreq == op->ndone) finish(op);
}

/* Every request of op is done. */
static void completed(px_mpi_op *op) {
  if (op->kind == PX_MPI_RECV && op->stage == 1 && !op->err) {
    got_envelope(op);
    return;
  }
  if (op->kind == PX_MPI_ALLREDUCE && op->stage == 0 && !op->err) {
    allreduce_values(op);
    return;
  }
  finish(op);
}

/* Match waiting receives and probes; 1 if any did. */
static int poll_probes(void) {
  int progress = 0;
  for (px_mpi_op **pp = &probing; *pp;) {
    px_mpi_op *op = *pp;
    if (atomic_load(&op->cancel)) {
      *pp = op->next;
      finish(op);
      progress = 1;
      continue;
    }
    MPI_Comm comm = op->coll ? op->comm->coll : op->comm->user;
    int flag = 0, rc;
    MPI_Status st;
    MPI_Message msg;
    if (op->kind == PX_MPI_PROBE)
      rc = PX_MPI_OWN(M->Iprobe(op->peer, op->tag, comm, &flag, &st));
    else
      rc = PX_MPI_OWN(M->Improbe(op->peer, op->tag, comm, &flag, &msg, &st));
    if (rc != MPI_SUCCESS) {
      set_error(op, rc);
      *pp = op->next;
      finish(op);
      progress = 1;
      continue;
    }
    if (!flag) {
      pp = &op->next;
      continue;
    }
    *pp = op->next;
    progress = 1;
    op->source = st.MPI_SOURCE;
    op->rtag = st.MPI_TAG;
    if (op->kind == PX_MPI_PROBE) {
      finish(op);
      continue;
    }
    int count = 0;
    PX_MPI_OWN(M->Get_count(&st, M->byte, &count));
    op->rlen = count;
    op->rbuf = malloc(count > 0 ? (size_t)count : 1);
    MPI_Request r;
    if (!op->rbuf) {
      /* Receive into nothing is impossible: take the bytes into a scratch
       * buffer is no better; report it (the message is lost). */
      static char sink[1];
      PX_MPI_OWN(M->Imrecv(sink, 0, M->byte, &msg, &r));
      set_error(op, MPI_ERR_NO_MEM);
      finish(op);
      continue;
    }
    rc = PX_MPI_OWN(M->Imrecv(op->rbuf, count, M->byte, &msg, &r));
    if (rc == MPI_SUCCESS && add_req(op, r) < 0) rc = MPI_ERR_NO_MEM;
    op->stage = 1;
    if (rc != MPI_SUCCESS) {
      set_error(op, rc);
      finish(op);
    }
  }
  return progress;
}

/* Complete what MPI has finished; 1 if anything did. */
static int test_requests(void) {
  if (nslots == 0) return 0;
  int n = 0;
  int rc = PX_MPI_OWN(M->Testsome(nslots, reqs, &n, indices, statuses));
  if (n == MPI_UNDEFINED || n <= 0) {
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
      /* Every posted operation failed as a whole. */
      for (int i = 0; i < nslots; i++)
        if (owner[i]) set_error(owner[i], rc);
    }
    return 0;
  }
  for (int k = 0; k < n; k++) {
    int i = indices[k];
    px_mpi_op *op = owner[i];
    owner[i] = NULL;
    if (rc == MPI_ERR_IN_STATUS && statuses[k].MPI_ERROR != MPI_SUCCESS)
      set_error(op, statuses[k].MPI_ERROR);
    if (++op->ndone == op->nreq) completed(op);
  }
  while (nslots > 0 && owner[nslots - 1] == NULL) nslots--;
  return 1;
}

/* ------------------------------------------------------------------------
 * The thread.
 * ---------------------------------------------------------------------- */
/* The thread ends: communicators freed meanwhile still free their handles
 * (before MPI_Finalize); other operations left in the queue belong to
 * tasks that the process's exit ends. */
static void free_leftover(px_mpi_op *op) {
  while (op) {
    px_mpi_op *next = op->next;
    op->next = NULL;
    if (op->kind == PX_MPI_FREE) post(op);
    op = next;
  }
}

static int init_mpi(void) {
  const char *err = NULL;
  M = px_mpi_lib_load(&err);
  if (!M) {
    snprintf(S.error, sizeof S.error, "%s", err);
    return -1;
  }
  int provided = 0;
  int rc = PX_MPI_OWN(M->Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
  if (rc != MPI_SUCCESS) {
    snprintf(S.error, sizeof S.error, "MPI_Init_thread failed (error %d)", rc);
    return -1;
  }
  PX_MPI_KEEP_PMIX(); /* make asan only (mpi.h) */
  world.user = M->world;
  world.world = 1;
  px_shared_init(&world.hdr, &px_mpi_comm_type);
  if ((rc = comm_setup(&world)) != MPI_SUCCESS) {
    snprintf(S.error, sizeof S.error, "cannot set up MPI_COMM_WORLD (error %d)", rc);
    return -1;
  }
  world_rank = world.rank;
  world_size = world.size;
  int len = 0;
  if (PX_MPI_OWN(M->Get_processor_name(host, &len)) != MPI_SUCCESS) len = 0;
  host[len] = '\0';
  if (len == 0) gethostname(host, sizeof host - 1);
  int *ub = NULL, flag = 0;
  PX_MPI_OWN(M->Comm_get_attr(M->world, MPI_TAG_UB, &ub, &flag));
  tag_ub = flag && ub ? *ub : 32767;
  return 0;
}

static void wait_for_work(long sleep_us) {
  pthread_mutex_lock(&S.mu);
  /* mu held: S.head and S.stop change only under it. */
  if (!S.head && S.stop == STOP_NONE) {
    S.sleeping = 1;
    if (sleep_us <= 0) {
      pthread_cond_wait(&S.work, &S.mu);
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts); /* the condition's clock (px_mpi_start) */
      ts.tv_nsec += sleep_us * 1000;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&S.work, &S.mu, &ts);
    }
    S.sleeping = 0;
  }
  pthread_mutex_unlock(&S.mu);
}

static void *thread_main(void *arg) {
  (void)arg;
  int ok = init_mpi() == 0;
  pthread_mutex_lock(&S.mu);
  S.state = ok ? ST_RUNNING : ST_FAILED;
  pthread_cond_broadcast(&S.changed);
  pthread_mutex_unlock(&S.mu);
  if (!ok) return NULL;

  double last = now_us(); /* of the last progress */
  for (;;) {
    px_mpi_op *batch = NULL;
    int stop = STOP_NONE, code = 0;
    /* The lock only when there is something to take (VMs queue under it). */
    if (atomic_load_explicit(&queued, memory_order_acquire)) {
      pthread_mutex_lock(&S.mu);
      batch = S.head;
      S.head = S.tail = NULL;
      atomic_store_explicit(&queued, 0, memory_order_relaxed);
      stop = S.stop;
      code = S.abort_code;
      pthread_mutex_unlock(&S.mu);
    }
    if (stop == STOP_ABORT) {
      PX_MPI_OWN(M->Abort(M->world, code ? code : 1));
      _exit(code ? code : 1); /* not reached: MPI_Abort ends the process */
    }
    /* Finalise once the buffered sends are out: the receivers may be
     * waiting for them. */
    if (stop == STOP_FINALIZE) finalizing = 1;
    if (finalizing && ndetached == 0) {
      free_leftover(batch);
      pthread_mutex_lock(&S.mu); /* S.stop is set: no free is queued after this */
      batch = S.head;
      S.head = S.tail = NULL;
      pthread_mutex_unlock(&S.mu);
      free_leftover(batch);
      break;
    }

    int progress = batch != NULL;
    while (batch) {
      px_mpi_op *op = batch;
      batch = op->next;
      op->next = NULL;
      post(op);
    }
    progress |= poll_probes();
    progress |= test_requests();

    if (outstanding == 0 && !finalizing) {
      wait_for_work(0);
      last = now_us();
      continue;
    }
    double t = now_us();
    if (progress) {
      last = t;
      continue;
    }
    double quiet = t - last;
    if (quiet < SPIN_US) continue;
    if (quiet < YIELD_US || (moving > 0 && quiet < MOVING_SPIN_US)) {
      sched_yield();
      continue;
    }
    double sleep_us = quiet / BACKOFF_RATIO;
    wait_for_work((long)(sleep_us < MIN_SLEEP_US ? MIN_SLEEP_US
                         : sleep_us > MAX_SLEEP_US ? MAX_SLEEP_US : sleep_us));
  }
  PX_MPI_OWN(M->Finalize());
  pthread_mutex_lock(&S.mu);
  S.state = ST_ENDED;
  pthread_cond_broadcast(&S.changed);
  pthread_mutex_unlock(&S.mu);
  return NULL;
}

/* Tell the thread to finalise (status 0) or abort the job; wait for the
 * finalise.  An abort does not return (MPI_Abort ends the process). */
static void stop_thread(int status) {
  pthread_mutex_lock(&S.mu);
  if (S.state != ST_RUNNING || S.stop != STOP_NONE) {
    pthread_mutex_unlock(&S.mu);
    return;
  }
  S.stop = status == 0 ? STOP_FINALIZE : STOP_ABORT;
  S.abort_code = status;
  atomic_store(&queued, 1);
  pthread_cond_signal(&S.work);
  pthread_mutex_unlock(&S.mu);
  if (status != 0) {
    for (;;) pause();
  }
  pthread_join(S.thread, NULL);
}

static void at_exit(int status, void *arg) {
  (void)arg;
  fflush(NULL); /* an abort ends the process before exit's own flush */
  stop_thread(status);
}

int px_mpi_start(const char **err) {
  pthread_mutex_lock(&S.mu);
  if (S.state == ST_NONE) {
    S.state = ST_STARTING;
    /* The thread's timed waits count on the monotonic clock: a step of
     * the wall clock (NTP on a fresh machine) must not stretch a 1 ms
     * sleep into minutes.  Nobody waits on it yet. */
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) == 0) {
      if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0) {
        pthread_cond_destroy(&S.work);
        pthread_cond_init(&S.work, &ca);
      }
      pthread_condattr_destroy(&ca);
    }
    /* The thread takes no signals: they belong to the VMs' loops and the
     * command line (its threads, OpenMPI's included, inherit this mask). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&S.thread, NULL, thread_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
      S.state = ST_FAILED;
      snprintf(S.error, sizeof S.error, "cannot start the MPI thread");
    }
  }
  while (S.state == ST_STARTING) pthread_cond_wait(&S.changed, &S.mu);
  int state = S.state;
  static int registered;
  if (state == ST_RUNNING && !registered) {
    registered = 1;
    on_exit(at_exit, NULL);
  }
  pthread_mutex_unlock(&S.mu);
  if (state == ST_RUNNING) return 0;
  *err = state == ST_ENDED ? "MPI has been finalised" : S.error;
  return -1;
}

void px_mpi_submit(px_mpi_op *op) {
  op->next = NULL;
  pthread_mutex_lock(&S.mu);
  if (S.tail) S.tail->next = op;
  else S.head = op;
  S.tail = op;
  atomic_store_explicit(&queued, 1, memory_order_release);
  if (S.sleeping) pthread_cond_signal(&S.work);
  pthread_mutex_unlock(&S.mu);
}

int px_mpi_submit_buffered(px_mpi_op *op) {
  if (atomic_fetch_add(&buffered, op->envlen) + op->envlen > PX_MPI_BUFFERED) {
    atomic_fetch_sub(&buffered, op->envlen);
    return -1;
  }
  op->detached = 1;
  px_mpi_submit(op);
  return 0;
}

int px_mpi_take_deferred(char *msg, size_t len) {
  if (atomic_load_explicit(&buffered, memory_order_relaxed) == 0 && !S.deferred[0]) return 0;
  pthread_mutex_lock(&S.mu);
  int any = S.deferred[0] != 0;
  if (any) snprintf(msg, len, "%s", S.deferred);
  S.deferred[0] = '\0';
  pthread_mutex_unlock(&S.mu);
  return any;
}

int px_mpi_cancel(px_mpi_op *op) {
  pthread_mutex_lock(&S.mu);
  px_mpi_op *prev = NULL;
  for (px_mpi_op *p = S.head; p; prev = p, p = p->next) {
    if (p != op) continue;
    if (prev) prev->next = p->next;
    else S.head = p->next;
    if (S.tail == p) S.tail = prev;
    if (!S.head) atomic_store(&queued, S.stop != STOP_NONE);
    pthread_mutex_unlock(&S.mu);
    return 1;
  }
  atomic_store(&op->cancel, 1);
  pthread_mutex_unlock(&S.mu);
  return 0;
}

void px_mpi_op_free(px_mpi_op *op) {
  if (op->comm) px_shared_release(&op->comm->hdr);
  if (op->hold) px_shared_release(op->hold);
  if (op->rarray) px_shared_release(op->rarray);
  if (op->newcomm) px_shared_release(&op->newcomm->hdr);
  px_msg_free(&op->msg);
  free(op->env);
  free(op->rbuf);
  free(op->rpay);
  free(op);
}

int px_mpi_fatal(const char *msg, int status) {
  pthread_mutex_lock(&S.mu);
  int running = S.state == ST_RUNNING && S.stop == STOP_NONE;
  pthread_mutex_unlock(&S.mu);
  if (!running) return 0;
  fprintf(stderr, "[rank %d@%s] %s\n", world_rank, host, msg);
  fflush(NULL);
  stop_thread(status ? status : 1);
  return 1;
}
