/* search.c — the budget search driver (see search.h for the data flow, docs/search.md for the
 * user's view).
 *
 * Exactness of resume: a run's trajectory is a pure function of (its stored config, its stored
 * latency model, the fitness values stored for its candidates, the RNG state stored at the start
 * of each generation). On every start the driver rebuilds the parent pool by replaying selection
 * over the stored candidates, regenerates the current generation from its stored RNG state,
 * checks that the stored candidates of that generation are the ones it regenerated, and
 * evaluates only the missing ones. So an interrupted run, resumed, ends exactly where an
 * uninterrupted run with the same seed ends (given an engine that returns the same output for
 * the same input, as the CPU backend does). */
#include "search.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "workers.h"

/* Candidate ranking key: generation-major, so ties never depend on storage order. */
#define KEY_GEN 100000
static int64_t cand_key(int gen, int idx) { return (int64_t)gen * KEY_GEN + idx; }

/* Calibration prompts for wan-mini when no --prompts file is given (its caption vocabulary). */
static const char *const builtin_prompts[] = {
    "a red circle moves left over a blue background",
    "a green square moves right over a black background",
    "a yellow triangle moves up over a white background",
    "a blue circle moves down over a gray background",
    "a white square moves left over a red background",
    "a purple triangle moves right over a green background",
    "an orange circle moves up over a black background",
    "a cyan square moves down over a yellow background",
};
#define N_BUILTIN_PROMPTS ((int)(sizeof builtin_prompts / sizeof builtin_prompts[0]))

void ast_search_config_default(ast_search_config *c) {
    memset(c, 0, sizeof *c);
    c->model = "wan-mini";
    c->sampler = "unipc";
    c->shift = c->guidance = NAN;
    c->n_prompts = 4;
    c->noise_seed = 1000;
    c->backend = "auto";
    c->w_alpha = c->w_beta = NAN;
    c->target_speedup = 2.0;
    ast_ga_params_default(&c->ga);
    c->seed = 0;
    c->latency_repeats = 3;
    c->latency_a = c->latency_b = NAN;
    c->measure_repeats = 3;
    c->db_path = AST_STORE_DEFAULT_PATH;
}

void ast_evaluator_free(ast_evaluator *ev) {
    if (!ev) return;
    if (ev->destroy) ev->destroy(ev->user);
    for (int i = 0; ev->prompt_keys && i < ev->n_prompts; i++) free(ev->prompt_keys[i]);
    free(ev->prompt_keys);
    free(ev);
}

static uint64_t fnv1a(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* A run's key: the FNV-1a hash of its key JSON (config_json without the spec fields), in hex. */
static void config_key(const char *key_json, char out[17]) {
    snprintf(out, 17, "%016llx",
             (unsigned long long)fnv1a(key_json, strlen(key_json), 1469598103934665603ull));
}

/* ---- prompts ------------------------------------------------------------------------------- */

typedef struct {
    char **v;
    int n;
} str_list;

static void str_list_free(str_list *l) {
    for (int i = 0; l->v && i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int str_list_add(str_list *l, const char *s, size_t len) {
    char **nv = realloc(l->v, sizeof *nv * (size_t)(l->n + 1));
    if (!nv) return ast_fail("out of memory reading prompts");
    l->v = nv;
    char *d = ast_malloc(len + 1, "a prompt");
    if (!d) return -1;
    memcpy(d, s, len);
    d[len] = 0;
    l->v[l->n++] = d;
    return 0;
}

/* The calibration prompts: the explicit list, the file's lines, or the built-in ones; the first
 * n_prompts of them (0 = all). */
static int resolve_prompts(const ast_search_config *c, str_list *out) {
    memset(out, 0, sizeof *out);
    if (c->prompts) {
        for (int i = 0; i < c->prompts_count; i++)
            if (str_list_add(out, c->prompts[i], strlen(c->prompts[i])) != 0) goto fail;
    } else if (c->prompts_file) {
        char *text = ast_read_file(c->prompts_file, 16u << 20, NULL);
        if (!text) {
            ast_error_prefix("reading --prompts");
            return -1;
        }
        for (char *line = text; *line;) {
            char *end = strchr(line, '\n');
            size_t len = end ? (size_t)(end - line) : strlen(line);
            while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
            char *start = line;
            while (len && *start == ' ') start++, len--;
            if (len && *start != '#' && str_list_add(out, start, len) != 0) {
                free(text);
                goto fail;
            }
            line = end ? end + 1 : line + strlen(line);
        }
        free(text);
        if (out->n == 0)
            return ast_fail("prompts file '%s' has no prompts (one per line; # starts a "
                            "comment)",
                            c->prompts_file);
    } else {
        for (int i = 0; i < N_BUILTIN_PROMPTS; i++)
            if (str_list_add(out, builtin_prompts[i], strlen(builtin_prompts[i])) != 0)
                goto fail;
    }
    if (c->n_prompts > 0 && c->n_prompts < out->n) {
        for (int i = c->n_prompts; i < out->n; i++) free(out->v[i]);
        out->n = c->n_prompts;
    } else if (c->n_prompts > out->n && c->prompts_file) {
        str_list_free(out);
        return ast_fail("--n-prompts %d asks for more prompts than '%s' has", c->n_prompts,
                        c->prompts_file);
    }
    return 0;
fail:
    str_list_free(out);
    return -1;
}

/* ---- configuration as JSON: stored with the run, hashed into its key -------------------- */

static cJSON *ga_params_json(const ast_ga_params *g) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddNumberToObject(o, "population", g->population) &&
             cJSON_AddNumberToObject(o, "parents", g->parents) &&
             cJSON_AddNumberToObject(o, "elites", g->elites) &&
             cJSON_AddNumberToObject(o, "children", g->children) &&
             cJSON_AddNumberToObject(o, "generations", g->generations) &&
             cJSON_AddNumberToObject(o, "levels", g->levels) &&
             cJSON_AddNumberToObject(o, "structured", g->structured) &&
             cJSON_AddNumberToObject(o, "mutation_start", g->mutation_start) &&
             cJSON_AddNumberToObject(o, "mutation_end", g->mutation_end) &&
             cJSON_AddNumberToObject(o, "block_prob", g->block_prob) &&
             cJSON_AddNumberToObject(o, "band_low", g->band_low) &&
             cJSON_AddNumberToObject(o, "band_high", g->band_high) &&
             cJSON_AddNumberToObject(o, "feasible_first", g->feasible_first);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int json_num(const cJSON *o, const char *key, double *out) {
    *out = NAN;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNull(v)) {
        *out = NAN;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return ast_fail("stored run configuration lacks '%s'", key);
    *out = v->valuedouble;
    return 0;
}

static int json_int(const cJSON *o, const char *key, int *out) {
    double d;
    if (json_num(o, key, &d) != 0) return -1;
    *out = (int)d;
    return 0;
}

/* The number under key, or dflt when it is absent (an optional field: no error recorded). */
static double json_num_or(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static int ga_params_parse(const cJSON *o, ast_ga_params *g) {
    if (!cJSON_IsObject(o)) return ast_fail("stored GA parameters are not an object");
    if (json_int(o, "population", &g->population) || json_int(o, "parents", &g->parents) ||
        json_int(o, "elites", &g->elites) || json_int(o, "children", &g->children) ||
        json_int(o, "generations", &g->generations) || json_int(o, "levels", &g->levels) ||
        json_int(o, "structured", &g->structured) ||
        json_num(o, "mutation_start", &g->mutation_start) ||
        json_num(o, "mutation_end", &g->mutation_end) ||
        json_num(o, "block_prob", &g->block_prob) || json_num(o, "band_low", &g->band_low) ||
        json_num(o, "band_high", &g->band_high) ||
        json_int(o, "feasible_first", &g->feasible_first))
        return -1;
    return 0;
}

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* The run's configuration with resolved values. `with_spec`: include the fields that locate
 * inputs (model folder, prompt lines) but do not change results; the key is made without them. */
static char *config_json(const ast_search_config *c, const ast_evaluator *ev,
                         const str_list *prompts, int with_spec) {
    cJSON *o = cJSON_CreateObject(), *a;
    int ok = o != NULL;
#define ADD(k, item) ok = ok && cJSON_AddItemToObject(o, k, item)
    if (with_spec) {
        ADD("model_spec", cJSON_CreateString(c->model));
        ADD("prompts", cJSON_CreateStringArray((const char *const *)prompts->v, prompts->n));
    }
    ADD("model_id", cJSON_CreateString(ev->model_id));
    ADD("checkpoint_hash", cJSON_CreateString(ev->checkpoint_hash));
    int shape[3] = {ev->frames, ev->height, ev->width};
    ADD("latent", cJSON_CreateIntArray(shape, 3));
    int pix[3] = {ev->pixel_frames, ev->pixel_height, ev->pixel_width};
    ADD("pixels", ev->pixel_frames ? cJSON_CreateIntArray(pix, 3) : cJSON_CreateNull());
    ADD("steps", cJSON_CreateNumber(ev->steps));
    ADD("sampler", cJSON_CreateString(ev->sampler));
    ADD("shift", cJSON_CreateNumber(ev->shift));
    ADD("guidance", cJSON_CreateNumber(ev->guidance));
    ADD("backend", cJSON_CreateString(ev->backend));
    ADD("prompt_keys", cJSON_CreateStringArray((const char *const *)ev->prompt_keys, ev->n_prompts));
    ADD("noise_seed", cJSON_CreateNumber((double)c->noise_seed));
    if (ev->has_tokenwise) {
        a = cJSON_CreateObject();
        ok = ok && a && cJSON_AddNumberToObject(a, "w_alpha", ev->tokenwise.w_alpha) &&
             cJSON_AddNumberToObject(a, "w_beta", ev->tokenwise.w_beta) &&
             cJSON_AddStringToObject(a, "cache", ev->tokenwise.cache == AST_CACHE_OUTPUT
                                                     ? "output" : "residual") &&
             cJSON_AddNumberToObject(a, "delta_normalize", ev->tokenwise.delta_normalize) &&
             cJSON_AddNumberToObject(a, "sketch_dim", ev->tokenwise.sketch_dim);
        if (ev->tokenwise.select_segments > 1) /* absent for one GPU: older keys stay valid */
            ok = ok && cJSON_AddNumberToObject(a, "select_segments",
                                               ev->tokenwise.select_segments);
        ADD("tokenwise", a);
    } else {
        ADD("tokenwise", cJSON_CreateNull());
    }
    ADD("target_speedup", cJSON_CreateNumber(c->target_speedup));
    ADD("seed", cJSON_CreateNumber((double)c->seed));
    ADD("ga", ga_params_json(&c->ga));
    a = cJSON_CreateObject();
    ok = ok && a && cJSON_AddItemToObject(a, "fixed_a", num_or_null(c->latency_a)) &&
         cJSON_AddItemToObject(a, "fixed_b", num_or_null(c->latency_b));
    ADD("latency", a);
#undef ADD
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) ast_error_set("out of memory describing the run");
    return s;
}

/* Config of a stored run, for --resume: strings point into *root (keep it alive). */
typedef struct {
    cJSON *root;
    const char **prompts;
} stored_config;

static void stored_config_free(stored_config *sc) {
    cJSON_Delete(sc->root);
    free(sc->prompts);
    memset(sc, 0, sizeof *sc);
}

static int config_from_stored(const ast_run_info *r, const ast_search_config *given,
                              ast_search_config *c, stored_config *sc) {
    memset(sc, 0, sizeof *sc);
    *c = *given; /* operation fields (db, stop, progress, ...) come from this invocation */
    sc->root = cJSON_Parse(r->config_json);
    cJSON *o = sc->root;
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(o, "model_spec");
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(o, "latent");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompts");
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(o, "sampler");
    const cJSON *be = cJSON_GetObjectItemCaseSensitive(o, "backend");
    const cJSON *tw = cJSON_GetObjectItemCaseSensitive(o, "tokenwise");
    const cJSON *la = cJSON_GetObjectItemCaseSensitive(o, "latency");
    double d;
    if (!o || !cJSON_IsString(spec) || !cJSON_IsArray(lat) || cJSON_GetArraySize(lat) != 3 ||
        !cJSON_IsArray(pr) || !cJSON_IsString(sm) || !cJSON_IsString(be) ||
        !cJSON_IsObject(la)) {
        stored_config_free(sc);
        return ast_fail("run %lld's stored configuration is damaged or from another version",
                        (long long)r->id);
    }
    c->model = spec->valuestring;
    /* the size as asked: pixels where the model has them (a VAE model maps them to the latent) */
    const cJSON *pix = cJSON_GetObjectItemCaseSensitive(o, "pixels");
    const cJSON *size = cJSON_IsArray(pix) && cJSON_GetArraySize(pix) == 3 ? pix : lat;
    c->frames = cJSON_GetArrayItem(size, 0)->valueint;
    c->height = cJSON_GetArrayItem(size, 1)->valueint;
    c->width = cJSON_GetArrayItem(size, 2)->valueint;
    c->sampler = sm->valuestring;
    c->backend = strcmp(be->valuestring, "synthetic") == 0 ? "auto" : be->valuestring;
    int n = cJSON_GetArraySize(pr);
    sc->prompts = calloc((size_t)(n ? n : 1), sizeof *sc->prompts);
    if (!sc->prompts) {
        stored_config_free(sc);
        return ast_fail("out of memory reading run %lld", (long long)r->id);
    }
    for (int i = 0; i < n; i++) {
        const cJSON *p = cJSON_GetArrayItem(pr, i);
        sc->prompts[i] = cJSON_IsString(p) ? p->valuestring : "";
    }
    c->prompts = sc->prompts;
    c->prompts_count = n;
    c->prompts_file = NULL;
    c->n_prompts = 0;
    if (json_int(o, "steps", &c->steps) || json_num(o, "shift", &c->shift) ||
        json_num(o, "guidance", &c->guidance) || json_num(o, "noise_seed", &d) ||
        ga_params_parse(cJSON_GetObjectItemCaseSensitive(o, "ga"), &c->ga) ||
        json_num(la, "fixed_a", &c->latency_a) || json_num(la, "fixed_b", &c->latency_b)) {
        ast_error_prefix("run %lld", (long long)r->id);
        stored_config_free(sc);
        return -1;
    }
    c->noise_seed = (uint64_t)d;
    if (json_num(o, "target_speedup", &c->target_speedup) || json_num(o, "seed", &d)) {
        stored_config_free(sc);
        return -1;
    }
    c->seed = (uint64_t)d;
    c->w_alpha = c->w_beta = NAN;
    c->cache = NULL;
    if (cJSON_IsObject(tw)) {
        json_num(tw, "w_alpha", &c->w_alpha);
        json_num(tw, "w_beta", &c->w_beta);
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(tw, "cache");
        if (cJSON_IsString(cm)) c->cache = cm->valuestring;
        /* the run's, whatever this invocation said */
        c->gpus_per_eval = (int)json_num_or(tw, "select_segments", 1);
    }
    return 0;
}

static int make_evaluator(const ast_search_config *c, ast_evaluator **ev) {
    if (strcmp(c->model, "synthetic") == 0) return ast_evaluator_synthetic(c, ev);
    return ast_evaluator_engine(c, ev);
}

/* ---- candidates in memory ------------------------------------------------------------------ */

typedef struct {
    ast_cand *v;
    int n, cap;
} cand_list;

static int cand_list_push(cand_list *l, const ast_cand *c) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        ast_cand *nv = realloc(l->v, sizeof *nv * (size_t)cap);
        if (!nv) return ast_fail("out of memory keeping the candidates");
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n] = *c;
    l->v[l->n].per_prompt_json = c->per_prompt_json ? ast_strdup(c->per_prompt_json) : NULL;
    l->n++;
    return 0;
}

static const ast_cand *cand_by_key(const cand_list *l, int64_t key) {
    for (int i = l->n - 1; i >= 0; i--)
        if (cand_key(l->v[i].generation, l->v[i].index) == key) return &l->v[i];
    return NULL;
}

/* Best candidate at (or above) the target speed; the best of all when none is that fast. */
static const ast_cand *best_at_target(const ast_cand *v, int n, double target) {
    const ast_cand *best = NULL, *any = NULL;
    for (int i = 0; i < n; i++) {
        const ast_cand *c = &v[i];
        if (c->reused_from || isnan(c->mse)) continue;
        if (!any || c->mse < any->mse) any = c;
        if (c->predicted_speedup >= target * (1 - 1e-9) && (!best || c->mse < best->mse))
            best = c;
    }
    return best ? best : any;
}

static ast_ga_rank_item rank_item(const ast_cand *c, const ast_ga_params *gp, double target) {
    ast_ga_rank_item it;
    it.tier = gp->feasible_first && !(c->predicted_speedup >= target * (1 - 1e-9));
    it.fitness = c->mse;
    it.key = cand_key(c->generation, c->index);
    return it;
}

/* Parent pool after generations 0..upto-1, replayed from the stored fitness values. */
static int pool_replay(const cand_list *l, int upto, const ast_ga_params *gp, double target,
                       ast_ga_rank_item *pool, int *n_pool) {
    int total = gp->population > gp->children ? gp->population : gp->children;
    ast_ga_rank_item *items = malloc(sizeof *items * (size_t)total);
    ast_ga_rank_item *next = malloc(sizeof *next * (size_t)(gp->parents + 1));
    if (!items || !next) {
        free(items);
        free(next);
        return ast_fail("out of memory replaying the parent pool");
    }
    *n_pool = 0;
    int i = 0;
    for (int g = 0; g < upto; g++) {
        int n = 0;
        while (i < l->n && l->v[i].generation < g) i++;
        while (i < l->n && l->v[i].generation == g && n < total) {
            items[n++] = rank_item(&l->v[i], gp, target);
            i++;
        }
        int k = ast_ga_select(pool, *n_pool, items, n, gp->parents, g == 0 ? 0 : gp->elites, next);
        if (k < 0) {
            free(items);
            free(next);
            return -1;
        }
        memcpy(pool, next, sizeof *pool * (size_t)k);
        *n_pool = k;
    }
    free(items);
    free(next);
    return 0;
}

/* ---- the search context ---------------------------------------------------------------- */

typedef struct {
    const ast_search_config *c;
    ast_store *s;
    ast_evaluator *ev;
    ast_run_info run;
    ast_latency_model lat;
    ast_ga_band band;
    double theta_mean;
    float **refs;           /* dense reference per prompt */
    float *out;             /* scratch output latent */
    int64_t n;              /* latent elements */
    cand_list cands;
    ast_search_config wc;   /* the run's configuration with its prompts resolved: what every
                               worker's evaluator is made from */
    ast_eval_pool *pool;    /* evaluation workers, while generations run */
    ast_search_progress prog;
    double t_start, eval_s_now;
    int evaluated_now;
} search_ctx;

static void report(search_ctx *x, int phase, const char *what) {
    x->prog.phase = phase;
    x->prog.what = what;
    if (x->c->progress) x->c->progress(x->c->progress_user, &x->prog);
}

static int stop_requested(const search_ctx *x) {
    return (x->c->should_stop && x->c->should_stop()) ||
           (x->c->stop_after > 0 && x->evaluated_now >= x->c->stop_after);
}

static void update_best(search_ctx *x) {
    const ast_cand *b = best_at_target(x->cands.v, x->cands.n, x->run.target_speedup);
    x->prog.evals_done = x->cands.n;
    if (b) {
        x->prog.best_mse = b->mse;
        x->prog.best_psnr = b->psnr;
        x->prog.best_ssim = b->ssim;
        x->prog.best_speedup = b->predicted_speedup;
    }
    int left = x->prog.evals_total - x->cands.n;
    int workers = x->pool ? x->pool->capacity : 1;
    x->prog.eta_seconds =
        x->evaluated_now > 0 ? left * (x->eval_s_now / x->evaluated_now) / workers : NAN;
}

static int dense_key(const search_ctx *x, int p, char *buf, size_t len) {
    const ast_evaluator *ev = x->ev;
    int n = snprintf(buf, len,
                     "model=%s;checkpoint=%s;backend=%s;latent=%dx%dx%dx%d;steps=%d;sampler=%s;"
                     "shift=%.9g;guidance=%.9g;noise_seed=%llu;prompt=%s",
                     ev->model_id, ev->checkpoint_hash, ev->backend, ev->channels, ev->frames,
                     ev->height, ev->width, ev->steps, ev->sampler, ev->shift, ev->guidance,
                     (unsigned long long)(x->c->noise_seed + (uint64_t)p), ev->prompt_keys[p]);
    if (n < 0 || (size_t)n >= len) return ast_fail("dense reference key too long (prompt %d)", p);
    return 0;
}

/* Calibration callbacks: forwards, and one dense generation of prompt 0 (output discarded). */
typedef struct {
    const ast_evaluator *ev;
    float *out;
} gen_timer;

static int timer_generation(void *user, double *seconds) {
    gen_timer *g = user;
    return g->ev->generate(g->ev->user, 0, NULL, g->out, seconds);
}

static int timer_forward(void *user, float theta, double *seconds) {
    gen_timer *g = user;
    return g->ev->time_forward(g->ev->user, theta, seconds);
}

static int calibrate(const ast_evaluator *ev, int repeats, int with_generation,
                     ast_latency_model *m) {
    int64_t n = (int64_t)ev->channels * ev->frames * ev->height * ev->width;
    gen_timer g = {ev, with_generation ? ast_malloc(sizeof(float) * (size_t)n, "a latent") : NULL};
    if (with_generation && !g.out) return -1;
    ast_latency_timer t = {timer_forward, with_generation ? timer_generation : NULL, &g};
    int rc = ast_latency_calibrate(&t, ast_latency_default_thetas, 5, repeats, ev->n_branches,
                                   ev->steps, m);
    free(g.out);
    return rc;
}

static void fixed_latency(ast_latency_model *m, double a, double b, int branches) {
    memset(m, 0, sizeof *m);
    m->n_points = 2;
    m->theta[1] = 1;
    m->seconds[0] = a;
    m->seconds[1] = a + b;
    m->branches = branches;
}

static int latency_setup(search_ctx *x) {
    int rc = ast_store_latency_get(x->s, x->run.id, &x->lat);
    if (rc < 0) return -1;
    if (rc == 0) return 0; /* stored with the run: a resume must use the same band */
    if (isfinite(x->c->latency_a) && isfinite(x->c->latency_b)) {
        fixed_latency(&x->lat, x->c->latency_a, x->c->latency_b, x->ev->n_branches);
        if (ast_latency_fit(&x->lat) != 0) {
            ast_error_prefix("--latency-model");
            return -1;
        }
    } else {
        report(x, AST_PHASE_CALIBRATE, "timing forwards at budgets 1.0 .. 0.1 and a dense "
                                       "generation");
        double t0 = ast_now_sec();
        if (calibrate(x->ev, x->c->latency_repeats, 1, &x->lat) != 0) return -1;
        if (ast_store_run_add_cost(x->s, x->run.id, ast_now_sec() - t0) != 0) return -1;
    }
    return ast_store_latency_put(x->s, x->run.id, &x->lat, x->ev->device);
}

static int references_setup(search_ctx *x) {
    const ast_evaluator *ev = x->ev;
    x->refs = ast_calloc((size_t)ev->n_prompts, sizeof *x->refs, "dense references");
    if (!x->refs) return -1;
    for (int p = 0; p < ev->n_prompts; p++) {
        char key[4096];
        if (dense_key(x, p, key, sizeof key) != 0) return -1;
        x->refs[p] = ast_malloc(sizeof(float) * (size_t)x->n, "a dense reference");
        if (!x->refs[p]) return -1;
        int rc = ast_store_dense_get(x->s, key, x->refs[p], x->n);
        if (rc < 0) return -1;
        if (rc == 0) continue;
        if (stop_requested(x)) return 1;
        char what[160];
        snprintf(what, sizeof what, "dense reference %d/%d", p + 1, ev->n_prompts);
        report(x, AST_PHASE_REFERENCES, what);
        double sec = 0, t0 = ast_now_sec();
        if (ev->generate(ev->user, p, NULL, x->refs[p], &sec) != 0) {
            ast_error_prefix("dense reference for prompt %d", p);
            return -1;
        }
        ast_dense_meta m = {key, ev->model_id, ev->checkpoint_hash, ev->backend,
                            ev->prompt_keys[p], x->c->noise_seed + (uint64_t)p,
                            ev->channels, ev->frames, ev->height, ev->width};
        if (ast_store_dense_put(x->s, &m, x->refs[p], sec) != 0 ||
            ast_store_touch(x->s, x->run.id) != 0 ||
            ast_store_run_add_cost(x->s, x->run.id, ast_now_sec() - t0) != 0)
            return -1;
    }
    return 0;
}

/* Lock heartbeat between the prompts of an evaluation made by the writer's own worker. */
static int store_between(void *user) {
    search_ctx *x = user;
    return ast_store_touch(x->s, x->run.id);
}

static const ast_cand *find_genome(const cand_list *l, const uint8_t *g, int steps) {
    for (int i = 0; i < l->n; i++)
        if (!l->v[i].reused_from && memcmp(l->v[i].genome, g, (size_t)steps) == 0)
            return &l->v[i];
    return NULL;
}

/* Evaluator of thread worker i >= 1 (workers.h): the run's resolved configuration on `device`;
 * it must load the very inputs the writer's evaluator loaded. */
static int worker_make(void *user, int worker, int device, ast_evaluator **out) {
    search_ctx *x = user;
    ast_search_config c = x->wc;
    c.device = device;
    if (make_evaluator(&c, out) != 0) return -1;
    const ast_evaluator *a = x->ev, *b = *out;
    int same = strcmp(a->checkpoint_hash, b->checkpoint_hash) == 0 &&
               a->n_prompts == b->n_prompts && a->channels == b->channels &&
               a->frames == b->frames && a->height == b->height && a->width == b->width &&
               a->steps == b->steps && strcmp(a->backend, b->backend) == 0;
    for (int p = 0; same && p < a->n_prompts; p++)
        same = strcmp(a->prompt_keys[p], b->prompt_keys[p]) == 0;
    if (!same) {
        ast_evaluator_free(*out);
        *out = NULL;
        return ast_fail("worker %d loaded other inputs than the first (model %s, checkpoint %s): "
                        "did the checkpoint or a prompt file change during the search?",
                        worker, b->model_id, b->checkpoint_hash);
    }
    return 0;
}

/* Workers in this process: --workers, else one per CUDA device (CUDA backend) or 1. */
/* devices may be NULL: the count only (--dry-run). */
static int worker_devices(const ast_search_config *c, const char *backend, int **devices,
                          int *n_workers) {
    int cuda = strcmp(backend, "cuda") == 0, count = 0;
    int *list = NULL;
    const int G = c->gpus_per_eval > 1 ? c->gpus_per_eval : 1;
    if (cuda && c->gpus && c->n_gpus > 0) {
        if (c->gpus[0] != c->device)
            return ast_fail("internal: the first of --gpus (%d) is not the search's device (%d)",
                            c->gpus[0], c->device);
        count = c->n_gpus / G; /* a worker per GPU group, named by its first GPU */
        list = ast_malloc(sizeof *list * (size_t)(count ? count : 1), "the worker devices");
        if (!list) return -1;
        for (int k = 0; k < count; k++) list[k] = c->gpus[k * G];
    } else if (cuda) {
        char why[256];
        count = ast_cuda_device_count(why, sizeof why);
        if (count < 1) count = 1;
        list = ast_malloc(sizeof *list * (size_t)count, "the worker devices");
        if (!list) return -1;
        list[0] = c->device; /* the writer's device first, then the other visible ones */
        for (int d = 0, k = 1; d < count && k < count; d++)
            if (d != c->device) list[k++] = d;
    }
    int n = c->workers > 0 ? c->workers : cuda ? count : 1;
    *n_workers = n;
    if (!devices) {
        free(list);
        return 0;
    }
    *devices = ast_calloc((size_t)n, sizeof **devices, "the worker devices");
    if (!*devices) {
        free(list);
        return -1;
    }
    for (int i = 0; i < n; i++) (*devices)[i] = list ? list[i % count] : 0;
    free(list);
    return 0;
}

/* The evaluation pool, started when the first generation with work begins (after the latency
 * model and the references: those ran with no worker busy). */
static int pool_start(search_ctx *x) {
    ast_eval_worker w0 = {x->ev, x->refs, x->out, x->c->ga.levels, store_between, x};
    char what[192];
    if (ast_search_mpi_size(x->c->mpi) > 1) {
        report(x, AST_PHASE_SETUP, "starting the MPI worker ranks (each loads the model)");
        if (ast_eval_pool_mpi(x->c->mpi, x->run.config_json, x->run.config_key, x->ev, x->refs,
                              x->n, store_between, x, &x->pool) != 0)
            return -1;
    } else {
        int *devices = NULL, n = 1;
        if (worker_devices(x->c, x->ev->backend, &devices, &n) != 0) return -1;
        int rc;
        if (n <= 1) {
            rc = ast_eval_pool_inline(&w0, &x->pool);
        } else {
            int threads = 0;
            if (strcmp(x->ev->backend, "cpu") == 0) {
                threads = omp_get_max_threads() / n;
                if (threads < 1) threads = 1;
            }
            snprintf(what, sizeof what, "starting %d search workers", n);
            report(x, AST_PHASE_SETUP, what);
            rc = ast_eval_pool_threads(&w0, n, devices, threads, worker_make, x, &x->pool);
        }
        free(devices);
        if (rc != 0) return -1;
    }
    if (x->pool->capacity > 1) {
        snprintf(what, sizeof what, "evaluating with %s", x->pool->what);
        report(x, AST_PHASE_SETUP, what);
    }
    return 0;
}

static void pool_stop(search_ctx *x) {
    if (!x->pool) return;
    x->pool->destroy(x->pool);
    x->pool = NULL;
}

/* Commits candidate i of generation gen: evaluated (r) or reusing the stored result of the same
 * genome (r NULL). */
static int commit_candidate(search_ctx *x, int gen, int i, int n_new, const ast_ga_child *kid,
                            const int64_t *pool_id, const ast_eval_result *r) {
    const int steps = x->ev->steps;
    ast_cand c;
    memset(&c, 0, sizeof c);
    c.run_id = x->run.id;
    c.generation = gen;
    c.index = i;
    c.steps = steps;
    memcpy(c.genome, kid->g, (size_t)steps);
    snprintf(c.origin, sizeof c.origin, "%s", ast_ga_origin_name(kid->origin));
    c.parent_a = kid->parent_a >= 0 ? pool_id[kid->parent_a] : 0;
    c.parent_b = kid->parent_b >= 0 ? pool_id[kid->parent_b] : 0;
    float budgets[AST_GA_MAX_STEPS];
    ast_ga_to_budgets(c.genome, steps, x->c->ga.levels, budgets);
    c.predicted_s = ast_latency_predict(&x->lat, budgets, steps);
    c.predicted_speedup = ast_latency_dense(&x->lat, steps) / c.predicted_s;
    c.measured_s = NAN;
    const ast_cand *same = NULL;
    if (r) {
        c.mse = r->mse;
        c.psnr = r->psnr;
        c.ssim = r->ssim;
        c.per_prompt_json = r->per_prompt_json;
        c.eval_seconds = r->eval_seconds;
    } else { /* the GA could not make a new genome: reuse the stored result */
        same = find_genome(&x->cands, c.genome, steps);
        if (!same)
            return ast_fail("internal: generation %d, candidate %d repeats a genome that is not "
                            "stored",
                            gen, i);
        c.mse = same->mse;
        c.psnr = same->psnr;
        c.ssim = same->ssim;
        c.per_prompt_json = same->per_prompt_json ? ast_strdup(same->per_prompt_json) : NULL;
        c.reused_from = same->id;
    }
    int ins = ast_store_cand_insert(x->s, &c);
    if (ins == 0) ins = cand_list_push(&x->cands, &c);
    if (same) free(c.per_prompt_json);
    if (ins != 0) return -1;
    if (r) {
        x->evaluated_now++;
        x->eval_s_now += c.eval_seconds;
    }
    update_best(x);
    char what[96];
    snprintf(what, sizeof what, "generation %d, candidate %d/%d", gen, i + 1, n_new);
    report(x, AST_PHASE_EVALUATE, what);
    x->prog.what = NULL;
    return 0;
}

/* How a candidate of the generation is settled. */
enum { PLAN_STORED = 0, PLAN_REUSE, PLAN_EVAL };

/* Runs generation gen: regenerate its candidates from the stored RNG state, check the stored
 * ones, evaluate the rest on the pool and commit them in candidate index order. Returns 0 done,
 * 1 stopped, -1 error.
 *
 * Determinism with any number of workers: the plan (which candidates are evaluated, which reuse
 * a stored genome's result) is fixed before any job starts, from the stored candidates and the
 * regenerated ones alone; jobs start in index order; results are committed in index order, each
 * exactly as one process evaluating them in turn commits it (a reuse resolves its source at its
 * commit, when every earlier candidate is stored). So the DB after any prefix of commits (ids
 * included) is the single process's, whatever the order results arrive in; and a stop (Ctrl-C,
 * --max-evals, kill -9) leaves such a prefix, which a resume continues. */
static int run_generation(search_ctx *x, int gen, ast_ga_rank_item *pool, int *n_pool) {
    const ast_ga_params *gp = &x->c->ga;
    int steps = x->ev->steps, n_new = gen == 0 ? gp->population : gp->children, rc = -1;
    ast_rng rng;
    int got = ast_store_generation_rng(x->s, x->run.id, gen, &rng);
    if (got != 0) {
        if (got == 1)
            ast_error_set("search DB '%s': run %lld has no RNG state for generation %d (damaged "
                          "run: start a new one with another --seed or --db)",
                          ast_store_path(x->s), (long long)x->run.id, gen);
        return -1;
    }
    ast_ga_seen seen;
    ast_ga_child *kids = ast_calloc((size_t)n_new, sizeof *kids, "a generation's candidates");
    const uint8_t **pool_g = ast_calloc((size_t)(*n_pool + 1), sizeof *pool_g, "parents");
    int64_t *pool_id = ast_calloc((size_t)(*n_pool + 1), sizeof *pool_id, "parents");
    ast_ga_rank_item *items = ast_calloc((size_t)n_new, sizeof *items, "a generation's ranks");
    ast_ga_rank_item *next = ast_calloc((size_t)gp->parents + 1, sizeof *next, "parents");
    unsigned char *plan = ast_calloc((size_t)n_new, 1, "a generation's plan");
    unsigned char *have = ast_calloc((size_t)n_new, 1, "a generation's plan");
    ast_eval_result *results = ast_calloc((size_t)n_new, sizeof *results, "results");
    if (ast_ga_seen_init(&seen, steps, x->cands.n + n_new) != 0 || !kids || !pool_g || !pool_id ||
        !items || !next || !plan || !have || !results)
        goto done; /* a failed init leaves `seen` empty: freed like the rest */
    int first = x->cands.n; /* stored candidates of this generation start here */
    for (int i = 0; i < x->cands.n; i++) {
        if (x->cands.v[i].generation < gen) {
            if (ast_ga_seen_add(&seen, x->cands.v[i].genome) != 0) goto done;
        } else if (first == x->cands.n) {
            first = i;
        }
    }
    for (int i = 0; i < *n_pool; i++) {
        const ast_cand *pc = cand_by_key(&x->cands, pool[i].key);
        if (!pc) {
            ast_error_set("internal: parent %lld missing from the run", (long long)pool[i].key);
            goto done;
        }
        pool_g[i] = pc->genome;
        pool_id[i] = pc->id;
    }
    if (gen == 0 ? ast_ga_initial(gp, steps, x->band, &rng, &seen, kids)
                 : ast_ga_children(gp, steps, x->band, gen, &rng, pool_g, *n_pool, &seen, kids))
        goto done;
    x->prog.generation = gen;
    /* the plan: stored (checked), reuse of an earlier result, or a job */
    int n_jobs = 0;
    for (int i = 0; i < n_new; i++) {
        const ast_cand *stored = NULL;
        for (int j = first; j < x->cands.n; j++)
            if (x->cands.v[j].generation == gen && x->cands.v[j].index == i) stored = &x->cands.v[j];
        if (stored) {
            if (memcmp(stored->genome, kids[i].g, (size_t)steps) != 0) {
                ast_error_set("search DB '%s': run %lld, generation %d, candidate %d is not the "
                              "one this astraea makes from the stored RNG state (was the run "
                              "made by another version?); start a new run (another --seed or "
                              "--db)",
                              ast_store_path(x->s), (long long)x->run.id, gen, i);
                goto done;
            }
            plan[i] = PLAN_STORED;
            continue;
        }
        int reuse = kids[i].duplicate && find_genome(&x->cands, kids[i].g, steps) != NULL;
        for (int j = 0; kids[i].duplicate && !reuse && j < i; j++)
            reuse = plan[j] == PLAN_EVAL && memcmp(kids[j].g, kids[i].g, (size_t)steps) == 0;
        plan[i] = reuse ? PLAN_REUSE : PLAN_EVAL;
        n_jobs += !reuse;
    }
    if (n_jobs > 0 && !x->pool && pool_start(x) != 0) goto done;
    int upto = 0, next_job = 0, in_flight = 0, stopping = 0, last_done = -1;
    int pending = 0; /* jobs started and not committed yet (in flight or waiting their turn) */
    for (;;) {
        /* commit what is ready, in index order */
        while (upto < n_new) {
            if (plan[upto] == PLAN_STORED) {
                upto++;
                continue;
            }
            if (plan[upto] == PLAN_EVAL && !have[upto]) break;
            if (stopping && upto > last_done) break; /* stop: no reuse after the last result */
            const ast_eval_result *r = plan[upto] == PLAN_EVAL ? &results[upto] : NULL;
            if (r && r->rc != 0) {
                ast_error_set("%s", r->err);
                goto done;
            }
            if (commit_candidate(x, gen, upto, n_new, &kids[upto], pool_id, r) != 0) goto done;
            if (r) {
                ast_eval_result_clear(&results[upto]);
                have[upto] = 0;
                pending--;
            }
            upto++;
            if (stop_requested(x)) stopping = 1;
        }
        if (upto == n_new) break;
        if (stop_requested(x)) stopping = 1;
        if (stopping && in_flight == 0) {
            rc = 1;
            goto done;
        }
        /* start jobs in index order, never more than this session may still evaluate */
        while (!stopping && in_flight < x->pool->capacity && next_job < n_new) {
            if (plan[next_job] != PLAN_EVAL) {
                next_job++;
                continue;
            }
            if (x->c->stop_after > 0 && x->evaluated_now + pending >= x->c->stop_after) break;
            ast_eval_job job;
            memset(&job, 0, sizeof job);
            job.idx = next_job;
            job.steps = steps;
            memcpy(job.genome, kids[next_job].g, (size_t)steps);
            if (x->pool->submit(x->pool, &job) != 0) goto done;
            in_flight++;
            pending++;
            next_job++;
        }
        if (in_flight == 0) { /* nothing started: the session's evaluations are spent */
            rc = 1;
            goto done;
        }
        ast_eval_result r;
        int w = x->pool->wait(x->pool, 0.5, &r);
        if (w < 0) goto done;
        if (w == 0) { /* lock heartbeat during long evaluations (the store paces it) */
            if (ast_store_touch(x->s, x->run.id) != 0) goto done;
            continue;
        }
        if (r.idx < 0 || r.idx >= n_new || plan[r.idx] != PLAN_EVAL || have[r.idx]) {
            ast_eval_result_clear(&r);
            ast_error_set("internal: a result for candidate %d, which has no job in flight",
                          r.idx);
            goto done;
        }
        results[r.idx] = r;
        have[r.idx] = 1;
        in_flight--;
        if (r.idx > last_done) last_done = r.idx;
    }
    /* the generation is complete: rank it, advance the pool, store the next RNG state */
    int n_items = 0;
    for (int j = first; j < x->cands.n; j++)
        if (x->cands.v[j].generation == gen)
            items[n_items++] = rank_item(&x->cands.v[j], gp, x->run.target_speedup);
    int k = ast_ga_select(pool, *n_pool, items, n_items, gp->parents, gen == 0 ? 0 : gp->elites,
                          next);
    if (k < 0) goto done;
    memcpy(pool, next, sizeof *pool * (size_t)k);
    *n_pool = k;
    if (ast_store_generation_finish(x->s, x->run.id, gen + 1, &rng) != 0) goto done;
    x->run.generation = gen + 1;
    rc = 0;
done:
    for (int i = 0; results && have && i < n_new; i++)
        if (have[i]) ast_eval_result_clear(&results[i]);
    ast_ga_seen_free(&seen);
    free(kids);
    free(pool_g);
    free(pool_id);
    free(items);
    free(next);
    free(plan);
    free(have);
    free(results);
    return rc;
}

/* Times the best candidate and the dense model for real (full generations on prompt 0,
 * alternating, median of measure_repeats each). */
static int measure_best(search_ctx *x, const ast_cand *best) {
    const ast_evaluator *ev = x->ev;
    int n = x->c->measure_repeats < 1 ? 1 : x->c->measure_repeats > 51 ? 51 : x->c->measure_repeats;
    double dense[51], prof[51], t0 = ast_now_sec();
    float budgets[AST_GA_MAX_STEPS];
    ast_ga_to_budgets(best->genome, ev->steps, x->c->ga.levels, budgets);
    report(x, AST_PHASE_MEASURE, "timing the best profile against dense");
    for (int r = 0; r < n; r++) {
        if (ev->generate(ev->user, 0, NULL, x->out, &dense[r]) != 0 ||
            ev->generate(ev->user, 0, budgets, x->out, &prof[r]) != 0) {
            ast_error_prefix("timing the best profile");
            return -1;
        }
    }
    double d = ast_median(dense, n), b = ast_median(prof, n);
    if (ast_store_run_add_cost(x->s, x->run.id, ast_now_sec() - t0) != 0 ||
        ast_store_cand_set_measured(x->s, best->id, b) != 0 ||
        ast_store_run_set_measured(x->s, x->run.id, best->id, d, b) != 0)
        return -1;
    x->run.measured_dense_s = d;
    x->run.measured_best_s = b;
    x->run.measured_speedup = d / b;
    x->run.best_candidate = best->id;
    return 0;
}

static void fill_result(search_ctx *x, ast_search_result *res) {
    ast_run_info r;
    res->run_id = x->run.id;
    if (ast_store_run_get(x->s, x->run.id, &r) == 0) {
        res->evaluations = r.evaluations;
        res->device_seconds = r.device_seconds;
        res->measured_speedup = r.measured_speedup;
        res->best_candidate = r.best_candidate;
        ast_run_info_free(&r);
    }
    const ast_cand *b = best_at_target(x->cands.v, x->cands.n, x->run.target_speedup);
    if (res->best_candidate)
        for (int i = 0; i < x->cands.n; i++)
            if (x->cands.v[i].id == res->best_candidate) b = &x->cands.v[i];
    if (b) {
        if (!res->best_candidate) res->best_candidate = b->id;
        res->mse = b->mse;
        res->psnr = b->psnr;
        res->ssim = b->ssim;
        res->predicted_speedup = b->predicted_speedup;
    }
    res->evaluated_now = x->evaluated_now;
}

/* Everything before the generations: evaluator, run, lock. */
static int open_run(const ast_search_config *given, ast_search_config *c, stored_config *sc,
                    str_list *prompts, search_ctx *x, ast_search_result *res) {
    if (ast_store_open(given->db_path, 0, &x->s) != 0) return -1;
    *c = *given;
    if (given->resume_run > 0) {
        ast_run_info r;
        if (ast_store_run_get(x->s, given->resume_run, &r) != 0) return -1;
        int rc = config_from_stored(&r, given, c, sc);
        ast_run_info_free(&r);
        if (rc != 0) return -1;
    }
    x->c = c;
    if (resolve_prompts(c, prompts) != 0) return -1;
    ast_search_config with_prompts = *c; /* the evaluator sees the resolved list */
    with_prompts.prompts = (const char *const *)prompts->v;
    with_prompts.prompts_count = prompts->n;
    with_prompts.n_prompts = 0;
    x->wc = with_prompts;
    if (make_evaluator(&with_prompts, &x->ev) != 0) return -1;
    if (ast_ga_params_check(&c->ga, x->ev->steps) != 0) return -1;
    if (!(c->target_speedup >= 1.0))
        return ast_fail("--target-speedup must be at least 1, got %g", c->target_speedup);

    char *key_json = config_json(c, x->ev, prompts, 0);
    char *full_json = config_json(c, x->ev, prompts, 1);
    char *ga_json = NULL;
    cJSON *gj = ga_params_json(&c->ga);
    if (gj) ga_json = cJSON_PrintUnformatted(gj);
    cJSON_Delete(gj);
    if (!key_json || !full_json || !ga_json) {
        free(key_json);
        free(full_json);
        free(ga_json);
        return ast_fail("out of memory describing the run");
    }
    ast_run_info *r = &x->run;
    memset(r, 0, sizeof *r);
    config_key(key_json, r->config_key);
    r->config_json = full_json;
    r->ga_params_json = ga_json;
    free(key_json);
    snprintf(r->model_id, sizeof r->model_id, "%s", x->ev->model_id);
    snprintf(r->checkpoint_hash, sizeof r->checkpoint_hash, "%s", x->ev->checkpoint_hash);
    r->frames = x->ev->frames;
    r->height = x->ev->height;
    r->width = x->ev->width;
    r->steps = x->ev->steps;
    snprintf(r->sampler, sizeof r->sampler, "%s", x->ev->sampler);
    r->shift = x->ev->shift;
    r->guidance = x->ev->guidance;
    r->target_speedup = c->target_speedup;
    r->seed = c->seed;
    snprintf(r->backend, sizeof r->backend, "%s", x->ev->backend);
    snprintf(r->device, sizeof r->device, "%s", x->ev->device);
    ast_rng_seed(&r->rng, c->seed);
    int created = 0;
    if (given->resume_run > 0) {
        r->id = given->resume_run;
    } else if (ast_store_run_find_or_create(x->s, r, &created) != 0) {
        return -1;
    }
    ast_run_info_free(r);
    if (ast_store_run_get(x->s, r->id, r) != 0) return -1;
    res->run_id = r->id;
    res->created = created;
    if (given->resume_run > 0 && strcmp(r->model_id, x->ev->model_id) != 0)
        return ast_fail("run %lld was made for model '%s' but '%s' loaded now",
                        (long long)r->id, r->model_id, x->ev->model_id);
    if (ast_store_lock(x->s, r->id, c->break_lock) != 0) return -1;
    return 0;
}

int ast_search_run(const ast_search_config *given, ast_search_result *res) {
    memset(res, 0, sizeof *res);
    res->measured_speedup = res->predicted_speedup = res->mse = res->psnr = res->ssim = NAN;
    ast_search_config c;
    stored_config sc = {0};
    str_list prompts = {0};
    search_ctx x;
    memset(&x, 0, sizeof x);
    x.c = given;
    x.t_start = ast_now_sec();
    x.prog.eta_seconds = NAN;
    x.prog.best_mse = x.prog.best_psnr = x.prog.best_ssim = x.prog.best_speedup = NAN;
    int rc = -1, locked = 0;
    ast_ga_rank_item *pool = NULL;

    report(&x, AST_PHASE_SETUP, "loading the model");
    if (open_run(given, &c, &sc, &prompts, &x, res) != 0) goto out;
    locked = 1;
    x.c = &c;
    x.prog.generations = c.ga.generations;
    x.prog.evals_total = ast_ga_total_evaluations(&c.ga);
    if (x.run.status == AST_RUN_DONE) {
        res->already_done = 1;
        if (ast_store_cands_load(x.s, x.run.id, &x.cands.v, &x.cands.n) != 0) goto out;
        x.cands.cap = x.cands.n;
        fill_result(&x, res);
        rc = 0;
        goto out;
    }
    if (ast_store_run_set_status(x.s, x.run.id, AST_RUN_RUNNING) != 0) goto out;
    if (latency_setup(&x) != 0) goto out;
    if (ast_latency_band(&x.lat, x.ev->steps, c.ga.levels, c.target_speedup, c.ga.band_low,
                         c.ga.band_high, &x.band, &x.theta_mean) != 0)
        goto out;
    x.n = (int64_t)x.ev->channels * x.ev->frames * x.ev->height * x.ev->width;
    x.out = ast_malloc(sizeof(float) * (size_t)x.n, "an output latent");
    if (!x.out) goto out;
    int ref_rc = references_setup(&x);
    if (ref_rc < 0) goto out;
    if (ref_rc == 1) {
        rc = 1;
        goto out;
    }
    if (ast_store_cands_load(x.s, x.run.id, &x.cands.v, &x.cands.n) != 0) goto out;
    x.cands.cap = x.cands.n;
    update_best(&x);

    pool = ast_calloc((size_t)c.ga.parents + 1, sizeof *pool, "the parent pool");
    int n_pool = 0;
    if (!pool || pool_replay(&x.cands, x.run.generation, &c.ga, c.target_speedup, pool, &n_pool) != 0) goto out;
    for (int gen = x.run.generation; gen <= c.ga.generations; gen++) {
        int g_rc = run_generation(&x, gen, pool, &n_pool);
        if (g_rc != 0) {
            rc = g_rc;
            goto out;
        }
    }
    pool_stop(&x); /* the final timing runs with every worker idle */
    if (stop_requested(&x)) {
        rc = 1;
        goto out;
    }
    const ast_cand *best = best_at_target(x.cands.v, x.cands.n, c.target_speedup);
    if (!best) {
        ast_error_set("every candidate of run %lld diverged (NaN output); nothing to export",
                      (long long)x.run.id);
        goto out;
    }
    if (measure_best(&x, best) != 0) goto out;
    if (ast_store_run_set_status(x.s, x.run.id, AST_RUN_DONE) != 0) goto out;
    fill_result(&x, res);
    report(&x, AST_PHASE_DONE, "done");
    rc = 0;
out:
    pool_stop(&x);
    if (rc == 1) res->interrupted = 1;
    if (x.s && x.run.id && rc != 0 && locked) {
        /* keep the error that stopped us; record the status best-effort */
        char keep[2048];
        snprintf(keep, sizeof keep, "%s", ast_error_get());
        ast_store_run_set_status(x.s, x.run.id, rc == 1 ? AST_RUN_INTERRUPTED : AST_RUN_FAILED);
        if (rc == 1) fill_result(&x, res);
        ast_error_set("%s", keep);
    }
    if (x.s && x.run.id && locked) {
        char keep[2048];
        snprintf(keep, sizeof keep, "%s", ast_error_get());
        if (ast_store_unlock(x.s, x.run.id) != 0 && rc == 0) rc = -1;
        else ast_error_set("%s", keep);
    }
    free(pool);
    for (int p = 0; x.refs && x.ev && p < x.ev->n_prompts; p++) free(x.refs[p]);
    free(x.refs);
    free(x.out);
    ast_cands_free(x.cands.v, x.cands.n);
    ast_run_info_free(&x.run);
    ast_evaluator_free(x.ev);
    ast_store_close(x.s);
    str_list_free(&prompts);
    stored_config_free(&sc);
    return rc;
}

/* ---- MPI worker ranks ------------------------------------------------------------------------ */

int ast_search_worker_evaluator(const ast_search_config *given, const char *config_json_text,
                                int device, ast_evaluator **ev, int *levels, char key[17]) {
    *ev = NULL;
    ast_run_info r;
    memset(&r, 0, sizeof r);
    r.config_json = (char *)config_json_text; /* read only */
    ast_search_config c;
    stored_config sc;
    str_list prompts = {0};
    if (config_from_stored(&r, given, &c, &sc) != 0) {
        ast_error_prefix("the run configuration from rank 0");
        return -1;
    }
    c.device = device;
    c.resume_run = 0;
    int rc = -1;
    char *key_json = NULL;
    if (resolve_prompts(&c, &prompts) != 0) goto out;
    c.prompts = (const char *const *)prompts.v;
    c.prompts_count = prompts.n;
    c.n_prompts = 0;
    if (make_evaluator(&c, ev) != 0) goto out;
    key_json = config_json(&c, *ev, &prompts, 0);
    if (!key_json) goto out;
    config_key(key_json, key);
    *levels = c.ga.levels;
    rc = 0;
out:
    if (rc != 0) {
        ast_evaluator_free(*ev);
        *ev = NULL;
    }
    free(key_json);
    str_list_free(&prompts);
    stored_config_free(&sc);
    return rc;
}

/* ---- --dry-run ------------------------------------------------------------------------------- */

int ast_search_estimate_cost(const ast_search_config *given, ast_search_estimate *est) {
    memset(est, 0, sizeof *est);
    ast_search_config c = *given;
    str_list prompts = {0};
    ast_evaluator *ev = NULL;
    ast_store *s = NULL;
    int rc = -1;
    if (resolve_prompts(&c, &prompts) != 0) return -1;
    c.prompts = (const char *const *)prompts.v;
    c.prompts_count = prompts.n;
    c.n_prompts = 0;
    if (make_evaluator(&c, &ev) != 0) goto out;
    if (ast_ga_params_check(&c.ga, ev->steps) != 0) goto out;
    int have_db = access(c.db_path, F_OK) == 0;
    int done_evals = 0, have_refs = 0;
    if (have_db) {
        if (ast_store_open(c.db_path, 1, &s) != 0) goto out;
        char *key_json = config_json(given, ev, &prompts, 0);
        if (!key_json) goto out;
        char key[17];
        config_key(key_json, key);
        free(key_json);
        int64_t id = 0;
        int f = ast_store_run_find(s, key, &id);
        if (f < 0) goto out;
        if (f == 0) {
            est->run_id = id;
            ast_run_info r;
            if (ast_store_run_get(s, id, &r) != 0) goto out;
            done_evals = (int)r.evaluations;
            ast_run_info_free(&r);
            if (ast_store_latency_get(s, id, &est->latency) < 0) goto out;
        }
        /* dense references already stored for these prompts */
        search_ctx x;
        memset(&x, 0, sizeof x);
        x.c = &c;
        x.ev = ev;
        int64_t n = (int64_t)ev->channels * ev->frames * ev->height * ev->width;
        float *tmp = ast_malloc(sizeof(float) * (size_t)n, "a dense reference");
        if (!tmp) goto out;
        for (int p = 0; p < ev->n_prompts; p++) {
            char key2[4096];
            if (dense_key(&x, p, key2, sizeof key2) != 0) {
                free(tmp);
                goto out;
            }
            int g = ast_store_dense_get(s, key2, tmp, n);
            if (g < 0) {
                free(tmp);
                goto out;
            }
            have_refs += g == 0;
        }
        free(tmp);
    }
    if (est->latency.n_points == 0) {
        if (isfinite(c.latency_a) && isfinite(c.latency_b)) {
            fixed_latency(&est->latency, c.latency_a, c.latency_b, ev->n_branches);
            if (ast_latency_fit(&est->latency) != 0) goto out;
        } else {
            /* a quick calibration: one timing per budget, no generation */
            if (calibrate(ev, 1, 0, &est->latency) != 0) goto out;
            est->calibrated_now = 1;
        }
    }
    if (ast_latency_band(&est->latency, ev->steps, c.ga.levels, c.target_speedup,
                         c.ga.band_low, c.ga.band_high, &est->band, &est->theta_mean) != 0)
        goto out;
    double dense = ast_latency_dense(&est->latency, ev->steps);
    est->evaluations = ast_ga_total_evaluations(&c.ga) - done_evals;
    if (est->evaluations < 0) est->evaluations = 0;
    est->references = ev->n_prompts - have_refs;
    est->predicted_dense_s = dense;
    est->predicted_eval_s = ev->n_prompts * dense / c.target_speedup;
    if (ast_search_mpi_size(c.mpi) > 1)
        est->workers = ast_search_mpi_size(c.mpi) - 1;
    else if (worker_devices(&c, ev->backend, NULL, &est->workers) != 0)
        goto out;
    /* calibration: per budget and for the dense path, `repeats` timings of two forwards */
    const ast_latency_model *lm = &est->latency;
    double calib = est->run_id == 0 && !isfinite(c.latency_a)
                       ? 6.0 * c.latency_repeats * 2 * (lm->a + 0.5 * lm->b)
                       : 0;
    est->total_s = est->evaluations * est->predicted_eval_s + est->references * dense + calib +
                   c.measure_repeats * (dense + dense / c.target_speedup);
    rc = 0;
out:
    ast_evaluator_free(ev);
    ast_store_close(s);
    str_list_free(&prompts);
    return rc;
}

/* ---- --validate ------------------------------------------------------------------------------ */

static void quality_mean(const ast_quality *q, int n, ast_quality *m) {
    m->mse = m->psnr = m->ssim = 0;
    for (int i = 0; i < n; i++) {
        m->mse += q[i].mse / n;
        m->psnr += q[i].psnr / n;
        m->ssim += q[i].ssim / n;
    }
}

int ast_search_validate(const ast_search_config *given, const ast_profile *p, ast_validation *v) {
    memset(v, 0, sizeof *v);
    ast_search_config c = *given;
    str_list prompts = {0};
    ast_evaluator *ev = NULL;
    float *dense = NULL, *out = NULL, *uniform = NULL;
    int rc = -1;
    if (c.prompts || c.prompts_file) {
        if (resolve_prompts(&c, &prompts) != 0) return -1;
    } else { /* the built-in prompts after the ones a default search calibrates on */
        for (int i = 4; i < N_BUILTIN_PROMPTS; i++)
            if (str_list_add(&prompts, builtin_prompts[i], strlen(builtin_prompts[i])) != 0) goto out;
    }
    while (prompts.n > AST_VALIDATE_MAX_PROMPTS) free(prompts.v[--prompts.n]);
    c.prompts = (const char *const *)prompts.v;
    c.prompts_count = prompts.n;
    c.n_prompts = 0;
    c.steps = p->steps;
    if (p->pixel_frames > 0) {
        c.frames = p->pixel_frames;
        c.height = p->pixel_height;
        c.width = p->pixel_width;
    }
    if (p->sampler[0]) c.sampler = p->sampler;
    if (!isnan(p->shift)) c.shift = p->shift;
    if (!isnan(p->guidance)) c.guidance = p->guidance;
    if (p->has_tokenwise) {
        c.w_alpha = p->tokenwise.w_alpha;
        c.w_beta = p->tokenwise.w_beta;
        c.cache = p->tokenwise.cache == AST_CACHE_OUTPUT ? "output" : "residual";
    }
    if (make_evaluator(&c, &ev) != 0) goto out;
    if (ast_profile_check_compatible(p, ev->model_id, ev->checkpoint_hash, ev->frames, ev->height,
                                     ev->width, ev->steps) != 0)
        goto out;
    snprintf(v->device, sizeof v->device, "%s", ev->device);
    int64_t n = (int64_t)ev->channels * ev->frames * ev->height * ev->width;
    dense = ast_malloc(sizeof(float) * (size_t)n, "a latent");
    out = ast_malloc(sizeof(float) * (size_t)n, "a latent");
    uniform = ast_malloc(sizeof(float) * (size_t)p->steps, "uniform budgets");
    if (!dense || !out || !uniform) goto out;
    double sum = 0;
    for (int t = 1; t < p->steps; t++) sum += p->budgets[t];
    v->theta_uniform = p->steps > 1 ? sum / (p->steps - 1) : 1;
    uniform[0] = 1;
    for (int t = 1; t < p->steps; t++) uniform[t] = (float)v->theta_uniform;
    v->n_prompts = ev->n_prompts;
    for (int i = 0; i < ev->n_prompts; i++) {
        double sec;
        if (ev->generate(ev->user, i, NULL, dense, &sec) != 0 ||
            ev->generate(ev->user, i, p->budgets, out, &sec) != 0 ||
            ast_quality_compare(out, dense, ev->channels, ev->frames, ev->height, ev->width,
                                &v->profile[i]) < 0 ||
            ev->generate(ev->user, i, uniform, out, &sec) != 0 ||
            ast_quality_compare(out, dense, ev->channels, ev->frames, ev->height, ev->width,
                                &v->uniform[i]) < 0) {
            ast_error_prefix("validation prompt %d", i + 1);
            goto out;
        }
        v->wins += v->profile[i].psnr > v->uniform[i].psnr;
    }
    quality_mean(v->profile, v->n_prompts, &v->profile_mean);
    quality_mean(v->uniform, v->n_prompts, &v->uniform_mean);
    int reps = c.measure_repeats < 1 ? 1 : c.measure_repeats > 51 ? 51 : c.measure_repeats;
    double td[51], tp[51], tu[51];
    for (int r = 0; r < reps; r++)
        if (ev->generate(ev->user, 0, NULL, out, &td[r]) != 0 ||
            ev->generate(ev->user, 0, p->budgets, out, &tp[r]) != 0 ||
            ev->generate(ev->user, 0, uniform, out, &tu[r]) != 0)
            goto out;
    v->dense_s = ast_median(td, reps);
    v->profile_s = ast_median(tp, reps);
    v->uniform_s = ast_median(tu, reps);
    v->profile_speedup = v->dense_s / v->profile_s;
    v->uniform_speedup = v->dense_s / v->uniform_s;
    rc = 0;
out:
    free(dense);
    free(out);
    free(uniform);
    ast_evaluator_free(ev);
    str_list_free(&prompts);
    return rc;
}

/* ---- reading results ------------------------------------------------------------------------ */

int ast_search_run_levels(const ast_run_info *r, int *levels) {
    cJSON *o = cJSON_Parse(r->ga_params_json);
    ast_ga_params g;
    ast_ga_params_default(&g);
    int rc = o ? ga_params_parse(o, &g) : ast_fail("run %lld: GA parameters unreadable",
                                                   (long long)r->id);
    cJSON_Delete(o);
    if (rc == 0) *levels = g.levels;
    return rc;
}

int ast_search_pick(ast_store *s, int64_t run, double min_speedup, int64_t *cand) {
    ast_run_info r;
    if (ast_store_run_get(s, run, &r) != 0) return -1;
    ast_cand *v = NULL;
    int n = 0, rc = -1;
    if (isnan(min_speedup)) {
        if (r.best_candidate) {
            *cand = r.best_candidate;
            rc = 0;
        } else if (ast_store_cands_load(s, run, &v, &n) == 0) {
            const ast_cand *b = best_at_target(v, n, r.target_speedup);
            if (b) {
                *cand = b->id;
                rc = 0;
            } else {
                ast_error_set("run %lld has no evaluated candidate yet (resume it with "
                              "astraea-search --resume %lld)",
                              (long long)run, (long long)run);
            }
        }
    } else if (ast_store_pareto(s, run, &v, &n) == 0) {
        const ast_cand *b = NULL;
        double fastest = 0;
        for (int i = 0; i < n; i++) {
            if (v[i].predicted_speedup > fastest) fastest = v[i].predicted_speedup;
            if (v[i].predicted_speedup >= min_speedup * (1 - 1e-9) && (!b || v[i].mse < b->mse))
                b = &v[i];
        }
        if (b) {
            *cand = b->id;
            rc = 0;
        } else {
            ast_error_set("the Pareto front of run %lld reaches at most %.3fx (predicted); ask for "
                          "--speedup %.3f or less, or search with a higher --target-speedup",
                          (long long)run, fastest, fastest);
        }
    }
    ast_cands_free(v, n);
    ast_run_info_free(&r);
    return rc;
}

int ast_search_profile(ast_store *s, int64_t run, int64_t cand_id, ast_profile *p) {
    ast_run_info r;
    ast_cand c;
    memset(&c, 0, sizeof c);
    if (ast_store_run_get(s, run, &r) != 0) return -1;
    int levels = 0, rc = -1;
    cJSON *cfg = NULL;
    if (ast_store_cand_get(s, cand_id, &c) != 0 || ast_search_run_levels(&r, &levels) != 0)
        goto out;
    if (c.run_id != run) {
        ast_error_set("candidate %lld belongs to run %lld, not run %lld", (long long)cand_id,
                      (long long)c.run_id, (long long)run);
        goto out;
    }
    if (c.steps != r.steps) {
        ast_error_set("candidate %lld has %d genes, run %lld has %d steps (damaged DB)",
                      (long long)cand_id, c.steps, (long long)run, r.steps);
        goto out;
    }
    if (ast_profile_init(p, r.steps) != 0) goto out;
    p->format_version = AST_PROFILE_FORMAT_VERSION;
    snprintf(p->model_id, sizeof p->model_id, "%s", r.model_id);
    snprintf(p->checkpoint_hash, sizeof p->checkpoint_hash, "%s", r.checkpoint_hash);
    p->frames = r.frames;
    p->height = r.height;
    p->width = r.width;
    snprintf(p->sampler, sizeof p->sampler, "%s", r.sampler);
    p->shift = r.shift;
    p->guidance = r.guidance;
    ast_ga_to_budgets(c.genome, r.steps, levels, p->budgets);
    p->predicted_speedup = c.predicted_speedup;
    if (isfinite(c.measured_s) && isfinite(r.measured_dense_s) && c.measured_s > 0)
        p->measured_speedup = r.measured_dense_s / c.measured_s;
    p->mse = c.mse;
    p->psnr = c.psnr;
    p->ssim = c.ssim;
    snprintf(p->device, sizeof p->device, "%s", r.device);
    p->run_id = r.id;
    ast_utc_date(p->date);
    p->evaluations = r.evaluations;
    p->device_seconds = r.device_seconds;
    cfg = cJSON_Parse(r.config_json);
    const cJSON *pix = cJSON_GetObjectItemCaseSensitive(cfg, "pixels");
    if (cJSON_IsArray(pix) && cJSON_GetArraySize(pix) == 3) {
        p->pixel_frames = cJSON_GetArrayItem(pix, 0)->valueint;
        p->pixel_height = cJSON_GetArrayItem(pix, 1)->valueint;
        p->pixel_width = cJSON_GetArrayItem(pix, 2)->valueint;
    }
    const cJSON *tw = cJSON_GetObjectItemCaseSensitive(cfg, "tokenwise");
    if (cJSON_IsObject(tw)) {
        double wa = 1, wb = 0.5, dn = 0, sk = 0;
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(tw, "cache");
        if (json_num(tw, "w_alpha", &wa) == 0 && json_num(tw, "w_beta", &wb) == 0 &&
            json_num(tw, "delta_normalize", &dn) == 0 && json_num(tw, "sketch_dim", &sk) == 0 &&
            cJSON_IsString(cm)) {
            p->has_tokenwise = 1;
            p->tokenwise.w_alpha = (float)wa;
            p->tokenwise.w_beta = (float)wb;
            p->tokenwise.cache =
                strcmp(cm->valuestring, "output") == 0 ? AST_CACHE_OUTPUT : AST_CACHE_RESIDUAL;
            p->tokenwise.delta_normalize = (int)dn;
            p->tokenwise.sketch_dim = (int)sk;
            /* searched on that many GPUs per evaluation (absent: one) */
            p->tokenwise.select_segments = (int)json_num_or(tw, "select_segments", 1);
        }
    }
    rc = 0;
out:
    cJSON_Delete(cfg);
    free(c.per_prompt_json);
    ast_run_info_free(&r);
    return rc;
}
