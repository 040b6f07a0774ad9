/* ga.h — the genetic algorithm over per-step token budgets (method.md §2).
 *
 * A genome is one budget level per denoising step: uint8_t g[steps], level k meaning
 * θ = k / (levels − 1) (11 levels: 0.0, 0.1, ..., 1.0). Gene 0 is always the top level (step 0
 * runs dense). Every random choice comes from an ast_rng passed in, in an order this header
 * documents, so a search is a pure function of its seed and its fitness values: the driver stores
 * the RNG state at the start of each generation and, on resume, regenerates that generation
 * exactly (search.c).
 *
 * Operators (each has a naive twin in ga.c and a built-in self-test against it, SQLite-style,
 * with an injected fault to prove the checker bites: ast_ga_self_test):
 *   random genome, uniform crossover, block crossover, mutation, repair into the budget band,
 *   parent selection with elitism.
 *
 * The repair band is expressed as an integer range of Σ_{t≥1} level_t. The latency model
 * (latency.c) makes predicted time affine in that sum, so a band on predicted time (or on mean
 * budget, as the paper says) is a band on the sum. */
#ifndef AST_GA_H
#define AST_GA_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "common.h"

#define AST_GA_MAX_STEPS 1000 /* genes per genome */
#define AST_GA_MAX_LEVELS 101 /* budget levels (fits a uint8_t) */

typedef struct {
    int population;        /* initial population (paper 50) */
    int parents;           /* best candidates kept as the parent pool (10; paper: "the best") */
    int elites;            /* best parents that stay in the pool whatever the children (2) */
    int children;          /* children per generation (paper 30) */
    int generations;       /* generations of children after the initial population (paper 30) */
    int levels;            /* budget levels, θ = k/(levels-1) (11: 0.0..1.0 by 0.1) */
    int structured;        /* structured seeds in the initial population, 0..3 (3) */
    double mutation_start; /* per-gene mutation probability in the first generation (0.1) */
    double mutation_end;   /* ... in the last, linear in between (0.01) */
    double block_prob;     /* probability a child comes from block crossover, else uniform (0.5) */
    double band_low;       /* repair band: [low, high] x the target budget (0.9, 1.1) */
    double band_high;
    int feasible_first;    /* 1: candidates reaching the target speed rank before those that do
                              not (Deb's feasibility rule); 0: rank by fitness alone (paper) */
} ast_ga_params;

void ast_ga_params_default(ast_ga_params *p);
/* Checks ranges and combinations (parents <= population, elites <= parents, ...). */
int ast_ga_params_check(const ast_ga_params *p, int steps);
/* The total number of evaluations a run makes: population + generations * children. */
int ast_ga_total_evaluations(const ast_ga_params *p);

/* Inclusive range of Σ_{t>=1} g[t] a repaired genome lands in. */
typedef struct {
    int lo, hi;
} ast_ga_band;

static inline float ast_ga_theta(int level, int levels) {
    return (float)level / (float)(levels - 1);
}
/* budgets[t] = θ of g[t]. */
void ast_ga_to_budgets(const uint8_t *g, int steps, int levels, float *budgets);
/* "10,4,4,3" (levels) into buf; returns buf. buf needs 4*steps bytes. */
char *ast_ga_format(const uint8_t *g, int steps, char *buf, size_t len);
/* Parses ast_ga_format's text; checks count == steps, each level < levels, g[0] == top
 * (levels 0: only that each level fits, for readers that do not know the run's levels). */
int ast_ga_parse(const char *text, int steps, int levels, uint8_t *g);
/* Compact curve for tables: one character per step, '0'..'9' for θ = 0.0..0.9, 'X' for 1.0
 * (other level counts: the nearest tenth). */
char *ast_ga_curve(const uint8_t *g, int steps, int levels, char *buf, size_t len);

/* Per-gene mutation probability for children generation `gen` (1..generations). */
double ast_ga_mutation_rate(const ast_ga_params *p, int gen);

/* ---- operators (RNG draw order documented in ga.c above each) ----------------------------- */
void ast_ga_random(ast_rng *r, int steps, int levels, uint8_t *g);
void ast_ga_uniform_crossover(ast_rng *r, int steps, const uint8_t *a, const uint8_t *b,
                              uint8_t *child);
void ast_ga_block_crossover(ast_rng *r, int steps, const uint8_t *a, const uint8_t *b,
                            uint8_t *child);
/* Each gene t >= 1 mutates with probability p to a different level, uniformly. Returns the
 * number of genes changed. */
int ast_ga_mutate(ast_rng *r, int steps, int levels, double p, uint8_t *g);
/* Moves genes one level at a time (a uniformly chosen eligible gene per move) until the level
 * sum is inside band; returns the number of moves (= distance of the sum to the band). */
int ast_ga_repair(ast_rng *r, int steps, int levels, ast_ga_band band, uint8_t *g);

/* Ranking: lower tier first (0: reaches the target speed, 1: does not; all 0 when the rule is
 * off), then lower fitness (NaN last), then key (generation-major order), so ranking never
 * depends on storage order. */
typedef struct {
    int tier;
    double fitness;
    int64_t key;
} ast_ga_rank_item;
/* Sorts items by (tier, fitness, key). */
void ast_ga_rank(ast_ga_rank_item *items, int n);
/* Next parent pool: the `elites` best of pool (kept whatever the children), then the best of
 * everyone else (the rest of pool and the children) up to `parents`. pool and children are item
 * arrays; out receives at most `parents` items, best first. Returns the count. */
int ast_ga_select(const ast_ga_rank_item *pool, int n_pool, const ast_ga_rank_item *children,
                  int n_children, int parents, int elites, ast_ga_rank_item *out);

/* ---- set of genomes seen in a run (children are made distinct from every earlier one) ----- */
typedef struct {
    uint8_t *genes;   /* cap * steps */
    int32_t *slots;   /* open addressing: index into genes or -1; 2*cap slots */
    int n, cap, steps;
} ast_ga_seen;
int ast_ga_seen_init(ast_ga_seen *s, int steps, int expected);
void ast_ga_seen_free(ast_ga_seen *s);
/* Index of g among the added genomes, or -1. */
int ast_ga_seen_find(const ast_ga_seen *s, const uint8_t *g);
int ast_ga_seen_add(ast_ga_seen *s, const uint8_t *g); /* adds if absent; -1 on OOM */

/* ---- populations --------------------------------------------------------------------------- */
typedef enum {
    AST_ORIGIN_RANDOM = 0,   /* uniform random levels, repaired */
    AST_ORIGIN_CONSTANT,     /* structured seed: constant budget at the target */
    AST_ORIGIN_RAMP_DOWN,    /* structured seed: high early, low late */
    AST_ORIGIN_RAMP_UP,      /* structured seed: low early, high late */
    AST_ORIGIN_UNIFORM,      /* child of uniform crossover */
    AST_ORIGIN_BLOCK,        /* child of block crossover */
    AST_ORIGIN_COUNT
} ast_ga_origin;
const char *ast_ga_origin_name(ast_ga_origin o);

typedef struct {
    uint8_t g[AST_GA_MAX_STEPS];
    int parent_a, parent_b; /* indices into the parent pool passed in, -1 for none */
    ast_ga_origin origin;
    int duplicate;          /* 1: equals an earlier genome even after the retries */
} ast_ga_child;

/* Generation 0: `structured` seeds then random genomes, each repaired into band and made
 * distinct from `seen` (which receives them). out: p->population entries. */
int ast_ga_initial(const ast_ga_params *p, int steps, ast_ga_band band, ast_rng *r,
                   ast_ga_seen *seen, ast_ga_child *out);
/* Children of generation gen (1..generations) from pool genomes (best first), each made
 * distinct from `seen` (up to AST_GA_RETRIES attempts), added to it. out: p->children. */
#define AST_GA_RETRIES 20
int ast_ga_children(const ast_ga_params *p, int steps, ast_ga_band band, int gen, ast_rng *r,
                    const uint8_t *const *pool, int n_pool, ast_ga_seen *seen,
                    ast_ga_child *out);

/* ---- built-in self-test ------------------------------------------------------------------- */
/* Fault bits: each breaks one production operator in a small way while the self-test runs. */
enum {
    AST_GA_FAULT_RANDOM = 1u << 0,
    AST_GA_FAULT_UNIFORM = 1u << 1,
    AST_GA_FAULT_BLOCK = 1u << 2,
    AST_GA_FAULT_MUTATE = 1u << 3,
    AST_GA_FAULT_REPAIR = 1u << 4,
    AST_GA_FAULT_SELECT = 1u << 5,
    AST_GA_FAULT_ALL = (1u << 6) - 1
};
/* Runs every operator against its naive twin on random tiny problems (6 genes x 5 levels, and
 * sizes across 64-gene word boundaries) and checks the invariants (step 0 fixed, band reached
 * with the fewest moves, children genes from their parents, ranking order). With fault != 0 the
 * named operators are broken for the duration: the test must then fail. Returns 0 when every
 * check passed, -1 with the first failure in the error message; *checks (may be NULL) counts
 * the checks run. */
int ast_ga_self_test(unsigned fault, uint64_t seed, int *checks);

#ifdef __cplusplus
}
#endif

#endif
