/* test_seqpar.c — sequence parallelism (comm.h, docs/multigpu.md) on the CPU backend, P ranks as
 * threads: a whole sampling run sharded over P ranks must equal the 1-rank run — dense, and
 * token-wise against a 1-rank engine that selects per segment exactly as P ranks do
 * (select_segments = P) — on uneven shards: Ulysses with P = 2 (2 heads) and P = 2, 4
 * (4 heads), the K/V all-gather fallback with P = 3 (2 and 4 heads); the tokens computed are
 * the sum of the shards' budgets; the threads exchange itself is checked on its own, and with
 * the K/V all-gather's counts (ast_allgather_counts); a failed forward names its rank and breaks
 * the engine; an engine's rank threads start with it and serve every forward. */
#include <omp.h>
#include <pthread.h>
#ifdef __linux__
#include <dirent.h>
#endif

#include "backend.h"
#include "comm.h"
#include "engine.h"
#include "sampler.h"
#include "test_util.h"
#include "tokenwise.h"
#include "unit/forward_test_util.h"
#include "unit/loader_test_util.h"

#define NAME "seqpar"

/* Threads of this process (Linux: /proc/self/task), -1 where it cannot be read. */
static int count_threads(void) {
#ifdef __linux__
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) n += de->d_name[0] != '.';
    closedir(d);
    return n;
#else
    return -1;
#endif
}

static ast_engine *engine(const ast_model *m, int F, int H, int W, int tw, int ranks, int segs) {
    ast_engine_params p = ft_params(AST_BACKEND_CPU, F, H, W, 2, tw);
    p.n_ranks = ranks;
    p.tw.select_segments = segs;
    ast_engine *e = NULL;
    CHECK(ast_engine_create(m, &p, &e) == 0, "engine (%d ranks): %s", ranks, ast_error_get());
    return e;
}

static int gen(ast_engine *e, const float *budgets, const float *noise, const float *c,
               const float *nc, int L, float *out, ast_generate_stats *st) {
    ast_sampler_params sp = {AST_SAMPLER_UNIPC, 6, 5.0f, 5.0f};
    if (ast_engine_set_context(e, 0, c, L) || ast_engine_set_context(e, 1, nc, L)) return -1;
    return ast_generate(e, &sp, budgets, noise, out, NULL, NULL, st);
}

/* Same result within fp32 summation-order noise (the attention of one head over the same keys
 * in the same order is the same computation; GEMMs over a shard's rows may block differently). */
static void expect_same(const char *what, const float *a, const float *b, int64_t n) {
    double err = ast_test_rel_l2(a, b, n);
    int bitwise = memcmp(a, b, sizeof(float) * (size_t)n) == 0;
    CHECK(isfinite(err) && err < 1e-5, "%s: rel L2 %.3g vs the 1-rank run", what, err);
    printf("%s: rel L2 %.3g vs 1 rank%s\n", what, err, bitwise ? " (bitwise equal)" : "");
}

static void compare(const ast_model *m, const char *tag, int F, int H, int W, int P) {
    const ast_wan_config *c = &m->cfg;
    const int64_t n = (int64_t)c->in_dim * F * H * W;
    const int L = c->text_len - 2;
    float *noise = malloc(sizeof(float) * n), *ctx = malloc(sizeof(float) * L * c->text_dim),
          *nctx = malloc(sizeof(float) * L * c->text_dim), *a = malloc(sizeof(float) * n),
          *b = malloc(sizeof(float) * n);
    ast_noise(11, noise, n);
    ast_test_fill(ctx, (int64_t)L * c->text_dim, 2, -1, 1);
    ast_test_fill(nctx, (int64_t)L * c->text_dim, 3, -1, 1);
    const float budget[6] = {1, 0.5f, 0.3f, 0.7f, 0.25f, 0.5f};
    char what[160];

    /* dense */
    ast_engine *e1 = engine(m, F, H, W, 0, 1, 1), *eP = engine(m, F, H, W, 0, P, 1);
    if (e1 && eP) {
        CHECK(ast_engine_ranks(eP) == P, "engine reports %d ranks", ast_engine_ranks(eP));
        CHECK(gen(e1, NULL, noise, ctx, nctx, L, a, NULL) == 0, "1 rank: %s", ast_error_get());
        const int threads = omp_get_max_threads();
        CHECK(gen(eP, NULL, noise, ctx, nctx, L, b, NULL) == 0, "%d ranks: %s", P,
              ast_error_get());
        CHECK(omp_get_max_threads() == threads,
              "a %d-rank forward left the caller's OpenMP threads at %d (was %d)", P,
              omp_get_max_threads(), threads);
        snprintf(what, sizeof what, "%s, %d tokens, dense, %d ranks", tag,
                 ast_engine_tokens(e1), P);
        expect_same(what, b, a, n);
    }
    ast_engine_free(e1);
    ast_engine_free(eP);

    /* token-wise: P ranks vs 1 rank selecting per segment; and theta = 1 vs dense */
    e1 = engine(m, F, H, W, 1, 1, P);
    eP = engine(m, F, H, W, 1, P, 1);
    if (e1 && eP) {
        ast_generate_stats s1, sP;
        CHECK(gen(e1, budget, noise, ctx, nctx, L, a, &s1) == 0, "1 rank: %s", ast_error_get());
        CHECK(gen(eP, budget, noise, ctx, nctx, L, b, &sP) == 0, "%d ranks: %s", P,
              ast_error_get());
        snprintf(what, sizeof what, "%s, token-wise (budgets 0.5 0.3 0.7 0.25 0.5), %d ranks",
                 tag, P);
        expect_same(what, b, a, n);
        int N = ast_engine_tokens(eP);
        int64_t want = 0; /* per shard round(θ·N_p), counted here, not by the engine's plan */
        for (int p = 0; p < P; p++) {
            int64_t f, np;
            ast_shard_range(N, P, p, &f, &np);
            for (int i = 0; i < 6; i++)
                want += 2 * (i == 0 ? np : ast_budget_tokens(budget[i], (int)np));
        }
        CHECK(sP.tokens_computed == want && s1.tokens_computed == want,
              "tokens computed: %d ranks %lld, 1 rank %lld, expected %lld (sum of the shards' "
              "budgets)",
              P, (long long)sP.tokens_computed, (long long)s1.tokens_computed, (long long)want);
        /* not vacuous: per-segment selection is not the global one */
        ast_engine *eg = engine(m, F, H, W, 1, 1, 1);
        float *g = malloc(sizeof(float) * n);
        CHECK(eg && gen(eg, budget, noise, ctx, nctx, L, g, NULL) == 0 &&
                  memcmp(g, a, sizeof(float) * (size_t)n) != 0,
              "%s: selecting per %d segments gave the global top-K's output; the test lost its "
              "point",
              tag, P);
        ast_engine_free(eg);
        free(g);
        float ones[6] = {1, 1, 1, 1, 1, 1};
        float *d = malloc(sizeof(float) * n);
        ast_engine *ed = engine(m, F, H, W, 0, P, 1);
        CHECK(ed && gen(ed, NULL, noise, ctx, nctx, L, d, NULL) == 0 &&
                  gen(eP, ones, noise, ctx, nctx, L, b, NULL) == 0 &&
                  memcmp(d, b, sizeof(float) * (size_t)n) == 0,
              "%s: theta = 1 on %d ranks must reproduce the dense %d-rank output exactly", tag, P,
              P);
        ast_engine_free(ed);
        free(d);
    }
    ast_engine_free(e1);
    ast_engine_free(eP);
    free(noise), free(ctx), free(nctx), free(a), free(b);
}

/* ---- the threads exchange by itself: P ranks, uneven counts, a failing rank ------------------ */

typedef struct {
    ast_comm *c;
    int rank, rc;
    int fail; /* this rank aborts instead of exchanging */
} xjob;

static void *xmain(void *arg) {
    xjob *j = arg;
    const int P = j->c->size, me = j->rank;
    if (j->fail) {
        ast_comm_abort(j->c);
        j->rc = -1;
        return NULL;
    }
    /* rank i sends (i + 1) * (j + 1) ints to rank j, valued 1000 i + j */
    int send[256] = {0}, recv[256] = {0};
    int64_t sc[AST_MAX_RANKS] = {0}, sd[AST_MAX_RANKS] = {0}, rc[AST_MAX_RANKS] = {0},
            rd[AST_MAX_RANKS] = {0}, o = 0;
    for (int k = 0; k < P; k++) {
        sc[k] = (me + 1) * (k + 1), sd[k] = o;
        for (int64_t t = 0; t < sc[k]; t++) send[o + t] = 1000 * me + k;
        o += sc[k];
    }
    o = 0;
    for (int i = 0; i < P; i++) rc[i] = (i + 1) * (me + 1), rd[i] = o, o += rc[i];
    j->rc = ast_comm_alltoallv(j->c, me, send, sc, sd, recv, rc, rd, sizeof(int), NULL);
    for (int i = 0; j->rc == 0 && i < P; i++)
        for (int64_t t = 0; t < rc[i]; t++)
            if (recv[rd[i] + t] != 1000 * i + me) j->rc = 1;
    return NULL;
}

/* Runs fn on jobs[0..P) (job_size bytes apart), one thread each, all at once (the ranks of a
 * threads comm), and joins them. */
static void run_ranks(int P, void *(*fn)(void *), void *jobs, size_t job_size) {
    pthread_t th[AST_MAX_RANKS];
    for (int r = 0; r < P; r++) pthread_create(&th[r], NULL, fn, (char *)jobs + r * job_size);
    for (int r = 0; r < P; r++) pthread_join(th[r], NULL);
}

static void exchange(int P, int failing) {
    ast_comm *c = NULL;
    CHECK(ast_comm_threads_create(P, &c) == 0, "threads comm: %s", ast_error_get());
    if (!c) return;
    xjob jobs[AST_MAX_RANKS];
    for (int r = 0; r < P; r++) jobs[r] = (xjob){c, r, 0, r == failing};
    run_ranks(P, xmain, jobs, sizeof *jobs);
    for (int r = 0; r < P; r++) {
        if (failing < 0)
            CHECK(jobs[r].rc == 0, "alltoallv over %d threads: rank %d got %s", P, r,
                  jobs[r].rc > 0 ? "wrong data" : "an error");
        else
            CHECK(jobs[r].rc == -1, "rank %d failing: rank %d returned %d instead of -1 (it "
                  "must not wait forever or succeed)", failing, r, jobs[r].rc);
    }
    ast_comm_free(c);
}

/* ---- the K/V all-gather's counts (ast_allgather_counts) through the threads exchange ------- */

typedef struct {
    ast_comm *c;
    const ast_shard_plan *pl;
    int rank, rc;
} gjob;

enum { GW = 3 }; /* elements per row */

/* Rank `me` sends its rows (row t of the sequence holds 100 t + column) to every rank with the
 * helper's counts; every rank must end up with the whole sequence in order. */
static void *gmain(void *arg) {
    gjob *j = arg;
    const ast_shard_plan *pl = j->pl;
    const int P = j->c->size, me = j->rank;
    const int64_t ntot = pl->first[P - 1] + pl->n[P - 1];
    int send[64 * GW], recv[64 * GW];
    memset(recv, 0xff, sizeof recv);
    for (int64_t t = 0; t < pl->n[me] * GW; t++)
        send[t] = (int)(100 * (pl->first[me] + t / GW) + t % GW);
    int64_t sc[AST_MAX_RANKS] = {0}, sd[AST_MAX_RANKS] = {0}, rc[AST_MAX_RANKS] = {0},
            rd[AST_MAX_RANKS] = {0};
    ast_allgather_counts(P, pl->n[me], pl->n, pl->first, GW, sc, sd, rc, rd);
    j->rc = ast_comm_alltoallv(j->c, me, send, sc, sd, recv, rc, rd, sizeof(int), NULL);
    for (int64_t t = 0; j->rc == 0 && t < ntot * GW; t++)
        if (recv[t] != 100 * (t / GW) + t % GW) j->rc = 1;
    return NULL;
}

static void allgather_counts(int64_t n, int P) {
    ast_shard_plan pl;
    ast_shard_plan_init(&pl, n, P);
    /* the arithmetic itself, rank 1 of P: its rows to everyone from offset 0; peer i's rows at
     * their place in the sequence, tiling [0, n) */
    int64_t sc[AST_MAX_RANKS], sd[AST_MAX_RANKS], rc[AST_MAX_RANKS], rd[AST_MAX_RANKS], end = 0;
    ast_allgather_counts(P, pl.n[1], pl.n, pl.first, GW, sc, sd, rc, rd);
    for (int i = 0; i < P; i++) {
        CHECK(sc[i] == pl.n[1] * GW && sd[i] == 0, "all-gather, %d ranks: rank 1 sends %lld at "
              "%lld to rank %d, expected %lld at 0", P, (long long)sc[i], (long long)sd[i], i,
              (long long)(pl.n[1] * GW));
        CHECK(rd[i] == end && rc[i] == pl.n[i] * GW, "all-gather, %d ranks: rank %d's rows "
              "received at %lld (+%lld), expected %lld (+%lld)", P, i, (long long)rd[i],
              (long long)rc[i], (long long)end, (long long)(pl.n[i] * GW));
        end = rd[i] + rc[i];
    }
    CHECK(end == n * GW, "all-gather, %d ranks: the received rows end at %lld, not %lld", P,
          (long long)end, (long long)(n * GW));
    /* and through the exchange: the counts pair up and every rank gathers the sequence */
    ast_comm *c = NULL;
    CHECK(ast_comm_threads_create(P, &c) == 0, "threads comm: %s", ast_error_get());
    if (!c) return;
    gjob jobs[AST_MAX_RANKS];
    for (int r = 0; r < P; r++) jobs[r] = (gjob){c, &pl, r, 0};
    run_ranks(P, gmain, jobs, sizeof *jobs);
    for (int r = 0; r < P; r++)
        CHECK(jobs[r].rc == 0, "all-gather of %lld rows over %d ranks: rank %d got %s",
              (long long)n, P, r, jobs[r].rc > 0 ? "wrong data" : "an error");
    ast_comm_free(c);
}

int main(void) {
    /* shard ranges: sizes differ by at most 1, they tile [0, n) */
    for (int P = 1; P <= 5; P++) {
        int64_t next = 0;
        for (int p = 0; p < P; p++) {
            int64_t f, k;
            ast_shard_range(45, P, p, &f, &k);
            CHECK(f == next && (k == 45 / P || k == 45 / P + 1), "shard %d of %d: [%lld, +%lld)",
                  p, P, (long long)f, (long long)k);
            next = f + k;
        }
        CHECK(next == 45, "shards of 45 over %d ranks end at %lld", P, (long long)next);
    }
    exchange(3, -1);
    exchange(4, -1);
    exchange(3, 1);
    allgather_counts(45, 2);
    allgather_counts(45, 3);
    allgather_counts(46, 4); /* uneven shards: 12 12 11 11 */

    char path[1024];
    ast_model *tiny = NULL;
    if (ast_model_load(ast_test_fixture("tiny/orig_f32", path, sizeof path), NULL, &tiny)) {
        CHECK(0, "load: %s", ast_error_get());
        return ast_test_finish(NAME);
    }
    /* 3 x 3 x 5 = 45 tokens: shards 23 + 22 */
    compare(tiny, "tiny (2 heads)", 3, 6, 10, 2);

    /* 3 ranks on 2 heads: P does not divide the heads -> K/V all-gather (shards 15 x 3) */
    compare(tiny, "tiny (2 heads), K/V all-gather", 3, 6, 10, 3);
    ast_engine_params p = ft_params(AST_BACKEND_CPU, 3, 6, 10, 1, 0);
    p.n_ranks = 3;
    ast_engine *ag = NULL;
    CHECK(ast_engine_create(tiny, &p, &ag) == 0 &&
              strstr(ast_engine_device_name(ag), "all-gather") != NULL,
          "3 ranks on 2 heads: engine %s", ag ? ast_engine_device_name(ag) : ast_error_get());
    if (ag) printf("3 ranks on 2 heads: %s\n", ast_engine_device_name(ag));
    ast_engine_free(ag);

    /* a failed forward (no context yet, on every rank): the error names the rank, the engine
     * refuses later forwards even with good inputs, and freeing it joins its rank threads */
    const ast_wan_config *tc = &tiny->cfg;
    const int64_t nx = (int64_t)tc->in_dim * p.frames * p.height * p.width,
                  ny = (int64_t)tc->out_dim * p.frames * p.height * p.width,
                  nctx = (int64_t)tc->text_len * tc->text_dim;
    float *x = calloc((size_t)nx, sizeof(float)), *y = calloc((size_t)ny, sizeof(float)),
          *ctx = calloc((size_t)nctx, sizeof(float));
    CHECK(x && y && ctx, "out of memory");
    p.n_ranks = 2;
    ast_engine *bad = NULL;
    CHECK(ast_engine_create(tiny, &p, &bad) == 0, "2 ranks: %s", ast_error_get());
    if (bad && x && y && ctx) {
        CHECK_FAILS_WITH(ast_engine_forward(bad, 0, x, 500, 1, y, NULL),
                         " of 2: internal: forward on CFG branch 0 before its context was set");
        CHECK(strncmp(ast_error_get(), "rank ", 5) == 0, "error '%s' does not name the rank",
              ast_error_get());
        CHECK(ast_engine_set_context(bad, 0, ctx, tc->text_len) == 0, "context: %s",
              ast_error_get());
        CHECK_FAILS_WITH(ast_engine_forward(bad, 0, x, 500, 1, y, NULL), "earlier forward");
    }
    ast_engine_free(bad);

    /* the rank threads live as long as the engine: P - 1 threads more once it is created (Linux:
     * /proc/self/task), the same threads over 20 forwards of changing inputs, each forward equal
     * to a 1-rank engine's */
    enum { FWD = 20 };
    p.n_ranks = 1;
    ast_engine *one = NULL;
    CHECK(ast_engine_create(tiny, &p, &one) == 0, "1 rank: %s", ast_error_get());
    ast_noise(3, ctx, nctx);
    /* the 1-rank engine's outputs, once for every P: forward i on noise 100 + i at t_i */
    float *ref = calloc((size_t)(FWD * ny), sizeof(float));
    int have_ref = one && ref && x && ctx;
    if (have_ref) {
        CHECK(ast_engine_set_context(one, 0, ctx, tc->text_len) == 0, "context: %s",
              ast_error_get());
        for (int i = 0; i < FWD && have_ref; i++) {
            ast_noise(100 + (uint64_t)i, x, nx);
            if (ast_engine_forward(one, 0, x, 950.0f - 45.0f * (float)i, 1, ref + i * ny, NULL)) {
                CHECK(0, "1 rank, forward %d: %s", i, ast_error_get());
                have_ref = 0;
            }
        }
    }
    for (int P = 2; P <= 3 && have_ref && y; P++) {
        ast_engine *e2 = NULL;
        p.n_ranks = P;
        const int before = count_threads();
        CHECK(ast_engine_create(tiny, &p, &e2) == 0, "%d ranks: %s", P, ast_error_get());
        if (!e2) continue;
        if (before >= 0)
            CHECK(count_threads() >= before + P - 1,
                  "%d ranks: %d threads after the engine's creation, %d before", P,
                  count_threads(), before);
        CHECK(ast_engine_set_context(e2, 0, ctx, tc->text_len) == 0, "context: %s",
              ast_error_get());
        int first = -1;
        for (int i = 0; i < FWD; i++) {
            ast_forward_info info;
            const float t = 950.0f - 45.0f * (float)i;
            ast_noise(100 + (uint64_t)i, x, nx);
            if (ast_engine_forward(e2, 0, x, t, 1, y, &info)) {
                CHECK(0, "%d ranks, forward %d: %s", P, i, ast_error_get());
                break;
            }
            if (i == 0) first = count_threads();
            const double err = ast_test_rel_l2(y, ref + i * ny, ny);
            const int N = ast_engine_tokens(one); /* dense: every token computed */
            CHECK(err < 1e-5 && info.tokens == N && info.computed == N,
                  "%d ranks, forward %d (t = %g): rel L2 %.3g vs 1 rank, info tokens %d "
                  "computed %d (%d and %d expected)",
                  P, i, (double)t, err, info.tokens, info.computed, N, N);
        }
        if (first >= 0)
            CHECK(count_threads() == first, "%d ranks: %d threads after forward 1, %d after %d", P,
                  first, count_threads(), FWD);
        ast_engine_free(e2);
    }
    free(ref);
    ast_engine_free(one);
    free(x), free(y), free(ctx);
    p.n_ranks = AST_MAX_RANKS + 1;
    CHECK_FAILS_WITH(ast_engine_create(tiny, &p, &ag), "at most");
    ast_model_free(tiny);

    /* 4 heads: P = 2 and 4 (shards 12 + 11 + 11 + 11) */
    ast_wan_config c = lt_mini_config();
    lt_set_heads(&c, 4, 16);
    ast_model *m4 = lt_random_model(NAME, &c, 5, AST_DT_F32);
    if (m4) {
        compare(m4, "random (4 heads)", 3, 6, 10, 2);
        compare(m4, "random (4 heads)", 3, 6, 10, 4);
        compare(m4, "random (4 heads), K/V all-gather", 3, 6, 10, 3);
        ast_model_free(m4);
    }
    return ast_test_finish(NAME);
}
