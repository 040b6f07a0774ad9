/* engine.c — the public engine API (engine.h): argument checks, context padding, dispatch to
 * the CPU or CUDA backend, the accounting of the token-wise state, and sequence parallelism:
 * with P ranks the engine holds P backends (one per token shard, comm.h) and runs each forward
 * on P threads, rank 0 on the caller's. Ranks 1..P-1 are persistent threads started with the
 * engine and joined when it is freed (a thread per forward would cost a thread start, and on
 * the CPU a new OpenMP team, every forward). */
#include "engine.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"

/* One rank's result of the current forward. */
typedef struct {
    ast_engine *e;
    int rank;
    ast_forward_info info;
    char err[1024];
} rank_slot;

struct ast_engine {
    const ast_model *m;
    ast_engine_params p;
    void *impl;               /* rank 0's backend (the only one when P == 1) */
    const ast_backend_vtable *vt;
    int P;                    /* ranks */
    void *ranks[AST_MAX_RANKS];
    ast_comm *comm;
    int broken;               /* a rank failed mid-forward: the group is unusable */
    atomic_int first_failed;  /* the forward's first rank to fail on its own (-1: none); the
                                 others fail after it, because it aborted the group */
    /* the rank threads (P > 1): the caller publishes `job` and bumps job_gen under mu and
     * broadcasts `go`; each thread runs it, and the last to finish signals `done` */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int sync_ok;              /* mu, go, done initialised */
    unsigned long job_gen;    /* forwards published so far */
    int pending;              /* rank threads still running the current job */
    int quit;                 /* ast_engine_free: the threads return */
    int n_threads;            /* threads started: ranks 1..n_threads */
    pthread_t th[AST_MAX_RANKS];
    struct {
        int branch, dense;
        const float *x;
        float t, theta;
        float *out;
    } job;
    rank_slot slot[AST_MAX_RANKS];
    char name[160];
    int N;
    int *fresh;        /* [n_branches]: 1 until the first forward after reset */
    float *ctx_padded; /* [text_len, text_dim] */
};

int ast_budget_tokens(float theta, int n) {
    if (!(theta > 0)) theta = 0;
    if (theta > 1) theta = 1;
    long k = lroundf(theta * (float)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return (int)k;
}

void ast_rank_setup(const ast_shard *in, int64_t ntot, int heads, ast_shard *sh,
                    ast_shard_plan *plan, int *allgather) {
    *sh = in && in->size > 1 ? *in : (ast_shard){NULL, 0, 1};
    ast_shard_plan_init(plan, ntot, sh->size);
    *allgather = ast_rank_allgather(heads, sh->size);
}

void ast_exchange_counts(int P, int64_t own, const int64_t *rows, const int64_t *first,
                         int64_t width, int64_t *own_count, int64_t *own_displ,
                         int64_t *peer_count, int64_t *peer_displ) {
    for (int i = 0; i < P; i++) {
        own_count[i] = own * width, own_displ[i] = i * own * width;
        peer_count[i] = rows[i] * width, peer_displ[i] = first[i] * width;
    }
}

void ast_allgather_counts(int P, int64_t own, const int64_t *rows, const int64_t *first,
                          int64_t width, int64_t *send_count, int64_t *send_displ,
                          int64_t *recv_count, int64_t *recv_displ) {
    ast_exchange_counts(P, own, rows, first, width, send_count, send_displ, recv_count,
                        recv_displ);
    for (int i = 0; i < P; i++) send_displ[i] = 0; /* the one buffer goes to every peer */
}

static int check_params(const ast_model *m, const ast_engine_params *p) {
    const ast_wan_config *c = &m->cfg;
    int dims[3] = {p->frames, p->height, p->width};
    const char *names[3] = {"frames", "height", "width"};
    for (int i = 0; i < 3; i++) {
        if (dims[i] <= 0 || dims[i] % c->patch[i] != 0)
            return ast_fail("latent %s = %d must be a positive multiple of the patch size %d "
                            "(latent shape [%d, %d, %d, %d], patch (%d, %d, %d))",
                            names[i], dims[i], c->patch[i], c->in_dim, p->frames, p->height,
                            p->width, c->patch[0], c->patch[1], c->patch[2]);
    }
    int gf = p->frames / c->patch[0], gh = p->height / c->patch[1], gw = p->width / c->patch[2];
    if (gf > 1024 || gh > 1024 || gw > 1024)
        return ast_fail("latent grid %dx%dx%d exceeds the RoPE table (1024 positions per axis)",
                        gf, gh, gw);
    if ((int64_t)gf * gh * gw > 4000000)
        return ast_fail("%lld tokens is more than this engine supports; use fewer frames or a "
                        "lower resolution",
                        (long long)gf * gh * gw);
    if (p->n_branches < 1 || p->n_branches > 2)
        return ast_fail("internal: n_branches must be 1 or 2, got %d", p->n_branches);
    if (p->tw.select_segments > AST_MAX_RANKS)
        return ast_fail("token selection in %d segments: at most %d are supported",
                        p->tw.select_segments, AST_MAX_RANKS);
    int P = p->n_ranks > 1 ? p->n_ranks : 1;
    if (P > AST_MAX_RANKS)
        return ast_fail("sequence parallelism over %d ranks: at most %d are supported", P,
                        AST_MAX_RANKS);
    if (P > 1 && (int64_t)gf * gh * gw < P)
        return ast_fail("%lld tokens cannot be split over %d ranks", (long long)gf * gh * gw, P);
    return 0;
}

static int start_rank_threads(ast_engine *e);
static void stop_rank_threads(ast_engine *e);

int ast_engine_create(const ast_model *m, const ast_engine_params *p, ast_engine **out) {
    *out = NULL;
    if (check_params(m, p)) return -1;
    ast_engine *e = ast_calloc(1, sizeof *e, "the engine");
    if (!e) return -1;
    e->m = m;
    e->p = *p;
    e->N = (p->frames / m->cfg.patch[0]) * (p->height / m->cfg.patch[1]) *
           (p->width / m->cfg.patch[2]);
    e->fresh = ast_calloc((size_t)p->n_branches, sizeof *e->fresh, "engine state");
    e->ctx_padded = ast_alloc_aligned(sizeof(float) * m->cfg.text_len * m->cfg.text_dim,
                                      "the padded context");
    int rc = (!e->fresh || !e->ctx_padded) ? -1 : 0;
    e->P = p->n_ranks > 1 ? p->n_ranks : 1;
    if (rc == 0 && e->P > 1)
        rc = p->backend == AST_BACKEND_CUDA ? ast_comm_nccl_create(e->P, p->devices, &e->comm)
                                            : ast_comm_threads_create(e->P, &e->comm);
    for (int r = 0; rc == 0 && r < e->P; r++) {
        ast_engine_params pr = *p;
        if (e->P > 1) pr.device = p->devices[r];
        ast_shard sh = {e->comm, r, e->P};
        rc = p->backend == AST_BACKEND_CUDA
                 ? ast_cuda_backend_create(m, &pr, &sh, &e->ranks[r], &e->vt)
                 : ast_cpu_backend_create(m, &pr, &sh, &e->ranks[r], &e->vt);
        if (rc && e->P > 1) ast_error_prefix("rank %d of %d", r, e->P);
    }
    e->impl = e->ranks[0];
    if (rc == 0 && e->P > 1) rc = start_rank_threads(e);
    if (rc == 0) {
        const char *n0 = e->vt->device_name(e->impl);
        if (e->P > 1)
            snprintf(e->name, sizeof e->name, "%d x %s (sequence parallel, %s, %s)", e->P, n0,
                     e->comm->kind,
                     ast_rank_allgather(m->cfg.num_heads, e->P) ? "K/V all-gather"
                                                                : "Ulysses all-to-all");
        else
            snprintf(e->name, sizeof e->name, "%s", n0);
    }
    if (rc) {
        ast_engine_free(e);
        return -1;
    }
    ast_engine_reset(e);
    *out = e;
    return 0;
}

void ast_engine_free(ast_engine *e) {
    if (!e) return;
    stop_rank_threads(e);
    for (int r = 0; r < e->P; r++)
        if (e->vt && e->ranks[r]) e->vt->destroy(e->ranks[r]);
    ast_comm_free(e->comm);
    free(e->fresh);
    ast_free_aligned(e->ctx_padded);
    free(e);
}

int ast_engine_set_context(ast_engine *e, int branch, const float *ctx, int L) {
    const ast_wan_config *c = &e->m->cfg;
    if (branch < 0 || branch >= e->p.n_branches)
        return ast_fail("internal: CFG branch %d out of range", branch);
    if (L < 0 || L > c->text_len)
        return ast_fail("the context has %d rows but the model takes at most %d (text_len); "
                        "trim the prompt",
                        L, c->text_len);
    for (int64_t i = 0; i < (int64_t)L * c->text_dim; i++)
        if (!isfinite(ctx[i]))
            return ast_fail("the context holds a NaN or Inf at row %lld, column %lld; the text "
                            "encoder output is broken",
                            (long long)(i / c->text_dim), (long long)(i % c->text_dim));
    size_t bytes = sizeof(float) * (size_t)c->text_len * c->text_dim;
    memset(e->ctx_padded, 0, bytes);
    if (L) memcpy(e->ctx_padded, ctx, sizeof(float) * (size_t)L * c->text_dim);
    for (int r = 0; r < e->P; r++)
        if (e->vt->set_context(e->ranks[r], branch, e->ctx_padded)) {
            if (e->P > 1) ast_error_prefix("rank %d of %d", r, e->P);
            return -1;
        }
    return 0;
}

void ast_engine_reset(ast_engine *e) {
    for (int i = 0; i < e->p.n_branches; i++) e->fresh[i] = 1;
    for (int r = 0; r < e->P; r++) e->vt->reset(e->ranks[r]);
}

/* ---- the rank threads and one forward on P ranks ------------------------------------------- */

/* A rank failed: keep its message, claim "first" if nobody failed before it (a rank that fails
 * because of the abort below always comes after), and make the others return. */
static void rank_failed(rank_slot *s, const char *msg) {
    snprintf(s->err, sizeof s->err, "%s", msg);
    int none = -1;
    atomic_compare_exchange_strong(&s->e->first_failed, &none, s->rank);
    ast_comm_abort(s->e->comm); /* the others return from their next exchange */
}

/* Runs the published job on this slot's rank (the job is not written while ranks run it). */
static void rank_run(rank_slot *s) {
    ast_engine *e = s->e;
    memset(&s->info, 0, sizeof s->info);
    ast_error_clear(); /* a rank thread outlives forwards: no earlier message may stand in */
    if (e->vt->forward(e->ranks[s->rank], e->job.branch, e->job.x, e->job.t, e->job.theta,
                       e->job.dense, e->job.out, &s->info))
        rank_failed(s, ast_error_get());
}

/* Ranks 1..P-1: wait for a job (or quit), run it, report. No rank leaves a job early: a failed
 * rank aborts the group, so every rank's forward returns and `pending` reaches 0. */
static void *rank_thread(void *arg) {
    rank_slot *s = arg;
    ast_engine *e = s->e;
    unsigned long seen = 0;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->quit && e->job_gen == seen) pthread_cond_wait(&e->go, &e->mu);
        if (e->quit) break;
        seen = e->job_gen;
        pthread_mutex_unlock(&e->mu);
        rank_run(s);
        pthread_mutex_lock(&e->mu);
        if (--e->pending == 0) pthread_cond_signal(&e->done);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static int start_rank_threads(ast_engine *e) {
    for (int r = 0; r < e->P; r++) e->slot[r] = (rank_slot){.e = e, .rank = r};
    const int mu_ok = pthread_mutex_init(&e->mu, NULL) == 0;
    const int go_ok = mu_ok && pthread_cond_init(&e->go, NULL) == 0;
    if (!go_ok || pthread_cond_init(&e->done, NULL) != 0) {
        if (go_ok) pthread_cond_destroy(&e->go);
        if (mu_ok) pthread_mutex_destroy(&e->mu);
        return ast_fail("sequence parallelism over %d ranks: initialising the rank threads' "
                        "mutex and condition variables failed",
                        e->P);
    }
    e->sync_ok = 1;
    for (int r = 1; r < e->P; r++) {
        int err = pthread_create(&e->th[r], NULL, rank_thread, &e->slot[r]);
        if (err)
            return ast_fail("sequence parallelism over %d ranks: could not start the thread of "
                            "rank %d: %s", e->P, r, strerror(err));
        e->n_threads = r;
    }
    return 0;
}

/* Tells the rank threads to return and joins them; idle here (no forward runs while the engine
 * is freed, and a forward returns only once every rank has finished, failed or not). */
static void stop_rank_threads(ast_engine *e) {
    if (!e->sync_ok) return;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    pthread_cond_broadcast(&e->go);
    pthread_mutex_unlock(&e->mu);
    for (int r = 1; r <= e->n_threads; r++) pthread_join(e->th[r], NULL);
    e->n_threads = 0;
    pthread_cond_destroy(&e->done);
    pthread_cond_destroy(&e->go);
    pthread_mutex_destroy(&e->mu);
    e->sync_ok = 0;
}

static int forward_ranks(ast_engine *e, int branch, const float *x, float t, float theta,
                         int dense, float *out, ast_forward_info *info) {
    if (e->broken)
        return ast_fail("the sequence-parallel group failed in an earlier forward; create a new "
                        "engine");
    atomic_store(&e->first_failed, -1);
    pthread_mutex_lock(&e->mu);
    e->job.branch = branch, e->job.dense = dense, e->job.x = x;
    e->job.t = t, e->job.theta = theta, e->job.out = out;
    e->pending = e->P - 1;
    e->job_gen++;
    pthread_cond_broadcast(&e->go);
    pthread_mutex_unlock(&e->mu);
    rank_run(&e->slot[0]);
    pthread_mutex_lock(&e->mu);
    while (e->pending > 0) pthread_cond_wait(&e->done, &e->mu);
    pthread_mutex_unlock(&e->mu);
    const int bad = atomic_load(&e->first_failed);
    if (bad >= 0) {
        e->broken = 1;
        return ast_fail("rank %d of %d: %s", bad, e->P, e->slot[bad].err);
    }
    if (info) {
        *info = e->slot[0].info;
        info->tokens = e->N;
        info->computed = 0;
        for (int r = 0; r < e->P; r++) {
            info->computed += e->slot[r].info.computed;
            if (e->slot[r].info.device_ms > info->device_ms) /* the slowest rank's span */
                info->device_ms = e->slot[r].info.device_ms;
        }
    }
    return 0;
}

int ast_engine_forward(ast_engine *e, int branch, const float *x, float t, float theta,
                       float *out, ast_forward_info *info) {
    if (branch < 0 || branch >= e->p.n_branches)
        return ast_fail("internal: CFG branch %d out of range", branch);
    if (!(theta >= 0 && theta <= 1))
        return ast_fail("token budget %g is outside [0, 1]", theta);
    if (theta < 1 && !e->p.tokenwise)
        return ast_fail("internal: budget %g on a dense-only engine", theta);
    int dense = e->fresh[branch] || theta >= 1;
    e->fresh[branch] = 0;
    if (info) memset(info, 0, sizeof *info);
    int rc = e->P > 1 ? forward_ranks(e, branch, x, t, theta, dense, out, info)
                      : e->vt->forward(e->impl, branch, x, t, theta, dense, out, info);
    if (rc == 0 && info) {
        const ast_wan_config *c = &e->m->cfg;
        int r = e->p.tw.sketch_dim > 0 ? e->p.tw.sketch_dim : 32;
        /* per block per branch: cache [N, D] (4 B on CPU, 2 B on GPU), lse, skip, sketch [N, r] */
        double cache_b = e->p.backend == AST_BACKEND_CUDA ? 2.0 : 4.0;
        double per_tok = cache_b * c->dim + 4.0 + 4.0 + 4.0 * r;
        info->extra_state_bytes = e->p.tokenwise ? per_tok * e->N * c->num_layers *
                                                       e->p.n_branches
                                                 : 0;
    }
    return rc;
}

int ast_engine_tokens(const ast_engine *e) { return e->N; }
const ast_model *ast_engine_model(const ast_engine *e) { return e->m; }
const char *ast_engine_device_name(const ast_engine *e) { return e->name; }
int ast_engine_ranks(const ast_engine *e) { return e->P; }

int ast_check_latent(const ast_model *m, const ast_tensor *x, const char *what) {
    const ast_wan_config *c = &m->cfg;
    char shp[128];
    if (x->dtype != AST_DT_F32)
        return ast_fail("%s must be F32, got %s", what, ast_dtype_name(x->dtype));
    if (x->ndim != 4 || x->shape[0] != c->in_dim)
        return ast_fail("%s must have shape [%d, F, H, W], got %s", what, c->in_dim,
                        ast_shape_str(x, shp, sizeof shp));
    for (int i = 0; i < 3; i++)
        if (x->shape[i + 1] <= 0 || x->shape[i + 1] % c->patch[i] != 0)
            return ast_fail("%s has shape %s: F, H, W must be positive multiples of the patch "
                            "size (%d, %d, %d)",
                            what, ast_shape_str(x, shp, sizeof shp), c->patch[0], c->patch[1],
                            c->patch[2]);
    int64_t n = ast_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        float v = ast_tensor_get_f32(x, i);
        if (!isfinite(v))
            return ast_fail("%s holds a NaN or Inf at flat index %lld; fix the input", what,
                            (long long)i);
    }
    return 0;
}
