/* simd_tmpl.c — the body of the vectorised building blocks (simd.h), included twice by simd.c.
 * Not compiled on its own. The includer defines:
 *   SFX            name suffix (_avx2, _generic)          ATTR  attributes for every function
 *   VF, VI         float / int32 vector types of VW lanes  VW    lanes per vector (8, 4)
 *   KR             rows of C per register pass (6 for 16 ymm registers, 2 for 16 xmm)
 *   SIMD_NAME      the table's name string
 *   VSPLAT(s)      brace initialiser repeating s VW times
 *   VFMA(a, b, c)  a*b + c (fused where the ISA has it)
 * Everything is plain GCC vector-extension code except VFMA, so the two copies cannot drift. */

#define TCAT2(a, b) a##b
#define TCAT(a, b) TCAT2(a, b)
#define FN(name) TCAT(name, SFX)

enum { FN(NV) = AST_UK_NR / VW }; /* vectors per row of a micro-tile */

ATTR static inline VF FN(vload)(const float *p) {
    VF v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}

ATTR static inline void FN(vstore)(float *p, VF v) { memcpy(p, &v, sizeof v); }

/* Broadcasts through an initialiser list ((VF){0} + s would add 0 first: not an identity). */
ATTR static inline VF FN(vsplat)(float s) { return (VF)VSPLAT(s); }
ATTR static inline VI FN(visplat)(int32_t s) { return (VI)VSPLAT(s); }

/* mask ? a : b, lane-wise (mask lanes are all ones or all zeros, as comparisons give). */
ATTR static inline VF FN(vsel)(VI mask, VF a, VF b) {
    return (VF)(((VI)a & mask) | ((VI)b & ~mask));
}

/* max(a, b) that keeps a when b is NaN (so a running max never becomes NaN by itself; the NaN
 * still reaches the sums through exp2). */
ATTR static inline VF FN(vmax)(VF a, VF b) { return FN(vsel)(b > a, b, a); }

/* 2^x, relative error < 2e-7 for x in [-126, 126]; clamped outside (so 2^(-inf) ~ 1e-38 and
 * 2^(+inf) ~ 8e37, both harmless where it is used); NaN in, NaN out. Round-to-nearest by the
 * 1.5·2^23 trick, then Cephes' exp2f polynomial on [-0.5, 0.5]. */
ATTR static inline VF FN(vexp2)(VF x) {
    const VF lo = FN(vsplat)(-126.0f), hi = FN(vsplat)(126.0f), magic = FN(vsplat)(12582912.0f);
    x = FN(vsel)(x < lo, lo, x); /* comparisons with NaN are false: NaN passes through */
    x = FN(vsel)(x > hi, hi, x);
    VF t = x + magic;
    VF n = t - magic;
    VF f = x - n;
    VF p = FN(vsplat)(1.535336188319500e-4f);
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    VI e = ((VI)t - (VI)magic + FN(visplat)(127)) << 23; /* biased exponent of 2^n */
    return p * (VF)e;
}

/* x · sigmoid(k·x) written as x / (1 + 2^(-k·log2e·x)): no cancellation for large |x|.
 * op 0: GELU(tanh) = x·sigmoid(2·√(2/π)·(x + 0.044715x³)) (= 0.5x(1 + tanh(...)));
 * op 1: SiLU = x·sigmoid(x). */
ATTR static inline VF FN(vact)(VF x, const int op) {
    const float log2e = 1.4426950408889634f;
    VF z;
    if (op == 0)
        z = (x + 0.044715f * x * x * x) * (-2.0f * 0.7978845608028654f * log2e);
    else
        z = x * -log2e;
    return x / (1.0f + FN(vexp2)(z));
}

ATTR static inline __attribute__((always_inline)) void FN(act_apply)(float *x, ptrdiff_t n,
                                                                     const int op) {
    ptrdiff_t i = 0;
    for (; i + VW <= n; i += VW) FN(vstore)(x + i, FN(vact)(FN(vload)(x + i), op));
    if (i < n) { /* tail through a padded vector: one code path for every element */
        float buf[VW] = {0};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        FN(vstore)(buf, FN(vact)(FN(vload)(buf), op));
        memcpy(x + i, buf, (size_t)(n - i) * sizeof(float));
    }
}

ATTR static void FN(gelu_tanh)(float *x, ptrdiff_t n) { FN(act_apply)(x, n, 0); }
ATTR static void FN(silu)(float *x, ptrdiff_t n) { FN(act_apply)(x, n, 1); }

/* R (compile-time, <= KR) rows x 16 columns; see ast_cpu_simd.ukernel. The accumulators are a
 * small array that full unrolling turns into registers. */
ATTR static inline __attribute__((always_inline)) void FN(uk_rows)(
    const int R, int kc, const float *a, ptrdiff_t ars, ptrdiff_t acs, const float *b,
    ptrdiff_t ldb, float *c, ptrdiff_t ldc, int beta, const float *bias) {
    VF acc[KR][FN(NV)];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < FN(NV); v++) acc[r][v] = FN(vsplat)(0.0f);
    for (int k = 0; k < kc; k++) {
        VF bv[FN(NV)];
#pragma GCC unroll 4
        for (int v = 0; v < FN(NV); v++) bv[v] = FN(vload)(b + v * VW);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            VF av = FN(vsplat)(a[r * ars]);
#pragma GCC unroll 4
            for (int v = 0; v < FN(NV); v++) acc[r][v] = VFMA(av, bv[v], acc[r][v]);
        }
        a += acs;
        b += ldb;
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < FN(NV); v++) {
            VF y = acc[r][v];
            if (bias) y += FN(vload)(bias + v * VW);
            if (beta) y += FN(vload)(c + r * ldc + v * VW);
            FN(vstore)(c + r * ldc + v * VW, y);
        }
}

ATTR static void FN(ukernel)(int mr, int kc, const float *a, ptrdiff_t ars, ptrdiff_t acs,
                             const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, int beta,
                             const float *bias) {
    while (mr > 0) { /* passes of KR rows; every row count gets its own unrolled copy */
        int r = mr < KR ? mr : KR;
        switch (r) {
        case 1: FN(uk_rows)(1, kc, a, ars, acs, b, ldb, c, ldc, beta, bias); break;
        case 2: FN(uk_rows)(2, kc, a, ars, acs, b, ldb, c, ldc, beta, bias); break;
#if KR >= 6
        case 3: FN(uk_rows)(3, kc, a, ars, acs, b, ldb, c, ldc, beta, bias); break;
        case 4: FN(uk_rows)(4, kc, a, ars, acs, b, ldb, c, ldc, beta, bias); break;
        case 5: FN(uk_rows)(5, kc, a, ars, acs, b, ldb, c, ldc, beta, bias); break;
        case 6: FN(uk_rows)(6, kc, a, ars, acs, b, ldb, c, ldc, beta, bias); break;
#endif
        default: break;
        }
        a += r * ars;
        c += r * ldc;
        mr -= r;
    }
}

ATTR static void FN(softmax_step)(int bk, int bq, float *s, float *m, float *l, float *o, int d) {
    for (int c = 0; c < bq; c += VW) {
        VF mold = FN(vload)(m + c), mx = mold;
        for (int r = 0; r < bk; r++) mx = FN(vmax)(mx, FN(vload)(s + (ptrdiff_t)r * bq + c));
        VF alpha = FN(vexp2)(mold - mx);
        VF sum = FN(vsplat)(0.0f);
        for (int r = 0; r < bk; r++) {
            VF p = FN(vexp2)(FN(vload)(s + (ptrdiff_t)r * bq + c) - mx);
            FN(vstore)(s + (ptrdiff_t)r * bq + c, p);
            sum += p;
        }
        FN(vstore)(l + c, alpha * FN(vload)(l + c) + sum);
        FN(vstore)(m + c, mx);
        for (int i = 0; i < d; i++)
            FN(vstore)(o + (ptrdiff_t)i * bq + c, alpha * FN(vload)(o + (ptrdiff_t)i * bq + c));
    }
}

static const ast_cpu_simd FN(table) = {
    SIMD_NAME, FN(ukernel), FN(gelu_tanh), FN(silu), FN(softmax_step),
};

#undef FN
#undef TCAT
#undef TCAT2
