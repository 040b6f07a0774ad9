/* test_gpu_ops.c — every CUDA building block (kernels/gemm.h, kernels/ops.h,
 * kernels/tokenwise.h) against its CPU reference (src/cpu_ops.h, src/tokenwise.h, or the formula
 * of wan21.md written out here) on seeded random inputs, at several shapes: odd row counts,
 * widths 64/128/1536/5120, strided column slices, and the scalar fallbacks (odd widths,
 * misaligned strides).
 *
 * Every device output is poisoned with 0xFF bytes first (NaN for fp32 and bf16, -1 for int32),
 * so an element the kernel failed to write shows up as NaN; padding columns next to a strided
 * output are checked to stay poisoned/unchanged. Inputs that are bf16 on the device are rounded
 * to bf16 on the host first and the CPU reference sees the same rounded values, so a tolerance
 * only has to cover the kernel's own roundings (reason written beside each).
 *
 * A failure prints: op, shape/variant, the error and its tolerance, and the first bad index with
 * both values, e.g.
 *   FAIL ... layernorm [33 x 1536] mod rows: rel L2 0.21 > 0.004; first bad (row 3, col 17): got
 *   1.25 want -0.37
 * Exits 77 when built without CUDA or when no CUDA device is visible. */
#include <stdint.h>

#include "ast_config.h"
#include "test_util.h"

#define NAME "test_gpu_ops"

#if !AST_HAVE_CUDA
int main(void) { return ast_test_skip(NAME, "built without CUDA (-Dcuda=disabled or no nvcc)"); }
#else

#include <cuda_runtime.h>

#include "backend.h"
#include "cpu_ops.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/tokenwise.h"
#include "src/tokenwise.h"

/* ---- harness ------------------------------------------------------------------------------ */

static void die_cuda(const char *what, cudaError_t e) {
    fprintf(stderr, "%s: %s failed: %s (%s)\n", NAME, what, cudaGetErrorName(e),
            cudaGetErrorString(e));
    exit(1);
}
#define CK(call)                                                                               \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) die_cuda(#call, e_);                                            \
    } while (0)

/* Runs one op, checks its return code, then synchronises so an asynchronous fault is pinned on
 * this op (and not on a later, innocent one). */
#define OP(what, call)                                                                         \
    do {                                                                                       \
        ast_error_clear();                                                                     \
        int op_rc_ = (call);                                                                   \
        CHECK(op_rc_ == 0, "%s: %s returned %d: %s", (what), #call, op_rc_, ast_error_get());  \
        cudaError_t e_ = cudaDeviceSynchronize();                                              \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s: %s: device fault after %s: %s\n", NAME, (what), #call,       \
                    cudaGetErrorString(e_));                                                   \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static void *dalloc(size_t bytes) {
    void *p = NULL;
    if (ast_cuda_alloc(&p, bytes ? bytes : 16, "a test buffer")) {
        fprintf(stderr, "%s: %s\n", NAME, ast_error_get());
        exit(1);
    }
    CK(cudaMemset(p, 0xFF, bytes ? bytes : 16)); /* poison: NaN (fp32, bf16), -1 (int32) */
    return p;
}
static void poison(void *d, size_t bytes) { CK(cudaMemset(d, 0xFF, bytes)); }
static void h2d(void *d, const void *h, size_t bytes) {
    CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
}
static void d2h(void *h, const void *d, size_t bytes) {
    CK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}
static void *hmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 16);
    if (!p) {
        fprintf(stderr, "%s: out of host memory (%zu bytes)\n", NAME, bytes);
        exit(1);
    }
    return p;
}

static float rbf(float x) { return ast_bf16_to_f32(ast_f32_to_bf16(x)); }

/* Uniform [lo, hi) rounded to bf16: bits into b (may be NULL), values into f (may be NULL). */
static void fill_bf16(uint16_t *b, float *f, int64_t n, ast_rng *r, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = ast_f32_to_bf16(lo + (hi - lo) * (float)ast_rng_uniform(r));
        if (b) b[i] = h;
        if (f) f[i] = ast_bf16_to_f32(h);
    }
}
static void fill_f32(float *f, int64_t n, ast_rng *r, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) f[i] = lo + (hi - lo) * (float)ast_rng_uniform(r);
}

/* got vs want over rows x cols (row strides ldg, ldw), rel L2 over all of them. On failure
 * prints the first bad element: the first non-finite one, else the first whose error exceeds
 * 4·tol·(|want| + rms(want)). */
static void expect_close(const char *op, const char *variant, const float *got, int ldg,
                         const float *want, int ldw, int rows, int cols, double tol,
                         const char *why) {
    double num = 0, den = 0;
    int64_t nonfinite = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double g = got[(int64_t)r * ldg + c], w = want[(int64_t)r * ldw + c];
            if (!isfinite(g) || !isfinite(w)) {
                nonfinite++;
                continue;
            }
            num += (g - w) * (g - w);
            den += w * w;
        }
    double err = nonfinite ? INFINITY : (den > 0 ? sqrt(num / den) : sqrt(num));
    CHECK(err <= tol, "%s %s [%d x %d]: rel L2 %.3g > %.3g (%s)", op, variant, rows, cols, err,
          tol, why);
    if (err <= tol) return;
    double rms = sqrt(den / ((double)rows * cols));
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double g = got[(int64_t)r * ldg + c], w = want[(int64_t)r * ldw + c];
            if (!isfinite(g) || !isfinite(w) || fabs(g - w) > 4 * tol * (fabs(w) + rms)) {
                fprintf(stderr,
                        "    %s %s: first bad (row %d, col %d): got %.7g want %.7g%s "
                        "(%lld non-finite outputs in all)\n",
                        op, variant, r, c, g, w,
                        isfinite(g) ? "" : " (never written, or NaN computed)",
                        (long long)nonfinite);
                return;
            }
        }
}

/* Bitwise equality of n 16-bit or 32-bit words; reports the first difference. */
static void expect_same_bits(const char *op, const char *variant, const void *got,
                             const void *want, int64_t n, int word) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t g = 0, w = 0;
        memcpy(&g, (const char *)got + i * word, (size_t)word);
        memcpy(&w, (const char *)want + i * word, (size_t)word);
        if (g != w) {
            CHECK(0, "%s %s: element %lld of %lld differs: got 0x%0*x want 0x%0*x", op, variant,
                  (long long)i, (long long)n, word * 2, g, word * 2, w);
            return;
        }
    }
    CHECK(1, "%s", "");
}

/* Counts elements of a strided bf16/fp32 device buffer outside [rows x cols] that changed
 * from `before` (host copy of the whole buffer taken before the op). */
static void expect_untouched(const char *op, const char *variant, const void *dev,
                             const void *before, int rows, int ld, int col0, int cols,
                             int word) {
    size_t bytes = (size_t)rows * ld * word;
    char *after = hmalloc(bytes);
    d2h(after, dev, bytes);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < ld; c++) {
            if (c >= col0 && c < col0 + cols) continue;
            size_t off = ((size_t)r * ld + c) * word;
            if (memcmp(after + off, (const char *)before + off, (size_t)word)) {
                CHECK(0, "%s %s: element (row %d, col %d) outside the output columns [%d, %d) "
                         "was written",
                      op, variant, r, c, col0, col0 + cols);
                free(after);
                return;
            }
        }
    CHECK(1, "%s", "");
    free(after);
}

static void bf16_to_f32_rows(const uint16_t *b, int ldb, float *f, int ldf, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) f[(int64_t)r * ldf + c] = ast_bf16_to_f32(b[(int64_t)r * ldb + c]);
}

/* ---- GEMM --------------------------------------------------------------------------------- */

static double gelu_erf(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

static void test_gemm(ast_gemm *g, ast_rng *rng) {
    typedef struct {
        int M, N, K, xpad, ypad, yoff;
    } gcase;
    /* ypad/yoff: y is a column slice [yoff, yoff + N) of rows of N + ypad (a fused-QKV view) */
    const gcase cases[] = {
        {1, 64, 64, 0, 0, 0},     {37, 128, 64, 0, 0, 0},     {37, 24, 40, 8, 0, 0},
        {130, 384, 128, 64, 0, 0}, {61, 128, 128, 0, 256, 128}, {257, 1536, 1536, 0, 0, 0},
    };
    const int n_cases = (int)(sizeof cases / sizeof *cases);
    for (int ci = 0; ci < n_cases; ci++) {
        const gcase cs = cases[ci];
        const int M = cs.M, N = cs.N, K = cs.K, ldx = K + cs.xpad, ldy = N + cs.ypad;
        uint16_t *xb = hmalloc(sizeof(uint16_t) * M * ldx), *wb = hmalloc(sizeof(uint16_t) * N * K);
        float *xf = hmalloc(sizeof(float) * M * ldx), *bias = hmalloc(sizeof(float) * N),
              *bias_r = hmalloc(sizeof(float) * N);
        uint16_t *bias_b = hmalloc(sizeof(uint16_t) * N);
        fill_bf16(xb, xf, (int64_t)M * ldx, rng, -1.f, 1.f);
        float ws = 2.f / sqrtf((float)K);
        fill_bf16(wb, NULL, (int64_t)N * K, rng, -ws, ws);
        fill_f32(bias, N, rng, -0.5f, 0.5f);
        for (int i = 0; i < N; i++) {
            bias_b[i] = ast_f32_to_bf16(bias[i]);
            bias_r[i] = ast_bf16_to_f32(bias_b[i]);
        }
        void *dx = dalloc(sizeof(uint16_t) * M * ldx), *dw = dalloc(sizeof(uint16_t) * N * K);
        void *dbias_f = dalloc(sizeof(float) * N), *dbias_b = dalloc(sizeof(uint16_t) * N);
        h2d(dx, xb, sizeof(uint16_t) * M * ldx);
        h2d(dw, wb, sizeof(uint16_t) * N * K);
        h2d(dbias_f, bias, sizeof(float) * N);
        h2d(dbias_b, bias_b, sizeof(uint16_t) * N);
        const size_t ybytes = sizeof(float) * (size_t)M * ldy;
        void *dy = dalloc(ybytes);
        float *yref = hmalloc(ybytes), *yinit = hmalloc(ybytes), *got = hmalloc(ybytes);
        void *before = hmalloc(ybytes), *yraw = hmalloc(ybytes);

        for (int out = 0; out < 2; out++)
            for (int epi = 0; epi < 3; epi++)
                for (int acc = 0; acc < 2; acc++) {
                    const int f32 = out == AST_GEMM_OUT_F32;
                    if (acc && (!f32 || epi == AST_GEMM_EPI_GELU_BIAS)) continue;
                    char var[96];
                    snprintf(var, sizeof var, "M=%d N=%d K=%d ldx=%d ldy=%d yoff=%d %s %s%s", M,
                             N, K, ldx, ldy, cs.yoff, f32 ? "fp32" : "bf16",
                             epi == 0 ? "none" : epi == 1 ? "bias" : "gelu_bias",
                             acc ? " accumulate" : "");
                    const int word = f32 ? 4 : 2;
                    poison(dy, ybytes);
                    if (acc) { /* y starts as a random residual */
                        fill_f32(yinit, (int64_t)M * ldy, rng, -1.f, 1.f);
                        h2d(dy, yinit, ybytes);
                        memcpy(yref, yinit, ybytes);
                    }
                    d2h(before, dy, (size_t)M * ldy * word);
                    const float *bref = f32 ? bias : bias_r;
                    ast_cpu_gemm(M, N, K, xf, ldx, wb, AST_DT_BF16, K,
                                 epi == AST_GEMM_EPI_NONE ? NULL : bref, yref + cs.yoff, ldy,
                                 epi == AST_GEMM_EPI_GELU_BIAS ? AST_EPI_GELU_TANH : AST_EPI_NONE,
                                 acc);
                    char *ydev = (char *)dy + (size_t)cs.yoff * word;
                    OP(var, ast_gemm_run(g, M, N, K, dx, ldx, dw, K,
                                         epi == AST_GEMM_EPI_NONE ? NULL
                                                                  : (f32 ? dbias_f : dbias_b),
                                         ydev, ldy, (ast_gemm_out)out, (ast_gemm_epi)epi, acc,
                                         0));
                    d2h(yraw, dy, (size_t)M * ldy * word);
                    if (f32)
                        memcpy(got, yraw, ybytes);
                    else
                        bf16_to_f32_rows(yraw, ldy, got, ldy, M, ldy);
                    /* fp32 out: only accumulation order differs (~1e-6); bf16 out: one rounding
                     * of the output, <= 2^-9 relative per element => rel L2 <= 2e-3 */
                    expect_close("gemm", var, got + cs.yoff, ldy, yref + cs.yoff, ldy, M, N,
                                 f32 ? 1e-4 : 4e-3,
                                 f32 ? "fp32 accumulation order" : "one bf16 output rounding");
                    expect_untouched("gemm", var, dy, before, M, ldy, cs.yoff, N, word);
                }
        /* the cache: the same shapes again add no entry */
        int cached = ast_gemm_cached_shapes(g);
        OP("gemm cache", ast_gemm_run(g, M, N, K, dx, ldx, dw, K, dbias_b, (char *)dy + 2 * cs.yoff,
                                      ldy, AST_GEMM_OUT_BF16, AST_GEMM_EPI_BIAS, 0, 0));
        CHECK(ast_gemm_cached_shapes(g) == cached, "gemm: a repeated shape added a cache entry (%d -> %d)",
              cached, ast_gemm_cached_shapes(g));
        free(xb); free(wb); free(xf); free(bias); free(bias_r); free(bias_b);
        free(yref); free(yinit); free(got); free(before); free(yraw);
        ast_cuda_free(dx); ast_cuda_free(dw); ast_cuda_free(dbias_f); ast_cuda_free(dbias_b);
        ast_cuda_free(dy);
    }

    /* Which GELU does cuBLASLt's GELU_BIAS epilogue compute? Pre-activations spread over about
     * [-4, 4], where the tanh and erf forms differ by up to 4.7e-4 (at |x| = 2.7). Compared in
     * fp32 against both forms applied to the BIAS product of the same inputs, so only fp32 noise
     * (~1e-6) and the epilogue's own tanh approximation remain: it must be closer (RMS) to the
     * tanh form than to the erf form, and within 2e-3 of it everywhere (far under a bf16 ulp of
     * such values). */
    {
        const int M = 64, N = 256, K = 128;
        uint16_t *xb = hmalloc(2 * M * K), *wb = hmalloc(2 * N * K);
        float *bias = hmalloc(4 * N), *yb = hmalloc(4 * M * N), *yg = hmalloc(4 * M * N),
              *tanh_ref = hmalloc(4 * M * N);
        fill_bf16(xb, NULL, (int64_t)M * K, rng, -1.f, 1.f);
        fill_bf16(wb, NULL, (int64_t)N * K, rng, -0.3f, 0.3f);
        fill_f32(bias, N, rng, -1.f, 1.f);
        void *dx = dalloc(2 * M * K), *dw = dalloc(2 * N * K), *db = dalloc(4 * N),
             *dy = dalloc(4 * M * N);
        h2d(dx, xb, 2 * M * K);
        h2d(dw, wb, 2 * N * K);
        h2d(db, bias, 4 * N);
        OP("gelu probe bias", ast_gemm_run(g, M, N, K, dx, K, dw, K, db, dy, N, AST_GEMM_OUT_F32,
                                           AST_GEMM_EPI_BIAS, 0, 0));
        d2h(yb, dy, 4 * M * N);
        poison(dy, 4 * M * N);
        OP("gelu probe gelu", ast_gemm_run(g, M, N, K, dx, K, dw, K, db, dy, N, AST_GEMM_OUT_F32,
                                           AST_GEMM_EPI_GELU_BIAS, 0, 0));
        d2h(yg, dy, 4 * M * N);
        memcpy(tanh_ref, yb, 4 * M * N);
        ast_cpu_gelu_tanh(tanh_ref, (int64_t)M * N);
        double m_tanh = 0, m_erf = 0, s_tanh = 0, s_erf = 0, xmax = 0;
        for (int i = 0; i < M * N; i++) {
            double dt = fabs((double)yg[i] - tanh_ref[i]), de = fabs((double)yg[i] - gelu_erf(yb[i]));
            if (!(dt <= m_tanh)) m_tanh = dt; /* NaN propagates */
            if (!(de <= m_erf)) m_erf = de;
            s_tanh += dt * dt;
            s_erf += de * de;
            if (fabs(yb[i]) > xmax) xmax = fabs(yb[i]);
        }
        s_tanh = sqrt(s_tanh / (M * N));
        s_erf = sqrt(s_erf / (M * N));
        printf("%s: cuBLASLt GELU_BIAS epilogue vs tanh form: max %.3g rms %.3g; vs erf form: "
               "max %.3g rms %.3g (pre-activations up to |%.2f|)\n",
               NAME, m_tanh, s_tanh, m_erf, s_erf, xmax);
        CHECK(m_tanh < 2e-3 && s_tanh < s_erf,
              "cuBLASLt's GELU_BIAS epilogue is not the tanh GELU Wan uses (vs tanh: max %.3g rms "
              "%.3g; vs erf: max %.3g rms %.3g): call ast_gemm_set_own_gelu(g, 1) in "
              "kernels/forward_cuda.cu",
              m_tanh, s_tanh, m_erf, s_erf);
        /* our own GELU path (bf16 out): bf16 pre-activation, GELU, bf16 again: two roundings,
         * each <= 2^-9 relative, GELU's slope <= 1.13 => rel L2 well under 8e-3 */
        uint16_t *yo = hmalloc(2 * M * N);
        float *yof = hmalloc(4 * M * N), *ref = hmalloc(4 * M * N);
        for (int i = 0; i < N; i++) bias[i] = rbf(bias[i]);
        uint16_t *bb = hmalloc(2 * N);
        for (int i = 0; i < N; i++) bb[i] = ast_f32_to_bf16(bias[i]);
        h2d(db, bb, 2 * N);
        ast_gemm_set_own_gelu(g, 1);
        poison(dy, 4 * M * N);
        OP("own gelu", ast_gemm_run(g, M, N, K, dx, K, dw, K, db, dy, N, AST_GEMM_OUT_BF16,
                                    AST_GEMM_EPI_GELU_BIAS, 0, 0));
        ast_gemm_set_own_gelu(g, 0);
        d2h(yo, dy, 2 * M * N);
        bf16_to_f32_rows(yo, N, yof, N, M, N);
        float *xf = hmalloc(4 * M * K);
        for (int i = 0; i < M * K; i++) xf[i] = ast_bf16_to_f32(xb[i]);
        ast_cpu_gemm(M, N, K, xf, K, wb, AST_DT_BF16, K, bias, ref, N, AST_EPI_GELU_TANH, 0);
        expect_close("gemm", "own GELU (bias + ast_cuda_gelu_tanh_bf16)", yof, N, ref, N, M, N,
                     8e-3, "two bf16 roundings");
        free(xb); free(wb); free(bias); free(yb); free(yg); free(tanh_ref); free(yo); free(yof);
        free(ref); free(bb); free(xf);
        ast_cuda_free(dx); ast_cuda_free(dw); ast_cuda_free(db); ast_cuda_free(dy);
    }

    /* argument checks (no device work) */
    CHECK_FAILS_WITH(ast_gemm_run(g, 4, 8, 8, NULL, 8, NULL, 8, NULL, NULL, 8, AST_GEMM_OUT_BF16,
                                  AST_GEMM_EPI_NONE, 1, 0),
                     "accumulate");
    CHECK_FAILS_WITH(ast_gemm_run(g, 4, 8, 8, NULL, 4, NULL, 8, NULL, NULL, 8, AST_GEMM_OUT_BF16,
                                  AST_GEMM_EPI_NONE, 0, 0),
                     "GEMM");
}

/* ---- LayerNorm ---------------------------------------------------------------------------- */

static void test_layernorm(ast_rng *rng) {
    typedef struct {
        int L, C, ldx, ldy;
    } lcase;
    const lcase cases[] = {
        {37, 64, 64, 64},       {5, 128, 128, 136},   {33, 1536, 1536, 1536},
        {3, 5120, 5120, 5120},  {7, 100, 100, 100},   {9, 77, 77, 80}, /* scalar: C % 4 */
        {6, 128, 130, 128},     /* scalar: ldx % 4 */ {1, 2560, 2560, 2560},
    };
    const float eps = 1e-6f;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const lcase cs = cases[ci];
        const int L = cs.L, C = cs.C, Lsrc = L + 11;
        float *x = hmalloc(sizeof(float) * Lsrc * cs.ldx), *xg = hmalloc(sizeof(float) * L * C);
        float *vec[4], *ref = hmalloc(sizeof(float) * L * C), *got = hmalloc(sizeof(float) * L * cs.ldy);
        uint16_t *yb = hmalloc(sizeof(uint16_t) * L * cs.ldy), *before = hmalloc(sizeof(uint16_t) * L * cs.ldy);
        int32_t *rows = hmalloc(sizeof(int32_t) * L);
        for (int r = 0; r < Lsrc; r++) /* a per-row offset, so the mean matters */
            fill_f32(x + (int64_t)r * cs.ldx, cs.ldx, rng, -2.f + r % 5, 6.f + r % 5);
        for (int r = 0; r < L; r++) rows[r] = ast_rng_below(rng, Lsrc);
        void *dx = dalloc(sizeof(float) * Lsrc * cs.ldx), *dy = dalloc(sizeof(uint16_t) * L * cs.ldy);
        void *drows = dalloc(sizeof(int32_t) * L), *dvec[4];
        h2d(dx, x, sizeof(float) * Lsrc * cs.ldx);
        h2d(drows, rows, sizeof(int32_t) * L);
        for (int v = 0; v < 4; v++) {
            vec[v] = hmalloc(sizeof(float) * C);
            fill_f32(vec[v], C, rng, v == 0 ? 0.5f : -0.5f, v == 0 ? 1.5f : 0.5f);
            dvec[v] = dalloc(sizeof(float) * C);
            h2d(dvec[v], vec[v], sizeof(float) * C);
        }
        /* variants: 0 plain (LN1/LN2 before modulation... none), 1 modulated, 2 affine (norm3);
         * gathered rows for odd variants of the case index */
        for (int var = 0; var < 3; var++)
            for (int gather = 0; gather < 2; gather++) {
                const float *w = var == 2 ? vec[0] : NULL, *b = var == 2 ? vec[1] : NULL;
                const float *sc = var == 1 ? vec[2] : NULL, *sh = var == 1 ? vec[3] : NULL;
                char vn[96];
                snprintf(vn, sizeof vn, "[%d x %d] ldx %d ldy %d %s%s", L, C, cs.ldx, cs.ldy,
                         var == 0 ? "plain" : var == 1 ? "modulated" : "affine",
                         gather ? " gathered rows" : "");
                for (int r = 0; r < L; r++)
                    memcpy(xg + (int64_t)r * C, x + (int64_t)(gather ? rows[r] : r) * cs.ldx,
                           sizeof(float) * C);
                ast_cpu_layernorm(L, C, xg, C, ref, C, w, b, sc, sh, eps);
                poison(dy, sizeof(uint16_t) * L * cs.ldy);
                d2h(before, dy, sizeof(uint16_t) * L * cs.ldy);
                OP(vn, ast_cuda_layernorm(L, C, dx, cs.ldx, gather ? drows : NULL, dy, cs.ldy,
                                          var == 2 ? dvec[0] : NULL, var == 2 ? dvec[1] : NULL,
                                          var == 1 ? dvec[2] : NULL, var == 1 ? dvec[3] : NULL,
                                          eps, 0));
                d2h(yb, dy, sizeof(uint16_t) * L * cs.ldy);
                bf16_to_f32_rows(yb, cs.ldy, got, cs.ldy, L, C);
                /* fp32 statistics on both sides; one bf16 rounding of the output */
                expect_close("layernorm", vn, got, cs.ldy, ref, C, L, C, 4e-3,
                             "one bf16 output rounding");
                expect_untouched("layernorm", vn, dy, before, L, cs.ldy, 0, C, 2);
            }
        free(x); free(xg); free(ref); free(got); free(yb); free(before); free(rows);
        ast_cuda_free(dx); ast_cuda_free(dy); ast_cuda_free(drows);
        for (int v = 0; v < 4; v++) {
            free(vec[v]);
            ast_cuda_free(dvec[v]);
        }
    }
}

/* The reuse on the host, as forward_cpu.c does it (the cache rounded to bf16 as the GPU keeps
 * it): every row r with flags[r] == 0 becomes x + cache (residual) or cache, and skip[r] += 1. */
static void ref_reuse(int rows, int C, const uint8_t *flags, const uint16_t *cache, int ldc,
                      int residual, float *x, int ldx, int32_t *skip) {
    for (int r = 0; r < rows; r++) {
        if (flags[r]) continue;
        for (int i = 0; i < C; i++) {
            const float c = ast_bf16_to_f32(cache[(int64_t)r * ldc + i]);
            float *p = x + (int64_t)r * ldx + i;
            *p = residual ? *p + c : c;
        }
        skip[r]++;
    }
}

/* ast_cuda_layernorm_ex: the reuse (the previous block's, on the rows it did not compute)
 * bit-identical to ast_cuda_tw_reuse's sums, skip counting the rows that took it, y = LN of the
 * new x, and the copy-out of the selected rows' y into a compacted buffer (the Q projection's
 * input): bitwise the same bf16 as y; a flagged row missing from sel is not copied. */
static void test_layernorm_ex(ast_rng *rng) {
    const int cases[][3] = {{37, 1536, 1536}, {5, 5120, 5128}, {9, 77, 80} /* scalar */,
                            {6, 128, 130} /* scalar: ldc % 4 */};
    const float eps = 1e-6f;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int var = 0; var < 3; var++) {
            /* 0: reuse, residual cache; 1: reuse, output cache; 2: copy-out alone, with a row
             * flagged but missing from sel (the last) and sel's new last row unflagged: only the
             * missing row could write that slot, which must stay poisoned */
            const int L = cases[ci][0], C = cases[ci][1], ldc = cases[ci][2];
            const int add = var < 2, residual = var != 1;
            float *x = hmalloc(sizeof(float) * L * C), *sc = hmalloc(sizeof(float) * C),
                  *sh = hmalloc(sizeof(float) * C), *ref = hmalloc(sizeof(float) * L * C),
                  *gx = hmalloc(sizeof(float) * L * C), *got = hmalloc(sizeof(float) * L * C);
            uint16_t *cache = hmalloc(sizeof(uint16_t) * L * ldc), *yb = hmalloc(sizeof(uint16_t) * L * C),
                     *ob = hmalloc(sizeof(uint16_t) * L * ldc);
            int32_t *skip = hmalloc(sizeof(int32_t) * L), *gskip = hmalloc(sizeof(int32_t) * L),
                    *sel = hmalloc(sizeof(int32_t) * L);
            uint8_t *flags = hmalloc((size_t)L), *oflags = hmalloc((size_t)L);
            for (int r = 0; r < L; r++)
                fill_f32(x + (int64_t)r * C, C, rng, -2.f + r % 5, 6.f + r % 5);
            fill_bf16(cache, NULL, (int64_t)L * ldc, rng, -3.f, 3.f);
            fill_f32(sc, C, rng, -0.5f, 0.5f);
            fill_f32(sh, C, rng, -0.5f, 0.5f);
            int K = 0;
            for (int r = 0; r < L; r++) {
                flags[r] = (uint8_t)(r == 0 ? 0 : r == 1 ? 1 : ast_rng_below(rng, 2));
                oflags[r] = (uint8_t)(r == L - 1 || (var == 2 && r == 0) || ast_rng_below(rng, 2));
                if (oflags[r]) sel[K++] = r;
                skip[r] = ast_rng_below(rng, 6);
            }
            if (var == 2) { /* K >= 2: rows 0 and L - 1 are flagged */
                K--;                    /* row L - 1 stays flagged, no longer in sel */
                oflags[sel[K - 1]] = 0; /* in sel, unflagged: its slot K - 1 is not written */
            }
            const int kcopied = var == 2 ? K - 1 : K; /* slots the copy-out fills */
            void *dx = dalloc(sizeof(float) * L * C), *dc = dalloc(sizeof(uint16_t) * L * ldc),
                 *dy = dalloc(sizeof(uint16_t) * L * C), *dsk = dalloc(sizeof(int32_t) * L),
                 *dfl = dalloc((size_t)L), *dofl = dalloc((size_t)L),
                 *dsel = dalloc(sizeof(int32_t) * L), *dout = dalloc(sizeof(uint16_t) * L * ldc),
                 *dsc = dalloc(sizeof(float) * C), *dsh = dalloc(sizeof(float) * C);
            h2d(dx, x, sizeof(float) * L * C);
            h2d(dc, cache, sizeof(uint16_t) * L * ldc);
            h2d(dsk, skip, sizeof(int32_t) * L);
            h2d(dfl, flags, (size_t)L);
            h2d(dofl, oflags, (size_t)L);
            h2d(dsel, sel, sizeof(int32_t) * L);
            h2d(dsc, sc, sizeof(float) * C);
            h2d(dsh, sh, sizeof(float) * C);
            if (add) ref_reuse(L, C, flags, cache, ldc, residual, x, C, skip); /* then LN */
            ast_cpu_layernorm(L, C, x, C, ref, C, NULL, NULL, sc, sh, eps);
            static const char *const vnames[] = {"reuse (residual cache)", "reuse (output cache)",
                                                 "copy-out alone"};
            char vn[96];
            snprintf(vn, sizeof vn, "[%d x %d] ldc %d K %d %s", L, C, ldc, K, vnames[var]);
            ast_ln_extra ex = {0};
            if (add) ex.flags = dfl, ex.cache = dc, ex.ldc = ldc, ex.residual = residual, ex.skip = dsk;
            ex.out_flags = dofl, ex.sel = dsel, ex.K = K, ex.out = dout, ex.ldo = ldc;
            OP(vn, ast_cuda_layernorm_ex(L, C, dx, C, &ex, dy, C, NULL, NULL, dsc, dsh, eps, 0));
            d2h(gx, dx, sizeof(float) * L * C);
            d2h(gskip, dsk, sizeof(int32_t) * L);
            d2h(yb, dy, sizeof(uint16_t) * L * C);
            d2h(ob, dout, sizeof(uint16_t) * L * ldc);
            bf16_to_f32_rows(yb, C, got, C, L, C);
            expect_same_bits("layernorm_ex x", vn, gx, x, (int64_t)L * C, 4);
            expect_same_bits("layernorm_ex skip", vn, gskip, skip, L, 4);
            expect_close("layernorm_ex", vn, got, C, ref, C, L, C, 4e-3,
                         "one bf16 output rounding");
            for (int k = 0; k < kcopied; k++) /* row sel[k] of y, bitwise */
                expect_same_bits("layernorm_ex copy-out", vn, ob + (int64_t)k * ldc,
                                 yb + (int64_t)sel[k] * C, C, 2);
            { /* padding columns and the slots not filled untouched (still poisoned) */
                int64_t bad = -1;
                for (int64_t i = 0; i < (int64_t)L * ldc && bad < 0; i++)
                    if ((i / ldc >= kcopied || i % ldc >= C) && ob[i] != 0xFFFF) bad = i;
                CHECK(bad < 0, "layernorm_ex copy-out %s: element (row %lld, col %lld) outside "
                      "the %d x %d filled output was written", vn, (long long)(bad / ldc),
                      (long long)(bad % ldc), kcopied, C);
            }
            free(x); free(sc); free(sh); free(ref); free(gx); free(got); free(cache); free(yb);
            free(ob); free(skip); free(gskip); free(sel); free(flags); free(oflags);
            ast_cuda_free(dx); ast_cuda_free(dc); ast_cuda_free(dy); ast_cuda_free(dsk);
            ast_cuda_free(dfl); ast_cuda_free(dofl); ast_cuda_free(dsel); ast_cuda_free(dout);
            ast_cuda_free(dsc); ast_cuda_free(dsh);
        }
}

/* ---- RMSNorm + RoPE ----------------------------------------------------------------------- */

static void test_rmsnorm_rope(ast_rng *rng) {
    typedef struct {
        int L, C, hd, ld, off, rope, use_tok, gf, gh, gw;
    } rcase;
    const rcase cases[] = {
        {37, 128, 64, 128, 0, 1, 0, 4, 3, 4},          /* rows are tokens 0..36 */
        {33, 1536, 128, 3 * 1536, 1536, 1, 1, 6, 30, 52},/* k slice of a fused QKV row */
        {3, 5120, 128, 5120, 0, 1, 1, 21, 45, 80},
        {17, 1536, 128, 1536, 0, 0, 0, 1, 1, 1},        /* cross-attention q/k: no RoPE */
        {9, 128, 128, 130, 0, 1, 1, 2, 8, 9},           /* scalar fallback: ld % 8 */
        {11, 256, 128, 256, 0, 1, 1, 3, 1024, 1000},    /* positions up to 1023 */
        {5, 2 * 64, 64, 2 * 64 + 8, 8, 0, 0, 1, 1, 1},  /* column offset 8, no RoPE */
    };
    const float eps = 1e-6f;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const rcase cs = cases[ci];
        const int L = cs.L, C = cs.C, ld = cs.ld;
        ast_rope_table tab;
        if (ast_rope_table_init(&tab, cs.hd)) {
            CHECK(0, "ast_rope_table_init(%d): %s", cs.hd, ast_error_get());
            return;
        }
        const size_t tbytes = sizeof(float) * (size_t)tab.npos * cs.hd;
        void *dtab = dalloc(tbytes);
        h2d(dtab, tab.cs, tbytes);
        uint16_t *xb = hmalloc(sizeof(uint16_t) * L * ld), *out = hmalloc(sizeof(uint16_t) * L * ld);
        float *ref = hmalloc(sizeof(float) * L * C), *got = hmalloc(sizeof(float) * L * C),
              *w = hmalloc(sizeof(float) * C);
        int32_t *tok = hmalloc(sizeof(int32_t) * L);
        fill_bf16(xb, NULL, (int64_t)L * ld, rng, -2.f, 2.f);
        fill_f32(w, C, rng, 0.5f, 1.5f);
        const int64_t ntok = (int64_t)cs.gf * cs.gh * cs.gw;
        for (int r = 0; r < L; r++)
            tok[r] = cs.use_tok ? (int32_t)(ast_rng_uniform(rng) * (double)ntok) : r;
        if (cs.use_tok && ntok > 2) tok[0] = (int32_t)(ntok - 1); /* the last grid position */
        for (int r = 0; r < L; r++)
            for (int c = 0; c < C; c++)
                ref[(int64_t)r * C + c] = ast_bf16_to_f32(xb[(int64_t)r * ld + cs.off + c]);
        ast_cpu_rmsnorm(L, C, ref, C, w, eps);
        /* a shard's rows start at token tok0 (sequence parallelism): one frame in */
        const int tok0 = cs.use_tok ? 0 : cs.gh * cs.gw;
        if (cs.rope) ast_cpu_rope(L, C / cs.hd, ref, C, cs.use_tok ? tok : NULL, tok0, cs.gh, cs.gw, &tab);
        void *dx = dalloc(sizeof(uint16_t) * L * ld), *dw = dalloc(sizeof(float) * C),
             *dtok = dalloc(sizeof(int32_t) * L);
        h2d(dx, xb, sizeof(uint16_t) * L * ld);
        h2d(dw, w, sizeof(float) * C);
        h2d(dtok, tok, sizeof(int32_t) * L);
        char vn[128];
        snprintf(vn, sizeof vn, "[%d x %d] head_dim %d ld %d col %d %s%s grid %dx%dx%d", L, C,
                 cs.hd, ld, cs.off, cs.rope ? "rope" : "no rope",
                 cs.use_tok ? " gathered tokens" : "", cs.gf, cs.gh, cs.gw);
        OP(vn, ast_cuda_rmsnorm_rope(L, C, (uint16_t *)dx + cs.off, ld, dw, eps,
                                     cs.rope ? dtab : NULL, tab.npos, cs.hd,
                                     cs.use_tok ? dtok : NULL, tok0, cs.gh, cs.gw, 0));
        d2h(out, dx, sizeof(uint16_t) * L * ld);
        for (int r = 0; r < L; r++)
            for (int c = 0; c < C; c++)
                got[(int64_t)r * C + c] = ast_bf16_to_f32(out[(int64_t)r * ld + cs.off + c]);
        /* all in fp32 registers, one bf16 rounding at the end (the CPU rounds fp32 twice) */
        expect_close("rmsnorm_rope", vn, got, C, ref, C, L, C, 4e-3, "one bf16 output rounding");
        expect_untouched("rmsnorm_rope", vn, dx, xb, L, ld, cs.off, C, 2);
        free(xb); free(out); free(ref); free(got); free(w); free(tok);
        ast_cuda_free(dx); ast_cuda_free(dw); ast_cuda_free(dtok); ast_cuda_free(dtab);
        ast_rope_table_free(&tab);
    }
}

/* ---- residual ------------------------------------------------------------------------------ */

static void test_residual(ast_rng *rng) {
    typedef struct {
        int L, C, ld;
    } rc_;
    const rc_ cases[] = {{37, 128, 128}, {19, 1536, 1536}, {7, 77, 77}, {5, 64, 68}};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int L = cases[ci].L, C = cases[ci].C, ld = cases[ci].ld, Lsrc = L + 5;
        float *in = hmalloc(sizeof(float) * Lsrc * ld), *yf = hmalloc(sizeof(float) * L * ld),
              *gate = hmalloc(sizeof(float) * C), *ref = hmalloc(sizeof(float) * L * ld),
              *got = hmalloc(sizeof(float) * L * ld);
        uint16_t *yb = hmalloc(sizeof(uint16_t) * L * ld);
        int32_t *rows = hmalloc(sizeof(int32_t) * L);
        fill_f32(in, (int64_t)Lsrc * ld, rng, -3.f, 3.f);
        fill_bf16(yb, yf, (int64_t)L * ld, rng, -2.f, 2.f); /* yf = the bf16 values */
        fill_f32(gate, C, rng, -1.f, 1.f);
        for (int r = 0; r < L; r++) rows[r] = ast_rng_below(rng, Lsrc);
        void *din = dalloc(sizeof(float) * Lsrc * ld), *dyf = dalloc(sizeof(float) * L * ld),
             *dyb = dalloc(sizeof(uint16_t) * L * ld), *dg = dalloc(sizeof(float) * C),
             *drows = dalloc(sizeof(int32_t) * L), *dout = dalloc(sizeof(float) * L * ld);
        h2d(dyf, yf, sizeof(float) * L * ld);
        h2d(dyb, yb, sizeof(uint16_t) * L * ld);
        h2d(dg, gate, sizeof(float) * C);
        h2d(drows, rows, sizeof(int32_t) * L);
        for (int v = 0; v < 8; v++) {
            const int y32 = v & 1, gated = (v >> 1) & 1, mode = v >> 2; /* mode 0 in place, 1 gather */
            char vn[96];
            snprintf(vn, sizeof vn, "[%d x %d] ld %d y %s%s%s", L, C, ld, y32 ? "fp32" : "bf16",
                     gated ? " gated" : "", mode ? " gathered input" : " in place");
            for (int r = 0; r < L; r++)
                for (int c = 0; c < C; c++) {
                    const float a = in[(int64_t)(mode ? rows[r] : r) * ld + c];
                    ref[(int64_t)r * ld + c] =
                        (float)((double)a + (gated ? (double)gate[c] : 1.0) * yf[(int64_t)r * ld + c]);
                }
            h2d(din, in, sizeof(float) * Lsrc * ld);
            poison(dout, sizeof(float) * L * ld);
            float *o = mode ? (float *)dout : (float *)din;
            OP(vn, ast_cuda_residual(L, C, o, ld, din, ld, mode ? drows : NULL, y32 ? dyf : dyb, ld,
                                     y32, gated ? dg : NULL, 0));
            d2h(got, o, sizeof(float) * L * ld);
            /* fp32: a fused multiply-add differs from the double reference by <= 1 ulp */
            expect_close("residual", vn, got, ld, ref, ld, L, C, 1e-6, "fp32 rounding");
        }
        free(in); free(yf); free(gate); free(ref); free(got); free(yb); free(rows);
        ast_cuda_free(din); ast_cuda_free(dyf); ast_cuda_free(dyb); ast_cuda_free(dg);
        ast_cuda_free(drows); ast_cuda_free(dout);
    }
}

/* ---- patchify / unpatchify ----------------------------------------------------------------- */

static void test_patchify(ast_rng *rng) {
    const int shapes[][7] = {{16, 3, 6, 10, 1, 2, 2}, {16, 4, 6, 4, 2, 2, 2}, {3, 1, 2, 2, 1, 2, 2}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int C = shapes[si][0], F = shapes[si][1], H = shapes[si][2], W = shapes[si][3];
        const int pt = shapes[si][4], ph = shapes[si][5], pw = shapes[si][6];
        const int gf = F / pt, gh = H / ph, gw = W / pw, N = gf * gh * gw, P = C * pt * ph * pw;
        const int ldp = P + 8;
        const int64_t nx = (int64_t)C * F * H * W;
        float *x = hmalloc(sizeof(float) * nx), *y = hmalloc(sizeof(float) * N * P),
              *outref = hmalloc(sizeof(float) * nx), *out = hmalloc(sizeof(float) * nx);
        uint16_t *pref = hmalloc(sizeof(uint16_t) * N * ldp), *pg = hmalloc(sizeof(uint16_t) * N * ldp);
        fill_f32(x, nx, rng, -3.f, 3.f);
        fill_f32(y, (int64_t)N * P, rng, -3.f, 3.f);
        memset(pref, 0xFF, sizeof(uint16_t) * N * ldp);
        /* wan21.md §1.3: token n = (f·H' + i)·W' + j, column ((c·pt + at)·ph + a)·pw + b */
        for (int f = 0; f < gf; f++)
            for (int i = 0; i < gh; i++)
                for (int j = 0; j < gw; j++)
                    for (int c = 0; c < C; c++)
                        for (int at = 0; at < pt; at++)
                            for (int a = 0; a < ph; a++)
                                for (int b = 0; b < pw; b++) {
                                    int n = (f * gh + i) * gw + j, k = ((c * pt + at) * ph + a) * pw + b;
                                    int64_t src = (((int64_t)c * F + f * pt + at) * H + i * ph + a) * W + j * pw + b;
                                    pref[(int64_t)n * ldp + k] = ast_f32_to_bf16(x[src]);
                                    /* §1.5: out channel k' = ((at·ph + a)·pw + b)·C + c */
                                    outref[src] = y[(int64_t)n * P + ((at * ph + a) * pw + b) * C + c];
                                }
        void *dx = dalloc(sizeof(float) * nx), *dp = dalloc(sizeof(uint16_t) * N * ldp),
             *dy = dalloc(sizeof(float) * N * P), *dout = dalloc(sizeof(float) * nx);
        h2d(dx, x, sizeof(float) * nx);
        h2d(dy, y, sizeof(float) * N * P);
        char vn[96];
        snprintf(vn, sizeof vn, "[%d, %d, %d, %d] patch (%d, %d, %d)", C, F, H, W, pt, ph, pw);
        OP(vn, ast_cuda_patchify(dx, C, F, H, W, pt, ph, pw, dp, ldp, 0));
        d2h(pg, dp, sizeof(uint16_t) * N * ldp);
        expect_same_bits("patchify", vn, pg, pref, (int64_t)N * ldp, 2); /* padding stays 0xFFFF */
        OP(vn, ast_cuda_unpatchify(dy, P, C, F, H, W, pt, ph, pw, dout, 0));
        d2h(out, dout, sizeof(float) * nx);
        expect_same_bits("unpatchify", vn, out, outref, nx, 4);
        free(x); free(y); free(outref); free(out); free(pref); free(pg);
        ast_cuda_free(dx); ast_cuda_free(dp); ast_cuda_free(dy); ast_cuda_free(dout);
    }
}

/* ---- time embedding, small vectors ---------------------------------------------------------- */

static void test_time_path(ast_rng *rng) {
    const float ts[] = {999.f, 500.5f, 0.f, 3.f};
    const int fd = 256, half = 128;
    float *dt = dalloc(sizeof(float)), *dout = dalloc(sizeof(float) * fd);
    float got[256], ref[256];
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
        for (int k = 0; k < half; k++) {
            double phi = (double)ts[i] * pow(10000.0, -(double)k / half);
            ref[k] = (float)cos(phi);
            ref[half + k] = (float)sin(phi);
        }
        h2d(dt, &ts[i], sizeof(float));
        poison(dout, sizeof(float) * fd);
        char vn[48];
        snprintf(vn, sizeof vn, "t=%g", ts[i]);
        OP(vn, ast_cuda_sinusoid(dt, fd, dout, 0));
        d2h(got, dout, sizeof(float) * fd);
        /* float64 on both sides, then one rounding to fp32 */
        expect_close("sinusoid", vn, got, fd, ref, fd, 1, fd, 1e-6, "fp64 then fp32 rounding");
    }
    ast_cuda_free(dt);
    ast_cuda_free(dout);

    const int gshape[][2] = {{96, 256}, {200, 100}, {33, 101}, {1536, 1536}};
    for (size_t si = 0; si < sizeof gshape / sizeof *gshape; si++) {
        const int N = gshape[si][0], K = gshape[si][1];
        float *W = hmalloc(sizeof(float) * N * K), *x = hmalloc(sizeof(float) * K),
              *b = hmalloc(sizeof(float) * N), *y = hmalloc(sizeof(float) * N),
              *yr = hmalloc(sizeof(float) * N), *xa = hmalloc(sizeof(float) * K);
        fill_f32(W, (int64_t)N * K, rng, -0.1f, 0.1f);
        fill_f32(x, K, rng, -4.f, 4.f);
        fill_f32(b, N, rng, -1.f, 1.f);
        void *dW = dalloc(sizeof(float) * N * K), *dx = dalloc(sizeof(float) * K),
             *db = dalloc(sizeof(float) * N), *dy = dalloc(sizeof(float) * N);
        h2d(dW, W, sizeof(float) * N * K);
        h2d(dx, x, sizeof(float) * K);
        h2d(db, b, sizeof(float) * N);
        for (int silu = 0; silu < 2; silu++) {
            memcpy(xa, x, sizeof(float) * K);
            if (silu) ast_cpu_silu(xa, K);
            for (int n = 0; n < N; n++) {
                double acc = b[n];
                for (int k = 0; k < K; k++) acc += (double)W[(int64_t)n * K + k] * xa[k];
                yr[n] = (float)acc;
            }
            poison(dy, sizeof(float) * N);
            char vn[64];
            snprintf(vn, sizeof vn, "N=%d K=%d%s", N, K, silu ? " silu" : "");
            OP(vn, ast_cuda_gemv_f32(N, K, dW, dx, silu, db, dy, 0));
            d2h(y, dy, sizeof(float) * N);
            /* fp32 sums of K terms vs a double reference (and SiLU's expf) */
            expect_close("gemv_f32", vn, y, N, yr, N, 1, N, 2e-5, "fp32 accumulation");
        }
        free(W); free(x); free(b); free(y); free(yr); free(xa);
        ast_cuda_free(dW); ast_cuda_free(dx); ast_cuda_free(db); ast_cuda_free(dy);
    }

    /* E[l] = modulation[l] + e0, all layers at once */
    const int n = 3 * 6 * 128, bn = 6 * 128;
    float *a = hmalloc(sizeof(float) * n), *bb = hmalloc(sizeof(float) * bn),
          *o = hmalloc(sizeof(float) * n), *r = hmalloc(sizeof(float) * n);
    fill_f32(a, n, rng, -1.f, 1.f);
    fill_f32(bb, bn, rng, -1.f, 1.f);
    for (int i = 0; i < n; i++) r[i] = a[i] + bb[i % bn];
    void *da = dalloc(sizeof(float) * n), *db = dalloc(sizeof(float) * bn), *dov = dalloc(sizeof(float) * n);
    h2d(da, a, sizeof(float) * n);
    h2d(db, bb, sizeof(float) * bn);
    OP("add_bcast", ast_cuda_add_bcast(dov, da, n, db, bn, 0));
    d2h(o, dov, sizeof(float) * n);
    expect_same_bits("add_bcast", "3 x 6 x 128", o, r, n, 4);
    free(a); free(bb); free(o); free(r);
    ast_cuda_free(da); ast_cuda_free(db); ast_cuda_free(dov);
}

/* ---- upload -------------------------------------------------------------------------------- */

static void test_upload(ast_rng *rng) {
    ast_uploader *u = NULL;
    if (ast_uploader_create(&u, 0)) {
        CHECK(0, "ast_uploader_create: %s", ast_error_get());
        return;
    }
    /* > one 16 MiB staging chunk for both targets, from an unaligned source (mmap-like) */
    const int64_t n = 9 * 1000 * 1000 + 7;
    float *f = hmalloc(sizeof(float) * n);
    fill_f32(f, n, rng, -3.f, 3.f);
    f[0] = NAN;
    f[1] = INFINITY;
    f[2] = 1e-40f; /* subnormal */
    f[3] = -0.f;
    for (int src_dt = 0; src_dt < 3; src_dt++) {
        const ast_dtype sdt = src_dt == 0 ? AST_DT_F32 : src_dt == 1 ? AST_DT_BF16 : AST_DT_F16;
        const size_t ss = ast_dtype_size(sdt);
        unsigned char *raw = hmalloc(ss * n + 1), *src = raw + 1;
        for (int64_t i = 0; i < n; i++) {
            if (sdt == AST_DT_F32) memcpy(src + i * 4, &f[i], 4);
            else {
                uint16_t h = sdt == AST_DT_BF16 ? ast_f32_to_bf16(f[i]) : ast_f32_to_f16(f[i]);
                memcpy(src + i * 2, &h, 2);
            }
        }
        for (int dst_dt = 0; dst_dt < 2; dst_dt++) {
            const ast_dtype ddt = dst_dt ? AST_DT_F32 : AST_DT_BF16;
            if (ddt == AST_DT_F32 && sdt == AST_DT_F32) continue;
            const size_t ds = ast_dtype_size(ddt);
            void *d = dalloc(ds * n), *want = hmalloc(ds * n), *got = hmalloc(ds * n);
            for (int64_t i = 0; i < n; i++) {
                float v;
                uint16_t h;
                if (sdt == AST_DT_F32) memcpy(&v, src + i * 4, 4);
                else {
                    memcpy(&h, src + i * 2, 2);
                    v = sdt == AST_DT_BF16 ? ast_bf16_to_f32(h) : ast_f16_to_f32(h);
                }
                if (ddt == AST_DT_BF16) ((uint16_t *)want)[i] = ast_f32_to_bf16(v);
                else ((float *)want)[i] = v;
            }
            ast_tensor t = {"test.weight", sdt, 2, {n, 1}, src, ss * n};
            char vn[64];
            snprintf(vn, sizeof vn, "%s -> %s, %lld elements", ast_dtype_name(sdt),
                     ast_dtype_name(ddt), (long long)n);
            OP(vn, ast_upload_tensor(u, &t, n, d, ddt));
            OP(vn, ast_uploader_finish(u));
            d2h(got, d, ds * n);
            expect_same_bits("upload", vn, got, want, n, (int)ds);
            free(want);
            free(got);
            ast_cuda_free(d);
        }
        free(raw);
    }
    ast_tensor bad = {"blocks.0.ffn.0.weight", AST_DT_F32, 2, {3, 5}, f, 60};
    CHECK_FAILS_WITH(ast_upload_tensor(u, &bad, 16, NULL, AST_DT_BF16), "blocks.0.ffn.0.weight");
    free(f);
    ast_uploader_free(u);
}

/* ---- token-wise ------------------------------------------------------------------------------ */

static void test_gather_scatter(ast_rng *rng) {
    const int cs[][4] = {{37, 128, 128, 136}, {11, 77, 80, 77}, {5, 1536, 3 * 1536, 1536}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
        for (int eb = 2; eb <= 4; eb += 2) {
            const int K = cs[ci][0], C = cs[ci][1], lds = cs[ci][2], ldd = cs[ci][3], N = K * 3 + 1;
            int32_t *idx = hmalloc(sizeof(int32_t) * K);
            for (int r = 0; r < K; r++) idx[r] = 3 * r + ast_rng_below(rng, 3); /* distinct */
            const size_t sb = (size_t)N * lds * eb, db = (size_t)N * ldd * eb;
            unsigned char *src = hmalloc(sb), *want = hmalloc(db), *got = hmalloc(db);
            for (size_t i = 0; i < sb; i++) src[i] = (unsigned char)ast_rng_below(rng, 256);
            void *dsrc = dalloc(sb), *ddst = dalloc(db), *didx = dalloc(sizeof(int32_t) * K);
            h2d(dsrc, src, sb);
            h2d(didx, idx, sizeof(int32_t) * K);
            char vn[80];
            snprintf(vn, sizeof vn, "K=%d C=%d lds=%d ldd=%d %d-byte", K, C, lds, ldd, eb);
            /* gather: dst[r] = src[idx[r]] */
            memset(want, 0xFF, db);
            for (int r = 0; r < K; r++)
                memcpy(want + (size_t)r * ldd * eb, src + (size_t)idx[r] * lds * eb, (size_t)C * eb);
            OP(vn, ast_cuda_gather_rows(K, C, didx, dsrc, lds, ddst, ldd, eb, 0));
            d2h(got, ddst, db);
            expect_same_bits("gather_rows", vn, got, want, (int64_t)(db / eb), eb);
            /* scatter: dst[idx[r]] = src[r] */
            poison(ddst, db);
            memset(want, 0xFF, db);
            for (int r = 0; r < K; r++)
                memcpy(want + (size_t)idx[r] * ldd * eb, src + (size_t)r * lds * eb, (size_t)C * eb);
            OP(vn, ast_cuda_scatter_rows(K, C, didx, dsrc, lds, ddst, ldd, eb, 0));
            d2h(got, ddst, db);
            expect_same_bits("scatter_rows", vn, got, want, (int64_t)(db / eb), eb);
            free(idx); free(src); free(want); free(got);
            ast_cuda_free(dsrc); ast_cuda_free(ddst); ast_cuda_free(didx);
        }
}

static void test_sketch(ast_rng *rng) {
    const int cs[][4] = {{100, 1536, 32, 1536}, {37, 100, 40, 104}, {1, 64, 8, 64}, {130, 128, 32, 3 * 128}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        const int N = cs[ci][0], D = cs[ci][1], r = cs[ci][2], ldx = cs[ci][3];
        float *x = hmalloc(sizeof(float) * N * ldx), *P = hmalloc(sizeof(float) * r * D),
              *ref = hmalloc(sizeof(float) * N * r), *got = hmalloc(sizeof(float) * N * r);
        fill_f32(x, (int64_t)N * ldx, rng, -2.f, 3.f);
        ast_tw_projection(D, r, P);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < r; j++) {
                double acc = 0;
                for (int d = 0; d < D; d++) acc += (double)x[(int64_t)n * ldx + d] * P[(int64_t)j * D + d];
                ref[(int64_t)n * r + j] = (float)acc;
            }
        void *dx = dalloc(sizeof(float) * N * ldx), *dP = dalloc(sizeof(float) * r * D),
             *ds = dalloc(sizeof(float) * N * r);
        h2d(dx, x, sizeof(float) * N * ldx);
        h2d(dP, P, sizeof(float) * r * D);
        char vn[64];
        snprintf(vn, sizeof vn, "N=%d D=%d r=%d ldx=%d", N, D, r, ldx);
        OP(vn, ast_cuda_tw_sketch(N, D, r, dx, ldx, dP, ds, 0));
        d2h(got, ds, sizeof(float) * N * r);
        /* fp32 sums of D terms vs double: ~1e-6 relative */
        expect_close("tw_sketch", vn, got, r, ref, r, N, r, 1e-5, "fp32 accumulation");
        free(x); free(P); free(ref); free(got);
        ast_cuda_free(dx); ast_cuda_free(dP); ast_cuda_free(ds);
    }
}

/* GPU top-K of `scores` (host array, uploaded as is) against ast_tw_topk. */
static void check_topk(ast_cuda_tw *tw, const char *what, const float *scores, int n, int k) {
    int32_t *want = hmalloc(sizeof(int32_t) * n), *work = hmalloc(sizeof(int32_t) * n),
            *got = hmalloc(sizeof(int32_t) * n);
    uint8_t *flags = hmalloc((size_t)n);
    ast_tw_topk(n, k, scores, want, work);
    const int kk = k < n ? k : n;
    void *ds = dalloc(sizeof(float) * n), *dsel = dalloc(sizeof(int32_t) * n), *dfl = dalloc((size_t)n);
    h2d(ds, scores, sizeof(float) * n);
    char vn[128];
    snprintf(vn, sizeof vn, "%s n=%d k=%d", what, n, k);
    OP(vn, ast_cuda_tw_topk(tw, n, k, ds, dsel, dfl, 0));
    d2h(got, dsel, sizeof(int32_t) * n);
    d2h(flags, dfl, (size_t)n);
    for (int i = 0; i < kk; i++)
        if (got[i] != want[i]) {
            CHECK(0, "tw_topk %s: position %d of the ascending selection: got token %d (score "
                     "%.9g) want token %d (score %.9g)",
                  vn, i, got[i], got[i] >= 0 && got[i] < n ? scores[got[i]] : NAN, want[i],
                  scores[want[i]]);
            break;
        }
    for (int i = kk; i < n && kk < n; i++)
        if (got[i] != -1) {
            CHECK(0, "tw_topk %s: sel[%d] = %d was written beyond k", vn, i, got[i]);
            break;
        }
    int64_t nflag = 0, bad = -1;
    for (int i = 0; i < n; i++) nflag += flags[i] == 1;
    for (int i = 0; i < kk && bad < 0; i++)
        if (want[i] >= 0 && flags[want[i]] != 1) bad = want[i];
    CHECK(nflag == kk && bad < 0, "tw_topk %s: %lld flags set (want %d)%s%lld", vn,
          (long long)nflag, kk, bad >= 0 ? ", selected token not flagged: " : "", (long long)bad);
    free(want); free(work); free(got); free(flags);
    ast_cuda_free(ds); ast_cuda_free(dsel); ast_cuda_free(dfl);
}

static void test_topk(ast_rng *rng) {
    const int n_max = 40000;
    ast_cuda_tw *tw = NULL;
    if (ast_cuda_tw_create(&tw, n_max)) {
        CHECK(0, "ast_cuda_tw_create: %s", ast_error_get());
        return;
    }
    float *s = hmalloc(sizeof(float) * n_max);
    const int ks[] = {1, 137, 999, 1000};
    fill_f32(s, 1000, rng, -5.f, 5.f);
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) check_topk(tw, "random", s, 1000, ks[i]);
    for (int i = 0; i < 5000; i++) s[i] = (float)ast_rng_below(rng, 5) * 0.25f; /* 5 levels */
    check_topk(tw, "5 levels of ties", s, 5000, 2500);
    check_topk(tw, "5 levels of ties", s, 5000, 1);
    for (int i = 0; i < 3000; i++) s[i] = ast_rng_below(rng, 2) ? 0.f : -0.f;
    s[17] = 1.f;
    check_topk(tw, "+0/-0 ties", s, 3000, 1200);
    /* NaN as ast_cuda_tw_scores writes it (all-ones bits): ranked after -inf. k = the number of
     * non-NaN scores, since the CPU rule leaves the order among NaNs open */
    fill_f32(s, 2000, rng, 0.f, 1.f);
    int n_nan = 0;
    for (int i = 0; i < 2000; i += 7, n_nan++) memset(&s[i], 0xFF, sizeof(float));
    s[5] = -INFINITY;
    check_topk(tw, "NaN scores (ranked last)", s, 2000, 2000 - n_nan);
    /* the real size: 480p 81 frames, theta = 0.4 */
    for (int i = 0; i < 32760; i++) s[i] = (float)ast_rng_below(rng, 1000) * 0.001f;
    check_topk(tw, "480p tokens, 1000 levels", s, 32760, 13104);
    free(s);

    /* scores: GPU vs ast_tw_scores on the same inputs; 1 in 10 tokens has Δ = 0 (score =
     * w_β·exp(skip) exactly: ties), skips cross the exp cap */
    const int n = 3001, r = 32;
    float *sk = hmalloc(sizeof(float) * n * r), *ref = hmalloc(sizeof(float) * n * r),
          *lse = hmalloc(sizeof(float) * n), *want = hmalloc(sizeof(float) * n),
          *got = hmalloc(sizeof(float) * n);
    int32_t *skip = hmalloc(sizeof(int32_t) * n);
    fill_f32(sk, (int64_t)n * r, rng, -1.f, 1.f);
    fill_f32(ref, (int64_t)n * r, rng, -1.f, 1.f);
    fill_f32(lse, n, rng, 2.f, 9.f);
    for (int i = 0; i < n; i++) {
        skip[i] = ast_rng_below(rng, 25);
        if (i % 10 == 3) memcpy(ref + (int64_t)i * r, sk + (int64_t)i * r, sizeof(float) * r);
    }
    void *dsk = dalloc(sizeof(float) * n * r), *dref = dalloc(sizeof(float) * n * r),
         *dlse = dalloc(sizeof(float) * n), *dskip = dalloc(sizeof(int32_t) * n),
         *dsc = dalloc(sizeof(float) * n);
    h2d(dsk, sk, sizeof(float) * n * r);
    h2d(dlse, lse, sizeof(float) * n);
    h2d(dskip, skip, sizeof(int32_t) * n);
    for (int v = 0; v < 3; v++) {
        ast_tokenwise_opts o;
        ast_tokenwise_opts_default(&o);
        o.w_alpha = 1.0f; /* both terms of the score exercised */
        o.delta_normalize = v != 1;
        if (v == 2) memcpy(ref, sk, sizeof(float) * n * r); /* every Δ = 0: mean 0 */
        h2d(dref, ref, sizeof(float) * n * r);
        ast_tw_scores(n, r, sk, ref, lse, skip, &o, want);
        poison(dsc, sizeof(float) * n);
        const char *vn = v == 0 ? "normalized" : v == 1 ? "not normalized" : "all deltas zero";
        OP(vn, ast_cuda_tw_scores(tw, n, r, dsk, dref, dlse, dskip, &o, dsc, 0));
        d2h(got, dsc, sizeof(float) * n);
        /* same formula, same fp32 rounding; only the double sum of Δ may differ in order */
        int64_t differ = 0, first = -1;
        double maxrel = 0;
        for (int i = 0; i < n; i++) {
            double rel = fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i]));
            if (!(rel <= maxrel)) maxrel = rel;
            if (got[i] != want[i]) {
                differ++;
                if (first < 0) first = i;
            }
        }
        CHECK(maxrel <= 1e-6, "tw_scores %s n=%d r=%d: max rel diff %.3g > 1e-6 (%lld differ, "
                              "first at %lld: got %.9g want %.9g)",
              vn, n, r, maxrel, (long long)differ, (long long)first,
              first >= 0 ? got[first] : 0.0, first >= 0 ? want[first] : 0.0);
        if (differ == 0) /* identical scores must give the identical selection */
            check_topk(tw, vn, got, n, n / 3);
        else
            printf("%s: tw_scores %s: %lld of %d scores differ in the last bits (Δ mean summed in "
                   "another order); selection compared on identical scores above\n",
                   NAME, vn, (long long)differ, n);
    }
    { /* w_α = 0 (the default): no Δ, no sketch read (NULL on both sides): exactly w_β·exp(skip) */
        ast_tokenwise_opts o;
        ast_tokenwise_opts_default(&o);
        o.w_alpha = 0.0f;
        ast_tw_scores(n, r, NULL, NULL, lse, skip, &o, want);
        poison(dsc, sizeof(float) * n);
        OP("w_alpha 0", ast_cuda_tw_scores(tw, n, r, NULL, NULL, dlse, dskip, &o, dsc, 0));
        d2h(got, dsc, sizeof(float) * n);
        CHECK(memcmp(got, want, sizeof(float) * n) == 0,
              "tw_scores with w_alpha 0 (no sketch): GPU and CPU scores differ");
        check_topk(tw, "w_alpha 0", got, n, n / 3);
    }
    free(sk); free(ref); free(lse); free(want); free(got); free(skip);
    ast_cuda_free(dsk); ast_cuda_free(dref); ast_cuda_free(dlse); ast_cuda_free(dskip);
    ast_cuda_free(dsc);
    ast_cuda_tw_free(tw);
}

/* Batched 2D copies (the sequence-parallel packing) against the same copies on the host:
 * 16-byte, 4-byte and 1-byte moves, one empty copy, 20 copies in one launch. */
static void test_copy2d(ast_rng *rng) {
    enum { NC = 20, SRC = 1 << 20, DST = 1 << 20 };
    uint8_t *hs = hmalloc(SRC), *hd = hmalloc(DST), *got = hmalloc(DST);
    for (int i = 0; i < SRC; i++) hs[i] = (uint8_t)ast_rng_below(rng, 256);
    memset(hd, 0x5A, DST);
    uint8_t *ds = dalloc(SRC), *dd = dalloc(DST);
    h2d(ds, hs, SRC);
    h2d(dd, hd, DST);
    ast_copy2d c[NC];
    int64_t doff = 0;
    for (int i = 0; i < NC; i++) { /* disjoint destination regions */
        const int64_t width = i % 3 == 0 ? 48 * (i + 1) : i % 3 == 1 ? 4 * (2 * i + 1) : 7 + i;
        const int64_t rows = i == 5 ? 0 : 1 + ast_rng_below(rng, 40);
        const int64_t spitch = width + 16 * ast_rng_below(rng, 4), dpitch = width + (i % 2) * 32;
        const int64_t soff = i % 3 == 2 ? 3 : 16 * ast_rng_below(rng, 100);
        c[i] = (ast_copy2d){dd + doff, ds + soff, dpitch, spitch, width, rows};
        for (int64_t r = 0; r < rows; r++)
            memcpy(hd + doff + r * dpitch, hs + soff + r * spitch, (size_t)width);
        doff += dpitch * (rows + 1);
        doff = (doff + 15) / 16 * 16;
    }
    OP("20 copies", ast_cuda_copy2d(c, NC, 0));
    d2h(got, dd, DST);
    CHECK(memcmp(got, hd, DST) == 0, "copy2d: 20 copies in one launch differ from the host copies");
    free(hs); free(hd); free(got);
    ast_cuda_free(ds); ast_cuda_free(dd);
}

/* Every block's selection in one launch from the skip counts (w_α = 0) against the CPU rule
 * (ast_tw_scores without Δ, then ast_tw_topk) per block: 3 blocks with their own skips (one all
 * equal: ties only), skips past the exp cap, k from 0 to n. */
static void test_select_skip(ast_rng *rng) {
    enum { L = 3 };
    const int n = 3001, ks[] = {1000, 1, 2999, 3000, 0, 3001};
    int32_t *skip = hmalloc(sizeof(int32_t) * L * n), *want = hmalloc(sizeof(int32_t) * n),
            *work = hmalloc(sizeof(int32_t) * n), *got = hmalloc(sizeof(int32_t) * L * n);
    uint8_t *flags = hmalloc((size_t)L * n);
    float *sc = hmalloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) {
        skip[i] = ast_rng_below(rng, 25);
        skip[n + i] = 3;
        skip[2 * n + i] = ast_rng_below(rng, 4);
    }
    void *dskip = dalloc(sizeof(int32_t) * L * n), *dsel = dalloc(sizeof(int32_t) * L * n),
         *dfl = dalloc((size_t)L * n);
    h2d(dskip, skip, sizeof(int32_t) * L * n);
    ast_tokenwise_opts o;
    ast_tokenwise_opts_default(&o);
    o.w_alpha = 0.0f;
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
        const int k = ks[ki], kk = k < n ? k : n;
        char vn[64];
        snprintf(vn, sizeof vn, "%d blocks, n=%d k=%d", L, n, k);
        poison(dfl, (size_t)L * n);
        OP(vn, ast_cuda_tw_select_skip(L, n, k, dskip, &o, dsel, dfl, 0));
        d2h(got, dsel, sizeof(int32_t) * L * n);
        d2h(flags, dfl, (size_t)L * n);
        for (int l = 0; l < L; l++) {
            ast_tw_scores(n, 32, NULL, NULL, NULL, skip + l * n, &o, sc); /* no LSE read */
            ast_tw_topk(n, k, sc, want, work);
            int bad = -1, nflag = 0;
            for (int i = 0; i < kk && bad < 0; i++)
                if (got[l * n + i] != want[i]) bad = i;
            for (int i = 0; i < n; i++) nflag += flags[l * n + i] == 1;
            for (int i = 0; i < kk; i++)
                if (flags[l * n + want[i]] != 1) nflag = -1;
            CHECK(bad < 0, "tw_select_skip %s, block %d: position %d: got token %d want %d", vn,
                  l, bad, bad >= 0 ? got[l * n + bad] : 0, bad >= 0 ? want[bad] : 0);
            CHECK(nflag == kk, "tw_select_skip %s, block %d: flags wrong (%d set, want %d)", vn,
                  l, nflag, kk);
        }
    }
    free(skip); free(want); free(work); free(got); free(flags); free(sc);
    ast_cuda_free(dskip); ast_cuda_free(dsel); ast_cuda_free(dfl);
}

/* commit + reuse against the CPU backend's step 5 (forward_cpu.c), with a bf16 cache; fused:
 * the block output is xs + gate·y (the FFN's gated residual, y bf16), as the forward calls it. */
static void test_commit_reuse(ast_rng *rng) {
    const int cs[][2] = {{50, 128}, {29, 37}, {300, 1536}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
        for (int mode = 0; mode < 4; mode++) {
            const int N = cs[ci][0], D = cs[ci][1], H = 2, r = 32, K = N / 3 + 1;
            const int fused = mode >= 2;
            const ast_cache_mode cm = mode & 1 ? AST_CACHE_OUTPUT : AST_CACHE_RESIDUAL;
            float *x = hmalloc(sizeof(float) * N * D), *xs = hmalloc(sizeof(float) * K * D),
                  *lse_h = hmalloc(sizeof(float) * H * K), *lse = hmalloc(sizeof(float) * N),
                  *sk = hmalloc(sizeof(float) * N * r), *rs = hmalloc(sizeof(float) * N * r);
            uint16_t *cache = hmalloc(sizeof(uint16_t) * N * D);
            int32_t *skip = hmalloc(sizeof(int32_t) * N), *sel = hmalloc(sizeof(int32_t) * K);
            uint8_t *flags = hmalloc((size_t)N);
            uint16_t *y = hmalloc(sizeof(uint16_t) * K * D);
            float *gate = hmalloc(sizeof(float) * D);
            fill_f32(x, (int64_t)N * D, rng, -3.f, 3.f);
            fill_f32(xs, (int64_t)K * D, rng, -3.f, 3.f);
            fill_bf16(y, NULL, (int64_t)K * D, rng, -2.f, 2.f);
            fill_f32(gate, D, rng, -1.5f, 1.5f);
            fill_f32(lse_h, (int64_t)H * K, rng, 2.f, 9.f);
            fill_f32(lse, N, rng, 2.f, 9.f);
            fill_f32(sk, (int64_t)N * r, rng, -1.f, 1.f);
            fill_f32(rs, (int64_t)N * r, rng, -1.f, 1.f);
            fill_bf16(cache, NULL, (int64_t)N * D, rng, -1.f, 1.f);
            for (int i = 0; i < N; i++) flags[i] = 0;
            for (int i = 0; i < N; i++) skip[i] = ast_rng_below(rng, 5);
            for (int k = 0, i = 0; i < N && k < K; i++) /* K tokens, ascending */
                if (ast_rng_below(rng, N - i) < K - k) {
                    sel[k++] = i;
                    flags[i] = 1;
                }
            void *dx = dalloc(sizeof(float) * N * D), *dxs = dalloc(sizeof(float) * K * D),
                 *dlh = dalloc(sizeof(float) * H * K), *dlse = dalloc(sizeof(float) * N),
                 *dsk = dalloc(sizeof(float) * N * r), *drs = dalloc(sizeof(float) * N * r),
                 *dc = dalloc(sizeof(uint16_t) * N * D), *dskip = dalloc(sizeof(int32_t) * N),
                 *dsel = dalloc(sizeof(int32_t) * K), *dfl = dalloc((size_t)N),
                 *dy = dalloc(sizeof(uint16_t) * K * D), *dg = dalloc(sizeof(float) * D);
            h2d(dy, y, sizeof(uint16_t) * K * D);
            h2d(dg, gate, sizeof(float) * D);
            h2d(dx, x, sizeof(float) * N * D);
            h2d(dxs, xs, sizeof(float) * K * D);
            h2d(dlh, lse_h, sizeof(float) * H * K);
            h2d(dlse, lse, sizeof(float) * N);
            h2d(dsk, sk, sizeof(float) * N * r);
            h2d(drs, rs, sizeof(float) * N * r);
            h2d(dc, cache, sizeof(uint16_t) * N * D);
            h2d(dskip, skip, sizeof(int32_t) * N);
            h2d(dsel, sel, sizeof(int32_t) * K);
            h2d(dfl, flags, (size_t)N);
            /* reference, as forward_cpu.c step 5 (cache rounded to bf16 as the GPU keeps it) */
            ref_reuse(N, D, flags, cache, D, !(mode & 1), x, D, skip);
            for (int k = 0; k < K; k++) {
                const int n = sel[k];
                for (int i = 0; i < D; i++) {
                    float out = xs[(int64_t)k * D + i], in = x[(int64_t)n * D + i];
                    if (fused) out = fmaf(gate[i], ast_bf16_to_f32(y[(int64_t)k * D + i]), out);
                    cache[(int64_t)n * D + i] = ast_f32_to_bf16(mode & 1 ? out : out - in);
                    x[(int64_t)n * D + i] = out;
                }
                float s = 0;
                for (int h = 0; h < H; h++) s += lse_h[(int64_t)h * K + k];
                lse[n] = s / H;
                skip[n] = 0;
                memcpy(rs + (int64_t)n * r, sk + (int64_t)n * r, sizeof(float) * r);
            }
            char vn[80];
            snprintf(vn, sizeof vn, "N=%d D=%d K=%d %s%s", N, D, K,
                     mode & 1 ? "output" : "residual", fused ? ", fused gated residual" : "");
            OP(vn, ast_cuda_tw_reuse(N, D, dfl, dx, D, dc, D, cm, dskip, 0));
            OP(vn, ast_cuda_tw_commit(K, D, dsel, dxs, D, fused ? dy : NULL, D, fused ? dg : NULL,
                                      dx, D, dc, D, cm, H, dlh, dlse, r, dsk, drs, dskip, 0));
            float *gx = hmalloc(sizeof(float) * N * D), *glse = hmalloc(sizeof(float) * N),
                  *grs = hmalloc(sizeof(float) * N * r);
            uint16_t *gc = hmalloc(sizeof(uint16_t) * N * D);
            int32_t *gskip = hmalloc(sizeof(int32_t) * N);
            d2h(gx, dx, sizeof(float) * N * D);
            d2h(glse, dlse, sizeof(float) * N);
            d2h(grs, drs, sizeof(float) * N * r);
            d2h(gc, dc, sizeof(uint16_t) * N * D);
            d2h(gskip, dskip, sizeof(int32_t) * N);
            /* the same fp32 operations on both sides: bit-identical */
            expect_same_bits("tw_commit/reuse x", vn, gx, x, (int64_t)N * D, 4);
            expect_same_bits("tw_commit cache", vn, gc, cache, (int64_t)N * D, 2);
            expect_same_bits("tw_commit lse", vn, glse, lse, N, 4);
            expect_same_bits("tw_commit refsketch", vn, grs, rs, (int64_t)N * r, 4);
            expect_same_bits("tw_commit/reuse skip", vn, gskip, skip, N, 4);
            free(x); free(xs); free(lse_h); free(lse); free(sk); free(rs); free(cache);
            free(skip); free(sel); free(flags); free(gx); free(glse); free(grs); free(gc);
            free(gskip); free(y); free(gate);
            ast_cuda_free(dy); ast_cuda_free(dg);
            ast_cuda_free(dx); ast_cuda_free(dxs); ast_cuda_free(dlh); ast_cuda_free(dlse);
            ast_cuda_free(dsk); ast_cuda_free(drs); ast_cuda_free(dc); ast_cuda_free(dskip);
            ast_cuda_free(dsel); ast_cuda_free(dfl);
        }
}

int main(void) {
    char reason[256];
    if (ast_cuda_device_count(reason, sizeof reason) <= 0) return ast_test_skip(NAME, reason);
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("%s: device 0: %s (sm_%d%d)\n", NAME, prop.name, prop.major, prop.minor);
    ast_rng rng;
    ast_rng_seed(&rng, 20261127);
    printf("%s: seed 20261127\n", NAME);

    ast_gemm *g = NULL;
    if (ast_gemm_create(&g)) {
        fprintf(stderr, "%s: %s\n", NAME, ast_error_get());
        return 1;
    }
    test_gemm(g, &rng);
    ast_gemm_free(g);
    test_layernorm(&rng);
    test_layernorm_ex(&rng);
    test_rmsnorm_rope(&rng);
    test_residual(&rng);
    test_patchify(&rng);
    test_time_path(&rng);
    test_upload(&rng);
    test_gather_scatter(&rng);
    test_copy2d(&rng);
    test_sketch(&rng);
    test_topk(&rng);
    test_select_skip(&rng);
    test_commit_reuse(&rng);
    return ast_test_finish(NAME);
}

#endif
