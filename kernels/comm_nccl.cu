// comm_nccl.cu — the NCCL implementation of comm.h: P ranks in one process, one CUDA device and
// one NCCL communicator each (ncclCommInitAll), one driving thread per rank. An all-to-all with
// per-peer counts is a group of ncclSend/ncclRecv on the rank's stream, so it is ordered with
// the rank's kernels and can be captured in the rank's CUDA graph.
//
// NVLink multicast (NVLS) stays off unless the user set NCCL_NVLS_ENABLE: all-to-all does not
// use it and it costs memory and start-up time.
#include <stdlib.h>
#include <string.h>

#include "ast_config.h"
#include "comm.h"
#include "cuda_check.h"

#if AST_HAVE_NCCL
#include <nccl.h>

#define NCCL_TRY(call, what)                                                                   \
    do {                                                                                       \
        ncclResult_t r_ = (call);                                                              \
        if (r_ != ncclSuccess)                                                                 \
            return ast_fail("%s failed (%s): %s; check that every GPU in --gpus is visible "   \
                            "and healthy (nvidia-smi topo -m), or rerun with NCCL_DEBUG=WARN", \
                            what, #call, ncclGetErrorString(r_));                              \
    } while (0)

typedef struct {
    ast_comm base;
    ncclComm_t comms[AST_MAX_RANKS];
} comm_nccl;

static int nccl_alltoallv(ast_comm *c, int rank, const void *send, const int64_t *scount,
                          const int64_t *sdispl, void *recv, const int64_t *rcount,
                          const int64_t *rdispl, int elem_bytes, void *stream) {
    comm_nccl *n = (comm_nccl *)c;
    cudaStream_t s = (cudaStream_t)stream;
    ncclComm_t comm = n->comms[rank];
    NCCL_TRY(ncclGroupStart(), "starting a sequence-parallel exchange");
    for (int j = 0; j < c->size; j++) {
        ncclResult_t r = ncclSuccess;
        const char *op = "ncclSend";
        int64_t bytes = scount[j] * elem_bytes;
        if (scount[j] > 0)
            r = ncclSend((const char *)send + sdispl[j] * elem_bytes, (size_t)bytes, ncclInt8, j,
                         comm, s);
        if (r == ncclSuccess && rcount[j] > 0) {
            op = "ncclRecv", bytes = rcount[j] * elem_bytes;
            r = ncclRecv((char *)recv + rdispl[j] * elem_bytes, (size_t)bytes, ncclInt8, j, comm,
                         s);
        }
        if (r != ncclSuccess) {
            ncclGroupEnd();
            return ast_fail("%s of %lld bytes between rank %d and rank %d failed: %s", op,
                            (long long)bytes, rank, j, ncclGetErrorString(r));
        }
    }
    NCCL_TRY(ncclGroupEnd(), "a sequence-parallel exchange");
    return 0;
}

static void nccl_abort(ast_comm *c) {
    comm_nccl *n = (comm_nccl *)c;
    for (int i = 0; i < c->size; i++)
        if (n->comms[i]) {
            ncclCommAbort(n->comms[i]);
            n->comms[i] = NULL;
        }
}

static void nccl_destroy(ast_comm *c) {
    comm_nccl *n = (comm_nccl *)c;
    for (int i = 0; i < c->size; i++)
        if (n->comms[i]) ncclCommDestroy(n->comms[i]);
    free(n);
}

static const ast_comm_vtable nccl_vt = {nccl_alltoallv, nccl_abort, nccl_destroy};

extern "C" int ast_comm_nccl_create(int P, const int *devices, ast_comm **out) {
    *out = NULL;
    if (P < 1 || P > AST_MAX_RANKS)
        return ast_fail("sequence parallelism over %d GPUs: must be 1 to %d", P, AST_MAX_RANKS);
    int count = 0;
    CUDA_TRY(cudaGetDeviceCount(&count));
    for (int i = 0; i < P; i++) {
        if (devices[i] < 0 || devices[i] >= count)
            return ast_fail("GPU %d in --gpus does not exist: this machine has %d CUDA device%s "
                            "(0..%d)",
                            devices[i], count, count == 1 ? "" : "s", count - 1);
        for (int j = 0; j < i; j++)
            if (devices[j] == devices[i])
                return ast_fail("GPU %d is listed twice in --gpus; list each GPU once",
                                devices[i]);
    }
    setenv("NCCL_NVLS_ENABLE", "0", 0); // keep NVLink multicast off unless the user chose
    comm_nccl *n = (comm_nccl *)ast_calloc(1, sizeof *n, "the NCCL group");
    if (!n) return -1;
    ncclResult_t r = ncclCommInitAll(n->comms, P, devices);
    if (r != ncclSuccess) {
        free(n);
        return ast_fail("ncclCommInitAll over %d GPUs failed: %s; check the GPUs with "
                        "nvidia-smi, or rerun with NCCL_DEBUG=WARN for NCCL's reason",
                        P, ncclGetErrorString(r));
    }
    n->base.vt = &nccl_vt;
    n->base.size = P;
    n->base.kind = "nccl";
    *out = &n->base;
    return 0;
}

#else // built without NCCL

extern "C" int ast_comm_nccl_create(int P, const int *devices, ast_comm **out) {
    (void)devices;
    *out = NULL;
    return ast_fail("one generation over %d GPUs needs NCCL, and this build has none; install "
                    "NCCL (libnccl-dev) and rebuild with 'meson setup build -Dnccl=enabled', or "
                    "use one GPU",
                    P);
}

#endif
