/* simd_tmpl.c — the body of the vectorised building blocks (simd.h), included twice by simd.c.
 * Not compiled on its own. The includer defines:
 *   SFX            name suffix (_avx2, _generic)          ATTR  attributes for every function
 *   VF, VI, VH     float / int32 / uint16 vector types of VW lanes
 *   VW             lanes per vector (8, 4)
 *   KR             rows of C per register pass (6 for 16 ymm registers, 2 for 16 xmm)
 *   SIMD_NAME      the table's name string
 *   VSPLAT(s)      brace initialiser repeating s VW times
 *   VFMA(a, b, c)  a*b + c (fused where the ISA has it)
 *   VMAXB, VMINB   optional: lane-wise max/min with x86 MAXPS/MINPS NaN semantics (see below)
 * Everything is plain GCC vector-extension code except VFMA, VMAXB/VMINB and pack16's register
 * transposes, so the two copies cannot drift. It undefines all of these at its end. */

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

/* x86 MAXPS/MINPS semantics: a > b ? a : b (a < b ? a : b); b when either is NaN. One
 * instruction where the includer maps them to intrinsics, a compare and a select otherwise. */
#ifndef VMAXB
#define VMAXB(a, b) FN(vsel)((a) > (b), (a), (b))
#define VMINB(a, b) FN(vsel)((a) < (b), (a), (b))
#endif

/* max(a, b) that keeps a when b is NaN (so a running max never becomes NaN by itself; the NaN
 * still reaches the sums through exp2). */
ATTR static inline VF FN(vmax)(VF a, VF b) { return VMAXB(b, a); }

/* 2^x, relative error <= 1.2e-7 for x in [-126, 126] (checked against exp2 in double over 3.2e7
 * points, both copies); clamped outside (so 2^(-inf) ~ 1e-38 and
 * 2^(+inf) ~ 8e37, both harmless where it is used); NaN in, NaN out. Round-to-nearest by the
 * 1.5·2^23 trick, then Cephes' exp2f polynomial on [-0.5, 0.5]. */
ATTR static inline VF FN(vexp2)(VF x) {
    const VF lo = FN(vsplat)(-126.0f), hi = FN(vsplat)(126.0f), magic = FN(vsplat)(12582912.0f);
    x = VMINB(hi, VMAXB(lo, x)); /* NaN passes through (it is the second operand) */
    VF t = x + magic;
    VF n = t - magic;
    VF f = x - n;
    /* Estrin's scheme with FMAs: 6 operations of depth 4 (Horner: 12 of depth 12 without FMA) */
    VF f2 = f * f;
    VF p01 = VFMA(f, FN(vsplat)(6.931472028550421e-1f), FN(vsplat)(1.0f));
    VF p23 = VFMA(f, FN(vsplat)(5.550332471162809e-2f), FN(vsplat)(2.402264791363012e-1f));
    VF p45 = VFMA(f, FN(vsplat)(1.339887440266574e-3f), FN(vsplat)(9.618437357674640e-3f));
    VF p46 = VFMA(f2, FN(vsplat)(1.535336188319500e-4f), p45);
    VF p = VFMA(f2, VFMA(f2, p46, p23), p01);
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
    return x / (1.0f + FN(vexp2)(z)); /* a reciprocal estimate + Newton was not faster here */
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

/* IEEE half bits (in the low 16 bits of each lane) to fp32, exact for every input: integer
 * rebias for normals, exponent 255 for Inf/NaN, and for zero/subnormals an exact subtraction of
 * normal floats (no subnormal arithmetic, so it holds under flush-to-zero too). */
ATTR static inline VF FN(half_to_f32)(VI h) {
    const VI em = h & 0x7fff;
    VI o = em << 13;
    const VI expo = o & (0x7c00 << 13);
    o += (127 - 15) << 23;
    o += (expo == (0x7c00 << 13)) & ((128 - 16) << 23);                  /* Inf/NaN */
    VF sub = (VF)(o + (1 << 23)) - (VF)FN(visplat)(113 << 23);          /* m·2^-24 */
    VI small = expo == 0;
    o = (small & (VI)sub) | (~small & o);
    return (VF)(o | ((h & 0x8000) << 16));
}

ATTR static void FN(to_f32)(float *dst, const void *src, int dt, ptrdiff_t n) {
    const unsigned char *p = (const unsigned char *)src;
    if (dt == AST_DT_F32) {
        memcpy(dst, p, (size_t)n * sizeof(float));
        return;
    }
    ptrdiff_t i = 0;
    for (; i + VW <= n; i += VW) {
        VH hv;
        memcpy(&hv, p + 2 * i, sizeof hv);
        VI h = __builtin_convertvector(hv, VI);
        FN(vstore)(dst + i, dt == AST_DT_BF16 ? (VF)(h << 16) : FN(half_to_f32)(h));
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = dt == AST_DT_BF16 ? ast_bf16_to_f32(h) : ast_f16_to_f32(h);
    }
}

/* panel[k][j] = src[j*lds + k] for j < 16, k < kc: the transpose that packs 16 converted W
 * rows into a GEMM panel, by 8x8 (AVX) or 4x4 (SSE) register transposes. */
ATTR static void FN(pack16)(float *panel, const float *src, ptrdiff_t lds, int kc) {
    int k = 0;
#if VW == 8
    for (; k + 8 <= kc; k += 8)
        for (int j0 = 0; j0 < AST_UK_NR; j0 += 8) {
            const float *p = src + j0 * lds + k;
            __m256 r0 = _mm256_loadu_ps(p), r1 = _mm256_loadu_ps(p + lds);
            __m256 r2 = _mm256_loadu_ps(p + 2 * lds), r3 = _mm256_loadu_ps(p + 3 * lds);
            __m256 r4 = _mm256_loadu_ps(p + 4 * lds), r5 = _mm256_loadu_ps(p + 5 * lds);
            __m256 r6 = _mm256_loadu_ps(p + 6 * lds), r7 = _mm256_loadu_ps(p + 7 * lds);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *q = panel + k * AST_UK_NR + j0;
            _mm256_storeu_ps(q + 0 * AST_UK_NR, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(q + 1 * AST_UK_NR, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(q + 2 * AST_UK_NR, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(q + 3 * AST_UK_NR, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(q + 4 * AST_UK_NR, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(q + 5 * AST_UK_NR, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(q + 6 * AST_UK_NR, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(q + 7 * AST_UK_NR, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
#elif defined(__SSE__)
    for (; k + 4 <= kc; k += 4)
        for (int j0 = 0; j0 < AST_UK_NR; j0 += 4) {
            const float *p = src + j0 * lds + k;
            __m128 r0 = _mm_loadu_ps(p), r1 = _mm_loadu_ps(p + lds);
            __m128 r2 = _mm_loadu_ps(p + 2 * lds), r3 = _mm_loadu_ps(p + 3 * lds);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            float *q = panel + k * AST_UK_NR + j0;
            _mm_storeu_ps(q, r0);
            _mm_storeu_ps(q + AST_UK_NR, r1);
            _mm_storeu_ps(q + 2 * AST_UK_NR, r2);
            _mm_storeu_ps(q + 3 * AST_UK_NR, r3);
        }
#endif
    for (; k < kc; k++)
        for (int j = 0; j < AST_UK_NR; j++) panel[k * AST_UK_NR + j] = src[j * lds + k];
}

/* R (compile-time, <= 4) rows: out[r] = sum_k x[r*ldx + k]·w[k], two accumulators per row. */
ATTR static inline __attribute__((always_inline)) void FN(dot_r)(const int R, ptrdiff_t n,
                                                                 const float *x, ptrdiff_t ldx,
                                                                 const float *w, float *out) {
    VF acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = FN(vsplat)(0.0f);
    ptrdiff_t k = 0;
    for (; k + 2 * VW <= n; k += 2 * VW) {
        VF w0 = FN(vload)(w + k), w1 = FN(vload)(w + k + VW);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            acc[r][0] = VFMA(FN(vload)(x + r * ldx + k), w0, acc[r][0]);
            acc[r][1] = VFMA(FN(vload)(x + r * ldx + k + VW), w1, acc[r][1]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        VF sv = acc[r][0] + acc[r][1];
        float t = 0.0f;
        for (int i = 0; i < VW; i++) t += sv[i];
        for (ptrdiff_t kk = k; kk < n; kk++) t += x[r * ldx + kk] * w[kk];
        out[r] = t;
    }
}

ATTR static void FN(dot_rows)(int m, ptrdiff_t n, const float *x, ptrdiff_t ldx, const float *w,
                              float *out) {
    for (; m > 0; m -= 4, x += 4 * ldx, out += 4) {
        switch (m < 4 ? m : 4) {
        case 1: FN(dot_r)(1, n, x, ldx, w, out); break;
        case 2: FN(dot_r)(2, n, x, ldx, w, out); break;
        case 3: FN(dot_r)(3, n, x, ldx, w, out); break;
        default: FN(dot_r)(4, n, x, ldx, w, out); break;
        }
    }
}

static const ast_cpu_simd FN(table) = {
    SIMD_NAME, FN(ukernel), FN(gelu_tanh), FN(silu), FN(softmax_step), FN(to_f32), FN(pack16),
    FN(dot_rows),
};

#undef FN
#undef TCAT
#undef TCAT2
#undef VMAXB
#undef VMINB
/* the includer's parameters: the next copy defines its own */
#undef SFX
#undef SIMD_NAME
#undef VW
#undef VF
#undef VI
#undef VH
#undef KR
#undef VSPLAT
#undef VFMA
#undef ATTR
