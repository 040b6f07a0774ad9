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

/* Every rank's token shard and, per forward, its computed rows: the same rule on every rank, so
 * each knows what the others send. */
typedef struct {
    int P;
    int64_t n[AST_MAX_RANKS], first[AST_MAX_RANKS];  /* tokens of rank i: [first, first + n) */
    int64_t k[AST_MAX_RANKS], kfirst[AST_MAX_RANKS]; /* rows computed this forward, prefix sums */
} ast_shard_plan;
void ast_shard_plan_init(ast_shard_plan *pl, int64_t ntot, int P);
/* k[i] = round(theta·n[i]) (at least 1) when tokenwise, else n[i]; returns their sum. */
int64_t ast_shard_plan_rows(ast_shard_plan *pl, int tokenwise, float theta);

/* sh: this backend's rank in a sequence-parallel group (size 1: the whole sequence). A rank
 * computes its token shard ast_shard_range(N, P, rank) and, in forward, writes only those
 * tokens of `out` (the engine passes every rank the same buffers). */
int ast_cpu_backend_create(const ast_model *m, const ast_engine_params *p, const ast_shard *sh,
                           void **impl, const ast_backend_vtable **vt);

/* CUDA (kernels/; src/gpu_none.c when built without CUDA). */
int ast_cuda_backend_create(const ast_model *m, const ast_engine_params *p, const ast_shard *sh,
                            void **impl, const ast_backend_vtable **vt);

/* Head output rows y [count, pt·ph·pw·out_dim] of tokens [n0, n0 + count) -> their pixels of
 * out [out_dim, F, H, W] (wan21.md §1.5); the other pixels are left as they are. */
void ast_unpatchify_rows(const ast_wan_config *c, int F, int H, int W, int64_t n0,
                         int64_t count, const float *y, float *out);
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
