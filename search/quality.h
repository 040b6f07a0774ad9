/* quality.h — how close a candidate's final latent is to the dense model's: MSE, PSNR and SSIM
 * (the search's fitness is the MSE; PSNR and SSIM are recorded beside it, method.md §2).
 *
 * Latents are [C, F, H, W] fp32. The data range R is max − min of the dense reference (one value
 * for the whole latent). PSNR = 10·log10(R² / MSE), +inf when the two are identical. SSIM is the
 * standard one (Wang et al. 2004): an 11x11 Gaussian window with σ = 1.5 (shrunk to the largest
 * odd size that fits when a frame is smaller), K1 = 0.01, K2 = 0.03, "valid" positions only,
 * computed on every 2-D frame of every channel and averaged. */
#ifndef AST_QUALITY_H
#define AST_QUALITY_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

typedef struct {
    double mse;  /* mean squared error vs the dense reference (the fitness; lower is better) */
    double psnr; /* dB; +inf when identical */
    double ssim; /* mean SSIM over channels x frames, in [-1, 1] */
} ast_quality;

#define AST_SSIM_WINDOW 11
#define AST_SSIM_SIGMA 1.5

/* Compares x against the reference ref, both [c, f, h, w]. Returns 0; 1 when x holds NaN/Inf (a
 * diverged candidate: every metric NAN, so it ranks last); -1 when ref does, or out of memory. */
int ast_quality_compare(const float *x, const float *ref, int c, int f, int h, int w,
                        ast_quality *out);
/* The window side actually used for an h x w frame. */
int ast_ssim_window(int h, int w);
/* SSIM of one h x w frame with data range R (used by ast_quality_compare; exposed for tests). */
double ast_ssim_frame(const float *x, const float *y, int h, int w, double range);

#ifdef __cplusplus
}
#endif

#endif
