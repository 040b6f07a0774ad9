/* phase_timer.h — where a CUDA forward spends its time, by phase, with CUDA events
 * (ASTRAEA_CUDA_PHASES=1; docs/performance.md "Phase breakdown"). No hardware counters or
 * profiler needed, so it works on every machine the device tool lends.
 *
 * The forward marks the start of each phase on its stream (ast_phase_mark); after the stream is
 * synchronised, ast_phase_collect adds the time between consecutive marks to the phase that
 * started at the first of them, in the row of `key` (the forward's computed-token count K).
 * ast_phase_report prints one line per key (mean ms per forward per phase) and clears. Graphs
 * must be off while it runs (events are recorded eagerly). */
#ifndef AST_PHASE_TIMER_H
#define AST_PHASE_TIMER_H

#include <cuda_runtime.h>

typedef struct ast_phase_timer ast_phase_timer;

int ast_phase_create(ast_phase_timer **out, int max_marks, const char *const *names, int n_phases);
void ast_phase_free(ast_phase_timer *t);
/* Starts a forward's marks (forgets marks that were not collected). */
void ast_phase_begin(ast_phase_timer *t);
/* Phase `phase` starts now on s (a phase < 0 ends the last one). */
int ast_phase_mark(ast_phase_timer *t, int phase, cudaStream_t s);
/* After the stream is synchronised: accumulates this forward into the row of key. */
int ast_phase_collect(ast_phase_timer *t, int key);
/* Prints the rows (label: e.g. the device) to stderr and clears them. */
void ast_phase_report(ast_phase_timer *t, const char *label, int tokens);

#endif
