/* workers.h — evaluation workers of the search (internal to the library; docs/search.md).
 *
 * The search driver (search.c) is the one writer: it owns the GA, the SQLite store and the
 * order of commits. A generation's candidates are independent jobs; a pool evaluates them and
 * hands results back in whatever order they finish, and the writer commits them in candidate
 * index order, so the DB (ids included) and every decision are what a single process makes.
 *
 * Three pools behind one interface:
 *   - inline:  one worker, the writer's own evaluator, evaluated in submit() (the classic path);
 *   - threads: N pthreads, worker 0 on the writer's evaluator (idle while the pool runs: the
 *              writer only commits), workers 1..N-1 on their own (CUDA: device gpus[i]; CPU:
 *              OpenMP threads = the writer's threads / N each);
 *   - MPI:     ranks 1..P-1 of MPI_COMM_WORLD (search/mpi.c), sent the run's configuration and
 *              rank 0's stored dense references, then genomes; they send back the metrics. */
#ifndef AST_WORKERS_H
#define AST_WORKERS_H

#include <stdint.h>

#include "search.h"

/* One evaluation: a candidate of the current generation. */
typedef struct {
    int idx;                          /* candidate index in its generation */
    int steps;
    uint8_t genome[AST_GA_MAX_STEPS]; /* levels */
} ast_eval_job;

typedef struct {
    int idx;                          /* the job's candidate index */
    int rc;                           /* 0: metrics valid; -1: failed (err) */
    double mse, psnr, ssim;           /* mean over the calibration prompts (NAN: diverged) */
    double eval_seconds;              /* wall time of the evaluation */
    char *per_prompt_json;            /* owned; NULL when rc != 0 */
    char err[1024];                   /* what failed, with the worker's name */
} ast_eval_result;

void ast_eval_result_clear(ast_eval_result *r); /* frees per_prompt_json */

/* What one worker evaluates with: its evaluator, the shared dense references, its own scratch. */
typedef struct {
    const ast_evaluator *ev;
    float *const *refs;               /* per prompt [channels, frames, height, width] (read-only) */
    float *out;                       /* scratch latent of this worker */
    int levels;                       /* GA levels: genome -> budgets */
    /* Called between prompts (may be NULL): nonzero aborts the evaluation (message set). */
    int (*between)(void *user);
    void *between_user;
} ast_eval_worker;

/* Evaluates job->genome on every calibration prompt: fitness = mean MSE vs the dense reference
 * (PSNR, SSIM beside it). Returns r->rc. */
int ast_eval_genome(const ast_eval_worker *w, const ast_eval_job *job, ast_eval_result *r);

typedef struct ast_eval_pool ast_eval_pool;
struct ast_eval_pool {
    int capacity;                     /* jobs that can be in flight at once */
    char what[128];                   /* "3 worker threads", "2 MPI worker ranks", ... */
    /* Starts a job; only when fewer than `capacity` are in flight. -1 on error. */
    int (*submit)(ast_eval_pool *p, const ast_eval_job *job);
    /* Next finished job's result: 1 got one, 0 none within timeout_s, -1 error (a failed
     * evaluation is a result with rc -1, not an error of the pool). */
    int (*wait)(ast_eval_pool *p, double timeout_s, ast_eval_result *out);
    /* Stops the workers (jobs in flight are abandoned) and frees the pool. */
    void (*destroy)(ast_eval_pool *p);
};

/* Inline pool: the writer's worker evaluates in submit(). */
int ast_eval_pool_inline(const ast_eval_worker *w, ast_eval_pool **out);

/* Makes the evaluator of thread worker i (i >= 1) on `device` (CUDA ordinal; ignored on the
 * CPU). */
typedef int (*ast_make_evaluator_fn)(void *user, int worker, int device, ast_evaluator **out);

/* Thread pool of n workers (n >= 2): worker 0 evaluates with `w0` (the writer's evaluator),
 * workers 1..n-1 with an evaluator from make(user, i, devices[i]). omp_threads > 0: each worker
 * thread runs its OpenMP regions with that many threads. Returns when every worker is ready (or
 * -1 naming the worker that could not start). */
int ast_eval_pool_threads(const ast_eval_worker *w0, int n, const int *devices, int omp_threads,
                          ast_make_evaluator_fn make, void *make_user, ast_eval_pool **out);

/* MPI pool over the session's worker ranks (search/mpi.c): sends them the run's configuration
 * (config_json, the run's config_key for the identity check) and the dense references (n
 * floats each). between(user) is called while waiting for the ranks to start (the lock
 * heartbeat). */
int ast_eval_pool_mpi(ast_search_mpi *m, const char *config_json, const char *config_key,
                      const ast_evaluator *ev, float *const *refs, int64_t n,
                      int (*between)(void *user), void *between_user, ast_eval_pool **out);

/* For an MPI worker rank (search.c): the evaluator for a run's stored configuration on
 * `device`, the run's GA levels, and the key of the run that evaluator would make (checked
 * against rank 0's). */
int ast_search_worker_evaluator(const ast_search_config *given, const char *config_json,
                                int device, ast_evaluator **ev, int *levels, char key[17]);

#endif
