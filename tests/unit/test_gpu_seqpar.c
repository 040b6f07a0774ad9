/* test_gpu_seqpar.c — one generation over several GPUs (sequence parallelism over NCCL, comm.h,
 * docs/multigpu.md) against one GPU and the CPU, on a random checkpoint with 4 heads of 64
 * (dim 256, 2 layers) at 3 x 30 x 50 -> 1,125 tokens (uneven shards: 563 + 562):
 *   1. dense, 2 GPUs vs 1 GPU: rel L2 <= 1e-2 (the same bf16 operations per row and head; the
 *      GEMMs over a shard's rows may pick other cuBLASLt algorithms) and vs the CPU <= 2e-2;
 *      every output element written (the ranks each write their own tokens' pixels);
 *   2. the same forward again (eager, captured, replayed graphs, NCCL inside) is bitwise equal;
 *   3. token-wise, 2 CFG branches, budgets 1, 0.5, 0.3, 0.5 on a drifting latent: 2 GPUs vs the
 *      CPU engine that selects per shard exactly as 2 ranks do (select_segments = 2), as tightly
 *      as dense (2e-2): with the default w_alpha = 0 the scores are integer skip counts, so both
 *      select the same tokens everywhere (test_gpu_forward says why that is strict);
 *   4. theta = 1 on every step of the 2-GPU token-wise engine equals the 2-GPU dense engine;
 *   5. with 3 / 4 GPUs: dense on 3 (K/V all-gather) and 4 (Ulysses) GPUs vs the CPU;
 *   6. the K/V all-gather path on 2 GPUs (a 3-head model): dense vs 1 GPU, token-wise vs CPU
 *      (within 5e-2: not yet run at the dense bound of 3.; its errors were not logged).
 * Exits 77 without CUDA, without NCCL, or with fewer than 2 CUDA devices. */
#include <stdint.h>

#include "ast_config.h"
#include "test_util.h"

#define NAME "test_gpu_seqpar"

#if !AST_HAVE_CUDA || !AST_HAVE_NCCL
int main(void) { return ast_test_skip(NAME, "built without CUDA or without NCCL"); }
#else

#include "backend.h"
#include "engine.h"
#include "sampler.h"
#include "unit/forward_test_util.h"
#include "unit/loader_test_util.h"

enum { F = 3, H = 30, W = 50 };

static ast_engine *make(const ast_model *m, ast_backend_kind be, int ranks, int tokenwise,
                        int segments) {
    ast_engine_params p = ft_params(be, F, H, W, 2, tokenwise);
    p.n_ranks = ranks;
    for (int i = 0; i < ranks; i++) p.devices[i] = i;
    p.tw.select_segments = segments;
    ast_engine *e = NULL;
    CHECK(ast_engine_create(m, &p, &e) == 0, "%s engine, %d ranks, tokenwise %d: %s",
          be == AST_BACKEND_CUDA ? "CUDA" : "CPU", ranks, tokenwise, ast_error_get());
    return e;
}

static int fwd(ast_engine *e, const char *what, int branch, const float *x, float t, float theta,
               float *out, int64_t n) {
    return ft_forward(e, what, branch, x, t, theta, out, n, NULL);
}

static int set_ctx(ast_engine *e, const float *c, const float *nc, int L) {
    int rc = ast_engine_set_context(e, 0, c, L) || ast_engine_set_context(e, 1, nc, L);
    CHECK(rc == 0, "contexts: %s", ast_error_get());
    return rc;
}

int main(void) {
    char reason[256];
    int ndev = ast_cuda_device_count(reason, sizeof reason);
    if (ndev <= 0) return ast_test_skip(NAME, reason);
    if (ndev < 2) {
        snprintf(reason, sizeof reason, "needs 2 CUDA devices, found %d", ndev);
        return ast_test_skip(NAME, reason);
    }
    ast_wan_config c = lt_mini_config();
    lt_set_heads(&c, 4, 64);
    c.ffn_dim = 512, c.text_dim = 64, c.text_len = 16;
    ast_model *m = lt_random_model("gpu_seqpar", &c, 21, AST_DT_F32);
    if (!m) return ast_test_finish(NAME);

    const int64_t n = (int64_t)c.in_dim * F * H * W;
    const int L = 12;
    float *x = malloc(sizeof(float) * n), *y1 = malloc(sizeof(float) * n),
          *y2 = malloc(sizeof(float) * n), *yc = malloc(sizeof(float) * n),
          *yr = malloc(sizeof(float) * n), *ctx = malloc(sizeof(float) * L * c.text_dim),
          *nctx = malloc(sizeof(float) * L * c.text_dim);
    ast_noise(3, x, n);
    ast_test_fill(ctx, (int64_t)L * c.text_dim, 4, -1, 1);
    ast_test_fill(nctx, (int64_t)L * c.text_dim, 5, -1, 1);

    /* 1-2. dense */
    ast_engine *g1 = make(m, AST_BACKEND_CUDA, 1, 0, 1), *g2 = make(m, AST_BACKEND_CUDA, 2, 0, 1),
               *cd = make(m, AST_BACKEND_CPU, 1, 0, 1);
    if (g1 && g2 && cd && !set_ctx(g1, ctx, nctx, L) && !set_ctx(g2, ctx, nctx, L) &&
        !set_ctx(cd, ctx, nctx, L) && !fwd(g1, "1 GPU", 0, x, 700.f, 1.f, y1, n) &&
        !fwd(g2, "2 GPUs", 0, x, 700.f, 1.f, y2, n) && !fwd(cd, "CPU", 0, x, 700.f, 1.f, yc, n)) {
        double e1 = ast_test_rel_l2(y2, y1, n), ec = ast_test_rel_l2(y2, yc, n);
        printf("%s: dense, %s: vs 1 GPU rel L2 %.3g, vs CPU %.3g (1 GPU vs CPU %.3g)\n", NAME,
               ast_engine_device_name(g2), e1, ec, ast_test_rel_l2(y1, yc, n));
        CHECK(e1 <= 1e-2, "dense 2 GPUs vs 1 GPU: rel L2 %.3g > 1e-2", e1);
        CHECK(ec <= 2e-2, "dense 2 GPUs vs CPU: rel L2 %.3g > 2e-2", ec);
        for (int rep = 0; rep < 3; rep++) {
            if (fwd(g2, "2 GPUs again", 0, x, 700.f, 1.f, yr, n)) break;
            CHECK(memcmp(yr, y2, sizeof(float) * n) == 0,
                  "2 GPUs, forward %d (eager/captured/replayed): not bitwise equal to the first "
                  "(rel L2 %.3g)",
                  rep + 2, ast_test_rel_l2(yr, y2, n));
        }
    }
    ast_engine_free(g1);

    /* 3-4. token-wise over a drifting latent, both branches */
    const float theta[4] = {1, 0.5f, 0.3f, 0.5f}, ts[4] = {999, 900, 750, 600};
    ast_engine *gt = make(m, AST_BACKEND_CUDA, 2, 1, 1), *ct = make(m, AST_BACKEND_CPU, 1, 1, 2);
    float *xi = malloc(sizeof(float) * n);
    if (gt && ct && cd && !set_ctx(gt, ctx, nctx, L) && !set_ctx(ct, ctx, nctx, L) &&
        !set_ctx(cd, ctx, nctx, L)) {
        for (int s = 0; s < 4; s++) {
            for (int64_t i = 0; i < n; i++) xi[i] = x[i] * (1.f - 0.05f * s) + 0.02f * s;
            for (int b = 0; b < 2; b++) {
                char what[96];
                snprintf(what, sizeof what, "step %d (theta %.1f) branch %d", s, theta[s], b);
                if (fwd(gt, what, b, xi, ts[s], theta[s], y2, n) ||
                    fwd(ct, what, b, xi, ts[s], theta[s], yc, n) ||
                    fwd(cd, what, b, xi, ts[s], 1.f, y1, n))
                    break;
                double gap = ast_test_rel_l2(yc, y1, n), err = ast_test_rel_l2(y2, yc, n);
                const double tol = 2e-2; /* the same selection: see 3. above */
                printf("%s: token-wise %s: 2 GPUs vs CPU (2 segments) rel L2 %.3g (tol %.3g; "
                       "CPU token-wise vs dense %.3g)\n",
                       NAME, what, err, tol, gap);
                CHECK(err <= tol, "token-wise %s: 2 GPUs vs CPU rel L2 %.3g > %.3g", what, err,
                      tol);
            }
        }
        /* theta = 1 throughout: the token-wise 2-GPU engine equals the dense 2-GPU one */
        ast_engine_reset(gt);
        if (g2 && !fwd(gt, "theta 1", 0, x, 700.f, 1.f, y2, n) &&
            !fwd(gt, "theta 1 again", 0, x, 600.f, 1.f, y2, n) &&
            !fwd(g2, "dense", 0, x, 600.f, 1.f, y1, n))
            CHECK(memcmp(y1, y2, sizeof(float) * n) == 0,
                  "theta = 1 on 2 GPUs: not equal to the dense 2-GPU engine (rel L2 %.3g)",
                  ast_test_rel_l2(y2, y1, n));
    }
    ast_engine_free(gt);
    ast_engine_free(ct);
    ast_engine_free(g2);

    /* 5. three (K/V all-gather: 3 does not divide 4 heads) and four GPUs (Ulysses) */
    for (int P = 3; P <= 4 && P <= ndev; P++) {
        ast_engine *gp = make(m, AST_BACKEND_CUDA, P, 0, 1);
        if (gp && !set_ctx(gp, ctx, nctx, L) && !fwd(gp, "P GPUs", 1, x, 500.f, 1.f, y2, n) &&
            !fwd(cd, "CPU", 1, x, 500.f, 1.f, yc, n)) {
            double e = ast_test_rel_l2(y2, yc, n);
            printf("%s: dense, %s vs CPU rel L2 %.3g\n", NAME, ast_engine_device_name(gp), e);
            CHECK(e <= 2e-2, "dense %d GPUs vs CPU: rel L2 %.3g > 2e-2", P, e);
        }
        ast_engine_free(gp);
    }
    ast_engine_free(cd);
    ast_model_free(m);

    /* 6. the K/V all-gather path on 2 GPUs: a model with 3 heads of 64 (2 does not divide 3) */
    lt_set_heads(&c, 3, 64);
    c.ffn_dim = 384;
    m = lt_random_model("gpu_seqpar3", &c, 22, AST_DT_F32);
    if (!m) return ast_test_finish(NAME);
    g1 = make(m, AST_BACKEND_CUDA, 1, 1, 1);
    g2 = make(m, AST_BACKEND_CUDA, 2, 1, 1);
    ct = make(m, AST_BACKEND_CPU, 1, 1, 2);
    if (g1 && g2 && ct && !set_ctx(g1, ctx, nctx, L) && !set_ctx(g2, ctx, nctx, L) &&
        !set_ctx(ct, ctx, nctx, L)) {
        CHECK(strstr(ast_engine_device_name(g2), "all-gather") != NULL,
              "3 heads on 2 GPUs should use the K/V all-gather: %s", ast_engine_device_name(g2));
        if (!fwd(g1, "1 GPU", 0, x, 800.f, 1.f, y1, n) &&
            !fwd(g2, "2 GPUs", 0, x, 800.f, 1.f, y2, n)) {
            double e = ast_test_rel_l2(y2, y1, n);
            printf("%s: dense, %s vs 1 GPU rel L2 %.3g\n", NAME, ast_engine_device_name(g2), e);
            CHECK(e <= 1e-2, "dense, K/V all-gather on 2 GPUs vs 1 GPU: rel L2 %.3g", e);
        }
        /* token-wise step after the dense one: vs the CPU selecting per 2 segments */
        if (!fwd(ct, "CPU", 0, x, 800.f, 1.f, yc, n) &&
            !fwd(g2, "2 GPUs theta 0.4", 0, x, 700.f, 0.4f, y2, n) &&
            !fwd(ct, "CPU theta 0.4", 0, x, 700.f, 0.4f, yc, n)) {
            double e = ast_test_rel_l2(y2, yc, n);
            printf("%s: token-wise theta 0.4, K/V all-gather on 2 GPUs vs CPU (2 segments) rel "
                   "L2 %.3g\n", NAME, e);
            CHECK(e <= 5e-2, "token-wise, K/V all-gather on 2 GPUs vs CPU: rel L2 %.3g", e);
        }
    }
    ast_engine_free(g1);
    ast_engine_free(g2);
    ast_engine_free(ct);
    free(x), free(y1), free(y2), free(yc), free(yr), free(xi), free(ctx), free(nctx);
    ast_model_free(m);
    return ast_test_finish(NAME);
}
#endif
