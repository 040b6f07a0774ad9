/* tokenwise.h — the token-selection rule shared by the CPU and CUDA backends (method.md §1,
 * docs/tokenwise.md). The CPU backend calls these directly; the CUDA kernels implement the same
 * formulas and are tested against them.
 *
 *   Δ_i  = ‖P·x_in[i] − refsketch[i]‖ / √r          (P: fixed random [r, D] projection; an
 *                                                     unbiased estimate of ‖x_in[i] − ref[i]‖)
 *   S_i  = w_α · lse[i] · Δ_i / mean_j(Δ_j)  +  w_β · exp(min(skip[i], 20))
 *   selected = the K largest S_i, ties to the lower token index, returned in ascending order. */
#ifndef AST_TOKENWISE_H
#define AST_TOKENWISE_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "engine.h"

#define AST_SKIP_EXP_CAP 20

#include <math.h>

/* The skip term of the score, w_β·exp(min(skip, AST_SKIP_EXP_CAP)) (the CUDA backend tabulates
 * it for skip = 0..cap with this same function). */
static inline float ast_tw_skip_term(const ast_tokenwise_opts *o, int32_t skip) {
    const int s = skip < AST_SKIP_EXP_CAP ? (skip > 0 ? skip : 0) : AST_SKIP_EXP_CAP;
    return o->w_beta * expf((float)s);
}

/* The sketch projection P [r, D], row-major like a Linear weight (sketch s = x·Pᵀ, [N, r]),
 * entries N(0, 1) from a fixed seed: every backend and every run must use this same P (the CUDA
 * backend uploads it). Δ uses 1/√r so that E[Δ²] = ‖x − ref‖². */
void ast_tw_projection(int D, int r, float *P);

/* scores[i] from per-token arrays (all length n; sketch arrays [n, r]). With w_alpha = 0, Δ
 * does not enter the score (w_β·exp(skip) only) and sketch, refsketch and lse are not read (may
 * be NULL): the backends then skip the sketch and the LSE entirely. */
void ast_tw_scores(int n, int r, const float *sketch, const float *refsketch, const float *lse,
                   const int32_t *skip, const ast_tokenwise_opts *o, float *scores);

/* Top-K of scores (ties -> lower index), written to sel[0..k) in ascending token order.
 * work: n int32 of scratch. */
void ast_tw_topk(int n, int k, const float *scores, int32_t *sel, int32_t *work);

/* n tokens split into P contiguous segments (ast_shard_range: the ranks of sequence parallelism,
 * or select_segments on one rank) and, per forward, each segment's budget: the same rule
 * everywhere, so each rank knows what the others compute. */
typedef struct {
    int P;
    int64_t n[AST_MAX_RANKS], first[AST_MAX_RANKS];  /* segment i: tokens [first, first + n) */
    int64_t k[AST_MAX_RANKS], kfirst[AST_MAX_RANKS]; /* rows computed this forward, prefix sums */
    int64_t ktot;                                     /* sum of k: every segment's rows */
} ast_shard_plan;
void ast_shard_plan_init(ast_shard_plan *pl, int64_t ntot, int P);
/* k[i] = round(theta·n[i]) (at least 1) when tokenwise, else n[i]; returns their sum (ktot). */
int64_t ast_shard_plan_rows(ast_shard_plan *pl, int tokenwise, float theta);

/* Selection per segment of a plan (ast_tokenwise_opts.select_segments; a 1-segment plan is the
 * plain rule): ast_tw_scores on each segment by itself (the Δ mean is the segment's, as on its
 * own rank), then each segment's top-k[i] (after ast_shard_plan_rows); sel holds all of them in
 * ascending token order. */
void ast_tw_scores_plan(const ast_shard_plan *pl, int r, const float *sketch,
                        const float *refsketch, const float *lse, const int32_t *skip,
                        const ast_tokenwise_opts *o, float *scores);
void ast_tw_topk_plan(const ast_shard_plan *pl, const float *scores, int32_t *sel,
                      int32_t *work);

#ifdef __cplusplus
}
#endif

#endif
