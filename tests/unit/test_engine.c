/* test_engine.c — the token-wise engine on the CPU: θ = 1 on every step reproduces the dense
 * output exactly (same ops on the same rows: bitwise), K = round(θN) tokens are computed, lower
 * budgets stay finite and close to dense, both cache modes run, and bad inputs are refused. */
#include "engine.h"
#include "safetensors.h"
#include "sampler.h"
#include "test_util.h"
#include "unit/forward_test_util.h"

static ast_engine *engine(const ast_model *m, int tw, ast_cache_mode cache) {
    ast_engine_params p = ft_params(AST_BACKEND_CPU, 3, 8, 12, 2, tw);
    p.tw.cache = cache;
    ast_engine *e = NULL;
    CHECK(ast_engine_create(m, &p, &e) == 0, "engine: %s", ast_error_get());
    return e;
}

static int run(ast_engine *e, const float *budgets, const float *noise, const float *c, int L,
               const float *nc, int nL, float *out, ast_generate_stats *st) {
    ast_sampler_params sp = {AST_SAMPLER_UNIPC, 8, 5.0f, 5.0f};
    if (ast_engine_set_context(e, 0, c, L) || ast_engine_set_context(e, 1, nc, nL)) return -1;
    return ast_generate(e, &sp, budgets, noise, out, NULL, NULL, st);
}

int main(void) {
    char path[1024];
    ast_model *m = NULL;
    if (ast_model_load(ast_test_fixture("tiny/orig_f32", path, sizeof path), NULL, &m)) {
        CHECK(0, "load: %s", ast_error_get());
        return ast_test_finish("engine");
    }
    const int n = 16 * 3 * 8 * 12, L = 11, nL = 5, text_dim = m->cfg.text_dim;
    float *noise = malloc(sizeof(float) * n), *c = malloc(sizeof(float) * L * text_dim),
          *nc = malloc(sizeof(float) * nL * text_dim);
    float *dense = malloc(sizeof(float) * n), *tw1 = malloc(sizeof(float) * n),
          *half = malloc(sizeof(float) * n);
    ast_noise(1, noise, n);
    ast_test_fill(c, (int64_t)L * text_dim, 2, -1, 1);
    ast_test_fill(nc, (int64_t)nL * text_dim, 3, -1, 1);
    float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    float budget[8] = {1, 0.5f, 0.5f, 0.3f, 0.5f, 0.7f, 0.2f, 0.5f};

    ast_engine *ed = engine(m, 0, AST_CACHE_RESIDUAL), *et = engine(m, 1, AST_CACHE_RESIDUAL);
    ast_generate_stats sd, st;
    CHECK(run(ed, NULL, noise, c, L, nc, nL, dense, &sd) == 0, "dense: %s", ast_error_get());
    CHECK(run(et, ones, noise, c, L, nc, nL, tw1, &st) == 0, "theta=1: %s", ast_error_get());
    CHECK(memcmp(dense, tw1, sizeof(float) * n) == 0,
          "theta = 1 on every step must reproduce the dense output exactly (rel L2 %.3g)",
          ast_test_rel_l2(tw1, dense, n));
    CHECK(run(et, budget, noise, c, L, nc, nL, half, &st) == 0, "budget: %s", ast_error_get());
    int N = ast_engine_tokens(et);
    int64_t want = 0;
    for (int i = 0; i < 8; i++) want += 2 * (i == 0 ? N : ast_budget_tokens(budget[i], N));
    CHECK(st.tokens_computed == want, "tokens computed %lld, expected %lld",
          (long long)st.tokens_computed, (long long)want);
    double err = ast_test_rel_l2(half, dense, n);
    CHECK(isfinite(err) && err > 0 && err < 1.0, "token-wise output vs dense: rel L2 %.3g", err);
    printf("token-wise (mean budget 0.53) vs dense: rel L2 %.3g\n", err);
    /* output-cache mode runs and differs from the residual mode */
    ast_engine *eo = engine(m, 1, AST_CACHE_OUTPUT);
    float *outm = malloc(sizeof(float) * n);
    CHECK(run(eo, budget, noise, c, L, nc, nL, outm, NULL) == 0, "output mode: %s", ast_error_get());
    double err_o = ast_test_rel_l2(outm, dense, n);
    CHECK(isfinite(err_o) && memcmp(outm, half, sizeof(float) * n) != 0,
          "output-cache mode: rel L2 %.3g", err_o);
    printf("output-cache mode vs dense: rel L2 %.3g\n", err_o);
    /* determinism: same inputs, same result */
    CHECK(run(et, budget, noise, c, L, nc, nL, tw1, NULL) == 0 &&
              memcmp(tw1, half, sizeof(float) * n) == 0,
          "the token-wise run must be deterministic");
    /* bad inputs */
    c[5] = NAN;
    CHECK_FAILS_WITH(ast_engine_set_context(et, 0, c, L), "NaN");
    CHECK_FAILS_WITH(ast_engine_set_context(et, 0, nc, m->cfg.text_len + 1), "at most");
    CHECK_FAILS_WITH(ast_engine_forward(ed, 0, noise, 500, 0.5f, dense, NULL), "dense-only");
    ast_engine_params bad = {0};
    bad.frames = 3;
    bad.height = 7;
    bad.width = 12;
    bad.n_branches = 1;
    ast_engine *eb = NULL;
    CHECK_FAILS_WITH(ast_engine_create(m, &bad, &eb), "multiple of the patch");
    ast_engine_free(ed);
    ast_engine_free(et);
    ast_engine_free(eo);
    ast_model_free(m);
    free(noise); free(c); free(nc); free(dense); free(tw1); free(half); free(outm);
    return ast_test_finish("engine");
}
