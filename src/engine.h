/* engine.h — one denoiser forward on a backend (CPU or CUDA), dense or token-wise.
 *
 * An engine is made for one model, one latent shape and a number of CFG branches (2 with
 * guidance: 0 = conditional, 1 = unconditional). Each branch keeps its own context (text
 * embedding and the cross-attention K/V of every block, computed once per context) and its own
 * token-wise state (method.md §1): per block a cache [N, D], the last LSE of each token, a sketch
 * of the block input for Δ, and skip counts.
 *
 *   ast_engine_set_context(e, b, ctx, L)      once per prompt per branch
 *   ast_engine_reset(e)                       before each new generation
 *   ast_engine_forward(e, b, x, t, theta, out) every step, every branch
 *
 * theta = 1 computes every token (dense); the first forward of a branch after reset is always
 * dense (no cache yet). The CPU and CUDA backends implement the same function (tests hold them
 * together); see docs/tokenwise.md for the selection rule. */
#ifndef AST_ENGINE_H
#define AST_ENGINE_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "comm.h"
#include "wan.h"

typedef enum { AST_BACKEND_CPU = 0, AST_BACKEND_CUDA = 1 } ast_backend_kind;

typedef enum {
    AST_CACHE_RESIDUAL = 0, /* cache = block output - block input; reuse = current input + cache */
    AST_CACHE_OUTPUT = 1,   /* cache = block output; reuse = cache */
} ast_cache_mode;

typedef struct {
    float w_alpha;          /* weight of LSE·Δ (paper: 1.0) */
    float w_beta;           /* weight of exp(skip) (paper: 0.5) */
    ast_cache_mode cache;   /* what an unselected token reuses */
    int delta_normalize;    /* 1: Δ divided by its mean over tokens before scoring */
    int sketch_dim;         /* width of the random projection used to estimate Δ = ‖x - ref‖ */
    int select_segments;    /* 0/1: one top-K over all tokens; S > 1: the tokens split into S
                               contiguous segments (ast_shard_range), each with its own budget
                               round(theta·n_s) and top-K — what S-rank sequence parallelism
                               does; a 1-rank engine with S = P selects exactly like P ranks */
} ast_tokenwise_opts;

void ast_tokenwise_opts_default(ast_tokenwise_opts *o);

typedef struct {
    ast_backend_kind backend;
    int device;              /* CUDA device ordinal (backend CUDA, n_ranks <= 1) */
    int n_ranks;             /* 0/1: one device; P > 1: sequence parallelism over P ranks
                                (docs/multigpu.md): CUDA devices devices[0..P) through NCCL, or
                                P threads of the CPU backend (rank 0 on the caller's thread,
                                ranks 1..P-1 on threads the engine starts and joins when freed).
                                Any P <= AST_MAX_RANKS: when P does not divide num_heads the
                                attention gathers K/V instead of the Ulysses all-to-all. */
    int devices[AST_MAX_RANKS];
    int frames, height, width; /* latent F, H, W (divisible by the patch) */
    int n_branches;          /* 1 (no CFG) or 2 */
    int tokenwise;           /* 0: dense-only engine (no per-block state, theta must be 1);
                                1: keeps the token-wise state so theta < 1 can be used */
    ast_tokenwise_opts tw;
} ast_engine_params;

typedef struct ast_engine ast_engine;

/* Per-forward counters, for benchmarks and the latency model. */
typedef struct {
    int tokens;              /* N */
    int computed;            /* K = tokens computed in each block this forward */
    double extra_state_bytes;/* token-wise state held by this engine (all blocks, branches) */
    double device_ms;        /* CUDA: the forward on the GPU, from the input there to the output
                                there (CUDA events on the rank's stream, the slowest rank's with
                                several; the host copies of the latent excluded, as a PyTorch
                                forward on GPU tensors is timed); 0 on the CPU backend */
} ast_forward_info;

/* An engine is used by one thread at a time: no call on it (free included) while another of its
 * calls runs. Different engines are independent. */
int ast_engine_create(const ast_model *m, const ast_engine_params *p, ast_engine **out);
void ast_engine_free(ast_engine *e);
/* ctx: [L, text_dim] fp32, L <= text_len (zero-padded to text_len inside, as Wan does). */
int ast_engine_set_context(ast_engine *e, int branch, const float *ctx, int L);
void ast_engine_reset(ast_engine *e);
/* x, out: [in_dim, F, H, W] / [out_dim, F, H, W] fp32 on the host. t: the model timestep
 * (0..1000, the integer Wan feeds). theta in [0, 1]. */
int ast_engine_forward(ast_engine *e, int branch, const float *x, float t, float theta,
                       float *out, ast_forward_info *info);
int ast_engine_tokens(const ast_engine *e);
const ast_model *ast_engine_model(const ast_engine *e);
const char *ast_engine_device_name(const ast_engine *e); /* "cpu (2 threads)", "NVIDIA H100 ..." */
int ast_engine_ranks(const ast_engine *e);              /* P of sequence parallelism (1: none) */

/* Validates a latent/context input: shape, divisibility by the patch, NaN/Inf. */
int ast_check_latent(const ast_model *m, const ast_tensor *x, const char *what);

/* Number of tokens computed for budget theta over n tokens: round(theta*n), at least 1. */
int ast_budget_tokens(float theta, int n);

#ifdef __cplusplus
}
#endif

#endif
