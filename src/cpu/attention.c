/* attention.c — fp32 CPU multi-head attention with online softmax (cpu_ops.h), flash style: no
 * Lq x Lk score matrix ever exists (a 480p one would be 51 GB).
 *
 * One task = one head x a block of BQ = 32 queries. It keeps, for its queries, the running max
 * m and sum l of the scores and an unnormalised output, and walks the keys in blocks of
 * BK = 96. Both products are the GEMM micro-kernel (simd.h) in a transposed form that needs no
 * packing of K or V:
 *     Sᵀ[BK][BQ]  = K_blk · (c·Q_blk)ᵀ     A = K rows (broadcast), B = packed (c·Q)ᵀ
 *     Oᵀ[D][BQ]  += V_blkᵀ · Pᵀ            A = Vᵀ (broadcast from V rows), B = Pᵀ as is
 * so only Q is packed, once per task, pre-multiplied by c = scale·log2(e): the scores come out
 * in log2 units and the softmax uses exp2. With queries along the vector lanes, the per-query
 * max, sum and rescale of the online softmax are plain lane-wise vector ops (softmax_step).
 * Finally o = Oᵀ / l and lse = ln 2 · (m + log2 l) = ln sum_j exp(scale·q·k_j). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu_ops.h"
#include "simd.h"

enum {
    ATT_BQ = 32, /* queries per task: two 16-wide panels; a multiple of AST_UK_NR */
    ATT_BK = 96, /* keys per block: a multiple of the micro-kernel's 6 rows */
};
#define ATT_PARALLEL_MIN_FLOP (1 << 18)

typedef struct {
    int Lq, Lk, D;
    const float *q, *k, *v;
    ptrdiff_t ldq, ldk, ldv, ldo;
    float *o, *lse;
    float qscale; /* scale · log2(e) */
    const ast_cpu_simd *simd;
} att_job;

static int imin(int a, int b) { return a < b ? a : b; }

static void att_task(const att_job *j, int h, int q0) {
    const ast_cpu_simd *s = j->simd;
    const int D = j->D, BQ = ATT_BQ, nq = imin(BQ, j->Lq - q0);
    const ptrdiff_t hD = (ptrdiff_t)h * D;
    /* scratch: qt [BQ/16][D][16] | st [BK][BQ] | ot [D][BQ] | m [BQ] | l [BQ] */
    float *qt = ast_cpu_scratch((size_t)D * BQ * 2 + (size_t)ATT_BK * BQ + 2 * BQ);
    if (!qt) { /* out of memory: NaN output, never a silently wrong one */
        for (int c = 0; c < nq; c++) {
            for (int d = 0; d < D; d++) j->o[(ptrdiff_t)(q0 + c) * j->ldo + hD + d] = NAN;
            if (j->lse) j->lse[(ptrdiff_t)h * j->Lq + q0 + c] = NAN;
        }
        return;
    }
    float *st = qt + (size_t)D * BQ, *ot = st + (size_t)ATT_BK * BQ, *m = ot + (size_t)D * BQ;
    float *l = m + BQ;

    /* (c·Q)ᵀ in 16-query panels; queries past Lq are zeros (finite scores, never written). */
    for (int c = 0; c < BQ; c++) {
        float *dst = qt + (size_t)(c / AST_UK_NR) * D * AST_UK_NR + c % AST_UK_NR;
        const float *qr = c < nq ? j->q + (ptrdiff_t)(q0 + c) * j->ldq + hD : NULL;
        for (int d = 0; d < D; d++) dst[d * AST_UK_NR] = qr ? qr[d] * j->qscale : 0.0f;
    }
    memset(ot, 0, (size_t)D * BQ * sizeof(float));
    for (int c = 0; c < BQ; c++) {
        m[c] = -INFINITY;
        l[c] = 0.0f;
    }

    for (int k0 = 0; k0 < j->Lk; k0 += ATT_BK) {
        const int bk = imin(ATT_BK, j->Lk - k0);
        const float *kb = j->k + (ptrdiff_t)k0 * j->ldk + hD;
        const float *vb = j->v + (ptrdiff_t)k0 * j->ldv + hD;
        for (int r = 0; r < bk; r += AST_UK_MR) /* Sᵀ = K_blk · (c·Q)ᵀ */
            for (int p = 0; p < BQ / AST_UK_NR; p++)
                s->ukernel(imin(AST_UK_MR, bk - r), D, kb + (ptrdiff_t)r * j->ldk, j->ldk, 1,
                           qt + (size_t)p * D * AST_UK_NR, AST_UK_NR,
                           st + (size_t)r * BQ + p * AST_UK_NR, BQ, 0, NULL);
        s->softmax_step(bk, BQ, st, m, l, ot, D); /* st becomes Pᵀ, ot rescaled */
        for (int d = 0; d < D; d += AST_UK_MR) /* Oᵀ += V_blkᵀ · Pᵀ */
            for (int p = 0; p < BQ / AST_UK_NR; p++)
                s->ukernel(imin(AST_UK_MR, D - d), bk, vb + d, 1, j->ldv, st + p * AST_UK_NR, BQ,
                           ot + (size_t)d * BQ + p * AST_UK_NR, BQ, 1, NULL);
    }

    for (int c = 0; c < nq; c++) {
        float inv = 1.0f / l[c];
        float *orow = j->o + (ptrdiff_t)(q0 + c) * j->ldo + hD;
        for (int d = 0; d < D; d++) orow[d] = ot[(size_t)d * BQ + c] * inv;
        if (j->lse)
            j->lse[(ptrdiff_t)h * j->Lq + q0 + c] = (m[c] + log2f(l[c])) * 0.69314718055994531f;
    }
}

void ast_cpu_attention(int Lq, int Lk, int H, int D, const float *q, int ldq, const float *k,
                       int ldk, const float *v, int ldv, float *o, int ldo, float *lse,
                       float scale) {
    if (Lq <= 0 || H <= 0 || D <= 0) return;
    if (Lk <= 0) { /* no keys: empty sum; output 0, lse = ln 0 */
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Lq; i++) {
                memset(o + (ptrdiff_t)i * ldo + (ptrdiff_t)h * D, 0, (size_t)D * sizeof(float));
                if (lse) lse[(ptrdiff_t)h * Lq + i] = -INFINITY;
            }
        return;
    }
    att_job j = {Lq, Lk, D, q, k, v, ldq, ldk, ldv, ldo, o, lse,
                 scale * 1.4426950408889634f, ast_cpu_simd_get()};
    const int nqb = (Lq + ATT_BQ - 1) / ATT_BQ, ntask = H * nqb;
    const int par = 4.0 * Lq * Lk * D * H >= ATT_PARALLEL_MIN_FLOP && ntask > 1;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int t = 0; t < ntask; t++) att_task(&j, t / nqb, (t % nqb) * ATT_BQ);
}
