// phase_timer.cu — see phase_timer.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "phase_timer.h"

enum { MAX_KEYS = 16, MAX_PHASES = 32 };

struct ast_phase_timer {
    const char *const *names;
    int n_phases, max_marks, n_marks;
    cudaEvent_t *ev;
    int *phase;                 // phase starting at mark i
    int keys[MAX_KEYS], n_keys, forwards[MAX_KEYS];
    double ms[MAX_KEYS][MAX_PHASES];
};

int ast_phase_create(ast_phase_timer **out, int max_marks, const char *const *names,
                     int n_phases) {
    *out = NULL;
    if (n_phases > MAX_PHASES) return ast_fail("internal: %d timer phases (max %d)", n_phases, MAX_PHASES);
    ast_phase_timer *t = (ast_phase_timer *)ast_calloc(1, sizeof *t, "the phase timer");
    if (!t) return -1;
    t->names = names;
    t->n_phases = n_phases;
    t->ev = (cudaEvent_t *)ast_calloc((size_t)max_marks, sizeof *t->ev, "the phase timer");
    t->phase = (int *)ast_calloc((size_t)max_marks, sizeof *t->phase, "the phase timer");
    if (!t->ev || !t->phase) {
        ast_phase_free(t);
        return -1;
    }
    for (int i = 0; i < max_marks; i++) {
        cudaError_t e = cudaEventCreate(&t->ev[i]);
        if (e != cudaSuccess) {
            t->max_marks = i;
            ast_phase_free(t);
            return ast_fail("cudaEventCreate for the phase timer: %s", cudaGetErrorString(e));
        }
    }
    t->max_marks = max_marks;
    *out = t;
    return 0;
}

void ast_phase_free(ast_phase_timer *t) {
    if (!t) return;
    for (int i = 0; i < t->max_marks; i++) cudaEventDestroy(t->ev[i]);
    free(t->ev);
    free(t->phase);
    free(t);
}

void ast_phase_begin(ast_phase_timer *t) { t->n_marks = 0; }

int ast_phase_mark(ast_phase_timer *t, int phase, cudaStream_t s) {
    if (t->n_marks >= t->max_marks) return 0; // out of marks: the rest is not split
    t->phase[t->n_marks] = phase;
    CUDA_TRY(cudaEventRecord(t->ev[t->n_marks++], s));
    return 0;
}

int ast_phase_collect(ast_phase_timer *t, int key) {
    int row = -1;
    for (int i = 0; i < t->n_keys; i++)
        if (t->keys[i] == key) row = i;
    if (row < 0) {
        if (t->n_keys == MAX_KEYS) return 0;
        row = t->n_keys++;
        t->keys[row] = key;
        t->forwards[row] = 0;
        memset(t->ms[row], 0, sizeof t->ms[row]);
    }
    for (int i = 1; i < t->n_marks; i++) {
        float ms = 0;
        CUDA_TRY(cudaEventElapsedTime(&ms, t->ev[i - 1], t->ev[i]));
        if (t->phase[i - 1] >= 0 && t->phase[i - 1] < t->n_phases) t->ms[row][t->phase[i - 1]] += ms;
    }
    t->forwards[row]++;
    t->n_marks = 0;
    return 0;
}

void ast_phase_report(ast_phase_timer *t, const char *label, int tokens) {
    if (!t || !t->n_keys) return;
    fprintf(stderr, "phase breakdown on %s (%d tokens; mean ms per forward; graphs off):\n", label,
            tokens);
    fprintf(stderr, "  %7s %4s", "K", "n");
    for (int p = 0; p < t->n_phases; p++) fprintf(stderr, " %10s", t->names[p]);
    fprintf(stderr, " %10s\n", "total");
    for (int r = 0; r < t->n_keys; r++) {
        double sum = 0;
        fprintf(stderr, "  %7d %4d", t->keys[r], t->forwards[r]);
        for (int p = 0; p < t->n_phases; p++) {
            double v = t->ms[r][p] / t->forwards[r];
            sum += v;
            fprintf(stderr, " %10.3f", v);
        }
        fprintf(stderr, " %10.3f\n", sum);
    }
    t->n_keys = 0;
}
