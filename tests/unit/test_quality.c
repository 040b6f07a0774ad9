/* test_quality.c — MSE/PSNR/SSIM of the search fitness against direct formulas: SSIM against a
 * naive per-window implementation (2-D Gaussian weights, no separable passes) on random frames,
 * including frames smaller than the 11x11 window. */
#include <math.h>
#include <string.h>

#include "quality.h"
#include "test_util.h"

/* SSIM straight from the definition: for each valid window position, weighted means, variances
 * and covariance with the 2-D Gaussian w(i)·w(j). */
static double naive_ssim(const float *x, const float *y, int h, int w, double range) {
    int n = ast_ssim_window(h, w);
    double g[AST_SSIM_WINDOW], sum = 0, r = 0.5 * (n - 1);
    for (int i = 0; i < n; i++) sum += g[i] = exp(-(i - r) * (i - r) / (2 * 1.5 * 1.5));
    for (int i = 0; i < n; i++) g[i] /= sum;
    double c1 = pow(0.01 * range, 2), c2 = pow(0.03 * range, 2), total = 0;
    int count = 0;
    for (int i0 = 0; i0 + n <= h; i0++) {
        for (int j0 = 0; j0 + n <= w; j0++) {
            double mx = 0, my = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    mx += g[i] * g[j] * x[(i0 + i) * w + j0 + j];
                    my += g[i] * g[j] * y[(i0 + i) * w + j0 + j];
                }
            double vx = 0, vy = 0, cxy = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    double a = x[(i0 + i) * w + j0 + j] - mx, b = y[(i0 + i) * w + j0 + j] - my;
                    vx += g[i] * g[j] * a * a;
                    vy += g[i] * g[j] * b * b;
                    cxy += g[i] * g[j] * a * b;
                }
            total += (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
            count++;
        }
    }
    return total / count;
}

int main(void) {
    const int shapes[][4] = {{3, 2, 16, 20}, {4, 2, 8, 8}, {2, 1, 5, 7}, {1, 1, 2, 3}};
    for (int s = 0; s < 4; s++) {
        int c = shapes[s][0], f = shapes[s][1], h = shapes[s][2], w = shapes[s][3];
        int64_t n = (int64_t)c * f * h * w;
        float *ref = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n);
        ast_test_fill(ref, n, 100 + s, -1.5f, 2.0f);
        ast_test_fill(x, n, 200 + s, -0.3f, 0.3f);
        for (int64_t i = 0; i < n; i++) x[i] += ref[i]; /* a noisy copy */
        ast_quality q;
        CHECK(ast_quality_compare(x, ref, c, f, h, w, &q) == 0, "compare: %s", ast_error_get());
        /* direct formulas; fp32 inputs, double sums: agreement to ~1e-12 relative */
        double lo = 1e9, hi = -1e9, se = 0;
        for (int64_t i = 0; i < n; i++) {
            lo = fmin(lo, ref[i]);
            hi = fmax(hi, ref[i]);
            se += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
        }
        double mse = se / n, psnr = 10 * log10((hi - lo) * (hi - lo) / mse), ssim = 0;
        for (int k = 0; k < c * f; k++) ssim += naive_ssim(x + k * h * w, ref + k * h * w, h, w, hi - lo);
        ssim /= c * f;
        CHECK(fabs(q.mse - mse) <= 1e-12 * mse, "shape %d: mse %.15g vs %.15g", s, q.mse, mse);
        CHECK(fabs(q.psnr - psnr) <= 1e-9, "shape %d: psnr %.12g vs %.12g", s, q.psnr, psnr);
        /* separable vs direct 2-D window: same sums in another order, ~1e-12 */
        CHECK(fabs(q.ssim - ssim) <= 1e-9, "shape %d: ssim %.12g vs naive %.12g", s, q.ssim, ssim);
        CHECK(q.ssim > 0 && q.ssim < 1, "shape %d: ssim %g of a noisy copy", s, q.ssim);
        /* identical: mse 0, psnr +inf, ssim 1 */
        CHECK(ast_quality_compare(ref, ref, c, f, h, w, &q) == 0 && q.mse == 0 && isinf(q.psnr) &&
                  fabs(q.ssim - 1) < 1e-12,
              "identical: mse %g psnr %g ssim %g", q.mse, q.psnr, q.ssim);
        /* a diverged candidate ranks last (NaN metrics, rc 1), a broken reference is an error */
        x[n / 2] = NAN;
        CHECK(ast_quality_compare(x, ref, c, f, h, w, &q) == 1 && isnan(q.mse), "NaN candidate");
        CHECK_FAILS_WITH(ast_quality_compare(ref, x, c, f, h, w, &q), "dense reference");
        free(ref);
        free(x);
    }
    CHECK(ast_ssim_window(64, 64) == 11 && ast_ssim_window(8, 9) == 7 &&
              ast_ssim_window(5, 7) == 5 && ast_ssim_window(2, 3) == 1,
          "window sizes");
    /* larger error -> lower SSIM and PSNR */
    float a[64], b[64], c2[64];
    ast_test_fill(a, 64, 1, 0, 1);
    for (int i = 0; i < 64; i++) {
        b[i] = a[i] + 0.05f * (i % 3 - 1);
        c2[i] = a[i] + 0.2f * (i % 3 - 1);
    }
    ast_quality qb, qc;
    ast_quality_compare(b, a, 1, 1, 8, 8, &qb);
    ast_quality_compare(c2, a, 1, 1, 8, 8, &qc);
    CHECK(qb.ssim > qc.ssim && qb.psnr > qc.psnr && qb.mse < qc.mse, "monotone: %g %g", qb.ssim,
          qc.ssim);
    return ast_test_finish("test_quality");
}
