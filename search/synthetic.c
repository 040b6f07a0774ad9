/* synthetic.c — model "synthetic": a stand-in for a network, for testing the search machinery
 * (GA, store, resume, export) without an engine, in milliseconds.
 *
 * The "dense output" of prompt p is seeded noise [4, F, H, W]. A budget curve θ yields that
 * output plus a fixed ±1 pattern scaled so the MSE against dense is exactly
 *
 *   f_p(θ) = (1 + 0.1·p) · [ Σ_{t>=1} w_t (1 − θ_t)² + 0.02 Σ_{t>=2} (θ_t − θ_{t−1})² ] / S,
 *   w_t = 4·exp(−3t/S)   (early steps matter more, as in a real sampler),
 *
 * and the latency is exactly a + b·θ per forward (a = 2 ms, b = 18 ms, synthetic seconds: no
 * time passes unless --synthetic-ms asks for a sleep per generation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "search.h"

#define SYN_A 0.002
#define SYN_B 0.018

typedef struct {
    int c, f, h, w, steps, branches, n_prompts, sleep_ms;
    uint64_t noise_seed;
} synthetic;

static double syn_fitness(const synthetic *s, int p, const float *th) {
    double f = 0, S = s->steps;
    for (int t = 1; t < s->steps; t++) {
        double wt = 4.0 * exp(-3.0 * t / S), d = 1.0 - th[t];
        f += wt * d * d;
        if (t >= 2) f += 0.02 * (th[t] - th[t - 1]) * (th[t] - th[t - 1]);
    }
    return (1.0 + 0.1 * p) * f / S;
}

static void syn_dense(const synthetic *s, int p, float *out, int64_t n) {
    ast_rng r;
    ast_rng_seed(&r, s->noise_seed + (uint64_t)p);
    for (int64_t i = 0; i < n; i++) out[i] = (float)(2.0 * ast_rng_uniform(&r) - 1.0);
}

static int syn_generate(void *user, int p, const float *budgets, float *out, double *seconds) {
    synthetic *s = user;
    int64_t n = (int64_t)s->c * s->f * s->h * s->w;
    syn_dense(s, p, out, n);
    double t = 0;
    for (int i = 0; i < s->steps; i++)
        t += SYN_A + SYN_B * (budgets && i > 0 ? budgets[i] : 1.0);
    *seconds = t * s->branches;
    if (budgets) {
        double amp = sqrt(syn_fitness(s, p, budgets));
        ast_rng r;
        ast_rng_seed(&r, 0x5eed + (uint64_t)p);
        for (int64_t i = 0; i < n; i++)
            out[i] += (float)((ast_rng_next(&r) >> 63) ? amp : -amp);
    }
    if (s->sleep_ms > 0) {
        struct timespec ts = {s->sleep_ms / 1000, (long)(s->sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int syn_time_forward(void *user, float theta, double *seconds) {
    (void)user;
    *seconds = SYN_A + SYN_B * (theta < 0 ? 1.0 : theta); /* theta < 0: dense */
    return 0;
}

static void syn_destroy(void *user) { free(user); }

int ast_evaluator_synthetic(const ast_search_config *c, ast_evaluator **out) {
    *out = NULL;
    ast_evaluator *ev = ast_calloc(1, sizeof *ev, "the synthetic evaluator");
    synthetic *s = ast_calloc(1, sizeof *s, "the synthetic evaluator");
    if (!ev || !s) {
        free(ev);
        free(s);
        return -1;
    }
    s->c = 4;
    s->f = c->frames > 0 ? c->frames : 2;
    s->h = c->height > 0 ? c->height : 8;
    s->w = c->width > 0 ? c->width : 8;
    s->steps = c->steps > 0 ? c->steps : 20;
    double guidance = isnan(c->guidance) ? 5.0 : c->guidance;
    s->branches = guidance == 1.0 ? 1 : 2;
    s->sleep_ms = c->synthetic_ms;
    s->noise_seed = c->noise_seed;
    ev->user = s;
    ev->generate = syn_generate;
    ev->time_forward = syn_time_forward;
    ev->destroy = syn_destroy;
    snprintf(ev->model_id, sizeof ev->model_id, "synthetic");
    snprintf(ev->checkpoint_hash, sizeof ev->checkpoint_hash, "0000000000000001");
    snprintf(ev->backend, sizeof ev->backend, "synthetic");
    snprintf(ev->device, sizeof ev->device, "synthetic (no network)");
    ev->channels = s->c;
    ev->frames = s->f;
    ev->height = s->h;
    ev->width = s->w;
    ev->steps = s->steps;
    snprintf(ev->sampler, sizeof ev->sampler, "%s", c->sampler ? c->sampler : "unipc");
    ev->shift = isnan(c->shift) ? 5.0 : c->shift;
    ev->guidance = guidance;
    ev->n_branches = s->branches;
    int n = c->prompts ? c->prompts_count : 4;
    if (n < 1) n = 1;
    ev->n_prompts = s->n_prompts = n;
    ev->prompt_keys = ast_calloc((size_t)n, sizeof *ev->prompt_keys, "prompt keys");
    if (!ev->prompt_keys) {
        ast_evaluator_free(ev);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *text = c->prompts ? c->prompts[i] : "synthetic";
        size_t len = strlen(text) + 16;
        ev->prompt_keys[i] = ast_malloc(len, "a prompt key");
        if (!ev->prompt_keys[i]) {
            ast_evaluator_free(ev);
            return -1;
        }
        snprintf(ev->prompt_keys[i], len, "text:%s", text);
    }
    *out = ev;
    return 0;
}
