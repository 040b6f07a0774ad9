/* forward_test_util.h — helpers shared by the engine tests (test_engine, test_golden, test_seqpar,
 * test_gpu_*): the engine parameters they start from, and one checked engine forward. */
#ifndef AST_FORWARD_TEST_UTIL_H
#define AST_FORWARD_TEST_UTIL_H

#include "engine.h"
#include "test_util.h"

/* Engine parameters for an F x H x W latent: backend be (device 0, one rank), n_branches CFG
 * branches, token-wise state or dense only, the default token-wise options. */
static inline ast_engine_params ft_params(ast_backend_kind be, int F, int H, int W, int n_branches,
                                          int tokenwise) {
    ast_engine_params p = {0};
    p.backend = be;
    p.frames = F;
    p.height = H;
    p.width = W;
    p.n_branches = n_branches;
    p.tokenwise = tokenwise;
    ast_tokenwise_opts_default(&p.tw);
    return p;
}

/* Poisons out with NaN, runs one forward, and checks the call and that every one of the n
 * output elements was written with a finite value; 0 or -1 (the failure is recorded). */
static inline int ft_forward(ast_engine *e, const char *what, int branch, const float *x,
                             float t, float theta, float *out, int64_t n,
                             ast_forward_info *info) {
    for (int64_t i = 0; i < n; i++) out[i] = NAN;
    int rc = ast_engine_forward(e, branch, x, t, theta, out, info);
    CHECK(rc == 0, "%s: forward failed: %s", what, ast_error_get());
    if (rc) return -1;
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (!isfinite(out[i])) bad = i;
    CHECK(bad < 0, "%s: output element %lld is %g (never written, or NaN computed)", what,
          (long long)bad, bad >= 0 ? out[bad] : 0.0);
    return bad < 0 ? 0 : -1;
}

#endif
