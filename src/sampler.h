/* sampler.h — flow-matching sampling loop (wan21.md §3): schedule with shift, UniPC (order 2,
 * bh2, x0-prediction, as the Wan reference) or Euler, classifier-free guidance, seeded noise, and
 * a per-step token budget for the token-wise engine. */
#ifndef AST_SAMPLER_H
#define AST_SAMPLER_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "engine.h"

typedef enum { AST_SAMPLER_UNIPC = 0, AST_SAMPLER_EULER = 1 } ast_sampler_kind;

typedef struct {
    ast_sampler_kind kind;
    int steps;        /* N denoising steps (Wan default 50) */
    float shift;      /* σ' = s·σ / (1 + (s−1)·σ) (Wan t2v default 5.0) */
    float guidance;   /* CFG scale g: v = v_u + g·(v_c − v_u); g == 1 runs only the cond branch */
} ast_sampler_params;

/* σ'_0..σ'_{N-1}, σ_N = 0 as float32 (sigmas[N+1]) and the integer model timesteps t_i
 * (timesteps[N]) exactly as FlowUniPCMultistepScheduler.set_timesteps. */
void ast_schedule(int steps, float shift, float *sigmas, int64_t *timesteps);

/* Called after every step; return nonzero to stop (the generation then fails with
 * "interrupted"). */
typedef int (*ast_step_fn)(void *user, int step, int steps, double elapsed_sec);

typedef struct {
    double seconds;          /* wall time of the whole loop */
    double forward_seconds;  /* time inside ast_engine_forward */
    int forwards;            /* number of engine forwards */
    int64_t tokens_computed; /* sum over forwards of K (tokens computed per block) */
} ast_generate_stats;

/* Runs the loop. The engine must have its contexts set (branch 0 = cond, branch 1 = uncond,
 * the latter only when guidance != 1). budgets: [steps] θ per step (NULL = dense); budgets[0]
 * is forced to 1. noise: initial latent [in_dim, F, H, W]; out: final latent (same shape). */
int ast_generate(ast_engine *e, const ast_sampler_params *p, const float *budgets,
                 const float *noise, float *out, ast_step_fn on_step, void *user,
                 ast_generate_stats *stats);

/* Seeded standard-normal noise: xoshiro256** (seeded by SplitMix64 from `seed`) feeding
 * Box–Muller pairs (docs/architecture.md "Noise"). Not PyTorch's generator: to reproduce a
 * PyTorch run exactly, pass its noise with --init-noise. */
void ast_noise(uint64_t seed, float *x, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
