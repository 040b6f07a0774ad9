/* ga.c — genetic operators over per-step budget levels, their naive twins and the built-in
 * self-test that holds the two together (see ga.h).
 *
 * Every operator documents the exact order in which it draws from the RNG: that order is part
 * of the search's reproducibility contract (a resumed run regenerates a generation from the
 * stored RNG state and must get the same children), so changing it changes every search result.
 * The naive twins follow the same contract written the obvious way; the self-test runs both on
 * random inputs and demands identical genomes and identical RNG states afterwards. */
#include "ga.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Faults injected by ast_ga_self_test only (thread-local: a self-test never disturbs a search
 * running in another thread). */
static _Thread_local unsigned ga_fault;

void ast_ga_params_default(ast_ga_params *p) {
    p->population = 50;
    p->parents = 10;
    p->elites = 2;
    p->children = 30;
    p->generations = 30;
    p->levels = 11;
    p->structured = 3;
    p->mutation_start = 0.1;
    p->mutation_end = 0.01;
    p->block_prob = 0.5;
    p->band_low = 0.9;
    p->band_high = 1.1;
    p->feasible_first = 1;
}

int ast_ga_params_check(const ast_ga_params *p, int steps) {
    if (steps < 2 || steps > AST_GA_MAX_STEPS)
        return ast_fail("the search needs 2 to %d denoising steps, got %d (step 0 is fixed, so a "
                        "1-step run has nothing to search)",
                        AST_GA_MAX_STEPS, steps);
    if (p->levels < 2 || p->levels > AST_GA_MAX_LEVELS)
        return ast_fail("--levels must be between 2 and %d, got %d", AST_GA_MAX_LEVELS,
                        p->levels);
    if (p->population < 2)
        return ast_fail("--population must be at least 2, got %d", p->population);
    if (p->parents < 1 || p->parents > p->population)
        return ast_fail("--parents must be between 1 and the population (%d), got %d",
                        p->population, p->parents);
    if (p->elites < 0 || p->elites > p->parents)
        return ast_fail("--elites must be between 0 and --parents (%d), got %d", p->parents,
                        p->elites);
    if (p->children < 1) return ast_fail("--children must be at least 1, got %d", p->children);
    if (p->generations < 0)
        return ast_fail("--generations must be 0 or more, got %d", p->generations);
    if (p->structured < 0 || p->structured > 3 || p->structured > p->population)
        return ast_fail("--structured-seeds must be between 0 and 3 (and at most the "
                        "population), got %d",
                        p->structured);
    if (!(p->mutation_start >= 0 && p->mutation_start <= 1 && p->mutation_end >= 0 &&
          p->mutation_end <= 1))
        return ast_fail("mutation probabilities must be in [0, 1], got %g -> %g",
                        p->mutation_start, p->mutation_end);
    if (!(p->block_prob >= 0 && p->block_prob <= 1))
        return ast_fail("--block-crossover must be a probability in [0, 1], got %g",
                        p->block_prob);
    if (!(p->band_low > 0 && p->band_low <= 1 && p->band_high >= 1 && p->band_high < 10))
        return ast_fail("the repair band must satisfy 0 < low <= 1 <= high, got [%g, %g]",
                        p->band_low, p->band_high);
    return 0;
}

int ast_ga_total_evaluations(const ast_ga_params *p) {
    return p->population + p->generations * p->children;
}

void ast_ga_to_budgets(const uint8_t *g, int steps, int levels, float *budgets) {
    for (int t = 0; t < steps; t++) budgets[t] = ast_ga_theta(g[t], levels);
}

char *ast_ga_format(const uint8_t *g, int steps, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = 0;
    for (int t = 0; t < steps && used < len; t++) {
        int n = snprintf(buf + used, len - used, t ? ",%d" : "%d", g[t]);
        if (n < 0) break;
        used += (size_t)n;
    }
    return buf;
}

int ast_ga_parse(const char *text, int steps, int levels, uint8_t *g) {
    const char *p = text;
    int t = 0;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= (levels > 0 ? levels : AST_GA_MAX_LEVELS))
            return ast_fail("genome '%.60s...' has a bad level at gene %d (levels 0..%d)", text,
                            t, levels - 1);
        if (t >= steps)
            return ast_fail("genome has more than %d genes (one per step)", steps);
        g[t++] = (uint8_t)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return ast_fail("genome '%.60s' is not a comma-separated list", text);
    }
    if (t != steps) return ast_fail("genome has %d genes, the run has %d steps", t, steps);
    if (levels > 0 && g[0] != levels - 1) return ast_fail("genome gene 0 is %d, must be %d (step 0 is dense)",
                                            g[0], levels - 1);
    return 0;
}

char *ast_ga_curve(const uint8_t *g, int steps, int levels, char *buf, size_t len) {
    size_t i = 0;
    for (int t = 0; t < steps && i + 1 < len; t++) {
        int tenth = (int)lround(10.0 * g[t] / (levels - 1));
        buf[i++] = tenth >= 10 ? 'X' : (char)('0' + tenth);
    }
    buf[i] = 0;
    return buf;
}

double ast_ga_mutation_rate(const ast_ga_params *p, int gen) {
    if (p->generations <= 1) return p->mutation_start;
    double f = (double)(gen - 1) / (double)(p->generations - 1);
    if (f < 0) f = 0;
    if (f > 1) f = 1;
    return p->mutation_start + (p->mutation_end - p->mutation_start) * f;
}

/* ---- operators --------------------------------------------------------------------------- */

/* Draws: one ast_rng_below(levels) per gene t = 1..steps-1, in order. */
void ast_ga_random(ast_rng *r, int steps, int levels, uint8_t *g) {
    int n = (ga_fault & AST_GA_FAULT_RANDOM) ? levels - 1 : levels; /* fault: top never drawn */
    g[0] = (uint8_t)(levels - 1);
    for (int t = 1; t < steps; t++) g[t] = (uint8_t)ast_rng_below(r, n);
}

/* Draws: one 64-bit word per 64 free genes; gene t (t >= 1, j = t-1) comes from b when bit
 * j%64 of word j/64 is set. Gene 0 comes from a (both parents have it at the top level). */
void ast_ga_uniform_crossover(ast_rng *r, int steps, const uint8_t *a, const uint8_t *b,
                              uint8_t *child) {
    child[0] = a[0];
    int shift = (ga_fault & AST_GA_FAULT_UNIFORM) ? 1 : 0; /* fault: bits off by one */
    for (int base = 1; base < steps; base += 64) {
        uint64_t w = ast_rng_next(r);
        int n = steps - base < 64 ? steps - base : 64;
        for (int j = 0; j < n; j++) {
            uint8_t mask = (uint8_t)(0u - (uint8_t)((w >> ((j + shift) & 63)) & 1u));
            child[base + j] = (uint8_t)((b[base + j] & mask) | (a[base + j] & (uint8_t)~mask));
        }
    }
}

/* Draws: start s = 1 + below(steps-1), then length len = 1 + below(steps-s). The child is a
 * with the run [s, s+len) taken from b. */
void ast_ga_block_crossover(ast_rng *r, int steps, const uint8_t *a, const uint8_t *b,
                            uint8_t *child) {
    memcpy(child, a, (size_t)steps);
    int s = 1 + ast_rng_below(r, steps - 1);
    int len = 1 + ast_rng_below(r, steps - s);
    if (ga_fault & AST_GA_FAULT_BLOCK) len--; /* fault: the run loses its last gene */
    memcpy(child + s, b + s, (size_t)len);
}

/* Draws: per gene t = 1..steps-1 one ast_rng_uniform; when it is < p, one below(levels-1)
 * picks the new level among the levels-1 others: new = (old + 1 + k) % levels. */
int ast_ga_mutate(ast_rng *r, int steps, int levels, double p, uint8_t *g) {
    int changed = 0, skip = (ga_fault & AST_GA_FAULT_MUTATE) ? 0 : 1; /* fault: may keep old */
    for (int t = 1; t < steps; t++) {
        if (ast_rng_uniform(r) < p) {
            int k = ast_rng_below(r, levels - 1);
            g[t] = (uint8_t)((g[t] + skip + k) % levels);
            changed++;
        }
    }
    return changed;
}

static int level_sum(const uint8_t *g, int steps) {
    int s = 0;
    for (int t = 1; t < steps; t++) s += g[t];
    return s;
}

/* Draws: per move, one below(count of eligible genes); the k-th eligible gene in step order
 * (t >= 1; eligible = can move in the needed direction) moves one level. Moves down while the
 * sum is above band.hi, up while it is below band.lo. */
int ast_ga_repair(ast_rng *r, int steps, int levels, ast_ga_band band, uint8_t *g) {
    int sum = level_sum(g, steps), moves = 0, top = levels - 1;
    int off = (ga_fault & AST_GA_FAULT_REPAIR) ? 1 : 0; /* fault: picks the next eligible gene */
    while (sum > band.hi || sum < band.lo) {
        int down = sum > band.hi, count = 0;
        for (int t = 1; t < steps; t++) count += down ? g[t] > 0 : g[t] < top;
        if (count == 0) break; /* band outside [0, (steps-1)*top]: as close as it gets */
        int k = (ast_rng_below(r, count) + off) % count;
        for (int t = 1; t < steps; t++) {
            if (!(down ? g[t] > 0 : g[t] < top)) continue;
            if (k-- == 0) {
                g[t] = (uint8_t)(down ? g[t] - 1 : g[t] + 1);
                break;
            }
        }
        sum += down ? -1 : 1;
        moves++;
    }
    return moves;
}

/* ---- ranking and selection ---------------------------------------------------------------- */

static int rank_less(const ast_ga_rank_item *x, const ast_ga_rank_item *y) {
    if (x->tier != y->tier) return x->tier < y->tier;
    double fx = isnan(x->fitness) ? INFINITY : x->fitness;
    double fy = isnan(y->fitness) ? INFINITY : y->fitness;
    if (fx != fy) return fx < fy;
    return x->key < y->key;
}

static int rank_cmp(const void *pa, const void *pb) {
    const ast_ga_rank_item *a = pa, *b = pb;
    return rank_less(a, b) ? -1 : rank_less(b, a) ? 1 : 0;
}

void ast_ga_rank(ast_ga_rank_item *items, int n) {
    if (n > 1) qsort(items, (size_t)n, sizeof *items, rank_cmp);
}

int ast_ga_select(const ast_ga_rank_item *pool, int n_pool, const ast_ga_rank_item *children,
                  int n_children, int parents, int elites, ast_ga_rank_item *out) {
    /* One buffer: sorted pool, then everyone else. Small (<= population + children). */
    int n_all = n_pool + n_children;
    ast_ga_rank_item *all = malloc(sizeof *all * (size_t)(n_all ? n_all : 1));
    if (!all) return ast_fail("out of memory selecting parents");
    memcpy(all, pool, sizeof *all * (size_t)n_pool);
    ast_ga_rank(all, n_pool);
    int e = elites < n_pool ? elites : n_pool;
    if (ga_fault & AST_GA_FAULT_SELECT) e = e + 1 < n_pool ? e + 1 : e; /* fault: one elite too many */
    if (e > parents) e = parents;
    memcpy(all + n_pool, children, sizeof *all * (size_t)n_children);
    ast_ga_rank(all + e, n_all - e);
    int n = n_all < parents ? n_all : parents;
    memcpy(out, all, sizeof *out * (size_t)n);
    ast_ga_rank(out, n);
    free(all);
    return n;
}

/* ---- set of seen genomes ---------------------------------------------------------------- */

static uint64_t genome_hash(const uint8_t *g, int steps) {
    uint64_t h = 1469598103934665603ull;
    for (int t = 0; t < steps; t++) h = (h ^ g[t]) * 1099511628211ull;
    return h;
}

static int seen_nslots(const ast_ga_seen *s) { return 2 * s->cap; }

int ast_ga_seen_init(ast_ga_seen *s, int steps, int expected) {
    memset(s, 0, sizeof *s);
    s->steps = steps;
    s->cap = 64;
    while (s->cap < expected) s->cap *= 2;
    s->genes = ast_malloc((size_t)s->cap * (size_t)steps, "the set of seen genomes");
    s->slots = ast_malloc(sizeof *s->slots * (size_t)seen_nslots(s), "the set of seen genomes");
    if (!s->genes || !s->slots) {
        ast_ga_seen_free(s);
        return -1;
    }
    for (int i = 0; i < seen_nslots(s); i++) s->slots[i] = -1;
    return 0;
}

void ast_ga_seen_free(ast_ga_seen *s) {
    free(s->genes);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* Slot holding g, or the empty slot where it would go. */
static int seen_slot(const ast_ga_seen *s, const uint8_t *g) {
    int mask = seen_nslots(s) - 1;
    int i = (int)(genome_hash(g, s->steps) & (uint64_t)mask);
    while (s->slots[i] >= 0 &&
           memcmp(s->genes + (size_t)s->slots[i] * (size_t)s->steps, g, (size_t)s->steps) != 0)
        i = (i + 1) & mask;
    return i;
}

int ast_ga_seen_find(const ast_ga_seen *s, const uint8_t *g) {
    return s->slots[seen_slot(s, g)];
}

int ast_ga_seen_add(ast_ga_seen *s, const uint8_t *g) {
    if (ast_ga_seen_find(s, g) >= 0) return 0;
    if (s->n == s->cap) { /* grow: double, rehash */
        ast_ga_seen bigger;
        if (ast_ga_seen_init(&bigger, s->steps, s->cap * 2) != 0) return -1;
        for (int i = 0; i < s->n; i++) {
            const uint8_t *x = s->genes + (size_t)i * (size_t)s->steps;
            memcpy(bigger.genes + (size_t)i * (size_t)s->steps, x, (size_t)s->steps);
            bigger.slots[seen_slot(&bigger, x)] = i;
        }
        bigger.n = s->n;
        ast_ga_seen_free(s);
        *s = bigger;
    }
    memcpy(s->genes + (size_t)s->n * (size_t)s->steps, g, (size_t)s->steps);
    s->slots[seen_slot(s, g)] = s->n;
    s->n++;
    return 0;
}

/* ---- populations -------------------------------------------------------------------------- */

const char *ast_ga_origin_name(ast_ga_origin o) {
    static const char *names[AST_ORIGIN_COUNT] = {"random",  "constant", "ramp-down",
                                                  "ramp-up", "uniform",  "block"};
    return (unsigned)o < AST_ORIGIN_COUNT ? names[o] : "?";
}

/* Structured seed k (0 constant, 1 ramp down, 2 ramp up) around the band's mean level; no
 * draws (repair draws afterwards). */
static void structured_seed(int k, int steps, int levels, ast_ga_band band, uint8_t *g) {
    int top = levels - 1;
    double m = 0.5 * (band.lo + band.hi) / (double)(steps - 1);
    double amp = m < top - m ? m : top - m;
    g[0] = (uint8_t)top;
    for (int t = 1; t < steps; t++) {
        double x = steps > 2 ? 1.0 - 2.0 * (t - 1) / (double)(steps - 2) : 0.0; /* 1 .. -1 */
        double v = k == 0 ? m : k == 1 ? m + amp * x : m - amp * x;
        long l = lround(v);
        g[t] = (uint8_t)(l < 0 ? 0 : l > top ? top : l);
    }
}

int ast_ga_initial(const ast_ga_params *p, int steps, ast_ga_band band, ast_rng *r,
                   ast_ga_seen *seen, ast_ga_child *out) {
    for (int i = 0; i < p->population; i++) {
        ast_ga_child *c = &out[i];
        c->parent_a = c->parent_b = -1;
        if (i < p->structured) {
            structured_seed(i, steps, p->levels, band, c->g);
            ast_ga_repair(r, steps, p->levels, band, c->g);
            c->origin = (ast_ga_origin)(AST_ORIGIN_CONSTANT + i);
        } else {
            for (int attempt = 0; attempt <= AST_GA_RETRIES; attempt++) {
                ast_ga_random(r, steps, p->levels, c->g);
                ast_ga_repair(r, steps, p->levels, band, c->g);
                if (ast_ga_seen_find(seen, c->g) < 0) break;
            }
            c->origin = AST_ORIGIN_RANDOM;
        }
        c->duplicate = ast_ga_seen_find(seen, c->g) >= 0;
        if (ast_ga_seen_add(seen, c->g) != 0) return -1;
    }
    return 0;
}

/* Draws per attempt: parent a = below(n_pool); parent b = below(n_pool-1), shifted past a
 * (distinct parents; the same one when the pool has one member); one ast_rng_uniform picks
 * block (< block_prob) or uniform crossover; the crossover's draws; mutation's; repair's. */
int ast_ga_children(const ast_ga_params *p, int steps, ast_ga_band band, int gen, ast_rng *r,
                    const uint8_t *const *pool, int n_pool, ast_ga_seen *seen,
                    ast_ga_child *out) {
    if (n_pool < 1) return ast_fail("no parents to make generation %d from", gen);
    double pm = ast_ga_mutation_rate(p, gen);
    for (int i = 0; i < p->children; i++) {
        ast_ga_child *c = &out[i];
        for (int attempt = 0; attempt <= AST_GA_RETRIES; attempt++) {
            int a = ast_rng_below(r, n_pool), b = a;
            if (n_pool > 1) {
                b = ast_rng_below(r, n_pool - 1);
                if (b >= a) b++;
            }
            c->parent_a = a;
            c->parent_b = b;
            if (ast_rng_uniform(r) < p->block_prob) {
                ast_ga_block_crossover(r, steps, pool[a], pool[b], c->g);
                c->origin = AST_ORIGIN_BLOCK;
            } else {
                ast_ga_uniform_crossover(r, steps, pool[a], pool[b], c->g);
                c->origin = AST_ORIGIN_UNIFORM;
            }
            ast_ga_mutate(r, steps, p->levels, pm, c->g);
            ast_ga_repair(r, steps, p->levels, band, c->g);
            if (ast_ga_seen_find(seen, c->g) < 0) break;
        }
        c->duplicate = ast_ga_seen_find(seen, c->g) >= 0;
        if (ast_ga_seen_add(seen, c->g) != 0) return -1;
    }
    return 0;
}

/* ---- naive twins (same draw contract, written the obvious way) ----------------------------- */

static void naive_random(ast_rng *r, int steps, int levels, uint8_t *g) {
    for (int t = 0; t < steps; t++) g[t] = t == 0 ? (uint8_t)(levels - 1)
                                                  : (uint8_t)ast_rng_below(r, levels);
}

static void naive_uniform(ast_rng *r, int steps, const uint8_t *a, const uint8_t *b,
                          uint8_t *child) {
    uint64_t w = 0;
    for (int t = 0; t < steps; t++) {
        if (t == 0) {
            child[0] = a[0];
            continue;
        }
        int j = t - 1;
        if (j % 64 == 0) w = ast_rng_next(r);
        child[t] = ((w >> (j % 64)) & 1u) ? b[t] : a[t];
    }
}

static void naive_block(ast_rng *r, int steps, const uint8_t *a, const uint8_t *b,
                        uint8_t *child) {
    int s = 1 + ast_rng_below(r, steps - 1);
    int e = s + 1 + ast_rng_below(r, steps - s); /* exclusive end */
    for (int t = 0; t < steps; t++) child[t] = (t >= s && t < e) ? b[t] : a[t];
}

static int naive_mutate(ast_rng *r, int steps, int levels, double p, uint8_t *g) {
    int changed = 0;
    for (int t = 1; t < steps; t++) {
        if (!(ast_rng_uniform(r) < p)) continue;
        /* the k-th of the other levels in the cyclic order after the current one */
        int k = ast_rng_below(r, levels - 1), level = g[t];
        for (int i = 0; i <= k; i++) level = (level + 1) % levels;
        g[t] = (uint8_t)level;
        changed++;
    }
    return changed;
}

static int naive_repair(ast_rng *r, int steps, int levels, ast_ga_band band, uint8_t *g) {
    int moves = 0, list[AST_GA_MAX_STEPS];
    for (;;) {
        int sum = 0;
        for (int t = 1; t < steps; t++) sum += g[t];
        int dir = sum > band.hi ? -1 : sum < band.lo ? 1 : 0;
        if (dir == 0) break;
        int n = 0;
        for (int t = 1; t < steps; t++)
            if ((dir < 0 && g[t] > 0) || (dir > 0 && g[t] < levels - 1)) list[n++] = t;
        if (n == 0) break;
        int pick = list[ast_rng_below(r, n)];
        g[pick] = (uint8_t)(g[pick] + dir);
        moves++;
    }
    return moves;
}

/* Selection by repeated extraction of the minimum. */
static int naive_take_min(ast_ga_rank_item *v, int *n, ast_ga_rank_item *out) {
    if (*n == 0) return 0;
    int best = 0;
    for (int i = 1; i < *n; i++) {
        double fi = isnan(v[i].fitness) ? INFINITY : v[i].fitness;
        double fb = isnan(v[best].fitness) ? INFINITY : v[best].fitness;
        if (v[i].tier != v[best].tier) {
            if (v[i].tier < v[best].tier) best = i;
        } else if (fi < fb || (fi == fb && v[i].key < v[best].key)) {
            best = i;
        }
    }
    *out = v[best];
    v[best] = v[--*n];
    return 1;
}

static int naive_select(const ast_ga_rank_item *pool, int n_pool,
                        const ast_ga_rank_item *children, int n_children, int parents,
                        int elites, ast_ga_rank_item *out) {
    ast_ga_rank_item rest[256], tmp[256];
    int n_rest = n_pool, n = 0;
    memcpy(rest, pool, sizeof *rest * (size_t)n_pool);
    for (int i = 0; i < elites && n < parents && naive_take_min(rest, &n_rest, &out[n]); i++) n++;
    memcpy(rest + n_rest, children, sizeof *rest * (size_t)n_children);
    n_rest += n_children;
    while (n < parents && naive_take_min(rest, &n_rest, &out[n])) n++;
    /* best first */
    memcpy(tmp, out, sizeof *tmp * (size_t)n);
    int m = n;
    for (int i = 0; i < n; i++) naive_take_min(tmp, &m, &out[i]);
    return n;
}

/* ---- the self-test ------------------------------------------------------------------------ */

typedef struct {
    int checks;
    int failed;
} st_ctx;

static int st_check(st_ctx *c, int ok, const char *what, int case_no, int steps, int levels,
                    const uint8_t *a, const uint8_t *b, const uint8_t *got, const uint8_t *want) {
    c->checks++;
    if (ok || c->failed) return ok;
    c->failed = 1;
    char sa[256] = "", sb[256] = "", sg[256] = "", sw[256] = "";
    int shown = steps <= 40 ? steps : 40;
    if (a) ast_ga_format(a, shown, sa, sizeof sa);
    if (b) ast_ga_format(b, shown, sb, sizeof sb);
    if (got) ast_ga_format(got, shown, sg, sizeof sg);
    if (want) ast_ga_format(want, shown, sw, sizeof sw);
    ast_error_set("GA self-test failed: %s (case %d: %d genes, %d levels; a=[%s] b=[%s] got=[%s] "
                  "want=[%s]%s)",
                  what, case_no, steps, levels, sa, sb, sg, sw, steps > 40 ? ", first 40 shown" : "");
    return 0;
}

static int rng_equal(const ast_rng *x, const ast_rng *y) {
    return memcmp(x->s, y->s, sizeof x->s) == 0;
}

int ast_ga_self_test(unsigned fault, uint64_t seed, int *checks) {
    st_ctx c = {0, 0};
    ast_rng in; /* inputs */
    ast_rng_seed(&in, seed);
    static _Thread_local uint8_t a[AST_GA_MAX_STEPS], b[AST_GA_MAX_STEPS], x[AST_GA_MAX_STEPS],
        y[AST_GA_MAX_STEPS];
    ga_fault = fault;
    for (int cs = 0; cs < 600 && !c.failed; cs++) {
        /* Half the cases are the tiny problem (6 genes, 5 levels); the rest straddle the
         * 64-gene words of uniform crossover. */
        int steps = cs % 2 == 0 ? 6 : 2 + ast_rng_below(&in, 199);
        int levels = cs % 2 == 0 ? 5 : 2 + ast_rng_below(&in, 11);
        naive_random(&in, steps, levels, a);
        naive_random(&in, steps, levels, b);
        ast_rng r0;
        ast_rng_seed(&r0, ast_rng_next(&in));
        ast_rng r1 = r0, r2 = r0;

        /* random genome */
        ast_ga_random(&r1, steps, levels, x);
        naive_random(&r2, steps, levels, y);
        st_check(&c, memcmp(x, y, (size_t)steps) == 0 && rng_equal(&r1, &r2),
                 "random genome differs from its naive twin", cs, steps, levels, NULL, NULL, x, y);
        st_check(&c, x[0] == levels - 1, "random genome: step 0 not at the top level", cs, steps,
                 levels, NULL, NULL, x, NULL);

        /* uniform crossover */
        ast_ga_uniform_crossover(&r1, steps, a, b, x);
        naive_uniform(&r2, steps, a, b, y);
        st_check(&c, memcmp(x, y, (size_t)steps) == 0 && rng_equal(&r1, &r2),
                 "uniform crossover differs from its naive twin", cs, steps, levels, a, b, x, y);
        int from_parents = 1;
        for (int t = 0; t < steps; t++) from_parents &= x[t] == a[t] || x[t] == b[t];
        st_check(&c, from_parents && x[0] == levels - 1,
                 "uniform crossover: a gene from neither parent", cs, steps, levels, a, b, x, NULL);

        /* block crossover */
        ast_ga_block_crossover(&r1, steps, a, b, x);
        naive_block(&r2, steps, a, b, y);
        st_check(&c, memcmp(x, y, (size_t)steps) == 0 && rng_equal(&r1, &r2),
                 "block crossover differs from its naive twin", cs, steps, levels, a, b, x, y);
        /* genes that differ from a lie in one run [first, last] where the child equals b */
        int first = -1, last = -1, one_run = 1;
        for (int t = 1; t < steps; t++)
            if (x[t] != a[t]) {
                if (first < 0) first = t;
                last = t;
            }
        for (int t = first; first > 0 && t <= last; t++) one_run &= x[t] == b[t];
        st_check(&c, one_run && x[0] == levels - 1,
                 "block crossover: genes from b are not one contiguous run", cs, steps, levels, a,
                 b, x, NULL);

        /* mutation (p spans never .. always) */
        double p = (double)(cs % 7) / 6.0;
        memcpy(x, a, (size_t)steps);
        memcpy(y, a, (size_t)steps);
        int n1 = ast_ga_mutate(&r1, steps, levels, p, x);
        int n2 = naive_mutate(&r2, steps, levels, p, y);
        st_check(&c, n1 == n2 && memcmp(x, y, (size_t)steps) == 0 && rng_equal(&r1, &r2),
                 "mutation differs from its naive twin", cs, steps, levels, a, NULL, x, y);
        int diff = 0;
        for (int t = 0; t < steps; t++) diff += x[t] != a[t];
        st_check(&c, diff == n1 && x[0] == levels - 1,
                 "mutation: reported changes != changed genes", cs, steps, levels, a, NULL, x,
                 NULL);

        /* repair into a random band (sometimes already satisfied, sometimes a single sum) */
        int max_sum = (steps - 1) * (levels - 1);
        ast_ga_band band;
        band.lo = ast_rng_below(&in, max_sum + 1);
        band.hi = band.lo + (cs % 3 == 0 ? 0 : ast_rng_below(&in, max_sum - band.lo + 1));
        int before = level_sum(a, steps);
        int want_moves = before > band.hi ? before - band.hi : before < band.lo ? band.lo - before : 0;
        memcpy(x, a, (size_t)steps);
        memcpy(y, a, (size_t)steps);
        int m1 = ast_ga_repair(&r1, steps, levels, band, x);
        int m2 = naive_repair(&r2, steps, levels, band, y);
        st_check(&c, m1 == m2 && memcmp(x, y, (size_t)steps) == 0 && rng_equal(&r1, &r2),
                 "repair differs from its naive twin", cs, steps, levels, a, NULL, x, y);
        int after = level_sum(x, steps), monotone = 1;
        for (int t = 1; t < steps; t++)
            monotone &= before > band.hi ? x[t] <= a[t] : x[t] >= a[t];
        st_check(&c, after >= band.lo && after <= band.hi && m1 == want_moves && monotone &&
                         x[0] == levels - 1,
                 "repair: not in band with the fewest one-level moves", cs, steps, levels, a,
                 NULL, x, NULL);

        /* selection */
        ast_ga_rank_item pool[16], kids[16], o1[32], o2[32];
        int n_pool = 1 + ast_rng_below(&in, 12), n_kids = ast_rng_below(&in, 12);
        for (int i = 0; i < n_pool + n_kids; i++) {
            ast_ga_rank_item *it = i < n_pool ? &pool[i] : &kids[i - n_pool];
            /* coarse fitness values so ties (broken by key) happen; some NaN */
            it->fitness = ast_rng_below(&in, 10) == 0 ? NAN : (double)ast_rng_below(&in, 6);
            it->tier = ast_rng_below(&in, 3) == 0;
            it->key = (int64_t)ast_rng_below(&in, 1000) * 32 + i;
        }
        int parents = 1 + ast_rng_below(&in, 10), elites = ast_rng_below(&in, parents + 1);
        int k1 = ast_ga_select(pool, n_pool, kids, n_kids, parents, elites, o1);
        int k2 = naive_select(pool, n_pool, kids, n_kids, parents, elites, o2);
        int same = k1 == k2;
        for (int i = 0; same && i < k1; i++) same = o1[i].key == o2[i].key;
        c.checks++;
        if (!same && !c.failed) {
            c.failed = 1;
            ast_error_set("GA self-test failed: parent selection differs from its naive twin "
                          "(case %d: pool %d, children %d, parents %d, elites %d; got %d "
                          "parents, want %d)",
                          cs, n_pool, n_kids, parents, elites, k1, k2);
        }
    }
    ga_fault = 0;
    if (checks) *checks = c.checks;
    return c.failed ? -1 : 0;
}
