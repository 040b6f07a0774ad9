/* simd.c — instantiates the vectorised building blocks (simd_tmpl.c) for AVX2+FMA and for
 * portable vector code, picks one at run time, and owns the per-thread scratch buffers of the CPU
 * operators. The build needs no -march flag: the AVX2 copy is compiled through target
 * attributes and only called when __builtin_cpu_supports says the CPU has it. */
#include "simd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu_ops.h"

#if defined(__x86_64__) || defined(__i386__)
#define AST_SIMD_X86 1
#include <immintrin.h>
#else
#define AST_SIMD_X86 0
#endif

/* ---- portable copy: 4-lane vectors (SSE2 on x86-64, NEON elsewhere), 2 rows per pass ------- */
typedef float ast_v4f __attribute__((vector_size(16)));
typedef int32_t ast_v4i __attribute__((vector_size(16)));
typedef uint16_t ast_v4h __attribute__((vector_size(8)));
#define SFX _generic
#define SIMD_NAME "generic"
#define VW 4
#define VF ast_v4f
#define VI ast_v4i
#define VH ast_v4h
#define KR 2
#define VSPLAT(s) {s, s, s, s}
#define VFMA(a, b, c) ((a) * (b) + (c))
#define ATTR
#if defined(__SSE__) /* always on x86-64 */
#define VMAXB(a, b) ((ast_v4f)_mm_max_ps((__m128)(a), (__m128)(b)))
#define VMINB(a, b) ((ast_v4f)_mm_min_ps((__m128)(a), (__m128)(b)))
#endif
#include "simd_tmpl.c" /* undefines the parameters above */

/* ---- AVX2 copy: 8-lane vectors, 6 rows x 2 vectors = 12 accumulators of 16 ymm registers --- */
#if AST_SIMD_X86
typedef float ast_v8f __attribute__((vector_size(32)));
typedef int32_t ast_v8i __attribute__((vector_size(32)));
typedef uint16_t ast_v8h __attribute__((vector_size(16)));
#define SFX _avx2
#define SIMD_NAME "avx2"
#define VW 8
#define VF ast_v8f
#define VI ast_v8i
#define VH ast_v8h
#define KR 6
#define VSPLAT(s) {s, s, s, s, s, s, s, s}
#define VFMA(a, b, c) ((ast_v8f)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define ATTR __attribute__((target("avx2,fma")))
#define VMAXB(a, b) ((ast_v8f)_mm256_max_ps((__m256)(a), (__m256)(b)))
#define VMINB(a, b) ((ast_v8f)_mm256_min_ps((__m256)(a), (__m256)(b)))
#include "simd_tmpl.c" /* undefines the parameters above */
#endif

static int cpu_has_avx2(void) {
#if AST_SIMD_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static _Atomic(const ast_cpu_simd *) g_simd = NULL;

int ast_cpu_simd_select(const char *name) {
    const ast_cpu_simd *t = NULL;
    int want_auto = !name || !*name || !strcmp(name, "auto");
    if (want_auto || !strcmp(name, "avx2")) {
#if AST_SIMD_X86
        if (cpu_has_avx2()) t = &table_avx2;
#endif
        if (!t && !want_auto)
            return ast_fail("SIMD path 'avx2' is not available: this CPU lacks AVX2/FMA "
                            "(use 'generic' or 'auto')");
    } else if (strcmp(name, "generic")) {
        return ast_fail("unknown SIMD path '%s' (use auto, avx2 or generic)", name);
    }
    if (!t) t = &table_generic;
    atomic_store_explicit(&g_simd, t, memory_order_relaxed);
    return 0;
}

const ast_cpu_simd *ast_cpu_simd_get(void) {
    const ast_cpu_simd *t = atomic_load_explicit(&g_simd, memory_order_relaxed);
    if (t) return t;
    /* First use: AST_CPU_SIMD=generic|avx2 overrides detection (benchmarks, CI of the fallback). */
    const char *env = getenv("AST_CPU_SIMD");
    if (ast_cpu_simd_select(env) != 0) ast_cpu_simd_select("auto");
    return atomic_load_explicit(&g_simd, memory_order_relaxed);
}

const char *ast_cpu_simd_name(void) { return ast_cpu_simd_get()->name; }

/* Each thread keeps one buffer for its life (OpenMP workers live as long as the process, so the
 * buffer is allocated once per thread, not once per call). A thread that ends before the process
 * (a search worker thread, and the OpenMP team it led) frees it through a thread-specific key. */
static _Thread_local struct {
    float *p;
    size_t cap; /* floats */
} tl_scratch;

static pthread_key_t tl_scratch_key;
static pthread_once_t tl_scratch_once = PTHREAD_ONCE_INIT;
static int tl_scratch_key_ok;

static void tl_scratch_release(void *p) { ast_free_aligned(p); }
static void tl_scratch_key_make(void) {
    tl_scratch_key_ok = pthread_key_create(&tl_scratch_key, tl_scratch_release) == 0;
}

float *ast_cpu_scratch(size_t nfloats) {
    if (nfloats <= tl_scratch.cap) return tl_scratch.p;
    ast_free_aligned(tl_scratch.p);
    tl_scratch.cap = 0;
    tl_scratch.p = (float *)ast_alloc_aligned(nfloats * sizeof(float), "CPU operator scratch");
    if (tl_scratch.p) tl_scratch.cap = nfloats;
    pthread_once(&tl_scratch_once, tl_scratch_key_make);
    if (tl_scratch_key_ok) pthread_setspecific(tl_scratch_key, tl_scratch.p);
    return tl_scratch.p;
}
