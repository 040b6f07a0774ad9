/* astraea-search — evolutionary search of per-step token budgets for a target wall-clock speedup
 * (method.md §2, docs/search.md). Every evaluation is stored in SQLite; the same command again
 * (or --resume RUN) continues an interrupted run to the same result. Candidates are evaluated by
 * --workers in this process, or, started by mpirun with more than one rank, by ranks 1..P-1
 * while rank 0 owns the GA and the database. */
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "common.h"
#include "run.h"
#include "search.h"

typedef struct {
    int is_tty;
    int last_gen;
    int last_phase;
    double t0;
} progress_ctx;

static void fmt_duration(double s, char *buf, size_t len) {
    if (!isfinite(s)) snprintf(buf, len, "?");
    else if (s < 60) snprintf(buf, len, "%.0fs", s);
    else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void on_progress(void *user, const ast_search_progress *p) {
    progress_ctx *c = user;
    if (ast_log_level < 1) return;
    if (p->phase != AST_PHASE_EVALUATE) {
        if (c->is_tty && c->last_phase == AST_PHASE_EVALUATE) fputc('\n', stderr);
        if (p->phase != AST_PHASE_DONE) fprintf(stderr, "astraea-search: %s\n", p->what);
        c->last_phase = p->phase;
        return;
    }
    char eta[32], line[256];
    fmt_duration(p->eta_seconds, eta, sizeof eta);
    snprintf(line, sizeof line,
             "gen %d/%d  evals %d/%d  best at target: mse %.3g, psnr %.2f dB, ssim %.4f (%.2fx "
             "predicted)  ETA %s",
             p->generation, p->generations, p->evals_done, p->evals_total, p->best_mse,
             p->best_psnr, p->best_ssim, p->best_speedup, eta);
    if (c->is_tty) {
        fprintf(stderr, "\r%s\033[K", line);
    } else if (p->generation != c->last_gen || p->evals_done == p->evals_total) {
        fprintf(stderr, "%s\n", line); /* one line per generation in logs */
    }
    c->last_gen = p->generation;
    c->last_phase = p->phase;
}

static void print_summary(const char *db, int64_t run_id) {
    ast_store *s = NULL;
    ast_run_info r;
    ast_cand *v = NULL, *front = NULL;
    int n = 0, nf = 0, levels = 11;
    ast_latency_model lm;
    if (ast_store_open(db, 1, &s) != 0 || ast_store_run_get(s, run_id, &r) != 0) {
        fprintf(stderr, "astraea-search: (summary unavailable: %s)\n", ast_error_get());
        ast_store_close(s);
        return;
    }
    ast_search_run_levels(&r, &levels);
    int have_lat = ast_store_latency_get(s, run_id, &lm) == 0;
    if (ast_store_cands_load(s, run_id, &v, &n) != 0 || ast_store_pareto(s, run_id, &front, &nf))
        fprintf(stderr, "astraea-search: (summary incomplete: %s)\n", ast_error_get());
    char cost[32];
    fmt_duration(r.device_seconds, cost, sizeof cost);
    printf("\nrun %lld (%s) — %s, latent %dx%dx%d, %d steps %s, guidance %g, target %.2fx\n",
           (long long)r.id, ast_run_status_name(r.status), r.model_id, r.frames, r.height, r.width,
           r.steps, r.sampler, r.guidance, r.target_speedup);
    printf("device %s; search cost %lld evaluations, %s device time (%.0f s)\n", r.device,
           (long long)r.evaluations, cost, r.device_seconds);
    if (have_lat)
        printf("latency model: %.4g + %.4g x theta s per forward (r2 %.4f), dense forward %.4g s, "
               "%.4g s per step besides\n",
               lm.a, lm.b, lm.r2, lm.dense_s > 0 ? lm.dense_s : lm.a + lm.b, lm.step_s);
    /* the five best candidates at the target speed */
    printf("\n%4s %6s %4s %-*s %8s %10s %8s %7s\n", "rank", "cand", "gen", r.steps, "budgets (X=1.0)",
           "speedup", "mse", "psnr", "ssim");
    int shown = 0;
    char *used = calloc((size_t)n + 1, 1);
    for (int k = 0; used && k < 5; k++) {
        int bi = -1;
        for (int i = 0; i < n; i++) {
            const ast_cand *c = &v[i];
            if (used[i] || c->reused_from || isnan(c->mse) ||
                c->predicted_speedup < r.target_speedup * (1 - 1e-9))
                continue;
            if (bi < 0 || c->mse < v[bi].mse) bi = i;
        }
        if (bi < 0) break;
        used[bi] = 1;
        const ast_cand *b = &v[bi];
        char curve[AST_GA_MAX_STEPS + 1];
        ast_ga_curve(b->genome, b->steps, levels, curve, sizeof curve);
        printf("%4d %6lld %4d %-*s %7.3fx %10.3g %8.2f %7.4f\n", k + 1, (long long)b->id,
               b->generation, r.steps, curve, b->predicted_speedup, b->mse, b->psnr, b->ssim);
        shown++;
    }
    free(used);
    if (!shown) printf("  (no candidate at the target speed yet)\n");
    if (nf > 0)
        printf("\nPareto front: %d candidates from %.2fx (psnr %.2f dB) to %.2fx (psnr %.2f dB); "
               "astraea-export --speedup X picks one\n",
               nf, front[0].predicted_speedup, front[0].psnr, front[nf - 1].predicted_speedup,
               front[nf - 1].psnr);
    if (isfinite(r.measured_speedup))
        printf("best (candidate %lld): measured %.3fx (dense %.3f s, profile %.3f s per "
               "generation)\n",
               (long long)r.best_candidate, r.measured_speedup, r.measured_dense_s,
               r.measured_best_s);
    ast_cands_free(v, n);
    ast_cands_free(front, nf);
    ast_run_info_free(&r);
    ast_store_close(s);
}

static int list_runs(const char *db) {
    ast_store *s = NULL;
    ast_run_info *v = NULL;
    int n = 0;
    if (ast_store_open(db, 1, &s) != 0 || ast_store_runs_list(s, &v, &n) != 0) {
        ast_store_close(s);
        return -1;
    }
    printf("%4s  %-20s  %-11s  %-12s  %-10s  %5s  %7s  %5s  %6s  %8s  %8s\n", "run", "created",
           "status", "model", "latent", "steps", "target", "gen", "evals", "cost", "measured");
    for (int i = 0; i < n; i++) {
        char shape[32], cost[32], meas[16] = "-";
        snprintf(shape, sizeof shape, "%dx%dx%d", v[i].frames, v[i].height, v[i].width);
        fmt_duration(v[i].device_seconds, cost, sizeof cost);
        if (isfinite(v[i].measured_speedup)) snprintf(meas, sizeof meas, "%.2fx", v[i].measured_speedup);
        printf("%4lld  %-20s  %-11s  %-12.12s  %-10s  %5d  %6.2fx  %5d  %6lld  %8s  %8s\n",
               (long long)v[i].id, v[i].created, ast_run_status_name(v[i].status), v[i].model_id,
               shape, v[i].steps, v[i].target_speedup, v[i].generation,
               (long long)v[i].evaluations, cost, meas);
    }
    if (n == 0) printf("(no runs in %s)\n", db);
    ast_runs_free(v, n);
    ast_store_close(s);
    return 0;
}

/* --validate: the profile vs the uniform budget of the same predicted time, per prompt. */
static int run_validation(const ast_search_config *c, const char *path, const char *json_path,
                          int argc, char **argv) {
    ast_profile p;
    ast_validation v;
    if (ast_profile_load(path, &p) != 0) return -1;
    if (ast_log_level >= 1)
        fprintf(stderr, "astraea-search: validating %s against a uniform budget (dense, profile "
                        "and uniform generations per prompt)\n", path);
    int rc = ast_search_validate(c, &p, &v);
    if (rc == 0) {
        printf("%-4s %10s %10s %9s %9s\n", "", "profile", "uniform", "profile", "uniform");
        printf("%-4s %10s %10s %9s %9s\n", "#", "psnr dB", "psnr dB", "ssim", "ssim");
        for (int i = 0; i < v.n_prompts; i++)
            printf("%-4d %10.3f %10.3f %9.4f %9.4f\n", i + 1, v.profile[i].psnr, v.uniform[i].psnr,
                   v.profile[i].ssim, v.uniform[i].ssim);
        printf("mean %10.3f %10.3f %9.4f %9.4f\n", v.profile_mean.psnr, v.uniform_mean.psnr,
               v.profile_mean.ssim, v.uniform_mean.ssim);
        printf("profile beats uniform (theta %.3f) on %d of %d prompts; measured speedup: profile "
               "%.3fx, uniform %.3fx (dense %.3f s per generation, %s)\n",
               v.theta_uniform, v.wins, v.n_prompts, v.profile_speedup, v.uniform_speedup,
               v.dense_s, v.device);
    }
    if (rc == 0 && json_path) {
        cJSON *o = ast_run_results_stamp(v.device, NULL, argc, argv), *rows = cJSON_CreateArray();
        int ok = o && rows && cJSON_AddStringToObject(o, "profile", path) &&
                 cJSON_AddNumberToObject(o, "theta_uniform", v.theta_uniform) &&
                 cJSON_AddNumberToObject(o, "profile_speedup", v.profile_speedup) &&
                 cJSON_AddNumberToObject(o, "uniform_speedup", v.uniform_speedup) &&
                 cJSON_AddNumberToObject(o, "dense_seconds", v.dense_s) &&
                 cJSON_AddNumberToObject(o, "profile_psnr", v.profile_mean.psnr) &&
                 cJSON_AddNumberToObject(o, "uniform_psnr", v.uniform_mean.psnr) &&
                 cJSON_AddNumberToObject(o, "profile_ssim", v.profile_mean.ssim) &&
                 cJSON_AddNumberToObject(o, "uniform_ssim", v.uniform_mean.ssim) &&
                 cJSON_AddNumberToObject(o, "wins", v.wins) && cJSON_AddItemToObject(o, "prompts", rows);
        if (!ok) cJSON_Delete(rows);
        for (int i = 0; ok && i < v.n_prompts; i++) {
            cJSON *r = cJSON_CreateObject();
            ok = r && cJSON_AddItemToArray(rows, r) &&
                 cJSON_AddNumberToObject(r, "profile_psnr", v.profile[i].psnr) &&
                 cJSON_AddNumberToObject(r, "uniform_psnr", v.uniform[i].psnr) &&
                 cJSON_AddNumberToObject(r, "profile_ssim", v.profile[i].ssim) &&
                 cJSON_AddNumberToObject(r, "uniform_ssim", v.uniform[i].ssim);
        }
        rc = ok ? ast_run_write_json(json_path, o) : ast_fail("out of memory writing '%s'", json_path);
        cJSON_Delete(o);
    }
    ast_profile_free(&p);
    return rc;
}

static int self_test(void) {
    int checks = 0, caught = 0, faults = 0;
    if (ast_ga_self_test(0, 1, &checks) != 0) {
        fprintf(stderr, "astraea-search: %s\n", ast_error_get());
        return AST_EXIT_FAIL;
    }
    for (unsigned f = 1; f & AST_GA_FAULT_ALL; f <<= 1) {
        faults++;
        if (ast_ga_self_test(f, 1, NULL) != 0) caught++;
        else fprintf(stderr, "astraea-search: injected GA fault 0x%x was NOT caught\n", f);
    }
    printf("GA self-test: %d checks passed against the naive operators; injected faults caught: "
           "%d/%d\n",
           checks, caught, faults);
    return caught == faults ? AST_EXIT_OK : AST_EXIT_FAIL;
}

static int run_tool(int argc, char **argv, ast_search_mpi *mpi, int *workers_serve);

int main(int argc, char **argv) {
    /* Under mpirun (a build with MPI): rank 0 searches, the other ranks evaluate. */
    ast_search_mpi *mpi = NULL;
    if (ast_search_mpi_init(&argc, &argv, &mpi) != 0) {
        fprintf(stderr, "astraea-search: error: %s\n", ast_error_get());
        return AST_EXIT_FAIL;
    }
    int serve = 0; /* the worker ranks serve a search (rank 0 must release them) */
    int rc = run_tool(argc, argv, mpi, &serve);
    int rank = ast_search_mpi_rank(mpi);
    if (ast_search_mpi_finish(mpi, serve) != 0) {
        fprintf(stderr, "astraea-search (MPI rank %d): error: %s\n", rank, ast_error_get());
        if (rc == AST_EXIT_OK) rc = AST_EXIT_FAIL;
    }
    return rc;
}

static int run_tool(int argc, char **argv, ast_search_mpi *mpi, int *workers_serve) {
    ast_search_config c;
    ast_search_config_default(&c);
    const char *latency_model = NULL, *out = NULL, *validate = NULL, *validate_json = NULL;
    const char *preset = "paper", *gpus_text = NULL;
    int seed = 0, noise_seed = 1000, resume = 0, gpu = 0, max_evals = 0, synthetic_ms = 0;
    int gpus[65], n_gpus = 0;
    double target = 0;
    bool dry_run = false, list = false, st = false, break_lock = false, quiet = false;
    ast_ga_params *g = &c.ga;
    ast_arg args[] = {
        {"--model", AST_ARG_STRING, &c.model, "ID|DIR", "model: wan-mini (default), a checkpoint folder, or 'synthetic' (a stand-in for testing the search)", 0, 0, 0},
        {"--target-speedup", AST_ARG_SPEEDUP, &target, "X", "wall-clock speedup to reach on this machine's backend, e.g. 2x (required)", 1.0001, 1000, 0},
        {"--db", AST_ARG_STRING, &c.db_path, "PATH", "search database (default ./astraea-search.db)", 0, 0, 0},
        {"--resume", AST_ARG_INT, &resume, "RUN", "continue run RUN with its stored parameters (default: the run with these parameters)", 1, 2147483647, 0},
        {"--seed", AST_ARG_INT, &seed, "N", "GA seed (default 0); the search is deterministic for a seed", 0, 2147483647, 0},
        {"--prompts", AST_ARG_STRING, &c.prompts_file, "FILE", "calibration prompts, one per line (Wan2.1: context files, TAB, negative-context file)", 0, 0, 0},
        {"--n-prompts", AST_ARG_INT, &c.n_prompts, "N", "calibration prompts used (default 4 built-in ones, or every line of --prompts)", 1, 1000, 0},
        {"--noise-seed", AST_ARG_INT, &noise_seed, "N", "prompt p uses noise seed N+p (default 1000)", 0, 2147483647, 0},
        {"--frames", AST_ARG_INT, &c.frames, "N", "video frames (Wan2.1 4n+1; wan-mini: default 8)", 1, 100000, 0},
        {"--height", AST_ARG_INT, &c.height, "PX", "height in pixels (default: the model's)", 1, 100000, 0},
        {"--width", AST_ARG_INT, &c.width, "PX", "width in pixels (default: the model's)", 1, 100000, 0},
        {"--steps", AST_ARG_INT, &c.steps, "N", "denoising steps = genes (default: the model's, Wan2.1 50)", 2, AST_GA_MAX_STEPS, 0},
        {"--sampler", AST_ARG_STRING, &c.sampler, "NAME", "unipc (default) or euler", 0, 0, 0},
        {"--shift", AST_ARG_DOUBLE, &c.shift, "S", "flow shift (default: the model's)", 0.01, 1000, 0},
        {"--guidance", AST_ARG_DOUBLE, &c.guidance, "G", "CFG scale, 1 = no CFG (default: the model's)", 0, 100, 0},
        {"--backend", AST_ARG_STRING, &c.backend, "NAME", "auto (default), cpu, cuda", 0, 0, 0},
        {"--gpu", AST_ARG_INT, &gpu, "N", "CUDA device index (default 0)", 0, 64, 0},
        {"--gpus", AST_ARG_STRING, &gpus_text, "LIST", "CUDA devices of the search workers, e.g. 0,1 (default: every visible device); the first also calibrates and times", 0, 0, 0},
        {"--gpus-per-eval", AST_ARG_INT, &c.gpus_per_eval, "N", "GPUs of one evaluation (sequence parallelism, as astraea-generate --gpus): --gpus is split into groups of N, one worker each (default 1); selection is per GPU, so it is part of the run", 1, 16, 0},
        {"--workers", AST_ARG_INT, &c.workers, "N", "candidates evaluated at once in this process (default: one per CUDA device with the CUDA backend, 1 on the CPU); the result does not depend on it", 1, 1024, 0},
        {"--w-alpha", AST_ARG_DOUBLE, &c.w_alpha, "W", "token selection weight of LSE x delta (default: the engine's)", 0, 1000, 0},
        {"--w-beta", AST_ARG_DOUBLE, &c.w_beta, "W", "token selection weight of exp(skip) (default: the engine's)", 0, 1000, 0},
        {"--cache", AST_ARG_STRING, &c.cache, "MODE", "token-wise cache: residual or output (default: the engine's)", 0, 0, 0},
        {"--preset", AST_ARG_STRING, &preset, "NAME", "GA size: paper (default: 50 + 30x30 candidates, 4 prompts) or quick (24 + 12x16, 2 prompts: ~6 min for wan-mini on 2 CPU cores); explicit options win", 0, 0, 0},
        {"--population", AST_ARG_INT, &g->population, "N", "initial population (paper: 50)", 2, 100000, 0},
        {"--parents", AST_ARG_INT, &g->parents, "N", "best candidates kept as parents (10)", 1, 100000, 0},
        {"--elites", AST_ARG_INT, &g->elites, "N", "best parents kept whatever the children (2)", 0, 100000, 0},
        {"--children", AST_ARG_INT, &g->children, "N", "children per generation (paper: 30)", 1, 100000, 0},
        {"--generations", AST_ARG_INT, &g->generations, "N", "generations after the initial population (paper: 30)", 0, 100000, 0},
        {"--levels", AST_ARG_INT, &g->levels, "N", "budget levels 0..1 (11: steps of 0.1)", 2, AST_GA_MAX_LEVELS, 0},
        {"--structured-seeds", AST_ARG_INT, &g->structured, "N", "constant/ramp seeds in the initial population (3)", 0, 3, 0},
        {"--mutation-start", AST_ARG_DOUBLE, &g->mutation_start, "P", "per-gene mutation probability, first generation (0.1)", 0, 1, 0},
        {"--mutation-end", AST_ARG_DOUBLE, &g->mutation_end, "P", "... last generation, linear in between (0.01)", 0, 1, 0},
        {"--block-crossover", AST_ARG_DOUBLE, &g->block_prob, "P", "share of children from block crossover, the rest uniform (0.5)", 0, 1, 0},
        {"--band-low", AST_ARG_DOUBLE, &g->band_low, "F", "repair band low end, x target budget (0.9)", 0.01, 1, 0},
        {"--band-high", AST_ARG_DOUBLE, &g->band_high, "F", "repair band high end, x target budget (1.1)", 1, 10, 0},
        {"--feasible-first", AST_ARG_INT, &g->feasible_first, "0|1", "1: candidates at the target speed rank before slower ones (default); 0: by quality alone, as the paper", 0, 1, 0},
        {"--latency-repeats", AST_ARG_INT, &c.latency_repeats, "N", "timings per budget when calibrating (median, default 3)", 1, 101, 0},
        {"--latency-model", AST_ARG_STRING, &latency_model, "A,B", "skip calibration: seconds per forward = A + B x theta", 0, 0, 0},
        {"--measure-repeats", AST_ARG_INT, &c.measure_repeats, "N", "full generations timed per side at the end (median, default 3)", 1, 51, 0},
        {"--out", AST_ARG_STRING, &out, "FILE", "also write the best profile (as astraea-export does)", 0, 0, 0},
        {"--max-evals", AST_ARG_INT, &max_evals, "N", "stop after N evaluations in this session (run again to continue)", 1, 2147483647, 0},
        {"--dry-run", AST_ARG_FLAG, &dry_run, NULL, "estimate the cost and stop (writes nothing)", 0, 0, 0},
        {"--list", AST_ARG_FLAG, &list, NULL, "list the runs in the database and stop", 0, 0, 0},
        {"--break-lock", AST_ARG_FLAG, &break_lock, NULL, "take over a run another host's process seems to hold", 0, 0, 0},
        {"--validate", AST_ARG_STRING, &validate, "PROFILE", "compare a profile with the uniform budget of the same predicted time on held-out prompts (--prompts, else built-in ones the default search does not use) and stop", 0, 0, 0},
        {"--validate-json", AST_ARG_STRING, &validate_json, "FILE", "with --validate: also write the numbers as JSON (results/)", 0, 0, 0},
        {"--self-test", AST_ARG_FLAG, &st, NULL, "check the GA operators against naive versions (with injected faults) and stop", 0, 0, 0},
        {"--synthetic-ms", AST_ARG_INT, &synthetic_ms, "MS", "model 'synthetic' only: sleep per generation (tests)", 0, 100000, 0},
        {"--quiet", AST_ARG_FLAG, &quiet, NULL, "no progress output", 0, 0, 0},
    };
    ast_cli cli = {
        "astraea-search",
        "evolutionary search of per-step token budgets for a target wall-clock speedup",
        "astraea-search --target-speedup 2x [--model wan-mini] [options]",
        "Every evaluation is committed to the database (--db). Run the same command again, or\n"
        "--resume RUN, to continue a run that was stopped (Ctrl-C, --max-evals, kill -9): it ends\n"
        "exactly where an uninterrupted run ends. The speedup is wall-clock on this machine's\n"
        "backend, through a latency model calibrated at the start of the run.\n\n"
        "Candidates are evaluated by --workers (default: one per CUDA device); started by\n"
        "mpirun with P ranks, rank 0 searches and ranks 1..P-1 evaluate. The result does not\n"
        "depend on how many workers there are.\n\n"
        "Examples:\n"
        "  astraea-search --model wan-mini --target-speedup 2x --out profiles/wan-mini-2x.json\n"
        "  astraea-search --target-speedup 2x --dry-run\n"
        "  astraea-search --list\n"
        "  mpirun -np 3 --bind-to none astraea-search --target-speedup 2x --db s.db\n"
        "  astraea-export --speedup 1.8 --out p18.json --plot front.png\n"
        "See docs/search.md.",
        args, (int)(sizeof args / sizeof *args)};
    int prc = ast_cli_parse(&cli, argc, argv);
    if (prc == 1) return AST_EXIT_OK;
    if (prc) return AST_EXIT_USAGE;
    if (quiet) ast_log_level = 0;
    if (strcmp(preset, "quick") == 0) {
        /* sized for the CPU: ~220 evaluations of 2 prompts; every field stays overridable */
        const struct { const char *flag; int *field; int value; } quick[] = {
            {"--n-prompts", &c.n_prompts, 2},      {"--population", &g->population, 24},
            {"--parents", &g->parents, 8},         {"--children", &g->children, 16},
            {"--generations", &g->generations, 12},
        };
        for (size_t i = 0; i < sizeof quick / sizeof *quick; i++)
            if (!ast_cli_seen(&cli, quick[i].flag)) *quick[i].field = quick[i].value;
    } else if (strcmp(preset, "paper") != 0) {
        return ast_cli_usage_error(&cli, "--preset must be paper or quick, got '%s'", preset);
    }
    if (gpus_text) {
        char why[256];
        if (ast_cli_seen(&cli, "--gpu"))
            return ast_cli_usage_error(&cli, "give --gpu N or --gpus LIST, not both");
        if (ast_parse_devices("--gpus", gpus_text, gpus, 64, &n_gpus,
                              "for more workers than devices use --workers", why, sizeof why) != 0)
            return ast_cli_usage_error(&cli, "%s", why);
        gpu = gpus[0];
    } else if (ast_cli_seen(&cli, "--gpu")) {
        gpus[0] = gpu; /* one device: one worker unless --workers says more */
        n_gpus = 1;
    }
    if (n_gpus > 0) {
        c.gpus = gpus;
        c.n_gpus = n_gpus;
    }
    if (c.gpus_per_eval > 1) {
        if (n_gpus < c.gpus_per_eval || n_gpus % c.gpus_per_eval)
            return ast_cli_usage_error(&cli, "--gpus-per-eval %d needs --gpus with a multiple of "
                                             "%d devices (e.g. --gpus 0,1 for 2)",
                                       c.gpus_per_eval, c.gpus_per_eval);
        if (ast_search_mpi_size(mpi) > 1)
            return ast_cli_usage_error(&cli, "--gpus-per-eval with MPI ranks is not supported "
                                             "yet: run one process per machine with --gpus");
    }
    c.device = gpu;
    c.synthetic_ms = synthetic_ms;
    const int searching = !st && !list && !validate && !dry_run;
    if (ast_search_mpi_size(mpi) > 1) {
        if (c.workers > 0)
            return ast_cli_usage_error(&cli, "--workers: under mpirun every rank but rank 0 is "
                                             "one worker; leave --workers out");
        *workers_serve = searching; /* from here on every rank agrees: they serve rank 0 */
        if (ast_search_mpi_rank(mpi) > 0) {
            if (!searching) return AST_EXIT_OK; /* rank 0 does it */
            /* Ctrl-C of mpirun reaches every rank: rank 0 stops the search after the evaluations
             * in flight and then tells the workers to quit */
            signal(SIGINT, SIG_IGN);
            signal(SIGTERM, SIG_IGN);
            if (ast_search_mpi_serve(mpi, &c) != 0) {
                fprintf(stderr, "astraea-search (MPI rank %d): error: %s\n",
                        ast_search_mpi_rank(mpi), ast_error_get());
                ast_search_mpi_abort(mpi, AST_EXIT_FAIL);
                return AST_EXIT_FAIL;
            }
            return AST_EXIT_OK;
        }
        c.mpi = mpi;
    }
    if (st) return self_test();
    if (list) return list_runs(c.db_path) == 0 ? AST_EXIT_OK : ast_cli_fail(&cli);
    if (c.prompts_file && !ast_cli_seen(&cli, "--n-prompts")) c.n_prompts = 0; /* every line */
    if (validate) {
        return run_validation(&c, validate, validate_json, argc, argv) == 0 ? AST_EXIT_OK
                                                                            : ast_cli_fail(&cli);
    }
    if (!resume && target <= 0)
        return ast_cli_usage_error(&cli, "--target-speedup X is required (e.g. 2x)");
    if (resume && (ast_cli_seen(&cli, "--target-speedup") || ast_cli_seen(&cli, "--seed")))
        return ast_cli_usage_error(&cli, "--resume RUN continues with the run's stored "
                                         "parameters; leave out --target-speedup and --seed");
    if (latency_model) {
        char *end = NULL;
        c.latency_a = strtod(latency_model, &end);
        if (*end != ',')
            return ast_cli_usage_error(&cli, "--latency-model expects A,B (seconds), got '%s'", latency_model);
        c.latency_b = strtod(end + 1, &end);
        if (*end || !(c.latency_a >= 0) || !(c.latency_b > 0))
            return ast_cli_usage_error(&cli, "--latency-model expects A >= 0, B > 0 seconds, got '%s'", latency_model);
    }
    c.target_speedup = target;
    c.seed = (uint64_t)seed;
    c.noise_seed = (uint64_t)noise_seed;
    c.resume_run = resume;
    c.break_lock = break_lock;
    c.stop_after = max_evals;

    if (dry_run) {
        ast_search_estimate e;
        if (ast_search_estimate_cost(&c, &e) != 0) return ast_cli_fail(&cli);
        char total[32];
        fmt_duration(e.total_s, total, sizeof total);
        printf("dry run: %d evaluations x %.3g s (%d prompts at %.2fx) + %d dense references x "
               "%.3g s\n",
               e.evaluations, e.predicted_eval_s, c.n_prompts, c.target_speedup, e.references,
               e.predicted_dense_s);
        printf("latency model%s: %.4g + %.4g x theta s per forward (r2 %.3f), dense %.4g s; band "
               "sum of levels [%d, %d] (target mean budget %.3f)\n",
               e.calibrated_now ? " (quick calibration)" : "", e.latency.a, e.latency.b,
               e.latency.r2, e.latency.dense_s > 0 ? e.latency.dense_s : e.latency.a + e.latency.b,
               e.band.lo, e.band.hi, e.theta_mean);
        if (e.run_id) printf("these parameters continue run %lld\n", (long long)e.run_id);
        printf("estimated device time: %s (%.0f s)\n", total, e.total_s);
        /* the evaluations spread over the workers; the references and the timing do not */
        const int nw = e.workers;
        if (nw > 1) {
            double wall = e.total_s - e.evaluations * e.predicted_eval_s * (1.0 - 1.0 / nw);
            char w[32];
            fmt_duration(wall, w, sizeof w);
            printf("wall time with %d workers: about %s (%.0f s)\n", nw, w, wall);
        }
        return AST_EXIT_OK;
    }

    progress_ctx pc = {isatty(STDERR_FILENO), -1, -1, ast_now_sec()};
    c.progress = on_progress;
    c.progress_user = &pc;
    ast_run_install_sigint();
    c.should_stop = ast_run_interrupted;
    ast_search_result res;
    int rc = ast_search_run(&c, &res);
    if (pc.is_tty && pc.last_phase == AST_PHASE_EVALUATE && ast_log_level >= 1) fputc('\n', stderr);
    if (rc < 0) {
        if (ast_run_interrupted()) {
            fprintf(stderr, "astraea-search: interrupted (%s)\n", ast_error_get());
            return AST_EXIT_INTERRUPTED;
        }
        return ast_cli_fail(&cli);
    }
    if (rc == 1) {
        fprintf(stderr,
                "astraea-search: stopped after %d evaluations this session; run %lld is saved in "
                "%s: run the same command (or --resume %lld) to continue\n",
                res.evaluated_now, (long long)res.run_id, c.db_path, (long long)res.run_id);
        return ast_run_interrupted() ? AST_EXIT_INTERRUPTED : AST_EXIT_OK;
    }
    if (res.already_done && ast_log_level >= 1)
        fprintf(stderr, "astraea-search: run %lld with these parameters is already complete\n",
                (long long)res.run_id);
    if (ast_log_level >= 1) print_summary(c.db_path, res.run_id);
    if (out) {
        ast_store *s = NULL;
        ast_profile p;
        int64_t cand = 0;
        if (ast_store_open(c.db_path, 1, &s) != 0 ||
            ast_search_pick(s, res.run_id, NAN, &cand) != 0 ||
            ast_search_profile(s, res.run_id, cand, &p) != 0) {
            ast_store_close(s);
            return ast_cli_fail(&cli);
        }
        int src = ast_profile_save(&p, out);
        ast_profile_free(&p);
        ast_store_close(s);
        if (src != 0) return ast_cli_fail(&cli);
        if (ast_log_level >= 1) printf("wrote %s (candidate %lld)\n", out, (long long)cand);
    }
    return AST_EXIT_OK;
}
