/*
 * mpi.h -- parx.mpi's C side, shared by its files (runtime/mpi/), plus the
 * one function the command line calls (fatal.h).
 *
 *   libmpi.c   OpenMPI, opened with dlopen on first use (linking it would
 *              map a dozen libraries into every `parx -e ''`)
 *   comm.c     the communication thread: the only thread that calls MPI
 *   mpi.c      the Lua module parx.c.mpi (messages, communicators)
 *   reduce.c   element-wise reductions of arrays
 *   nompi.c    replaces all of the above when parx is built without MPI
 *
 * MPI is a per-process library (one MPI_Init, one MPI_Finalize), so the
 * state here is per process too, not per px_runtime: every runtime and VM
 * of the process share one communication thread.
 */
#ifndef PX_MPI_H
#define PX_MPI_H

#include "../core/px.h"
#include "fatal.h"

#ifdef PX_MPI_INTERNAL
#include <mpi.h>

#include "../core/array.h"

/* OpenMPI keeps, past MPI_Finalize, memory it allocated for its own life
 * (its components, its reduction ops' tables, communicator internals
 * and its transports' endpoints), from plugins it has dlclosed by exit
 * (LeakSanitizer then shows frames of "<unknown module>", which no
 * suppression can name).  Under `make asan` each call into OpenMPI
 * (comm.c: PX_MPI_OWN(M->...)) runs with leak checking off for this
 * thread: OpenMPI calls nothing of parx back (errors return, no handlers),
 * so what is allocated inside is OpenMPI's.  parx's own buffers are
 * allocated outside these calls and stay checked. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PX_MPI_LSAN 1
#endif
#endif
#if defined(PX_MPI_LSAN) || defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define PX_MPI_OWN(call) ({ __lsan_disable(); __typeof__(call) r_ = (call); __lsan_enable(); r_; })
/* PMIx (OpenMPI's client of the process manager) allocates on a thread of
 * its own, and OpenMPI unloads it at MPI_Finalize; LeakSanitizer names a
 * frame's module only while it is mapped.  Kept loaded, its frames are
 * named and lsan.supp's `leak:libpmix.so` matches them. */
#include <dlfcn.h>
#define PX_MPI_KEEP_PMIX() ((void)dlopen("libpmix.so.2", RTLD_NOW | RTLD_NOLOAD))
#else
#define PX_MPI_OWN(call) (call)
#define PX_MPI_KEEP_PMIX() ((void)0)
#endif

/* ---- libmpi.c ----------------------------------------------------------
 * The functions parx calls, as pointers filled by dlsym, and the predefined
 * handles that OpenMPI's mpi.h names as addresses of its globals. */
#define PX_MPI_FUNCS(XX)                                                      \
  XX(Init_thread, (int *argc, char ***argv, int required, int *provided))    \
  XX(Finalize, (void))                                                       \
  XX(Abort, (MPI_Comm comm, int code))                                       \
  XX(Comm_rank, (MPI_Comm comm, int *rank))                                  \
  XX(Comm_size, (MPI_Comm comm, int *size))                                  \
  XX(Get_processor_name, (char *name, int *len))                             \
  XX(Comm_set_errhandler, (MPI_Comm comm, MPI_Errhandler eh))                \
  XX(Comm_dup, (MPI_Comm comm, MPI_Comm *out))                               \
  XX(Comm_split, (MPI_Comm comm, int color, int key, MPI_Comm *out))         \
  XX(Comm_free, (MPI_Comm *comm))                                            \
  XX(Isend, (const void *buf, int count, MPI_Datatype type, int dest,        \
             int tag, MPI_Comm comm, MPI_Request *req))                      \
  XX(Irecv, (void *buf, int count, MPI_Datatype type, int source, int tag,  \
             MPI_Comm comm, MPI_Request *req))                               \
  XX(Improbe, (int source, int tag, MPI_Comm comm, int *flag,                \
               MPI_Message *msg, MPI_Status *status))                        \
  XX(Imrecv, (void *buf, int count, MPI_Datatype type, MPI_Message *msg,     \
              MPI_Request *req))                                             \
  XX(Iprobe, (int source, int tag, MPI_Comm comm, int *flag,                 \
              MPI_Status *status))                                           \
  XX(Testsome, (int n, MPI_Request *reqs, int *outcount, int *indices,       \
                MPI_Status *statuses))                                       \
  XX(Ibarrier, (MPI_Comm comm, MPI_Request *req))                            \
  XX(Iallreduce, (const void *sendbuf, void *recvbuf, int count,             \
                  MPI_Datatype type, MPI_Op op, MPI_Comm comm,               \
                  MPI_Request *req))                                         \
  XX(Get_count, (const MPI_Status *status, MPI_Datatype type, int *count))   \
  XX(Error_string, (int code, char *msg, int *len))                          \
  XX(Comm_get_attr, (MPI_Comm comm, int key, void *value, int *flag))

typedef struct px_mpi_lib {
#define XX(name, params) int(*name) params;
  PX_MPI_FUNCS(XX)
#undef XX
  MPI_Comm world;
  MPI_Datatype byte;
  MPI_Errhandler errors_return;
  /* For MPI's own allreduce: the datatype of each px_dtype (NULL for
   * float16 and bfloat16, which MPI 3 lacks) and the ops sum, prod, min
   * and max (in PX_OP_ order). */
  MPI_Datatype dtype[PX_NDTYPES];
  MPI_Op op[4];
} px_mpi_lib;

/* Open libmpi once; NULL with a message in *err when it cannot be. */
const px_mpi_lib *px_mpi_lib_load(const char **err);

/* ---- comm.c ------------------------------------------------------------ */

/* A communicator as Lua sees it: shared by reference between VMs.  Three
 * MPI communicators over the same group: `user` carries the script's
 * messages (and its tags), `data` the payloads too big to travel inside
 * their envelope, `coll` the messages of the collectives, which are built
 * on point-to-point messages (so a script's ANY_TAG receive never takes a
 * collective's message). */
typedef struct px_mpi_comm {
  px_shared hdr; /* first */
  MPI_Comm user, data, coll;
  int rank, size;
  int world;                 /* 1: MPI_COMM_WORLD, never freed */
  atomic_uint seq;           /* collectives started on this rank */
  unsigned data_tag;         /* comm thread only: next payload tag */
} px_mpi_comm;

extern px_shared_type px_mpi_comm_type;

enum { PX_MPI_SEND = 1, PX_MPI_RECV, PX_MPI_PROBE, PX_MPI_BARRIER,
       PX_MPI_SPLIT, PX_MPI_FREE, PX_MPI_ALLREDUCE };

/* The envelope: the one message every send makes on `user` (or `coll`).
 * Small payloads follow it in the same message; larger ones travel on
 * `data` with the tag `data_tag`, split in pieces of PX_MPI_PIECE bytes. */
#define PX_MPI_MAGIC 0x3158504du /* "MPX1" */
#define PX_MPI_INLINE (64 * 1024)
#define PX_MPI_PIECE ((size_t)1 << 30)
enum { PX_MPI_VALUE = 1, PX_MPI_ARRAY = 2 };
typedef struct px_mpi_env {
  uint32_t magic;
  uint8_t kind;      /* PX_MPI_VALUE (marshalled) or PX_MPI_ARRAY (raw) */
  uint8_t inlined;   /* 1: the payload follows this header */
  uint8_t dtype, ndim;
  uint32_t data_tag;
  uint32_t pad;
  uint64_t paylen;
  int64_t shape[8];
} px_mpi_env;

/* One request from a VM to the communication thread.  The VM fills it,
 * px_mpi_submit posts it and the task parks on `wait`; the thread wakes the
 * task when it is done.  Owned by the VM side except while queued/posted. */
typedef struct px_mpi_op px_mpi_op;
struct px_mpi_op {
  px_wait wait;       /* first */
  px_mpi_op *next;    /* queue, pending-probe list */
  int kind;
  px_mpi_comm *comm;  /* a reference */
  int coll;           /* 1: on comm->coll, else comm->user */
  int raw;            /* send: env is the whole message, as given */
  int peer, tag;      /* send: dest; recv/probe: source (or ANY) */
  int color, key;     /* split */
  /* send: the envelope (with any inline payload) and the payload */
  char *env;
  size_t envlen;
  const char *payload;
  size_t paylen;
  px_shared *hold;    /* send: the sent array, kept alive while posted;
                         recv_into: the array received into */
  px_msg msg;         /* the marshalled bytes a send owns */
  /* recv results */
  char *rbuf;         /* the envelope as received (malloc) */
  int rlen;
  void *rpay;         /* payload: malloc'd bytes or array data */
  px_shared *rarray;  /* the received array, when kind is PX_MPI_ARRAY */
  int source, rtag;
  px_mpi_comm *newcomm; /* split's result (a reference) */
  /* allreduce: first the three codes in codes[0..5] (each as x and -x)
   * reduced by min into codes[6..11]; when every rank's agree, count
   * elements of `type` from `in` reduced into `out` by `mop` (an array's
   * data, or `num`); count 0: the codes only */
  int64_t codes[12];
  int agreed;
  const void *in;
  void *out;
  int count;
  MPI_Datatype type;
  MPI_Op mop;
  double num[2];
  /* posted MPI requests */
  int nreq, ndone;
  int stage;          /* recv: 0 probing, 1 envelope, 2 payload */
  int moving;         /* payload pieces are posted (comm.c's `moving`) */
  int detached;       /* a buffered send: nobody waits, the thread frees it */
  atomic_int cancel;  /* the task was cancelled while this is posted */
  int err;            /* MPI error code, 0 on success */
  char errmsg[160];
};

/* Start the thread and MPI (once per process; later calls wait for the
 * first).  0, or -1 with a message in *err. */
int px_mpi_start(const char **err);
int px_mpi_world_rank(void);
int px_mpi_world_size(void);
const char *px_mpi_host(void);
px_mpi_comm *px_mpi_world(void);
/* Hand op to the thread (any VM thread, after px_wait_prepare). */
void px_mpi_submit(px_mpi_op *op);
/* A buffered send: op (whose envelope holds the whole message) is handed
 * over and nobody waits for it; the thread frees it when MPI is done.
 * 0, or -1 when PX_MPI_BUFFERED bytes are already waiting (then the
 * caller parks on op as usual). */
#define PX_MPI_BUFFERED ((size_t)64 << 20)
int px_mpi_submit_buffered(px_mpi_op *op);
/* The failure of an earlier buffered send of this process, once (copied
 * into msg, size len): 1, else 0. */
int px_mpi_take_deferred(char *msg, size_t len);
/* The wait's cancel: 1 when op was still queued (now unlinked), else 0 and
 * the thread gives up on it as soon as MPI lets it. */
int px_mpi_cancel(px_mpi_op *op);
void px_mpi_op_free(px_mpi_op *op);

/* ---- reduce.c ---------------------------------------------------------- */
enum { PX_OP_SUM, PX_OP_PROD, PX_OP_MIN, PX_OP_MAX, PX_OP_LAND, PX_OP_LOR };
/* acc[i] = acc[i] op x[i] for n elements of dtype; -1 for an unknown dtype. */
int px_mpi_reduce(int dtype, int op, void *acc, const void *x, int64_t n);
#endif

#endif
