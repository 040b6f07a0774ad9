// gemm.cu — cuBLASLt wrapper for y = x·Wᵀ (+ bias, GELU), see gemm.h for the layout mapping.
//
// A cache entry holds the matmul descriptor, the three layouts and the algorithm the heuristic
// picked for one (shape, strides, output type, epilogue, accumulate, pointer alignments) key.
// Alignments are part of the key because the heuristic excludes algorithms that need more
// alignment than the pointers have (it assumes 256 bytes unless told), and column-slice views
// (fused QKV, heads) are less aligned than a fresh allocation.
//
// Tuning: the heuristic's first pick is not always the fastest (the token-wise forward's GEMMs
// over K < N rows ran ~15 % below the dense ones). The first time a shape runs outside graph
// capture, the heuristic's top picks (TUNE_CANDIDATES, or ASTRAEA_GEMM_TUNE=N) are timed on the
// call's own operands (the output overwritten; an accumulating product's output is saved first
// and put back) and the fastest is kept. The choice is shared by every GEMM context of the
// process on that device (a process-wide table), so two engines run the same arithmetic;
// another process may time differently and pick another algorithm (last-bit differences).
// ASTRAEA_GEMM_TUNE=0 keeps the heuristic's first pick.
//
// Profile (ASTRAEA_GEMM_PROFILE=1, a diagnostic; the backend turns CUDA graphs off for it): every
// product is timed with a pair of CUDA events, and ast_gemm_free prints, per shape, the calls,
// time, TFLOP/s and the algorithm cuBLASLt ran (tile, stages, split-K): where the token-wise
// forward's K-row products lose against the dense ones. Products of the same key are summed
// together (the self-attention output and the cross-attention query projections share one).
#include "gemm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"

// TUNE_CANDIDATES: how many of the heuristic's picks are timed unless ASTRAEA_GEMM_TUNE names
// another count (at most TUNE_MAX)
enum {
    GEMM_WORKSPACE_BYTES = 32 << 20,
    TUNE_CANDIDATES = 8,
    TUNE_MAX = 32,
    TUNE_REPS = 4,   // products per timing
    TUNE_ROUNDS = 3, // timings per candidate, round-robin over the candidates; the least counts
    PROF_POOL = 1024
};

typedef struct {
    int M, N, K, ldx, ldw, ldy;
    int out, epi, acc;
    int ax, aw, ay, ab; // alignment in bytes (power of two, at most 256) of x, w, y, bias
} gemm_key;

typedef struct {
    gemm_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    cublasLtMatmulAlgo_t cand[TUNE_MAX]; // the heuristic's picks, best first
    int n_cand, tuned;
    double prof_ms;  // profile: time and calls so far
    long prof_calls;
} gemm_entry;

typedef struct {
    cudaEvent_t a, b;
    int entry; // index in the shape cache
} prof_rec;

struct ast_gemm {
    cublasLtHandle_t lt;
    void *ws;        // workspace, GEMM_WORKSPACE_BYTES
    gemm_entry *e;   // cache, n used of cap
    int n, cap;
    int own_gelu;    // GELU_BIAS as BIAS + ast_cuda_gelu_tanh_bf16
    int tune;        // candidates timed for a new shape (ASTRAEA_GEMM_TUNE; < 2: no timing)
    cudaEvent_t ev[2];
    int prof;        // ASTRAEA_GEMM_PROFILE=1: time every product (prof_n pending of PROF_POOL)
    prof_rec *pr;
    int prof_n, prof_events;
};

static const char *epi_name(int epi) {
    return epi == AST_GEMM_EPI_NONE ? "none" : epi == AST_GEMM_EPI_BIAS ? "bias" : "gelu_bias";
}

static int align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && a % (uintptr_t)al) al >>= 1;
    return al;
}

int ast_gemm_create(ast_gemm **out) {
    *out = NULL;
    ast_gemm *g = (ast_gemm *)ast_calloc(1, sizeof *g, "the GEMM context");
    if (!g) return -1;
    cublasStatus_t st = cublasLtCreate(&g->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        free(g);
        return ast_fail("cublasLtCreate failed: cuBLAS status %d (%s); check the CUDA driver and "
                        "that libcublasLt matches the toolkit",
                        (int)st, cublasGetStatusString(st));
    }
    if (ast_cuda_alloc(&g->ws, GEMM_WORKSPACE_BYTES, "the cuBLASLt workspace")) {
        cublasLtDestroy(g->lt);
        free(g);
        return -1;
    }
    const char *tune = getenv("ASTRAEA_GEMM_TUNE");
    g->tune = TUNE_CANDIDATES;
    if (tune && *tune) {
        char *end;
        const long v = strtol(tune, &end, 10);
        if (*end || v < 0)
            ast_log(1, "astraea: ASTRAEA_GEMM_TUNE=%s is not a count of algorithms to time (0: "
                       "none); timing %d\n", tune, TUNE_CANDIDATES);
        else
            g->tune = v > TUNE_MAX ? TUNE_MAX : (int)v;
    }
    if (g->tune < 2) g->tune = 0; // one candidate: nothing to time
    if (g->tune && (cudaEventCreate(&g->ev[0]) != cudaSuccess ||
                    cudaEventCreate(&g->ev[1]) != cudaSuccess)) {
        cudaGetLastError();
        g->tune = 0; // no events: the heuristic's pick, as with ASTRAEA_GEMM_TUNE=0
    }
    const char *prof = getenv("ASTRAEA_GEMM_PROFILE");
    g->prof = prof && !strcmp(prof, "1");
    *out = g;
    return 0;
}

int ast_gemm_profiling(const ast_gemm *g) { return g->prof; }

// Adds the pending profile records to their shapes' totals (waits for each product); on a
// failure the records not yet added are dropped (none is counted twice).
static int prof_flush(ast_gemm *g) {
    const int n = g->prof_n;
    g->prof_n = 0;
    for (int i = 0; i < n; i++) {
        float ms = 0.f;
        CUDA_TRY(cudaEventSynchronize(g->pr[i].b));
        CUDA_TRY(cudaEventElapsedTime(&ms, g->pr[i].a, g->pr[i].b));
        g->e[g->pr[i].entry].prof_ms += ms;
        g->e[g->pr[i].entry].prof_calls++;
    }
    return 0;
}

// Records the start of a timed product of shape `entry`; -1 with the error set if a CUDA call
// failed, else the record's index.
static int prof_begin(ast_gemm *g, int entry, cudaStream_t stream) {
    if (!g->pr && !(g->pr = (prof_rec *)ast_calloc(PROF_POOL, sizeof *g->pr, "the GEMM profile")))
        return -1;
    if (g->prof_n == PROF_POOL && prof_flush(g)) return -1;
    prof_rec *r = &g->pr[g->prof_n];
    if (g->prof_n == g->prof_events) { // events are created once, as the pool first fills
        CUDA_TRY(cudaEventCreate(&r->a));
        const cudaError_t ce = cudaEventCreate(&r->b);
        if (ce != cudaSuccess) {
            cudaEventDestroy(r->a);
            return ast_fail("cudaEventCreate for the GEMM profile: %s", cudaGetErrorString(ce));
        }
        g->prof_events++;
    }
    r->entry = entry;
    CUDA_TRY(cudaEventRecord(r->a, stream));
    return g->prof_n++;
}

static int algo_attr(const cublasLtMatmulAlgo_t *a, cublasLtMatmulAlgoConfigAttributes_t attr) {
    int v = -1; // every attribute read here is 32-bit (cublasLt.h)
    size_t written = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(a, attr, &v, sizeof v, &written) !=
        CUBLAS_STATUS_SUCCESS)
        return -1;
    return v;
}

static int cmp_prof_ms(const void *x, const void *y) {
    const double a = (*(const gemm_entry *const *)x)->prof_ms;
    const double b = (*(const gemm_entry *const *)y)->prof_ms;
    return (a < b) - (a > b);
}

// The profile's table on stderr, the costliest shape first.
static void prof_report(ast_gemm *g) {
    if (prof_flush(g)) {
        fprintf(stderr, "GEMM profile lost: %s\n", ast_error_get());
        return;
    }
    gemm_entry **order = (gemm_entry **)malloc(sizeof *order * (size_t)(g->n ? g->n : 1));
    if (!order) return;
    int n = 0;
    double total = 0;
    for (int i = 0; i < g->n; i++)
        if (g->e[i].prof_calls) order[n++] = &g->e[i], total += g->e[i].prof_ms;
    qsort(order, (size_t)n, sizeof *order, cmp_prof_ms);
    int dev = -1;
    cudaGetDevice(&dev);
    fprintf(stderr,
            "GEMM profile of cuda:%d (%d shapes, %.2f ms in all, warm-up forwards included; algo = cuBLASLt algo id, tile = "
            "cublasLtMatmulTile_t, stages = cublasLtMatmulStages_t, splitk = split-K count):\n"
            "%7s %6s %6s %4s %-9s %3s %7s %10s %9s %8s %5s %5s %6s %6s\n",
            dev, n, total, "M", "N", "K", "out", "epilogue", "acc", "calls", "total_ms", "mean_us",
            "TFLOP/s", "algo", "tile", "stages", "splitk");
    for (int i = 0; i < n; i++) {
        const gemm_entry *e = order[i];
        const gemm_key *k = &e->key;
        const double mean_ms = e->prof_ms / (double)e->prof_calls;
        fprintf(stderr, "%7d %6d %6d %4s %-9s %3d %7ld %10.3f %9.1f %8.1f %5d %5d %6d %6d\n", k->M,
                k->N, k->K, k->out == AST_GEMM_OUT_F32 ? "f32" : "bf16", epi_name(k->epi), k->acc,
                e->prof_calls, e->prof_ms, 1e3 * mean_ms, 2.0 * k->M * k->N * k->K / (mean_ms * 1e9),
                algo_attr(&e->algo, CUBLASLT_ALGO_CONFIG_ID),
                algo_attr(&e->algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
                algo_attr(&e->algo, CUBLASLT_ALGO_CONFIG_STAGES_ID),
                algo_attr(&e->algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM));
    }
    free(order);
}

static void entry_destroy(gemm_entry *e) {
    if (e->la) cublasLtMatrixLayoutDestroy(e->la);
    if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
    if (e->lc) cublasLtMatrixLayoutDestroy(e->lc);
    if (e->desc) cublasLtMatmulDescDestroy(e->desc);
}

void ast_gemm_free(ast_gemm *g) {
    if (!g) return;
    if (g->prof) {
        prof_report(g);
        for (int i = 0; i < g->prof_events; i++)
            cudaEventDestroy(g->pr[i].a), cudaEventDestroy(g->pr[i].b);
        free(g->pr);
    }
    for (int i = 0; i < g->n; i++) entry_destroy(&g->e[i]);
    free(g->e);
    ast_cuda_free(g->ws);
    if (g->tune) cudaEventDestroy(g->ev[0]), cudaEventDestroy(g->ev[1]);
    cublasLtDestroy(g->lt);
    free(g);
}

void ast_gemm_set_own_gelu(ast_gemm *g, int on) { g->own_gelu = on != 0; }

int ast_gemm_cached_shapes(const ast_gemm *g) { return g->n; }

// Builds the descriptor, layouts and algorithm for key k (bias: any pointer with k.ab alignment,
// the heuristic reads its alignment).
static int entry_init(ast_gemm *g, gemm_entry *e, const gemm_key *k, const void *bias) {
    memset(e, 0, sizeof *e);
    e->key = *k;
    const cudaDataType_t ty = k->out == AST_GEMM_OUT_F32 ? CUDA_R_32F : CUDA_R_16BF;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (k->epi == AST_GEMM_EPI_BIAS) epi = CUBLASLT_EPILOGUE_BIAS;
    if (k->epi == AST_GEMM_EPI_GELU_BIAS) epi = CUBLASLT_EPILOGUE_GELU_BIAS;
    CUBLAS_TRY(cublasLtMatmulDescCreate(&e->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                              sizeof epi));
    if (epi != CUBLASLT_EPILOGUE_DEFAULT) {
        const int32_t bty = (int32_t)ty; // bias type = output type (cuBLASLt's rule for bf16/fp32)
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                  &bty, sizeof bty));
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                  &bias, sizeof bias));
    }
    // column-major views: A = W as [K, N] (op T), B = x as [K, M], C = D = y as [N, M]
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&e->la, CUDA_R_16BF, k->K, k->N, k->ldw));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&e->lb, CUDA_R_16BF, k->K, k->M, k->ldx));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&e->lc, ty, k->N, k->M, k->ldy));

    cublasLtMatmulPreference_t pref = NULL;
    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = GEMM_WORKSPACE_BYTES;
    const uint32_t aa = (uint32_t)k->aw, ab = (uint32_t)k->ax, ac = (uint32_t)k->ay;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                  &aa, sizeof aa);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                  &ab, sizeof ab);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                  &ac, sizeof ac);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                  &ac, sizeof ac);
    cublasLtMatmulHeuristicResult_t res[TUNE_MAX];
    int nres = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(g->lt, e->desc, e->la, e->lb, e->lc, e->lc, pref,
                                            g->tune ? g->tune : 1, res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || nres == 0)
        return ast_fail("cuBLASLt has no algorithm for y[%d, %d] = x[%d, %d]·W[%d, %d]ᵀ (ld x %d, "
                        "W %d, y %d; output %s, epilogue %s%s; alignment x %d, W %d, y %d, bias "
                        "%d bytes): cuBLAS status %d (%s)",
                        k->M, k->N, k->M, k->K, k->N, k->K, k->ldx, k->ldw, k->ldy,
                        k->out == AST_GEMM_OUT_F32 ? "fp32" : "bf16", epi_name(k->epi),
                        k->acc ? ", accumulate" : "", k->ax, k->aw, k->ay, k->ab, (int)st,
                        cublasGetStatusString(st));
    e->algo = res[0].algo;
    for (int i = 0; i < nres; i++) e->cand[i] = res[i].algo;
    e->n_cand = nres;
    e->tuned = nres < 2;
    return 0;
}

// Times e's candidates on these operands (y overwritten, with the beta the product runs with)
// and returns the fastest one's index; a candidate that fails to run is skipped. Each candidate
// is timed TUNE_ROUNDS times, round-robin, and its least time counts (with one timing each, the
// pick changed from process to process as the clock moved, and the forward's time with it).
static int tune_time(ast_gemm *g, gemm_entry *e, const void *w, const void *x, void *y,
                     cudaStream_t stream) {
    const float alpha = 1.f, beta = e->key.acc ? 1.f : 0.f;
    float least[TUNE_MAX];
    for (int i = 0; i < e->n_cand; i++) least[i] = -1.f;
    for (int round = 0; round < TUNE_ROUNDS; round++)
        for (int i = 0; i < e->n_cand; i++) {
            if (round > 0 && least[i] < 0.f) continue; // failed to run
            cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
            if (round == 0) // warm-up
                st = cublasLtMatmul(g->lt, e->desc, &alpha, w, e->la, x, e->lb, &beta, y, e->lc,
                                    y, e->lc, &e->cand[i], g->ws, GEMM_WORKSPACE_BYTES, stream);
            CUDA_TRY(cudaEventRecord(g->ev[0], stream));
            for (int r = 0; r < TUNE_REPS && st == CUBLAS_STATUS_SUCCESS; r++)
                st = cublasLtMatmul(g->lt, e->desc, &alpha, w, e->la, x, e->lb, &beta, y, e->lc,
                                    y, e->lc, &e->cand[i], g->ws, GEMM_WORKSPACE_BYTES, stream);
            CUDA_TRY(cudaEventRecord(g->ev[1], stream));
            CUDA_TRY(cudaEventSynchronize(g->ev[1]));
            float ms = 0.f;
            CUDA_TRY(cudaEventElapsedTime(&ms, g->ev[0], g->ev[1]));
            if (st != CUBLAS_STATUS_SUCCESS) least[i] = -1.f;
            else if (least[i] < 0.f || ms < least[i]) least[i] = ms;
        }
    int best_i = 0;
    for (int i = 1; i < e->n_cand; i++)
        if (least[i] >= 0.f && (least[best_i] < 0.f || least[i] < least[best_i])) best_i = i;
    return best_i;
}

// tune_time for an accumulating product: y (the fp32 residual stream) is saved to a temporary
// buffer and put back after the timing changed it. The stream is drained first (no allocation
// while this rank's exchange may still wait on its peers). Without memory for the copy, the
// heuristic's first pick is kept (index 0), as untuned.
static int tune_time_saved(ast_gemm *g, gemm_entry *e, const void *w, const void *x, void *y,
                           cudaStream_t stream) {
    const gemm_key *k = &e->key;
    const size_t row = (size_t)k->N * sizeof(float), pitch = (size_t)k->ldy * sizeof(float);
    CUDA_TRY(cudaStreamSynchronize(stream));
    void *save = NULL;
    if (cudaMalloc(&save, row * (size_t)k->M) != cudaSuccess) {
        cudaGetLastError(); // not sticky: clear it
        return 0;
    }
    int pick = -1;
    cudaError_t ce = cudaMemcpy2DAsync(save, row, y, pitch, row, (size_t)k->M,
                                       cudaMemcpyDeviceToDevice, stream);
    if (ce != cudaSuccess) {
        ast_fail("saving a GEMM output before tuning: %s", cudaGetErrorString(ce));
    } else if ((pick = tune_time(g, e, w, x, y, stream)) >= 0) {
        ce = cudaMemcpy2DAsync(y, pitch, save, row, row, (size_t)k->M, cudaMemcpyDeviceToDevice,
                               stream);
        if (ce == cudaSuccess) ce = cudaStreamSynchronize(stream); // before the free
        if (ce != cudaSuccess) {
            ast_fail("restoring a GEMM output after tuning: %s", cudaGetErrorString(ce));
            pick = -1;
        }
    }
    cudaFree(save);
    return pick;
}

// The process-wide choices: (device, key) -> the algorithm timed fastest (the algorithm itself:
// contexts may ask the heuristic for different numbers of candidates).
typedef struct {
    int dev;
    gemm_key key;
    cublasLtMatmulAlgo_t algo;
} tune_choice;
static pthread_mutex_t tune_mu = PTHREAD_MUTEX_INITIALIZER;
static tune_choice *tune_tab;
static int tune_n, tune_cap;

static const tune_choice *tune_find(int dev, const gemm_key *k) { // under tune_mu
    for (int i = 0; i < tune_n; i++)
        if (tune_tab[i].dev == dev && !memcmp(&tune_tab[i].key, k, sizeof *k)) return &tune_tab[i];
    return NULL;
}

// Sets e->algo from the process-wide choice for its shape, timing the candidates the first
// time (not inside graph capture: it waits for the stream). The lock is not held while timing:
// a rank's stream may wait on an exchange with a rank whose thread would wait on the lock.
static int tune_entry(ast_gemm *g, gemm_entry *e, const void *w, const void *x, void *y,
                      cudaStream_t stream) {
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    CUDA_TRY(cudaStreamIsCapturing(stream, &cap));
    if (cap != cudaStreamCaptureStatusNone) return 0; // tuned on an eager run, if ever
    int dev = 0;
    CUDA_TRY(cudaGetDevice(&dev));
    pthread_mutex_lock(&tune_mu);
    const tune_choice *c = tune_find(dev, &e->key);
    if (c) e->algo = c->algo;
    pthread_mutex_unlock(&tune_mu);
    if (!c) {
        const int mine = e->key.acc ? tune_time_saved(g, e, w, x, y, stream)
                                    : tune_time(g, e, w, x, y, stream);
        if (mine < 0) return -1; // a CUDA call failed while timing (error set)
        pthread_mutex_lock(&tune_mu);
        c = tune_find(dev, &e->key); // another engine may have timed it meanwhile
        e->algo = c ? c->algo : e->cand[mine];
        if (!c) {
            if (tune_n == tune_cap) {
                const int cap2 = tune_cap ? 2 * tune_cap : 64;
                tune_choice *t = (tune_choice *)realloc(tune_tab, sizeof *t * (size_t)cap2);
                if (t) tune_tab = t, tune_cap = cap2; // else: not remembered, used here only
            }
            if (tune_n < tune_cap) tune_tab[tune_n++] = (tune_choice){dev, e->key, e->algo};
        }
        pthread_mutex_unlock(&tune_mu);
    }
    e->tuned = 1;
    return 0;
}

static gemm_entry *lookup(ast_gemm *g, const gemm_key *k, const void *bias) {
    for (int i = 0; i < g->n; i++)
        if (!memcmp(&g->e[i].key, k, sizeof *k)) return &g->e[i];
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        gemm_entry *ne = (gemm_entry *)realloc(g->e, sizeof *ne * (size_t)cap);
        if (!ne) {
            ast_error_set("out of host memory for the GEMM shape cache");
            return NULL;
        }
        g->e = ne;
        g->cap = cap;
    }
    gemm_entry *e = &g->e[g->n];
    if (entry_init(g, e, k, bias)) {
        entry_destroy(e);
        return NULL;
    }
    g->n++;
    return e;
}

int ast_gemm_run(ast_gemm *g, int M, int N, int K, const ast_bf16 *x, int ldx, const ast_bf16 *w,
                 int ldw, const void *bias, void *y, int ldy, ast_gemm_out out, ast_gemm_epi epi,
                 int accumulate, cudaStream_t stream) {
    if (M == 0) return 0;
    if (M < 0 || N <= 0 || K <= 0 || ldx < K || ldw < K || ldy < N)
        return ast_fail("internal: GEMM y[%d, %d] = x[%d, %d]·W[%d, %d]ᵀ with ld x %d, W %d, y %d",
                        M, N, M, K, N, K, ldx, ldw, ldy);
    if (epi != AST_GEMM_EPI_NONE && !bias)
        return ast_fail("internal: GEMM epilogue %s without a bias", epi_name(epi));
    if (accumulate && (out != AST_GEMM_OUT_F32 || epi == AST_GEMM_EPI_GELU_BIAS))
        return ast_fail("internal: GEMM accumulate needs an fp32 output and no GELU");
    const int own_gelu = g->own_gelu && epi == AST_GEMM_EPI_GELU_BIAS;
    if (own_gelu && out != AST_GEMM_OUT_BF16)
        return ast_fail("internal: GEMM with our own GELU supports a bf16 output only");
    gemm_key k;
    memset(&k, 0, sizeof k); // padding-free, but memcmp'd: keep it zeroed
    k.M = M;
    k.N = N;
    k.K = K;
    k.ldx = ldx;
    k.ldw = ldw;
    k.ldy = ldy;
    k.out = (int)out;
    k.epi = own_gelu ? AST_GEMM_EPI_BIAS : (int)epi;
    k.acc = accumulate != 0;
    k.ax = align_of(x);
    k.aw = align_of(w);
    k.ay = align_of(y);
    k.ab = k.epi == AST_GEMM_EPI_NONE ? 0 : align_of(bias);
    gemm_entry *e = lookup(g, &k, bias);
    if (!e) return -1;
    if (k.epi != AST_GEMM_EPI_NONE)
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                  &bias, sizeof bias));
    if (!e->tuned && tune_entry(g, e, w, x, y, stream)) return -1;
    int rec = -1;
    if (g->prof) {
        cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
        CUDA_TRY(cudaStreamIsCapturing(stream, &cap));
        if (cap == cudaStreamCaptureStatusNone && (rec = prof_begin(g, (int)(e - g->e), stream)) < 0)
            return -1;
    }
    const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    const cublasStatus_t cublasLtMatmul_status =
        cublasLtMatmul(g->lt, e->desc, &alpha, w, e->la, x, e->lb, &beta, y, e->lc, y, e->lc,
                       &e->algo, g->ws, GEMM_WORKSPACE_BYTES, stream);
    if (rec >= 0 && cublasLtMatmul_status != CUBLAS_STATUS_SUCCESS)
        g->prof_n--; // not timed: its record goes
    CUBLAS_TRY(cublasLtMatmul_status);
    if (rec >= 0) CUDA_TRY(cudaEventRecord(g->pr[rec].b, stream));
    if (own_gelu && ast_cuda_gelu_tanh_bf16((ast_bf16 *)y, M, N, ldy, stream)) return -1;
    return 0;
}
