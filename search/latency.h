/* latency.h — the latency model behind --target-speedup (method.md §2, "Where this project goes
 * further"): time of one engine forward as a function of the budget θ, measured on this
 * machine's backend, fitted as time(θ) = a + b·θ by least squares.
 *
 *   predicted generation time of budgets θ_0..θ_{S-1} = Σ_t (branches·(a + b·θ_t) + step_s)
 *   predicted dense time = S · (branches·dense_s + step_s)
 *     dense_s: one forward of the dense-only engine, timed beside the fit's points;
 *     step_s:  time per step outside the forwards (sampler update, CFG mix, copies), from one
 *              timed dense generation minus its forwards
 *   predicted speedup = predicted dense time / predicted time
 *
 * The GA's repair band comes from it: the target speedup fixes a target sum of budgets over the
 * free steps (t >= 1), and the band is [band_low, band_high] x that sum, in integer levels. */
#ifndef AST_LATENCY_H
#define AST_LATENCY_H

#ifdef __cplusplus
extern "C" {
#endif

#include "ga.h"

#define AST_LATENCY_MAX_POINTS 16

typedef struct {
    int n_points;
    double theta[AST_LATENCY_MAX_POINTS];   /* budgets timed */
    double seconds[AST_LATENCY_MAX_POINTS]; /* median seconds of one forward (one branch) */
    double a, b;     /* fit: seconds per forward = a + b·θ (b > 0) */
    double r2;       /* coefficient of determination of the fit */
    double dense_s;  /* seconds of one forward without token-wise state (what runs with no
                        profile): the dense side of every predicted speedup; 0 = a + b */
    double step_s;   /* seconds per step outside the forwards (>= 0) */
    int branches;    /* forwards per denoising step (2 with CFG) */
} ast_latency_model;

/* The default calibration budgets: 1.0, 0.7, 0.4, 0.2, 0.1. */
extern const double ast_latency_default_thetas[5];

/* Least-squares fit of a, b, r2 from the points. Fails when fewer than 2 distinct θ, or when time
 * does not grow with θ (b <= 0: the budget would not buy any speed on this backend). */
int ast_latency_fit(ast_latency_model *m);

/* What calibration times, on the caller's backend. */
typedef struct {
    /* One forward (one branch) at budget theta; theta < 0: the dense path (no token-wise
     * state), the baseline of every speedup. */
    int (*forward)(void *user, float theta, double *seconds);
    /* One whole dense generation of `steps` steps (for step_s); may be NULL (step_s = 0). */
    int (*generation)(void *user, double *seconds);
    void *user;
} ast_latency_timer;

/* Times a forward at each θ `repeats` times (after one untimed warm-up), keeps the median per θ,
 * fits; times the dense path the same way into dense_s, then one dense generation for step_s. */
int ast_latency_calibrate(const ast_latency_timer *t, const double *thetas, int n, int repeats,
                          int branches, int steps, ast_latency_model *m);

double ast_latency_predict(const ast_latency_model *m, const float *budgets, int steps);
double ast_latency_dense(const ast_latency_model *m, int steps);
/* Fastest a genome can be (every free step at θ = 0), as a speedup. */
double ast_latency_max_speedup(const ast_latency_model *m, int steps);

/* Band of Σ_{t>=1} levels for the target speedup. *theta_mean (may be NULL) receives the target
 * mean budget of the free steps. Fails with a clear message when the target is out of reach. */
int ast_latency_band(const ast_latency_model *m, int steps, int levels, double target_speedup,
                     double band_low, double band_high, ast_ga_band *band, double *theta_mean);

/* Median of x[0..n) (sorts x in place). */
double ast_median(double *x, int n);

/* JSON of the points: [[θ, seconds], ...] into a malloc'd string; parse it back. */
char *ast_latency_points_json(const ast_latency_model *m);
int ast_latency_points_parse(const char *json, ast_latency_model *m);

#ifdef __cplusplus
}
#endif

#endif
