/* sampler.c — flow-matching schedule, UniPC (bh2, order 2, x0-prediction) and Euler with CFG,
 * exactly as wan21.md §3.2–3.5 (FlowUniPCMultistepScheduler), driving the engine with a per-step
 * token budget. Scalar coefficients are computed in double (the reference uses float32 scalars:
 * the difference is ~1e-7 relative, far below the 1e-4 golden tolerance). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void ast_schedule(int steps, float shift, float *sigmas, int64_t *timesteps) {
    const double sigma_max = (double)0.999f; /* float32(0.999) = 0.9990000128746033 */
    const double step = (0.0 - sigma_max) / steps; /* numpy linspace(σmax, 0, N+1)[:-1] */
    for (int i = 0; i < steps; i++) {
        double s = (double)i * step + sigma_max;
        double sp = shift * s / (1.0 + (shift - 1.0) * s);
        timesteps[i] = (int64_t)(sp * 1000.0); /* truncation, as .to(int64) */
        sigmas[i] = (float)sp;
    }
    sigmas[steps] = 0.0f;
}

void ast_noise(uint64_t seed, float *x, int64_t n) {
    ast_rng g;
    ast_rng_seed(&g, seed);
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ast_rng_uniform(&g), u2 = ast_rng_uniform(&g);
        if (u1 < 1e-300) u1 = 1e-300;
        double rad = sqrt(-2.0 * log(u1));
        x[i] = (float)(rad * cos(2 * M_PI * u2));
        if (i + 1 < n) x[i + 1] = (float)(rad * sin(2 * M_PI * u2));
    }
}

static double lambda_of(double sigma) { return log(1.0 - sigma) - log(sigma); }

/* v = model velocity with CFG for step i into v[n]; uses vc as scratch for the uncond branch. */
static int guided_velocity(ast_engine *e, const ast_sampler_params *p, const float *x, float t,
                           float theta, float *v, float *vu, int64_t n, ast_generate_stats *st) {
    double t0 = ast_now_sec();
    ast_forward_info info;
    if (ast_engine_forward(e, 0, x, t, theta, v, &info)) return -1;
    st->forwards++;
    st->tokens_computed += info.computed;
    if (p->guidance != 1.0f) {
        if (ast_engine_forward(e, 1, x, t, theta, vu, &info)) return -1;
        st->forwards++;
        st->tokens_computed += info.computed;
        const float g = p->guidance;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) v[i] = vu[i] + g * (v[i] - vu[i]);
    }
    st->forward_seconds += ast_now_sec() - t0;
    return 0;
}

int ast_generate(ast_engine *e, const ast_sampler_params *p, const float *budgets,
                 const float *noise, float *out, ast_step_fn on_step, void *user,
                 ast_generate_stats *stats) {
    const ast_model *m = ast_engine_model(e);
    const int N = p->steps;
    ast_generate_stats st = {0};
    double t_start = ast_now_sec();
    if (N < 1) return ast_fail("the number of steps must be at least 1, got %d", N);
    /* the latent size follows from the engine's token count and the patch */
    const ast_wan_config *c = &m->cfg;
    const int64_t n = (int64_t)ast_engine_tokens(e) * c->patch[0] * c->patch[1] * c->patch[2] *
                      c->in_dim;
    if (c->in_dim != c->out_dim)
        return ast_fail("sampling needs in_dim == out_dim, the model has %d and %d", c->in_dim,
                        c->out_dim);
    float *sigmas = ast_malloc(sizeof(float) * (N + 1), "the schedule");
    int64_t *ts = ast_malloc(sizeof(int64_t) * N, "the schedule");
    float *buf = ast_alloc_aligned(sizeof(float) * n * 7, "sampler state");
    if (!sigmas || !ts || !buf) {
        free(sigmas);
        free(ts);
        ast_free_aligned(buf);
        return -1;
    }
    ast_schedule(N, p->shift, sigmas, ts);
    /* x: current sample; v, vu: guided / unconditional velocity; last: UniPC's last_sample;
     * m_cur, m_prev, m_prev2: x0 predictions m_i, m_{i-1}, m_{i-2} (rotated each step) */
    float *x = buf, *v = buf + n, *vu = buf + 2 * n, *last = buf + 3 * n, *m_cur = buf + 4 * n,
          *m_prev = buf + 5 * n, *m_prev2 = buf + 6 * n;
    memcpy(x, noise, sizeof(float) * n);
    ast_engine_reset(e);
    int rc = 0, prev_order = 0;
    for (int i = 0; i < N; i++) {
        float theta = (budgets && i > 0) ? budgets[i] : 1.0f;
        if ((rc = guided_velocity(e, p, x, (float)ts[i], theta, v, vu, n, &st))) break;
        const double s_i = sigmas[i], s_next = sigmas[i + 1];
        if (p->kind == AST_SAMPLER_EULER) {
            const float dt = (float)(s_next - s_i);
#pragma omp parallel for schedule(static)
            for (int64_t k = 0; k < n; k++) x[k] += dt * v[k];
        } else {
            /* 1. x0 prediction from the (uncorrected) sample */
            const float sf = (float)s_i;
#pragma omp parallel for schedule(static)
            for (int64_t k = 0; k < n; k++) m_cur[k] = x[k] - sf * v[k];
            /* 2. corrector UniC with the previous step's order */
            if (i > 0) {
                const double ss = sigmas[i - 1], lt = lambda_of(s_i), ls = lambda_of(ss);
                const double h = lt - ls, hh = -h, phi1 = expm1(hh), B = expm1(hh);
                const double at = 1.0 - s_i;
                const float ca = (float)(s_i / ss), cb = (float)(at * phi1);
                if (prev_order == 1) {
                    const float cc = (float)(at * B * 0.5);
#pragma omp parallel for schedule(static)
                    for (int64_t k = 0; k < n; k++)
                        x[k] = ca * last[k] - cb * m_prev[k] - cc * (m_cur[k] - m_prev[k]);
                } else {
                    const double r1 = (lambda_of(sigmas[i - 2]) - ls) / h;
                    const double b1 = (phi1 / hh - 1.0) / B;
                    const double b2 = 2.0 * ((phi1 / hh - 1.0) / hh - 0.5) / B;
                    /* solve [[1,1],[r1,1]]·[ρ0,ρ1] = [b1,b2] */
                    const double rho0 = (b1 - b2) / (1.0 - r1), rho1 = b1 - rho0;
                    const float c0 = (float)(at * B * rho0 / r1), c1 = (float)(at * B * rho1);
#pragma omp parallel for schedule(static)
                    for (int64_t k = 0; k < n; k++)
                        x[k] = ca * last[k] - cb * m_prev[k] - c0 * (m_prev2[k] - m_prev[k]) -
                               c1 * (m_cur[k] - m_prev[k]);
                }
            }
            /* 3. history and order */
            int order = 2;
            if (N - i < order) order = N - i;
            if (i + 1 < order) order = i + 1;
            float *tmp = m_prev2;
            m_prev2 = m_prev;
            m_prev = m_cur;
            m_cur = tmp;
            prev_order = order;
            memcpy(last, x, sizeof(float) * n); /* last_sample = corrected x_i */
            /* 4. predictor UniP to σ_{i+1} (m0 = m_prev now) */
            if (s_next == 0.0) {
                memcpy(x, m_prev, sizeof(float) * n); /* x_N = m_{N-1} */
            } else {
                const double lt = lambda_of(s_next), ls = lambda_of(s_i);
                const double h = lt - ls, hh = -h, phi1 = expm1(hh), B = expm1(hh);
                const double at = 1.0 - s_next;
                const float ca = (float)(s_next / s_i), cb = (float)(at * phi1);
                if (order == 1) {
#pragma omp parallel for schedule(static)
                    for (int64_t k = 0; k < n; k++) x[k] = ca * last[k] - cb * m_prev[k];
                } else {
                    const double r1 = (lambda_of(sigmas[i - 1]) - ls) / h;
                    const float cd = (float)(at * B * 0.5 / r1);
#pragma omp parallel for schedule(static)
                    for (int64_t k = 0; k < n; k++)
                        x[k] = ca * last[k] - cb * m_prev[k] - cd * (m_prev2[k] - m_prev[k]);
                }
            }
        }
        if (on_step && on_step(user, i, N, ast_now_sec() - t_start)) {
            rc = ast_fail("interrupted at step %d of %d", i + 1, N);
            break;
        }
    }
    if (rc == 0) memcpy(out, x, sizeof(float) * n);
    st.seconds = ast_now_sec() - t_start;
    if (stats) *stats = st;
    free(sigmas);
    free(ts);
    ast_free_aligned(buf);
    return rc;
}
