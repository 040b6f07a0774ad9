/* ops.h — CUDA building blocks of the Wan2.1 forward (wan21.md §1): weight upload, LayerNorm with
 * modulation, RMSNorm fused with 3D RoPE, gated residual adds, patchify/unpatchify, the time
 * embedding path, and small conversions. Each op has a CPU reference in src/cpu_ops.h or in
 * forward_cpu.c and is held to it by tests/unit/test_gpu_ops.c.
 *
 * Conventions (docs/architecture.md "Tensors"): row-major, last dim contiguous, explicit row
 * strides ("ld", in elements) so callers can address column slices (heads, fused QKV). Activations
 * are bf16 (ast_bf16 = the raw 16 bits), statistics and the residual stream fp32 (wan21.md §1.6).
 * Every op runs on the stream given, allocates nothing and never synchronises with the host, so a
 * forward built from them can be captured into a CUDA graph. An op returns 0, or -1 with the
 * error set (bad argument, or the launch failed). Sizes of 0 rows are a no-op. */
#ifndef AST_KERNELS_OPS_H
#define AST_KERNELS_OPS_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "tensor.h"

typedef uint16_t ast_bf16; /* bfloat16 bits (__nv_bfloat16 inside .cu files) */

/* ---- device memory ---------------------------------------------------------------------- */

/* cudaMalloc with an error naming what it was for and how many bytes; *p = NULL on failure. */
int ast_cuda_alloc(void **p, size_t bytes, const char *what);
void ast_cuda_free(void *p); /* NULL is fine */

/* ---- upload: host (mmap) -> device ------------------------------------------------------- */

/* Converts on the host into a pinned staging buffer, chunk by chunk (two buffers, so converting
 * one chunk overlaps copying the other), then copies to the device. For load time only: it
 * synchronises with the host. */
typedef struct ast_uploader ast_uploader;
int ast_uploader_create(ast_uploader **out, cudaStream_t stream);
void ast_uploader_free(ast_uploader *u);
/* n elements of src (dtype sdt: F32, BF16 or F16; may be unaligned, e.g. mmapped) to dst on the
 * device as ddt (AST_DT_BF16 or AST_DT_F32). F32 -> BF16 rounds to nearest even. */
int ast_upload(ast_uploader *u, const void *src, ast_dtype sdt, int64_t n, void *dst,
               ast_dtype ddt);
/* A whole tensor (checked: numel must equal `expect_numel`, which names the shape the caller
 * assumes; pass -1 to skip the check). */
int ast_upload_tensor(ast_uploader *u, const ast_tensor *t, int64_t expect_numel, void *dst,
                      ast_dtype ddt);
/* Waits until every upload queued so far has landed. */
int ast_uploader_finish(ast_uploader *u);

/* ---- elementwise -------------------------------------------------------------------------- */

/* out[i] = a[i] + b[i % bn], i < n (fp32). Block modulation E = m + e0, head modulation. */
int ast_cuda_add_bcast(float *out, const float *a, int64_t n, const float *b, int bn,
                       cudaStream_t s);
/* dst[i] = bf16(src[i]). */
int ast_cuda_f32_to_bf16(const float *src, ast_bf16 *dst, int64_t n, cudaStream_t s);
/* x[r, c] = gelu_tanh(x[r, c]) in place, r < M, c < N (bf16, fp32 math). */
int ast_cuda_gelu_tanh_bf16(ast_bf16 *x, int M, int N, int ldx, cudaStream_t s);

/* ---- strided copies ------------------------------------------------------------------------ */

/* One 2D copy: rows of width bytes, row i from src + i·spitch to dst + i·dpitch (bytes). */
typedef struct {
    void *dst;
    const void *src;
    int64_t dpitch, spitch, width, rows;
} ast_copy2d;
enum { AST_COPY2D_MAX = 48 }; // 3 per rank for AST_MAX_RANKS (16) ranks

/* Up to AST_COPY2D_MAX independent 2D copies in one kernel launch (16-byte moves where the
 * widths, pitches and addresses allow). The sequence-parallel packing: cudaMemcpy2DAsync of
 * thousands of 1.5 KB rows ran far below the memory bandwidth. Copies must not overlap. */
int ast_cuda_copy2d(const ast_copy2d *c, int n, cudaStream_t s);

/* ---- normalisation ---------------------------------------------------------------------- */

/* y[r] = LN(x[row(r)]) [* w + b] [* (1 + scale) + shift], row(r) = rows ? rows[r] : r.
 * LN over C with biased variance, fp32 statistics (two passes over registers), eps inside the
 * rsqrt. w, b, scale, shift are fp32 [C] and may each be NULL. x fp32, y bf16. */
int ast_cuda_layernorm(int L, int C, const float *x, int ldx, const int32_t *rows, ast_bf16 *y,
                       int ldy, const float *w, const float *b, const float *scale,
                       const float *shift, float eps, cudaStream_t s);

/* What a LayerNorm's pass over x can do besides (ast_cuda_layernorm_ex): the token-wise reuse
 * (the rows the previous block did not compute take their cache as the next block's LN1 reads
 * them) and a second, compacted copy of the selected rows' output (the input of the Q
 * projection). */
typedef struct {
    /* reuse: with cache set, row r with flags[r] == 0 first becomes x[r] + cache[r]
     * (residual = 1) or cache[r] (residual = 0), written back to x, and skip[r] += 1 where skip
     * is set */
    const uint8_t *flags;  /* [L] */
    const ast_bf16 *cache; /* [L, C] with row stride ldc, or NULL: no reuse */
    int ldc;
    int residual;
    int32_t *skip;
    /* copy-out: row r with out_flags[r] != 0 also writes its output to out[k], k = r's index in
     * the ascending sel[K] (the forward flags exactly the rows of sel; a flagged row missing
     * from sel is not copied, and the slot of a row of sel left unflagged is not written) */
    const uint8_t *out_flags; /* [L] or NULL: no copy-out */
    const int32_t *sel;       /* [K] ascending */
    int K;
    ast_bf16 *out; /* [K, C] with row stride ldo */
    int ldo;
} ast_ln_extra;

/* ast_cuda_layernorm over rows 0..L-1 (no gather) with *ex: the reuse first (in the order of
 * ast_cuda_tw_reuse's sums), then y = LN(x) (scale/shift/w/b as above), then the copy-out of
 * the same bf16 values. */
int ast_cuda_layernorm_ex(int L, int C, float *x, int ldx, const ast_ln_extra *ex, ast_bf16 *y,
                          int ldy, const float *w, const float *b, const float *scale,
                          const float *shift, float eps, cudaStream_t s);

/* In place on bf16 rows: x = x * rsqrt(mean(x^2) + eps) * w over the full width C (fp32
 * statistics), then, if rope_cs != NULL, Wan 3D RoPE (wan21.md §1.4) on each head of head_dim
 * channels, all in fp32 registers with one rounding to bf16 at the end.
 * rope_cs: device table [npos, head_dim/2, 2] of (cos, sin), as ast_rope_table_init builds it.
 * Row r is token n = tok0 + (tok ? tok[r] : r) of a grid (F', gh, gw): f = n / (gh·gw),
 * i = (n / gw) % gh, j = n % gw; each must be < npos (the engine checks the grid <= 1024). */
int ast_cuda_rmsnorm_rope(int L, int C, ast_bf16 *x, int ldx, const float *w, float eps,
                          const float *rope_cs, int npos, int head_dim, const int32_t *tok,
                          int tok0, int gh, int gw, cudaStream_t s);

/* ---- residual stream ---------------------------------------------------------------------- */

/* out[r, c] = fma(g[c], y[r, c], in[row(r), c]), g = gate ? gate : 1, row(r) = in_rows ? in_rows[r]
 * : r. y is bf16 (y_f32 == 0) or fp32. out may alias in (in place, in_rows NULL). out, in fp32. */
int ast_cuda_residual(int L, int C, float *out, int ldo, const float *in, int ldi,
                      const int32_t *in_rows, const void *y, int ldy, int y_f32,
                      const float *gate, cudaStream_t s);

/* ---- patch embedding / unpatchify (wan21.md §1.3, §1.5) ------------------------------------ */

/* x [C, F, H, W] fp32 -> patches [N, C·pt·ph·pw] bf16 (row stride ldp), token n = (f·H' + i)·W'
 * + j, column k = ((c·pt + at)·ph + a)·pw + b (Conv3d weight order). */
int ast_cuda_patchify(const float *x, int C, int F, int H, int W, int pt, int ph, int pw,
                      ast_bf16 *patches, int ldp, cudaStream_t s);
/* y [N, pt·ph·pw·C] fp32 (row stride ldy), column k = ((at·ph + a)·pw + b)·C + c (c fastest)
 * -> out [C, F, H, W] fp32. */
int ast_cuda_unpatchify(const float *y, int ldy, int C, int F, int H, int W, int pt, int ph,
                        int pw, float *out, cudaStream_t s);

/* ---- time embedding (fp32 throughout, as the reference runs it with autocast off) ---------- */

/* out[k] = cos(t·10000^(−k/half)), out[half + k] = sin(...), k < half = freq_dim/2, computed in
 * float64 from the fp32 timestep *t (a device scalar, so a captured graph reads the current
 * step's t). */
int ast_cuda_sinusoid(const float *t, int freq_dim, float *out, cudaStream_t s);
/* y[n] = Σ_k W[n, k] · act(x[k]) + bias[n], n < N, W fp32 [N, K] row-major, act = SiLU if
 * silu_in else identity. One warp per output; bias may be NULL. M = 1 products. */
int ast_cuda_gemv_f32(int N, int K, const float *W, const float *x, int silu_in,
                      const float *bias, float *y, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
