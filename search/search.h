/* search.h — the budget search driver behind astraea-search (method.md §2, docs/search.md).
 *
 *   config ──> evaluator (engine on a model, or the synthetic stand-in)
 *          ──> run in the store (same parameters -> same run; resumed when interrupted)
 *          ──> latency model (calibrated once per run, stored) ──> repair band
 *          ──> dense references (computed once per model/shape/sampler/prompt/seed, stored)
 *          ──> generations: make the generation's candidates from the stored RNG state,
 *              evaluate those not in the store yet, commit each one
 *          ──> best candidate at the target speed, timed for real; run done.
 *
 * A generation is a batch of independent evaluation jobs: the candidates are all made before
 * any is evaluated, from the RNG state stored at the generation's start, so a pool of workers
 * (search/workers.h: threads, one per GPU; MPI ranks) evaluates them concurrently while one writer
 * owns the DB and commits in candidate order, and a resumed run regenerates the very same batch
 * and skips what is stored. */
#ifndef AST_SEARCH_H
#define AST_SEARCH_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "ga.h"
#include "latency.h"
#include "profile.h"
#include "quality.h"
#include "store.h"

/* ---- evaluators: what turns a budget curve into a final latent -------------------------------- */
typedef struct {
    /* identity (filled by the constructor) */
    char model_id[64];
    char checkpoint_hash[17];
    char backend[16];           /* "cpu", "cuda", "synthetic" */
    char device[128];
    int channels, frames, height, width; /* shape of a generation's output latent */
    int steps;
    char sampler[16];           /* "unipc" / "euler" */
    double shift, guidance;
    int n_branches;             /* forwards per step (2 with CFG) */
    int pixel_frames, pixel_height, pixel_width; /* decoded size when known, else 0 */
    int has_tokenwise;          /* tokenwise below is meaningful (engine evaluators) */
    ast_tokenwise_opts tokenwise;
    int n_prompts;
    char **prompt_keys;         /* identify each calibration prompt and its content */

    void *user;
    /* One full generation for calibration prompt p (budgets NULL: dense). seconds: wall time
     * of the sampling loop. */
    int (*generate)(void *user, int prompt, const float *budgets, float *out, double *seconds);
    /* One forward of one branch at budget theta, after a dense one (caches warm). */
    int (*time_forward)(void *user, float theta, double *seconds);
    void (*destroy)(void *user);
} ast_evaluator;

void ast_evaluator_free(ast_evaluator *ev);

typedef struct ast_search_config ast_search_config;
/* An MPI session (search/mpi.c): rank 0 is the writer, ranks 1..P-1 evaluation workers. */
typedef struct ast_search_mpi ast_search_mpi;

/* A quadratic stand-in for a network (model "synthetic"): output = dense reference + a pattern
 * whose mean square is a fixed function of the budgets (early steps weigh more); exact latency
 * a + b·θ. For testing the search machinery without an engine. */
int ast_evaluator_synthetic(const ast_search_config *c, ast_evaluator **out);
/* The engine on a model (engine.h, sampler.h): wan-mini prompts are encoded with its text
 * encoder; for other checkpoints each prompt is a context .safetensors file ("context" [L,
 * text_dim]), optionally followed by a TAB and a negative-context file. */
int ast_evaluator_engine(const ast_search_config *c, ast_evaluator **out);

/* ---- configuration ------------------------------------------------------------------------ */
typedef struct {
    int phase;                  /* AST_PHASE_* */
    int generation, generations;
    int evals_done, evals_total; /* candidates recorded in the run / to record in all */
    double best_mse, best_psnr, best_ssim, best_speedup; /* best at the target so far */
    double eta_seconds;         /* NAN until known */
    const char *what;           /* one line about the current step */
} ast_search_progress;

enum {
    AST_PHASE_SETUP = 0,
    AST_PHASE_CALIBRATE,
    AST_PHASE_REFERENCES,
    AST_PHASE_EVALUATE,
    AST_PHASE_MEASURE,
    AST_PHASE_DONE
};

struct ast_search_config {
    const char *model;          /* "wan-mini" (default), a checkpoint folder, or "synthetic" */
    int frames, height, width;  /* latent shape; 0 = the model's default */
    int steps;                  /* 0 = the model's default (Wan: 50) */
    const char *sampler;        /* "unipc" (default) or "euler" */
    double shift, guidance;     /* NAN = the model's default */
    const char *prompts_file;   /* one prompt per line (# comments); NULL = built-in prompts */
    const char *const *prompts; /* explicit prompt list (overrides prompts_file); may be NULL */
    int prompts_count;
    int n_prompts;              /* calibration prompts used (default 4; 0 = all of the file) */
    uint64_t noise_seed;        /* prompt p uses noise seed noise_seed + p */
    const char *backend;        /* "auto" (default), "cpu", "cuda" */
    int device;                 /* CUDA device ordinal */
    double w_alpha, w_beta;     /* token selection weights; NAN = the engine's default */
    const char *cache;          /* "residual" / "output"; NULL = the engine's default */

    double target_speedup;      /* wall-clock speedup asked for (> 1) */
    ast_ga_params ga;
    uint64_t seed;              /* GA seed */
    int latency_repeats;        /* timings per calibration budget (median) */
    double latency_a, latency_b;/* NAN: calibrate; else a fixed model, seconds per forward */
    int measure_repeats;        /* full generations timed per side at the end (median) */

    const char *db_path;
    int64_t resume_run;         /* 0: the run with these parameters (created if none) */
    int break_lock;
    /* Evaluation workers (docs/search.md "Workers"); none of these changes a run's result. */
    int workers;                /* in this process; 0 = one per CUDA device with the CUDA backend,
                                   else 1 */
    const int *gpus;            /* CUDA devices: worker i uses gpus[i % n_gpus]; gpus[0] must be
                                   `device`. NULL: `device`, then the other visible devices */
    int n_gpus;
    int gpus_per_eval;          /* > 1: each evaluation runs on this many GPUs of `gpus`
                                   (sequence parallelism; worker k gets gpus[k·G, (k+1)·G)). Its
                                   selection is per GPU shard, so G is part of the run's key. */
    ast_search_mpi *mpi;        /* a session with > 1 rank: its worker ranks evaluate (rank 0);
                                   NULL or 1 rank: workers in this process */
    int synthetic_ms;           /* model "synthetic": sleep this long per generation */
    /* Tests: stop (as if interrupted) after this many evaluations in this process; 0 = never */
    int stop_after;

    int (*should_stop)(void);   /* nonzero: stop cleanly after the current evaluation (the
                                   tools pass ast_run_interrupted); may be NULL */
    void (*progress)(void *user, const ast_search_progress *p);
    void *progress_user;
};

void ast_search_config_default(ast_search_config *c);

typedef struct {
    int64_t run_id;
    int created;                /* 1: a new run; 0: continued (or already done) */
    int already_done;           /* the run was complete before this call */
    int interrupted;
    int64_t best_candidate;
    double measured_speedup, predicted_speedup;
    double mse, psnr, ssim;
    int64_t evaluations;
    double device_seconds;
    int evaluated_now;          /* evaluations made by this call */
} ast_search_result;

/* Runs (or continues) the search. Returns 0 when the run is done, 1 when it stopped early
 * (stop flag / stop_after; the run is resumable), -1 on error (message set). */
int ast_search_run(const ast_search_config *c, ast_search_result *res);

/* ---- MPI (docs/search.md "MPI") -------------------------------------------------------------
 * A build with MPI started by an MPI launcher (mpirun/srun: OMPI_COMM_WORLD_SIZE, PMIX_RANK or
 * PMI_RANK in the environment) calls MPI_Init; *out = NULL otherwise (one process, exactly as a
 * build without MPI). Every MPI call is checked (MPI_ERRORS_RETURN) and its failure is an error
 * naming the call. */
int ast_search_mpi_init(int *argc, char ***argv, ast_search_mpi **out);
int ast_search_mpi_rank(const ast_search_mpi *m); /* 0 when m is NULL */
int ast_search_mpi_size(const ast_search_mpi *m); /* 1 when m is NULL */
/* Ranks 1..P-1: evaluate what rank 0 sends until it says quit (its search finished or failed).
 * given: this rank's own command line (devices: --gpus, else every visible one; local worker k
 * on a host uses the k-th). 0 when told to quit (also after a setup error it reported to rank 0),
 * -1 on an MPI failure. */
int ast_search_mpi_serve(ast_search_mpi *m, const ast_search_config *given);
/* Rank 0 (workers_serve: the worker ranks are in ast_search_mpi_serve): tells every worker rank
 * that has not been told to quit. Every rank: MPI_Finalize, then frees m. NULL: nothing. */
int ast_search_mpi_finish(ast_search_mpi *m, int workers_serve);
/* After an MPI failure on any rank: ends every rank of the job (MPI_Abort). */
void ast_search_mpi_abort(ast_search_mpi *m, int code);

typedef struct {
    int evaluations;            /* left to do */
    int references;             /* dense references still to compute */
    double predicted_eval_s;    /* per candidate (all prompts) */
    double predicted_dense_s;   /* per dense reference */
    double total_s;             /* everything left, with calibration and the final timing */
    int calibrated_now;         /* 1: a quick calibration was made for the estimate */
    ast_latency_model latency;
    ast_ga_band band;
    double theta_mean;          /* target mean budget of the free steps */
    int64_t run_id;             /* existing run these parameters map to, or 0 */
    int workers;                /* evaluations at once, as the search would run them */
} ast_search_estimate;

/* --dry-run: what the search would cost, without writing to the DB. */
int ast_search_estimate_cost(const ast_search_config *c, ast_search_estimate *est);

/* ---- --validate: a profile against a uniform budget on held-out prompts ------------------- */
#define AST_VALIDATE_MAX_PROMPTS 64
typedef struct {
    int n_prompts;
    double theta_uniform;         /* the uniform budget with the profile's predicted time (the
                                     same Σθ over the free steps: time is affine in it) */
    ast_quality profile[AST_VALIDATE_MAX_PROMPTS], uniform[AST_VALIDATE_MAX_PROMPTS];
    ast_quality profile_mean, uniform_mean;
    int wins;                     /* prompts where the profile's PSNR beats the uniform's */
    double dense_s, profile_s, uniform_s; /* median seconds of a whole generation (prompt 0) */
    double profile_speedup, uniform_speedup; /* measured, vs dense */
    char device[128];
} ast_validation;

/* Generates each prompt dense, with the profile, and with the uniform budget of the same
 * predicted time; compares both to dense and times all three for real. The model, backend and
 * prompts come from c (--prompts, else the built-in wan-mini prompts the default search does not
 * use); steps, shape, sampler, shift and guidance from the profile, which must be compatible. */
int ast_search_validate(const ast_search_config *c, const ast_profile *p, ast_validation *v);

/* ---- reading a run's results ------------------------------------------------------------- */
/* min_speedup NAN: the run's best (the candidate timed at the end, else the best at the target
 * speed). Else the best-quality Pareto-front candidate with predicted speedup >= min_speedup. */
int ast_search_pick(ast_store *s, int64_t run, double min_speedup, int64_t *cand);
/* The full profile of candidate cand of run. */
int ast_search_profile(ast_store *s, int64_t run, int64_t cand, ast_profile *p);
/* Levels of the run (from its GA parameters). */
int ast_search_run_levels(const ast_run_info *r, int *levels);

#ifdef __cplusplus
}
#endif

#endif
