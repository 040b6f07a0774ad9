/* kernels/tokenwise.h — CUDA kernels of the token-wise step (method.md §1), the GPU twin of
 * src/tokenwise.h (same formulas; tests/unit/test_gpu_ops.c holds them together):
 *
 *   sketch    s = x·Pᵀ                      x [N, D] fp32 block input, P [r, D] (ast_tw_projection)
 *   scores    Δ_i = ‖s_i − refsketch_i‖/√r; S_i = w_α·lse_i·Δ_i/mean_j Δ_j + w_β·exp(min(skip_i, 20))
 *   top-K     the K largest S_i, ties to the lower index, listed in ascending token order
 *             (with w_α = 0 the scores are known before the forward: every block's top-K in
 *             one launch, ast_cuda_tw_select_skip)
 *   commit    selected rows: cache, x, lse (mean over heads), refsketch, skip = 0
 *   reuse     other rows: x = x + cache (RESIDUAL) or cache (OUTPUT), skip += 1
 *
 * Include as "kernels/tokenwise.h" (src/tokenwise.h has the same file name). Every call runs on
 * the stream given with no allocation and no host synchronisation (graph-capturable). */
#ifndef AST_KERNELS_TOKENWISE_H
#define AST_KERNELS_TOKENWISE_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "engine.h"

/* dst[r] = src[idx[r]] (gather) / dst[idx[r]] = src[r] (scatter), r < K, C elements of
 * elem_bytes (2 or 4) per row; row strides in elements. */
int ast_cuda_gather_rows(int K, int C, const int32_t *idx, const void *src, int lds, void *dst,
                         int ldd, int elem_bytes, cudaStream_t s);
int ast_cuda_scatter_rows(int K, int C, const int32_t *idx, const void *src, int lds, void *dst,
                          int ldd, int elem_bytes, cudaStream_t s);

/* sk[n, j] = Σ_d x[n, d]·P[j, d], n < N, j < r (fp32, fp32 accumulation). */
int ast_cuda_tw_sketch(int N, int D, int r, const float *x, int ldx, const float *P, float *sk,
                       cudaStream_t s);

/* Scratch of the selection (the Δ of each token), sized for n_max tokens. */
typedef struct ast_cuda_tw ast_cuda_tw;
int ast_cuda_tw_create(ast_cuda_tw **out, int n_max);
void ast_cuda_tw_free(ast_cuda_tw *t);

/* scores[i] for i < n exactly as ast_tw_scores (src/tokenwise.c), with the same rounding
 * (no contraction; exp(skip) from the host's expf), so identical inputs give identical scores
 * up to the order of the Δ sum (double). NaN scores become the lowest key (sorted last). */
int ast_cuda_tw_scores(ast_cuda_tw *t, int n, int r, const float *sketch, const float *refsketch,
                       const float *lse, const int32_t *skip, const ast_tokenwise_opts *o,
                       float *scores, cudaStream_t s);

/* Top-k of scores (one-block radix select of the k-th largest; ties go to the lower index, −0
 * equals +0), then sel[0..k) in ascending token order and flags[i] = 1 for the selected, 0
 * others. k >= n selects every token. NaN scores must be the all-ones NaN ast_cuda_tw_scores
 * writes (ranked after -inf); another NaN would rank first. */
int ast_cuda_tw_topk(ast_cuda_tw *t, int n, int k, const float *scores, int32_t *sel,
                     uint8_t *flags, cudaStream_t s);

/* The selection of L blocks at once when the score depends on the skip counts alone (w_α = 0:
 * S = w_β·exp(min(skip, 20)), no Δ, no LSE): for block l, skip_all[l·n ..) -> sel_all[l·n ..)
 * (k entries) and flags_all[l·n ..), exactly as ast_cuda_tw_scores + ast_cuda_tw_topk give.
 * One launch, one thread block per layer. */
int ast_cuda_tw_select_skip(int L, int n, int k, const int32_t *skip_all,
                            const ast_tokenwise_opts *o, int32_t *sel_all, uint8_t *flags_all,
                            cudaStream_t s);

/* For r < K, token n = sel ? sel[r] : r, block output out = xs[r] (fp32, ldxs), or with y
 * (bf16 [K, ldy]) out = fma(gate, y[r], xs[r]) (the block's last gated residual, fused), and
 * block input x[n]:
 *   cache[n] = bf16(out − x[n]) (RESIDUAL) or bf16(out) (OUTPUT);  x[n] = out;
 *   lse_tok[n] = mean_h lse_h[h·K + r] (lse_h [H, K] from the attention; NULL: left alone);
 *   refsketch[n] = sketch[n] (r_dim floats; NULL: left alone);  skip[n] = 0 (NULL: left alone).
 * xs must not alias x: x[n] is the block input until this call overwrites it. */
int ast_cuda_tw_commit(int K, int D, const int32_t *sel, const float *xs, int ldxs,
                       const ast_bf16 *y, int ldy, const float *gate, float *x, int ldx,
                       ast_bf16 *cache, int ldc, ast_cache_mode mode, int H, const float *lse_h,
                       float *lse_tok, int r_dim, const float *sketch, float *refsketch,
                       int32_t *skip, cudaStream_t s);

/* For every n < N with flags[n] == 0: x[n] = x[n] + cache[n] (RESIDUAL) or cache[n] (OUTPUT),
 * skip[n] += 1. */
int ast_cuda_tw_reuse(int N, int D, const uint8_t *flags, float *x, int ldx, const ast_bf16 *cache,
                      int ldc, ast_cache_mode mode, int32_t *skip, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
