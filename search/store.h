/* store.h — the search's SQLite database: runs, their generations (RNG state at the start of
 * each), every evaluated candidate, dense reference latents, the latency model, run locks and the
 * Pareto front (a view). docs/search.md has the schema.
 *
 * Guarantees:
 *   - WAL mode, synchronous=FULL, busy_timeout 10 s; every sqlite3_* call checked, and each
 *     error names the DB path and what the statement was for.
 *   - Each evaluation is committed in one transaction with the run's counters, so after kill -9
 *     a candidate is either fully recorded or absent.
 *   - PRAGMA application_id marks the file as ours; a file that is not SQLite, an SQLite file of
 *     another program, or a DB from a newer schema is refused with a clear message.
 *   - A run is owned by one process at a time (ast_store_lock): a second process refuses to work
 *     on it; a lock left by a dead process is taken over. */
#ifndef AST_STORE_H
#define AST_STORE_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdint.h>

#include "common.h"
#include "ga.h"
#include "latency.h"

#define AST_STORE_SCHEMA_VERSION 3
#define AST_STORE_APP_ID 0x41535452 /* "ASTR" in PRAGMA application_id */
#define AST_STORE_DEFAULT_PATH "astraea-search.db"
#define AST_STORE_STALE_LOCK_SECONDS 600.0 /* another host's lock without a heartbeat this long */

typedef struct ast_store ast_store;

/* Opens (creating and migrating as needed) the DB at path. readonly: for listing and export; the
 * file must exist. */
int ast_store_open(const char *path, int readonly, ast_store **out);
/* Tests only: creates/migrates no further than schema `version`. */
int ast_store_open_version(const char *path, int version, ast_store **out);
void ast_store_close(ast_store *s);
const char *ast_store_path(const ast_store *s);
int ast_store_schema_version(const ast_store *s);

typedef enum {
    AST_RUN_RUNNING = 0,
    AST_RUN_INTERRUPTED,
    AST_RUN_FAILED,
    AST_RUN_DONE,
} ast_run_status;
const char *ast_run_status_name(ast_run_status st);

typedef struct {
    int64_t id;
    char created[32], updated[32];  /* UTC, ISO 8601 */
    char config_key[17];            /* hash of config_json: same parameters -> same run */
    char *config_json;              /* every parameter of the run (owned) */
    char model_id[64];
    char checkpoint_hash[17];
    int frames, height, width;      /* latent shape */
    int steps;
    char sampler[16];
    double shift, guidance;
    double target_speedup;
    char *ga_params_json;           /* owned */
    uint64_t seed;                  /* GA seed */
    char backend[16];               /* "cpu", "cuda", "synthetic" */
    char device[128];
    ast_run_status status;
    int generation;                 /* current generation (generations + 1 when the GA is done) */
    ast_rng rng;                    /* RNG state at the start of `generation` */
    int64_t evaluations;            /* search cost: candidate evaluations (not reuses) */
    double device_seconds;          /* search cost: seconds of evaluation, references, timing */
    int64_t best_candidate;         /* 0 until the run is done */
    double measured_dense_s;        /* NAN until measured: median wall time of a dense generation */
    double measured_best_s;         /* ... of the best candidate's profile */
    double measured_speedup;        /* measured_dense_s / measured_best_s */
} ast_run_info;
void ast_run_info_free(ast_run_info *r); /* frees the owned strings */

typedef struct {
    int64_t id, run_id;
    int generation, index;          /* position in the run: generation-major */
    int steps;
    uint8_t genome[AST_GA_MAX_STEPS];
    char origin[16];                /* ast_ga_origin_name */
    int64_t parent_a, parent_b;     /* candidate ids, 0 = none */
    double mse, psnr, ssim;         /* mean over the calibration prompts */
    char *per_prompt_json;          /* [{"mse":..,"psnr":..,"ssim":..}, ...] (owned, may be NULL) */
    double predicted_s;             /* latency-model generation time */
    double predicted_speedup;
    double measured_s;              /* NAN unless timed for real */
    double eval_seconds;            /* wall time spent evaluating (0 for a reuse) */
    int64_t reused_from;            /* candidate whose result was reused (same genome), or 0 */
} ast_cand;
void ast_cands_free(ast_cand *c, int n);

/* ---- runs ---------------------------------------------------------------------------------- */
/* 0: found (*id set), 1: no run with this key, -1: error. */
int ast_store_run_find(ast_store *s, const char *config_key, int64_t *id);
/* Inserts the run and its generation-0 RNG state in one transaction; sets r->id. */
int ast_store_run_create(ast_store *s, ast_run_info *r);
/* In one transaction (so two processes started with the same parameters share one run): finds
 * the run with r->config_key (sets r->id, *created = 0) or creates it from r (*created = 1). */
int ast_store_run_find_or_create(ast_store *s, ast_run_info *r, int *created);
/* 0, or -1 with "no run N in DB" */
int ast_store_run_get(ast_store *s, int64_t id, ast_run_info *r);
int ast_store_run_latest(ast_store *s, int64_t *id); /* 0 found, 1 none */
int ast_store_runs_list(ast_store *s, ast_run_info **out, int *n);
void ast_runs_free(ast_run_info *r, int n);
int ast_store_run_set_status(ast_store *s, int64_t run, ast_run_status st);
/* Adds search cost outside candidate evaluations (dense references, calibration). */
int ast_store_run_add_cost(ast_store *s, int64_t run, double device_seconds);
int ast_store_run_set_device(ast_store *s, int64_t run, const char *device);
int ast_store_run_set_measured(ast_store *s, int64_t run, int64_t best, double dense_s,
                               double best_s);

/* ---- generations --------------------------------------------------------------------------- */
/* RNG state at the start of generation gen: 0 found, 1 absent, -1 error. */
int ast_store_generation_rng(ast_store *s, int64_t run, int gen, ast_rng *rng);
/* Records that generation next-1 is complete: one transaction storing the RNG state for next
 * and the run's generation counter. */
int ast_store_generation_finish(ast_store *s, int64_t run, int next, const ast_rng *rng);

/* ---- candidates ---------------------------------------------------------------------------- */
/* One transaction: the candidate, the run's evaluations/device seconds (unless a reuse), the
 * lock heartbeat. Refuses when this process no longer holds the run's lock. Sets c->id. */
int ast_store_cand_insert(ast_store *s, ast_cand *c);
/* Every candidate of a run, generation-major. */
int ast_store_cands_load(ast_store *s, int64_t run, ast_cand **out, int *n);
int ast_store_cand_get(ast_store *s, int64_t id, ast_cand *c);
int ast_store_cand_set_measured(ast_store *s, int64_t id, double measured_s);
/* The run's quality/speed Pareto front (view `pareto`: no other candidate is at least as fast
 * and at least as good, and better in one), fastest last. */
int ast_store_pareto(ast_store *s, int64_t run, ast_cand **out, int *n);

/* ---- latency model ------------------------------------------------------------------------- */
int ast_store_latency_get(ast_store *s, int64_t run, ast_latency_model *m); /* 0 / 1 absent */
int ast_store_latency_put(ast_store *s, int64_t run, const ast_latency_model *m,
                          const char *device);

/* ---- dense references ---------------------------------------------------------------------- */
typedef struct {
    const char *key;        /* identifies (model, checkpoint, backend, shape, sampler, prompt,
                               noise seed) */
    const char *model_id, *checkpoint_hash, *backend, *prompt;
    uint64_t noise_seed;
    int c, f, h, w;
} ast_dense_meta;
/* 0: found and copied into out (n floats); 1: absent; -1: error (e.g. stored size differs). */
int ast_store_dense_get(ast_store *s, const char *key, float *out, int64_t n);
int ast_store_dense_put(ast_store *s, const ast_dense_meta *m, const float *x, double seconds);

/* ---- run locks ----------------------------------------------------------------------------- */
/* Takes run's lock for this process. Refuses when a live process (same host: pid and process
 * start time checked; other host: heartbeat within AST_STORE_STALE_LOCK_SECONDS) holds it,
 * unless break_lock. Re-entrant for the holder. */
int ast_store_lock(ast_store *s, int64_t run, int break_lock);
int ast_store_unlock(ast_store *s, int64_t run);
/* Heartbeat of the lock between commits (long evaluations): another host's process treats a
 * lock as stale after AST_STORE_STALE_LOCK_SECONDS without one. Cheap to call often: it writes
 * only when the last heartbeat (this or a commit's) is 10 s old. */
int ast_store_touch(ast_store *s, int64_t run);

/* "%016llx" x4 and back. */
void ast_rng_format(const ast_rng *r, char out[65]);
int ast_rng_parse(const char *text, ast_rng *r);

#ifdef __cplusplus
}
#endif

#endif
