// forward_cuda.cu — the CUDA backend (src/backend.h): the Wan2.1 forward of src/forward_cpu.c,
// step for step and with the same token-wise logic, in bf16 with fp32 statistics and an fp32
// residual stream (wan21.md §1.6).
//
// One block, token-wise (K of N tokens; dense = all N, identity selection, no gather):
//   sk = x·Pᵀ                                  [N, r]   (token-wise engines with w_α != 0)
//   scores, top-K -> sel [K] ascending, flags  [N]      (K < N only; with w_α = 0 the scores
//                                                        are the skip counts' and every block's
//                                                        top-K runs in one launch before block 0)
//   h    = LN1(x)(1 + E1) + E0                 [N, D]   bf16; the rows the previous block did
//                                                        not compute take their cache in this
//                                                        pass: x = x + cache (or cache),
//                                                        skip += 1 (with Δ: before the sketch)
//   qkv  = h·Wqkvᵀ                             [N, 3D]  dense: one GEMM on the fused [3D, D]
//          k|v = h·Wkvᵀ (all N rows), q = h[sel]·Wqᵀ (K rows) into the same [N, 3D] buffer
//   RMSNorm + RoPE on k (all rows) and q (rows carry their token index)
//   o    = attn(q, k, v), lse [H, K]           [K, D]
//   xs   = x[sel] + (o·Woᵀ + bo)·E2            [K, D]   fp32 (in place on x for dense-only engines)
//   xs  += cross(LN3(xs))                       the o-projection accumulates into xs (beta = 1)
//   xs  += (GELU(LN2(xs)(1 + E4) + E3 ·W0ᵀ)·W2ᵀ)·E5   (token-wise: fused into the commit)
//   commit: cache, x[sel] = xs, lse, sketch, skip = 0
// After the last block its other rows take their cache on their own pass, before the head.
//
// Memory: the weights once as bf16 (time embedding fp32, as the reference runs it), every
// scratch buffer sized for N at create, per branch the cross-attention K/V of every block and
// the token-wise state (bf16 cache [N, D] per block). Nothing is allocated and nothing waits for
// the host inside a forward except the final copy of the output. A forward's device work is
// captured into a CUDA graph per (branch, every rank's K) the second time that key is seen (the
// first run is eager: it fills the GEMM shape cache) and replayed after; ASTRAEA_CUDA_GRAPHS=0
// turns graphs off.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "cuda_check.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/tokenwise.h"
#include "phase_timer.h"

extern "C" {
#include "backend.h"
#include "comm.h"
#include "cpu_ops.h"       // ast_rope_table_init: the table both backends use
#include "src/tokenwise.h" // ast_tw_projection: the sketch projection both backends use
}

// ---- device count -----------------------------------------------------------------------------

extern "C" int ast_cuda_device_count(char *reason, size_t reason_len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        if (reason_len)
            snprintf(reason, reason_len, "no CUDA device: cudaGetDeviceCount returned %s (%s)",
                     e != cudaSuccess ? cudaGetErrorName(e) : "0 devices",
                     e != cudaSuccess ? cudaGetErrorString(e) : "no GPU visible");
        cudaGetLastError(); // leave no error behind for the next CUDA call
        return 0;
    }
    if (reason_len) reason[0] = 0;
    return n;
}

// ---- state ------------------------------------------------------------------------------------

typedef __nv_bfloat16 bf16_t;

typedef struct {
    ast_bf16 *qkv_w;          // self_attn.{q,k,v}.weight stacked: [3D, D] (rows q | k | v)
    ast_bf16 *qkv_b;          // [3D] bf16 (bf16 GEMM output)
    ast_bf16 *so_w, *so_b;    // self_attn.o [D, D], [D]
    float *norm_q, *norm_k;   // self_attn.norm_{q,k} [D]
    float *norm3_w, *norm3_b; // [D]
    ast_bf16 *cq_w, *cq_b;    // cross_attn.q [D, D], [D]
    ast_bf16 *ckv_w, *ckv_b;  // cross_attn.{k,v} stacked [2D, D], [2D]
    float *cnorm_q, *cnorm_k; // cross_attn.norm_{q,k} [D]
    ast_bf16 *co_w;           // cross_attn.o [D, D]
    float *co_b;              // [D] fp32: that GEMM accumulates into the fp32 stream
    ast_bf16 *f0_w, *f0_b;    // ffn.0 [Fd, D], [Fd]
    ast_bf16 *f2_w, *f2_b;    // ffn.2 [D, Fd], [D]
} dev_block;

typedef struct {
    ast_bf16 *patch_w;        // [D, P]
    float *patch_b;           // [D] fp32 (output: the fp32 residual stream)
    ast_bf16 *text0_w, *text0_b; // [D, text_dim], [D]
    ast_bf16 *text2_w, *text2_b; // [D, D], [D]
    float *time0_w, *time0_b; // [D, freq_dim], [D]   fp32: the time path runs in fp32
    float *time2_w, *time2_b; // [D, D], [D]
    float *tproj_w, *tproj_b; // [6D, D], [6D]
    float *mod_all;           // [layers, 6D] blocks.{i}.modulation
    float *head_mod;          // [2D]
    ast_bf16 *head_w;         // [Py, D]
    float *head_b;            // [Py] fp32 (fp32 output)
    float *rope;              // [1024, hd/2, 2] (cos, sin)
    float *proj;              // [r, D] sketch projection (token-wise engines)
    dev_block *blocks;        // [layers] (host array of device pointers)
} dev_weights;

typedef struct {
    ast_bf16 *cache;   // [N, D] what an unselected token reuses
    float *lse;        // [N] mean over heads of the self-attention LSE, last computed
    float *refsketch;  // [N, r] sketch of the block input, last computed
    int32_t *skip;     // [N] steps in a row not computed (in the branch's skip_all)
} dev_block_state;

typedef struct {
    ast_bf16 *cross_kv;     // [layers][text_len, 2D]: RMSNorm'd keys | values
    int has_context;
    int has_state;          // caches valid (a dense forward ran since reset)
    dev_block_state *blocks;// [layers] when token-wise
    int32_t *skip_all;      // [layers, N] every block's skip counts, one allocation
} dev_branch;

typedef struct {
    int branch;
    int64_t k[AST_MAX_RANKS]; // every rank's rows (plan.k): this rank's work and the exchange
                              // sizes the graph captured with NCCL
    cudaGraphExec_t exec;     // NULL: seen once, not captured yet
} graph_entry;

enum { MAX_GRAPHS = 64 };

typedef struct {
    const ast_model *m;
    ast_engine_params p;
    int dev;
    cudaStream_t s;
    cudaEvent_t ev_t0, ev_t1;  // timing: the forward between the input and output copies
    ast_gemm *gemm;
    ast_cuda_tw *tw;          // selection scratch (token-wise engines)
    int N, gf, gh, gw, D, H, hd, Fd, Lt, P, Py, r, layers;
    float eps, scale;
    // sequence parallelism (comm.h): this rank computes tokens [n0, n0 + N) of Ntot
    ast_shard sh;             // size 1: the whole sequence
    int n0, Ntot;
    int allgather;            // P does not divide the heads: K/V all-gather instead of Ulysses
    ast_shard_plan plan;      // every rank's tokens and, this forward, computed rows
    ast_bf16 *patches;        // [Ntot, P] the whole latent's patches (sharded only)
    ast_bf16 *xq_send, *xq_recv, *xkv_send, *xkv_recv, *xo_all, *xo_recv; // exchange (bf16)
    float *lse_all, *lse_send;                                             // exchange (fp32)

    void *warena;             // one allocation for every weight
    dev_weights w;
    dev_branch *br;

    // scratch, sized for N tokens
    float *lat_in, *lat_out;  // [in_dim, F, H, W], [out_dim, F, H, W]
    float *t;                 // [1] the step's timestep
    float *x;                 // [N, D] residual stream
    float *xs;                // [N, D] block output rows (token-wise engines)
    ast_bf16 *h;              // [N, max(D, P)] LN output / patches
    ast_bf16 *hq;             // [N, D] LN1's selected rows, compacted (token-wise)
    ast_bf16 *qkv;            // [N, 3D]
    ast_bf16 *o;              // [N, D] attention output
    ast_bf16 *tmp;            // [N, D] projection outputs
    ast_bf16 *ffn;            // [N, Fd]
    float *lse_h;             // [H, N]
    float *sk;                // [N, r]
    float *score;             // [N]
    int32_t *sel;             // [layers, N] each block's selection (K entries used)
    uint8_t *flags;           // [layers, N]
    float *headout;           // [N, Py]
    float *headout_all;       // [Ntot, Py] every rank's head rows, gathered on rank 0 (sharded)
    float *sinus, *thid, *e, *e0, *E, *hmod; // [freq], [D], [D], [6D], [layers, 6D], [2D]
    ast_bf16 *ctx, *ctx_hid, *ctx_emb;  // [Lt, text_dim], [Lt, D], [Lt, D] (set_context)

    float *pin_in, *pin_out, *pin_t;    // pinned host staging
    ast_uploader *up;

    int graphs_on;
    graph_entry graphs[MAX_GRAPHS];
    int n_graphs;
    ast_phase_timer *phases;  // ASTRAEA_CUDA_PHASES=1 (graphs off): time per phase
    char name[320];
} cuda_backend;

// Phases of the breakdown (phase_timer.h), in forward order.
// "exchange": the copies and NCCL exchanges of sequence parallelism (several ranks).
enum { PH_EMBED, PH_SELECT, PH_LN, PH_QKV, PH_NORM_ROPE, PH_EXCHANGE, PH_ATTN, PH_OPROJ,
       PH_CROSS, PH_FFN, PH_REUSE, PH_HEAD, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"embed", "select", "ln", "qkv_gemm",
                                                  "norm_rope", "exchange", "attention", "o_proj",
                                                  "cross", "ffn", "reuse", "head"};
#define PHASE(b, id)                                                                           \
    do {                                                                                       \
        if ((b)->phases && ast_phase_mark((b)->phases, (id), (b)->s)) return -1;               \
    } while (0)

// ---- weights ---------------------------------------------------------------------------------

// Bump allocation inside one cudaMalloc: a first pass with base == NULL only counts.
typedef struct {
    char *base;
    size_t off;
} arena;

template <typename T>
static T *carve(arena *a, size_t count) {
    a->off = (a->off + 255) & ~(size_t)255; // 256-byte aligned, as cuBLASLt likes
    T *p = a->base ? (T *)(a->base + a->off) : NULL;
    a->off += count * sizeof(T);
    return p;
}

static void layout_weights(cuda_backend *b, arena *a) {
    const size_t D = b->D, Fd = b->Fd, P = b->P, Py = b->Py, td = b->m->cfg.text_dim,
                 fd = b->m->cfg.freq_dim;
    dev_weights *w = &b->w;
    w->patch_w = carve<ast_bf16>(a, D * P);
    w->patch_b = carve<float>(a, D);
    w->text0_w = carve<ast_bf16>(a, D * td);
    w->text0_b = carve<ast_bf16>(a, D);
    w->text2_w = carve<ast_bf16>(a, D * D);
    w->text2_b = carve<ast_bf16>(a, D);
    w->time0_w = carve<float>(a, D * fd);
    w->time0_b = carve<float>(a, D);
    w->time2_w = carve<float>(a, D * D);
    w->time2_b = carve<float>(a, D);
    w->tproj_w = carve<float>(a, 6 * D * D);
    w->tproj_b = carve<float>(a, 6 * D);
    w->mod_all = carve<float>(a, (size_t)b->layers * 6 * D);
    w->head_mod = carve<float>(a, 2 * D);
    w->head_w = carve<ast_bf16>(a, Py * D);
    w->head_b = carve<float>(a, Py);
    w->rope = carve<float>(a, (size_t)1024 * b->hd);
    w->proj = b->p.tokenwise ? carve<float>(a, (size_t)b->r * D) : NULL;
    for (int l = 0; l < b->layers; l++) {
        dev_block *k = &w->blocks[l];
        k->qkv_w = carve<ast_bf16>(a, 3 * D * D);
        k->qkv_b = carve<ast_bf16>(a, 3 * D);
        k->so_w = carve<ast_bf16>(a, D * D);
        k->so_b = carve<ast_bf16>(a, D);
        k->norm_q = carve<float>(a, D);
        k->norm_k = carve<float>(a, D);
        k->norm3_w = carve<float>(a, D);
        k->norm3_b = carve<float>(a, D);
        k->cq_w = carve<ast_bf16>(a, D * D);
        k->cq_b = carve<ast_bf16>(a, D);
        k->ckv_w = carve<ast_bf16>(a, 2 * D * D);
        k->ckv_b = carve<ast_bf16>(a, 2 * D);
        k->cnorm_q = carve<float>(a, D);
        k->cnorm_k = carve<float>(a, D);
        k->co_w = carve<ast_bf16>(a, D * D);
        k->co_b = carve<float>(a, D);
        k->f0_w = carve<ast_bf16>(a, Fd * D);
        k->f0_b = carve<ast_bf16>(a, Fd);
        k->f2_w = carve<ast_bf16>(a, D * Fd);
        k->f2_b = carve<ast_bf16>(a, D);
    }
}

// Host fp32 vector -> device (bf16 or fp32).
static int up_vec(cuda_backend *b, const float *src, int64_t n, void *dst, ast_dtype ddt,
                  const char *what) {
    if (ast_upload(b->up, src, AST_DT_F32, n, dst, ddt)) {
        ast_error_prefix("uploading %s", what);
        return -1;
    }
    return 0;
}

static int upload_weights(cuda_backend *b) {
    const ast_wan_config *c = &b->m->cfg;
    const ast_wan_weights *mw = &b->m->w;
    dev_weights *w = &b->w;
    const int64_t D = b->D, Fd = b->Fd;
    const ast_dtype BF = AST_DT_BF16, F = AST_DT_F32;
    ast_uploader *u = b->up;
#define UPT(t, n, dst, ddt) \
    if (ast_upload_tensor(u, &(t), (n), (dst), (ddt))) return -1
#define UPV(src, n, dst, ddt, what) \
    if (up_vec(b, (src), (n), (dst), (ddt), (what))) return -1
    UPT(mw->patch_w, D * b->P, w->patch_w, BF);
    UPV(mw->patch_b, D, w->patch_b, F, "patch_embedding.bias");
    UPT(mw->text0_w, D * c->text_dim, w->text0_w, BF);
    UPV(mw->text0_b, D, w->text0_b, BF, "text_embedding.0.bias");
    UPT(mw->text2_w, D * D, w->text2_w, BF);
    UPV(mw->text2_b, D, w->text2_b, BF, "text_embedding.2.bias");
    UPT(mw->time0_w, D * c->freq_dim, w->time0_w, F);
    UPV(mw->time0_b, D, w->time0_b, F, "time_embedding.0.bias");
    UPT(mw->time2_w, D * D, w->time2_w, F);
    UPV(mw->time2_b, D, w->time2_b, F, "time_embedding.2.bias");
    UPT(mw->tproj_w, 6 * D * D, w->tproj_w, F);
    UPV(mw->tproj_b, 6 * D, w->tproj_b, F, "time_projection.1.bias");
    UPV(mw->head_mod, 2 * D, w->head_mod, F, "head.modulation");
    UPT(mw->head_w, (int64_t)b->Py * D, w->head_w, BF);
    UPV(mw->head_b, b->Py, w->head_b, F, "head.head.bias");
    for (int l = 0; l < b->layers; l++) {
        const ast_wan_block *s = &mw->blocks[l];
        dev_block *k = &w->blocks[l];
        UPV(s->modulation, 6 * D, w->mod_all + (size_t)l * 6 * D, F, "blocks.*.modulation");
        UPT(s->self_attn.q_w, D * D, k->qkv_w, BF);
        UPT(s->self_attn.k_w, D * D, k->qkv_w + D * D, BF);
        UPT(s->self_attn.v_w, D * D, k->qkv_w + 2 * D * D, BF);
        UPV(s->self_attn.q_b, D, k->qkv_b, BF, "self_attn.q.bias");
        UPV(s->self_attn.k_b, D, k->qkv_b + D, BF, "self_attn.k.bias");
        UPV(s->self_attn.v_b, D, k->qkv_b + 2 * D, BF, "self_attn.v.bias");
        UPT(s->self_attn.o_w, D * D, k->so_w, BF);
        UPV(s->self_attn.o_b, D, k->so_b, BF, "self_attn.o.bias");
        UPV(s->self_attn.norm_q, D, k->norm_q, F, "self_attn.norm_q.weight");
        UPV(s->self_attn.norm_k, D, k->norm_k, F, "self_attn.norm_k.weight");
        UPV(s->norm3_w, D, k->norm3_w, F, "norm3.weight");
        UPV(s->norm3_b, D, k->norm3_b, F, "norm3.bias");
        UPT(s->cross_attn.q_w, D * D, k->cq_w, BF);
        UPV(s->cross_attn.q_b, D, k->cq_b, BF, "cross_attn.q.bias");
        UPT(s->cross_attn.k_w, D * D, k->ckv_w, BF);
        UPT(s->cross_attn.v_w, D * D, k->ckv_w + D * D, BF);
        UPV(s->cross_attn.k_b, D, k->ckv_b, BF, "cross_attn.k.bias");
        UPV(s->cross_attn.v_b, D, k->ckv_b + D, BF, "cross_attn.v.bias");
        UPV(s->cross_attn.norm_q, D, k->cnorm_q, F, "cross_attn.norm_q.weight");
        UPV(s->cross_attn.norm_k, D, k->cnorm_k, F, "cross_attn.norm_k.weight");
        UPT(s->cross_attn.o_w, D * D, k->co_w, BF);
        UPV(s->cross_attn.o_b, D, k->co_b, F, "cross_attn.o.bias");
        UPT(s->ffn0_w, Fd * D, k->f0_w, BF);
        UPV(s->ffn0_b, Fd, k->f0_b, BF, "ffn.0.bias");
        UPT(s->ffn2_w, D * Fd, k->f2_w, BF);
        UPV(s->ffn2_b, D, k->f2_b, BF, "ffn.2.bias");
    }
#undef UPT
#undef UPV
    // RoPE table and sketch projection: the host builders both backends share
    ast_rope_table rt;
    if (ast_rope_table_init(&rt, b->hd)) return -1;
    int rc = rt.npos == 1024 ? 0 : ast_fail("internal: RoPE table of %d positions", rt.npos);
    if (!rc) rc = ast_upload(u, rt.cs, AST_DT_F32, (int64_t)rt.npos * b->hd, w->rope, F);
    if (!rc) rc = ast_uploader_finish(u); // rt.cs is read by the copy: wait before freeing
    ast_rope_table_free(&rt);
    if (rc) return -1;
    if (w->proj) {
        float *P = (float *)ast_malloc(sizeof(float) * (size_t)b->r * D, "the sketch projection");
        if (!P) return -1;
        ast_tw_projection((int)D, b->r, P);
        rc = ast_upload(u, P, AST_DT_F32, (int64_t)b->r * D, w->proj, F);
        if (!rc) rc = ast_uploader_finish(u);
        free(P);
        if (rc) return -1;
    }
    return ast_uploader_finish(u);
}

// ---- lifetime ---------------------------------------------------------------------------------

static void graphs_clear(cuda_backend *b) {
    for (int i = 0; i < b->n_graphs; i++)
        if (b->graphs[i].exec) cudaGraphExecDestroy(b->graphs[i].exec);
    b->n_graphs = 0;
}

static void cuda_destroy(void *impl) {
    cuda_backend *b = (cuda_backend *)impl;
    if (!b) return;
    cudaSetDevice(b->dev);
    if (b->s) cudaStreamSynchronize(b->s);
    graphs_clear(b);
    ast_phase_report(b->phases, b->name, b->N);
    ast_phase_free(b->phases);
    if (b->br) {
        for (int i = 0; i < b->p.n_branches; i++) {
            dev_branch *br = &b->br[i];
            ast_cuda_free(br->cross_kv);
            if (br->blocks) {
                for (int l = 0; l < b->layers; l++) {
                    ast_cuda_free(br->blocks[l].cache);
                    ast_cuda_free(br->blocks[l].lse);
                    ast_cuda_free(br->blocks[l].refsketch);
                }
                free(br->blocks);
            }
            ast_cuda_free(br->skip_all);
        }
        free(b->br);
    }
    void *bufs[] = {b->lat_in, b->lat_out, b->t, b->x, b->xs, b->h, b->hq, b->qkv, b->o,
                    b->tmp, b->ffn, b->lse_h, b->sk, b->score, b->sel, b->flags, b->headout,
                    b->headout_all,
                    b->sinus, b->thid, b->e, b->e0, b->E, b->hmod, b->ctx, b->ctx_hid,
                    b->ctx_emb, b->warena, b->patches, b->xq_send, b->xq_recv, b->xkv_send,
                    b->xkv_recv, b->xo_all, b->xo_recv, b->lse_all, b->lse_send};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) ast_cuda_free(bufs[i]);
    if (b->pin_in) cudaFreeHost(b->pin_in);
    if (b->pin_out) cudaFreeHost(b->pin_out);
    if (b->pin_t) cudaFreeHost(b->pin_t);
    free(b->w.blocks);
    ast_uploader_free(b->up);
    ast_cuda_tw_free(b->tw);
    ast_gemm_free(b->gemm);
    if (b->ev_t0) cudaEventDestroy(b->ev_t0);
    if (b->ev_t1) cudaEventDestroy(b->ev_t1);
    if (b->s) cudaStreamDestroy(b->s);
    free(b);
}

static const char *cuda_device_name(void *impl) { return ((cuda_backend *)impl)->name; }

static void cuda_reset(void *impl) {
    cuda_backend *b = (cuda_backend *)impl;
    ast_phase_report(b->phases, b->name, b->N); // the forwards since the last reset
    for (int i = 0; i < b->p.n_branches; i++) b->br[i].has_state = 0;
}

#define ALLOC(ptr, count, what) \
    (ast_cuda_alloc((void **)&(ptr), sizeof(*(ptr)) * (size_t)(count), (what)) == 0)

static int alloc_scratch(cuda_backend *b) {
    const ast_wan_config *c = &b->m->cfg;
    const int64_t N = b->N, D = b->D, hw = D > b->P ? D : b->P;
    const int64_t nlat_in = (int64_t)c->in_dim * b->p.frames * b->p.height * b->p.width;
    const int64_t nlat_out = (int64_t)c->out_dim * b->p.frames * b->p.height * b->p.width;
    const int tw = b->p.tokenwise;
    int ok = ALLOC(b->lat_in, nlat_in, "the input latent") &&
             ALLOC(b->lat_out, nlat_out, "the output latent") && ALLOC(b->t, 1, "the timestep") &&
             ALLOC(b->x, N * D, "the residual stream") &&
             ALLOC(b->h, N * hw, "normalised activations") &&
             ALLOC(b->qkv, N * 3 * D, "queries/keys/values") &&
             ALLOC(b->o, N * D, "attention output") && ALLOC(b->tmp, N * D, "projections") &&
             ALLOC(b->ffn, N * b->Fd, "FFN activations") &&
             ALLOC(b->headout, N * b->Py, "head output") &&
             ALLOC(b->sinus, c->freq_dim, "time features") && ALLOC(b->thid, D, "time hidden") &&
             ALLOC(b->e, D, "time embedding") && ALLOC(b->e0, 6 * D, "time projection") &&
             ALLOC(b->E, (int64_t)b->layers * 6 * D, "block modulation") &&
             ALLOC(b->hmod, 2 * D, "head modulation") &&
             ALLOC(b->ctx, (int64_t)b->Lt * c->text_dim, "the context") &&
             ALLOC(b->ctx_hid, (int64_t)b->Lt * D, "the text embedding") &&
             ALLOC(b->ctx_emb, (int64_t)b->Lt * D, "the text embedding");
    if (ok && tw)
        ok = ALLOC(b->xs, N * D, "selected rows") && ALLOC(b->hq, N * D, "selected rows") &&
             ALLOC(b->lse_h, (int64_t)b->H * N, "attention LSE") &&
             ALLOC(b->sk, N * b->r, "input sketch") && ALLOC(b->score, N, "token scores") &&
             ALLOC(b->sel, (int64_t)b->layers * N, "token selection") &&
             ALLOC(b->flags, (int64_t)b->layers * N, "token selection");
    if (ok && b->sh.size > 1) // the whole latent's patches: this rank embeds its rows of them
        ok = ALLOC(b->patches, (int64_t)b->Ntot * b->P, "the latent's patches");
    if (ok && b->sh.size > 1 && b->sh.rank == 0) // rank 0 unpatchifies every rank's head rows
        ok = ALLOC(b->headout_all, (int64_t)b->Ntot * b->Py, "the gathered head output");
    if (ok && b->allgather) { // every rank's keys/values
        ok = ALLOC(b->xkv_send, N * 2 * D, "sequence-parallel buffers") &&
             ALLOC(b->xkv_recv, (int64_t)b->Ntot * 2 * D, "sequence-parallel buffers");
    } else if (ok && b->sh.size > 1) { // sp_attention's exchange buffers
        const int64_t Nt = b->Ntot, W = D / b->sh.size, Hg = b->H / b->sh.size;
        ok = ALLOC(b->xq_send, N * D, "sequence-parallel buffers") &&
             ALLOC(b->xq_recv, Nt * W, "sequence-parallel buffers") &&
             ALLOC(b->xkv_send, N * 2 * D, "sequence-parallel buffers") &&
             ALLOC(b->xkv_recv, Nt * 2 * W, "sequence-parallel buffers") &&
             ALLOC(b->xo_all, Nt * W, "sequence-parallel buffers") &&
             ALLOC(b->xo_recv, N * D, "sequence-parallel buffers");
        if (ok && tw && b->p.tw.w_alpha != 0) // the LSE travels only when the score reads it
            ok = ALLOC(b->lse_all, Nt * Hg, "sequence-parallel buffers") &&
                 ALLOC(b->lse_send, Nt * Hg, "sequence-parallel buffers");
    }
    if (!ok) return -1;
    CUDA_TRY(cudaHostAlloc((void **)&b->pin_in, sizeof(float) * nlat_in, cudaHostAllocDefault));
    CUDA_TRY(cudaHostAlloc((void **)&b->pin_out, sizeof(float) * nlat_out, cudaHostAllocDefault));
    CUDA_TRY(cudaHostAlloc((void **)&b->pin_t, sizeof(float), cudaHostAllocDefault));
    b->br = (dev_branch *)ast_calloc((size_t)b->p.n_branches, sizeof *b->br, "CFG branches");
    if (!b->br) return -1;
    for (int i = 0; i < b->p.n_branches; i++) {
        dev_branch *br = &b->br[i];
        if (!ALLOC(br->cross_kv, (int64_t)b->layers * b->Lt * 2 * D, "cross-attention K/V"))
            return -1;
        if (!tw) continue;
        br->blocks = (dev_block_state *)ast_calloc((size_t)b->layers, sizeof *br->blocks,
                                                   "token-wise state");
        if (!br->blocks || !ALLOC(br->skip_all, (int64_t)b->layers * N, "skip counts"))
            return -1;
        for (int l = 0; l < b->layers; l++) {
            dev_block_state *s = &br->blocks[l];
            s->skip = br->skip_all + (int64_t)l * N;
            if (!(ALLOC(s->cache, N * D, "the token cache") && ALLOC(s->lse, N, "token LSE") &&
                  ALLOC(s->refsketch, N * b->r, "token sketches")))
                return -1;
        }
    }
    return 0;
}

// ---- context ----------------------------------------------------------------------------------

static int cuda_set_context(void *impl, int branch, const float *ctx) {
    cuda_backend *b = (cuda_backend *)impl;
    const ast_wan_config *c = &b->m->cfg;
    const dev_weights *w = &b->w;
    dev_branch *br = &b->br[branch];
    const int Lt = b->Lt, D = b->D;
    CUDA_TRY(cudaSetDevice(b->dev));
    // zero-padded [text_len, text_dim] (engine.c) -> bf16, as autocast feeds the Linear
    if (ast_upload(b->up, ctx, AST_DT_F32, (int64_t)Lt * c->text_dim, b->ctx, AST_DT_BF16))
        return -1;
    // text_embedding: Linear -> GELU(tanh) -> Linear (pad rows included: they are attended)
    int rc = ast_gemm_run(b->gemm, Lt, D, c->text_dim, b->ctx, c->text_dim, w->text0_w,
                          c->text_dim, w->text0_b, b->ctx_hid, D, AST_GEMM_OUT_BF16,
                          AST_GEMM_EPI_GELU_BIAS, 0, b->s);
    rc = rc || ast_gemm_run(b->gemm, Lt, D, D, b->ctx_hid, D, w->text2_w, D, w->text2_b,
                            b->ctx_emb, D, AST_GEMM_OUT_BF16, AST_GEMM_EPI_BIAS, 0, b->s);
    for (int l = 0; !rc && l < b->layers; l++) {
        const dev_block *k = &w->blocks[l];
        ast_bf16 *kv = br->cross_kv + (size_t)l * Lt * 2 * D;
        rc = ast_gemm_run(b->gemm, Lt, 2 * D, D, b->ctx_emb, D, k->ckv_w, D, k->ckv_b, kv, 2 * D,
                          AST_GEMM_OUT_BF16, AST_GEMM_EPI_BIAS, 0, b->s) ||
             ast_cuda_rmsnorm_rope(Lt, D, kv, 2 * D, k->cnorm_k, b->eps, NULL, 0, b->hd, NULL, 0, 1,
                                   1, b->s);
    }
    if (!rc) rc = ast_uploader_finish(b->up); // also waits for the kernels on the stream
    if (rc) {
        ast_error_prefix("computing the cross-attention keys/values of CFG branch %d", branch);
        return -1;
    }
    br->has_context = 1;
    return 0;
}

// ---- forward ----------------------------------------------------------------------------------

// Self-attention of this rank's K queries over all Ntot tokens, P > 1 (Ulysses; comm.h and
// forward_cpu.c sp_attention, which this mirrors): q [K, 3D-strided], k/v [N, 3D-strided] go
// from token-sharded to head-sharded (rank g: heads [g·Hg, (g+1)·Hg)) by strided copies and
// NCCL all-to-alls, attention runs on the rank's heads over every token, and the output rows
// (and per-head LSE) go back to their owners: b->o [K, D] and b->lse_h [H, K] as one rank
// writes them. Every copy and exchange is on b->s, so a CUDA graph captures it.
static int sp_attention(cuda_backend *b, int K, const ast_bf16 *q, const ast_bf16 *kk,
                        const ast_bf16 *vv, int want_lse) {
    const int P = b->sh.size, me = b->sh.rank, D = b->D, hd = b->hd, Hg = b->H / P;
    const int64_t W = (int64_t)Hg * hd, N = b->N, bf = sizeof(ast_bf16);
    cudaStream_t s = b->s;
    ast_comm *cm = b->sh.comm;
    const ast_shard_plan *pl = &b->plan;
    const int64_t Ktot = pl->ktot;
    int64_t sc[AST_MAX_RANKS] = {0}, sd[AST_MAX_RANKS] = {0}, rc[AST_MAX_RANKS] = {0},
            rd[AST_MAX_RANKS] = {0};
    PHASE(b, PH_EXCHANGE);
    // one packing launch: to rank g its heads' columns of my K query rows, and of my N key and
    // value rows as [row][k W | v W]
    ast_copy2d cp[3 * AST_MAX_RANKS];
    for (int g = 0; g < P; g++) {
        ast_bf16 *dst = b->xkv_send + g * N * 2 * W;
        cp[3 * g] = (ast_copy2d){b->xq_send + g * K * W, q + g * W, W * bf, 3 * D * bf, W * bf, K};
        cp[3 * g + 1] = (ast_copy2d){dst, kk + g * W, 2 * W * bf, 3 * D * bf, W * bf, N};
        cp[3 * g + 2] = (ast_copy2d){dst + W, vv + g * W, 2 * W * bf, 3 * D * bf, W * bf, N};
    }
    if (ast_cuda_copy2d(cp, 3 * P, s)) return -1;
    ast_exchange_counts(P, K, pl->k, pl->kfirst, W, sc, sd, rc, rd);
    if (ast_comm_alltoallv(cm, me, b->xq_send, sc, sd, b->xq_recv, rc, rd, 2, s)) return -1;
    ast_exchange_counts(P, N, pl->n, pl->first, 2 * W, sc, sd, rc, rd);
    if (ast_comm_alltoallv(cm, me, b->xkv_send, sc, sd, b->xkv_recv, rc, rd, 2, s)) return -1;
    PHASE(b, PH_ATTN);
    if (ast_cuda_attention(b->xq_recv, (int)W, b->xkv_recv, (int)(2 * W), b->xkv_recv + W,
                           (int)(2 * W), b->xo_all, (int)W, want_lse ? b->lse_all : NULL,
                           (int)Ktot, b->Ntot, Hg, hd, b->scale, s))
        return -1;
    PHASE(b, PH_EXCHANGE);
    // back: rows of rank i to rank i; from rank g my K rows of its heads, into columns g·W
    ast_exchange_counts(P, K, pl->k, pl->kfirst, W, rc, rd, sc, sd); // the way back
    if (ast_comm_alltoallv(cm, me, b->xo_all, sc, sd, b->xo_recv, rc, rd, 2, s)) return -1;
    for (int g = 0; g < P; g++)
        cp[g] = (ast_copy2d){b->o + g * W, b->xo_recv + g * K * W, D * bf, W * bf, W * bf, K};
    if (ast_cuda_copy2d(cp, P, s)) return -1;
    if (!want_lse) return 0;
    // LSE [Hg, Ktot] -> to rank i its [Hg, K_i]; from rank g [Hg, K] = rows g·Hg.. of [H, K]
    const int64_t f4 = sizeof(float);
    for (int i = 0; i < P; i++)
        cp[i] = (ast_copy2d){b->lse_send + Hg * pl->kfirst[i], b->lse_all + pl->kfirst[i],
                             pl->k[i] * f4, Ktot * f4, pl->k[i] * f4, Hg};
    if (ast_cuda_copy2d(cp, P, s)) return -1;
    ast_exchange_counts(P, K, pl->k, pl->kfirst, Hg, rc, rd, sc, sd); // the way back
    return ast_comm_alltoallv(cm, me, b->lse_send, sc, sd, b->lse_h, rc, rd, 4, s);
}

// The same when P does not divide the heads (forward_cpu.c sp_attention_allgather): every rank
// gathers all [k | v] rows and attends its own K queries over them for every head.
static int sp_attention_allgather(cuda_backend *b, int K, const ast_bf16 *q, const ast_bf16 *kk,
                                  int want_lse) {
    const int P = b->sh.size, D = b->D;
    const int64_t N = b->N, bf = sizeof(ast_bf16);
    int64_t sc[AST_MAX_RANKS] = {0}, sd[AST_MAX_RANKS] = {0}, rc[AST_MAX_RANKS] = {0},
            rd[AST_MAX_RANKS] = {0};
    PHASE(b, PH_EXCHANGE);
    // [k | v] of a row are contiguous in qkv [N, 3D] (columns D..3D): one strided copy
    const ast_copy2d cp = {b->xkv_send, kk, 2 * D * bf, 3 * D * bf, 2 * D * bf, N};
    if (ast_cuda_copy2d(&cp, 1, b->s)) return -1;
    ast_allgather_counts(P, N, b->plan.n, b->plan.first, 2 * D, sc, sd, rc, rd);
    if (ast_comm_alltoallv(b->sh.comm, b->sh.rank, b->xkv_send, sc, sd, b->xkv_recv, rc, rd, 2,
                           b->s))
        return -1;
    PHASE(b, PH_ATTN);
    return ast_cuda_attention(q, 3 * D, b->xkv_recv, 2 * D, b->xkv_recv + D, 2 * D, b->o, D,
                              want_lse ? b->lse_h : NULL, K, b->Ntot, b->H, b->hd, b->scale,
                              b->s);
}

// The reuse of the rows block l did not compute (x = x + cache, or cache; skip += 1), as the
// next block's LN1 runs it in its pass (ast_ln_extra)
static ast_ln_extra reuse_extra(const cuda_backend *b, const dev_branch *br, int l) {
    ast_ln_extra ex = {};
    ex.flags = b->flags + (int64_t)l * b->N;
    ex.cache = br->blocks[l].cache, ex.ldc = b->D, ex.skip = br->blocks[l].skip;
    ex.residual = b->p.tw.cache == AST_CACHE_RESIDUAL;
    return ex;
}

// The same on its own pass over x: after the last block, or before a sketch reads x.
static int reuse_rows(cuda_backend *b, const dev_branch *br, int l) {
    const ast_ln_extra ex = reuse_extra(b, br, l);
    return ast_cuda_tw_reuse(b->N, b->D, ex.flags, b->x, b->D, ex.cache, ex.ldc, b->p.tw.cache,
                             ex.skip, b->s);
}

// One block on the current residual stream b->x (see the file comment).
static int block_forward(cuda_backend *b, dev_branch *br, int l, int K) {
    const dev_block *k = &b->w.blocks[l];
    const int N = b->N, D = b->D, H = b->H, hd = b->hd;
    const float *E = b->E + (size_t)l * 6 * D;
    const float *E0 = E, *E1 = E + D, *E2 = E + 2 * D, *E3 = E + 3 * D, *E4 = E + 4 * D,
                *E5 = E + 5 * D;
    dev_block_state *st = br->blocks ? &br->blocks[l] : NULL;
    const int gather = K < N; // K == N: identity selection, rows used in place
    int32_t *sel_l = b->sel + (int64_t)l * N;
    uint8_t *flags_l = b->flags + (int64_t)l * N;
    const int32_t *sel = gather ? sel_l : NULL;
    cudaStream_t s = b->s;
    ast_gemm *g = b->gemm;
    const ast_gemm_out OBF = AST_GEMM_OUT_BF16;

    // 1. selection (without Δ every block's was made before the first: forward_body)
    const int use_delta = b->p.tw.w_alpha != 0; // Δ (and so the sketch) enters the score
    const int want_lse = st && use_delta;       // so does the LSE: without Δ nobody reads it
    // block l - 1 left its other rows to this block's LN1 (the sketch reads x before it)
    const int pending = l > 0 && gather && st;
    if (pending && use_delta) {
        PHASE(b, PH_REUSE);
        if (reuse_rows(b, br, l - 1)) return -1;
    }
    PHASE(b, PH_SELECT);
    if (st && use_delta && ast_cuda_tw_sketch(N, D, b->r, b->x, D, b->w.proj, b->sk, s))
        return -1;
    if (gather && use_delta) {
        if (ast_cuda_tw_scores(b->tw, N, b->r, b->sk, st->refsketch, st->lse, st->skip, &b->p.tw,
                               b->score, s) ||
            ast_cuda_tw_topk(b->tw, N, K, b->score, sel_l, flags_l, s))
            return -1;
    }

    // 2. self-attention: K/V for every token, Q for the selected
    // LN1 over every row; in the same pass the rows block l - 1 did not compute take their
    // cache, and the selected rows' output is also written compacted (hq: the Q projection's)
    PHASE(b, PH_LN);
    ast_ln_extra ex = pending && !use_delta ? reuse_extra(b, br, l - 1) : ast_ln_extra{};
    if (gather) ex.out_flags = flags_l, ex.sel = sel, ex.K = K, ex.out = b->hq, ex.ldo = D;
    if (gather ? ast_cuda_layernorm_ex(N, D, b->x, D, &ex, b->h, D, NULL, NULL, E1, E0, b->eps, s)
               : ast_cuda_layernorm(N, D, b->x, D, NULL, b->h, D, NULL, NULL, E1, E0, b->eps, s))
        return -1;
    PHASE(b, PH_QKV);
    ast_bf16 *q = b->qkv, *kk = b->qkv + D, *vv = b->qkv + 2 * D;
    if (!gather) {
        if (ast_gemm_run(g, N, 3 * D, D, b->h, D, k->qkv_w, D, k->qkv_b, b->qkv, 3 * D, OBF,
                         AST_GEMM_EPI_BIAS, 0, s))
            return -1;
    } else {
        if (ast_gemm_run(g, N, 2 * D, D, b->h, D, k->qkv_w + (size_t)D * D, D, k->qkv_b + D, kk,
                         3 * D, OBF, AST_GEMM_EPI_BIAS, 0, s) ||
            ast_gemm_run(g, K, D, D, b->hq, D, k->qkv_w, D, k->qkv_b, q, 3 * D, OBF,
                         AST_GEMM_EPI_BIAS, 0, s))
            return -1;
    }
    PHASE(b, PH_NORM_ROPE);
    if (ast_cuda_rmsnorm_rope(N, D, kk, 3 * D, k->norm_k, b->eps, b->w.rope, 1024, hd, NULL,
                              b->n0, b->gh, b->gw, s) ||
        ast_cuda_rmsnorm_rope(K, D, q, 3 * D, k->norm_q, b->eps, b->w.rope, 1024, hd, sel, b->n0,
                              b->gh, b->gw, s))
        return -1;
    if (b->sh.size > 1) { // exchanges and attention, each marked as its phase
        if (b->allgather ? sp_attention_allgather(b, K, q, kk, want_lse)
                         : sp_attention(b, K, q, kk, vv, want_lse))
            return -1;
    } else {
        PHASE(b, PH_ATTN);
        if (ast_cuda_attention(q, 3 * D, kk, 3 * D, vv, 3 * D, b->o, D,
                               want_lse ? b->lse_h : NULL, K, N, H, hd, b->scale, s))
            return -1;
    }
    // xs = x[sel] + (o·Wo + bo)·E2   (dense-only engines: in place on x)
    PHASE(b, PH_OPROJ);
    float *xs = st ? b->xs : b->x;
    if (ast_gemm_run(g, K, D, D, b->o, D, k->so_w, D, k->so_b, b->tmp, D, OBF, AST_GEMM_EPI_BIAS,
                     0, s) ||
        ast_cuda_residual(K, D, xs, D, b->x, D, sel, b->tmp, D, 0, E2, s))
        return -1;

    // 3. cross-attention (no modulation, no gate); its o-projection accumulates into xs
    PHASE(b, PH_CROSS);
    ast_bf16 *cq = b->qkv; // [K, D]: the self-attention q/k/v are dead now
    const ast_bf16 *ckv = br->cross_kv + (size_t)l * b->Lt * 2 * D;
    if (ast_cuda_layernorm(K, D, xs, D, NULL, b->h, D, k->norm3_w, k->norm3_b, NULL, NULL, b->eps,
                           s) ||
        ast_gemm_run(g, K, D, D, b->h, D, k->cq_w, D, k->cq_b, cq, D, OBF, AST_GEMM_EPI_BIAS, 0,
                     s) ||
        ast_cuda_rmsnorm_rope(K, D, cq, D, k->cnorm_q, b->eps, NULL, 0, hd, NULL, 0, 1, 1, s) ||
        ast_cuda_attention(cq, D, ckv, 2 * D, ckv + D, 2 * D, b->o, D, NULL, K, b->Lt, H, hd,
                           b->scale, s) ||
        ast_gemm_run(g, K, D, D, b->o, D, k->co_w, D, k->co_b, xs, D, AST_GEMM_OUT_F32,
                     AST_GEMM_EPI_BIAS, 1, s))
        return -1;

    // 4. FFN
    PHASE(b, PH_FFN);
    if (ast_cuda_layernorm(K, D, xs, D, NULL, b->h, D, NULL, NULL, E4, E3, b->eps, s) ||
        ast_gemm_run(g, K, b->Fd, D, b->h, D, k->f0_w, D, k->f0_b, b->ffn, b->Fd, OBF,
                     AST_GEMM_EPI_GELU_BIAS, 0, s) ||
        ast_gemm_run(g, K, D, b->Fd, b->ffn, b->Fd, k->f2_w, b->Fd, k->f2_b, b->tmp, D, OBF,
                     AST_GEMM_EPI_BIAS, 0, s))
        return -1;
    if (!st) // dense-only engine: x is updated in place
        return ast_cuda_residual(K, D, xs, D, xs, D, NULL, b->tmp, D, 0, E5, s);

    // 5. commit the computed rows (with the FFN's gated residual xs + tmp·E5 fused in); the
    // others take their cache in the next block's LN1 (on their own pass before the next
    // block's sketch, with Δ, and after the last block)
    PHASE(b, PH_REUSE);
    return ast_cuda_tw_commit(K, D, sel, xs, D, b->tmp, D, E5, b->x, D, st->cache, D,
                              b->p.tw.cache, H, want_lse ? b->lse_h : NULL,
                              st->lse, b->r, b->sk, use_delta ? st->refsketch : NULL, st->skip,
                              s);
}

// Everything between the input copy and the output copy: the part a graph captures.
static int forward_body(cuda_backend *b, int branch, int K) {
    const ast_wan_config *c = &b->m->cfg;
    const dev_weights *w = &b->w;
    dev_branch *br = &b->br[branch];
    const int N = b->N, D = b->D;
    cudaStream_t s = b->s;
    // patch embedding: x = patches·Wpᵀ + b (fp32 stream), this rank's rows [n0, n0 + N)
    PHASE(b, PH_EMBED);
    ast_bf16 *patches = b->sh.size > 1 ? b->patches : b->h;
    if (ast_cuda_patchify(b->lat_in, c->in_dim, b->p.frames, b->p.height, b->p.width, c->patch[0],
                          c->patch[1], c->patch[2], patches, b->P, s) ||
        ast_gemm_run(b->gemm, N, D, b->P, patches + (size_t)b->n0 * b->P, b->P, w->patch_w, b->P,
                     w->patch_b, b->x, D, AST_GEMM_OUT_F32, AST_GEMM_EPI_BIAS, 0, s))
        return -1;
    // time: e = W2·SiLU(W1·sin(t) + b1) + b2; e0 = Wp·SiLU(e) + bp; E = modulation + e0
    if (ast_cuda_sinusoid(b->t, c->freq_dim, b->sinus, s) ||
        ast_cuda_gemv_f32(D, c->freq_dim, w->time0_w, b->sinus, 0, w->time0_b, b->thid, s) ||
        ast_cuda_gemv_f32(D, D, w->time2_w, b->thid, 1, w->time2_b, b->e, s) ||
        ast_cuda_gemv_f32(6 * D, D, w->tproj_w, b->e, 1, w->tproj_b, b->e0, s) ||
        ast_cuda_add_bcast(b->E, w->mod_all, (int64_t)b->layers * 6 * D, b->e0, 6 * D, s))
        return -1;
    // the scores depend on the skip counts alone (w_α = 0): every block's top-K in one launch
    if (br->blocks && K < N && b->p.tw.w_alpha == 0) {
        PHASE(b, PH_SELECT);
        if (ast_cuda_tw_select_skip(b->layers, N, K, br->skip_all, &b->p.tw, b->sel, b->flags,
                                    s))
            return -1;
    }
    for (int l = 0; l < b->layers; l++) {
        if (block_forward(b, br, l, K)) {
            ast_error_prefix("block %d of %d", l, b->layers);
            return -1;
        }
    }
    if (br->blocks && K < N) { // the last block's other rows: no next LN1 to take them
        PHASE(b, PH_REUSE);
        if (reuse_rows(b, br, b->layers - 1)) return -1;
    }
    // head: LN(x)(1 + H1) + H0 with H = head.modulation + e; Linear; unpatchify
    PHASE(b, PH_HEAD);
    if (ast_cuda_add_bcast(b->hmod, w->head_mod, 2 * D, b->e, D, s) ||
        ast_cuda_layernorm(N, D, b->x, D, NULL, b->h, D, NULL, NULL, b->hmod + D, b->hmod, b->eps,
                           s) ||
        ast_gemm_run(b->gemm, N, b->Py, D, b->h, D, w->head_w, D, w->head_b, b->headout, b->Py,
                     AST_GEMM_OUT_F32, AST_GEMM_EPI_BIAS, 0, s))
        return -1;
    // several ranks: every rank's head rows to rank 0 (one exchange), which unpatchifies them all
    const float *rows = b->headout;
    if (b->sh.size > 1) {
        PHASE(b, PH_EXCHANGE);
        const int P = b->sh.size;
        int64_t sc[AST_MAX_RANKS] = {0}, sd[AST_MAX_RANKS] = {0}, rc[AST_MAX_RANKS] = {0},
                rd[AST_MAX_RANKS] = {0};
        sc[0] = (int64_t)N * b->Py;
        if (b->sh.rank == 0)
            for (int i = 0; i < P; i++)
                rc[i] = b->plan.n[i] * b->Py, rd[i] = b->plan.first[i] * b->Py;
        if (ast_comm_alltoallv(b->sh.comm, b->sh.rank, b->headout, sc, sd, b->headout_all, rc,
                               rd, 4, s))
            return -1;
        rows = b->headout_all;
        PHASE(b, PH_HEAD);
    }
    if ((b->sh.size == 1 || b->sh.rank == 0) &&
        ast_cuda_unpatchify(rows, b->Py, c->out_dim, b->p.frames, b->p.height, b->p.width,
                            c->patch[0], c->patch[1], c->patch[2], b->lat_out, s))
        return -1;
    PHASE(b, -1);
    return 0;
}

// Runs forward_body through the graph of (branch, every rank's rows): eager the first time,
// captured the second, replayed after. The key is what a graph depends on: this rank's K and,
// for the captured exchanges, every peer's (two budgets can give this rank the same K and a peer
// another). A capture that fails turns graphs off and runs eagerly.
static int forward_graph(cuda_backend *b, int branch, int K) {
    if (!b->graphs_on) return forward_body(b, branch, K);
    const size_t kbytes = sizeof(int64_t) * (size_t)b->sh.size;
    graph_entry *ge = NULL;
    for (int i = 0; i < b->n_graphs; i++)
        if (b->graphs[i].branch == branch && !memcmp(b->graphs[i].k, b->plan.k, kbytes))
            ge = &b->graphs[i];
    if (!ge) {
        if (b->n_graphs < MAX_GRAPHS) {
            ge = &b->graphs[b->n_graphs++];
            ge->branch = branch;
            memcpy(ge->k, b->plan.k, kbytes);
            ge->exec = NULL;
        }
        return forward_body(b, branch, K); // first sight (or no room): eager
    }
    if (!ge->exec) {
        cudaGraph_t graph = NULL;
        CUDA_TRY(cudaStreamBeginCapture(b->s, cudaStreamCaptureModeRelaxed));
        int rc = forward_body(b, branch, K);
        cudaError_t e = cudaStreamEndCapture(b->s, &graph);
        if (rc == 0 && e == cudaSuccess)
            e = cudaGraphInstantiateWithFlags(&ge->exec, graph, 0);
        if (graph) cudaGraphDestroy(graph);
        if (rc || e != cudaSuccess) {
            // nothing ran while capturing: turn graphs off and run it for real
            ge->exec = NULL;
            cudaGetLastError();
            b->graphs_on = 0;
            ast_log(2, "CUDA graph capture failed (%s); running without graphs",
                    rc ? ast_error_get() : cudaGetErrorString(e));
            return forward_body(b, branch, K);
        }
    }
    CUDA_TRY(cudaGraphLaunch(ge->exec, b->s));
    return 0;
}

static int cuda_forward(void *impl, int branch, const float *xin, float t, float theta, int dense,
                        float *out, ast_forward_info *info) {
    cuda_backend *b = (cuda_backend *)impl;
    const ast_wan_config *c = &b->m->cfg;
    dev_branch *br = &b->br[branch];
    const int N = b->N;
    if (!br->has_context)
        return ast_fail("internal: forward on CFG branch %d before its context was set", branch);
    const int tw = br->blocks && !dense && br->has_state;
    ast_shard_plan_rows(&b->plan, tw, theta); // every rank's rows: the same rule on every rank
    const int K = (int)b->plan.k[b->sh.rank];
    CUDA_TRY(cudaSetDevice(b->dev));
    const size_t nin = (size_t)c->in_dim * b->p.frames * b->p.height * b->p.width;
    const size_t nout = (size_t)c->out_dim * b->p.frames * b->p.height * b->p.width;
    memcpy(b->pin_in, xin, sizeof(float) * nin);
    *b->pin_t = t;
    CUDA_TRY(cudaMemcpyAsync(b->lat_in, b->pin_in, sizeof(float) * nin, cudaMemcpyHostToDevice,
                             b->s));
    CUDA_TRY(cudaMemcpyAsync(b->t, b->pin_t, sizeof(float), cudaMemcpyHostToDevice, b->s));
    CUDA_TRY(cudaEventRecord(b->ev_t0, b->s));
    if (b->phases) ast_phase_begin(b->phases);
    if (forward_graph(b, branch, K)) {
        ast_error_prefix("CUDA forward (branch %d, %d of %d tokens)", branch, K, N);
        cudaStreamSynchronize(b->s);
        return -1;
    }
    CUDA_TRY(cudaEventRecord(b->ev_t1, b->s));
    if (b->sh.rank > 0) { // rank 0 gathered this shard's rows and writes the whole output
        CUDA_TRY(cudaStreamSynchronize(b->s));
    } else {
        CUDA_TRY(cudaMemcpyAsync(b->pin_out, b->lat_out, sizeof(float) * nout,
                                 cudaMemcpyDeviceToHost, b->s));
        CUDA_TRY(cudaStreamSynchronize(b->s));
        memcpy(out, b->pin_out, sizeof(float) * nout);
    }
    if (b->phases && ast_phase_collect(b->phases, K)) return -1;
    if (br->blocks) br->has_state = 1;
    if (info) {
        float dev_ms = 0.f;
        CUDA_TRY(cudaEventElapsedTime(&dev_ms, b->ev_t0, b->ev_t1));
        info->tokens = N;
        info->computed = K;
        info->device_ms = dev_ms;
    }
    return 0;
}

static const ast_backend_vtable cuda_vtable = {cuda_set_context, cuda_reset, cuda_forward,
                                               cuda_destroy, cuda_device_name};

extern "C" int ast_cuda_backend_create(const ast_model *m, const ast_engine_params *p,
                                       const ast_shard *sh, void **impl,
                                       const ast_backend_vtable **vt) {
    *impl = NULL;
    *vt = NULL;
    const ast_wan_config *c = &m->cfg;
    char reason[256];
    int ndev = ast_cuda_device_count(reason, sizeof reason);
    if (ndev <= 0) return ast_fail("%s; use --backend cpu", reason);
    if (p->device < 0 || p->device >= ndev)
        return ast_fail("CUDA device %d does not exist (%d visible); pick one in [0, %d)",
                        p->device, ndev, ndev);
    if (c->head_dim != 64 && c->head_dim != 128)
        return ast_fail("the CUDA attention supports head_dim 64 or 128, this model has %d; use "
                        "--backend cpu",
                        c->head_dim);
    if (c->dim % 8 || c->ffn_dim % 8 || c->text_dim % 8 || c->dim != c->num_heads * c->head_dim)
        return ast_fail("the CUDA backend needs dim, ffn_dim and text_dim divisible by 8 and "
                        "dim = heads x head_dim (got %d, %d, %d, %d x %d); use --backend cpu",
                        c->dim, c->ffn_dim, c->text_dim, c->num_heads, c->head_dim);
    if (c->freq_dim > 12288 || c->dim > 12288)
        return ast_fail("the CUDA time embedding supports widths up to 12288 (dim %d, freq_dim "
                        "%d); use --backend cpu",
                        c->dim, c->freq_dim);
    if (p->tokenwise && p->tw.select_segments > 1 && !(sh && sh->size > 1))
        return ast_fail("per-segment token selection on one GPU is not implemented by the CUDA "
                        "backend; use --backend cpu, or run the segments as GPUs (--gpus)");
    cuda_backend *b = (cuda_backend *)ast_calloc(1, sizeof *b, "the CUDA backend");
    if (!b) return -1;
    b->m = m;
    b->p = *p;
    b->dev = p->device;
    b->gf = p->frames / c->patch[0];
    b->gh = p->height / c->patch[1];
    b->gw = p->width / c->patch[2];
    b->Ntot = b->gf * b->gh * b->gw;
    ast_rank_setup(sh, b->Ntot, c->num_heads, &b->sh, &b->plan, &b->allgather);
    b->n0 = (int)b->plan.first[b->sh.rank];
    b->N = (int)b->plan.n[b->sh.rank];
    b->D = c->dim;
    b->H = c->num_heads;
    b->hd = c->head_dim;
    b->Fd = c->ffn_dim;
    b->Lt = c->text_len;
    b->P = c->in_dim * c->patch[0] * c->patch[1] * c->patch[2];
    b->Py = c->out_dim * c->patch[0] * c->patch[1] * c->patch[2];
    b->r = p->tw.sketch_dim > 0 ? p->tw.sketch_dim : 32;
    b->layers = c->num_layers;
    b->eps = c->eps;
    b->scale = 1.0f / sqrtf((float)b->hd);
    const char *ge = getenv("ASTRAEA_CUDA_GRAPHS");
    b->graphs_on = !(ge && !strcmp(ge, "0"));
    const char *ph = getenv("ASTRAEA_CUDA_PHASES");
    const int phases_on = ph && !strcmp(ph, "1");
    if (phases_on) b->graphs_on = 0; // events are recorded eagerly

    int rc = -1;
    struct cudaDeviceProp prop;
    cudaError_t e = cudaSetDevice(b->dev);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, b->dev);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&b->s, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreate(&b->ev_t0);
    if (e == cudaSuccess) e = cudaEventCreate(&b->ev_t1);
    if (e != cudaSuccess) {
        ast_fail("cannot start CUDA device %d: %s (%s)", b->dev, cudaGetErrorString(e),
                 ast_cuda_hint(e));
        goto fail;
    }
    snprintf(b->name, sizeof b->name, "%s (cuda:%d)", prop.name, b->dev);
    b->w.blocks = (dev_block *)ast_calloc((size_t)b->layers, sizeof(dev_block), "weight table");
    if (!b->w.blocks || ast_gemm_create(&b->gemm) || ast_uploader_create(&b->up, b->s)) goto fail;
    if (ast_gemm_profiling(b->gemm)) b->graphs_on = 0; // ASTRAEA_GEMM_PROFILE: times each GEMM
    if (p->tokenwise && ast_cuda_tw_create(&b->tw, b->N)) goto fail;
    {
        arena a = {NULL, 0};
        layout_weights(b, &a); // count
        if (ast_cuda_alloc(&b->warena, a.off, "the model weights (bf16)")) goto fail;
        a.base = (char *)b->warena;
        a.off = 0;
        layout_weights(b, &a); // assign
    }
    if (phases_on && ast_phase_create(&b->phases, b->layers * 14 + 8, phase_names, PH_COUNT))
        goto fail;
    if (upload_weights(b)) {
        ast_error_prefix("loading the model onto %s", b->name);
        goto fail;
    }
    if (alloc_scratch(b)) {
        ast_error_prefix("allocating the working memory for %d tokens on %s", b->N, b->name);
        goto fail;
    }
    rc = 0;
fail:
    if (rc) {
        cuda_destroy(b);
        return -1;
    }
    *impl = b;
    *vt = &cuda_vtable;
    return 0;
}
