/* cpu_ops.h — fp32 CPU operators of the Wan2.1 forward (the reference every CUDA kernel is
 * tested against). OpenMP-parallel inside each call; every pointer is row-major with an explicit
 * row stride ("ld", in elements) so callers can address column slices (heads, fused QKV). */
#ifndef AST_CPU_OPS_H
#define AST_CPU_OPS_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "tensor.h"

/* Epilogue applied after bias. */
typedef enum { AST_EPI_NONE = 0, AST_EPI_GELU_TANH = 1 } ast_epilogue;

/* y[M, N] (ldy) = epi( x[M, K] (ldx) · W^T + bias ), W = w[N, K] row-major (Linear [out, in])
 * stored as dtype wdt (F32/BF16/F16; may be unaligned, e.g. straight from an mmapped file),
 * with row stride ldw. bias may be NULL. If accumulate != 0, y += result instead (no epilogue
 * allowed then: y becomes NaN and the error is set). Cache-blocked with packed panels; W is
 * converted to fp32 while packing. y must not overlap x or w. */
void ast_cpu_gemm(int M, int N, int K, const float *x, int ldx, const void *w, ast_dtype wdt,
                  int ldw, const float *bias, float *y, int ldy, ast_epilogue epi, int accumulate);

/* Multi-head attention with online softmax, tiled so no Lq x Lk matrix is ever stored.
 * For head h (columns h*D .. h*D+D-1 of q, k, v, o):
 *   o[i] = sum_j softmax_j(scale * q[i]·k[j]) v[j]
 *   lse[h*Lq + i] = ln sum_j exp(scale * q[i]·k[j])      (lse may be NULL)
 * q: [Lq, ldq], k: [Lk, ldk], v: [Lk, ldv], o: [Lq, ldo]. Lq != Lk allowed; o must not overlap
 * q, k or v. Lk = 0 gives o = 0 and lse = -inf. */
void ast_cpu_attention(int Lq, int Lk, int H, int D, const float *q, int ldq, const float *k,
                       int ldk, const float *v, int ldv, float *o, int ldo, float *lse,
                       float scale);

/* LayerNorm over the last dim C (biased variance, eps), computed in fp32 (double-free):
 *   y = (x - mean) / sqrt(var + eps) [* w + b]  then, if scale/shift given,  * (1 + scale) + shift
 * w/b/scale/shift may each be NULL (scale and shift are [C] vectors broadcast over rows).
 * y == x (in place) is allowed. */
void ast_cpu_layernorm(int L, int C, const float *x, int ldx, float *y, int ldy, const float *w,
                       const float *b, const float *scale, const float *shift, float eps);

/* RMSNorm over the last dim C, in place: x = x * rsqrt(mean(x^2) + eps) * w. */
void ast_cpu_rmsnorm(int L, int C, float *x, int ldx, const float *w, float eps);

/* In-place GELU(tanh) / SiLU over n contiguous floats. */
void ast_cpu_gelu_tanh(float *x, int64_t n);
void ast_cpu_silu(float *x, int64_t n);

/* Wan 3D RoPE (wan21.md §1.4): table[p][m] for p < 1024, m < D/2 as (cos, sin) pairs, built by
 * ast_rope_table_init. x holds L rows of H heads of D channels; row r is the token with flat
 * index tok[r] (tok may be NULL: row r is token r) in a grid (gf, gh, gw), n = (f·gh + i)·gw + j;
 * f, i and j must be below npos (1024). */
typedef struct {
    int D;          /* head dim */
    int npos;       /* 1024 */
    float *cs;      /* [npos, D/2, 2] (cos, sin) */
} ast_rope_table;
int ast_rope_table_init(ast_rope_table *t, int head_dim);
void ast_rope_table_free(ast_rope_table *t);
void ast_cpu_rope(int L, int H, float *x, int ldx, const int32_t *tok, int64_t tok0, int gh, int gw,
                  const ast_rope_table *t);

/* SIMD path of every operator above: "avx2" (AVX2+FMA, used when the CPU has them) or
 * "generic" (portable vector code, any x86-64). The environment variable AST_CPU_SIMD
 * (auto|avx2|generic) sets the first choice; ast_cpu_simd_select switches later ("auto" or NULL
 * = detect). Returns -1 with the error set for an unknown name or a path this CPU lacks. Call it
 * between operator calls, not while one runs. */
int ast_cpu_simd_select(const char *name);
const char *ast_cpu_simd_name(void);

#ifdef __cplusplus
}
#endif

#endif
