/* test_cpu_ops.c — every fp32 CPU operator (cpu_ops.h) against a naive double-precision
 * reference written from the formulas, on seeded random inputs (never zeros), at odd shapes
 * (M = 1, N = 7, K = 13, Lq = 5 / Lk = 33, sizes off every block size, strided views), for each
 * SIMD path this CPU has (generic, avx2) and for 1 and 2 threads. Also: NaN inputs propagate.
 *
 * Tolerance: fp32 operators vs a double reference. A dot product of K terms accumulated in fp32
 * has a relative error around sqrt(K)·6e-8 (~2e-6 at K = 1000), the exp2 polynomial 2e-7, so
 * TOL = 1e-5 relative L2 leaves a margin of ~5x while any indexing or blocking bug (an error of
 * order 1) fails by orders of magnitude. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu_ops.h"
#include "tensor.h"
#include "test_util.h"

#define TOL 1e-5 /* fp32 vs double reference, see the header comment */

static uint64_t g_seed = 1234;

static float *rnd(int64_t n, float lo, float hi) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ast_test_fill(p, n, g_seed++, lo, hi);
    return p;
}

/* 0.5x(1 + tanh u) with u = √(2/π)(x + 0.044715x³), written as x / (1 + e^(-2u)) (the same
 * function): 1 + tanh u cancels catastrophically in double for x < -5. */
static double gelu_ref(double x) {
    double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}

/* ---- GEMM ------------------------------------------------------------------------------ */

/* W [N, ldw] stored as dtype dt at byte offset 1 (unaligned) in a fresh buffer; wf receives the
 * values the stored weights represent (what the reference multiplies by). */
static unsigned char *make_weights(int N, int K, int ldw, ast_dtype dt, double *wf) {
    size_t es = ast_dtype_size(dt);
    unsigned char *buf = malloc((size_t)N * ldw * es + 1);
    float *v = rnd((int64_t)N * ldw, -1.0f, 1.0f);
    for (int64_t i = 0; i < (int64_t)N * ldw; i++) {
        float f = v[i];
        if (dt == AST_DT_BF16) {
            uint16_t h = ast_f32_to_bf16(f);
            memcpy(buf + 1 + i * 2, &h, 2);
            f = ast_bf16_to_f32(h);
        } else if (dt == AST_DT_F16) {
            uint16_t h = ast_f32_to_f16(f);
            memcpy(buf + 1 + i * 2, &h, 2);
            f = ast_f16_to_f32(h);
        } else {
            memcpy(buf + 1 + i * 4, &f, 4);
        }
        if (i % ldw < K) wf[(i / ldw) * K + i % ldw] = f;
    }
    free(v);
    return buf;
}

static void check_gemm(int M, int N, int K, ast_dtype dt, int with_bias, ast_epilogue epi,
                       int acc) {
    int ldx = K + 3, ldw = K + 5, ldy = N + 2;
    float *x = rnd((int64_t)M * ldx, -1.0f, 1.0f);
    double *wf = malloc(sizeof(double) * (size_t)N * (K > 0 ? K : 1));
    unsigned char *wbuf = make_weights(N, K, ldw, dt, wf);
    float *bias = with_bias ? rnd(N, -0.5f, 0.5f) : NULL;
    float *y = rnd((int64_t)M * ldy, -1.0f, 1.0f); /* also the sentinels in the ldy padding */
    float *y0 = malloc(sizeof(float) * (size_t)M * ldy);
    memcpy(y0, y, sizeof(float) * (size_t)M * ldy);
    float *ref = malloc(sizeof(float) * (size_t)M * N);
    float *got = malloc(sizeof(float) * (size_t)M * N);

    ast_cpu_gemm(M, N, K, x, ldx, wbuf + 1, dt, ldw, bias, y, ldy, epi, acc);

    int pad_ok = 1;
    for (int i = 0; i < M; i++) {
        for (int n = 0; n < N; n++) {
            double s = bias ? bias[n] : 0.0;
            for (int k = 0; k < K; k++) s += (double)x[i * ldx + k] * wf[n * K + k];
            if (epi == AST_EPI_GELU_TANH) s = gelu_ref(s);
            if (acc) s += y0[i * ldy + n];
            ref[i * N + n] = (float)s;
            got[i * N + n] = y[i * ldy + n];
        }
        for (int n = N; n < ldy; n++) pad_ok &= y[i * ldy + n] == y0[i * ldy + n];
    }
    double err = ast_test_rel_l2(got, ref, (int64_t)M * N);
    CHECK(err < TOL, "gemm M=%d N=%d K=%d %s bias=%d epi=%d acc=%d: rel L2 %.3g", M, N, K,
          ast_dtype_name(dt), with_bias, (int)epi, acc, err);
    CHECK(pad_ok, "gemm M=%d N=%d K=%d wrote past column N", M, N, K);
    free(x), free(wf), free(wbuf), free(bias), free(y), free(y0), free(ref), free(got);
}

static void test_gemm(void) {
    static const int shapes[][3] = {
        {1, 7, 13},   {5, 16, 32},   {13, 33, 300}, {6, 16, 256},  {64, 100, 520},
        {97, 130, 257}, {1, 300, 1000}, {300, 20, 64}, {7, 1, 5},  {50, 513, 33},
        {2, 16, 1},   {4, 37, 70},   {5, 37, 70},   {9, 40, 1100},
    };
    const ast_dtype dts[] = {AST_DT_F32, AST_DT_BF16, AST_DT_F16};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int d = 0; d < 3; d++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            check_gemm(M, N, K, dts[d], 1, AST_EPI_NONE, 0);
            check_gemm(M, N, K, dts[d], 1, AST_EPI_GELU_TANH, 0);
            check_gemm(M, N, K, dts[d], 0, AST_EPI_NONE, 1);
            check_gemm(M, N, K, dts[d], 1, AST_EPI_NONE, 1);
        }
    check_gemm(512, 128, 128, AST_DT_F32, 1, AST_EPI_GELU_TANH, 0); /* wan-mini FFN shape */
    check_gemm(3, 5, 0, AST_DT_F32, 1, AST_EPI_GELU_TANH, 0);       /* K = 0: y = epi(bias) */
    check_gemm(3, 5, 0, AST_DT_F32, 0, AST_EPI_NONE, 1);

    /* Misuse (epilogue while accumulating) is reported and poisons y, never half-works. */
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, y[2] = {0.5f, 0.5f};
    ast_error_clear();
    ast_cpu_gemm(1, 2, 2, x, 2, w, AST_DT_F32, 2, NULL, y, 2, AST_EPI_GELU_TANH, 1);
    CHECK(isnan(y[0]) && isnan(y[1]), "gemm misuse left y = %g %g", y[0], y[1]);
    CHECK(strstr(ast_error_get(), "epilogue") != NULL, "gemm misuse message '%s'", ast_error_get());
}

/* ---- attention ------------------------------------------------------------------------- */

static void check_attention(int Lq, int Lk, int H, int D, float amp) {
    /* q, k, v live in fused buffers with padding, like a QKV projection output. */
    int ldq = 3 * H * D + 5, ldk = 2 * H * D + 3, ldo = H * D + 7;
    float *q = rnd((int64_t)Lq * ldq, -amp, amp);
    float *kv = rnd((int64_t)Lk * ldk, -amp, amp);
    const float *k = kv, *v = kv + H * D;
    float *o = rnd((int64_t)Lq * ldo, -1.0f, 1.0f);
    float *o0 = malloc(sizeof(float) * (size_t)Lq * ldo);
    memcpy(o0, o, sizeof(float) * (size_t)Lq * ldo);
    float *lse = rnd((int64_t)H * Lq, -1.0f, 1.0f);
    float *ref = malloc(sizeof(float) * (size_t)Lq * H * D);
    float *got = malloc(sizeof(float) * (size_t)Lq * H * D);
    float *lref = malloc(sizeof(float) * (size_t)H * Lq);
    double *sc = malloc(sizeof(double) * (size_t)Lk);
    float scale = 1.0f / sqrtf((float)D);

    ast_cpu_attention(Lq, Lk, H, D, q + 7, ldq, k, ldk, v, ldk, o, ldo, lse, scale);

    int pad_ok = 1;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < Lq; i++) {
            const float *qi = q + 7 + (int64_t)i * ldq + h * D;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < Lk; j++) {
                double s = 0;
                for (int d = 0; d < D; d++) s += (double)qi[d] * k[(int64_t)j * ldk + h * D + d];
                sc[j] = s * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            for (int j = 0; j < Lk; j++) sum += exp(sc[j] - mx);
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int j = 0; j < Lk; j++)
                    acc += exp(sc[j] - mx) * v[(int64_t)j * ldk + h * D + d];
                ref[((int64_t)i * H + h) * D + d] = (float)(acc / sum);
                got[((int64_t)i * H + h) * D + d] = o[(int64_t)i * ldo + h * D + d];
            }
            lref[h * Lq + i] = (float)(mx + log(sum));
        }
    for (int i = 0; i < Lq; i++)
        for (int c = H * D; c < ldo; c++)
            pad_ok &= o[(int64_t)i * ldo + c] == o0[(int64_t)i * ldo + c];
    double err = ast_test_rel_l2(got, ref, (int64_t)Lq * H * D);
    /* lse is a logarithm: a relative error of the sum becomes an absolute error of lse, so each
     * value is held to TOL·(1 + |lse|) rather than a relative L2 (lse may sit near 0). */
    double lerr = 0;
    for (int64_t i = 0; i < (int64_t)H * Lq; i++) {
        double e = fabs((double)lse[i] - lref[i]) / (1.0 + fabs(lref[i]));
        lerr = isnan(e) ? INFINITY : (e > lerr ? e : lerr);
    }
    CHECK(err < TOL, "attention Lq=%d Lk=%d H=%d D=%d amp=%g: out rel L2 %.3g", Lq, Lk, H, D,
          amp, err);
    CHECK(lerr < TOL, "attention Lq=%d Lk=%d H=%d D=%d amp=%g: lse error %.3g", Lq, Lk, H, D,
          amp, lerr);
    CHECK(pad_ok, "attention Lq=%d Lk=%d wrote outside its heads", Lq, Lk);

    /* lse may be NULL; the output must not change. */
    memcpy(o, o0, sizeof(float) * (size_t)Lq * ldo);
    ast_cpu_attention(Lq, Lk, H, D, q + 7, ldq, k, ldk, v, ldk, o, ldo, NULL, scale);
    for (int i = 0; i < Lq; i++)
        for (int hd = 0; hd < H * D; hd++) got[(int64_t)i * H * D + hd] = o[(int64_t)i * ldo + hd];
    CHECK(ast_test_rel_l2(got, ref, (int64_t)Lq * H * D) < TOL, "attention with lse=NULL differs");
    free(q), free(kv), free(o), free(o0), free(lse), free(ref), free(got), free(lref), free(sc);
}

static void test_attention(void) {
    static const int shapes[][4] = {
        {5, 33, 1, 32},  {40, 100, 3, 64}, {33, 97, 2, 128}, {1, 1, 1, 32}, {64, 200, 2, 40},
        {70, 5, 2, 64},  {32, 96, 1, 16},  {100, 193, 4, 8},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_attention(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], 1.0f);
    /* Large scores (|s| up to ~100): only correct with the running-max subtraction. */
    check_attention(37, 150, 2, 64, 4.0f);

    /* No keys: an empty sum, o = 0 and lse = ln 0 = -inf (documented in cpu_ops.h). */
    float q[2 * 8], o[2 * 8], lse[2];
    ast_test_fill(q, 16, 5, -1, 1);
    ast_test_fill(o, 16, 6, 1, 2);
    ast_cpu_attention(2, 0, 1, 8, q, 8, q, 8, q, 8, o, 8, lse, 0.5f);
    int zero = 1;
    for (int i = 0; i < 16; i++) zero &= o[i] == 0.0f;
    CHECK(zero && isinf(lse[0]) && lse[0] < 0 && isinf(lse[1]), "attention Lk=0: o/lse not 0/-inf");
}

/* ---- norms and activations ------------------------------------------------------------- */

static void check_layernorm(int L, int C, int mask, int inplace) {
    int ldx = C + 3, ldy = inplace ? ldx : C + 1;
    float *x = rnd((int64_t)L * ldx, -2.0f, 3.0f);
    float *y = inplace ? x : rnd((int64_t)L * ldy, -1.0f, 1.0f);
    float *xs = malloc(sizeof(float) * (size_t)L * ldx);
    memcpy(xs, x, sizeof(float) * (size_t)L * ldx);
    float *w = mask & 1 ? rnd(C, 0.5f, 1.5f) : NULL, *b = mask & 2 ? rnd(C, -1.0f, 1.0f) : NULL;
    float *scale = mask & 4 ? rnd(C, -0.5f, 0.5f) : NULL;
    float *shift = mask & 8 ? rnd(C, -1.0f, 1.0f) : NULL;
    float *ref = malloc(sizeof(float) * (size_t)L * C);
    float *got = malloc(sizeof(float) * (size_t)L * C);
    const float eps = 1e-6f;
    ast_cpu_layernorm(L, C, x, ldx, y, ldy, w, b, scale, shift, eps);
    for (int r = 0; r < L; r++) {
        double mean = 0, var = 0;
        for (int c = 0; c < C; c++) mean += xs[r * ldx + c];
        mean /= C;
        for (int c = 0; c < C; c++) var += (xs[r * ldx + c] - mean) * (xs[r * ldx + c] - mean);
        var /= C;
        for (int c = 0; c < C; c++) {
            double t = (xs[r * ldx + c] - mean) / sqrt(var + eps);
            if (w) t *= w[c];
            if (b) t += b[c];
            if (scale) t *= 1.0 + scale[c];
            if (shift) t += shift[c];
            ref[r * C + c] = (float)t;
            got[r * C + c] = y[r * ldy + c];
        }
    }
    double err = ast_test_rel_l2(got, ref, (int64_t)L * C);
    CHECK(err < TOL, "layernorm L=%d C=%d mask=%d inplace=%d: rel L2 %.3g", L, C, mask, inplace,
          err);
    if (!inplace) free(y);
    free(x), free(xs), free(w), free(b), free(scale), free(shift), free(ref), free(got);
}

static void check_rmsnorm(int L, int C, int with_w) {
    int ldx = C + 5;
    float *x = rnd((int64_t)L * ldx, -2.0f, 2.0f);
    float *xs = malloc(sizeof(float) * (size_t)L * ldx);
    memcpy(xs, x, sizeof(float) * (size_t)L * ldx);
    float *w = with_w ? rnd(C, 0.5f, 1.5f) : NULL;
    float *ref = malloc(sizeof(float) * (size_t)L * C);
    float *got = malloc(sizeof(float) * (size_t)L * C);
    ast_cpu_rmsnorm(L, C, x, ldx, w, 1e-6f);
    int pad_ok = 1;
    for (int r = 0; r < L; r++) {
        double ms = 0;
        for (int c = 0; c < C; c++) ms += (double)xs[r * ldx + c] * xs[r * ldx + c];
        double rs = 1.0 / sqrt(ms / C + 1e-6);
        for (int c = 0; c < C; c++) {
            ref[r * C + c] = (float)(xs[r * ldx + c] * rs * (w ? w[c] : 1.0));
            got[r * C + c] = x[r * ldx + c];
        }
        for (int c = C; c < ldx; c++) pad_ok &= x[r * ldx + c] == xs[r * ldx + c];
    }
    double err = ast_test_rel_l2(got, ref, (int64_t)L * C);
    CHECK(err < TOL, "rmsnorm L=%d C=%d w=%d: rel L2 %.3g", L, C, with_w, err);
    CHECK(pad_ok, "rmsnorm L=%d C=%d wrote past C", L, C);
    free(x), free(xs), free(w), free(ref), free(got);
}

static void check_act(int64_t n, int silu) {
    float *x = rnd(n, -10.0f, 10.0f);
    float *ref = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        ref[i] = (float)(silu ? x[i] / (1.0 + exp(-(double)x[i])) : gelu_ref(x[i]));
    if (silu)
        ast_cpu_silu(x, n);
    else
        ast_cpu_gelu_tanh(x, n);
    double err = ast_test_rel_l2(x, ref, n), maxrel = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - ref[i]) / (fabs(ref[i]) + 1e-30);
        if (fabs(ref[i]) > 1e-3 && d > maxrel) maxrel = d;
    }
    CHECK(err < TOL, "%s n=%lld: rel L2 %.3g", silu ? "silu" : "gelu_tanh", (long long)n, err);
    /* element-wise too: each output is one exp2 and a division, ~3e-7 relative */
    CHECK(maxrel < 2e-6, "%s n=%lld: max element relative error %.3g", silu ? "silu" : "gelu_tanh",
          (long long)n, maxrel);
    free(x), free(ref);
}

static void test_norms_acts(void) {
    const int Cs[] = {1, 7, 128, 1536};
    for (int ci = 0; ci < 4; ci++)
        for (int mask = 0; mask < 16; mask++) check_layernorm(mask % 3 ? 9 : 300, Cs[ci], mask, 0);
    check_layernorm(33, 130, 15, 1);
    check_layernorm(5, 77, 5, 1);
    check_rmsnorm(300, 128, 1);
    check_rmsnorm(3, 1536, 1);
    check_rmsnorm(17, 13, 0);
    for (int64_t n = 1; n <= 37; n++) {
        check_act(n, 0);
        check_act(n, 1);
    }
    check_act(100003, 0);
    check_act(100003, 1);
}

/* ---- RoPE ------------------------------------------------------------------------------ */

/* wan21.md §1.3 item 4, written out independently: axis (0 t, 1 h, 2 w), its dim and the pair
 * index within it, for pair m of head dim d. */
static void rope_axis_of(int d, int m, int *axis, int *dim, int *jj) {
    int dh = 2 * (d / 6), dt = d - 4 * (d / 6);
    if (m < dt / 2) {
        *axis = 0, *dim = dt, *jj = m;
    } else if (m < dt / 2 + dh / 2) {
        *axis = 1, *dim = dh, *jj = m - dt / 2;
    } else {
        *axis = 2, *dim = dh, *jj = m - dt / 2 - dh / 2;
    }
}

static void test_rope(void) {
    const int ds[] = {128, 64, 32};
    for (int di = 0; di < 3; di++) {
        int d = ds[di];
        ast_rope_table t;
        CHECK(ast_rope_table_init(&t, d) == 0, "rope table d=%d: %s", d, ast_error_get());
        if (!t.cs) continue;
        CHECK(t.D == d && t.npos == 1024, "rope table d=%d: D=%d npos=%d", d, t.D, t.npos);
        double maxerr = 0;
        for (int p = 0; p < 1024; p++)
            for (int m = 0; m < d / 2; m++) {
                int axis, dim, jj;
                rope_axis_of(d, m, &axis, &dim, &jj);
                double th = p * pow(10000.0, -2.0 * jj / dim);
                double e1 = fabs(t.cs[(p * d / 2 + m) * 2] - cos(th));
                double e2 = fabs(t.cs[(p * d / 2 + m) * 2 + 1] - sin(th));
                if (e1 > maxerr) maxerr = e1;
                if (e2 > maxerr) maxerr = e2;
            }
        CHECK(maxerr < 1e-7, "rope table d=%d: max |error| %.3g (float rounding is 6e-8)", d,
              maxerr);

        /* Apply on a (gf, gh, gw) = (3, 5, 7) grid: all rows, then a permuted subset via tok. */
        const int gf = 3, gh = 5, gw = 7, H = 2, ntok = gf * gh * gw;
        for (int use_tok = 0; use_tok < 2; use_tok++) {
            int L = use_tok ? 40 : ntok, ldx = H * d + 3;
            int32_t *tok = NULL;
            if (use_tok) {
                tok = malloc(sizeof(int32_t) * (size_t)L);
                for (int r = 0; r < L; r++) tok[r] = (int32_t)((r * 37 + 11) % ntok);
            }
            float *x = rnd((int64_t)L * ldx, -1.0f, 1.0f);
            float *xs = malloc(sizeof(float) * (size_t)L * ldx);
            memcpy(xs, x, sizeof(float) * (size_t)L * ldx);
            float *ref = malloc(sizeof(float) * (size_t)L * H * d);
            float *got = malloc(sizeof(float) * (size_t)L * H * d);
            ast_cpu_rope(L, H, x, ldx, tok, 0, gh, gw, &t);
            int pad_ok = 1;
            for (int r = 0; r < L; r++) {
                int n = tok ? tok[r] : r, pos[3] = {n / (gh * gw), (n / gw) % gh, n % gw};
                for (int h = 0; h < H; h++)
                    for (int m = 0; m < d / 2; m++) {
                        int axis, dim, jj;
                        rope_axis_of(d, m, &axis, &dim, &jj);
                        double th = pos[axis] * pow(10000.0, -2.0 * jj / dim);
                        double a = xs[r * ldx + h * d + 2 * m], b = xs[r * ldx + h * d + 2 * m + 1];
                        int o = (r * H + h) * d + 2 * m;
                        ref[o] = (float)(a * cos(th) - b * sin(th));
                        ref[o + 1] = (float)(a * sin(th) + b * cos(th));
                        got[o] = x[r * ldx + h * d + 2 * m];
                        got[o + 1] = x[r * ldx + h * d + 2 * m + 1];
                    }
                for (int c = H * d; c < ldx; c++) pad_ok &= x[r * ldx + c] == xs[r * ldx + c];
            }
            double err = ast_test_rel_l2(got, ref, (int64_t)L * H * d);
            CHECK(err < TOL, "rope d=%d tok=%d: rel L2 %.3g", d, use_tok, err);
            CHECK(pad_ok, "rope d=%d wrote past H*D", d);
            free(tok), free(x), free(xs), free(ref), free(got);
        }
        ast_rope_table_free(&t);
        CHECK(t.cs == NULL, "rope table free left a pointer");
    }
    ast_rope_table t;
    CHECK_FAILS_WITH(ast_rope_table_init(&t, 63), "even");
}

/* ---- NaN never passes ------------------------------------------------------------------ */

static int all_nan(const float *x, int n, int stride) {
    for (int i = 0; i < n; i++)
        if (!isnan(x[(int64_t)i * stride])) return 0;
    return 1;
}

static void test_nan(void) {
    const int M = 20, N = 40, K = 300;
    float *x = rnd((int64_t)M * K, -1, 1), *w = rnd((int64_t)N * K, -1, 1);
    float *y = malloc(sizeof(float) * (size_t)M * N);
    x[3 * K + 290] = NAN; /* row 3 of x, in the second K slice */
    w[17 * K + 5] = NAN;  /* row 17 of W = column 17 of y */
    for (int epi = 0; epi < 2; epi++) {
        ast_cpu_gemm(M, N, K, x, K, w, AST_DT_F32, K, NULL, y, N, (ast_epilogue)epi, 0);
        CHECK(all_nan(y + 3 * N, N, 1), "gemm epi=%d: NaN in x row 3 did not reach y row 3", epi);
        CHECK(all_nan(y + 17, M, N), "gemm epi=%d: NaN in W row 17 did not reach y column 17", epi);
        CHECK(!isnan(y[0]), "gemm epi=%d: NaN leaked into a clean element", epi);
    }
    free(x), free(w), free(y);

    const int Lq = 40, Lk = 130, H = 2, D = 32, ld = H * D;
    float *q = rnd(Lq * ld, -1, 1), *k = rnd(Lk * ld, -1, 1), *v = rnd(Lk * ld, -1, 1);
    float *o = malloc(sizeof(float) * Lq * ld), *lse = malloc(sizeof(float) * H * Lq);
    q[9 * ld + 3] = NAN;       /* head 0, query 9 */
    k[100 * ld + D + 4] = NAN; /* head 1, key 100: every query of head 1 */
    v[50 * ld + 7] = NAN;      /* head 0, key 50, channel 7: channel 7 of every query of head 0 */
    ast_cpu_attention(Lq, Lk, H, D, q, ld, k, ld, v, ld, o, ld, lse, 0.2f);
    CHECK(all_nan(o + 9 * ld, D, 1) && isnan(lse[9]), "attention: NaN q row did not propagate");
    int head1 = 1;
    for (int i = 0; i < Lq; i++) head1 &= all_nan(o + i * ld + D, D, 1) && isnan(lse[Lq + i]);
    CHECK(head1, "attention: NaN key did not reach every query of its head");
    CHECK(all_nan(o + 7, Lq, ld), "attention: NaN in v channel 7 did not reach o channel 7");
    CHECK(!isnan(o[0]) && !isnan(lse[0]), "attention: NaN leaked into a clean query");
    free(q), free(k), free(v), free(o), free(lse);

    float row[2 * 33];
    ast_test_fill(row, 66, 99, -1, 1);
    row[33 + 20] = NAN;
    ast_cpu_layernorm(2, 33, row, 33, row, 33, NULL, NULL, NULL, NULL, 1e-6f);
    CHECK(all_nan(row + 33, 33, 1) && !isnan(row[0]), "layernorm: NaN did not fill its row only");
    ast_test_fill(row, 66, 98, -1, 1);
    row[5] = NAN;
    ast_cpu_rmsnorm(2, 33, row, 33, NULL, 1e-6f);
    CHECK(all_nan(row, 33, 1) && !isnan(row[40]), "rmsnorm: NaN did not fill its row only");
    float a[3] = {NAN, 1.0f, -INFINITY}, b[3] = {NAN, 1.0f, 2.0f};
    ast_cpu_gelu_tanh(a, 3);
    ast_cpu_silu(b, 3);
    CHECK(isnan(a[0]) && isnan(b[0]) && !isnan(a[1]) && !isnan(b[1]), "activations drop NaN");
}

int main(void) {
    const char *paths[] = {"generic", "avx2"};
    const int threads[] = {2, 1};
    for (int p = 0; p < 2; p++) {
        if (ast_cpu_simd_select(paths[p]) != 0) {
            printf("test_cpu_ops: %s path not available here (%s): skipped\n", paths[p],
                   ast_error_get());
            continue;
        }
        for (int t = 0; t < 2; t++) {
            omp_set_num_threads(threads[t]);
            int before = ast_test_failures;
            test_gemm();
            test_attention();
            test_norms_acts();
            test_rope();
            test_nan();
            printf("test_cpu_ops: %s path, %d thread(s): %s\n", ast_cpu_simd_name(), threads[t],
                   ast_test_failures == before ? "ok" : "FAILED");
        }
    }
    ast_cpu_simd_select("auto");
    return ast_test_finish("test_cpu_ops");
}
