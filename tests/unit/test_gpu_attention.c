/* test_gpu_attention.c — ast_cuda_attention (kernels/attention.cu), every kernel variant, against a
 * float64 CPU reference on random bf16 inputs; `--bench` adds a TFLOP/s table.
 *
 * Checks per case: O (rel L2 over the checked rows), LSE (abs error), that every output element
 * and every LSE was written (outputs are poisoned with NaN first), and that nothing outside the
 * H*D columns of O was touched. Failures print the variant, the shape, the first bad (row, head)
 * and the numbers, so a run's output alone says where to look.
 *
 * Usage: test_gpu_attention [--bench] [--variant fa2|wgmma|wgmma_pp]
 * Exits 77 (skip) when built without CUDA or when there is no CUDA device; the argument checks,
 * which need no device, run first in the second case. */
#include <stdint.h>

#include "ast_config.h"
#include "test_util.h"

#if !AST_HAVE_CUDA
int main(void) {
    return ast_test_skip("test_gpu_attention", "built without CUDA (-Dcuda=disabled or no nvcc)");
}
#else

#include <cuda_runtime.h>

#include "attention.h"

#define NAME "test_gpu_attention"

/* ---- host data ------------------------------------------------------------------------- */

/* N(0,1) by Box-Muller, rounded to bf16. */
static void fill_normal_bf16(uint16_t *x, int64_t n, ast_rng *r, float mul) {
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ast_rng_uniform(r), u2 = ast_rng_uniform(r);
        if (u1 < 1e-300) u1 = 1e-300;
        const double rad = sqrt(-2.0 * log(u1));
        x[i] = ast_f32_to_bf16((float)(rad * cos(6.283185307179586 * u2)) * mul);
        if (i + 1 < n) x[i + 1] = ast_f32_to_bf16((float)(rad * sin(6.283185307179586 * u2)) * mul);
    }
}

static float bf(uint16_t h) { return ast_bf16_to_f32(h); }

typedef struct {
    int Lq, Lk, H, D;
    int layout;    /* LAYOUT_* below */
    int pad;       /* extra elements per row of separate q/k/v buffers (multiple of 8) */
    int opad;      /* extra elements per row of o (checked to stay poisoned) */
    int large;     /* 1: large-magnitude scores with a trend along the keys */
    const char *what;
} attn_case;

enum {
    LAYOUT_SEPARATE = 0, /* q [Lq, HD+pad], k, v [Lk, HD+pad] */
    LAYOUT_QKV = 1,      /* one [L, 3HD] buffer (fused QKV GEMM output), Lq == Lk */
    LAYOUT_Q_KV3 = 2,    /* q [Lq, HD]; k, v columns HD.. and 2HD.. of a [Lk, 3HD] buffer */
    LAYOUT_Q_KV2 = 3,    /* q [Lq, HD]; k, v columns 0.. and HD.. of a [Lk, 2HD] buffer */
};

typedef struct {
    /* host copies; q/k/v point into them with their ld */
    uint16_t *qbuf, *kbuf, *vbuf; /* kbuf/vbuf may alias qbuf/kbuf */
    const uint16_t *q, *k, *v;
    int ldq, ldk, ldv;
    size_t qbuf_n, kbuf_n, vbuf_n;
} host_qkv;

/* ---- reference ------------------------------------------------------------------------- */

/* o_ref [D], returns lse (natural log of the scaled scores). */
static double ref_row(const host_qkv *x, int i, int h, int Lk, int D, double scale, double *o_ref,
                      double *s /* [Lk] scratch */) {
    const uint16_t *qi = x->q + (size_t)i * x->ldq + (size_t)h * D;
    double m = -INFINITY;
    for (int j = 0; j < Lk; j++) {
        const uint16_t *kj = x->k + (size_t)j * x->ldk + (size_t)h * D;
        double acc = 0;
        for (int d = 0; d < D; d++) acc += (double)bf(qi[d]) * (double)bf(kj[d]);
        s[j] = acc * scale;
        if (s[j] > m) m = s[j];
    }
    double l = 0;
    for (int d = 0; d < D; d++) o_ref[d] = 0;
    for (int j = 0; j < Lk; j++) {
        const double p = exp(s[j] - m);
        l += p;
        const uint16_t *vj = x->v + (size_t)j * x->ldv + (size_t)h * D;
        for (int d = 0; d < D; d++) o_ref[d] += p * (double)bf(vj[d]);
    }
    for (int d = 0; d < D; d++) o_ref[d] /= l;
    return m + log(l);
}

/* ---- one case on the device ------------------------------------------------------------ */

#define DEV_TRY(call)                                                                          \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call,                 \
                    cudaGetErrorString(e_));                                                   \
            ast_test_failures++;                                                               \
            ok = 0;                                                                            \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

static int is_nan_bf16(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0; }

static void make_inputs(const attn_case *c, host_qkv *x, uint64_t seed) {
    const int hd = c->H * c->D;
    ast_rng r;
    ast_rng_seed(&r, seed);
    memset(x, 0, sizeof *x);
    const float qmul = c->large ? 4.0f : 1.0f;
    switch (c->layout) {
    case LAYOUT_QKV: {
        x->ldq = x->ldk = x->ldv = 3 * hd;
        x->qbuf_n = (size_t)c->Lq * 3 * hd;
        x->qbuf = malloc(x->qbuf_n * 2);
        fill_normal_bf16(x->qbuf, (int64_t)x->qbuf_n, &r, 1.0f);
        x->q = x->qbuf;
        x->k = x->qbuf + hd;
        x->v = x->qbuf + 2 * hd;
        break;
    }
    case LAYOUT_Q_KV3:
    case LAYOUT_Q_KV2: {
        const int w = c->layout == LAYOUT_Q_KV3 ? 3 : 2;
        x->ldq = hd;
        x->ldk = x->ldv = w * hd;
        x->qbuf_n = (size_t)c->Lq * hd;
        x->kbuf_n = (size_t)c->Lk * w * hd;
        x->qbuf = malloc(x->qbuf_n * 2);
        x->kbuf = malloc(x->kbuf_n * 2);
        fill_normal_bf16(x->qbuf, (int64_t)x->qbuf_n, &r, qmul);
        fill_normal_bf16(x->kbuf, (int64_t)x->kbuf_n, &r, 1.0f);
        x->q = x->qbuf;
        x->k = x->kbuf + (w == 3 ? hd : 0);
        x->v = x->kbuf + (w == 3 ? 2 * hd : hd);
        break;
    }
    default: {
        x->ldq = x->ldk = x->ldv = hd + c->pad;
        x->qbuf_n = (size_t)c->Lq * x->ldq;
        x->kbuf_n = x->vbuf_n = (size_t)c->Lk * x->ldk;
        x->qbuf = malloc(x->qbuf_n * 2);
        x->kbuf = malloc(x->kbuf_n * 2);
        x->vbuf = malloc(x->vbuf_n * 2);
        fill_normal_bf16(x->qbuf, (int64_t)x->qbuf_n, &r, qmul);
        fill_normal_bf16(x->kbuf, (int64_t)x->kbuf_n, &r, 1.0f);
        fill_normal_bf16(x->vbuf, (int64_t)x->vbuf_n, &r, 1.0f);
        if (c->large) {
            /* keys drift along a common direction: rows with sum(q) > 0 see their running max
             * grow tile after tile (rescaling every step), the others see it shrink */
            for (int j = 0; j < c->Lk; j++)
                for (int d = 0; d < hd; d++) {
                    uint16_t *e = &x->kbuf[(size_t)j * x->ldk + d];
                    *e = ast_f32_to_bf16(bf(*e) + 3.0f * (float)j / (float)c->Lk);
                }
        }
        x->q = x->qbuf;
        x->k = x->kbuf;
        x->v = x->vbuf;
        break;
    }
    }
}

static void free_inputs(host_qkv *x) {
    free(x->qbuf);
    free(x->kbuf);
    free(x->vbuf);
}

/* Rows to check against the reference: all for small problems, else tile edges and a random
 * sample (the float64 reference costs Lk*D*H per row). */
static int pick_rows(const attn_case *c, int *rows, int cap, ast_rng *r) {
    const double cost = (double)c->Lk * c->D * c->H;
    if ((double)c->Lq * cost <= 2.5e8) {
        for (int i = 0; i < c->Lq && i < cap; i++) rows[i] = i;
        return c->Lq < cap ? c->Lq : cap;
    }
    int n = 0;
    const int fixed[] = {0, 1, 15, 16, 63, 64, 65, 127, 128, 129, 191, 255, 256};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (fixed[i] < c->Lq) rows[n++] = fixed[i];
    const int tail[] = {c->Lq - 1, c->Lq - 2, c->Lq - 9, c->Lq - 64, c->Lq - 65};
    for (size_t i = 0; i < sizeof tail / sizeof tail[0]; i++)
        if (tail[i] > 256) rows[n++] = tail[i];
    while (n < 48 && n < cap) rows[n++] = ast_rng_below(r, c->Lq);
    return n;
}

static int run_case(const char *variant, const attn_case *c, uint64_t seed) {
    const int hd = c->H * c->D;
    const int ldo = hd + c->opad;
    const double scale = 1.0 / sqrt((double)c->D);
    int ok = 1;
    host_qkv x;
    make_inputs(c, &x, seed);
    uint16_t *o_host = malloc((size_t)c->Lq * ldo * 2);
    float *lse_host = malloc((size_t)c->H * c->Lq * sizeof(float));
    void *dq = NULL, *dk = NULL, *dv = NULL, *dout = NULL;
    float *dlse = NULL;

    DEV_TRY(cudaMalloc(&dq, x.qbuf_n * 2));
    DEV_TRY(cudaMemcpy(dq, x.qbuf, x.qbuf_n * 2, cudaMemcpyHostToDevice));
    if (x.kbuf) {
        DEV_TRY(cudaMalloc(&dk, x.kbuf_n * 2));
        DEV_TRY(cudaMemcpy(dk, x.kbuf, x.kbuf_n * 2, cudaMemcpyHostToDevice));
    }
    if (x.vbuf) {
        DEV_TRY(cudaMalloc(&dv, x.vbuf_n * 2));
        DEV_TRY(cudaMemcpy(dv, x.vbuf, x.vbuf_n * 2, cudaMemcpyHostToDevice));
    }
    DEV_TRY(cudaMalloc(&dout, (size_t)c->Lq * ldo * 2));
    DEV_TRY(cudaMalloc((void **)&dlse, (size_t)c->H * c->Lq * sizeof(float)));
    DEV_TRY(cudaMemset(dout, 0xff, (size_t)c->Lq * ldo * 2)); /* bf16 0xffff is NaN */
    DEV_TRY(cudaMemset(dlse, 0xff, (size_t)c->H * c->Lq * sizeof(float)));

    /* device pointers at the same offsets as the host views */
    const uint16_t *gq = (const uint16_t *)dq + (x.q - x.qbuf);
    const uint16_t *gk, *gv;
    if (c->layout == LAYOUT_QKV) {
        gk = (const uint16_t *)dq + (x.k - x.qbuf);
        gv = (const uint16_t *)dq + (x.v - x.qbuf);
    } else if (c->layout == LAYOUT_SEPARATE) {
        gk = (const uint16_t *)dk;
        gv = (const uint16_t *)dv;
    } else {
        gk = (const uint16_t *)dk + (x.k - x.kbuf);
        gv = (const uint16_t *)dk + (x.v - x.kbuf);
    }

    ast_error_clear();
    int rc = ast_cuda_attention(gq, x.ldq, gk, x.ldk, gv, x.ldv, dout, ldo, dlse, c->Lq, c->Lk,
                                c->H, c->D, (float)scale, 0);
    CHECK(rc == 0, "[%s] %s (Lq=%d Lk=%d H=%d D=%d): ast_cuda_attention failed: %s", variant,
          c->what, c->Lq, c->Lk, c->H, c->D, ast_error_get());
    if (rc != 0) {
        ok = 0;
        goto done;
    }
    DEV_TRY(cudaDeviceSynchronize());
    DEV_TRY(cudaMemcpy(o_host, dout, (size_t)c->Lq * ldo * 2, cudaMemcpyDeviceToHost));
    DEV_TRY(cudaMemcpy(lse_host, dlse, (size_t)c->H * c->Lq * sizeof(float),
                       cudaMemcpyDeviceToHost));

    /* every output written, nothing outside the H*D columns */
    {
        int64_t unwritten = 0, outside = 0, first_r = -1, first_c = -1, lse_unwritten = 0;
        for (int i = 0; i < c->Lq; i++)
            for (int col = 0; col < ldo; col++) {
                const int nan = is_nan_bf16(o_host[(size_t)i * ldo + col]);
                if (col < hd && nan) {
                    if (unwritten++ == 0) first_r = i, first_c = col;
                } else if (col >= hd && !nan) {
                    outside++;
                }
            }
        for (int64_t i = 0; i < (int64_t)c->H * c->Lq; i++) lse_unwritten += isnan(lse_host[i]) != 0;
        CHECK(unwritten == 0,
              "[%s] %s (Lq=%d Lk=%d H=%d D=%d): %lld output elements still poisoned (NaN), first at "
              "row %lld head %lld col %lld",
              variant, c->what, c->Lq, c->Lk, c->H, c->D, (long long)unwritten, (long long)first_r,
              (long long)(first_c / c->D), (long long)(first_c % c->D));
        CHECK(outside == 0, "[%s] %s: %lld elements written in the ldo padding (columns >= H*D)",
              variant, c->what, (long long)outside);
        CHECK(lse_unwritten == 0, "[%s] %s: %lld LSE values still poisoned (NaN)", variant, c->what,
              (long long)lse_unwritten);
        if (unwritten || outside || lse_unwritten) ok = 0;
    }

    /* values against the float64 reference */
    {
        int rows[4096];
        ast_rng r;
        ast_rng_seed(&r, seed ^ 0x5eed);
        const int nrows = pick_rows(c, rows, 4096, &r);
        double *s = malloc((size_t)c->Lk * sizeof(double));
        double *oref = malloc((size_t)c->D * sizeof(double));
        double num = 0, den = 0, max_abs = 0, max_lse_err = 0, lse_at_max = 0;
        int bad_rows = 0, first_bad_row = -1, first_bad_head = -1, lse_bad = 0;
        int lse_first_row = -1, lse_first_head = -1;
        double first_bad_rel = 0, lse_first_got = 0, lse_first_ref = 0;
        for (int ri = 0; ri < nrows; ri++) {
            const int i = rows[ri];
            for (int h = 0; h < c->H; h++) {
                const double lref = ref_row(&x, i, h, c->Lk, c->D, scale, oref, s);
                double rn = 0, rd = 0;
                for (int d = 0; d < c->D; d++) {
                    const double got = bf(o_host[(size_t)i * ldo + (size_t)h * c->D + d]);
                    const double e = isfinite(got) ? fabs(got - oref[d]) : INFINITY;
                    rn += e * e;
                    rd += oref[d] * oref[d];
                    if (e > max_abs) max_abs = e;
                }
                num += rn;
                den += rd;
                const double rel = sqrt(rn / (rd > 0 ? rd : 1e-30));
                if (!(rel <= 5e-2)) { /* a row-head far off: the first one points at the bug */
                    if (bad_rows++ == 0) first_bad_row = i, first_bad_head = h, first_bad_rel = rel;
                }
                const double lgot = lse_host[(size_t)h * c->Lq + i];
                const double lerr = isfinite(lgot) ? fabs(lgot - lref) : INFINITY;
                if (!(lerr <= max_lse_err)) max_lse_err = lerr, lse_at_max = lref;
                /* fp32 scores and sums: ~1e-6 relative; 1e-3 leaves room for ex2.approx */
                if (!(lerr <= 1e-3 * fabs(lref) + 1e-3)) {
                    if (lse_bad++ == 0)
                        lse_first_row = i, lse_first_head = h, lse_first_got = lgot,
                        lse_first_ref = lref;
                }
            }
        }
        const double rel_l2 = den > 0 ? sqrt(num / den) : INFINITY;
        printf("  [%-8s] %-30s Lq=%5d Lk=%5d H=%2d D=%3d rows=%4d  relL2=%.2e maxabs=%.2e "
               "lse_maxerr=%.2e%s\n",
               variant, c->what, c->Lq, c->Lk, c->H, c->D, nrows, rel_l2, max_abs, max_lse_err,
               (rel_l2 <= 2e-2 && lse_bad == 0) ? "" : "  <-- FAIL");
        /* bf16 inputs, P rounded to bf16 before P V, bf16 output: ~4e-3 expected; 2e-2 bound */
        CHECK(rel_l2 <= 2e-2,
              "[%s] %s (Lq=%d Lk=%d H=%d D=%d): O rel L2 %.3e > 2e-2 (max abs err %.3e); %d of %d "
              "row-heads off by > 5e-2, first row %d head %d (rel %.3e)",
              variant, c->what, c->Lq, c->Lk, c->H, c->D, rel_l2, max_abs, bad_rows,
              nrows * c->H, first_bad_row, first_bad_head, first_bad_rel);
        CHECK(lse_bad == 0,
              "[%s] %s (Lq=%d Lk=%d H=%d D=%d): %d LSE values off (max err %.3e at |lse| %.3g); "
              "first row %d head %d: got %.6f, want %.6f",
              variant, c->what, c->Lq, c->Lk, c->H, c->D, lse_bad, max_lse_err, fabs(lse_at_max),
              lse_first_row, lse_first_head, lse_first_got, lse_first_ref);
        if (!(rel_l2 <= 2e-2) || lse_bad) ok = 0;
        free(s);
        free(oref);
    }

done:
    cudaFree(dq);
    cudaFree(dk);
    cudaFree(dv);
    cudaFree(dout);
    cudaFree(dlse);
    free(o_host);
    free(lse_host);
    free_inputs(&x);
    return ok;
}

/* ---- argument checks (no device needed: they fail before any CUDA call) ----------------- */

static void check_arguments(void) {
    const void *p = (const void *)(uintptr_t)0x10000; /* never dereferenced */
    void *o = (void *)(uintptr_t)0x20000;
    const void *odd = (const void *)(uintptr_t)0x10002; /* 2-byte aligned only */
    CHECK_FAILS_WITH(ast_cuda_attention(p, 768, p, 768, p, 768, o, 768, NULL, 4, 4, 8, 96, 0.1f, 0),
                     "D=96");
    CHECK_FAILS_WITH(ast_cuda_attention(odd, 1536, p, 1536, p, 1536, o, 1536, NULL, 4, 4, 12, 128,
                                        0.1f, 0),
                     "16-byte");
    CHECK_FAILS_WITH(ast_cuda_attention(p, 1540, p, 1540, p, 1540, o, 1540, NULL, 4, 4, 12, 128,
                                        0.1f, 0),
                     "16-byte");
    CHECK_FAILS_WITH(ast_cuda_attention(p, 1536, p, 1536, p, 1536, o, 1528, NULL, 4, 4, 12, 128,
                                        0.1f, 0),
                     "smaller than H*D");
    CHECK_FAILS_WITH(ast_cuda_attention(p, 128, p, 128, p, 128, o, 128, NULL, 0, 4, 1, 128, 0.1f, 0),
                     "empty shape");
    CHECK_FAILS_WITH(ast_cuda_attention(p, 128, p, 128, p, 128, o, 128, NULL, 4, 4, 1, 128, 0.0f, 0),
                     "scale");
    CHECK_FAILS_WITH(ast_cuda_attention(p, 128, p, 128, NULL, 128, o, 128, NULL, 4, 4, 1, 128, 0.1f,
                                        0),
                     "NULL");
    CHECK_FAILS_WITH(ast_cuda_attention_variant("bogus"), "unknown attention kernel");
    CHECK(ast_cuda_attention_variant("auto") == 0, "auto: %s", ast_error_get());
}

/* ---- --bench ---------------------------------------------------------------------------- */

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static void bench(const char *const *variants, int nvar) {
    static const int shapes[][4] = {
        {14040, 14040, 12, 128}, /* Wan2.1-1.3B 480p 33 frames, dense self-attention */
        {32760, 32760, 12, 128}, /* 81 frames */
        {5616, 14040, 12, 128},  /* token-wise, theta = 0.4: gathered queries */
        {14040, 512, 12, 128},   /* cross-attention to the text */
    };
    const int nshape = (int)(sizeof shapes / sizeof shapes[0]);
    size_t maxq = 0, maxk = 0;
    for (int s = 0; s < nshape; s++) {
        const size_t hd = (size_t)shapes[s][2] * shapes[s][3];
        if ((size_t)shapes[s][0] * hd > maxq) maxq = (size_t)shapes[s][0] * hd;
        if ((size_t)shapes[s][1] * hd > maxk) maxk = (size_t)shapes[s][1] * hd;
    }
    uint16_t *h = malloc((maxq > maxk ? maxq : maxk) * 2);
    void *dq = NULL, *dk = NULL, *dv = NULL, *dout = NULL;
    float *dlse = NULL;
    cudaEvent_t ev[11];
    int have_events = 0;
    ast_rng r;
    ast_rng_seed(&r, 99);
    if (!h || cudaMalloc(&dq, maxq * 2) || cudaMalloc(&dk, maxk * 2) || cudaMalloc(&dv, maxk * 2) ||
        cudaMalloc(&dout, maxq * 2) || cudaMalloc((void **)&dlse, maxq / 64 * sizeof(float))) {
        CHECK(0, "bench: allocation failed");
        goto out;
    }
    /* random data (not zeros: they can run faster than real data) */
    fill_normal_bf16(h, (int64_t)maxq, &r, 1.0f);
    cudaMemcpy(dq, h, maxq * 2, cudaMemcpyHostToDevice);
    fill_normal_bf16(h, (int64_t)maxk, &r, 1.0f);
    cudaMemcpy(dk, h, maxk * 2, cudaMemcpyHostToDevice);
    fill_normal_bf16(h, (int64_t)maxk, &r, 1.0f);
    cudaMemcpy(dv, h, maxk * 2, cudaMemcpyHostToDevice);
    for (int i = 0; i < 11; i++) cudaEventCreate(&ev[i]);
    have_events = 1;
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    printf("\nbench on %s (%d SMs): warm-up 3, median of 10, FLOPs = 4*Lq*Lk*D*H\n", prop.name,
           prop.multiProcessorCount);
    printf("  %-8s %6s %6s %3s %4s %10s %9s\n", "kernel", "Lq", "Lk", "H", "D", "ms", "TFLOP/s");
    for (int vi = 0; vi < nvar; vi++) {
        if (ast_cuda_attention_variant(variants[vi])) continue;
        for (int s = 0; s < nshape; s++) {
            const int Lq = shapes[s][0], Lk = shapes[s][1], H = shapes[s][2], D = shapes[s][3];
            const int hd = H * D;
            const float scale = 1.0f / sqrtf((float)D);
            int fail = 0;
            for (int w = 0; w < 3; w++)
                fail |= ast_cuda_attention(dq, hd, dk, hd, dv, hd, dout, hd, dlse, Lq, Lk, H, D,
                                           scale, 0);
            float ms[10];
            for (int it = 0; it < 10 && !fail; it++) {
                cudaEventRecord(ev[it], 0);
                fail |= ast_cuda_attention(dq, hd, dk, hd, dv, hd, dout, hd, dlse, Lq, Lk, H, D,
                                           scale, 0);
                cudaEventRecord(ev[it + 1], 0);
                cudaEventSynchronize(ev[it + 1]);
                cudaEventElapsedTime(&ms[it], ev[it], ev[it + 1]);
            }
            cudaError_t e = cudaDeviceSynchronize();
            CHECK(!fail && e == cudaSuccess, "bench [%s] %d %d %d %d: %s / %s", variants[vi], Lq,
                  Lk, H, D, ast_error_get(), cudaGetErrorString(e));
            if (fail || e != cudaSuccess) continue;
            qsort(ms, 10, sizeof(float), cmp_float);
            const double med = 0.5 * (ms[4] + ms[5]);
            const double tflops = 4.0 * Lq * (double)Lk * D * H / (med * 1e-3) / 1e12;
            printf("  %-8s %6d %6d %3d %4d %10.3f %9.1f\n", variants[vi], Lq, Lk, H, D, med, tflops);
        }
    }
out:
    if (have_events)
        for (int i = 0; i < 11; i++) cudaEventDestroy(ev[i]);
    cudaFree(dq);
    cudaFree(dk);
    cudaFree(dv);
    cudaFree(dout);
    cudaFree(dlse);
    free(h);
    ast_cuda_attention_variant("auto");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress survives a hang killed by a timeout */
    int do_bench = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bench") == 0) do_bench = 1;
        else if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc &&
                 (strcmp(argv[i + 1], "fa2") == 0 || strcmp(argv[i + 1], "wgmma") == 0 ||
                  strcmp(argv[i + 1], "wgmma_pp") == 0))
            only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--bench] [--variant fa2|wgmma|wgmma_pp]\n", argv[0]);
            return 2;
        }
    }

    check_arguments();
    if (ast_test_failures) return ast_test_finish(NAME);

    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        char why[256];
        snprintf(why, sizeof why, "no CUDA device (cudaGetDeviceCount: %s, %d devices); %d argument "
                 "checks passed", e != cudaSuccess ? cudaGetErrorString(e) : "ok", ndev,
                 ast_test_checks);
        return ast_test_skip(NAME, why);
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || cudaSetDevice(0) != cudaSuccess)
        return ast_test_skip(NAME, "CUDA device 0 cannot be used");
    printf("%s: device 0: %s, sm_%d%d, %d SMs\n", NAME, prop.name, prop.major, prop.minor,
           prop.multiProcessorCount);

    /* "wgmma_pp" is the experimental ping-pong schedule of the wgmma kernel (attention.cu) */
    static const char *const all_variants[] = {"fa2", "wgmma", "wgmma_pp"};
    const char *variants[3];
    int nvar = 0;
    char why[256] = "";
    const int wgmma_ok = ast_cuda_attention_wgmma_available(why, sizeof why);
    for (int i = 0; i < 3; i++) {
        if (only && strcmp(only, all_variants[i]) != 0) continue;
        if (i == 0 || wgmma_ok) variants[nvar++] = all_variants[i];
        else if (prop.major == 9 && prop.minor == 0)
            CHECK(0, "sm_90 device but the %s kernel is unavailable: %s", all_variants[i], why);
        else
            printf("%s: variant %s skipped: %s\n", NAME, all_variants[i], why);
    }

    static const attn_case cases[] = {
        {512, 512, 2, 64, LAYOUT_QKV, 0, 0, 0, "test model (fused QKV)"},
        {1, 7, 1, 128, LAYOUT_SEPARATE, 8, 8, 0, "tiny (Lq=1, Lk=7)"},
        {130, 1000, 3, 128, LAYOUT_SEPARATE, 16, 0, 0, "ragged tails"},
        {1000, 130, 2, 64, LAYOUT_SEPARATE, 0, 8, 0, "ragged, Lq > Lk"},
        {700, 900, 2, 128, LAYOUT_SEPARATE, 8, 0, 1, "large scores, drifting max"},
        {300, 1500, 2, 64, LAYOUT_SEPARATE, 0, 0, 1, "large scores, D=64"},
        {4096, 4096, 12, 128, LAYOUT_QKV, 0, 0, 0, "self-attention (fused QKV)"},
        {777, 4096, 12, 128, LAYOUT_Q_KV3, 0, 0, 0, "gathered queries, K/V of QKV"},
        {4096, 512, 12, 128, LAYOUT_Q_KV2, 0, 8, 0, "cross-attention (fused KV)"},
    };
    const int ncase = (int)(sizeof cases / sizeof cases[0]);
    for (int vi = 0; vi < nvar; vi++) {
        CHECK(ast_cuda_attention_variant(variants[vi]) == 0, "variant %s: %s", variants[vi],
              ast_error_get());
        printf("%s: variant %s\n", NAME, variants[vi]);
        for (int ci = 0; ci < ncase; ci++) run_case(variants[vi], &cases[ci], 1000 + 17 * ci);
    }
    ast_cuda_attention_variant("auto");

    /* the default path (no variant forced) runs too */
    if (nvar > 0) run_case("auto", &cases[0], 4242);

    if (do_bench) bench(variants, nvar);
    return ast_test_finish(NAME);
}

#endif
