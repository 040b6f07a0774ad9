/* tokenwise.c — score and top-K of the token-selection rule (see tokenwise.h), the CPU
 * reference the CUDA kernels (kernels/tokenwise.cu) are held to. */
#include "tokenwise.h"

#include <math.h>
#include <stdlib.h>

#include "common.h"

void ast_tokenwise_opts_default(ast_tokenwise_opts *o) {
    /* Measured on the trained wan-mini (docs/tokenwise.md "Choosing the defaults"): the skip
     * penalty alone (w_α = 0, a least-recently-computed-first refresh) beat the paper's
     * w_α = 1, w_β = 0.5 by 1.3-1.5 dB PSNR at budgets 0.4 and 0.25. The paper's LSE-guided
     * score is one option away: --w-alpha 1. */
    o->w_alpha = 0.0f;
    o->w_beta = 0.5f;
    o->cache = AST_CACHE_RESIDUAL;
    o->delta_normalize = 1;
    o->sketch_dim = 32;
    o->select_segments = 1;
}

void ast_tw_projection(int D, int r, float *P) {
    ast_rng g;
    ast_rng_seed(&g, 0x5ee7c4a1u); /* fixed: every backend and run uses the same P */
    for (int64_t i = 0; i < (int64_t)D * r; i += 2) {
        /* Box–Muller pairs */
        double u1 = ast_rng_uniform(&g), u2 = ast_rng_uniform(&g);
        if (u1 < 1e-300) u1 = 1e-300;
        double rad = sqrt(-2.0 * log(u1));
        P[i] = (float)(rad * cos(2 * M_PI * u2));
        if (i + 1 < (int64_t)D * r) P[i + 1] = (float)(rad * sin(2 * M_PI * u2));
    }
}

void ast_tw_scores(int n, int r, const float *sketch, const float *refsketch, const float *lse,
                   const int32_t *skip, const ast_tokenwise_opts *o, float *scores) {
    if (o->w_alpha == 0) { /* Δ does not enter the score: no sketch needed (it may be NULL) */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) scores[i] = ast_tw_skip_term(o, skip[i]);
        return;
    }
    const float inv_sqrt_r = 1.0f / sqrtf((float)r);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *a = sketch + (int64_t)i * r, *b = refsketch + (int64_t)i * r;
        float acc = 0;
        for (int c = 0; c < r; c++) {
            float d = a[c] - b[c];
            acc += d * d;
        }
        scores[i] = sqrtf(acc) * inv_sqrt_r; /* Δ for now; combined below */
    }
    /* in token order, one thread: the selection must not depend on the thread count (search
     * workers run the CPU backend with fewer threads than one process, docs/search.md) */
    double sum = 0;
    for (int i = 0; i < n; i++) sum += scores[i];
    float inv_mean = 1.0f;
    if (o->delta_normalize) inv_mean = sum > 0 ? (float)(n / sum) : 0.0f;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        scores[i] = o->w_alpha * lse[i] * (scores[i] * inv_mean) + ast_tw_skip_term(o, skip[i]);
}

/* Order: larger score first; equal scores -> lower index first. NaN scores sort last. */
static int better(const float *s, int32_t a, int32_t b) {
    float x = s[a], y = s[b];
    if (isnan(x)) return 0;
    if (isnan(y)) return 1;
    if (x != y) return x > y;
    return a < b;
}

static void sift_down(const float *s, int32_t *heap, int k, int i) {
    /* min-heap under `better`: the root is the worst of the kept k */
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && better(s, heap[w], heap[l])) w = l;
        if (r < k && better(s, heap[w], heap[r])) w = r;
        if (w == i) return;
        int32_t t = heap[i];
        heap[i] = heap[w];
        heap[w] = t;
        i = w;
    }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

void ast_tw_topk(int n, int k, const float *scores, int32_t *sel, int32_t *work) {
    if (k >= n) {
        for (int i = 0; i < n; i++) sel[i] = i;
        return;
    }
    int32_t *heap = work;
    for (int i = 0; i < k; i++) heap[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(scores, heap, k, i);
    for (int i = k; i < n; i++) {
        if (better(scores, i, heap[0])) {
            heap[0] = i;
            sift_down(scores, heap, k, 0);
        }
    }
    for (int i = 0; i < k; i++) sel[i] = heap[i];
    qsort(sel, (size_t)k, sizeof *sel, cmp_i32);
}

void ast_shard_plan_init(ast_shard_plan *pl, int64_t ntot, int P) {
    pl->P = P;
    for (int i = 0; i < P; i++) ast_shard_range(ntot, P, i, &pl->first[i], &pl->n[i]);
    ast_shard_plan_rows(pl, 0, 1.0f);
}

int64_t ast_shard_plan_rows(ast_shard_plan *pl, int tokenwise, float theta) {
    int64_t k0 = 0;
    for (int i = 0; i < pl->P; i++) {
        pl->k[i] = tokenwise ? ast_budget_tokens(theta, (int)pl->n[i]) : pl->n[i];
        pl->kfirst[i] = k0;
        k0 += pl->k[i];
    }
    return pl->ktot = k0;
}

void ast_tw_scores_plan(const ast_shard_plan *pl, int r, const float *sketch,
                        const float *refsketch, const float *lse, const int32_t *skip,
                        const ast_tokenwise_opts *o, float *scores) {
    for (int s = 0; s < pl->P; s++) {
        const int64_t f = pl->first[s];
        if (pl->n[s] > 0)
            ast_tw_scores((int)pl->n[s], r, sketch ? sketch + f * r : NULL,
                          refsketch ? refsketch + f * r : NULL, lse ? lse + f : NULL, skip + f, o,
                          scores + f);
    }
}

void ast_tw_topk_plan(const ast_shard_plan *pl, const float *scores, int32_t *sel,
                      int32_t *work) {
    for (int s = 0; s < pl->P; s++) {
        if (pl->n[s] <= 0) continue;
        int32_t *out = sel + pl->kfirst[s];
        ast_tw_topk((int)pl->n[s], (int)pl->k[s], scores + pl->first[s], out, work);
        for (int64_t i = 0; i < pl->k[s]; i++) out[i] += (int32_t)pl->first[s];
    }
}
