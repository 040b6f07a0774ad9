/* ops.c — fp32 CPU element-wise and row operators of the Wan2.1 forward (cpu_ops.h):
 * LayerNorm (+ affine, + modulation), RMSNorm over the full width, GELU(tanh), SiLU and the 3D
 * RoPE table and rotation (wan21.md §1.3 item 4, §1.4). These are memory-bound: rows are split
 * over OpenMP threads when there is enough work, and each row is a few passes that the compiler
 * vectorises (sums kept in 8 partial accumulators so they vectorise without -ffast-math). */
#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu_ops.h"
#include "simd.h"

#define OPS_PARALLEL_MIN_ELEMS (1 << 15) /* below this a parallel region costs more than it saves */

/* sum_i (x[i] - mu)^2 (mu = 0: sum of squares) or sum_i x[i] (square = 0), fp32, 8 partials. */
static float row_sum(const float *x, int n, float mu, int square) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float t = x[i + j] - mu;
            acc[j] += square ? t * t : t;
        }
    float s = 0.0f;
    for (; i < n; i++) {
        float t = x[i] - mu;
        s += square ? t * t : t;
    }
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

/* One row: y = (x - mean)·rstd·gain + bias, with gain/bias the per-column folding of the affine
 * and modulation terms (see ast_cpu_layernorm). */
static void layernorm_row(int C, const float *x, float *y, const float *gain, const float *bias,
                          float eps) {
    float mean = row_sum(x, C, 0.0f, 0) / (float)C;
    float var = row_sum(x, C, mean, 1) / (float)C; /* biased, two-pass */
    float rstd = 1.0f / sqrtf(var + eps);
    for (int c = 0; c < C; c++) y[c] = (x[c] - mean) * rstd * gain[c] + bias[c];
}

void ast_cpu_layernorm(int L, int C, const float *x, int ldx, float *y, int ldy, const float *w,
                       const float *b, const float *scale, const float *shift, float eps) {
    if (L <= 0 || C <= 0) return;
    /* ((t·w + b)·(1 + scale) + shift) = t·gain + bias with gain = w·(1 + scale) and
     * bias = b·(1 + scale) + shift (absent terms: w = 1, b = scale = shift = 0): one pass per
     * row instead of five. Same math; rounding differs from the term-by-term order by ~1 ulp. */
    float *gain = ast_cpu_scratch(2 * (size_t)C), *bias = gain ? gain + C : NULL;
    if (!gain) { /* out of memory: a loud result, never a silently wrong one */
        for (int r = 0; r < L; r++)
            for (int c = 0; c < C; c++) y[(ptrdiff_t)r * ldy + c] = NAN;
        return;
    }
    for (int c = 0; c < C; c++) {
        float m = scale ? 1.0f + scale[c] : 1.0f;
        gain[c] = (w ? w[c] : 1.0f) * m;
        bias[c] = (b ? b[c] : 0.0f) * m + (shift ? shift[c] : 0.0f);
    }
#pragma omp parallel for schedule(static) if ((int64_t)L * C >= OPS_PARALLEL_MIN_ELEMS)
    for (int r = 0; r < L; r++)
        layernorm_row(C, x + (ptrdiff_t)r * ldx, y + (ptrdiff_t)r * ldy, gain, bias, eps);
}

void ast_cpu_rmsnorm(int L, int C, float *x, int ldx, const float *w, float eps) {
    if (L <= 0 || C <= 0) return;
#pragma omp parallel for schedule(static) if ((int64_t)L * C >= OPS_PARALLEL_MIN_ELEMS)
    for (int r = 0; r < L; r++) {
        float *xr = x + (ptrdiff_t)r * ldx;
        float rs = 1.0f / sqrtf(row_sum(xr, C, 0.0f, 1) / (float)C + eps);
        if (w)
            for (int c = 0; c < C; c++) xr[c] = xr[c] * rs * w[c];
        else
            for (int c = 0; c < C; c++) xr[c] *= rs;
    }
}

/* f over x[0, n) in chunks, chunks spread over threads when n is large. */
static void act_apply(float *x, int64_t n, void (*f)(float *, ptrdiff_t)) {
    const int64_t chunk = 8192;
    const int64_t nch = n > 0 ? (n + chunk - 1) / chunk : 0;
#pragma omp parallel for schedule(static) if (n >= OPS_PARALLEL_MIN_ELEMS)
    for (int64_t i = 0; i < nch; i++) {
        int64_t a = i * chunk;
        f(x + a, (ptrdiff_t)(n - a < chunk ? n - a : chunk));
    }
}

void ast_cpu_gelu_tanh(float *x, int64_t n) { act_apply(x, n, ast_cpu_simd_get()->gelu_tanh); }
void ast_cpu_silu(float *x, int64_t n) { act_apply(x, n, ast_cpu_simd_get()->silu); }

/* ---- RoPE ------------------------------------------------------------------------------ */

/* Pairs per axis for head dim d (wan21.md §1.3 item 4): d_h = d_w = 2·⌊d/6⌋,
 * d_t = d − 2·d_h; the t axis takes the first d_t/2 pairs, then h, then w. */
static void rope_axis_pairs(int d, int *nt, int *nh) {
    *nh = d / 6;
    *nt = d / 2 - 2 * *nh;
}

int ast_rope_table_init(ast_rope_table *t, int head_dim) {
    memset(t, 0, sizeof *t);
    if (head_dim <= 0 || head_dim % 2 || head_dim > 4096)
        return ast_fail("RoPE head dim %d must be a positive even number up to 4096 "
                        "(Wan2.1 uses 128)", head_dim);
    const int npos = 1024, half = head_dim / 2;
    float *cs = ast_malloc((size_t)npos * half * 2 * sizeof(float), "RoPE table");
    if (!cs) return -1;
    int nt, nh;
    rope_axis_pairs(head_dim, &nt, &nh);
    const int axis_pairs[3] = {nt, nh, nh};
    for (int p = 0; p < npos; p++) {
        float *row = cs + (size_t)p * half * 2;
        int m = 0;
        for (int a = 0; a < 3; a++) {
            double dim = 2.0 * axis_pairs[a]; /* each axis uses its own dim in the exponent */
            for (int jj = 0; jj < axis_pairs[a]; jj++, m++) {
                double theta = (double)p * pow(10000.0, -2.0 * jj / dim);
                row[2 * m] = (float)cos(theta);
                row[2 * m + 1] = (float)sin(theta);
            }
        }
    }
    t->D = head_dim;
    t->npos = npos;
    t->cs = cs;
    return 0;
}

void ast_rope_table_free(ast_rope_table *t) {
    free(t->cs);
    memset(t, 0, sizeof *t);
}

/* Rotates pairs m in [m0, m1) of x (complex x[2m] + i·x[2m+1]) by cs[2m] + i·cs[2m+1]. */
static void rope_rotate(float *x, const float *cs, int m0, int m1) {
    for (int m = m0; m < m1; m++) {
        float a = x[2 * m], b = x[2 * m + 1], c = cs[2 * m], s = cs[2 * m + 1];
        x[2 * m] = a * c - b * s;
        x[2 * m + 1] = a * s + b * c;
    }
}

void ast_cpu_rope(int L, int H, float *x, int ldx, const int32_t *tok, int64_t tok0, int gh, int gw,
                  const ast_rope_table *t) {
    if (L <= 0 || H <= 0) return;
    const int D = t->D;
    int nt, nh;
    rope_axis_pairs(D, &nt, &nh);
#pragma omp parallel for schedule(static) if ((int64_t)L * H * D >= OPS_PARALLEL_MIN_ELEMS)
    for (int r = 0; r < L; r++) {
        int64_t n = tok0 + (tok ? tok[r] : r);
        int64_t f = n / ((int64_t)gh * gw), i = (n / gw) % gh, jj = n % gw;
        assert(n >= 0 && f < t->npos && i < t->npos && jj < t->npos);
        const float *cf = t->cs + f * D, *ci = t->cs + i * D, *cj = t->cs + jj * D;
        for (int h = 0; h < H; h++) {
            float *xh = x + (ptrdiff_t)r * ldx + (ptrdiff_t)h * D;
            rope_rotate(xh, cf, 0, nt);
            rope_rotate(xh, ci, nt, nt + nh);
            rope_rotate(xh, cj, nt + nh, nt + 2 * nh);
        }
    }
}
