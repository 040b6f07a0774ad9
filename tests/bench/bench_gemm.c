/* bench_gemm.c — times the CUDA backend's products (kernels/gemm.h, tuned as in a forward, with
 * the forward's output strides) at chosen row counts: how a product's time depends on M, e.g.
 * whether the token-wise forward's selected-row products cost more per row than the dense ones.
 *
 *   bench_gemm [--rows 5616,5632,14040,14080] [--model 1.3b|14b] [--reps 30]
 *
 * For each row count M it prints one line: every Wan2.1 block product at that M (random bf16
 * operands; the median over --reps of CUDA-event timings of BATCH back-to-back products, per
 * product, so the host's launch latency is hidden as in a graph replay), the dense block's sum
 * and that sum per row, in us. A program, not a test: never registered with test(). Exits 77
 * without CUDA or a device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast_config.h"
#include "bench_version.h"

#if !AST_HAVE_CUDA
int main(void) {
    fprintf(stderr, "bench_gemm: built without CUDA\n");
    return 77;
}
#else

#include <cuda_runtime.h>

#include "cli.h"
#include "common.h"
#include "kernels/gemm.h"

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench_gemm: %s failed: %s\n", #call, cudaGetErrorString(e_));         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum { BATCH = 10 };

typedef struct {
    const char *name;
    int n, k; /* out features, in features */
    int ldy, y0; /* output row stride and first column, as in the forward */
    ast_gemm_out out;
    ast_gemm_epi epi;
    int acc;
    int in_block; /* times it runs in a dense block */
} product;

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *rows = "5616,5632,14040,14080", *model = "1.3b";
    int reps = 30;
    ast_arg args[] = {
        {"--rows", AST_ARG_STRING, &rows, "LIST", "row counts M (default 5616,5632,14040,14080)",
         0, 0, 0},
        {"--model", AST_ARG_STRING, &model, "ID", "block shapes of Wan2.1 1.3b (default) or 14b",
         0, 0, 0},
        {"--reps", AST_ARG_INT, &reps, "N", "timed batches of 10 products, median printed "
         "(default 30)", 1, 10000, 0},
    };
    ast_cli cli = {"bench_gemm", "time the CUDA backend's block products at chosen row counts",
                   "bench_gemm [--rows LIST] [--model 1.3b|14b] [--reps N]", NULL, args,
                   (int)(sizeof args / sizeof args[0])};
    int rc = ast_cli_parse(&cli, argc, argv);
    if (rc == 1) return AST_EXIT_OK;
    if (rc) return AST_EXIT_USAGE;
    int D = 1536, F = 8960;
    if (!strcmp(model, "14b")) D = 5120, F = 13824;
    else if (strcmp(model, "1.3b"))
        return ast_cli_usage_error(&cli, "--model must be 1.3b or 14b, not '%s'", model);
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "bench_gemm: no CUDA device\n");
        return 77;
    }
    /* token-wise: k|v (of every row) and q (of the selected) into the [N, 3D] qkv buffer */
    const product P[] = {
        {"qkv", 3 * D, D, 3 * D, 0, AST_GEMM_OUT_BF16, AST_GEMM_EPI_BIAS, 0, 1},
        {"kv", 2 * D, D, 3 * D, D, AST_GEMM_OUT_BF16, AST_GEMM_EPI_BIAS, 0, 0},
        {"q", D, D, 3 * D, 0, AST_GEMM_OUT_BF16, AST_GEMM_EPI_BIAS, 0, 0},
        {"o/cq", D, D, D, 0, AST_GEMM_OUT_BF16, AST_GEMM_EPI_BIAS, 0, 2},
        {"co (f32 +=)", D, D, D, 0, AST_GEMM_OUT_F32, AST_GEMM_EPI_BIAS, 1, 1},
        {"ffn up", F, D, F, 0, AST_GEMM_OUT_BF16, AST_GEMM_EPI_GELU_BIAS, 0, 1},
        {"ffn down", D, F, D, 0, AST_GEMM_OUT_BF16, AST_GEMM_EPI_BIAS, 0, 1},
    };
    const int np = (int)(sizeof P / sizeof P[0]);
    int mmax = 0, ms[64], nm = 0;
    for (const char *p = rows; *p;) {
        if (nm == 64) {
            fprintf(stderr, "bench_gemm: --rows: at most 64 row counts\n");
            return 2;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1000000) {
            fprintf(stderr, "bench_gemm: --rows '%s': expected a list of row counts\n", rows);
            return 2;
        }
        ms[nm++] = (int)v;
        if (v > mmax) mmax = (int)v;
        p = *end == ',' ? end + 1 : end;
    }
    const int kmax = F > 3 * D ? F : 3 * D;
    const size_t xn = (size_t)mmax * kmax, wn = (size_t)F * D > (size_t)3 * D * D ? (size_t)F * D
                                                                                  : (size_t)3 * D * D;
    void *x, *w, *bias, *y;
    CK(cudaMalloc(&x, xn * 2));
    CK(cudaMalloc(&w, wn * 2));
    CK(cudaMalloc(&bias, (size_t)kmax * 4));
    CK(cudaMalloc(&y, (size_t)mmax * kmax * 4));
    { /* random bf16 in [-1, 1) (timing only; x and W from the same values), zero bias
       * and output at the start (the products then overwrite or accumulate into it) */
        const size_t n = xn > wn ? xn : wn;
        uint16_t *h = malloc(n * 2);
        if (!h) {
            fprintf(stderr, "bench_gemm: out of host memory (%zu bytes)\n", n * 2);
            return 1;
        }
        ast_rng rng;
        ast_rng_seed(&rng, 20261127);
        for (size_t i = 0; i < n; i++) h[i] = ast_f32_to_bf16((float)(2 * ast_rng_uniform(&rng) - 1));
        CK(cudaMemcpy(x, h, xn * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(w, h, wn * 2, cudaMemcpyHostToDevice));
        free(h);
    }
    CK(cudaMemset(bias, 0, (size_t)kmax * 4));
    CK(cudaMemset(y, 0, (size_t)mmax * kmax * 4));
    ast_gemm *g = NULL;
    if (ast_gemm_create(&g)) {
        fprintf(stderr, "bench_gemm: %s\n", ast_error_get());
        return 1;
    }
    cudaStream_t s;
    cudaEvent_t e0, e1;
    CK(cudaStreamCreate(&s));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("bench_gemm %s on %s, D=%d F=%d, median of %d (us)\n", AST_BENCH_COMMIT, prop.name, D, F,
           reps);
    printf("%8s", "M");
    for (int j = 0; j < np; j++) printf(" %12s", P[j].name);
    printf(" %12s %12s\n", "block", "block/row_ns");
    float *t = malloc(sizeof(float) * (size_t)reps);
    if (!t) {
        fprintf(stderr, "bench_gemm: out of host memory\n");
        return 1;
    }
    for (int i = 0; i < nm; i++) {
        const int M = ms[i];
        double block = 0;
        printf("%8d", M);
        for (int j = 0; j < np; j++) {
            const product *p = &P[j];
            const size_t esz = p->out == AST_GEMM_OUT_F32 ? 4 : 2;
            void *yp = (char *)y + (size_t)p->y0 * esz;
            for (int r = -1; r < reps; r++) { /* r = -1: warm-up (and the tuning) */
                CK(cudaEventRecord(e0, s));
                for (int b = 0; b < BATCH; b++)
                    if (ast_gemm_run(g, M, p->n, p->k, x, p->k, w, p->k, bias, yp, p->ldy, p->out,
                                     p->epi, p->acc, s)) {
                        fprintf(stderr, "bench_gemm: %s at M=%d: %s\n", p->name, M,
                                ast_error_get());
                        return 1;
                    }
                CK(cudaEventRecord(e1, s));
                CK(cudaEventSynchronize(e1));
                if (r >= 0) CK(cudaEventElapsedTime(&t[r], e0, e1));
            }
            qsort(t, (size_t)reps, sizeof(float), cmp_float);
            const double us = 1000.0 * t[reps / 2] / BATCH;
            block += p->in_block * us;
            printf(" %12.1f", us);
        }
        printf(" %12.1f %12.2f\n", block, 1000.0 * block / M);
    }
    free(t);
    ast_gemm_free(g);
    cudaFree(x);
    cudaFree(w);
    cudaFree(bias);
    cudaFree(y);
    return 0;
}
#endif
