/* simd.h — internal to src/cpu/: the vectorised building blocks shared by gemm.c, attention.c
 * and ops.c. simd.c compiles one body (simd_tmpl.c) twice — AVX2+FMA through function
 * target attributes, and portable GCC vector code for any x86-64 (no -march flag needed) — and
 * ast_cpu_simd_get() picks one at run time with __builtin_cpu_supports. */
#ifndef AST_CPU_SIMD_H
#define AST_CPU_SIMD_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* Micro-kernel tile: up to MR rows x exactly NR columns of C held in registers. A packed
 * panel of B is NR floats per k (row stride NR). */
#define AST_UK_MR 6
#define AST_UK_NR 16

typedef struct {
    const char *name; /* "avx2" or "generic" */
    /* C[mr, 16] = (beta ? C : 0) + A·B (+ bias[16] if bias), mr in 1..AST_UK_MR, kc >= 0.
     * A(r, k) = a[r*ars + k*acs] (so x rows: ars = ld, acs = 1; Vᵀ: ars = 1, acs = ld);
     * B row k = b[k*ldb .. k*ldb+15]; C row r = c[r*ldc .. r*ldc+15]. fp32 accumulation. */
    void (*ukernel)(int mr, int kc, const float *a, ptrdiff_t ars, ptrdiff_t acs, const float *b,
                    ptrdiff_t ldb, float *c, ptrdiff_t ldc, int beta, const float *bias);
    /* In place over n contiguous floats (any alignment). */
    void (*gelu_tanh)(float *x, ptrdiff_t n);
    void (*silu)(float *x, ptrdiff_t n);
    /* One online-softmax step over a block of scores in log2 units, s[bk][bq] (bq a multiple of
     * 16): per column c, m'[c] = max(m[c], max_r s[r][c]); alpha = 2^(m - m');
     * s[r][c] = 2^(s[r][c] - m'[c]); l[c] = alpha·l[c] + sum_r s[r][c]; o[i][c] *= alpha for
     * i < d rows of o[d][bq]; m = m'. A NaN score propagates into l and o. */
    void (*softmax_step)(int bk, int bq, float *s, float *m, float *l, float *o, int d);
    /* dst[0, n) = fp32 of n elements of dtype dt (F32/BF16/F16) at src (any alignment); exact. */
    void (*to_f32)(float *dst, const void *src, int dt, ptrdiff_t n);
    /* panel[k*16 + j] = src[j*lds + k] for j < 16, k < kc (packing transpose). */
    void (*pack16)(float *panel, const float *src, ptrdiff_t lds, int kc);
    /* out[i] = sum_k x[i*ldx + k]·w[k] for i < m, k < n (fp32 accumulation): small-M GEMM. */
    void (*dot_rows)(int m, ptrdiff_t n, const float *x, ptrdiff_t ldx, const float *w,
                     float *out);
} ast_cpu_simd;

/* The table in use (AVX2 when the CPU has AVX2+FMA, unless ast_cpu_simd_select chose
 * otherwise). Read it once per operator call, outside parallel regions. */
const ast_cpu_simd *ast_cpu_simd_get(void);

/* Grow-only, 64-byte aligned scratch owned by the calling thread (OpenMP workers included),
 * valid until that thread's next call. NULL when out of memory (error set in that thread). */
float *ast_cpu_scratch(size_t nfloats);

#endif
