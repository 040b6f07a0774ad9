// ops.cu — the CUDA building blocks of the Wan2.1 forward (see ops.h): upload, LayerNorm with
// modulation, RMSNorm + 3D RoPE, residual adds, patchify/unpatchify, time embedding.
//
// Row kernels (LayerNorm, RMSNorm) keep the whole row in registers: a row is handled by WPR warps
// (1 for C <= 2048 fp32 / 4096 bf16, else 4), each thread holding NV 16-byte vectors, so the
// statistics take two passes over registers and the row is read from memory once. Rows whose width
// or alignment does not allow 16-byte access go to a scalar fallback that re-reads the row.
#include "ops.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "device_util.cuh"

// ---- device memory --------------------------------------------------------------------------

int ast_cuda_alloc(void **p, size_t bytes, const char *what) {
    *p = NULL;
    if (bytes == 0) bytes = 16; // a valid, distinct pointer for empty buffers
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        size_t free_b = 0, total_b = 0;
        cudaGetLastError(); // clear the sticky-free error state of this failed call
        cudaMemGetInfo(&free_b, &total_b);
        int dev = -1;
        cudaGetDevice(&dev);
        return ast_fail("cannot allocate %.1f MiB for %s on CUDA device %d (%.1f of %.1f MiB "
                        "free): %s (%s)",
                        bytes / 1048576.0, what, dev, free_b / 1048576.0, total_b / 1048576.0,
                        cudaGetErrorString(e), ast_cuda_hint(e));
    }
    return 0;
}

void ast_cuda_free(void *p) {
    if (p) cudaFree(p);
}

// ---- upload -----------------------------------------------------------------------------------

struct ast_uploader {
    cudaStream_t stream;
    void *stage[2];     // pinned host buffers, cap bytes each
    cudaEvent_t ev[2];  // recorded after the copy out of stage[i]
    size_t cap;
    int cur;
};

enum { UPLOAD_STAGE_BYTES = 16 << 20 };

int ast_uploader_create(ast_uploader **out, cudaStream_t stream) {
    *out = NULL;
    ast_uploader *u = (ast_uploader *)ast_calloc(1, sizeof *u, "the weight uploader");
    if (!u) return -1;
    u->stream = stream;
    u->cap = UPLOAD_STAGE_BYTES;
    for (int i = 0; i < 2; i++) {
        cudaError_t e = cudaHostAlloc(&u->stage[i], u->cap, cudaHostAllocDefault);
        if (e == cudaSuccess) e = cudaEventCreateWithFlags(&u->ev[i], cudaEventDisableTiming);
        if (e != cudaSuccess) {
            ast_uploader_free(u);
            return ast_fail("cannot create the pinned staging buffer for weight upload: %s (%s)",
                            cudaGetErrorString(e), ast_cuda_hint(e));
        }
    }
    *out = u;
    return 0;
}

void ast_uploader_free(ast_uploader *u) {
    if (!u) return;
    for (int i = 0; i < 2; i++) {
        if (u->ev[i]) {
            cudaEventSynchronize(u->ev[i]);
            cudaEventDestroy(u->ev[i]);
        }
        if (u->stage[i]) cudaFreeHost(u->stage[i]);
    }
    free(u);
}

// Host conversion of n elements (src may be unaligned) into dst (aligned staging).
static void convert_host(const unsigned char *src, ast_dtype sdt, int64_t n, void *dst,
                         ast_dtype ddt) {
    if (sdt == ddt) {
        memcpy(dst, src, (size_t)n * ast_dtype_size(sdt));
        return;
    }
    if (ddt == AST_DT_BF16) {
        uint16_t *d = (uint16_t *)dst;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            float f;
            if (sdt == AST_DT_F32) {
                memcpy(&f, src + i * 4, 4);
            } else { // F16
                uint16_t h;
                memcpy(&h, src + i * 2, 2);
                f = ast_f16_to_f32(h);
            }
            d[i] = ast_f32_to_bf16(f);
        }
    } else { // F32 from BF16 / F16
        float *d = (float *)dst;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + i * 2, 2);
            d[i] = sdt == AST_DT_BF16 ? ast_bf16_to_f32(h) : ast_f16_to_f32(h);
        }
    }
}

int ast_upload(ast_uploader *u, const void *src, ast_dtype sdt, int64_t n, void *dst,
               ast_dtype ddt) {
    if (sdt != AST_DT_F32 && sdt != AST_DT_BF16 && sdt != AST_DT_F16)
        return ast_fail("cannot upload a %s tensor as weights: only F32, BF16 and F16 are "
                        "supported (re-export the checkpoint in one of those)",
                        ast_dtype_name(sdt));
    if (ddt != AST_DT_F32 && ddt != AST_DT_BF16)
        return ast_fail("internal: upload to device dtype %s", ast_dtype_name(ddt));
    const size_t ss = ast_dtype_size(sdt), ds = ast_dtype_size(ddt);
    const int64_t per_chunk = (int64_t)(u->cap / ds);
    const unsigned char *s = (const unsigned char *)src;
    unsigned char *d = (unsigned char *)dst;
    for (int64_t off = 0; off < n; off += per_chunk) {
        int64_t cnt = n - off < per_chunk ? n - off : per_chunk;
        int i = u->cur;
        u->cur ^= 1;
        CUDA_TRY(cudaEventSynchronize(u->ev[i])); // the previous copy out of stage[i] is done
        convert_host(s + off * ss, sdt, cnt, u->stage[i], ddt);
        CUDA_TRY(cudaMemcpyAsync(d + off * ds, u->stage[i], (size_t)cnt * ds,
                                 cudaMemcpyHostToDevice, u->stream));
        CUDA_TRY(cudaEventRecord(u->ev[i], u->stream));
    }
    return 0;
}

int ast_upload_tensor(ast_uploader *u, const ast_tensor *t, int64_t expect_numel, void *dst,
                      ast_dtype ddt) {
    int64_t n = ast_tensor_numel(t);
    if (expect_numel >= 0 && n != expect_numel) {
        char shp[128];
        return ast_fail("tensor '%s' has shape %s (%lld elements) but %lld were expected",
                        t->name ? t->name : "?", ast_shape_str(t, shp, sizeof shp),
                        (long long)n, (long long)expect_numel);
    }
    if (ast_upload(u, t->data, t->dtype, n, dst, ddt)) {
        ast_error_prefix("uploading '%s'", t->name ? t->name : "?");
        return -1;
    }
    return 0;
}

int ast_uploader_finish(ast_uploader *u) {
    CUDA_TRY(cudaStreamSynchronize(u->stream));
    return 0;
}

// ---- elementwise ------------------------------------------------------------------------------

static __global__ void add_bcast_kernel(float *out, const float *a, int64_t n, const float *b,
                                        int bn) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i % bn];
}

int ast_cuda_add_bcast(float *out, const float *a, int64_t n, const float *b, int bn,
                       cudaStream_t s) {
    if (n <= 0) return 0;
    if (bn <= 0) return ast_fail("internal: add_bcast with a broadcast length %d", bn);
    add_bcast_kernel<<<ast_blocks(n, 256), 256, 0, s>>>(out, a, n, b, bn);
    CUDA_TRY_LAUNCH();
    return 0;
}

static __global__ void f32_to_bf16_kernel(const float *src, bf16 *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

int ast_cuda_f32_to_bf16(const float *src, ast_bf16 *dst, int64_t n, cudaStream_t s) {
    if (n <= 0) return 0;
    f32_to_bf16_kernel<<<ast_blocks(n, 256), 256, 0, s>>>(src, (bf16 *)dst, n);
    CUDA_TRY_LAUNCH();
    return 0;
}

static __global__ void gelu_bf16_kernel(bf16 *x, int M, int N, int ldx) {
    const int64_t total = (int64_t)M * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / N, c = i % N;
        bf16 *p = x + r * ldx + c;
        *p = __float2bfloat16_rn(ast_gelu_tanh(__bfloat162float(*p)));
    }
}

int ast_cuda_gelu_tanh_bf16(ast_bf16 *x, int M, int N, int ldx, cudaStream_t s) {
    if (M <= 0 || N <= 0) return 0;
    if (ldx < N) return ast_fail("internal: gelu with ld %d < width %d", ldx, N);
    gelu_bf16_kernel<<<ast_blocks((int64_t)M * N, 256), 256, 0, s>>>((bf16 *)x, M, N, ldx);
    CUDA_TRY_LAUNCH();
    return 0;
}

// ---- LayerNorm ----------------------------------------------------------------------------------

// Per-element epilogue shared by the vector and scalar LayerNorm kernels.
static __device__ __forceinline__ float ln_affine(float n, int c, const float *w, const float *b,
                                                  const float *scale, const float *shift) {
    if (w) n *= w[c];
    if (b) n += b[c];
    if (scale) n *= 1.f + scale[c];
    if (shift) n += shift[c];
    return n;
}

// k with sel[k] == n in the ascending sel[K], or -1 when n is not in it
static __device__ __forceinline__ int index_in_sorted(const int32_t *__restrict__ sel, int K,
                                                      int64_t n) {
    int lo = 0, hi = K - 1;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (sel[mid] < n) lo = mid + 1;
        else hi = mid;
    }
    return sel[lo] == n ? lo : -1;
}

// Row src's slot in the copy-out, or NULL (no copy-out, or src not selected)
static __device__ __forceinline__ bf16 *copy_out_row(const ast_ln_extra &ex, int64_t src) {
    if (!ex.out_flags || !ex.out_flags[src]) return NULL;
    const int k = index_in_sorted(ex.sel, ex.K, src);
    return k < 0 ? NULL : reinterpret_cast<bf16 *>(ex.out) + (int64_t)k * ex.ldo;
}

// Rows handled by 32·WPR threads, NV float4 per thread (zero-padded past the row end). EX: the
// extras of ast_ln_extra (the reuse first, a compacted copy of the output after).
template <int NV, int WPR, bool EX>
static __device__ __forceinline__ void
    ln_vec_row(int L, int C, float *x, int ldx, const int32_t *__restrict__ rows,
               bf16 *__restrict__ y, int ldy, const float *__restrict__ w,
               const float *__restrict__ b, const float *__restrict__ scale,
               const float *__restrict__ shift, float eps, const ast_ln_extra &ex) {
    constexpr int T = 32 * WPR, RPB = 4 / WPR;
    __shared__ float red[4];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int t = (warp % WPR) * 32 + lane;
    const int r = blockIdx.x * RPB + warp / WPR;
    if (r >= L) return; // uniform over a row's threads (WPR > 1: the block is one row)
    const int64_t src = rows ? rows[r] : r;
    float4 *xr = reinterpret_cast<float4 *>(x + src * ldx);
    const int nvec = C >> 2;
    const bool take = EX && ex.cache && !ex.flags[src]; // uniform over the row
    const uint2 *cr = take ? reinterpret_cast<const uint2 *>(ex.cache + src * ex.ldc) : NULL;
    float4 v[NV];
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const int c = t + i * T;
        if (c >= nvec) {
            v[i] = make_float4(0.f, 0.f, 0.f, 0.f);
        } else if (!EX) {
            v[i] = __ldg(xr + c);
        } else if (!take) {
            v[i] = xr[c];
        } else { // the same sums as ast_cuda_tw_reuse
            v[i] = ast_reuse4(xr + c, cr[c], ex.residual);
            xr[c] = v[i];
        }
        s += (v[i].x + v[i].y) + (v[i].z + v[i].w);
    }
    if (take && ex.skip && t == 0) ex.skip[src] += 1;
    const float mean = ast_row_sum<WPR>(s, red) / (float)C;
    float q = 0.f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        if (t + i * T < nvec) {
            const float a = v[i].x - mean, bb = v[i].y - mean, cc = v[i].z - mean,
                        d = v[i].w - mean;
            q += (a * a + bb * bb) + (cc * cc + d * d);
        }
    }
    const float rstd = rsqrtf(ast_row_sum<WPR>(q, red) / (float)C + eps);
    uint2 *yr = reinterpret_cast<uint2 *>(y + (int64_t)r * ldy);
    uint2 *yo = EX ? reinterpret_cast<uint2 *>(copy_out_row(ex, src)) : NULL;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const int c = t + i * T;
        if (c < nvec) {
            float4 o = make_float4((v[i].x - mean) * rstd, (v[i].y - mean) * rstd,
                                   (v[i].z - mean) * rstd, (v[i].w - mean) * rstd);
            // the same order as ln_affine, on 16-byte parameter loads
            if (w) {
                const float4 a = __ldg(reinterpret_cast<const float4 *>(w) + c);
                o = make_float4(o.x * a.x, o.y * a.y, o.z * a.z, o.w * a.w);
            }
            if (b) {
                const float4 a = __ldg(reinterpret_cast<const float4 *>(b) + c);
                o = make_float4(o.x + a.x, o.y + a.y, o.z + a.z, o.w + a.w);
            }
            if (scale) {
                const float4 a = __ldg(reinterpret_cast<const float4 *>(scale) + c);
                o = make_float4(o.x * (1.f + a.x), o.y * (1.f + a.y), o.z * (1.f + a.z),
                                o.w * (1.f + a.w));
            }
            if (shift) {
                const float4 a = __ldg(reinterpret_cast<const float4 *>(shift) + c);
                o = make_float4(o.x + a.x, o.y + a.y, o.z + a.z, o.w + a.w);
            }
            const uint2 packed = make_uint2(ast_pack2(o.x, o.y), ast_pack2(o.z, o.w));
            yr[c] = packed;
            if (yo) yo[c] = packed;
        }
    }
}

template <int NV, int WPR>
static __global__ void __launch_bounds__(128)
    ln_vec_kernel(int L, int C, const float *__restrict__ x, int ldx,
                  const int32_t *__restrict__ rows, bf16 *__restrict__ y, int ldy,
                  const float *__restrict__ w, const float *__restrict__ b,
                  const float *__restrict__ scale, const float *__restrict__ shift, float eps) {
    ln_vec_row<NV, WPR, false>(L, C, const_cast<float *>(x), ldx, rows, y, ldy, w, b, scale,
                               shift, eps, ast_ln_extra{});
}

template <int NV, int WPR>
static __global__ void __launch_bounds__(128)
    ln_ex_vec_kernel(int L, int C, float *x, int ldx, bf16 *__restrict__ y, int ldy,
                     const float *__restrict__ w, const float *__restrict__ b,
                     const float *__restrict__ scale, const float *__restrict__ shift, float eps,
                     ast_ln_extra ex) {
    ln_vec_row<NV, WPR, true>(L, C, x, ldx, NULL, y, ldy, w, b, scale, shift, eps, ex);
}

// Any width/alignment: one warp per row, the row re-read from memory for each pass (after the
// reuse, when ex.cache is set, has written it: each lane re-reads only what it wrote).
static __global__ void __launch_bounds__(128)
    ln_scalar_kernel(int L, int C, const float *x, int ldx, const int32_t *__restrict__ rows,
                     bf16 *__restrict__ y, int ldy, const float *__restrict__ w,
                     const float *__restrict__ b, const float *__restrict__ scale,
                     const float *__restrict__ shift, float eps, ast_ln_extra ex) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * 4 + (threadIdx.x >> 5);
    if (r >= L) return;
    const int64_t src = rows ? rows[r] : r;
    const float *xr = x + src * ldx;
    if (ex.cache && !ex.flags[src]) {
        float *xw = const_cast<float *>(xr);
        const bf16 *cr = reinterpret_cast<const bf16 *>(ex.cache) + src * ex.ldc;
        for (int c = lane; c < C; c += 32)
            xw[c] = ast_reuse1(xw + c, __bfloat162float(cr[c]), ex.residual);
        if (lane == 0 && ex.skip) ex.skip[src] += 1;
    }
    float s = 0.f;
    for (int c = lane; c < C; c += 32) s += xr[c];
    const float mean = ast_warp_sum(s) / (float)C;
    float q = 0.f;
    for (int c = lane; c < C; c += 32) {
        const float d = xr[c] - mean;
        q += d * d;
    }
    const float rstd = rsqrtf(ast_warp_sum(q) / (float)C + eps);
    bf16 *yr = y + (int64_t)r * ldy;
    bf16 *yo = copy_out_row(ex, src);
    for (int c = lane; c < C; c += 32) {
        yr[c] = __float2bfloat16_rn(ln_affine((xr[c] - mean) * rstd, c, w, b, scale, shift));
        if (yo) yo[c] = yr[c];
    }
}

// Dispatch over (NV, WPR): the smallest register row that holds nvec vectors per row.
// Returns false when nvec needs more than 16 vectors per thread at WPR = 4.
#define AST_ROW_DISPATCH(KERNEL, nvec, grid_rows, stream, ...)                                   \
    ([&]() -> bool {                                                                             \
        const int wpr_ = (nvec) <= 32 * 16 ? 1 : 4;                                              \
        const int nv_ = ((nvec) + 32 * wpr_ - 1) / (32 * wpr_);                                  \
        const unsigned blocks_ = (unsigned)(((grid_rows) + 4 / wpr_ - 1) / (4 / wpr_));          \
        if (nv_ > 16) return false;                                                              \
        if (wpr_ == 1) {                                                                         \
            if (nv_ <= 1) KERNEL<1, 1><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);                \
            else if (nv_ <= 2) KERNEL<2, 1><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);           \
            else if (nv_ <= 3) KERNEL<3, 1><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);           \
            else if (nv_ <= 4) KERNEL<4, 1><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);           \
            else if (nv_ <= 6) KERNEL<6, 1><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);           \
            else if (nv_ <= 8) KERNEL<8, 1><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);           \
            else if (nv_ <= 12) KERNEL<12, 1><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);         \
            else KERNEL<16, 1><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);                        \
        } else {                                                                                 \
            if (nv_ <= 6) KERNEL<6, 4><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);                \
            else if (nv_ <= 8) KERNEL<8, 4><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);           \
            else if (nv_ <= 12) KERNEL<12, 4><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);         \
            else KERNEL<16, 4><<<blocks_, 128, 0, stream>>>(__VA_ARGS__);                        \
        }                                                                                        \
        return true;                                                                             \
    }())

// Both entry points: ex == NULL is the plain LayerNorm (rows may gather), else the extras.
static int layernorm(int L, int C, const float *x, int ldx, const int32_t *rows,
                     const ast_ln_extra *ex, ast_bf16 *y, int ldy, const float *w, const float *b,
                     const float *scale, const float *shift, float eps, cudaStream_t s) {
    if (L <= 0) return 0;
    if (C <= 0 || ldx < C || ldy < C || (ex && ex->cache && (!ex->flags || ex->ldc < C)) ||
        (ex && ex->out_flags && (!ex->sel || !ex->out || ex->K < 1 || ex->K > L || ex->ldo < C)))
        return ast_fail("internal: layernorm with C=%d, ldx=%d, ldy=%d%s", C, ldx, ldy,
                        ex ? ", or a reuse or copy-out without its rows or strides" : "");
    bf16 *yy = (bf16 *)y;
    const bool vec = C % 4 == 0 && ldx % 4 == 0 && ldy % 4 == 0 && ast_aligned(x, 16) &&
                     ast_aligned(y, 8) && ast_aligned(w, 16) && ast_aligned(b, 16) &&
                     ast_aligned(scale, 16) && ast_aligned(shift, 16) &&
                     (!ex || !ex->cache || (ex->ldc % 4 == 0 && ast_aligned(ex->cache, 8))) &&
                     (!ex || !ex->out_flags || (ex->ldo % 4 == 0 && ast_aligned(ex->out, 8)));
    bool done = false;
    if (vec && ex)
        done = AST_ROW_DISPATCH(ln_ex_vec_kernel, C / 4, L, s, L, C, const_cast<float *>(x), ldx,
                                yy, ldy, w, b, scale, shift, eps, *ex);
    else if (vec)
        done = AST_ROW_DISPATCH(ln_vec_kernel, C / 4, L, s, L, C, x, ldx, rows, yy, ldy, w, b,
                                scale, shift, eps);
    if (!done)
        ln_scalar_kernel<<<(unsigned)((L + 3) / 4), 128, 0, s>>>(
            L, C, x, ldx, rows, yy, ldy, w, b, scale, shift, eps, ex ? *ex : ast_ln_extra{});
    CUDA_TRY_LAUNCH();
    return 0;
}

int ast_cuda_layernorm(int L, int C, const float *x, int ldx, const int32_t *rows, ast_bf16 *y,
                       int ldy, const float *w, const float *b, const float *scale,
                       const float *shift, float eps, cudaStream_t s) {
    return layernorm(L, C, x, ldx, rows, NULL, y, ldy, w, b, scale, shift, eps, s);
}

int ast_cuda_layernorm_ex(int L, int C, float *x, int ldx, const ast_ln_extra *ex, ast_bf16 *y,
                          int ldy, const float *w, const float *b, const float *scale,
                          const float *shift, float eps, cudaStream_t s) {
    if (!ex) return ast_fail("internal: layernorm_ex without its extras");
    return layernorm(L, C, x, ldx, NULL, ex, y, ldy, w, b, scale, shift, eps, s);
}

// ---- RMSNorm + RoPE -------------------------------------------------------------------------------

// Wan's split of a head's head_dim/2 complex pairs over the (t, h, w) axes (wan21.md §1.3):
// pairs [0, mt) use the frame index, [mt, mt + mh) the row, the rest the column.
struct rope_split {
    int mt, mh;
};
static inline rope_split rope_split_of(int head_dim) {
    const int dh = 2 * (head_dim / 6), dt = head_dim - 2 * dh;
    return rope_split{dt / 2, dh / 2};
}

// Rotates pair m of a head: (a, b) -> (a cos − b sin, a sin + b cos), angle from the table row of
// the axis position that m belongs to.
static __device__ __forceinline__ void rope_pair(float &a, float &b, int m, int pf, int pi, int pj,
                                                 const float2 *__restrict__ cs, int half,
                                                 rope_split sp) {
    const int pos = m < sp.mt ? pf : (m < sp.mt + sp.mh ? pi : pj);
    const float2 t = __ldg(cs + (int64_t)pos * half + m);
    const float a0 = a, b0 = b;
    a = a0 * t.x - b0 * t.y;
    b = a0 * t.y + b0 * t.x;
}

template <int NV, int WPR>
static __global__ void __launch_bounds__(128)
    rms_rope_vec_kernel(int L, int C, bf16 *__restrict__ x, int ldx, const float *__restrict__ w,
                        float eps, const float2 *__restrict__ cs, int head_dim, rope_split sp,
                        const int32_t *__restrict__ tok, int tok0, int gh, int gw) {
    constexpr int T = 32 * WPR, RPB = 4 / WPR;
    __shared__ float red[4];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int t = (warp % WPR) * 32 + lane;
    const int r = blockIdx.x * RPB + warp / WPR;
    if (r >= L) return;
    uint4 *xr = reinterpret_cast<uint4 *>(x + (int64_t)r * ldx);
    const int nvec = C >> 3;
    uint4 v[NV];
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const int c = t + i * T;
        v[i] = c < nvec ? xr[c] : make_uint4(0u, 0u, 0u, 0u);
        float f[8];
        ast_unpack8(v[i], f);
#pragma unroll
        for (int e = 0; e < 8; e++) ss += f[e] * f[e];
    }
    const float rr = rsqrtf(ast_row_sum<WPR>(ss, red) / (float)C + eps);
    int pf = 0, pi = 0, pj = 0;
    if (cs) {
        const int n = tok0 + (tok ? tok[r] : r);
        pf = n / (gh * gw);
        pi = (n / gw) % gh;
        pj = n % gw;
    }
    const int half = head_dim >> 1;
    const float4 *w4 = reinterpret_cast<const float4 *>(w);
#pragma unroll
    for (int i = 0; i < NV; i++) {
        const int c = t + i * T;
        if (c < nvec) {
            float f[8];
            ast_unpack8(v[i], f);
            const float4 wa = __ldg(w4 + 2 * c), wb = __ldg(w4 + 2 * c + 1);
            f[0] *= rr * wa.x; f[1] *= rr * wa.y; f[2] *= rr * wa.z; f[3] *= rr * wa.w;
            f[4] *= rr * wb.x; f[5] *= rr * wb.y; f[6] *= rr * wb.z; f[7] *= rr * wb.w;
            if (cs) {
                const int m0 = ((c * 8) % head_dim) >> 1; // 8 | head_dim: a vector stays in a head
#pragma unroll
                for (int p = 0; p < 4; p++)
                    rope_pair(f[2 * p], f[2 * p + 1], m0 + p, pf, pi, pj, cs, half, sp);
            }
            xr[c] = ast_pack8(f);
        }
    }
}

// Any width/alignment: one warp per row, two passes over memory, pairs for the rotation.
static __global__ void __launch_bounds__(128)
    rms_rope_scalar_kernel(int L, int C, bf16 *__restrict__ x, int ldx,
                           const float *__restrict__ w, float eps, const float2 *__restrict__ cs,
                           int head_dim, rope_split sp, const int32_t *__restrict__ tok, int tok0,
                           int gh, int gw) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * 4 + (threadIdx.x >> 5);
    if (r >= L) return;
    bf16 *xr = x + (int64_t)r * ldx;
    float ss = 0.f;
    for (int c = lane; c < C; c += 32) {
        const float f = __bfloat162float(xr[c]);
        ss += f * f;
    }
    const float rr = rsqrtf(ast_warp_sum(ss) / (float)C + eps);
    if (!cs) {
        for (int c = lane; c < C; c += 32)
            xr[c] = __float2bfloat16_rn(__bfloat162float(xr[c]) * rr * w[c]);
        return;
    }
    const int n = tok0 + (tok ? tok[r] : r);
    const int pf = n / (gh * gw), pi = (n / gw) % gh, pj = n % gw, half = head_dim >> 1;
    for (int p = lane; p < C / 2; p += 32) { // C is a multiple of head_dim (checked)
        const int c = 2 * p;
        float a = __bfloat162float(xr[c]) * rr * w[c];
        float b = __bfloat162float(xr[c + 1]) * rr * w[c + 1];
        rope_pair(a, b, (c % head_dim) >> 1, pf, pi, pj, cs, half, sp);
        xr[c] = __float2bfloat16_rn(a);
        xr[c + 1] = __float2bfloat16_rn(b);
    }
}

int ast_cuda_rmsnorm_rope(int L, int C, ast_bf16 *x, int ldx, const float *w, float eps,
                          const float *rope_cs, int npos, int head_dim, const int32_t *tok,
                          int tok0, int gh, int gw, cudaStream_t s) {
    if (L <= 0) return 0;
    if (C <= 0 || ldx < C || !w)
        return ast_fail("internal: rmsnorm with C=%d, ldx=%d, w=%p", C, ldx, (const void *)w);
    if (rope_cs && (head_dim <= 0 || head_dim % 2 || C % head_dim || gh <= 0 || gw <= 0 ||
                    npos <= 0))
        return ast_fail("internal: rope with C=%d, head_dim=%d, grid ?x%dx%d, npos=%d", C,
                        head_dim, gh, gw, npos);
    const rope_split sp = rope_split_of(head_dim > 0 ? head_dim : 2);
    const float2 *cs = (const float2 *)rope_cs;
    bf16 *xx = (bf16 *)x;
    const bool vec = C % 8 == 0 && ldx % 8 == 0 && ast_aligned(x, 16) && ast_aligned(w, 16) &&
                     (!rope_cs || head_dim % 8 == 0);
    bool done = false;
    if (vec)
        done = AST_ROW_DISPATCH(rms_rope_vec_kernel, C / 8, L, s, L, C, xx, ldx, w, eps, cs,
                                head_dim, sp, tok, tok0, gh, gw);
    if (!done)
        rms_rope_scalar_kernel<<<(unsigned)((L + 3) / 4), 128, 0, s>>>(L, C, xx, ldx, w, eps, cs,
                                                                        head_dim, sp, tok, tok0, gh, gw);
    CUDA_TRY_LAUNCH();
    return 0;
}

// ---- residual stream ------------------------------------------------------------------------------

template <bool YF32>
static __device__ __forceinline__ float4 load_y4(const void *y, int64_t off) {
    if (YF32) return __ldg(reinterpret_cast<const float4 *>((const float *)y + off));
    return ast_unpack4(__ldg(reinterpret_cast<const uint2 *>((const bf16 *)y + off)));
}

template <bool YF32>
static __global__ void residual_vec_kernel(int L, int C, float *out, int ldo, const float *in,
                                           int ldi, const int32_t *__restrict__ in_rows,
                                           const void *__restrict__ y, int ldy,
                                           const float *__restrict__ gate) {
    const int nv = C >> 2;
    const int64_t total = (int64_t)L * nv;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / nv;
        const int c = (int)(i - r * nv) * 4;
        const int64_t src = in_rows ? in_rows[r] : r;
        const float4 a = *reinterpret_cast<const float4 *>(in + src * ldi + c);
        const float4 v = load_y4<YF32>(y, r * ldy + c);
        const float4 g = gate ? __ldg(reinterpret_cast<const float4 *>(gate + c))
                              : make_float4(1.f, 1.f, 1.f, 1.f);
        *reinterpret_cast<float4 *>(out + r * ldo + c) =
            make_float4(__fmaf_rn(g.x, v.x, a.x), __fmaf_rn(g.y, v.y, a.y),
                        __fmaf_rn(g.z, v.z, a.z), __fmaf_rn(g.w, v.w, a.w));
    }
}

static __global__ void residual_scalar_kernel(int L, int C, float *out, int ldo, const float *in,
                                              int ldi, const int32_t *__restrict__ in_rows,
                                              const void *__restrict__ y, int ldy, int y_f32,
                                              const float *__restrict__ gate) {
    const int64_t total = (int64_t)L * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / C;
        const int c = (int)(i - r * C);
        const int64_t src = in_rows ? in_rows[r] : r;
        const float v = y_f32 ? ((const float *)y)[r * ldy + c]
                              : __bfloat162float(((const bf16 *)y)[r * ldy + c]);
        out[r * ldo + c] = __fmaf_rn(gate ? gate[c] : 1.f, v, in[src * ldi + c]);
    }
}

int ast_cuda_residual(int L, int C, float *out, int ldo, const float *in, int ldi,
                      const int32_t *in_rows, const void *y, int ldy, int y_f32,
                      const float *gate, cudaStream_t s) {
    if (L <= 0) return 0;
    if (C <= 0 || ldo < C || ldi < C || ldy < C)
        return ast_fail("internal: residual with C=%d, ldo=%d, ldi=%d, ldy=%d", C, ldo, ldi, ldy);
    const bool vec = C % 4 == 0 && ldo % 4 == 0 && ldi % 4 == 0 && ldy % 4 == 0 &&
                     ast_aligned(out, 16) && ast_aligned(in, 16) &&
                     ast_aligned(y, y_f32 ? 16 : 8) && ast_aligned(gate, 16);
    const int64_t work = vec ? (int64_t)L * (C / 4) : (int64_t)L * C;
    const unsigned blocks = ast_blocks(work, 256);
    if (vec && y_f32)
        residual_vec_kernel<true><<<blocks, 256, 0, s>>>(L, C, out, ldo, in, ldi, in_rows, y, ldy,
                                                         gate);
    else if (vec)
        residual_vec_kernel<false><<<blocks, 256, 0, s>>>(L, C, out, ldo, in, ldi, in_rows, y,
                                                          ldy, gate);
    else
        residual_scalar_kernel<<<blocks, 256, 0, s>>>(L, C, out, ldo, in, ldi, in_rows, y, ldy,
                                                      y_f32, gate);
    CUDA_TRY_LAUNCH();
    return 0;
}

// ---- strided copies ---------------------------------------------------------------------------

struct copy2d_batch {
    ast_copy2d c[AST_COPY2D_MAX];
    int unit[AST_COPY2D_MAX]; // bytes moved per access: 16, 8, 4, 2 or 1
};

template <typename V>
static __device__ void copy2d_one(const ast_copy2d &c, int64_t start, int64_t step) {
    const int64_t per_row = c.width / (int64_t)sizeof(V), total = per_row * c.rows;
    for (int64_t i = start; i < total; i += step) {
        const int64_t r = i / per_row, u = i - r * per_row;
        reinterpret_cast<V *>((char *)c.dst + r * c.dpitch)[u] =
            reinterpret_cast<const V *>((const char *)c.src + r * c.spitch)[u];
    }
}

// blockIdx.y: the copy; blocks of x stride over its elements.
static __global__ void copy2d_kernel(copy2d_batch b) {
    const ast_copy2d &c = b.c[blockIdx.y];
    const int64_t start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x,
                  step = (int64_t)gridDim.x * blockDim.x;
    switch (b.unit[blockIdx.y]) {
    case 16: copy2d_one<uint4>(c, start, step); break;
    case 8: copy2d_one<uint2>(c, start, step); break;
    case 4: copy2d_one<uint32_t>(c, start, step); break;
    case 2: copy2d_one<uint16_t>(c, start, step); break;
    default: copy2d_one<uint8_t>(c, start, step); break;
    }
}

int ast_cuda_copy2d(const ast_copy2d *c, int n, cudaStream_t s) {
    if (n <= 0) return 0;
    if (n > AST_COPY2D_MAX) return ast_fail("internal: %d 2D copies in one call (max %d)", n, AST_COPY2D_MAX);
    copy2d_batch b;
    int64_t most = 0;
    int used = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].rows <= 0 || c[i].width <= 0) continue; // nothing to move
        if (c[i].width > c[i].dpitch && c[i].rows > 1)
            return ast_fail("internal: 2D copy of %lld-byte rows into a %lld-byte pitch",
                            (long long)c[i].width, (long long)c[i].dpitch);
        const int u = ast_copy_unit(1, c[i].width, c[i].dpitch, c[i].spitch, c[i].dst, c[i].src);
        b.c[used] = c[i];
        b.unit[used++] = u;
        const int64_t work = c[i].width / u * c[i].rows;
        if (work > most) most = work;
    }
    if (!used) return 0;
    copy2d_kernel<<<dim3(ast_blocks(most, 256, 1024), (unsigned)used), 256, 0, s>>>(b);
    CUDA_TRY_LAUNCH();
    return 0;
}

// ---- patchify / unpatchify --------------------------------------------------------------------------

static __global__ void patchify_kernel(const float *__restrict__ x, int C, int F, int H, int W,
                                       int pt, int ph, int pw, bf16 *__restrict__ p, int ldp) {
    const int gh = H / ph, gw = W / pw, P = C * pt * ph * pw;
    const int64_t total = (int64_t)(F / pt) * gh * gw * P;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = i / P;
        int k = (int)(i - n * P);
        const int b = k % pw;
        k /= pw;
        const int a = k % ph;
        k /= ph;
        const int at = k % pt;
        const int c = k / pt;
        const int f = (int)(n / ((int64_t)gh * gw)), ii = (int)((n / gw) % gh), j = (int)(n % gw);
        const float v = x[(((int64_t)c * F + f * pt + at) * H + ii * ph + a) * W + j * pw + b];
        p[n * ldp + (i - n * P)] = __float2bfloat16_rn(v);
    }
}

int ast_cuda_patchify(const float *x, int C, int F, int H, int W, int pt, int ph, int pw,
                      ast_bf16 *patches, int ldp, cudaStream_t s) {
    if (C <= 0 || pt <= 0 || ph <= 0 || pw <= 0 || F <= 0 || H <= 0 || W <= 0 || F % pt ||
        H % ph || W % pw || ldp < C * pt * ph * pw)
        return ast_fail("internal: patchify of [%d, %d, %d, %d] by (%d, %d, %d), ldp %d", C, F, H,
                        W, pt, ph, pw, ldp);
    const int64_t total = (int64_t)F * H * W * C;
    patchify_kernel<<<ast_blocks(total, 256), 256, 0, s>>>(x, C, F, H, W, pt, ph, pw,
                                                           (bf16 *)patches, ldp);
    CUDA_TRY_LAUNCH();
    return 0;
}

static __global__ void unpatchify_kernel(const float *__restrict__ y, int ldy, int C, int F, int H,
                                         int W, int pt, int ph, int pw, float *__restrict__ out) {
    const int gh = H / ph, gw = W / pw;
    const int64_t total = (int64_t)C * F * H * W;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int xx = (int)(i % W);
        const int yy = (int)((i / W) % H);
        const int fz = (int)((i / ((int64_t)W * H)) % F);
        const int c = (int)(i / ((int64_t)W * H * F));
        const int f = fz / pt, at = fz % pt, ii = yy / ph, a = yy % ph, j = xx / pw, b = xx % pw;
        const int64_t n = ((int64_t)f * gh + ii) * gw + j;
        out[i] = y[n * ldy + ((at * ph + a) * pw + b) * C + c];
    }
}

int ast_cuda_unpatchify(const float *y, int ldy, int C, int F, int H, int W, int pt, int ph,
                        int pw, float *out, cudaStream_t s) {
    if (C <= 0 || pt <= 0 || ph <= 0 || pw <= 0 || F <= 0 || H <= 0 || W <= 0 || F % pt ||
        H % ph || W % pw || ldy < C * pt * ph * pw)
        return ast_fail("internal: unpatchify to [%d, %d, %d, %d] by (%d, %d, %d), ldy %d", C, F,
                        H, W, pt, ph, pw, ldy);
    const int64_t total = (int64_t)C * F * H * W;
    unpatchify_kernel<<<ast_blocks(total, 256), 256, 0, s>>>(y, ldy, C, F, H, W, pt, ph, pw, out);
    CUDA_TRY_LAUNCH();
    return 0;
}

// ---- time embedding ---------------------------------------------------------------------------------

static __global__ void sinusoid_kernel(const float *__restrict__ t, int half, float *out) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= half) return;
    // float64 as the reference (wan21.md §1.3): φ_k = t · 10000^(−k/half)
    const double phi = (double)*t * pow(10000.0, -(double)k / half);
    out[k] = (float)cos(phi);
    out[half + k] = (float)sin(phi);
}

int ast_cuda_sinusoid(const float *t, int freq_dim, float *out, cudaStream_t s) {
    if (freq_dim <= 0 || freq_dim % 2)
        return ast_fail("internal: sinusoid of odd width %d", freq_dim);
    const int half = freq_dim / 2;
    sinusoid_kernel<<<(unsigned)((half + 127) / 128), 128, 0, s>>>(t, half, out);
    CUDA_TRY_LAUNCH();
    return 0;
}

// One warp per output row; act(x) staged in shared memory (K floats).
static __global__ void __launch_bounds__(256)
    gemv_f32_kernel(int N, int K, const float *__restrict__ W, const float *__restrict__ x,
                    int silu_in, const float *__restrict__ bias, float *__restrict__ y, int vec) {
    extern __shared__ float xs[];
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        const float v = x[k];
        xs[k] = silu_in ? ast_silu(v) : v;
    }
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (n >= N) return;
    const float *wr = W + (int64_t)n * K;
    float acc = 0.f;
    if (vec) {
        const float4 *w4 = reinterpret_cast<const float4 *>(wr);
        const float4 *x4 = reinterpret_cast<const float4 *>(xs);
        for (int k = lane; k < K / 4; k += 32) {
            const float4 a = __ldg(w4 + k), b = x4[k];
            acc += (a.x * b.x + a.y * b.y) + (a.z * b.z + a.w * b.w);
        }
    } else {
        for (int k = lane; k < K; k += 32) acc += wr[k] * xs[k];
    }
    acc = ast_warp_sum(acc);
    if (lane == 0) y[n] = acc + (bias ? bias[n] : 0.f);
}

int ast_cuda_gemv_f32(int N, int K, const float *W, const float *x, int silu_in,
                      const float *bias, float *y, cudaStream_t s) {
    if (N <= 0) return 0;
    const size_t smem = sizeof(float) * (size_t)K;
    if (K <= 0 || smem > 48 * 1024)
        return ast_fail("internal: gemv with K=%d (at most 12288 supported)", K);
    const int vec = K % 4 == 0 && ast_aligned(W, 16);
    gemv_f32_kernel<<<(unsigned)((N + 7) / 8), 256, smem, s>>>(N, K, W, x, silu_in, bias, y, vec);
    CUDA_TRY_LAUNCH();
    return 0;
}
