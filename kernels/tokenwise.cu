// tokenwise.cu — the token-wise step on the GPU (see kernels/tokenwise.h): row gather/scatter,
// the random-projection sketch, scores, top-K by a one-block radix select, and the commit of the
// computed rows / reuse of the cached ones.
#include "kernels/tokenwise.h"

#include <math.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "device_util.cuh"

extern "C" {
#include "src/tokenwise.h" // AST_SKIP_EXP_CAP: the same cap as the CPU rule
}

// ---- gather / scatter -----------------------------------------------------------------------------

// Copies K rows of `units` V-sized units; gather: dst[r] <- src[idx[r]], scatter: dst[idx[r]] <- src[r].
template <typename V, bool GATHER>
static __global__ void rows_copy_kernel(int K, int units, const int32_t *__restrict__ idx,
                                        const char *__restrict__ src, int64_t lds_bytes,
                                        char *__restrict__ dst, int64_t ldd_bytes) {
    const int64_t total = (int64_t)K * units;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / units, u = i - r * units;
        const int64_t sr = GATHER ? idx[r] : r, dr = GATHER ? r : idx[r];
        reinterpret_cast<V *>(dst + dr * ldd_bytes)[u] =
            reinterpret_cast<const V *>(src + sr * lds_bytes)[u];
    }
}

template <bool GATHER>
static int rows_copy(int K, int C, const int32_t *idx, const void *src, int lds, void *dst,
                     int ldd, int elem_bytes, cudaStream_t s) {
    if (K <= 0) return 0;
    if ((elem_bytes != 2 && elem_bytes != 4) || C <= 0 || lds < C || ldd < C || !idx)
        return ast_fail("internal: %s of %d rows of %d x %d bytes (ld %d, %d)",
                        GATHER ? "gather" : "scatter", K, C, elem_bytes, lds, ldd);
    const int64_t row = (int64_t)C * elem_bytes, ls = (int64_t)lds * elem_bytes,
                  ld = (int64_t)ldd * elem_bytes;
    const int w = ast_copy_unit(elem_bytes, row, ls, ld, src, dst);
    const int units = (int)(row / w);
    const unsigned blocks = ast_blocks((int64_t)K * units, 256);
    const char *sp = (const char *)src;
    char *dp = (char *)dst;
    switch (w) {
    case 16: rows_copy_kernel<uint4, GATHER><<<blocks, 256, 0, s>>>(K, units, idx, sp, ls, dp, ld); break;
    case 8: rows_copy_kernel<uint2, GATHER><<<blocks, 256, 0, s>>>(K, units, idx, sp, ls, dp, ld); break;
    case 4: rows_copy_kernel<uint32_t, GATHER><<<blocks, 256, 0, s>>>(K, units, idx, sp, ls, dp, ld); break;
    default: rows_copy_kernel<uint16_t, GATHER><<<blocks, 256, 0, s>>>(K, units, idx, sp, ls, dp, ld); break;
    }
    CUDA_TRY_LAUNCH();
    return 0;
}

int ast_cuda_gather_rows(int K, int C, const int32_t *idx, const void *src, int lds, void *dst,
                         int ldd, int elem_bytes, cudaStream_t s) {
    return rows_copy<true>(K, C, idx, src, lds, dst, ldd, elem_bytes, s);
}

int ast_cuda_scatter_rows(int K, int C, const int32_t *idx, const void *src, int lds, void *dst,
                          int ldd, int elem_bytes, cudaStream_t s) {
    return rows_copy<false>(K, C, idx, src, lds, dst, ldd, elem_bytes, s);
}

// ---- sketch ---------------------------------------------------------------------------------------

enum { SK_ROWS = 64, SK_COLS = 32, SK_KC = 64 };

// Block: 64 tokens x 32 sketch columns; 8 warps of 8 tokens, lane = column. x and P tiles of 64
// along D pass through shared memory; x reads are warp-broadcast float4, P reads conflict-free.
static __global__ void __launch_bounds__(256)
    sketch_kernel(int N, int D, int r, const float *__restrict__ x, int ldx,
                  const float *__restrict__ P, float *__restrict__ sk) {
    __shared__ __align__(16) float xs[SK_ROWS][SK_KC + 4];
    __shared__ float ps[SK_KC][SK_COLS + 1];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int row0 = blockIdx.x * SK_ROWS, j0 = blockIdx.y * SK_COLS;
    float acc[8];
#pragma unroll
    for (int q = 0; q < 8; q++) acc[q] = 0.f;
    for (int k0 = 0; k0 < D; k0 += SK_KC) {
#pragma unroll 4
        for (int i = 0; i < SK_ROWS * SK_KC / 256; i++) {
            const int e = tid + i * 256, rr = e / SK_KC, cc = e % SK_KC;
            const int gr = row0 + rr, gc = k0 + cc;
            xs[rr][cc] = (gr < N && gc < D) ? x[(int64_t)gr * ldx + gc] : 0.f;
        }
#pragma unroll 4
        for (int i = 0; i < SK_COLS * SK_KC / 256; i++) {
            const int e = tid + i * 256, jj = e / SK_KC, cc = e % SK_KC;
            const int gj = j0 + jj, gc = k0 + cc;
            ps[cc][jj] = (gj < r && gc < D) ? P[(int64_t)gj * D + gc] : 0.f;
        }
        __syncthreads();
#pragma unroll 4
        for (int kk = 0; kk < SK_KC; kk += 4) {
            const float p0 = ps[kk][lane], p1 = ps[kk + 1][lane], p2 = ps[kk + 2][lane],
                        p3 = ps[kk + 3][lane];
#pragma unroll
            for (int q = 0; q < 8; q++) {
                const float4 v = *reinterpret_cast<const float4 *>(&xs[warp * 8 + q][kk]);
                acc[q] += v.x * p0 + v.y * p1 + v.z * p2 + v.w * p3;
            }
        }
        __syncthreads();
    }
    const int j = j0 + lane;
#pragma unroll
    for (int q = 0; q < 8; q++) {
        const int row = row0 + warp * 8 + q;
        if (row < N && j < r) sk[(int64_t)row * r + j] = acc[q];
    }
}

int ast_cuda_tw_sketch(int N, int D, int r, const float *x, int ldx, const float *P, float *sk,
                       cudaStream_t s) {
    if (N <= 0) return 0;
    if (D <= 0 || r <= 0 || ldx < D)
        return ast_fail("internal: sketch with D=%d, r=%d, ldx=%d", D, r, ldx);
    dim3 grid((unsigned)((N + SK_ROWS - 1) / SK_ROWS), (unsigned)((r + SK_COLS - 1) / SK_COLS));
    sketch_kernel<<<grid, 256, 0, s>>>(N, D, r, x, ldx, P, sk);
    CUDA_TRY_LAUNCH();
    return 0;
}

// ---- selection scratch -------------------------------------------------------------------------------

struct ast_cuda_tw {
    int n_max;
    float *delta; // [n_max] Δ of the last scores call
};

int ast_cuda_tw_create(ast_cuda_tw **out, int n_max) {
    *out = NULL;
    if (n_max <= 0) return ast_fail("internal: token-wise selection for %d tokens", n_max);
    ast_cuda_tw *t = (ast_cuda_tw *)ast_calloc(1, sizeof *t, "the token selection");
    if (!t) return -1;
    t->n_max = n_max;
    if (ast_cuda_alloc((void **)&t->delta, (size_t)n_max * sizeof(float), "token deltas")) {
        ast_cuda_tw_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void ast_cuda_tw_free(ast_cuda_tw *t) {
    if (!t) return;
    ast_cuda_free(t->delta);
    free(t);
}

// ---- scores -------------------------------------------------------------------------------------------

// w_β·exp(s) for s = 0..cap, computed on the host with the same expf as the CPU rule.
struct skip_table {
    float v[AST_SKIP_EXP_CAP + 1];
};

// w_β·exp(min(skip, cap)): the skip term of the score, as the CPU rule.
static __device__ __forceinline__ float skip_score(const skip_table &tab, int32_t skip) {
    const int s = skip < AST_SKIP_EXP_CAP ? skip : AST_SKIP_EXP_CAP;
    return tab.v[s < 0 ? 0 : s];
}

static skip_table skip_table_of(const ast_tokenwise_opts *o) {
    skip_table tab;
    for (int i = 0; i <= AST_SKIP_EXP_CAP; i++) tab.v[i] = ast_tw_skip_term(o, i);
    return tab;
}

// Δ_i = sqrt(Σ_c (a_c − b_c)²) · (1/√r), summed in order c = 0..r−1 without contraction, exactly
// as src/tokenwise.c does.
static __global__ void delta_kernel(int n, int r, const float *__restrict__ sk,
                                    const float *__restrict__ ref, float inv_sqrt_r,
                                    float *__restrict__ delta) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float *a = sk + (int64_t)i * r, *b = ref + (int64_t)i * r;
        float acc = 0.f;
        for (int c = 0; c < r; c++) {
            const float d = __fsub_rn(a[c], b[c]);
            acc = __fadd_rn(acc, __fmul_rn(d, d));
        }
        delta[i] = __fmul_rn(__fsqrt_rn(acc), inv_sqrt_r);
    }
}

enum { SCORE_THREADS = 1024 };

// One block: the mean of Δ (double, fixed reduction order), then every score.
static __global__ void __launch_bounds__(SCORE_THREADS)
    score_kernel(int n, const float *__restrict__ delta, const float *__restrict__ lse,
                 const int32_t *__restrict__ skip, float w_alpha, int normalize, skip_table tab,
                 float *__restrict__ scores) {
    __shared__ double red[SCORE_THREADS / 32];
    __shared__ float inv_mean_s;
    const int tid = threadIdx.x;
    double sum = 0.0;
    if (delta)
        for (int i = tid; i < n; i += SCORE_THREADS) sum += (double)delta[i];
    sum = ast_warp_sum_d(sum);
    if ((tid & 31) == 0) red[tid >> 5] = sum;
    __syncthreads();
    if (tid == 0) {
        double t = 0.0;
        for (int w = 0; w < SCORE_THREADS / 32; w++) t += red[w];
        float inv = 1.0f;
        if (normalize) inv = t > 0 ? (float)((double)n / t) : 0.0f;
        inv_mean_s = inv;
    }
    __syncthreads();
    const float inv_mean = inv_mean_s;
    for (int i = tid; i < n; i += SCORE_THREADS) {
        // (w_α · lse) · (Δ · inv_mean) + w_β·exp(s), each operation rounded as in C; with no Δ
        // (w_α = 0) just w_β·exp(s), as the CPU rule
        const float sk = skip_score(tab, skip[i]);
        const float v =
            delta ? __fadd_rn(__fmul_rn(__fmul_rn(w_alpha, lse[i]), __fmul_rn(delta[i], inv_mean)),
                              sk)
                  : sk;
        // NaN -> all-ones bits: the smallest key of a descending float radix sort (sorted last)
        scores[i] = isnan(v) ? __int_as_float(-1) : v;
    }
}

int ast_cuda_tw_scores(ast_cuda_tw *t, int n, int r, const float *sketch, const float *refsketch,
                       const float *lse, const int32_t *skip, const ast_tokenwise_opts *o,
                       float *scores, cudaStream_t s) {
    if (n <= 0) return 0;
    if (n > t->n_max || r <= 0)
        return ast_fail("internal: scores for %d tokens (capacity %d), sketch width %d", n,
                        t->n_max, r);
    const skip_table tab = skip_table_of(o);
    const float inv_sqrt_r = 1.0f / sqrtf((float)r);
    const int use_delta = o->w_alpha != 0; // else Δ does not enter the score: no sketch read
    if (use_delta) {
        delta_kernel<<<ast_blocks(n, 256), 256, 0, s>>>(n, r, sketch, refsketch, inv_sqrt_r,
                                                        t->delta);
        CUDA_TRY_LAUNCH();
    }
    score_kernel<<<1, SCORE_THREADS, 0, s>>>(n, use_delta ? t->delta : NULL, lse, skip,
                                             o->w_alpha, o->delta_normalize, tab, scores);
    CUDA_TRY_LAUNCH();
    return 0;
}

// ---- top-K ------------------------------------------------------------------------------------------

// One block finds the k-th largest key by a radix select (4 passes of 8 bits, MSB first, over
// the keys that match the prefix found so far), then takes every key above it and the first
// `need` keys equal to it in index order, writing sel in ascending token order. ~20 µs for
// 14,040 tokens, where the stable sort + mark + select of CUB it replaces took ~80.
enum { TK_THREADS = 1024, TK_BINS = 256 };

// Larger score -> larger key; −0 and +0 are one key (the CPU compares with ==); the all-ones
// NaN of ast_cuda_tw_scores -> 0, below every number.
static __device__ __forceinline__ uint32_t tk_key(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u << 1) == 0) u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Exclusive prefix sum of v over the block (TK_THREADS threads); every thread calls it.
static __device__ int tk_block_scan(int v, int *warp_sums) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int incl = ast_warp_scan(v);
    __syncthreads(); // warp_sums may still be read by a previous scan
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        const int w = lane < TK_THREADS / 32 ? warp_sums[lane] : 0, wi = ast_warp_scan(w);
        if (lane < TK_THREADS / 32) warp_sums[lane] = wi - w; // exclusive, per warp
    }
    __syncthreads();
    return warp_sums[warp] + incl - v;
}

// Key sources: the scores as written, or the score of a skip count (w_α = 0: S = w_β·exp(s)).
struct score_keys {
    const float *__restrict__ s;
    __device__ unsigned operator()(int i) const { return tk_key(s[i]); }
};
struct skip_keys {
    const int32_t *__restrict__ skip;
    skip_table tab;
    __device__ unsigned operator()(int i) const {
        return tk_key(skip_score(tab, skip[i])); // as score_kernel without Δ
    }
};

// The block's work for one selection, 0 < k < n.
template <class KEYS>
static __device__ void topk_block(int n, int k, KEYS key_of, int32_t *__restrict__ sel,
                                  uint8_t *__restrict__ flags) {
    __shared__ unsigned hist[TK_BINS];
    __shared__ unsigned s_prefix, s_need;
    __shared__ int warp_sums[TK_THREADS / 32];
    const int tid = threadIdx.x, lane = tid & 31;
    unsigned prefix = 0, mask = 0, need = (unsigned)k; // keys matching prefix under mask: take `need`
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < TK_BINS; i += TK_THREADS) hist[i] = 0;
        __syncthreads();
        for (int i = tid; i < n; i += TK_THREADS) {
            const unsigned key = key_of(i);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid < 32) { // lane l holds bins 255 − 8l .. 248 − 8l, the largest first
            unsigned c[8], sum = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) sum += c[j] = hist[255 - 8 * lane - j];
            const unsigned incl = ast_warp_scan(sum);
            unsigned acc = incl - sum;
            if (acc < need && need <= incl) { // exactly one lane: the bin holding the k-th key
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (acc + c[j] >= need) {
                        s_prefix = prefix | ((unsigned)(255 - 8 * lane - j) << shift);
                        s_need = need - acc;
                        break;
                    }
                    acc += c[j];
                }
            }
        }
        __syncthreads();
        prefix = s_prefix, need = s_need, mask |= 255u << shift;
        __syncthreads(); // everyone has read s_prefix / s_need before the next pass
    }
    // prefix = the k-th largest key T: take keys > T and the first `need` keys == T (by index).
    // Each thread owns a contiguous run of indices, so two block scans give the order.
    const int per = (n + TK_THREADS - 1) / TK_THREADS;
    const int lo = min(n, tid * per), hi = min(n, lo + per);
    int eq = 0, gt = 0;
    for (int i = lo; i < hi; i++) {
        const unsigned key = key_of(i);
        eq += key == prefix, gt += key > prefix;
    }
    const int eq0 = tk_block_scan(eq, warp_sums);
    // this run takes its keys above T and those of the equal ones ranked eq0.. below `need`
    const int take = gt + max(0, min(eq, (int)need - eq0));
    int pos = tk_block_scan(take, warp_sums);
    for (int i = lo, e = eq0; i < hi; i++) {
        const unsigned key = key_of(i);
        const int f = key > prefix || (key == prefix && (unsigned)e++ < need);
        flags[i] = (uint8_t)f;
        if (f) sel[pos++] = i;
    }
}

static __global__ void __launch_bounds__(TK_THREADS)
    topk_kernel(int n, int k, const float *__restrict__ scores, int32_t *__restrict__ sel,
                uint8_t *__restrict__ flags) {
    topk_block(n, k, score_keys{scores}, sel, flags);
}

// Block l of the grid: layer l's selection from its skip counts (skip_all [L, n]).
static __global__ void __launch_bounds__(TK_THREADS)
    topk_skip_kernel(int n, int k, const int32_t *__restrict__ skip_all, skip_table tab,
                     int32_t *__restrict__ sel_all, uint8_t *__restrict__ flags_all) {
    const int64_t off = (int64_t)blockIdx.x * n;
    topk_block(n, k, skip_keys{skip_all + off, tab}, sel_all + off, flags_all + off);
}

// Every token, in order (total = n, or L·n for L selections of n: sel[l·n + i] = i).
static __global__ void select_all_kernel(int total, int n, int32_t *sel, uint8_t *flags) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x)
        sel[i] = i % n, flags[i] = 1;
}

int ast_cuda_tw_topk(ast_cuda_tw *t, int n, int k, const float *scores, int32_t *sel,
                     uint8_t *flags, cudaStream_t s) {
    if (n <= 0) return 0;
    if (n > t->n_max || k < 0)
        return ast_fail("internal: top-%d of %d tokens (capacity %d)", k, n, t->n_max);
    if (k >= n) {
        select_all_kernel<<<ast_blocks(n, 256), 256, 0, s>>>(n, n, sel, flags);
    } else if (k == 0) {
        CUDA_TRY(cudaMemsetAsync(flags, 0, (size_t)n, s));
        return 0;
    } else {
        topk_kernel<<<1, TK_THREADS, 0, s>>>(n, k, scores, sel, flags);
    }
    CUDA_TRY_LAUNCH();
    return 0;
}

int ast_cuda_tw_select_skip(int L, int n, int k, const int32_t *skip_all,
                            const ast_tokenwise_opts *o, int32_t *sel_all, uint8_t *flags_all,
                            cudaStream_t s) {
    if (n <= 0 || L <= 0) return 0;
    if (k < 0 || o->w_alpha != 0)
        return ast_fail("internal: selection from skip counts with k=%d, w_alpha=%g", k,
                        (double)o->w_alpha);
    const int64_t total = (int64_t)L * n;
    if (k >= n) {
        select_all_kernel<<<ast_blocks(total, 256), 256, 0, s>>>((int)total, n, sel_all,
                                                                 flags_all);
    } else if (k == 0) {
        CUDA_TRY(cudaMemsetAsync(flags_all, 0, (size_t)total, s));
        return 0;
    } else {
        topk_skip_kernel<<<(unsigned)L, TK_THREADS, 0, s>>>(n, k, skip_all, skip_table_of(o),
                                                            sel_all, flags_all);
    }
    CUDA_TRY_LAUNCH();
    return 0;
}

// ---- commit / reuse -------------------------------------------------------------------------------------

// One warp per selected row.
static __global__ void __launch_bounds__(128)
    commit_kernel(int K, int D, const int32_t *__restrict__ sel, const float *__restrict__ xs,
                  int ldxs, const bf16 *__restrict__ y, int ldy, const float *__restrict__ gate,
                  float *__restrict__ x, int ldx, bf16 *__restrict__ cache, int ldc,
                  int residual, int vec, int H, const float *__restrict__ lse_h,
                  float *__restrict__ lse_tok, int r_dim, const float *__restrict__ sketch,
                  float *__restrict__ refsketch, int32_t *__restrict__ skip) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * 4 + (threadIdx.x >> 5);
    if (r >= K) return;
    const int64_t n = sel ? sel[r] : r;
    const float *o = xs + (int64_t)r * ldxs;
    const bf16 *yr = y ? y + (int64_t)r * ldy : NULL;
    float *xi = x + n * ldx;
    bf16 *c = cache + n * ldc;
    if (vec) {
        for (int v = lane; v < D / 4; v += 32) {
            float4 out = reinterpret_cast<const float4 *>(o)[v];
            if (yr) { // the block's last gated residual, fused: out = xs + gate·y
                const float4 yv = ast_unpack4(reinterpret_cast<const uint2 *>(yr)[v]);
                const float4 g = reinterpret_cast<const float4 *>(gate)[v];
                out = make_float4(__fmaf_rn(g.x, yv.x, out.x), __fmaf_rn(g.y, yv.y, out.y),
                                  __fmaf_rn(g.z, yv.z, out.z), __fmaf_rn(g.w, yv.w, out.w));
            }
            float4 d = out; // the output cache never reads the block input
            if (residual) {
                const float4 in = reinterpret_cast<const float4 *>(xi)[v];
                d = make_float4(out.x - in.x, out.y - in.y, out.z - in.z, out.w - in.w);
            }
            reinterpret_cast<uint2 *>(c)[v] = make_uint2(ast_pack2(d.x, d.y), ast_pack2(d.z, d.w));
            reinterpret_cast<float4 *>(xi)[v] = out;
        }
    } else {
        for (int i = lane; i < D; i += 32) {
            const float out = yr ? __fmaf_rn(gate[i], __bfloat162float(yr[i]), o[i]) : o[i];
            c[i] = __float2bfloat16_rn(residual ? out - xi[i] : out);
            xi[i] = out;
        }
    }
    if (refsketch)
        for (int j = lane; j < r_dim; j += 32) refsketch[n * r_dim + j] = sketch[n * r_dim + j];
    if (lane == 0) {
        if (lse_h && lse_tok) {
            float s = 0.f; // in head order, as the CPU backend sums
            for (int h = 0; h < H; h++) s = __fadd_rn(s, lse_h[(int64_t)h * K + r]);
            lse_tok[n] = __fdiv_rn(s, (float)H);
        }
        if (skip) skip[n] = 0;
    }
}

int ast_cuda_tw_commit(int K, int D, const int32_t *sel, const float *xs, int ldxs,
                       const ast_bf16 *y, int ldy, const float *gate, float *x, int ldx,
                       ast_bf16 *cache, int ldc, ast_cache_mode mode, int H, const float *lse_h,
                       float *lse_tok, int r_dim, const float *sketch, float *refsketch,
                       int32_t *skip, cudaStream_t s) {
    if (K <= 0) return 0;
    if (D <= 0 || ldxs < D || ldx < D || ldc < D || (lse_h && H <= 0) ||
        (refsketch && (!sketch || r_dim <= 0)) || xs == x || (y && (!gate || ldy < D)))
        return ast_fail("internal: token commit with D=%d, ld %d/%d/%d/%d, H=%d, r=%d%s", D, ldxs,
                        ldy, ldx, ldc, H, r_dim, xs == x ? ", xs aliasing x" : "");
    const int vec = D % 4 == 0 && ldxs % 4 == 0 && ldx % 4 == 0 && ldc % 4 == 0 &&
                    ast_aligned(xs, 16) && ast_aligned(x, 16) && ast_aligned(cache, 8) &&
                    (!y || (ldy % 4 == 0 && ast_aligned(y, 8) && ast_aligned(gate, 16)));
    commit_kernel<<<(unsigned)((K + 3) / 4), 128, 0, s>>>(
        K, D, sel, xs, ldxs, (const bf16 *)y, ldy, gate, x, ldx, (bf16 *)cache, ldc,
        mode == AST_CACHE_RESIDUAL, vec, H, lse_h, lse_tok, r_dim, sketch, refsketch, skip);
    CUDA_TRY_LAUNCH();
    return 0;
}

// One warp per token; selected tokens return at once.
static __global__ void __launch_bounds__(128)
    reuse_kernel(int N, int D, const uint8_t *__restrict__ flags, float *__restrict__ x, int ldx,
                 const bf16 *__restrict__ cache, int ldc, int residual, int vec,
                 int32_t *__restrict__ skip) {
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * 4 + (threadIdx.x >> 5);
    if (n >= N || flags[n]) return;
    float *xi = x + (int64_t)n * ldx;
    const bf16 *c = cache + (int64_t)n * ldc;
    if (vec) {
        for (int v = lane; v < D / 4; v += 32) {
            float4 *p = reinterpret_cast<float4 *>(xi) + v;
            *p = ast_reuse4(p, reinterpret_cast<const uint2 *>(c)[v], residual);
        }
    } else {
        for (int i = lane; i < D; i += 32) xi[i] = ast_reuse1(xi + i, __bfloat162float(c[i]), residual);
    }
    if (lane == 0 && skip) skip[n] += 1;
}

int ast_cuda_tw_reuse(int N, int D, const uint8_t *flags, float *x, int ldx, const ast_bf16 *cache,
                      int ldc, ast_cache_mode mode, int32_t *skip, cudaStream_t s) {
    if (N <= 0) return 0;
    if (D <= 0 || ldx < D || ldc < D || !flags)
        return ast_fail("internal: token reuse with D=%d, ld %d/%d", D, ldx, ldc);
    const int vec = D % 4 == 0 && ldx % 4 == 0 && ldc % 4 == 0 && ast_aligned(x, 16) &&
                    ast_aligned(cache, 8);
    reuse_kernel<<<(unsigned)((N + 3) / 4), 128, 0, s>>>(N, D, flags, x, ldx, (const bf16 *)cache,
                                                         ldc, mode == AST_CACHE_RESIDUAL, vec, skip);
    CUDA_TRY_LAUNCH();
    return 0;
}
