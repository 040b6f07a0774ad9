/* backend.h — what engine.c needs from a backend (internal to the library).
 *
 * engine.c owns the public API, argument checks and context padding; a backend owns the
 * weights on its device, the scratch buffers and the per-branch token-wise state. */
#ifndef AST_BACKEND_H
#define AST_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stddef.h>

#include "comm.h"
#include "engine.h"
#include "tokenwise.h"

typedef struct {
    /* ctx: [text_len, text_dim] fp32, already zero-padded. */
    int (*set_context)(void *impl, int branch, const float *ctx);
    void (*reset)(void *impl);
    /* x: [in_dim, F, H, W], out: [out_dim, F, H, W], host fp32. dense != 0 forces theta = 1
     * and refreshes every cache (first step after reset). */
    int (*forward)(void *impl, int branch, const float *x, float t, float theta, int dense,
                   float *out, ast_forward_info *info);
    void (*destroy)(void *impl);
    const char *(*device_name)(void *impl);
} ast_backend_vtable;

/* A backend's place in its sequence-parallel group: `in` (NULL or size 1: the whole sequence)
 * normalised into *sh, the plan of every rank's tokens over ntot, and whether attention uses the
 * K/V all-gather (the rank count does not divide the heads) instead of Ulysses. */
void ast_rank_setup(const ast_shard *in, int64_t ntot, int heads, ast_shard *sh,
                    ast_shard_plan *plan, int *allgather);
/* P does not divide the heads: the group attends through a K/V all-gather (docs/multigpu.md). */
static inline int ast_rank_allgather(int heads, int P) { return P > 1 && heads % P != 0; }

/* Counts and displacements (elements) of one all-to-all between P ranks where this rank owns
 * `own` rows per peer, in peer order, and peer i owns rows[i] rows at first[i]; a row is `width`
 * elements. Into head layout: (sc, sd) = own side, (rc, rd) = peers' side; back: swapped. */
void ast_exchange_counts(int P, int64_t own, const int64_t *rows, const int64_t *first,
                         int64_t width, int64_t *own_count, int64_t *own_displ,
                         int64_t *peer_count, int64_t *peer_displ);
/* Counts and displacements (elements) of the K/V all-gather between P ranks (an all-to-all that
 * sends the same rows to every peer): this rank sends its `own` rows, from the start of its
 * buffer, to each peer (sc, sd) and receives peer i's rows[i] rows at row first[i] of the
 * gathered buffer (rc, rd); a row is `width` elements. */
void ast_allgather_counts(int P, int64_t own, const int64_t *rows, const int64_t *first,
                          int64_t width, int64_t *send_count, int64_t *send_displ,
                          int64_t *recv_count, int64_t *recv_displ);

/* sh: this backend's rank in a sequence-parallel group (size 1: the whole sequence). A rank
 * computes its token shard ast_shard_range(N, P, rank). In forward the engine passes every rank
 * the same buffers; between them the ranks write every token of `out` once: a CPU rank its own
 * tokens, while CUDA rank 0 gathers every rank's rows and writes them all (the others none). */
int ast_cpu_backend_create(const ast_model *m, const ast_engine_params *p, const ast_shard *sh,
                           void **impl, const ast_backend_vtable **vt);

/* CUDA (kernels/; src/gpu_none.c when built without CUDA). */
int ast_cuda_backend_create(const ast_model *m, const ast_engine_params *p, const ast_shard *sh,
                            void **impl, const ast_backend_vtable **vt);

/* Number of usable CUDA devices; 0 with a reason ("built without CUDA", "no CUDA device:
 * cudaGetDeviceCount returned ...") written into reason. */
int ast_cuda_device_count(char *reason, size_t reason_len);

/* Benchmark helpers (kernels/bench_cuda.cu). Memory in use on `device` (total - free, bytes),
 * and the median time of our attention kernel on random bf16 inputs. */
int ast_cuda_mem_used(int device, double *used_bytes, char *name, size_t name_len);
int ast_cuda_bench_attention(int device, int Lq, int Lk, int H, int D, int repeats,
                             double *median_ms);

#ifdef __cplusplus
}
#endif

#endif
