/* forward_cpu.c — the fp32 CPU backend: the Wan2.1 forward exactly as wan21.md §1, dense or
 * token-wise (method.md §1). It is the reference the CUDA backend (kernels/forward_cuda.cu)
 * mirrors step by step, and the engine the CPU search runs.
 *
 * One block, token-wise (K of N tokens selected; dense = all N, identity selection):
 *   score + top-K          sel[K]   from lse, Δ (sketch of x_in vs the last computed input), skip
 *   h   = LN1(x)(1+E1)+E0   [N, D]   all tokens: K/V are projected for every token
 *   k,v = h·Wk,v            [N, D]   RMSNorm + RoPE on k
 *   q   = h[sel]·Wq         [K, D]   RMSNorm + RoPE (positions of the selected tokens)
 *   o   = attn(q, k, v)     [K, D]   + per-row LSE
 *   xs  = x[sel] + (o·Wo)·E2; xs += cross(LN3(xs)); xs += FFN(LN2(xs)(1+E4)+E3)·E5
 *   x[sel] = xs; x[other] = x[other] + cache (residual mode) or cache (output mode)
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "common.h"
#include "cpu_ops.h"
#include "tokenwise.h"

typedef struct {
    float *cache;     /* [N, D] block output (or residual) the last time each token was computed */
    float *lse;       /* [N] mean over heads of the self-attention LSE, last computed */
    float *refsketch; /* [N, r] sketch of the block input, last computed */
    int32_t *skip;    /* [N] steps in a row not computed */
} cpu_block_state;

typedef struct {
    float *cross_k;         /* [layers][text_len, D] RMSNorm'd cross-attention keys */
    float *cross_v;         /* [layers][text_len, D] */
    int has_context;
    int has_state;          /* caches valid (a dense forward ran since reset) */
    cpu_block_state *blocks;/* [layers] when token-wise */
} cpu_branch;

typedef struct {
    const ast_model *m;
    ast_engine_params p;
    int N, gf, gh, gw, D, H, hd, Fd, L, P;  /* tokens of this rank, grid, width, heads, head
                                               dim, ffn, text_len, patch vector length */
    /* sequence parallelism (comm.h): this rank computes tokens [n0, n0 + N) of Ntot */
    ast_shard sh;            /* size 1: the whole sequence */
    int n0, Ntot;
    int threads;             /* OpenMP threads of this rank */
    int allgather;           /* P does not divide the heads: K/V all-gather instead of Ulysses */
    ast_shard_plan plan;     /* every rank's tokens and, this forward, computed rows */
    ast_shard_plan seg;      /* this rank's tokens as selection segments (select_segments on one
                                rank, else 1) and, this forward, each one's budget */
    float *xq_send, *xq_recv, *xkv_send, *xkv_recv, *xo_all, *xo_recv, *lse_all; /* exchange */
    int r;                   /* sketch width */
    ast_rope_table rope;
    float *proj;             /* [r, D] sketch projection (tokenwise.h) */
    cpu_branch *br;
    /* scratch, sized for N tokens */
    float *x;                /* [N, D] residual stream */
    float *xin;              /* [N, D] block input (for the residual cache) */
    float *h;                /* [N, max(D, P_in)] normalized input / patches */
    float *kv;               /* [N, 2D] keys | values */
    float *q;                /* [N, D] */
    float *o;                /* [N, D] attention output */
    float *xs;               /* [N, D] selected rows of x */
    float *tmp;              /* [N, D] */
    float *ffn;              /* [N, Fd] */
    float *lse_h;            /* [H, N] */
    float *sk;               /* [N, r] sketch of the current block input */
    float *score;            /* [N] */
    int32_t *sel, *work;     /* [N] */
    float *e, *e0, *mod;     /* [D], [6D], [6D] */
    float *headout;          /* [N, out_dim * patch] */
    char name[64];
} cpu_backend;

static void free_branch(cpu_backend *b, cpu_branch *br) {
    ast_free_aligned(br->cross_k);
    ast_free_aligned(br->cross_v);
    if (br->blocks) {
        for (int l = 0; l < b->m->cfg.num_layers; l++) {
            ast_free_aligned(br->blocks[l].cache);
            ast_free_aligned(br->blocks[l].lse);
            ast_free_aligned(br->blocks[l].refsketch);
            ast_free_aligned(br->blocks[l].skip);
        }
        free(br->blocks);
    }
}

static void cpu_destroy(void *impl) {
    cpu_backend *b = impl;
    if (!b) return;
    if (b->br)
        for (int i = 0; i < b->p.n_branches; i++) free_branch(b, &b->br[i]);
    free(b->br);
    ast_rope_table_free(&b->rope);
    float *bufs[] = {b->proj, b->x, b->xin, b->h, b->kv, b->q, b->o, b->xs, b->tmp, b->ffn,
                     b->lse_h, b->sk, b->score, b->e, b->e0, b->mod, b->headout,
                     b->xq_send, b->xq_recv, b->xkv_send, b->xkv_recv, b->xo_all, b->xo_recv,
                     b->lse_all};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ast_free_aligned(bufs[i]);
    ast_free_aligned(b->sel);
    ast_free_aligned(b->work);
    free(b);
}

static const char *cpu_device_name(void *impl) { return ((cpu_backend *)impl)->name; }

/* ---- embeddings -------------------------------------------------------------------------- */

/* x [C, F, Hh, Ww] -> patches [N, C*pt*ph*pw] in Conv3d weight order (c, kt, kh, kw), for this
 * rank's tokens [n0, n0 + N) only (row r = token n0 + r). */
static void patchify(const cpu_backend *b, const float *x, float *patches) {
    const ast_wan_config *c = &b->m->cfg;
    int pt = c->patch[0], ph = c->patch[1], pw = c->patch[2], C = c->in_dim;
    int F = b->p.frames, Hh = b->p.height, Ww = b->p.width;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < b->N; r++) {
        int n = b->n0 + r;
        int f = n / (b->gh * b->gw), i = (n / b->gw) % b->gh, j = n % b->gw;
        float *dst = patches + (int64_t)r * b->P;
        int k = 0;
        for (int ch = 0; ch < C; ch++)
            for (int at = 0; at < pt; at++)
                for (int a = 0; a < ph; a++)
                    for (int bb = 0; bb < pw; bb++)
                        dst[k++] = x[(((int64_t)ch * F + f * pt + at) * Hh + i * ph + a) * Ww +
                                     j * pw + bb];
    }
}

/* Head output rows y [count, pt·ph·pw·out_dim] of tokens [n0, n0 + count) -> their pixels of
 * out [out_dim, F, H, W] (wan21.md §1.5); the other pixels are left as they are. */
static void unpatchify_rows(const ast_wan_config *c, int F, int Hh, int Ww, int64_t n0,
                         int64_t count, const float *y, float *out) {
    int pt = c->patch[0], ph = c->patch[1], pw = c->patch[2], C = c->out_dim;
    int gh = Hh / ph, gw = Ww / pw, Py = pt * ph * pw * C;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < count; r++) {
        int64_t n = n0 + r;
        int64_t f = n / ((int64_t)gh * gw), i = (n / gw) % gh, j = n % gw;
        const float *src = y + r * Py;
        for (int at = 0; at < pt; at++)
            for (int a = 0; a < ph; a++)
                for (int bb = 0; bb < pw; bb++)
                    for (int ch = 0; ch < C; ch++)
                        out[(((int64_t)ch * F + f * pt + at) * Hh + i * ph + a) * Ww + j * pw +
                            bb] = src[((at * ph + a) * pw + bb) * C + ch];
    }
}

/* e = time_embedding(sinusoid(t)) [D]; e0 = time_projection(SiLU(e)) [6D]. */
static void time_embed(cpu_backend *b, float t) {
    const ast_wan_config *c = &b->m->cfg;
    const ast_wan_weights *w = &b->m->w;
    int half = c->freq_dim / 2;
    float *feat = b->tmp; /* [freq_dim] */
    for (int k = 0; k < half; k++) {
        double phi = (double)t * pow(10000.0, -(double)k / half); /* float64, as the reference */
        feat[k] = (float)cos(phi);
        feat[half + k] = (float)sin(phi);
    }
    float *hid = b->tmp + c->freq_dim;
    ast_cpu_gemm(1, c->dim, c->freq_dim, feat, c->freq_dim, w->time0_w.data, w->time0_w.dtype,
                 c->freq_dim, w->time0_b, hid, c->dim, AST_EPI_NONE, 0);
    ast_cpu_silu(hid, c->dim);
    ast_cpu_gemm(1, c->dim, c->dim, hid, c->dim, w->time2_w.data, w->time2_w.dtype, c->dim,
                 w->time2_b, b->e, c->dim, AST_EPI_NONE, 0);
    memcpy(hid, b->e, sizeof(float) * c->dim);
    ast_cpu_silu(hid, c->dim);
    ast_cpu_gemm(1, 6 * c->dim, c->dim, hid, c->dim, w->tproj_w.data, w->tproj_w.dtype, c->dim,
                 w->tproj_b, b->e0, 6 * c->dim, AST_EPI_NONE, 0);
}

/* y[M, D] = x[M, K]·Wᵀ + bias for an ast_tensor weight [N, K]. */
static void linear(int M, const float *x, int ldx, const ast_tensor *W, const float *bias,
                   float *y, int ldy, ast_epilogue epi) {
    int N = (int)W->shape[0];
    int K = (int)(ast_tensor_numel(W) / W->shape[0]);
    ast_cpu_gemm(M, N, K, x, ldx, W->data, W->dtype, K, bias, y, ldy, epi, 0);
}

static int cpu_set_context(void *impl, int branch, const float *ctx) {
    cpu_backend *b = impl;
    const ast_wan_config *c = &b->m->cfg;
    const ast_wan_weights *w = &b->m->w;
    cpu_branch *br = &b->br[branch];
    int L = c->text_len, D = c->dim;
    float *hid = ast_alloc_aligned(sizeof(float) * L * D, "text embedding");
    float *emb = ast_alloc_aligned(sizeof(float) * L * D, "text embedding");
    if (!hid || !emb) {
        ast_free_aligned(hid);
        ast_free_aligned(emb);
        return -1;
    }
    /* text_embedding: Linear -> GELU(tanh) -> Linear; pad rows included (they are attended) */
    linear(L, ctx, c->text_dim, &w->text0_w, w->text0_b, hid, D, AST_EPI_GELU_TANH);
    linear(L, hid, D, &w->text2_w, w->text2_b, emb, D, AST_EPI_NONE);
    for (int l = 0; l < c->num_layers; l++) {
        const ast_wan_attn *ca = &w->blocks[l].cross_attn;
        float *k = br->cross_k + (int64_t)l * L * D, *v = br->cross_v + (int64_t)l * L * D;
        linear(L, emb, D, &ca->k_w, ca->k_b, k, D, AST_EPI_NONE);
        ast_cpu_rmsnorm(L, D, k, D, ca->norm_k, c->eps);
        linear(L, emb, D, &ca->v_w, ca->v_b, v, D, AST_EPI_NONE);
    }
    ast_free_aligned(hid);
    ast_free_aligned(emb);
    br->has_context = 1;
    return 0;
}

static void cpu_reset(void *impl) {
    cpu_backend *b = impl;
    for (int i = 0; i < b->p.n_branches; i++) b->br[i].has_state = 0;
}

/* Gathers rows sel[0..K) of src [N, ld] into dst [K, D]. */
static void gather_rows(int K, int D, const int32_t *sel, const float *src, int lds, float *dst,
                        int ldd) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < K; r++)
        memcpy(dst + (int64_t)r * ldd, src + (int64_t)sel[r] * lds, sizeof(float) * D);
}

/* Self-attention of this rank's K queries over all Ntot tokens, P > 1 (Ulysses, comm.h):
 * queries and keys/values go from token-sharded [rows, all heads] to head-sharded [all rows,
 * H/P heads] (rank g gets heads [g·Hg, (g+1)·Hg)), each rank runs attention for its heads, and
 * the outputs with their per-head LSE come back to the ranks that own the rows. b->q [K, D]
 * in, b->o [K, D] and b->lse_h [H, K] out, exactly as the 1-rank call writes them. */
static int sp_attention(cpu_backend *b, int K, const float *kk, const float *vv, float scale) {
    const int P = b->sh.size, me = b->sh.rank, D = b->D, hd = b->hd, Hg = b->H / P;
    const int W = Hg * hd, Wr = W + Hg; /* a returned row: Hg heads of output, then Hg LSEs */
    const int64_t N = b->N;
    const ast_shard_plan *pl = &b->plan;
    const int64_t Ktot = pl->ktot;
    int64_t sc[AST_MAX_RANKS] = {0}, sd[AST_MAX_RANKS] = {0}, rc[AST_MAX_RANKS] = {0},
            rd[AST_MAX_RANKS] = {0};
    /* queries: to rank g its heads' columns of my K rows */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < (int64_t)P * K; r++) {
        int g = (int)(r / K);
        memcpy(b->xq_send + r * W, b->q + (r % K) * D + (int64_t)g * W, sizeof(float) * W);
    }
    ast_exchange_counts(P, K, pl->k, pl->kfirst, W, sc, sd, rc, rd);
    if (ast_comm_alltoallv(b->sh.comm, me, b->xq_send, sc, sd, b->xq_recv, rc, rd, 4, NULL))
        return -1;
    /* keys | values: to rank g its heads' columns of my N rows, as [row][k W | v W] */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < (int64_t)P * N; r++) {
        int g = (int)(r / N);
        float *dst = b->xkv_send + r * 2 * W;
        memcpy(dst, kk + (r % N) * 2 * D + (int64_t)g * W, sizeof(float) * W);
        memcpy(dst + W, vv + (r % N) * 2 * D + (int64_t)g * W, sizeof(float) * W);
    }
    ast_exchange_counts(P, N, pl->n, pl->first, 2 * W, sc, sd, rc, rd);
    if (ast_comm_alltoallv(b->sh.comm, me, b->xkv_send, sc, sd, b->xkv_recv, rc, rd, 4, NULL))
        return -1;
    ast_cpu_attention((int)Ktot, b->Ntot, Hg, hd, b->xq_recv, W, b->xkv_recv, 2 * W,
                      b->xkv_recv + W, 2 * W, b->xo_all, Wr, b->lse_all, scale);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < Ktot; r++)
        for (int h = 0; h < Hg; h++) b->xo_all[r * Wr + W + h] = b->lse_all[h * Ktot + r];
    /* back: rows of rank i to rank i; from rank g, my K rows of its heads */
    ast_exchange_counts(P, K, pl->k, pl->kfirst, Wr, rc, rd, sc, sd); /* the way back */
    if (ast_comm_alltoallv(b->sh.comm, me, b->xo_all, sc, sd, b->xo_recv, rc, rd, 4, NULL))
        return -1;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < (int64_t)P * K; r++) {
        int g = (int)(r / K);
        int64_t row = r % K;
        const float *src = b->xo_recv + r * Wr;
        memcpy(b->o + row * D + (int64_t)g * W, src, sizeof(float) * W);
        for (int h = 0; h < Hg; h++) b->lse_h[(int64_t)(g * Hg + h) * K + row] = src[W + h];
    }
    return 0;
}

/* The same, when P does not divide the heads: every rank gathers all keys/values ([k | v] rows
 * of b->kv are contiguous, so they are sent as they are) and attends its own queries over them
 * for every head; no way back is needed. More traffic than Ulysses for large P, any P works. */
static int sp_attention_allgather(cpu_backend *b, int K, float scale) {
    const int P = b->sh.size, D = b->D;
    int64_t sc[AST_MAX_RANKS] = {0}, sd[AST_MAX_RANKS] = {0}, rc[AST_MAX_RANKS] = {0},
            rd[AST_MAX_RANKS] = {0};
    ast_allgather_counts(P, b->N, b->plan.n, b->plan.first, 2 * D, sc, sd, rc, rd);
    if (ast_comm_alltoallv(b->sh.comm, b->sh.rank, b->kv, sc, sd, b->xkv_recv, rc, rd, 4, NULL))
        return -1;
    ast_cpu_attention(K, b->Ntot, b->H, b->hd, b->q, D, b->xkv_recv, 2 * D, b->xkv_recv + D,
                      2 * D, b->o, D, b->lse_h, scale);
    return 0;
}

/* Token n's state once computed as row r of `rows` with block output `out` from input `in`:
 * its cache (out - in for the residual cache, else out), skip = 0, and, when Δ enters the score,
 * the mean over heads of its self-attention LSE (lse_h [H, rows], summed in head order) and its
 * input sketch, the reference of its next Δ. */
static void commit_row(const cpu_backend *b, cpu_block_state *st, int64_t n, int64_t r,
                       int64_t rows, const float *out, const float *in) {
    const int D = b->D, residual = b->p.tw.cache == AST_CACHE_RESIDUAL;
    float *cache = st->cache + n * D;
    for (int i = 0; i < D; i++) cache[i] = residual ? out[i] - in[i] : out[i];
    st->skip[n] = 0;
    if (b->p.tw.w_alpha == 0) return; /* the LSE and the sketch enter only Δ's score */
    float s = 0;
    for (int h = 0; h < b->H; h++) s += b->lse_h[(int64_t)h * rows + r];
    st->lse[n] = s / b->H;
    memcpy(st->refsketch + n * b->r, b->sk + n * b->r, sizeof(float) * b->r);
}

static int block_forward(cpu_backend *b, cpu_branch *br, int l, int K) {
    const ast_wan_config *c = &b->m->cfg;
    const ast_wan_block *w = &b->m->w.blocks[l];
    const int N = b->N, D = b->D, H = b->H, hd = b->hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *E = b->mod; /* E0..E5 = modulation + e0 */
    for (int i = 0; i < 6 * D; i++) E[i] = w->modulation[i] + b->e0[i];
    const float *E0 = E, *E1 = E + D, *E2 = E + 2 * D, *E3 = E + 3 * D, *E4 = E + 4 * D,
                *E5 = E + 5 * D;
    cpu_block_state *st = br->blocks ? &br->blocks[l] : NULL;
    int32_t *sel = b->sel;
    int gather = K < N; /* K == N: identity selection, rows used in place */

    /* 1. selection (the sketch only when Δ enters the score: w_α != 0) */
    const int use_delta = b->p.tw.w_alpha != 0;
    if (st && use_delta) {
        ast_cpu_gemm(N, b->r, D, b->x, D, b->proj, AST_DT_F32, D, NULL, b->sk, b->r,
                     AST_EPI_NONE, 0);
    }
    if (gather) {
        ast_tw_scores_plan(&b->seg, b->r, b->sk, st->refsketch, st->lse, st->skip, &b->p.tw,
                           b->score);
        ast_tw_topk_plan(&b->seg, b->score, sel, b->work);
    }
    if (st) memcpy(b->xin, b->x, sizeof(float) * (size_t)N * D);

    /* 2. self-attention: K/V for all tokens, Q for the selected */
    ast_cpu_layernorm(N, D, b->x, D, b->h, D, NULL, NULL, E1, E0, c->eps);
    float *kk = b->kv, *vv = b->kv + D;
    linear(N, b->h, D, &w->self_attn.k_w, w->self_attn.k_b, kk, 2 * D, AST_EPI_NONE);
    linear(N, b->h, D, &w->self_attn.v_w, w->self_attn.v_b, vv, 2 * D, AST_EPI_NONE);
    ast_cpu_rmsnorm(N, D, kk, 2 * D, w->self_attn.norm_k, c->eps);
    ast_cpu_rope(N, H, kk, 2 * D, NULL, b->n0, b->gh, b->gw, &b->rope);
    const float *hq = b->h;
    if (gather) {
        gather_rows(K, D, sel, b->h, D, b->tmp, D);
        hq = b->tmp;
    }
    linear(K, hq, D, &w->self_attn.q_w, w->self_attn.q_b, b->q, D, AST_EPI_NONE);
    ast_cpu_rmsnorm(K, D, b->q, D, w->self_attn.norm_q, c->eps);
    ast_cpu_rope(K, H, b->q, D, gather ? sel : NULL, b->n0, b->gh, b->gw, &b->rope);
    if (b->sh.size > 1) {
        if (b->allgather ? sp_attention_allgather(b, K, scale)
                         : sp_attention(b, K, kk, vv, scale))
            return -1;
    } else {
        ast_cpu_attention(K, N, H, hd, b->q, D, kk, 2 * D, vv, 2 * D, b->o, D, b->lse_h, scale);
    }
    /* xs = x[sel] + (o·Wo + bo)·E2 */
    float *xs = b->x;
    if (gather) {
        gather_rows(K, D, sel, b->x, D, b->xs, D);
        xs = b->xs;
    }
    linear(K, b->o, D, &w->self_attn.o_w, w->self_attn.o_b, b->tmp, D, AST_EPI_NONE);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < K; r++)
        for (int i = 0; i < D; i++) xs[(int64_t)r * D + i] += b->tmp[(int64_t)r * D + i] * E2[i];

    /* 3. cross-attention (no modulation, no gate) */
    ast_cpu_layernorm(K, D, xs, D, b->h, D, w->norm3_w, w->norm3_b, NULL, NULL, c->eps);
    linear(K, b->h, D, &w->cross_attn.q_w, w->cross_attn.q_b, b->q, D, AST_EPI_NONE);
    ast_cpu_rmsnorm(K, D, b->q, D, w->cross_attn.norm_q, c->eps);
    const float *ck = br->cross_k + (int64_t)l * b->L * D, *cv = br->cross_v + (int64_t)l * b->L * D;
    ast_cpu_attention(K, b->L, H, hd, b->q, D, ck, D, cv, D, b->o, D, NULL, scale);
    linear(K, b->o, D, &w->cross_attn.o_w, w->cross_attn.o_b, b->tmp, D, AST_EPI_NONE);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < (int64_t)K * D; i++) xs[i] += b->tmp[i];

    /* 4. FFN */
    ast_cpu_layernorm(K, D, xs, D, b->h, D, NULL, NULL, E4, E3, c->eps);
    linear(K, b->h, D, &w->ffn0_w, w->ffn0_b, b->ffn, b->Fd, AST_EPI_GELU_TANH);
    linear(K, b->ffn, b->Fd, &w->ffn2_w, w->ffn2_b, b->tmp, D, AST_EPI_NONE);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < K; r++)
        for (int i = 0; i < D; i++) xs[(int64_t)r * D + i] += b->tmp[(int64_t)r * D + i] * E5[i];

    if (!st) return 0; /* dense-only engine: x was updated in place */

    /* 5. scatter + state update */
    const int residual = b->p.tw.cache == AST_CACHE_RESIDUAL;
    if (!gather) { /* every token computed (dense step or theta = 1) */
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            commit_row(b, st, n, n, N, b->x + (int64_t)n * D, b->xin + (int64_t)n * D);
        return 0;
    }
    /* unselected tokens: reuse the cache (work[] marks the selected) */
    int32_t *mark = b->work;
    memset(mark, 0, sizeof(int32_t) * N);
    for (int r = 0; r < K; r++) mark[sel[r]] = 1;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (mark[n]) continue;
        float *x = b->x + (int64_t)n * D;
        const float *cache = st->cache + (int64_t)n * D;
        if (residual)
            for (int i = 0; i < D; i++) x[i] += cache[i];
        else
            memcpy(x, cache, sizeof(float) * D);
        st->skip[n]++;
    }
#pragma omp parallel for schedule(static)
    for (int r = 0; r < K; r++) {
        const int n = sel[r];
        const float *out = xs + (int64_t)r * D;
        commit_row(b, st, n, r, K, out, b->xin + (int64_t)n * D);
        memcpy(b->x + (int64_t)n * D, out, sizeof(float) * D);
    }
    return 0;
}

static int cpu_forward_rank(cpu_backend *b, int branch, const float *xin, float t, float theta,
                            int dense, float *out, ast_forward_info *info);

/* A rank of several runs its OpenMP regions with its share of the threads; the caller's thread
 * (rank 0 runs on it) gets its own setting back. */
static int cpu_forward(void *impl, int branch, const float *xin, float t, float theta, int dense,
                       float *out, ast_forward_info *info) {
    cpu_backend *b = impl;
    if (b->sh.size == 1) return cpu_forward_rank(b, branch, xin, t, theta, dense, out, info);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(b->threads);
    int rc = cpu_forward_rank(b, branch, xin, t, theta, dense, out, info);
    omp_set_num_threads(saved);
    return rc;
}

static int cpu_forward_rank(cpu_backend *b, int branch, const float *xin, float t, float theta,
                            int dense, float *out, ast_forward_info *info) {
    const ast_wan_config *c = &b->m->cfg;
    const ast_wan_weights *w = &b->m->w;
    cpu_branch *br = &b->br[branch];
    const int N = b->N, D = b->D;
    if (!br->has_context)
        return ast_fail("internal: forward on CFG branch %d before its context was set", branch);
    /* this forward's rows: of every rank (the same rule on each), and of this rank's segments */
    const int tw = br->blocks && !dense && br->has_state;
    ast_shard_plan_rows(&b->plan, tw, theta);
    const int K = (int)ast_shard_plan_rows(&b->seg, tw, theta);

    /* patch embedding: x = patches·Wpᵀ + b */
    patchify(b, xin, b->h);
    ast_cpu_gemm(N, D, b->P, b->h, b->P, w->patch_w.data, w->patch_w.dtype, b->P, w->patch_b, b->x,
                 D, AST_EPI_NONE, 0);
    time_embed(b, t);
    for (int l = 0; l < c->num_layers; l++)
        if (block_forward(b, br, l, K)) {
            ast_error_prefix("block %d of %d", l, c->num_layers);
            return -1;
        }
    if (br->blocks) br->has_state = 1;

    /* head: LN(x)(1 + H1) + H0 with H = head.modulation + e; then Linear; unpatchify */
    float *hmod = b->mod;
    for (int i = 0; i < 2 * D; i++) hmod[i] = w->head_mod[i] + b->e[i % D];
    ast_cpu_layernorm(N, D, b->x, D, b->h, D, NULL, NULL, hmod + D, hmod, c->eps);
    linear(N, b->h, D, &w->head_w, w->head_b, b->headout, (int)w->head_w.shape[0], AST_EPI_NONE);
    unpatchify_rows(c, b->p.frames, b->p.height, b->p.width, b->n0, N, b->headout, out);
    if (info) {
        info->tokens = N;
        info->computed = K;
    }
    return 0;
}

static const ast_backend_vtable cpu_vtable = {cpu_set_context, cpu_reset, cpu_forward,
                                              cpu_destroy, cpu_device_name};

int ast_cpu_backend_create(const ast_model *m, const ast_engine_params *p, const ast_shard *sh,
                           void **impl, const ast_backend_vtable **vt) {
    const ast_wan_config *c = &m->cfg;
    cpu_backend *b = ast_calloc(1, sizeof *b, "the CPU backend");
    if (!b) return -1;
    b->m = m;
    b->p = *p;
    b->gf = p->frames / c->patch[0];
    b->gh = p->height / c->patch[1];
    b->gw = p->width / c->patch[2];
    b->Ntot = b->gf * b->gh * b->gw;
    ast_rank_setup(sh, b->Ntot, c->num_heads, &b->sh, &b->plan, &b->allgather);
    b->n0 = (int)b->plan.first[b->sh.rank];
    b->N = (int)b->plan.n[b->sh.rank];
    ast_shard_plan_init(&b->seg, b->N,
                        b->sh.size == 1 && p->tw.select_segments > 1 ? p->tw.select_segments : 1);
    b->threads = omp_get_max_threads() / b->sh.size;
    if (b->threads < 1) b->threads = 1;
    b->D = c->dim;
    b->H = c->num_heads;
    b->hd = c->head_dim;
    b->Fd = c->ffn_dim;
    b->L = c->text_len;
    b->P = c->in_dim * c->patch[0] * c->patch[1] * c->patch[2];
    b->r = p->tw.sketch_dim > 0 ? p->tw.sketch_dim : 32;
    snprintf(b->name, sizeof b->name, "cpu (%d threads)", b->threads);
    const int64_t N = b->N, D = b->D;
    int64_t hw = D > b->P ? D : b->P;
    int64_t tmpw = D > 2 * c->freq_dim ? D : 2 * c->freq_dim;
    int64_t Py = (int64_t)c->out_dim * c->patch[0] * c->patch[1] * c->patch[2];
    size_t f = sizeof(float);
    int ok = ast_rope_table_init(&b->rope, b->hd) == 0;
    ok = ok && (b->x = ast_alloc_aligned(f * N * D, "residual stream")) &&
         (b->h = ast_alloc_aligned(f * N * hw, "activations")) &&
         (b->kv = ast_alloc_aligned(f * N * 2 * D, "keys/values")) &&
         (b->q = ast_alloc_aligned(f * N * D, "queries")) &&
         (b->o = ast_alloc_aligned(f * N * D, "attention output")) &&
         (b->tmp = ast_alloc_aligned(f * (N > 1 ? N : 1) * tmpw, "activations")) &&
         (b->ffn = ast_alloc_aligned(f * N * b->Fd, "FFN activations")) &&
         (b->lse_h = ast_alloc_aligned(f * N * b->H, "LSE")) &&
         (b->e = ast_alloc_aligned(f * D, "time embedding")) &&
         (b->e0 = ast_alloc_aligned(f * 6 * D, "time projection")) &&
         (b->mod = ast_alloc_aligned(f * 6 * D, "modulation")) &&
         (b->headout = ast_alloc_aligned(f * N * Py, "head output")) &&
         (b->sel = ast_alloc_aligned(sizeof(int32_t) * N, "selection")) &&
         (b->work = ast_alloc_aligned(sizeof(int32_t) * N, "selection"));
    ok = ok && (b->br = ast_calloc((size_t)p->n_branches, sizeof *b->br, "CFG branches"));
    for (int i = 0; ok && i < p->n_branches; i++) {
        cpu_branch *br = &b->br[i];
        ok = (br->cross_k = ast_alloc_aligned(f * c->num_layers * b->L * D, "cross-attention keys")) &&
             (br->cross_v = ast_alloc_aligned(f * c->num_layers * b->L * D, "cross-attention values"));
        if (ok && p->tokenwise) {
            ok = (br->blocks = ast_calloc((size_t)c->num_layers, sizeof *br->blocks, "token-wise state")) != NULL;
            for (int l = 0; ok && l < c->num_layers; l++) {
                cpu_block_state *s = &br->blocks[l];
                ok = (s->cache = ast_alloc_aligned(f * N * D, "token cache")) &&
                     (s->lse = ast_alloc_aligned(f * N, "token LSE")) &&
                     (s->refsketch = ast_alloc_aligned(f * N * b->r, "token sketch")) &&
                     (s->skip = ast_alloc_aligned(sizeof(int32_t) * N, "skip counts"));
            }
        }
    }
    if (ok && p->tokenwise) {
        ok = (b->xin = ast_alloc_aligned(f * N * D, "block input")) &&
             (b->xs = ast_alloc_aligned(f * N * D, "selected rows")) &&
             (b->sk = ast_alloc_aligned(f * N * b->r, "sketch")) &&
             (b->score = ast_alloc_aligned(f * N, "scores")) &&
             (b->proj = ast_alloc_aligned(f * D * b->r, "sketch projection"));
        if (ok) ast_tw_projection((int)D, b->r, b->proj);
    }
    if (ok && b->allgather) { /* every rank's keys/values */
        ok = (b->xkv_recv = ast_alloc_aligned(f * b->Ntot * 2 * D, "sequence-parallel buffers")) != NULL;
    } else if (ok && b->sh.size > 1) { /* exchange buffers (sp_attention) */
        const int64_t W = (int64_t)D / b->sh.size, Hg = b->H / b->sh.size, Nt = b->Ntot;
        ok = (b->xq_send = ast_alloc_aligned(f * N * D, "sequence-parallel buffers")) &&
             (b->xq_recv = ast_alloc_aligned(f * Nt * W, "sequence-parallel buffers")) &&
             (b->xkv_send = ast_alloc_aligned(f * N * 2 * D, "sequence-parallel buffers")) &&
             (b->xkv_recv = ast_alloc_aligned(f * Nt * 2 * W, "sequence-parallel buffers")) &&
             (b->xo_all = ast_alloc_aligned(f * Nt * (W + Hg), "sequence-parallel buffers")) &&
             (b->xo_recv = ast_alloc_aligned(f * N * b->sh.size * (W + Hg),
                                             "sequence-parallel buffers")) &&
             (b->lse_all = ast_alloc_aligned(f * Nt * Hg, "sequence-parallel buffers"));
    }
    if (!ok) {
        cpu_destroy(b);
        return -1;
    }
    *impl = b;
    *vt = &cpu_vtable;
    return 0;
}
