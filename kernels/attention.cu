/* attention.cu — flash-attention forward (bf16, non-causal, fp32 LSE) for the CUDA backend.
 *
 * Two kernels behind ast_cuda_attention (kernels/attention.h has the API and the layout):
 *
 * "fa2" (attn_fa2_kernel): FlashAttention-2 on mma.sync.m16n8k16 (any sm_80+ GPU). A block of
 *   4 warps owns 64 query rows (16 a warp; Q fragments live in registers) of one head and walks
 *   the keys in tiles of 64: K/V tiles double-buffered in shared memory by cp.async (rows padded
 *   by 16 bytes, so ldmatrix is conflict-free), S = Q K^T and O += P V on the tensor cores, the
 *   online softmax in registers. Rows past Lk are zero-filled and their scores set to -inf.
 *
 * "wgmma" (attn_wgmma_kernel, sm_90a only): FlashAttention-3's design. A block of 3 warpgroups
 *   owns 128 query rows of one head. Warpgroup 0 is the producer: one thread issues TMA
 *   (cp.async.bulk.tensor) loads of Q once and of K/V tiles of 128 keys into a 2-stage ring
 *   (full/empty mbarriers per stage, K and V separate). Warpgroups 1 and 2 are consumers, 64
 *   query rows each: S = Q K^T by wgmma (both operands in shared memory, 128-byte swizzle as TMA
 *   writes it), the online softmax on the accumulator registers, P converted to bf16 in registers
 *   and fed as the A operand of O += P V (V read transposed through the descriptor). Each round
 *   issues Q K_j^T and then P_{j-1} V_{j-1}, waits for the first only and computes the softmax of
 *   tile j while the second runs (FA3's intra-warpgroup overlap; but see the SASS note below).
 *   TMA zero-fills rows past Lq/Lk; the last key tile is masked.
 *
 * "wgmma_pp" (attn_wgmma_kernel<D, true>, experimental): the same kernel plus FA3's ping-pong
 *   between the two consumer warpgroups (named barriers order their GEMM issue), see below.
 *
 * Both write O in bf16 (normalised by the row sum) and, if asked, lse = scale*max + ln(sum).
 * Scores are computed as s = q.k in fp32 and exponentiated as exp2(s*scale*log2(e) - m*...).
 *
 * Measured (tests/unit/test_gpu_attention.c --bench, NVIDIA H200, 2026-11-27, TFLOP/s =
 * 4*Lq*Lk*D*H / time, H=12, D=128; Lq x Lk = 14040^2, 32760^2, 5616 x 14040, 14040 x 512):
 *   fa2                      272  267  267  210
 *   PyTorch SDPA (cuDNN)     644  566  622  412     (torch 2.11, same GPU, [L, H, D] layout)
 *   wgmma                    not timed yet; passed every correctness case of the test there
 *   wgmma_pp                 added after that run: not yet run on a device
 * SASS of that build (cuobjdump): wgmma<128> has 32 HGMMA (64x128x16; P V as RS .tnspB), 6
 * UTMALDG, USETMAXREG 240/24, no local memory; but ptxas places the wait for P V
 * (WARPGROUP.DEPBAR.LE gsb0, 0x0) before the softmax of the next tile, so the intra-warpgroup
 * overlap is lost; only the two warpgroups overlap each other (what wgmma_pp enforces). */
#include <cuda.h> /* CUtensorMap and its enums only: the encoder is fetched from the driver */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "cuda_check.h"

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* ---- small device helpers (both kernels) ------------------------------------------------- */

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* Two floats -> bf16x2 (round to nearest even); `lo` lands in the low half (lower column). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/* Epilogue shared by both kernels for one thread's two rows (r0, r1 = r0 + 8) of a 16-row slab:
 * o holds NCHUNK 8-column chunks in the m16n8 accumulator layout (o[4c+0..1]: row r0, columns
 * 8c+2t, 8c+2t+1; o[4c+2..3]: row r1). l is this thread's partial row sum (quad-reduced here). */
template <int NCHUNK>
__device__ __forceinline__ void store_rows(const float *o, float m_r0, float m_r1, float l_r0,
                                           float l_r1, uint16_t *__restrict__ out, int ldo,
                                           float *__restrict__ lse, int Lq, int head, int r0,
                                           int col0, int t, float scale_log2) {
    const float l0 = quad_sum(l_r0), l1 = quad_sum(l_r1);
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    const int r1 = r0 + 8;
    if (r0 < Lq) {
        uint16_t *row = out + (size_t)r0 * ldo + col0 + 2 * t;
#pragma unroll
        for (int c = 0; c < NCHUNK; c++)
            *reinterpret_cast<uint32_t *>(row + 8 * c) = pack_bf16(o[4 * c] * inv0, o[4 * c + 1] * inv0);
        if (lse && t == 0) lse[(size_t)head * Lq + r0] = (m_r0 * scale_log2 + __log2f(l0)) * kLn2;
    }
    if (r1 < Lq) {
        uint16_t *row = out + (size_t)r1 * ldo + col0 + 2 * t;
#pragma unroll
        for (int c = 0; c < NCHUNK; c++)
            *reinterpret_cast<uint32_t *>(row + 8 * c) =
                pack_bf16(o[4 * c + 2] * inv1, o[4 * c + 3] * inv1);
        if (lse && t == 0) lse[(size_t)head * Lq + r1] = (m_r1 * scale_log2 + __log2f(l1)) * kLn2;
    }
}

/* Online-softmax step on one thread's share of a score tile: NCHUNK 8-column chunks in the
 * m16n8 accumulator layout (s[4c+0..1] row r0, s[4c+2..3] row r1; raw q.k). Updates the running
 * maxima m (raw units) and partial sums l, returns the factor exp(m_old - m_new) by which the
 * output accumulators must be rescaled, and overwrites s with p = exp(scale*(s - m_new)).
 * FIRST: no previous state (m = -inf, l = 0). Masked scores are -inf and give p = 0; every row
 * has at least one unmasked key in its first tile, so m_new is finite. */
template <int NCHUNK, bool FIRST>
__device__ __forceinline__ void softmax_step(float *s, float &m0, float &m1, float &l0, float &l1,
                                             float &alpha0, float &alpha1, float scale_log2) {
    float mx0 = FIRST ? -INFINITY : m0, mx1 = FIRST ? -INFINITY : m1;
#pragma unroll
    for (int c = 0; c < NCHUNK; c++) {
        mx0 = fmaxf(mx0, fmaxf(s[4 * c], s[4 * c + 1]));
        mx1 = fmaxf(mx1, fmaxf(s[4 * c + 2], s[4 * c + 3]));
    }
    mx0 = quad_max(mx0);
    mx1 = quad_max(mx1);
    alpha0 = FIRST ? 1.0f : fast_exp2((m0 - mx0) * scale_log2);
    alpha1 = FIRST ? 1.0f : fast_exp2((m1 - mx1) * scale_log2);
    m0 = mx0;
    m1 = mx1;
    const float b0 = mx0 * scale_log2, b1 = mx1 * scale_log2;
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int c = 0; c < NCHUNK; c++) {
        s[4 * c] = fast_exp2(fmaf(s[4 * c], scale_log2, -b0));
        s[4 * c + 1] = fast_exp2(fmaf(s[4 * c + 1], scale_log2, -b0));
        s[4 * c + 2] = fast_exp2(fmaf(s[4 * c + 2], scale_log2, -b1));
        s[4 * c + 3] = fast_exp2(fmaf(s[4 * c + 3], scale_log2, -b1));
        sum0 += s[4 * c] + s[4 * c + 1];
        sum1 += s[4 * c + 2] + s[4 * c + 3];
    }
    l0 = FIRST ? sum0 : fmaf(l0, alpha0, sum0);
    l1 = FIRST ? sum1 : fmaf(l1, alpha1, sum1);
}

/* Scores of columns >= Lk (tile starting at key kv0) to -inf. */
template <int NCHUNK>
__device__ __forceinline__ void mask_tail(float *s, int kv0, int Lk, int t) {
#pragma unroll
    for (int c = 0; c < NCHUNK; c++) {
        const int col = kv0 + 8 * c + 2 * t;
        if (col >= Lk) s[4 * c] = s[4 * c + 2] = -INFINITY;
        if (col + 1 >= Lk) s[4 * c + 1] = s[4 * c + 3] = -INFINITY;
    }
}

/* P (accumulator layout, fp32) -> bf16 A-operand fragments of m16n8k16 / wgmma m64nNk16: for
 * each 16-key step k, a[k][0] = (row r0, keys 2t..2t+1), a[k][1] = (r1, same keys),
 * a[k][2] = (r0, keys 2t+8..), a[k][3] = (r1, keys 2t+8..), i.e. chunks 2k and 2k+1. */
template <int KSTEPS>
__device__ __forceinline__ void scores_to_a_frags(const float *s, uint32_t (*a)[4]) {
#pragma unroll
    for (int k = 0; k < KSTEPS; k++) {
        a[k][0] = pack_bf16(s[8 * k + 0], s[8 * k + 1]);
        a[k][1] = pack_bf16(s[8 * k + 2], s[8 * k + 3]);
        a[k][2] = pack_bf16(s[8 * k + 4], s[8 * k + 5]);
        a[k][3] = pack_bf16(s[8 * k + 6], s[8 * k + 7]);
    }
}

/* ==== kernel 1: FlashAttention-2 on mma.sync ============================================== */

template <int D>
struct Fa2Cfg {
    static constexpr int BM = 64;       /* query rows per block (16 per warp) */
    static constexpr int BN = 64;       /* keys per tile */
    static constexpr int THREADS = 128; /* 4 warps */
    static constexpr int LDS = D + 8;   /* smem row pitch in elements: +16 B, conflict-free ldmatrix */
    static constexpr int TILE = BN * LDS;                  /* elements of one K or V tile */
    static constexpr size_t SMEM = (size_t)4 * TILE * 2;   /* K, V x 2 stages, bytes */
};

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    /* src-size 0 writes 16 zero bytes (rows past the end of K/V) */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                        uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t addr, uint32_t &r0, uint32_t &r1,
                                              uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void mma_16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* One [BN, D] tile (rows row0.. of a [L, ld] matrix, columns col0..col0+D-1) into shared memory
 * at `dst` (pitch LDS); rows >= L are zero-filled. */
template <int D>
__device__ __forceinline__ void fa2_load_tile(uint32_t dst, const uint16_t *__restrict__ g, int ld,
                                              int row0, int L, int col0, int tid) {
    using C = Fa2Cfg<D>;
    constexpr int CPR = D / 8; /* 16-byte chunks per row */
#pragma unroll
    for (int i = 0; i < C::BN * CPR / C::THREADS; i++) {
        const int c = tid + i * C::THREADS;
        const int r = c / CPR, cc = c % CPR;
        const bool valid = row0 + r < L;
        const uint16_t *src = g + (size_t)(valid ? row0 + r : 0) * ld + col0 + cc * 8;
        cp_async16(dst + (uint32_t)(r * C::LDS + cc * 8) * 2, src, valid);
    }
}

template <int D>
__global__ void __launch_bounds__(128, 2)
    attn_fa2_kernel(const uint16_t *__restrict__ q, int ldq, const uint16_t *__restrict__ k, int ldk,
                    const uint16_t *__restrict__ v, int ldv, uint16_t *__restrict__ o, int ldo,
                    float *__restrict__ lse, int Lq, int Lk, float scale_log2) {
    using C = Fa2Cfg<D>;
    extern __shared__ __align__(16) uint16_t fa2_smem[];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int head = blockIdx.y, col0 = head * D;
    const int r0 = blockIdx.x * C::BM + warp * 16 + g, r1 = r0 + 8;

    /* Q fragments for the warp's 16 rows, straight from global memory (rows >= Lq read as 0). */
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const int c = col0 + kk * 16 + 2 * t;
        qf[kk][0] = r0 < Lq ? *reinterpret_cast<const uint32_t *>(q + (size_t)r0 * ldq + c) : 0u;
        qf[kk][1] = r1 < Lq ? *reinterpret_cast<const uint32_t *>(q + (size_t)r1 * ldq + c) : 0u;
        qf[kk][2] = r0 < Lq ? *reinterpret_cast<const uint32_t *>(q + (size_t)r0 * ldq + c + 8) : 0u;
        qf[kk][3] = r1 < Lq ? *reinterpret_cast<const uint32_t *>(q + (size_t)r1 * ldq + c + 8) : 0u;
    }

    float oacc[D / 8 * 4];
#pragma unroll
    for (int i = 0; i < D / 8 * 4; i++) oacc[i] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    const uint32_t sbase = smem_u32(fa2_smem);
    auto k_buf = [&](int s) { return sbase + (uint32_t)(s * C::TILE) * 2; };
    auto v_buf = [&](int s) { return sbase + (uint32_t)((2 + s) * C::TILE) * 2; };
    const int nblk = (Lk + C::BN - 1) / C::BN;

    fa2_load_tile<D>(k_buf(0), k, ldk, 0, Lk, col0, tid);
    fa2_load_tile<D>(v_buf(0), v, ldv, 0, Lk, col0, tid);
    cp_async_commit();

    for (int j = 0; j < nblk; j++) {
        const int cur = j & 1;
        if (j + 1 < nblk) { /* prefetch the next tile into the other buffer (freed at the end of j-1) */
            fa2_load_tile<D>(k_buf(cur ^ 1), k, ldk, (j + 1) * C::BN, Lk, col0, tid);
            fa2_load_tile<D>(v_buf(cur ^ 1), v, ldv, (j + 1) * C::BN, Lk, col0, tid);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();

        /* S = Q K^T: 16 rows x 64 keys per warp (8 chunks of 8 keys). */
        float s[C::BN / 8 * 4];
#pragma unroll
        for (int i = 0; i < C::BN / 8 * 4; i++) s[i] = 0.0f;
        const uint32_t kb = k_buf(cur);
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
            for (int nn = 0; nn < C::BN / 16; nn++) {
                /* matrices: (keys +0..7, d +0..7), (keys +0..7, d +8..15), (keys +8..15, d +0..7),
                 * (keys +8..15, d +8..15) -> b0/b1 of chunk 2nn, then of chunk 2nn+1 */
                const int key = nn * 16 + (lane / 16) * 8 + (lane % 8);
                const int d = kk * 16 + ((lane / 8) % 2) * 8;
                uint32_t b0, b1, b2, b3;
                ldsm_x4(kb + (uint32_t)(key * C::LDS + d) * 2, b0, b1, b2, b3);
                mma_16816(&s[(2 * nn) * 4], qf[kk], b0, b1);
                mma_16816(&s[(2 * nn + 1) * 4], qf[kk], b2, b3);
            }
        }
        if ((j + 1) * C::BN > Lk) mask_tail<C::BN / 8>(s, j * C::BN, Lk, t);

        float alpha0, alpha1;
        if (j == 0)
            softmax_step<C::BN / 8, true>(s, m0, m1, l0, l1, alpha0, alpha1, scale_log2);
        else
            softmax_step<C::BN / 8, false>(s, m0, m1, l0, l1, alpha0, alpha1, scale_log2);
#pragma unroll
        for (int c = 0; c < D / 8; c++) {
            oacc[4 * c] *= alpha0;
            oacc[4 * c + 1] *= alpha0;
            oacc[4 * c + 2] *= alpha1;
            oacc[4 * c + 3] *= alpha1;
        }
        uint32_t pf[C::BN / 16][4];
        scores_to_a_frags<C::BN / 16>(s, pf);

        /* O += P V: V tile is [key][d] row-major; ldmatrix.trans gives the k x n B fragments. */
        const uint32_t vb = v_buf(cur);
#pragma unroll
        for (int kc = 0; kc < C::BN / 16; kc++) {
#pragma unroll
            for (int dd = 0; dd < D / 16; dd++) {
                /* matrices: (keys +0..7, d +0..7), (keys +8..15, d +0..7), (keys +0..7, d +8..15),
                 * (keys +8..15, d +8..15) -> b0/b1 of d-chunk 2dd, then of d-chunk 2dd+1 */
                const int mi = lane / 8;
                const int key = kc * 16 + (mi % 2) * 8 + (lane % 8);
                const int d = dd * 16 + (mi / 2) * 8;
                uint32_t b0, b1, b2, b3;
                ldsm_x4_trans(vb + (uint32_t)(key * C::LDS + d) * 2, b0, b1, b2, b3);
                mma_16816(&oacc[(2 * dd) * 4], pf[kc], b0, b1);
                mma_16816(&oacc[(2 * dd + 1) * 4], pf[kc], b2, b3);
            }
        }
        __syncthreads(); /* everyone is done with buffer `cur` before it is refilled */
    }
    store_rows<D / 8>(oacc, m0, m1, l0, l1, o, ldo, lse, Lq, head, r0, col0, t, scale_log2);
}

/* ==== kernel 2: FlashAttention-3 design on wgmma + TMA (sm_90a) =========================== */

template <int D>
struct WgCfg {
    static constexpr int BM = 128;      /* query rows per block: 64 per consumer warpgroup */
    static constexpr int BN = 128;      /* keys per tile */
    static constexpr int STAGES = D == 128 ? 2 : 3; /* K/V ring depth */
    static constexpr int THREADS = 384; /* producer warpgroup + 2 consumer warpgroups */
    static constexpr int CB = D / 64;   /* 64-column (128-byte) blocks of a row: one TMA box each */
    /* Shared memory, every tile as CB blocks of [rows][128 B] in TMA's 128-byte swizzle. */
    static constexpr uint32_t Q_CB_BYTES = BM * 128;
    static constexpr uint32_t KV_CB_BYTES = BN * 128;
    static constexpr uint32_t Q_BYTES = CB * Q_CB_BYTES;
    static constexpr uint32_t KV_BYTES = CB * KV_CB_BYTES;
    static constexpr uint32_t OFF_K = Q_BYTES;
    static constexpr uint32_t OFF_V = OFF_K + STAGES * KV_BYTES;
    static constexpr uint32_t NBAR = 1 + 4 * STAGES; /* q, then k_full, k_empty, v_full, v_empty */
    /* dynamic shared memory; +1024: the base is rounded up in-kernel. The mbarriers are static
     * shared memory, which also marks a build whose kernel body is real sm_90a code. */
    static constexpr size_t SMEM = (size_t)OFF_V + STAGES * KV_BYTES + 1024;
    static constexpr int CONSUMER_REGS = 240, PRODUCER_REGS = 24; /* 128*24 + 256*240 <= 64K */
};

/* mbarrier / TMA / wgmma wrappers (PTX ISA 8.0, sm_90a). */
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}
/* 2-D tiled TMA load of box (x = column, y = row) into shared memory; completes on `bar`.
 * Out-of-bounds elements are written as zeros and still count toward the transaction bytes. */
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map, int x, int y,
                                            uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(bar)
                 : "memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from moving reads/writes of accumulator registers across a wgmma wait. */
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
/* Named barriers 1 and 2 (0 is __syncthreads) for the two consumer warpgroups' ping-pong. */
__device__ __forceinline__ void named_bar_sync(int id, int nthreads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int nthreads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}
template <int R>
__device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R>
__device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}

/* Shared-memory matrix descriptor, 128-byte swizzle (layout type 1 in bits 62-63). Addresses
 * and offsets in bytes, stored >> 4. K-major operand (rows of 128 B along K): LBO unused (16),
 * SBO = 1024 (next 8-row group). MN-major operand (V read as B = V[key][d], d contiguous):
 * LBO = bytes between 64-column blocks, SBO = 1024 (next 8 keys). The swizzle atom must start
 * on a 1024-byte boundary (base offset 0). */
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFFu) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}

/* The 64 fp32 accumulators of an m64n128 wgmma as inline-asm outputs %0..%63. */
#define AST_WGMMA_D64_OUTPUTS(d)                                                               \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),         \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),              \
        "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),           \
        "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),           \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),           \
        "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),           \
        "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),           \
        "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),           \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]),           \
        "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]),           \
        "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

/* D[64x128] (+)= A[64x16] * B[16x128]; A and B in shared memory, K-major, 128-byte swizzle. */
__device__ __forceinline__ void wgmma_ss_m64n128k16(float (&d)[64], uint64_t desc_a,
                                                   uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, "
        "%64, %65, p, 1, 1, 0, 0;\n}\n"
        : AST_WGMMA_D64_OUTPUTS(d)
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

/* D[64x128] (+)= A[64x16] * B[16x128]; A (bf16) in registers, 4 a thread; B in shared memory,
 * MN-major (imm-trans-b = 1), 128-byte swizzle. */
__device__ __forceinline__ void wgmma_rs_m64n128k16_tb(float (&d)[64], const uint32_t (&a)[4],
                                                      uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : AST_WGMMA_D64_OUTPUTS(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}

/* D[64x64] (+)= A[64x16] * B[16x64]; A (bf16) in registers, 4 a thread; B in shared memory,
 * MN-major (imm-trans-b = 1), 128-byte swizzle. */
__device__ __forceinline__ void wgmma_rs_m64n64k16_tb(float (&d)[32], const uint32_t (&a)[4],
                                                      uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
          "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}


/* S[64 x 128] = Q[64 x D] K[128 x D]^T for one consumer warpgroup; k-step kk reads columns
 * 16kk.. of both tiles: block kk/4 of 64 columns, +32 bytes per 16 columns inside the swizzled
 * 128-byte row (the hardware applies the XOR to the final address). */
template <int D>
__device__ __forceinline__ void issue_qk(float (&s)[64], uint64_t q_desc, uint64_t k_desc) {
    using C = WgCfg<D>;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const uint32_t qo = ((kk / 4) * C::Q_CB_BYTES + (kk % 4) * 32) >> 4;
        const uint32_t ko = ((kk / 4) * C::KV_CB_BYTES + (kk % 4) * 32) >> 4;
        wgmma_ss_m64n128k16(s, q_desc + qo, k_desc + ko, kk > 0);
    }
    wgmma_commit();
}

/* O[64 x D] += P[64 x 128] V[128 x D]; P in registers (bf16 A fragments), key step kk reads V
 * rows 16kk.. (16 rows x 128 B = 2048 bytes further). */
template <int D>
__device__ __forceinline__ void issue_pv(float (&o)[D / 2], const uint32_t (&p)[8][4],
                                         uint64_t v_desc) {
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
        if constexpr (D == 128)
            wgmma_rs_m64n128k16_tb(o, p[kk], v_desc + ((kk * 2048u) >> 4), 1);
        else
            wgmma_rs_m64n64k16_tb(o, p[kk], v_desc + ((kk * 2048u) >> 4), 1);
    }
    wgmma_commit();
}

template <int N>
__device__ __forceinline__ void rescale_rows(float (&o)[N], float a0, float a1) {
#pragma unroll
    for (int c = 0; c < N / 4; c++) {
        o[4 * c] *= a0;
        o[4 * c + 1] *= a0;
        o[4 * c + 2] *= a1;
        o[4 * c + 3] *= a1;
    }
}

/* PINGPONG (variant "wgmma_pp", experimental): FA3's inter-warpgroup schedule. Each consumer
 * issues its GEMMs of a round (Q K_j^T and P_{j-1} V_{j-1}) only after the other consumer issued
 * its own (named barrier 1 + cw: bar.sync by this warpgroup, bar.arrive by the other), so the
 * tensor cores alternate between the warpgroups and one's softmax runs under the other's GEMMs.
 * Rounds per warpgroup: nblk + 1 (tile 0, tiles 1..nblk-1, the last P V); warpgroup 1 pre-arrives
 * once so warpgroup 0 goes first, and skips its last arrive, so both barriers end balanced. */
template <int D, bool PINGPONG>
__global__ void __launch_bounds__(384, 1)
    attn_wgmma_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                      const __grid_constant__ CUtensorMap tm_v, uint16_t *__restrict__ o, int ldo,
                      float *__restrict__ lse, int Lq, int Lk, float scale_log2) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using C = WgCfg<D>;
    constexpr int S = C::STAGES;
    extern __shared__ __align__(1024) uint8_t wg_smem[];
    const uint32_t base = (smem_u32(wg_smem) + 1023u) & ~1023u; /* swizzle atoms need 1024 B */
    const uint32_t sQ = base, sK = base + C::OFF_K, sV = base + C::OFF_V;
    __shared__ __align__(8) uint64_t wg_bars[C::NBAR];
    const uint32_t bar_q = smem_u32(wg_bars);
    auto k_full = [&](int s) { return bar_q + 8u * (1 + s); };
    auto k_empty = [&](int s) { return bar_q + 8u * (1 + S + s); };
    auto v_full = [&](int s) { return bar_q + 8u * (1 + 2 * S + s); };
    auto v_empty = [&](int s) { return bar_q + 8u * (1 + 3 * S + s); };

    const int head = blockIdx.y, m_base = blockIdx.x * C::BM;
    const int nblk = (Lk + C::BN - 1) / C::BN;
    const int wg = threadIdx.x / 128;

    if (threadIdx.x == 0) {
        mbar_init(bar_q, 1);
        for (int s = 0; s < S; s++) {
            mbar_init(k_full(s), 1);  /* the producer's arrive.expect_tx */
            mbar_init(k_empty(s), 2); /* one arrival per consumer warpgroup */
            mbar_init(v_full(s), 1);
            mbar_init(v_empty(s), 2);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        /* ---- producer: one thread streams Q, then K_j and V_j into stage j % S ---- */
        setmaxnreg_dec<C::PRODUCER_REGS>();
        if (threadIdx.x == 0) {
            const int x0 = head * D;
            mbar_expect_tx(bar_q, C::Q_BYTES);
#pragma unroll
            for (int cb = 0; cb < C::CB; cb++)
                tma_load_2d(sQ + cb * C::Q_CB_BYTES, &tm_q, x0 + 64 * cb, m_base, bar_q);
            for (int j = 0; j < nblk; j++) {
                const int st = j % S;
                const uint32_t ph = (uint32_t)(j / S) & 1u;
                /* first pass: waiting for parity 1 of a fresh barrier returns at once */
                mbar_wait(k_empty(st), ph ^ 1u);
                mbar_expect_tx(k_full(st), C::KV_BYTES);
#pragma unroll
                for (int cb = 0; cb < C::CB; cb++)
                    tma_load_2d(sK + st * C::KV_BYTES + cb * C::KV_CB_BYTES, &tm_k, x0 + 64 * cb,
                                j * C::BN, k_full(st));
                mbar_wait(v_empty(st), ph ^ 1u);
                mbar_expect_tx(v_full(st), C::KV_BYTES);
#pragma unroll
                for (int cb = 0; cb < C::CB; cb++)
                    tma_load_2d(sV + st * C::KV_BYTES + cb * C::KV_CB_BYTES, &tm_v, x0 + 64 * cb,
                                j * C::BN, v_full(st));
            }
        }
    } else {
        /* ---- consumers: warpgroup cw owns query rows cw*64 .. cw*64+63 of the block ---- */
        setmaxnreg_inc<C::CONSUMER_REGS>();
        const int cw = wg - 1;
        const int tid = threadIdx.x - 128 * wg;
        const int warp = tid / 32, lane = tid % 32, t = lane % 4;
        const int r0 = m_base + cw * 64 + warp * 16 + lane / 4; /* and r0 + 8 */
        const bool signal = tid == 0; /* releases a stage for the warpgroup */
        const int my_turn = 1 + cw, other_turn = 2 - cw; /* PINGPONG named barriers */

        const uint64_t q_desc = sw128_desc(sQ + cw * 64 * 128, 16, 1024);
        const uint64_t k_desc = sw128_desc(sK, 16, 1024);
        const uint64_t v_desc = sw128_desc(sV, C::KV_CB_BYTES, 1024);
        constexpr uint32_t STAGE_DESC = C::KV_BYTES >> 4; /* descriptor step between stages */

        float oacc[D / 2];
#pragma unroll
        for (int i = 0; i < D / 2; i++) oacc[i] = 0.0f;
        float s[64];
        uint32_t p[8][4];
        float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f, alpha0 = 1.0f, alpha1 = 1.0f;

        if constexpr (PINGPONG)
            if (cw == 1) named_bar_arrive(1, 256); /* warpgroup 0 issues first */
        mbar_wait(bar_q, 0);
        /* tile 0: S_0, softmax, P_0 */
        mbar_wait(k_full(0), 0);
        if constexpr (PINGPONG) named_bar_sync(my_turn, 256);
        issue_qk<D>(s, q_desc, k_desc);
        if constexpr (PINGPONG) named_bar_arrive(other_turn, 256);
        wgmma_wait<0>();
        fence_regs(s);
        if (signal) mbar_arrive(k_empty(0));
        if (C::BN > Lk) mask_tail<16>(s, 0, Lk, t);
        softmax_step<16, true>(s, m0, m1, l0, l1, alpha0, alpha1, scale_log2);
        scores_to_a_frags<8>(s, p);

        /* tile j: S_j = Q K_j^T runs on the tensor cores while ... O += P_{j-1} V_{j-1} is queued
         * behind it, then the softmax of S_j overlaps with that P V. */
        for (int j = 1; j < nblk; j++) {
            const int sk = j % S, sv = (j - 1) % S;
            mbar_wait(k_full(sk), (uint32_t)(j / S) & 1u);
            if constexpr (PINGPONG) named_bar_sync(my_turn, 256);
            issue_qk<D>(s, q_desc, k_desc + sk * STAGE_DESC);
            rescale_rows(oacc, alpha0, alpha1); /* O to the running max of tile j-1 */
            mbar_wait(v_full(sv), (uint32_t)((j - 1) / S) & 1u);
            issue_pv<D>(oacc, p, v_desc + sv * STAGE_DESC);
            if constexpr (PINGPONG) named_bar_arrive(other_turn, 256);
            wgmma_wait<1>(); /* S_j done (P V may still run) */
            fence_regs(s);
            if (signal) mbar_arrive(k_empty(sk));
            if ((j + 1) * C::BN > Lk) mask_tail<16>(s, j * C::BN, Lk, t);
            softmax_step<16, false>(s, m0, m1, l0, l1, alpha0, alpha1, scale_log2);
            wgmma_wait<0>(); /* P_{j-1} V_{j-1} done: p and V stage free */
            fence_regs(oacc);
            if (signal) mbar_arrive(v_empty(sv));
            scores_to_a_frags<8>(s, p);
        }
        rescale_rows(oacc, alpha0, alpha1);
        const int sv = (nblk - 1) % S;
        mbar_wait(v_full(sv), (uint32_t)((nblk - 1) / S) & 1u);
        if constexpr (PINGPONG) named_bar_sync(my_turn, 256);
        issue_pv<D>(oacc, p, v_desc + sv * STAGE_DESC);
        if constexpr (PINGPONG)
            if (cw == 0) named_bar_arrive(other_turn, 256); /* warpgroup 1 has one round left */
        wgmma_wait<0>();
        fence_regs(oacc);
        if (signal) mbar_arrive(v_empty(sv));
        store_rows<D / 8>(oacc, m0, m1, l0, l1, o, ldo, lse, Lq, head, r0, head * D, t, scale_log2);
    }
#else
    /* Built without sm_90a code: the host never launches this (see wgmma_available). */
    (void)tm_q, (void)tm_k, (void)tm_v, (void)o, (void)ldo, (void)lse, (void)Lq, (void)Lk,
        (void)scale_log2;
#endif
}


/* ==== host side =========================================================================== */

enum { ATTN_AUTO = 0, ATTN_FA2 = 1, ATTN_WGMMA = 2, ATTN_WGMMA_PP = 3 };
static int g_attn_forced = ATTN_AUTO; /* set by ast_cuda_attention_variant */

static int parse_variant(const char *name) {
    if (!name || !*name || strcmp(name, "auto") == 0) return ATTN_AUTO;
    if (strcmp(name, "fa2") == 0) return ATTN_FA2;
    if (strcmp(name, "wgmma") == 0) return ATTN_WGMMA;
    if (strcmp(name, "wgmma_pp") == 0) return ATTN_WGMMA_PP;
    return -1;
}

/* Per device: can the wgmma kernel run? 0 unknown, 1 yes, -1 no (reason kept). */
#define ATTN_MAX_DEVICES 64
static signed char g_wgmma_ok[ATTN_MAX_DEVICES];
static char g_wgmma_why[ATTN_MAX_DEVICES][200];

static int wgmma_probe(int dev, char *why, size_t len) {
    int major = 0, minor = 0, optin = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why, len, "cannot query CUDA device %d", dev);
        return 0;
    }
    if (major != 9 || minor != 0) {
        snprintf(why, len, "CUDA device %d is sm_%d%d; the wgmma kernel needs an sm_90 (Hopper) GPU",
                 dev, major, minor);
        return 0;
    }
    /* The kernel's body (and its static shared memory, the mbarriers) exists only in sm_90a code;
     * a build for another target leaves an empty stub. */
    cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, attn_wgmma_kernel<128, false>);
    if (e != cudaSuccess || fa.binaryVersion < 90 || fa.sharedSizeBytes < 8) {
        (void)cudaGetLastError();
        snprintf(why, len,
                 "this build has no sm_90a code for the wgmma kernel (%s); build with "
                 "-Dgpu_arch='-gencode=arch=compute_90a,code=sm_90a'",
                 e != cudaSuccess ? cudaGetErrorString(e) : "stub only");
        return 0;
    }
    if ((size_t)optin < WgCfg<128>::SMEM + fa.sharedSizeBytes) {
        snprintf(why, len, "CUDA device %d allows %d bytes of shared memory a block; wgmma needs %zu",
                 dev, optin, WgCfg<128>::SMEM + fa.sharedSizeBytes);
        return 0;
    }
    return 1;
}

static int wgmma_available_on(int dev, const char **why) {
    if (dev < 0 || dev >= ATTN_MAX_DEVICES) {
        *why = "device index out of range";
        return 0;
    }
    if (g_wgmma_ok[dev] == 0) /* benign race: every thread computes the same answer */
        g_wgmma_ok[dev] = wgmma_probe(dev, g_wgmma_why[dev], sizeof g_wgmma_why[dev]) ? 1 : -1;
    *why = g_wgmma_why[dev];
    return g_wgmma_ok[dev] == 1;
}

typedef CUresult (*TmapEncodeFn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                 const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                 const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                 CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled from the driver, without linking libcuda. */
static int get_tmap_encoder(TmapEncodeFn *out) {
    static TmapEncodeFn cached = NULL;
    if (!cached) {
        void *p = NULL;
        cudaDriverEntryPointQueryResult qr = cudaDriverEntryPointSymbolNotFound;
        CUDA_TRY(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000,
                                                  cudaEnableDefault, &qr));
        if (qr != cudaDriverEntryPointSuccess || !p)
            return ast_fail("ast_cuda_attention: the CUDA driver has no cuTensorMapEncodeTiled "
                            "(needs a CUDA 12 or newer driver); update the driver or set "
                            "ASTRAEA_ATTN=fa2");
        cached = (TmapEncodeFn)p;
    }
    *out = cached;
    return 0;
}

/* [L, ld] bf16 matrix viewed as a 2-D tensor of H*D columns and L rows, row pitch ld; boxes of
 * 64 columns (128 bytes, the swizzle width) x box_rows rows; rows past L read as zeros. */
static int make_tmap(CUtensorMap *map, TmapEncodeFn enc, const void *ptr, int ld, int L, int hd,
                     int box_rows, const char *what) {
    cuuint64_t dims[2] = {(cuuint64_t)hd, (cuuint64_t)L};
    cuuint64_t strides[1] = {(cuuint64_t)ld * 2};
    cuuint32_t box[2] = {64, (cuuint32_t)box_rows};
    cuuint32_t elem_strides[2] = {1, 1};
    CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void *>(ptr), dims, strides,
                     box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return ast_fail("ast_cuda_attention: cuTensorMapEncodeTiled failed for %s (CUresult %d; "
                        "ptr=%p rows=%d ld=%d H*D=%d); set ASTRAEA_ATTN=fa2 to bypass and report it",
                        what, (int)r, ptr, L, ld, hd);
    return 0;
}

template <int D, bool PP>
static int launch_wgmma(const void *q, int ldq, const void *k, int ldk, const void *v, int ldv,
                        void *o, int ldo, float *lse, int Lq, int Lk, int H, float scale_log2,
                        cudaStream_t stream) {
    using C = WgCfg<D>;
    TmapEncodeFn enc;
    if (get_tmap_encoder(&enc)) return -1;
    CUtensorMap tq, tk, tv; /* 64-byte aligned type; passed by value as __grid_constant__ */
    if (make_tmap(&tq, enc, q, ldq, Lq, H * D, C::BM, "q") ||
        make_tmap(&tk, enc, k, ldk, Lk, H * D, C::BN, "k") ||
        make_tmap(&tv, enc, v, ldv, Lk, H * D, C::BN, "v"))
        return -1;
    CUDA_TRY(cudaFuncSetAttribute(attn_wgmma_kernel<D, PP>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
    dim3 grid((unsigned)((Lq + C::BM - 1) / C::BM), (unsigned)H);
    attn_wgmma_kernel<D, PP><<<grid, C::THREADS, C::SMEM, stream>>>(
        tq, tk, tv, static_cast<uint16_t *>(o), ldo, lse, Lq, Lk, scale_log2);
    CUDA_TRY_LAUNCH();
    return 0;
}

template <int D>
static int launch_fa2(const void *q, int ldq, const void *k, int ldk, const void *v, int ldv,
                      void *o, int ldo, float *lse, int Lq, int Lk, int H, float scale_log2,
                      cudaStream_t stream) {
    using C = Fa2Cfg<D>;
    CUDA_TRY(cudaFuncSetAttribute(attn_fa2_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)C::SMEM));
    dim3 grid((unsigned)((Lq + C::BM - 1) / C::BM), (unsigned)H);
    attn_fa2_kernel<D><<<grid, C::THREADS, C::SMEM, stream>>>(
        static_cast<const uint16_t *>(q), ldq, static_cast<const uint16_t *>(k), ldk,
        static_cast<const uint16_t *>(v), ldv, static_cast<uint16_t *>(o), ldo, lse, Lq, Lk,
        scale_log2);
    CUDA_TRY_LAUNCH();
    return 0;
}

/* 16-byte rows: pointer 16-byte aligned, ld a multiple of 8 elements, ld >= H*D. */
static int check_operand(const char *name, const void *p, int ld, int hd) {
    if (!p) return ast_fail("ast_cuda_attention: %s is NULL", name);
    if (ld < hd)
        return ast_fail("ast_cuda_attention: ld%s=%d is smaller than H*D=%d (a row holds every head)",
                        name, ld, hd);
    if (((uintptr_t)p & 15u) != 0 || (ld & 7) != 0)
        return ast_fail("ast_cuda_attention: %s=%p with ld%s=%d: rows must be 16-byte aligned "
                        "(pointer on a 16-byte boundary, ld a multiple of 8 bf16 elements)",
                        name, p, name, ld);
    return 0;
}

} /* namespace */

extern "C" int ast_cuda_attention_variant(const char *name) {
    const int v = parse_variant(name);
    if (v < 0)
        return ast_fail("unknown attention kernel '%s' (use fa2, wgmma, wgmma_pp or auto)", name);
    g_attn_forced = v;
    return 0;
}

extern "C" int ast_cuda_attention_wgmma_available(char *reason, int reason_len) {
    int dev = 0;
    const char *why = "cannot query the current CUDA device";
    int ok = cudaGetDevice(&dev) == cudaSuccess && wgmma_available_on(dev, &why);
    if (!ok && reason && reason_len > 0) snprintf(reason, (size_t)reason_len, "%s", why);
    (void)cudaGetLastError();
    return ok;
}

extern "C" int ast_cuda_attention(const void *q, int ldq, const void *k, int ldk, const void *v,
                                  int ldv, void *o, int ldo, float *lse, int Lq, int Lk, int H,
                                  int D, float scale, cudaStream_t stream) {
    if (D != 64 && D != 128)
        return ast_fail("ast_cuda_attention: head dim D=%d is not supported (D must be 64 or 128)", D);
    if (Lq < 1 || Lk < 1 || H < 1)
        return ast_fail("ast_cuda_attention: empty shape Lq=%d Lk=%d H=%d (each must be >= 1)", Lq,
                        Lk, H);
    if (H > 65535 || H > INT32_MAX / 3 / D)
        return ast_fail("ast_cuda_attention: H=%d heads is too many (at most 65535)", H);
    if (!(scale > 0.0f) || !isfinite(scale))
        return ast_fail("ast_cuda_attention: scale=%g must be positive and finite", (double)scale);
    const int hd = H * D;
    if (check_operand("q", q, ldq, hd) || check_operand("k", k, ldk, hd) ||
        check_operand("v", v, ldv, hd) || check_operand("o", o, ldo, hd))
        return -1;
    if (((uintptr_t)lse & 3u) != 0)
        return ast_fail("ast_cuda_attention: lse=%p is not 4-byte aligned", (void *)lse);

    int variant = g_attn_forced;
    if (variant == ATTN_AUTO) {
        const char *env = getenv("ASTRAEA_ATTN");
        variant = parse_variant(env);
        if (variant < 0)
            return ast_fail("ASTRAEA_ATTN='%s' is not an attention kernel (use fa2, wgmma, wgmma_pp "
                            "or auto)",
                            env);
    }
    int dev = 0;
    CUDA_TRY(cudaGetDevice(&dev));
    const char *why = "";
    const int wgmma_ok = wgmma_available_on(dev, &why);
    /* default: the ping-pong wgmma kernel, measured fastest at every Wan shape on an H200
     * (results/attention.json: 663 vs 619 TFLOP/s at 14,040², 635 vs 475 at 5,616x14,040) */
    if (variant == ATTN_AUTO) variant = wgmma_ok ? ATTN_WGMMA_PP : ATTN_FA2;
    if ((variant == ATTN_WGMMA || variant == ATTN_WGMMA_PP) && !wgmma_ok)
        return ast_fail("ast_cuda_attention: the wgmma kernel was asked for but cannot run: %s "
                        "(use ASTRAEA_ATTN=fa2)",
                        why);

    const float sl2 = scale * kLog2e;
#define AST_ATTN_ARGS q, ldq, k, ldk, v, ldv, o, ldo, lse, Lq, Lk, H, sl2, stream
    if (variant == ATTN_WGMMA)
        return D == 128 ? launch_wgmma<128, false>(AST_ATTN_ARGS) : launch_wgmma<64, false>(AST_ATTN_ARGS);
    if (variant == ATTN_WGMMA_PP)
        return D == 128 ? launch_wgmma<128, true>(AST_ATTN_ARGS) : launch_wgmma<64, true>(AST_ATTN_ARGS);
    return D == 128 ? launch_fa2<128>(AST_ATTN_ARGS) : launch_fa2<64>(AST_ATTN_ARGS);
#undef AST_ATTN_ARGS
}
