/* test_util.h — the tiny test harness every C test uses (header-only).
 *
 * A test is a program: it runs its checks, prints one line per failed check with file:line and
 * the values, and exits 0 (pass), 1 (fail) or 77 (skip; meson counts it as skipped). Inputs are
 * random (seeded, printed), never zeros (style.md habit 1). */
#ifndef AST_TEST_UTIL_H
#define AST_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define AST_TEST_SKIP 77

static int ast_test_failures = 0;
static int ast_test_checks = 0;

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        ast_test_checks++;                                                                     \
        if (!(cond)) {                                                                         \
            ast_test_failures++;                                                               \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                    \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

/* Checks that an int-returning call fails (-1) and that its message contains `needle`. */
#define CHECK_FAILS_WITH(call, needle)                                                         \
    do {                                                                                       \
        ast_error_clear();                                                                     \
        int rc_ = (call);                                                                      \
        CHECK(rc_ != 0, "expected failure from %s", #call);                                    \
        CHECK(strstr(ast_error_get(), (needle)) != NULL, "message '%s' lacks '%s'",            \
              ast_error_get(), (needle));                                                      \
    } while (0)

static inline int ast_test_finish(const char *name) {
    if (ast_test_checks == 0) {
        fprintf(stderr, "%s: no checks ran: a test that asserts nothing is a failure\n", name);
        return 1;
    }
    if (ast_test_failures) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, ast_test_failures, ast_test_checks);
        return 1;
    }
    printf("%s: %d checks passed\n", name, ast_test_checks);
    return 0;
}

static inline int ast_test_skip(const char *name, const char *reason) {
    printf("%s: SKIP: %s\n", name, reason);
    return AST_TEST_SKIP;
}

/* Uniform in [lo, hi), deterministic per seed. */
static inline void ast_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    ast_rng r;
    ast_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)ast_rng_uniform(&r);
}

/* ‖a − b‖ / ‖b‖ in double; NaN anywhere gives +inf so it never passes. */
static inline double ast_test_rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Path to a file under tests/fixtures (the source tree), from the AST_FIXTURES env set by meson. */
static inline const char *ast_test_fixture(const char *name, char *buf, size_t len) {
    const char *dir = getenv("AST_FIXTURES");
    snprintf(buf, len, "%s/%s", dir ? dir : "tests/fixtures", name);
    return buf;
}

#endif
