/* comm.h — the collective exchange of a sequence-parallel group (docs/multigpu.md).
 *
 * One generation runs on P ranks; rank p owns the contiguous token shard ast_shard_range(N, P,
 * p). Self-attention needs every token's keys and values, so each block swaps layouts twice
 * (Ulysses): token-sharded [tokens of p, all heads] -> head-sharded [all tokens, heads of p] and
 * back, each an all-to-all with per-peer counts (shards may be uneven, and each rank's selected
 * query count is its own). When P does not divide the heads, every rank gathers all keys and
 * values instead (K/V all-gather: an all-to-all that sends the same rows to every rank).
 *
 * Two implementations behind one interface:
 *   threads  P ranks are threads of one process sharing memory (CPU backend; the test vehicle
 *            that holds the sharded forward to the single-rank one, bit for bit, in CI)
 *   nccl     P ranks are threads of one process, one CUDA device each, exchanging through
 *            NCCL grouped send/recv on each rank's stream (kernels/comm_nccl.cu)
 *
 * A rank that fails calls ast_comm_abort: every rank blocked in (or later entering) an exchange
 * returns -1 instead of waiting forever, and the group is unusable afterwards. */
#ifndef AST_COMM_H
#define AST_COMM_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#define AST_MAX_RANKS 16

typedef struct ast_comm ast_comm;

typedef struct {
    /* Rank `rank` sends scount[j] elements from send + sdispl[j] to rank j and receives
     * rcount[i] elements from rank i into recv + rdispl[i] (counts and displacements in
     * elements of elem_bytes). The counts must pair up: rcount[i] on rank p == scount[p] on
     * rank i. stream: the rank's cudaStream_t (nccl) or NULL (threads). Buffers are host
     * memory (threads) or device memory of the rank's GPU (nccl). */
    int (*alltoallv)(ast_comm *c, int rank, const void *send, const int64_t *scount,
                     const int64_t *sdispl, void *recv, const int64_t *rcount,
                     const int64_t *rdispl, int elem_bytes, void *stream);
    void (*abort)(ast_comm *c);
    void (*destroy)(ast_comm *c);
} ast_comm_vtable;

struct ast_comm {
    const ast_comm_vtable *vt;
    int size;             /* P */
    const char *kind;     /* "threads" or "nccl" */
};

/* Token shard of rank p of P over n tokens: [*first, *first + *count), sizes differ by at most
 * one, larger shards first. */
void ast_shard_range(int64_t n, int P, int p, int64_t *first, int64_t *count);

/* P ranks as threads sharing host memory. */
int ast_comm_threads_create(int P, ast_comm **out);
/* P ranks on CUDA devices devices[0..P) through NCCL (one process, one thread per rank);
 * a build without NCCL returns an error saying so. */
int ast_comm_nccl_create(int P, const int *devices, ast_comm **out);

static inline int ast_comm_alltoallv(ast_comm *c, int rank, const void *send,
                                     const int64_t *scount, const int64_t *sdispl, void *recv,
                                     const int64_t *rcount, const int64_t *rdispl,
                                     int elem_bytes, void *stream) {
    return c->vt->alltoallv(c, rank, send, scount, sdispl, recv, rcount, rdispl, elem_bytes,
                            stream);
}
void ast_comm_abort(ast_comm *c);
void ast_comm_free(ast_comm *c);

/* What a backend rank needs to know about its group (NULL or size 1: not sharded). */
typedef struct {
    ast_comm *comm;
    int rank, size;
} ast_shard;

#ifdef __cplusplus
}
#endif

#endif
