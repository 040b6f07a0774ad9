/* gemm.c — fp32 CPU GEMM y = epi(x·Wᵀ + bias) (cpu_ops.h): every Linear of the CPU forward.
 *
 * Scheme (BLIS-like, trimmed to what our shapes need):
 *   - W [N, K] (F32/BF16/F16, possibly unaligned, straight from the checkpoint) is converted to
 *     fp32 while packed into panels of 16 columns of Wᵀ for one K slice:
 *         panel[k][j] = W[n0 + j][k0 + k]   (zero for n0 + j >= N)
 *   - x is not packed: the micro-kernel broadcasts x[m][k] straight from its rows, each read
 *     sequentially (packing x into 6-row slivers measured 4-12% slower on our shapes).
 *   - micro-kernel (simd.h): 6 rows x 16 columns of y in registers, loop over the K slice.
 *   - loops per task: K slice (pack its panels) → 96-row block of x (in L2) → panel (32 KiB,
 *     mostly in L1) → 6-row micro-tile.
 *   - up to 4 rows (time embedding, a few text rows) no packing pays off: each W row is converted
 *     once and dotted with every row of x (gemm_small_task).
 *   - OpenMP: the output is cut into tasks of (row range x panel range). Cutting columns first
 *     costs nothing (each task packs its own part of W); rows are cut only when there are too
 *     few panels to keep every thread busy (then W is packed once per row range).
 * Bias is added in the first K slice, GELU to each row block right after the last one. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common.h"
#include "cpu_ops.h"
#include "simd.h"

enum {
    /* Measured on a 2-core Zen VM (32 KiB L1d, 512 KiB L2 per core), single thread: KC 128 →
     * 256 → 512 gave 27 → 30 → 34.5 GFLOP/s at 1024x1536x1536 (fewer passes over y), no
     * change at K <= 512; 16 panels per task beat 8 (x reused over more columns). */
    GEMM_KC = 512,         /* K slice: one packed panel is KC·16·4 B = 32 KiB */
    GEMM_MC = 96,          /* rows of x per block (multiple of 6): 96·KC·4 B = 192 KiB (L2) */
    GEMM_TASK_PANELS = 16, /* at most 16 panels (256 columns) per task */
    GEMM_TASK_MIN_ROWS = 48, /* never cut rows finer than this (each cut repacks W) */
    GEMM_TASKS_PER_THREAD = 4, /* dynamic scheduling evens out uneven tasks and noisy cores */
    GEMM_SMALL_M = 4, /* up to 4 rows: dot products, no packing (measured crossover ~6-8) */
    GEMM_SMALL_TASK_COLS = 64, /* small-M path: W rows per task */
};
#define GEMM_PARALLEL_MIN_FLOP (1 << 18) /* below ~5 us of work, a parallel region costs more */

typedef struct {
    int M, N, K;
    const float *x;
    ptrdiff_t ldx;
    const unsigned char *w; /* [N, ldw] elements of dtype wdt, any alignment */
    ast_dtype wdt;
    ptrdiff_t ldw;
    const float *bias; /* [N] or NULL */
    float *y;
    ptrdiff_t ldy;
    int gelu;       /* apply GELU(tanh) after the last K slice */
    int accumulate; /* y += result */
    const ast_cpu_simd *simd;
} gemm_job;

static int imin(int a, int b) { return a < b ? a : b; }

static const unsigned char *w_elem(const gemm_job *g, int n, int k) {
    return g->w + ((ptrdiff_t)n * g->ldw + k) * (ptrdiff_t)ast_dtype_size(g->wdt);
}

/* panel[k][j] = fp32(W[n0 + j][k0 + k]) for j < nv, 0 for nv <= j < 16. The nv row slices are
 * converted (vectorised, any alignment) into tmp [16][kc], then transposed into the panel. */
static void pack_panel(const gemm_job *g, int n0, int nv, int k0, int kc, float *panel,
                       float *tmp) {
    for (int j = 0; j < nv; j++)
        g->simd->to_f32(tmp + (size_t)j * kc, w_elem(g, n0 + j, k0), (int)g->wdt, kc);
    if (nv < AST_UK_NR)
        memset(tmp + (size_t)nv * kc, 0, (size_t)(AST_UK_NR - nv) * kc * sizeof(float));
    g->simd->pack16(panel, tmp, kc, kc);
}

/* y[i .. i+mr, n0 .. n0+nr] (op)= x[i .. i+mr, k0 .. k0+kc] · panel (+ bias). A partial panel
 * (nr < 16) goes through a 6x16 staging tile so the kernel always writes 16 columns. */
static void micro_tile(const gemm_job *g, int i, int mr, int n0, int nr, int k0, int kc,
                       const float *panel, int beta, const float *bias) {
    const float *a = g->x + (ptrdiff_t)i * g->ldx + k0;
    float *c = g->y + (ptrdiff_t)i * g->ldy + n0;
    if (nr == AST_UK_NR) {
        g->simd->ukernel(mr, kc, a, g->ldx, 1, panel, AST_UK_NR, c, g->ldy, beta, bias);
    } else {
        float ct[AST_UK_MR * AST_UK_NR] = {0}, bt[AST_UK_NR] = {0};
        size_t row = (size_t)nr * sizeof(float);
        if (beta)
            for (int r = 0; r < mr; r++) memcpy(ct + r * AST_UK_NR, c + r * g->ldy, row);
        if (bias) memcpy(bt, bias, row);
        g->simd->ukernel(mr, kc, a, g->ldx, 1, panel, AST_UK_NR, ct, AST_UK_NR, beta,
                         bias ? bt : NULL);
        for (int r = 0; r < mr; r++) memcpy(c + r * g->ldy, ct + r * AST_UK_NR, row);
    }
}

static void fill_nan(float *y, ptrdiff_t ldy, int rows, int c0, int c1) {
    for (int r = 0; r < rows; r++)
        for (int c = c0; c < c1; c++) y[r * ldy + c] = NAN;
}

/* One task: rows [m0, m1) x panels [p0, p1). */
static void gemm_task(const gemm_job *g, int m0, int m1, int p0, int p1) {
    int np = p1 - p0;
    float *packed = ast_cpu_scratch((size_t)GEMM_KC * AST_UK_NR * (size_t)(np + 1));
    if (!packed) { /* out of memory: a loud result, never a silently wrong one */
        fill_nan(g->y + (ptrdiff_t)m0 * g->ldy, g->ldy, m1 - m0, p0 * AST_UK_NR,
                 imin(g->N, p1 * AST_UK_NR));
        return;
    }
    float *tmp = packed + (size_t)GEMM_KC * AST_UK_NR * (size_t)np; /* [16][KC] */
    for (int k0 = 0; k0 < g->K; k0 += GEMM_KC) {
        int kc = imin(GEMM_KC, g->K - k0);
        int first = k0 == 0, last = k0 + kc >= g->K;
        for (int p = p0; p < p1; p++)
            pack_panel(g, p * AST_UK_NR, imin(AST_UK_NR, g->N - p * AST_UK_NR), k0, kc,
                       packed + (size_t)(p - p0) * kc * AST_UK_NR, tmp);
        int beta = first ? g->accumulate : 1;
        for (int i0 = m0; i0 < m1; i0 += GEMM_MC) {
            int i1 = imin(i0 + GEMM_MC, m1);
            for (int p = p0; p < p1; p++) {
                int n0 = p * AST_UK_NR, nr = imin(AST_UK_NR, g->N - n0);
                const float *panel = packed + (size_t)(p - p0) * kc * AST_UK_NR;
                const float *bias = first && g->bias ? g->bias + n0 : NULL;
                for (int i = i0; i < i1; i += AST_UK_MR)
                    micro_tile(g, i, imin(AST_UK_MR, i1 - i), n0, nr, k0, kc, panel, beta, bias);
            }
            if (last && g->gelu) /* the block is still in cache; whole rows of the task at once */
                for (int i = i0; i < i1; i++)
                    g->simd->gelu_tanh(g->y + (ptrdiff_t)i * g->ldy + p0 * AST_UK_NR,
                                       imin(g->N, p1 * AST_UK_NR) - p0 * AST_UK_NR);
        }
    }
}

/* Few rows (M <= GEMM_SMALL_M): packing W would cost more than the product, so each W row is
 * converted once and dotted with every row of x. Columns [n0, n1). */
static void gemm_small_task(const gemm_job *g, int n0, int n1) {
    const int M = g->M, K = g->K;
    float *tmp = ast_cpu_scratch((size_t)K + (size_t)M);
    if (!tmp) {
        fill_nan(g->y, g->ldy, M, n0, n1);
        return;
    }
    float *dots = tmp + K;
    for (int n = n0; n < n1; n++) {
        g->simd->to_f32(tmp, w_elem(g, n, 0), (int)g->wdt, K);
        g->simd->dot_rows(M, K, g->x, g->ldx, tmp, dots);
        for (int i = 0; i < M; i++) {
            float *yi = g->y + (ptrdiff_t)i * g->ldy + n;
            float v = dots[i] + (g->bias ? g->bias[n] : 0.0f);
            *yi = g->accumulate ? *yi + v : v;
        }
    }
    if (g->gelu)
        for (int i = 0; i < M; i++) g->simd->gelu_tanh(g->y + (ptrdiff_t)i * g->ldy + n0, n1 - n0);
}

/* K == 0: the product is empty, y (op)= bias. */
static void gemm_k0(const gemm_job *g) {
    for (int i = 0; i < g->M; i++) {
        float *yr = g->y + (ptrdiff_t)i * g->ldy;
        for (int n = 0; n < g->N; n++)
            yr[n] = (g->accumulate ? yr[n] : 0.0f) + (g->bias ? g->bias[n] : 0.0f);
        if (g->gelu) g->simd->gelu_tanh(yr, g->N);
    }
}

void ast_cpu_gemm(int M, int N, int K, const float *x, int ldx, const void *w, ast_dtype wdt,
                  int ldw, const float *bias, float *y, int ldy, ast_epilogue epi, int accumulate) {
    if (M <= 0 || N <= 0) return;
    gemm_job g = {M, N, K, x, ldx, (const unsigned char *)w, wdt, ldw, bias, y, ldy,
                  epi == AST_EPI_GELU_TANH, accumulate != 0, ast_cpu_simd_get()};
    int bad_dtype = wdt != AST_DT_F32 && wdt != AST_DT_BF16 && wdt != AST_DT_F16;
    int bad_epi = (epi != AST_EPI_NONE && epi != AST_EPI_GELU_TANH) || (accumulate && epi);
    if (bad_dtype || bad_epi) { /* caller bug: say so and make the output impossible to miss */
        ast_error_set("ast_cpu_gemm: weight dtype %s / epilogue %d with accumulate %d is not "
                      "supported (F32/BF16/F16; no epilogue when accumulating)",
                      ast_dtype_name(wdt), (int)epi, accumulate);
        fill_nan(y, ldy, M, 0, N);
        return;
    }
    if (K <= 0) {
        gemm_k0(&g);
        return;
    }

    int nthr = 2.0 * M * N * K >= GEMM_PARALLEL_MIN_FLOP ? omp_get_max_threads() : 1;
    if (M <= GEMM_SMALL_M) {
        int ntask = (N + GEMM_SMALL_TASK_COLS - 1) / GEMM_SMALL_TASK_COLS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (nthr > 1 && ntask > 1)
        for (int t = 0; t < ntask; t++)
            gemm_small_task(&g, t * GEMM_SMALL_TASK_COLS, imin(N, (t + 1) * GEMM_SMALL_TASK_COLS));
        return;
    }

    int npan = (N + AST_UK_NR - 1) / AST_UK_NR;
    int mblocks = (M + AST_UK_MR - 1) / AST_UK_MR;
    int ntn = (npan + GEMM_TASK_PANELS - 1) / GEMM_TASK_PANELS, ntm = 1;
    if (nthr > 1) {
        int want = GEMM_TASKS_PER_THREAD * nthr;
        if (ntn < want) ntn = imin(npan, want);
        if (ntn < want) {
            ntm = imin((want + ntn - 1) / ntn, (M + GEMM_TASK_MIN_ROWS - 1) / GEMM_TASK_MIN_ROWS);
            ntm = imin(ntm, mblocks);
        }
    }
    int ntask = ntm * ntn;
    /* Tasks with the same rows are adjacent, so threads running together share x in cache. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (nthr > 1 && ntask > 1)
    for (int t = 0; t < ntask; t++) {
        int tm = t / ntn, tn = t % ntn;
        int m0 = (int)((int64_t)mblocks * tm / ntm) * AST_UK_MR;
        int m1 = imin(M, (int)((int64_t)mblocks * (tm + 1) / ntm) * AST_UK_MR);
        int p0 = (int)((int64_t)npan * tn / ntn), p1 = (int)((int64_t)npan * (tn + 1) / ntn);
        if (m0 < m1 && p0 < p1) gemm_task(&g, m0, m1, p0, p1);
    }
}
