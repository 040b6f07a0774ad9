/* latency.c — measured time per forward vs budget, its linear fit, predicted generation time
 * and the repair band derived from a target speedup (see latency.h). */
#include "latency.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const double ast_latency_default_thetas[5] = {1.0, 0.7, 0.4, 0.2, 0.1};

int ast_latency_fit(ast_latency_model *m) {
    int n = m->n_points;
    if (n < 2) return ast_fail("latency model: %d timing point(s), need at least 2", n);
    double st = 0, sy = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(m->theta[i]) || !isfinite(m->seconds[i]) || m->seconds[i] < 0)
            return ast_fail("latency model: bad timing point %d (θ %g, %g s)", i, m->theta[i],
                            m->seconds[i]);
        st += m->theta[i];
        sy += m->seconds[i];
    }
    double mt = st / n, my = sy / n, stt = 0, sty = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        double dt = m->theta[i] - mt, dy = m->seconds[i] - my;
        stt += dt * dt;
        sty += dt * dy;
        syy += dy * dy;
    }
    if (stt <= 0) return ast_fail("latency model: every timing point has the same θ");
    m->b = sty / stt;
    m->a = my - m->b * mt;
    double sse = 0;
    for (int i = 0; i < n; i++) {
        double e = m->seconds[i] - (m->a + m->b * m->theta[i]);
        sse += e * e;
    }
    m->r2 = syy > 0 ? 1.0 - sse / syy : 1.0;
    if (!(m->b > 0))
        return ast_fail("latency model: a forward does not get faster with a smaller budget on "
                        "this backend (time = %.4g + %.4g·θ s, r² %.3f); a speedup target "
                        "cannot be met (is the token-wise engine built in? is the machine "
                        "busy?)",
                        m->a, m->b, m->r2);
    if (m->a < 0) m->a = 0; /* a negative intercept is noise; time(0) cannot be below 0 */
    return 0;
}

double ast_median(double *x, int n) {
    for (int i = 1; i < n; i++) { /* insertion sort: n is a handful of repeats */
        double v = x[i];
        int j = i - 1;
        while (j >= 0 && x[j] > v) {
            x[j + 1] = x[j];
            j--;
        }
        x[j + 1] = v;
    }
    if (n == 0) return NAN;
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

int ast_latency_calibrate(const ast_latency_timer *tm, const double *thetas, int n, int repeats,
                          int branches, int steps, ast_latency_model *m) {
    memset(m, 0, sizeof *m);
    if (n < 2 || n > AST_LATENCY_MAX_POINTS || repeats < 1 || repeats > 101)
        return ast_fail("latency calibration: %d budgets x %d repeats is out of range", n,
                        repeats);
    double warm, samples[101];
    if (tm->forward(tm->user, 1.0f, &warm) != 0) {
        ast_error_prefix("latency calibration (warm-up forward)");
        return -1;
    }
    for (int i = 0; i <= n; i++) { /* i == n: the dense path */
        double theta = i < n ? thetas[i] : -1.0;
        for (int k = 0; k < repeats; k++) {
            if (tm->forward(tm->user, (float)theta, &samples[k]) != 0) {
                if (i < n) ast_error_prefix("latency calibration (forward at θ %.2f)", theta);
                else ast_error_prefix("latency calibration (dense forward)");
                return -1;
            }
        }
        if (i < n) {
            m->theta[i] = theta;
            m->seconds[i] = ast_median(samples, repeats);
        } else {
            m->dense_s = ast_median(samples, repeats);
        }
    }
    m->n_points = n;
    m->branches = branches;
    if (ast_latency_fit(m) != 0) return -1;
    if (tm->generation) {
        double g = 0;
        if (tm->generation(tm->user, &g) != 0) {
            ast_error_prefix("latency calibration (dense generation)");
            return -1;
        }
        double rest = (g - (double)steps * branches * m->dense_s) / steps;
        m->step_s = rest > 0 ? rest : 0;
    }
    return 0;
}

double ast_latency_predict(const ast_latency_model *m, const float *budgets, int steps) {
    double s = 0;
    for (int t = 0; t < steps; t++) s += m->a + m->b * (double)budgets[t];
    return s * m->branches + steps * m->step_s;
}

static double dense_forward(const ast_latency_model *m) {
    return m->dense_s > 0 ? m->dense_s : m->a + m->b;
}

double ast_latency_dense(const ast_latency_model *m, int steps) {
    return (double)steps * (dense_forward(m) * m->branches + m->step_s);
}

double ast_latency_max_speedup(const ast_latency_model *m, int steps) {
    double fastest = ((m->a + m->b) + (double)(steps - 1) * m->a) * m->branches + steps * m->step_s;
    return fastest > 0 ? ast_latency_dense(m, steps) / fastest : INFINITY;
}

int ast_latency_band(const ast_latency_model *m, int steps, int levels, double target_speedup,
                     double band_low, double band_high, ast_ga_band *band, double *theta_mean) {
    if (!(target_speedup >= 1.0))
        return ast_fail("target speedup must be at least 1, got %g", target_speedup);
    double max_s = ast_latency_max_speedup(m, steps);
    /* target forward time per branch: S·a + b·(1 + Σ_{t>=1} θ_t) = (dense/target − S·step_s)
     * / branches */
    double per_branch =
        (ast_latency_dense(m, steps) / target_speedup - steps * m->step_s) / m->branches;
    double sum_theta = (per_branch - steps * m->a) / m->b - 1.0;
    if (sum_theta > steps - 1) sum_theta = steps - 1; /* dense path slower than θ = 1 */
    if (sum_theta < 0)
        return ast_fail("target speedup %.2fx is out of reach: on this backend the latency "
                        "model (%.4g + %.4g·θ s per forward) allows at most %.2fx with %d steps "
                        "(every step after the first at θ = 0); ask for less",
                        target_speedup, m->a, m->b, max_s, steps);
    int free_genes = steps - 1, top = levels - 1;
    double centre = sum_theta * top; /* in levels */
    double lo = ceil(band_low * centre - 1e-9), hi = floor(band_high * centre + 1e-9);
    if (lo > hi) lo = hi = floor(centre + 0.5); /* band narrower than one level: the nearest */
    if (lo < 0) lo = 0;
    if (hi > (double)free_genes * top) hi = (double)free_genes * top;
    if (lo > hi) lo = hi;
    band->lo = (int)lo;
    band->hi = (int)hi;
    if (theta_mean) *theta_mean = sum_theta / free_genes;
    return 0;
}

char *ast_latency_points_json(const ast_latency_model *m) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    for (int i = 0; i < m->n_points; i++) {
        double pair[2] = {m->theta[i], m->seconds[i]};
        cJSON *p = cJSON_CreateDoubleArray(pair, 2);
        if (!p || !cJSON_AddItemToArray(arr, p)) {
            cJSON_Delete(p);
            cJSON_Delete(arr);
            ast_error_set("out of memory writing the latency points");
            return NULL;
        }
    }
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (!s) ast_error_set("out of memory writing the latency points");
    return s;
}

int ast_latency_points_parse(const char *json, ast_latency_model *m) {
    cJSON *arr = cJSON_Parse(json);
    int n = arr && cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (n < 0 || n > AST_LATENCY_MAX_POINTS) {
        cJSON_Delete(arr);
        return ast_fail("latency points '%.80s' are not a list of at most %d [θ, s] pairs", json,
                        AST_LATENCY_MAX_POINTS);
    }
    for (int i = 0; i < n; i++) {
        cJSON *p = cJSON_GetArrayItem(arr, i);
        cJSON *t = cJSON_GetArrayItem(p, 0), *s = cJSON_GetArrayItem(p, 1);
        if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2 || !cJSON_IsNumber(t) ||
            !cJSON_IsNumber(s)) {
            cJSON_Delete(arr);
            return ast_fail("latency point %d is not a [θ, seconds] pair", i);
        }
        m->theta[i] = t->valuedouble;
        m->seconds[i] = s->valuedouble;
    }
    m->n_points = n;
    cJSON_Delete(arr);
    return 0;
}
