/* test_ga.c — the GA operators (built-in self-test against naive twins, injected faults caught),
 * determinism of populations for a seed, repair into the latency band, step 0 fixed, the
 * mutation schedule, and the latency model (fit, band, reachability). */
#include <math.h>
#include <string.h>

#include "ga.h"
#include "latency.h"
#include "test_util.h"

static void test_self_test(void) {
    int checks = 0;
    int rc = ast_ga_self_test(0, 7, &checks);
    CHECK(rc == 0, "self-test failed: %s", ast_error_get());
    CHECK(checks > 1000, "self-test ran only %d checks", checks);
    /* every injected fault must be caught, alone and all together */
    for (unsigned f = 1; f & AST_GA_FAULT_ALL; f <<= 1) {
        ast_error_clear();
        int frc = ast_ga_self_test(f, 7, NULL);
        CHECK(frc != 0, "injected fault 0x%x was not caught", f);
        CHECK(strstr(ast_error_get(), "GA self-test failed") != NULL, "fault 0x%x message '%s'",
              f, ast_error_get());
    }
    CHECK(ast_ga_self_test(AST_GA_FAULT_ALL, 3, NULL) != 0, "all faults together not caught");
    /* the fault is off again afterwards */
    CHECK(ast_ga_self_test(0, 11, NULL) == 0, "self-test after faults: %s", ast_error_get());
}

static int level_sum(const uint8_t *g, int steps) {
    int s = 0;
    for (int t = 1; t < steps; t++) s += g[t];
    return s;
}

/* Populations are a pure function of the seed, land in the band, keep step 0 dense, and are
 * distinct when the space allows. */
static void test_populations(void) {
    ast_ga_params p;
    ast_ga_params_default(&p);
    int steps = 20;
    ast_ga_band band = {60, 75}; /* out of (steps-1)*10 = 190 */
    static ast_ga_child a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        ast_rng r;
        ast_rng_seed(&r, run == 2 ? 99 : 5);
        ast_ga_seen seen;
        CHECK(ast_ga_seen_init(&seen, steps, 16) == 0, "seen init");
        ast_ga_child *out = run == 0 ? a : run == 1 ? b : c;
        CHECK(ast_ga_initial(&p, steps, band, &r, &seen, out) == 0, "initial: %s", ast_error_get());
        const uint8_t *pool[10];
        for (int i = 0; i < 10; i++) pool[i] = out[i].g;
        CHECK(ast_ga_children(&p, steps, band, 1, &r, pool, 10, &seen, out + p.population - 30) ==
                  0,
              "children: %s", ast_error_get());
        ast_ga_seen_free(&seen);
    }
    int same = 1, differs = 0;
    for (int i = 0; i < p.population; i++) {
        same &= memcmp(a[i].g, b[i].g, (size_t)steps) == 0 && a[i].origin == b[i].origin &&
                a[i].parent_a == b[i].parent_a;
        differs |= memcmp(a[i].g, c[i].g, (size_t)steps) != 0;
        int s = level_sum(a[i].g, steps);
        CHECK(s >= band.lo && s <= band.hi, "candidate %d: level sum %d outside [%d, %d]", i, s,
              band.lo, band.hi);
        CHECK(a[i].g[0] == p.levels - 1, "candidate %d: step 0 at level %d", i, a[i].g[0]);
        for (int j = 0; j < i; j++)
            CHECK(memcmp(a[i].g, a[j].g, (size_t)steps) != 0 || a[i].duplicate,
                  "candidates %d and %d are equal but not marked duplicate", j, i);
    }
    CHECK(same, "the same seed gave different populations");
    CHECK(differs, "different seeds gave the same population");
    CHECK(a[0].origin == AST_ORIGIN_CONSTANT && a[1].origin == AST_ORIGIN_RAMP_DOWN &&
              a[2].origin == AST_ORIGIN_RAMP_UP && a[3].origin == AST_ORIGIN_RANDOM,
          "structured seeds first (origins %d %d %d %d)", a[0].origin, a[1].origin, a[2].origin,
          a[3].origin);
    /* the ramp-down seed really is decreasing before repair nudges it */
    CHECK(a[1].g[1] > a[1].g[steps - 1], "ramp-down seed: %d .. %d", a[1].g[1], a[1].g[steps - 1]);
}

static void test_mutation_schedule(void) {
    ast_ga_params p;
    ast_ga_params_default(&p);
    CHECK(fabs(ast_ga_mutation_rate(&p, 1) - 0.1) < 1e-12, "first rate %g", ast_ga_mutation_rate(&p, 1));
    CHECK(fabs(ast_ga_mutation_rate(&p, p.generations) - 0.01) < 1e-12, "last rate %g",
          ast_ga_mutation_rate(&p, p.generations));
    double mid = ast_ga_mutation_rate(&p, 15); /* 0.1 - 0.09 * 14/29 */
    CHECK(fabs(mid - (0.1 - 0.09 * 14.0 / 29.0)) < 1e-12, "rate at 15: %g (linear)", mid);
    for (int g = 2; g <= p.generations; g++)
        CHECK(ast_ga_mutation_rate(&p, g) < ast_ga_mutation_rate(&p, g - 1), "rate not decaying at %d", g);
}

static void test_params_check(void) {
    ast_ga_params p;
    ast_ga_params_default(&p);
    CHECK(ast_ga_params_check(&p, 50) == 0, "defaults refused: %s", ast_error_get());
    CHECK(ast_ga_total_evaluations(&p) == 950, "paper defaults: %d evaluations",
          ast_ga_total_evaluations(&p));
    CHECK_FAILS_WITH(ast_ga_params_check(&p, 1), "2 to");
    p.parents = 60;
    CHECK_FAILS_WITH(ast_ga_params_check(&p, 50), "--parents");
    ast_ga_params_default(&p);
    p.elites = 11;
    CHECK_FAILS_WITH(ast_ga_params_check(&p, 50), "--elites");
    ast_ga_params_default(&p);
    p.band_low = 1.2;
    CHECK_FAILS_WITH(ast_ga_params_check(&p, 50), "band");
    ast_ga_params_default(&p);
    p.levels = 200;
    CHECK_FAILS_WITH(ast_ga_params_check(&p, 50), "--levels");
}

static void test_format_parse(void) {
    uint8_t g[7] = {10, 4, 4, 3, 0, 10, 1}, h[7];
    char buf[64];
    ast_ga_format(g, 7, buf, sizeof buf);
    CHECK(strcmp(buf, "10,4,4,3,0,10,1") == 0, "format '%s'", buf);
    CHECK(ast_ga_parse(buf, 7, 11, h) == 0 && memcmp(g, h, 7) == 0, "parse: %s", ast_error_get());
    CHECK_FAILS_WITH(ast_ga_parse("10,4,4", 7, 11, h), "3 genes");
    CHECK_FAILS_WITH(ast_ga_parse("9,4,4,3,0,10,1", 7, 11, h), "step 0");
    CHECK_FAILS_WITH(ast_ga_parse("10,4,11,3,0,10,1", 7, 11, h), "bad level");
    CHECK_FAILS_WITH(ast_ga_parse("10;4", 2, 11, h), "comma");
    ast_ga_curve(g, 7, 11, buf, sizeof buf);
    CHECK(strcmp(buf, "X4430X1") == 0, "curve '%s'", buf);
}

static void test_latency(void) {
    /* an exact line is recovered */
    ast_latency_model m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < 5; i++) {
        m.theta[i] = ast_latency_default_thetas[i];
        m.seconds[i] = 0.01 + 0.09 * m.theta[i];
    }
    m.n_points = 5;
    m.branches = 2;
    CHECK(ast_latency_fit(&m) == 0, "fit: %s", ast_error_get());
    CHECK(fabs(m.a - 0.01) < 1e-12 && fabs(m.b - 0.09) < 1e-12 && fabs(m.r2 - 1) < 1e-12,
          "fit a %g b %g r2 %g", m.a, m.b, m.r2);
    /* noise lowers r2 but keeps the slope close */
    ast_rng r;
    ast_rng_seed(&r, 3);
    ast_latency_model n = m;
    for (int i = 0; i < 5; i++) n.seconds[i] *= 1 + 0.02 * (ast_rng_uniform(&r) - 0.5);
    CHECK(ast_latency_fit(&n) == 0 && n.r2 < 1 && n.r2 > 0.99 && fabs(n.b - 0.09) < 0.01,
          "noisy fit b %g r2 %g", n.b, n.r2);
    /* time that does not fall with θ is refused */
    ast_latency_model flat = m;
    for (int i = 0; i < 5; i++) flat.seconds[i] = 0.1 - 0.001 * flat.theta[i];
    CHECK_FAILS_WITH(ast_latency_fit(&flat), "does not get faster");

    /* prediction and band: dense 50 steps x 2 branches x 0.1 s = 10 s */
    int steps = 50, levels = 11;
    CHECK(fabs(ast_latency_dense(&m, steps) - 10.0) < 1e-9, "dense %g", ast_latency_dense(&m, steps));
    ast_ga_band band;
    double mean;
    CHECK(ast_latency_band(&m, steps, levels, 2.0, 0.9, 1.1, &band, &mean) == 0, "band: %s",
          ast_error_get());
    /* at 2x: per branch 2.5 s = 50·0.01 + 0.09·(1 + Σθ) -> Σθ = 21.222 over 49 free steps */
    CHECK(fabs(mean - 21.2222222 / 49) < 1e-6, "target mean budget %g", mean);
    CHECK(band.lo == (int)ceil(0.9 * 212.222222) && band.hi == (int)floor(1.1 * 212.222222),
          "band [%d, %d]", band.lo, band.hi);
    /* a genome whose level sum is the centre has predicted speedup ~2 */
    float b[50];
    b[0] = 1;
    int left = 212;
    for (int t = 1; t < steps; t++) {
        int lv = left / (steps - t);
        b[t] = (float)lv / 10;
        left -= lv;
    }
    double sp = ast_latency_dense(&m, steps) / ast_latency_predict(&m, b, steps);
    CHECK(fabs(sp - 2.0) < 0.01, "centre of the band predicts %.4fx", sp);
    /* repair of random genomes lands in the band */
    for (int k = 0; k < 200; k++) {
        uint8_t g[50];
        ast_ga_random(&r, steps, levels, g);
        ast_ga_repair(&r, steps, levels, band, g);
        int s = level_sum(g, steps);
        CHECK(s >= band.lo && s <= band.hi && g[0] == 10, "repaired sum %d not in [%d, %d]", s,
              band.lo, band.hi);
    }
    /* an unreachable target is a clear error */
    CHECK_FAILS_WITH(ast_latency_band(&m, steps, levels, 50.0, 0.9, 1.1, &band, &mean),
                     "out of reach");
    /* 50 x 0.1 s / (0.1 + 49 x 0.01 s) = 8.47x */
    CHECK(fabs(ast_latency_max_speedup(&m, steps) - 5.0 / 0.59) < 1e-9,
          "max speedup %g", ast_latency_max_speedup(&m, steps));
    /* a dense path slower than θ = 1 raises every predicted speedup */
    ast_latency_model slow = m;
    slow.dense_s = 0.2;
    CHECK(fabs(ast_latency_dense(&slow, steps) - 20.0) < 1e-9, "dense_s used");
    /* per-step overhead: counted on both sides, so it lowers every speedup */
    ast_latency_model ov = m;
    ov.step_s = 0.05;
    CHECK(fabs(ast_latency_dense(&ov, steps) - 12.5) < 1e-9, "dense with overhead %g",
          ast_latency_dense(&ov, steps));
    CHECK(fabs(ast_latency_predict(&ov, b, steps) - (ast_latency_predict(&m, b, steps) + 2.5)) < 1e-9,
          "predicted with overhead");
    ast_ga_band bo;
    CHECK(ast_latency_band(&ov, steps, levels, 2.0, 0.9, 1.1, &bo, &mean) == 0 && bo.hi < band.hi,
          "overhead asks for smaller budgets: [%d, %d] vs [%d, %d]", bo.lo, bo.hi, band.lo, band.hi);
    /* centre of that band predicts 2x again: Σθ = ((6.25 - 2.5)/2 - 0.5)/0.09 - 1 */
    double want_sum = ((12.5 / 2 - 2.5) / 2 - 0.5) / 0.09 - 1;
    CHECK(fabs(mean * 49 - want_sum) < 1e-9, "target sum %g vs %g", mean * 49, want_sum);
    /* points JSON round trip */
    char *js = ast_latency_points_json(&m);
    ast_latency_model back;
    memset(&back, 0, sizeof back);
    CHECK(js && ast_latency_points_parse(js, &back) == 0 && back.n_points == 5 &&
              back.seconds[2] == m.seconds[2],
          "points round trip '%s'", js ? js : "(null)");
    free(js);
    CHECK_FAILS_WITH(ast_latency_points_parse("[[1]]", &back), "pair");
    double med[4] = {4, 1, 3, 2};
    CHECK(ast_median(med, 4) == 2.5, "median %g", med[1]);
}

static void test_select(void) {
    /* elites stay even when every child is better; ties broken by key */
    ast_ga_rank_item pool[4] = {{0, 5, 1}, {0, 6, 2}, {0, 7, 3}, {0, 8, 4}};
    ast_ga_rank_item kids[4] = {{0, 1, 10}, {0, 2, 11}, {0, 3, 12}, {0, 1, 9}};
    ast_ga_rank_item out[4];
    int n = ast_ga_select(pool, 4, kids, 4, 4, 1, out);
    CHECK(n == 4 && out[0].key == 9 && out[1].key == 10 && out[2].key == 11 && out[3].key == 1,
          "selection %lld %lld %lld %lld", (long long)out[0].key, (long long)out[1].key,
          (long long)out[2].key, (long long)out[3].key);
    /* tier 0 (reaches the target speed) ranks before tier 1 whatever the fitness */
    kids[0].tier = kids[1].tier = kids[2].tier = kids[3].tier = 1;
    n = ast_ga_select(pool, 4, kids, 4, 4, 0, out);
    CHECK(n == 4 && out[0].key == 1 && out[3].key == 4, "tiers: %lld .. %lld",
          (long long)out[0].key, (long long)out[3].key);
    /* NaN fitness ranks last */
    ast_ga_rank_item v[3] = {{0, NAN, 1}, {0, 3, 2}, {0, 2, 3}};
    ast_ga_rank(v, 3);
    CHECK(v[0].key == 3 && v[2].key == 1, "NaN not last");
}

int main(void) {
    test_self_test();
    test_populations();
    test_mutation_schedule();
    test_params_check();
    test_format_parse();
    test_latency();
    test_select();
    return ast_test_finish("test_ga");
}
