/* quality.c — MSE, PSNR and SSIM between two latents (see quality.h). SSIM filters the five
 * moment images (x, y, x², y², xy) with the separable Gaussian window: a horizontal pass then
 * a vertical one, in double, O(h·w·window) per frame. */
#include "quality.h"

#include <math.h>
#include <stdlib.h>

#include "common.h"

int ast_ssim_window(int h, int w) {
    int n = AST_SSIM_WINDOW, m = h < w ? h : w;
    if (m < n) n = m % 2 ? m : m - 1;
    return n < 1 ? 1 : n;
}

static void gaussian(double *g, int n) {
    double sum = 0, r = 0.5 * (n - 1);
    for (int i = 0; i < n; i++) {
        g[i] = exp(-(i - r) * (i - r) / (2.0 * AST_SSIM_SIGMA * AST_SSIM_SIGMA));
        sum += g[i];
    }
    for (int i = 0; i < n; i++) g[i] /= sum;
}

double ast_ssim_frame(const float *x, const float *y, int h, int w, double range) {
    int n = ast_ssim_window(h, w), ow = w - n + 1, oh = h - n + 1;
    double g[AST_SSIM_WINDOW];
    gaussian(g, n);
    /* horizontal pass: 5 moments, [h, ow] each */
    double *hp = malloc(sizeof *hp * 5 * (size_t)h * (size_t)ow);
    if (!hp) return NAN;
    for (int i = 0; i < h; i++) {
        for (int j = 0; j < ow; j++) {
            double m[5] = {0, 0, 0, 0, 0};
            for (int k = 0; k < n; k++) {
                double a = x[(size_t)i * w + j + k], b = y[(size_t)i * w + j + k];
                m[0] += g[k] * a;
                m[1] += g[k] * b;
                m[2] += g[k] * a * a;
                m[3] += g[k] * b * b;
                m[4] += g[k] * a * b;
            }
            for (int q = 0; q < 5; q++) hp[((size_t)q * h + i) * ow + j] = m[q];
        }
    }
    double c1 = (0.01 * range) * (0.01 * range), c2 = (0.03 * range) * (0.03 * range), total = 0;
    for (int i = 0; i < oh; i++) {
        for (int j = 0; j < ow; j++) {
            double m[5] = {0, 0, 0, 0, 0};
            for (int k = 0; k < n; k++)
                for (int q = 0; q < 5; q++) m[q] += g[k] * hp[((size_t)q * h + i + k) * ow + j];
            double vx = m[2] - m[0] * m[0], vy = m[3] - m[1] * m[1], cxy = m[4] - m[0] * m[1];
            total += ((2 * m[0] * m[1] + c1) * (2 * cxy + c2)) /
                     ((m[0] * m[0] + m[1] * m[1] + c1) * (vx + vy + c2));
        }
    }
    free(hp);
    return total / ((double)oh * ow);
}

int ast_quality_compare(const float *x, const float *ref, int c, int f, int h, int w,
                        ast_quality *out) {
    int64_t n = (int64_t)c * f * h * w;
    double lo = INFINITY, hi = -INFINITY, se = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) { /* diverged: ranks last, the search goes on */
            out->mse = out->psnr = out->ssim = NAN;
            return 1;
        }
        if (!isfinite(ref[i]))
            return ast_fail("the dense reference has a non-finite value at element %lld",
                            (long long)i);
        double d = (double)x[i] - (double)ref[i];
        se += d * d;
        if (ref[i] < lo) lo = ref[i];
        if (ref[i] > hi) hi = ref[i];
    }
    double range = hi > lo ? hi - lo : 1.0;
    out->mse = n ? se / (double)n : 0;
    out->psnr = out->mse > 0 ? 10.0 * log10(range * range / out->mse) : INFINITY;
    double s = 0;
    for (int64_t k = 0; k < (int64_t)c * f; k++) {
        double v = ast_ssim_frame(x + k * h * w, ref + k * h * w, h, w, range);
        if (isnan(v)) return ast_fail("out of host memory computing SSIM");
        s += v;
    }
    out->ssim = (int64_t)c * f > 0 ? s / ((double)c * f) : 1.0;
    return 0;
}
