/* astraea-bench — times one denoiser forward (dense and at token budgets θ) and the attention
 * kernel at real shapes, and writes the results JSON (results/dense_forward.json,
 * results/token_budget.json) with the device, commit, date and exact command. Without a
 * checkpoint it benchmarks random, non-degenerate weights of the named configuration: timing
 * needs real shapes, never real weights. The PyTorch peer (bench/pytorch_forward.py) is run in the
 * same device call by bench/run_dense.sh and its JSON passed with --peer. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "cli.h"
#include "common.h"
#include "model_random.h"
#include "run.h"

#define MAX_LIST 16

static int parse_list(const char *s, double *out, int max, const char *flag) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || n >= max) return ast_fail("%s: cannot read '%s' as a comma-separated list", flag, s);
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return ast_fail("%s: cannot read '%s' as a comma-separated list", flag, s);
    }
    if (n == 0) return ast_fail("%s: empty list", flag);
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One timing point: medians over the timed repeats, in ms. */
typedef struct {
    double ms;     /* the forward as the PyTorch peer's is timed (bench/pytorch_forward.py: CUDA
                      events around the model call on GPU tensors): the backend's device time
                      (ast_forward_info.device_ms), or api_ms where it reports none (CPU) */
    double api_ms; /* wall time of ast_engine_forward: the host copies of the latent included */
    double extra_state_bytes; /* the engine's token-wise state (ast_forward_info) */
} fwd_time;

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* Medians of `repeats` forwards at theta, after three warm-ups: the first forward after reset
 * is dense and fills the caches, the next two run theta's graph eagerly once, then capture it
 * (CUDA graphs: first sight eager, second captured). */
static int time_forward(ast_engine *e, const float *x, float *y, float theta, int repeats,
                        fwd_time *out) {
    double wall[64], dev[64];
    int have_dev = 1;
    if (repeats > 64) repeats = 64;
    ast_engine_reset(e);
    for (int w = 0; w < 3; w++)
        if (ast_engine_forward(e, 0, x, 500.0f, w == 0 ? 1.0f : theta, y, NULL)) return -1;
    ast_forward_info info = {0};
    for (int r = 0; r < repeats; r++) {
        double t0 = ast_now_sec();
        if (ast_engine_forward(e, 0, x, 500.0f, theta, y, &info)) return -1;
        wall[r] = 1e3 * (ast_now_sec() - t0);
        dev[r] = info.device_ms;
        have_dev &= info.device_ms > 0;
    }
    out->api_ms = median(wall, repeats);
    out->ms = have_dev ? median(dev, repeats) : out->api_ms;
    out->extra_state_bytes = info.extra_state_bytes;
    return 0;
}

/* The top-level note on what the times mean, in every results file this tool writes. */
static void add_timing_note(cJSON *root) {
    cJSON_AddStringToObject(root, "timing",
                            "ms: median forward time on the GPU, from the input on the GPU to "
                            "the output on the GPU (CUDA events), the boundary at which the "
                            "PyTorch peer is timed; api_ms: median wall time of "
                            "ast_engine_forward, the host copies of the latent included (on the "
                            "CPU backend both are the wall time)");
}

static cJSON *peer_for(cJSON *peers, int tokens) {
    cJSON *it;
    cJSON_ArrayForEach(it, peers) {
        cJSON *t = cJSON_GetObjectItem(it, "tokens");
        if (cJSON_IsNumber(t) && (int)t->valuedouble == tokens) return it;
    }
    return NULL;
}

static double peer_num(cJSON *p, const char *key) {
    cJSON *v = p ? cJSON_GetObjectItem(p, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void add_num_digits(cJSON *o, const char *k, double v, double scale) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, round(v * scale) / scale);
    else
        cJSON_AddNullToObject(o, k);
}

static void add_num(cJSON *o, const char *k, double v) { add_num_digits(o, k, v, 1e3); }



/* The benchmark's inputs on an engine: a random context on branch 0 (seed 7) and a random latent
 * *x (seed 11) with its output buffer *y, both [in_dim, F, H, W] (any old ones freed). */
static int bench_inputs(ast_engine *e, int F, int H, int W, float **x, float **y) {
    const ast_wan_config *c = &ast_engine_model(e)->cfg;
    float *ctx = ast_calloc((size_t)c->text_len * c->text_dim, sizeof(float), "context");
    if (!ctx) return -1;
    ast_noise(7, ctx, (int64_t)c->text_len * c->text_dim);
    int rc = ast_engine_set_context(e, 0, ctx, c->text_len);
    free(ctx);
    const int64_t n = (int64_t)c->in_dim * F * H * W;
    free(*x);
    free(*y);
    *x = ast_malloc(sizeof(float) * n, "input");
    *y = ast_malloc(sizeof(float) * n, "output");
    if (rc || !*x || !*y) return -1;
    ast_noise(11, *x, n);
    return 0;
}

/* ---- multi-GPU scaling (results/multigpu.json; docs/multigpu.md) ---------------------------- */

typedef struct {
    const ast_model *m;
    ast_backend_kind backend;
    const int *devices;       /* the GPUs, in order; P ranks use the first P */
    int n_devices;
    double frames[MAX_LIST], thetas[MAX_LIST], counts[MAX_LIST];
    int nframes, nthetas, ncounts, height, width, repeats;
} mg_spec;

/* Times every (frames, P, theta) and appends a point per case to `points`; `label` is the device
 * string stamped on each point (several machines may add to one file). */
static int bench_multigpu(const mg_spec *s, cJSON *points, const char *label) {
    int tw = 0; /* one engine per GPU count serves every budget */
    for (int ti = 0; ti < s->nthetas; ti++) tw |= s->thetas[ti] < 1.0;
    printf("%-6s %-8s %-7s %12s %22s\n", "gpus", "tokens", "theta", "ms", "speedup_vs_1gpu_dense");
    for (int fi = 0; fi < s->nframes; fi++) {
        int F, H, W;
        if (ast_run_latent_shape(s->m, (int)s->frames[fi], s->height, s->width, &F, &H, &W))
            return -1;
        double base = NAN; /* 1-GPU dense at this size, this run */
        for (int pi = 0; pi < s->ncounts; pi++) {
            int P = (int)s->counts[pi];
            if (P < 1 || P > s->n_devices || P > AST_MAX_RANKS)
                return ast_fail("--gpu-counts: %d GPUs asked, %d given by --gpus (or visible)", P,
                                s->n_devices);
            ast_engine_params ep = {0};
            ep.backend = s->backend;
            ep.device = s->devices[0];
            ep.n_ranks = P;
            memcpy(ep.devices, s->devices, sizeof(int) * (size_t)P);
            ep.frames = F, ep.height = H, ep.width = W;
            ep.n_branches = 1;
            ep.tokenwise = tw;
            ast_tokenwise_opts_default(&ep.tw);
            ast_engine *e = NULL;
            if (ast_engine_create(s->m, &ep, &e)) {
                ast_error_prefix("%d GPU%s at %d frames", P, P > 1 ? "s" : "", (int)s->frames[fi]);
                return -1;
            }
            int N = ast_engine_tokens(e);
            float *x = NULL, *y = NULL;
            int rc = bench_inputs(e, F, H, W, &x, &y);
            for (int ti = 0; !rc && ti < s->nthetas; ti++) {
                fwd_time ft;
                rc = time_forward(e, x, y, (float)s->thetas[ti], s->repeats, &ft);
                if (rc) break;
                const double ms = ft.ms;
                if (P == 1 && s->thetas[ti] >= 1.0) base = ms;
                cJSON *row = cJSON_CreateObject();
                cJSON_AddNumberToObject(row, "gpus", P);
                cJSON_AddNumberToObject(row, "tokens", N);
                add_num(row, "theta", s->thetas[ti]);
                add_num(row, "ms", ms);
                add_num(row, "api_ms", ft.api_ms);
                add_num(row, "speedup_vs_1gpu_dense", base / ms);
                cJSON_AddStringToObject(row, "device", label);
                cJSON_AddItemToArray(points, row);
                printf("%-6d %-8d %-7.2f %12.2f %22.3f\n", P, N, s->thetas[ti], ms, base / ms);
            }
            free(x), free(y);
            ast_engine_free(e);
            if (rc) return -1;
        }
    }
    return 0;
}

/* --append: the points of an existing results/multigpu.json at `path` (earlier machines') are
 * added to `points` first; a missing file adds none. */
static int earlier_points(const char *path, cJSON *points) {
    if (access(path, F_OK) != 0) return 0;
    size_t len;
    char *txt = ast_read_file(path, 1 << 24, &len);
    if (!txt) return -1; /* the error names the file and why */
    cJSON *old = cJSON_Parse(txt);
    free(txt);
    cJSON *op = old ? cJSON_GetObjectItem(old, "points") : NULL, *it;
    if (!cJSON_IsArray(op)) {
        cJSON_Delete(old);
        return ast_fail("--append: '%s' is not a results/multigpu.json file (no points list); "
                        "fix or remove it", path);
    }
    cJSON_ArrayForEach(it, op) {
        cJSON *pt = cJSON_Duplicate(it, 1);
        cJSON *ms = cJSON_GetObjectItem(pt, "ms");
        if (pt && cJSON_IsNumber(ms) && !cJSON_GetObjectItem(pt, "api_ms")) {
            /* written before the device timing: its ms is the wall time through the API */
            cJSON_AddNumberToObject(pt, "api_ms", ms->valuedouble);
            cJSON_AddStringToObject(pt, "ms_is", "api_ms (an earlier astraea-bench)");
        }
        cJSON_AddItemToArray(points, pt);
    }
    cJSON_Delete(old);
    return 0;
}

int main(int argc, char **argv) {
    const char *model = "wan2.1-t2v-1.3b", *checkpoint = NULL, *backend = "auto";
    const char *frames_s = "33,81", *thetas_s = NULL, *peer_path = NULL, *dense_json = NULL;
    const char *budget_json = NULL, *work = "/tmp/astraea-bench", *commit = NULL;
    const char *budget_frames_s = "33";
    int height = 0, width = 0, repeats = 10, gpu = 0;
    bool no_attention = false, mg_append = false;
    const char *mg_json = NULL, *mg_counts_s = "1,2", *mg_thetas_s = "1,0.4", *gpus_s = NULL;
    ast_arg args[] = {
        {"--model", AST_ARG_STRING, &model, "ID", "configuration: wan2.1-t2v-1.3b (default; random weights), wan2.1-t2v-14b, wan-mini, or a folder", 0, 0, 0},
        {"--checkpoint", AST_ARG_STRING, &checkpoint, "DIR", "time a real checkpoint instead of random weights", 0, 0, 0},
        {"--frames", AST_ARG_STRING, &frames_s, "LIST", "video frames per case (default 33,81 = 14,040 and 32,760 tokens at 480x832)", 0, 0, 0},
        {"--height", AST_ARG_INT, &height, "PX", "pixel height (default: the model's; Wan2.1 480)", 1, 100000, 0},
        {"--width", AST_ARG_INT, &width, "PX", "pixel width (default: the model's; Wan2.1 832)", 1, 100000, 0},
        {"--thetas", AST_ARG_STRING, &thetas_s, "LIST", "token budgets to time, e.g. 1,0.7,0.5,0.4,0.3,0.2", 0, 0, 0},
        {"--budget-frames", AST_ARG_STRING, &budget_frames_s, "N", "video frames of the budget sweep (default 33 = 14,040 tokens)", 0, 0, 0},
        {"--repeats", AST_ARG_INT, &repeats, "N", "timed repeats per point, median reported (default 10)", 1, 64, 0},
        {"--backend", AST_ARG_STRING, &backend, "NAME", "auto (default), cpu, cuda", 0, 0, 0},
        {"--gpu", AST_ARG_INT, &gpu, "N", "CUDA device index (default 0)", 0, 64, 0},
        {"--peer", AST_ARG_STRING, &peer_path, "FILE", "JSON list from bench/pytorch_forward.py (same device call) for ratios", 0, 0, 0},
        {"--dense-json", AST_ARG_STRING, &dense_json, "FILE", "write the dense cases (results/dense_forward.json format)", 0, 0, 0},
        {"--budget-json", AST_ARG_STRING, &budget_json, "FILE", "write the budget sweep (results/token_budget.json format)", 0, 0, 0},
        {"--work-dir", AST_ARG_STRING, &work, "DIR", "where the random checkpoint is written (default /tmp/astraea-bench)", 0, 0, 0},
        {"--commit", AST_ARG_STRING, &commit, "SHA", "commit to stamp the results with (default: $ASTRAEA_COMMIT)", 0, 0, 0},
        {"--no-attention", AST_ARG_FLAG, &no_attention, NULL, "skip the attention kernel timing", 0, 0, 0},
        {"--multigpu-json", AST_ARG_STRING, &mg_json, "FILE", "multi-GPU scaling mode: time one forward on P GPUs (sequence parallelism) for each of --gpu-counts, --frames and --mg-thetas, and write FILE (results/multigpu.json format); nothing else is timed", 0, 0, 0},
        {"--gpu-counts", AST_ARG_STRING, &mg_counts_s, "LIST", "GPU counts P of the scaling mode (default 1,2; include 1: it is the baseline)", 0, 0, 0},
        {"--mg-thetas", AST_ARG_STRING, &mg_thetas_s, "LIST", "budgets of the scaling mode (default 1,0.4)", 0, 0, 0},
        {"--gpus", AST_ARG_STRING, &gpus_s, "LIST", "GPUs of the scaling mode, in order (default: 0,1,...,P-1)", 0, 0, 0},
        {"--append", AST_ARG_FLAG, &mg_append, NULL, "scaling mode: keep the points already in FILE (runs of other machines) and add these", 0, 0, 0},
    };
    ast_cli cli = {"astraea-bench", "time the dense and token-wise forward and the attention kernel",
                   "astraea-bench [--model wan2.1-t2v-1.3b] [--frames 33,81] [--thetas LIST] [--dense-json F] [--budget-json F]",
                   "Example (what bench/run_dense.sh runs on the GPU machine):\n"
                   "  astraea-bench --frames 33,81 --thetas 1,0.7,0.5,0.4,0.3,0.2 --peer peer.json \\\n"
                   "      --dense-json results/dense_forward.json --budget-json results/token_budget.json\n"
                   "Multi-GPU scaling (bench/device.sh multigpu; the 4- and 8-GPU runs add --append):\n"
                   "  astraea-bench --multigpu-json results/multigpu.json --gpu-counts 1,2 --frames 33,81",
                   args, (int)(sizeof args / sizeof *args)};
    int prc = ast_cli_parse(&cli, argc, argv);
    if (prc == 1) return AST_EXIT_OK;
    if (prc) return AST_EXIT_USAGE;
    if (!commit) commit = getenv("ASTRAEA_COMMIT");

    double frames[MAX_LIST], thetas[MAX_LIST], bframes[1];
    int nframes = parse_list(frames_s, frames, MAX_LIST, "--frames");
    if (nframes < 0) return ast_cli_usage_error(&cli, "%s", ast_error_get());
    int nthetas = thetas_s ? parse_list(thetas_s, thetas, MAX_LIST, "--thetas") : 0;
    if (nthetas < 0) return ast_cli_usage_error(&cli, "%s", ast_error_get());
    for (int i = 0; i < nthetas; i++)
        if (!(thetas[i] > 0 && thetas[i] <= 1))
            return ast_cli_usage_error(&cli, "--thetas: %g is outside (0, 1]", thetas[i]);
    if (parse_list(budget_frames_s, bframes, 1, "--budget-frames") < 0)
        return ast_cli_usage_error(&cli, "%s", ast_error_get());

    mg_spec mg = {0};
    int mg_devices[AST_MAX_RANKS];
    if (mg_json) {
        mg.nframes = nframes;
        memcpy(mg.frames, frames, sizeof frames);
        mg.nthetas = parse_list(mg_thetas_s, mg.thetas, MAX_LIST, "--mg-thetas");
        mg.ncounts = parse_list(mg_counts_s, mg.counts, MAX_LIST, "--gpu-counts");
        if (mg.nthetas < 0 || mg.ncounts < 0) return ast_cli_usage_error(&cli, "%s", ast_error_get());
        int maxp = 1;
        for (int i = 0; i < mg.ncounts; i++) {
            if (!(mg.counts[i] >= 1 && mg.counts[i] <= AST_MAX_RANKS && mg.counts[i] == (int)mg.counts[i]))
                return ast_cli_usage_error(&cli, "--gpu-counts: %g is not a GPU count 1..%d",
                                           mg.counts[i], AST_MAX_RANKS);
            if (mg.counts[i] > maxp) maxp = (int)mg.counts[i];
        }
        for (int i = 0; i < mg.nthetas; i++)
            if (!(mg.thetas[i] > 0 && mg.thetas[i] <= 1))
                return ast_cli_usage_error(&cli, "--mg-thetas: %g is outside (0, 1]", mg.thetas[i]);
        if (gpus_s) {
            char why[256];
            if (ast_parse_devices("--gpus", gpus_s, mg_devices, AST_MAX_RANKS, &mg.n_devices,
                                  NULL, why, sizeof why))
                return ast_cli_usage_error(&cli, "%s", why);
        } else {
            mg.n_devices = maxp;
            for (int i = 0; i < maxp; i++) mg_devices[i] = i;
        }
        mg.devices = mg_devices;
        mg.height = height, mg.width = width, mg.repeats = repeats;
    }

    ast_model *m = NULL;
    ast_engine *e = NULL;
    float *x = NULL, *y = NULL;
    cJSON *peers = NULL, *dense_root = NULL, *budget_root = NULL, *mg_root = NULL;
    int rc = AST_EXIT_FAIL;
    ast_engine_params ep = {0};
    if (ast_run_pick_backend(backend, &ep.backend)) goto fail;
    if (!checkpoint) {
        ast_wan_config cfg;
        struct stat sb;
        if (stat(model, &sb) == 0 || ast_wan_config_builtin(model, &cfg) != 0) {
            checkpoint = model; /* a folder, or wan-mini: load as is */
        } else {
            char dir[4096], cfgpath[4200];
            snprintf(dir, sizeof dir, "%s/%s-random", work, model);
            snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dir);
            mkdir(work, 0755);
            if (stat(cfgpath, &sb) != 0) {
                ast_log(1, "astraea-bench: writing random %s weights to %s\n", model, dir);
                if (ast_write_random_checkpoint(dir, &cfg, 1234, AST_DT_BF16)) goto fail;
            }
            checkpoint = ast_strdup(dir);
        }
    }
    if (ast_run_open_model(NULL, checkpoint, &m)) goto fail;
    if (peer_path) {
        size_t len;
        char *txt = ast_read_file(peer_path, 1 << 20, &len);
        if (!txt) goto fail;
        peers = cJSON_Parse(txt);
        free(txt);
        if (!cJSON_IsArray(peers)) {
            ast_error_set("--peer '%s' must hold a JSON list of objects with tokens and "
                          "pytorch_ms (bench/pytorch_forward.py output)", peer_path);
            goto fail;
        }
    }
    char devname[256] = "cpu";
    double used0 = 0, used1 = 0;
    if (mg_json) { /* the scaling mode alone */
        char label[300];
        int nvis = 0;
        if (ep.backend == AST_BACKEND_CUDA) {
            char why[256];
            nvis = ast_cuda_device_count(why, sizeof why);
            if (ast_cuda_mem_used(mg.devices[0], &used0, devname, sizeof devname)) goto fail;
        }
        snprintf(label, sizeof label, "%s%s (%d visible)", devname,
                 ep.backend == AST_BACKEND_CUDA ? "" : " backend", nvis);
        mg.m = m;
        mg.backend = ep.backend;
        mg_root = ast_run_results_stamp(label, commit, argc, argv);
        add_timing_note(mg_root);
        cJSON *points = cJSON_CreateArray();
        cJSON_AddItemToObject(mg_root, "points", points);
        if (mg_append && earlier_points(mg_json, points)) goto fail;
        if (bench_multigpu(&mg, points, label) || ast_run_write_json(mg_json, mg_root)) goto fail;
        rc = AST_EXIT_OK;
        goto done;
    }
    if (ep.backend == AST_BACKEND_CUDA && ast_cuda_mem_used(gpu, &used0, devname, sizeof devname))
        goto fail;
    int dense_tokens[MAX_LIST];
    double dense_ms_at[MAX_LIST];
    int ndense = 0;
    cJSON *cases = cJSON_CreateArray();
    dense_root = ast_run_results_stamp(devname, commit, argc, argv);
    add_timing_note(dense_root);
    cJSON_AddItemToObject(dense_root, "cases", cases);
    const ast_wan_config *c = &m->cfg;
    printf("%-8s %-12s %12s %12s %8s %14s %14s %10s\n", "tokens", "theta", "astraea_ms",
           "pytorch_ms", "ratio", "attn_TFLOP/s", "sdpa_TFLOP/s", "mem_GiB");
    for (int fi = 0; fi < nframes + (nthetas ? 1 : 0); fi++) {
        int is_budget = fi == nframes;
        int F, H, W;
        if (ast_run_latent_shape(m, (int)(is_budget ? bframes[0] : frames[fi]), height, width, &F,
                                 &H, &W))
            goto fail;
        ep.device = gpu;
        ep.frames = F;
        ep.height = H;
        ep.width = W;
        ep.n_branches = 1;
        ep.tokenwise = is_budget;
        ast_tokenwise_opts_default(&ep.tw);
        if (ast_engine_create(m, &ep, &e)) goto fail;
        int N = ast_engine_tokens(e);
        if (bench_inputs(e, F, H, W, &x, &y)) goto fail;
        if (!is_budget) {
            fwd_time ft;
            if (time_forward(e, x, y, 1.0f, repeats, &ft)) goto fail;
            const double ms = ft.ms;
            if (ep.backend == AST_BACKEND_CUDA && ast_cuda_mem_used(gpu, &used1, devname, sizeof devname))
                goto fail;
            double attn_tflops = NAN;
            if (!no_attention && ep.backend == AST_BACKEND_CUDA) {
                double ams;
                if (ast_cuda_bench_attention(gpu, N, N, c->num_heads, c->head_dim, repeats, &ams))
                    goto fail;
                attn_tflops = 4.0 * N * (double)N * c->head_dim * c->num_heads / (ams * 1e9);
            }
            cJSON *p = peer_for(peers, N);
            double pt = peer_num(p, "pytorch_ms");
            double mem = (used1 - used0) / (1024.0 * 1024 * 1024);
            cJSON *row = cJSON_CreateObject();
            cJSON_AddNumberToObject(row, "tokens", N);
            add_num(row, "astraea_ms", ms);
            add_num(row, "astraea_api_ms", ft.api_ms);
            add_num(row, "pytorch_ms", pt);
            add_num(row, "ratio", pt / ms);
            add_num(row, "attention_tflops", attn_tflops);
            add_num(row, "sdpa_tflops", peer_num(p, "sdpa_tflops"));
            add_num(row, "peak_mem_gib", ep.backend == AST_BACKEND_CUDA ? mem : NAN);
            add_num(row, "pytorch_peak_mem_gib", peer_num(p, "peak_mem_gib"));
            cJSON_AddItemToArray(cases, row);
            dense_tokens[ndense] = N;
            dense_ms_at[ndense++] = ms;
            printf("%-8d %-12s %12.2f %12.2f %8.3f %14.1f %14.1f %10.2f\n", N, "dense", ms, pt,
                   pt / ms, attn_tflops, peer_num(p, "sdpa_tflops"), mem);
        } else {
            budget_root = ast_run_results_stamp(devname, commit, argc, argv);
            add_timing_note(budget_root);
            cJSON *points = cJSON_CreateArray();
            cJSON_AddNumberToObject(budget_root, "tokens", N);
            cJSON_AddItemToObject(budget_root, "points", points);
            double dense_ms = NAN, sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0;
            double pt = peer_num(peer_for(peers, N), "pytorch_ms");
            double extra_bytes = 0;
            for (int ti = 0; ti < nthetas; ti++) {
                fwd_time ft;
                if (time_forward(e, x, y, (float)thetas[ti], repeats, &ft)) goto fail;
                const double ms = ft.ms;
                extra_bytes = ft.extra_state_bytes;
                if (thetas[ti] >= 1.0) dense_ms = ms;
                cJSON *row = cJSON_CreateObject();
                add_num(row, "theta", thetas[ti]);
                add_num(row, "ms", ms);
                add_num(row, "api_ms", ft.api_ms);
                cJSON_AddItemToArray(points, row);
                sx += thetas[ti];
                sy += ms;
                sxx += thetas[ti] * thetas[ti];
                sxy += thetas[ti] * ms;
                syy += ms * ms;
                printf("%-8d %-12.2f %12.2f %12.2f %8s %14s %14s %10s\n", N, thetas[ti], ms, pt,
                       "", "", "", "");
            }
            /* "dense" = the dense-only engine at this size when it was timed (no token-wise
             * state to maintain), else θ = 1 of the token-wise engine */
            for (int di = 0; di < ndense; di++)
                if (dense_tokens[di] == N) dense_ms = dense_ms_at[di];
            add_num(budget_root, "dense_ms", dense_ms);
            cJSON *row;
            cJSON_ArrayForEach(row, points) {
                double ms = cJSON_GetObjectItem(row, "ms")->valuedouble;
                add_num(row, "speedup_vs_dense", dense_ms / ms);
                add_num(row, "speedup_vs_pytorch", pt / ms);
            }
            double k = nthetas, cov = sxy - sx * sy / k, vx = sxx - sx * sx / k,
                   vy = syy - sy * sy / k;
            // four decimals: the acceptance reads r2 against 0.98, and 0.9996 is not 1
            add_num_digits(budget_root, "r2", vx > 0 && vy > 0 ? cov * cov / (vx * vy) : NAN, 1e4);
            add_num(budget_root, "extra_mem_gib", extra_bytes / (1024.0 * 1024 * 1024));
            add_num(budget_root, "pytorch_ms", pt);
            printf("budget sweep: r2 = %.4f, extra state %.2f GiB\n",
                   vx > 0 && vy > 0 ? cov * cov / (vx * vy) : NAN,
                   extra_bytes / (1024.0 * 1024 * 1024));
        }
        ast_engine_free(e);
        e = NULL;
    }
    if (dense_json && nframes && ast_run_write_json(dense_json, dense_root)) goto fail;
    if (budget_json && budget_root && ast_run_write_json(budget_json, budget_root)) goto fail;
    rc = AST_EXIT_OK;
    goto done;
fail:
    rc = ast_cli_fail(&cli);
done:
    ast_engine_free(e);
    ast_model_free(m);
    cJSON_Delete(peers);
    cJSON_Delete(dense_root);
    cJSON_Delete(budget_root);
    cJSON_Delete(mg_root);
    free(x);
    free(y);
    return rc;
}
