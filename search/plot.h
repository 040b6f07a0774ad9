/* plot.h — a PNG of a run's quality/speed Pareto front and of one budget curve, drawn by
 * gnuplot (a separate, well-kept program: spawned with a script, never linked). */
#ifndef AST_PLOT_H
#define AST_PLOT_H

#ifdef __cplusplus
extern "C" {
#endif

#include "store.h"

/* front: n candidates (predicted speedup, PSNR); chosen: the exported one (its point is
 * highlighted and its budgets drawn as a step curve). budgets: [steps]. Writes png_path
 * atomically. Fails clearly when gnuplot is not installed. */
int ast_plot_front(const char *png_path, const char *title, const ast_cand *front, int n,
                   const ast_cand *chosen, const float *budgets, int steps);

#ifdef __cplusplus
}
#endif

#endif
