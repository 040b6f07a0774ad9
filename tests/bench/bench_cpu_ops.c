/* bench_cpu_ops.c — benchmark of the fp32 CPU operators (cpu_ops.h); a program, not a test.
 *
 * Each case: 2 warm-up calls, then --reps timed calls; prints the median (and best) time with
 * GFLOP/s (GEMM, attention) or GB/s (memory-bound ops). The header stamps commit, CPU, threads,
 * SIMD path, date and the exact command (style.md habit 6). CPU timings are noisy: compare
 * ratios within one run. The "forward" section adds up the operator calls of one wan-mini
 * forward (512 tokens, dim 128, ffn 512, 4 layers, 2 heads of 64, 16 text tokens).
 *
 *   bench_cpu_ops [--reps N] [--simd auto|avx2|generic] [--only gemm|attention|ops|forward] */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_version.h"
#include "cli.h"
#include "common.h"
#include "cpu_ops.h"
#include "tensor.h"

static int g_reps = 20;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*bench_fn)(void *ctx);

/* Median and best seconds of g_reps calls after 2 warm-ups. */
static void time_it(bench_fn fn, void *ctx, double *med, double *best) {
    double t[1000];
    int n = g_reps < 1000 ? g_reps : 1000;
    fn(ctx);
    fn(ctx);
    for (int i = 0; i < n; i++) {
        double t0 = ast_now_sec();
        fn(ctx);
        t[i] = ast_now_sec() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    *med = t[n / 2];
    *best = t[0];
}

static float *rnd(int64_t n, uint64_t seed) {
    float *p = ast_alloc_aligned((size_t)n * sizeof(float), "bench buffer");
    if (!p) {
        fprintf(stderr, "bench_cpu_ops: error: %s\n", ast_error_get());
        exit(AST_EXIT_FAIL);
    }
    ast_rng r;
    ast_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(ast_rng_uniform(&r) * 2.0 - 1.0);
    return p;
}

static void report(const char *op, const char *shape, double med, double best, double flop,
                   double bytes) {
    printf("%-10s %-34s %9.3f ms %9.3f ms", op, shape, med * 1e3, best * 1e3);
    if (flop > 0) printf(" %8.1f GFLOP/s (best %5.1f)", flop / med * 1e-9, flop / best * 1e-9);
    if (bytes > 0) printf(" %8.1f GB/s", bytes / med * 1e-9);
    printf("\n");
}

/* ---- GEMM ------------------------------------------------------------------------------ */

typedef struct {
    int M, N, K;
    ast_dtype dt;
    ast_epilogue epi;
    float *x, *b, *y;
    void *w;
} gemm_ctx;

static void run_gemm(void *p) {
    gemm_ctx *c = p;
    ast_cpu_gemm(c->M, c->N, c->K, c->x, c->K, c->w, c->dt, c->K, c->b, c->y, c->N, c->epi, 0);
}

static void gemm_init(gemm_ctx *c, int M, int N, int K, ast_dtype dt, ast_epilogue epi) {
    *c = (gemm_ctx){M, N, K, dt, epi, rnd((int64_t)M * K, 1), rnd(N, 2), rnd((int64_t)M * N, 3),
                    NULL};
    float *w = rnd((int64_t)N * K, 4);
    if (dt != AST_DT_F32) { /* convert in place to 16-bit values */
        uint16_t *h = (uint16_t *)w;
        for (int64_t i = 0; i < (int64_t)N * K; i++)
            h[i] = dt == AST_DT_BF16 ? ast_f32_to_bf16(w[i]) : ast_f32_to_f16(w[i]);
    }
    c->w = w;
}

static void gemm_free(gemm_ctx *c) {
    ast_free_aligned(c->x), ast_free_aligned(c->b), ast_free_aligned(c->y), ast_free_aligned(c->w);
}

static void bench_gemm(int M, int N, int K, ast_dtype dt, ast_epilogue epi) {
    gemm_ctx c;
    gemm_init(&c, M, N, K, dt, epi);
    double med, best;
    time_it(run_gemm, &c, &med, &best);
    char shape[96];
    snprintf(shape, sizeof shape, "M=%d N=%d K=%d %s%s", M, N, K, ast_dtype_name(dt),
             epi == AST_EPI_GELU_TANH ? " gelu" : "");
    report("gemm", shape, med, best, 2.0 * M * N * K, 0);
    gemm_free(&c);
}

/* ---- attention ------------------------------------------------------------------------- */

typedef struct {
    int Lq, Lk, H, D;
    float *q, *k, *v, *o, *lse;
} att_ctx;

static void run_att(void *p) {
    att_ctx *c = p;
    int ld = c->H * c->D;
    ast_cpu_attention(c->Lq, c->Lk, c->H, c->D, c->q, ld, c->k, ld, c->v, ld, c->o, ld, c->lse,
                      1.0f / sqrtf((float)c->D));
}

static void att_init(att_ctx *c, int Lq, int Lk, int H, int D) {
    int64_t nq = (int64_t)Lq * H * D, nk = (int64_t)Lk * H * D;
    *c = (att_ctx){Lq, Lk, H, D, rnd(nq, 5), rnd(nk, 6), rnd(nk, 7), rnd(nq, 8),
                   rnd((int64_t)H * Lq, 9)};
}

static void att_free(att_ctx *c) {
    ast_free_aligned(c->q), ast_free_aligned(c->k), ast_free_aligned(c->v);
    ast_free_aligned(c->o), ast_free_aligned(c->lse);
}

static void bench_attention(int Lq, int Lk, int H, int D) {
    att_ctx c;
    att_init(&c, Lq, Lk, H, D);
    double med, best;
    time_it(run_att, &c, &med, &best);
    char shape[96];
    snprintf(shape, sizeof shape, "Lq=%d Lk=%d H=%d D=%d", Lq, Lk, H, D);
    report("attention", shape, med, best, 4.0 * Lq * Lk * H * D, 0);
    att_free(&c);
}

/* ---- memory-bound ops ------------------------------------------------------------------ */

typedef struct {
    int L, C, op;
    float *x, *y, *w, *b;
    ast_rope_table rope;
} row_ctx;

static void run_rows(void *p) {
    row_ctx *c = p;
    switch (c->op) {
    case 0:
        ast_cpu_layernorm(c->L, c->C, c->x, c->C, c->y, c->C, NULL, NULL, c->w, c->b, 1e-6f);
        break;
    case 1: ast_cpu_rmsnorm(c->L, c->C, c->x, c->C, c->w, 1e-6f); break;
    case 2: ast_cpu_gelu_tanh(c->x, (int64_t)c->L * c->C); break;
    case 3: ast_cpu_silu(c->x, (int64_t)c->L * c->C); break;
    default: ast_cpu_rope(c->L, c->C / c->rope.D, c->x, c->C, NULL, 0, 16, 16, &c->rope); break;
    }
}

/* ---- one wan-mini forward, as the operator calls it makes (wan21.md §1.4) ------------------ */

typedef struct {
    gemm_ctx proj, ctx_proj, ffn1, ffn2;
    att_ctx self, cross;
    row_ctx ln, rms, rope;
} fwd_ctx;

static void run_forward(void *p) {
    fwd_ctx *f = p;
    for (int layer = 0; layer < 4; layer++) {
        run_rows(&f->ln);                               /* LN1 + modulation */
        for (int i = 0; i < 3; i++) run_gemm(&f->proj); /* self q, k, v */
        for (int i = 0; i < 2; i++) run_rows(&f->rms);  /* RMSNorm q, k */
        for (int i = 0; i < 2; i++) run_rows(&f->rope); /* RoPE q, k */
        run_att(&f->self);
        run_gemm(&f->proj);                             /* self o */
        run_rows(&f->ln);                               /* LN3 */
        run_gemm(&f->proj);                             /* cross q */
        run_rows(&f->rms);
        for (int i = 0; i < 2; i++) run_gemm(&f->ctx_proj); /* cross k, v of the 16 text rows */
        run_att(&f->cross);
        run_gemm(&f->proj);                             /* cross o */
        run_rows(&f->ln);                               /* LN2 + modulation */
        run_gemm(&f->ffn1);                             /* + GELU */
        run_gemm(&f->ffn2);
    }
}

static row_ctx rows_init(int op, int L, int C, uint64_t seed) {
    row_ctx c = {L, C, op, rnd((int64_t)L * C, seed), rnd((int64_t)L * C, seed + 1),
                 rnd(C, seed + 2), rnd(C, seed + 3), {0}};
    if (op == 4 && ast_rope_table_init(&c.rope, 64) != 0) {
        fprintf(stderr, "bench_cpu_ops: error: %s\n", ast_error_get());
        exit(AST_EXIT_FAIL);
    }
    return c;
}

static void rows_free(row_ctx *c) {
    ast_rope_table_free(&c->rope);
    ast_free_aligned(c->x), ast_free_aligned(c->y), ast_free_aligned(c->w), ast_free_aligned(c->b);
}

/* wan-mini (models/wan-mini/config.json): 512 tokens, dim 128, ffn 512, 4 layers, 2 heads of
 * 64, 16 text tokens. Counted FLOP: GEMMs and attention only (~1.5 GFLOP). */
static void bench_forward(void) {
    fwd_ctx f;
    gemm_init(&f.proj, 512, 128, 128, AST_DT_F32, AST_EPI_NONE);
    gemm_init(&f.ctx_proj, 16, 128, 128, AST_DT_F32, AST_EPI_NONE);
    gemm_init(&f.ffn1, 512, 512, 128, AST_DT_F32, AST_EPI_GELU_TANH);
    gemm_init(&f.ffn2, 512, 128, 512, AST_DT_F32, AST_EPI_NONE);
    att_init(&f.self, 512, 512, 2, 64);
    att_init(&f.cross, 512, 16, 2, 64);
    f.ln = rows_init(0, 512, 128, 14);
    f.rms = rows_init(1, 512, 128, 18);
    f.rope = rows_init(4, 512, 128, 22);
    double gemm = 6 * 2.0 * 512 * 128 * 128 + 2 * 2.0 * 16 * 128 * 128 + 2 * 2.0 * 512 * 512 * 128;
    double att = 4.0 * 512 * 512 * 128 + 4.0 * 512 * 16 * 128;
    double med, best;
    time_it(run_forward, &f, &med, &best);
    report("forward", "wan-mini, 4 layers (operators only)", med, best, 4 * (gemm + att), 0);
    gemm_free(&f.proj), gemm_free(&f.ctx_proj), gemm_free(&f.ffn1), gemm_free(&f.ffn2);
    att_free(&f.self), att_free(&f.cross);
    rows_free(&f.ln), rows_free(&f.rms), rows_free(&f.rope);
}

static void bench_rows(const char *name, int op, int L, int C) {
    row_ctx c = rows_init(op, L, C, 10);
    double med, best;
    time_it(run_rows, &c, &med, &best);
    char shape[96];
    snprintf(shape, sizeof shape, "L=%d C=%d", L, C);
    report(name, shape, med, best, 0, 2.0 * L * C * sizeof(float)); /* read + write */
    rows_free(&c);
}

static void cpu_model(char *buf, size_t len) {
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *v = strchr(line, ':');
            if (v) {
                v += v[1] == ' ' ? 2 : 1;
                v[strcspn(v, "\n")] = 0;
                snprintf(buf, len, "%s", v);
            }
            break;
        }
    fclose(f);
}

int main(int argc, char **argv) {
    const char *simd = "auto", *only = NULL;
    ast_arg args[] = {
        {"--reps", AST_ARG_INT, &g_reps, "N", "timed calls per case (default 20)", 1, 1000, 0},
        {"--simd", AST_ARG_STRING, &simd, "PATH", "auto, avx2 or generic (default auto)", 0, 0, 0},
        {"--only", AST_ARG_STRING, &only, "SECTION", "gemm, attention, ops or forward", 0, 0, 0},
    };
    ast_cli cli = {"bench_cpu_ops", "benchmark of the fp32 CPU operators",
                   "bench_cpu_ops [--reps N] [--simd PATH] [--only SECTION]", NULL, args,
                   (int)(sizeof args / sizeof args[0])};
    int rc = ast_cli_parse(&cli, argc, argv);
    if (rc == 1) return AST_EXIT_OK;
    if (rc) return AST_EXIT_USAGE;
    if (ast_cpu_simd_select(simd) != 0) return ast_cli_fail(&cli);
    if (only && strcmp(only, "gemm") && strcmp(only, "attention") && strcmp(only, "ops") &&
        strcmp(only, "forward"))
        return ast_cli_usage_error(&cli, "--only must be gemm, attention, ops or forward, not '%s'",
                                   only);

    char cpu[128], date[32], cmd[512] = "";
    cpu_model(cpu, sizeof cpu);
    ast_utc_date(date);
    for (int i = 0; i < argc; i++)
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s%s", i ? " " : "", argv[i]);
    printf("# bench_cpu_ops  commit %s  cpu \"%s\"  threads %d  simd %s  date %s\n# command: %s\n",
           AST_BENCH_COMMIT, cpu, omp_get_max_threads(), ast_cpu_simd_name(), date, cmd);
    printf("%-10s %-34s %12s %12s %s\n", "op", "shape", "median", "best", "rate");

    if (!only || !strcmp(only, "gemm")) {
        bench_gemm(512, 128, 128, AST_DT_F32, AST_EPI_NONE);
        bench_gemm(512, 512, 128, AST_DT_F32, AST_EPI_NONE);
        bench_gemm(512, 512, 128, AST_DT_F32, AST_EPI_GELU_TANH);
        bench_gemm(512, 128, 512, AST_DT_F32, AST_EPI_NONE);
        bench_gemm(1024, 1536, 1536, AST_DT_F32, AST_EPI_NONE);
        bench_gemm(1024, 1536, 1536, AST_DT_BF16, AST_EPI_NONE);
        bench_gemm(1024, 1536, 1536, AST_DT_F16, AST_EPI_NONE);
        bench_gemm(16, 1536, 4096, AST_DT_F32, AST_EPI_NONE);
        bench_gemm(1, 9216, 1536, AST_DT_F32, AST_EPI_NONE);
    }
    if (!only || !strcmp(only, "attention")) {
        bench_attention(512, 512, 2, 64);
        bench_attention(2048, 2048, 2, 128);
        bench_attention(2048, 512, 2, 128);
        bench_attention(1024, 1024, 4, 32);
    }
    if (!only || !strcmp(only, "ops")) {
        bench_rows("layernorm", 0, 512, 128);
        bench_rows("layernorm", 0, 4096, 1536);
        bench_rows("rmsnorm", 1, 4096, 1536);
        bench_rows("gelu_tanh", 2, 512, 512);
        bench_rows("silu", 3, 4096, 1536);
        bench_rows("rope", 4, 4096, 1536);
    }
    if (!only || !strcmp(only, "forward")) bench_forward();
    return AST_EXIT_OK;
}
