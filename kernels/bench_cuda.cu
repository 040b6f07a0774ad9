// bench_cuda.cu — device-side helpers for astraea-bench: memory in use, and timing of our
// attention kernel on random bf16 inputs (CUDA events, warm-up, median of repeats).
#include <cuda_bf16.h>
#include <stdlib.h>

#include "attention.h"
#include "cuda_check.h"

extern "C" {
#include "backend.h"
}

static __global__ void fill_random_bf16(__nv_bfloat16 *x, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 16;
        h *= 0x7feb352du;
        h ^= h >> 15;
        h *= 0x846ca68bu;
        h ^= h >> 16;
        float u = (float)(h >> 8) * (1.0f / 16777216.0f); // [0,1)
        x[i] = __float2bfloat16(3.4641016f * (u - 0.5f));  // unit variance
    }
}

extern "C" int ast_cuda_mem_used(int device, double *used_bytes, char *name, size_t name_len) {
    CUDA_TRY(cudaSetDevice(device));
    size_t free_b = 0, total_b = 0;
    CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    snprintf(name, name_len, "%s", prop.name);
    *used_bytes = (double)(total_b - free_b);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

extern "C" int ast_cuda_bench_attention(int device, int Lq, int Lk, int H, int D, int repeats,
                                        double *median_ms) {
    CUDA_TRY(cudaSetDevice(device));
    size_t nq = (size_t)Lq * H * D, nk = (size_t)Lk * H * D;
    __nv_bfloat16 *q = NULL, *k = NULL, *v = NULL, *o = NULL;
    float *lse = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double *ms = (double *)calloc((size_t)repeats, sizeof(double));
    int rc = -1;
    if (!ms) return ast_fail("out of host memory");
#define TRY(call)                                                                              \
    do {                                                                                       \
        cudaError_t err_ = (call);                                                             \
        if (err_ != cudaSuccess) {                                                             \
            ast_error_set("%s failed: %s (%s)", #call, cudaGetErrorString(err_),               \
                          ast_cuda_hint(err_));                                                \
            goto out;                                                                          \
        }                                                                                      \
    } while (0)
    TRY(cudaMalloc(&q, nq * 2));
    TRY(cudaMalloc(&o, nq * 2));
    TRY(cudaMalloc(&k, nk * 2));
    TRY(cudaMalloc(&v, nk * 2));
    TRY(cudaMalloc(&lse, (size_t)Lq * H * 4));
    fill_random_bf16<<<1024, 256>>>(q, nq, 1u);
    fill_random_bf16<<<1024, 256>>>(k, nk, 2u);
    fill_random_bf16<<<1024, 256>>>(v, nk, 3u);
    TRY(cudaGetLastError());
    TRY(cudaEventCreate(&e0));
    TRY(cudaEventCreate(&e1));
    {
        const float scale = 1.0f / sqrtf((float)D);
        for (int w = 0; w < 3; w++)
            if (ast_cuda_attention(q, H * D, k, H * D, v, H * D, o, H * D, lse, Lq, Lk, H, D,
                                   scale, 0))
                goto out;
        for (int r = 0; r < repeats; r++) {
            TRY(cudaEventRecord(e0));
            if (ast_cuda_attention(q, H * D, k, H * D, v, H * D, o, H * D, lse, Lq, Lk, H, D,
                                   scale, 0))
                goto out;
            TRY(cudaEventRecord(e1));
            TRY(cudaEventSynchronize(e1));
            float t;
            TRY(cudaEventElapsedTime(&t, e0, e1));
            ms[r] = t;
        }
    }
    qsort(ms, (size_t)repeats, sizeof *ms, cmp_double);
    *median_ms = ms[repeats / 2];
    rc = 0;
out:
#undef TRY
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(o);
    cudaFree(lse);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    free(ms);
    return rc;
}
