/* gemm.h — the one matrix product of the CUDA backend: a cuBLASLt wrapper for Linear layers.
 *
 *   y[M, N] (ldy) = epi( x[M, K] (ldx) · Wᵀ + bias )        W = w[N, K] (ldw), Linear [out, in]
 *   accumulate:  y += x · Wᵀ (+ bias)                        (fp32 y only: the residual stream)
 *
 * x and W are bf16, row-major, fp32 accumulation. y is bf16 or fp32. The bias has the type of y:
 * bf16 for a bf16 y (as autocast rounds it in the reference), fp32 for an fp32 y (cuBLASLt's
 * rule: bias type = D type). GELU is the tanh form (what CUBLASLT_EPILOGUE_GELU_BIAS computes;
 * test_gpu_ops checks it against both forms, and ast_gemm_set_own_gelu switches to our own
 * kernel should a cuBLASLt release ever differ).
 *
 * Row-major <-> cuBLAS column-major: a row-major [R, C] matrix with row stride ld is the
 * column-major [C, R] matrix with leading dimension ld. So we ask cuBLASLt for
 *   yᵀ[N, M] = W[N, K] · xᵀ[K, M]:  A = w (col-major [K, N], op T), B = x (col-major [K, M],
 *   op N), D = y (col-major [N, M]); m = N, n = M, k = K; the bias runs along m = N (features).
 *
 * Everything happens on the stream given, with no allocation and no host synchronisation per
 * call (descriptors and the heuristic's algorithm are cached per shape, the 32 MiB workspace
 * is allocated once), so a whole forward can be captured into a CUDA graph. A context is not
 * thread-safe: one per backend (per stream). */
#ifndef AST_GEMM_H
#define AST_GEMM_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    AST_GEMM_EPI_NONE = 0,      /* y = x·Wᵀ */
    AST_GEMM_EPI_BIAS = 1,      /* y = x·Wᵀ + b */
    AST_GEMM_EPI_GELU_BIAS = 2, /* y = gelu_tanh(x·Wᵀ + b) */
} ast_gemm_epi;

typedef enum {
    AST_GEMM_OUT_BF16 = 0,
    AST_GEMM_OUT_F32 = 1,
} ast_gemm_out;

typedef struct ast_gemm ast_gemm;

/* Creates the cuBLASLt handle and the workspace on the current device. */
int ast_gemm_create(ast_gemm **out);
void ast_gemm_free(ast_gemm *g);

/* 1: GELU_BIAS runs as a BIAS product followed by our own tanh-GELU kernel (bf16 output only)
 * instead of cuBLASLt's fused epilogue. Default 0. */
void ast_gemm_set_own_gelu(ast_gemm *g, int on);

/* The product above. Returns -1 with the error set on a bad argument (negative sizes, ld too
 * small, epilogue/accumulate combination unsupported) or a cuBLASLt failure; M == 0 is a no-op.
 * accumulate != 0 needs out == AST_GEMM_OUT_F32 and epi != GELU_BIAS. */
int ast_gemm_run(ast_gemm *g, int M, int N, int K, const ast_bf16 *x, int ldx, const ast_bf16 *w,
                 int ldw, const void *bias, void *y, int ldy, ast_gemm_out out, ast_gemm_epi epi,
                 int accumulate, cudaStream_t stream);

/* Number of distinct shapes cached so far (for tests and diagnostics). */
int ast_gemm_cached_shapes(const ast_gemm *g);

/* 1 when ASTRAEA_GEMM_PROFILE=1 was set at creation: every product outside graph capture is
 * timed, and ast_gemm_free prints the per-shape table on stderr (the caller runs eagerly). */
int ast_gemm_profiling(const ast_gemm *g);

#ifdef __cplusplus
}
#endif

#endif
