/* test_tokenwise.c — the token-selection rule: top-K against a naive full sort (with ties broken
 * by token index), the score formula against a direct evaluation, and the sketch's estimate of Δ. */
#include "test_util.h"
#include "tokenwise.h"

static float *naive_scores;
static int cmp_naive(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (naive_scores[x] != naive_scores[y]) return naive_scores[x] > naive_scores[y] ? -1 : 1;
    return (x > y) - (x < y);
}
static int cmp_idx(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int main(void) {
    ast_rng r;
    ast_rng_seed(&r, 99);
    /* top-K vs naive, with many ties (scores drawn from a few levels) */
    for (int trial = 0; trial < 200; trial++) {
        int n = 1 + ast_rng_below(&r, 300), k = 1 + ast_rng_below(&r, n);
        int levels = 1 + ast_rng_below(&r, 6);
        float *s = malloc(sizeof(float) * n);
        int32_t *sel = malloc(sizeof(int32_t) * n), *work = malloc(sizeof(int32_t) * n),
                *ref = malloc(sizeof(int32_t) * n);
        for (int i = 0; i < n; i++) s[i] = (float)ast_rng_below(&r, levels) * 0.37f - 0.5f;
        ast_tw_topk(n, k, s, sel, work);
        for (int i = 0; i < n; i++) ref[i] = i;
        naive_scores = s;
        qsort(ref, (size_t)n, sizeof *ref, cmp_naive);
        qsort(ref, (size_t)k, sizeof *ref, cmp_idx);
        int same = 1;
        for (int i = 0; i < k; i++) same &= sel[i] == ref[i];
        CHECK(same, "trial %d: n=%d k=%d levels=%d: top-K differs from the naive sort", trial, n,
              k, levels);
        free(s);
        free(sel);
        free(work);
        free(ref);
    }
    /* score formula vs direct evaluation */
    int n = 257, rdim = 32, D = 96;
    float *sk = malloc(sizeof(float) * n * rdim), *ref = malloc(sizeof(float) * n * rdim),
          *lse = malloc(sizeof(float) * n), *sc = malloc(sizeof(float) * n);
    int32_t *skip = malloc(sizeof(int32_t) * n);
    ast_test_fill(sk, (int64_t)n * rdim, 1, -1, 1);
    ast_test_fill(ref, (int64_t)n * rdim, 2, -1, 1);
    ast_test_fill(lse, n, 3, 2, 9);
    for (int i = 0; i < n; i++) skip[i] = ast_rng_below(&r, 30);
    ast_tokenwise_opts o;
    ast_tokenwise_opts_default(&o);
    o.w_alpha = 1.0f; /* the paper's weights: both terms exercised */
    o.w_beta = 0.5f;
    ast_tw_scores(n, rdim, sk, ref, lse, skip, &o, sc);
    double mean = 0;
    double *delta = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        double a = 0;
        for (int c = 0; c < rdim; c++) {
            double d = (double)sk[i * rdim + c] - ref[i * rdim + c];
            a += d * d;
        }
        delta[i] = sqrt(a / rdim);
        mean += delta[i] / n;
    }
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double want = 1.0 * lse[i] * delta[i] / mean + 0.5 * exp(skip[i] < 20 ? skip[i] : 20);
        double err = fabs(sc[i] - want) / fabs(want);
        if (err > worst) worst = err;
    }
    CHECK(worst < 1e-5, "score formula: worst relative error %g (fp32 vs double: ~1e-6)", worst);
    /* the sketch estimates ‖x − ref‖: average ratio over many vectors is ~1 (JL, r = 32) */
    float *P = malloc(sizeof(float) * D * rdim), *x = malloc(sizeof(float) * D),
          *y = malloc(sizeof(float) * D);
    ast_tw_projection(D, rdim, P);
    double ratio = 0;
    int trials = 400;
    for (int t = 0; t < trials; t++) {
        ast_test_fill(x, D, 100 + t, -1, 1);
        ast_test_fill(y, D, 900 + t, -1, 1);
        double true2 = 0, est2 = 0;
        for (int i = 0; i < D; i++) true2 += (double)(x[i] - y[i]) * (x[i] - y[i]);
        for (int c = 0; c < rdim; c++) {
            double s = 0;
            for (int i = 0; i < D; i++) s += (double)P[c * D + i] * (x[i] - y[i]);
            est2 += s * s;
        }
        ratio += est2 / rdim / true2 / trials;
    }
    CHECK(fabs(ratio - 1.0) < 0.05, "E[sketch²]/‖Δ‖² = %g, expected 1 (JL estimate)", ratio);
    free(sk); free(ref); free(lse); free(sc); free(skip); free(delta); free(P); free(x); free(y);
    return ast_test_finish("tokenwise");
}
