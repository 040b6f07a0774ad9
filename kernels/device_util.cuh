// device_util.cuh — small device helpers shared by kernels/*.cu: warp/row reductions, bf16
// packing, alignment checks. Internal to kernels/ (C++ only).
#ifndef AST_DEVICE_UTIL_CUH
#define AST_DEVICE_UTIL_CUH

#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

static __device__ __forceinline__ float ast_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Inclusive prefix sum over the warp's lanes (lane l gets v of lanes 0..l).
template <class T> static __device__ __forceinline__ T ast_warp_scan(T v) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const T t = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += t;
    }
    return v;
}

static __device__ __forceinline__ double ast_warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the WPR consecutive warps that share one row (WPR = 1: the warp alone; WPR > 1: the
// whole block is that row, reduced through `red` [WPR] in a fixed order, so deterministic).
// Every thread of the row gets the total. All threads of the block must call it (WPR > 1).
template <int WPR>
static __device__ __forceinline__ float ast_row_sum(float v, float *red) {
    v = ast_warp_sum(v);
    if (WPR == 1) return v;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = 0.f;
#pragma unroll
    for (int i = 0; i < WPR; i++) t += red[i];
    return t;
}

// 8 bf16 packed in a uint4 <-> 8 floats.
static __device__ __forceinline__ void ast_unpack8(const uint4 u, float f[8]) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

// 4 bf16 packed in a uint2 -> 4 floats.
static __device__ __forceinline__ float4 ast_unpack4(const uint2 u) {
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                       __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
}

// The token-wise reuse of a cached value: x + cache (the residual cache) or cache (the output
// cache; x not read). ast_cuda_tw_reuse and the LayerNorm that runs the reuse in its pass
// (ops.cu) share these, so both give the same bits.
static __device__ __forceinline__ float4 ast_reuse4(const float4 *x, uint2 cache, bool residual) {
    const float4 c = ast_unpack4(cache);
    if (!residual) return c;
    const float4 a = *x;
    return make_float4(a.x + c.x, a.y + c.y, a.z + c.z, a.w + c.w);
}
static __device__ __forceinline__ float ast_reuse1(const float *x, float cache, bool residual) {
    return residual ? *x + cache : cache;
}

static __device__ __forceinline__ uint32_t ast_pack2(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b); // .x = a (low half), .y = b
    return *reinterpret_cast<uint32_t *>(&h);
}

static __device__ __forceinline__ uint4 ast_pack8(const float f[8]) {
    return make_uint4(ast_pack2(f[0], f[1]), ast_pack2(f[2], f[3]), ast_pack2(f[4], f[5]),
                      ast_pack2(f[6], f[7]));
}

static __device__ __forceinline__ float ast_gelu_tanh(float x) {
    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (wan21.md §1.3); tanhf, not the fast approx.
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    return 0.5f * x * (1.f + tanhf(k0 * (x + k1 * x * x * x)));
}

static __device__ __forceinline__ float ast_silu(float x) { return x / (1.f + expf(-x)); }

// Host-side helpers.
static inline bool ast_aligned(const void *p, unsigned bytes) {
    return ((uintptr_t)p % bytes) == 0;
}

// The widest access (16 bytes down to `least`) that divides a row of `row` bytes, both pitches
// and both base addresses: what a row copy moves per load and store.
static inline int ast_copy_unit(int least, int64_t row, int64_t pitch_a, int64_t pitch_b,
                                const void *a, const void *b) {
    int u = 16;
    while (u > least && (row % u || pitch_a % u || pitch_b % u || !ast_aligned(a, (unsigned)u) ||
                         !ast_aligned(b, (unsigned)u)))
        u >>= 1;
    return u;
}
static inline unsigned ast_blocks(int64_t work, int per_block, unsigned cap = 65535u * 16u) {
    int64_t b = (work + per_block - 1) / per_block;
    if (b < 1) b = 1;
    return (unsigned)(b > (int64_t)cap ? cap : b);
}

#endif
