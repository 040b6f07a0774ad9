/* forward_test_util.h — one checked engine forward for the GPU forward tests. */
#ifndef AST_FORWARD_TEST_UTIL_H
#define AST_FORWARD_TEST_UTIL_H

#include "engine.h"
#include "test_util.h"

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
