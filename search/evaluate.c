/* evaluate.c — the engine-backed evaluator of the search (engine.h, sampler.h, run.h).
 *
 * Two engines on one model: a token-wise one (the candidates) and a dense-only one (the dense
 * references and the dense side of every timing), so a measured speedup is against exactly what
 * a user runs without a profile. The dense engine is made on first use.
 *
 * Prompts: for a model with a text encoder (wan-mini) a prompt is caption text; the
 * unconditional branch uses the empty caption, as astraea-generate does by default. For Wan2.1 a
 * prompt line names a context .safetensors file ("context" [L, text_dim], docs/context.md),
 * then, with CFG, a TAB and the negative-context file. The key of a file prompt includes a hash
 * of the files' bytes, so a changed file never reuses a stale dense reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"
#include "sampler.h"
#include "search.h"

typedef struct {
    ast_model *model;
    ast_engine *tw, *dense;      /* token-wise engine; dense-only engine (lazy) */
    ast_engine_params ep;
    ast_sampler_params sp;
    int n_prompts;
    float **cond, **uncond;      /* [L, text_dim] per prompt (malloc'd by ast_run_context) */
    int *cond_len, *uncond_len;
    float *noise, *scratch;      /* [in_dim, F, H, W], [out_dim, F, H, W] */
    int64_t n_in;
    uint64_t noise_seed;
    float warm[32];              /* CUDA: budgets already run twice (theta < 0: dense) */
    int n_warm;
} engine_eval;

static void ee_destroy(void *user) {
    engine_eval *e = user;
    if (!e) return;
    for (int i = 0; i < e->n_prompts; i++) {
        if (e->cond) free(e->cond[i]);
        if (e->uncond) free(e->uncond[i]);
    }
    free(e->cond);
    free(e->uncond);
    free(e->cond_len);
    free(e->uncond_len);
    free(e->noise);
    free(e->scratch);
    ast_engine_free(e->tw);
    ast_engine_free(e->dense);
    ast_model_free(e->model);
    free(e);
}

/* The engine for budgets (NULL: dense), with prompt p's contexts set. */
static ast_engine *ee_engine(engine_eval *e, int dense, int p) {
    ast_engine **slot = dense ? &e->dense : &e->tw;
    if (!*slot) {
        ast_engine_params ep = e->ep;
        ep.tokenwise = !dense;
        if (ast_engine_create(e->model, &ep, slot) != 0) return NULL;
    }
    ast_engine *g = *slot;
    if (ast_engine_set_context(g, 0, e->cond[p], e->cond_len[p]) != 0) return NULL;
    if (e->ep.n_branches == 2 && ast_engine_set_context(g, 1, e->uncond[p], e->uncond_len[p]) != 0)
        return NULL;
    ast_engine_reset(g);
    return g;
}

static int ee_generate(void *user, int p, const float *budgets, float *out, double *seconds) {
    engine_eval *e = user;
    ast_engine *g = ee_engine(e, budgets == NULL, p);
    if (!g) return -1;
    ast_noise(e->noise_seed + (uint64_t)p, e->noise, e->n_in);
    ast_generate_stats st;
    memset(&st, 0, sizeof st);
    if (ast_generate(g, &e->sp, budgets, e->noise, out, NULL, NULL, &st) != 0) return -1;
    /* a dense reference must be finite (a candidate may diverge: quality.c ranks it last) */
    if (!budgets && ast_run_check_result(e->model, out, (int64_t)e->model->cfg.out_dim *
                                                            e->ep.frames * e->ep.height *
                                                            e->ep.width,
                                         "the dense reference") != 0)
        return -1;
    *seconds = st.seconds;
    return 0;
}

/* One forward of branch 0 at theta on prompt 0 at the first timestep, after a dense forward (so
 * the token-wise caches exist); on CUDA the first call at a theta runs two untimed forwards at
 * theta in between (their state differs from a later call's only in the caches' contents, not
 * in the work at that theta). theta < 0: the dense-only engine. */
static int ee_time_forward(void *user, float theta, double *seconds) {
    engine_eval *e = user;
    ast_engine *g = ee_engine(e, theta < 0, 0);
    if (!g) return -1;
    ast_noise(e->noise_seed, e->noise, e->n_in);
    const float t = 999.0f, th = theta < 0 ? 1.0f : theta; /* the dense-only engine runs 1 */
    if (theta >= 0 && ast_engine_forward(g, 0, e->noise, t, 1.0f, e->scratch, NULL) != 0)
        return -1;
    /* CUDA: a budget's first forward runs eagerly and times the GEMM candidates of its new
     * shapes, the second captures its graph; what a generation repeats is the replay after */
    int warmed = e->ep.backend != AST_BACKEND_CUDA;
    for (int i = 0; i < e->n_warm && !warmed; i++) warmed = e->warm[i] == theta;
    for (int i = 0; i < 2 && !warmed; i++)
        if (ast_engine_forward(g, 0, e->noise, t, th, e->scratch, NULL) != 0) return -1;
    if (!warmed && e->n_warm < (int)(sizeof e->warm / sizeof e->warm[0]))
        e->warm[e->n_warm++] = theta;
    double t0 = ast_now_sec();
    if (ast_engine_forward(g, 0, e->noise, t, th, e->scratch, NULL) != 0) return -1;
    *seconds = ast_now_sec() - t0;
    return 0;
}

static int hash_file(const char *path, uint64_t *h) {
    size_t n = 0;
    char *raw = ast_read_file(path, (size_t)1 << 31, &n);
    if (!raw) return -1;
    for (size_t i = 0; i < n; i++) *h = (*h ^ (unsigned char)raw[i]) * 1099511628211ull;
    free(raw);
    return 0;
}

/* Contexts and key of calibration prompt p. */
static int ee_prompt(engine_eval *e, ast_evaluator *ev, int p, const char *line) {
    const ast_model *m = e->model;
    size_t klen = strlen(line) + 64;
    ev->prompt_keys[p] = ast_malloc(klen, "a prompt key");
    if (!ev->prompt_keys[p]) return -1;
    if (m->cfg.vocab_size > 0) {
        if (ast_run_context(m, line, NULL, &e->cond[p], &e->cond_len[p]) != 0 ||
            ast_run_context(m, "", NULL, &e->uncond[p], &e->uncond_len[p]) != 0)
            return -1;
        snprintf(ev->prompt_keys[p], klen, "text:%s", line);
        return 0;
    }
    char *copy = ast_strdup(line);
    if (!copy) return -1;
    char *neg = strchr(copy, '\t');
    if (neg) *neg++ = 0;
    uint64_t h = 1469598103934665603ull;
    int rc = -1;
    if (e->ep.n_branches == 2 && !neg) {
        ast_error_set("line '%s': with CFG (--guidance %g) each prompt line is a context file, a "
                      "TAB and the negative prompt's context file (or pass --guidance 1)",
                      line, (double)e->sp.guidance);
    } else if (hash_file(copy, &h) == 0 &&
               ast_run_context(m, NULL, copy, &e->cond[p], &e->cond_len[p]) == 0 &&
               (!neg || (hash_file(neg, &h) == 0 &&
                         ast_run_context(m, NULL, neg, &e->uncond[p], &e->uncond_len[p]) == 0))) {
        snprintf(ev->prompt_keys[p], klen, "ctx:%s#%016llx", line, (unsigned long long)h);
        rc = 0;
    }
    free(copy);
    return rc;
}

int ast_evaluator_engine(const ast_search_config *c, ast_evaluator **out) {
    *out = NULL;
    ast_evaluator *ev = ast_calloc(1, sizeof *ev, "the engine evaluator");
    engine_eval *e = ast_calloc(1, sizeof *e, "the engine evaluator");
    if (!ev || !e) {
        free(ev);
        free(e);
        return -1;
    }
    ev->user = e;
    ev->generate = ee_generate;
    ev->time_forward = ee_time_forward;
    ev->destroy = ee_destroy;
    if (ast_run_open_model(c->model, NULL, &e->model) != 0) goto fail;
    const ast_wan_config *mc = &e->model->cfg;

    int F, H, W;
    if (ast_run_latent_shape(e->model, c->frames, c->height, c->width, &F, &H, &W) != 0) goto fail;
    ev->frames = F;
    ev->height = H;
    ev->width = W;
    if (ast_run_pixel_space(e->model)) {
        ev->pixel_frames = F;
        ev->pixel_height = H;
        ev->pixel_width = W;
    } else { /* the Wan VAE: 4x in time (+1), 8x in space */
        ev->pixel_frames = 4 * (F - 1) + 1;
        ev->pixel_height = 8 * H;
        ev->pixel_width = 8 * W;
    }
    ev->steps = c->steps > 0 ? c->steps : mc->default_steps > 0 ? mc->default_steps : 50;
    ev->shift = !isnan(c->shift) ? c->shift : mc->default_shift > 0 ? mc->default_shift : 5.0;
    ev->guidance = !isnan(c->guidance) ? c->guidance
                   : mc->default_guidance > 0 ? mc->default_guidance : 5.0;
    const char *sampler = c->sampler ? c->sampler : "unipc";
    if (strcmp(sampler, "unipc") != 0 && strcmp(sampler, "euler") != 0) {
        ast_error_set("--sampler must be unipc or euler, got '%s'", sampler);
        goto fail;
    }
    snprintf(ev->sampler, sizeof ev->sampler, "%s", sampler);
    e->sp.kind = strcmp(sampler, "euler") == 0 ? AST_SAMPLER_EULER : AST_SAMPLER_UNIPC;
    e->sp.steps = ev->steps;
    e->sp.shift = (float)ev->shift;
    e->sp.guidance = (float)ev->guidance;
    ev->n_branches = e->sp.guidance == 1.0f ? 1 : 2;

    ast_engine_params *ep = &e->ep;
    if (ast_run_pick_backend(c->backend, &ep->backend) != 0) goto fail;
    snprintf(ev->backend, sizeof ev->backend, "%s", ep->backend == AST_BACKEND_CUDA ? "cuda" : "cpu");
    ep->device = c->device;
    if (c->gpus_per_eval > 1) { /* this evaluator's GPU group: the one that starts at device */
        const int G = c->gpus_per_eval;
        int at = -1;
        for (int i = 0; c->gpus && i + G <= c->n_gpus; i += G)
            if (c->gpus[i] == c->device) at = i;
        if (ep->backend != AST_BACKEND_CUDA || at < 0 || G > AST_MAX_RANKS) {
            ast_error_set("--gpus-per-eval %d needs the CUDA backend and --gpus with a multiple "
                          "of %d devices (at most %d per evaluation)",
                          G, G, AST_MAX_RANKS);
            goto fail;
        }
        ep->n_ranks = G;
        memcpy(ep->devices, c->gpus + at, sizeof(int) * (size_t)G);
    }
    ep->frames = F;
    ep->height = H;
    ep->width = W;
    ep->n_branches = ev->n_branches;
    ast_tokenwise_opts_default(&ep->tw);
    if (!isnan(c->w_alpha)) ep->tw.w_alpha = (float)c->w_alpha;
    if (!isnan(c->w_beta)) ep->tw.w_beta = (float)c->w_beta;
    if (c->cache) {
        if (strcmp(c->cache, "residual") != 0 && strcmp(c->cache, "output") != 0) {
            ast_error_set("--cache must be residual or output, got '%s'", c->cache);
            goto fail;
        }
        ep->tw.cache = strcmp(c->cache, "output") == 0 ? AST_CACHE_OUTPUT : AST_CACHE_RESIDUAL;
    }
    if (c->gpus_per_eval > 1) ep->tw.select_segments = c->gpus_per_eval; // as the ranks select
    ev->has_tokenwise = 1;
    ev->tokenwise = ep->tw;
    snprintf(ev->model_id, sizeof ev->model_id, "%s", mc->model_id);
    snprintf(ev->checkpoint_hash, sizeof ev->checkpoint_hash, "%s", e->model->hash);
    ev->channels = mc->out_dim;

    e->n_in = (int64_t)mc->in_dim * F * H * W;
    e->noise = ast_malloc(sizeof(float) * (size_t)e->n_in, "the noise");
    e->scratch = ast_malloc(sizeof(float) * (size_t)mc->out_dim * F * H * W, "a latent");
    if (!e->noise || !e->scratch) goto fail;

    int n = c->prompts ? c->prompts_count : 0;
    if (n < 1) {
        ast_error_set("no calibration prompts (pass --prompts FILE)");
        goto fail;
    }
    e->noise_seed = c->noise_seed;
    e->n_prompts = ev->n_prompts = n;
    e->cond = ast_calloc((size_t)n, sizeof *e->cond, "contexts");
    e->uncond = ast_calloc((size_t)n, sizeof *e->uncond, "contexts");
    e->cond_len = ast_calloc((size_t)n, sizeof *e->cond_len, "contexts");
    e->uncond_len = ast_calloc((size_t)n, sizeof *e->uncond_len, "contexts");
    ev->prompt_keys = ast_calloc((size_t)n, sizeof *ev->prompt_keys, "prompt keys");
    if (!e->cond || !e->uncond || !e->cond_len || !e->uncond_len || !ev->prompt_keys) goto fail;
    for (int p = 0; p < n; p++) {
        if (ee_prompt(e, ev, p, c->prompts[p]) != 0) {
            ast_error_prefix("calibration prompt %d", p + 1);
            goto fail;
        }
    }
    /* the token-wise engine now, so the device name is known (and a bad shape fails early) */
    if (!ee_engine(e, 0, 0)) goto fail;
    snprintf(ev->device, sizeof ev->device, "%s", ast_engine_device_name(e->tw));
    *out = ev;
    return 0;
fail:
    ast_evaluator_free(ev);
    return -1;
}
